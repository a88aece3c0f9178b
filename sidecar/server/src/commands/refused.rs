//! Commands in the command table only to refuse them by name: `mapReduce`
//! with MongoDB's own code, as a mongod without a JavaScript engine answers
//! (see `query::javascript`); `convertToCapped` and
//! `cloneCollectionAsCapped`, not built (capped collections are made by
//! `create`, see `crate::capped`), with 115. `docs/compatibility.md` lists
//! them as refused with that code.

use bson::Document;

use super::Ctx;
use crate::error::{CommandError, ErrorCode, Result};

/// The error a refused command always gets.
type Refusal = fn() -> CommandError;

/// Each refused command and its refusal.
pub(super) const REFUSED: &[(&str, Refusal)] = &[
    ("mapReduce", crate::query::javascript::map_reduce),
    ("convertToCapped", convert_to_capped_refused),
    ("cloneCollectionAsCapped", clone_as_capped_refused),
];

fn not_built(command: &str) -> CommandError {
    CommandError::new(
        ErrorCode::CommandNotSupported,
        format!(
            "{command} is not supported by Argon: create a capped collection with `create` and `capped: true`"
        ),
    )
}

fn convert_to_capped_refused() -> CommandError {
    not_built("convertToCapped")
}

fn clone_as_capped_refused() -> CommandError {
    not_built("cloneCollectionAsCapped")
}

pub async fn map_reduce(_ctx: &Ctx<'_>) -> Result<Document> {
    Err(crate::query::javascript::map_reduce())
}

pub async fn convert_to_capped(_ctx: &Ctx<'_>) -> Result<Document> {
    Err(convert_to_capped_refused())
}

pub async fn clone_collection_as_capped(_ctx: &Ctx<'_>) -> Result<Document> {
    Err(clone_as_capped_refused())
}
