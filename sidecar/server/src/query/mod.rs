//! The query engine: pure functions on `bson::Document`, with no I/O.
//!
//! `compare` is BSON's cross-type order, `path` resolves dotted paths the way
//! MongoDB does through arrays, and the other modules build on those two:
//! filters, update operators, projection, sort, expressions and the
//! aggregation pipeline.

pub mod aggregate;
pub mod bits;
pub mod collation;
pub mod compare;
pub mod expr;
pub mod filter;
pub mod find_meta;
pub mod geo;
pub mod javascript;
pub mod meta;
pub mod path;
pub mod plan;
pub mod positional;
pub mod projection;
pub mod schema;
pub mod sort;
pub mod text;
pub mod update;
pub mod vars;

pub use compare::compare;
pub use filter::{Filter, PartialIndexFilter};
pub use projection::Projection;
pub use sort::SortSpec;
pub use update::UpdateSpec;
