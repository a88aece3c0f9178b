//! `$lookup` (`from`, `localField`, `foreignField`, `as`): each local
//! document gets the foreign documents whose `foreignField` equals one of
//! its `localField` values (`$eq` rules: numbers across types, array
//! elements, null matching missing).
//!
//! The foreign side is never held whole. Each local key takes one of
//! these paths, as MongoDB's engine chooses between its join kinds:
//! - `foreignField: "_id"`: a point lookup (the `_id` index) when the key
//!   finds exactly what `$eq` finds ([`id_exact`]: not for numbers, which
//!   `IdKey` does not unify with a Decimal128 `_id`);
//! - else a hash join: one pass over the foreign collection (when the
//!   first key needs it) builds [`LookupIndex`], which maps each foreign
//!   value's canonical key to the *keys* of the documents holding it (not
//!   the documents: they stay in the snapshot and are fetched when they
//!   match), charged to the stage's blocking budget;
//! - when that index would pass the budget (or a foreign value cannot be
//!   keyed), a nested-loop join: the foreign collection is scanned once per
//!   local document, parsing one document at a time.
//!
//! Keys and indexes only narrow: the `$eq` predicate decides every
//! candidate. Values whose equality the canonical key does not capture
//! exactly (Decimal128, NaN, symbols, undefined) and null keys (which also
//! match a missing field) are looked up by a scan. The documents joined to
//! one local document add up to at most 16 MiB + 16 KiB (4568).

use std::collections::HashMap;
use std::sync::Arc;

use argon_wal::IdKey;
use bson::{Bson, Document};

use super::super::filter::Pred;
use super::super::path;
use super::ops::with_field;
use super::{Cx, Op};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits;
use crate::spill::StageBudget;

/// The collections a pipeline reads besides its input (for `$lookup`).
/// Keys are opaque bytes that order a collection (`_id` order in a
/// snapshot); a join keeps keys and fetches documents when they match.
pub trait Lookup {
    /// Calls `f` with the key and the parsed document of each document of
    /// collection `from`, in order, until `f` returns `false`.
    fn scan(&self, from: &str, f: &mut dyn FnMut(&[u8], Document) -> Result<bool>) -> Result<()> {
        self.scan_after(from, None, f)
    }

    /// [`Lookup::scan`] from the first key after `after` (from the start
    /// when `None`), so a reader can stop and resume (`$unionWith`).
    fn scan_after(
        &self,
        from: &str,
        after: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], Document) -> Result<bool>,
    ) -> Result<()>;

    /// The document of `from` with key `key` (one [`Lookup::scan`] gave).
    fn fetch(&self, from: &str, key: &[u8]) -> Result<Option<Document>>;

    /// The key and document of `from` whose `_id` is the same `_id` as `id`.
    fn by_id(&self, from: &str, id: &Bson) -> Result<Option<(Vec<u8>, Document)>>;
}

/// Documents in memory that every `from` name reads (tests, fuzzing).
pub struct InMemory(pub Vec<Document>);

impl Lookup for InMemory {
    fn scan_after(
        &self,
        _: &str,
        after: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], Document) -> Result<bool>,
    ) -> Result<()> {
        let start = match after {
            None => 0,
            Some(k) => match <[u8; 8]>::try_from(k) {
                Ok(b) => usize::try_from(u64::from_be_bytes(b))
                    .map_or(usize::MAX, |i| i.saturating_add(1)),
                Err(_) => usize::MAX,
            },
        };
        for (i, d) in self.0.iter().enumerate().skip(start) {
            if !f(&(i as u64).to_be_bytes(), d.clone())? {
                break;
            }
        }
        Ok(())
    }

    fn fetch(&self, _: &str, key: &[u8]) -> Result<Option<Document>> {
        let Ok(key) = <[u8; 8]>::try_from(key) else {
            return Ok(None);
        };
        let i = usize::try_from(u64::from_be_bytes(key)).unwrap_or(usize::MAX);
        Ok(self.0.get(i).cloned())
    }

    fn by_id(&self, _: &str, id: &Bson) -> Result<Option<(Vec<u8>, Document)>> {
        let key = IdKey::from_bson(id);
        Ok(self
            .0
            .iter()
            .enumerate()
            .find(|(_, d)| d.get("_id").is_some_and(|v| IdKey::from_bson(v) == key))
            .map(|(i, d)| ((i as u64).to_be_bytes().to_vec(), d.clone())))
    }
}

/// Bytes charged per index entry and per key reference, beyond the key
/// bytes themselves (hash table slot, vector, `Arc` header).
const ENTRY_OVERHEAD: usize = 64;
const REFERENCE_OVERHEAD: usize = 16;

