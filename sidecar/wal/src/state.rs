//! Materialized state of a branch at one point, and replay: the pure fold of
//! commits over it.
//!
//! Invariants:
//! - Replay is deterministic: `apply` depends only on the state and the op
//!   (no clock, no randomness, no hash-map iteration order).
//! - Cloning a `BranchState` is O(1): every level is a persistent map
//!   (`imbl::OrdMap`) or an `Arc`, so forks, checkpoints and readers share
//!   structure with the head.
//! - Every collection has the `_id_` index first in `indexes()`.

use crate::idkey::IdKey;
use crate::record::{Commit, DocOp};
use crate::types::{CommitTime, Namespace, Seq};
use bson::{Bson, Document, doc};
use imbl::OrdMap;
use std::sync::Arc;

/// One collection: its documents in `IdKey` order, options and indexes.
#[derive(Clone, Debug)]
pub struct CollectionState {
    docs: OrdMap<IdKey, Arc<Document>>,
    options: Arc<Document>,
    indexes: Arc<Vec<Document>>,
}

impl PartialEq for CollectionState {
    fn eq(&self, other: &Self) -> bool {
        self.options == other.options && self.indexes == other.indexes && self.docs == other.docs
    }
}

fn id_index() -> Document {
    doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"}
}

impl CollectionState {
    fn new(options: Document) -> CollectionState {
        CollectionState {
            docs: OrdMap::new(),
            options: Arc::new(options),
            indexes: Arc::new(vec![id_index()]),
        }
    }

    pub fn get(&self, id: &Bson) -> Option<&Document> {
        self.docs.get(&IdKey::from_bson(id)).map(|d| d.as_ref())
    }

    pub fn get_by_key(&self, key: &IdKey) -> Option<&Document> {
        self.docs.get(key).map(|d| d.as_ref())
    }

    /// Documents in `IdKey` order (MongoDB's `_id` order).
    pub fn iter(&self) -> impl Iterator<Item = &Document> {
        self.docs.values().map(|d| d.as_ref())
    }

