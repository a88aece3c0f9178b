//! A write transaction on one branch: the one path every write takes.
//!
//! A [`Transaction`] starts from a snapshot (a `BranchState`, O(1) to hold).
//! Its writers read [`Transaction::state`] (the snapshot plus its own
//! writes) and write through it: [`insert`](Transaction::insert),
//! [`replace`](Transaction::replace), [`delete`](Transaction::delete) and
//! [`record`](Transaction::record) validate each op, check the index rules
//! (`unique`), apply it once to the working state and log it with its
//! pre-image.
//!
//! - A single write: the engine begins a transaction on the head it commits
//!   on, the command's resolve writes through it, and the engine commits
//!   the transaction's ops and takes its working state as the new head:
//!   nothing is applied twice.
//! - A multi-statement transaction (drivers' `startTransaction`): its
//!   statements write through one transaction on their snapshot; at commit,
//!   the engine begins a transaction on the head and
//!   [`replay_onto`](Transaction::replay_onto) applies this one's ops there,
//!   after [`conflict_on`](Transaction::conflict_on) compared that head
//!   with the snapshot (first-committer-wins):
//!   - a document the transaction wrote (put or delete) that another commit
//!     changed since the snapshot is a write conflict (MongoDB's
//!     `WriteConflict`, which drivers retry as a transient error);
//!   - a collection whose catalog entry (existence, options, indexes) the
//!     transaction changed, and another commit changed too, likewise;
//!   - unique keys are checked again on the head, since two transactions
//!     may insert different documents with one unique key.
//!
//! Reads are not validated (snapshot isolation, as in MongoDB: write skew
//! is possible).
//!
//! Invariant: a transaction's ops reach the log in one commit or not at
//! all, so readers and replay see all of it or none of it.
//!
//! Memory: a transaction logs at most its limit ([`with_limit`](Transaction::with_limit),
//! counted by [`logged_bytes`](Transaction::logged_bytes): documents written,
//! the pre-images they replace, and a little per op); a write that would
//! pass it is refused with `CommitTooLarge` before it is applied, so a
//! runaway update stops at the limit, not at the end of the collection.

use bson::{Bson, Document, RawDocumentBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::record::{DocOp, LoggedOp};
use crate::state::BranchState;
use crate::types::Namespace;
use crate::unique::{self, IndexFilter};

#[derive(Clone)]
pub struct Transaction {
    snapshot: BranchState,
    working: BranchState,
    ops: Vec<LoggedOp>,
    /// Bytes of document bodies written so far (the caller's size budget).
    bytes: usize,
    /// Bytes the ops log: documents, pre-images and `OP_OVERHEAD` each.
    logged: usize,
    /// Most `logged` may reach.
    limit: usize,
    filter: Arc<dyn IndexFilter>,
}

/// What an op logs besides its documents (namespace, id, field names).
const OP_OVERHEAD: usize = 64;

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("snapshot", &self.snapshot.seq())
            .field("ops", &self.ops.len())
            .field("bytes", &self.bytes)
            .field("logged", &self.logged)
            .finish()
    }
}

/// See [`Transaction::savepoint`].
pub struct Savepoint {
    working: BranchState,
    ops: usize,
    bytes: usize,
    logged: usize,
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
    /// A transaction reading `snapshot`, with partial indexes decided by
    /// `filter` (the query engine's match; see `unique`).
    pub fn begin(snapshot: BranchState, filter: Arc<dyn IndexFilter>) -> Transaction {
        Transaction {
            working: snapshot.clone(),
            snapshot,
            ops: Vec::new(),
            bytes: 0,
            logged: 0,
            limit: usize::MAX,
            filter,
        }
    }

    /// Refuses writes that would make the transaction log more than `limit`
    /// bytes (see [`logged_bytes`](Self::logged_bytes)).
    pub fn with_limit(mut self, limit: usize) -> Transaction {
        self.limit = limit;
        self
    }

    /// Bytes the transaction's ops log: the documents written, the
    /// pre-images they replace or delete, and a small overhead per op. What
    /// its commit costs in the log and, a few times over, in memory.
    pub fn logged_bytes(&self) -> usize {
        self.logged
    }

    /// The state the transaction started from.
    pub fn snapshot(&self) -> &BranchState {
        &self.snapshot
    }

