//! Branches as the catalog records them: create, list, describe, delete
//! and reset, and the catalog in memory, refreshed from the store
//! (`catalog_appends` groups its appends).
//!
//! Invariants: creating a branch appends one catalog record and reads no
//! documents; a delete or a reset first seals the incarnation with a
//! commit at head + 1 (a writer that has not seen it conflicts), then
//! records it in the catalog, and whoever finds a seal without its record
//! completes it (`complete_seal`).

use super::{
    BranchInfo, Inner, LineageEntry, LogInfo, Reach, ResetOutcome, UNKNOWN_HEAD, Wal, lock,
    position,
};
use crate::catalog::{Catalog, Incarnation};
use crate::diff::Diff;
use crate::error::{Result, WalError};
use crate::record::{CatalogEvent, Commit, EncodedCommit, Seal};
use crate::store::LogStats;
use crate::types::{BranchId, BranchName, CommitInfo, CommitTime, ForkPoint, ReadPoint, Seq};

impl Wal {
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

impl Inner {
    pub(super) async fn refresh(&self, cat: &mut Catalog) -> Result<()> {
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
    pub(super) async fn refresh_since(
        &self,
        cat: &mut Catalog,
        requested: std::time::Instant,
    ) -> Result<()> {
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
    pub(super) async fn live(&self, name: &BranchName) -> Result<Incarnation> {
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

    pub(super) async fn incarnation(&self, id: BranchId) -> Result<Incarnation> {
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

    /// Turns a sealed incarnation's seal into its catalog record, if nobody
    /// has yet (the sealer may have died between the two writes).
    pub(super) async fn complete_seal(&self, id: BranchId) -> Result<()> {
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

    pub(super) fn check_attempts(&self, name: &BranchName, attempts: u32) -> Result<()> {
        if attempts > self.options.max_conflict_retries {
            return Err(WalError::TooManyConflicts {
                branch: name.to_string(),
                attempts,
            });
        }
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
