//! Date operators: parts (`$year` ... `$millisecond`, ISO weeks), `$dateToString`, `$dateFromString`, `$dateFromParts`, `$dateToParts`, `$dateAdd`, `$dateSubtract`, `$dateDiff`, `$dateTrunc`, with time zones.

use bson::{Bson, Document};

use super::{Locals, Scope};
use crate::error::Result;

/// A parsed operator of this family.
#[derive(Debug, Clone)]
pub enum DateExpr {}

impl DateExpr {
    /// Parses `{name: arg}`; `None` when `name` is not of this family.
    pub(super) fn parse(_name: &str, _arg: &Bson, _scope: Scope) -> Result<Option<DateExpr>> {
        Ok(None)
    }

    pub(super) fn eval(&self, _doc: &Document, _locals: Locals) -> Result<Option<Bson>> {
        match *self {}
    }

    pub(super) fn is_constant(&self) -> bool {
        match *self {}
    }
}
