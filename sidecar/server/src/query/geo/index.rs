//! Geospatial index specifications (`2dsphere`, `2d`), checked at
//! `createIndexes` as MongoDB checks them, and the rule a write obeys
//! under them: a document whose indexed field is not a location the index
//! can take is refused with MongoDB's code (16755 for 2dsphere; 16804,
//! 13026, 13027 for 2d). A missing or null field is fine (a 2dsphere index
//! of version 2 or 3 is sparse by nature).
//!
//! The spec is stored in the branch's catalog like any index spec
//! (`argon_wal` keeps no key map for it: its key holds a string), so
//! branches and time travel see geo indexes as they see others. No geo
//! index structure is built: queries scan (see `query::geo`).

use bson::{Bson, Document};

use super::super::compare::as_f64;
use super::super::path::resolve;
use super::geometry::{self, Location};
use super::predicate::check_polygons;
use crate::error::{CommandError, ErrorCode, Result};

pub const SPHERE: &str = "2dsphere";
pub const FLAT: &str = "2d";
/// MongoDB's current 2dsphere version, the default.
const SPHERE_VERSION: i32 = 3;

/// Index spec fields that only a geo index takes.
pub const OPTION_FIELDS: &[&str] = &["2dsphereIndexVersion", "bits", "min", "max"];

/// The kind of a geo index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Sphere,
    Flat { min: f64, max: f64 },
}

/// One geo field of an index.
#[derive(Debug, Clone)]
pub struct GeoIndex {
    pub name: String,
    pub field: String,
    pub kind: Kind,
}

fn cannot(message: impl Into<String>) -> CommandError {
    CommandError::new(ErrorCode::CannotCreateIndex, message)
}

fn kind_of(v: &Bson) -> Option<&str> {
    match v {
        Bson::String(s) if s == SPHERE || s == FLAT => Some(s.as_str()),
        _ => None,
    }
}

/// Whether a key pattern names a geo field.
pub fn is_geo_key(key: &Document) -> bool {
    key.values().any(|v| kind_of(v).is_some())
}

/// Checks a geo index spec as sent and returns the options to store
/// (`2dsphereIndexVersion` for a 2dsphere index; `bits`, `min`, `max` for
/// a 2d one as given).
pub fn check_spec(spec: &Document, key: &Document) -> Result<Document> {
    let mut options = Document::new();
    let flats: Vec<&String> = key
        .iter()
        .filter(|(_, v)| kind_of(v) == Some(FLAT))
        .map(|(k, _)| k)
        .collect();
    let spheres = key.values().filter(|v| kind_of(v) == Some(SPHERE)).count();
    for (field, v) in key {
        let plain = as_f64(v).is_some_and(|n| n != 0.0 && n.is_finite());
        if field.is_empty() || !(plain || kind_of(v).is_some()) {
            return Err(cannot(format!(
                "Values in the index key pattern can only be positive/negative numbers or known index types; found {field}: {v}"
            )));
        }
    }
    if !flats.is_empty() {
        if spheres > 0 || flats.len() > 1 {
            // mongod's ExpressionParams::parseTwoDParams.
            return Err(CommandError::new(
                ErrorCode::Location16800,
                "can't have 2 geo fields",
            ));
        }
        if key.keys().next() != Some(flats[0]) {
            return Err(CommandError::new(
                ErrorCode::Location16801,
                "2d has to be first in index",
            ));
        }
        let bits = match spec.get("bits") {
            None => None,
            Some(b) => match as_f64(b) {
                Some(n) if n.fract() == 0.0 && (1.0..=32.0).contains(&n) => Some(n),
                _ => {
                    return Err(CommandError::new(
                        ErrorCode::InvalidOptions,
                        "bits in geo index must be between 1 and 32",
                    ));
                }
            },
        };
        let bound = |name: &str| -> Result<Option<f64>> {
            match spec.get(name) {
                None => Ok(None),
                Some(v) => match as_f64(v) {
                    Some(n) if n.is_finite() => Ok(Some(n)),
                    _ => Err(CommandError::new(
                        ErrorCode::InvalidOptions,
                        format!("{name} must be a finite number"),
                    )),
                },
            }
        };
        let (min, max) = (bound("min")?, bound("max")?);
        if min.unwrap_or(-180.0) >= max.unwrap_or(180.0) {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "region for hashing must be valid",
            ));
        }
        if spec.contains_key("2dsphereIndexVersion") {
            return Err(CommandError::new(
                ErrorCode::InvalidIndexSpecificationOption,
                "The field '2dsphereIndexVersion' is not valid for a 2d index",
            ));
        }
        for (name, v) in [("bits", bits), ("min", min), ("max", max)] {
            if let (Some(_), Some(raw)) = (v, spec.get(name)) {
                options.insert(name, raw.clone());
            }
        }
        return Ok(options);
    }
    for name in ["bits", "min", "max"] {
        if spec.contains_key(name) {
            return Err(CommandError::new(
                ErrorCode::InvalidIndexSpecificationOption,
                format!("The field '{name}' is not valid for a 2dsphere index"),
            ));
        }
    }
    let version = match spec.get("2dsphereIndexVersion") {
        None => SPHERE_VERSION,
        Some(v) => match as_f64(v) {
            Some(n) if n == 2.0 || n == 3.0 => n as i32,
            Some(1.0) => {
                return Err(CommandError::new(
                    ErrorCode::CommandNotSupported,
                    "2dsphereIndexVersion 1 (not sparse) is not supported by Argon; use 2 or 3",
                ));
            }
            _ => {
                return Err(cannot(format!(
                    "unsupported geo index version {{ 2dsphereIndexVersion : {v} }}, only versions: [1,2,3] are supported"
                )));
            }
        },
    };
    options.insert("2dsphereIndexVersion", version);
    Ok(options)
}

