//! The crate's one error type. Every variant names what is wrong so that the
//! wire server can turn it into a MongoDB error reply without guessing.

use crate::types::{BranchId, CommitTime, Namespace, Seq};
use std::path::PathBuf;

pub type Result<T, E = WalError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("invalid branch name {name:?}: {reason}")]
    InvalidBranchName { name: String, reason: &'static str },

    #[error("invalid project name {name:?}: {reason}")]
    InvalidProjectName { name: String, reason: &'static str },

    #[error("unknown branch {name:?}")]
    UnknownBranch { name: String },

    #[error("branch {name:?} already exists")]
    BranchExists { name: String },

    #[error("branch {branch:?} has no point {point}: its head is seq {head}")]
    PointBeyondHead {
        branch: String,
        point: String,
        head: Seq,
    },

    #[error("branch {branch:?} did not exist at time {time} (its history starts at {starts})")]
    PointBeforeBranch {
        branch: String,
        time: CommitTime,
        starts: CommitTime,
    },

    #[error("branch {name:?} has children ({children}); delete them first or force")]
    HasChildren { name: String, children: String },

    #[error("branch {name:?} is protected: {reason}")]
    Protected { name: String, reason: &'static str },

    #[error("invalid operation: {0}")]
    InvalidOp(String),

    /// A write would give a unique index a key another document holds
    /// (`unique::check_put`); `key` is `{field: value}` of that key.
    #[error("duplicate key in index {} of {}: {}", .0.index, .0.ns, .0.key)]
    DuplicateKey(Box<DuplicateKey>),

    /// A document with arrays under two fields of one compound index
    /// cannot be indexed (MongoDB code 171).
    #[error("cannot index parallel arrays [{a}] [{b}]")]
    ParallelArrays { a: String, b: String },

    /// A retryable write whose session already ran a later one.
    #[error(
        "retryable write with txnNumber {txn_number} is prohibited: the session already ran txnNumber {latest}"
    )]
    RetryTooOld { txn_number: i64, latest: i64 },

    #[error("commit of {bytes} bytes exceeds the limit of {limit} bytes")]
    CommitTooLarge { bytes: usize, limit: usize },

    /// Another writer already holds `(branch, seq)`. The engine handles this
    /// internally (catch up, re-resolve, retry); callers of a `LogStore` see it.
    #[error("commit {seq} of branch {branch} already exists")]
    Conflict { branch: BranchId, seq: Seq },

    #[error("catalog record {seq} of project {project:?} already exists")]
    CatalogConflict { project: String, seq: Seq },

    #[error("gave up after {attempts} conflicting attempts to append to branch {branch:?}")]
    TooManyConflicts { branch: String, attempts: u32 },

    /// Another process is the branch's writer: the write (not applied) is
    /// to be sent there (see `feed::CommitFeed::defer_to_writer`).
    #[error("another process writes branch {branch:?} now; the write was not applied here")]
    NotWriter { branch: String },

    #[error("corrupt record in {}, at byte offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },

    #[error("malformed {what} record: {reason}")]
    Malformed { what: &'static str, reason: String },

    #[error("store directory {} is locked by another handle or process", dir.display())]
    Locked { dir: PathBuf },

    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("mongodb store: {context}: {source}")]
    Mongo {
        context: String,
        #[source]
        source: Box<mongodb::error::Error>,
    },

    /// A store reached through a server that refused the credentials or
    /// the command (MongoDB's 13 Unauthorized / 18 AuthenticationFailed):
    /// an operator holding the wrong key for a store's owner. `context`
    /// names the server and the command, never a credential.
    #[error("not authorized by {context}")]
    Unauthorized { context: String },

    #[error("store is closed: {0}")]
    Closed(&'static str),

    /// A large commit's chunks took so long to write that its writer gave
    /// up before claiming the seq (see `store/mongo.rs`): nothing was
    /// committed; retrying may succeed.
    #[error("writing a large commit's chunks took {seconds} s; the commit was abandoned, not made")]
    Abandoned { seconds: u64 },

    /// A read of the log skipped a commit (seq `found` where `expected`
    /// was due): an inconsistent read, retried, never applied.
    #[error("log of branch {branch} has a gap: read seq {found} where {expected} was due")]
    LogGap {
        branch: BranchId,
        expected: Seq,
        found: Seq,
    },
}

impl WalError {
    /// This error again, for each request of a group that failed with it
    /// (a catalog append of several callers): the store's errors keep
    /// their kind, anything else becomes an `InvalidOp` carrying its text.
    pub(crate) fn for_each_request(&self) -> WalError {
        match self {
            WalError::Mongo { context, source } => WalError::Mongo {
                context: context.clone(),
                source: source.clone(),
            },
            WalError::Io { path, source } => WalError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            WalError::Closed(why) => WalError::Closed(why),
            WalError::Unauthorized { context } => WalError::Unauthorized {
                context: context.clone(),
            },
            other => WalError::InvalidOp(other.to_string()),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WalError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn mongo(context: impl Into<String>, source: mongodb::error::Error) -> Self {
        WalError::Mongo {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// Whether retrying the same operation later may succeed: the store was
    /// unreachable or gave an inconsistent read. (A poisoned embedded store
    /// is `Closed`: it needs a reopen, not a retry.)
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            WalError::Mongo { .. } | WalError::LogGap { .. } | WalError::Abandoned { .. }
        )
    }

    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        WalError::Malformed {
            what,
            reason: reason.into(),
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            WalError::InvalidBranchName { .. } => "invalid_branch_name",
            WalError::InvalidProjectName { .. } => "invalid_project_name",
            WalError::UnknownBranch { .. } => "unknown_branch",
            WalError::BranchExists { .. } => "branch_exists",
            WalError::PointBeyondHead { .. } => "point_beyond_head",
            WalError::PointBeforeBranch { .. } => "point_before_branch",
            WalError::HasChildren { .. } => "has_children",
            WalError::Protected { .. } => "protected",
            WalError::InvalidOp(_) => "invalid_op",
            WalError::RetryTooOld { .. } => "retry_too_old",
            WalError::DuplicateKey(_) => "duplicate_key",
            WalError::ParallelArrays { .. } => "parallel_arrays",
            WalError::CommitTooLarge { .. } => "commit_too_large",
            WalError::Conflict { .. } => "conflict",
            WalError::CatalogConflict { .. } => "catalog_conflict",
            WalError::TooManyConflicts { .. } => "too_many_conflicts",
            WalError::NotWriter { .. } => "not_writer",
            WalError::Corrupt { .. } => "corrupt",
            WalError::Malformed { .. } => "malformed",
            WalError::Locked { .. } => "locked",
            WalError::Io { .. } => "io",
            WalError::Mongo { .. } => "mongo",
            WalError::Unauthorized { .. } => "unauthorized",
            WalError::Closed(_) => "closed",
            WalError::LogGap { .. } => "log_gap",
            WalError::Abandoned { .. } => "abandoned",
        }
    }
}

impl Clone for WalError {
    /// One failed group commit answers every writer in it; `std::io::Error`
    /// is not `Clone`, so an I/O error is rebuilt from its kind and message.
    fn clone(&self) -> Self {
        use WalError::*;
        match self {
            InvalidBranchName { name, reason } => InvalidBranchName {
                name: name.clone(),
                reason,
            },
            InvalidProjectName { name, reason } => InvalidProjectName {
                name: name.clone(),
                reason,
            },
            UnknownBranch { name } => UnknownBranch { name: name.clone() },
            BranchExists { name } => BranchExists { name: name.clone() },
            PointBeyondHead {
                branch,
                point,
                head,
            } => PointBeyondHead {
                branch: branch.clone(),
                point: point.clone(),
                head: *head,
            },
            PointBeforeBranch {
                branch,
                time,
                starts,
            } => PointBeforeBranch {
                branch: branch.clone(),
                time: *time,
                starts: *starts,
            },
            HasChildren { name, children } => HasChildren {
                name: name.clone(),
                children: children.clone(),
            },
            DuplicateKey(d) => DuplicateKey(d.clone()),
            ParallelArrays { a, b } => ParallelArrays {
                a: a.clone(),
                b: b.clone(),
            },
            RetryTooOld { txn_number, latest } => RetryTooOld {
                txn_number: *txn_number,
                latest: *latest,
            },
            Protected { name, reason } => Protected {
                name: name.clone(),
                reason,
            },
            InvalidOp(m) => InvalidOp(m.clone()),
            CommitTooLarge { bytes, limit } => CommitTooLarge {
                bytes: *bytes,
                limit: *limit,
            },
            Abandoned { seconds } => Abandoned { seconds: *seconds },
            Conflict { branch, seq } => Conflict {
                branch: *branch,
                seq: *seq,
            },
            CatalogConflict { project, seq } => CatalogConflict {
                project: project.clone(),
                seq: *seq,
            },
            TooManyConflicts { branch, attempts } => TooManyConflicts {
                branch: branch.clone(),
                attempts: *attempts,
            },
            NotWriter { branch } => NotWriter {
                branch: branch.clone(),
            },
            Corrupt {
                file,
                offset,
                reason,
            } => Corrupt {
                file: file.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Malformed { what, reason } => Malformed {
                what,
                reason: reason.clone(),
            },
            Locked { dir } => Locked { dir: dir.clone() },
            Io { path, source } => Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Mongo { context, source } => Mongo {
                context: context.clone(),
                source: source.clone(),
            },
            Unauthorized { context } => Unauthorized {
                context: context.clone(),
            },
            Closed(m) => Closed(m),
            LogGap {
                branch,
                expected,
                found,
            } => LogGap {
                branch: *branch,
                expected: *expected,
                found: *found,
            },
        }
    }
}

/// The outcome of [`crate::Wal::write`] when it does not commit.
#[derive(Debug, thiserror::Error)]
pub enum WriteError<E> {
    /// The caller's `resolve` refused the write; nothing was appended for it.
    #[error("write rejected by its resolver")]
    Rejected(E),
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// Which unique index refused a write, and the key (`{field: value}`).
#[derive(Clone, Debug, PartialEq)]
pub struct DuplicateKey {
    pub ns: Namespace,
    pub index: String,
    pub pattern: bson::Document,
    pub key: bson::Document,
}
