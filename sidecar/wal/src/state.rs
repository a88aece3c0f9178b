//! Materialized state of a branch at one point, and replay: the pure fold of
//! commits over it.
//!
//! Invariants:
//! - Replay is deterministic: `apply` depends only on the state and the op
//!   (no clock, no randomness, no hash-map iteration order).
//! - Cloning a `BranchState` is O(1): every level is a persistent map
//!   (`imbl::OrdMap`) or an `Arc`, so forks, checkpoints and readers share
//!   structure with the head.
//! - Every collection has the `_id_` index first in `indexes()`.
//! - Key maps are derived data: after every `apply`, each collection's key
//!   maps equal a rebuild from its documents and index specs (property-tested
//!   below). They are never stored; snapshots rebuild them on decode.

pub use crate::collection::CollectionState;
use crate::doc::Doc;
use crate::error::Result;
use crate::idkey::IdKey;
use crate::indexkey::{IndexKey, IndexKeyError, KeyPattern, KeyShape};
use crate::materialized::{Materialized, View};
use crate::rawdoc;
use crate::record::{Commit, DocOp};
use crate::retry::{RetryRecord, RetryTable};
use crate::types::{CommitTime, Namespace, Seq};
use bson::{Bson, Document, RawDocument, RawDocumentBuf, doc};
use imbl::{OrdMap, OrdSet};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::sync::Arc;

/// A secondary index's key map: `(key, _id key)` pairs, so that non-unique
/// indexes (and a unique one that a log written without checks broke) are
/// exact multimaps; a key's holders are a range of the set.
#[derive(Clone, Debug, PartialEq)]
struct KeyMap {
    name: String,
    pattern: KeyPattern,
    entries: OrdSet<(IndexKey, IdKey)>,
    /// Documents that are multikey in this index (`KeyShape::multikey`):
    /// a count, so a delete can clear the index's multikey flag.
    multikey_docs: usize,
    /// Documents with a Decimal128 in a key (`KeyShape::decimal`).
    decimal_docs: usize,
}

impl KeyMap {
    fn build(name: String, pattern: KeyPattern, docs: &OrdSet<StoredDoc>) -> KeyMap {
        let mut km = KeyMap {
            name,
            pattern,
            entries: OrdSet::new(),
            multikey_docs: 0,
            decimal_docs: 0,
        };
        for d in docs {
            let Some(raw) = d.doc() else { continue };
            let id = d.key();
            let (keys, shape) = km.pattern.key_set_and_shape(&rawdoc::parse(raw));
            km.count(shape, true);
            for k in keys {
                km.entries.insert((k, id.clone()));
            }
        }
        km
    }

    fn count(&mut self, shape: KeyShape, add: bool) {
        let step = |n: &mut usize, on: bool| {
            if on {
                *n = if add { *n + 1 } else { n.saturating_sub(1) };
            }
        };
        step(&mut self.multikey_docs, shape.multikey);
        step(&mut self.decimal_docs, shape.decimal);
    }

    /// The entries in `interval` (bytes compare), in `direction`, after
    /// (forward) or before (backward) `resume` when given.
    fn range<'a>(
        &'a self,
        interval: &KeyInterval,
        direction: ScanDirection,
        resume: Option<&IndexPosition>,
    ) -> Box<dyn Iterator<Item = IndexPosition> + 'a> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        // `k ++ [0]` is the byte string right after `k`: "keys <= k" is
        // "keys < k ++ [0]", and "keys > k" is "keys >= k ++ [0]".
        let after = |k: &IndexKey| {
            let mut b = k.as_bytes().to_vec();
            b.push(0);
            (IndexKey::from_bytes(b), IdKey::min())
        };
        let mut lo = match &interval.0 {
            Included(k) => Included((k.clone(), IdKey::min())),
            Excluded(k) => Included(after(k)),
            Unbounded => Unbounded,
        };
        let mut hi = match &interval.1 {
            Included(k) => Excluded(after(k)),
            Excluded(k) => Excluded((k.clone(), IdKey::min())),
            Unbounded => Unbounded,
        };
        if let Some(p) = resume {
            match direction {
                ScanDirection::Forward => {
                    if matches!(&lo, Included(l) if p >= l) || lo == Unbounded {
                        lo = Excluded(p.clone());
                    }
                }
                ScanDirection::Backward => {
                    if matches!(&hi, Excluded(h) if p < h) || hi == Unbounded {
                        hi = Excluded(p.clone());
                    }
                }
            }
        }
        // An empty or inverted range yields nothing (and must not reach
        // `range`, which may panic on one).
        let empty = match (&lo, &hi) {
            (Included(l), Excluded(h)) | (Excluded(l), Excluded(h)) => l >= h,
            _ => false,
        };
        if empty {
            return Box::new(std::iter::empty());
        }
        let it = self.entries.range((lo, hi)).cloned();
        match direction {
            ScanDirection::Forward => Box::new(it),
            ScanDirection::Backward => Box::new(it.rev()),
        }
    }

    /// The `_id` keys holding `key`, in `_id` order.
    fn holders<'a>(&'a self, key: &IndexKey) -> impl Iterator<Item = &'a IdKey> + use<'a> {
        let key = key.clone();
        self.entries
            .range((key.clone(), IdKey::min())..)
            .take_while(move |(k, _)| *k == key)
            .map(|(_, id)| id)
    }

    /// Replaces the entries of `id` for document `old` by those of `new`.
    fn update(&mut self, id: &IdKey, old: Option<&Document>, new: Option<&Document>) {
        let (old_keys, old_shape) = old
            .map(|d| self.pattern.key_set_and_shape(d))
            .unwrap_or_default();
        let (new_keys, new_shape) = new
            .map(|d| self.pattern.key_set_and_shape(d))
            .unwrap_or_default();
        self.count(old_shape, false);
        self.count(new_shape, true);
        if old_keys == new_keys {
            return;
        }
        for k in &old_keys {
            if new_keys.binary_search(k).is_err() {
                self.entries.remove(&(k.clone(), id.clone()));
            }
        }
        for k in new_keys {
            if old_keys.binary_search(&k).is_err() {
                self.entries.insert((k, id.clone()));
            }
        }
    }
}

/// One interval of index keys for [`CollectionState::index_scan`]: its ends
/// compare as bytes (a planner builds them from `IndexKey::encode_value`
/// and `indexkey::type_bracket`, so one interval can hold every key with a
/// given prefix).
pub type KeyInterval = (std::ops::Bound<IndexKey>, std::ops::Bound<IndexKey>);

/// A position in an index: an entry `(key, _id key)`. A scan resumes after
/// (forward) or before (backward) one, so a cursor keeps no iterator.
pub type IndexPosition = (IndexKey, IdKey);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanDirection {
    Forward,
    Backward,
}

/// What a planner needs to know about one index's keys now (see
/// `KeyShape`): whether any document is multikey in it, and whether any
/// key holds a Decimal128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexShape {
    pub multikey: bool,
    pub decimal: bool,
    pub entries: usize,
}

/// A document as state holds it: its `_id` key and its BSON bytes in one
/// shared allocation, `[key length: u32 LE][key][document]`, shared between
/// every state (fork, checkpoint, reader) that contains it.
///
/// Why one allocation: a collection of small documents spends as much on
/// per-entry overhead (allocation headers, tree slots) as on the documents;
/// one fat pointer per entry keeps materialized state near its BSON size.
///
/// Ordered and compared by key only (it is a set element keyed by `_id`);
/// `same_bytes` compares contents.
#[derive(Clone)]
pub(crate) struct StoredDoc(Arc<[u8]>);

