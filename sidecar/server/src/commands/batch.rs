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

/// How far the statement being run got, when a part ends inside it.
#[derive(Clone, Debug, Default)]
pub(super) struct Statement {
    /// Targets (`_id`s) not yet written, when an earlier part split the
    /// statement; they are checked again against its filter.
    pub(super) pending: Option<Vec<Bson>>,
    /// Documents matched (or inserted, or deleted) so far.
    pub(super) n: i64,
    pub(super) modified: i64,
    /// An upsert's new `_id`.
    pub(super) upserted: Option<Bson>,
}

impl Statement {
    /// Whether the part ended inside the statement.
    pub(super) fn is_split(&self) -> bool {
        self.pending.is_some()
    }

    /// Writes each of `targets` with `write`, in order, until the part is
    /// full: the rest stay pending for the next part. `write` gets whether
    /// the targets were matched in an earlier part (so it checks its
    /// filter again: another write may have changed the document since).
    pub(super) fn write_targets(
        &mut self,
        t: &mut Transaction,
        parts: &Parts,
        targets: Vec<Bson>,
        continued: bool,
        mut write: impl FnMut(&mut Transaction, &mut Self, &Bson, bool) -> Result<()>,
    ) -> Result<()> {
        let mut targets = targets.into_iter();
        while let Some(id) = targets.next() {
            if parts.full_before_document(t) {
                self.pending = Some(std::iter::once(id).chain(targets).collect());
                return Ok(());
            }
            write(t, self, &id, continued)?;
        }
        Ok(())
    }
}

/// What a command's parts carry from one to the next: how far its
/// statements got and the reply so far.
pub(super) trait Progress: Clone + Send + Sync + 'static {
    /// Statements in the command.
    fn total(&self) -> usize;
    /// The next statement to run (`total` when done).
    fn next(&self) -> usize;
    /// The reply so far (the command's reply once done).
    fn reply(&self) -> Document;
    /// The progress a logged part's reply (`RESUME_FIELD` removed) records,
    /// going on at statement `next`, from the shape of this one.
    fn resumed(&self, reply: &Document, next: usize) -> Option<Self>;
    /// Statement `next` failed with `e` and the command stops there.
    fn stop_with(&mut self, e: &CommandError);

    fn done(&self) -> bool {
        self.next() >= self.total()
    }

    /// What a part of a retryable command logs: the reply so far and where
    /// the next part starts, or the final reply.
    fn logged_reply(&self) -> Document {
        let mut out = self.reply();
        if !self.done() {
            out.insert(RESUME_FIELD, self.next() as i64);
        }
        out
    }

    /// The progress a logged part's reply continues, or None for a final
    /// reply.
    fn resumed_from(&self, reply: &Document) -> Result<Option<Self>> {
        let Some(next) = reply.get(RESUME_FIELD) else {
            return Ok(None);
        };
        let next = next
            .as_i64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n < self.total());
        let mut rest = reply.clone();
        rest.remove(RESUME_FIELD);
        next.and_then(|next| self.resumed(&rest, next))
            .map(Some)
            .ok_or_else(|| {
                CommandError::new(
                    ErrorCode::InternalError,
                    "a logged partial reply is malformed",
                )
            })
    }

    /// The reply of a command whose later part failed with `e` after its
    /// earlier parts committed: what they did, and an error at the
    /// statement it stopped at. NotWritablePrimary (this sidecar is not the
    /// branch's writer any more) becomes InterruptedDueToReplStateChange, as
    /// mongod answers a multi-document write cut by a step-down: the
    /// command must not be forwarded again, its first parts are applied.
    fn interrupted(mut self, e: CommandError) -> Document {
        let e = if e.code == ErrorCode::NotWritablePrimary {
            CommandError::new(ErrorCode::InterruptedDueToReplStateChange, e.message)
        } else {
            e
        };
        self.stop_with(&e);
        self.reply()
    }
}

/// A count in a logged reply (absent: 0).
pub(super) fn logged_count(reply: &Document, key: &str) -> Option<i64> {
    match reply.get(key) {
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        Some(Bson::Int64(n)) => Some(*n),
        None => Some(0),
        Some(_) => None,
    }
}

/// An array of documents in a logged reply (absent: empty).
pub(super) fn logged_documents(reply: &Document, key: &str) -> Option<Vec<Document>> {
    match reply.get(key) {
        None => Some(Vec::new()),
        Some(Bson::Array(items)) => items.iter().map(|i| i.as_document().cloned()).collect(),
        Some(_) => None,
    }
}

/// The progress of an insert, update or delete command.
#[derive(Clone, Debug)]
pub(super) struct Batch {
    total: usize,
    pub(super) next: usize,
    /// The statement `next`, when a part ended inside it.
    pub(super) statement: Statement,
    n: i64,
    /// `nModified` (an update command's reply has it).
    modified: Option<i64>,
    upserted: Vec<Document>,
    errors: Vec<Document>,
}

