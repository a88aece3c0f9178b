//! Array, set and object operators: `$slice`, `$reverseArray`, `$indexOfArray`, `$zip`, `$sortArray`, `$arrayToObject`/`$objectToArray`, `$allElementsTrue`/`$anyElementTrue`, the `$set*` operators.

use bson::{Bson, Document};

use super::{Locals, Scope};
use crate::error::Result;

/// A parsed operator of this family.
#[derive(Debug, Clone)]
pub enum ArrayExpr {}

impl ArrayExpr {
    /// Parses `{name: arg}`; `None` when `name` is not of this family.
    pub(super) fn parse(_name: &str, _arg: &Bson, _scope: Scope) -> Result<Option<ArrayExpr>> {
        Ok(None)
    }

    pub(super) fn eval(&self, _doc: &Document, _locals: Locals) -> Result<Option<Bson>> {
        match *self {}
    }

    pub(super) fn is_constant(&self) -> bool {
        match *self {}
    }
}
