//! Keeps the materialized store (`materialized`) caught up with the log, so
//! that a view of any `(branch, seq)` can be read from it (DESIGN.md,
//! "Caught up and rebuilt: the log stays the truth").
//!
//! Two paths bring it up to date. The committer offers each commit it
//! appended (`offer`: a bounded queue, never waited on; a background task
//! applies them in batches), so the store follows this process's writes
//! without a log read. Whatever that path skipped — commits of other
//! processes, a full queue, a store that was empty or behind — is caught up
//! from the log when a view is asked for (`view`). The heads the engine
//! serves are still the in-memory `BranchState`s: serving reads from views
//! is the next step of issue 17.
//!
//! Invariants:
//! - A commit reaches the store only once it is durable in the log (read
//!   from it, or offered after its append was acknowledged): the store
//!   never holds what the log lost.
//! - Per incarnation, commits are applied in seq order from the store's
//!   applied marker (or the incarnation's start), never past a gap.
//! - A level's commits are applied only after every level below it in the
//!   view is caught up to that level's bound: `apply` reads pre-images
//!   (for index entries) through the view, so those levels must be whole.
//! - A view is handed out only when every level is caught up to its bound.
//!   A store at its disk bound (`materialized::budget`) applies nothing
//!   more: a view of a point it does not hold is `None`, and the engine
//!   replays that point from the log instead.

use crate::catalog::Catalog;
use crate::error::{Result, WalError};
use crate::materialized::{Applied, Materialized, ProjectNo, View, ViewBase};
use crate::record::{Commit, EncodedCommit};
use crate::store::LogStore;
use crate::types::{BranchId, Seq};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Commits read from the log per page while catching up.
const PAGE: usize = 256;

/// Appended commits waiting for the background apply; when it is full the
/// rest are left to the catch-up (a commit's body is shared, not copied).
const QUEUE: usize = 1024;

/// Appended commits applied per blocking task.
const APPLY_BATCH: usize = 64;

/// One project's link from its log to the process's materialized store.
pub(crate) struct Materializer {
    store: Arc<Materialized>,
    project: ProjectNo,
    /// One catch-up at a time: two would read and apply the same commits
    /// (harmless, `apply` skips what it holds, but wasted work).
    gate: tokio::sync::Mutex<()>,
    /// Bases of the incarnations seen (they never change once created).
    bases: Mutex<HashMap<BranchId, ViewBase>>,
    appended: mpsc::Sender<EncodedCommit>,
}

/// The receiving end of `offer`'s queue, for `apply_appended`'s task.
pub(crate) type AppendedQueue = mpsc::Receiver<EncodedCommit>;

impl Materializer {
    /// The materializer, and the queue its owner must drain with
    /// [`apply_appended`](Self::apply_appended).
    ///
    /// The store numbers the project by its name *and* its log's creation
    /// time (`ProjectRecord::created`): a store kept while its log was
    /// replaced (a data directory deleted and the project created again)
    /// holds versions at the same `(incarnation, seq)` that the new log
    /// never wrote; under a new number they are never read, and the new
    /// log is caught up from its start.
    pub(crate) fn new(
        store: Arc<Materialized>,
        project: &str,
        created: crate::types::CommitTime,
    ) -> Result<(Materializer, AppendedQueue)> {
        let project = store.project(&format!("{project}\0{}", created.0))?;
        let (appended, queue) = mpsc::channel(QUEUE);
        Ok((
            Materializer {
                store,
                project,
                gate: tokio::sync::Mutex::new(()),
                bases: Mutex::new(HashMap::new()),
                appended,
            },
            queue,
        ))
    }

    /// Offers a commit whose append was acknowledged; never waits.
    pub(crate) fn offer(&self, commit: &EncodedCommit) {
        // Full or closed: the catch-up applies it when a view needs it.
        let _ = self.appended.try_send(commit.clone());
    }

    /// Whether the bases of `inc` and of every incarnation below it are
    /// known (else the owner calls `note_bases` with its catalog first).
    pub(crate) fn knows_chain(&self, inc: BranchId) -> bool {
        let bases = lock(&self.bases);
        let mut cur = inc;
        for _ in 0..crate::materialized::view::MAX_LEVELS {
            cur = match bases.get(&cur) {
                None => return false,
                Some(ViewBase::Root) => return true,
                Some(ViewBase::Fork { parent, .. }) => *parent,
                Some(ViewBase::Reset { previous, .. }) => *previous,
            };
        }
        false
    }

    pub(crate) fn note_bases(&self, cat: &Catalog) {
        let mut bases = lock(&self.bases);
        for (id, inc) in &cat.incarnations {
            bases
                .entry(*id)
                .or_insert_with(|| ViewBase::from(&inc.base));
        }
    }

