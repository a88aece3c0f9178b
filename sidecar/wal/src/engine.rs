//! The `Wal` engine: branches over a `LogStore`, optimistic group-committed
//! writes, materialized heads, time travel, reset and diff.
//!
//! Path of a write: `Wal::write` queues the caller's `resolve` on the
//! branch's committer task (`committer`). The committer takes the queued
//! writes, locks the branch head, runs each `resolve` on the state left by
//! the previous one, and appends all their ops as one commit at
//! `head + 1`; while that append is being made durable it resolves the
//! writes arriving meanwhile into the next commit (pipelined group
//! commit). If another handle took the seq (`Conflict`), it catches up and
//! runs the resolvers again on the new state. Callers are answered after
//! the store acknowledged their commit as durable.
//!
//! This file holds the engine's options, its shared state (`Inner`, a
//! branch's `Head`) and the rule for commit times; each other idea has its
//! own module: `writes` (the write API and queued writes), `committer`
//! (pipelined group commit), `heads` (loading and catching up a head),
//! `history` (states and times at past points, diffs), `branches` (branch
//! operations and the catalog in memory), `catalog_appends` and
//! `snapshot_policy`.
//!
//! Invariants kept here:
//! - A branch incarnation's commits are `start+1, start+2, …` with no holes:
//!   every append is at `head + 1` of the local head under the head lock, and
//!   the store refuses duplicates; so an accepted commit sits on the true
//!   head even when the local head was stale (writes skip the catch-up read
//!   until a conflict says another handle wrote: `open_on_head`).
//! - Commit times are strictly increasing along a branch's history:
//!   time = max(clock, previous time + 1 ms, incarnation floor + 1 ms)
//!   (`commit_time`), so `ReadPoint::Time(t)` of a commit's time names
//!   exactly that commit.
//! - Nothing is appended to a sealed incarnation: a seal is itself the
//!   commit at `head + 1`, so a writer that has not seen it conflicts,
//!   catches up, sees it and moves to the branch's new incarnation (or fails
//!   if it was deleted).
//! - Lock order: a branch's head lock, then ancestors' (never the reverse);
//!   the catalog lock is never held while waiting for a head lock.

use crate::catalog::{Base, Catalog, Incarnation};
use crate::diff::Diff;
use crate::error::{Result, WalError};
use crate::lease::WriterLease;
use crate::observer::WalObserver;
use crate::record::{CatalogEvent, EncodedCommit, ProjectRecord, Seal};
use crate::state::BranchState;
use crate::store::LogStore;
use crate::types::{BranchId, BranchName, CommitInfo, CommitTime, ProjectName, Seq};
use crate::unique::IndexFilter;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::mpsc;

mod branches;
mod catalog_appends;
mod committer;
mod heads;
mod history;
mod snapshot_policy;
mod writes;

use snapshot_policy::SnapshotDebts;
pub use snapshot_policy::{PER_COMMIT_COST, SnapshotPolicy};
use writes::Pending;
pub use writes::RetryableOutcome;
pub(crate) use writes::check_op;

/// Commits read from the store per request while folding.
const PAGE: usize = 1000;
/// In-memory checkpoints kept (states at snapshot points; cheap, shared).
const CHECKPOINTS: usize = 64;

/// The clock commit times come from (injectable for tests).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> CommitTime + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(CommitTime::now))
    }
    pub fn from_fn(f: impl Fn() -> CommitTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }
    pub fn now(&self) -> CommitTime {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

#[derive(Clone, Debug)]
pub struct WalOptions {
    /// When a branch's head is snapshotted (`engine::snapshot_policy`).
    pub snapshot_policy: SnapshotPolicy,
    /// Recorded in every commit this handle writes.
    pub actor: String,
    /// Most writes packed into one commit.
    pub max_batch: usize,
    /// Most bytes one write may log (its documents and pre-images, see
    /// `Transaction::logged_bytes`): the bound on one commit's memory. A
    /// write over it fails alone with `CommitTooLarge`. Any size of store
    /// record is fine (large commits take several records), so this is a
    /// memory budget, not a format limit.
    pub max_commit_bytes: usize,
    /// Group commit stops adding writes to a commit once it logs this many
    /// bytes (the rest go in the next commit): large writes commit alone,
    /// small ones together.
    pub max_group_bytes: usize,
    /// Conflicting appends before a write gives up.
    pub max_conflict_retries: u32,
    pub clock: Clock,
    /// Membership of partial indexes for the unique-key rule (the query
    /// engine's match; see `unique`).
    pub index_filter: Arc<dyn IndexFilter>,
    /// Told of lost appends and of other processes' commits (metrics).
    pub observer: Arc<dyn WalObserver>,
    /// How stale a head read may be: a read of a branch's head uses the
    /// head in memory when it was caught up with the store at most this
    /// long ago, else it catches up first (zero: every read catches up).
    /// Writes of this process are always in its head at once; other
    /// processes' commits show within this bound (see `Wal::sync`).
    pub read_staleness: std::time::Duration,
    /// Where a catch-up first asks for new commits (the branch's writer,
    /// see `feed`); the store confirms the end either way.
    pub feed: Option<Arc<dyn crate::feed::CommitFeed>>,
    /// The process's materialized store (`materialized`), kept caught up
    /// with this project's log for `Wal::materialized_view` (see
    /// `materializer`). `None`: views are refused.
    pub materialized: Option<Arc<crate::materialized::Materialized>>,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            snapshot_policy: SnapshotPolicy::default(),
            actor: "argon".into(),
            max_batch: 512,
            max_commit_bytes: 512 << 20,
            max_group_bytes: 16 << 20,
            max_conflict_retries: 10_000,
            clock: Clock::system(),
            index_filter: crate::unique::every_document(),
            observer: crate::observer::unobserved(),
            read_staleness: std::time::Duration::ZERO,
            feed: None,
            materialized: None,
        }
    }
}

