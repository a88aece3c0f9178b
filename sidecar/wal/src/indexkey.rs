//! Secondary-index keys: which key tuples an index spec gives a document,
//! and their canonical, ordered byte encoding (`IndexKey`).
//!
//! MongoDB semantics kept here (the wire server relies on them for unique
//! checks, so they are the same rules `CollectionState`'s key maps use):
//! - a missing field indexes as `null`; an empty array as `undefined`
//!   (`Bson::Undefined` in a key tuple; distinct from `null`, as in MongoDB);
//! - a `sparse` index skips a document missing *all* its key fields;
//! - arrays are multikey: a field holding an array gives one key per element
//!   (deduplicated), and a dotted path walks into arrays of sub-documents
//!   (`a.b` of `{a: [{b: 1}, {b: 2}]}` is 1 and 2; an element without `b`
//!   adds `null`); a numeric path component indexes into an array;
//! - a compound key is the product of its fields' values; MongoDB refuses a
//!   document with arrays in two fields of one index ("parallel arrays"):
//!   `keys` reports that as an error so the writer can refuse it, while the
//!   pure fold (`BranchState::apply`) indexes the product anyway.
//!
//! - a `"2dsphere"` or `"2d"` field's values are `Int64` cell keys (`geo`:
//!   the one place they are derived); a document with none (the field
//!   missing, or unreadable) gets no key in that index at all.
//! - a text index (`text`) keys a document under each distinct term of its
//!   indexed strings, in place of its `_fts`/`_ftsx` fields: the product
//!   of the prefix fields' values, the terms and the suffix fields' values;
//!   a document without a term has no key (MongoDB's text indexes are
//!   always sparse that way).
//!
//! Invariant: `IndexKey::from_values(a) == IndexKey::from_values(b)` iff the
//! tuples are equal as MongoDB index keys (each value compared as `IdKey`
//! compares `_id`s: numbers by value across types), and byte order is
//! ascending BSON order field by field (the encoding of each value is
//! prefix-free, so concatenation keeps that). Descending fields are *not*
//! inverted: a map is always ascending on every field.

pub mod geo;
pub mod text;

use crate::idkey;
use bson::{Bson, Document};
use geo::GeoField;
use std::fmt;
use std::sync::Arc;

/// Type class of `undefined` (an empty array's key): just below `null`.
const C_UNDEFINED: u8 = 0x18;

/// The canonical ordered key of one index key tuple (values in the spec's
/// field order). Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexKey(Arc<[u8]>);

impl IndexKey {
    pub fn from_values(values: &[Bson]) -> IndexKey {
        let mut out = Vec::with_capacity(16 * values.len());
        for v in values {
            match v {
                Bson::Undefined => out.push(C_UNDEFINED),
                v => idkey::encode(v, &mut out),
            }
        }
        IndexKey(out.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key (or a bound between keys) from raw bytes: a query planner
    /// builds interval ends by concatenating [`IndexKey::encode_value`]
    /// outputs and [`type_bracket`] bytes. Bounds compare as bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> IndexKey {
        IndexKey(bytes.into())
    }

    /// Appends the ordered, prefix-free encoding of one key value (what
    /// `from_values` concatenates).
    pub fn encode_value(value: &Bson, out: &mut Vec<u8>) {
        match value {
            Bson::Undefined => out.push(C_UNDEFINED),
            v => idkey::encode(v, out),
        }
    }

    /// The smallest byte string above every string that starts with
    /// `prefix` (`None` when no such string exists: all bytes 0xFF), so
    /// that "every key starting with P" is `[P, prefix_end(P))`.
    pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < 0xFF {
                end.push(last + 1);
                return Some(end);
            }
        }
        None
    }
}

