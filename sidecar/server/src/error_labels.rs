//! The `errorLabels` a failed reply carries, by mongod's rules
//! (`src/mongo/db/error_labels.cpp`, MongoDB 8.0): drivers decide from them
//! whether to retry a write (`RetryableWriteError`) or a whole transaction
//! (`TransientTransactionError`); since wire version 9 (4.4) they no longer
//! derive these from codes themselves, so the server must add them.
//!
//! Applied at the one place a reply is finished (`commands::handle`), to
//! every error and to a reply carrying a `writeConcernError`. A label a
//! handler set itself (`CommandError::with_label`) is kept.

use bson::{Bson, Document};

pub const TRANSIENT_TRANSACTION_ERROR: &str = "TransientTransactionError";
pub const RETRYABLE_WRITE_ERROR: &str = "RetryableWriteError";

/// Codes of MongoDB 8.0's `RetriableError` category.
const RETRIABLE: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    317,   // ConnectionPoolExpired
    358,   // InternalTransactionNotSupported
    384,   // ConnectionError
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
    50915, // BackupCursorOpenConflictWithCheckpoint
];

/// Codes after which a transaction may be retried whole, whatever the
/// statement: conflicts, lock timeouts, snapshot and routing errors.
const TRANSIENT: &[i32] = &[
    112,   // WriteConflict
    24,    // LockTimeout
    267,   // PreparedTransactionInProgress
    343,   // ShardCannotRefreshDueToLocksHeld
    249,   // StaleDbVersion
    325,   // TenantMigrationAborted
    326,   // TenantMigrationCommitted
    351,   // TxnRetryCounterNotSupported
    239,   // SnapshotTooOld (SnapshotError)
    246,   // SnapshotUnavailable (SnapshotError)
    250,   // StaleChunkHistory (SnapshotError)
    272,   // MigrationConflict (SnapshotError)
    150,   // StaleEpoch (NeedRetargettingError)
    13388, // StaleConfig (NeedRetargettingError)
];

const NO_SUCH_TRANSACTION: i32 = 251;
const INTERNAL_TRANSACTION_NOT_SUPPORTED: i32 = 358;

/// What of a request the labels depend on.
#[derive(Debug, Clone, Copy)]
pub struct LabelContext<'a> {
    pub command: &'a str,
    /// The command carries `txnNumber`.
    pub txn_number: bool,
    /// The command carries `autocommit` (a transaction statement).
    pub autocommit: bool,
    /// Sent by another sidecar over the peer listener (mongod's internal
    /// clients get no `RetryableWriteError`: the first sidecar answers its
    /// client).
    pub internal: bool,
}

impl<'a> LabelContext<'a> {
    pub fn of(command: &'a str, cmd: &Document, internal: bool) -> LabelContext<'a> {
        LabelContext {
            command,
            txn_number: cmd.contains_key("txnNumber"),
            autocommit: cmd.contains_key("autocommit"),
            internal,
        }
    }

    fn commit_or_abort(&self) -> bool {
        matches!(self.command, "commitTransaction" | "abortTransaction")
    }
}

pub fn is_retriable(code: i32) -> bool {
    RETRIABLE.contains(&code)
}

/// Whether a transaction that got `code` can be retried whole.
fn is_transient(code: i32, has_write_concern_error: bool, commit_or_abort: bool) -> bool {
    if code == INTERNAL_TRANSACTION_NOT_SUPPORTED {
        return false;
    }
    if TRANSIENT.contains(&code) {
        return true;
    }
    if commit_or_abort {
        // Only when nothing can have been made durable.
        code == NO_SUCH_TRANSACTION && !has_write_concern_error
    } else {
        is_retriable(code) || code == NO_SUCH_TRANSACTION
    }
}

/// The labels mongod computes for a reply with error `code` and/or a
/// `writeConcernError` with `wc_code`.
pub fn labels(
    ctx: &LabelContext<'_>,
    code: Option<i32>,
    wc_code: Option<i32>,
) -> Vec<&'static str> {
    if let Some(c) = code
        && ctx.txn_number
        && ctx.autocommit
        && is_transient(c, wc_code.is_some(), ctx.commit_or_abort())
    {
        return vec![TRANSIENT_TRANSACTION_ERROR];
    }
    let retryable_write = ctx.txn_number && !ctx.autocommit;
    let commit_or_abort = ctx.txn_number && ctx.autocommit && ctx.commit_or_abort();
    if !ctx.internal
        && (retryable_write || commit_or_abort)
        && (code.is_some_and(is_retriable) || wc_code.is_some_and(is_retriable))
    {
        return vec![RETRYABLE_WRITE_ERROR];
    }
    Vec::new()
}