/// One step of a branch's ancestry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineageEntry {
    pub name: BranchName,
    pub id: BranchId,
    /// The point of this ancestor the branch below it forked from.
    pub fork_seq: Seq,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchInfo {
    pub name: BranchName,
    /// The current incarnation (a reset starts a new one).
    pub id: BranchId,
    pub parent: Option<BranchName>,
    pub fork_seq: Option<Seq>,
    /// Own commits are numbered from `start_seq + 1` (non-zero after a reset).
    pub start_seq: Seq,
    pub head_seq: Seq,
    pub created: CommitTime,
    pub head_time: CommitTime,
    pub deleted: bool,
    /// Parent, grandparent, … up to `main`.
    pub lineage: Vec<LineageEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogInfo {
    pub branch: BranchName,
    pub id: BranchId,
    /// Own commits of the current incarnation.
    pub first: Option<CommitInfo>,
    pub last: Option<CommitInfo>,
    pub commits: u64,
    pub bytes: u64,
    pub start_seq: Seq,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ResetOutcome {
    pub branch: BranchName,
    /// The head before the reset.
    pub old_head: CommitInfo,
    pub target: Seq,
    /// From the old head to the target: what the reset changes.
    pub preview: Diff,
    /// False for a dry run.
    pub applied: bool,
    /// The request had been applied before (`reset_branch_once`): nothing
    /// changed now, and `preview` is empty.
    pub already_applied: bool,
    pub backup: Option<BranchInfo>,
}

type Queue = mpsc::UnboundedSender<Box<dyn Pending>>;

// ---- engine state -----------------------------------------------------------

/// How far a catch-up reads the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// To the store's published head (`LogStore::published_head`): every
    /// acknowledged write, for a read.
    Published,
    /// To the end of the log, for a write about to append after it (a
    /// commit past the published head is published then).
    End,
}

/// A branch incarnation's head, guarded by an async lock held across the
/// store round trips of catching up and appending.
#[derive(Default)]
struct Head {
    state: Option<BranchState>,
    sealed: Option<(Seal, CommitInfo)>,
    /// The state is known to match the store: set by a catch-up and by an
    /// acknowledged append; false for a head this process has not caught up
    /// yet and after an append whose outcome is unknown (a lost connection:
    /// the commit may have landed). An unverified head is caught up before
    /// the next commit is resolved on it, never assumed.
    verified: bool,
}

struct Inner {
    store: Arc<dyn LogStore>,
    project: ProjectName,
    created: CommitTime,
    options: WalOptions,
    catalog: tokio::sync::Mutex<Catalog>,
    /// When the newest refresh of the catalog that completed *started* (or
    /// this process's newest accepted catalog append was sent): the catalog
    /// holds every record the store had before that instant. Written only
    /// with the catalog lock held.
    catalog_fresh: Mutex<Option<std::time::Instant>>,
    /// Catalog appends waiting for the catalog lock's holder to append them
    /// with its own (`catalog_appends`).
    catalog_queue: catalog_appends::CatalogQueue,
    heads: Mutex<HashMap<BranchId, Arc<tokio::sync::Mutex<Head>>>>,
    /// The newest head read from the store of each incarnation this process
    /// does not hold, shared by the calls that began before that read did
    /// (`stored_position`).
    stored_positions: Mutex<HashMap<BranchId, Arc<tokio::sync::Mutex<Option<StoredPosition>>>>>,
    /// Latest known head of each loaded incarnation (O(1) clones), readable
    /// without the async head lock.
    latest: Mutex<HashMap<BranchId, BranchState>>,
    /// When the newest catch-up of each head that completed *started* (or
    /// this process's newest append to it was sent): the head holds every
    /// commit the store acknowledged before that instant.
    fresh: Mutex<HashMap<BranchId, std::time::Instant>>,
    /// The newest commit time a head read of each branch must include
    /// (`Wal::expect_visible`).
    visible: Mutex<HashMap<BranchName, CommitTime>>,
    /// The last commits this handle appended to each branch incarnation
    /// (inline bodies only), to feed other processes' catch-ups.
    recent: Mutex<HashMap<BranchId, Recent>>,
    checkpoints: Mutex<BTreeMap<(BranchId, Seq), BranchState>>,
    committers: Mutex<HashMap<BranchName, Queue>>,
    /// Branches with an automatic snapshot being encoded or written.
    snapshotting: Arc<Mutex<HashSet<BranchId>>>,
    /// What each branch has logged since its last snapshot.
    snapshot_debts: SnapshotDebts,
    materializer: Option<crate::materializer::Materializer>,
}

/// An incarnation's head as the store had it when a read began.
#[derive(Clone)]
struct StoredPosition {
    began: std::time::Instant,
    last: CommitInfo,
    /// The last commit seals the incarnation (a reset or delete ended it).
    sealed: bool,
}

/// A branch's last appended commits, ascending by seq (not necessarily
/// contiguous: commits other processes made are not here).
#[derive(Default)]
struct Recent {
    commits: std::collections::VecDeque<EncodedCommit>,
    bytes: usize,
}

impl Recent {
    fn push(&mut self, commit: EncodedCommit) {
        self.bytes += commit.body_len();
        self.commits.push_back(commit);
        while self.commits.len() > crate::feed::RECENT_COMMITS
            || self.bytes > crate::feed::RECENT_BYTES
        {
            match self.commits.pop_front() {
                Some(c) => self.bytes -= c.body_len(),
                None => break,
            }
        }
    }
}

/// Marks a branch's automatic snapshot as in flight until dropped.
struct SnapshotInFlight {
    set: Arc<Mutex<HashSet<BranchId>>>,
    id: BranchId,
}

impl SnapshotInFlight {
    /// `None` when one is already in flight for `id`.
    fn start(set: &Arc<Mutex<HashSet<BranchId>>>, id: BranchId) -> Option<SnapshotInFlight> {
        lock(set).insert(id).then(|| SnapshotInFlight {
            set: Arc::clone(set),
            id,
        })
    }
}

impl Drop for SnapshotInFlight {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.id);
    }
}

