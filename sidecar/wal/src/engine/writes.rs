//! The write API: `Wal::write*` queue a write on its branch's committer
//! (`committer`) and wait for its answer; a retryable write already
//! applied is answered from the branch's retry table; and the stateless
//! checks every op passes before it is applied (`check_op`).
//!
//! Invariants: a queued write is answered at most once, by `finish` (it
//! takes the write by value), after its commit is durable or with why it
//! did not commit; a committer that stops answers its writes `Closed`. A
//! panic in a caller's resolve fails only that write (`guarded`).

use super::Wal;
use crate::catalog::Base;
use crate::error::{Result, WalError, WriteError};
use crate::idkey::IdKey;
use crate::record::DocOp;
use crate::retry::{RetryCheck, RetryEntry, RetryKey, RetryRecord};
use crate::state::BranchState;
use crate::txn::Transaction;
use crate::types::{BranchName, CommitInfo, Seq};
use bson::Document;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::oneshot;

// ---- pending writes ----------------------------------------------------------

/// A queued write with its types erased, so one commit can carry writes
/// whose callers expect different reply types.
pub(super) trait Pending: Send {
    /// A retryable write that `state` already applied (or that its session
    /// has moved past) is answered from the branch's retry table and not
    /// resolved: true when so. Decided again on every attempt's head.
    fn answered_by(&mut self, _state: &BranchState) -> bool {
        false
    }
    /// Runs the caller's resolve, writing through `txn` (begun on the state
    /// the previous write of the batch left); false when it refused or its
    /// ops were invalid (kept for `finish`), and `txn` is then dropped.
    fn resolve(&mut self, txn: &mut Transaction) -> bool;
    /// What to log for a retryable write whose ops were accepted.
    fn retry_record(&self) -> Option<RetryRecord> {
        None
    }
    fn finish(self: Box<Self>, result: Result<CommitInfo>);
}

/// Runs `f` so that a panic fails only its own write.
fn guarded<R>(f: impl FnOnce() -> R) -> std::result::Result<R, WalError> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| WalError::InvalidOp("the write's resolve panicked".into()))
}

type Reply<T, E> = oneshot::Sender<std::result::Result<(T, CommitInfo), WriteError<E>>>;
type Outcome<T, E> = Option<std::result::Result<T, WriteError<E>>>;

/// The reply of a resolved write once its commit is done.
fn finish_outcome<T, E>(
    outcome: Outcome<T, E>,
    result: Result<CommitInfo>,
) -> std::result::Result<(T, CommitInfo), WriteError<E>> {
    match outcome {
        Some(Ok(t)) => result.map(|info| (t, info)).map_err(WriteError::Wal),
        Some(Err(e)) => Err(e),
        None => Err(WriteError::Wal(
            result
                .err()
                .unwrap_or(WalError::Closed("write was never resolved")),
        )),
    }
}

/// A write that writes through the transaction (every `Wal::write*`):
/// `resolve` says whether the caller refused (`Rejected`) or an op was
/// invalid (`Wal`).
struct PendingTxn<F, T, E> {
    resolve: F,
    outcome: Outcome<T, E>,
    reply: Reply<T, E>,
}

impl<F, T, E> Pending for PendingTxn<F, T, E>
where
    F: FnMut(&mut Transaction) -> std::result::Result<T, WriteError<E>> + Send,
    T: Send,
    E: Send,
{
    fn resolve(&mut self, txn: &mut Transaction) -> bool {
        let f = &mut self.resolve;
        let outcome = guarded(|| f(txn)).unwrap_or_else(|e| Err(WriteError::Wal(e)));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, result: Result<CommitInfo>) {
        let _ = self.reply.send(finish_outcome(self.outcome, result));
    }
}

/// What a retryable write got: applied now, with its reply, or found
/// already applied in the branch's retry table.
#[derive(Debug)]
pub enum RetryableOutcome {
    Applied { reply: Document, info: CommitInfo },
    AlreadyApplied(RetryEntry),
}

type RetryableReply<E> = oneshot::Sender<std::result::Result<RetryableOutcome, WriteError<E>>>;

/// A write with a retry key: resolved like any other, unless the head's
/// retry table already has its key; its reply is logged with its ops.
struct PendingRetryable<F, E> {
    key: RetryKey,
    /// The commit of this key's entry that this write continues (a write
    /// committed in parts, see [`Wal::write_retryable_continuing`]).
    continues: Option<Seq>,
    inner: PendingTxn<F, Document, E>,
    answered: Option<RetryCheck>,
    reply: RetryableReply<E>,
}

