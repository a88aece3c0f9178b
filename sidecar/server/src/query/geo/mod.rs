//! Geospatial queries and indexes: GeoJSON and legacy coordinate pairs
//! (`geometry`), spherical and flat geometry (`sphere`, `planar`), the
//! validity MongoDB's S2 demands of polygons (`validity`), the query
//! operators (`predicate`), 2dsphere and 2d index specs and the write rule
//! under them (`index`); the `$geoNear` stage is `aggregate::geo_near`.
//!
//! Geometry is Argon's own (no crate): unit vectors and great-circle arcs
//! for the sphere, the plane for 2d; MongoDB's earth radius (6378.1 km)
//! for metres.
//!
//! Geo indexes have key maps (cells, `argon_wal::indexkey::geo`): a
//! `$geoWithin`/`$geoIntersects` the index can cover reads it
//! (`plan::geo`), and a `find`'s `$near` with a limit reads it in growing
//! rings (`commands::read`); both re-check every candidate. Otherwise
//! `$geoWithin` and `$geoIntersects` test each document (O(n) documents,
//! each in O(|query shape| × |document shape|)); `$near`, `$nearSphere`
//! and `$geoNear` measure each document's distance and order them through
//! the blocking sort (`spill::ExternalSorter`: within the blocking-stage
//! budget, spilling past it), O(n log n). Indexes also decide what MongoDB
//! decides with them: `$near` needs one (291), writes are refused what the
//! index cannot take (16755...).

pub mod geometry;
pub mod index;
pub mod planar;
pub mod predicate;
pub mod sphere;
pub mod validity;

use argon_wal::CollectionState;
use bson::{Bson, Document, doc};

use super::filter::{ElemMatch, Filter, Pred};
use super::sort::SortSpec;
use crate::error::{CommandError, ErrorCode, Result};
use crate::spill::{ExternalSorter, Sorted, StageBudget};
pub use index::{GeoIndex, Kind};
pub use predicate::{GeoPred, Near, Units};

/// A filter's `$near`/`$nearSphere` (at the top level or under `$and`,
/// where a command's query takes it): its path and predicate.
pub fn near_of(filter: &Filter) -> Option<(&str, &Near)> {
    match filter {
        Filter::Field { path, pred } => near_of_pred(pred).map(|n| (path.as_str(), n)),
        Filter::And(fs) => fs.iter().find_map(near_of),
        _ => None,
    }
}

fn near_of_pred(pred: &Pred) -> Option<&Near> {
    match pred {
        Pred::Geo(g) => match &**g {
            GeoPred::Near(n) => Some(n),
            _ => None,
        },
        Pred::And(ps) => ps.iter().find_map(near_of_pred),
        _ => None,
    }
}

/// `$near`s of a filter: `(where a query takes them, anywhere else)`.
fn count_near(filter: &Filter, top: bool) -> (usize, usize) {
    let add = |a: (usize, usize), b: (usize, usize)| (a.0 + b.0, a.1 + b.1);
    match filter {
        Filter::And(fs) => fs.iter().map(|f| count_near(f, top)).fold((0, 0), add),
        Filter::Or(fs) | Filter::Nor(fs) => {
            fs.iter().map(|f| count_near(f, false)).fold((0, 0), add)
        }
        Filter::Field { pred, .. } => count_near_pred(pred, top),
        _ => (0, 0),
    }
}

fn count_near_pred(pred: &Pred, top: bool) -> (usize, usize) {
    let add = |a: (usize, usize), b: (usize, usize)| (a.0 + b.0, a.1 + b.1);
    match pred {
        Pred::Geo(g) if matches!(**g, GeoPred::Near(_)) => {
            if top {
                (1, 0)
            } else {
                (0, 1)
            }
        }
        Pred::And(ps) => ps.iter().map(|p| count_near_pred(p, top)).fold((0, 0), add),
        Pred::Not(p) => count_near_pred(p, false),
        Pred::All(ps) => ps
            .iter()
            .map(|p| count_near_pred(p, false))
            .fold((0, 0), add),
        Pred::ElemMatch(em) => match &**em {
            ElemMatch::Query(f) => count_near(f, false),
            ElemMatch::Value(ps) => ps
                .iter()
                .map(|p| count_near_pred(p, false))
                .fold((0, 0), add),
        },
        _ => (0, 0),
    }
}

fn not_allowed() -> CommandError {
    CommandError::bad_value("$geoNear, $near, and $nearSphere are not allowed in this context")
}

/// A command's query: one `$near`, at the top level or under `$and`.
pub fn check_query(filter: &Filter) -> Result<()> {
    let (top, nested) = count_near(filter, true);
    if nested > 0 {
        return Err(CommandError::bad_value("geoNear must be top-level expr"));
    }
    if top > 1 {
        return Err(CommandError::bad_value("Too many geoNear expressions"));
    }
    Ok(())
}

/// A filter that is not a command's query (a validator, `$pull`, a
/// partial index filter...): no `$near` at all.
pub fn refuse_near(filter: &Filter) -> Result<()> {
    let (top, nested) = count_near(filter, true);
    if top + nested > 0 {
        return Err(not_allowed());
    }
    Ok(())
}

/// Whether a filter document mentions `$near`/`$nearSphere` anywhere.
pub fn mentions_near(filter: &Document) -> bool {
    fn any(v: &Bson) -> bool {
        match v {
            Bson::Document(d) => mentions_near(d),
            Bson::Array(items) => items.iter().any(any),
            _ => false,
        }
    }
    filter
        .iter()
        .any(|(k, v)| k == "$near" || k == "$nearSphere" || any(v))
}

