//! What a geometry is and how it is read: GeoJSON objects (`Point`,
//! `LineString`, `Polygon` with holes, `MultiPoint`, `MultiLineString`,
//! `MultiPolygon`, `GeometryCollection`) and legacy coordinate pairs
//! (`[x, y]` or `{x: .., y: ..}`), checked as MongoDB's `GeoParser` checks
//! them, with its messages. Spherical validity (rings that cross
//! themselves, holes outside their shell) is `validity`'s.

use bson::{Bson, Document};

use super::super::compare::as_f64;
use super::super::expr::type_name;

/// A position: `x` is the longitude, `y` the latitude (degrees) for a
/// spherical geometry; plain coordinates for a flat one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pt {
    pub x: f64,
    pub y: f64,
}

/// A GeoJSON polygon: its shell, then its holes; each ring closed (its
/// last position equals its first) and without repeated consecutive
/// positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    pub rings: Vec<Vec<Pt>>,
}

/// A GeoJSON geometry (longitudes and latitudes in range).
#[derive(Debug, Clone, PartialEq)]
pub enum Geometry {
    Point(Pt),
    LineString(Vec<Pt>),
    Polygon(Polygon),
    MultiPoint(Vec<Pt>),
    MultiLineString(Vec<Vec<Pt>>),
    MultiPolygon(Vec<Polygon>),
    Collection(Vec<Geometry>),
}

/// A stored location: a GeoJSON geometry or a legacy coordinate pair.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Legacy(Pt),
    GeoJson(Geometry),
}

/// Why a value is not a geometry (MongoDB's message; the caller picks the
/// code: 2 in a query, 16755 at a write).
pub type ParseResult<T> = std::result::Result<T, String>;

/// The CRS MongoDB names for polygons larger than a hemisphere.
pub const STRICT_WINDING_CRS: &str = "urn:x-mongodb:crs:strictwinding:EPSG:4326";

fn is_number(v: &Bson) -> bool {
    matches!(
        v,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
    )
}

/// The elements of an array or the values of a document, in order.
fn elements(v: &Bson) -> Option<Vec<&Bson>> {
    match v {
        Bson::Array(a) => Some(a.iter().collect()),
        Bson::Document(d) => Some(d.values().collect()),
        _ => None,
    }
}

/// A flat point (MongoDB's `parseFlatPoint`): an array or document whose
/// first two values are numbers; more values only where `extra` allows
/// them (a GeoJSON position's altitude, a stored 2d location).
pub fn flat_point(v: &Bson, extra: bool) -> ParseResult<Pt> {
    let Some(items) = elements(v) else {
        return Err(format!(
            "Point must be an array or object, instead got type {}",
            type_name(v)
        ));
    };
    let (Some(x), Some(y)) = (items.first(), items.get(1)) else {
        return Err("Point must only contain numeric elements".into());
    };
    if !is_number(x) || !is_number(y) {
        return Err("Point must only contain numeric elements".into());
    }
    if !extra && items.len() > 2 {
        return Err("Point must only contain two numeric elements".into());
    }
    Ok(Pt {
        x: as_f64(x).unwrap_or(f64::NAN),
        y: as_f64(y).unwrap_or(f64::NAN),
    })
}

/// A legacy point used in a flat query shape: its coordinates must be
/// finite.
pub fn finite_point(v: &Bson) -> ParseResult<Pt> {
    let p = flat_point(v, false)?;
    if !p.x.is_finite() || !p.y.is_finite() {
        return Err("Point coordinates must be finite numbers".into());
    }
    Ok(p)
}

fn in_range(p: Pt) -> bool {
    (-180.0..=180.0).contains(&p.x) && (-90.0..=90.0).contains(&p.y)
}

/// A longitude/latitude pair in range (NaN and infinities are not).
pub fn lng_lat(p: Pt) -> ParseResult<Pt> {
    if in_range(p) {
        Ok(p)
    } else {
        Err(format!(
            "longitude/latitude is out of bounds, lng: {} lat: {}",
            p.x, p.y
        ))
    }
}

fn position(v: &Bson) -> ParseResult<Pt> {
    if !matches!(v, Bson::Array(_)) {
        return Err("GeoJSON coordinates must be an array".into());
    }
    lng_lat(flat_point(v, true)?)
}

fn positions(v: &Bson) -> ParseResult<Vec<Pt>> {
    let Bson::Array(items) = v else {
        return Err("GeoJSON coordinates must be an array".into());
    };
    items.iter().map(position).collect()
}

fn line(v: &Bson) -> ParseResult<Vec<Pt>> {
    let mut pts = positions(v)?;
    pts.dedup();
    if pts.len() < 2 {
        return Err(format!(
            "GeoJSON LineString must have at least 2 vertices: {v}"
        ));
    }
    Ok(pts)
}

