//! The per-branch committer: pipelined group commit (issue 17 item 8).
//!
//! One task per branch name takes the writes queued by `Wal::write*` and
//! commits them, many to a commit. While commit N is being made durable
//! (its append in flight), the writes that arrive are resolved, one by
//! one as they come, into commit N+1 on the state N leaves; when N's
//! append returns, N's writers are answered and N+1 is encoded and
//! appended at once, and the writes arriving meanwhile go into N+2. The
//! resolve and encode work of a commit so overlaps the fsync of the one
//! before; the log still holds one commit per fsync'd store batch. On a
//! slow disk a commit also waits a little for the writers the one before
//! answered, so that they share an fsync (`gather`).
//!
//! Invariants kept here (and relied on by `Wal`'s readers and tests):
//! - Log order is commit order: commit N+1 is handed to the store only
//!   after N's append returned `Ok`, so the store never holds N+1 without
//!   N, and seq N+1 = seq N + 1 (no holes).
//! - A writer is answered only after the append of its own commit returned
//!   (the store's durable acknowledgement); the head in memory, which
//!   readers see, moves to a commit only then. A commit resolved on a
//!   commit in flight is never visible before that one is durable.
//! - Nothing commits on a state that includes a commit that did not land:
//!   when N conflicts or fails, N+1 (resolved on N's state) is never
//!   appended; its writes are resolved again, in order after N's, on the
//!   head caught up from the store. A write is resolved again only if its
//!   commit was never handed to the store.
//! - A refusal (a duplicate key, a write answered from the retry table)
//!   rests on a state the store confirmed: the head after a catch-up, or
//!   the state of a commit the store accepted at head + 1 (an accepted
//!   append proves the state it was resolved on was the true head).
//! - The head lock is held while a commit is in flight, and released
//!   between commits (readers and seals waiting for it get in: tokio's
//!   mutex is fair); the next commit is appended only if the head is still
//!   the state it was resolved on.
//! - A write's attempts count only conflicts of its own commit; writes
//!   put back because the commit before theirs failed start again at zero.

use super::{Head, Inner, Pending, Queue, Reach, SnapshotInFlight, lock, position};
use crate::catalog::Incarnation;
use crate::error::{Result, WalError};
use crate::failpoints;
use crate::record::{Commit, EncodedCommit, LoggedOp};
use crate::retry::RetryRecord;
use crate::snapshot;
use crate::state::BranchState;
use crate::txn::Transaction;
use crate::types::{BranchName, CommitInfo, CommitTime, Seq};
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use tokio::sync::{OwnedMutexGuard, mpsc};

/// How long the committer's test failpoints hold an append, so that a test
/// can queue writes that the next commit resolves meanwhile.
const FAILPOINT_HOLD: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest a commit waits for the writers the commit before it
/// answered (`gather`).
const MAX_HOLD: std::time::Duration = std::time::Duration::from_millis(5);
/// A hold shorter than this is not worth a timer (tokio's timers tick in
/// milliseconds): on such a fast disk the CPU, not the fsync, bounds the
/// commit rate.
const MIN_HOLD: std::time::Duration = std::time::Duration::from_millis(1);

/// The queue of one branch's committer task.
struct Committer {
    name: BranchName,
    rx: mpsc::UnboundedReceiver<Box<dyn Pending>>,
    /// Writes to resolve before any still in `rx`, in order: those put back
    /// after a conflict or a failed commit, and a full commit's leftovers.
    waiting: VecDeque<Box<dyn Pending>>,
    /// Conflicts the first writes of `waiting` have been through.
    attempts: u32,
    /// The next commit on the head must catch up with the store first.
    catch_up: bool,
    /// Writers the last commit answered plus those already waiting then:
    /// how many writes the next commit may expect soon (see `gather`).
    returning: usize,
    /// When the last commit's writers were answered.
    answered_at: std::time::Instant,
    /// How long the next commit may wait for them (see `gather`).
    hold: std::time::Duration,
}

impl Committer {
    /// Moves what is queued in `rx` to `waiting`, up to `max` writes in all.
    fn drain(&mut self, max: usize) {
        while self.waiting.len() < max {
            match self.rx.try_recv() {
                Ok(p) => self.waiting.push_back(p),
                Err(_) => break,
            }
        }
    }

