//! Key encoding of the materialized store's six spaces (see DESIGN.md,
//! "Materialized store: the design").
//!
//! Invariants (tested below):
//! - Integers are big-endian, so byte order is numeric order.
//! - A version's seq is stored as `!seq = u64::MAX - seq`, last in the key,
//!   so one item's versions are adjacent and sort newest first.
//! - Every *item* (what sits between a level's prefix and `!seq`: an
//!   `IdKey`, an `IndexKey ‖ IdKey`, an encoded namespace) is prefix-free,
//!   so `prefix ‖ item` selects exactly one item's versions and the last 8
//!   bytes of any versioned key are its `!seq`.

use crate::types::{BranchId, Namespace, Seq};

/// Documents: `d P inc coll IdKey !seq` → `0x00 ‖ BSON` or `0x01` (deleted).
pub(crate) const DOCS: u8 = b'd';
/// Index entries: `i P inc coll index IndexKey IdKey !seq` → present/removed.
pub(crate) const INDEX: u8 = b'i';
/// Collections by name: `c P inc ns !seq` → a `CollectionEntry` or dropped.
pub(crate) const CATALOG: u8 = b'c';
/// What a commit touched: `x P inc seq coll IdKey` → empty.
pub(crate) const CHANGES: u8 = b'x';
/// Index shapes: `s P inc coll index !seq` → this incarnation's own
/// counters up to `seq` (`shape::Counts`; the item is empty).
pub(crate) const SHAPES: u8 = b's';
/// Meta: applied positions, project numbers, counters, format.
pub(crate) const META: u8 = b'm';

/// First byte of a value: a live version.
pub(crate) const PRESENT: u8 = 0x00;
/// First (only) byte of a value: the item does not exist at this version.
pub(crate) const ABSENT: u8 = 0x01;

/// The KV's longest key (fjall: 65,535 bytes; longer ones panic). Items
/// longer than `INLINE_ITEM` are stored in `stored_item`'s short form, so
/// only a namespace or project name could exceed it, and `apply` refuses
/// such a commit (the server limits names far below).
pub(crate) const MAX_KEY: usize = 65_535;

/// The longest item kept whole in a key; the longest key prefix (`i`: 21
/// bytes) + `INLINE_ITEM` + the hash + `!seq` stays under `MAX_KEY`.
pub(crate) const INLINE_ITEM: usize = 65_000;

/// Width of the hash that ends a long item's stored form.
const ITEM_HASH: usize = 32;

/// The form of `item` kept in keys: the item itself when it has at most
/// `INLINE_ITEM` bytes, else its first `INLINE_ITEM` bytes ‖ SHA-256(item).
///
/// Invariants, from items being prefix-free: stored forms are prefix-free
/// too (a whole item is never a prefix of a long one's first
/// `INLINE_ITEM` bytes; long forms all have one length), distinct items
/// keep distinct forms (up to a SHA-256 collision), and byte order is the
/// items' order except between two long items sharing their first
/// `INLINE_ITEM` bytes, which order by hash. A `_id` or index key that long
/// is legal in MongoDB and rare; a reader of a long form takes the whole
/// item from the value (`is_long`).
pub(crate) fn stored_item(item: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use sha2::Digest;
    if item.len() <= INLINE_ITEM {
        return std::borrow::Cow::Borrowed(item);
    }
    let mut k = Vec::with_capacity(INLINE_ITEM + ITEM_HASH);
    k.extend_from_slice(&item[..INLINE_ITEM]);
    k.extend_from_slice(&sha2::Sha256::digest(item));
    std::borrow::Cow::Owned(k)
}

/// Whether a stored item is the short form of a longer one.
pub(crate) fn is_long(stored: &[u8]) -> bool {
    stored.len() > INLINE_ITEM
}

/// Where a range of items that may start with `bound` begins, in stored
/// forms: `bound` itself when short, else its first `INLINE_ITEM` bytes
/// (every long item with that prefix sorts by hash, so the range starts
/// before all of them; callers check what they find against the bound).
pub(crate) fn stored_bound(bound: &[u8]) -> &[u8] {
    &bound[..bound.len().min(INLINE_ITEM)]
}

/// Width of `!seq` at the end of every versioned key.
pub(crate) const SEQ_LEN: usize = 8;

pub(crate) fn not_seq(seq: Seq) -> [u8; SEQ_LEN] {
    (u64::MAX - seq.0).to_be_bytes()
}

