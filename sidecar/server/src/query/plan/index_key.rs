//! The index key a plan reached a document under: what `find`'s
//! `returnKey` returns and `{$meta: "indexKey"}` projects, as MongoDB's
//! `ReturnKeyStage` reads it from the scan. An index scan gives the key
//! pattern's fields with the document's values there; `_id` lookups give
//! `{_id: value}`; a collection scan gives none.
//!
//! Argon's scans hand on documents, not keys, so the key is derived again
//! from the document: of its keys in the index, the one the scan met first
//! (a multikey document is returned once, under the first key inside the
//! bounds in scan order, which is the one a deduplicating scan keeps).

use std::cmp::Ordering;
use std::ops::RangeBounds;
use std::sync::Arc;

use argon_wal::{CollectionState, IndexKey, KeyInterval, ScanDirection};
use bson::{Bson, Document};

use super::Plan;
use super::min_max::KeyRange;

/// How to find a document's key under one plan.
#[derive(Clone, Debug, Default)]
pub enum IndexKeyOf {
    /// A collection scan: no index key.
    #[default]
    None,
    /// `_id` point lookups.
    Id,
    /// A scan of a secondary index's key map.
    Index {
        /// `{name, key}`: what `CollectionState::index_keys` reads.
        spec: Document,
        intervals: Arc<[KeyInterval]>,
        direction: ScanDirection,
        /// `min`/`max` not exact on the intervals: the key is also in it.
        range: Option<Arc<KeyRange>>,
    },
    /// `min`/`max` over an index without a key map, read as the
    /// collection: the first key of the document in the range.
    Range(Arc<KeyRange>),
}

impl IndexKeyOf {
    pub fn of(plan: &Plan) -> IndexKeyOf {
        match plan {
            Plan::Collscan | Plan::Natural(_) => IndexKeyOf::None,
            Plan::IdHack { .. } => IndexKeyOf::Id,
            Plan::Index(p) => IndexKeyOf::Index {
                spec: bson::doc! {"name": p.name.clone(), "key": p.key_pattern.clone()},
                intervals: p.bounds.intervals.clone().into(),
                direction: p.direction,
                range: p
                    .min_max
                    .as_ref()
                    .filter(|m| !m.exact)
                    .map(|m| m.range.clone()),
            },
            Plan::KeyRange(r) => IndexKeyOf::Range(r.clone()),
            // MongoDB's text keys hold a term and a score, which no
            // projection of the document gives back: none is returned.
            Plan::Text(_) => IndexKeyOf::None,
        }
    }

    /// `doc`'s key as a document (`{field: value, ...}` in key-pattern
    /// order), or `None` when the plan reads no index.
    pub fn key(&self, doc: &Document) -> Option<Document> {
        match self {
            IndexKeyOf::None => None,
            IndexKeyOf::Id => {
                let mut key = Document::new();
                key.insert("_id", doc.get("_id").cloned().unwrap_or(Bson::Null));
                Some(key)
            }
            IndexKeyOf::Index {
                spec,
                intervals,
                direction,
                range,
            } => {
                let keys = CollectionState::index_keys(spec, doc).unwrap_or_default();
                let first = keys
                    .into_iter()
                    .filter(|k| range.as_ref().is_none_or(|r| r.contains(k)))
                    .map(|k| (IndexKey::from_values(&k), k))
                    .filter(|(encoded, _)| intervals.iter().any(|iv| iv.contains(encoded)))
                    .reduce(|a, b| match (direction, a.0.cmp(&b.0)) {
                        (ScanDirection::Forward, Ordering::Greater)
                        | (ScanDirection::Backward, Ordering::Less) => b,
                        _ => a,
                    });
                Some(named(spec, first.map(|(_, k)| k)))
            }
            IndexKeyOf::Range(r) => {
                let first = CollectionState::index_keys(r.key_spec(), doc)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|k| r.contains(k))
                    .reduce(|a, b| {
                        if r.cmp_keys(&b, &a) == Ordering::Less {
                            b
                        } else {
                            a
                        }
                    });
                Some(named(r.key_spec(), first))
            }
        }
    }
}

/// The key pattern's fields with `values` (nulls where the document has
/// no key inside the bounds, which a candidate always has).
fn named(spec: &Document, values: Option<Vec<Bson>>) -> Document {
    let values = values.unwrap_or_default();
    spec.get_document("key")
        .map(|pattern| {
            pattern
                .keys()
                .enumerate()
                .map(|(i, f)| (f.clone(), values.get(i).cloned().unwrap_or(Bson::Null)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use std::ops::Bound;

    fn index(direction: ScanDirection, intervals: Vec<KeyInterval>) -> IndexKeyOf {
        IndexKeyOf::Index {
            spec: doc! {"name": "a_1", "key": {"a": 1}},
            intervals: intervals.into(),
            direction,
            range: None,
        }
    }

    #[test]
    fn a_multikey_document_gives_the_first_key_inside_the_bounds() {
        let all: KeyInterval = (Bound::Unbounded, Bound::Unbounded);
        let doc = doc! {"_id": 1, "a": [5, 2, 9]};
        assert_eq!(
            index(ScanDirection::Forward, vec![all.clone()]).key(&doc),
            Some(doc! {"a": 2})
        );
        assert_eq!(
            index(ScanDirection::Backward, vec![all]).key(&doc),
            Some(doc! {"a": 9})
        );
        // Bounds [4, 6]: only 5 is inside.
        let five_ish: KeyInterval = (
            Bound::Included(IndexKey::from_values(&[Bson::Int32(4)])),
            Bound::Included(IndexKey::from_values(&[Bson::Int32(6)])),
        );
        assert_eq!(
            index(ScanDirection::Forward, vec![five_ish]).key(&doc),
            Some(doc! {"a": 5})
        );
    }

    #[test]
    fn id_lookups_and_scans() {
        let doc = doc! {"_id": "x", "a": 1};
        assert_eq!(IndexKeyOf::Id.key(&doc), Some(doc! {"_id": "x"}));
        assert_eq!(IndexKeyOf::None.key(&doc), None);
        // A missing field is null in the key.
        let all: KeyInterval = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(
            index(ScanDirection::Forward, vec![all]).key(&doc! {"_id": 1}),
            Some(doc! {"a": Bson::Null})
        );
    }
}