impl GeoIndex {
    /// The geo fields of a stored index spec.
    pub fn from_spec(spec: &Document) -> Vec<GeoIndex> {
        let Ok(key) = spec.get_document("key") else {
            return Vec::new();
        };
        let name = spec.get_str("name").unwrap_or_default().to_owned();
        let bound = |n: &str, d: f64| spec.get(n).and_then(as_f64).unwrap_or(d);
        key.iter()
            .filter_map(|(field, v)| {
                let kind = match kind_of(v)? {
                    SPHERE => Kind::Sphere,
                    _ => Kind::Flat {
                        min: bound("min", -180.0),
                        max: bound("max", 180.0),
                    },
                };
                Some(GeoIndex {
                    name: name.clone(),
                    field: field.clone(),
                    kind,
                })
            })
            .collect()
    }

    /// Every geo field of a collection's indexes (hidden ones too: a
    /// hidden index is still maintained).
    pub fn of_collection(indexes: &[Document]) -> Vec<GeoIndex> {
        indexes.iter().flat_map(GeoIndex::from_spec).collect()
    }

    /// Whether `doc` can be indexed: MongoDB's error when not.
    pub fn check_document(&self, doc: &Document) -> Result<()> {
        let r = resolve(doc, &self.field);
        for v in &r.values {
            match self.kind {
                Kind::Sphere => sphere_value(v).map_err(|why| {
                    CommandError::new(
                        ErrorCode::Location16755,
                        format!("Can't extract geo keys: {doc}  {why}"),
                    )
                })?,
                Kind::Flat { min, max } => flat_value(v, min, max, doc)?,
            }
        }
        Ok(())
    }
}

/// A value under a 2dsphere field: a location, or an array of them.
fn sphere_value(v: &Bson) -> std::result::Result<(), String> {
    let one = |v: &Bson| -> std::result::Result<(), String> {
        match geometry::location(v)? {
            Location::GeoJson(g) => check_polygons(&g),
            Location::Legacy(p) => geometry::lng_lat(p).map(|_| ()),
        }
    };
    match v {
        Bson::Null | Bson::Undefined => Ok(()),
        Bson::Array(items) if items.is_empty() => Ok(()),
        Bson::Array(items) if geometry::flat_point(v, false).is_err() => {
            items.iter().try_for_each(one)
        }
        v => one(v),
    }
}

/// A value under a 2d field: a legacy pair (or an array of them) within
/// the index's bounds.
fn flat_value(v: &Bson, min: f64, max: f64, doc: &Document) -> Result<()> {
    let point = |v: &Bson| -> Result<()> {
        let p = geometry::flat_point(v, true).map_err(|_| {
            CommandError::new(
                ErrorCode::Location13026,
                format!("geo values must be 'legacy coordinate pairs' for 2d indexes: {doc}"),
            )
        })?;
        let inside = |c: f64| c >= min && c < max;
        if !inside(p.x) || !inside(p.y) {
            return Err(CommandError::new(
                ErrorCode::Location13027,
                format!("point not in interval of [ {min}, {max} ) :: caused by :: {doc}"),
            ));
        }
        Ok(())
    };
    match v {
        Bson::Null | Bson::Undefined => Ok(()),
        Bson::Array(items)
            if !items.is_empty()
                && items
                    .iter()
                    .all(|e| matches!(e, Bson::Array(_) | Bson::Document(_))) =>
        {
            items.iter().try_for_each(point)
        }
        Bson::Array(_) | Bson::Document(_) => point(v),
        _ => Err(CommandError::new(
            ErrorCode::Location16804,
            format!("location object expected, location array not in correct format: {doc}"),
        )),
    }
}

