//! `$geoNear`: the documents of the collection nearest a point first, each
//! with its distance (`distanceField`, times `distanceMultiplier`) and,
//! with `includeLocs`, the location measured to. Only as a pipeline's
//! first stage, over the collection's geo index named by `key` (or its
//! only one), as MongoDB runs it.
//!
//! Evaluated by a scan (see `query::geo`): each document passing `query`
//! is measured and kept within `minDistance`/`maxDistance`, then ordered
//! through the same blocking `$sort` (`ops::sort`) as everything else,
//! keyed by `{k: distance, d: document}` as `$sample` keys its documents,
//! so a large result spills past the stage budget like a sort.

use argon_wal::CollectionState;
use bson::{Bson, Document, doc};

use super::super::compare::as_f64;
use super::super::filter::Filter;
use super::super::geo::{GeoIndex, GeoPred, Kind, Near};
use super::super::meta;
use super::super::path::{resolve, set};
use super::super::sort::SortSpec;
use super::{Cx, Op, ops};
use crate::error::{CommandError, ErrorCode, Result};
use crate::spill::StageBudget;

const KEY: &str = "k";
const DOC: &str = "d";

/// A parsed `$geoNear` stage.
#[derive(Debug, Clone)]
pub(crate) struct GeoNear {
    near: Near,
    /// The indexed field measured: `key`, or the index found by `bind`.
    key: Option<String>,
    distance_field: String,
    include_locs: Option<String>,
    multiplier: f64,
    query: Filter,
    /// The sort of the keyed documents (parsed once).
    order: SortSpec,
}

fn type_mismatch(m: impl Into<String>) -> CommandError {
    CommandError::type_mismatch(m)
}

fn non_negative(spec: &Document, name: &str) -> Result<Option<f64>> {
    let Some(v) = spec.get(name) else {
        return Ok(None);
    };
    let Some(n) = as_f64(v) else {
        return Err(type_mismatch(format!("{name} must be a number")));
    };
    if n.is_nan() || n < 0.0 {
        return Err(CommandError::bad_value(format!(
            "{name} must be nonnegative"
        )));
    }
    Ok(Some(n))
}

impl GeoNear {
    pub(crate) fn parse(arg: &Bson) -> Result<GeoNear> {
        let Bson::Document(spec) = arg else {
            return Err(type_mismatch("$geoNear argument must be an object"));
        };
        for (k, _) in spec {
            match k.as_str() {
                "near" | "distanceField" | "spherical" | "maxDistance" | "minDistance"
                | "query" | "includeLocs" | "distanceMultiplier" | "key" => {}
                "num" | "limit" | "start" => {
                    return Err(CommandError::bad_value(format!(
                        "$geoNear no longer supports the '{k}' option"
                    )));
                }
                _ => {
                    return Err(CommandError::new(
                        ErrorCode::Location40415,
                        format!("BSON field '$geoNear.{k}' is an unknown field."),
                    ));
                }
            }
        }
        let near = match spec.get("near") {
            Some(v @ (Bson::Array(_) | Bson::Document(_))) => v,
            _ => {
                return Err(CommandError::bad_value(
                    "$geoNear requires a 'near' option as an Array",
                ));
            }
        };
        let distance_field = match spec.get("distanceField") {
            Some(Bson::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(CommandError::bad_value(
                    "$geoNear requires a 'distanceField' option as a String",
                ));
            }
        };
        crate::limits::check_path(&distance_field)?;
        let include_locs = match spec.get("includeLocs") {
            None => None,
            Some(Bson::String(s)) if !s.is_empty() => {
                crate::limits::check_path(s)?;
                Some(s.clone())
            }
            Some(_) => return Err(type_mismatch("includeLocs must be a string")),
        };
        let key = match spec.get("key") {
            None => None,
            Some(Bson::String(s)) if s.is_empty() => {
                return Err(CommandError::bad_value(
                    "$geoNear parameter 'key' cannot be the empty string",
                ));
            }
            Some(Bson::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(type_mismatch(format!(
                    "$geoNear parameter 'key' must be of type string but found type: {}",
                    super::super::expr::type_name(other)
                )));
            }
        };
        let query = match spec.get("query") {
            None => Filter::And(Vec::new()),
            Some(Bson::Document(q)) => Filter::parse(q)?,
            Some(_) => return Err(type_mismatch("query must be an object")),
        };
        let spherical = spec
            .get("spherical")
            .is_some_and(super::super::expr::truthy);
        // The point and its units as `$near`/`$nearSphere` would take them
        // (a GeoJSON point is spherical, in metres, whatever `spherical`).
        let op = if spherical { "$nearSphere" } else { "$near" };
        let mut siblings = Document::new();
        if let Some(max) = non_negative(spec, "maxDistance")? {
            siblings.insert("$maxDistance", max);
        }
        if let Some(min) = non_negative(spec, "minDistance")? {
            siblings.insert("$minDistance", min);
        }
        let GeoPred::Near(near) = GeoPred::parse(op, near, &siblings)? else {
            return Err(CommandError::bad_value("$geoNear requires a point"));
        };
        Ok(GeoNear {
            near,
            key,
            distance_field,
            include_locs,
            multiplier: non_negative(spec, "distanceMultiplier")?.unwrap_or(1.0),
            query,
            order: SortSpec::parse(&doc! {KEY: 1})?,
        })
    }

