//! The level merge: what a view sees of a range of versioned items, each
//! item's newest version at or below its level's bound, the child-most level
//! winning, absent items (tombstones) dropped.
//!
//! Used for collection scans and `scan_from` (`d` space), index entries
//! (`i`) and the collection catalog (`c`). Items come out in byte order of
//! the item, which is `IdKey` order for documents, or in reverse
//! (`Merge::backward`: reverse scans of documents and index entries).

use super::Kv;
use super::keys::{self, ABSENT, SEQ_LEN};
use super::view::{Level, View};
use crate::error::Result;
use crate::types::Seq;
use fjall::Slice;
use std::ops::Bound;

/// One level's iterator: yields each item's newest version at or below the
/// bound (tombstones included: the merge needs them to hide ancestors), in
/// ascending item order or, `backward`, descending.
struct LevelIter {
    iter: fjall::Iter,
    prefix_len: usize,
    bound: Seq,
    backward: bool,
    /// Forward: the item last yielded (its older versions are skipped).
    last: Option<Vec<u8>>,
    /// Backward: a key read past the item just yielded (the next item's
    /// oldest version), read again first.
    pending: Option<(Slice, Slice)>,
    kv: Kv,
}

impl LevelIter {
    /// The next raw key and value in this level's direction.
    fn raw(&mut self) -> Result<Option<(Slice, Slice)>> {
        if let Some(kv) = self.pending.take() {
            return Ok(Some(kv));
        }
        let guard = if self.backward {
            self.iter.next_back()
        } else {
            self.iter.next()
        };
        match guard {
            Some(g) => Ok(Some(g.into_inner().map_err(|e| self.kv.error("scan", e))?)),
            None => Ok(None),
        }
    }

    /// Where the item of versioned key `k` ends (its `!seq` starts).
    fn item_end(&self, k: &[u8]) -> Result<usize> {
        k.len()
            .checked_sub(SEQ_LEN)
            .filter(|e| *e >= self.prefix_len)
            .ok_or_else(|| {
                self.kv
                    .malformed(format!("key of {} bytes in a scan", k.len()))
            })
    }

    fn next_visible(&mut self) -> Result<Option<(Vec<u8>, Slice)>> {
        if self.backward {
            return self.next_visible_back();
        }
        while let Some((k, v)) = self.raw()? {
            let end = self.item_end(&k)?;
            let item = &k[self.prefix_len..end];
            if self.last.as_deref() == Some(item) {
                continue;
            }
            let seq = keys::seq_of(&k).unwrap_or(Seq::ZERO);
            if seq > self.bound {
                continue;
            }
            self.last = Some(item.to_vec());
            return Ok(Some((item.to_vec(), v)));
        }
        Ok(None)
    }

    /// Backward, one item's versions come oldest first: the visible one is
    /// the last at or below the bound before the item changes, so the first
    /// key of the next item is read and kept in `pending`.
    fn next_visible_back(&mut self) -> Result<Option<(Vec<u8>, Slice)>> {
        let mut found: Option<(Vec<u8>, Slice)> = None;
        let mut item_of_group: Option<Vec<u8>> = None;
        while let Some((k, v)) = self.raw()? {
            let end = self.item_end(&k)?;
            let item = &k[self.prefix_len..end];
            if item_of_group.as_deref() != Some(item) {
                if found.is_some() {
                    self.pending = Some((k, v));
                    return Ok(found);
                }
                item_of_group = Some(item.to_vec());
            }
            let seq = keys::seq_of(&k).unwrap_or(Seq::ZERO);
            if seq <= self.bound {
                found = Some((item.to_vec(), v));
            }
        }
        Ok(found)
    }
}

/// The merged items of a view under one per-level prefix, optionally
/// restricted to items starting with `within` and above `after`.
pub(crate) struct Merge {
    levels: Vec<LevelIter>,
    backward: bool,
    heads: Vec<Option<(Vec<u8>, Slice)>>,
    started: bool,
}

/// The key range of one level a merge covers, from that level's prefix.
pub(crate) type Range = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Every item under `p`.
pub(crate) fn all(p: &[u8]) -> Range {
    within(p, &[])
}

/// Items under `p` starting with `sub` (an index key, say).
pub(crate) fn within(p: &[u8], sub: &[u8]) -> Range {
    let mut lo = p.to_vec();
    lo.extend_from_slice(sub);
    let hi = keys::successor(&lo).map_or(Bound::Unbounded, Bound::Excluded);
    (Bound::Included(lo), hi)
}

