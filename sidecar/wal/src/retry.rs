//! Retryable writes: which `(session, txnNumber)` a branch has already
//! applied, and what it answered.
//!
//! A write that carries a retry key logs a [`RetryRecord`] in its commit,
//! and folding that commit (live or in replay) enters it into the branch
//! state's [`RetryTable`]. So a retried write is recognised by whatever
//! process sees the branch next: the same sidecar after a crash and restart,
//! or another sidecar on the same log whose head catches up past the
//! original commit (the engine decides inside the committer, on the head the
//! write would land on, so the original and its retry are ordered).
//!
//! Like MongoDB's `config.transactions`, the table keeps one entry per
//! session, the latest txnNumber: a retry of an older one is refused
//! (`TransactionTooOld`), a newer one is a new write. A write that changed
//! nothing is logged too (a commit with no ops and a retry record), or its
//! retry would run again on a state that may have changed meanwhile.
//!
//! Invariants:
//! - The table is derived from the log: it depends only on the commits
//!   folded, so every process folding the same log agrees, and snapshots
//!   carry it so replay from one loses nothing.
//! - Memory is bounded: at most [`MAX_SESSIONS`] entries per branch state
//!   (past it the entry of the oldest commit goes, deterministically), and a
//!   reply is kept in memory only up to [`MAX_INLINE_REPLY`] bytes; a larger
//!   one stays in the log and is read back from its commit on a retry.
//! - A reply larger than [`MAX_LOGGED_REPLY`] is not logged at all (a
//!   commit must stay within its size limit); its retry is told the write
//!   was applied but the reply is gone (`IncompleteTransactionHistory`).

use bson::{Document, RawDocumentBuf};
use imbl::OrdMap;
use std::sync::Arc;

use crate::types::{CommitTime, Seq};

/// Sessions remembered per branch.
pub const MAX_SESSIONS: usize = 10_000;
/// A reply up to this size is kept in memory; a larger one is re-read from
/// its commit on a retry.
pub const MAX_INLINE_REPLY: usize = 512;
/// A reply up to this size is logged with the write.
pub const MAX_LOGGED_REPLY: usize = 1 << 20;

/// A retryable write's identity: the session (its `lsid`, as bytes) and the
/// write's `txnNumber` in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RetryKey {
    pub session: Vec<u8>,
    pub txn_number: i64,
}

/// What a commit logs for one retryable write: its key and the reply it got
/// (without `operationTime`, which the commit's time gives); `None` when the
/// reply was too large to log.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryRecord {
    pub key: RetryKey,
    pub reply: Option<RawDocumentBuf>,
}

impl RetryRecord {
    /// A record of `reply`, dropping it when it is too large to log.
    pub fn new(key: RetryKey, reply: &Document) -> RetryRecord {
        let reply = crate::rawdoc::encode(reply)
            .ok()
            .filter(|r| r.as_bytes().len() <= MAX_LOGGED_REPLY);
        RetryRecord { key, reply }
    }
}

/// Where the reply of an applied write is.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredReply {
    Inline(Arc<RawDocumentBuf>),
    /// In the commit's retry record (too large to keep in memory).
    InLog,
    /// Not logged: too large.
    Lost,
}

/// One session's latest retryable write on a branch.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryEntry {
    pub txn_number: i64,
    pub seq: Seq,
    pub time: CommitTime,
    pub reply: StoredReply,
}

/// How a retry key stands against a branch's table.
#[derive(Clone, Debug, PartialEq)]
pub enum RetryCheck {
    /// Not seen: run the write.
    New,
    /// Already applied: answer from the entry.
    Applied(RetryEntry),
    /// The session has moved on to `latest`; this one may not run.
    TooOld { latest: i64 },
}

/// Per-branch table of the latest retryable write of each session. O(1) to
/// clone (persistent maps), like the rest of a `BranchState`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetryTable {
    by_session: OrdMap<Vec<u8>, RetryEntry>,
    /// `(seq, session)` of every entry: the eviction order.
    by_seq: OrdMap<(Seq, Vec<u8>), ()>,
}

impl RetryTable {
    pub fn check(&self, key: &RetryKey) -> RetryCheck {
        match self.by_session.get(&key.session) {
            Some(e) if e.txn_number == key.txn_number => RetryCheck::Applied(e.clone()),
            Some(e) if e.txn_number > key.txn_number => RetryCheck::TooOld {
                latest: e.txn_number,
            },
            _ => RetryCheck::New,
        }
    }