/// Adds `labels` to a reply's `errorLabels`, each once, keeping those it has.
pub fn add(reply: &mut Document, labels: &[&str]) {
    if labels.is_empty() {
        return;
    }
    let mut all: Vec<Bson> = match reply.get("errorLabels") {
        Some(Bson::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    for l in labels {
        if !all.iter().any(|have| have.as_str() == Some(l)) {
            all.push(Bson::String((*l).to_owned()));
        }
    }
    reply.insert("errorLabels", all);
}

/// The code of a reply's `writeConcernError`, if it has one.
pub fn write_concern_code(reply: &Document) -> Option<i32> {
    match reply.get_document("writeConcernError").ok()?.get("code")? {
        Bson::Int32(n) => Some(*n),
        Bson::Int64(n) => i32::try_from(*n).ok(),
        Bson::Double(d) => Some(*d as i32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(command: &str, txn_number: bool, autocommit: bool) -> LabelContext<'_> {
        LabelContext {
            command,
            txn_number,
            autocommit,
            internal: false,
        }
    }

    #[test]
    fn mongod_rules() {
        // A retryable write with a retriable code, or a retriable WC error.
        assert_eq!(
            labels(&ctx("insert", true, false), Some(91), None),
            [RETRYABLE_WRITE_ERROR]
        );
        assert_eq!(
            labels(&ctx("insert", true, false), None, Some(91)),
            [RETRYABLE_WRITE_ERROR]
        );
        assert!(labels(&ctx("insert", true, false), Some(11601), None).is_empty());
        assert!(labels(&ctx("insert", true, false), None, Some(64)).is_empty());
        // Not a retryable write: no label.
        assert!(labels(&ctx("insert", false, false), Some(91), None).is_empty());
        // In a transaction: transient for retriable codes and NoSuchTransaction.
        assert_eq!(
            labels(&ctx("insert", true, true), Some(10107), None),
            [TRANSIENT_TRANSACTION_ERROR]
        );
        assert_eq!(
            labels(&ctx("find", true, true), Some(251), None),
            [TRANSIENT_TRANSACTION_ERROR]
        );
        assert!(labels(&ctx("insert", true, true), Some(8), None).is_empty());
        // Commit: a retriable code is a retryable commit, not transient.
        assert_eq!(
            labels(&ctx("commitTransaction", true, true), Some(91), None),
            [RETRYABLE_WRITE_ERROR]
        );
        assert_eq!(
            labels(&ctx("commitTransaction", true, true), Some(251), None),
            [TRANSIENT_TRANSACTION_ERROR]
        );
        assert!(labels(&ctx("commitTransaction", true, true), Some(251), Some(64)).is_empty());
        assert_eq!(
            labels(&ctx("commitTransaction", true, true), Some(112), None),
            [TRANSIENT_TRANSACTION_ERROR]
        );
        // Another sidecar gets no RetryableWriteError.
        let internal = LabelContext {
            internal: true,
            ..ctx("insert", true, false)
        };
        assert!(labels(&internal, Some(91), None).is_empty());
    }

    #[test]
    fn add_keeps_and_dedupes() {
        let mut d = bson::doc! {"errorLabels": ["A"]};
        add(&mut d, &["A", "B"]);
        assert_eq!(d.get_array("errorLabels").unwrap().len(), 2);
    }
}