impl StoredDoc {
    fn new(key: &IdKey, doc: &RawDocument) -> StoredDoc {
        let (k, d) = (key.as_bytes(), doc.as_bytes());
        let mut v = Vec::with_capacity(4 + k.len() + d.len());
        v.extend_from_slice(&(k.len() as u32).to_le_bytes());
        v.extend_from_slice(k);
        v.extend_from_slice(d);
        StoredDoc(v.into())
    }

    fn key_len(&self) -> usize {
        let mut n = [0u8; 4];
        n.copy_from_slice(self.0.get(..4).unwrap_or(&[0; 4]));
        u32::from_le_bytes(n) as usize
    }

    fn key_bytes(&self) -> &[u8] {
        self.0.get(4..4 + self.key_len()).unwrap_or_default()
    }

    fn key(&self) -> IdKey {
        IdKey::from_key_bytes(self.key_bytes())
    }

    /// The document; `None` only if the entry were damaged, which `new`
    /// never makes.
    fn doc(&self) -> Option<&RawDocument> {
        let bytes = self.0.get(4 + self.key_len()..)?;
        RawDocument::from_bytes(bytes).ok()
    }

    /// The document as reads return it: the same allocation, no copy.
    fn to_doc(&self) -> Option<Doc> {
        Doc::shared(self.0.clone(), 4 + self.key_len())
    }

    fn same_bytes(&self, other: &StoredDoc) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl PartialEq for StoredDoc {
    fn eq(&self, other: &Self) -> bool {
        self.key_bytes() == other.key_bytes()
    }
}
impl Eq for StoredDoc {}
impl PartialOrd for StoredDoc {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for StoredDoc {
    /// `IdKey` order: keys compare as bytes.
    fn cmp(&self, other: &Self) -> Ordering {
        self.key_bytes().cmp(other.key_bytes())
    }
}
impl Borrow<[u8]> for StoredDoc {
    fn borrow(&self) -> &[u8] {
        self.key_bytes()
    }
}
impl std::fmt::Debug for StoredDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} => {:?}", self.key(), self.doc())
    }
}

