//! Write commands larger than one commit, against the real binary with
//! `--max-commit-bytes 64 MiB` (so ~100 MB writes need several commits):
//! an `insertMany`, an `updateMany` and a `deleteMany` through the Rust
//! driver on both stores, and a client-level `bulkWrite`, are accepted
//! whole and committed in parts (the log grows by more than one commit
//! each), as MongoDB accepts writes of any total size; a retryable write sent twice, and twice at once, is
//! applied once; one killed between its parts continues from the log when
//! it is retried after a restart, and no statement runs twice.

use crate::common;

use argon_testkit::FerretDb;
use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use common::RawClient;
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use mongodb::Collection;

const MIB: usize = 1 << 20;
/// `--max-commit-bytes`: the least allowed, so that tens of MB need parts.
const MAX_COMMIT: &str = "67108864";
/// Documents of 1 MiB each: 40 of them are 40 MiB to insert or delete and
/// 80 MiB (pre- and post-images) to update: 2 to 3 parts each.
const DOCS: i32 = 40;

fn big(i: i32) -> Document {
    doc! {"_id": i, "count": 0, "pad": "x".repeat(MIB)}
}

/// Commits in the log of branch `main`.
async fn commits(client: &mongodb::Client) -> i64 {
    let info = client
        .database("admin")
        .run_command(doc! {"argonLogInfo": "main"})
        .await
        .expect("argonLogInfo");
    info.get_i64("commits").expect("commits in argonLogInfo")
}

async fn parts_of_each_write(sidecar: &Sidecar, store: &str) {
    let client = sidecar.client().await.expect("a client");
    let coll: Collection<Document> = client.database("app").collection("big");

    let before = commits(&client).await;
    coll.insert_many((0..DOCS).map(big))
        .await
        .unwrap_or_else(|e| panic!("{store}: insertMany of 40 MiB: {e}"));
    let after_insert = commits(&client).await;
    assert_eq!(
        coll.count_documents(doc! {}).await.expect("count"),
        DOCS as u64,
        "{store}"
    );
    assert!(
        after_insert - before >= 2,
        "{store}: 40 MiB inserted in {} commit(s), not in parts",
        after_insert - before
    );

    let updated = coll
        .update_many(doc! {}, doc! {"$inc": {"count": 1}})
        .await
        .unwrap_or_else(|e| panic!("{store}: updateMany of 80 MiB of images: {e}"));
    assert_eq!(
        (updated.matched_count, updated.modified_count),
        (DOCS as u64, DOCS as u64),
        "{store}"
    );
    let after_update = commits(&client).await;
    assert!(
        after_update - after_insert >= 2,
        "{store}: the updateMany took {} commit(s)",
        after_update - after_insert
    );
    let counts: Vec<i32> = coll
        .find(doc! {})
        .projection(doc! {"count": 1})
        .await
        .expect("find")
        .try_collect::<Vec<_>>()
        .await
        .expect("read back")
        .iter()
        .map(|d| d.get_i32("count").expect("count"))
        .collect();
    assert_eq!(counts, vec![1; DOCS as usize], "{store}: each updated once");

    let deleted = coll
        .delete_many(doc! {"count": 1})
        .await
        .unwrap_or_else(|e| panic!("{store}: deleteMany of 40 MiB: {e}"));
    assert_eq!(deleted.deleted_count, DOCS as u64, "{store}");
    assert_eq!(coll.count_documents(doc! {}).await.expect("count"), 0);
    assert!(
        commits(&client).await - after_update >= 2,
        "{store}: the deleteMany was not cut into parts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_commit_limit_commit_in_parts_on_both_stores() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal").display().to_string();
    let standalone = Sidecar::start(
        "argon-sidecar",
        &["--data", &data, "--max-commit-bytes", MAX_COMMIT],
    )
    .await
    .expect("the standalone sidecar starts");
    parts_of_each_write(&standalone, "embedded").await;

    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let on_ferretdb = Sidecar::start(
        "argon-sidecar-ferretdb",
        &[
            "--store",
            ferretdb.uri(),
            "--project",
            "parts",
            "--max-commit-bytes",
            MAX_COMMIT,
        ],
    )
    .await
    .expect("a sidecar on FerretDB starts");
    parts_of_each_write(&on_ferretdb, "FerretDB").await;
}