    /// The snapshot plus the transaction's own writes: what its statements read.
    pub fn state(&self) -> &BranchState {
        &self.working
    }

    /// Every op written, in order.
    pub fn ops(&self) -> impl Iterator<Item = &DocOp> {
        self.ops.iter().map(|o| &o.op)
    }

    /// True when nothing was written (a read-only transaction commits nothing).
    pub fn is_read_only(&self) -> bool {
        self.ops.is_empty()
    }

    /// Document bytes written so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Inserts `doc` into `ns`: refused if its `_id` exists, or by a unique
    /// index or an unindexable key. The collection must exist
    /// ([`ensure_collection`](Self::ensure_collection)).
    pub fn insert(&mut self, ns: &Namespace, doc: &Document) -> Result<()> {
        self.put(ns, doc, true)
    }

    /// Writes `doc` over the document with its `_id` (or as a new one),
    /// under the same index rules as an insert but for the `_id`.
    pub fn replace(&mut self, ns: &Namespace, doc: &Document) -> Result<()> {
        self.put(ns, doc, false)
    }

    fn put(&mut self, ns: &Namespace, doc: &Document, insert: bool) -> Result<()> {
        let raw = crate::rawdoc::encode(doc)?;
        self.put_encoded(ns, doc, raw, insert)
    }

    /// [`insert`](Self::insert) (`insert` true) or [`replace`](Self::replace)
    /// of `doc` already encoded as `raw` (a caller that measured it).
    pub fn put_encoded(
        &mut self,
        ns: &Namespace,
        doc: &Document,
        raw: RawDocumentBuf,
        insert: bool,
    ) -> Result<()> {
        unique::check_put(&self.working, ns, doc, insert, self.filter.as_ref())?;
        self.apply_checked(DocOp::Put {
            ns: ns.clone(),
            id: doc.get("_id").cloned().unwrap_or(Bson::Null),
            doc: raw,
        })
    }

    /// Deletes the document `id` of `ns` (nothing if there is none).
    pub fn delete(&mut self, ns: &Namespace, id: Bson) -> Result<()> {
        self.apply_checked(DocOp::Delete { ns: ns.clone(), id })
    }

    /// Creates `ns` with default options if it does not exist.
    pub fn ensure_collection(&mut self, ns: &Namespace) -> Result<()> {
        if self.working.collection(ns)?.is_some() {
            return Ok(());
        }
        self.apply_checked(DocOp::CreateCollection {
            ns: ns.clone(),
            options: Document::new(),
        })
    }

    /// Writes resolved ops (catalog changes, or ops a caller built): all are
    /// validated first, so a refused batch leaves the transaction as it was.
    /// Puts are checked against unique indexes like [`replace`](Self::replace).
    pub fn record(&mut self, ops: Vec<DocOp>) -> Result<()> {
        for op in &ops {
            crate::engine::check_op(op)?;
        }
        let start = self.savepoint();
        for op in ops {
            if let Err(e) = self.check_rules(&op).and_then(|()| self.apply_checked(op)) {
                self.rollback_to(start);
                return Err(e);
            }
        }
        Ok(())
    }

