//! The log behind a storage trait. A store keeps records and their
//! uniqueness; it knows nothing of branch lineage or materialized state.
//!
//! Contract every store keeps (the engine relies on each):
//! - `append_commit` is durable when it returns `Ok`, and refuses a second
//!   commit with the same `(project, branch, seq)` with `WalError::Conflict`,
//!   whatever handle or process appended the first. Same for
//!   `append_catalog` and `(project, seq)` with `CatalogConflict`.
//! - A commit is one unit, whether it is one record or chunk records and
//!   the commit record naming them (`record::EncodedCommit`): readers and
//!   tailers see all of it or none of it; chunks never become visible
//!   without their commit record, and a loser's or a dead writer's chunks
//!   are never read and are removed by the store itself.
//! - Reads see every append acknowledged before the read started.
//! - Times are not checked by the store; the engine appends a branch's
//!   commits with nondecreasing times in seq order, and `commit_at_or_before`
//!   may rely on that.

use crate::error::Result;
use crate::lease::WriterLease;
use crate::record::{CatalogRecord, Commit, EncodedCommit, ProjectRecord};
use crate::snapshot::SnapshotStream;
use crate::types::{BranchId, CommitInfo, CommitTime, Seq};
use std::future::Future;
use std::pin::Pin;

pub mod embedded;
pub mod mongo;

/// The future every store method returns (boxed: the trait is used as `dyn`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A page of [`LogStore::read_commits`] ends once its commits' bodies reach
/// this many bytes (after at least one commit), whatever its limit: a page
/// is held whole while it is folded, and commits may be hundreds of MB.
pub const PAGE_BYTES: u64 = 64 << 20;

/// Commits read in one page, ascending by seq.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommitPage {
    pub commits: Vec<Commit>,
    /// More commits may follow in the range: the page stopped at its limit
    /// or at [`PAGE_BYTES`]. False only when the range was read to its end.
    pub more: bool,
}

impl std::ops::Deref for CommitPage {
    type Target = [Commit];
    fn deref(&self) -> &[Commit] {
        &self.commits
    }
}

impl IntoIterator for CommitPage {
    type Item = Commit;
    type IntoIter = std::vec::IntoIter<Commit>;
    fn into_iter(self) -> Self::IntoIter {
        self.commits.into_iter()
    }
}

/// What the log holds for one branch incarnation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub first: Option<CommitInfo>,
    pub last: Option<CommitInfo>,
    pub commits: u64,
    /// Encoded size of the commits' bodies (ops and pre-images).
    pub bytes: u64,
}

pub trait LogStore: Send + Sync {
    /// A human-readable name for logs and errors ("embedded store at /data").
    fn describe(&self) -> String;

    /// Whether the store can take appends now: `Ok` when it is reachable
    /// and not poisoned. For readiness checks; cheap (one round trip at most).
    fn health(&self) -> StoreFuture<'_, ()>;

    /// Inserts the project record unless one exists; returns the stored one.
    fn ensure_project<'a>(&'a self, project: &'a ProjectRecord) -> StoreFuture<'a, ProjectRecord>;

