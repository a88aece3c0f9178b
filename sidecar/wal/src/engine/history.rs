//! A branch's past: the seq a `ReadPoint` names, the time of a seq, the
//! state at any seq (folded from the nearest checkpoint or snapshot, else
//! from the base: the parent's state at the fork point, or the previous
//! incarnation's after a reset), diffs and a reset's preview.
//!
//! Invariant: every state is the fold of the log; snapshots, checkpoints
//! and the materialized store only shorten the fold (a snapshot that cannot
//! be read is replaced by replay, which gives the same state).

use super::heads::check_next;
use super::{CHECKPOINTS, Inner, PAGE, UNKNOWN_HEAD, Wal, lock, position};
use crate::catalog::{Base, Incarnation};
use crate::diff::{self, Diff};
use crate::error::{Result, WalError};
use crate::snapshot;
use crate::state::BranchState;
use crate::types::{BranchId, BranchName, CommitInfo, CommitTime, ReadPoint, Seq};
use futures::future::BoxFuture;

impl Wal {
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

impl Inner {
    /// A reset's preview: what changes going from the head (at `head`;
    /// `held` when this process holds it) back to `target`. From the log
    /// between them when the target is in the incarnation's own history
    /// and no op in between drops or renames a collection (`LogDiff`: it
    /// reads what changed since the target, not the data); otherwise from
    /// the two states, and then the target's state is handed back, to seed
    /// the new incarnation's head.
    pub(super) async fn reset_preview(
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

    /// The seq of `inc` that `at` names, checked against the head.
    pub(super) async fn resolve_point(
        &self,
        inc: &Incarnation,
        head: Seq,
        at: ReadPoint,
    ) -> Result<Seq> {
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
    pub(super) fn time_of<'a>(
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
    pub(super) fn base_state<'a>(
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
    pub(super) async fn best_base(
        &self,
        inc: &Incarnation,
        upto: Seq,
    ) -> Result<Option<BranchState>> {
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

    pub(super) fn remember_checkpoint(&self, id: BranchId, state: &BranchState) {
        let mut cps = lock(&self.checkpoints);
        cps.insert((id, state.seq()), state.clone());
        while cps.len() > CHECKPOINTS {
            cps.pop_first();
        }
    }

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

    /// The state of incarnation `id` at `seq` (which the caller checked is
    /// not beyond the head). Folds from the nearest snapshot or checkpoint,
    /// else from the base (the parent's state at the fork point).
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
}