impl<F, E> Pending for PendingRetryable<F, E>
where
    F: FnMut(&mut Transaction) -> std::result::Result<Document, WriteError<E>> + Send,
    E: Send,
{
    fn answered_by(&mut self, state: &BranchState) -> bool {
        self.answered = match state.retries().check(&self.key) {
            RetryCheck::New => None,
            RetryCheck::Applied(entry) if Some(entry.seq) == self.continues => None,
            done => Some(done),
        };
        self.answered.is_some()
    }

    fn resolve(&mut self, txn: &mut Transaction) -> bool {
        self.inner.resolve(txn)
    }

    fn retry_record(&self) -> Option<RetryRecord> {
        match &self.inner.outcome {
            Some(Ok(reply)) => Some(RetryRecord::new(self.key.clone(), reply)),
            _ => None,
        }
    }

    fn finish(self: Box<Self>, result: Result<CommitInfo>) {
        let reply = match self.answered {
            // Found in a head that is the log's: true whatever this commit did.
            Some(RetryCheck::Applied(entry)) => Ok(RetryableOutcome::AlreadyApplied(entry)),
            Some(RetryCheck::TooOld { latest }) => Err(WriteError::Wal(WalError::RetryTooOld {
                txn_number: self.key.txn_number,
                latest,
            })),
            _ => finish_outcome(self.inner.outcome, result)
                .map(|(reply, info)| RetryableOutcome::Applied { reply, info }),
        };
        let _ = self.reply.send(reply);
    }
}

impl Wal {
    /// Optimistic, group-committed write; see the module doc and the API
    /// contract. Returns after the commit is durable.
    pub async fn write<T, E, F>(
        &self,
        branch: &str,
        mut resolve: F,
    ) -> std::result::Result<(T, CommitInfo), WriteError<E>>
    where
        F: FnMut(&BranchState) -> std::result::Result<(Vec<DocOp>, T), E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        // The transaction checks and applies the ops, once.
        self.submit_txn(branch, move |txn: &mut Transaction| {
            let (ops, t) = resolve(txn.state()).map_err(WriteError::Rejected)?;
            txn.record(ops).map_err(WriteError::Wal)?;
            Ok(t)
        })
        .await
    }

    /// A write that writes through a [`Transaction`] begun on the head it
    /// commits on (reading `txn.state()`, writing with `txn.insert` and the
    /// rest, index rules checked there): each op is applied once, and the
    /// transaction's state becomes the new head. Otherwise as
    /// [`write`](Self::write): `resolve` may run again on a newer head.
    pub async fn write_in<T, E, F>(
        &self,
        branch: &str,
        mut resolve: F,
    ) -> std::result::Result<(T, CommitInfo), WriteError<E>>
    where
        F: FnMut(&mut Transaction) -> std::result::Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.submit_txn(branch, move |txn: &mut Transaction| {
            resolve(txn).map_err(WriteError::Rejected)
        })
        .await
    }

    async fn submit_txn<T, E, F>(
        &self,
        branch: &str,
        resolve: F,
    ) -> std::result::Result<(T, CommitInfo), WriteError<E>>
    where
        F: FnMut(&mut Transaction) -> std::result::Result<T, WriteError<E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.submit(branch, |reply| {
            Box::new(PendingTxn {
                resolve,
                outcome: None,
                reply,
            })
        })
        .await
    }

    /// Queues the write `pending` makes (given the channel it answers on)
    /// on `branch`'s committer and waits for its answer.
    async fn submit<R, E>(
        &self,
        branch: &str,
        pending: impl FnOnce(oneshot::Sender<std::result::Result<R, WriteError<E>>>) -> Box<dyn Pending>,
    ) -> std::result::Result<R, WriteError<E>> {
        let name = BranchName::parse(branch)?;
        self.inner.live(&name).await?;
        let (reply, rx) = oneshot::channel();
        self.inner.enqueue(&name, pending(reply))?;
        rx.await
            .map_err(|_| WriteError::Wal(WalError::Closed("the branch committer stopped")))?
    }

    /// The most bytes one commit may log (`WalOptions::max_commit_bytes`).
    pub fn max_commit_bytes(&self) -> usize {
        self.inner.options.max_commit_bytes
    }

    /// A transaction on `snapshot` under this handle's index rules, for a
    /// multi-statement transaction whose statements run before its commit
    /// (logging at most `max_commit_bytes`; a caller may set less).
    pub fn begin(&self, snapshot: BranchState) -> Transaction {
        Transaction::begin(snapshot, Arc::clone(&self.inner.options.index_filter))
            .with_limit(self.inner.options.max_commit_bytes)
    }

    /// A retryable write (`key` = the session and its txnNumber): as
    /// [`write_in`](Self::write_in), but applied at most once per key on the
    /// branch, across restarts and handles. `resolve` returns the reply,
    /// which is logged with the ops; a key the branch already applied is
    /// answered with its entry and `resolve` does not run.
    pub async fn write_retryable<E, F>(
        &self,
        branch: &str,
        key: RetryKey,
        resolve: F,
    ) -> std::result::Result<RetryableOutcome, WriteError<E>>
    where
        F: FnMut(&mut Transaction) -> std::result::Result<Document, E> + Send + 'static,
        E: Send + 'static,
    {
        self.write_retryable_at(branch, key, None, resolve).await
    }

    /// The next part of a retryable write committed in parts (a write
    /// command too large for one commit): applied only while `key`'s entry
    /// is still the one logged at `after` (the previous part), so a part is
    /// applied once even when a retry of the same write runs beside the
    /// original (both continue from the entry the log holds; the one that
    /// loses gets `AlreadyApplied` with the newer entry). Each part logs the
    /// write's reply so far, so a retry after a crash continues from it.
    pub async fn write_retryable_continuing<E, F>(
        &self,
        branch: &str,
        key: RetryKey,
        after: Seq,
        resolve: F,
    ) -> std::result::Result<RetryableOutcome, WriteError<E>>
    where
        F: FnMut(&mut Transaction) -> std::result::Result<Document, E> + Send + 'static,
        E: Send + 'static,
    {
        self.write_retryable_at(branch, key, Some(after), resolve)
            .await
    }

    async fn write_retryable_at<E, F>(
        &self,
        branch: &str,
        key: RetryKey,
        continues: Option<Seq>,
        mut resolve: F,
    ) -> std::result::Result<RetryableOutcome, WriteError<E>>
    where
        F: FnMut(&mut Transaction) -> std::result::Result<Document, E> + Send + 'static,
        E: Send + 'static,
    {
        self.submit(branch, |reply| {
            // The inner reply channel is unused: `finish` answers `reply`.
            let (inner_reply, _) = oneshot::channel();
            Box::new(PendingRetryable {
                key,
                continues,
                inner: PendingTxn {
                    resolve: move |txn: &mut Transaction| {
                        resolve(txn).map_err(WriteError::Rejected)
                    },
                    outcome: None,
                    reply: inner_reply,
                },
                answered: None,
                reply,
            })
        })
        .await
    }

    /// The logged reply of the retryable write `key`, which the branch's
    /// history holds at `seq` (an entry whose reply stayed in the log).
    pub async fn logged_retry_reply(
        &self,
        branch: &str,
        key: &RetryKey,
        seq: Seq,
    ) -> Result<Option<Document>> {
        let name = BranchName::parse(branch)?;
        let mut inc = self.inner.live(&name).await?;
        // Resets continue their history's seqs: an older seq is in an
        // earlier incarnation (forks start with no retry history).
        while seq <= inc.start_seq() {
            match inc.base {
                Base::Reset { previous, .. } => inc = self.inner.incarnation(previous).await?,
                _ => return Ok(None),
            }
        }
        let commits = self
            .inner
            .store
            .read_commits(self.project(), inc.id, Seq(seq.0 - 1), seq, 1)
            .await?;
        let reply = commits
            .iter()
            .filter(|c| c.seq == seq)
            .flat_map(|c| &c.retries)
            .find(|r| &r.key == key)
            .and_then(|r| r.reply.as_ref())
            .map(|r| Document::try_from(r.as_ref()))
            .transpose()
            .map_err(|e| WalError::malformed("retry", e.to_string()))?;
        Ok(reply)
    }
}

