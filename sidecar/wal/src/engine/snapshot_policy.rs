//! When the committer snapshots a branch's head (issue 17 item 5:
//! "snapshot policies follow bytes written, not a commit count").
//!
//! A snapshot is the whole state; the log since the last one is what a
//! process opening the branch replays. A fixed commit count ties neither
//! cost to anything that matters: under a one-client insert load a state of
//! 100 MB was written again every 1,000 commits (~0.6 s), and a branch of
//! a few large commits went unsnapshotted however much it logged. The rule
//! here keeps both costs proportional to the data: a new snapshot is due
//! once the log has grown, since the last one, by `percent`% of that
//! snapshot's size (at least `floor` bytes). So
//! - the bytes of snapshots written stay within `100 / percent` times the
//!   bytes logged, plus one snapshot (at 100%: write amplification ≤ 2×);
//! - a replay from the newest snapshot reads at most about `percent`% of a
//!   snapshot's bytes of log (plus the commit in flight).
//!
//! A commit's cost is its body's bytes plus [`PER_COMMIT_COST`]: replaying
//! a commit has a fixed price (decode, apply, a seq check) that its bytes
//! do not show, and without it millions of tiny commits would never be due.
//!
//! What a process does not know it estimates downwards, so a snapshot comes
//! early rather than never: the size of the last snapshot is learnt when
//! one is written or loaded (a process that replayed from the base, or
//! started after a snapshot it has not read, uses `floor`), and the log
//! written before the process started is not counted (its replay was paid
//! at open).

use crate::types::{BranchId, Seq};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The fixed cost of one commit in a replay, counted as this many bytes.
pub const PER_COMMIT_COST: u64 = 512;

/// When a branch's head is snapshotted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// After the log has grown by `percent`% of the last snapshot's bytes,
    /// and by at least `floor` bytes (the default: 100%, 4 MiB).
    LogBytes { floor: u64, percent: u64 },
    /// At every seq that is a multiple of this (tests exercising snapshots
    /// at known points).
    EveryCommits(u64),
    /// Never (benchmarks of the log alone).
    Never,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy::LogBytes {
            floor: 4 << 20,
            percent: 100,
        }
    }
}

/// What one incarnation has logged since its last snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Debt {
    /// Commit costs logged by this process since the last snapshot began.
    logged: u64,
    /// The last snapshot's bytes, once known.
    last_snapshot: Option<u64>,
}

/// The debts of every incarnation this handle commits to; shared with the
/// snapshot tasks, which report the size they wrote.
#[derive(Clone, Debug, Default)]
pub(crate) struct SnapshotDebts(Arc<Mutex<HashMap<BranchId, Debt>>>);

