//! Differences between two states of a branch, per collection. Used by
//! `Wal::diff` and as the preview of a reset.

use crate::collection::Change;
use crate::error::Result;
use crate::idkey::IdKey;
use crate::state::{BranchState, CollectionState};
use crate::types::{Namespace, Seq};
use bson::Bson;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollectionDiff {
    pub ns: Namespace,
    /// `_id`s present in the later state only, in `_id` order.
    pub added: Vec<Bson>,
    /// `_id`s present in the earlier state only.
    pub removed: Vec<Bson>,
    /// `_id`s present in both with different contents.
    pub changed: Vec<Bson>,
}

impl CollectionDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff {
    pub from: Seq,
    pub to: Seq,
    /// Collections with at least one difference, in namespace order.
    /// (A collection created or dropped empty shows no document difference.)
    pub collections: Vec<CollectionDiff>,
}

impl Diff {
    pub fn added(&self) -> usize {
        self.collections.iter().map(|c| c.added.len()).sum()
    }
    pub fn removed(&self) -> usize {
        self.collections.iter().map(|c| c.removed.len()).sum()
    }
    pub fn changed(&self) -> usize {
        self.collections.iter().map(|c| c.changed.len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.collections.is_empty()
    }
}

fn id_of(d: &bson::RawDocument) -> Bson {
    crate::rawdoc::id_of(d).unwrap_or(Bson::Null)
}

fn ids(c: &CollectionState) -> Result<Vec<Bson>> {
    c.iter().map(|d| d.map(|d| id_of(&d))).collect()
}

fn diff_collection(
    ns: &Namespace,
    a: Option<&CollectionState>,
    b: Option<&CollectionState>,
) -> Result<CollectionDiff> {
    let mut out = CollectionDiff {
        ns: ns.clone(),
        ..Default::default()
    };
    match (a, b) {
        (None, None) => {}
        (Some(a), None) => out.removed = ids(a)?,
        (None, Some(b)) => out.added = ids(b)?,
        (Some(a), Some(b)) => {
            for change in a.changes(b)? {
                match change {
                    Change::Added(id) => out.added.push(id.unwrap_or(Bson::Null)),
                    Change::Removed(id) => out.removed.push(id.unwrap_or(Bson::Null)),
                    Change::Changed(id) => out.changed.push(id.unwrap_or(Bson::Null)),
                }
            }
        }
    }
    Ok(out)
}

/// What changes going from `a` to `b`.
pub fn diff(a: &BranchState, b: &BranchState) -> Result<Diff> {
    let mut names: Vec<Namespace> = a.namespaces()?.into_iter().map(|(ns, _)| ns).collect();
    names.extend(b.namespaces()?.into_iter().map(|(ns, _)| ns));
    names.sort();
    names.dedup();
    let mut collections = Vec::new();
    for ns in &names {
        let c = diff_collection(ns, a.collection(ns)?.as_ref(), b.collection(ns)?.as_ref())?;
        if !c.is_empty() {
            collections.push(c);
        }
    }
    Ok(Diff {
        from: a.seq(),
        to: b.seq(),
        collections,
    })
}

/// A diff made from the log alone: the commits of one line of history
/// between two points, read with their pre-images, instead of both states.
/// It costs what changed between the points, not the data (a reset's
/// preview in an operator that holds no branch in memory, issue 17 item 7).
///
/// The first op on a document carries what it was at the earlier point (its
/// pre-image; none: absent) and the last one what it is at the later point,
/// so each touched `_id` is classified by those two alone. Only a
/// fingerprint of each side is kept (its length and a 64-bit hash), so the
/// memory is per touched document, not per byte. An op that removes or moves
/// documents without naming them (a dropped collection or database, a
/// rename) cannot be followed: [`LogDiff::add`] says so, and the caller
/// compares the states instead.
#[derive(Default)]
pub(crate) struct LogDiff {
    touched: std::collections::BTreeMap<Namespace, std::collections::BTreeMap<IdKey, Touched>>,
}

struct Touched {
    id: Bson,
    earlier: Option<Fingerprint>,
    later: Option<Fingerprint>,
}

/// Length and hash of a document's bytes: equal documents have equal
/// fingerprints; different ones collide with probability ~2⁻⁶⁴ (a preview
/// would count such a document as unchanged).
type Fingerprint = (usize, u64);

fn fingerprint(doc: &bson::RawDocument) -> Fingerprint {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same in every process.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    doc.as_bytes().hash(&mut h);
    (doc.as_bytes().len(), h.finish())
}

impl LogDiff {
    /// Folds the next commit (ascending seq). `false` when it holds an op
    /// this diff cannot follow; the diff is then unusable.
    pub(crate) fn add(&mut self, commit: &crate::record::Commit) -> bool {
        use crate::record::DocOp;
        for logged in &commit.ops {
            let (ns, id, later) = match &logged.op {
                DocOp::Put { ns, id, doc } => (ns, id, Some(fingerprint(doc))),
                DocOp::Delete { ns, id } => (ns, id, None),
                // No document appears or disappears.
                DocOp::CreateCollection { .. }
                | DocOp::CreateIndex { .. }
                | DocOp::DropIndex { .. }
                | DocOp::SetCollectionOptions { .. } => continue,
                DocOp::DropCollection { .. }
                | DocOp::DropDatabase { .. }
                | DocOp::RenameCollection { .. } => return false,
            };
            let earlier = logged.pre_image.as_deref().map(fingerprint);
            self.touched
                .entry(ns.clone())
                .or_default()
                .entry(IdKey::from_bson(id))
                .and_modify(|t| t.later = later)
                .or_insert_with(|| Touched {
                    id: id.clone(),
                    earlier,
                    later,
                });
        }
        true
    }

    /// The diff from the state after the folded commits (`later`, at seq
    /// `later_seq`) to the state before them (at `earlier_seq`): what
    /// [`diff`]`(later, earlier)` gives, in the same order.
    pub(crate) fn back_to_earlier(self, later_seq: Seq, earlier_seq: Seq) -> Diff {
        let mut collections = Vec::new();
        for (ns, docs) in self.touched {
            let mut c = CollectionDiff {
                ns,
                ..CollectionDiff::default()
            };
            for t in docs.into_values() {
                match (t.later, t.earlier) {
                    (None, Some(_)) => c.added.push(t.id),
                    (Some(_), None) => c.removed.push(t.id),
                    (Some(a), Some(b)) if a != b => c.changed.push(t.id),
                    _ => {}
                }
            }
            if !c.is_empty() {
                collections.push(c);
            }
        }
        Diff {
            from: later_seq,
            to: earlier_seq,
            collections,
        }
    }
}