#[tokio::test]
async fn a_commit_limit_below_the_least_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal").display().to_string();
    for bad in ["1048576", "0", "-1", "lots"] {
        let started = Sidecar::start(
            "argon-sidecar",
            &["--data", &data, "--max-commit-bytes", bad],
        )
        .await;
        assert!(started.is_err(), "--max-commit-bytes {bad} was accepted");
    }
}

fn lsid(n: u8) -> Document {
    doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![n; 16] }}
}

/// An `update` of `$inc: {count: 1}` on each of the 40 documents, one
/// statement each, as a retryable write of session `s`, txnNumber `t`.
fn increment_each(s: u8, t: i64) -> Document {
    let updates: Vec<Bson> = (0..DOCS)
        .map(|i| Bson::Document(doc! {"q": {"_id": i}, "u": {"$inc": {"count": 1}}}))
        .collect();
    doc! {"update": "big", "updates": updates, "ordered": true,
    "lsid": lsid(s), "txnNumber": t, "$db": "app"}
}

/// The reply without what may differ between two answers of one write.
fn answer(mut reply: Document) -> Document {
    reply.remove("$clusterTime");
    reply.remove("operationTime");
    reply
}

/// Each document's `count`, in `_id` order (read through the driver,
/// which follows the cursor).
async fn counts(sidecar: &Sidecar) -> Vec<i32> {
    let client = sidecar.client().await.expect("a client");
    let coll: Collection<Document> = client.database("app").collection("big");
    coll.find(doc! {})
        .projection(doc! {"count": 1})
        .sort(doc! {"_id": 1})
        .await
        .expect("find")
        .try_collect::<Vec<_>>()
        .await
        .expect("read back")
        .iter()
        .map(|d| d.get_i32("count").expect("count"))
        .collect()
}

async fn load(sidecar: &Sidecar) {
    let client = sidecar.client().await.expect("a client");
    let coll: Collection<Document> = client.database("app").collection("big");
    coll.insert_many((0..DOCS).map(big)).await.expect("load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_write_in_parts_is_applied_once_when_retried_or_sent_twice_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal").display().to_string();
    let sidecar = Sidecar::start(
        "argon-sidecar",
        &["--data", &data, "--max-commit-bytes", MAX_COMMIT],
    )
    .await
    .expect("the sidecar starts");
    load(&sidecar).await;
    let addr = format!("127.0.0.1:{}", sidecar.port)
        .parse()
        .expect("address");
    let mut c = RawClient::connect(addr).await;

    let first = c.command(increment_each(1, 1)).await;
    assert_eq!(first.get_i32("n").ok(), Some(DOCS), "{first}");
    assert_eq!(first.get_i32("nModified").ok(), Some(DOCS), "{first}");
    assert!(
        !first.contains_key("$argonResumeAt"),
        "a final reply has no resume point: {first}"
    );
    let again = c.command(increment_each(1, 1)).await;
    assert_eq!(answer(again), answer(first.clone()), "the retry's answer");
    assert_eq!(
        counts(&sidecar).await,
        vec![1; DOCS as usize],
        "applied once"
    );

    // The same write sent on two connections at once: whichever runs a
    // part, the other continues from the log; every statement runs once.
    let mut other = RawClient::connect(addr).await;
    let (a, b) = tokio::join!(
        c.command(increment_each(1, 2)),
        other.command(increment_each(1, 2))
    );
    assert_eq!(answer(a.clone()), answer(b), "both answers");
    assert_eq!(a.get_i32("nModified").ok(), Some(DOCS), "{a}");
    assert_eq!(
        counts(&sidecar).await,
        vec![2; DOCS as usize],
        "applied once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_write_killed_between_parts_continues_from_the_log_after_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal").display().to_string();
    let args = ["--data", data.as_str(), "--max-commit-bytes", MAX_COMMIT];
    let mut setup = Sidecar::start("argon-sidecar-setup", &args)
        .await
        .expect("the sidecar starts");
    load(&setup).await;
    setup.kill();

    // The first append after this start (the write's first part) lands;
    // the second (its next part) "dies" before its fsync, as a crash.
    let mut crashing = Sidecar::start_with_env(
        "argon-sidecar-crashing",
        &args,
        &[("ARGON_FAILPOINTS", "embedded-before-fsync=skip:1")],
    )
    .await
    .expect("the sidecar starts");
    let addr = format!("127.0.0.1:{}", crashing.port)
        .parse()
        .expect("address");
    let mut c = RawClient::connect(addr).await;
    let cut = c.command(increment_each(7, 1)).await;
    assert_ne!(
        cut.get_f64("ok").ok(),
        Some(1.0),
        "the write was cut: {cut}"
    );
    crashing.kill();

    let sidecar = Sidecar::start("argon-sidecar-restarted", &args)
        .await
        .expect("the sidecar restarts");
    let addr = format!("127.0.0.1:{}", sidecar.port)
        .parse()
        .expect("address");
    let mut c = RawClient::connect(addr).await;
    let applied = counts(&sidecar).await;
    let done = applied.iter().filter(|n| **n == 1).count();
    assert!(
        done > 0 && done < DOCS as usize && applied[..done].iter().all(|n| *n == 1),
        "the first part, and only it, is in the log: {applied:?}"
    );
    let retried = c.command(increment_each(7, 1)).await;
    assert_eq!(retried.get_i32("n").ok(), Some(DOCS), "{retried}");
    assert_eq!(retried.get_i32("nModified").ok(), Some(DOCS), "{retried}");
    assert_eq!(
        counts(&sidecar).await,
        vec![1; DOCS as usize],
        "no statement twice"
    );
}