/// The seq of a versioned key (its last 8 bytes); `None` if it is too short.
pub(crate) fn seq_of(key: &[u8]) -> Option<Seq> {
    let at = key.len().checked_sub(SEQ_LEN)?;
    let mut b = [0u8; SEQ_LEN];
    b.copy_from_slice(key.get(at..)?);
    Some(Seq(u64::MAX - u64::from_be_bytes(b)))
}

/// `space P inc`: where one incarnation's items of a space start.
pub(crate) fn level(space: u8, project: u32, inc: BranchId) -> Vec<u8> {
    let mut k = Vec::with_capacity(32);
    k.push(space);
    k.extend_from_slice(&project.to_be_bytes());
    k.extend_from_slice(&inc.0.to_be_bytes());
    k
}

/// `d P inc coll`: one collection's documents in one incarnation.
pub(crate) fn docs(project: u32, inc: BranchId, coll: u32) -> Vec<u8> {
    let mut k = level(DOCS, project, inc);
    k.extend_from_slice(&coll.to_be_bytes());
    k
}

/// `i P inc coll index`: one index's entries in one incarnation.
pub(crate) fn index(project: u32, inc: BranchId, coll: u32, index: u32) -> Vec<u8> {
    let mut k = level(INDEX, project, inc);
    k.extend_from_slice(&coll.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// `s P inc coll index`: one index's shape counters in one incarnation.
pub(crate) fn shape(project: u32, inc: BranchId, coll: u32, index: u32) -> Vec<u8> {
    let mut k = level(SHAPES, project, inc);
    k.extend_from_slice(&coll.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// `x P inc seq coll stored(IdKey)`.
pub(crate) fn change(project: u32, inc: BranchId, seq: Seq, coll: u32, id: &[u8]) -> Vec<u8> {
    let mut k = level(CHANGES, project, inc);
    k.extend_from_slice(&seq.0.to_be_bytes());
    k.extend_from_slice(&coll.to_be_bytes());
    k.extend_from_slice(&stored_item(id));
    k
}

/// `prefix ‖ stored(item) ‖ !seq`.
pub(crate) fn versioned(prefix: &[u8], item: &[u8], seq: Seq) -> Vec<u8> {
    let item = stored_item(item);
    let mut k = Vec::with_capacity(prefix.len() + item.len() + SEQ_LEN);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&item);
    k.extend_from_slice(&not_seq(seq));
    k
}

/// A namespace as an ordered, prefix-free item: each name with `0x00`
/// escaped as `0x00 0xff`, then the terminator `0x00 0x00`. Byte order is
/// `(db, coll)` order.
pub(crate) fn namespace(ns: &Namespace) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.db.len() + ns.coll.len() + 4);
    for name in [&ns.db, &ns.coll] {
        for &b in name.as_bytes() {
            k.push(b);
            if b == 0 {
                k.push(0xff);
            }
        }
        k.extend_from_slice(&[0, 0]);
    }
    k
}

/// The namespace `namespace` encoded; `None` for bytes it never makes.
pub(crate) fn namespace_from(item: &[u8]) -> Option<Namespace> {
    let mut names: Vec<Vec<u8>> = vec![Vec::new()];
    let mut i = 0;
    while i < item.len() {
        let b = item[i];
        if b == 0 {
            match item.get(i + 1)? {
                0xff => names.last_mut()?.push(0),
                0 => names.push(Vec::new()),
                _ => return None,
            }
            i += 2;
        } else {
            names.last_mut()?.push(b);
            i += 1;
        }
    }
    // Two terminated names leave one empty, unterminated name behind.
    if names.len() != 3 || names.last().is_some_and(|n| !n.is_empty()) {
        return None;
    }
    let coll = String::from_utf8(names.swap_remove(1)).ok()?;
    let db = String::from_utf8(names.swap_remove(0)).ok()?;
    Some(Namespace { db, coll })
}

/// `c P inc`.
pub(crate) fn catalog(project: u32, inc: BranchId) -> Vec<u8> {
    level(CATALOG, project, inc)
}

/// `m applied 0x00 P inc` → `seq u64 BE ‖ time i64 BE`.
pub(crate) fn applied(project: u32, inc: BranchId) -> Vec<u8> {
    let mut k = vec![META];
    k.extend_from_slice(b"applied\0");
    k.extend_from_slice(&project.to_be_bytes());
    k.extend_from_slice(&inc.0.to_be_bytes());
    k
}

/// `m project 0x00 name` → `P u32 BE`.
pub(crate) fn project(name: &str) -> Vec<u8> {
    let mut k = vec![META];
    k.extend_from_slice(b"project\0");
    k.extend_from_slice(name.as_bytes());
    k
}

/// `m next` → the counters (`Counters::encode`).
pub(crate) fn next() -> Vec<u8> {
    let mut k = vec![META];
    k.extend_from_slice(b"next");
    k
}

/// `m format` → the store format this binary writes.
pub(crate) fn format() -> Vec<u8> {
    let mut k = vec![META];
    k.extend_from_slice(b"format");
    k
}

/// The smallest key above every key starting with `prefix` (`None` when
/// `prefix` is all `0xff`, which no prefix here is).
pub(crate) fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut k = prefix.to_vec();
    while let Some(last) = k.pop() {
        if last < 0xff {
            k.push(last + 1);
            return Some(k);
        }
    }
    None
}