    /// Notes that a commit's writers were answered: `active` writers are
    /// about, and the commit took `took` from hand-off to durable.
    fn answered(&mut self, active: usize, took: std::time::Duration) {
        self.returning = active;
        self.answered_at = std::time::Instant::now();
        self.hold = took.min(MAX_HOLD);
    }

    /// Puts `writes` back in front of everything waiting, in their order.
    fn put_back(&mut self, writes: Vec<Box<dyn Pending>>) {
        for p in writes.into_iter().rev() {
            self.waiting.push_front(p);
        }
    }
}

/// The next commit, being resolved: each write is resolved on the state
/// the writes before it left, starting from `base`.
struct Open {
    inc: Incarnation,
    /// The head it builds on, or the state after the commit in flight.
    base: BranchState,
    working: BranchState,
    seq: Seq,
    time: CommitTime,
    writes: Vec<Box<dyn Pending>>,
    ops: Vec<LoggedOp>,
    retries: Vec<RetryRecord>,
    logged_bytes: usize,
    /// The store confirmed `base` is the branch's head: it was read by a
    /// catch-up of this attempt, or it is a commit the store accepted at
    /// head + 1. A refusal rests only on a confirmed base.
    confirmed: bool,
    attempts: u32,
}

impl Open {
    fn new(
        inner: &Inner,
        inc: Incarnation,
        base: BranchState,
        confirmed: bool,
        attempts: u32,
    ) -> Open {
        let (seq, time) = (base.seq().next(), inner.commit_time(&inc, base.time()));
        Open {
            inc,
            working: base.clone(),
            base,
            seq,
            time,
            writes: Vec::new(),
            ops: Vec::new(),
            retries: Vec::new(),
            logged_bytes: 0,
            confirmed,
            attempts,
        }
    }

    /// No more writes go into this commit: `max_batch` of them, or it logs
    /// `max_group_bytes` (large writes commit alone, small ones together).
    fn full(&self, inner: &Inner) -> bool {
        let o = &inner.options;
        !self.writes.is_empty()
            && (self.writes.len() >= o.max_batch || self.logged_bytes >= o.max_group_bytes)
    }

    /// Resolves `p` into this commit.
    fn take(&mut self, inner: &Inner, mut p: Box<dyn Pending>) {
        let o = &inner.options;
        // On `working`, so a retry queued behind its original in one
        // commit sees it.
        if !p.answered_by(&self.working) {
            // Each write may log up to `max_commit_bytes` (its transaction
            // refuses more, so an oversized write fails alone, early).
            let mut txn = Transaction::begin(self.working.clone(), o.index_filter.clone())
                .with_limit(o.max_commit_bytes);
            if p.resolve(&mut txn) {
                self.logged_bytes += txn.logged_bytes();
                let (state, logged) = txn.into_parts();
                self.working = state;
                self.ops.extend(logged);
                if let Some(r) = p.retry_record() {
                    self.working.note_retry(&r, self.seq, self.time);
                    self.retries.push(r);
                }
            }
        }
        self.writes.push(p);
    }

    /// Resolves waiting writes into this commit until it is full.
    fn take_waiting(&mut self, inner: &Inner, c: &mut Committer) {
        while !self.full(inner) {
            match c.waiting.pop_front() {
                Some(p) => self.take(inner, p),
                None => break,
            }
        }
    }

    /// Whether the commit logs nothing: every write refused, or answered
    /// from the retry table (a retryable write that changed nothing still
    /// commits its record: a retry must get this answer, not a new run).
    fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.retries.is_empty()
    }
}

/// A commit handed to the store, and what its writers wait for.
struct InFlight {
    inc: Incarnation,
    writes: Vec<Box<dyn Pending>>,
    /// The head once it is durable.
    after: BranchState,
    info: CommitInfo,
    attempts: u32,
    /// The append, polled by the committer itself (a task of its own
    /// would add two wake-ups per commit, which cost milliseconds on a
    /// busy machine: measured, one writer went from ~1,000 to ~500
    /// commits/s). The embedded store's writer thread and the mongodb
    /// server do the work; the committer resolves the next commit between
    /// polls.
    append: BoxFuture<'static, (Result<()>, EncodedCommit)>,
    sent: std::time::Instant,
    /// The commit's encoded body: what the snapshot policy counts.
    body_bytes: usize,
}

