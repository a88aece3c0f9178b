//! `$documents`: documents a pipeline makes itself, from an expression
//! that evaluates to an array of objects. It starts `aggregate: 1` and the
//! sub-pipelines of `$unionWith` without `coll` and `$lookup` without
//! `from` (MongoDB 6.0's collectionless forms); the value is built under
//! the expression limits, so it is at most 16 MiB.

use bson::{Bson, Document};

use super::super::expr::{Expr, type_name};
use crate::error::{CommandError, ErrorCode, Result};

/// The documents `{$documents: arg}` makes (`let` variables already bound).
pub(crate) fn evaluate(arg: &Bson) -> Result<Vec<Document>> {
    let value = Expr::parse(arg)?.eval(&Document::new())?;
    let Some(Bson::Array(items)) = value else {
        return Err(CommandError::new(
            ErrorCode::Location5858203,
            "an array is expected for $documents",
        ));
    };
    items
        .into_iter()
        .map(|i| match i {
            Bson::Document(d) => Ok(d),
            other => Err(CommandError::type_mismatch(format!(
                "$documents must evaluate to an array of objects, found {}",
                type_name(&other)
            ))),
        })
        .collect()
}

/// `$documents`' argument and the stages after it, when `stages` starts
/// with that stage; `stage` names the stage that needs it in the error.
pub(super) fn split_leading<'a>(
    stages: &'a [Bson],
    stage: &str,
    collection: &str,
) -> Result<(&'a Bson, &'a [Bson])> {
    match stages.split_first() {
        Some((Bson::Document(first), rest)) if first.len() == 1 => {
            if let Some(arg) = first.get("$documents") {
                return Ok((arg, rest));
            }
        }
        _ => {}
    }
    Err(CommandError::failed_to_parse(format!(
        "{stage} stage without explicit {collection} must have a pipeline with $documents as first stage"
    )))
}
