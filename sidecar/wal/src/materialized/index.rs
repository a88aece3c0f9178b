//! Secondary-index entries: `i P inc coll index item !seq` → present or
//! removed, with `item = IndexKey ‖ IdKey ‖ len(IdKey): u32 BE`, written by
//! `apply` for every index `KeyPattern::parse` accepts (today's key maps),
//! and read through the level merge: a level's `removed` entry hides an
//! ancestor's `present` one, so a document a child changed is found only
//! under the child's keys.
//!
//! Why the length suffix: `IndexKey ‖ IdKey` is already prefix-free and
//! ordered (key, then `_id`); the fixed-width suffix keeps both properties
//! and lets a range scan split an item without decoding either key.
//!
//! An item longer than `keys::INLINE_ITEM` is keyed by its short form
//! (`keys::stored_item`) and its present value carries the whole item
//! (`PRESENT ‖ item`); a scan reads it from there, and a range whose bound
//! is that long starts at the bound's inline prefix and drops what it finds
//! outside the bound (`IndexScan::bounds`).

use super::CollectionView;
use super::keys::{self, ABSENT, PRESENT};
use super::scan::{self, Merge};
use super::view::Level;
use crate::error::Result;
use crate::idkey::IdKey;
use crate::indexkey::KeyShape;
use crate::indexkey::{IndexKey, KeyPattern};
use crate::rawdoc;
use crate::state::{IndexPosition, IndexShape, KeyInterval, ScanDirection};
use bson::{Bson, RawDocument};
use fjall::Slice;
use std::collections::VecDeque;
use std::ops::Bound;

/// The encoded keys of `doc` in an index of `pattern` (lenient, as the fold:
/// parallel arrays index the product), sorted and deduplicated, with the
/// document's shape there (none for no document).
pub(crate) fn keys_and_shape(
    pattern: &KeyPattern,
    doc: Option<&RawDocument>,
) -> (Vec<IndexKey>, KeyShape) {
    doc.map(|d| pattern.key_set_and_shape(&rawdoc::parse(d)))
        .unwrap_or_default()
}

/// The entries a change of a document from `old` to `new` keys writes:
/// removed for keys it lost, present for keys it gained.
pub(crate) fn entry_changes(old: &[IndexKey], new: &[IndexKey]) -> Vec<(IndexKey, u8)> {
    let gone = old
        .iter()
        .filter(|k| new.binary_search(k).is_err())
        .map(|k| (k.clone(), ABSENT));
    let came = new
        .iter()
        .filter(|k| old.binary_search(k).is_err())
        .map(|k| (k.clone(), PRESENT));
    gone.chain(came).collect()
}

/// An entry's item: `IndexKey ‖ IdKey ‖ len(IdKey)`.
pub(crate) fn item(key: &IndexKey, id: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.as_bytes().len() + id.len() + 4);
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(id);
    v.extend_from_slice(&(id.len() as u32).to_be_bytes());
    v
}

/// `(IndexKey bytes, IdKey)` of an item; `None` if it is not one.
fn split(item: &[u8]) -> Option<(Vec<u8>, IdKey)> {
    let at = item.len().checked_sub(4)?;
    let n = u32::from_be_bytes(item.get(at..)?.try_into().ok()?) as usize;
    let k = at.checked_sub(n)?;
    Some((
        item.get(..k)?.to_vec(),
        IdKey::from_key_bytes(item.get(k..at)?),
    ))
}

/// The value of a present entry: the whole item when the key holds its
/// short form.
pub(crate) fn present_value(item: &[u8]) -> Vec<u8> {
    if keys::is_long(&keys::stored_item(item)) {
        [&[PRESENT][..], item].concat()
    } else {
        vec![PRESENT]
    }
}