/// What changed between two document sets, in key order.
pub(crate) enum DocChange<'a> {
    Added(&'a RawDocument),
    Removed(&'a RawDocument),
    Changed(&'a RawDocument),
}

/// One collection held in memory: its documents in `IdKey` order, options,
/// indexes, and a key map per secondary index this crate can maintain (see
/// `indexkey`). Readers see it through [`CollectionState`].
#[derive(Clone, Debug)]
pub(crate) struct MemoryCollection {
    docs: OrdSet<StoredDoc>,
    options: Arc<Document>,
    indexes: Arc<Vec<Document>>,
    /// In `indexes` order; only specs `KeyPattern::parse` accepts.
    keymaps: Arc<Vec<KeyMap>>,
    /// Insertion order, kept for a capped collection only (created with
    /// `capped: true` in its options): its natural order.
    natural: Option<Natural>,
}

/// A capped collection's insertion order and size. Derived from the puts
/// and deletes in log order (a replacement keeps its place), so replay
/// rebuilds it; a snapshot stores the documents in this order and
/// `from_parts` numbers them again.
#[derive(Clone, Debug, Default)]
struct Natural {
    next: u64,
    order: OrdMap<u64, IdKey>,
    position: OrdMap<IdKey, u64>,
    /// Total BSON bytes of the documents.
    bytes: u64,
}

impl Natural {
    fn put(&mut self, key: &IdKey, old_len: Option<usize>, new_len: usize) {
        match old_len {
            Some(old) => self.bytes = self.bytes.saturating_sub(old as u64),
            None => {
                self.order.insert(self.next, key.clone());
                self.position.insert(key.clone(), self.next);
                self.next += 1;
            }
        }
        self.bytes += new_len as u64;
    }

    fn delete(&mut self, key: &IdKey, len: usize) {
        if let Some(at) = self.position.remove(key) {
            self.order.remove(&at);
        }
        self.bytes = self.bytes.saturating_sub(len as u64);
    }
}

fn is_capped(options: &Document) -> bool {
    options.get_bool("capped").unwrap_or(false)
}

impl PartialEq for MemoryCollection {
    fn eq(&self, other: &Self) -> bool {
        self.options == other.options
            && self.indexes == other.indexes
            && self.docs.len() == other.docs.len()
            && (self.docs.ptr_eq(&other.docs)
                || self
                    .docs
                    .iter()
                    .zip(&other.docs)
                    .all(|(a, b)| a.same_bytes(b)))
    }
}

fn id_index() -> Document {
    doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"}
}

impl MemoryCollection {
    fn new(options: Document) -> MemoryCollection {
        MemoryCollection {
            docs: OrdSet::new(),
            natural: is_capped(&options).then(Natural::default),
            options: Arc::new(options),
            indexes: Arc::new(vec![id_index()]),
            keymaps: Arc::new(Vec::new()),
        }
    }

    /// Whether this is a capped collection (insertion order kept).
    pub fn is_capped(&self) -> bool {
        self.natural.is_some()
    }

    /// Documents in natural order: insertion order for a capped
    /// collection, `IdKey` order otherwise.
    pub fn iter_natural(&self) -> Box<dyn Iterator<Item = Result<Doc>> + '_> {
        match &self.natural {
            Some(n) => Box::new(
                n.order
                    .values()
                    .filter_map(|k| self.docs.get(k.as_bytes()).and_then(StoredDoc::to_doc))
                    .map(Ok),
            ),
            None => Box::new(self.iter()),
        }
    }

    /// A capped collection's documents after natural position `after`
    /// (from the oldest when `None`), each with its position: what a
    /// tailable cursor reads next. Empty for a collection not capped.
    pub fn iter_natural_after(
        &self,
        after: Option<u64>,
    ) -> impl Iterator<Item = Result<(u64, Doc)>> + '_ {
        let from = match after {
            Some(p) => std::ops::Bound::Excluded(p),
            None => std::ops::Bound::Unbounded,
        };
        self.natural.iter().flat_map(move |n| {
            n.order
                .range((from, std::ops::Bound::Unbounded))
                .filter_map(|(p, k)| {
                    self.docs
                        .get(k.as_bytes())
                        .and_then(StoredDoc::to_doc)
                        .map(|d| Ok((*p, d)))
                })
        })
    }

    /// A capped collection's documents before natural position `before`
    /// (from the newest when `None`), newest first, each with its
    /// position: a reverse natural scan (`{$natural: -1}`) that resumes
    /// where it stopped. Empty for a collection not capped.
    pub fn iter_natural_before(
        &self,
        before: Option<u64>,
    ) -> impl Iterator<Item = Result<(u64, Doc)>> + '_ {
        let to = match before {
            Some(p) => std::ops::Bound::Excluded(p),
            None => std::ops::Bound::Unbounded,
        };
        self.natural.iter().flat_map(move |n| {
            n.order
                .range((std::ops::Bound::Unbounded, to))
                .rev()
                .filter_map(|(p, k)| {
                    self.docs
                        .get(k.as_bytes())
                        .and_then(StoredDoc::to_doc)
                        .map(|d| Ok((*p, d)))
                })
        })
    }

    /// Whether natural position `at` still holds a document (a tailable
    /// cursor's last one: gone means its place was lost).
    pub fn holds_natural_position(&self, at: u64) -> bool {
        self.natural
            .as_ref()
            .is_some_and(|n| n.order.contains_key(&at))
    }

    /// The documents' total BSON bytes, kept for a capped collection.
    pub fn capped_bytes(&self) -> Option<u64> {
        self.natural.as_ref().map(|n| n.bytes)
    }

    /// The document with `_id` `id` (its BSON bytes, shared, not copied).
    /// Fallible like every read: a read served by the store can fail.
    pub fn get(&self, id: &Bson) -> Result<Option<Doc>> {
        // The key's bytes are enough to look up: no shared `IdKey` needed.
        let mut key = Vec::with_capacity(16);
        crate::idkey::encode(id, &mut key);
        self.get_by_key_bytes(&key)
    }

    /// The document whose key bytes are `key` (as [`Self::iter_after`]
    /// gives them): a join keeps these instead of documents.
    pub fn get_by_key_bytes(&self, key: &[u8]) -> Result<Option<Doc>> {
        Ok(self.docs.get(key).and_then(StoredDoc::to_doc))
    }

    /// Documents in `IdKey` order (MongoDB's `_id` order).
    pub fn iter(&self) -> impl Iterator<Item = Result<Doc>> + '_ {
        self.docs.iter().filter_map(StoredDoc::to_doc).map(Ok)
    }

    /// Documents after the one whose key is `after` (all when `None`), in
    /// `IdKey` order, each with its key: a scan that resumes where it
    /// stopped (a cursor's next batch) without holding an iterator.
    pub fn iter_after<'a>(
        &'a self,
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<(IdKey, Doc)>> + 'a {
        let lower = match after {
            Some(k) => std::ops::Bound::Excluded(k.to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        self.docs
            .range::<_, [u8]>((
                lower.as_ref().map(Vec::as_slice),
                std::ops::Bound::Unbounded,
            ))
            .filter_map(|d| d.to_doc().map(|doc| Ok((d.key(), doc))))
    }

    /// Documents before the one whose key is `before` (all when `None`),
    /// in descending `IdKey` order, each with its key bytes: the reverse of
    /// [`Self::iter_after`], resumable the same way.
    pub fn iter_before<'a>(
        &'a self,
        before: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<(IdKey, Doc)>> + 'a {
        let upper = match before {
            Some(k) => std::ops::Bound::Excluded(k.to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        self.docs
            .range::<_, [u8]>((
                std::ops::Bound::Unbounded,
                upper.as_ref().map(Vec::as_slice),
            ))
            .rev()
            .filter_map(|d| d.to_doc().map(|doc| Ok((d.key(), doc))))
    }

    /// What changed from `self` to `other`, in key order. O(n) over both,
    /// with no work when they share their whole set (a fork not written to).
    pub(crate) fn changes<'a>(&'a self, other: &'a MemoryCollection) -> Vec<DocChange<'a>> {
        let mut out = Vec::new();
        if self.docs.ptr_eq(&other.docs) {
            return out;
        }
        let (mut a, mut b) = (self.docs.iter().peekable(), other.docs.iter().peekable());
        loop {
            let step = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => x.cmp(y),
            };
            match step {
                Ordering::Less => {
                    out.extend(a.next().and_then(StoredDoc::doc).map(DocChange::Removed))
                }
                Ordering::Greater => {
                    out.extend(b.next().and_then(StoredDoc::doc).map(DocChange::Added))
                }
                Ordering::Equal => {
                    if let (Some(x), Some(y)) = (a.next(), b.next())
                        && !x.same_bytes(y)
                    {
                        out.extend(y.doc().map(DocChange::Changed));
                    }
                }
            }
        }
        out
    }

    /// The number of documents.
    pub fn len(&self) -> Result<u64> {
        Ok(self.docs.len() as u64)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.docs.is_empty())
    }

    pub fn options(&self) -> &Document {
        &self.options
    }

    /// Always starts with `{name: "_id_", key: {_id: 1}}`.
    pub fn indexes(&self) -> &[Document] {
        &self.indexes
    }

    /// A collection from its parts (snapshot decoding); `docs` are
    /// validated documents, each with an `_id`.
    pub(crate) fn from_parts(
        options: Document,
        indexes: Vec<Document>,
        docs: impl IntoIterator<Item = RawDocumentBuf>,
    ) -> MemoryCollection {
        let mut natural = is_capped(&options).then(Natural::default);
        let docs = docs
            .into_iter()
            .map(|d| {
                let key = IdKey::from_bson(&rawdoc::id_of(&d).unwrap_or(Bson::Null));
                if let Some(n) = natural.as_mut() {
                    n.put(&key, None, d.as_bytes().len());
                }
                StoredDoc::new(&key, &d)
            })
            .collect();
        let mut c = MemoryCollection {
            docs,
            natural,
            options: Arc::new(options),
            indexes: Arc::new(indexes),
            keymaps: Arc::new(Vec::new()),
        };
        c.sync_keymaps();
        c
    }

    // ---- secondary-index key maps ----

    /// Whether a key map is kept for the index `name` (every plain
    /// ascending/descending or text secondary index without
    /// `partialFilterExpression` or `collation`). Without one, `lookup*` find nothing: scan instead.
    pub fn has_key_map(&self, index_name: &str) -> bool {
        self.keymap(index_name).is_some()
    }

    /// The shape of index `name`'s keys (`None`: no key map is kept).
    pub fn index_shape(&self, index_name: &str) -> Option<IndexShape> {
        self.keymap(index_name).map(|k| IndexShape {
            multikey: k.multikey_docs > 0,
            decimal: k.decimal_docs > 0,
            entries: k.entries.len(),
        })
    }

    /// The entries of index `name` in `intervals` (disjoint, in ascending
    /// order), in `direction`, resuming after (forward) or before
    /// (backward) `resume`: what an index scan reads. Empty when no key map
    /// is kept. A multikey index gives a document once per key: the caller
    /// deduplicates. O(log n) per interval plus the entries read.
    pub fn index_scan<'a>(
        &'a self,
        index_name: &str,
        intervals: &'a [KeyInterval],
        direction: ScanDirection,
        resume: Option<&IndexPosition>,
    ) -> impl Iterator<Item = Result<IndexPosition>> + 'a {
        let resume = resume.cloned();
        let ordered: Box<dyn Iterator<Item = &'a KeyInterval> + 'a> = match direction {
            ScanDirection::Forward => Box::new(intervals.iter()),
            ScanDirection::Backward => Box::new(intervals.iter().rev()),
        };
        let km = self.keymap(index_name);
        ordered
            .flat_map(move |iv| match km {
                Some(km) => km.range(iv, direction, resume.as_ref()),
                None => Box::new(std::iter::empty()),
            })
            .map(Ok)
    }

    fn keymap(&self, index_name: &str) -> Option<&KeyMap> {
        self.keymaps.iter().find(|k| k.name == index_name)
    }

    /// Every `_id` holding `key_values` in the index `index_name`, in `_id`
    /// order. O(log n + holders).
    pub fn lookup(&self, index_name: &str, key_values: &[Bson]) -> Result<Vec<Bson>> {
        let key = IndexKey::from_values(key_values);
        Ok(self
            .keymap(index_name)
            .into_iter()
            .flat_map(move |km| km.holders(&key))
            .filter_map(|id| self.docs.get(id.as_bytes()).and_then(StoredDoc::doc))
            .filter_map(rawdoc::id_of)
            .collect())
    }

    /// The unique check for writing `doc` (insert or replacement of the
    /// document with the same `_id`): the first of its keys in the index
    /// `index_name` already held by *another* `_id`, with that `_id`.
    /// O(keys × log n). `NotMaintained` when no key map is kept (scan).
    pub fn unique_conflict(
        &self,
        index_name: &str,
        doc: &Document,
    ) -> Result<Option<(Vec<Bson>, Bson)>, IndexKeyError> {
        let km = self
            .keymap(index_name)
            .ok_or_else(|| IndexKeyError::NotMaintained(index_name.to_string()))?;
        let own = IdKey::from_bson(doc.get("_id").unwrap_or(&Bson::Null));
        for values in km.pattern.keys(doc, true)? {
            let key = IndexKey::from_values(&values);
            if let Some(other) = km.holders(&key).find(|id| **id != own)
                && let Some(other_id) = self
                    .docs
                    .get(other.as_bytes())
                    .and_then(StoredDoc::doc)
                    .and_then(rawdoc::id_of)
            {
                return Ok(Some((values, other_id)));
            }
        }
        Ok(None)
    }

    /// Makes `keymaps` match `indexes`: keeps maps whose spec is unchanged,
    /// builds new ones over the documents, drops the rest.
    fn sync_keymaps(&mut self) {
        let mut old: Vec<KeyMap> = std::mem::take(Arc::make_mut(&mut self.keymaps));
        let mut next = Vec::new();
        for spec in self.indexes.iter() {
            let Some(pattern) = KeyPattern::parse(spec) else {
                continue;
            };
            let name = spec.get_str("name").unwrap_or_default();
            match old
                .iter()
                .position(|k| k.name == name && k.pattern == pattern)
            {
                Some(i) => next.push(old.swap_remove(i)),
                None => next.push(KeyMap::build(name.to_string(), pattern, &self.docs)),
            }
        }
        self.keymaps = Arc::new(next);
    }

    /// Keeps the key maps in step with a put (`new`) or delete of `id`.
    fn reindex(&mut self, id: &IdKey, old: Option<&RawDocument>, new: Option<&RawDocument>) {
        if self.keymaps.is_empty() {
            return;
        }
        // Key extraction reads parsed documents; only indexed collections pay.
        let old = old.map(rawdoc::parse);
        let new = new.map(rawdoc::parse);
        for km in Arc::make_mut(&mut self.keymaps) {
            km.update(id, old.as_ref(), new.as_ref());
        }
    }

    /// Test support: the key maps equal a rebuild from scratch.
    #[cfg(test)]
    pub(crate) fn keymaps_match_rebuild(&self) -> bool {
        let mut fresh = self.clone();
        fresh.keymaps = Arc::new(Vec::new());
        fresh.sync_keymaps();
        *fresh.keymaps == *self.keymaps
    }
}