fn ring(v: &Bson) -> ParseResult<Vec<Pt>> {
    let Bson::Array(raw) = v else {
        return Err("Polygon coordinates must be an array".into());
    };
    if raw.len() < 4 {
        return Err(format!("Loop must have at least 3 different vertices: {v}"));
    }
    let mut pts = positions(v)?;
    if pts.first() != pts.last() {
        return Err(format!(
            "Loop is not closed, first vertex does not equal last vertex: {v}"
        ));
    }
    pts.dedup();
    // Closed, deduplicated: at least 3 distinct vertices plus the closing one.
    if pts.len() < 4 {
        return Err(format!("Loop must have at least 3 different vertices: {v}"));
    }
    Ok(pts)
}

fn polygon(v: &Bson) -> ParseResult<Polygon> {
    let Bson::Array(rings) = v else {
        return Err("Polygon coordinates must be an array".into());
    };
    if rings.is_empty() {
        return Err("Polygon has no loops.".into());
    }
    Ok(Polygon {
        rings: rings.iter().map(ring).collect::<ParseResult<_>>()?,
    })
}

fn list<T>(v: &Bson, one: impl Fn(&Bson) -> ParseResult<T>) -> ParseResult<Vec<T>> {
    let Bson::Array(items) = v else {
        return Err("GeoJSON coordinates must be an array".into());
    };
    items.iter().map(one).collect()
}

/// The GeoJSON `type` of a document, if it names one.
pub fn geojson_type(d: &Document) -> Option<&str> {
    match d.get("type") {
        Some(Bson::String(t)) => Some(t.as_str()),
        _ => None,
    }
}

/// Refuses a `crs` other than the default EPSG:4326 (MongoDB's "big
/// polygon" CRS is refused by name: Argon does not build polygons larger
/// than a hemisphere).
fn check_crs(d: &Document) -> ParseResult<()> {
    let Some(crs) = d.get("crs") else {
        return Ok(());
    };
    let name = match crs {
        Bson::Document(c) => c
            .get_document("properties")
            .ok()
            .and_then(|p| p.get_str("name").ok()),
        _ => None,
    };
    match name {
        Some("EPSG:4326" | "urn:ogc:def:crs:OGC:1.3:CRS84") => Ok(()),
        Some(STRICT_WINDING_CRS) => Err(format!(
            "crs {STRICT_WINDING_CRS} (polygons larger than a hemisphere) is not supported by Argon"
        )),
        _ => Err(format!(
            "GeoJSON CRS must be an object with properties.name: {crs}"
        )),
    }
}

/// A GeoJSON object. `top`: a `GeometryCollection` may not hold another.
pub fn geojson(d: &Document) -> ParseResult<Geometry> {
    geojson_at(d, true)
}

fn geojson_at(d: &Document, top: bool) -> ParseResult<Geometry> {
    check_crs(d)?;
    let Some(kind) = geojson_type(d) else {
        return Err(format!("unknown GeoJSON type: {d}"));
    };
    if kind == "GeometryCollection" {
        if !top {
            return Err(format!("GeometryCollections cannot be nested: {d}"));
        }
        let Some(Bson::Array(items)) = d.get("geometries") else {
            return Err(format!(
                "GeometryCollection geometries must be an array: {d}"
            ));
        };
        let mut out = Vec::with_capacity(items.len());
        for g in items {
            let Bson::Document(g) = g else {
                return Err(format!("Element of geometries is not an object: {g}"));
            };
            out.push(geojson_at(g, false)?);
        }
        return Ok(Geometry::Collection(out));
    }
    let Some(coords) = d.get("coordinates") else {
        return Err(format!("GeoJSON coordinates must be an array: {d}"));
    };
    Ok(match kind {
        "Point" => {
            if !matches!(coords, Bson::Array(_)) {
                return Err("GeoJSON coordinates must be an array".into());
            }
            Geometry::Point(position(coords)?)
        }
        "LineString" => Geometry::LineString(line(coords)?),
        "Polygon" => Geometry::Polygon(polygon(coords)?),
        "MultiPoint" => {
            let pts = positions(coords)?;
            if pts.is_empty() {
                return Err(format!(
                    "MultiPoint coordinates must have at least 1 element: {d}"
                ));
            }
            Geometry::MultiPoint(pts)
        }
        "MultiLineString" => {
            let lines = list(coords, line)?;
            if lines.is_empty() {
                return Err(format!(
                    "MultiLineString coordinates must have at least 1 element: {d}"
                ));
            }
            Geometry::MultiLineString(lines)
        }
        "MultiPolygon" => {
            let polys = list(coords, polygon)?;
            if polys.is_empty() {
                return Err(format!(
                    "MultiPolygon coordinates must have at least 1 element: {d}"
                ));
            }
            Geometry::MultiPolygon(polys)
        }
        _ => return Err(format!("unknown GeoJSON type: {d}")),
    })
}