/// Encoded key bounds `(lower, upper)`.
type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Whether `key` lies within `(lower, upper)`.
fn inside(bounds: &KeyBounds, key: &[u8]) -> bool {
    let above = match &bounds.0 {
        Bound::Included(b) => key >= b.as_slice(),
        Bound::Excluded(b) => key > b.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match &bounds.1 {
        Bound::Included(b) => key <= b.as_slice(),
        Bound::Excluded(b) => key < b.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

/// Index entries in `(key, _id)` order (or its reverse, `backward`):
/// `(IndexKey bytes, IdKey)`.
pub struct IndexScan {
    merge: Option<Merge>,
    kv: super::Kv,
    /// Set when a bound is longer than an inline item: the key range read
    /// is then wider than asked, and entries outside these are dropped.
    bounds: Option<KeyBounds>,
    backward: bool,
    /// A run of long items sharing their inline bytes, put in order (the
    /// merge gives them in hash order), yielded before reading on.
    run: VecDeque<(Vec<u8>, IdKey)>,
    /// The item read past the end of such a run, yielded after it.
    peeked: Option<(Vec<u8>, Slice)>,
}

/// The whole item of an entry: its key, or for the short form of a long
/// one, the item its present value carries.
fn whole_item(kv: &super::Kv, item: Vec<u8>, value: &[u8]) -> Result<Vec<u8>> {
    if !keys::is_long(&item) {
        return Ok(item);
    }
    match value.get(1..) {
        Some(w) if !w.is_empty() => Ok(w.to_vec()),
        _ => Err(kv.malformed("long index entry without its item".into())),
    }
}

impl IndexScan {
    fn new(merge: Option<Merge>, kv: super::Kv, bounds: Option<KeyBounds>, backward: bool) -> Self {
        IndexScan {
            merge,
            kv,
            bounds,
            backward,
            run: VecDeque::new(),
            peeked: None,
        }
    }

    fn split(&self, whole: &[u8]) -> Result<(Vec<u8>, IdKey)> {
        split(whole).ok_or_else(|| self.kv.malformed("index entry item".into()))
    }

    /// The next entry in exact order: short items come in it; long items
    /// sharing their inline bytes are read as a run and sorted.
    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, IdKey)>> {
        if let Some(e) = self.run.pop_front() {
            return Ok(Some(e));
        }
        let Some(merge) = self.merge.as_mut() else {
            return Ok(None);
        };
        let Some((item, value)) = self
            .peeked
            .take()
            .map_or_else(|| merge.next_item(), |p| Ok(Some(p)))?
        else {
            return Ok(None);
        };
        if !keys::is_long(&item) {
            return self.split(&item).map(Some);
        }
        let inline = item[..keys::INLINE_ITEM].to_vec();
        let mut wholes = vec![whole_item(&self.kv, item, &value)?];
        while let Some((next, v)) = merge.next_item()? {
            if keys::is_long(&next) && next.starts_with(&inline) {
                wholes.push(whole_item(&self.kv, next, &v)?);
            } else {
                self.peeked = Some((next, v));
                break;
            }
        }
        // Whole items order as `(key, _id)` (both parts prefix-free).
        wholes.sort();
        if self.backward {
            wholes.reverse();
        }
        for w in &wholes {
            let e = self.split(w)?;
            self.run.push_back(e);
        }
        Ok(self.run.pop_front())
    }
}

impl Iterator for IndexScan {
    type Item = Result<(Vec<u8>, IdKey)>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let found = match self.next_entry() {
                Ok(Some(e)) => e,
                Ok(None) => return None,
                Err(e) => {
                    // A damaged store ends the scan after saying so.
                    self.merge = None;
                    return Some(Err(e));
                }
            };
            if let Some(bounds) = &self.bounds
                && !inside(bounds, &found.0)
            {
                continue;
            }
            return Some(Ok(found));
        }
    }
}

/// One interval of an index scan: the entries of `IndexScan` (read over a
/// range at least as wide as the interval) that lie in the interval and
/// past the resume point, stopping at the first beyond the interval's far
/// end (entries come in key order).
struct IntervalScan {
    entries: IndexScan,
    interval: KeyInterval,
    direction: ScanDirection,
    resume: Option<IndexPosition>,
}

impl Iterator for IntervalScan {
    type Item = Result<IndexPosition>;
    fn next(&mut self) -> Option<Self::Item> {
        use std::cmp::Ordering;
        loop {
            let (key, id) = match self.entries.next()? {
                Ok(e) => e,
                Err(e) => return Some(Err(e)),
            };
            let key = IndexKey::from_bytes(key);
            let below_lo = match &self.interval.0 {
                Bound::Included(l) => key.as_bytes() < l.as_bytes(),
                Bound::Excluded(l) => key.as_bytes() <= l.as_bytes(),
                Bound::Unbounded => false,
            };
            let above_hi = match &self.interval.1 {
                Bound::Included(h) => key.as_bytes() > h.as_bytes(),
                Bound::Excluded(h) => key.as_bytes() >= h.as_bytes(),
                Bound::Unbounded => false,
            };
            let pos = (key, id);
            let (beyond, before, want) = match self.direction {
                ScanDirection::Forward => (above_hi, below_lo, Ordering::Greater),
                ScanDirection::Backward => (below_lo, above_hi, Ordering::Less),
            };
            if beyond {
                self.entries.merge = None;
                return None;
            }
            if before || self.resume.as_ref().is_some_and(|r| pos.cmp(r) != want) {
                continue;
            }
            return Some(Ok(pos));
        }
    }
}

