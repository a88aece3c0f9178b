//! Arithmetic, trigonometry, logarithms, rounding and bitwise operators.

use bson::{Bson, Document};

use super::{Locals, Scope};
use crate::error::Result;

/// A parsed operator of this family.
#[derive(Debug, Clone)]
pub enum MathExpr {}

impl MathExpr {
    /// Parses `{name: arg}`; `None` when `name` is not of this family.
    pub(super) fn parse(_name: &str, _arg: &Bson, _scope: Scope) -> Result<Option<MathExpr>> {
        Ok(None)
    }

    pub(super) fn eval(&self, _doc: &Document, _locals: Locals) -> Result<Option<Bson>> {
        match *self {}
    }

    pub(super) fn is_constant(&self) -> bool {
        match *self {}
    }
}
