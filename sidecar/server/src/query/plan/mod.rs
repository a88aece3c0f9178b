//! Query planning: which way a read reaches the documents a filter may
//! match — a point lookup by `_id` (`IDHACK`), a scan of a secondary
//! index's key map over bounds (`IXSCAN` then `FETCH`), or the collection
//! in `_id` order (`COLLSCAN`), or the terms of a text index (`TEXT`).
//! One module per idea: `bounds` (intervals from a filter), `choose` (the
//! plan), `access` (running it, resumably), `index_key` (the key a plan
//! reached a document under), `min_max`, `text` (`$text` plans).
//!
//! The correctness rule every plan keeps: an index plan yields a SUPERSET
//! of the `_id`s of the documents the filter matches, each once (a
//! multikey index holds a document under several keys: `access`
//! deduplicates), and every candidate is still checked against the whole
//! filter. So a bound may only drop documents the filter cannot match:
//! bounds come from predicates of the filter's top-level conjunction alone
//! (each is implied by a match) and only where the key encoding finds
//! exactly what the matcher matches:
//! - no plan under a collation other than the simple one (key maps exist
//!   only for indexes without one, and compare strings as bytes);
//! - equality and `$in` values are scalars of the bracketed types
//!   (numbers but not NaN or Decimal128, strings, ObjectIds, booleans,
//!   dates): not `null`, arrays, sub-documents or regexes;
//! - ranges (`$gt/$gte/$lt/$lte`) are type-bracketed as MongoDB's;
//! - an index holding a Decimal128 key is not used (Decimal128 keys apart
//!   from the other numbers), nor a path with a numeric component;
//! - `$ne`, `$nin`, `$not`, `$nor`, `$or`, `$expr`, `$where` and regexes
//!   give no bounds; a filter with `$text` is planned only by `text` (the
//!   documents keyed under its positive terms: see there why that is a
//!   superset).
//!
//! Order: without a sort an index plan returns index order (as MongoDB's
//! does; over a mixed-direction index through a sort by its key pattern,
//! `commands::read::index_order`, since key maps ascend on every field). An index gives a sort only when it is neither multikey (MongoDB
//! sorts an array by its least or greatest element, an index by each) nor
//! sparse (it misses documents).

pub mod access;
pub mod bounds;
pub mod choose;
pub mod geo;
pub mod index_key;
pub mod min_max;
pub mod text;

pub use access::Access;
pub use choose::{choose, choose_bounded};

use argon_wal::ScanDirection;
use bson::{Bson, Document};

use bounds::Bounds;

/// How a read reaches its candidates.
#[derive(Clone, Debug)]
pub enum Plan {
    /// Every document in `_id` order.
    Collscan,
    /// Every document in natural order (`{$natural: ±1}` as hint or sort):
    /// insertion order for a capped collection, `_id` order otherwise;
    /// `Backward` reverses it.
    Natural(ScanDirection),
    /// Point lookups of these `_id`s, in `_id` order (`_id` equality or
    /// `$in` of scalars); `exact` when the filter is that predicate alone.
    IdHack {
        ids: Vec<Bson>,
        exact: bool,
    },
    Index(IndexPlan),
    /// `min`/`max` over an index without a key map (`_id_`, a partial or
    /// collated index): the collection in `_id` order, keeping documents
    /// with a key in the range (`min_max`).
    KeyRange(std::sync::Arc<min_max::KeyRange>),
    /// A `$text` read through the text index's term keys.
    Text(Box<text::TextPlan>),
}

/// A scan of one secondary index's key map.
#[derive(Clone, Debug)]
pub struct IndexPlan {
    pub name: String,
    pub key_pattern: Document,
    /// The index's fields, in spec order.
    pub paths: Vec<String>,
    pub multikey: bool,
    pub bounds: Bounds,
    /// Physical order over the key map (ascending on every field).
    pub direction: ScanDirection,
    /// Whether this scan's order is the query's sort.
    pub provides_sort: bool,
    /// `find`'s `min`/`max`, when they (not the filter) bound the scan.
    pub min_max: Option<min_max::MinMax>,
}

impl IndexPlan {
    /// MongoDB's `direction`: relative to the index's own first field.
    pub fn shown_direction(&self) -> &'static str {
        let first_ascending = self
            .key_pattern
            .iter()
            .next()
            .and_then(|(_, d)| crate::query::compare::as_f64(d))
            .is_none_or(|d| d >= 0.0);
        if (self.direction == ScanDirection::Forward) == first_ascending {
            "forward"
        } else {
            "backward"
        }
    }
}

impl Plan {
    /// The index scan the plan runs, if it runs one.
    pub fn index_scan(&self) -> Option<&IndexPlan> {
        match self {
            Plan::Index(p) => Some(p),
            Plan::Text(t) => Some(&t.scan),
            _ => None,
        }
    }

    /// Whether the plan's order is the query's sort (no blocking sort).
    pub fn provides_sort(&self) -> bool {
        matches!(self, Plan::Index(p) if p.provides_sort)
    }

    /// The plan's stages as MongoDB's explain shows them (`filter` is the
    /// parsed query, shown on the stage that applies it).
    pub fn explain(&self, filter: &Document) -> Document {
        let with_filter = |mut d: Document| {
            if !filter.is_empty() {
                d.insert("filter", filter.clone());
            }
            d
        };
        match self {
            Plan::Collscan | Plan::Natural(ScanDirection::Forward) => {
                with_filter(bson::doc! {"stage": "COLLSCAN", "direction": "forward"})
            }
            Plan::Natural(ScanDirection::Backward) => {
                with_filter(bson::doc! {"stage": "COLLSCAN", "direction": "backward"})
            }
            Plan::IdHack { exact: true, .. } => bson::doc! {"stage": "IDHACK"},
            Plan::IdHack { .. } => {
                with_filter(bson::doc! {"stage": "FETCH", "inputStage": {"stage": "IDHACK"}})
            }
            Plan::Index(p) => with_filter(bson::doc! {
                "stage": "FETCH",
                "inputStage": {
                    "stage": "IXSCAN",
                    "keyPattern": p.key_pattern.clone(),
                    "indexName": p.name.clone(),
                    "isMultiKey": p.multikey,
                    "direction": p.shown_direction(),
                    "indexBounds": match &p.min_max {
                        Some(m) => m.range.shown(),
                        None => p.bounds.shown(&p.paths, p.direction == ScanDirection::Backward),
                    },
                },
            }),
            Plan::Text(t) => t.explain(),
            Plan::KeyRange(r) => with_filter(bson::doc! {
                "stage": "COLLSCAN",
                "direction": "forward",
                "indexBounds": r.shown(),
            }),
        }
    }
}