/// The smaller of two range ends (each excluded or unbounded).
fn min_end(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (a, b) {
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.min(y)),
        (Bound::Unbounded, o) | (o, Bound::Unbounded) => o,
        (o, _) => o,
    }
}

impl CollectionView {
    fn index_number(&self, name: &str) -> Option<u32> {
        self.entry.index(name).and_then(|i| i.number)
    }

    fn index_prefix(&self, number: u32) -> impl Fn(&Level) -> Vec<u8> + use<> {
        let (p, n) = (self.view.project, self.entry.number);
        move |l| keys::index(p, l.inc, n, number)
    }

    /// Whether entries are kept for index `name` (a plain ascending or
    /// descending, or a text, secondary index); without them lookups find
    /// nothing.
    pub fn has_key_map(&self, name: &str) -> bool {
        self.index_number(name).is_some()
    }

    /// Entries of index `name` with keys between `lower` and `upper` (key
    /// tuples as `CollectionState::index_keys` gives them; multikey
    /// elements, not whole arrays). Empty for an index without entries.
    /// In `(key, _id)` order (long items, which the store keys in hash
    /// order, are put back in it: `IndexScan`).
    pub fn index_range(
        &self,
        name: &str,
        lower: Bound<&[Bson]>,
        upper: Bound<&[Bson]>,
    ) -> IndexScan {
        let kv = self.kv.clone();
        let Some(number) = self.index_number(name) else {
            return IndexScan::new(None, kv, None, false);
        };
        let enc = |b: Bound<&[Bson]>| b.map(|v| IndexKey::from_values(v).as_bytes().to_vec());
        let (lo, hi) = (enc(lower), enc(upper));
        let long = |b: &Bound<Vec<u8>>| match b {
            Bound::Included(k) | Bound::Excluded(k) => k.len() > keys::INLINE_ITEM,
            Bound::Unbounded => false,
        };
        let bounds = (long(&lo) || long(&hi)).then(|| (lo.clone(), hi.clone()));
        // Every entry of key `k` is `p ‖ k ‖ id ‖ len ‖ !seq`, and the
        // encodings are prefix-free: `successor(p ‖ k)` is past them all. A
        // long bound widens to its inline prefix (both ends inclusive of
        // every entry sharing it); `bounds` narrows what comes out.
        let range = move |p: &[u8]| {
            let with = |k: &[u8]| [p, keys::stored_bound(k)].concat();
            let past =
                |k: &[u8]| keys::successor(&with(k)).map_or(Bound::Unbounded, Bound::Excluded);
            let start = match &lo {
                Bound::Included(k) => Bound::Included(with(k)),
                Bound::Excluded(k) if k.len() > keys::INLINE_ITEM => Bound::Included(with(k)),
                Bound::Excluded(k) => match past(k) {
                    Bound::Excluded(s) => Bound::Included(s),
                    other => other,
                },
                Bound::Unbounded => Bound::Included(p.to_vec()),
            };
            let end = match &hi {
                Bound::Included(k) => past(k),
                Bound::Excluded(k) if k.len() > keys::INLINE_ITEM => past(k),
                Bound::Excluded(k) => Bound::Excluded(with(k)),
                Bound::Unbounded => past(&[]),
            };
            (start, end)
        };
        let merge = Merge::new(&self.kv, &self.view, self.index_prefix(number), range);
        IndexScan::new(Some(merge), kv, bounds, false)
    }