/// The stateless checks of one op.
pub(crate) fn check_op(op: &DocOp) -> Result<()> {
    match op {
        DocOp::Put { ns, id, doc } => {
            check_ns(ns)?;
            crate::rawdoc::validate(doc, "put document")
                .map_err(|e| WalError::InvalidOp(format!("put into {ns}: {e}")))?;
            let Some(doc_id) = crate::rawdoc::id_of(doc) else {
                return Err(WalError::InvalidOp(format!(
                    "put into {ns}: the document has no _id"
                )));
            };
            if IdKey::from_bson(&doc_id) != IdKey::from_bson(id) {
                return Err(WalError::InvalidOp(format!(
                    "put into {ns}: the document's _id {doc_id} is not the op's id {id}"
                )));
            }
        }
        DocOp::Delete { ns, .. }
        | DocOp::CreateCollection { ns, .. }
        | DocOp::DropCollection { ns }
        | DocOp::DropIndex { ns, .. }
        | DocOp::SetCollectionOptions { ns, .. } => check_ns(ns)?,
        DocOp::CreateIndex { ns, spec } => {
            check_ns(ns)?;
            if spec.get_str("name").is_err() || spec.get_document("key").is_err() {
                return Err(WalError::InvalidOp(format!(
                    "createIndex on {ns}: the spec needs a string name and a key document"
                )));
            }
        }
        DocOp::RenameCollection { from, to } => {
            check_ns(from)?;
            check_ns(to)?;
        }
        DocOp::DropDatabase { db } => {
            if db.is_empty() {
                return Err(WalError::InvalidOp(
                    "dropDatabase: empty database name".into(),
                ));
            }
        }
    }
    Ok(())
}

fn check_ns(ns: &crate::types::Namespace) -> Result<()> {
    if ns.db.is_empty() || ns.coll.is_empty() {
        return Err(WalError::InvalidOp(format!("invalid namespace {ns:?}")));
    }
    Ok(())
}
