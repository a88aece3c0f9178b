//! Index rules a write must pass: unique keys and indexable keys. The one
//! place they live: a single write, a transaction's statement, a
//! transaction's commit on a newer head and a new index all call these.
//!
//! Keys follow `indexkey` (MongoDB's multikey rules), so the check and the
//! key maps agree by construction. A unique index with a key map (a plain
//! one) is checked in O(keys × log n); one without (a partial index, whose
//! membership is the query language's `partialFilterExpression`) is checked
//! by a scan, with the membership test supplied by the caller as an
//! [`IndexFilter`]: the WAL has no query engine.

use bson::{Bson, Document, doc};
use std::sync::Arc;

use crate::error::{Result, WalError};
use crate::indexkey::{IndexKeyError, KeyPattern};
use crate::state::{BranchState, CollectionState};
use crate::types::Namespace;

/// What the index rules need from the query engine, which the WAL does not
/// have: whether a document is in a partial index
/// (`partialFilterExpression`), and how an index with a `collation`
/// compares its keys.
pub trait IndexFilter: Send + Sync {
    fn matches(&self, filter: &Document, doc: &Document) -> bool;

    /// `values` (one key tuple) as an index with `collation` compares
    /// them: values equal under the collation must come out equal
    /// (strings replaced by their collation keys). Without a query engine
    /// they are compared as they are (binary comparison).
    fn collate(&self, collation: &Document, values: Vec<Bson>) -> Vec<Bson> {
        let _ = collation;
        values
    }
}

impl std::fmt::Debug for dyn IndexFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexFilter")
    }
}

/// For users of the WAL without a query engine (tools, tests): every
/// document is taken to be in every partial index, so uniqueness is only
/// ever stricter than MongoDB's.
pub struct EveryDocument;

impl IndexFilter for EveryDocument {
    fn matches(&self, _: &Document, _: &Document) -> bool {
        true
    }
}

pub fn every_document() -> Arc<dyn IndexFilter> {
    Arc::new(EveryDocument)
}

fn id_index() -> Document {
    doc! {"name": "_id_", "key": {"_id": 1}}
}

/// The key pattern of `spec` for key extraction, membership and collation
/// aside (see [`collated`]).
fn pattern_of(spec: &Document) -> Option<KeyPattern> {
    // A text index is never unique (`createIndexes` refuses it) and its
    // keys are terms: nothing to compare.
    if spec
        .get_document("key")
        .is_ok_and(|k| k.contains_key(crate::indexkey::text::FTS))
    {
        return None;
    }
    if spec.contains_key("partialFilterExpression") || spec.contains_key("collation") {
        let mut plain = spec.clone();
        plain.remove("partialFilterExpression");
        plain.remove("collation");
        KeyPattern::parse(&plain)
    } else {
        KeyPattern::parse(spec)
    }
}

/// Key tuples as `spec`'s index compares them: under its collation, if it
/// has one (such an index keeps no key map, so it is always scanned).
fn collated(spec: &Document, tuples: Vec<Vec<Bson>>, filter: &dyn IndexFilter) -> Vec<Vec<Bson>> {
    match spec.get_document("collation") {
        Ok(c) => tuples.into_iter().map(|t| filter.collate(c, t)).collect(),
        Err(_) => tuples,
    }
}

fn in_index(spec: &Document, doc: &Document, filter: &dyn IndexFilter) -> bool {
    match spec.get("partialFilterExpression") {
        Some(Bson::Document(f)) => filter.matches(f, doc),
        _ => true,
    }
}

fn keys(pattern: &KeyPattern, doc: &Document) -> Result<Vec<Vec<Bson>>> {
    pattern.keys(doc, true).map_err(|e| match e {
        IndexKeyError::ParallelArrays(a, b) => WalError::ParallelArrays { a, b },
        other => WalError::InvalidOp(other.to_string()),
    })
}

fn duplicate(ns: &Namespace, spec: &Document, values: &[Bson]) -> WalError {
    let pattern = spec.get_document("key").cloned().unwrap_or_default();
    let key: Document = pattern
        .keys()
        .cloned()
        .zip(values.iter().cloned())
        .collect();
    WalError::DuplicateKey(Box::new(crate::error::DuplicateKey {
        ns: ns.clone(),
        index: spec.get_str("name").unwrap_or("_id_").to_string(),
        pattern,
        key,
    }))
}