impl Batch {
    pub(super) fn new(total: usize, update: bool) -> Batch {
        Batch {
            total,
            next: 0,
            statement: Statement::default(),
            n: 0,
            modified: update.then_some(0),
            upserted: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Statement `next` completed: its counts join the totals.
    pub(super) fn complete_statement(&mut self) {
        let s = std::mem::take(&mut self.statement);
        self.n += s.n + i64::from(s.upserted.is_some());
        if let Some(m) = &mut self.modified {
            *m += s.modified;
        }
        if let Some(id) = s.upserted {
            self.upserted
                .push(bson::doc! {"index": self.next as i32, "_id": id});
        }
        self.next += 1;
    }

    /// Statement `next` failed with `e` (it counts nothing): an ordered
    /// batch stops there.
    pub(super) fn fail_statement(&mut self, e: &CommandError, ordered: bool) {
        self.errors.push(e.to_write_error(self.next));
        self.statement = Statement::default();
        self.next = if ordered { self.total } else { self.next + 1 };
    }
}

impl Progress for Batch {
    fn total(&self) -> usize {
        self.total
    }

    fn next(&self) -> usize {
        self.next
    }

    /// `n`, `nModified`, `upserted`, `writeErrors`.
    fn reply(&self) -> Document {
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

    fn resumed(&self, reply: &Document, next: usize) -> Option<Batch> {
        Some(Batch {
            total: self.total,
            next,
            statement: Statement::default(),
            n: logged_count(reply, "n")?,
            modified: match self.modified {
                Some(_) => Some(logged_count(reply, "nModified")?),
                None => None,
            },
            upserted: logged_documents(reply, "upserted")?,
            errors: logged_documents(reply, "writeErrors")?,
        })
    }

    fn stop_with(&mut self, e: &CommandError) {
        self.fail_statement(e, true);
    }
}

/// Runs a write command's statements: `step` runs statements from the
/// batch's `next` on a part's transaction, until they are done or `Parts`
/// says the part is full, and is called again for the next part. It may
/// run again on a newer head (from the same starting batch), like any
/// write's resolve.
pub(super) async fn commit_batch<P, F>(
    ctx: &Ctx<'_>,
    target: &Target,
    start: P,
    step: F,
) -> Result<Document>
where
    P: Progress,
    F: Fn(&mut Transaction, &mut P, &Parts) -> Result<()> + Send + Sync + 'static,
{
    target.writable()?;
    // The command's `bypassDocumentValidation`, for each part's writes.
    let bypass = crate::validation::bypass_of(ctx.cmd)?;
    let step = Arc::new(move |t: &mut Transaction, b: &mut P, parts: &Parts| {
        let _bypass = crate::validation::Bypass::enter(bypass);
        step(t, b, parts)
    });
    if ctx.txn.is_some() {
        return commit_write(ctx, target, move |t| {
            let mut batch = start.clone();
            step(t, &mut batch, &Parts::never())?;
            Ok(batch.reply())
        })
        .await;
    }
    let part = move |parts: Parts, from: P| {
        let step = Arc::clone(&step);
        move |t: &mut Transaction| -> Result<P> {
            let mut batch = from.clone();
            step(t, &mut batch, &parts)?;
            Ok(batch)
        }
    };
    match crate::retry::key_of(ctx.cmd) {
        None => commit_parts(ctx, target, start, part).await,
        Some(key) => commit_retryable_parts(ctx, target, key, start, part).await,
    }
}

/// The parts of a write without a retry key, cut between documents: a part
/// that fails after earlier ones committed ends the command with the counts
/// so far (`Progress::interrupted`), as MongoDB's piecemeal writes do.
async fn commit_parts<P, R>(
    ctx: &Ctx<'_>,
    target: &Target,
    start: P,
    part: impl Fn(Parts, P) -> R,
) -> Result<Document>
where
    P: Progress,
    R: FnMut(&mut Transaction) -> Result<P> + Send + 'static,
{
    let wal = &ctx.svc.wal;
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
}

/// The parts of a retryable write, cut between statements: every part
/// goes through the key's entry and logs where the next one starts, so a
/// retry continues where the log says (an error here is the client's to
/// retry).
async fn commit_retryable_parts<P, R>(
    ctx: &Ctx<'_>,
    target: &Target,
    key: argon_wal::RetryKey,
    start: P,
    part: impl Fn(Parts, P) -> R,
) -> Result<Document>
where
    P: Progress,
    R: FnMut(&mut Transaction) -> Result<P> + Send + 'static,
{
    let wal = &ctx.svc.wal;
    let parts = Parts::for_limit(wal.max_commit_bytes(), false);
    let mut at = start;
    let mut after: Option<Seq> = None;
    loop {
        let mut run = part(parts, at.clone());
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