    /// Applies appended commits (off the runtime), each only where the
    /// store is exactly one behind it and every lower level of its view is
    /// complete (module invariants); the rest wait for a catch-up. A full
    /// store stops the batch. Errors are logged: the catch-up meets them
    /// again and reports them.
    pub(crate) async fn apply_appended(&self, commits: Vec<EncodedCommit>) {
        let bases = Arc::new(Bases(lock(&self.bases).clone()));
        let (store, project) = (Arc::clone(&self.store), self.project);
        let _one = self.gate.lock().await;
        let applied = tokio::task::spawn_blocking(move || -> Result<()> {
            for encoded in &commits {
                let inc = encoded.branch;
                let before = Seq(encoded.seq.0.saturating_sub(1));
                if applied_or_start(&store, project, &bases, inc)? != before {
                    continue;
                }
                let view = store.view(project, inc, before, |b| bases.base(b))?;
                let mut complete = true;
                for level in &view.levels()[1..] {
                    complete &=
                        applied_or_start(&store, project, &bases, level.inc)? >= level.bound;
                }
                if complete && store.apply(&view, &encoded.decode()?)? == Applied::Full {
                    break;
                }
            }
            Ok(())
        })
        .await;
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "materialized store: applying appended commits failed; views catch up from the log");
            }
            Err(e) => tracing::warn!(error = %e, "materialized store: apply task failed"),
        }
    }

    pub(crate) fn project(&self) -> ProjectNo {
        self.project
    }

    pub(crate) fn store(&self) -> &Arc<Materialized> {
        &self.store
    }

    /// The view of incarnation `inc` at `seq`, the store caught up to it
    /// (every level to its bound) from `log`; `None` when the store is full
    /// before it holds that point (module invariants).
    pub(crate) async fn view(
        &self,
        log: &dyn LogStore,
        project: &str,
        cat: &Catalog,
        inc: BranchId,
        seq: Seq,
    ) -> Result<Option<View>> {
        self.note_bases(cat);
        let bases = Bases::of(cat);
        let view = self.store.view(self.project, inc, seq, |b| bases.base(b))?;
        let _one = self.gate.lock().await;
        // Deepest level first (module invariant).
        for level in view.levels().iter().rev() {
            if !self
                .catch_up(log, project, &bases, cat, level.inc, level.bound)
                .await?
            {
                return Ok(None);
            }
        }
        Ok(Some(view))
    }

    /// Applies the commits of `inc` after the store's marker up to `upto`;
    /// `false` when the store filled up before it got there.
    async fn catch_up(
        &self,
        log: &dyn LogStore,
        project: &str,
        bases: &Arc<Bases>,
        cat: &Catalog,
        inc: BranchId,
        upto: Seq,
    ) -> Result<bool> {
        let start = cat
            .get(inc)
            .ok_or_else(|| WalError::malformed("catalog", format!("incarnation {inc} is unknown")))?
            .start_seq();
        let mut at = match self.store.applied(self.project, inc)? {
            Some((seq, _)) => seq.max(start),
            None => start,
        };
        while at < upto {
            // A full store would read commits from the log it cannot apply.
            if !self.store.has_room() {
                return Ok(false);
            }
            let page = log.read_commits(project, inc, at, upto, PAGE).await?;
            let more = page.more;
            let commits = page.commits;
            if commits.is_empty() {
                break;
            }
            let full;
            (at, full) = self.apply_page(bases, inc, at, commits).await?;
            if full {
                return Ok(false);
            }
            if !more {
                break;
            }
        }
        if at < upto {
            return Err(WalError::malformed(
                "log",
                format!("incarnation {inc} ends at {at}, a view reads it up to {upto}"),
            ));
        }
        Ok(true)
    }

    /// Applies `commits` (consecutive, from `at + 1`) off the async runtime:
    /// each is a KV batch, and a page of large commits is real work. Returns
    /// the last seq applied and whether the store filled up before the end.
    async fn apply_page(
        &self,
        bases: &Arc<Bases>,
        inc: BranchId,
        at: Seq,
        commits: Vec<Commit>,
    ) -> Result<(Seq, bool)> {
        let (store, project, bases) = (Arc::clone(&self.store), self.project, Arc::clone(bases));
        tokio::task::spawn_blocking(move || {
            let mut at = at;
            for c in &commits {
                if c.branch != inc || c.seq != at.next() {
                    return Err(WalError::malformed(
                        "log",
                        format!(
                            "commit {}@{} read after {inc}@{at} while catching up",
                            c.branch, c.seq
                        ),
                    ));
                }
                let view = store.view(project, inc, at, |b| bases.base(b))?;
                if store.apply(&view, c)? == Applied::Full {
                    return Ok((at, true));
                }
                at = c.seq;
            }
            Ok((at, false))
        })
        .await
        .map_err(|e| WalError::malformed("materialized store", format!("apply task: {e}")))?
    }
}

/// Receives up to `APPLY_BATCH` appended commits (waiting for the first).
pub(crate) async fn next_appended(queue: &mut AppendedQueue) -> Option<Vec<EncodedCommit>> {
    let first = queue.recv().await?;
    let mut batch = vec![first];
    while batch.len() < APPLY_BATCH {
        match queue.try_recv() {
            Ok(c) => batch.push(c),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The store's applied position of `inc`, or where its own commits start.
fn applied_or_start(
    store: &Materialized,
    project: ProjectNo,
    bases: &Bases,
    inc: BranchId,
) -> Result<Seq> {
    let start = match bases.base(inc) {
        Some(ViewBase::Reset { to, .. }) => to,
        _ => Seq::ZERO,
    };
    Ok(store
        .applied(project, inc)?
        .map_or(start, |(seq, _)| seq.max(start)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Filled by single inserts: a panic elsewhere cannot leave it torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The bases of a catalog's incarnations, as views need them (owned, so a
/// blocking task can build views).
struct Bases(HashMap<BranchId, ViewBase>);

impl Bases {
    fn of(cat: &Catalog) -> Arc<Bases> {
        Arc::new(Bases(
            cat.incarnations
                .iter()
                .map(|(id, inc)| (*id, ViewBase::from(&inc.base)))
                .collect(),
        ))
    }

    fn base(&self, id: BranchId) -> Option<ViewBase> {
        self.0.get(&id).copied()
    }
}