    /// Appends one commit durably (its chunk records first, if it has
    /// them); `Conflict` when `(branch, seq)` exists.
    fn append_commit<'a>(
        &'a self,
        project: &'a str,
        commit: &'a EncodedCommit,
    ) -> StoreFuture<'a, ()>;

    /// Commits of `branch` with `after < seq <= upto`, ascending, at most
    /// `limit` and about [`PAGE_BYTES`] of bodies (at least one commit when
    /// any is in range), their bodies reassembled. Pre-images are left out
    /// (replay never reads them; they stay in the log).
    fn read_commits<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
    ) -> StoreFuture<'a, CommitPage>;

    /// [`read_commits`](Self::read_commits) with each op's pre-image
    /// (what a document was before the op): what a diff made from the log
    /// reads (`Wal::reset_branch`'s preview), never replay.
    fn read_commits_with_pre_images<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
    ) -> StoreFuture<'a, CommitPage>;

    /// Seq and time of commit `seq` of `branch`, if it exists (its body is
    /// not read).
    fn commit_info<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        seq: Seq,
    ) -> StoreFuture<'a, Option<CommitInfo>>;

    /// The newest commit of `branch` with `time <= at`.
    fn commit_at_or_before<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        at: CommitTime,
    ) -> StoreFuture<'a, Option<CommitInfo>>;

    fn log_stats<'a>(&'a self, project: &'a str, branch: BranchId) -> StoreFuture<'a, LogStats>;

    /// Appends catalog records of consecutive seqs durably, in order, and
    /// answers how many were accepted (a prefix: the record after them
    /// found its seq taken); `CatalogConflict` when the first one's seq
    /// exists, so at least one is accepted on `Ok`.
    fn append_catalog<'a>(
        &'a self,
        project: &'a str,
        records: &'a [CatalogRecord],
    ) -> StoreFuture<'a, usize>;

    /// Catalog records with `seq > after`, ascending.
    fn read_catalog<'a>(
        &'a self,
        project: &'a str,
        after: Seq,
    ) -> StoreFuture<'a, Vec<CatalogRecord>>;

    /// Stores a snapshot as its pieces arrive (one at the same point is
    /// kept: they are equal), visible to `latest_snapshot` only once the
    /// last piece is stored; returns its length in bytes. A snapshot is as
    /// large as the state: a store must not gather it in memory.
    fn put_snapshot<'a>(
        &'a self,
        project: &'a str,
        snapshot: SnapshotStream,
    ) -> StoreFuture<'a, u64>;

    /// The newest snapshot of `branch` with `after < seq <= upto`, read in
    /// pieces as the decoder takes them (never gathered in memory). A
    /// piece that cannot be read fails the stream; the caller then
    /// replays instead.
    fn latest_snapshot<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
    ) -> StoreFuture<'a, Option<SnapshotStream>>;

    /// The head this store has published for `branch`: every commit whose
    /// append was acknowledged has a seq at or below it (`append_commit`
    /// publishes before it returns). A reader that catches up to it sees
    /// every write acknowledged before it asked, without scanning the log
    /// for more; a commit above it (landed, never acknowledged: its writer
    /// died between the two) stays invisible until a writer's catch-up
    /// reads past it and publishes it. `None`: this store keeps no such
    /// record (one process owns it) or has none yet for `branch`; a
    /// catch-up then reads to the end of the log.
    fn published_head<'a>(
        &'a self,
        _project: &'a str,
        _branch: BranchId,
    ) -> StoreFuture<'a, Option<Seq>> {
        Box::pin(async { Ok(None) })
    }

    /// Publishes `seq` as `branch`'s head, unless a newer one is.
    fn publish_head<'a>(
        &'a self,
        _project: &'a str,
        _branch: BranchId,
        _seq: Seq,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Whether several processes may append to this store at once (and so
    /// keep writer leases, see `lease`). An embedded store has one owner.
    fn is_shared(&self) -> bool {
        false
    }

    /// The writer lease of branch `branch` (by name: a reset keeps its
    /// writer), if any.
    fn writer_lease<'a>(
        &'a self,
        _project: &'a str,
        _branch: &'a str,
    ) -> StoreFuture<'a, Option<WriterLease>> {
        Box::pin(async { Ok(None) })
    }

    /// Compare-and-swap of a writer lease: replaces the record equal to
    /// `expected` (`None`: no record) with `new` (`None`: removes it).
    /// `Ok(false)` when the stored record is not `expected`.
    fn swap_writer_lease<'a>(
        &'a self,
        _project: &'a str,
        _branch: &'a str,
        _expected: Option<&'a WriterLease>,
        _new: Option<&'a WriterLease>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async { Ok(false) })
    }
}
