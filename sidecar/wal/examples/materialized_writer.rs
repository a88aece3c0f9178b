//! Applies commits to a materialized store until killed; the crash test in
//! `tests/materialized.rs` runs it.
//!
//! `materialized_writer <dir>`: applies commit 1, 2, 3… of `workload` (the
//! same function is in the test: keep the two equal) to incarnation 1 of
//! project `crash`, without fsync, printing `applied <seq>` (flushed) after
//! each. Whatever it printed must be there after `kill -9`, and the store's
//! applied marker must name exactly the prefix of commits that survived.

use argon_wal::materialized::{Materialized, MaterializedOptions, View, ViewBase};
use argon_wal::{BranchId, Commit, CommitTime, DocOp, LoggedOp, Namespace, Seq, rawdoc};
use bson::{Bson, doc};
use std::io::Write;

/// Commit `seq` of the crash workload: ten 1 KB puts over 500 ids, a delete,
/// and an index created by the first commit.
fn workload(seq: u64) -> Commit {
    let ns = Namespace::new("d", "c");
    let mut ops = Vec::new();
    if seq == 1 {
        ops.push(DocOp::CreateIndex {
            ns: ns.clone(),
            spec: doc! {"name": "g_1", "key": {"g": 1}},
        });
    }
    for k in 0..10u64 {
        let id = ((seq * 10 + k) % 500) as i64;
        let d = doc! {"_id": id, "g": (seq % 7) as i64, "seq": seq as i64, "pad": "x".repeat(1000)};
        ops.push(DocOp::Put {
            ns: ns.clone(),
            id: Bson::Int64(id),
            doc: rawdoc::encode(&d).expect("a small document encodes"),
        });
    }
    ops.push(DocOp::Delete {
        ns,
        id: Bson::Int64(((seq * 3) % 500) as i64),
    });
    Commit {
        branch: BranchId(1),
        seq: Seq(seq),
        time: CommitTime(seq as i64),
        actor: "crash".into(),
        ops: ops
            .into_iter()
            .map(|op| LoggedOp {
                op,
                pre_image: None,
            })
            .collect(),
        seal: None,
        retries: Vec::new(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: materialized_writer <dir>")?;
    let store = Materialized::open(&dir, MaterializedOptions::with_budget(16 << 20))?;
    let project = store.project("crash")?;
    let mut out = std::io::stdout().lock();
    for seq in 1.. {
        let view = View::new(project.0, BranchId(1), Seq(seq - 1), |_| {
            Some(ViewBase::Root)
        })?;
        store.apply(&view, &workload(seq))?;
        writeln!(out, "applied {seq}")?;
        out.flush()?;
    }
    Ok(())
}