/// The byte range `[start, end)` (first byte of an encoded value) holding
/// every key value that MongoDB's comparison operators bracket with `value`
/// (`{$gt: 5}` compares only numbers), for the types a planner brackets:
/// numbers (not Decimal128, which keys apart), strings, ObjectIds,
/// booleans and dates. `None` for any other type.
pub fn type_bracket(value: &Bson) -> Option<(u8, u8)> {
    use crate::idkey::class;
    let c = match value {
        Bson::Int32(_) | Bson::Int64(_) => class::NUMBER,
        Bson::Double(x) if !x.is_nan() => class::NUMBER,
        Bson::String(_) => class::STRING,
        Bson::ObjectId(_) => class::OBJECTID,
        Bson::Boolean(_) => class::BOOL,
        Bson::DateTime(_) => class::DATE,
        _ => return None,
    };
    // The next class byte: classes are spaced apart, and no encoding of
    // this class starts with a byte between them.
    Some((c, c + 1))
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IndexKey(")?;
        for b in self.0.iter() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Why a document cannot be indexed by a spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexKeyError {
    /// MongoDB's `CannotIndexParallelArrays` (code 171).
    #[error("cannot index parallel arrays [{0}] [{1}]")]
    ParallelArrays(String, String),
    /// This crate keeps no key map for that index (unknown name, `_id_`, a
    /// partial, collated or special (text, geo, hashed) index): scan instead.
    #[error("no key map is kept for index {0:?}")]
    NotMaintained(String),
}

/// The part of an index spec that decides its keys. Plain ascending /
/// descending fields, geo fields (`"2dsphere"`, `"2d"`) and text indexes,
/// without a partial filter or a collation, get a key map: this crate does
/// not evaluate filters, collations or hashed keys.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct KeyPattern {
    fields: Vec<KeyField>,
    sparse: bool,
}

/// One field of a key tuple: how a document's values for it are found.
#[derive(Clone, Debug, PartialEq)]
enum KeyField {
    /// The values at a dotted path (see the module doc).
    Path(String),
    /// The distinct terms of a text index's strings (`_fts`; `_ftsx` gives
    /// no field of its own).
    Text(std::sync::Arc<text::TextSpec>),
    /// The cells of the locations at a dotted path (`"2dsphere"`, `"2d"`).
    Geo { path: String, geo: GeoField },
}

impl KeyPattern {
    /// `None` when the spec gets no key map (see the type's doc).
    pub fn parse(spec: &Document) -> Option<KeyPattern> {
        if spec.get_str("name").ok()? == "_id_"
            || spec.contains_key("partialFilterExpression")
            || spec.contains_key("collation")
        {
            return None;
        }
        let key = spec.get_document("key").ok()?;
        if key.is_empty() {
            return None;
        }
        let text = match key.contains_key(text::FTS) {
            true => Some(std::sync::Arc::new(text::TextSpec::from_spec(spec)?)),
            false => None,
        };
        let mut fields = Vec::with_capacity(key.len());
        for (field, direction) in key {
            match (field.as_str(), direction, &text) {
                (text::FTS, _, Some(t)) => fields.push(KeyField::Text(t.clone())),
                (text::FTSX, _, Some(_)) => {}
                (_, Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_), _) => {
                    fields.push(KeyField::Path(field.clone()))
                }
                (_, other, _) => fields.push(KeyField::Geo {
                    path: field.clone(),
                    geo: GeoField::of(other, spec)??,
                }),
            }
        }
        let sparse = match spec.get("sparse") {
            Some(Bson::Boolean(b)) => *b,
            Some(Bson::Int32(n)) => *n != 0,
            Some(Bson::Int64(n)) => *n != 0,
            Some(Bson::Double(x)) => *x != 0.0,
            _ => false,
        };
        Some(KeyPattern { fields, sparse })
    }

    /// Every key tuple `doc` has (see the module doc), deduplicated, in key
    /// order; empty for a sparse index and a document with none of the
    /// fields. `strict` refuses parallel arrays instead of taking the product.
    pub fn keys(&self, doc: &Document, strict: bool) -> Result<Vec<Vec<Bson>>, IndexKeyError> {
        self.keys_and_shape(doc, strict).map(|(k, _)| k)
    }

    /// [`KeyPattern::keys`], and the document's [`KeyShape`] for this index.
    fn keys_and_shape(
        &self,
        doc: &Document,
        strict: bool,
    ) -> Result<(Vec<Vec<Bson>>, KeyShape), IndexKeyError> {
        let mut shape = KeyShape::default();
        let mut per_field: Vec<Vec<Bson>> = Vec::with_capacity(self.fields.len());
        let mut any_present = false;
        let mut multikey: Option<&str> = None;
        for field in &self.fields {
            let field = match field {
                KeyField::Path(path) => path,
                KeyField::Text(spec) => {
                    let terms: Vec<Bson> =
                        spec.key_terms(doc).into_iter().map(Bson::String).collect();
                    if terms.is_empty() {
                        return Ok((Vec::new(), shape));
                    }
                    per_field.push(terms);
                    continue;
                }
                KeyField::Geo { path, geo } => {
                    // A geo field's keys are cells; a document without any
                    // is not in the index (2dsphere v2+ and 2d are sparse).
                    let parts: Vec<&str> = path.split('.').collect();
                    let mut leaves = Vec::new();
                    geo_values(doc, &parts, &mut leaves);
                    let cells = geo.keys(&leaves);
                    if cells.is_empty() {
                        return Ok((Vec::new(), shape));
                    }
                    shape.multikey |= cells.len() > 1;
                    per_field.push(cells.into_iter().map(Bson::Int64).collect());
                    any_present = true;
                    continue;
                }
            };
            let parts: Vec<&str> = field.split('.').collect();
            let mut found = Found::default();
            in_document(doc, &parts, &mut found);
            if found.array {
                if let (true, Some(first)) = (strict, multikey) {
                    return Err(IndexKeyError::ParallelArrays(
                        first.to_string(),
                        field.clone(),
                    ));
                }
                multikey = Some(field.as_str());
                shape.multikey = true;
            }
            if found.values.is_empty() {
                per_field.push(vec![Bson::Null]);
            } else {
                any_present = true;
                if found.missing_element {
                    found.values.push(Bson::Null);
                }
                per_field.push(found.values);
            }
        }
        if self.sparse && !any_present {
            return Ok((Vec::new(), shape));
        }
        shape.decimal = per_field.iter().flatten().any(holds_decimal);
        let mut tuples: Vec<Vec<Bson>> = vec![Vec::with_capacity(self.fields.len())];
        for values in per_field {
            tuples = if values.len() == 1 {
                tuples
                    .into_iter()
                    .map(|mut t| {
                        t.push(values[0].clone());
                        t
                    })
                    .collect()
            } else {
                tuples
                    .iter()
                    .flat_map(|t| {
                        values.iter().map(move |v| {
                            let mut t = t.clone();
                            t.push(v.clone());
                            t
                        })
                    })
                    .collect()
            };
        }
        let mut keyed: Vec<(IndexKey, Vec<Bson>)> = tuples
            .into_iter()
            .map(|t| (IndexKey::from_values(&t), t))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        keyed.dedup_by(|a, b| a.0 == b.0);
        Ok((keyed.into_iter().map(|(_, t)| t).collect(), shape))
    }

    /// Whether this is a text index's pattern (its keys hold terms: only a
    /// `$text` plan reads them).
    pub fn is_text(&self) -> bool {
        self.fields.iter().any(|f| matches!(f, KeyField::Text(_)))
    }

    /// The encoded keys of `doc` (lenient: the fold never refuses).
    #[cfg(test)]
    pub fn key_set(&self, doc: &Document) -> Vec<IndexKey> {
        self.key_set_and_shape(doc).0
    }

    /// The encoded keys of `doc`, sorted and deduplicated (lenient: the
    /// fold never refuses), and the document's [`KeyShape`].
    pub fn key_set_and_shape(&self, doc: &Document) -> (Vec<IndexKey>, KeyShape) {
        let (tuples, shape) = self.keys_and_shape(doc, false).unwrap_or_default();
        let mut keys: Vec<IndexKey> = tuples.iter().map(|t| IndexKey::from_values(t)).collect();
        keys.sort();
        keys.dedup();
        (keys, shape)
    }
}