/// Refuses `doc` in `ns` of `state` when it cannot be indexed (parallel
/// arrays under a compound index: `ParallelArrays`, MongoDB 171) or holds a
/// key another document holds in a unique index (`DuplicateKey`); `insert`
/// also refuses an existing `_id`. A replacement of the document with the
/// same `_id` does not conflict with itself.
pub fn check_put(
    state: &BranchState,
    ns: &Namespace,
    doc: &Document,
    insert: bool,
    filter: &dyn IndexFilter,
) -> Result<()> {
    let Some(coll) = state.collection(ns)? else {
        return Ok(());
    };
    let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
    if insert && coll.get(&id)?.is_some() {
        return Err(duplicate(ns, &id_index(), &[id]));
    }
    for spec in coll.indexes().iter().skip(1) {
        let Some(pattern) = pattern_of(spec) else {
            continue; // special index types: no comparable keys
        };
        let own = keys(&pattern, doc)?;
        if !spec.get_bool("unique").unwrap_or(false) || !in_index(spec, doc, filter) {
            continue;
        }
        let name = spec.get_str("name").unwrap_or_default();
        if coll.has_key_map(name) {
            match coll.unique_conflict(name, doc) {
                Ok(Some((values, _))) => return Err(duplicate(ns, spec, &values)),
                Ok(None) => continue,
                Err(_) => {} // scanned below
            }
        }
        if let Some(at) = held_by_another(&coll, spec, &pattern, &id, &own, filter)? {
            return Err(duplicate(ns, spec, &own[at]));
        }
    }
    Ok(())
}

/// The position in `own` of the first key that a document other than `id`
/// holds in `spec` (a scan: the index keeps no key map).
fn held_by_another(
    coll: &CollectionState,
    spec: &Document,
    pattern: &KeyPattern,
    id: &Bson,
    own: &[Vec<Bson>],
    filter: &dyn IndexFilter,
) -> Result<Option<usize>> {
    let own_key = crate::idkey::IdKey::from_bson(id);
    let wanted: Vec<_> = collated(spec, own.to_vec(), filter)
        .iter()
        .map(|v| crate::indexkey::IndexKey::from_values(v))
        .enumerate()
        .collect();
    for other in coll.iter() {
        let other = other?.to_document();
        let other_id = other.get("_id").cloned().unwrap_or(Bson::Null);
        if crate::idkey::IdKey::from_bson(&other_id) == own_key || !in_index(spec, &other, filter) {
            continue;
        }
        let Ok(theirs) = pattern.keys(&other, false) else {
            continue;
        };
        for t in collated(spec, theirs, filter) {
            let t = crate::indexkey::IndexKey::from_values(&t);
            if let Some((at, _)) = wanted.iter().find(|(_, k)| *k == t) {
                return Ok(Some(*at));
            }
        }
    }
    Ok(None)
}

/// Refuses a new index `spec` over the documents of `coll`: one that cannot
/// be indexed (parallel arrays), or, for a unique index, two documents
/// sharing a key.
pub fn check_new_index(
    coll: &CollectionState,
    ns: &Namespace,
    spec: &Document,
    filter: &dyn IndexFilter,
) -> Result<()> {
    let Some(pattern) = pattern_of(spec) else {
        return Ok(());
    };
    let unique = spec.get_bool("unique").unwrap_or(false);
    let mut seen = std::collections::HashMap::new();
    for d in coll.iter() {
        let d = d?.to_document();
        let ks = keys(&pattern, &d)?;
        if !unique || !in_index(spec, &d, filter) {
            continue;
        }
        let id = crate::idkey::IdKey::from_bson(d.get("_id").unwrap_or(&Bson::Null));
        let compared = collated(spec, ks.clone(), filter);
        for (values, compared) in ks.into_iter().zip(compared) {
            let key = crate::indexkey::IndexKey::from_values(&compared);
            match seen.get(&key) {
                Some(holder) if *holder != id => return Err(duplicate(ns, spec, &values)),
                _ => {
                    seen.insert(key, id.clone());
                }
            }
        }
    }
    Ok(())
}