/// Items under `p` strictly after the item `after`.
pub(crate) fn after(p: &[u8], after: &[u8]) -> Range {
    let (_, hi) = all(p);
    (Bound::Excluded(keys::after_item(p, after)), hi)
}

impl Merge {
    /// `prefix(level)` is the level's key prefix (`d P inc coll`, …);
    /// `range(prefix)` the part of it to merge.
    pub(crate) fn new(
        kv: &Kv,
        view: &View,
        prefix: impl Fn(&Level) -> Vec<u8>,
        range: impl Fn(&[u8]) -> Range,
    ) -> Merge {
        Merge::directed(kv, view, prefix, range, false)
    }

    /// [`Merge::new`] in descending item order.
    pub(crate) fn backward(
        kv: &Kv,
        view: &View,
        prefix: impl Fn(&Level) -> Vec<u8>,
        range: impl Fn(&[u8]) -> Range,
    ) -> Merge {
        Merge::directed(kv, view, prefix, range, true)
    }

    fn directed(
        kv: &Kv,
        view: &View,
        prefix: impl Fn(&Level) -> Vec<u8>,
        range: impl Fn(&[u8]) -> Range,
        backward: bool,
    ) -> Merge {
        let mut levels = Vec::with_capacity(view.levels.len());
        for level in view.levels.iter() {
            let p = prefix(level);
            levels.push(LevelIter {
                iter: kv.ks.range::<Vec<u8>, _>(range(&p)),
                prefix_len: p.len(),
                bound: level.bound,
                backward,
                last: None,
                pending: None,
                kv: kv.clone(),
            });
        }
        let heads = vec![None; levels.len()];
        Merge {
            levels,
            backward,
            heads,
            started: false,
        }
    }

    /// The next visible item and its live value (tombstones skipped).
    pub(crate) fn next_item(&mut self) -> Result<Option<(Vec<u8>, Slice)>> {
        if !self.started {
            for i in 0..self.levels.len() {
                self.heads[i] = self.levels[i].next_visible()?;
            }
            self.started = true;
        }
        loop {
            // The first item in the merge's direction (the smallest, or
            // the largest backward); the child-most level holding it wins.
            let mut win: Option<usize> = None;
            let backward = self.backward;
            let first = |a: &Vec<u8>, b: &Vec<u8>| if backward { a > b } else { a < b };
            for (i, h) in self.heads.iter().enumerate() {
                if let Some((item, _)) = h
                    && win
                        .is_none_or(|w| self.heads[w].as_ref().is_some_and(|(b, _)| first(item, b)))
                {
                    win = Some(i);
                }
            }
            let Some(w) = win else { return Ok(None) };
            let (item, value) = self.heads[w].take().unwrap_or_default();
            self.heads[w] = self.levels[w].next_visible()?;
            for i in w + 1..self.levels.len() {
                if self.heads[i].as_ref().is_some_and(|(b, _)| *b == item) {
                    self.heads[i] = self.levels[i].next_visible()?;
                }
            }
            if value.first() == Some(&ABSENT) {
                continue;
            }
            return Ok(Some((item, value)));
        }
    }
}

impl Iterator for Merge {
    type Item = Result<(Vec<u8>, Slice)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// One item's version a view sees: the first level with a version at or
/// below its bound answers (`None`: no level has the item, or the answer
/// is a tombstone). `doc_of`: the item is a document of that collection
/// number, so a level whose own-key filter says it never wrote it is
/// skipped without a seek (`filter`'s invariant makes that exact).
pub(crate) fn point(
    kv: &Kv,
    view: &View,
    prefix: impl Fn(&Level) -> Vec<u8>,
    doc_of: Option<u32>,
    item: &[u8],
) -> Result<Option<Slice>> {
    // Filters hold stored items (they learn them from `x` keys).
    let hash = doc_of.map(|coll| kv.filters.hash(coll, &keys::stored_item(item)));
    for level in view.levels.iter() {
        if let Some(h) = hash
            && !kv.filters.may_hold(kv, view.project, level.inc, h)?
        {
            continue;
        }
        let p = prefix(level);
        let from = keys::versioned(&p, item, level.bound);
        if from.len() > keys::MAX_KEY {
            // Only a name can be this long, and `apply` refuses those.
            return Ok(None);
        }
        let to = keys::after_item(&p, item);
        if let Some(guard) = kv.ks.range(from..=to).next() {
            let v = guard.value().map_err(|e| kv.error("point read", e))?;
            if v.first() == Some(&ABSENT) {
                return Ok(None);
            }
            return Ok(Some(v));
        }
    }
    Ok(None)
}