    /// Enters `rec`, logged by the commit at `seq`/`time`.
    pub fn note(&mut self, rec: &RetryRecord, seq: Seq, time: CommitTime) {
        let reply = match &rec.reply {
            Some(r) if r.as_bytes().len() <= MAX_INLINE_REPLY => {
                StoredReply::Inline(Arc::new(r.clone()))
            }
            Some(_) => StoredReply::InLog,
            None => StoredReply::Lost,
        };
        self.insert(
            rec.key.session.clone(),
            RetryEntry {
                txn_number: rec.key.txn_number,
                seq,
                time,
                reply,
            },
        );
    }

    /// Inserts (or replaces) a session's entry, evicting the oldest past
    /// [`MAX_SESSIONS`].
    pub(crate) fn insert(&mut self, session: Vec<u8>, entry: RetryEntry) {
        if let Some(old) = self.by_session.get(&session) {
            self.by_seq.remove(&(old.seq, session.clone()));
        }
        self.by_seq.insert((entry.seq, session.clone()), ());
        self.by_session.insert(session, entry);
        while self.by_session.len() > MAX_SESSIONS {
            let Some((oldest, ())) = self.by_seq.get_min().cloned() else {
                break;
            };
            self.by_seq.remove(&oldest);
            self.by_session.remove(&oldest.1);
        }
    }

    pub fn len(&self) -> usize {
        self.by_session.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_session.is_empty()
    }

    /// Every entry, by session.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &RetryEntry)> {
        self.by_session.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn key(s: u32, n: i64) -> RetryKey {
        RetryKey {
            session: s.to_be_bytes().to_vec(),
            txn_number: n,
        }
    }

    #[test]
    fn latest_txn_number_per_session() {
        let mut t = RetryTable::default();
        assert_eq!(t.check(&key(1, 5)), RetryCheck::New);
        t.note(
            &RetryRecord::new(key(1, 5), &doc! {"n": 1}),
            Seq(3),
            CommitTime(9),
        );
        let RetryCheck::Applied(e) = t.check(&key(1, 5)) else {
            panic!("not applied");
        };
        assert_eq!((e.seq, e.time), (Seq(3), CommitTime(9)));
        assert!(matches!(e.reply, StoredReply::Inline(_)));
        assert_eq!(t.check(&key(1, 4)), RetryCheck::TooOld { latest: 5 });
        assert_eq!(t.check(&key(1, 6)), RetryCheck::New);
        assert_eq!(t.check(&key(2, 5)), RetryCheck::New);
    }

    #[test]
    fn large_replies_stay_in_the_log_and_huge_ones_are_not_logged() {
        let mut t = RetryTable::default();
        let big = doc! {"v": "x".repeat(MAX_INLINE_REPLY)};
        t.note(&RetryRecord::new(key(1, 1), &big), Seq(1), CommitTime(1));
        let huge = doc! {"v": "x".repeat(MAX_LOGGED_REPLY)};
        let rec = RetryRecord::new(key(2, 1), &huge);
        assert!(rec.reply.is_none());
        t.note(&rec, Seq(2), CommitTime(2));
        let reply_of = |k| match t.check(&k) {
            RetryCheck::Applied(e) => e.reply,
            other => panic!("{other:?}"),
        };
        assert_eq!(reply_of(key(1, 1)), StoredReply::InLog);
        assert_eq!(reply_of(key(2, 1)), StoredReply::Lost);
    }

    #[test]
    fn bounded_and_evicts_the_oldest_commit() {
        let mut t = RetryTable::default();
        for s in 0..(MAX_SESSIONS as u32 + 10) {
            t.note(
                &RetryRecord::new(key(s, 1), &doc! {}),
                Seq(u64::from(s) + 1),
                CommitTime(0),
            );
        }
        assert_eq!(t.len(), MAX_SESSIONS);
        assert_eq!(t.by_seq.len(), MAX_SESSIONS);
        assert_eq!(t.check(&key(0, 1)), RetryCheck::New);
        assert_eq!(t.check(&key(9, 1)), RetryCheck::New);
        assert!(matches!(t.check(&key(10, 1)), RetryCheck::Applied(_)));
        // A session's newer write replaces its entry (and its place in line).
        t.note(
            &RetryRecord::new(key(10, 2), &doc! {}),
            Seq(1 << 20),
            CommitTime(0),
        );
        assert_eq!(t.len(), MAX_SESSIONS);
        assert_eq!(t.by_seq.len(), MAX_SESSIONS);
        assert_eq!(t.check(&key(10, 1)), RetryCheck::TooOld { latest: 2 });
    }
}
