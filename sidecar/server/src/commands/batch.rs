//! A write command's statements (insert, update, delete) committed as one
//! commit, or as several when they log more than one commit may hold.
//!
//! MongoDB applies a multi-document write document by document: it is not
//! atomic. Argon applies a write command as one commit whenever it fits in
//! `Wal::max_commit_bytes` (512 MiB by default, `serve --max-commit-bytes`),
//! so almost every write is atomic; one that does not fit is committed in
//! parts, so that every write MongoDB accepts is accepted, in bounded
//! memory:
//!
//! - Without a retry key, parts split between documents (one `updateMany`
//!   may span several). A part that fails after earlier ones committed ends
//!   the command with the counts so far and a write error at that
//!   statement, as mongod answers a multi-document write interrupted
//!   midway; the earlier parts stay, as in MongoDB.
//! - With a retry key (`lsid` + `txnNumber`), parts split between
//!   statements (a retryable statement writes one document). Each part
//!   logs the reply so far and the statement to go on from
//!   ([`RESUME_FIELD`]); the next part commits only while the key's entry
//!   is that part's (`Wal::write_retryable_continuing`). So a retry, after
//!   a crash or beside the original, continues from what the log holds and
//!   no statement is applied twice. A single statement of a retryable
//!   command that logs more than a commit holds (a multi-document
//!   statement under a `txnNumber`, which drivers never send) fails with
//!   ExceededMemoryLimit (146).
//! - Inside a multi-document transaction a statement is never split: the
//!   transaction is all or nothing, within its own limit.
//!
//! Invariant: a part never passes the commit limit, because it stops before
//! the next document once it has logged `max_commit_bytes` less the most
//! one document op can log ([`STATEMENT_HEADROOM`]).

use std::sync::Arc;

use argon_wal::{RetryableOutcome, Seq, Transaction};
use bson::{Bson, Document};

use super::{Ctx, commit_write, count_value};
use crate::error::{CommandError, ErrorCode, Result};
use crate::service::operation_time;
use crate::target::Target;

/// The field of a part's logged reply that names the statement the next
/// part starts at (never in a reply a client sees).
pub(crate) const RESUME_FIELD: &str = "$argonResumeAt";

/// The most one document op logs: the document written and the pre-image
/// it replaces (each at most 16 MiB + the 16 KiB MongoDB allows a
/// command's own fields), and the op's own overhead.
pub(crate) const STATEMENT_HEADROOM: usize =
    2 * (crate::limits::MAX_DOCUMENT_SIZE + 16 * 1024) + (1 << 20);

/// Where a command's commit may be cut.
#[derive(Clone, Copy, Debug)]
pub(super) struct Parts {
    /// A part stops once it has logged this much (`usize::MAX`: never).
    split_at: usize,
    /// Whether a statement's documents may be split between parts.
    within_statements: bool,
}

impl Parts {
    fn never() -> Parts {
        Parts {
            split_at: usize::MAX,
            within_statements: false,
        }
    }

    fn for_limit(max_commit_bytes: usize, within_statements: bool) -> Parts {
        Parts {
            split_at: max_commit_bytes.saturating_sub(STATEMENT_HEADROOM).max(1),
            within_statements,
        }
    }

    /// Whether the part being built should stop before the next statement.
    pub(super) fn full_before_statement(&self, t: &Transaction) -> bool {
        t.logged_bytes() > 0 && t.logged_bytes() >= self.split_at
    }

    /// Whether the part being built should stop before the next document of
    /// a statement it has started.
    pub(super) fn full_before_document(&self, t: &Transaction) -> bool {
        self.within_statements && self.full_before_statement(t)
    }
}

