//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

pub mod counting;
pub mod model;

use argon_wal::{
    BranchState, CommitInfo, DocOp, EmbeddedStore, Namespace, ReadPoint, Seq, Wal, WalOptions,
    WriteError,
};
use bson::{Bson, doc};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const DB: &str = "app";

pub fn ns(coll: &str) -> Namespace {
    Namespace::new(DB, coll)
}

pub fn put(coll: &str, id: i64, v: i64) -> DocOp {
    DocOp::Put {
        ns: ns(coll),
        id: Bson::Int64(id),
        doc: argon_wal::rawdoc::encode(&doc! {"_id": id, "v": v}).expect("encodes"),
    }
}

pub fn del(coll: &str, id: i64) -> DocOp {
    DocOp::Delete {
        ns: ns(coll),
        id: Bson::Int64(id),
    }
}

/// Commits `ops` as one write.
pub async fn commit(wal: &Wal, branch: &str, ops: Vec<DocOp>) -> CommitInfo {
    let (_, info) = wal
        .write(branch, move |_| Ok::<_, ()>((ops.clone(), ())))
        .await
        .unwrap_or_else(|e| panic!("write to {branch} failed: {e:?}"));
    info
}

/// `{collection: {_id: v}}` of the non-empty collections of `DB`.
pub fn flat(state: &BranchState) -> BTreeMap<String, BTreeMap<i64, i64>> {
    let mut out = BTreeMap::new();
    for coll in state.collections(DB).expect("reads") {
        let c = state
            .collection(&ns(&coll))
            .expect("reads")
            .expect("listed");
        if c.is_empty().expect("reads") {
            continue;
        }
        let docs = c
            .iter()
            .map(|d| {
                let d = d.expect("reads");
                (d.get_i64("_id").expect("_id"), d.get_i64("v").expect("v"))
            })
            .collect();
        out.insert(coll, docs);
    }
    out
}

/// Opens `proj` on an embedded store in `dir`. Waits while a previous
/// handle's background snapshot task still holds the directory lock.
pub async fn embedded(dir: &std::path::Path, options: WalOptions) -> Wal {
    Wal::open(embedded_store(dir).await, "proj", options)
        .await
        .unwrap()
}

/// The embedded store in `dir`, once a previous handle's background
/// snapshot task has let go of the directory lock.
pub async fn embedded_store(dir: &std::path::Path) -> Arc<dyn argon_wal::LogStore> {
    let mut tries = 0;
    loop {
        match EmbeddedStore::open(dir) {
            Ok(s) => return s,
            Err(argon_wal::WalError::Locked { .. }) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("opening {}: {e}", dir.display()),
        }
    }
}

/// Inserts `id` unless present: the resolver refuses a duplicate `_id`.
async fn insert_unique(wal: &Wal, id: i64, who: i64) -> Result<argon_wal::CommitInfo, ()> {
    wal.write("main", move |state| {
        let exists = match state.collection(&ns("u")).expect("reads") {
            Some(c) => c.get(&Bson::Int64(id)).expect("reads").is_some(),
            None => false,
        };
        if exists {
            return Err("duplicate key");
        }
        Ok((vec![put("u", id, who)], ()))
    })
    .await
    .map(|(_, info)| info)
    .map_err(|e| match e {
        WriteError::Rejected(_) => (),
        WriteError::Wal(e) => panic!("unexpected {e}"),
    })
}

/// Increments a counter: a lost update would show as a smaller total.
async fn increment(wal: &Wal) {
    wal.write("main", |state| {
        let v = match state.collection(&ns("n")).expect("reads") {
            Some(c) => c
                .get(&Bson::Int64(0))
                .expect("reads")
                .map_or(0, |d| d.get_i64("v").unwrap_or(0)),
            None => 0,
        };
        Ok::<_, ()>((vec![put("n", 0, v + 1)], ()))
    })
    .await
    .unwrap();
}

pub async fn two_handles(a: Wal, b: Wal) {
    let mut tasks = Vec::new();
    for (who, wal) in [(1, a.clone()), (2, b.clone())] {
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for i in 0..25 {
                increment(&wal).await;
                if insert_unique(&wal, i, who).await.is_ok() {
                    won.push(i);
                }
            }
            won
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    won.sort();
    // Each _id was accepted for exactly one writer.
    assert_eq!(won, (0..25).collect::<Vec<_>>());
    let ha = a.read("main", ReadPoint::Head).await.unwrap();
    let hb = b.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(ha.seq(), hb.seq());
    assert_eq!(ha, hb);
    let n = ha
        .collection(&ns("n"))
        .unwrap()
        .unwrap()
        .get(&Bson::Int64(0))
        .unwrap()
        .unwrap();
    assert_eq!(n.get_i64("v").unwrap(), 50, "no lost update");
    // One total order: every point reads the same through both handles.
    for s in 0..=ha.seq().0 {
        let x = a.read("main", ReadPoint::Seq(Seq(s))).await.unwrap();
        let y = b.read("main", ReadPoint::Seq(Seq(s))).await.unwrap();
        assert_eq!(x, y, "seq {s}");
    }
}
