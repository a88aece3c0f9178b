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
//! Invariants kept here:
//! - A branch incarnation's commits are `start+1, start+2, …` with no holes:
//!   every append is at `head + 1` of the local head under the head lock, and
//!   the store refuses duplicates; so an accepted commit sits on the true
//!   head even when the local head was stale (writes skip the catch-up read
//!   until a conflict says another handle wrote: `try_commit`).
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
use crate::diff::{self, Diff};
use crate::error::{Result, WalError, WriteError};
use crate::idkey::IdKey;
use crate::lease::WriterLease;
use crate::observer::WalObserver;
use crate::record::{CatalogEvent, Commit, DocOp, EncodedCommit, ProjectRecord, Seal};
use crate::retry::{RetryCheck, RetryEntry, RetryKey, RetryRecord};
use crate::snapshot;
use crate::state::BranchState;
use crate::store::{LogStats, LogStore};
use crate::txn::Transaction;
use crate::types::{
    BranchId, BranchName, CommitInfo, CommitTime, ForkPoint, ProjectName, ReadPoint, Seq,
};
use crate::unique::IndexFilter;
use bson::Document;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::{mpsc, oneshot};

mod catalog_appends;
mod committer;
mod snapshot_policy;

use snapshot_policy::SnapshotDebts;
pub use snapshot_policy::{PER_COMMIT_COST, SnapshotPolicy};

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

// ---- pending writes ----------------------------------------------------------

/// A queued write with its types erased, so one commit can carry writes
/// whose callers expect different reply types.
trait Pending: Send {
    /// A retryable write that `state` already applied (or that its session
    /// has moved past) is answered from the branch's retry table and not
    /// resolved: true when so. Decided again on every attempt's head.
    fn answered_by(&mut self, _state: &BranchState) -> bool {
        false
    }
    /// Runs the caller's resolve, writing through `txn` (begun on the state
    /// the previous write of the batch left); false when it refused or its
    /// ops were invalid (kept for `finish`), and `txn` is then dropped.
    fn resolve(&mut self, txn: &mut Transaction) -> bool;
    /// What to log for a retryable write whose ops were accepted.
    fn retry_record(&self) -> Option<RetryRecord> {
        None
    }
    fn finish(self: Box<Self>, result: Result<CommitInfo>);
}

/// Runs `f` so that a panic fails only its own write.
fn guarded<R>(f: impl FnOnce() -> R) -> std::result::Result<R, WalError> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| WalError::InvalidOp("the write's resolve panicked".into()))
}

type Reply<T, E> = oneshot::Sender<std::result::Result<(T, CommitInfo), WriteError<E>>>;
type Outcome<T, E> = Option<std::result::Result<T, WriteError<E>>>;

/// The reply of a resolved write once its commit is done.
fn finish_outcome<T, E>(
    outcome: Outcome<T, E>,
    result: Result<CommitInfo>,
) -> std::result::Result<(T, CommitInfo), WriteError<E>> {
    match outcome {
        Some(Ok(t)) => result.map(|info| (t, info)).map_err(WriteError::Wal),
        Some(Err(e)) => Err(e),
        None => Err(WriteError::Wal(
            result
                .err()
                .unwrap_or(WalError::Closed("write was never resolved")),
        )),
    }
}

/// A write that writes through the transaction (every `Wal::write*`):
/// `resolve` says whether the caller refused (`Rejected`) or an op was
/// invalid (`Wal`).
struct PendingTxn<F, T, E> {
    resolve: F,
    outcome: Outcome<T, E>,
    reply: Reply<T, E>,
}

impl<F, T, E> Pending for PendingTxn<F, T, E>
where
    F: FnMut(&mut Transaction) -> std::result::Result<T, WriteError<E>> + Send,
    T: Send,
    E: Send,
{
    fn resolve(&mut self, txn: &mut Transaction) -> bool {
        let f = &mut self.resolve;
        let outcome = guarded(|| f(txn)).unwrap_or_else(|e| Err(WriteError::Wal(e)));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, result: Result<CommitInfo>) {
        let _ = self.reply.send(finish_outcome(self.outcome, result));
    }
}

/// What a retryable write got: applied now, with its reply, or found
/// already applied in the branch's retry table.
#[derive(Debug)]
pub enum RetryableOutcome {
    Applied { reply: Document, info: CommitInfo },
    AlreadyApplied(RetryEntry),
}

type RetryableReply<E> = oneshot::Sender<std::result::Result<RetryableOutcome, WriteError<E>>>;

/// A write with a retry key: resolved like any other, unless the head's
/// retry table already has its key; its reply is logged with its ops.
struct PendingRetryable<F, E> {
    key: RetryKey,
    /// The commit of this key's entry that this write continues (a write
    /// committed in parts, see [`Wal::write_retryable_continuing`]).
    continues: Option<Seq>,
    inner: PendingTxn<F, Document, E>,
    answered: Option<RetryCheck>,
    reply: RetryableReply<E>,
}