    /// A point to roll back to: a statement that fails part way leaves
    /// nothing (O(1): states are persistent, ops are truncated).
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            working: self.working.clone(),
            ops: self.ops.len(),
            bytes: self.bytes,
            logged: self.logged,
        }
    }

    /// Undoes every write since `point`.
    pub fn rollback_to(&mut self, point: Savepoint) {
        self.working = point.working;
        self.ops.truncate(point.ops);
        self.bytes = point.bytes;
        self.logged = point.logged;
    }

    fn check_rules(&self, op: &DocOp) -> Result<()> {
        if let DocOp::Put { ns, doc, .. } = op {
            let doc = crate::rawdoc::parse(doc);
            unique::check_put(&self.working, ns, &doc, false, self.filter.as_ref())?;
        }
        Ok(())
    }

    /// What logging `op` adds: its document, the pre-image it replaces.
    fn cost_of(&self, op: &DocOp) -> Result<usize> {
        let pre = |ns: &Namespace, id: &Bson| -> Result<usize> {
            Ok(match self.working.collection(ns)? {
                Some(c) => c.get(id)?.map_or(0, |d| d.as_bytes().len()),
                None => 0,
            })
        };
        Ok(OP_OVERHEAD
            + match op {
                DocOp::Put { ns, id, doc } => doc.as_bytes().len() + pre(ns, id)?,
                DocOp::Delete { ns, id } => pre(ns, id)?,
                _ => 0,
            })
    }

    /// Validates, applies and logs one op whose index rules were checked.
    fn apply_checked(&mut self, op: DocOp) -> Result<()> {
        crate::engine::check_op(&op)?;
        let logged = self.logged + self.cost_of(&op)?;
        if logged > self.limit {
            return Err(crate::error::WalError::CommitTooLarge {
                bytes: logged,
                limit: self.limit,
            });
        }
        self.logged = logged;
        if let DocOp::Put { doc, .. } = &op {
            self.bytes += doc.as_bytes().len();
        }
        if self.working.is_stored() {
            // Begun on a past point the store serves: changed in memory.
            self.working = self.working.clone().thawed()?;
        }
        let pre = self.working.apply(&op);
        let pre_image = match op {
            DocOp::Put { .. } | DocOp::Delete { .. } => pre,
            _ => None,
        };
        self.ops.push(LoggedOp { op, pre_image });
        Ok(())
    }

    /// Applies this transaction's ops, in order, to `head` (a transaction
    /// begun on the head it commits on), checking unique keys there. All or
    /// nothing; ops are copied into `head` one at a time (never the whole
    /// list at once beside both transactions).
    pub fn replay_onto(&self, head: &mut Transaction) -> Result<()> {
        for op in self.ops() {
            crate::engine::check_op(op)?;
        }
        let start = head.savepoint();
        for op in self.ops() {
            if let Err(e) = head
                .check_rules(op)
                .and_then(|()| head.apply_checked(op.clone()))
            {
                head.rollback_to(start);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The working state and the logged ops: what the engine commits.
    pub(crate) fn into_parts(self) -> (BranchState, Vec<LoggedOp>) {
        (self.working, self.ops)
    }

    /// The first write of this transaction that another commit overlapped
    /// between the snapshot and `head`; `None` when it can commit on `head`.
    pub fn conflict_on(&self, head: &BranchState) -> Result<Option<TxnConflict>> {
        for op in self.ops() {
            let conflict = match op {
                DocOp::Put { ns, id, .. } | DocOp::Delete { ns, id } => {
                    let before = doc_bytes(&self.snapshot, ns, id)?;
                    let now = doc_bytes(head, ns, id)?;
                    (before != now).then(|| {
                        format!("document {{_id: {id}}} in {ns} was changed by a concurrent commit")
                    })
                }
                DocOp::CreateCollection { ns, .. }
                | DocOp::CreateIndex { ns, .. }
                | DocOp::DropIndex { ns, .. }
                | DocOp::SetCollectionOptions { ns, .. } => {
                    catalog_changed(&self.snapshot, head, ns)?
                }
                DocOp::DropCollection { ns } => collection_changed(&self.snapshot, head, ns)?,
                DocOp::RenameCollection { from, to } => {
                    match collection_changed(&self.snapshot, head, from)? {
                        Some(c) => Some(c),
                        None => collection_changed(&self.snapshot, head, to)?,
                    }
                }
                DocOp::DropDatabase { db } => {
                    let (a, b) = (self.snapshot.collections(db)?, head.collections(db)?);
                    if a != b {
                        Some(format!("the collections of {db} changed concurrently"))
                    } else {
                        let mut changed = None;
                        for c in &a {
                            changed =
                                collection_changed(&self.snapshot, head, &Namespace::new(db, c))?;
                            if changed.is_some() {
                                break;
                            }
                        }
                        changed
                    }
                }
            };
            if let Some(what) = conflict {
                return Ok(Some(TxnConflict { what }));
            }
        }
        Ok(None)
    }
}

/// The document `id` of `ns` in `state`, as bytes (`None`: absent).
fn doc_bytes(state: &BranchState, ns: &Namespace, id: &bson::Bson) -> Result<Option<Vec<u8>>> {
    Ok(match state.collection(ns)? {
        Some(c) => c.get(id)?.map(|d| d.as_bytes().to_vec()),
        None => None,
    })
}

/// The catalog entry of `ns` (existence, options, indexes) differs.
fn catalog_changed(a: &BranchState, b: &BranchState, ns: &Namespace) -> Result<Option<String>> {
    let same = match (a.collection(ns)?, b.collection(ns)?) {
        (None, None) => true,
        (Some(x), Some(y)) => x.options() == y.options() && x.indexes() == y.indexes(),
        _ => false,
    };
    Ok((!same).then(|| format!("collection {ns} was created, dropped or re-indexed concurrently")))
}

/// The whole collection `ns` differs (catalog or any document).
fn collection_changed(a: &BranchState, b: &BranchState, ns: &Namespace) -> Result<Option<String>> {
    let same = match (a.collection(ns)?, b.collection(ns)?) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y,
        _ => false,
    };
    Ok((!same).then(|| format!("collection {ns} was changed by a concurrent commit")))
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
        let mut t = Transaction::begin(s.clone(), crate::unique::every_document());
        t.record(vec![put(&ns, 1, 5)]).unwrap();
        let coll = t.state().collection(&ns).unwrap().unwrap();
        assert_eq!(
            coll.get(&Bson::Int32(1)).unwrap().unwrap().to_document(),
            doc! {"_id": 1, "v": 5}
        );
        assert_eq!(t.snapshot(), &s);
        assert_eq!(t.ops().count(), 1);
    }

    #[test]
    fn disjoint_concurrent_writes_do_not_conflict() {
        let (ns, s) = base();
        let mut t = Transaction::begin(s.clone(), crate::unique::every_document());
        t.record(vec![put(&ns, 1, 5)]).unwrap();
        let mut head = s.clone();
        head.apply(&put(&ns, 2, 9));
        head.apply(&put(&ns, 3, 9));
        assert_eq!(t.conflict_on(&head).unwrap(), None);
        assert_eq!(t.conflict_on(&s).unwrap(), None);
    }

    #[test]
    fn a_document_changed_under_the_transaction_conflicts() {
        let (ns, s) = base();
        let mut t = Transaction::begin(s.clone(), crate::unique::every_document());
        t.record(vec![DocOp::Delete {
            ns: ns.clone(),
            id: Bson::Int32(2),
        }])
        .unwrap();
        let mut head = s.clone();
        head.apply(&put(&ns, 2, 1));
        assert!(t.conflict_on(&head).unwrap().is_some());
        // An insert racing another insert of the same _id conflicts too.
        let mut t = Transaction::begin(s.clone(), crate::unique::every_document());
        t.record(vec![put(&ns, 7, 1)]).unwrap();
        let mut head = s;
        head.apply(&put(&ns, 7, 2));
        assert!(t.conflict_on(&head).unwrap().is_some());
    }

    #[test]
    fn a_collection_created_concurrently_conflicts() {
        let s = BranchState::empty(CommitTime(0));
        let ns = Namespace::new("d", "new");
        let mut t = Transaction::begin(s.clone(), crate::unique::every_document());
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
        assert!(t.conflict_on(&head).unwrap().is_some());
    }

    #[test]
    fn a_write_past_the_limit_is_refused_before_it_is_applied() {
        let (ns, s) = base();
        let mut t = Transaction::begin(s, crate::unique::every_document()).with_limit(400);
        t.record(vec![put(&ns, 1, 5)]).unwrap();
        let first = t.logged_bytes();
        // The replaced document's pre-image counts too.
        assert!(first > 2 * 20, "{first}");
        let big = DocOp::Put {
            ns: ns.clone(),
            id: Bson::Int32(9),
            doc: crate::rawdoc::encode(&doc! {"_id": 9, "s": "x".repeat(500)}).unwrap(),
        };
        let e = t.record(vec![put(&ns, 3, 1), big]).unwrap_err();
        assert!(
            matches!(e, crate::error::WalError::CommitTooLarge { limit: 400, .. }),
            "{e}"
        );
        // All or nothing: the small put before it is rolled back too.
        assert_eq!(t.ops().count(), 1);
        assert_eq!(t.logged_bytes(), first);
        assert!(
            t.state()
                .collection(&ns)
                .unwrap()
                .unwrap()
                .get(&Bson::Int32(3))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_invalid_op_leaves_the_transaction_unchanged() {
        let (ns, s) = base();
        let mut t = Transaction::begin(s, crate::unique::every_document());
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
