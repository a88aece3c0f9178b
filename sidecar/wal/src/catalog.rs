//! The branch catalog: which incarnation each branch name points at, and
//! how every incarnation's history starts. A pure fold of `CatalogRecord`s.
//!
//! Invariants:
//! - Records are applied in catalog seq order with no holes; each was
//!   validated against the complete prefix before it was appended (the store
//!   refuses a second record with the same seq), so replay never finds an
//!   invalid one. `apply` still checks and reports `Malformed` if it does.
//! - Ids minted by the record at catalog seq `n` are `4n + k` (k < 4): unique
//!   because `n` is.
//! - An incarnation's own commits are numbered from `start_seq() + 1`.

use crate::error::{Result, WalError};
use crate::record::{CatalogEvent, CatalogRecord};
use crate::types::{BranchId, BranchName, CommitInfo, CommitTime, Seq};
use std::collections::{BTreeMap, HashMap};

/// Where an incarnation's history comes from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Base {
    /// `main`: starts empty.
    Root,
    /// A branch: the parent incarnation's state at `seq` (time `time`) is its `Seq(0)`.
    Fork {
        parent: BranchId,
        seq: Seq,
        time: CommitTime,
    },
    /// After a reset: the previous incarnation's history up to `to`; own
    /// commits continue at `to + 1`.
    Reset {
        previous: BranchId,
        to: Seq,
        sealed_at: CommitInfo,
        /// The request that made this reset (`Seal::Reset`'s `request`).
        request: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Incarnation {
    pub id: BranchId,
    pub name: BranchName,
    pub base: Base,
    /// When the catalog record creating it was written.
    pub created: CommitTime,
    /// Replaced by a reset (`Some(new id)`) or deleted.
    pub superseded_by: Option<BranchId>,
    pub deleted: bool,
}

impl Incarnation {
    pub fn start_seq(&self) -> Seq {
        match self.base {
            Base::Reset { to, .. } => to,
            _ => Seq::ZERO,
        }
    }

    /// Every commit of this incarnation is strictly later than this (commit
    /// times strictly increase along a branch's whole history, across forks
    /// and resets; see `Wal`'s `commit_time`).
    pub fn min_time(&self) -> CommitTime {
        match self.base {
            Base::Root => CommitTime(i64::MIN),
            Base::Fork { time, .. } => time,
            Base::Reset { sealed_at, .. } => sealed_at.time,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Catalog {
    /// Last applied record.
    pub seq: Seq,
    pub incarnations: HashMap<BranchId, Incarnation>,
    /// Live branch names.
    pub names: BTreeMap<BranchName, BranchId>,
    /// Users and protected branches (`access`); shared, so cloning the
    /// catalog (every branch operation does) does not copy every user.
    pub access: std::sync::Arc<crate::access::ProjectAccess>,
}

impl Catalog {
    pub fn next_id(&self, k: u64) -> BranchId {
        BranchId(self.seq.next().0 * 4 + k)
    }

    pub fn live(&self, name: &BranchName) -> Option<&Incarnation> {
        self.names
            .get(name)
            .and_then(|id| self.incarnations.get(id))
    }

    pub fn get(&self, id: BranchId) -> Option<&Incarnation> {
        self.incarnations.get(&id)
    }

    /// The newest deleted incarnation named `name` (when it is not live).
    pub fn deleted(&self, name: &BranchName) -> Option<&Incarnation> {
        self.incarnations
            .values()
            .filter(|i| i.deleted && &i.name == name)
            .max_by_key(|i| i.id)
    }

    /// The incarnation a branch forked from (walking back through resets),
    /// with the fork point; `None` for `main`.
    pub fn fork_of(&self, id: BranchId) -> Option<(BranchId, Seq)> {
        let mut cur = self.incarnations.get(&id)?;
        loop {
            match &cur.base {
                Base::Root => return None,
                Base::Fork { parent, seq, .. } => return Some((*parent, *seq)),
                Base::Reset { previous, .. } => cur = self.incarnations.get(previous)?,
            }
        }
    }

    /// True when `request` already reset the branch whose incarnation is
    /// `id` (this one or one it replaced): a retried reset must not run twice.
    pub fn reset_applied(&self, id: BranchId, request: &str) -> bool {
        let mut cur = self.incarnations.get(&id);
        while let Some(inc) = cur {
            match &inc.base {
                Base::Reset {
                    previous,
                    request: r,
                    ..
                } => {
                    if r.as_deref() == Some(request) {
                        return true;
                    }
                    cur = self.incarnations.get(previous);
                }
                _ => return false,
            }
        }
        false
    }

    /// Live branches that forked from any incarnation of `name`.
    pub fn children(&self, name: &BranchName) -> Vec<BranchName> {
        self.names
            .iter()
            .filter(|(child, id)| {
                *child != name
                    && self
                        .fork_of(**id)
                        .and_then(|(p, _)| self.incarnations.get(&p))
                        .is_some_and(|p| &p.name == name)
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn add(&mut self, inc: Incarnation) {
        if !inc.deleted {
            self.names.insert(inc.name.clone(), inc.id);
        }
        self.incarnations.insert(inc.id, inc);
    }

    pub fn apply(&mut self, rec: &CatalogRecord) -> Result<()> {
        let bad = |reason: String| WalError::malformed("catalog event", reason);
        if rec.seq != self.seq.next() {
            return Err(bad(format!(
                "record {} follows {}: the catalog has a hole",
                rec.seq, self.seq
            )));
        }
        match &rec.event {
            CatalogEvent::CreateRoot { id, name } => {
                if self.names.contains_key(name) {
                    return Err(bad(format!("{name} created twice")));
                }
                self.add(Incarnation {
                    id: *id,
                    name: name.clone(),
                    base: Base::Root,
                    created: rec.time,
                    superseded_by: None,
                    deleted: false,
                });
            }
            CatalogEvent::CreateBranch {
                id,
                name,
                parent,
                fork_seq,
                fork_time,
            } => {
                if self.names.contains_key(name) {
                    return Err(bad(format!("{name} created while it exists")));
                }
                if !self.incarnations.contains_key(parent) {
                    return Err(bad(format!("{name} forks from unknown {parent}")));
                }
                self.add(Incarnation {
                    id: *id,
                    name: name.clone(),
                    base: Base::Fork {
                        parent: *parent,
                        seq: *fork_seq,
                        time: *fork_time,
                    },
                    created: rec.time,
                    superseded_by: None,
                    deleted: false,
                });
            }
            CatalogEvent::Reset {
                name,
                id,
                previous,
                to,
                sealed_at,
                backup,
                request,
            } => {
                if self.names.get(name) != Some(previous) {
                    return Err(bad(format!("reset of {name} from a stale incarnation")));
                }
                if let Some(prev) = self.incarnations.get_mut(previous) {
                    prev.superseded_by = Some(*id);
                }
                self.add(Incarnation {
                    id: *id,
                    name: name.clone(),
                    base: Base::Reset {
                        previous: *previous,
                        to: *to,
                        sealed_at: *sealed_at,
                        request: request.clone(),
                    },
                    created: rec.time,
                    superseded_by: None,
                    deleted: false,
                });
                if let Some((bname, bid)) = backup
                    && !self.names.contains_key(bname)
                {
                    self.add(Incarnation {
                        id: *bid,
                        name: bname.clone(),
                        base: Base::Fork {
                            parent: *previous,
                            seq: sealed_at.seq,
                            time: sealed_at.time,
                        },
                        created: rec.time,
                        superseded_by: None,
                        deleted: false,
                    });
                }
            }
            CatalogEvent::Access(event) => std::sync::Arc::make_mut(&mut self.access).apply(event),
            CatalogEvent::Delete { name, id } => {
                if self.names.get(name) != Some(id) {
                    return Err(bad(format!("delete of {name} from a stale incarnation")));
                }
                self.names.remove(name);
                if let Some(inc) = self.incarnations.get_mut(id) {
                    inc.deleted = true;
                }
            }
        }
        self.seq = rec.seq;
        Ok(())
    }
}