/// The client-level `bulkWrite` is cut into parts like the other write
/// commands: an `updateMany` and a `deleteMany` of 80 and 40 MiB, and a
/// retryable bulk of 40 single-document updates sent twice, applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_bulk_write_past_the_commit_limit_commits_in_parts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal").display().to_string();
    let sidecar = Sidecar::start(
        "argon-sidecar",
        &["--data", &data, "--max-commit-bytes", MAX_COMMIT],
    )
    .await
    .expect("the sidecar starts");
    load(&sidecar).await;
    let client = sidecar.client().await.expect("a client");
    let before = commits(&client).await;
    let addr = format!("127.0.0.1:{}", sidecar.port)
        .parse()
        .expect("address");
    let mut c = RawClient::connect(addr).await;

    let increments: Vec<Bson> = (0..DOCS)
        .map(|i| {
            Bson::Document(
                doc! {"update": 0, "filter": {"_id": i}, "updateMods": {"$inc": {"count": 1}}},
            )
        })
        .collect();
    let retryable = doc! {"bulkWrite": 1, "ops": increments, "nsInfo": [{"ns": "app.big"}],
    "lsid": lsid(3), "txnNumber": 1i64, "$db": "admin"};
    let first = c.command(retryable.clone()).await;
    assert_eq!(first.get_i32("nModified").ok(), Some(DOCS), "{first}");
    let again = c.command(retryable).await;
    assert_eq!(answer(again), answer(first), "the retry's answer");
    assert_eq!(
        counts(&sidecar).await,
        vec![1; DOCS as usize],
        "applied once"
    );
    let after_retryable = commits(&client).await;
    assert!(after_retryable - before >= 2, "not cut into parts");

    let r = c
        .command(doc! {"bulkWrite": 1, "ops": [
            {"update": 0, "filter": {}, "updateMods": {"$inc": {"count": 1}}, "multi": true},
            {"delete": 0, "filter": {"count": 2}, "multi": true},
        ], "nsInfo": [{"ns": "app.big"}], "$db": "admin"})
        .await;
    assert_eq!(r.get_f64("ok").ok(), Some(1.0), "{r}");
    assert_eq!(
        (
            r.get_i32("nMatched").ok(),
            r.get_i32("nModified").ok(),
            r.get_i32("nDeleted").ok(),
            r.get_i32("nErrors").ok()
        ),
        (Some(DOCS), Some(DOCS), Some(DOCS), Some(0)),
        "{r}"
    );
    assert!(
        commits(&client).await - after_retryable >= 3,
        "120 MiB of images in fewer than 3 commits"
    );
    assert!(counts(&sidecar).await.is_empty());
}