    /// `(key, document)` pairs in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&IdKey, &Document)> {
        self.docs.iter().map(|(k, d)| (k, d.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    pub fn options(&self) -> &Document {
        &self.options
    }

    /// Always starts with `{name: "_id_", key: {_id: 1}}`.
    pub fn indexes(&self) -> &[Document] {
        &self.indexes
    }

    pub(crate) fn docs_map(&self) -> &OrdMap<IdKey, Arc<Document>> {
        &self.docs
    }

    pub(crate) fn from_parts(
        options: Document,
        indexes: Vec<Document>,
        docs: OrdMap<IdKey, Arc<Document>>,
    ) -> CollectionState {
        CollectionState {
            docs,
            options: Arc::new(options),
            indexes: Arc::new(indexes),
        }
    }
}

/// The state of a branch at one point: all its collections.
#[derive(Clone, Debug)]
pub struct BranchState {
    seq: Seq,
    time: CommitTime,
    colls: OrdMap<Namespace, CollectionState>,
}

impl PartialEq for BranchState {
    /// States are equal when their contents are; `seq`/`time` are where they
    /// were read, compared separately where that matters.
    fn eq(&self, other: &Self) -> bool {
        self.colls == other.colls
    }
}

impl BranchState {
    pub fn empty(time: CommitTime) -> BranchState {
        BranchState {
            seq: Seq::ZERO,
            time,
            colls: OrdMap::new(),
        }
    }

    /// Database names, sorted.
    pub fn databases(&self) -> Vec<String> {
        let mut dbs: Vec<String> = Vec::new();
        for ns in self.colls.keys() {
            if dbs.last() != Some(&ns.db) {
                dbs.push(ns.db.clone());
            }
        }
        dbs
    }

    /// Collection names of `db`, sorted.
    pub fn collections(&self, db: &str) -> Vec<String> {
        let start = Namespace::new(db, "");
        self.colls
            .range(start..)
            .take_while(|(ns, _)| ns.db == db)
            .map(|(ns, _)| ns.coll.clone())
            .collect()
    }

    pub fn collection(&self, ns: &Namespace) -> Option<&CollectionState> {
        self.colls.get(ns)
    }

    /// Every collection, in namespace order.
    pub fn namespaces(&self) -> impl Iterator<Item = (&Namespace, &CollectionState)> {
        self.colls.iter()
    }

    /// The commit this state is at (`Seq(0)`: before the branch's own commits).
    pub fn seq(&self) -> Seq {
        self.seq
    }

    pub fn time(&self) -> CommitTime {
        self.time
    }

    /// Total number of documents.
    pub fn doc_count(&self) -> usize {
        self.colls.values().map(|c| c.len()).sum()
    }

    /// The same contents, labelled as being at `seq`/`time` (a fork's base is
    /// its parent's state relabelled as the child's `Seq(0)`).
    pub(crate) fn at(mut self, seq: Seq, time: CommitTime) -> BranchState {
        self.seq = seq;
        self.time = time;
        self
    }

    pub(crate) fn insert_collection(&mut self, ns: Namespace, c: CollectionState) {
        self.colls.insert(ns, c);
    }

    /// Applies one op; returns the document it replaced or deleted (the
    /// pre-image). Ops that name absent things are no-ops, as in MongoDB
    /// (dropping a missing collection, deleting a missing document).
    pub fn apply(&mut self, op: &DocOp) -> Option<Document> {
        match op {
            DocOp::Put { ns, id, doc } => {
                let coll = self
                    .colls
                    .entry(ns.clone())
                    .or_insert_with(|| CollectionState::new(Document::new()));
                coll.docs
                    .insert(IdKey::from_bson(id), Arc::new(doc.clone()))
                    .map(Arc::unwrap_or_clone)
            }
            DocOp::Delete { ns, id } => self
                .colls
                .get_mut(ns)
                .and_then(|c| c.docs.remove(&IdKey::from_bson(id)))
                .map(Arc::unwrap_or_clone),
            DocOp::CreateCollection { ns, options } => {
                if !self.colls.contains_key(ns) {
                    self.colls
                        .insert(ns.clone(), CollectionState::new(options.clone()));
                }
                None
            }
            DocOp::DropCollection { ns } => {
                self.colls.remove(ns);
                None
            }
            DocOp::DropDatabase { db } => {
                let doomed: Vec<Namespace> = self
                    .colls
                    .range(Namespace::new(db.as_str(), "")..)
                    .take_while(|(ns, _)| &ns.db == db)
                    .map(|(ns, _)| ns.clone())
                    .collect();
                for ns in doomed {
                    self.colls.remove(&ns);
                }
                None
            }
            DocOp::CreateIndex { ns, spec } => {
                let coll = self
                    .colls
                    .entry(ns.clone())
                    .or_insert_with(|| CollectionState::new(Document::new()));
                let name = spec.get_str("name").unwrap_or_default().to_string();
                let indexes = Arc::make_mut(&mut coll.indexes);
                match indexes
                    .iter_mut()
                    .find(|i| i.get_str("name").unwrap_or_default() == name)
                {
                    // Never replace `_id_`: it is the invariant first index.
                    Some(existing) if name != "_id_" => *existing = spec.clone(),
                    Some(_) => {}
                    None => indexes.push(spec.clone()),
                }
                None
            }
            DocOp::DropIndex { ns, name } => {
                if name != "_id_"
                    && let Some(coll) = self.colls.get_mut(ns)
                {
                    Arc::make_mut(&mut coll.indexes)
                        .retain(|i| i.get_str("name").unwrap_or_default() != name);
                }
                None
            }
            DocOp::RenameCollection { from, to } => {
                if from != to
                    && let Some(c) = self.colls.remove(from)
                {
                    self.colls.insert(to.clone(), c);
                }
                None
            }
        }
    }

    /// Folds one commit: the state afterwards is at the commit's seq and time.
    pub fn apply_commit(&mut self, commit: &Commit) {
        for op in &commit.ops {
            self.apply(&op.op);
        }
        self.seq = commit.seq;
        self.time = commit.time;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_is_independent_of_its_source() {
        let ns = Namespace::new("d", "c");
        let mut a = BranchState::empty(CommitTime(0));
        a.apply(&DocOp::Put {
            ns: ns.clone(),
            id: Bson::Int32(1),
            doc: doc! {"_id": 1, "v": 1},
        });
        let mut b = a.clone();
        let pre = b.apply(&DocOp::Put {
            ns: ns.clone(),
            id: Bson::Double(1.0),
            doc: doc! {"_id": 1, "v": 2},
        });
        assert_eq!(pre, Some(doc! {"_id": 1, "v": 1}));
        assert_eq!(
            a.collection(&ns).unwrap().get(&Bson::Int64(1)),
            Some(&doc! {"_id": 1, "v": 1})
        );
        assert_eq!(
            b.collection(&ns).unwrap().get(&Bson::Int64(1)),
            Some(&doc! {"_id": 1, "v": 2})
        );
    }

    #[test]
    fn collections_and_indexes() {
        let mut s = BranchState::empty(CommitTime(0));
        let ns = Namespace::new("d", "c");
        s.apply(&DocOp::CreateCollection {
            ns: ns.clone(),
            options: doc! {},
        });
        s.apply(&DocOp::CreateIndex {
            ns: ns.clone(),
            spec: doc! {"name": "a_1", "key": {"a": 1}, "unique": true},
        });
        s.apply(&DocOp::CreateCollection {
            ns: Namespace::new("e", "x"),
            options: doc! {},
        });
        assert_eq!(s.databases(), vec!["d", "e"]);
        assert_eq!(s.collection(&ns).unwrap().indexes().len(), 2);
        s.apply(&DocOp::DropIndex {
            ns: ns.clone(),
            name: "_id_".into(),
        });
        assert_eq!(
            s.collection(&ns).unwrap().indexes()[0].get_str("name").ok(),
            Some("_id_")
        );
        s.apply(&DocOp::RenameCollection {
            from: ns.clone(),
            to: Namespace::new("d", "z"),
        });
        assert_eq!(s.collections("d"), vec!["z"]);
        s.apply(&DocOp::DropDatabase { db: "d".into() });
        assert_eq!(s.databases(), vec!["e"]);
    }
}
