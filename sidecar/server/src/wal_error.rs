//! The one place WAL errors become MongoDB errors.

use argon_wal::{WalError, WriteError};

use crate::error::{CommandError, ErrorCode};

pub fn from_wal(e: WalError) -> CommandError {
    use WalError::*;
    let code = match &e {
        DuplicateKey(d) => return duplicate_key(&d.ns, &d.index, &d.pattern, &d.key),
        ParallelArrays { .. } => ErrorCode::CannotIndexParallelArrays,
        InvalidBranchName { .. }
        | InvalidProjectName { .. }
        | PointBeyondHead { .. }
        | PointBeforeBranch { .. }
        | InvalidOp(_) => ErrorCode::BadValue,
        UnknownBranch { .. } => ErrorCode::NamespaceNotFound,
        Unauthorized { .. } => ErrorCode::Unauthorized,
        RetryTooOld { .. } => ErrorCode::TransactionTooOld,
        BranchExists { .. } => ErrorCode::NamespaceExists,
        HasChildren { .. } | Protected { .. } => ErrorCode::IllegalOperation,
        // A write logging more than the commit budget (`limits::MAX_COMMIT_BYTES`).
        CommitTooLarge { .. } => ErrorCode::ExceededMemoryLimit,
        Conflict { .. } | CatalogConflict { .. } | TooManyConflicts { .. } => {
            ErrorCode::WriteConflict
        }
        // Re-sent to the branch's writer by `commands::answer`; a client
        // sees it only when that fails too, and drivers retry writes on it.
        NotWriter { .. } => ErrorCode::NotWritablePrimary,
        Corrupt { .. } | Malformed { .. } => ErrorCode::InternalError,
        // The store cannot serve now: unreachable (the driver reconnects),
        // an inconsistent read (`LogGap`, retried), or stopped after a failed
        // write or fsync (`Closed`: fails until reopened, and /readyz says so).
        // HostUnreachable is a code drivers retry writes on. An append that
        // failed this way has an unknown outcome, as with any database.
        Locked { .. } | Io { .. } | Mongo { .. } | Closed(_) | LogGap { .. } | Abandoned { .. } => {
            ErrorCode::HostUnreachable
        }
    };
    if code == ErrorCode::HostUnreachable || code == ErrorCode::InternalError {
        tracing::error!(error = %e, "WAL store error");
    }
    CommandError::new(code, e.to_string())
}

/// MongoDB's E11000 error, with `keyPattern` and `keyValue`.
fn duplicate_key(
    ns: &argon_wal::Namespace,
    index: &str,
    pattern: &bson::Document,
    key: &bson::Document,
) -> CommandError {
    let shown: Vec<String> = key.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    CommandError::new(
        ErrorCode::DuplicateKey,
        format!(
            "E11000 duplicate key error collection: {ns} index: {index} dup key: {{ {} }}",
            shown.join(", ")
        ),
    )
    .with_extra(bson::doc! {"keyPattern": pattern.clone(), "keyValue": key.clone()})
}

/// A failed `Wal::write`: the resolver's own error, or the engine's.
pub fn from_write(e: WriteError<CommandError>) -> CommandError {
    match e {
        WriteError::Rejected(e) => e,
        WriteError::Wal(e) => from_wal(e),
    }
}

/// A read of branch state that failed (the store's I/O or damage) answers
/// the request that made it, through the same mapping as every WAL error.
impl From<WalError> for CommandError {
    fn from(e: WalError) -> CommandError {
        from_wal(e)
    }
}