/// What a document's keys in one index look like, for a query planner:
/// whether it is multikey there (an array on an indexed path: it has
/// several keys or an array's element as its key, so bounds on one field
/// cannot be intersected and index order is not sort order), and whether a
/// key holds a Decimal128 (which keys apart from the other numbers: see
/// `idkey`, so numeric bounds and index order would miss it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyShape {
    pub multikey: bool,
    pub decimal: bool,
}

fn holds_decimal(v: &Bson) -> bool {
    match v {
        Bson::Decimal128(_) => true,
        Bson::Array(items) => items.iter().any(holds_decimal),
        Bson::Document(d) => d.values().any(holds_decimal),
        _ => false,
    }
}

/// The values at a dotted path, walking into arrays of sub-documents on the
/// way but taking the last value as it is (a legacy pair is an array).
fn geo_values<'a>(doc: &'a Document, path: &[&str], out: &mut Vec<&'a Bson>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(v) = doc.get(*first) else { return };
    geo_value(v, rest, out);
}

fn geo_value<'a>(v: &'a Bson, rest: &[&str], out: &mut Vec<&'a Bson>) {
    if rest.is_empty() {
        out.push(v);
        return;
    }
    match v {
        Bson::Document(d) => geo_values(d, rest, out),
        Bson::Array(items) => {
            for item in items {
                if let Bson::Document(d) = item {
                    geo_values(d, rest, out);
                }
            }
        }
        _ => {}
    }
}