/// How far a command's statements got: what its next part starts from.
#[derive(Clone, Debug)]
pub(super) struct Batch {
    /// Statements in the command.
    pub(super) total: usize,
    /// The next statement to run (`total` when done).
    pub(super) next: usize,
    /// Targets (`_id`s) of statement `next` not yet written, when it was
    /// split between parts; they are checked again against its filter.
    pub(super) pending: Option<Vec<Bson>>,
    pub(super) n: i64,
    /// `nModified` (an update command's reply has it).
    pub(super) modified: Option<i64>,
    pub(super) upserted: Vec<Document>,
    pub(super) errors: Vec<Document>,
    /// Counts of statement `next` so far (added to the totals when it
    /// completes; dropped if it fails, as a failed statement counts nothing).
    pub(super) statement_n: i64,
    pub(super) statement_modified: i64,
}

impl Batch {
    pub(super) fn new(total: usize, update: bool) -> Batch {
        Batch {
            total,
            next: 0,
            pending: None,
            n: 0,
            modified: update.then_some(0),
            upserted: Vec::new(),
            errors: Vec::new(),
            statement_n: 0,
            statement_modified: 0,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.next >= self.total
    }

    /// Statement `next` completed.
    pub(super) fn complete_statement(&mut self) {
        self.n += self.statement_n;
        if let Some(m) = &mut self.modified {
            *m += self.statement_modified;
        }
        self.statement_n = 0;
        self.statement_modified = 0;
        self.pending = None;
        self.next += 1;
    }

    /// Statement `next` failed with `e`: an ordered batch stops there.
    pub(super) fn fail_statement(&mut self, e: &CommandError, ordered: bool) {
        self.errors.push(e.to_write_error(self.next));
        self.statement_n = 0;
        self.statement_modified = 0;
        self.pending = None;
        self.next = if ordered { self.total } else { self.next + 1 };
    }

    /// The command's reply (`n`, `nModified`, `upserted`, `writeErrors`).
    pub(super) fn reply(&self) -> Document {
        let mut out = bson::doc! {"n": count_value(self.n)};
        if let Some(m) = self.modified {
            out.insert("nModified", count_value(m));
        }
        if !self.upserted.is_empty() {
            out.insert("upserted", self.upserted.clone());
        }
        if !self.errors.is_empty() {
            out.insert("writeErrors", self.errors.clone());
        }
        out
    }

    /// What a part of a retryable command logs: the reply so far and where
    /// the next part starts, or the final reply.
    fn logged_reply(&self) -> Document {
        let mut out = self.reply();
        if !self.done() {
            out.insert(RESUME_FIELD, self.next as i64);
        }
        out
    }

    /// The batch a logged part's reply continues, or None for a final reply.
    fn resumed_from(&self, reply: &Document) -> Result<Option<Batch>> {
        let Some(next) = reply.get(RESUME_FIELD) else {
            return Ok(None);
        };
        let malformed = || {
            CommandError::new(
                ErrorCode::InternalError,
                "a logged partial reply is malformed",
            )
        };
        let next = next
            .as_i64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n < self.total)
            .ok_or_else(malformed)?;
        let count = |key: &str| -> Result<i64> {
            match reply.get(key) {
                Some(Bson::Int32(n)) => Ok(i64::from(*n)),
                Some(Bson::Int64(n)) => Ok(*n),
                None => Ok(0),
                Some(_) => Err(malformed()),
            }
        };
        let documents = |key: &str| -> Result<Vec<Document>> {
            match reply.get(key) {
                None => Ok(Vec::new()),
                Some(Bson::Array(items)) => items
                    .iter()
                    .map(|i| i.as_document().cloned().ok_or_else(malformed))
                    .collect(),
                Some(_) => Err(malformed()),
            }
        };
        Ok(Some(Batch {
            total: self.total,
            next,
            pending: None,
            n: count("n")?,
            modified: match self.modified {
                Some(_) => Some(count("nModified")?),
                None => None,
            },
            upserted: documents("upserted")?,
            errors: documents("writeErrors")?,
            statement_n: 0,
            statement_modified: 0,
        }))
    }

