//! Keeps the materialized store (`materialized`) caught up with the log, so
//! that a view of any `(branch, seq)` can be read from it (DESIGN.md,
//! "Caught up and rebuilt: the log stays the truth").
//!
//! Today the store is caught up when a view is asked for
//! (`Wal::materialized_view`); the heads the engine serves are still the
//! in-memory `BranchState`s. Applying each commit as the committer makes
//! it, and serving reads from views, are the next steps of issue 17.
//!
//! Invariants:
//! - A commit reaches the store only from the log (`read_commits`), so only
//!   once it is durable there: the store never holds what the log lost.
//! - Per incarnation, commits are applied in seq order from the store's
//!   applied marker (or the incarnation's start), never past a gap.
//! - A level's commits are applied only after every level below it in the
//!   view is caught up to that level's bound: `apply` reads pre-images
//!   (for index entries) through the view, so those levels must be whole.

use crate::catalog::Catalog;
use crate::error::{Result, WalError};
use crate::materialized::{Materialized, ProjectNo, View, ViewBase};
use crate::record::Commit;
use crate::store::LogStore;
use crate::types::{BranchId, Seq};
use std::collections::HashMap;
use std::sync::Arc;

/// Commits read from the log per page while catching up.
const PAGE: usize = 256;

/// One project's link from its log to the process's materialized store.
pub(crate) struct Materializer {
    store: Arc<Materialized>,
    project: ProjectNo,
    /// One catch-up at a time: two would read and apply the same commits
    /// (harmless, `apply` skips what it holds, but wasted work).
    gate: tokio::sync::Mutex<()>,
}

impl Materializer {
    pub(crate) fn new(store: Arc<Materialized>, project: &str) -> Result<Materializer> {
        let project = store.project(project)?;
        Ok(Materializer {
            store,
            project,
            gate: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn store(&self) -> &Arc<Materialized> {
        &self.store
    }

    /// The view of incarnation `inc` at `seq`, the store caught up to it
    /// (every level to its bound) from `log`.
    pub(crate) async fn view(
        &self,
        log: &dyn LogStore,
        project: &str,
        cat: &Catalog,
        inc: BranchId,
        seq: Seq,
    ) -> Result<View> {
        let bases = Bases::of(cat);
        let view = self.store.view(self.project, inc, seq, |b| bases.base(b))?;
        let _one = self.gate.lock().await;
        // Deepest level first (module invariant).
        for level in view.levels().iter().rev() {
            self.catch_up(log, project, &bases, cat, level.inc, level.bound)
                .await?;
        }
        Ok(view)
    }

    /// Applies the commits of `inc` after the store's marker up to `upto`.
    async fn catch_up(
        &self,
        log: &dyn LogStore,
        project: &str,
        bases: &Arc<Bases>,
        cat: &Catalog,
        inc: BranchId,
        upto: Seq,
    ) -> Result<()> {
        let start = cat
            .get(inc)
            .ok_or_else(|| WalError::malformed("catalog", format!("incarnation {inc} is unknown")))?
            .start_seq();
        let mut at = match self.store.applied(self.project, inc)? {
            Some((seq, _)) => seq.max(start),
            None => start,
        };
        while at < upto {
            let page = log.read_commits(project, inc, at, upto, PAGE).await?;
            let more = page.more;
            let commits = page.commits;
            if commits.is_empty() {
                break;
            }
            at = self.apply_page(bases, inc, at, commits).await?;
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
        Ok(())
    }

    /// Applies `commits` (consecutive, from `at + 1`) off the async runtime:
    /// each is a KV batch, and a page of large commits is real work.
    async fn apply_page(
        &self,
        bases: &Arc<Bases>,
        inc: BranchId,
        at: Seq,
        commits: Vec<Commit>,
    ) -> Result<Seq> {
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
                store.apply(&view, c)?;
                at = c.seq;
            }
            Ok(at)
        })
        .await
        .map_err(|e| WalError::malformed("materialized store", format!("apply task: {e}")))?
    }
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
