//! `CollectionState`: one collection as every reader sees it, whether it is
//! held in memory (`state::MemoryCollection`, the fold of the log) or read
//! from the materialized store (`materialized::CollectionView`, a view at a
//! point). Callers cannot tell which, and every read is fallible and
//! returns owned values for that reason (`Doc`, `Result`).
//!
//! A stored collection answers index scans (`index_scan`, `index_shape`:
//! planners use its indexes as they do the head's) and reverse `_id`-order
//! scans from the store. What the store does not keep yet, it says so
//! rather than answer wrongly: capped collections' insertion order (their
//! natural order is refused by name; the engine serves states holding a
//! capped collection from memory).

use crate::doc::Doc;
use crate::error::{Result, WalError};
use crate::idkey::IdKey;
use crate::indexkey::{IndexKey, IndexKeyError, KeyPattern};
use crate::materialized::CollectionView;
use crate::state::{
    DocChange, IndexPosition, IndexShape, KeyInterval, MemoryCollection, ScanDirection,
};
use bson::{Bson, Document, doc};
use std::sync::Arc;

/// One collection at one point of a branch. O(1) to clone.
#[derive(Clone, Debug)]
pub struct CollectionState(Repr);

#[derive(Clone, Debug)]
enum Repr {
    Memory(MemoryCollection),
    Stored(Arc<StoredCollection>),
}

/// A collection the store serves, with its index specs read once.
struct StoredCollection {
    view: CollectionView,
    indexes: Vec<Document>,
}

impl std::fmt::Debug for StoredCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredCollection({:?})", self.view.options())
    }
}

/// The refusal of what a stored collection cannot answer (see the top doc).
fn not_kept(what: &str) -> WalError {
    WalError::InvalidOp(format!(
        "{what} is not kept by the materialized store: read this point from memory"
    ))
}

impl CollectionState {
    pub(crate) fn memory(c: MemoryCollection) -> CollectionState {
        CollectionState(Repr::Memory(c))
    }

    pub(crate) fn stored(view: CollectionView) -> CollectionState {
        let indexes = view.indexes();
        CollectionState(Repr::Stored(Arc::new(StoredCollection { view, indexes })))
    }

    /// Whether this collection is capped (created with `capped: true`).
    pub fn is_capped(&self) -> bool {
        match &self.0 {
            Repr::Memory(c) => c.is_capped(),
            Repr::Stored(s) => s.view.options().get_bool("capped").unwrap_or(false),
        }
    }

