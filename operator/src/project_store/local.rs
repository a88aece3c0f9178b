//! The store opened by the operator itself: every call is the `Wal`'s own.

use super::{ProjectStore, ResetReport, StoreCall};
use argon_wal::{BranchInfo, LogInfo, ReadPoint, ResetOutcome, UserPrecondition, Wal};
use bson::Document;

pub struct LocalStore(pub Wal);

impl From<ResetOutcome> for ResetReport {
    fn from(o: ResetOutcome) -> ResetReport {
        let p = &o.preview;
        ResetReport {
            old_head: o.old_head,
            target: o.target,
            added: p.added() as u64,
            removed: p.removed() as u64,
            changed: p.changed() as u64,
            collections: p
                .collections
                .iter()
                .map(|c| {
                    (
                        c.ns.to_string(),
                        c.added.len() as u64,
                        c.removed.len() as u64,
                        c.changed.len() as u64,
                    )
                })
                .collect(),
            applied: o.applied,
            already_applied: o.already_applied,
        }
    }
}

impl ProjectStore for LocalStore {
    fn branch<'a>(&'a self, name: &'a str) -> StoreCall<'a, BranchInfo> {
        Box::pin(self.0.branch(name))
    }

    fn list_branches(&self) -> StoreCall<'_, Vec<BranchInfo>> {
        Box::pin(self.0.list_branches())
    }

    fn create_branch<'a>(
        &'a self,
        name: &'a str,
        parent: &'a str,
        at: ReadPoint,
    ) -> StoreCall<'a, BranchInfo> {
        Box::pin(self.0.create_branch(name, parent, at))
    }

    fn delete_branch<'a>(&'a self, name: &'a str, force: bool) -> StoreCall<'a, ()> {
        Box::pin(self.0.delete_branch(name, force))
    }

    fn reset_branch<'a>(
        &'a self,
        name: &'a str,
        to: ReadPoint,
        dry_run: bool,
        backup: Option<&'a str>,
    ) -> StoreCall<'a, ResetReport> {
        Box::pin(async move { Ok(self.0.reset_branch(name, to, dry_run, backup).await?.into()) })
    }

    fn reset_branch_once<'a>(
        &'a self,
        name: &'a str,
        to: ReadPoint,
        backup: Option<&'a str>,
        request: &'a str,
    ) -> StoreCall<'a, ResetReport> {
        Box::pin(async move {
            Ok(self
                .0
                .reset_branch_once(name, to, backup, request)
                .await?
                .into())
        })
    }

    fn set_protected<'a>(&'a self, name: &'a str, protected: bool) -> StoreCall<'a, ()> {
        Box::pin(self.0.set_protected(name, protected))
    }

    fn log_info<'a>(&'a self, branch: &'a str) -> StoreCall<'a, LogInfo> {
        Box::pin(self.0.log_info(branch))
    }

    fn users(&self) -> StoreCall<'_, Vec<((String, String), Document)>> {
        Box::pin(async move {
            let access = self.0.access().await?;
            Ok(access
                .users()
                .map(|(id, d)| (id.clone(), d.clone()))
                .collect())
        })
    }

    fn put_user<'a>(
        &'a self,
        db: &'a str,
        name: &'a str,
        user: Document,
        pre: UserPrecondition,
    ) -> StoreCall<'a, bool> {
        Box::pin(self.0.put_user(db, name, user, pre))
    }

    fn drop_user<'a>(&'a self, db: &'a str, name: &'a str) -> StoreCall<'a, bool> {
        Box::pin(self.0.drop_user(db, name))
    }

    fn wal(&self) -> Option<&Wal> {
        Some(&self.0)
    }
}