impl SnapshotDebts {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<BranchId, Debt>) -> T) -> T {
        // A poisoned map only holds counters: carry on with them.
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map)
    }

    /// Counts a commit of `body_bytes` at `seq` and says whether a snapshot
    /// of the state it leaves is due under `policy`. The commits stay owed
    /// until [`started`](Self::started): a snapshot that could not start
    /// (one is still being written) is due again at the next commit.
    pub(crate) fn commit(
        &self,
        policy: SnapshotPolicy,
        id: BranchId,
        seq: Seq,
        body_bytes: usize,
    ) -> bool {
        match policy {
            SnapshotPolicy::Never => false,
            SnapshotPolicy::EveryCommits(every) => every > 0 && seq.0.is_multiple_of(every),
            SnapshotPolicy::LogBytes { floor, percent } => self.with(|map| {
                let debt = map.entry(id).or_default();
                let cost = (body_bytes as u64).saturating_add(PER_COMMIT_COST);
                debt.logged = debt.logged.saturating_add(cost);
                let threshold = debt
                    .last_snapshot
                    .map_or(0, |bytes| bytes.saturating_mul(percent) / 100)
                    .max(floor);
                debt.logged >= threshold
            }),
        }
    }

    /// A snapshot of `id` began: the count starts again (commits made while
    /// it is written count towards the next one). One that then fails is
    /// only a longer replay; the next is due after as many bytes again.
    pub(crate) fn started(&self, id: BranchId) {
        self.with(|map| map.entry(id).or_default().logged = 0);
    }

    /// A snapshot of `bytes` was written or read for `id`: the size the
    /// next threshold follows.
    pub(crate) fn snapshot_size(&self, id: BranchId, bytes: u64) {
        self.with(|map| map.entry(id).or_default().last_snapshot = Some(bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: BranchId = BranchId(7);

    fn commits_until_due(debts: &SnapshotDebts, policy: SnapshotPolicy, body: usize) -> u64 {
        let mut n = 0;
        loop {
            n += 1;
            if debts.commit(policy, ID, Seq(n), body) {
                debts.started(ID);
                return n;
            }
            assert!(n < 10_000_000, "never due");
        }
    }

    #[test]
    fn due_after_the_floor_then_after_the_last_snapshots_size() {
        let policy = SnapshotPolicy::LogBytes {
            floor: 64 << 10,
            percent: 100,
        };
        let debts = SnapshotDebts::default();
        // 1 KiB bodies cost 1.5 KiB each: the 64 KiB floor takes 43.
        assert_eq!(commits_until_due(&debts, policy, 1024), 43);
        // A 3 MiB snapshot: the next is due after 3 MiB of log.
        debts.snapshot_size(ID, 3 << 20);
        assert_eq!(commits_until_due(&debts, policy, 1024), 2048);
        // Half as often at 200%.
        let policy = SnapshotPolicy::LogBytes {
            floor: 64 << 10,
            percent: 200,
        };
        assert_eq!(commits_until_due(&debts, policy, 1024), 4096);
        // A smaller snapshot brings the threshold down, never under the floor.
        debts.snapshot_size(ID, 1);
        assert_eq!(commits_until_due(&debts, policy, 1024), 43);
    }

    #[test]
    fn tiny_commits_are_due_too_and_nothing_overflows() {
        let policy = SnapshotPolicy::LogBytes {
            floor: 4 << 20,
            percent: 100,
        };
        let debts = SnapshotDebts::default();
        // Empty bodies still cost PER_COMMIT_COST each.
        assert_eq!(commits_until_due(&debts, policy, 0), 8192);
        debts.snapshot_size(ID, u64::MAX);
        let huge = SnapshotPolicy::LogBytes {
            floor: u64::MAX,
            percent: u64::MAX,
        };
        assert!(!debts.commit(huge, ID, Seq(1), 1 << 20));
        assert!(debts.commit(huge, ID, Seq(2), usize::MAX));
    }

    #[test]
    fn owed_commits_stay_owed_until_a_snapshot_starts() {
        let policy = SnapshotPolicy::LogBytes {
            floor: 4096,
            percent: 100,
        };
        let debts = SnapshotDebts::default();
        assert!(debts.commit(policy, ID, Seq(1), 8192));
        // Not started (one in flight): the next commit is due again.
        assert!(debts.commit(policy, ID, Seq(2), 0));
        debts.started(ID);
        assert!(!debts.commit(policy, ID, Seq(3), 0));
        // Other branches are counted apart.
        assert!(!debts.commit(policy, BranchId(8), Seq(1), 0));
    }

    #[test]
    fn the_other_policies() {
        let debts = SnapshotDebts::default();
        let every = SnapshotPolicy::EveryCommits(3);
        let due: Vec<u64> = (1..=9)
            .filter(|&s| debts.commit(every, ID, Seq(s), 1 << 30))
            .collect();
        assert_eq!(due, [3, 6, 9]);
        assert!(!debts.commit(SnapshotPolicy::EveryCommits(0), ID, Seq(0), 0));
        assert!(!debts.commit(SnapshotPolicy::Never, ID, Seq(1), usize::MAX));
    }
}
