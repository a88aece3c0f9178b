//! The geospatial query operators of a filter: `$geoWithin` (`$within`)
//! with `$geometry`, `$box`, `$polygon`, `$center` or `$centerSphere`;
//! `$geoIntersects` with `$geometry`; `$near` and `$nearSphere` with
//! `$minDistance`/`$maxDistance`. Parsed once into a [`GeoPred`] (a bad
//! shape is MongoDB's BadValue even on an empty collection), then matched
//! against the values a path reaches.
//!
//! Units of `$near`/`$nearSphere`, as MongoDB documents them: a GeoJSON
//! point measures in metres on the sphere; a legacy pair with `$near`
//! measures flat, in coordinate units (a 2d index); with `$nearSphere`, in
//! radians on the sphere.

use bson::{Bson, Document};

use super::super::compare::as_f64;
use super::geometry::{self, Geometry, Location, Pt};
use super::planar;
use super::sphere::{EARTH_RADIUS_METERS, SPolygon, Shape, V3, angle};
use super::validity;
use crate::error::{CommandError, Result};

/// A parsed geospatial predicate.
#[derive(Debug, Clone)]
pub enum GeoPred {
    Within(Region),
    Intersects(Box<Shape>),
    Near(Near),
}

/// A `$geoWithin` region.
#[derive(Debug, Clone)]
pub enum Region {
    /// `$geometry`: a Polygon or MultiPolygon on the sphere.
    Sphere(Vec<SPolygon>),
    Box(Pt, Pt),
    Polygon(Vec<Pt>),
    Center(Pt, f64),
    /// `$centerSphere`: a cap, its radius in radians.
    CenterSphere(V3, f64),
}

/// How a `$near` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// A GeoJSON point: metres on the sphere (needs a 2dsphere index).
    Meters,
    /// A legacy pair with `$nearSphere`: radians (a 2d or 2dsphere index).
    Radians,
    /// A legacy pair with `$near`: flat coordinate units (a 2d index).
    Flat,
}

/// `$near` / `$nearSphere`.
#[derive(Debug, Clone)]
pub struct Near {
    pub point: Pt,
    pub units: Units,
    pub min: f64,
    pub max: f64,
}

fn bad(message: impl Into<String>) -> CommandError {
    CommandError::bad_value(message)
}

impl GeoPred {
    /// The predicate of operator `op` (one of [`OPERATORS`]); `siblings` is
    /// the whole operator document (where a legacy `$near` finds its
    /// `$maxDistance`).
    pub fn parse(op: &str, arg: &Bson, siblings: &Document) -> Result<GeoPred> {
        match op {
            "$geoWithin" | "$within" => Ok(GeoPred::Within(parse_region(arg)?)),
            "$geoIntersects" => {
                let g = geometry_arg(arg, "$geoIntersects")?;
                Ok(GeoPred::Intersects(Box::new(Shape::of(&g))))
            }
            _ => Ok(GeoPred::Near(parse_near(op, arg, siblings)?)),
        }
    }

    /// Whether the values at the predicate's path satisfy it.
    pub fn matches(&self, values: &[&Bson]) -> bool {
        match self {
            GeoPred::Near(n) => n.distance(values).is_some_and(|d| n.in_range(d)),
            _ => locations(values).any(|l| self.matches_location(&l)),
        }
    }

    fn matches_location(&self, l: &Location) -> bool {
        match self {
            GeoPred::Within(region) => region.contains(l),
            GeoPred::Intersects(shape) => spherical(l).is_some_and(|s| s.intersects(shape)),
            GeoPred::Near(_) => false,
        }
    }
}

/// The operators this module parses.
pub const OPERATORS: &[&str] = &[
    "$geoWithin",
    "$within",
    "$geoIntersects",
    "$near",
    "$nearSphere",
];

