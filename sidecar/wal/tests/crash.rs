//! Crash safety of the embedded store: kill -9 a writer process mid-load,
//! reopen, and find every acknowledged commit and nothing partial.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use argon_wal::{EmbeddedStore, LogStore, ReadPoint, Seq, Wal, WalOptions};
use bson::Bson;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

/// The example binary: `cargo test` builds examples next to the test binaries.
fn crash_writer() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().unwrap().parent().unwrap();
    debug.join("examples").join("crash_writer")
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_commit() {
    assert!(
        crash_writer().exists(),
        "run through cargo test, which builds examples"
    );
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(crash_writer())
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a number of acks that varies per round, while writers are mid-flight.
        let kill_after = 150 + round * 70;
        while let Some(Ok(line)) = lines.next() {
            let parts: Vec<i64> = line
                .split(' ')
                .skip(1)
                .map(|p| p.parse().unwrap())
                .collect();
            acked.push((parts[0], parts[1], parts[2]));
            if acked.len() == kill_after {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        // Acks already in the pipe were acknowledged too.
        for line in lines.map_while(Result::ok) {
            let parts: Vec<i64> = line
                .split(' ')
                .skip(1)
                .map(|p| p.parse().unwrap())
                .collect();
            acked.push((parts[0], parts[1], parts[2]));
        }
        child.wait().unwrap();
        assert!(acked.len() >= kill_after);

        let store: Arc<dyn LogStore> = EmbeddedStore::open(dir.path()).unwrap();
        let wal = Wal::open(store, "crash", WalOptions::default())
            .await
            .unwrap();
        let head = wal.read("main", ReadPoint::Head).await.unwrap();
        let coll = head.collection(&common_ns()).unwrap();
        for (seq, w, i) in &acked {
            assert!(
                head.seq().0 >= *seq as u64,
                "acked seq {seq} beyond head {}",
                head.seq()
            );
            let id = w * 1_000_000 + i;
            assert!(
                coll.get(&Bson::Int64(id)).is_some(),
                "acked write {w}/{i} (seq {seq}) lost"
            );
        }
        // Every commit up to the head is whole and readable: no holes, nothing partial.
        let info = wal.log_info("main").await.unwrap();
        assert_eq!(info.commits, head.seq().0);
        let mid = wal
            .read("main", ReadPoint::Seq(Seq(head.seq().0 / 2)))
            .await
            .unwrap();
        assert!(mid.doc_count() <= head.doc_count());
    }
}

fn common_ns() -> argon_wal::Namespace {
    argon_wal::Namespace::new("db", "c")
}
