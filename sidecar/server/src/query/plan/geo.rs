//! Geo index plans: which cell key ranges of a `"2dsphere"` or `"2d"`
//! index hold every document a geo predicate can match (the keys are
//! `argon_wal::indexkey::geo`'s; this module only covers query regions
//! with the same code).
//!
//! The superset rule (see `plan`): a document matching `$geoWithin` or
//! `$geoIntersects` has a location meeting the query region; its cells
//! cover that location and the query's cells cover the region (both with
//! a margin wider than the predicates' 1 cm edge tolerance), so some
//! document cell and some query cell overlap, i.e. one contains the
//! other: the scan reads each query cell's descendants and its ancestors'
//! own ids. The exact predicate re-checks every candidate.
//!
//! Planned: on a 2dsphere index, `$geoWithin` with `$geometry` or
//! `$centerSphere` and `$geoIntersects`; on a 2d index, `$geoWithin` with
//! `$box`, `$polygon` or `$center` (a bounding box of grid cells). Only
//! when the geo field is the index's first (later fields are not bounded)
//! and its path has no numeric component (the matcher may read it as an
//! array position, the keys do not). Other geo queries scan.

use std::ops::Bound;

use argon_wal::indexkey::geo::{self as cells, Cap, Flat, GeoField};
use argon_wal::{CollectionState, IndexKey, KeyInterval, ScanDirection};
use bson::{Bson, Document};

use super::IndexPlan;
use super::bounds::{Bounds, FieldBound};
use crate::query::filter::{Filter, Pred};
use crate::query::geo::predicate::Region;
use crate::query::geo::sphere::{Shape, V3};
use crate::query::geo::{GeoPred, Near, Units};

/// The geo field of an index spec whose first field is one, with its path.
pub fn geo_field(spec: &Document) -> Option<(String, GeoField)> {
    let key = spec.get_document("key").ok()?;
    let (path, direction) = key.iter().next()?;
    let field = GeoField::of(direction, spec)??;
    let numeric = path
        .split('.')
        .any(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (!numeric).then(|| (path.clone(), field))
}

/// Whether an index spec has a geo field anywhere (such an index is only
/// ever used by this module's plans: its keys on that field are cells).
pub fn is_geo(spec: &Document) -> bool {
    spec.get_document("key").is_ok_and(|k| {
        k.values()
            .any(|d| matches!(d, Bson::String(s) if s == "2d" || s == "2dsphere"))
    })
}

/// A scan of geo index `spec` for the filter's `$geoWithin` or
/// `$geoIntersects` on its field, if one of them can be covered.
pub fn plan(coll: &CollectionState, spec: &Document, filter: &Filter) -> Option<IndexPlan> {
    let name = spec.get_str("name").ok()?;
    let shape = coll.index_shape(name)?;
    let (path, field) = geo_field(spec)?;
    let mut preds = Vec::new();
    conjuncts(filter, &path, &mut preds);
    let ranges = preds.iter().find_map(|p| region_ranges(p, field))?;
    Some(scan_of(name, spec, shape.multikey, ranges))
}

/// An index plan over inclusive cell key ranges.
pub fn scan_of(name: &str, spec: &Document, multikey: bool, ranges: Vec<(i64, i64)>) -> IndexPlan {
    let key_pattern = spec.get_document("key").cloned().unwrap_or_default();
    let paths: Vec<String> = key_pattern.keys().cloned().collect();
    let mut fields = vec![FieldBound::All; paths.len()];
    if let Some(first) = fields.first_mut() {
        *first = FieldBound::Cells(
            ranges
                .iter()
                .map(|(lo, hi)| format!("[{lo}, {hi}]"))
                .collect(),
        );
    }
    IndexPlan {
        name: name.to_string(),
        key_pattern,
        paths,
        multikey,
        bounds: Bounds {
            fields,
            intervals: intervals(&ranges),
        },
        direction: ScanDirection::Forward,
        provides_sort: false,
        min_max: None,
    }
}

/// Byte intervals of keys whose first value is in one of `ranges`
/// (whatever the later fields hold).
pub fn intervals(ranges: &[(i64, i64)]) -> Vec<KeyInterval> {
    ranges
        .iter()
        .map(|&(lo, hi)| {
            let enc = |n: i64| {
                let mut out = Vec::with_capacity(17);
                IndexKey::encode_value(&Bson::Int64(n), &mut out);
                out
            };
            let end = IndexKey::prefix_end(&enc(hi));
            (
                Bound::Included(IndexKey::from_bytes(enc(lo))),
                end.map_or(Bound::Unbounded, |e| {
                    Bound::Excluded(IndexKey::from_bytes(e))
                }),
            )
        })
        .collect()
}

fn conjuncts<'a>(filter: &'a Filter, path: &str, out: &mut Vec<&'a GeoPred>) {
    let mut of_pred = |pred: &'a Pred| match pred {
        Pred::Geo(g) => out.push(g),
        Pred::And(ps) => out.extend(ps.iter().filter_map(|p| match p {
            Pred::Geo(g) => Some(&**g),
            _ => None,
        })),
        _ => {}
    };
    match filter {
        Filter::And(fs) => fs.iter().for_each(|f| conjuncts(f, path, out)),
        Filter::Field { path: p, pred } if p == path => of_pred(pred),
        _ => {}
    }
}