/// `$lookup`'s hash index: foreign documents' keys by the canonical key
/// (`IdKey`) of every value their `foreignField` holds, so a local key finds
/// its candidates in O(1) instead of a scan of the foreign collection.
pub(super) struct LookupIndex {
    by_key: HashMap<IdKey, Vec<Arc<[u8]>>>,
}

impl LookupIndex {
    /// Whether `IdKey` equality is exactly `$eq` equality for `v`.
    fn hashable(v: &Bson) -> bool {
        match v {
            Bson::Decimal128(_) | Bson::Symbol(_) | Bson::Undefined | Bson::Null => false,
            Bson::Double(d) => !d.is_nan(),
            Bson::Array(a) => a.iter().all(Self::hashable),
            Bson::Document(d) => d.iter().all(|(_, v)| Self::hashable(v)),
            _ => true,
        }
    }

    /// The hash key of `v`: its `IdKey`, of its collation key when the
    /// stage runs under a collation (strings equal under it share a key).
    fn key(v: &Bson) -> IdKey {
        if crate::query::collation::active_is_simple() {
            IdKey::from_bson(v)
        } else {
            IdKey::from_bson(&crate::query::collation::comparison_key(v))
        }
    }

    /// The index of `from` by `field`, or `None` when a foreign value
    /// cannot be indexed or the index would pass `budget` bytes.
    pub(super) fn build(
        cx: &mut Cx<'_>,
        from: &str,
        field: &str,
        budget: usize,
    ) -> Result<Option<Self>> {
        let mut by_key: HashMap<IdKey, Vec<Arc<[u8]>>> = HashMap::new();
        let mut bytes = 0usize;
        let mut usable = true;
        let lookup = cx.lookup();
        lookup.scan(from, &mut |key, f| {
            cx.tick()?;
            let key: Arc<[u8]> = Arc::from(key);
            bytes = bytes.saturating_add(key.len() + REFERENCE_OVERHEAD);
            let r = path::resolve(&f, field);
            let mut add = |v: &Bson| -> bool {
                match v {
                    // Null and missing are looked up by scan (see above).
                    Bson::Null | Bson::Undefined => true,
                    v if Self::hashable(v) => {
                        let k = Self::key(v);
                        let new_entry = !by_key.contains_key(&k);
                        if new_entry {
                            bytes = bytes.saturating_add(k.as_bytes().len() + ENTRY_OVERHEAD);
                        }
                        let keys = by_key.entry(k).or_default();
                        if keys.last() != Some(&key) {
                            bytes = bytes.saturating_add(REFERENCE_OVERHEAD);
                            keys.push(key.clone());
                        }
                        true
                    }
                    _ => false,
                }
            };
            for v in &r.values {
                usable &= add(v);
                if let Bson::Array(items) = v {
                    for item in items {
                        usable &= add(item);
                    }
                }
            }
            usable &= bytes <= budget;
            Ok(usable)
        })?;
        Ok(usable.then_some(LookupIndex { by_key }))
    }

    /// The keys of the foreign documents that may equal one of `keys`, in
    /// collection order; `None` when a key cannot use the index.
    pub(super) fn candidates(&self, keys: &[Bson]) -> Option<Vec<Arc<[u8]>>> {
        if !keys.iter().all(Self::hashable) {
            return None;
        }
        let mut out: Vec<Arc<[u8]>> = keys
            .iter()
            .filter_map(|k| self.by_key.get(&Self::key(k)))
            .flatten()
            .cloned()
            .collect();
        out.sort_unstable();
        out.dedup();
        Some(out)
    }
}

/// The hash index of a stage, built when the first key needs it.
enum Index {
    Unbuilt,
    Built(LookupIndex),
    /// Past the budget or not keyable: every key scans.
    Unusable,
}

/// Whether a point lookup by `_id` finds every document whose `_id` `$eq`
/// matches `v`: `IdKey` keys Decimal128 by its bytes, so a numeric key
/// could miss a Decimal128 `_id` of the same value; a null key finds the
/// one `_id` of null (no stored document lacks an `_id`).
fn id_exact(v: &Bson) -> bool {
    fn numeric(v: &Bson) -> bool {
        match v {
            Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => true,
            Bson::Array(a) => a.iter().any(numeric),
            Bson::Document(d) => d.iter().any(|(_, v)| numeric(v)),
            _ => false,
        }
    }
    matches!(v, Bson::Null | Bson::Undefined)
        || (LookupIndex::hashable(v)
            && !numeric(v)
            && (crate::query::collation::active_is_simple()
                || !crate::query::collation::has_string(v)))
}