impl Inner {
    pub(super) fn enqueue(
        self: &Arc<Self>,
        name: &BranchName,
        pending: Box<dyn Pending>,
    ) -> Result<()> {
        let mut committers = lock(&self.committers);
        let pending = match committers.get(name) {
            Some(q) => match q.send(pending) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(p)) => p,
            },
            None => pending,
        };
        let (tx, rx): (Queue, _) = mpsc::unbounded_channel();
        tokio::spawn(run_committer(Arc::downgrade(self), name.clone(), rx));
        tx.send(pending)
            .map_err(|_| WalError::Closed("the branch committer stopped"))?;
        committers.insert(name.clone(), tx);
        Ok(())
    }

    /// Commits until nothing waits and nothing is in flight.
    async fn pipeline(&self, c: &mut Committer) {
        let mut flight: Option<InFlight> = None;
        let mut guard: Option<OwnedMutexGuard<Head>> = None;
        loop {
            let mut open = match &flight {
                Some(f) => Open::new(self, f.inc.clone(), f.after.clone(), false, 0),
                None => {
                    guard = None;
                    c.drain(self.options.max_batch);
                    if c.waiting.is_empty() {
                        return;
                    }
                    match self.open_on_head(&c.name, c.catch_up).await {
                        Ok((h, inc, base, caught_up)) => {
                            guard = Some(h);
                            let open = Open::new(self, inc, base, caught_up, c.attempts);
                            (c.attempts, c.catch_up) = (0, false);
                            open
                        }
                        Err(e) => {
                            let n = self.options.max_batch.min(c.waiting.len());
                            finish_all(c.waiting.drain(..n).collect(), Err(e));
                            (c.attempts, c.catch_up) = (0, false);
                            continue;
                        }
                    }
                }
            };
            open.take_waiting(self, c);
            if let Some(f) = flight.take() {
                let Some(h) = guard.as_mut() else {
                    // Unreachable: a commit is in flight only under the head lock.
                    c.put_back(open.writes);
                    finish_all(f.writes, Err(WalError::Closed("head lock lost")));
                    return;
                };
                let (f, landed) = self.await_flight(f, &mut open, c).await;
                let (answered, took) = (f.writes.len(), f.sent.elapsed());
                match self.settle(&c.name, f, landed, h) {
                    Settled::Committed => {
                        open.confirmed = true;
                        c.answered(answered + open.writes.len(), took);
                    }
                    Settled::Conflict { writes, attempts } => {
                        guard = None;
                        self.retry_conflicted(c, writes, attempts, open.writes);
                        continue;
                    }
                    Settled::Failed => {
                        // Built on a commit that did not land (or may have):
                        // resolved again on the head read from the store.
                        guard = None;
                        c.put_back(open.writes);
                        c.catch_up = true;
                        continue;
                    }
                }
                if open.writes.is_empty() {
                    continue;
                }
                // Between commits, whoever waits for the head lock goes
                // first; then the head must still be the state `open` was
                // resolved on.
                drop(guard.take());
                let head = self.head_lock(open.inc.id);
                let h = head.lock_owned().await;
                let same = h.verified
                    && h.sealed.is_none()
                    && h.state.as_ref().map(BranchState::seq) == Some(open.base.seq());
                guard = Some(h);
                if !same {
                    c.put_back(open.writes);
                    c.catch_up = true;
                    continue;
                }
            } else {
                c.drain(self.options.max_batch);
                open.take_waiting(self, c);
            }
            if open.writes.is_empty() {
                continue;
            }
            if open.is_empty() {
                self.answer_unchanged(c, open, &mut guard).await;
                continue;
            }
            self.gather(c, &mut open).await;
            let Some(h) = guard.as_mut() else {
                c.put_back(open.writes);
                continue;
            };
            match self.send(open, h) {
                Ok(f) => flight = Some(f),
                Err((writes, e)) => finish_all(writes, Err(e)),
            }
        }
    }

    /// The head to resolve on, under its lock: caught up with the store
    /// when asked, and before the first append of this process on the
    /// branch or after an append with an unknown outcome
    /// (`Head::verified`). Optimistic otherwise: the store accepts seq
    /// `s + 1` only if nobody took it, and seqs have no holes, so an
    /// accepted commit always sits on the true head; a stale head (another
    /// handle wrote, or sealed the branch) shows up as `Conflict`.
    async fn open_on_head(
        &self,
        name: &BranchName,
        catch_up: bool,
    ) -> Result<(OwnedMutexGuard<Head>, Incarnation, BranchState, bool)> {
        let mut caught_up = catch_up;
        loop {
            let inc = self.live(name).await?;
            let mut h = self.head_lock(inc.id).lock_owned().await;
            if caught_up || h.state.is_none() || h.sealed.is_some() || !h.verified {
                self.catch_up(&inc, &mut h, Reach::End).await?;
                caught_up = true;
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
            return Ok((h, inc, state, caught_up));
        }
    }

    /// Before a commit leaves, waits a little for the writers the previous
    /// commit answered, when the disk is slow. Why: writers that wait for
    /// their acknowledgement send their next write a round trip after it;
    /// a commit that leaves before they are back splits them into two
    /// cohorts, each in every other commit, so each fsync carries half of
    /// them and N writers get at most N/2 × the fdatasync rate (measured:
    /// 64 clients at ~31 writes per commit on a disk doing ~300
    /// fdatasync/s). Waiting until the expected writes arrived, at most as
    /// long as the last commit's append took (a commit of its own would
    /// cost them that much) and at most `MAX_HOLD`, puts them back in one
    /// commit per fsync. Never on a fast disk (an append under
    /// `MIN_HOLD`), never for more writes than were just answered plus
    /// those already waiting, and never long after the answer.
    async fn gather(&self, c: &mut Committer, open: &mut Open) {
        if c.hold < MIN_HOLD {
            return;
        }
        let deadline = tokio::time::Instant::from_std(c.answered_at + c.hold);
        while open.writes.len() < c.returning && !open.full(self) {
            match tokio::time::timeout_at(deadline, c.rx.recv()).await {
                Ok(Some(p)) => {
                    open.take(self, p);
                    c.drain(self.options.max_batch);
                    open.take_waiting(self, c);
                }
                _ => break,
            }
        }
    }

    /// Waits for the commit in flight, resolving the writes that arrive
    /// meanwhile into `open` (the next commit) until it is full.
    async fn await_flight(
        &self,
        mut f: InFlight,
        open: &mut Open,
        c: &mut Committer,
    ) -> (InFlight, Result<()>) {
        let landed = loop {
            if open.full(self) {
                break (&mut f.append).await;
            }
            tokio::select! {
                biased;
                done = &mut f.append => break done,
                next = c.rx.recv() => match next {
                    Some(p) => {
                        open.take(self, p);
                        c.drain(self.options.max_batch);
                        open.take_waiting(self, c);
                    }
                    // The engine is going away: nothing more arrives.
                    None => break (&mut f.append).await,
                },
            }
        };
        match landed {
            (Ok(()), commit) => {
                self.note_appended(&f, commit);
                (f, Ok(()))
            }
            (Err(e), _) => (f, Err(e)),
        }
    }

    /// What the store keeps of an accepted commit beyond it: the
    /// materialized store's queue, and the recent commits a feed serves.
    fn note_appended(&self, f: &InFlight, commit: EncodedCommit) {
        // Accepted at head + 1: nothing else was appended before it.
        lock(&self.fresh).insert(f.inc.id, f.sent);
        if let Some(m) = &self.materializer {
            m.offer(&commit);
        }
        // Kept only where another process can ask for it (a feed serves
        // the processes sharing the store); an embedded store has one
        // owner, so up to `RECENT_BYTES` per branch would be held for
        // nobody. Its body is shared, not copied (a large commit is not kept).
        if self.store.is_shared() && commit.chunks().is_none() {
            lock(&self.recent).entry(f.inc.id).or_default().push(commit);
        }
    }

    /// Answers the writers of a commit whose append returned, and moves the
    /// head to it when it landed.
    fn settle(&self, name: &BranchName, f: InFlight, landed: Result<()>, h: &mut Head) -> Settled {
        match landed {
            Ok(()) => {
                self.options
                    .observer
                    .committed(name.as_str(), f.writes.len());
                self.set_head(f.inc.id, h, f.after.clone());
                self.maybe_snapshot(&f.inc, &f.after, f.body_bytes);
                finish_all(f.writes, Ok(f.info));
                Settled::Committed
            }
            Err(WalError::Conflict { .. }) => Settled::Conflict {
                writes: f.writes,
                attempts: f.attempts,
            },
            Err(e) => {
                // The commit may or may not have landed: re-read the head
                // from the store before the next commit.
                h.verified = false;
                finish_all(f.writes, Err(e));
                Settled::Failed
            }
        }
    }

    /// After commit N lost its seq to another handle: its writes, then
    /// those of N+1 (`next`, resolved on N), go back to be resolved again
    /// on the caught-up head, unless the branch's writer is elsewhere or
    /// N's writes have lost too often.
    fn retry_conflicted(
        &self,
        c: &mut Committer,
        writes: Vec<Box<dyn Pending>>,
        attempts: u32,
        next: Vec<Box<dyn Pending>>,
    ) {
        let name = c.name.clone();
        let attempts = attempts + 1;
        self.options
            .observer
            .append_conflict(name.as_str(), attempts);
        c.put_back(next);
        c.catch_up = true;
        if self
            .options
            .feed
            .as_ref()
            .is_some_and(|f| f.defer_to_writer(name.as_str()))
        {
            finish_all(
                writes,
                Err(WalError::NotWriter {
                    branch: name.to_string(),
                }),
            );
            return;
        }
        if attempts.is_power_of_two() && attempts >= 16 {
            // Another process keeps winning this branch's appends: its
            // writers here wait while it does.
            tracing::warn!(branch = %name, lost_appends = attempts, writes = writes.len(), "writes to this branch are slowed by contention with another writer of the same store");
        }
        if let Err(e) = self.check_attempts(&name, attempts) {
            finish_all(writes, Err(e));
            return;
        }
        c.put_back(writes);
        c.attempts = attempts;
    }

    /// A commit that logs nothing is not appended; its writers are answered
    /// at its base. A base the store has not confirmed is checked first: a
    /// refusal (say, a duplicate key) must not rest on a stale head.
    async fn answer_unchanged(
        &self,
        c: &mut Committer,
        open: Open,
        guard: &mut Option<OwnedMutexGuard<Head>>,
    ) {
        let Some(h) = guard.as_mut() else {
            c.put_back(open.writes);
            return;
        };
        if !open.confirmed {
            if let Err(e) = self.catch_up(&open.inc, h, Reach::End).await {
                finish_all(open.writes, Err(e));
                return;
            }
            let now = h.state.as_ref().map(BranchState::seq);
            if h.sealed.is_some() || now != Some(open.base.seq()) {
                *guard = None;
                let (attempts, writes) = (open.attempts, open.writes);
                self.retry_conflicted(c, writes, attempts, Vec::new());
                return;
            }
        }
        finish_all(open.writes, Ok(position(&open.base)));
    }

    /// Encodes `open` and prepares its append (`InFlight::append`).
    #[allow(clippy::type_complexity)]
    fn send(
        &self,
        open: Open,
        h: &mut Head,
    ) -> std::result::Result<InFlight, (Vec<Box<dyn Pending>>, WalError)> {
        debug_assert_eq!(
            h.state.as_ref().map(BranchState::seq),
            Some(open.base.seq())
        );
        // Encoding moves the ops' documents into the body (one copy of the
        // commit's bytes at a time, not two).
        let commit = match EncodedCommit::new(Commit {
            branch: open.inc.id,
            seq: open.seq,
            time: open.time,
            actor: self.options.actor.clone(),
            ops: open.ops,
            seal: None,
            retries: open.retries,
        }) {
            Ok(c) => c,
            Err(e) => return Err((open.writes, e)),
        };
        let info = commit.info();
        let body_bytes = commit.body_len();
        let store = Arc::clone(&self.store);
        let project = self.project().to_string();
        let sent = std::time::Instant::now();
        let append = Box::pin(async move {
            let result = append_with_failpoints(&*store, &project, &commit).await;
            (result, commit)
        });
        Ok(InFlight {
            after: open.working.at(info.seq, info.time),
            inc: open.inc,
            writes: open.writes,
            info,
            attempts: open.attempts,
            append,
            sent,
            body_bytes,
        })
    }

    /// A snapshot of the new head when the policy says one is due
    /// (`snapshot_policy`), written in the background: a snapshot is an
    /// optimisation, and the writers of this commit need not wait for it.
    /// One per branch at a time: each encodes the whole state, and under a
    /// fast write load they would pile up (a copy of the state each). One
    /// that cannot start stays due.
    fn maybe_snapshot(&self, inc: &Incarnation, head: &BranchState, body_bytes: usize) {
        let seq = head.seq();
        let due = self
            .snapshot_debts
            .commit(self.options.snapshot_policy, inc.id, seq, body_bytes);
        let in_flight = due
            .then(|| SnapshotInFlight::start(&self.snapshotting, inc.id))
            .flatten();
        let Some(in_flight) = in_flight else {
            return;
        };
        self.snapshot_debts.started(inc.id);
        let debts = self.snapshot_debts.clone();
        let store = Arc::clone(&self.store);
        let project = self.project().to_string();
        let id = inc.id;
        let head = head.clone();
        self.remember_checkpoint(id, &head);
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let upload = snapshot::SnapshotStream::encode(id, head);
            let put = store.put_snapshot(&project, upload).await;
            if let Ok(len) = put {
                debts.snapshot_size(id, len);
            }
            if let Err(e) = put {
                tracing::warn!(branch = %id, seq = %seq, error = %e, "snapshot failed");
            }
        });
    }
}