/// The locations among the values a path reached: each value, or each
/// element of an array that is not itself a point.
fn locations<'a>(values: &'a [&'a Bson]) -> impl Iterator<Item = Location> + 'a {
    values.iter().flat_map(|v| {
        let own = geometry::location(v).ok();
        let elements: Vec<Location> = match (v, &own) {
            (Bson::Array(items), None) => items
                .iter()
                .filter_map(|e| geometry::location(e).ok())
                .collect(),
            _ => Vec::new(),
        };
        own.into_iter().chain(elements)
    })
}

/// A location on the sphere (a legacy pair only when it is a valid
/// longitude/latitude).
fn spherical(l: &Location) -> Option<Shape> {
    match l {
        Location::GeoJson(g) => Some(Shape::of(g)),
        Location::Legacy(p) => geometry::lng_lat(*p).ok().map(Shape::point),
    }
}

/// The point of a location, for flat shapes (a legacy pair or a GeoJSON
/// Point).
fn flat_point(l: &Location) -> Option<Pt> {
    match l {
        Location::Legacy(p) | Location::GeoJson(Geometry::Point(p)) => Some(*p),
        _ => None,
    }
}

impl Region {
    fn contains(&self, l: &Location) -> bool {
        match self {
            Region::Sphere(polys) => spherical(l).is_some_and(|s| s.within(polys)),
            Region::CenterSphere(c, r) => spherical(l).is_some_and(|s| s.within_cap(*c, *r)),
            Region::Box(a, b) => flat_point(l).is_some_and(|p| planar::in_box(p, *a, *b)),
            Region::Polygon(vs) => flat_point(l).is_some_and(|p| planar::in_polygon(p, vs)),
            Region::Center(c, r) => flat_point(l).is_some_and(|p| planar::in_circle(p, *c, *r)),
        }
    }
}

/// A `$geometry` argument as a checked GeoJSON geometry (polygons valid on
/// the sphere).
fn geometry_arg(arg: &Bson, op: &str) -> Result<Geometry> {
    let Bson::Document(d) = arg else {
        return Err(bad(format!("{op} argument must be an object: {arg}")));
    };
    let Some(Bson::Document(g)) = d.get("$geometry") else {
        return Err(bad(format!(
            "{op} not supported with provided geometry: {d}"
        )));
    };
    if d.len() != 1 {
        return Err(bad(format!(
            "{op} not supported with provided geometry: {d}"
        )));
    }
    let geometry = geometry::geojson(g).map_err(bad)?;
    check_polygons(&geometry).map_err(bad)?;
    Ok(geometry)
}

/// Every polygon of a geometry valid on the sphere (`validity`).
pub fn check_polygons(g: &Geometry) -> std::result::Result<(), String> {
    match g {
        Geometry::Polygon(p) => validity::check_polygon(p),
        Geometry::MultiPolygon(ps) => ps.iter().try_for_each(validity::check_polygon),
        Geometry::Collection(gs) => gs.iter().try_for_each(check_polygons),
        _ => Ok(()),
    }
}

fn parse_region(arg: &Bson) -> Result<Region> {
    let Bson::Document(d) = arg else {
        return Err(bad(format!("$geoWithin argument must be an object: {arg}")));
    };
    let unsupported = || {
        bad(format!(
            "$geoWithin not supported with provided geometry: {d}"
        ))
    };
    let mut it = d.iter();
    let (Some((shape, value)), None) = (it.next(), it.next()) else {
        return Err(unsupported());
    };
    Ok(match shape.as_str() {
        "$geometry" => match geometry_arg(arg, "$geoWithin")? {
            Geometry::Polygon(p) => Region::Sphere(vec![SPolygon::new(&p.rings)]),
            Geometry::MultiPolygon(ps) => {
                Region::Sphere(ps.iter().map(|p| SPolygon::new(&p.rings)).collect())
            }
            _ => return Err(unsupported()),
        },
        "$box" => {
            let pts = point_list(value, "$box")?;
            if pts.len() != 2 {
                return Err(bad(format!(
                    "Point must only contain numeric elements: {value}"
                )));
            }
            Region::Box(pts[0], pts[1])
        }
        "$polygon" => {
            let pts = point_list(value, "$polygon")?;
            if pts.len() < 3 {
                return Err(bad("Polygon must have at least 3 points"));
            }
            Region::Polygon(pts)
        }
        "$center" | "$centerSphere" => {
            let (center, radius) = match value {
                Bson::Array(a) if a.len() == 2 => (&a[0], &a[1]),
                _ => {
                    return Err(bad(format!(
                        "{shape} must be an array [center, radius]: {value}"
                    )));
                }
            };
            let c = geometry::finite_point(center).map_err(bad)?;
            let r = as_f64(radius)
                .filter(|r| *r >= 0.0 && r.is_finite())
                .ok_or_else(|| bad("radius must be a non-negative number"))?;
            if shape == "$center" {
                Region::Center(c, r)
            } else {
                let c = geometry::lng_lat(c).map_err(bad)?;
                Region::CenterSphere(V3::from_lng_lat(c), r)
            }
        }
        _ => return Err(unsupported()),
    })
}

fn point_list(v: &Bson, shape: &str) -> Result<Vec<Pt>> {
    let items: Vec<&Bson> = match v {
        Bson::Array(a) => a.iter().collect(),
        Bson::Document(d) => d.values().collect(),
        _ => return Err(bad(format!("{shape} must be an array of points: {v}"))),
    };
    items
        .into_iter()
        .map(|p| geometry::finite_point(p).map_err(bad))
        .collect()
}

fn distance_arg(name: &str, v: &Bson) -> Result<f64> {
    let Some(d) = as_f64(v) else {
        return Err(bad(format!("{name} must be a number")));
    };
    if d.is_nan() || d < 0.0 {
        return Err(bad(format!("{name} must be non-negative")));
    }
    Ok(d)
}

fn parse_near(op: &str, arg: &Bson, siblings: &Document) -> Result<Near> {
    let sphere = op == "$nearSphere";
    let mut min = None;
    let mut max = None;
    let (point, units) = match arg {
        Bson::Document(d) if d.contains_key("$geometry") || d.contains_key("type") => {
            let g = match d.get("$geometry") {
                Some(Bson::Document(g)) => g,
                Some(other) => return Err(bad(format!("$geometry must be an object: {other}"))),
                None => d,
            };
            if d.contains_key("$geometry") {
                for (k, v) in d {
                    match k.as_str() {
                        "$geometry" => {}
                        "$maxDistance" => max = Some(distance_arg(k, v)?),
                        "$minDistance" => min = Some(distance_arg(k, v)?),
                        _ => return Err(bad(format!("invalid argument in geo near query: {k}"))),
                    }
                }
            }
            match geometry::geojson(g).map_err(bad)? {
                Geometry::Point(p) => (p, Units::Meters),
                _ => {
                    return Err(bad(format!(
                        "invalid point in geo near query $geometry argument: {g}"
                    )));
                }
            }
        }
        _ => {
            let p = geometry::finite_point(arg).map_err(bad)?;
            if sphere {
                geometry::lng_lat(p).map_err(bad)?;
            }
            (p, if sphere { Units::Radians } else { Units::Flat })
        }
    };
    for (k, v) in siblings {
        match k.as_str() {
            "$maxDistance" => max = Some(distance_arg(k, v)?),
            "$minDistance" => min = Some(distance_arg(k, v)?),
            _ => {}
        }
    }
    let max = max.unwrap_or(f64::INFINITY);
    if units == Units::Radians && max.is_finite() && max > std::f64::consts::PI {
        return Err(bad(
            "$maxDistance must be in [0, pi] for a spherical legacy point query",
        ));
    }
    Ok(Near {
        point,
        units,
        min: min.unwrap_or(0.0),
        max,
    })
}

impl Near {
    fn in_range(&self, d: f64) -> bool {
        d >= self.min && d <= self.max
    }

    /// The distance (in the query's units) from the query point to the
    /// nearest location among `values`, if any is measurable.
    pub fn distance(&self, values: &[&Bson]) -> Option<f64> {
        let target = V3::from_lng_lat(self.point);
        locations(values)
            .filter_map(|l| match self.units {
                Units::Flat => match l {
                    Location::Legacy(p) => Some(planar::distance(self.point, p)),
                    _ => None,
                },
                Units::Meters | Units::Radians => {
                    let d = match &l {
                        Location::Legacy(p) => {
                            angle(target, V3::from_lng_lat(geometry::lng_lat(*p).ok()?))
                        }
                        Location::GeoJson(g) => Shape::of(g).distance(target),
                    };
                    Some(if self.units == Units::Meters {
                        d * EARTH_RADIUS_METERS
                    } else {
                        d
                    })
                }
            })
            .fold(None, |best: Option<f64>, d| {
                Some(best.map_or(d, |b| b.min(d)))
            })
    }

    /// The location `distance` measured to (for `includeLocs`): the first
    /// nearest one, as stored.
    pub fn nearest<'a>(&self, values: &[&'a Bson]) -> Option<&'a Bson> {
        let best = self.distance(values)?;
        values.iter().copied().find_map(|v| {
            if self.distance(&[v]) == Some(best) {
                return Some(match v {
                    Bson::Array(items) if geometry::location(v).is_err() => items
                        .iter()
                        .find(|e| self.distance(&[e]) == Some(best))
                        .unwrap_or(v),
                    _ => v,
                });
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc};

    fn pred(op: &str, arg: Bson) -> Result<GeoPred> {
        GeoPred::parse(op, &arg, &doc! {})
    }

    fn m(p: &GeoPred, v: Bson) -> bool {
        p.matches(&[&v])
    }

    #[test]
    fn within_shapes() {
        let poly = pred(
            "$geoWithin",
            bson!({"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}}),
        )
        .unwrap();
        assert!(m(&poly, bson!({"type": "Point", "coordinates": [5, 5]})));
        assert!(m(&poly, bson!([5, 5])));
        assert!(!m(&poly, bson!([15, 5])));
        assert!(m(
            &poly,
            bson!({"type": "LineString", "coordinates": [[1, 1], [9, 9]]})
        ));
        assert!(!m(
            &poly,
            bson!({"type": "LineString", "coordinates": [[1, 1], [19, 9]]})
        ));
        assert!(!m(&poly, bson!("nowhere")));
        // An array of locations: any of them.
        assert!(m(&poly, bson!([[50, 50], [5, 5]])));
        let b = pred("$geoWithin", bson!({"$box": [[0, 0], [2, 2]]})).unwrap();
        assert!(m(&b, bson!([1, 1])));
        assert!(m(&b, bson!([2, 2])));
        assert!(!m(&b, bson!([3, 1])));
        let c = pred("$geoWithin", bson!({"$center": [[0, 0], 5]})).unwrap();
        assert!(m(&c, bson!({"x": 3, "y": 4})));
        let cs = pred("$geoWithin", bson!({"$centerSphere": [[0, 0], 0.1]})).unwrap();
        assert!(m(&cs, bson!([5, 0])));
        assert!(!m(&cs, bson!([6, 0])));
        let p = pred("$within", bson!({"$polygon": [[0, 0], [4, 0], [0, 4]]})).unwrap();
        assert!(m(&p, bson!([1, 1])));
    }

    #[test]
    fn intersects_and_near() {
        let line = pred(
            "$geoIntersects",
            bson!({"$geometry": {"type": "LineString", "coordinates": [[-5, 5], [15, 5]]}}),
        )
        .unwrap();
        assert!(m(
            &line,
            bson!({"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]})
        ));
        assert!(!m(&line, bson!({"type": "Point", "coordinates": [0, 0]})));
        let near = GeoPred::parse(
            "$near",
            &bson!({"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$maxDistance": 200_000}),
            &doc! {},
        )
        .unwrap();
        // 1° of longitude on the equator: 111.3 km.
        assert!(m(&near, bson!({"type": "Point", "coordinates": [1, 0]})));
        assert!(!m(&near, bson!({"type": "Point", "coordinates": [2, 0]})));
        let flat = GeoPred::parse(
            "$near",
            &bson!([0, 0]),
            &doc! {"$near": [0, 0], "$maxDistance": 5},
        )
        .unwrap();
        assert!(m(&flat, bson!([3, 4])));
        assert!(!m(&flat, bson!([3, 4.1])));
    }

    #[test]
    fn hostile_arguments_are_bad_values() {
        for (op, arg) in [
            ("$geoWithin", bson!(1)),
            ("$geoWithin", bson!({})),
            ("$geoWithin", bson!({"$box": [[0, 0]]})),
            ("$geoWithin", bson!({"$box": [[0, 0], [f64::NAN, 1]]})),
            ("$geoWithin", bson!({"$center": [[0, 0], -1]})),
            ("$geoWithin", bson!({"$center": [[0, 0], f64::NAN]})),
            ("$geoWithin", bson!({"$centerSphere": [[500, 0], 1]})),
            ("$geoWithin", bson!({"$polygon": [[0, 0], [1, 1]]})),
            (
                "$geoWithin",
                bson!({"$geometry": {"type": "Point", "coordinates": [0, 0]}}),
            ),
            (
                "$geoWithin",
                bson!({"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}}),
            ),
            ("$geoIntersects", bson!({"$geometry": "x"})),
            (
                "$near",
                bson!({"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$maxDistance": -1}),
            ),
            (
                "$near",
                bson!({"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$maxDistance": f64::NAN}),
            ),
            (
                "$near",
                bson!({"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$maxDistance": "far"}),
            ),
            (
                "$near",
                bson!({"$geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}),
            ),
            ("$near", bson!([f64::INFINITY, 0])),
            ("$nearSphere", bson!([0, 100])),
        ] {
            let e = pred(op, arg.clone()).unwrap_err();
            assert_eq!(e.code.code(), 2, "{op} {arg}");
        }
    }
}
