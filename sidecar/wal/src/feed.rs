//! Commits from a faster source than the store: the branch's writer, which
//! has just appended them. A process that does not write a branch but reads
//! it (a sidecar forwarding its writes to the branch's writer) would
//! otherwise read back every commit from the store, which on some servers
//! costs as much as writing it (FerretDB's SQLite backend: one indexed
//! point read per commit, ~0.5 ms of its CPU each, sharing its lock with
//! the writer's inserts).
//!
//! A feed only speeds a catch-up up; the store stays the truth. Whatever
//! the feed gives is checked like a store page (branch, seq after seq, no
//! gap), and the catch-up then asks the store for anything after it, which
//! is one missing-key lookup when the feed was complete. So a feed that is
//! stale, partial, or wrong about a commit's seq can cost time, never a
//! commit.

use crate::types::{BranchId, Seq};
use bson::RawDocumentBuf;
use futures::future::BoxFuture;

pub trait CommitFeed: Send + Sync {
    /// Commit records (as `EncodedCommit::record` makes them, body inline)
    /// of incarnation `id` of branch `branch`, in order, from the one after
    /// `after`; `None` when this feed has nothing to offer for the branch.
    fn commits_after<'a>(
        &'a self,
        branch: &'a str,
        id: BranchId,
        after: Seq,
    ) -> BoxFuture<'a, Option<Vec<RawDocumentBuf>>>;

    /// Whether another process writes `branch` now, so that a write here
    /// that lost an append should not keep racing it: the engine fails it
    /// with `WalError::NotWriter` (nothing applied) and the caller sends it
    /// to that writer. Without this, writes queued here before the writer
    /// was known would starve behind its steady stream of commits.
    fn defer_to_writer(&self, _branch: &str) -> bool {
        false
    }
}

impl std::fmt::Debug for dyn CommitFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitFeed")
    }
}

/// Most commits and body bytes an engine keeps per branch to feed readers.
pub const RECENT_COMMITS: usize = 4096;
pub const RECENT_BYTES: usize = 32 << 20;