/// The largest possible key of `prefix ‖ stored(item)` (any seq): resuming
/// after `item` starts strictly above it.
pub(crate) fn after_item(prefix: &[u8], item: &[u8]) -> Vec<u8> {
    let item = stored_item(item);
    let mut k = Vec::with_capacity(prefix.len() + item.len() + SEQ_LEN);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&item);
    k.extend_from_slice(&[0xff; SEQ_LEN]);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idkey::IdKey;
    use crate::indexkey::IndexKey;
    use bson::{Bson, doc, oid::ObjectId};
    use proptest::prelude::*;

    #[test]
    fn seqs_sort_newest_first_and_round_trip() {
        let seqs = [0u64, 1, 2, 255, 256, 1 << 32, u64::MAX - 1, u64::MAX];
        for w in seqs.windows(2) {
            assert!(not_seq(Seq(w[0])) > not_seq(Seq(w[1])), "{w:?}");
        }
        for s in seqs {
            let k = versioned(b"dPPPPIIIIIIII", b"item", Seq(s));
            assert_eq!(seq_of(&k), Some(Seq(s)));
        }
        assert_eq!(seq_of(b"short"), None);
    }

    #[test]
    fn integers_order_numerically() {
        let incs = [0u64, 1, 255, 256, 65_536, u64::MAX];
        for w in incs.windows(2) {
            assert!(level(DOCS, 7, BranchId(w[0])) < level(DOCS, 7, BranchId(w[1])));
        }
        let colls = [0u32, 1, 255, 256, u32::MAX];
        for w in colls.windows(2) {
            assert!(docs(1, BranchId(1), w[0]) < docs(1, BranchId(1), w[1]));
        }
        assert!(docs(1, BranchId(u64::MAX), 0) < docs(2, BranchId(0), 0));
    }

    #[test]
    fn namespaces_round_trip_in_order_and_prefix_free() {
        let names = [
            ("", ""),
            ("a", ""),
            ("a", "b"),
            ("a", "b\0"),
            ("a", "bc"),
            ("a\0", ""),
            ("ab", "a"),
            ("b", "a"),
        ];
        let enc: Vec<Vec<u8>> = names
            .iter()
            .map(|(d, c)| namespace(&Namespace::new(*d, *c)))
            .collect();
        for (i, (d, c)) in names.iter().enumerate() {
            assert_eq!(namespace_from(&enc[i]), Some(Namespace::new(*d, *c)));
            for (j, other) in enc.iter().enumerate() {
                if i != j {
                    assert!(
                        !other.starts_with(&enc[i]),
                        "{:?} prefixes {:?}",
                        names[i],
                        names[j]
                    );
                }
            }
        }
        for w in enc.windows(2) {
            assert!(w[0] < w[1]);
        }
        for bad in [
            &b"a"[..],
            b"a\0\x01",
            b"a\0\0",
            b"a\0\0b\0\0c\0\0",
            b"\xff\0\0\0\0",
        ] {
            assert_eq!(namespace_from(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn successor_bounds_a_prefix() {
        assert_eq!(successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
        let p = docs(1, BranchId(u64::MAX), u32::MAX);
        let end = successor(&p).unwrap();
        assert!(versioned(&p, &[0xff; 40], Seq(0)) < end);
    }

    #[test]
    fn long_items_keep_order_and_prefix_freedom() {
        let id = |s: String| IdKey::from_bson(&Bson::String(s)).as_bytes().to_vec();
        let items = [
            id("a".repeat(10)),
            id("a".repeat(INLINE_ITEM)),
            id("a".repeat(INLINE_ITEM + 5)),
            id(format!("{}b", "a".repeat(INLINE_ITEM + 5))),
            id("b".repeat(INLINE_ITEM * 2)),
            id("c".to_string()),
        ];
        let stored: Vec<Vec<u8>> = items.iter().map(|i| stored_item(i).to_vec()).collect();
        for (i, s) in stored.iter().enumerate() {
            assert!(s.len() + 29 <= MAX_KEY, "fits a key");
            assert_eq!(is_long(s), items[i].len() > INLINE_ITEM);
            assert_eq!(stored_item(&items[i]), stored_item(&items[i].clone()));
            for (j, t) in stored.iter().enumerate() {
                if i != j {
                    assert!(!t.starts_with(s), "{i} prefixes {j}");
                    // Order is kept except between long items sharing
                    // their inline bytes (1, 2 and 3 here).
                    let twins = is_long(s)
                        && is_long(t)
                        && items[i][..INLINE_ITEM] == items[j][..INLINE_ITEM];
                    assert_eq!(twins, (1..=3).contains(&i) && (1..=3).contains(&j));
                    if !twins {
                        assert_eq!(s.cmp(t), items[i].cmp(&items[j]), "{i} vs {j}");
                    }
                }
            }
        }
        assert_eq!(stored_bound(&items[4]).len(), INLINE_ITEM);
        assert!(stored[4].starts_with(stored_bound(&items[4])));
    }

    fn id_strategy() -> impl Strategy<Value = Bson> {
        prop_oneof![
            any::<i32>().prop_map(Bson::Int32),
            any::<i64>().prop_map(Bson::Int64),
            any::<f64>()
                .prop_filter("nan", |f| !f.is_nan())
                .prop_map(Bson::Double),
            "[a-c\\x00]{0,4}".prop_map(Bson::String),
            any::<[u8; 12]>().prop_map(|b| Bson::ObjectId(ObjectId::from_bytes(b))),
            (any::<i32>(), "[a-b]{0,2}").prop_map(|(n, s)| Bson::Document(doc! {"n": n, "s": s})),
            prop::collection::vec(any::<i16>(), 0..3)
                .prop_map(|v| Bson::Array(v.into_iter().map(|n| Bson::Int32(n.into())).collect())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

        /// Versioned document keys order by `IdKey` first, then newest
        /// first, and one id's key prefix never selects another id's versions.
        #[test]
        fn document_keys_order_by_id_then_newest(a in id_strategy(), b in id_strategy(), sa in any::<u64>(), sb in any::<u64>()) {
            let p = docs(3, BranchId(9), 4);
            let (ka, kb) = (IdKey::from_bson(&a), IdKey::from_bson(&b));
            let (va, vb) = (versioned(&p, ka.as_bytes(), Seq(sa)), versioned(&p, kb.as_bytes(), Seq(sb)));
            match ka.cmp(&kb) {
                std::cmp::Ordering::Equal => prop_assert_eq!(va.cmp(&vb), sb.cmp(&sa)),
                o => {
                    prop_assert_eq!(va.cmp(&vb), o);
                    let mut pa = p.clone();
                    pa.extend_from_slice(ka.as_bytes());
                    prop_assert!(!vb.starts_with(&pa));
                    // Resuming after `a` skips all of a's versions and none of b's.
                    prop_assert_eq!(after_item(&p, ka.as_bytes()) < vb, o == std::cmp::Ordering::Less);
                }
            }
        }

        /// Index entry items (`IndexKey ‖ IdKey`) order by key, then `_id`.
        #[test]
        fn index_items_order_by_key_then_id(k1 in id_strategy(), k2 in id_strategy(), a in id_strategy(), b in id_strategy()) {
            let item = |k: &Bson, id: &Bson| {
                let mut v = IndexKey::from_values(std::slice::from_ref(k)).as_bytes().to_vec();
                v.extend_from_slice(IdKey::from_bson(id).as_bytes());
                v
            };
            let want = (IndexKey::from_values(std::slice::from_ref(&k1)), IdKey::from_bson(&a))
                .cmp(&(IndexKey::from_values(std::slice::from_ref(&k2)), IdKey::from_bson(&b)));
            prop_assert_eq!(item(&k1, &a).cmp(&item(&k2, &b)), want);
        }
    }
}
