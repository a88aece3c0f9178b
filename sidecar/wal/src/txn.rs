//! A multi-statement write transaction on one branch: snapshot isolation
//! with first-committer-wins on documents, committed as one WAL commit.
//!
//! A [`Transaction`] starts from a snapshot (a `BranchState`, O(1) to hold).
//! Its statements read [`Transaction::state`] (the snapshot plus its own
//! writes) and [`record`](Transaction::record) the physical ops they resolve.
//! Nothing reaches the log until the caller commits the ops through
//! `Wal::write`, where [`Transaction::conflict_on`] compares the head the
//! commit lands on with the snapshot:
//!
//! - a document the transaction wrote (put or delete) that another commit
//!   changed since the snapshot is a write conflict (MongoDB's
//!   `WriteConflict`, which drivers retry as a transient error);
//! - a collection whose catalog entry (existence, options, indexes) the
//!   transaction changed, and another commit changed too, likewise.
//!
//! Reads are not validated (snapshot isolation, as in MongoDB: write skew
//! is possible). Unique keys are the caller's rule and are re-checked on
//! the head it commits on, since two transactions may insert different
//! documents with one unique key.
//!
//! Invariant: a transaction's ops reach the log in one commit or not at
//! all, so readers and replay see all of it or none of it.

use bson::RawDocument;

use crate::error::Result;
use crate::record::DocOp;
use crate::state::{BranchState, CollectionState};
use crate::types::Namespace;

#[derive(Clone, Debug)]
pub struct Transaction {
    snapshot: BranchState,
    working: BranchState,
    ops: Vec<DocOp>,
    /// Bytes of document bodies recorded so far (the caller's size budget).
    bytes: usize,
}

/// Why a transaction cannot commit on a head: what changed under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnConflict {
    pub what: String,
}

impl std::fmt::Display for TxnConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl Transaction {
    /// A transaction reading `snapshot`.
    pub fn begin(snapshot: BranchState) -> Transaction {
        Transaction {
            working: snapshot.clone(),
            snapshot,
            ops: Vec::new(),
            bytes: 0,
        }
    }

    /// The state the transaction started from.
    pub fn snapshot(&self) -> &BranchState {
        &self.snapshot
    }

    /// The snapshot plus the transaction's own writes: what its statements read.
    pub fn state(&self) -> &BranchState {
        &self.working
    }

    /// Every op recorded, in statement order.
    pub fn ops(&self) -> &[DocOp] {
        &self.ops
    }

    /// True when nothing was written (a read-only transaction commits nothing).
    pub fn is_read_only(&self) -> bool {
        self.ops.is_empty()
    }

    /// Document bytes written so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records one statement's ops: all are validated first, so a refused
    /// statement leaves the transaction as it was.
    pub fn record(&mut self, ops: Vec<DocOp>) -> Result<()> {
        for op in &ops {
            crate::engine::check_op(op)?;
        }
        for op in ops {
            if let DocOp::Put { doc, .. } = &op {
                self.bytes += doc.as_bytes().len();
            }
            self.working.apply(&op);
            self.ops.push(op);
        }
        Ok(())
    }

    /// The first write of this transaction that another commit overlapped
    /// between the snapshot and `head`; `None` when it can commit on `head`.
    pub fn conflict_on(&self, head: &BranchState) -> Option<TxnConflict> {
        for op in &self.ops {
            let conflict = match op {
                DocOp::Put { ns, id, .. } | DocOp::Delete { ns, id } => {
                    let before = doc_bytes(self.snapshot.collection(ns), id);
                    let now = doc_bytes(head.collection(ns), id);
                    (before != now).then(|| {
                        format!("document {{_id: {id}}} in {ns} was changed by a concurrent commit")
                    })
                }
                DocOp::CreateCollection { ns, .. }
                | DocOp::CreateIndex { ns, .. }
                | DocOp::DropIndex { ns, .. } => catalog_changed(&self.snapshot, head, ns),
                DocOp::DropCollection { ns } => collection_changed(&self.snapshot, head, ns),
                DocOp::RenameCollection { from, to } => {
                    collection_changed(&self.snapshot, head, from)
                        .or_else(|| collection_changed(&self.snapshot, head, to))
                }
                DocOp::DropDatabase { db } => {
                    let (a, b) = (self.snapshot.collections(db), head.collections(db));
                    if a != b {
                        Some(format!("the collections of {db} changed concurrently"))
                    } else {
                        a.iter().find_map(|c| {
                            collection_changed(&self.snapshot, head, &Namespace::new(db, c))
                        })
                    }
                }
            };
            if let Some(what) = conflict {
                return Some(TxnConflict { what });
            }
        }
        None
    }
}