    /// Chooses the geo index measured, as MongoDB: `key` when given, else
    /// the only 2d index, else the only 2dsphere one (27 when none or
    /// several); an index that cannot answer the point's units is
    /// MongoDB's "unable to find index" (2).
    pub(crate) fn bind(&mut self, coll: Option<&CollectionState>, ns: &str) -> Result<()> {
        let indexes: Vec<GeoIndex> = coll
            .map(|c| GeoIndex::of_collection(c.indexes()))
            .unwrap_or_default();
        let chosen = match &self.key {
            Some(key) => indexes.iter().find(|g| &g.field == key).ok_or_else(|| {
                CommandError::bad_value(format!(
                    "$geoNear requires a 2d or 2dsphere index on '{key}', but none was found"
                ))
            })?,
            None => {
                let flat: Vec<&GeoIndex> = indexes
                    .iter()
                    .filter(|g| matches!(g.kind, Kind::Flat { .. }))
                    .collect();
                let sphere: Vec<&GeoIndex> =
                    indexes.iter().filter(|g| g.kind == Kind::Sphere).collect();
                let (pick, what) = if flat.is_empty() {
                    (sphere, "2dsphere")
                } else {
                    (flat, "2d")
                };
                match pick.as_slice() {
                    [one] => *one,
                    [] => {
                        return Err(CommandError::new(
                            ErrorCode::IndexNotFound,
                            "$geoNear requires a 2d or 2dsphere index, but none were found",
                        ));
                    }
                    _ => {
                        return Err(CommandError::new(
                            ErrorCode::IndexNotFound,
                            format!(
                                "There is more than one {what} index on {ns}; unsure which to use for $geoNear"
                            ),
                        ));
                    }
                }
            }
        };
        let fits = super::super::geo::answers(chosen.kind, self.near.units);
        if !fits {
            return Err(CommandError::bad_value(
                "error processing query: planner returned error :: caused by :: unable to find index for $geoNear query",
            ));
        }
        self.key = Some(chosen.field.clone());
        Ok(())
    }

    pub(super) fn stream(self, input: Box<dyn Op>, budget: StageBudget) -> Box<dyn Op> {
        let order = self.order.clone();
        let keyed = Box::new(Keyed { input, spec: self });
        Box::new(Unkeyed {
            input: ops::sort(keyed, order, None, budget, false),
        })
    }
}

/// `{k: distance, d: document with its distance}` for each input
/// document that passes `query` and lies within range.
struct Keyed {
    input: Box<dyn Op>,
    spec: GeoNear,
}

