//! Index shapes: what a planner needs to know about one index's keys at a
//! view (`state::IndexShape`: whether a document is multikey in it, whether
//! a key holds a Decimal128, how many entries it has), in O(levels), never
//! by a scan.
//!
//! Each incarnation keeps, per index, the running sums of its own commits'
//! effect: `s P inc coll index !seq` → `Counts` (multikey documents,
//! Decimal128 documents, entries), a version written by each commit that
//! changes one. `apply` takes a commit's change of a document against the
//! document its view saw (an ancestor's, when a child first changes it),
//! so a view's counts are exact: the sum over its levels of each level's
//! own sums at the level's bound, exactly as a view's documents are each
//! level's own versions up to its bound.
//!
//! Why exact counts rather than a conservative "was ever true on this
//! branch": they cost the same (one seek per level, one key per index a
//! commit touches) and keep a stored view's flags equal to the fold's,
//! which clears `multikey` when the last array goes; the planner then picks
//! the same plan at a past point as the head had there.

use super::Kv;
use super::keys;
use super::view::{Level, View};
use crate::error::Result;
use crate::indexkey::KeyShape;
use crate::state::IndexShape;
use crate::types::{BranchId, Seq};

/// One incarnation's own sums for one index (they may be negative: a child
/// deleting its parent's documents subtracts from what the parent counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    multikey: i64,
    decimal: i64,
    entries: i64,
}

const ENCODED_LEN: usize = 24;

impl Counts {
    /// Adds (`sign` 1) or takes away (`sign` -1) one document with `shape`
    /// and `entries` keys.
    pub(crate) fn count(&mut self, shape: KeyShape, entries: usize, sign: i64) {
        self.multikey += sign * i64::from(shape.multikey);
        self.decimal += sign * i64::from(shape.decimal);
        self.entries += sign * i64::try_from(entries).unwrap_or(i64::MAX);
    }

    pub(crate) fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    pub(crate) fn plus(self, other: Counts) -> Counts {
        Counts {
            multikey: self.multikey.saturating_add(other.multikey),
            decimal: self.decimal.saturating_add(other.decimal),
            entries: self.entries.saturating_add(other.entries),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENCODED_LEN);
        for n in [self.multikey, self.decimal, self.entries] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    fn decode(kv: &Kv, v: &[u8]) -> Result<Counts> {
        let n = |i: usize| {
            v.get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
        };
        match (v.len(), n(0), n(1), n(2)) {
            (ENCODED_LEN, Some(multikey), Some(decimal), Some(entries)) => Ok(Counts {
                multikey,
                decimal,
                entries,
            }),
            _ => Err(kv.malformed(format!("index shape value of {} bytes", v.len()))),
        }
    }
}

/// The key of `level`'s sums for index `index` of collection `coll` at `seq`.
pub(crate) fn key(project: u32, inc: BranchId, coll: u32, index: u32, seq: Seq) -> Vec<u8> {
    keys::versioned(&keys::shape(project, inc, coll, index), &[], seq)
}

/// `level`'s own sums for the index (zero when it never changed them).
pub(crate) fn own(kv: &Kv, project: u32, level: Level, coll: u32, index: u32) -> Result<Counts> {
    let p = keys::shape(project, level.inc, coll, index);
    // The newest version at or below the bound: `!seq` sorts newest first.
    let from = keys::versioned(&p, &[], level.bound);
    let to = keys::after_item(&p, &[]);
    match kv.ks.range(from..=to).next() {
        Some(guard) => {
            let v = guard.value().map_err(|e| kv.error("index shape", e))?;
            Counts::decode(kv, &v)
        }
        None => Ok(Counts::default()),
    }
}

/// The shape of index `index` of collection `coll` at `view`.
pub(crate) fn at(kv: &Kv, view: &View, coll: u32, index: u32) -> Result<IndexShape> {
    let mut sum = Counts::default();
    for level in view.levels.iter() {
        sum = sum.plus(own(kv, view.project, *level, coll, index)?);
    }
    Ok(IndexShape {
        multikey: sum.multikey > 0,
        decimal: sum.decimal > 0,
        entries: usize::try_from(sum.entries.max(0)).unwrap_or(usize::MAX),
    })
}
