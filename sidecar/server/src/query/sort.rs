//! Sort specifications: multi-key, in BSON order. An array field sorts by its
//! smallest element ascending and its largest descending, as MongoDB does.
//! `{field: {$meta: "textScore"}}` sorts by the `$text` score,
//! `{$meta: "randVal"}` by `$sample`'s random value and
//! `{$meta: "geoNearDistance"}` by `$geoNear`'s distance, highest first as
//! mongod (the field name is not read), read through `query::meta`.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::compare::compare;
use super::meta::{self, MetaName};
use super::path::resolve;
use crate::error::{CommandError, ErrorCode, Result};

#[derive(Debug, Clone, Default)]
pub struct SortSpec {
    keys: Vec<(Key, bool)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Key {
    Path(String),
    Meta(MetaName),
}

/// One key of a sort: a field path or a metadata field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SortBy<'a> {
    Path(&'a str),
    Meta(MetaName),
}

impl SortSpec {
    pub fn parse(spec: &Document) -> Result<SortSpec> {
        let mut keys = Vec::with_capacity(spec.len());
        for (k, v) in spec {
            if let Bson::Document(d) = v
                && d.contains_key("$meta")
            {
                match d.get("$meta") {
                    Some(arg) if d.len() == 1 => {
                        keys.push((Key::Meta(meta_sort(arg)?), false));
                        continue;
                    }
                    _ => {
                        return Err(CommandError::bad_value(format!(
                            "$sort key ordering must be 1 (for ascending) or -1 (for descending); found {k}: {v}"
                        )));
                    }
                }
            }
            let ascending = match v {
                Bson::Int32(1) | Bson::Int64(1) => true,
                Bson::Int32(-1) | Bson::Int64(-1) => false,
                Bson::Double(d) if *d == 1.0 => true,
                Bson::Double(d) if *d == -1.0 => false,
                other => {
                    return Err(CommandError::bad_value(format!(
                        "$sort key ordering must be 1 (for ascending) or -1 (for descending); found {k}: {other}"
                    )));
                }
            };
            if k.is_empty() {
                return Err(CommandError::bad_value(
                    "$sort field names must not be empty",
                ));
            }
            // A sort key is a field path (MongoDB's FieldPath): `$natural`
            // is not one (a find's `{$natural: ±1}` is taken as a hint
            // before it gets here, as MongoDB's canonical query does).
            if k.split('.').any(|p| p.starts_with('$')) {
                return Err(CommandError::new(
                    crate::error::ErrorCode::Location16410,
                    format!(
                        "FieldPath field names may not start with '$'. Consider using $getField or $setField.: '{k}'"
                    ),
                ));
            }
            keys.push((Key::Path(k.clone()), ascending));
        }
        Ok(SortSpec { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn compare(&self, a: &Document, b: &Document) -> Ordering {
        for (key, ascending) in &self.keys {
            let (x, y) = (sort_key(a, key, *ascending), sort_key(b, key, *ascending));
            let o = compare(&x, &y);
            let o = if *ascending { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// The values `doc` sorts by, one per key: compute them once, then
    /// compare with [`SortSpec::compare_keys`] (a sort of n documents
    /// resolves n paths, not n log n).
    pub fn key(&self, doc: &Document) -> Vec<Bson> {
        self.keys
            .iter()
            .map(|(key, ascending)| sort_key(doc, key, *ascending))
            .collect()
    }

    /// Compares two [`SortSpec::key`]s.
    pub fn compare_keys(&self, a: &[Bson], b: &[Bson]) -> Ordering {
        for ((_, ascending), (x, y)) in self.keys.iter().zip(a.iter().zip(b)) {
            let o = compare(x, y);
            let o = if *ascending { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// Sorts stably (equal keys keep their input order, i.e. `_id` order).
    pub fn sort(&self, docs: &mut [Document]) {
        if !self.is_empty() {
            docs.sort_by(|a, b| self.compare(a, b));
        }
    }

    /// The sort's paths with `true` for ascending, in order; `None` when a
    /// key is a `{$meta: ...}` (no index gives that order).
    pub fn paths(&self) -> Option<Vec<(&str, bool)>> {
        self.keys
            .iter()
            .map(|(k, asc)| match k {
                Key::Path(p) => Some((p.as_str(), *asc)),
                Key::Meta(_) => None,
            })
            .collect()
    }

    /// Each key in order, with `true` for ascending (`$topN`'s `sortBy`
    /// evaluates them itself).
    pub fn parts(&self) -> Vec<(SortBy<'_>, bool)> {
        self.keys
            .iter()
            .map(|(k, asc)| match k {
                Key::Path(p) => (SortBy::Path(p.as_str()), *asc),
                Key::Meta(m) => (SortBy::Meta(*m), *asc),
            })
            .collect()
    }

    /// Whether a key sorts by `{$meta: "textScore"}`.
    pub fn uses_text_score(&self) -> bool {
        self.uses_meta(MetaName::TextScore)
    }

    /// Whether a key sorts by `{$meta: name}`.
    pub fn uses_meta(&self, name: MetaName) -> bool {
        self.keys.iter().any(|(k, _)| *k == Key::Meta(name))
    }
}

/// A sort key's `{$meta: arg}`: mongod sorts by the text score, the
/// random value and `$geoNear`'s distance (31138 for any other name);
/// Atlas Search's scores are refused by name.
fn meta_sort(arg: &Bson) -> Result<MetaName> {
    match MetaName::parse(arg) {
        Ok(name @ (MetaName::TextScore | MetaName::RandVal | MetaName::GeoNearDistance)) => {
            Ok(name)
        }
        Ok(MetaName::SearchScore | MetaName::VectorSearchScore | MetaName::Score) => {
            MetaName::parse_produced(arg)
        }
        _ => {
            let shown = match arg {
                Bson::String(s) => format!("\"{s}\""),
                other => other.to_string(),
            };
            Err(CommandError::new(
                ErrorCode::Location31138,
                format!("Illegal $meta sort: $meta: {shown}"),
            ))
        }
    }
}

fn sort_key(doc: &Document, key: &Key, ascending: bool) -> Bson {
    let path = match key {
        Key::Path(p) => p,
        // Missing metadata sorts as null, as mongod's missing sort key
        // (a sort by text score without `$text` was refused, 40218,
        // before it ran).
        Key::Meta(name) => {
            return meta::value(*name, doc).ok().flatten().unwrap_or(Bson::Null);
        }
    };
    let r = resolve(doc, path);
    let mut candidates: Vec<&Bson> = Vec::new();
    for v in &r.values {
        match v {
            Bson::Array(a) if a.is_empty() => {}
            Bson::Array(a) => candidates.extend(a.iter()),
            v => candidates.push(v),
        }
    }
    if candidates.is_empty() {
        return Bson::Null;
    }
    let pick = if ascending {
        candidates.into_iter().min_by(|a, b| compare(a, b))
    } else {
        candidates.into_iter().max_by(|a, b| compare(a, b))
    };
    pick.cloned().unwrap_or(Bson::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn multi_key_and_arrays() {
        let mut docs = vec![
            doc! {"_id": 1, "a": 2, "b": 1},
            doc! {"_id": 2, "a": 1, "b": 5},
            doc! {"_id": 3, "a": 2, "b": 3},
            doc! {"_id": 4},
            doc! {"_id": 5, "a": [0, 9]},
        ];
        SortSpec::parse(&doc! {"a": 1, "b": -1})
            .unwrap()
            .sort(&mut docs);
        let ids: Vec<i32> = docs.iter().map(|d| d.get_i32("_id").unwrap()).collect();
        assert_eq!(ids, vec![4, 5, 2, 3, 1]);
        SortSpec::parse(&doc! {"a": -1}).unwrap().sort(&mut docs);
        assert_eq!(docs[0].get_i32("_id").unwrap(), 5);
        assert!(SortSpec::parse(&doc! {"a": 2}).is_err());
        for bad in [
            doc! {"$natural": 1},
            doc! {"a.$b": 1},
            doc! {"a": 1, "$x": -1},
        ] {
            let e = SortSpec::parse(&bad).unwrap_err();
            assert_eq!(e.code, crate::error::ErrorCode::Location16410, "{bad}");
        }
    }
}