/// What walking one dotted path found.
#[derive(Default)]
struct Found {
    values: Vec<Bson>,
    /// An array was expanded on the way (the field is multikey here).
    array: bool,
    /// An expanded array had an element without the rest of the path.
    missing_element: bool,
}

fn in_document(doc: &Document, path: &[&str], found: &mut Found) {
    if let Some((first, rest)) = path.split_first()
        && let Some(v) = doc.get(*first)
    {
        in_value(v, rest, found);
    }
}

fn in_value(value: &Bson, rest: &[&str], found: &mut Found) {
    let Some((first, tail)) = rest.split_first() else {
        match value {
            Bson::Array(items) => {
                found.array = true;
                if items.is_empty() {
                    found.values.push(Bson::Undefined);
                } else {
                    found.values.extend(items.iter().cloned());
                }
            }
            v => found.values.push(v.clone()),
        }
        return;
    };
    match value {
        Bson::Document(d) => in_document(d, rest, found),
        Bson::Array(items) => {
            // A numeric component picks an element (not multikey by itself).
            if let Ok(i) = first.parse::<usize>()
                && let Some(item) = items.get(i)
            {
                in_value(item, tail, found);
                return;
            }
            found.array = true;
            for item in items {
                let before = found.values.len();
                if let Bson::Document(d) = item {
                    in_document(d, rest, found);
                }
                if found.values.len() == before {
                    found.missing_element = true;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn keys(spec: Document, d: Document) -> Vec<Vec<Bson>> {
        KeyPattern::parse(&spec).unwrap().keys(&d, true).unwrap()
    }

    #[test]
    fn missing_is_null_and_sparse_skips() {
        let spec = doc! {"name": "a_1", "key": {"a": 1}};
        assert_eq!(keys(spec, doc! {"_id": 1}), vec![vec![Bson::Null]]);
        let sparse = doc! {"name": "a_1_b_1", "key": {"a": 1, "b": -1}, "sparse": true};
        assert!(keys(sparse.clone(), doc! {"_id": 1}).is_empty());
        assert_eq!(
            keys(sparse, doc! {"_id": 1, "b": 2}),
            vec![vec![Bson::Null, Bson::Int32(2)]]
        );
    }

    #[test]
    fn arrays_are_multikey() {
        let spec = doc! {"name": "t", "key": {"t": 1}};
        assert_eq!(
            keys(spec.clone(), doc! {"t": [2, 1, 2.0]}),
            vec![vec![Bson::Int32(1)], vec![Bson::Int32(2)]]
        );
        assert_eq!(keys(spec, doc! {"t": []}), vec![vec![Bson::Undefined]]);
        let dotted = doc! {"name": "ab", "key": {"a.b": 1}};
        assert_eq!(
            keys(dotted.clone(), doc! {"a": [{"b": 1}, {"c": 1}]}),
            vec![vec![Bson::Null], vec![Bson::Int32(1)]]
        );
        assert_eq!(
            keys(dotted, doc! {"a": {"b": [3]}}),
            vec![vec![Bson::Int32(3)]]
        );
        let parallel = KeyPattern::parse(&doc! {"name": "x", "key": {"a": 1, "b": 1}}).unwrap();
        assert_eq!(
            parallel.keys(&doc! {"a": [1, 2], "b": [3, 4]}, true),
            Err(IndexKeyError::ParallelArrays("a".into(), "b".into()))
        );
        assert_eq!(
            parallel
                .keys(&doc! {"a": [1, 2], "b": [3, 4]}, false)
                .map(|k| k.len()),
            Ok(4)
        );
    }

    #[test]
    fn keys_compare_by_value_and_null_differs_from_undefined() {
        assert_eq!(
            IndexKey::from_values(&[Bson::Int32(1), Bson::String("x".into())]),
            IndexKey::from_values(&[Bson::Double(1.0), Bson::String("x".into())])
        );
        assert_ne!(
            IndexKey::from_values(&[Bson::Null]),
            IndexKey::from_values(&[Bson::Undefined])
        );
        assert!(
            IndexKey::from_values(&[Bson::Int32(1), Bson::Int32(9)])
                < IndexKey::from_values(&[Bson::Int32(2), Bson::Int32(0)])
        );
    }

    #[test]
    fn text_indexes_key_each_distinct_term_between_prefix_and_suffix() {
        let spec = doc! {
            "v": 2, "name": "k_text", "key": {"k": 1, "_fts": "text", "_ftsx": 1, "z": -1},
            "weights": {"t": 1}, "default_language": "english",
            "language_override": "language", "textIndexVersion": 3,
        };
        let pattern = KeyPattern::parse(&spec).unwrap();
        assert!(pattern.is_text());
        let s = |t: &str| Bson::String(t.into());
        assert_eq!(
            pattern
                .keys(&doc! {"k": [1, 2], "t": "Coffee coffees, the SHOP"}, false)
                .unwrap(),
            vec![
                vec![Bson::Int32(1), s("coffe"), Bson::Null],
                vec![Bson::Int32(1), s("shop"), Bson::Null],
                vec![Bson::Int32(2), s("coffe"), Bson::Null],
                vec![Bson::Int32(2), s("shop"), Bson::Null],
            ]
        );
        // No term (stop words only, no string, a refused language): no key.
        for d in [
            doc! {"k": 1, "t": "the and"},
            doc! {"k": 1},
            doc! {"k": 1, "t": "tea", "language": 3},
        ] {
            assert!(pattern.key_set(&d).is_empty(), "{d}");
        }
        // A 1 MB string of 20,000 distinct words: each keyed once.
        let big: String = (0..200_000).map(|i| format!("w{} ", i % 20_000)).collect();
        assert_eq!(pattern.key_set(&doc! {"k": 1, "t": big}).len(), 20_000);
        // Equal specs key alike whatever their names.
        let mut renamed = spec.clone();
        renamed.insert("name", "other");
        assert_eq!(KeyPattern::parse(&renamed), Some(pattern));
    }

    #[test]
    fn special_partial_and_collated_indexes_get_no_map() {
        for spec in [
            doc! {"name": "_id_", "key": {"_id": 1}},
            doc! {"name": "t", "key": {"t": "text"}},
            doc! {"name": "h", "key": {"h": "hashed"}},
            doc! {"name": "p", "key": {"p": 1}, "partialFilterExpression": {"p": {"$gt": 1}}},
            doc! {"name": "c", "key": {"c": 1}, "collation": {"locale": "en"}},
        ] {
            assert_eq!(KeyPattern::parse(&spec), None, "{spec}");
        }
    }
}