impl Op for Keyed {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        let s = &self.spec;
        // Bound by the handler; unbound (a bug) measures nothing.
        let Some(key) = s.key.as_deref() else {
            return Err(CommandError::new(
                ErrorCode::IndexNotFound,
                "$geoNear requires a 2d or 2dsphere index, but none were found",
            ));
        };
        while let Some(mut d) = self.input.next(cx)? {
            cx.tick()?;
            if !s.query.try_matches(&d)? {
                continue;
            }
            let values = resolve(&d, key).values;
            let Some(distance) = s.near.distance(&values) else {
                continue;
            };
            if distance < s.near.min || distance > s.near.max {
                continue;
            }
            // What `distanceField` and `includeLocs` write is also the
            // document's `geoNearDistance` and `geoNearPoint` metadata
            // (`query::meta`), whether or not those fields are asked for.
            let loc = s.near.nearest(&values).cloned();
            let scaled = distance * s.multiplier;
            set(&mut d, &s.distance_field, Bson::Double(scaled))?;
            if let (Some(field), Some(loc)) = (&s.include_locs, &loc) {
                set(&mut d, field, loc.clone())?;
            }
            meta::update(|m| {
                m.geo_near_distance = Some(scaled);
                m.geo_near_point = loc;
            });
            return Ok(Some(doc! {KEY: distance, DOC: d}));
        }
        Ok(None)
    }
}

struct Unkeyed {
    input: Box<dyn Op>,
}

impl Op for Unkeyed {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        Ok(match self.input.next(cx)? {
            Some(mut w) => match w.remove(DOC) {
                Some(Bson::Document(d)) => Some(d),
                _ => return Err(crate::spill::damaged()),
            },
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::bson;

    #[test]
    fn options_are_checked_as_mongodb_checks_them() {
        let ok = bson!({"near": {"type": "Point", "coordinates": [0, 0]}, "distanceField": "d", "spherical": true, "maxDistance": 5, "query": {"a": 1}, "includeLocs": "l", "distanceMultiplier": 0.001, "key": "loc"});
        assert!(GeoNear::parse(&ok).is_ok());
        for (bad, code) in [
            (bson!({"distanceField": "d"}), 2),
            (bson!({"near": [0, 0]}), 2),
            (bson!({"near": [0, 0], "distanceField": 1}), 2),
            (
                bson!({"near": [0, 0], "distanceField": "d", "maxDistance": -1}),
                2,
            ),
            (
                bson!({"near": [0, 0], "distanceField": "d", "maxDistance": "x"}),
                14,
            ),
            (
                bson!({"near": [0, 0], "distanceField": "d", "distanceMultiplier": -2}),
                2,
            ),
            (
                bson!({"near": [0, 0], "distanceField": "d", "query": 3}),
                14,
            ),
            (bson!({"near": [0, 0], "distanceField": "d", "key": 3}), 14),
            (bson!({"near": [0, 0], "distanceField": "d", "key": ""}), 2),
            (bson!({"near": [0, 0], "distanceField": "d", "num": 3}), 2),
            (
                bson!({"near": [0, 0], "distanceField": "d", "bogus": 3}),
                40415,
            ),
            (bson!({"near": [f64::NAN, 0], "distanceField": "d"}), 2),
            (
                bson!({"near": [0, 0], "distanceField": "d", "query": {"l": {"$near": [0, 0]}}}),
                2,
            ),
            (bson!(5), 14),
        ] {
            assert_eq!(GeoNear::parse(&bad).unwrap_err().code.code(), code, "{bad}");
        }
    }

    #[test]
    fn index_choice() {
        let mut g = GeoNear::parse(&bson!({"near": [0, 0], "distanceField": "d"})).unwrap();
        assert_eq!(g.bind(None, "db.c").unwrap_err().code.code(), 27);
        let _ = &mut g;
    }
}
