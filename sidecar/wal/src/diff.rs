//! Differences between two states of a branch, per collection. Used by
//! `Wal::diff` and as the preview of a reset.

use crate::collection::Change;
use crate::error::Result;
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
