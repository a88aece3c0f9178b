//! A branch's head: an incarnation's newest state, loaded from its newest
//! snapshot and caught up from the log (first from the writer's feed of
//! recent commits, see `feed`); how fresh a read of it must be; and its
//! position without its documents, for catalog work.
//!
//! Invariants: a catch-up folds only the commit at head + 1
//! (`check_next`: no holes) and stops at a seal; a head is served without
//! a catch-up only when one that started after the request completed, or
//! within `read_staleness`, and never once sealed.

use super::{Head, Inner, PAGE, Reach, StoredPosition, UNKNOWN_HEAD, Wal, lock, position};
use crate::catalog::Incarnation;
use crate::error::{Result, WalError};
use crate::record::Commit;
use crate::state::BranchState;
use crate::types::{BranchId, BranchName, CommitInfo, CommitTime, Seq};
use std::sync::Arc;

impl Wal {
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
}

impl Inner {
    pub(super) fn head_lock(&self, id: BranchId) -> Arc<tokio::sync::Mutex<Head>> {
        lock(&self.heads).entry(id).or_default().clone()
    }

    pub(super) fn seed_head(&self, id: BranchId, state: BranchState) {
        let head = self.head_lock(id);
        if let Ok(mut h) = head.try_lock()
            && h.state.is_none()
        {
            lock(&self.latest).insert(id, state.clone());
            h.state = Some(state);
        }
    }

    pub(super) fn set_head(&self, id: BranchId, h: &mut Head, state: BranchState) {
        lock(&self.latest).insert(id, state.clone());
        h.state = Some(state);
    }

    /// The last commit of `inc` the store holds (or its base's position),
    /// its documents not read.
    pub(super) async fn stored_head(&self, inc: &Incarnation) -> Result<CommitInfo> {
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

    /// [`head_of`](Self::head_of) without the documents, for catalog work
    /// (issue 17 item 7: creating or deleting a branch costs the same for
    /// an empty parent and a 10 GB one): the head's position, and its state
    /// only when this process already holds it (then caught up as
    /// `head_of` does). Otherwise the store's last commit, published if it
    /// was not (as a catch-up to the end does). A branch whose last commit
    /// is a seal its writer did not complete takes `head_of`'s path, which
    /// completes it.
    pub(super) async fn head_position(
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
    pub(super) async fn catch_up(
        &self,
        inc: &Incarnation,
        h: &mut Head,
        reach: Reach,
    ) -> Result<()> {
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
    pub(super) async fn head_of(&self, name: &BranchName) -> Result<(Incarnation, BranchState)> {
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
    pub(super) async fn read_head(
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
pub(super) fn check_next(branch: BranchId, state: &BranchState, c: &Commit) -> Result<()> {
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