fn doc_bytes<'a>(coll: Option<&'a CollectionState>, id: &bson::Bson) -> Option<&'a [u8]> {
    coll.and_then(|c| c.get(id)).map(RawDocument::as_bytes)
}

/// The catalog entry of `ns` (existence, options, indexes) differs.
fn catalog_changed(a: &BranchState, b: &BranchState, ns: &Namespace) -> Option<String> {
    let same = match (a.collection(ns), b.collection(ns)) {
        (None, None) => true,
        (Some(x), Some(y)) => x.options() == y.options() && x.indexes() == y.indexes(),
        _ => false,
    };
    (!same).then(|| format!("collection {ns} was created, dropped or re-indexed concurrently"))
}

/// The whole collection `ns` differs (catalog or any document).
fn collection_changed(a: &BranchState, b: &BranchState, ns: &Namespace) -> Option<String> {
    let same = match (a.collection(ns), b.collection(ns)) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y,
        _ => false,
    };
    (!same).then(|| format!("collection {ns} was changed by a concurrent commit"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CommitTime;
    use bson::{Bson, doc};

    fn put(ns: &Namespace, id: i32, v: i32) -> DocOp {
        DocOp::Put {
            ns: ns.clone(),
            id: Bson::Int32(id),
            doc: crate::rawdoc::encode(&doc! {"_id": id, "v": v}).unwrap(),
        }
    }

    fn base() -> (Namespace, BranchState) {
        let ns = Namespace::new("d", "c");
        let mut s = BranchState::empty(CommitTime(0));
        s.apply(&DocOp::CreateCollection {
            ns: ns.clone(),
            options: doc! {},
        });
        s.apply(&put(&ns, 1, 0));
        s.apply(&put(&ns, 2, 0));
        (ns, s)
    }

    #[test]
    fn own_writes_are_visible_and_snapshot_is_not_touched() {
        let (ns, s) = base();
        let mut t = Transaction::begin(s.clone());
        t.record(vec![put(&ns, 1, 5)]).unwrap();
        let coll = t.state().collection(&ns).unwrap();
        assert_eq!(
            crate::rawdoc::parse(coll.get(&Bson::Int32(1)).unwrap()),
            doc! {"_id": 1, "v": 5}
        );
        assert_eq!(t.snapshot(), &s);
        assert_eq!(t.ops().len(), 1);
    }

    #[test]
    fn disjoint_concurrent_writes_do_not_conflict() {
        let (ns, s) = base();
        let mut t = Transaction::begin(s.clone());
        t.record(vec![put(&ns, 1, 5)]).unwrap();
        let mut head = s.clone();
        head.apply(&put(&ns, 2, 9));
        head.apply(&put(&ns, 3, 9));
        assert_eq!(t.conflict_on(&head), None);
        assert_eq!(t.conflict_on(&s), None);
    }

    #[test]
    fn a_document_changed_under_the_transaction_conflicts() {
        let (ns, s) = base();
        let mut t = Transaction::begin(s.clone());
        t.record(vec![DocOp::Delete {
            ns: ns.clone(),
            id: Bson::Int32(2),
        }])
        .unwrap();
        let mut head = s.clone();
        head.apply(&put(&ns, 2, 1));
        assert!(t.conflict_on(&head).is_some());
        // An insert racing another insert of the same _id conflicts too.
        let mut t = Transaction::begin(s.clone());
        t.record(vec![put(&ns, 7, 1)]).unwrap();
        let mut head = s;
        head.apply(&put(&ns, 7, 2));
        assert!(t.conflict_on(&head).is_some());
    }

    #[test]
    fn a_collection_created_concurrently_conflicts() {
        let s = BranchState::empty(CommitTime(0));
        let ns = Namespace::new("d", "new");
        let mut t = Transaction::begin(s.clone());
        t.record(vec![DocOp::CreateCollection {
            ns: ns.clone(),
            options: doc! {},
        }])
        .unwrap();
        let mut head = s;
        head.apply(&DocOp::CreateCollection {
            ns,
            options: doc! {},
        });
        assert!(t.conflict_on(&head).is_some());
    }

    #[test]
    fn an_invalid_op_leaves_the_transaction_unchanged() {
        let (ns, s) = base();
        let mut t = Transaction::begin(s);
        let bad = DocOp::Put {
            ns: ns.clone(),
            id: Bson::Int32(9),
            doc: crate::rawdoc::encode(&doc! {"_id": 8}).unwrap(),
        };
        assert!(t.record(vec![put(&ns, 1, 1), bad]).is_err());
        assert!(t.is_read_only());
        assert_eq!(t.bytes(), 0);
    }
}