fn wal(v: V3) -> cells::V3 {
    v.0
}

/// The smallest cap (of those `Cap::around` builds) holding a shape.
fn shape_cap(shape: &Shape) -> Option<Cap> {
    let mut vs: Vec<cells::V3> = shape.points.iter().copied().map(wal).collect();
    vs.extend(shape.lines.iter().flatten().copied().map(wal));
    for p in &shape.polygons {
        vs.extend(p.outer.v.iter().copied().map(wal));
    }
    Cap::around_vectors(&vs)
}

fn sphere_ranges(cap: Cap) -> Vec<(i64, i64)> {
    cells::query_ranges(&cells::cover(cap, cells::QUERY_CELLS))
}

fn region_ranges(pred: &GeoPred, field: GeoField) -> Option<Vec<(i64, i64)>> {
    match (pred, field) {
        (GeoPred::Intersects(shape), GeoField::Sphere) => Some(sphere_ranges(shape_cap(shape)?)),
        (GeoPred::Within(Region::Sphere(polys)), GeoField::Sphere) => {
            let vs: Vec<cells::V3> = polys
                .iter()
                .flat_map(|p| p.outer.v.iter().copied().map(wal))
                .collect();
            Some(sphere_ranges(Cap::around_vectors(&vs)?))
        }
        (GeoPred::Within(Region::CenterSphere(c, r)), GeoField::Sphere) => {
            Some(sphere_ranges(Cap {
                center: c.0,
                radius: *r,
            }))
        }
        (GeoPred::Within(Region::Box(a, b)), GeoField::Flat(flat)) => {
            Some(flat.cover_box(a.x.min(b.x), a.y.min(b.y), a.x.max(b.x), a.y.max(b.y)))
        }
        (GeoPred::Within(Region::Polygon(vs)), GeoField::Flat(flat)) => {
            let fold = |f: fn(f64, f64) -> f64,
                        init: f64,
                        c: fn(&crate::query::geo::geometry::Pt) -> f64| {
                vs.iter().map(c).fold(init, f)
            };
            Some(flat.cover_box(
                fold(f64::min, f64::INFINITY, |p| p.x),
                fold(f64::min, f64::INFINITY, |p| p.y),
                fold(f64::max, f64::NEG_INFINITY, |p| p.x),
                fold(f64::max, f64::NEG_INFINITY, |p| p.y),
            ))
        }
        (GeoPred::Within(Region::Center(c, r)), GeoField::Flat(flat)) => {
            Some(flat.cover_box(c.x - r, c.y - r, c.x + r, c.y + r))
        }
        _ => None,
    }
}

/// The geo index a `$near` on `path` reads by growing rings, if one can:
/// a 2dsphere index for a spherical query, a 2d one for a flat query.
pub fn near_index<'a>(
    coll: &'a CollectionState,
    path: &str,
    near: &Near,
) -> Option<(&'a Document, GeoField)> {
    coll.indexes().iter().skip(1).find_map(|spec| {
        if matches!(spec.get("hidden"), Some(Bson::Boolean(true))) {
            return None;
        }
        let (p, field) = geo_field(spec)?;
        coll.index_shape(spec.get_str("name").ok()?)?;
        let fits = matches!(
            (near.units, field),
            (Units::Meters | Units::Radians, GeoField::Sphere) | (Units::Flat, GeoField::Flat(_))
        );
        (p == path && fits).then_some((spec, field))
    })
}

/// Key ranges holding every document within `radius` (the query's units)
/// of the `$near` point: a cap on the sphere, a box on a 2d grid.
pub fn near_ranges(near: &Near, field: GeoField, radius: f64) -> Vec<(i64, i64)> {
    match field {
        GeoField::Sphere => {
            let radians = match near.units {
                Units::Meters => radius / crate::query::geo::sphere::EARTH_RADIUS_METERS,
                _ => radius,
            };
            sphere_ranges(Cap {
                center: cells::unit(near.point.x, near.point.y),
                radius: radians,
            })
        }
        GeoField::Flat(flat) => flat_near(flat, near, radius),
    }
}

fn flat_near(flat: Flat, near: &Near, radius: f64) -> Vec<(i64, i64)> {
    let p = near.point;
    flat.cover_box(p.x - radius, p.y - radius, p.x + radius, p.y + radius)
}