pub(super) fn op(
    input: Box<dyn Op>,
    from: String,
    local: String,
    foreign: String,
    as_field: String,
    budget: StageBudget,
) -> Box<dyn Op> {
    Box::new(LookupOp {
        input,
        from,
        local,
        foreign,
        as_field,
        budget,
        index: Index::Unbuilt,
    })
}

struct LookupOp {
    input: Box<dyn Op>,
    from: String,
    local: String,
    foreign: String,
    as_field: String,
    budget: StageBudget,
    index: Index,
}

impl Op for LookupOp {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        let Some(d) = self.input.next(cx)? else {
            return Ok(None);
        };
        let keys = local_keys(&d, &self.local);
        let preds: Vec<Pred> = keys.iter().map(|k| Pred::Eq(k.clone())).collect();
        let mut matched = Matched::new(&self.from);
        let lookup = cx.lookup();
        if self.foreign == "_id" && keys.iter().all(id_exact) {
            let mut found: Vec<(Vec<u8>, Document)> = Vec::new();
            for k in &keys {
                found.extend(lookup.by_id(&self.from, k)?);
            }
            found.sort_by(|a, b| a.0.cmp(&b.0));
            found.dedup_by(|a, b| a.0 == b.0);
            for (_, f) in found {
                cx.tick()?;
                matched.offer(&f, &self.foreign, &preds)?;
            }
        } else {
            if matches!(self.index, Index::Unbuilt) {
                self.index =
                    match LookupIndex::build(cx, &self.from, &self.foreign, self.budget.bytes)? {
                        Some(ix) => Index::Built(ix),
                        None => Index::Unusable,
                    };
            }
            let candidates = match &self.index {
                Index::Built(ix) => ix.candidates(&keys),
                _ => None,
            };
            match candidates {
                Some(candidates) => {
                    for key in candidates {
                        cx.tick()?;
                        if let Some(f) = lookup.fetch(&self.from, &key)? {
                            matched.offer(&f, &self.foreign, &preds)?;
                        }
                    }
                }
                None => lookup.scan(&self.from, &mut |_, f| {
                    cx.tick()?;
                    matched.offer(&f, &self.foreign, &preds)?;
                    Ok(true)
                })?,
            }
        }
        with_field(d, &self.as_field, Bson::Array(matched.docs), "$lookup").map(Some)
    }
}

/// The values of `local` in `d` a foreign value may equal: each value and
/// each element of an array value; null when the field is missing.
pub(super) fn local_keys(d: &Document, local: &str) -> Vec<Bson> {
    let local_vals = path::resolve(d, local);
    if local_vals.values.is_empty() {
        return vec![Bson::Null];
    }
    local_vals
        .values
        .iter()
        .flat_map(|v| match v {
            Bson::Array(a) => a.clone(),
            v => vec![(*v).clone()],
        })
        .collect()
}

/// Whether `f`'s `field` `$eq`-matches one of `preds` (one per local key).
pub(super) fn joins(f: &Document, field: &str, preds: &[Pred]) -> bool {
    let r = path::resolve(f, field);
    preds.iter().any(|p| p.matches(&r))
}

/// The foreign documents joined to one local document, held to
/// [`limits::MAX_LOOKUP_MATCHED_SIZE`].
pub(super) struct Matched<'a> {
    from: &'a str,
    docs: Vec<Bson>,
    bytes: usize,
}

impl<'a> Matched<'a> {
    pub(super) fn new(from: &'a str) -> Matched<'a> {
        Matched {
            from,
            docs: Vec::new(),
            bytes: 0,
        }
    }

    /// Keeps `f` if its `field` satisfies one of `preds`.
    fn offer(&mut self, f: &Document, field: &str, preds: &[Pred]) -> Result<()> {
        if !joins(f, field, preds) {
            return Ok(());
        }
        self.push(f.clone())
    }

    pub(super) fn into_docs(self) -> Vec<Bson> {
        self.docs
    }

    /// Keeps `f`, within the bound.
    pub(super) fn push(&mut self, f: Document) -> Result<()> {
        self.bytes = self.bytes.saturating_add(limits::document_size(&f));
        if self.bytes > limits::MAX_LOOKUP_MATCHED_SIZE {
            return Err(CommandError::new(
                ErrorCode::Location4568,
                format!(
                    "Total size of documents in {} matching pipeline's $lookup stage exceeds {} bytes",
                    self.from,
                    limits::MAX_LOOKUP_MATCHED_SIZE
                ),
            ));
        }
        self.docs.push(Bson::Document(f));
        Ok(())
    }
}
