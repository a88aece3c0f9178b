//! Multi-document transactions as drivers run them: statements carrying
//! `lsid`, `txnNumber` and `autocommit: false` (the first also
//! `startTransaction: true`), then `commitTransaction` or
//! `abortTransaction`.
//!
//! A transaction reads one branch's snapshot plus its own writes
//! (`argon_wal::Transaction`); its writes reach the log only at commit, as
//! one commit, after the WAL checks that no document it wrote changed since
//! its snapshot (a write outside transactions committed first wins,
//! `WriteConflict` labelled `TransientTransactionError` otherwise, so
//! drivers retry it whole). Between open transactions the first writer of
//! a document wins at its statement (`session::WriteLocks`). Any failed
//! statement aborts the transaction, as in MongoDB.

use std::time::Instant;

use argon_wal::{RetryableOutcome, WriteError};
use bson::{Bson, Document, doc};

use super::{Command, Conn, Ctx};
use crate::error::{CommandError, ErrorCode, Label, Result};
use crate::service::{Service, operation_time};
use crate::session::{ActiveTxn, Session, SessionId, TxnState, lifetime_exceeded};
use crate::wire::Request;

/// Commands MongoDB runs inside a transaction; any other is refused there.
const ALLOWED: &[&str] = &[
    "find",
    "getMore",
    "killCursors",
    "insert",
    "update",
    "delete",
    "findAndModify",
    "findandmodify",
    "bulkWrite",
    "aggregate",
    "distinct",
    "create",
    "createIndexes",
    "commitTransaction",
    "abortTransaction",
];

/// The transaction fields of a statement.
pub(crate) struct Statement {
    pub(crate) session: SessionId,
    pub(crate) txn_number: i64,
    pub(crate) start: bool,
}

/// `Some` when `cmd` is a transaction statement (`autocommit: false`).
pub(crate) fn statement(cmd: &Document) -> Result<Option<Statement>> {
    let start = match cmd.get("startTransaction") {
        None => false,
        Some(Bson::Boolean(true)) => true,
        Some(_) => {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "startTransaction must be true when given",
            ));
        }
    };
    match cmd.get("autocommit") {
        None if start => {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "startTransaction needs autocommit: false",
            ));
        }
        None => return Ok(None),
        Some(Bson::Boolean(false)) => {}
        Some(Bson::Boolean(true)) => {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "autocommit may only be given as false",
            ));
        }
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "BSON field 'autocommit' must be a boolean",
            ));
        }
    }
    let Some(session) = crate::session::session_id(cmd) else {
        return Err(CommandError::new(
            ErrorCode::InvalidOptions,
            "a transaction statement needs a session (lsid)",
        ));
    };
    let txn_number = match cmd.get("txnNumber") {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(_) => return Err(CommandError::type_mismatch("txnNumber must be a long")),
        None => {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "a transaction statement needs a txnNumber",
            ));
        }
    };
    if txn_number < 0 {
        return Err(CommandError::bad_value("txnNumber must not be negative"));
    }
    Ok(Some(Statement {
        session,
        txn_number,
        start,
    }))
}

fn no_such_transaction(message: String) -> CommandError {
    CommandError::new(ErrorCode::NoSuchTransaction, message)
        .with_label(Label::TransientTransactionError)
}

/// Runs one statement of a transaction; its reply, errors included, has an
/// `operationTime` (see [`with_operation_time`]).
pub(crate) async fn run(
    svc: &Service,
    conn: &Conn,
    req: &Request,
    db: &str,
    name: &str,
    command: &Command,
    st: Statement,
) -> Result<Document> {
    let result = run_statement(svc, conn, req, db, name, command, st).await;
    with_operation_time(svc, db, result).await
}