    /// The entries of index `name` in `intervals` (disjoint, ascending), in
    /// `direction`, after (forward) or before (backward) `resume`: the
    /// contract of `CollectionState::index_scan`, each entry visible at the
    /// view once. Empty for an index without entries.
    ///
    /// Each interval reads one key range of every level, from the stored
    /// form of its near end (or of `resume`, when nearer) to past every
    /// item starting with its far end, and tests each entry exactly: the
    /// ends are the planner's byte strings (encoded values, type brackets,
    /// `prefix_end`), never an extension of a whole key, and `resume` is a
    /// position in the index (a whole key, as a cursor keeps), so no entry
    /// to yield lies outside that range.
    pub fn index_scan<'a>(
        &'a self,
        name: &str,
        intervals: &'a [KeyInterval],
        direction: ScanDirection,
        resume: Option<&IndexPosition>,
    ) -> Box<dyn Iterator<Item = Result<IndexPosition>> + 'a> {
        let Some(number) = self.index_number(name) else {
            return Box::new(std::iter::empty());
        };
        let ordered: Box<dyn Iterator<Item = &'a KeyInterval> + 'a> = match direction {
            ScanDirection::Forward => Box::new(intervals.iter()),
            ScanDirection::Backward => Box::new(intervals.iter().rev()),
        };
        let resume = resume.cloned();
        Box::new(
            ordered.flat_map(move |iv| self.interval_scan(number, iv, direction, resume.clone())),
        )
    }

    fn interval_scan(
        &self,
        number: u32,
        interval: &KeyInterval,
        direction: ScanDirection,
        resume: Option<IndexPosition>,
    ) -> IntervalScan {
        let backward = direction == ScanDirection::Backward;
        let end_bytes = |b: &Bound<IndexKey>| match b {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.as_bytes().to_vec()),
            Bound::Unbounded => None,
        };
        let (lo, hi) = (end_bytes(&interval.0), end_bytes(&interval.1));
        let resume_item = resume.as_ref().map(|(k, id)| item(k, id.as_bytes()));
        let range = move |p: &[u8]| {
            let with = |b: &[u8]| [p, keys::stored_bound(b)].concat();
            let past =
                |b: &[u8]| keys::successor(&with(b)).map_or(Bound::Unbounded, Bound::Excluded);
            let mut start = lo.as_deref().map_or_else(|| p.to_vec(), with);
            let mut end = past(hi.as_deref().unwrap_or_default());
            if let Some(r) = &resume_item {
                if backward {
                    end = min_end(end, past(r));
                } else {
                    start = start.max(with(r));
                }
            }
            // An empty range, never an inverted one.
            if let Bound::Excluded(e) = &end
                && *e < start
            {
                end = Bound::Excluded(start.clone());
            }
            (Bound::Included(start), end)
        };
        let prefix = self.index_prefix(number);
        let merge = if backward {
            Merge::backward(&self.kv, &self.view, prefix, range)
        } else {
            Merge::new(&self.kv, &self.view, prefix, range)
        };
        IntervalScan {
            entries: IndexScan::new(Some(merge), self.kv.clone(), None, backward),
            interval: interval.clone(),
            direction,
            resume,
        }
    }

    /// The shape of index `name` at this view (`None`: no entries are kept
    /// for it), from the `shape` counters in O(levels).
    pub fn index_shape(&self, name: &str) -> Result<Option<IndexShape>> {
        let Some(number) = self.index_number(name) else {
            return Ok(None);
        };
        super::shape::at(&self.kv, &self.view, self.entry.number, number).map(Some)
    }

    /// The `_id` keys holding `key_values` in index `name`, in `_id` order.
    pub fn lookup_keys(&self, name: &str, key_values: &[Bson]) -> Result<Vec<IdKey>> {
        let Some(number) = self.index_number(name) else {
            return Ok(Vec::new());
        };
        let key = IndexKey::from_values(key_values);
        let merge = Merge::new(&self.kv, &self.view, self.index_prefix(number), |p| {
            scan::within(p, keys::stored_bound(key.as_bytes()))
        });
        let whole = key.as_bytes().to_vec();
        let bounds = (whole.len() > keys::INLINE_ITEM)
            .then(|| (Bound::Included(whole.clone()), Bound::Included(whole)));
        let mut out = Vec::new();
        for r in IndexScan::new(Some(merge), self.kv.clone(), bounds, false) {
            out.push(r?.1);
        }
        Ok(out)
    }

    /// The `_id`s of the documents holding `key_values` in index `name`,
    /// in `_id` order (as `CollectionState::lookup`).
    pub fn lookup(&self, name: &str, key_values: &[Bson]) -> Result<Vec<Bson>> {
        let mut out = Vec::new();
        for id in self.lookup_keys(name, key_values)? {
            if let Some(d) = self.get_by_key(&id)? {
                out.extend(rawdoc::id_of(d.as_raw()));
            }
        }
        Ok(out)
    }

    /// The smallest `_id` holding `key_values` in index `name`.
    pub fn lookup_unique(&self, name: &str, key_values: &[Bson]) -> Result<Option<Bson>> {
        Ok(self.lookup(name, key_values)?.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_split_and_keep_key_then_id_order() {
        let k = |n: i32| IndexKey::from_values(&[Bson::Int32(n)]);
        let id = |s: &str| IdKey::from_bson(&Bson::String(s.into()));
        let a = item(&k(1), id("zz").as_bytes());
        let b = item(&k(2), id("a").as_bytes());
        let c = item(&k(2), id("ab").as_bytes());
        assert!(a < b && b < c);
        assert!(!c.starts_with(&b) && !b.starts_with(&a));
        assert_eq!(split(&c), Some((k(2).as_bytes().to_vec(), id("ab"))));
        assert_eq!(split(&[0, 0, 0]), None);
        assert_eq!(split(&[1, 0, 0, 0, 9]), None);
    }
}
