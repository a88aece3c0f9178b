//! Argon's WAL engine: the commit log, branches as pointers into it,
//! materialized branch state, time travel, and the stores (embedded and
//! mongodb) behind one trait. The wire server and the operator both use it.
//!
//! What this crate owns:
//! - the log record format (`record`) and its two stores (`store::embedded`,
//!   `store::mongo`) behind the `LogStore` trait;
//! - the branch catalog (`catalog`): names, forks, resets, deletes, and the
//!   project's users and protected branches (`access`);
//! - materialized state (`state`) with O(1) forks, snapshots (`snapshot`),
//!   the canonical `_id` key (`idkey`) and secondary-index keys (`indexkey`)
//!   with per-index key maps for O(log n) unique checks;
//! - the engine (`engine::Wal`): optimistic, group-committed writes,
//!   reads at any point, branch operations, diff (`diff`);
//! - multi-statement transactions (`txn`): a snapshot, its own writes, and
//!   the write-conflict check against the head they commit on.
//!
//! It does not parse MongoDB queries or updates: a write's `resolve` closure
//! (from the wire server) turns a command into physical `DocOp`s.
//! See `DESIGN.md` beside this crate for the formats and the consistency model.

pub mod access;
mod catalog;
mod collection;
pub mod diff;
pub mod doc;
mod engine;
pub mod error;
pub mod failpoints;
pub mod feed;
pub mod idkey;
pub mod indexkey;
pub mod lease;
pub mod materialized;
mod materializer;
pub mod observer;
pub mod rawdoc;
pub mod record;
pub mod retry;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod txn;
pub mod types;
pub mod unique;

pub use access::{AccessEvent, ProjectAccess, UserPrecondition};
pub use diff::{CollectionDiff, Diff};
pub use doc::Doc;
pub use engine::{
    BranchInfo, Clock, LineageEntry, LogInfo, PER_COMMIT_COST, ResetOutcome, RetryableOutcome,
    SnapshotPolicy, Wal, WalOptions,
};
pub use error::{Result, WalError, WriteError};
pub use feed::CommitFeed;
pub use idkey::IdKey;
pub use indexkey::{IndexKey, IndexKeyError};
pub use lease::WriterLease;
pub use observer::WalObserver;
pub use record::{Commit, DocOp, LoggedOp};
pub use retry::{RetryCheck, RetryEntry, RetryKey, RetryRecord, StoredReply};
pub use state::{
    BranchState, CollectionState, IndexPosition, IndexShape, KeyInterval, ScanDirection,
};
pub use store::embedded::{EmbeddedOptions, EmbeddedStore, Recovery};
pub use store::mongo::MongoStore;
pub use store::{LogStats, LogStore};
pub use txn::{Savepoint, Transaction, TxnConflict};
pub use types::{
    BranchId, BranchName, CommitInfo, CommitTime, ForkPoint, Namespace, ReadPoint, Seq,
};
pub use unique::IndexFilter;
