//! Own-key filters: per incarnation, an in-memory Bloom filter of the
//! `(collection number, IdKey)` pairs it ever wrote a version of, so a
//! point read skips, without a seek, a level that never wrote the key
//! (DESIGN.md, "Flattening deep chains", item 1).
//!
//! Invariant (what makes skipping safe): **a filter never says "never
//! written" of a pair its incarnation has a `d` version of.** It holds
//! because
//! - `apply` notes a commit's pairs (its `x` keys, the same batch's record of
//!   every `d` key it writes) *before* the batch is committed, under the
//!   slot's write lock, after loading the slot if needed; a batch that then
//!   fails leaves only false positives;
//! - a slot is loaded lazily, the first time a read or an apply uses the
//!   incarnation, by scanning its `x` space under the slot's write lock: every
//!   batch committed before that is in the scan, and no batch of the
//!   incarnation can be committed during it (its apply waits for the lock to
//!   note its pairs first);
//! - nothing is persisted: after a reopen or a crash the `x` space, written
//!   atomically with the `d` keys it names, is the source.
//!
//! Memory: 10 bits per key, 7 probes (a full stage answers "maybe" for an
//! unwritten pair ~0.8% of the time). A filter grows by stages (each sized
//! for as many keys as the filter already holds, so ≤ log2 stages); a load
//! sizes one stage for the keys found plus a quarter. All filters of a store
//! share a cap (`MaterializedOptions::filter_bytes`); a filter that would
//! pass it becomes *saturated*: its bits are dropped and it answers "maybe"
//! for everything (reads then seek that level, as without filters).

use super::Kv;
use super::keys::{self, CHANGES};
use crate::error::Result;
use crate::types::BranchId;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Bits per key of a stage.
pub(crate) const BITS_PER_KEY: u64 = 10;
/// Probes per key (≈ ln 2 × bits per key).
const PROBES: u64 = 7;
/// The smallest stage (keys): a new branch's filter costs 1.25 KiB.
const MIN_STAGE: u64 = 1024;

/// One Bloom filter of fixed capacity.
struct Stage {
    bits: Vec<u64>,
    capacity: u64,
    len: u64,
}

impl Stage {
    fn new(capacity: u64) -> Stage {
        let words = (capacity * BITS_PER_KEY).div_ceil(64).max(1);
        Stage {
            bits: vec![0; words as usize],
            capacity,
            len: 0,
        }
    }

    fn bytes(&self) -> usize {
        self.bits.len() * 8
    }

    /// The probe positions of `h` (double hashing, Kirsch–Mitzenmacher).
    fn positions(&self, h: u64) -> impl Iterator<Item = usize> + use<> {
        let m = (self.bits.len() * 64) as u64;
        let (h1, h2) = (h, h.rotate_left(32) | 1);
        (0..PROBES).map(move |i| {
            let x = h1.wrapping_add(i.wrapping_mul(h2));
            // Multiply-shift range reduction: uniform in 0..m.
            ((u128::from(x) * u128::from(m)) >> 64) as usize
        })
    }

    fn insert(&mut self, h: u64) {
        for p in self.positions(h) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.len += 1;
    }

    fn may_hold(&self, h: u64) -> bool {
        self.positions(h)
            .all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }
}

/// One incarnation's filter.
enum Slot {
    /// Not built yet: the first use scans the `x` space.
    Unloaded,
    Loaded(Vec<Stage>),
    /// Over the memory cap: says "maybe" for every pair.
    Saturated,
}

/// One incarnation's filter, shared by its readers and its writer.
type SharedSlot = Arc<RwLock<Slot>>;

/// Every incarnation's filter in one store, and their shared memory cap.
pub(crate) struct Filters {
    enabled: AtomicBool,
    cap: usize,
    used: AtomicUsize,
    hasher: std::collections::hash_map::RandomState,
    /// By `(project, incarnation)`.
    slots: Mutex<HashMap<(u32, BranchId), SharedSlot>>,
}

/// Filter sizes, for benchmarks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Incarnations with a loaded filter.
    pub loaded: usize,
    /// Incarnations whose filter passed the cap.
    pub saturated: usize,
    /// Keys held by loaded filters (a key noted twice counts twice).
    pub keys: u64,
    /// Bytes of filter bits, against `cap`.
    pub bytes: usize,
    pub cap: usize,
}