/// A head position no seq reaches: `time_of` then always asks the store or
/// the base.
const UNKNOWN_HEAD: CommitInfo = CommitInfo {
    seq: Seq::MAX,
    time: CommitTime(0),
};

/// A state's position in its history.
fn position(state: &BranchState) -> CommitInfo {
    CommitInfo {
        seq: state.seq(),
        time: state.time(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // These maps are updated by single inserts; a panic elsewhere cannot leave them torn.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The engine. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Wal({} on {})",
            self.inner.project,
            self.inner.store.describe()
        )
    }
}

impl Wal {
    /// Opens (creating if absent) `project` with its `main` branch on `store`.
    pub async fn open(store: Arc<dyn LogStore>, project: &str, options: WalOptions) -> Result<Wal> {
        let project = ProjectName::parse(project)?;
        let record = store
            .ensure_project(&ProjectRecord {
                name: project.as_str().to_string(),
                created: options.clock.now(),
            })
            .await?;
        let (materializer, appended) = match &options.materialized {
            Some(m) => {
                let (m, queue) = crate::materializer::Materializer::new(
                    Arc::clone(m),
                    project.as_str(),
                    record.created,
                )?;
                (Some(m), Some(queue))
            }
            None => (None, None),
        };
        let inner = Arc::new(Inner {
            materializer,
            store,
            project,
            created: record.created,
            options,
            catalog: tokio::sync::Mutex::new(Catalog::default()),
            catalog_fresh: Mutex::new(None),
            catalog_queue: Default::default(),
            heads: Mutex::new(HashMap::new()),
            stored_positions: Mutex::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
            fresh: Mutex::new(HashMap::new()),
            visible: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            checkpoints: Mutex::new(BTreeMap::new()),
            committers: Mutex::new(HashMap::new()),
            snapshotting: Arc::new(Mutex::new(HashSet::new())),
            snapshot_debts: SnapshotDebts::default(),
        });
        if let Some(queue) = appended {
            tokio::spawn(run_materializer(Arc::downgrade(&inner), queue));
        }
        let wal = Wal { inner };
        let main = BranchName::main();
        wal.inner
            .append_catalog(move |cat| {
                if cat
                    .incarnations
                    .values()
                    .any(|i| matches!(i.base, Base::Root))
                {
                    return Ok(None);
                }
                Ok(Some(CatalogEvent::CreateRoot {
                    id: cat.next_id(0),
                    name: main.clone(),
                }))
            })
            .await?;
        Ok(wal)
    }

