//! Commands in the command table only to refuse them by name with
//! MongoDB's own code, as a mongod configured without the feature does:
//! `mapReduce` (server-side JavaScript, see `query::javascript`).
//! `docs/compatibility.md` lists them as refused with that code.

use bson::Document;

use super::Ctx;
use crate::error::{CommandError, Result};

/// The error a refused command always gets.
type Refusal = fn() -> CommandError;

/// Each refused command and its refusal.
pub(super) const REFUSED: &[(&str, Refusal)] =
    &[("mapReduce", crate::query::javascript::map_reduce)];

pub async fn map_reduce(_ctx: &Ctx<'_>) -> Result<Document> {
    Err(crate::query::javascript::map_reduce())
}