impl Filters {
    pub(crate) fn new(cap: usize) -> Filters {
        Filters {
            enabled: AtomicBool::new(true),
            cap,
            used: AtomicUsize::new(0),
            hasher: Default::default(),
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// The pair's hash: computed once per read, probed at every level.
    pub(crate) fn hash(&self, coll: u32, id: &[u8]) -> u64 {
        self.hasher.hash_one((coll, id))
    }

    fn slot(&self, project: u32, inc: BranchId) -> SharedSlot {
        // A panic while holding the map left it whole (one insert).
        let mut map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((project, inc))
            .or_insert_with(|| Arc::new(RwLock::new(Slot::Unloaded)))
            .clone()
    }

    /// Whether incarnation `inc` may have written the document whose pair
    /// hashes to `h` (`self.hash`; `false`: it never did, skip its level).
    pub(crate) fn may_hold(&self, kv: &Kv, project: u32, inc: BranchId, h: u64) -> Result<bool> {
        if !self.enabled.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let slot = self.slot(project, inc);
        {
            let s = slot.read().unwrap_or_else(|p| p.into_inner());
            match &*s {
                Slot::Loaded(stages) => return Ok(stages.iter().any(|st| st.may_hold(h))),
                Slot::Saturated => return Ok(true),
                Slot::Unloaded => {}
            }
        }
        let mut s = slot.write().unwrap_or_else(|p| p.into_inner());
        self.load(kv, project, inc, &mut s)?;
        Ok(match &*s {
            Slot::Loaded(stages) => stages.iter().any(|st| st.may_hold(h)),
            _ => true,
        })
    }

    /// Notes the pairs a commit of `inc` writes: called by `apply` before
    /// its batch is committed (module invariant).
    pub(crate) fn note(
        &self,
        kv: &Kv,
        project: u32,
        inc: BranchId,
        pairs: impl Iterator<Item = (u32, Vec<u8>)>,
    ) -> Result<()> {
        let slot = self.slot(project, inc);
        let mut s = slot.write().unwrap_or_else(|p| p.into_inner());
        self.load(kv, project, inc, &mut s)?;
        for (coll, id) in pairs {
            let h = self.hash(coll, &id);
            self.insert(&mut s, h);
        }
        Ok(())
    }

    /// Builds an unloaded slot from the incarnation's `x` space.
    fn load(&self, kv: &Kv, project: u32, inc: BranchId, s: &mut Slot) -> Result<()> {
        if !matches!(s, Slot::Unloaded) {
            return Ok(());
        }
        let prefix = keys::level(CHANGES, project, inc);
        let mut hashes = Vec::new();
        for guard in kv.ks.prefix(&prefix) {
            let k = guard.key().map_err(|e| kv.error("own-key filter", e))?;
            // `x P inc seq coll IdKey`.
            let at = prefix.len() + 8;
            let Some(coll) = k.get(at..at + 4) else {
                return Err(kv.malformed(format!("change key of {} bytes", k.len())));
            };
            let coll = u32::from_be_bytes([coll[0], coll[1], coll[2], coll[3]]);
            hashes.push(self.hash(coll, &k[at + 4..]));
        }
        let n = hashes.len() as u64;
        *s = Slot::Loaded(Vec::new());
        if let Some(stage) = self.stage(MIN_STAGE.max(n + n / 4)) {
            *s = Slot::Loaded(vec![stage]);
            for h in hashes {
                self.insert(s, h);
            }
        } else {
            *s = Slot::Saturated;
        }
        Ok(())
    }

    /// A new stage, if the cap allows it.
    fn stage(&self, capacity: u64) -> Option<Stage> {
        let bytes = ((capacity * BITS_PER_KEY).div_ceil(64).max(1) * 8) as usize;
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let total = used.checked_add(bytes).filter(|t| *t <= self.cap)?;
            match self
                .used
                .compare_exchange(used, total, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(Stage::new(capacity)),
                Err(now) => used = now,
            }
        }
    }

    fn insert(&self, s: &mut Slot, h: u64) {
        let Slot::Loaded(stages) = s else { return };
        if stages.last().is_none_or(|st| st.len >= st.capacity) {
            let held: u64 = stages.iter().map(|st| st.len).sum();
            match self.stage(MIN_STAGE.max(held)) {
                Some(st) => stages.push(st),
                None => {
                    let freed: usize = stages.iter().map(Stage::bytes).sum();
                    self.used.fetch_sub(freed, Ordering::Relaxed);
                    *s = Slot::Saturated;
                    return;
                }
            }
        }
        if let Some(st) = stages.last_mut() {
            st.insert(h);
        }
    }

    pub(crate) fn stats(&self) -> FilterStats {
        let map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = FilterStats {
            bytes: self.used.load(Ordering::Relaxed),
            cap: self.cap,
            ..FilterStats::default()
        };
        for slot in map.values() {
            match &*slot.read().unwrap_or_else(|p| p.into_inner()) {
                Slot::Loaded(stages) => {
                    out.loaded += 1;
                    out.keys += stages.iter().map(|st| st.len).sum::<u64>();
                }
                Slot::Saturated => out.saturated += 1,
                Slot::Unloaded => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_never_forgets_and_rarely_lies() {
        let mut st = Stage::new(10_000);
        let f = Filters::new(1 << 20);
        for i in 0..10_000u32 {
            st.insert(f.hash(7, &i.to_be_bytes()));
        }
        for i in 0..10_000u32 {
            assert!(st.may_hold(f.hash(7, &i.to_be_bytes())));
        }
        let false_positives = (10_000..110_000u32)
            .filter(|i| st.may_hold(f.hash(7, &i.to_be_bytes())))
            .count();
        // 10 bits/key, 7 probes: ~0.82% expected.
        assert!(
            false_positives < 1_500,
            "{false_positives} of 100,000 unwritten keys said maybe"
        );
        // Another collection's same key is another pair.
        let other = (0..10_000u32)
            .filter(|i| st.may_hold(f.hash(8, &i.to_be_bytes())))
            .count();
        assert!(other < 150, "{other}");
    }

    #[test]
    fn stages_grow_and_the_cap_saturates() {
        let f = Filters::new(6 << 10);
        let mut s = Slot::Loaded(Vec::new());
        for i in 0..3_000u32 {
            f.insert(&mut s, f.hash(1, &i.to_be_bytes()));
        }
        let Slot::Loaded(stages) = &s else {
            panic!("under the cap")
        };
        assert_eq!(stages.len(), 3, "stages of 1,024, 1,024 and 2,048 keys");
        for i in 0..3_000u32 {
            assert!(
                stages
                    .iter()
                    .any(|st| st.may_hold(f.hash(1, &i.to_be_bytes())))
            );
        }
        // 1,280 + 1,280 + 2,560 bytes so far; a fourth (5,120) passes 6 KiB.
        for i in 3_000..5_000u32 {
            f.insert(&mut s, f.hash(1, &i.to_be_bytes()));
        }
        assert!(matches!(s, Slot::Saturated));
        assert_eq!(
            f.used.load(Ordering::Relaxed),
            0,
            "its bits were given back"
        );
    }
}