/// A stored value as a location: a GeoJSON object (a document with a
/// `type`) or a legacy pair. `None` when the value is neither an object
/// nor an array (a 2dsphere index refuses it; a query does not match it).
pub fn location(v: &Bson) -> ParseResult<Location> {
    match v {
        Bson::Document(d) if d.contains_key("type") => Ok(Location::GeoJson(geojson(d)?)),
        _ => Ok(Location::Legacy(flat_point(v, false)?)),
    }
}

impl Geometry {
    /// Every position of the geometry (ring closings included).
    pub fn for_each_point(&self, f: &mut impl FnMut(Pt)) {
        match self {
            Geometry::Point(p) => f(*p),
            Geometry::LineString(ps) | Geometry::MultiPoint(ps) => ps.iter().copied().for_each(f),
            Geometry::Polygon(p) => p.rings.iter().flatten().copied().for_each(f),
            Geometry::MultiLineString(ls) => ls.iter().flatten().copied().for_each(f),
            Geometry::MultiPolygon(ps) => ps
                .iter()
                .flat_map(|p| p.rings.iter().flatten())
                .copied()
                .for_each(f),
            Geometry::Collection(gs) => gs.iter().for_each(|g| g.for_each_point(f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc};

    fn gj(v: Bson) -> ParseResult<Geometry> {
        match v {
            Bson::Document(d) => geojson(&d),
            _ => unreachable!(),
        }
    }

    #[test]
    fn points_and_ranges() {
        assert_eq!(
            gj(bson!({"type": "Point", "coordinates": [-73.97, 40.77]})).unwrap(),
            Geometry::Point(Pt {
                x: -73.97,
                y: 40.77
            })
        );
        // Altitude is allowed in a GeoJSON position.
        assert!(gj(bson!({"type": "Point", "coordinates": [1, 2, 3]})).is_ok());
        for bad in [
            bson!({"type": "Point", "coordinates": [181, 0]}),
            bson!({"type": "Point", "coordinates": [0, -90.5]}),
            bson!({"type": "Point", "coordinates": [f64::NAN, 0]}),
            bson!({"type": "Point", "coordinates": [f64::INFINITY, 0]}),
            bson!({"type": "Point", "coordinates": [1]}),
            bson!({"type": "Point", "coordinates": ["a", 1]}),
            bson!({"type": "Point", "coordinates": {"a": 1, "b": 2}}),
            bson!({"type": "Point"}),
            bson!({"type": "Pointy", "coordinates": [1, 2]}),
            bson!({"type": 1, "coordinates": [1, 2]}),
        ] {
            assert!(gj(bad.clone()).is_err(), "{bad}");
        }
        assert!(
            gj(bson!({"type": "Point", "coordinates": [200, 0]}))
                .unwrap_err()
                .starts_with("longitude/latitude is out of bounds")
        );
    }

    #[test]
    fn legacy_pairs() {
        assert_eq!(
            location(&bson!([1, 2])).unwrap(),
            Location::Legacy(Pt { x: 1.0, y: 2.0 })
        );
        assert_eq!(
            location(&bson!({"lng": 1.5, "lat": 2})).unwrap(),
            Location::Legacy(Pt { x: 1.5, y: 2.0 })
        );
        assert!(location(&bson!([1, 2, 3])).is_err());
        assert!(location(&bson!("here")).is_err());
        assert!(finite_point(&bson!([f64::NAN, 1])).is_err());
    }

    #[test]
    fn rings_must_close_and_have_three_vertices() {
        let closed = bson!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]});
        assert!(gj(closed).is_ok());
        let open = bson!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]});
        assert!(gj(open).unwrap_err().starts_with("Loop is not closed"));
        let short = bson!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]});
        assert!(
            gj(short)
                .unwrap_err()
                .starts_with("Loop must have at least 3")
        );
        // Four positions, but two are the same: two distinct vertices.
        let dup = bson!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 0], [0, 0]]]});
        assert!(
            gj(dup)
                .unwrap_err()
                .starts_with("Loop must have at least 3")
        );
        assert!(gj(bson!({"type": "Polygon", "coordinates": []})).is_err());
        assert!(gj(bson!({"type": "LineString", "coordinates": [[0, 0]]})).is_err());
    }

    #[test]
    fn collections_do_not_nest_and_crs_is_checked() {
        let inner = doc! {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0, 0]}]};
        assert!(geojson(&inner).is_ok());
        let nested = doc! {"type": "GeometryCollection", "geometries": [inner]};
        assert!(
            geojson(&nested)
                .unwrap_err()
                .starts_with("GeometryCollections cannot be nested")
        );
        let big = doc! {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]],
        "crs": {"type": "name", "properties": {"name": STRICT_WINDING_CRS}}};
        assert!(
            geojson(&big)
                .unwrap_err()
                .contains("not supported by Argon")
        );
        let multi = doc! {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], [[[5, 5], [6, 5], [6, 6], [5, 5]]]]};
        assert!(matches!(geojson(&multi).unwrap(), Geometry::MultiPolygon(p) if p.len() == 2));
    }
}