/// How a commit in flight ended.
enum Settled {
    Committed,
    /// Another handle took its seq; its writes are not answered yet.
    Conflict {
        writes: Vec<Box<dyn Pending>>,
        attempts: u32,
    },
    /// It failed (its writers have their error); it may have landed.
    Failed,
}

/// `LogStore::append_commit`, with the committer's test faults: an append
/// held a while and then refused without reaching the store; one held and
/// then appended; one whose acknowledgement is lost after it landed.
async fn append_with_failpoints(
    store: &dyn crate::store::LogStore,
    project: &str,
    commit: &EncodedCommit,
) -> Result<()> {
    if failpoints::fire(failpoints::COMMIT_APPEND_FAILS) {
        tokio::time::sleep(FAILPOINT_HOLD).await;
        return Err(WalError::Closed(
            "failpoint commit-append-fails: the append failed",
        ));
    }
    if failpoints::fire(failpoints::COMMIT_APPEND_HELD) {
        tokio::time::sleep(FAILPOINT_HOLD).await;
    }
    store.append_commit(project, commit).await?;
    if failpoints::fire(failpoints::COMMIT_ACK_LOST) {
        tokio::time::sleep(FAILPOINT_HOLD).await;
        return Err(WalError::Closed(
            "failpoint commit-ack-lost: the append's acknowledgement was lost",
        ));
    }
    Ok(())
}

fn finish_all(batch: Vec<Box<dyn Pending>>, result: Result<CommitInfo>) {
    for p in batch {
        p.finish(result.clone());
    }
}

async fn run_committer(
    inner: Weak<Inner>,
    name: BranchName,
    rx: mpsc::UnboundedReceiver<Box<dyn Pending>>,
) {
    let mut c = Committer {
        name,
        rx,
        waiting: VecDeque::new(),
        attempts: 0,
        catch_up: false,
        returning: 0,
        answered_at: std::time::Instant::now(),
        hold: std::time::Duration::ZERO,
    };
    loop {
        // Waits holding no reference to the engine: dropping it ends the task.
        if c.waiting.is_empty() {
            match c.rx.recv().await {
                Some(p) => c.waiting.push_back(p),
                None => break,
            }
        }
        let Some(inner) = inner.upgrade() else { break };
        inner.pipeline(&mut c).await;
    }
}
