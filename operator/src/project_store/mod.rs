//! The operator's calls on a project's log, behind one trait so the
//! controllers do not care who holds the store.
//!
//! - [`local::LocalStore`]: the operator opened the store itself (a mongodb
//!   store, which many processes share; or an embedded one under
//!   `--embedded-root`, an operator run outside the cluster beside the files);
//! - [`remote::RemoteStore`]: an embedded store in a cluster, which only its
//!   owner pod may open (`store_owner`); the operator speaks the sidecar's
//!   admin commands to that pod's Service.
//!
//! Errors are the WAL's own (`WalError`), so the controllers' matches
//! (`BranchExists`, `UnknownBranch`, `Protected`, ...) hold for both.

pub mod local;
pub mod remote;

use argon_wal::{BranchInfo, CommitInfo, LogInfo, ReadPoint, Result, UserPrecondition, Wal};
use bson::Document;
use std::future::Future;
use std::pin::Pin;

/// What one call returns, boxed so the trait is usable as `dyn`.
pub type StoreCall<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What a reset did or would do, as the branch controller reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetReport {
    /// The head before the reset.
    pub old_head: CommitInfo,
    pub target: argon_wal::Seq,
    /// Documents the reset brings back, removes and changes, in all.
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    /// Per collection with a difference: `(namespace, added, removed, changed)`.
    pub collections: Vec<(String, u64, u64, u64)>,
    /// False for a dry run.
    pub applied: bool,
    /// The request had been applied before (`reset_branch_once`): nothing
    /// changed now.
    pub already_applied: bool,
}

/// The calls the controllers make on a project's log.
pub trait ProjectStore: Send + Sync {
    fn branch<'a>(&'a self, name: &'a str) -> StoreCall<'a, BranchInfo>;
    fn list_branches(&self) -> StoreCall<'_, Vec<BranchInfo>>;
    fn create_branch<'a>(
        &'a self,
        name: &'a str,
        parent: &'a str,
        at: ReadPoint,
    ) -> StoreCall<'a, BranchInfo>;
    fn delete_branch<'a>(&'a self, name: &'a str, force: bool) -> StoreCall<'a, ()>;
    /// A dry run (a preview) or a reset without a request identity.
    fn reset_branch<'a>(
        &'a self,
        name: &'a str,
        to: ReadPoint,
        dry_run: bool,
        backup: Option<&'a str>,
    ) -> StoreCall<'a, ResetReport>;
    /// A reset applied at most once per `request`, even when retried after
    /// a crash.
    fn reset_branch_once<'a>(
        &'a self,
        name: &'a str,
        to: ReadPoint,
        backup: Option<&'a str>,
        request: &'a str,
    ) -> StoreCall<'a, ResetReport>;
    fn set_protected<'a>(&'a self, name: &'a str, protected: bool) -> StoreCall<'a, ()>;
    fn log_info<'a>(&'a self, branch: &'a str) -> StoreCall<'a, LogInfo>;
    /// The project's users as stored, credentials included: `((db, name),
    /// stored document)`, ordered by database then name (`spec.users`).
    fn users(&self) -> StoreCall<'_, Vec<((String, String), Document)>>;
    /// Writes a whole stored user if `pre` holds at the append; `false`
    /// (nothing written) when it did not.
    fn put_user<'a>(
        &'a self,
        db: &'a str,
        name: &'a str,
        user: Document,
        pre: UserPrecondition,
    ) -> StoreCall<'a, bool>;
    /// Removes a user; `false` when there was none.
    fn drop_user<'a>(&'a self, db: &'a str, name: &'a str) -> StoreCall<'a, bool>;
    /// The WAL itself, when the operator holds the store: `spec.import`
    /// writes physical document operations that no admin command carries,
    /// so it needs it. `None` through an owner pod.
    fn wal(&self) -> Option<&Wal>;
}