impl<F, E> Pending for PendingRetryable<F, E>
where
    F: FnMut(&mut Transaction) -> std::result::Result<Document, WriteError<E>> + Send,
    E: Send,
{
    fn answered_by(&mut self, state: &BranchState) -> bool {
        self.answered = match state.retries().check(&self.key) {
            RetryCheck::New => None,
            RetryCheck::Applied(entry) if Some(entry.seq) == self.continues => None,
            done => Some(done),
        };
        self.answered.is_some()
    }

    fn resolve(&mut self, txn: &mut Transaction) -> bool {
        self.inner.resolve(txn)
    }

    fn retry_record(&self) -> Option<RetryRecord> {
        match &self.inner.outcome {
            Some(Ok(reply)) => Some(RetryRecord::new(self.key.clone(), reply)),
            _ => None,
        }
    }

    fn finish(self: Box<Self>, result: Result<CommitInfo>) {
        let reply = match self.answered {
            // Found in a head that is the log's: true whatever this commit did.
            Some(RetryCheck::Applied(entry)) => Ok(RetryableOutcome::AlreadyApplied(entry)),
            Some(RetryCheck::TooOld { latest }) => Err(WriteError::Wal(WalError::RetryTooOld {
                txn_number: self.key.txn_number,
                latest,
            })),
            _ => finish_outcome(self.inner.outcome, result)
                .map(|(reply, info)| RetryableOutcome::Applied { reply, info }),
        };
        let _ = self.reply.send(reply);
    }
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

    /// Optimistic, group-committed write; see the module doc and the API
    /// contract. Returns after the commit is durable.
    pub async fn write<T, E, F>(
        &self,
        branch: &str,
        mut resolve: F,
    ) -> std::result::Result<(T, CommitInfo), WriteError<E>>
    where
        F: FnMut(&BranchState) -> std::result::Result<(Vec<DocOp>, T), E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        // The transaction checks and applies the ops, once.
        self.submit_txn(branch, move |txn: &mut Transaction| {
            let (ops, t) = resolve(txn.state()).map_err(WriteError::Rejected)?;
            txn.record(ops).map_err(WriteError::Wal)?;
            Ok(t)
        })
        .await
    }

    /// A write that writes through a [`Transaction`] begun on the head it
    /// commits on (reading `txn.state()`, writing with `txn.insert` and the
    /// rest, index rules checked there): each op is applied once, and the
    /// transaction's state becomes the new head. Otherwise as
    /// [`write`](Self::write): `resolve` may run again on a newer head.
    pub async fn write_in<T, E, F>(
        &self,
        branch: &str,
        mut resolve: F,
    ) -> std::result::Result<(T, CommitInfo), WriteError<E>>
    where
        F: FnMut(&mut Transaction) -> std::result::Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.submit_txn(branch, move |txn: &mut Transaction| {
            resolve(txn).map_err(WriteError::Rejected)
        })
        .await
    }

    async fn submit_txn<T, E, F>(
        &self,
        branch: &str,
        resolve: F,
    ) -> std::result::Result<(T, CommitInfo), WriteError<E>>
    where
        F: FnMut(&mut Transaction) -> std::result::Result<T, WriteError<E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.submit(branch, |reply| {
            Box::new(PendingTxn {
                resolve,
                outcome: None,
                reply,
            })
        })
        .await
    }

    /// Queues the write `pending` makes (given the channel it answers on)
    /// on `branch`'s committer and waits for its answer.
    async fn submit<R, E>(
        &self,
        branch: &str,
        pending: impl FnOnce(oneshot::Sender<std::result::Result<R, WriteError<E>>>) -> Box<dyn Pending>,
    ) -> std::result::Result<R, WriteError<E>> {
        let name = BranchName::parse(branch)?;
        self.inner.live(&name).await?;
        let (reply, rx) = oneshot::channel();
        self.inner.enqueue(&name, pending(reply))?;
        rx.await
            .map_err(|_| WriteError::Wal(WalError::Closed("the branch committer stopped")))?
    }

    /// The most bytes one commit may log (`WalOptions::max_commit_bytes`).
    pub fn max_commit_bytes(&self) -> usize {
        self.inner.options.max_commit_bytes
    }

    /// A transaction on `snapshot` under this handle's index rules, for a
    /// multi-statement transaction whose statements run before its commit
    /// (logging at most `max_commit_bytes`; a caller may set less).
    pub fn begin(&self, snapshot: BranchState) -> Transaction {
        Transaction::begin(snapshot, Arc::clone(&self.inner.options.index_filter))
            .with_limit(self.inner.options.max_commit_bytes)
    }

    /// A retryable write (`key` = the session and its txnNumber): as
    /// [`write_in`](Self::write_in), but applied at most once per key on the
    /// branch, across restarts and handles. `resolve` returns the reply,
    /// which is logged with the ops; a key the branch already applied is
    /// answered with its entry and `resolve` does not run.
    pub async fn write_retryable<E, F>(
        &self,
        branch: &str,
        key: RetryKey,
        resolve: F,
    ) -> std::result::Result<RetryableOutcome, WriteError<E>>
    where
        F: FnMut(&mut Transaction) -> std::result::Result<Document, E> + Send + 'static,
        E: Send + 'static,
    {
        self.write_retryable_at(branch, key, None, resolve).await
    }

    /// The next part of a retryable write committed in parts (a write
    /// command too large for one commit): applied only while `key`'s entry
    /// is still the one logged at `after` (the previous part), so a part is
    /// applied once even when a retry of the same write runs beside the
    /// original (both continue from the entry the log holds; the one that
    /// loses gets `AlreadyApplied` with the newer entry). Each part logs the
    /// write's reply so far, so a retry after a crash continues from it.
    pub async fn write_retryable_continuing<E, F>(
        &self,
        branch: &str,
        key: RetryKey,
        after: Seq,
        resolve: F,
    ) -> std::result::Result<RetryableOutcome, WriteError<E>>
    where
        F: FnMut(&mut Transaction) -> std::result::Result<Document, E> + Send + 'static,
        E: Send + 'static,
    {
        self.write_retryable_at(branch, key, Some(after), resolve)
            .await
    }

    async fn write_retryable_at<E, F>(
        &self,
        branch: &str,
        key: RetryKey,
        continues: Option<Seq>,
        mut resolve: F,
    ) -> std::result::Result<RetryableOutcome, WriteError<E>>
    where
        F: FnMut(&mut Transaction) -> std::result::Result<Document, E> + Send + 'static,
        E: Send + 'static,
    {
        self.submit(branch, |reply| {
            // The inner reply channel is unused: `finish` answers `reply`.
            let (inner_reply, _) = oneshot::channel();
            Box::new(PendingRetryable {
                key,
                continues,
                inner: PendingTxn {
                    resolve: move |txn: &mut Transaction| {
                        resolve(txn).map_err(WriteError::Rejected)
                    },
                    outcome: None,
                    reply: inner_reply,
                },
                answered: None,
                reply,
            })
        })
        .await
    }

    /// The logged reply of the retryable write `key`, which the branch's
    /// history holds at `seq` (an entry whose reply stayed in the log).
    pub async fn logged_retry_reply(
        &self,
        branch: &str,
        key: &RetryKey,
        seq: Seq,
    ) -> Result<Option<Document>> {
        let name = BranchName::parse(branch)?;
        let mut inc = self.inner.live(&name).await?;
        // Resets continue their history's seqs: an older seq is in an
        // earlier incarnation (forks start with no retry history).
        while seq <= inc.start_seq() {
            match inc.base {
                Base::Reset { previous, .. } => inc = self.inner.incarnation(previous).await?,
                _ => return Ok(None),
            }
        }
        let commits = self
            .inner
            .store
            .read_commits(self.project(), inc.id, Seq(seq.0 - 1), seq, 1)
            .await?;
        let reply = commits
            .iter()
            .filter(|c| c.seq == seq)
            .flat_map(|c| &c.retries)
            .find(|r| &r.key == key)
            .and_then(|r| r.reply.as_ref())
            .map(|r| Document::try_from(r.as_ref()))
            .transpose()
            .map_err(|e| WalError::malformed("retry", e.to_string()))?;
        Ok(reply)
    }

    /// The state of `branch` at a point.
    pub async fn read(&self, branch: &str, at: ReadPoint) -> Result<BranchState> {
        let name = BranchName::parse(branch)?;
        let (inc, head) = self
            .inner
            .read_head(&name, self.inner.options.read_staleness)
            .await?;
        let seq = self.inner.resolve_point(&inc, head.seq(), at).await?;
        if seq == head.seq() {
            return Ok(head);
        }
        let observer = &self.inner.options.observer;
        if let Some(state) = self.inner.stored_state(&inc, position(&head), seq).await? {
            observer.past_read(inc.name.as_str(), true);
            return Ok(state);
        }
        observer.past_read(inc.name.as_str(), false);
        self.inner.state_at(inc.id, seq).await
    }

    /// The materialized store's view of `branch` at a point, the store
    /// caught up to it from the log first (every level of the view). The
    /// same point as [`read`](Self::read) names; refused without
    /// `WalOptions::materialized`, and when the store is full before it
    /// holds the point (never a view of less than the point).
    pub async fn materialized_view(
        &self,
        branch: &str,
        at: ReadPoint,
    ) -> Result<crate::materialized::View> {
        let m = self.inner.materializer.as_ref().ok_or(WalError::InvalidOp(
            "this engine has no materialized store".into(),
        ))?;
        let name = BranchName::parse(branch)?;
        let (inc, head) = self
            .inner
            .read_head(&name, self.inner.options.read_staleness)
            .await?;
        let seq = self.inner.resolve_point(&inc, head.seq(), at).await?;
        // Every level of the view is an ancestor of `inc`, in the catalog
        // since before `inc` was.
        let cat = self.inner.catalog.lock().await.clone();
        let view = m
            .view(
                self.inner.store.as_ref(),
                self.inner.project(),
                &cat,
                inc.id,
                seq,
            )
            .await?;
        view.ok_or_else(|| {
            let disk = m.store().disk_status();
            WalError::InvalidOp(format!(
                "the materialized store is full ({} bytes on disk, bound {}) and does not hold {} at seq {seq}; Wal::read replays it from the log",
                disk.bytes,
                disk.bound.unwrap_or_default(),
                inc.name
            ))
        })
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

    /// Records of the commits this handle appended to incarnation `id`
    /// right after `after`, contiguous, up to `max_bytes` of bodies (at
    /// least one when any): what a `CommitFeed` serves. `None` when this
    /// handle does not hold the commit after `after`.
    pub fn recent_commits(
        &self,
        id: BranchId,
        after: Seq,
        max_bytes: usize,
    ) -> Result<Option<Vec<bson::RawDocumentBuf>>> {
        let recent = lock(&self.inner.recent);
        let Some(r) = recent.get(&id) else {
            return Ok(None);
        };
        let Some(last) = r.commits.back() else {
            return Ok(None);
        };
        if last.seq == after {
            return Ok(Some(Vec::new()));
        }
        let Some(start) = r.commits.iter().position(|c| c.seq == after.next()) else {
            return Ok(None);
        };
        let (mut out, mut bytes, mut expect) = (Vec::new(), 0usize, after.next());
        for c in r.commits.iter().skip(start) {
            if c.seq != expect || (!out.is_empty() && bytes + c.body_len() > max_bytes) {
                break;
            }
            bytes += c.body_len();
            out.push(c.record(self.project())?);
            expect = expect.next();
        }
        Ok(Some(out))
    }

    /// Makes every later head read of `branch` through this handle hold
    /// the commit at `time` (which the store has acknowledged: a write
    /// another process committed for this one). Costs nothing now: the next
    /// read that needs it catches up.
    pub fn expect_visible(&self, branch: &str, time: CommitTime) -> Result<()> {
        let name = BranchName::parse(branch)?;
        let mut visible = lock(&self.inner.visible);
        let t = visible.entry(name).or_insert(time);
        *t = (*t).max(time);
        Ok(())
    }

    /// Makes this process's head of `branch` hold every commit the store
    /// acknowledged before this call, unless it already holds a commit at
    /// or after `at_least` (a client's `afterClusterTime`): causal reads
    /// across processes.
    pub async fn sync(&self, branch: &str, at_least: Option<CommitTime>) -> Result<()> {
        let name = BranchName::parse(branch)?;
        if let Some(t) = at_least {
            let inc = self.inner.live(&name).await?;
            if lock(&self.inner.latest)
                .get(&inc.id)
                .is_some_and(|s| s.time() >= t)
            {
                return Ok(());
            }
        }
        self.inner.head_of(&name).await.map(|_| ())
    }

    /// Creates `name` from `parent` at a point: one catalog record, whatever
    /// the size of the parent's data.
    pub async fn create_branch(
        &self,
        name: &str,
        parent: &str,
        at: ForkPoint,
    ) -> Result<BranchInfo> {
        let name = BranchName::parse(name)?;
        let parent = BranchName::parse(parent)?;
        // "Already exists" is answered by the catalog append below, from a
        // catalog refreshed since this call began (a name deleted by
        // another process is free again).
        // The parent's position only: its documents are not loaded unless
        // this process already serves it (issue 17 item 7).
        let (pinc, phead, pstate) = self.inner.head_position(&parent).await?;
        let fork_seq = self.inner.resolve_point(&pinc, phead.seq, at).await?;
        let fork_time = self.inner.time_of(&pinc, phead, fork_seq).await?;
        let pinc_id = pinc.id;
        let created = self
            .inner
            .append_catalog({
                let name = name.clone();
                move |cat| {
                    if cat.names.contains_key(&name) {
                        return Err(WalError::BranchExists {
                            name: name.to_string(),
                        });
                    }
                    Ok(Some(CatalogEvent::CreateBranch {
                        id: cat.next_id(0),
                        name: name.clone(),
                        parent: pinc_id,
                        fork_seq,
                        fork_time,
                    }))
                }
            })
            .await?;
        if let Some(CatalogEvent::CreateBranch { id, .. }) = created
            && let Some(pstate) = pstate
            && fork_seq == pstate.seq()
        {
            // Forking at the parent's head in memory: the child's head is
            // that state, O(1).
            self.inner
                .seed_head(id, pstate.at(Seq::ZERO, fork_time).without_retries());
        }
        // From the catalog in memory: it holds the record just appended,
        // and asking the store again would only serialize a burst of
        // creations on the catalog lock. The new branch has no commits of
        // its own: its head is its fork point, no store query needed.
        let cat = self.inner.catalog.lock().await.clone();
        let inc = cat.live(&name).ok_or_else(|| WalError::UnknownBranch {
            name: name.to_string(),
        })?;
        Ok(describe(&cat, inc, inc.start_seq(), fork_time))
    }

    pub async fn list_branches(&self) -> Result<Vec<BranchInfo>> {
        let cat = self.inner.refreshed_catalog().await?;
        let mut incs: Vec<&Incarnation> =
            cat.names.values().filter_map(|id| cat.get(*id)).collect();
        // Deleted branches stay listed (their history is kept), unless the name is live again.
        let mut deleted: Vec<&Incarnation> = cat
            .incarnations
            .values()
            .filter(|i| i.deleted && !cat.names.contains_key(&i.name))
            .collect();
        deleted.sort_by_key(|i| (i.name.clone(), i.id));
        incs.extend(deleted);
        let mut out = Vec::with_capacity(incs.len());
        for inc in incs {
            out.push(self.inner.info(&cat, inc).await?);
        }
        Ok(out)
    }

    /// A branch with its lineage; a deleted branch is reported with `deleted: true`.
    pub async fn branch(&self, name: &str) -> Result<BranchInfo> {
        let name = BranchName::parse(name)?;
        let cat = self.inner.refreshed_catalog().await?;
        let inc = cat
            .live(&name)
            .or_else(|| cat.deleted(&name))
            .ok_or_else(|| WalError::UnknownBranch {
                name: name.to_string(),
            })?;
        self.inner.info(&cat, inc).await
    }

    /// Deletes a branch: refused while live branches forked from it, unless
    /// `force`. Its commits stay in the log, readable by its children.
    pub async fn delete_branch(&self, name: &str, force: bool) -> Result<()> {
        let name = BranchName::parse(name)?;
        if name == BranchName::main() {
            return Err(WalError::Protected {
                name: name.to_string(),
                reason: "main is the project's root branch",
            });
        }
        self.refuse_protected(&name).await?;
        let cat = self.inner.refreshed_catalog().await?;
        if cat.live(&name).is_none() {
            return Err(WalError::UnknownBranch {
                name: name.to_string(),
            });
        }
        let children = cat.children(&name);
        if !children.is_empty() && !force {
            return Err(WalError::HasChildren {
                name: name.to_string(),
                children: children
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        drop(cat);
        let mut attempts = 0;
        loop {
            let (inc, head, _) = self.inner.head_position(&name).await?;
            if self
                .inner
                .try_seal(&inc, head.seq, Seal::Delete)
                .await?
                .is_some()
            {
                return self.inner.complete_seal(inc.id).await;
            }
            attempts += 1;
            self.inner.check_attempts(&name, attempts)?;
        }
    }

    /// Resets `name` to a past point of its own history. With `dry_run` only
    /// the preview is computed. Nothing in the log is rewritten: the branch
    /// gets a new incarnation whose history is the old one's up to the
    /// target; the old incarnation stays readable (by the optional `backup`
    /// branch, forked at the old head, and by children forked before).
    pub async fn reset_branch(
        &self,
        name: &str,
        to: ReadPoint,
        dry_run: bool,
        backup: Option<&str>,
    ) -> Result<ResetOutcome> {
        self.reset(name, to, dry_run, backup, None).await
    }

    /// [`reset_branch`](Self::reset_branch) exactly once per `request` (an
    /// operator's identity for one `spec.reset`): the request is recorded in
    /// the reset's seal, and a retry after a crash between the reset and
    /// whatever the caller records next finds it there and changes nothing
    /// (`ResetOutcome::already_applied`).
    pub async fn reset_branch_once(
        &self,
        name: &str,
        to: ReadPoint,
        backup: Option<&str>,
        request: &str,
    ) -> Result<ResetOutcome> {
        self.reset(name, to, false, backup, Some(request)).await
    }

    async fn reset(
        &self,
        name: &str,
        to: ReadPoint,
        dry_run: bool,
        backup: Option<&str>,
        request: Option<&str>,
    ) -> Result<ResetOutcome> {
        let name = BranchName::parse(name)?;
        if !dry_run {
            self.refuse_protected(&name).await?;
        }
        if let Some(r) = request {
            // The seal may have landed without its catalog record:
            // head_position completes it, so the catalog below knows every
            // applied reset.
            let (inc, head, _) = self.inner.head_position(&name).await?;
            let cat = self.inner.refreshed_catalog().await?;
            if cat.reset_applied(inc.id, r) {
                return Ok(ResetOutcome {
                    branch: name.clone(),
                    old_head: head,
                    target: head.seq,
                    preview: Diff::default(),
                    applied: true,
                    already_applied: true,
                    backup: match backup {
                        Some(b) => self.branch(b).await.ok(),
                        None => None,
                    },
                });
            }
        }
        let backup = backup.map(BranchName::parse).transpose()?;
        if let Some(b) = &backup
            && (self.inner.live(b).await.is_ok() || b == &name)
        {
            return Err(WalError::BranchExists {
                name: b.to_string(),
            });
        }
        let mut attempts = 0;
        loop {
            // The head's position, not its documents (a handle that does
            // not serve the branch, the operator's, never loads it).
            let (inc, old_head, held) = self.inner.head_position(&name).await?;
            let target = self.inner.resolve_point(&inc, old_head.seq, to).await?;
            let (preview, target_state) = self
                .inner
                .reset_preview(&inc, old_head.seq, held, target)
                .await?;
            let mut outcome = ResetOutcome {
                branch: name.clone(),
                old_head,
                target,
                preview,
                applied: false,
                already_applied: false,
                backup: None,
            };
            if dry_run {
                return Ok(outcome);
            }
            let seal = Seal::Reset {
                to: target,
                backup: backup.clone(),
                request: request.map(str::to_string),
            };
            // The seal only lands on the head the preview was computed from.
            if self
                .inner
                .try_seal(&inc, old_head.seq, seal)
                .await?
                .is_none()
            {
                attempts += 1;
                self.inner.check_attempts(&name, attempts)?;
                continue;
            }
            self.inner.complete_seal(inc.id).await?;
            if let Some(target_state) = target_state
                && let Ok(new) = self.inner.live(&name).await
                && new.id != inc.id
            {
                self.inner.seed_head(new.id, target_state);
            }
            outcome.applied = true;
            if let Some(b) = &backup {
                outcome.backup = self.branch(b.as_str()).await.ok();
            }
            return Ok(outcome);
        }
    }

    pub async fn log_info(&self, branch: &str) -> Result<LogInfo> {
        let name = BranchName::parse(branch)?;
        let inc = self.inner.live(&name).await?;
        let LogStats {
            first,
            last,
            commits,
            bytes,
        } = self
            .inner
            .store
            .log_stats(self.inner.project.as_str(), inc.id)
            .await?;
        Ok(LogInfo {
            branch: name,
            id: inc.id,
            first,
            last,
            commits,
            bytes,
            start_seq: inc.start_seq(),
        })
    }

    /// What changes from `from` to `to` on `branch`.
    pub async fn diff(&self, branch: &str, from: ReadPoint, to: ReadPoint) -> Result<Diff> {
        let a = self.read(branch, from).await?;
        let b = self.read(branch, to).await?;
        diff::diff(&a, &b)
    }

    /// Stores a snapshot of the branch's head now; returns its seq. A branch
    /// with no own commits has nothing to snapshot (its base is its parent's).
    pub async fn snapshot_now(&self, branch: &str) -> Result<Seq> {
        let name = BranchName::parse(branch)?;
        let (inc, head) = self.inner.head_of(&name).await?;
        if head.seq() > inc.start_seq() {
            self.inner.put_snapshot(inc.id, &head).await?;
        }
        Ok(head.seq())
    }
}

// Hooks for `access` (users and protected branches in the catalog log).
impl Wal {
    /// The catalog, caught up with the store.
    pub(crate) async fn catalog_now(&self) -> Result<Catalog> {
        self.inner.refreshed_catalog().await
    }

    /// Appends the catalog event `make` builds (see `Inner::append_catalog`).
    pub(crate) async fn append_catalog_event(
        &self,
        make: impl FnMut(&Catalog) -> Result<Option<CatalogEvent>> + Send + 'static,
    ) -> Result<Option<CatalogEvent>> {
        self.inner.append_catalog(make).await
    }
}

// ---- internals ----------------------------------------------------------------

impl Inner {
    fn project(&self) -> &str {
        self.project.as_str()
    }

    async fn refresh(&self, cat: &mut Catalog) -> Result<()> {
        let started = std::time::Instant::now();
        let records = self.store.read_catalog(self.project(), cat.seq).await?;
        for r in &records {
            cat.apply(r)?;
        }
        *lock(&self.catalog_fresh) = Some(started);
        Ok(())
    }

    /// Refreshes `cat` unless a refresh that started after `requested`
    /// already completed. Callers queue on the catalog lock, so under a
    /// burst (an operator creating 200 branches) the first refresh after
    /// they arrived serves them all: one store round trip, not one each.
    async fn refresh_since(&self, cat: &mut Catalog, requested: std::time::Instant) -> Result<()> {
        if lock(&self.catalog_fresh).is_some_and(|t| t >= requested) {
            return Ok(());
        }
        self.refresh(cat).await
    }

    async fn refreshed_catalog(&self) -> Result<Catalog> {
        let requested = std::time::Instant::now();
        let mut cat = self.catalog.lock().await;
        self.refresh_since(&mut cat, requested).await?;
        Ok(cat.clone())
    }

    /// The live incarnation of `name` (refreshing the catalog on a miss).
    async fn live(&self, name: &BranchName) -> Result<Incarnation> {
        let requested = std::time::Instant::now();
        let mut cat = self.catalog.lock().await;
        if let Some(inc) = cat.live(name) {
            return Ok(inc.clone());
        }
        self.refresh_since(&mut cat, requested).await?;
        cat.live(name)
            .cloned()
            .ok_or_else(|| WalError::UnknownBranch {
                name: name.to_string(),
            })
    }

    async fn incarnation(&self, id: BranchId) -> Result<Incarnation> {
        let requested = std::time::Instant::now();
        let mut cat = self.catalog.lock().await;
        if let Some(inc) = cat.get(id) {
            return Ok(inc.clone());
        }
        self.refresh_since(&mut cat, requested).await?;
        cat.get(id).cloned().ok_or_else(|| {
            WalError::malformed("catalog", format!("branch {id} is referenced but unknown"))
        })
    }

    fn head_lock(&self, id: BranchId) -> Arc<tokio::sync::Mutex<Head>> {
        lock(&self.heads).entry(id).or_default().clone()
    }

    fn seed_head(&self, id: BranchId, state: BranchState) {
        let head = self.head_lock(id);
        if let Ok(mut h) = head.try_lock()
            && h.state.is_none()
        {
            lock(&self.latest).insert(id, state.clone());
            h.state = Some(state);
        }
    }

    fn set_head(&self, id: BranchId, h: &mut Head, state: BranchState) {
        lock(&self.latest).insert(id, state.clone());
        h.state = Some(state);
    }

    /// The last commit of `inc` the store holds (or its base's position),
    /// its documents not read.
    async fn stored_head(&self, inc: &Incarnation) -> Result<CommitInfo> {
        match self
            .store
            .commit_at_or_before(self.project(), inc.id, CommitTime(i64::MAX))
            .await?
        {
            Some(c) => Ok(c),
            None => Ok(CommitInfo {
                seq: inc.start_seq(),
                time: self.time_of(inc, UNKNOWN_HEAD, inc.start_seq()).await?,
            }),
        }
    }

    /// A reset's preview: what changes going from the head (at `head`;
    /// `held` when this process holds it) back to `target`. From the log
    /// between them when the target is in the incarnation's own history
    /// and no op in between drops or renames a collection (`LogDiff`: it
    /// reads what changed since the target, not the data); otherwise from
    /// the two states, and then the target's state is handed back, to seed
    /// the new incarnation's head.
    async fn reset_preview(
        &self,
        inc: &Incarnation,
        head: Seq,
        held: Option<BranchState>,
        target: Seq,
    ) -> Result<(Diff, Option<BranchState>)> {
        if target >= inc.start_seq()
            && let Some(preview) = self.diff_from_log(inc, target, head).await?
        {
            return Ok((preview, None));
        }
        let head_state = match held {
            Some(state) if state.seq() == head => state,
            _ => self.state_at(inc.id, head).await?,
        };
        let target_state = self.state_at(inc.id, target).await?;
        let preview = diff::diff(&head_state, &target_state)?;
        Ok((preview, Some(target_state)))
    }

    /// `LogDiff` over `inc`'s own commits in `(target, head]`, or `None`
    /// when one of them cannot be followed.
    async fn diff_from_log(
        &self,
        inc: &Incarnation,
        target: Seq,
        head: Seq,
    ) -> Result<Option<Diff>> {
        let mut log = diff::LogDiff::default();
        let mut at = target;
        while at < head {
            let page = self
                .store
                .read_commits_with_pre_images(self.project(), inc.id, at, head, PAGE)
                .await?;
            if page.is_empty() {
                return Err(WalError::LogGap {
                    branch: inc.id,
                    expected: at.next(),
                    found: head,
                });
            }
            for c in page.commits {
                if c.seq != at.next() {
                    return Err(WalError::LogGap {
                        branch: inc.id,
                        expected: at.next(),
                        found: c.seq,
                    });
                }
                if !log.add(&c) {
                    return Ok(None);
                }
                at = c.seq;
            }
        }
        Ok(Some(log.back_to_earlier(head, target)))
    }

    /// [`head_of`](Self::head_of) without the documents, for catalog work
    /// (issue 17 item 7: creating or deleting a branch costs the same for
    /// an empty parent and a 10 GB one): the head's position, and its state
    /// only when this process already holds it (then caught up as
    /// `head_of` does). Otherwise the store's last commit, published if it
    /// was not (as a catch-up to the end does). A branch whose last commit
    /// is a seal its writer did not complete takes `head_of`'s path, which
    /// completes it.
    async fn head_position(
        &self,
        name: &BranchName,
    ) -> Result<(Incarnation, CommitInfo, Option<BranchState>)> {
        let inc = self.live(name).await?;
        let held = {
            let head = self.head_lock(inc.id);
            let h = head.lock().await;
            h.state.is_some() || h.sealed.is_some()
        };
        if !held {
            let stored = self.stored_position(&inc).await?;
            if !stored.sealed {
                return Ok((inc, stored.last, None));
            }
        }
        let (inc, state) = self.head_of(name).await?;
        Ok((inc, position(&state), Some(state)))
    }

    /// `inc`'s head in the store (and whether it is sealed), read once for
    /// every call that began before the read did: a burst of branches
    /// forked from one parent shares its three store queries instead of
    /// making them once per branch. A read that began after a call began
    /// gives a head that was the head at an instant within that call, which
    /// is all "fork at the head" promises.
    async fn stored_position(&self, inc: &Incarnation) -> Result<StoredPosition> {
        let requested = std::time::Instant::now();
        let slot = lock(&self.stored_positions)
            .entry(inc.id)
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(read) = slot.as_ref()
            && read.began >= requested
        {
            return Ok(read.clone());
        }
        let began = std::time::Instant::now();
        let last = self.stored_head(inc).await?;
        let sealed = last.seq > inc.start_seq()
            && self
                .store
                .read_commits(self.project(), inc.id, Seq(last.seq.0 - 1), last.seq, 1)
                .await?
                .first()
                .is_none_or(|c| c.seal.is_some());
        if !sealed {
            let published = self.store.published_head(self.project(), inc.id).await?;
            if published.is_some_and(|p| p < last.seq) {
                self.store
                    .publish_head(self.project(), inc.id, last.seq)
                    .await?;
            }
        }
        let read = StoredPosition {
            began,
            last,
            sealed,
        };
        *slot = Some(read.clone());
        Ok(read)
    }

    /// Loads the head if needed and applies every commit the store has
    /// beyond it. Stops at a seal (nothing may follow one).
    async fn catch_up(&self, inc: &Incarnation, h: &mut Head, reach: Reach) -> Result<()> {
        let started = std::time::Instant::now();
        // Asked first: every write acknowledged before this catch-up began
        // is at or below it.
        let published = self.store.published_head(self.project(), inc.id).await?;
        let upto = match (reach, published) {
            (Reach::Published, Some(p)) => p,
            _ => Seq::MAX,
        };
        // A seal this process appended on a head it did not hold
        // (`try_seal`): the commits up to it are read like any others, and
        // folding it sets it again.
        let appended_seal = match h.state {
            None => h.sealed.take(),
            Some(_) => None,
        };
        let mut state = match h.state.take() {
            Some(s) => s,
            None => self.load_latest(inc).await?,
        };
        if let Some(feed) = &self.options.feed
            && h.sealed.is_none()
        {
            let fed = feed
                .commits_after(inc.name.as_str(), inc.id, state.seq())
                .await
                .unwrap_or_default();
            for raw in &fed {
                // Checked as a store page is: a bad record ends the feed
                // here, and the store below gives the rest.
                let Ok(c) = decode_fed(raw, inc.id) else {
                    break;
                };
                if check_next(inc.id, &state, &c).is_err() {
                    break;
                }
                self.fold_caught_up(inc, h, &mut state, &c);
                if h.sealed.is_some() {
                    break;
                }
            }
        }
        while h.sealed.is_none() && state.seq() < upto {
            let page = self
                .store
                .read_commits(self.project(), inc.id, state.seq(), upto, PAGE)
                .await?;
            let more = page.more;
            for c in page {
                // No holes: a page that skips a seq is an inconsistent read
                // (a retryable error), and nothing of it is applied.
                check_next(inc.id, &state, &c)?;
                self.fold_caught_up(inc, h, &mut state, &c);
                if h.sealed.is_some() {
                    break;
                }
            }
            if !more {
                break;
            }
        }
        if h.sealed.is_none() {
            h.sealed = appended_seal;
        }
        if reach == Reach::End && state.seq() > published.unwrap_or_default() {
            // Read past the published head (a commit whose writer died
            // before publishing it): published before anyone here sees it,
            // so no reader elsewhere misses what a reader here saw.
            self.store
                .publish_head(self.project(), inc.id, state.seq())
                .await?;
        }
        self.set_head(inc.id, h, state);
        h.verified = true;
        let mut fresh = lock(&self.fresh);
        if h.sealed.is_some() {
            // A sealed head is never served as fresh: readers must move on.
            fresh.remove(&inc.id);
        } else {
            fresh.insert(inc.id, started);
        }
        Ok(())
    }

    /// Folds a commit read while catching up (from the store or a feed).
    fn fold_caught_up(&self, inc: &Incarnation, h: &mut Head, state: &mut BranchState, c: &Commit) {
        let info = c.info();
        if c.actor != self.options.actor {
            let age = self.options.clock.now().0.saturating_sub(info.time.0);
            self.options.observer.foreign_commit(inc.name.as_str(), age);
        }
        state.apply_commit(c);
        if let Some(seal) = &c.seal {
            h.sealed = Some((seal.clone(), info));
        }
    }

    /// A state of `inc` at its newest snapshot (or its base): the start of
    /// catching up a head that is not in memory.
    async fn load_latest(&self, inc: &Incarnation) -> Result<BranchState> {
        if let Some(s) = lock(&self.latest).get(&inc.id) {
            return Ok(s.clone());
        }
        match self.best_base(inc, Seq::MAX).await? {
            Some(s) => Ok(s),
            None => self.base_state(inc, inc.start_seq()).await,
        }
    }

    /// The live incarnation of `name` and its caught-up head state; follows
    /// resets other handles made.
    async fn head_of(&self, name: &BranchName) -> Result<(Incarnation, BranchState)> {
        let requested = std::time::Instant::now();
        loop {
            let inc = self.live(name).await?;
            let head = self.head_lock(inc.id);
            let mut h = head.lock().await;
            // A catch-up that started after this request (while it waited
            // for the lock) already holds what the store had at the request.
            let covered = h.state.is_some()
                && h.sealed.is_none()
                && lock(&self.fresh)
                    .get(&inc.id)
                    .is_some_and(|t| *t >= requested);
            if !covered {
                self.catch_up(&inc, &mut h, Reach::Published).await?;
            }
            if h.sealed.is_some() {
                drop(h);
                self.complete_seal(inc.id).await?;
                continue;
            }
            let state = h
                .state
                .clone()
                .ok_or(WalError::Closed("head was not loaded"))?;
            return Ok((inc, state));
        }
    }

    /// The head for a read that may be `max_age` stale: the head in memory
    /// when it was caught up that recently, else [`head_of`](Self::head_of).
    async fn read_head(
        &self,
        name: &BranchName,
        max_age: std::time::Duration,
    ) -> Result<(Incarnation, BranchState)> {
        if !max_age.is_zero() {
            let inc = self.live(name).await?;
            let fresh = lock(&self.fresh)
                .get(&inc.id)
                .is_some_and(|t| t.elapsed() <= max_age);
            let must_see = lock(&self.visible).get(name).copied();
            if fresh
                && let Some(state) = lock(&self.latest).get(&inc.id).cloned()
                && must_see.is_none_or(|t| state.time() >= t)
            {
                return Ok((inc, state));
            }
        }
        self.head_of(name).await
    }

    /// Turns a sealed incarnation's seal into its catalog record, if nobody
    /// has yet (the sealer may have died between the two writes).
    async fn complete_seal(&self, id: BranchId) -> Result<()> {
        let sealed = {
            let head = self.head_lock(id);
            let h = head.lock().await;
            h.sealed.clone()
        };
        let Some((seal, at)) = sealed else {
            return Ok(());
        };
        self.append_catalog(move |cat| {
            let Some(inc) = cat.get(id) else {
                return Err(WalError::malformed(
                    "catalog",
                    format!("sealed branch {id} is unknown"),
                ));
            };
            if inc.superseded_by.is_some() || inc.deleted || cat.names.get(&inc.name) != Some(&id) {
                return Ok(None);
            }
            Ok(Some(match &seal {
                Seal::Delete => CatalogEvent::Delete {
                    name: inc.name.clone(),
                    id,
                },
                Seal::Reset {
                    to,
                    backup,
                    request,
                } => CatalogEvent::Reset {
                    name: inc.name.clone(),
                    id: cat.next_id(0),
                    previous: id,
                    to: *to,
                    sealed_at: at,
                    // A backup name taken meanwhile is dropped, not fatal: the
                    // old history stays readable by id and in the log.
                    backup: backup
                        .clone()
                        .filter(|b| !cat.names.contains_key(b))
                        .map(|b| (b, cat.next_id(1))),
                    request: request.clone(),
                },
            }))
        })
        .await?;
        Ok(())
    }

    /// Appends `seal` as the commit after `expected` (the head the caller
    /// decided on). `None` when the head moved or someone else sealed it:
    /// the caller re-reads and decides again.
    async fn try_seal(
        &self,
        inc: &Incarnation,
        expected: Seq,
        seal: Seal,
    ) -> Result<Option<CommitInfo>> {
        let head = self.head_lock(inc.id);
        let mut h = head.lock().await;
        // A head this process does not hold is sealed from its position in
        // the store, its documents never loaded; a stale position conflicts
        // at the append like a stale head.
        let state = match (&h.state, &h.sealed) {
            (None, None) => None,
            _ => {
                self.catch_up(inc, &mut h, Reach::End).await?;
                if h.sealed.is_some() {
                    return Ok(None);
                }
                Some(
                    h.state
                        .clone()
                        .ok_or(WalError::Closed("head was not loaded"))?,
                )
            }
        };
        let position = match &state {
            Some(s) => position(s),
            None => self.stored_head(inc).await?,
        };
        if position.seq != expected {
            return Ok(None);
        }
        let commit = EncodedCommit::new(Commit {
            branch: inc.id,
            seq: position.seq.next(),
            time: self.commit_time(inc, position.time),
            actor: self.options.actor.clone(),
            ops: Vec::new(),
            seal: Some(seal.clone()),
            retries: Vec::new(),
        })?;
        match self.store.append_commit(self.project(), &commit).await {
            Ok(()) => {
                let info = commit.info();
                h.sealed = Some((seal, info));
                if let Some(state) = state {
                    self.set_head(inc.id, &mut h, state.at(info.seq, info.time));
                }
                Ok(Some(info))
            }
            Err(WalError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn check_attempts(&self, name: &BranchName, attempts: u32) -> Result<()> {
        if attempts > self.options.max_conflict_retries {
            return Err(WalError::TooManyConflicts {
                branch: name.to_string(),
                attempts,
            });
        }
        Ok(())
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

    /// The seq of `inc` that `at` names, checked against the head.
    async fn resolve_point(&self, inc: &Incarnation, head: Seq, at: ReadPoint) -> Result<Seq> {
        match at {
            ReadPoint::Head => Ok(head),
            ReadPoint::Seq(s) if s > head => Err(WalError::PointBeyondHead {
                branch: inc.name.to_string(),
                point: at.to_string(),
                head,
            }),
            ReadPoint::Seq(s) => Ok(s),
            ReadPoint::Time(t) => Ok(self.resolve_time(inc, t).await?.min(head)),
        }
    }

    /// The newest seq of `inc`'s history with a commit time `<= t`.
    fn resolve_time<'a>(
        &'a self,
        inc: &'a Incarnation,
        t: CommitTime,
    ) -> BoxFuture<'a, Result<Seq>> {
        Box::pin(async move {
            if let Some(c) = self
                .store
                .commit_at_or_before(self.project(), inc.id, t)
                .await?
            {
                return Ok(c.seq);
            }
            match &inc.base {
                Base::Root => Ok(Seq::ZERO),
                Base::Fork { time, .. } => {
                    if t >= *time {
                        Ok(Seq::ZERO)
                    } else {
                        Err(WalError::PointBeforeBranch {
                            branch: inc.name.to_string(),
                            time: t,
                            starts: *time,
                        })
                    }
                }
                Base::Reset { previous, to, .. } => {
                    let prev = self.incarnation(*previous).await?;
                    Ok(self.resolve_time(&prev, t).await?.min(*to))
                }
            }
        })
    }

    /// The commit time of `seq` in `inc`'s history (one store read at most).
    fn time_of<'a>(
        &'a self,
        inc: &'a Incarnation,
        head: CommitInfo,
        seq: Seq,
    ) -> BoxFuture<'a, Result<CommitTime>> {
        Box::pin(async move {
            if seq == head.seq {
                return Ok(head.time);
            }
            if seq > inc.start_seq() {
                // The commit's time only: its body may be hundreds of MB.
                let c = self.store.commit_info(self.project(), inc.id, seq).await?;
                return c.map(|c| c.time).ok_or_else(|| WalError::PointBeyondHead {
                    branch: inc.name.to_string(),
                    point: format!("seq {seq}"),
                    head: head.seq,
                });
            }
            self.base_state_time(inc, seq).await
        })
    }

    fn base_state_time<'a>(
        &'a self,
        inc: &'a Incarnation,
        seq: Seq,
    ) -> BoxFuture<'a, Result<CommitTime>> {
        Box::pin(async move {
            match &inc.base {
                Base::Root => Ok(self.created),
                Base::Fork { time, .. } => Ok(*time),
                Base::Reset { previous, .. } => {
                    let prev = self.incarnation(*previous).await?;
                    self.time_of(&prev, UNKNOWN_HEAD, seq).await
                }
            }
        })
    }

    /// The state of `inc`'s history at `seq <= start_seq`.
    fn base_state<'a>(
        &'a self,
        inc: &'a Incarnation,
        seq: Seq,
    ) -> BoxFuture<'a, Result<BranchState>> {
        Box::pin(async move {
            match &inc.base {
                Base::Root => Ok(BranchState::empty(self.created)),
                Base::Fork {
                    parent,
                    seq: fseq,
                    time,
                } => Ok(self
                    .state_at(*parent, *fseq)
                    .await?
                    .at(Seq::ZERO, *time)
                    .without_retries()),
                Base::Reset { previous, .. } => self.state_at(*previous, seq).await,
            }
        })
    }

    /// The best starting point at or before `upto` among own states: an
    /// in-memory checkpoint or a stored snapshot (`None`: start from base).
    async fn best_base(&self, inc: &Incarnation, upto: Seq) -> Result<Option<BranchState>> {
        let start = inc.start_seq();
        let checkpoint = lock(&self.checkpoints)
            .range((inc.id, start.next())..=(inc.id, upto))
            .next_back()
            .map(|(_, s)| s.clone());
        let after = checkpoint.as_ref().map_or(start, |c| c.seq());
        let found = self
            .store
            .latest_snapshot(self.project(), inc.id, after, upto)
            .await;
        let snap_seq = match &found {
            Ok(Some(s)) => s.seq,
            _ => Seq(0),
        };
        match found {
            Ok(Some(snap)) => match snapshot::decode_stream(snap).await {
                Ok((state, len)) if state.seq() == snap_seq => {
                    self.snapshot_debts.snapshot_size(inc.id, len);
                    self.remember_checkpoint(inc.id, &state);
                    return Ok(Some(state));
                }
                Ok(_) => {
                    tracing::warn!(branch = %inc.id, seq = %snap_seq, "snapshot is labelled with another seq; replaying instead")
                }
                // A damaged snapshot only costs time: replay gives the same state.
                Err(e) => {
                    tracing::warn!(branch = %inc.id, seq = %snap_seq, error = %e, "unreadable snapshot; replaying instead")
                }
            },
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        Ok(checkpoint)
    }

    fn remember_checkpoint(&self, id: BranchId, state: &BranchState) {
        let mut cps = lock(&self.checkpoints);
        cps.insert((id, state.seq()), state.clone());
        while cps.len() > CHECKPOINTS {
            cps.pop_first();
        }
    }

    /// The state of incarnation `id` at `seq` (which the caller checked is
    /// not beyond the head). Folds from the nearest snapshot or checkpoint,
    /// else from the base (the parent's state at the fork point).
    /// The state of `inc` at past point `seq` served by the materialized
    /// store (caught up to it first), when the engine keeps one: nothing is
    /// replayed or held in memory. `None` without a store, when the store
    /// is full before it holds the point (`materialized::budget`), or when
    /// the point holds a capped collection (the store keeps no insertion
    /// order): such points are replayed.
    async fn stored_state(
        &self,
        inc: &Incarnation,
        head: CommitInfo,
        seq: Seq,
    ) -> Result<Option<BranchState>> {
        let Some(m) = self.materializer.as_ref() else {
            return Ok(None);
        };
        let cat = self.catalog.lock().await.clone();
        let Some(view) = m
            .view(self.store.as_ref(), self.project(), &cat, inc.id, seq)
            .await?
        else {
            return Ok(None);
        };
        let capped = m
            .store()
            .namespaces(&view)?
            .iter()
            .any(|(_, e)| e.options.get_bool("capped").unwrap_or(false));
        if capped {
            return Ok(None);
        }
        let time = self.time_of(inc, head, seq).await?;
        Ok(Some(BranchState::stored(
            m.store().clone(),
            view,
            seq,
            time,
        )))
    }

    fn state_at<'a>(&'a self, id: BranchId, seq: Seq) -> BoxFuture<'a, Result<BranchState>> {
        Box::pin(async move {
            let inc = self.incarnation(id).await?;
            if seq <= inc.start_seq() {
                return self.base_state(&inc, seq).await;
            }
            if let Some(s) = lock(&self.latest).get(&id)
                && s.seq() == seq
            {
                return Ok(s.clone());
            }
            let mut state = match self.best_base(&inc, seq).await? {
                Some(s) => s,
                None => self.base_state(&inc, inc.start_seq()).await?,
            };
            while state.seq() < seq {
                let commits = self
                    .store
                    .read_commits(self.project(), id, state.seq(), seq, PAGE)
                    .await?;
                if commits.is_empty() {
                    return Err(WalError::PointBeyondHead {
                        branch: inc.name.to_string(),
                        point: format!("seq {seq}"),
                        head: state.seq(),
                    });
                }
                for c in commits {
                    check_next(id, &state, &c)?;
                    state.apply_commit(&c);
                }
            }
            Ok(state)
        })
    }

    async fn put_snapshot(&self, id: BranchId, state: &BranchState) -> Result<()> {
        let upload = snapshot::SnapshotStream::encode(id, state.clone());
        let len = self.store.put_snapshot(self.project(), upload).await?;
        self.snapshot_debts.snapshot_size(id, len);
        self.remember_checkpoint(id, state);
        Ok(())
    }

    async fn info(&self, cat: &Catalog, inc: &Incarnation) -> Result<BranchInfo> {
        let (head_seq, head_time) = match lock(&self.latest).get(&inc.id) {
            Some(s) => (Some(s.seq()), Some(s.time())),
            None => (None, None),
        };
        let (head_seq, head_time) = match (head_seq, head_time) {
            (Some(s), Some(t)) => (s, t),
            _ => match self
                .store
                .commit_at_or_before(self.project(), inc.id, CommitTime(i64::MAX))
                .await?
            {
                Some(c) => (c.seq, c.time),
                None => (
                    inc.start_seq(),
                    self.time_of(inc, UNKNOWN_HEAD, inc.start_seq()).await?,
                ),
            },
        };
        Ok(describe(cat, inc, head_seq, head_time))
    }
}

