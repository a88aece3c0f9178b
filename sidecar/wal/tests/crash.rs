//! Crash safety: kill -9 a writer process mid-load, reopen, and find every
//! acknowledged commit and nothing partial. On the embedded store with
//! small commits and with multi-record ones (chunks, then the commit
//! record), and with multi-record commits on the mongodb store (FerretDB),
//! where the killed writer's chunks must never be read and are removed by
//! the store itself.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use argon_testkit::FerretDb;
use argon_wal::{EmbeddedStore, LogStore, MongoStore, ReadPoint, Seq, Wal, WalOptions};
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
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

/// `crash_writer`'s `pad` of document `id` (see the example).
fn pattern(id: i64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(id as u64) as u8)
        .collect()
}

/// Runs `crash_writer <args>`, SIGKILLs it after `kill_after` acknowledged
/// writes, and returns every `(seq, writer, i)` it acknowledged (the ones
/// already in the pipe too).
fn run_and_kill(args: &[&str], kill_after: usize) -> Vec<(i64, i64, i64)> {
    assert!(
        crash_writer().exists(),
        "run through cargo test, which builds examples"
    );
    let mut child = Command::new(crash_writer())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let parse = |line: String| {
        let parts: Vec<i64> = line
            .split(' ')
            .skip(1)
            .map(|p| p.parse().unwrap())
            .collect();
        (parts[0], parts[1], parts[2])
    };
    let mut acked = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while let Some(Ok(line)) = lines.next() {
        acked.push(parse(line));
        if acked.len() == kill_after {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    acked.extend(lines.map_while(Result::ok).map(parse));
    child.wait().unwrap();
    assert!(
        acked.len() >= kill_after,
        "the writer stopped after {} acks",
        acked.len()
    );
    acked
}

/// Every acknowledged write is on `main`, and every document there (acked
/// or not) is whole: `doc_bytes` of its pattern. Every commit up to the
/// head reads back (no holes, nothing partial). Returns the head seq.
async fn check(wal: &Wal, acked: &[(i64, i64, i64)], doc_bytes: usize) -> Seq {
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    let coll = head.collection(&common_ns()).unwrap().unwrap();
    for (seq, w, i) in acked {
        assert!(
            head.seq().0 >= *seq as u64,
            "acked seq {seq} beyond head {}",
            head.seq()
        );
        let id = w * 1_000_000 + i;
        assert!(
            coll.get(&Bson::Int64(id)).unwrap().is_some(),
            "acked write {w}/{i} (seq {seq}) lost"
        );
    }
    for d in coll.iter() {
        let d = d.unwrap();
        let id = d.get_i64("_id").unwrap();
        let pad = d.get_binary("pad").unwrap();
        assert!(
            pad.bytes == pattern(id, doc_bytes).as_slice(),
            "document {id} is not whole"
        );
    }
    let info = wal.log_info("main").await.unwrap();
    assert_eq!(info.commits, head.seq().0);
    let mid = wal
        .read("main", ReadPoint::Seq(Seq(head.seq().0 / 2)))
        .await
        .unwrap();
    assert!(mid.doc_count().unwrap() <= head.doc_count().unwrap());
    head.seq()
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    for round in 0..3 {
        // Kill after a number of acks that varies per round, while writers are mid-flight.
        let acked = run_and_kill(&[&path], 150 + round * 70);
        let store: Arc<dyn LogStore> = EmbeddedStore::open(dir.path()).unwrap();
        let wal = Wal::open(store, "crash", WalOptions::default())
            .await
            .unwrap();
        check(&wal, &acked, 64 << 10).await;
    }
}

/// Documents of 5 MB: every commit is chunk records then its commit record
/// (a group of them, up to the group bound, in one batch).
const LARGE: usize = 5 << 20;

#[tokio::test]
async fn kill_9_during_multi_record_commits_keeps_each_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    let large = LARGE.to_string();
    for round in 0..3 {
        let acked = run_and_kill(
            &[&path, "--writers", "4", "--doc-bytes", &large],
            4 + round * 3,
        );
        let store: Arc<dyn LogStore> = EmbeddedStore::open(dir.path()).unwrap();
        let wal = Wal::open(store, "crash", WalOptions::default())
            .await
            .unwrap();
        check(&wal, &acked, LARGE).await;
    }
}

#[tokio::test]
async fn kill_9_during_multi_record_commits_on_ferretdb() {
    let server = FerretDb::start().await.unwrap();
    let large = (3 << 20).to_string();
    let acked = run_and_kill(
        &[
            "-",
            "--writers",
            "2",
            "--doc-bytes",
            &large,
            "--store",
            server.uri(),
        ],
        3,
    );
    let open = || async {
        let store: Arc<dyn LogStore> = MongoStore::connect(server.uri(), "argon_crash")
            .await
            .unwrap();
        Wal::open(store, "crash", WalOptions::default())
            .await
            .unwrap()
    };
    let wal = open().await;
    let head = check(&wal, &acked, 3 << 20).await;
    // One more commit takes the seq the killed writer may have been
    // writing chunks for; after that no chunk set is left unaccounted for
    // once a store opens (its orphan removal runs then).
    let (_, info) = wal
        .write("main", |_| {
            Ok::<_, ()>((vec![common::put("after", 1, 1)], ()))
        })
        .await
        .unwrap();
    assert_eq!(info.seq, head.next());
    drop(wal);
    let wal = open().await;
    let db = server.client().await.unwrap().database("argon_crash");
    let sets: Vec<Document> = db
        .collection::<Document>("chunk_sets")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        sets,
        Vec::<Document>::new(),
        "chunk sets left after reopening"
    );
    // Every chunk stored belongs to a commit that names it.
    let commits: Vec<Document> = db
        .collection::<Document>("commits")
        .find(doc! {"project": "crash", "chunks": {"$exists": true}})
        .projection(doc! {"chunks": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let named: i64 = commits
        .iter()
        .map(|c| c.get_document("chunks").unwrap().get_i64("count").unwrap())
        .sum();
    assert!(named > 0, "the load made multi-record commits");
    let stored = db
        .collection::<Document>("chunks")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(stored as i64, named, "chunks no commit names");
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.seq(), info.seq);
}

fn common_ns() -> argon_wal::Namespace {
    argon_wal::Namespace::new("db", "c")
}