    /// The reply of a command whose later part failed with `e` after its
    /// earlier parts committed: what they did, and a write error at the
    /// statement it stopped at. NotWritablePrimary (this sidecar is not the
    /// branch's writer any more) becomes InterruptedDueToReplStateChange, as
    /// mongod's answer to a multi-document write cut by a step-down: the
    /// command must not be forwarded again, its first parts are applied.
    fn interrupted(mut self, e: CommandError) -> Document {
        let e = if e.code == ErrorCode::NotWritablePrimary {
            CommandError::new(ErrorCode::InterruptedDueToReplStateChange, e.message)
        } else {
            e
        };
        self.fail_statement(&e, true);
        self.reply()
    }
}

/// Runs a write command's statements: `step` runs statements from the
/// batch's `next` on a part's transaction, until they are done or `Parts`
/// says the part is full, and is called again for the next part. It may
/// run again on a newer head (from the same starting batch), like any
/// write's resolve.
pub(super) async fn commit_batch<F>(
    ctx: &Ctx<'_>,
    target: &Target,
    start: Batch,
    step: F,
) -> Result<Document>
where
    F: Fn(&mut Transaction, &mut Batch, &Parts) -> Result<()> + Send + Sync + 'static,
{
    target.writable()?;
    let step = Arc::new(step);
    if ctx.txn.is_some() {
        return commit_write(ctx, target, move |t| {
            let mut batch = start.clone();
            step(t, &mut batch, &Parts::never())?;
            Ok(batch.reply())
        })
        .await;
    }
    let part = move |parts: Parts, from: Batch| {
        let step = Arc::clone(&step);
        move |t: &mut Transaction| -> Result<Batch> {
            let mut batch = from.clone();
            step(t, &mut batch, &parts)?;
            Ok(batch)
        }
    };
    let wal = &ctx.svc.wal;
    let Some(key) = crate::retry::key_of(ctx.cmd) else {
        let parts = Parts::for_limit(wal.max_commit_bytes(), true);
        let mut at = start;
        let mut first = true;
        loop {
            let result = wal
                .write_in(&target.branch, part(parts, at.clone()))
                .await
                .map_err(crate::wal_error::from_write);
            let (batch, info) = match result {
                Ok(r) => r,
                Err(e) if !first => return Ok(at.interrupted(e)),
                Err(e) => return Err(e),
            };
            ctx.svc.metrics.commits.inc();
            if batch.done() {
                let mut reply = batch.reply();
                reply.insert("operationTime", operation_time(info.time));
                return Ok(reply);
            }
            at = batch;
            first = false;
        }
    };
    // Retryable: every part goes through the key's entry, so a retry
    // continues where the log says (an error here is the client's to retry).
    let parts = Parts::for_limit(wal.max_commit_bytes(), false);
    let mut at = start;
    let mut after: Option<Seq> = None;
    loop {
        let run = part(parts, at.clone());
        let resolve = move |t: &mut Transaction| run(t).map(|b| b.logged_reply());
        let outcome = match after {
            None => {
                wal.write_retryable(&target.branch, key.clone(), resolve)
                    .await
            }
            Some(seq) => {
                wal.write_retryable_continuing(&target.branch, key.clone(), seq, resolve)
                    .await
            }
        }
        .map_err(crate::wal_error::from_write)?;
        let (mut reply, seq, time) = match outcome {
            RetryableOutcome::Applied { reply, info } => {
                ctx.svc.metrics.commits.inc();
                (reply, info.seq, info.time)
            }
            RetryableOutcome::AlreadyApplied(entry) => (
                crate::retry::stored_reply(wal, &target.branch, &key, &entry).await?,
                entry.seq,
                entry.time,
            ),
        };
        match at.resumed_from(&reply)? {
            Some(next) => {
                at = next;
                after = Some(seq);
            }
            None => {
                reply.insert("operationTime", operation_time(time));
                return Ok(reply);
            }
        }
    }
}