    /// Documents in natural order: insertion order for a capped
    /// collection, `IdKey` order otherwise.
    pub fn iter_natural(&self) -> Box<dyn Iterator<Item = Result<Doc>> + '_> {
        match &self.0 {
            Repr::Memory(c) => c.iter_natural(),
            Repr::Stored(_) if self.is_capped() => Box::new(std::iter::once(Err(not_kept(
                "a capped collection's insertion order",
            )))),
            Repr::Stored(_) => self.iter(),
        }
    }

    /// A capped collection's documents after natural position `after`
    /// (from the oldest when `None`), each with its position: what a
    /// tailable cursor reads next. Empty for a collection not capped.
    pub fn iter_natural_after(
        &self,
        after: Option<u64>,
    ) -> Box<dyn Iterator<Item = Result<(u64, Doc)>> + '_> {
        match &self.0 {
            Repr::Memory(c) => Box::new(c.iter_natural_after(after)),
            Repr::Stored(_) if self.is_capped() => Box::new(std::iter::once(Err(not_kept(
                "a capped collection's insertion order",
            )))),
            Repr::Stored(_) => Box::new(std::iter::empty()),
        }
    }

    /// A capped collection's documents before natural position `before`
    /// (from the newest when `None`), newest first, each with its position:
    /// a reverse natural scan (`{$natural: -1}`) that resumes where it
    /// stopped. Empty for a collection not capped.
    pub fn iter_natural_before(
        &self,
        before: Option<u64>,
    ) -> Box<dyn Iterator<Item = Result<(u64, Doc)>> + '_> {
        match &self.0 {
            Repr::Memory(c) => Box::new(c.iter_natural_before(before)),
            Repr::Stored(_) if self.is_capped() => Box::new(std::iter::once(Err(not_kept(
                "a capped collection's insertion order",
            )))),
            Repr::Stored(_) => Box::new(std::iter::empty()),
        }
    }

    /// Whether natural position `at` still holds a document (a tailable
    /// cursor's last one: gone means its place was lost).
    pub fn holds_natural_position(&self, at: u64) -> bool {
        match &self.0 {
            Repr::Memory(c) => c.holds_natural_position(at),
            Repr::Stored(_) => false,
        }
    }

    /// The documents' total BSON bytes, kept for a capped collection in
    /// memory.
    pub fn capped_bytes(&self) -> Option<u64> {
        match &self.0 {
            Repr::Memory(c) => c.capped_bytes(),
            Repr::Stored(_) => None,
        }
    }

    /// The document with `_id` `id` (its bytes shared, not copied).
    pub fn get(&self, id: &Bson) -> Result<Option<Doc>> {
        match &self.0 {
            Repr::Memory(c) => c.get(id),
            Repr::Stored(s) => s.view.get(id),
        }
    }

    /// The document with `_id` `id`, parsed.
    pub fn get_document(&self, id: &Bson) -> Result<Option<Document>> {
        Ok(self.get(id)?.map(|d| d.to_document()))
    }

    pub fn get_by_key(&self, key: &IdKey) -> Result<Option<Doc>> {
        self.get_by_key_bytes(key.as_bytes())
    }

    /// The document whose key bytes are `key` (as [`Self::iter_after`]
    /// gives them): a join keeps these instead of documents.
    pub fn get_by_key_bytes(&self, key: &[u8]) -> Result<Option<Doc>> {
        match &self.0 {
            Repr::Memory(c) => c.get_by_key_bytes(key),
            Repr::Stored(s) => s.view.get_by_key_bytes(key),
        }
    }

    /// Documents in `IdKey` order (MongoDB's `_id` order).
    pub fn iter(&self) -> Box<dyn Iterator<Item = Result<Doc>> + '_> {
        match &self.0 {
            Repr::Memory(c) => Box::new(c.iter()),
            Repr::Stored(s) => Box::new(s.view.scan().map(|r| r.map(|(_, d)| d))),
        }
    }

    /// Documents after the one whose key is `after` (all when `None`), in
    /// `IdKey` order, each with its key: a scan that resumes where it
    /// stopped (a cursor's next batch) without holding an iterator.
    pub fn iter_after<'a>(
        &'a self,
        after: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Result<(IdKey, Doc)>> + 'a> {
        match &self.0 {
            Repr::Memory(c) => Box::new(c.iter_after(after)),
            Repr::Stored(s) => Box::new(s.view.scan_from(after)),
        }
    }

    /// Documents before the one whose key is `before` (all when `None`),
    /// in descending `IdKey` order, each with its key: the reverse of
    /// [`Self::iter_after`] (`{$natural: -1}`), resumable the same way.
    pub fn iter_before<'a>(
        &'a self,
        before: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Result<(IdKey, Doc)>> + 'a> {
        match &self.0 {
            Repr::Memory(c) => Box::new(c.iter_before(before)),
            Repr::Stored(s) => Box::new(s.view.scan_before(before)),
        }
    }

    /// What changed from `self` to `other`, in key order, as owned
    /// documents. Two memory collections compare by structure (no work for
    /// a fork not written to); otherwise both are scanned.
    pub(crate) fn changes(&self, other: &CollectionState) -> Result<Vec<Change>> {
        if let (Repr::Memory(a), Repr::Memory(b)) = (&self.0, &other.0) {
            return Ok(a
                .changes(b)
                .into_iter()
                .map(|c| match c {
                    DocChange::Added(d) => Change::Added(crate::rawdoc::id_of(d)),
                    DocChange::Removed(d) => Change::Removed(crate::rawdoc::id_of(d)),
                    DocChange::Changed(d) => Change::Changed(crate::rawdoc::id_of(d)),
                })
                .collect());
        }
        self.changes_by_scan(other)
    }

    /// [`Self::changes`] by merging two scans in `_id` order (O(n + m)).
    pub(crate) fn changes_by_scan(&self, other: &CollectionState) -> Result<Vec<Change>> {
        let mut out = Vec::new();
        let (mut a, mut b) = (self.iter_after(None), other.iter_after(None));
        let (mut x, mut y) = (a.next().transpose()?, b.next().transpose()?);
        loop {
            match (&x, &y) {
                (None, None) => break,
                (Some((_, d)), None) => {
                    out.push(Change::Removed(crate::rawdoc::id_of(d)));
                    x = a.next().transpose()?;
                }
                (None, Some((_, d))) => {
                    out.push(Change::Added(crate::rawdoc::id_of(d)));
                    y = b.next().transpose()?;
                }
                (Some((ka, da)), Some((kb, db))) => match ka.cmp(kb) {
                    std::cmp::Ordering::Less => {
                        out.push(Change::Removed(crate::rawdoc::id_of(da)));
                        x = a.next().transpose()?;
                    }
                    std::cmp::Ordering::Greater => {
                        out.push(Change::Added(crate::rawdoc::id_of(db)));
                        y = b.next().transpose()?;
                    }
                    std::cmp::Ordering::Equal => {
                        if da.as_bytes() != db.as_bytes() {
                            out.push(Change::Changed(crate::rawdoc::id_of(db)));
                        }
                        x = a.next().transpose()?;
                        y = b.next().transpose()?;
                    }
                },
            }
        }
        Ok(out)
    }

    /// The number of documents (a scan of a stored collection).
    pub fn len(&self) -> Result<u64> {
        match &self.0 {
            Repr::Memory(c) => c.len(),
            Repr::Stored(s) => s.view.len(),
        }
    }

    pub fn is_empty(&self) -> Result<bool> {
        match &self.0 {
            Repr::Memory(c) => c.is_empty(),
            Repr::Stored(s) => Ok(s.view.scan().next().transpose()?.is_none()),
        }
    }

    pub fn options(&self) -> &Document {
        match &self.0 {
            Repr::Memory(c) => c.options(),
            Repr::Stored(s) => s.view.options(),
        }
    }

    /// Always starts with `{name: "_id_", key: {_id: 1}}`.
    pub fn indexes(&self) -> &[Document] {
        match &self.0 {
            Repr::Memory(c) => c.indexes(),
            Repr::Stored(s) => &s.indexes,
        }
    }

    /// The key tuples (values in the spec's field order) that `doc` has in
    /// the index `spec`, with MongoDB's rules: a missing field is `null`, an
    /// empty array `undefined`, arrays are multikey (one tuple per element,
    /// deduplicated), a sparse index gives none for a document missing all
    /// its fields. Refuses parallel arrays (MongoDB code 171). Works for any
    /// plain ascending/descending spec, whether or not a key map is kept
    /// for it; a special, partial or collated spec is `NotMaintained`.
    pub fn index_keys(
        spec: &Document,
        doc: &Document,
    ) -> std::result::Result<Vec<Vec<Bson>>, IndexKeyError> {
        let name = spec.get_str("name").unwrap_or_default();
        let pattern = if name == "_id_" {
            KeyPattern::parse(&doc! {"name": "id", "key": {"_id": 1}})
        } else {
            KeyPattern::parse(spec)
        };
        pattern
            .filter(|p| !p.is_text())
            .ok_or_else(|| IndexKeyError::NotMaintained(name.to_string()))?
            .keys(doc, true)
    }

    /// The canonical key of one key tuple (as `index_keys` gives them).
    pub fn index_key(key_values: &[Bson]) -> IndexKey {
        IndexKey::from_values(key_values)
    }

    /// Whether index entries are kept for the index `name` (every plain
    /// ascending/descending or text secondary index without
    /// `partialFilterExpression` or `collation`). Without them, `lookup*` find nothing: scan instead.
    pub fn has_key_map(&self, index_name: &str) -> bool {
        match &self.0 {
            Repr::Memory(c) => c.has_key_map(index_name),
            Repr::Stored(s) => s.view.has_key_map(index_name),
        }
    }

    /// The shape of index `name`'s keys (`None`: no key map is kept; for a
    /// stored collection also when the store cannot be read, so a planner
    /// scans, and the scan reports the error).
    pub fn index_shape(&self, index_name: &str) -> Option<IndexShape> {
        match &self.0 {
            Repr::Memory(c) => c.index_shape(index_name),
            Repr::Stored(s) => match s.view.index_shape(index_name) {
                Ok(shape) => shape,
                Err(e) => {
                    tracing::warn!(index = index_name, error = %e, "index shape unreadable: scanning");
                    None
                }
            },
        }
    }

    /// The entries of index `name` in `intervals` (disjoint, in ascending
    /// order), in `direction`, resuming after (forward) or before
    /// (backward) `resume`: what an index scan reads. Empty when no key map
    /// is kept. A multikey index gives a document once per key: the caller
    /// deduplicates.
    pub fn index_scan<'a>(
        &'a self,
        index_name: &str,
        intervals: &'a [KeyInterval],
        direction: ScanDirection,
        resume: Option<&IndexPosition>,
    ) -> Box<dyn Iterator<Item = Result<IndexPosition>> + 'a> {
        match &self.0 {
            Repr::Memory(c) => Box::new(c.index_scan(index_name, intervals, direction, resume)),
            Repr::Stored(s) => s.view.index_scan(index_name, intervals, direction, resume),
        }
    }

    /// The `_id` of the document holding `key_values` in the index
    /// `index_name`; the smallest `_id` if several do.
    pub fn lookup_unique(&self, index_name: &str, key_values: &[Bson]) -> Result<Option<Bson>> {
        Ok(self.lookup(index_name, key_values)?.into_iter().next())
    }

    /// Every `_id` holding `key_values` (one value per field of the index,
    /// in spec order; multikey elements, not whole arrays) in the index
    /// `index_name`, in `_id` order.
    pub fn lookup(&self, index_name: &str, key_values: &[Bson]) -> Result<Vec<Bson>> {
        match &self.0 {
            Repr::Memory(c) => c.lookup(index_name, key_values),
            Repr::Stored(s) => s.view.lookup(index_name, key_values),
        }
    }

    /// The unique check for writing `doc` (insert or replacement of the
    /// document with the same `_id`): the first of its keys in the index
    /// `index_name` already held by *another* `_id`, with that `_id`.
    /// `NotMaintained` when no key map is kept (scan).
    pub fn unique_conflict(
        &self,
        index_name: &str,
        doc: &Document,
    ) -> std::result::Result<Option<(Vec<Bson>, Bson)>, IndexKeyError> {
        match &self.0 {
            Repr::Memory(c) => c.unique_conflict(index_name, doc),
            // A stored state is read-only: writes check the head, in memory.
            Repr::Stored(_) => Err(IndexKeyError::NotMaintained(index_name.to_string())),
        }
    }
}

/// One document that differs between two collections, by `_id`.
#[derive(Debug)]
pub(crate) enum Change {
    Added(Option<Bson>),
    Removed(Option<Bson>),
    Changed(Option<Bson>),
}

impl PartialEq for CollectionState {
    /// Same options, indexes and documents (byte for byte). Memory
    /// collections compare by structure; a read that fails compares unequal.
    fn eq(&self, other: &Self) -> bool {
        if let (Repr::Memory(a), Repr::Memory(b)) = (&self.0, &other.0) {
            return a == b;
        }
        self.options() == other.options()
            && self.indexes() == other.indexes()
            && self.changes(other).is_ok_and(|c| c.is_empty())
    }
}

#[cfg(test)]
impl CollectionState {
    /// Test support: the key maps equal a rebuild from scratch.
    pub(crate) fn keymaps_match_rebuild(&self) -> bool {
        match &self.0 {
            Repr::Memory(c) => c.keymaps_match_rebuild(),
            Repr::Stored(_) => true,
        }
    }

    pub(crate) fn as_memory(&self) -> Option<&MemoryCollection> {
        match &self.0 {
            Repr::Memory(c) => Some(c),
            Repr::Stored(_) => None,
        }
    }
}
