//! What the engine reports while it runs, for the embedding server's
//! metrics and logs. Called on the engine's own tasks: an observer must be
//! cheap and must not block.

use std::fmt;
use std::sync::Arc;

pub trait WalObserver: Send + Sync {
    /// An append to `branch` lost to another writer's commit at the same
    /// seq; the write catches up and tries again (`attempt` counts from 1).
    fn append_conflict(&self, _branch: &str, _attempt: u32) {}

    /// This process appended a commit to `branch` carrying `writes` writes.
    fn committed(&self, _branch: &str, _writes: usize) {}

    /// A commit another process wrote was folded into this process's head
    /// of `branch`, `age_ms` after its commit time (by this process's clock:
    /// with clocks of different machines the figure includes their skew).
    fn foreign_commit(&self, _branch: &str, _age_ms: i64) {}

    /// A read of a past point of `branch` was served: from the
    /// materialized store's view (`stored`) or by replaying the log into
    /// memory.
    fn past_read(&self, _branch: &str, _stored: bool) {}
}

impl fmt::Debug for dyn WalObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WalObserver")
    }
}

/// Reports nothing.
pub struct Unobserved;

impl WalObserver for Unobserved {}

pub fn unobserved() -> Arc<dyn WalObserver> {
    Arc::new(Unobserved)
}