/// `$near` in an aggregation `$match` (MongoDB's 5626500).
pub fn not_in_match() -> CommandError {
    CommandError::new(
        ErrorCode::Location5626500,
        "$geoNear, $near, and $nearSphere are not allowed in this context, as these operators require sorting geospatial data. If you do not need sort, consider using $geoWithin instead. Check https://dochub.mongodb.org/core/near-sort-operation and https://dochub.mongodb.org/core/nearSphere-sort-operation",
    )
}

/// Whether a geo index of `kind` answers a `$near`/`$geoNear` measuring
/// in `units` (a GeoJSON point needs 2dsphere, a flat legacy query 2d, a
/// spherical legacy one either), as MongoDB's planner decides.
pub fn answers(kind: Kind, units: Units) -> bool {
    matches!(
        (units, kind),
        (Units::Meters, Kind::Sphere) | (Units::Radians, _) | (Units::Flat, Kind::Flat { .. })
    )
}

/// Whether the geo index `g` on `path` serves a `$near` of `units`.
fn serves(g: &GeoIndex, path: &str, units: Units) -> bool {
    g.field == path && answers(g.kind, units)
}

/// A `$near` needs a geo index on its path (MongoDB's 291 otherwise).
pub fn require_index(filter: &Filter, coll: Option<&CollectionState>) -> Result<()> {
    let Some((path, near)) = near_of(filter) else {
        return Ok(());
    };
    let found = coll.is_some_and(|c| {
        c.indexes()
            .iter()
            .filter(|spec| !spec.get_bool("hidden").unwrap_or(false))
            .flat_map(GeoIndex::from_spec)
            .any(|g| serves(&g, path, near.units))
    });
    if found {
        Ok(())
    } else {
        Err(CommandError::new(
            ErrorCode::NoQueryExecutionPlans,
            "error processing query: planner returned error :: caused by :: unable to find index for $geoNear query",
        ))
    }
}

/// A write's document under the collection's geo indexes (MongoDB's
/// 16755, 16804, 13026, 13027).
pub fn check_document(coll: Option<&CollectionState>, doc: &Document) -> Result<()> {
    match coll {
        Some(c) => index::check_document(c.indexes(), doc),
        None => Ok(()),
    }
}

/// Documents ordered by a distance computed outside them (`$near`,
/// `$geoNear`), through the blocking sort: each is held as
/// `{k: distance, d: document}` and given back unwrapped.
pub struct DistanceSorter(ExternalSorter);

impl DistanceSorter {
    pub fn new(budget: StageBudget, limit: Option<usize>) -> DistanceSorter {
        // Ties by `_id`, whichever way the documents came (a scan in
        // `_id` order or an index's rings).
        let spec = SortSpec::parse(&doc! {"k": 1, "d._id": 1}).unwrap_or_default();
        DistanceSorter(ExternalSorter::new(spec, budget).with_limit(limit))
    }

    pub fn push(&mut self, distance: f64, doc: Document) -> Result<()> {
        self.0.push(&doc! {"k": distance, "d": doc})
    }

    pub fn finish(self) -> Result<Sorted> {
        Ok(Sorted::Inner(Box::new(self.0.finish()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn near_is_taken_only_at_the_top_of_a_query() {
        let near = doc! {"loc": {"$near": [0, 0]}};
        let q = |f: Document| Filter::parse_query(&f).map(|_| ());
        assert!(q(near.clone()).is_ok());
        assert!(q(doc! {"$and": [near.clone(), {"a": 1}]}).is_ok());
        assert_eq!(
            q(doc! {"$or": [near.clone(), {"a": 1}]})
                .unwrap_err()
                .message,
            "geoNear must be top-level expr"
        );
        assert_eq!(
            q(doc! {"$and": [near.clone(), {"b": {"$nearSphere": [0, 0]}}]})
                .unwrap_err()
                .message,
            "Too many geoNear expressions"
        );
        assert!(q(doc! {"a": {"$elemMatch": near.clone()}}).is_err());
        assert!(q(doc! {"loc": {"$not": {"$near": [0, 0]}}}).is_err());
        // Elsewhere (validators, $pull...): not allowed.
        assert_eq!(Filter::parse(&near).unwrap_err().code.code(), 2);
        assert!(mentions_near(&doc! {"$and": [near]}));
        assert!(q(doc! {"loc": {"$maxDistance": 3}}).is_err());
    }

    #[test]
    fn near_needs_a_matching_index() {
        let f = Filter::parse_query(
            &doc! {"loc": {"$near": {"$geometry": {"type": "Point", "coordinates": [0, 0]}}}},
        )
        .unwrap();
        let err = require_index(&f, None).unwrap_err();
        assert_eq!(err.code.code(), 291);
        let (path, near) = near_of(&f).unwrap();
        assert_eq!(path, "loc");
        let sphere = GeoIndex::from_spec(&doc! {"name": "s", "key": {"loc": "2dsphere"}}).remove(0);
        let flat = GeoIndex::from_spec(&doc! {"name": "f", "key": {"loc": "2d"}}).remove(0);
        assert!(serves(&sphere, path, near.units));
        assert!(!serves(&flat, path, near.units));
        assert!(!serves(&sphere, "other", near.units));
        assert!(serves(&flat, "loc", Units::Flat));
        assert!(!serves(&sphere, "loc", Units::Flat));
        assert!(serves(&sphere, "loc", Units::Radians));
    }
}