    pub fn project(&self) -> &str {
        self.inner.project.as_str()
    }

    /// Whether other processes may write this project's branches (its
    /// store is shared), so a branch may have a writer elsewhere.
    pub fn is_shared(&self) -> bool {
        self.inner.store.is_shared()
    }

    /// The writer lease of `branch` (see `lease`).
    pub async fn writer_lease(&self, branch: &str) -> Result<Option<WriterLease>> {
        let name = BranchName::parse(branch)?;
        self.inner
            .store
            .writer_lease(self.project(), name.as_str())
            .await
    }

    /// Compare-and-swap of `branch`'s writer lease (see `LogStore::swap_writer_lease`).
    pub async fn swap_writer_lease(
        &self,
        branch: &str,
        expected: Option<&WriterLease>,
        new: Option<&WriterLease>,
    ) -> Result<bool> {
        let name = BranchName::parse(branch)?;
        self.inner
            .store
            .swap_writer_lease(self.project(), name.as_str(), expected, new)
            .await
    }

    /// Readiness: `Ok` when the store takes appends (reachable, not
    /// poisoned) and no branch committer has stopped.
    pub async fn health(&self) -> Result<()> {
        let stopped = lock(&self.inner.committers)
            .iter()
            .find(|(_, q)| q.is_closed())
            .map(|(name, _)| name.to_string());
        if let Some(name) = stopped {
            tracing::warn!(branch = %name, "branch committer stopped");
            return Err(WalError::Closed("a branch committer stopped"));
        }
        self.inner.store.health().await
    }

    /// This project's number in the materialized store (its log's identity:
    /// see `Materializer::new`).
    pub fn materialized_project(&self) -> Option<crate::materialized::ProjectNo> {
        self.inner.materializer.as_ref().map(|m| m.project())
    }

    /// The materialized store views are read from (`WalOptions::materialized`).
    pub fn materialized(&self) -> Option<&Arc<crate::materialized::Materialized>> {
        self.inner.materializer.as_ref().map(|m| m.store())
    }
}

// ---- internals ----------------------------------------------------------------

impl Inner {
    fn project(&self) -> &str {
        self.project.as_str()
    }

    /// The time of the commit after `head`.
    ///
    /// Invariant: commit times are *strictly* increasing along a branch's
    /// whole history, so a commit time (an operationTime, a
    /// `ReadPoint::Time`) identifies exactly one commit:
    /// `time = max(clock, head time + 1 ms, floor + 1 ms)`, where the floor is
    /// the fork point's time for a fork (a branch's first commit comes after
    /// the state it forked from; `head` is that state relabelled `Seq(0)`),
    /// the seal's time after a reset, and the project's creation for `main`.
    /// A clock that stands still or runs backwards still gives distinct,
    /// increasing times. Cost: above 1,000 commits/s on one branch, commit
    /// times run ahead of the clock until the rate drops (group commit keeps
    /// the commit rate far below the write rate).
    fn commit_time(&self, inc: &Incarnation, head: CommitTime) -> CommitTime {
        let after = |t: CommitTime| CommitTime(t.0.saturating_add(1));
        self.options
            .clock
            .now()
            .max(after(head))
            .max(after(inc.min_time()))
    }
}

/// Applies the commits the committers offered to the materialized store
/// (see `materializer`) until the engine is dropped.
async fn run_materializer(inner: Weak<Inner>, mut queue: crate::materializer::AppendedQueue) {
    while let Some(batch) = crate::materializer::next_appended(&mut queue).await {
        let Some(inner) = inner.upgrade() else { break };
        let Some(m) = &inner.materializer else { break };
        if batch.iter().any(|c| !m.knows_chain(c.branch)) {
            let cat = inner.catalog.lock().await;
            m.note_bases(&cat);
        }
        m.apply_appended(batch).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_automatic_snapshot_per_branch_at_a_time() {
        let set = Arc::new(Mutex::new(HashSet::new()));
        let first = SnapshotInFlight::start(&set, BranchId(1));
        assert!(first.is_some());
        assert!(SnapshotInFlight::start(&set, BranchId(1)).is_none());
        assert!(SnapshotInFlight::start(&set, BranchId(2)).is_some());
        drop(first);
        assert!(SnapshotInFlight::start(&set, BranchId(1)).is_some());
    }
}
