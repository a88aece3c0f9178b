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
use crate::indexkey::{IndexKey, KeyPattern};
use crate::rawdoc;
use bson::{Bson, RawDocument};
use std::ops::Bound;

/// The encoded keys of `doc` in an index of `pattern` (lenient, as the fold:
/// parallel arrays index the product). Sorted and deduplicated.
pub(crate) fn keys_of(pattern: &KeyPattern, doc: Option<&RawDocument>) -> Vec<IndexKey> {
    doc.map(|d| pattern.key_set(&rawdoc::parse(d)))
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

/// Index entries in index order, then `_id` order: `(IndexKey bytes, IdKey)`.
pub struct IndexScan {
    merge: Option<Merge>,
    kv: super::Kv,
    /// Set when a bound is longer than an inline item: the key range read
    /// is then wider than asked, and entries outside these are dropped.
    bounds: Option<KeyBounds>,
}

impl IndexScan {
    fn entry(&self, item: &[u8], value: &[u8]) -> Result<(Vec<u8>, IdKey)> {
        let whole = if keys::is_long(item) {
            value.get(1..).unwrap_or_default()
        } else {
            item
        };
        split(whole).ok_or_else(|| self.kv.malformed("index entry item".into()))
    }
}

impl Iterator for IndexScan {
    type Item = Result<(Vec<u8>, IdKey)>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let found = match self.merge.as_mut()?.next()? {
                Ok((item, value)) => self.entry(&item, &value),
                Err(e) => Err(e),
            };
            if let (Ok((key, _)), Some(bounds)) = (&found, &self.bounds)
                && !inside(bounds, key)
            {
                continue;
            }
            return Some(found);
        }
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
    /// descending secondary index); without them lookups find nothing.
    pub fn has_key_map(&self, name: &str) -> bool {
        self.index_number(name).is_some()
    }

    /// Entries of index `name` with keys between `lower` and `upper` (key
    /// tuples as `CollectionState::index_keys` gives them; multikey
    /// elements, not whole arrays). Empty for an index without entries.
    /// In `(key, _id)` order, except among entries whose key and `_id`
    /// together exceed `keys::INLINE_ITEM` bytes and share that many:
    /// those come in hash order (`keys::stored_item`).
    pub fn index_range(
        &self,
        name: &str,
        lower: Bound<&[Bson]>,
        upper: Bound<&[Bson]>,
    ) -> IndexScan {
        let kv = self.kv.clone();
        let Some(number) = self.index_number(name) else {
            return IndexScan {
                merge: None,
                kv,
                bounds: None,
            };
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
        IndexScan {
            merge: Some(merge),
            kv,
            bounds,
        }
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
        let long = bounds.is_some();
        let mut out = Vec::new();
        for r in (IndexScan {
            merge: Some(merge),
            kv: self.kv.clone(),
            bounds,
        }) {
            out.push(r?.1);
        }
        // Entries of a long key are long items, keyed in hash order.
        if long {
            out.sort();
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