async fn run_statement(
    svc: &Service,
    conn: &Conn,
    req: &Request,
    db: &str,
    name: &str,
    command: &Command,
    st: Statement,
) -> Result<Document> {
    let cell = svc.sessions.get_or_create(st.session.clone())?;
    let mut session = cell.lock().await;
    session.touch();
    let n = st.txn_number;
    let lifetime = svc.sessions.transaction_lifetime();
    if let TxnState::Active(t) = &session.txn
        && t.expired(Instant::now(), lifetime)
    {
        session.txn = TxnState::Aborted(lifetime_exceeded(session.txn_number, lifetime));
    }
    if n < session.txn_number {
        return Err(CommandError::new(
            ErrorCode::TransactionTooOld,
            format!(
                "txnNumber {n} is less than the last txnNumber {} of this session",
                session.txn_number
            ),
        ));
    }
    if st.start {
        if n == session.txn_number {
            return Err(CommandError::new(
                ErrorCode::ConflictingOperationInProgress,
                format!("transaction {n} has already been started on this session"),
            ));
        }
        session.txn_number = n;
        session.txn = TxnState::Aborted(format!("transaction {n} failed to start"));
        if !ALLOWED.contains(&name) || matches!(name, "commitTransaction" | "abortTransaction") {
            return Err(not_in_transaction(name));
        }
        let target = svc.target(db)?;
        if target.at.is_some() {
            return Err(CommandError::new(
                ErrorCode::OperationNotSupportedInTransaction,
                format!(
                    "a transaction cannot run on the past point {:?}; use readConcern atClusterTime",
                    target.raw
                ),
            ));
        }
        let snapshot = svc.read_state(&target, &req.command).await?;
        let mut txn = ActiveTxn::new(
            target.branch,
            svc.wal.begin(snapshot),
            svc.sessions.budget(),
            svc.sessions.write_locks(),
        );
        txn.listing.lsid = crate::current_op::shown_lsid(&req.command).unwrap_or_default();
        txn.listing.read_concern = req
            .command
            .get_document("readConcern")
            .cloned()
            .unwrap_or_default();
        session.txn = TxnState::Active(Box::new(txn));
    } else {
        if n > session.txn_number {
            return Err(no_such_transaction(format!(
                "transaction {n} has not been started on this session"
            )));
        }
        if req.command.contains_key("readConcern") {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "only the first command of a transaction may give a readConcern",
            ));
        }
    }
    match name {
        "commitTransaction" => return commit(svc, &mut session, &st.session, n).await,
        "abortTransaction" => return abort(&mut session, n),
        _ => {}
    }
    let active = match &session.txn {
        TxnState::Active(t) => t,
        TxnState::Committed(_) => {
            return Err(CommandError::new(
                ErrorCode::TransactionCommitted,
                format!("transaction {n} has been committed"),
            ));
        }
        TxnState::Aborted(why) => return Err(no_such_transaction(why.clone())),
        TxnState::None => {
            return Err(no_such_transaction(format!(
                "transaction {n} has not been started on this session"
            )));
        }
    };
    let began = Instant::now();
    let outcome = if ALLOWED.contains(&name) {
        let ctx = Ctx {
            svc,
            conn,
            db,
            cmd: &req.command,
            txn: Some(active),
        };
        (command.handler)(&ctx).await
    } else {
        Err(not_in_transaction(name))
    };
    // The documents it wrote are this transaction's until it ends.
    let outcome = outcome.and_then(|reply| active.hold_writes().map(|()| reply));
    // mongos's token for finding the transaction again at commit: drivers
    // send it back with commitTransaction/abortTransaction.
    let outcome = outcome.map(|mut reply| {
        reply.insert(
            "recoveryToken",
            doc! {"recoveryShardId": active.branch.as_str()},
        );
        reply
    });
    if let TxnState::Active(t) = &mut session.txn {
        t.listing.active += began.elapsed();
        t.listing.client = Some(conn.client());
    }
    // A failed statement aborts the transaction (MongoDB does the same):
    // its earlier writes can no longer commit without it.
    let failure = match &outcome {
        Err(e) => Some(e.message.clone()),
        Ok(reply) => reply
            .get_array("writeErrors")
            .ok()
            .and_then(|errors| errors.first())
            .map(|e| format!("a write failed: {e}")),
    };
    if let Some(why) = failure {
        session.txn = TxnState::Aborted(format!("transaction {n} was aborted: {why}"));
    }
    outcome.map_err(|e| match e.code {
        ErrorCode::WriteConflict => e.with_label(Label::TransientTransactionError),
        _ => e,
    })
}