/// `inc` as callers see it, with its head and its lineage from `cat`.
fn describe(cat: &Catalog, inc: &Incarnation, head_seq: Seq, head_time: CommitTime) -> BranchInfo {
    let mut lineage = Vec::new();
    let mut cur = inc.id;
    while let Some((parent, fork_seq)) = cat.fork_of(cur) {
        let Some(p) = cat.get(parent) else { break };
        lineage.push(LineageEntry {
            name: p.name.clone(),
            id: parent,
            fork_seq,
        });
        cur = parent;
    }
    BranchInfo {
        name: inc.name.clone(),
        id: inc.id,
        parent: lineage.first().map(|l| l.name.clone()),
        fork_seq: lineage.first().map(|l| l.fork_seq),
        start_seq: inc.start_seq(),
        head_seq,
        created: inc.created,
        head_time,
        deleted: inc.deleted,
        lineage,
    }
}

/// A fed commit record, which must be of incarnation `id` and carry its body.
fn decode_fed(raw: &bson::RawDocumentBuf, id: BranchId) -> Result<Commit> {
    let rec = crate::record::commit_record(raw)?;
    if rec.branch != id {
        return Err(WalError::malformed("fed commit", "another branch's commit"));
    }
    match &rec.body {
        crate::record::StoredBody::Inline(body) => crate::record::decode_commit(&rec, body, false),
        crate::record::StoredBody::Chunked(_) => {
            Err(WalError::malformed("fed commit", "a chunked commit"))
        }
    }
}