/// A branch state served by the materialized store: its view.
#[derive(Debug)]
struct StoredBranch {
    store: Arc<Materialized>,
    view: View,
}

/// The state of a branch at one point: all its collections.
///
/// Held in memory (`colls`: the fold of the log, what heads and
/// transactions are) or served by the materialized store (`stored`: a view
/// at this point, nothing in memory; what reads of past points are when
/// the engine keeps a store). Invariant: when `stored` is set, `colls` is
/// empty and unused; a stored state is read-only — the engine never folds
/// onto one, and a transaction begun on one thaws it first
/// ([`BranchState::thawed`]).
#[derive(Clone, Debug)]
pub struct BranchState {
    seq: Seq,
    time: CommitTime,
    colls: OrdMap<Namespace, MemoryCollection>,
    stored: Option<Arc<StoredBranch>>,
    retries: RetryTable,
}

impl PartialEq for BranchState {
    /// States are equal when their contents are; `seq`/`time` are where they
    /// were read, compared separately where that matters. A stored state is
    /// compared by reading it (O(data)); a read that fails compares unequal.
    fn eq(&self, other: &Self) -> bool {
        if self.stored.is_none() && other.stored.is_none() {
            return self.colls == other.colls;
        }
        match (self.namespaces(), other.namespaces()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

impl BranchState {
    pub fn empty(time: CommitTime) -> BranchState {
        BranchState {
            seq: Seq::ZERO,
            time,
            colls: OrdMap::new(),
            stored: None,
            retries: RetryTable::default(),
        }
    }

    /// The state the store's `view` shows, at `seq`/`time` (no retry
    /// history: that is the head's, kept in memory).
    pub(crate) fn stored(
        store: Arc<Materialized>,
        view: View,
        seq: Seq,
        time: CommitTime,
    ) -> BranchState {
        BranchState {
            seq,
            time,
            colls: OrdMap::new(),
            stored: Some(Arc::new(StoredBranch { store, view })),
            retries: RetryTable::default(),
        }
    }

    /// Whether this state is served by the materialized store.
    pub fn is_stored(&self) -> bool {
        self.stored.is_some()
    }

    /// The same contents held in memory: a stored state is read whole
    /// (O(data); only a transaction begun on a past point needs it).
    pub fn thawed(self) -> Result<BranchState> {
        if self.stored.is_none() {
            return Ok(self);
        }
        let mut colls = OrdMap::new();
        for (ns, c) in self.namespaces()? {
            let docs = c.iter().collect::<Result<Vec<Doc>>>()?;
            colls.insert(
                ns,
                MemoryCollection::from_parts(
                    c.options().clone(),
                    c.indexes().to_vec(),
                    docs.iter().map(|d| d.as_raw().to_owned()),
                ),
            );
        }
        Ok(BranchState {
            colls,
            stored: None,
            ..self
        })
    }

    /// The retryable writes applied on this branch (see `retry`).
    pub fn retries(&self) -> &RetryTable {
        &self.retries
    }

    /// Enters a retryable write logged by the commit at `seq`/`time`.
    pub(crate) fn note_retry(&mut self, rec: &RetryRecord, seq: Seq, time: CommitTime) {
        self.retries.note(rec, seq, time);
    }

    /// A fork's base: the same contents with no retry history (a retry
    /// belongs to the branch its write went to).
    pub(crate) fn without_retries(mut self) -> BranchState {
        self.retries = RetryTable::default();
        self
    }

    pub(crate) fn retries_mut(&mut self) -> &mut RetryTable {
        &mut self.retries
    }

    /// Database names, sorted.
    pub fn databases(&self) -> Result<Vec<String>> {
        if let Some(s) = &self.stored {
            return s.store.databases(&s.view);
        }
        let mut dbs: Vec<String> = Vec::new();
        for ns in self.colls.keys() {
            if dbs.last() != Some(&ns.db) {
                dbs.push(ns.db.clone());
            }
        }
        Ok(dbs)
    }

    /// Collection names of `db`, sorted.
    pub fn collections(&self, db: &str) -> Result<Vec<String>> {
        if let Some(s) = &self.stored {
            return Ok(s
                .store
                .namespaces(&s.view)?
                .into_iter()
                .filter(|(ns, _)| ns.db == db)
                .map(|(ns, _)| ns.coll)
                .collect());
        }
        let start = Namespace::new(db, "");
        Ok(self
            .colls
            .range(start..)
            .take_while(|(ns, _)| ns.db == db)
            .map(|(ns, _)| ns.coll.clone())
            .collect())
    }

    /// The collection `ns`, as a handle of its own (O(1): shared
    /// structure), so that a read served by the store, which has no
    /// collection object to lend, looks the same to callers.
    pub fn collection(&self, ns: &Namespace) -> Result<Option<CollectionState>> {
        if let Some(s) = &self.stored {
            return Ok(s
                .store
                .collection(&s.view, ns)?
                .map(CollectionState::stored));
        }
        Ok(self.colls.get(ns).cloned().map(CollectionState::memory))
    }

    /// Every collection, in namespace order.
    pub fn namespaces(&self) -> Result<Vec<(Namespace, CollectionState)>> {
        if let Some(s) = &self.stored {
            let mut out = Vec::new();
            for (ns, _) in s.store.namespaces(&s.view)? {
                if let Some(c) = s.store.collection(&s.view, &ns)? {
                    out.push((ns, CollectionState::stored(c)));
                }
            }
            return Ok(out);
        }
        Ok(self
            .colls
            .iter()
            .map(|(ns, c)| (ns.clone(), CollectionState::memory(c.clone())))
            .collect())
    }

    /// The commit this state is at (`Seq(0)`: before the branch's own commits).
    pub fn seq(&self) -> Seq {
        self.seq
    }

    pub fn time(&self) -> CommitTime {
        self.time
    }

    /// Total number of documents.
    pub fn doc_count(&self) -> Result<u64> {
        let mut n = 0;
        for (_, c) in self.namespaces()? {
            n += c.len()?;
        }
        Ok(n)
    }

    /// The same contents, labelled as being at `seq`/`time` (a fork's base is
    /// its parent's state relabelled as the child's `Seq(0)`).
    pub(crate) fn at(mut self, seq: Seq, time: CommitTime) -> BranchState {
        self.seq = seq;
        self.time = time;
        self
    }

    pub(crate) fn insert_collection(&mut self, ns: Namespace, c: MemoryCollection) {
        self.colls.insert(ns, c);
    }

    /// Makes a stored state a memory one before it is changed (see the
    /// type's invariant); `false` if it could not be read.
    fn thaw_in_place(&mut self) -> bool {
        if self.stored.is_none() {
            return true;
        }
        match self.clone().thawed() {
            Ok(s) => {
                *self = s;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "a stored branch state could not be read to change it");
                false
            }
        }
    }

    /// Applies one op; returns the document it replaced or deleted (the
    /// pre-image). Ops that name absent things are no-ops, as in MongoDB
    /// (dropping a missing collection, deleting a missing document).
    pub fn apply(&mut self, op: &DocOp) -> Option<RawDocumentBuf> {
        if !self.thaw_in_place() {
            return None;
        }
        match op {
            DocOp::Put { ns, id, doc } => self
                .put(ns, id, doc)
                .and_then(|d| d.doc().map(ToOwned::to_owned)),
            DocOp::Delete { ns, id } => self
                .delete(ns, id)
                .and_then(|d| d.doc().map(ToOwned::to_owned)),
            DocOp::CreateCollection { ns, options } => {
                if !self.colls.contains_key(ns) {
                    self.colls
                        .insert(ns.clone(), MemoryCollection::new(options.clone()));
                }
                None
            }
            DocOp::DropCollection { ns } => {
                self.colls.remove(ns);
                None
            }
            DocOp::DropDatabase { db } => {
                let doomed: Vec<Namespace> = self
                    .colls
                    .range(Namespace::new(db.as_str(), "")..)
                    .take_while(|(ns, _)| &ns.db == db)
                    .map(|(ns, _)| ns.clone())
                    .collect();
                for ns in doomed {
                    self.colls.remove(&ns);
                }
                None
            }
            DocOp::CreateIndex { ns, spec } => {
                let coll = self
                    .colls
                    .entry(ns.clone())
                    .or_insert_with(|| MemoryCollection::new(Document::new()));
                let name = spec.get_str("name").unwrap_or_default().to_string();
                let indexes = Arc::make_mut(&mut coll.indexes);
                match indexes
                    .iter_mut()
                    .find(|i| i.get_str("name").unwrap_or_default() == name)
                {
                    // Never replace `_id_`: it is the invariant first index.
                    Some(existing) if name != "_id_" => *existing = spec.clone(),
                    Some(_) => {}
                    None => indexes.push(spec.clone()),
                }
                coll.sync_keymaps();
                None
            }
            DocOp::SetCollectionOptions { ns, options } => {
                if let Some(coll) = self.colls.get_mut(ns) {
                    coll.options = Arc::new(options.clone());
                }
                None
            }
            DocOp::DropIndex { ns, name } => {
                if name != "_id_"
                    && let Some(coll) = self.colls.get_mut(ns)
                {
                    Arc::make_mut(&mut coll.indexes)
                        .retain(|i| i.get_str("name").unwrap_or_default() != name);
                    coll.sync_keymaps();
                }
                None
            }
            DocOp::RenameCollection { from, to } => {
                if from != to
                    && let Some(c) = self.colls.remove(from)
                {
                    self.colls.insert(to.clone(), c);
                }
                None
            }
        }
    }

    /// A put; returns the replaced document (shared: copying it out is the
    /// caller's choice, replay never does).
    fn put(&mut self, ns: &Namespace, id: &Bson, doc: &RawDocument) -> Option<StoredDoc> {
        let coll = self
            .colls
            .entry(ns.clone())
            .or_insert_with(|| MemoryCollection::new(Document::new()));
        let key = IdKey::from_bson(id);
        let old = coll.docs.insert(StoredDoc::new(&key, doc));
        if let Some(n) = coll.natural.as_mut() {
            let old_len = old
                .as_ref()
                .and_then(StoredDoc::doc)
                .map(|d| d.as_bytes().len());
            n.put(&key, old_len, doc.as_bytes().len());
        }
        coll.reindex(&key, old.as_ref().and_then(StoredDoc::doc), Some(doc));
        old
    }

    fn delete(&mut self, ns: &Namespace, id: &Bson) -> Option<StoredDoc> {
        let coll = self.colls.get_mut(ns)?;
        let key = IdKey::from_bson(id);
        let old = coll.docs.remove(key.as_bytes())?;
        if let Some(n) = coll.natural.as_mut() {
            n.delete(&key, old.doc().map_or(0, |d| d.as_bytes().len()));
        }
        coll.reindex(&key, old.doc(), None);
        Some(old)
    }

    /// Folds one commit: the state afterwards is at the commit's seq and time.
    /// Replay keeps no pre-images, so puts and deletes skip copying them out.
    pub fn apply_commit(&mut self, commit: &Commit) {
        self.thaw_in_place();
        for op in &commit.ops {
            match &op.op {
                DocOp::Put { ns, id, doc } => {
                    self.put(ns, id, doc);
                }
                DocOp::Delete { ns, id } => {
                    self.delete(ns, id);
                }
                other => {
                    self.apply(other);
                }
            }
        }
        for r in &commit.retries {
            self.retries.note(r, commit.seq, commit.time);
        }
        self.seq = commit.seq;
        self.time = commit.time;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::ops::Bound;

    fn raw(d: Document) -> RawDocumentBuf {
        rawdoc::encode(&d).unwrap()
    }

    #[test]
    fn a_capped_collection_keeps_insertion_order_and_size() {
        let ns = Namespace::new("d", "c");
        let mut s = BranchState::empty(CommitTime(0));
        s.apply(&DocOp::CreateCollection {
            ns: ns.clone(),
            options: doc! {"capped": true, "size": 4096i64},
        });
        let put = |s: &mut BranchState, id: i32, v: &str| {
            s.apply(&DocOp::Put {
                ns: ns.clone(),
                id: Bson::Int32(id),
                doc: raw(doc! {"_id": id, "v": v}),
            });
        };
        put(&mut s, 3, "a");
        put(&mut s, 1, "b");
        put(&mut s, 2, "c");
        put(&mut s, 1, "a longer value keeps its place");
        s.apply(&DocOp::Delete {
            ns: ns.clone(),
            id: Bson::Int32(3),
        });
        put(&mut s, 0, "d");
        let c = s.collection(&ns).unwrap().unwrap();
        let order: Vec<Bson> = c
            .iter_natural()
            .filter_map(|d| rawdoc::id_of(&d.unwrap()))
            .collect();
        assert_eq!(order, vec![Bson::Int32(1), Bson::Int32(2), Bson::Int32(0)]);
        let bytes: usize = c.iter().map(|d| d.unwrap().as_bytes().len()).sum();
        assert_eq!(c.capped_bytes(), Some(bytes as u64));
        // Rebuilt from documents in natural order (a snapshot), the same.
        let again = MemoryCollection::from_parts(
            c.options().clone(),
            c.indexes().to_vec(),
            c.iter_natural().map(|d| d.unwrap().as_raw().to_owned()),
        );
        let order_again: Vec<Bson> = again
            .iter_natural()
            .filter_map(|d| rawdoc::id_of(&d.unwrap()))
            .collect();
        let after: Vec<Bson> = c
            .iter_natural_after(Some(1))
            .filter_map(|r| rawdoc::id_of(&r.unwrap().1))
            .collect();
        assert_eq!(after, vec![Bson::Int32(2), Bson::Int32(0)]);
        assert!(c.holds_natural_position(1));
        assert!(
            !c.holds_natural_position(0),
            "the first document was deleted"
        );
        assert_eq!(order_again, order);
        assert_eq!(again.capped_bytes(), c.capped_bytes());
        // A collection that is not capped keeps `_id` order and no size.
        let plain = Namespace::new("d", "p");
        s.apply(&DocOp::Put {
            ns: plain.clone(),
            id: Bson::Int32(2),
            doc: raw(doc! {"_id": 2}),
        });
        assert!(!s.collection(&plain).unwrap().unwrap().is_capped());
        assert_eq!(s.collection(&plain).unwrap().unwrap().capped_bytes(), None);
    }

    #[test]
    fn reverse_scans_resume_before_a_position() {
        let ns = Namespace::new("d", "c");
        let mut s = BranchState::empty(CommitTime(0));
        s.apply(&DocOp::CreateCollection {
            ns: ns.clone(),
            options: doc! {"capped": true, "size": 4096i64},
        });
        for id in [5, 1, 9, 3] {
            s.apply(&DocOp::Put {
                ns: ns.clone(),
                id: Bson::Int32(id),
                doc: raw(doc! {"_id": id}),
            });
        }
        let c = s.collection(&ns).unwrap().unwrap();
        let ids =
            |docs: &[Doc]| -> Vec<Bson> { docs.iter().filter_map(|d| rawdoc::id_of(d)).collect() };
        // Natural (insertion) order, newest first, then resumed.
        let all: Vec<(u64, Doc)> = c.iter_natural_before(None).map(|r| r.unwrap()).collect();
        let docs: Vec<Doc> = all.iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(
            ids(&docs),
            vec![
                Bson::Int32(3),
                Bson::Int32(9),
                Bson::Int32(1),
                Bson::Int32(5)
            ]
        );
        let second = all[1].0;
        let rest: Vec<Doc> = c
            .iter_natural_before(Some(second))
            .map(|r| r.unwrap().1)
            .collect();
        assert_eq!(ids(&rest), vec![Bson::Int32(1), Bson::Int32(5)]);
        // `_id` order, descending, then resumed before a key.
        let keyed: Vec<(IdKey, Doc)> = c.iter_before(None).map(|r| r.unwrap()).collect();
        let docs: Vec<Doc> = keyed.iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(
            ids(&docs),
            vec![
                Bson::Int32(9),
                Bson::Int32(5),
                Bson::Int32(3),
                Bson::Int32(1)
            ]
        );
        let rest: Vec<Doc> = c
            .iter_before(Some(keyed[1].0.as_bytes()))
            .map(|r| r.unwrap().1)
            .collect();
        assert_eq!(ids(&rest), vec![Bson::Int32(3), Bson::Int32(1)]);
        // Not capped: no natural positions.
        let plain = Namespace::new("d", "p");
        s.apply(&DocOp::Put {
            ns: plain.clone(),
            id: Bson::Int32(1),
            doc: raw(doc! {"_id": 1}),
        });
        let p = s.collection(&plain).unwrap().unwrap();
        assert_eq!(p.iter_natural_before(None).count(), 0);
        assert_eq!(p.iter_before(None).count(), 1);
    }

    #[test]
    fn fork_is_independent_of_its_source() {
        let ns = Namespace::new("d", "c");
        let mut a = BranchState::empty(CommitTime(0));
        a.apply(&DocOp::Put {
            ns: ns.clone(),
            id: Bson::Int32(1),
            doc: raw(doc! {"_id": 1, "v": 1}),
        });
        let mut b = a.clone();
        let pre = b.apply(&DocOp::Put {
            ns: ns.clone(),
            id: Bson::Double(1.0),
            doc: raw(doc! {"_id": 1, "v": 2}),
        });
        assert_eq!(pre, Some(raw(doc! {"_id": 1, "v": 1})));
        assert_eq!(
            a.collection(&ns)
                .unwrap()
                .unwrap()
                .get_document(&Bson::Int64(1))
                .unwrap(),
            Some(doc! {"_id": 1, "v": 1})
        );
        assert_eq!(
            b.collection(&ns)
                .unwrap()
                .unwrap()
                .get_document(&Bson::Int64(1))
                .unwrap(),
            Some(doc! {"_id": 1, "v": 2})
        );
    }

    #[test]
    fn changes_between_a_state_and_its_fork() {
        let ns = Namespace::new("d", "c");
        let put = |s: &mut BranchState, id: i32, v: i32| {
            s.apply(&DocOp::Put {
                ns: ns.clone(),
                id: Bson::Int32(id),
                doc: raw(doc! {"_id": id, "v": v}),
            })
        };
        let mut a = BranchState::empty(CommitTime(0));
        for id in 0..100 {
            put(&mut a, id, 0);
        }
        let mut b = a.clone();
        let ca = a.collection(&ns).unwrap().unwrap();
        assert!(
            ca.changes(&b.collection(&ns).unwrap().unwrap())
                .unwrap()
                .is_empty()
        );
        put(&mut b, 5, 1); // changed
        put(&mut b, 7, 0); // rewritten with the same bytes: no change
        put(&mut b, 200, 0); // added
        b.apply(&DocOp::Delete {
            ns: ns.clone(),
            id: Bson::Int64(9),
        });
        let shown = |changes: Vec<crate::collection::Change>| -> Vec<(char, Bson)> {
            changes
                .into_iter()
                .map(|c| match c {
                    crate::collection::Change::Added(id) => ('+', id.unwrap()),
                    crate::collection::Change::Removed(id) => ('-', id.unwrap()),
                    crate::collection::Change::Changed(id) => ('~', id.unwrap()),
                })
                .collect()
        };
        let (ca, cb) = (
            a.collection(&ns).unwrap().unwrap(),
            b.collection(&ns).unwrap().unwrap(),
        );
        let got = shown(ca.changes(&cb).unwrap());
        // The scan that compares a stored collection gives the same.
        assert_eq!(shown(ca.changes_by_scan(&cb).unwrap()), got);
        assert_eq!(
            got,
            vec![
                ('~', Bson::Int32(5)),
                ('-', Bson::Int32(9)),
                ('+', Bson::Int32(200))
            ]
        );
        assert_ne!(a, b);
        let mut c = a.clone();
        put(&mut c, 5, 0);
        assert_eq!(a, c, "same bytes under the same keys are equal states");
    }

    #[test]
    fn collections_and_indexes() {
        let mut s = BranchState::empty(CommitTime(0));
        let ns = Namespace::new("d", "c");
        s.apply(&DocOp::CreateCollection {
            ns: ns.clone(),
            options: doc! {},
        });
        s.apply(&DocOp::CreateIndex {
            ns: ns.clone(),
            spec: doc! {"name": "a_1", "key": {"a": 1}, "unique": true},
        });
        s.apply(&DocOp::CreateCollection {
            ns: Namespace::new("e", "x"),
            options: doc! {},
        });
        assert_eq!(s.databases().unwrap(), vec!["d", "e"]);
        assert_eq!(s.collection(&ns).unwrap().unwrap().indexes().len(), 2);
        s.apply(&DocOp::DropIndex {
            ns: ns.clone(),
            name: "_id_".into(),
        });
        assert_eq!(
            s.collection(&ns).unwrap().unwrap().indexes()[0]
                .get_str("name")
                .ok(),
            Some("_id_")
        );
        s.apply(&DocOp::RenameCollection {
            from: ns.clone(),
            to: Namespace::new("d", "z"),
        });
        assert_eq!(s.collections("d").unwrap(), vec!["z"]);
        s.apply(&DocOp::DropDatabase { db: "d".into() });
        assert_eq!(s.databases().unwrap(), vec!["e"]);
    }

    #[test]
    fn key_maps_follow_puts_deletes_and_index_changes() {
        let ns = Namespace::new("d", "c");
        let mut s = BranchState::empty(CommitTime(0));
        let put = |s: &mut BranchState, d: Document| {
            s.apply(&DocOp::Put {
                ns: ns.clone(),
                id: d.get("_id").cloned().unwrap_or(Bson::Null),
                doc: raw(d),
            })
        };
        put(&mut s, doc! {"_id": 1, "email": "a@x", "tags": ["p", "q"]});
        put(&mut s, doc! {"_id": 2, "email": "b@x"});
        // CreateIndex over existing data builds the map.
        s.apply(&DocOp::CreateIndex {
            ns: ns.clone(),
            spec: doc! {"name": "email_1", "key": {"email": 1}, "unique": true},
        });
        s.apply(&DocOp::CreateIndex {
            ns: ns.clone(),
            spec: doc! {"name": "tags_1", "key": {"tags": 1}, "unique": true},
        });
        let c = s.collection(&ns).unwrap().unwrap();
        assert!(c.has_key_map("email_1") && !c.has_key_map("_id_"));
        assert_eq!(
            c.lookup_unique("email_1", &[Bson::String("b@x".into())])
                .unwrap(),
            Some(Bson::Int32(2))
        );
        assert_eq!(
            c.lookup_unique("tags_1", &[Bson::String("q".into())])
                .unwrap(),
            Some(Bson::Int32(1))
        );
        // A missing field indexes as null.
        assert_eq!(
            c.lookup_unique("tags_1", &[Bson::Null]).unwrap(),
            Some(Bson::Int32(2))
        );
        // Unique checks: a replacement of the same _id is not a conflict.
        assert_eq!(
            c.unique_conflict("email_1", &doc! {"_id": 1.0, "email": "a@x"}),
            Ok(None)
        );
        assert_eq!(
            c.unique_conflict("tags_1", &doc! {"_id": 3, "tags": ["z", "p"]}),
            Ok(Some((vec![Bson::String("p".into())], Bson::Int32(1))))
        );
        assert_eq!(
            c.unique_conflict("nope", &doc! {"_id": 3}),
            Err(IndexKeyError::NotMaintained("nope".into()))
        );
        // Put over an existing document moves its keys.
        put(&mut s, doc! {"_id": 1, "email": "c@x"});
        let c = s.collection(&ns).unwrap().unwrap();
        assert_eq!(
            c.lookup_unique("email_1", &[Bson::String("a@x".into())])
                .unwrap(),
            None
        );
        assert_eq!(
            c.lookup_unique("email_1", &[Bson::String("c@x".into())])
                .unwrap(),
            Some(Bson::Int32(1))
        );
        assert_eq!(c.lookup("tags_1", &[Bson::Null]).unwrap().len(), 2);
        // Delete, rename, drop index.
        s.apply(&DocOp::Delete {
            ns: ns.clone(),
            id: Bson::Int64(2),
        });
        let to = Namespace::new("d", "renamed");
        s.apply(&DocOp::RenameCollection {
            from: ns.clone(),
            to: to.clone(),
        });
        let c = s.collection(&to).unwrap().unwrap();
        assert_eq!(
            c.lookup_unique("email_1", &[Bson::String("b@x".into())])
                .unwrap(),
            None
        );
        assert!(c.keymaps_match_rebuild());
        s.apply(&DocOp::DropIndex {
            ns: to.clone(),
            name: "email_1".into(),
        });
        assert!(!s.collection(&to).unwrap().unwrap().has_key_map("email_1"));
    }

    #[test]
    fn index_scans_follow_intervals_directions_and_resume_points() {
        let ns = Namespace::new("d", "c");
        let mut s = BranchState::empty(CommitTime(0));
        s.apply(&DocOp::CreateIndex {
            ns: ns.clone(),
            spec: doc! {"name": "a_1", "key": {"a": 1}},
        });
        let put = |s: &mut BranchState, d: Document| {
            s.apply(&DocOp::Put {
                ns: ns.clone(),
                id: d.get("_id").cloned().unwrap(),
                doc: raw(d),
            });
        };
        for i in 0..10 {
            put(&mut s, doc! {"_id": i, "a": i % 5});
        }
        let c = s.collection(&ns).unwrap().unwrap();
        assert_eq!(
            c.index_shape("a_1"),
            Some(IndexShape {
                multikey: false,
                decimal: false,
                entries: 10
            })
        );
        let key = |v: i32| IndexKey::from_values(&[Bson::Int32(v)]);
        let ids = |it: &mut dyn Iterator<Item = Result<IndexPosition>>| -> Vec<i32> {
            it.map(|r| {
                let (_, id) = r.unwrap();
                rawdoc::id_of(&c.get_by_key(&id).unwrap().unwrap())
                    .unwrap()
                    .as_i32()
                    .unwrap()
            })
            .collect()
        };
        // a in [1, 2) or (3, +inf): 1, 6, then 4, 9.
        let intervals = [
            (Bound::Included(key(1)), Bound::Excluded(key(2))),
            (Bound::Excluded(key(3)), Bound::Unbounded),
        ];
        let fwd = ids(&mut c.index_scan("a_1", &intervals, ScanDirection::Forward, None));
        assert_eq!(fwd, vec![1, 6, 4, 9]);
        let back = ids(&mut c.index_scan("a_1", &intervals, ScanDirection::Backward, None));
        assert_eq!(back, vec![9, 4, 6, 1]);
        let at: IndexPosition = (key(1), IdKey::from_bson(&Bson::Int32(6)));
        let rest = ids(&mut c.index_scan("a_1", &intervals, ScanDirection::Forward, Some(&at)));
        assert_eq!(rest, vec![4, 9]);
        let before = ids(&mut c.index_scan("a_1", &intervals, ScanDirection::Backward, Some(&at)));
        assert_eq!(before, vec![1]);
        // An inverted interval and an unknown index read nothing.
        let inverted = [(Bound::Included(key(4)), Bound::Excluded(key(1)))];
        assert_eq!(
            c.index_scan("a_1", &inverted, ScanDirection::Forward, None)
                .count(),
            0
        );
        assert_eq!(
            c.index_scan("nope", &intervals, ScanDirection::Forward, None)
                .count(),
            0
        );
        // The multikey flag is set by an array and cleared when its
        // document goes; a Decimal128 key sets the decimal flag.
        put(&mut s, doc! {"_id": 20, "a": [1, 2]});
        put(
            &mut s,
            doc! {"_id": 21, "a": bson::Decimal128::from_bytes([0; 16])},
        );
        let shape = s
            .collection(&ns)
            .unwrap()
            .unwrap()
            .index_shape("a_1")
            .unwrap();
        assert!(shape.multikey && shape.decimal);
        put(&mut s, doc! {"_id": 20, "a": 1});
        s.apply(&DocOp::Delete {
            ns: ns.clone(),
            id: Bson::Int32(21),
        });
        let shape = s
            .collection(&ns)
            .unwrap()
            .unwrap()
            .index_shape("a_1")
            .unwrap();
        assert!(!shape.multikey && !shape.decimal);
    }

    fn small_value() -> impl Strategy<Value = Option<Bson>> {
        prop_oneof![
            Just(None),
            Just(Some(Bson::Null)),
            (0i32..3).prop_map(|n| Some(Bson::Int32(n))),
            (0i64..3).prop_map(|n| Some(Bson::Double(n as f64))),
            Just(Some(Bson::Decimal128(bson::Decimal128::from_bytes(
                [0; 16]
            )))),
            prop::collection::vec(0i32..3, 0..3)
                .prop_map(|v| Some(Bson::Array(v.into_iter().map(Bson::Int32).collect()))),
            (0i32..3).prop_map(|n| Some(Bson::Document(doc! {"d": n}))),
            prop::collection::vec(0i32..2, 1..3).prop_map(|v| Some(Bson::Array(
                v.into_iter()
                    .map(|n| Bson::Document(doc! {"d": n}))
                    .collect()
            ))),
        ]
    }

    fn spec_strategy() -> impl Strategy<Value = Document> {
        prop_oneof![
            Just(doc! {"name": "a_1", "key": {"a": 1}, "unique": true}),
            Just(doc! {"name": "a_1", "key": {"b": 1}, "unique": true}),
            Just(doc! {"name": "a_1_b_-1", "key": {"a": 1, "b": -1}}),
            Just(doc! {"name": "b_1", "key": {"b": 1}, "sparse": true, "unique": true}),
            Just(doc! {"name": "c.d_1", "key": {"c.d": 1}}),
            Just(doc! {"name": "p", "key": {"a": 1}, "partialFilterExpression": {"a": 1}}),
        ]
    }

    fn op_strategy() -> impl Strategy<Value = DocOp> {
        let ns = prop_oneof![
            Just(Namespace::new("d", "x")),
            Just(Namespace::new("d", "y"))
        ];
        prop_oneof![
            6 => (ns.clone(), 0i32..6, small_value(), small_value(), small_value()).prop_map(
                |(ns, id, a, b, c)| {
                    let mut d = doc! {"_id": id};
                    for (k, v) in [("a", a), ("b", b), ("c", c)] {
                        if let Some(v) = v {
                            d.insert(k, v);
                        }
                    }
                    DocOp::Put { ns, id: Bson::Int64(id.into()), doc: raw(d) }
                }
            ),
            2 => (ns.clone(), 0i32..6).prop_map(|(ns, id)| DocOp::Delete { ns, id: Bson::Int32(id) }),
            2 => (ns.clone(), spec_strategy()).prop_map(|(ns, spec)| DocOp::CreateIndex { ns, spec }),
            1 => (ns.clone(), prop_oneof![Just("a_1"), Just("b_1"), Just("c.d_1"), Just("_id_")])
                .prop_map(|(ns, name)| DocOp::DropIndex { ns, name: name.into() }),
            1 => (ns.clone(), ns.clone()).prop_map(|(from, to)| DocOp::RenameCollection { from, to }),
            1 => ns.clone().prop_map(|ns| DocOp::DropCollection { ns }),
            1 => ns.clone().prop_map(|ns| DocOp::SetCollectionOptions { ns, options: doc! {"validator": {"a": 1}} }),
            1 => ns.prop_map(|ns| DocOp::CreateCollection { ns, options: doc! {} }),
        ]
    }

    /// Brute force: the `_id`s holding `key` in index `spec`, in `_id` order.
    fn scan(c: &CollectionState, spec: &Document, key: &[Bson]) -> Vec<Bson> {
        let want = IndexKey::from_values(key);
        let pattern = KeyPattern::parse(spec).unwrap();
        c.iter()
            .map(|d| d.unwrap().to_document())
            .filter(|d| pattern.key_set(d).contains(&want))
            .map(|d| d.get("_id").cloned().unwrap())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

        /// After every op, each key map equals a rebuild from scratch, every
        /// lookup equals a scan, and a snapshot round trip rebuilds the same maps.
        #[test]
        fn key_maps_equal_a_rebuild(ops in prop::collection::vec(op_strategy(), 1..40)) {
            let mut s = BranchState::empty(CommitTime(0));
            let mut fork = s.clone();
            for (i, op) in ops.iter().enumerate() {
                s.apply(op);
                if i == ops.len() / 2 {
                    fork = s.clone();
                }
                for (_, c) in s.namespaces().unwrap() {
                    let c = &c;
                    prop_assert!(c.keymaps_match_rebuild());
                    for spec in c.indexes().iter().skip(1) {
                        let name = spec.get_str("name").unwrap();
                        if !c.has_key_map(name) {
                            continue;
                        }
                        // The multikey and decimal flags follow the documents.
                        let pattern = KeyPattern::parse(spec).unwrap();
                        let any = |f: fn(KeyShape) -> bool| {
                            c.iter().any(|d| f(pattern.key_set_and_shape(&d.unwrap().to_document()).1))
                        };
                        let shape = c.index_shape(name).unwrap();
                        prop_assert_eq!(shape.multikey, any(|s| s.multikey));
                        prop_assert_eq!(shape.decimal, any(|s| s.decimal));
                        // A full scan forward is the reverse of one backward,
                        // and a resume continues where the position was.
                        let all = [(Bound::Unbounded, Bound::Unbounded)];
                        let fwd: Vec<_> = c.index_scan(name, &all, ScanDirection::Forward, None).map(Result::unwrap).collect();
                        let mut back: Vec<_> = c.index_scan(name, &all, ScanDirection::Backward, None).map(Result::unwrap).collect();
                        back.reverse();
                        prop_assert_eq!(&fwd, &back);
                        prop_assert_eq!(fwd.len(), shape.entries);
                        if let Some(mid) = fwd.get(fwd.len() / 2) {
                            let rest: Vec<_> = c.index_scan(name, &all, ScanDirection::Forward, Some(mid)).map(Result::unwrap).collect();
                            prop_assert_eq!(&rest[..], &fwd[fwd.len() / 2 + 1..]);
                            let before: Vec<_> = c.index_scan(name, &all, ScanDirection::Backward, Some(mid)).map(Result::unwrap).collect();
                            prop_assert_eq!(before.len(), fwd.len() / 2);
                        }
                        for d in c.iter().map(|d| d.unwrap().to_document()) {
                            for key in KeyPattern::parse(spec).unwrap().keys(&d, false).unwrap() {
                                // A point interval holds exactly the key's holders.
                                let k = IndexKey::from_values(&key);
                                let point = [(Bound::Included(k.clone()), Bound::Included(k))];
                                let ids: Vec<Bson> = c
                                    .index_scan(name, &point, ScanDirection::Forward, None)
                                    .filter_map(|r| rawdoc::id_of(&c.get_by_key(&r.unwrap().1).unwrap()?))
                                    .collect();
                                prop_assert_eq!(&ids, &scan(c, spec, &key));
                                let held: Vec<Bson> = c.lookup(name, &key).unwrap();
                                prop_assert_eq!(&held, &scan(c, spec, &key));
                                let first = c.lookup_unique(name, &key).unwrap();
                                prop_assert_eq!(first.as_ref(), held.first());
                            }
                        }
                    }
                }
            }
            // The fork taken halfway was not disturbed by later ops.
            for (_, c) in fork.namespaces().unwrap() {
                prop_assert!(c.keymaps_match_rebuild());
            }
            let decoded = crate::snapshot::decode(&crate::snapshot::encode(&s).unwrap()).unwrap();
            for ((_, a), (_, b)) in s.namespaces().unwrap().into_iter().zip(decoded.namespaces().unwrap()) {
                prop_assert_eq!(&*a.as_memory().unwrap().keymaps, &*b.as_memory().unwrap().keymaps);
            }
        }
    }
}
