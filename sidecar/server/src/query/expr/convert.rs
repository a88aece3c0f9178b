//! Type conversion and inspection: `$convert`, `$toInt` and the other `$to*`, `$isNumber`, `$bsonSize`, `$binarySize`, `$tsSecond`, `$tsIncrement`, `$toHashedIndexKey`.

use bson::{Bson, Document};

use super::{Locals, Scope};
use crate::error::Result;

/// A parsed operator of this family.
#[derive(Debug, Clone)]
pub enum ConvertExpr {}

impl ConvertExpr {
    /// Parses `{name: arg}`; `None` when `name` is not of this family.
    pub(super) fn parse(_name: &str, _arg: &Bson, _scope: Scope) -> Result<Option<ConvertExpr>> {
        Ok(None)
    }

    pub(super) fn eval(&self, _doc: &Document, _locals: Locals) -> Result<Option<Bson>> {
        match *self {}
    }

    pub(super) fn is_constant(&self) -> bool {
        match *self {}
    }
}
