//! Aggregation expression operators through the Rust driver against the
//! real binary, one module per family (the families of
//! `src/query/expr/`): answers as MongoDB's manual gives them, in `$project`,
//! `$addFields` and `find`'s `$expr`, and MongoDB's codes for errors.

use crate::common::{self, aggregate};

mod binder;
mod convert;
mod date;
mod math;
mod string;