fn not_in_transaction(name: &str) -> CommandError {
    CommandError::new(
        ErrorCode::OperationNotSupportedInTransaction,
        format!("Cannot run '{name}' in a multi-document transaction."),
    )
}

async fn commit(
    svc: &Service,
    session: &mut Session,
    session_key: &[u8],
    n: i64,
) -> Result<Document> {
    let active = match std::mem::take(&mut session.txn) {
        TxnState::Active(t) => t,
        TxnState::Committed(reply) => {
            // A retried commit (the driver lost the first reply).
            session.txn = TxnState::Committed(reply.clone());
            return Ok(reply);
        }
        TxnState::Aborted(why) => {
            session.txn = TxnState::Aborted(why.clone());
            return Err(no_such_transaction(why));
        }
        TxnState::None => {
            return Err(no_such_transaction(format!(
                "transaction {n} has not been started on this session"
            )));
        }
    };
    // Shared with the commit, not copied: a transaction may hold hundreds of MB.
    let txn = active.shared();
    if txn.is_read_only() {
        let reply = doc! {"operationTime": operation_time(txn.snapshot().time())};
        session.txn = TxnState::Committed(reply.clone());
        return Ok(reply);
    }
    // The commit carries the session's retry key: a commit retried after
    // an unknown outcome (a store error mid-append) is answered from the
    // branch's retry table, exactly, instead of committing twice.
    let key = argon_wal::RetryKey {
        session: session_key.to_vec(),
        txn_number: n,
    };
    let to_commit = txn;
    let result = svc
        .wal
        .write_retryable(&active.branch, key, move |head| {
            if let Some(c) = to_commit.conflict_on(head.state())? {
                return Err(CommandError::new(
                    ErrorCode::WriteConflict,
                    format!("WriteConflict: {c}; retry the transaction"),
                ));
            }
            // Unique keys again, on the head it lands on.
            to_commit
                .replay_onto(head)
                .map_err(crate::wal_error::from_wal)?;
            Ok(Document::new())
        })
        .await;
    match result {
        Ok(outcome) => {
            let time = match outcome {
                RetryableOutcome::Applied { info, .. } => {
                    svc.metrics.commits.inc();
                    info.time
                }
                RetryableOutcome::AlreadyApplied(entry) => entry.time,
            };
            let reply = doc! {"operationTime": operation_time(time)};
            session.txn = TxnState::Committed(reply.clone());
            Ok(reply)
        }
        Err(WriteError::Rejected(e)) => {
            session.txn = TxnState::Aborted(format!("transaction {n} was aborted: {}", e.message));
            Err(match e.code {
                ErrorCode::WriteConflict => e.with_label(Label::TransientTransactionError),
                _ => e,
            })
        }
        Err(WriteError::Wal(e)) => {
            let e = crate::wal_error::from_wal(e);
            match e.code {
                ErrorCode::WriteConflict => {
                    session.txn = TxnState::Aborted(e.message.clone());
                    Err(e.with_label(Label::TransientTransactionError))
                }
                // Replayed onto the head, it logs more than a commit may.
                ErrorCode::ExceededMemoryLimit => {
                    session.txn = TxnState::Aborted(e.message.clone());
                    Err(CommandError::new(ErrorCode::TransactionTooLarge, e.message))
                }
                _ => {
                    // The store failed mid-append: the commit may have landed.
                    // Keep the transaction: a retried commit finds out from
                    // the branch's retry table.
                    session.txn = TxnState::Active(active);
                    Err(e.with_label(Label::UnknownTransactionCommitResult))
                }
            }
        }
    }
}

