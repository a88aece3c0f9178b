//! The reference model the property tests compare the engine against.

use super::*;
use argon_wal::{DocOp, ReadPoint, Seq, Wal};
use proptest::prelude::*;
use std::collections::BTreeMap;

pub type Docs = BTreeMap<String, BTreeMap<i64, i64>>;

#[derive(Clone, Debug)]
pub enum Action {
    /// Ops on one branch in one commit: (collection, id, Some(value) = put / None = delete).
    Write(usize, Vec<(u8, i64, Option<i64>)>),
    /// Fork a new branch from a branch at `head - back`.
    Fork(usize, u8),
    Reset(usize, u8),
    Delete(usize),
    Snapshot(usize),
}

pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (any::<usize>(), prop::collection::vec((0u8..3, 0i64..6, prop::option::of(0i64..100)), 1..4))
            .prop_map(|(b, ops)| Action::Write(b, ops)),
        2 => (any::<usize>(), 0u8..4).prop_map(|(b, back)| Action::Fork(b, back)),
        1 => (any::<usize>(), 0u8..4).prop_map(|(b, back)| Action::Reset(b, back)),
        1 => any::<usize>().prop_map(Action::Delete),
        1 => any::<usize>().prop_map(Action::Snapshot),
    ]
}

/// The reference: each branch is the list of its states by seq (index 0 = its base).
#[derive(Default)]
pub struct Model {
    pub branches: BTreeMap<String, Vec<Docs>>,
    next: usize,
}

fn ops_of(ops: &[(u8, i64, Option<i64>)]) -> Vec<DocOp> {
    ops.iter()
        .map(|(c, id, v)| {
            let coll = format!("c{c}");
            match v {
                Some(v) => put(&coll, *id, *v),
                None => del(&coll, *id),
            }
        })
        .collect()
}

/// Applies `action` to the engine and the model alike.
pub async fn step(wal: &Wal, model: &mut Model, action: &Action) {
    let names: Vec<String> = model.branches.keys().cloned().collect();
    let pick = |i: usize| names[i % names.len()].clone();
    match action {
        Action::Write(b, ops) => {
            let name = pick(*b);
            let info = commit(wal, &name, ops_of(ops)).await;
            let hist = model.branches.get_mut(&name).unwrap();
            let mut docs = hist.last().unwrap().clone();
            for (c, id, v) in ops {
                let coll = docs.entry(format!("c{c}")).or_default();
                match v {
                    Some(v) => {
                        coll.insert(*id, *v);
                    }
                    None => {
                        coll.remove(id);
                    }
                }
            }
            docs.retain(|_, c| !c.is_empty());
            hist.push(docs);
            assert_eq!(info.seq.0 as usize, hist.len() - 1);
        }
        Action::Fork(b, back) => {
            let parent = pick(*b);
            let hist = &model.branches[&parent];
            let at = (hist.len() - 1).saturating_sub(*back as usize);
            model.next += 1;
            let name = format!("b{}", model.next);
            wal.create_branch(&name, &parent, ReadPoint::Seq(Seq(at as u64)))
                .await
                .unwrap();
            let base = hist[at].clone();
            model.branches.insert(name, vec![base]);
        }
        Action::Reset(b, back) => {
            let name = pick(*b);
            let hist = model.branches.get_mut(&name).unwrap();
            let to = (hist.len() - 1).saturating_sub(*back as usize);
            let out = wal
                .reset_branch(&name, ReadPoint::Seq(Seq(to as u64)), false, None)
                .await
                .unwrap();
            let removed: usize = hist
                .last()
                .unwrap()
                .values()
                .map(|c| c.len())
                .sum::<usize>();
            let kept: usize = hist[to].values().map(|c| c.len()).sum::<usize>();
            assert_eq!(
                kept as i64 - removed as i64,
                out.preview.added() as i64 - out.preview.removed() as i64
            );
            hist.truncate(to + 1);
        }
        Action::Delete(b) => {
            let name = pick(*b);
            if name != "main" {
                wal.delete_branch(&name, true).await.unwrap();
                model.branches.remove(&name);
            }
        }
        Action::Snapshot(b) => {
            wal.snapshot_now(&pick(*b)).await.unwrap();
        }
    }
}

/// Every point of every live branch matches the model.
pub async fn check(wal: &Wal, model: &Model) {
    for (name, hist) in &model.branches {
        let head = wal.read(name, ReadPoint::Head).await.unwrap();
        assert_eq!(head.seq().0 as usize, hist.len() - 1, "head of {name}");
        for (s, want) in hist.iter().enumerate() {
            let got = wal.read(name, ReadPoint::Seq(Seq(s as u64))).await.unwrap();
            assert_eq!(&flat(&got), want, "{name} at seq {s}");
        }
    }
}

/// Every point of every live branch, read from the materialized store
/// (`Wal::materialized_view`), matches the model.
pub async fn check_materialized(wal: &Wal, model: &Model) {
    let store = wal.materialized().expect("a materialized store").clone();
    for (name, hist) in &model.branches {
        for (s, want) in hist.iter().enumerate() {
            let view = wal
                .materialized_view(name, ReadPoint::Seq(Seq(s as u64)))
                .await
                .unwrap();
            assert_eq!(&flat_view(&store, &view), want, "{name} at seq {s}");
            // `Wal::read` of a past point is served by the store (nothing
            // replayed, nothing in memory) and reads the same; thawed into
            // memory (what a transaction begun there does) it is equal.
            let read = wal.read(name, ReadPoint::Seq(Seq(s as u64))).await.unwrap();
            if s + 1 < hist.len() {
                assert!(read.is_stored(), "{name} at seq {s} is served by the store");
                let thawed = read.clone().thawed().unwrap();
                assert!(!thawed.is_stored());
                assert_eq!(&flat(&thawed), want, "{name} at seq {s}, thawed");
                assert!(thawed == read, "{name} at seq {s}: thawed equals stored");
            }
            assert_eq!(&flat(&read), want, "{name} at seq {s}, read");
            for (coll, docs) in want {
                let c = read.collection(&ns(coll)).unwrap().expect("collection");
                for (id, v) in docs {
                    let d = c.get(&bson::Bson::Int64(*id)).unwrap().expect("document");
                    assert_eq!(
                        d.get_i64("v").unwrap(),
                        *v,
                        "{name} at seq {s}: {coll} {id}"
                    );
                }
                assert_eq!(c.len().unwrap(), docs.len() as u64);
            }
        }
    }
}

/// `flat` of a materialized view.
pub fn flat_view(
    store: &argon_wal::materialized::Materialized,
    view: &argon_wal::materialized::View,
) -> Docs {
    let mut out = Docs::new();
    for (ns, _) in store.namespaces(view).unwrap() {
        if ns.db != DB {
            continue;
        }
        let coll = store.collection(view, &ns).unwrap().unwrap();
        let docs: BTreeMap<i64, i64> = coll
            .scan()
            .map(|r| {
                let d = r.unwrap().1.to_document();
                (d.get_i64("_id").unwrap(), d.get_i64("v").unwrap())
            })
            .collect();
        if !docs.is_empty() {
            out.insert(ns.coll, docs);
        }
    }
    out
}

pub fn fresh_model() -> Model {
    let mut m = Model::default();
    m.branches.insert("main".into(), vec![Docs::new()]);
    m
}
