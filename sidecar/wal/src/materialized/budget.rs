//! The store's disk bound (`MaterializedOptions::disk_bytes`): whether one
//! more batch may be written. In a pod the store lives on an `emptyDir`
//! whose `sizeLimit` gets the pod evicted when exceeded, and the store grows
//! with history, so it stops growing itself: at or above the bound it is
//! *full* and nothing more is applied. A full store is still a correct
//! prefix of the log (applied markers say how far), so the points it holds
//! are read from it and every other point is replayed from the log.
//!
//! Measuring walks the store's directory and sums the blocks allocated to
//! its files (what the kubelet counts; fjall's `disk_space` counts the
//! journal's sparse preallocation of 64 MiB): a `stat` per file, O(files),
//! so not free. It is taken at most every `MEASURE_EVERY`
//! batches or `MEASURE_AFTER`, whichever comes first; between two
//! measurements the bytes each batch wrote are added to the last one, and
//! an estimate at the bound is measured again before the store is called
//! full (a batch's logical bytes are not its bytes on disk: the estimate
//! only decides when to look).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Batches applied between two measurements at most.
const MEASURE_EVERY: u32 = 16;
/// Age after which a measurement is taken again before the next batch
/// (so a full store sees space given back by compaction).
const MEASURE_AFTER: Duration = Duration::from_secs(1);

/// The store's size on disk against its bound, as last measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskStatus {
    /// Bytes on disk at the last measurement.
    pub bytes: u64,
    /// `None`: unbounded.
    pub bound: Option<u64>,
    /// At or above the bound: nothing more is applied.
    pub full: bool,
}

pub(crate) struct DiskBudget {
    bound: Option<u64>,
    /// For the log line when the store fills.
    dir: Arc<PathBuf>,
    state: Mutex<Measured>,
}

struct Measured {
    bytes: u64,
    at: Instant,
    /// Batches and their logical bytes written since `at`.
    batches: u32,
    written: u64,
    full: bool,
}

impl DiskBudget {
    /// A budget of `bound` bytes (`None`: unbounded) over a store now
    /// `measured` bytes on disk.
    pub(crate) fn new(bound: Option<u64>, dir: Arc<PathBuf>, measured: Option<u64>) -> DiskBudget {
        let budget = DiskBudget {
            bound,
            dir,
            state: Mutex::new(Measured {
                bytes: 0,
                at: Instant::now(),
                batches: 0,
                written: 0,
                full: false,
            }),
        };
        budget.record(&mut budget.lock(), measured, Instant::now());
        budget
    }

    /// Whether one more batch may be written now; `measure` gives the
    /// store's bytes on disk when a measurement is due (`None`: it could
    /// not be taken, the estimate stands in for it).
    pub(crate) fn has_room(&self, measure: impl FnOnce() -> Option<u64>) -> bool {
        self.has_room_at(Instant::now(), measure)
    }

    fn has_room_at(&self, now: Instant, measure: impl FnOnce() -> Option<u64>) -> bool {
        let mut m = self.lock();
        let stale = m.batches >= MEASURE_EVERY || now.duration_since(m.at) >= MEASURE_AFTER;
        let estimate_at_bound = m.written > 0 && self.at_bound(m.bytes.saturating_add(m.written));
        if stale || estimate_at_bound {
            self.record(&mut m, measure(), now);
        }
        !m.full
    }

    /// A batch of `bytes` (keys and values) was written.
    pub(crate) fn written(&self, bytes: u64) {
        let mut m = self.lock();
        m.batches = m.batches.saturating_add(1);
        m.written = m.written.saturating_add(bytes);
    }

    pub(crate) fn status(&self) -> DiskStatus {
        let m = self.lock();
        DiskStatus {
            bytes: m.bytes,
            bound: self.bound,
            full: m.full,
        }
    }

    /// The rule: full at or above the bound, never without one.
    fn at_bound(&self, bytes: u64) -> bool {
        self.bound.is_some_and(|b| bytes >= b)
    }

    fn record(&self, m: &mut Measured, bytes: Option<u64>, now: Instant) {
        let bytes = bytes.unwrap_or(m.bytes.saturating_add(m.written));
        let full = self.at_bound(bytes);
        if full && !m.full {
            tracing::warn!(
                dir = %self.dir.display(),
                bytes,
                bound = self.bound.unwrap_or_default(),
                "materialized store is full (--cache-disk-bytes): nothing more is applied to it; past reads of points it does not hold replay the log"
            );
        } else if !full && m.full {
            tracing::info!(dir = %self.dir.display(), bytes, "materialized store is below its disk bound again: applying resumes");
        }
        *m = Measured {
            bytes,
            at: now,
            batches: 0,
            written: 0,
            full,
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Measured> {
        // Every update replaces whole fields: a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bound: Option<u64>, measured: u64) -> DiskBudget {
        DiskBudget::new(bound, Arc::new(PathBuf::from("/store")), Some(measured))
    }

    /// The time of the last measurement: a test's clock, never the wall's.
    fn measured_at(b: &DiskBudget) -> Instant {
        b.lock().at
    }

    #[test]
    fn full_at_or_above_the_bound_not_below() {
        assert!(!budget(Some(100), 99).status().full);
        assert!(budget(Some(100), 100).status().full);
        assert!(budget(Some(100), 101).status().full);
        assert!(!budget(None, u64::MAX).status().full, "unbounded");
        let b = budget(Some(100), 100);
        assert!(!b.has_room(|| Some(100)), "stays full at the bound");
        let later = measured_at(&b) + MEASURE_AFTER;
        assert!(
            b.has_room_at(later, || Some(99)),
            "room again once it shrank"
        );
    }

    #[test]
    fn measures_when_the_estimate_reaches_the_bound() {
        let b = budget(Some(100), 10);
        let now = measured_at(&b);
        b.written(50);
        assert!(
            b.has_room_at(now, || panic!("not due")),
            "estimate 60 < 100, 1 batch, fresh: no measurement"
        );
        b.written(40);
        // 10 + 90 reaches the bound: measured; the disk holds less.
        assert!(b.has_room_at(now, || Some(70)));
        assert_eq!(b.status().bytes, 70);
        b.written(30);
        assert!(!b.has_room_at(now, || Some(100)), "measured at the bound");
        assert_eq!(
            b.status(),
            DiskStatus {
                bytes: 100,
                bound: Some(100),
                full: true
            }
        );
    }

    #[test]
    fn measures_every_few_batches_and_when_old() {
        let b = budget(None, 0);
        let now = measured_at(&b);
        for _ in 0..MEASURE_EVERY {
            b.written(1);
        }
        let mut measured = false;
        b.has_room_at(now, || {
            measured = true;
            Some(5)
        });
        assert!(measured, "after MEASURE_EVERY batches");
        assert_eq!(b.status().bytes, 5);
        let mut measured = false;
        b.has_room_at(now + MEASURE_AFTER, || {
            measured = true;
            Some(6)
        });
        assert!(measured, "after MEASURE_AFTER");
        assert_eq!(b.status().bytes, 6);
        b.written(3);
        b.has_room_at(now + MEASURE_AFTER * 2, || None);
        assert_eq!(b.status().bytes, 9, "no measurement: the estimate stands");
    }
}