fn abort(session: &mut Session, n: i64) -> Result<Document> {
    match std::mem::take(&mut session.txn) {
        TxnState::Active(t) => {
            let time = t.lock().snapshot().time();
            session.txn = TxnState::Aborted(format!("transaction {n} was aborted by the client"));
            Ok(doc! {"operationTime": operation_time(time)})
        }
        TxnState::Committed(reply) => {
            session.txn = TxnState::Committed(reply);
            Err(CommandError::new(
                ErrorCode::TransactionCommitted,
                format!("transaction {n} has been committed; it cannot be aborted"),
            ))
        }
        TxnState::Aborted(why) => {
            session.txn = TxnState::Aborted(why.clone());
            Err(no_such_transaction(why))
        }
        TxnState::None => Err(no_such_transaction(format!(
            "transaction {n} has not been started on this session"
        ))),
    }
}

/// A statement's reply, errors included, with an `operationTime` (the head
/// of `db`'s branch when it has none of its own), as mongod answers every
/// command: drivers keep it as the session's causal point, and the next
/// transaction of the session reads after it (`afterClusterTime`).
async fn with_operation_time(
    svc: &Service,
    db: &str,
    result: Result<Document>,
) -> Result<Document> {
    let has_time = match &result {
        Ok(reply) => reply.contains_key("operationTime"),
        Err(e) => e
            .extra
            .as_ref()
            .is_some_and(|x| x.contains_key("operationTime")),
    };
    if has_time {
        return result;
    }
    let head = match svc.target(db) {
        Ok(target) => svc.read_state(&target, &Document::new()).await,
        Err(e) => Err(e),
    };
    // No time to give (the branch is gone): the reply goes without one.
    let Ok(head) = head else {
        return result;
    };
    let time = operation_time(head.time());
    match result {
        Ok(mut reply) => {
            reply.insert("operationTime", time);
            Ok(reply)
        }
        Err(e) => {
            let mut extra = e.extra.clone().unwrap_or_default();
            extra.insert("operationTime", time);
            Err(e.with_extra(extra))
        }
    }
}

/// `commitTransaction` / `abortTransaction` outside a transaction statement
/// (no `autocommit: false`).
pub async fn outside_transaction(ctx: &Ctx<'_>) -> Result<Document> {
    let name = ctx.cmd.keys().next().cloned().unwrap_or_default();
    ctx.require_admin(&name)?;
    Err(CommandError::new(
        ErrorCode::InvalidOptions,
        format!(
            "{name} must be run as a transaction statement (lsid, txnNumber, autocommit: false)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_fields() {
        let lsid = doc! {"id": bson::Binary {subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![1; 16]}};
        assert!(statement(&doc! {"find": "c"}).unwrap().is_none());
        let st = statement(&doc! {"find": "c", "lsid": lsid.clone(), "txnNumber": 4i64, "autocommit": false, "startTransaction": true})
            .unwrap()
            .unwrap();
        assert!(st.start);
        assert_eq!(st.txn_number, 4);
        for bad in [
            doc! {"find": "c", "lsid": lsid.clone(), "txnNumber": 1i64, "autocommit": true},
            doc! {"find": "c", "lsid": lsid.clone(), "txnNumber": 1i64, "startTransaction": true},
            doc! {"find": "c", "txnNumber": 1i64, "autocommit": false},
            doc! {"find": "c", "lsid": lsid.clone(), "autocommit": false},
            doc! {"find": "c", "lsid": lsid, "txnNumber": 1i64, "autocommit": false, "startTransaction": false},
        ] {
            assert!(statement(&bad).is_err(), "{bad}");
        }
    }
}