/// A write's document under the collection's geo indexes.
pub fn check_document(indexes: &[Document], doc: &Document) -> Result<()> {
    for spec in indexes {
        for g in GeoIndex::from_spec(spec) {
            g.check_document(doc)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn sphere() -> GeoIndex {
        GeoIndex::from_spec(&doc! {"name": "loc_2dsphere", "key": {"loc": "2dsphere"}}).remove(0)
    }

    #[test]
    fn specs_are_checked_as_mongodb_checks_them() {
        let ok = |spec: Document| check_spec(&spec, spec.get_document("key").unwrap());
        assert_eq!(
            ok(doc! {"key": {"loc": "2dsphere"}}).unwrap(),
            doc! {"2dsphereIndexVersion": 3}
        );
        assert!(ok(doc! {"key": {"loc": "2dsphere", "a": 1}, "2dsphereIndexVersion": 2}).is_ok());
        assert_eq!(
            ok(doc! {"key": {"loc": "2dsphere"}, "2dsphereIndexVersion": 9})
                .unwrap_err()
                .code
                .code(),
            67
        );
        assert_eq!(
            ok(doc! {"key": {"loc": "2dsphere"}, "2dsphereIndexVersion": 1})
                .unwrap_err()
                .code
                .code(),
            115
        );
        assert!(ok(doc! {"key": {"loc": "2d"}, "min": -500, "max": 500, "bits": 26}).is_ok());
        assert_eq!(
            ok(doc! {"key": {"loc": "2d"}, "bits": 0})
                .unwrap_err()
                .code
                .code(),
            72
        );
        assert_eq!(
            ok(doc! {"key": {"loc": "2d"}, "bits": 33})
                .unwrap_err()
                .code
                .code(),
            72
        );
        assert_eq!(
            ok(doc! {"key": {"loc": "2d"}, "min": 5, "max": 5})
                .unwrap_err()
                .code
                .code(),
            72
        );
        assert_eq!(
            ok(doc! {"key": {"loc": "2d"}, "min": f64::NAN})
                .unwrap_err()
                .code
                .code(),
            72
        );
        assert_eq!(
            ok(doc! {"key": {"a": 1, "loc": "2d"}})
                .unwrap_err()
                .code
                .code(),
            16801
        );
        assert_eq!(
            ok(doc! {"key": {"loc": "2d", "b": "2d"}})
                .unwrap_err()
                .code
                .code(),
            16800
        );
        assert_eq!(
            ok(doc! {"key": {"loc": "2dsphere"}, "bits": 3})
                .unwrap_err()
                .code
                .code(),
            197
        );
    }

    #[test]
    fn writes_need_valid_locations() {
        let g = sphere();
        for fine in [
            doc! {"_id": 1},
            doc! {"_id": 1, "loc": null},
            doc! {"_id": 1, "loc": []},
            doc! {"_id": 1, "loc": [1, 2]},
            doc! {"_id": 1, "loc": {"type": "Point", "coordinates": [1, 2]}},
            doc! {"_id": 1, "loc": [{"type": "Point", "coordinates": [1, 2]}, [3, 4]]},
        ] {
            assert!(g.check_document(&fine).is_ok(), "{fine}");
        }
        for bad in [
            doc! {"_id": 1, "loc": "here"},
            doc! {"_id": 1, "loc": [200, 0]},
            doc! {"_id": 1, "loc": {"type": "Point"}},
            doc! {"_id": 1, "loc": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}},
            doc! {"_id": 1, "loc": {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}},
        ] {
            let e = g.check_document(&bad).unwrap_err();
            assert_eq!(e.code.code(), 16755, "{bad}");
            assert!(e.message.starts_with("Can't extract geo keys: "));
        }
        let flat = GeoIndex::from_spec(&doc! {"name": "p_2d", "key": {"p": "2d"}}).remove(0);
        assert!(flat.check_document(&doc! {"p": [179.9, -180]}).is_ok());
        assert_eq!(
            flat.check_document(&doc! {"p": [180, 0]})
                .unwrap_err()
                .code
                .code(),
            13027
        );
        assert_eq!(
            flat.check_document(&doc! {"p": "x"})
                .unwrap_err()
                .code
                .code(),
            16804
        );
        assert_eq!(
            flat.check_document(&doc! {"p": ["a", 1]})
                .unwrap_err()
                .code
                .code(),
            13026
        );
    }
}