/// The next commit folded onto `state` must be its seq + 1.
fn check_next(branch: BranchId, state: &BranchState, c: &Commit) -> Result<()> {
    let expected = state.seq().next();
    if c.seq == expected {
        Ok(())
    } else {
        Err(WalError::LogGap {
            branch,
            expected,
            found: c.seq,
        })
    }
}

/// The stateless checks of one op.
pub(crate) fn check_op(op: &DocOp) -> Result<()> {
    match op {
        DocOp::Put { ns, id, doc } => {
            check_ns(ns)?;
            crate::rawdoc::validate(doc, "put document")
                .map_err(|e| WalError::InvalidOp(format!("put into {ns}: {e}")))?;
            let Some(doc_id) = crate::rawdoc::id_of(doc) else {
                return Err(WalError::InvalidOp(format!(
                    "put into {ns}: the document has no _id"
                )));
            };
            if IdKey::from_bson(&doc_id) != IdKey::from_bson(id) {
                return Err(WalError::InvalidOp(format!(
                    "put into {ns}: the document's _id {doc_id} is not the op's id {id}"
                )));
            }
        }
        DocOp::Delete { ns, .. }
        | DocOp::CreateCollection { ns, .. }
        | DocOp::DropCollection { ns }
        | DocOp::DropIndex { ns, .. }
        | DocOp::SetCollectionOptions { ns, .. } => check_ns(ns)?,
        DocOp::CreateIndex { ns, spec } => {
            check_ns(ns)?;
            if spec.get_str("name").is_err() || spec.get_document("key").is_err() {
                return Err(WalError::InvalidOp(format!(
                    "createIndex on {ns}: the spec needs a string name and a key document"
                )));
            }
        }
        DocOp::RenameCollection { from, to } => {
            check_ns(from)?;
            check_ns(to)?;
        }
        DocOp::DropDatabase { db } => {
            if db.is_empty() {
                return Err(WalError::InvalidOp(
                    "dropDatabase: empty database name".into(),
                ));
            }
        }
    }
    Ok(())
}

fn check_ns(ns: &crate::types::Namespace) -> Result<()> {
    if ns.db.is_empty() || ns.coll.is_empty() {
        return Err(WalError::InvalidOp(format!("invalid namespace {ns:?}")));
    }
    Ok(())
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
