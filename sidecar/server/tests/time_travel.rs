//! Time travel served by the materialized store (`--cache-dir`) answers
//! exactly as replaying the log does: the same history is read at every
//! past point through the real driver, once by a sidecar without a cache
//! (replay) and once by one with it (store views), and the answers compare
//! equal, also once the store is at its disk bound (`--cache-disk-bytes`).
//! Plus the flags' refusals.

use crate::common;

use argon_testkit::free_port;
use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use std::path::Path;

/// Writes a history with every kind of change a past read must see:
/// inserts, updates, deletes, an index created midway, a second
/// collection for `$lookup`, a capped collection (served by replay even
/// with a cache) and a branch forked from the middle with its own writes.
async fn write_history(client: &mongodb::Client) {
    let db = client.database("shop");
    let items = db.collection::<Document>("items");
    let owners = db.collection::<Document>("owners");
    for i in 0..30 {
        items
            .insert_one(doc! {"_id": i, "qty": i % 7, "owner": i % 3, "tag": format!("t{}", i % 4)})
            .await
            .expect("insert");
    }
    for o in 0..3 {
        owners
            .insert_one(doc! {"_id": o, "name": format!("owner {o}")})
            .await
            .expect("insert owner");
    }
    db.run_command(
        doc! {"createIndexes": "items", "indexes": [{"key": {"qty": 1}, "name": "qty_1"}]},
    )
    .await
    .expect("createIndexes");
    items
        .update_many(doc! {"qty": {"$gte": 4}}, doc! {"$inc": {"qty": 10}})
        .await
        .expect("update");
    items
        .delete_many(doc! {"owner": 2, "qty": {"$lt": 3}})
        .await
        .expect("delete");
    db.run_command(doc! {"create": "log", "capped": true, "size": 4096})
        .await
        .expect("create capped");
    for i in 0..5 {
        db.collection::<Document>("log")
            .insert_one(doc! {"_id": 100 - i, "n": i})
            .await
            .expect("insert into capped");
    }
    db.run_command(doc! {"drop": "log"})
        .await
        .expect("drop capped");
    client
        .database("admin")
        .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
        .await
        .expect("fork");
    let dev = client.database("shop~dev").collection::<Document>("items");
    dev.insert_one(doc! {"_id": 500, "qty": 1, "owner": 1})
        .await
        .expect("insert on dev");
    dev.delete_one(doc! {"_id": 3})
        .await
        .expect("delete on dev");
    items
        .replace_one(doc! {"_id": 1}, doc! {"qty": 99, "owner": 0})
        .await
        .expect("replace on main");
}

async fn head_seq(client: &mongodb::Client, branch: &str) -> i64 {
    client
        .database("admin")
        .run_command(doc! {"argonLogInfo": branch})
        .await
        .expect("argonLogInfo")
        .get_document("branch")
        .expect("branch")
        .get_i64("headSeq")
        .expect("headSeq")
}

async fn all(coll: &mongodb::Collection<Document>, filter: Document) -> Vec<Document> {
    coll.find(filter)
        .sort(doc! {"_id": 1})
        .batch_size(4)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("getMore")
}

/// Everything a client reads of `branch` at `seq`, as one document.
async fn read_point(client: &mongodb::Client, branch: &str, seq: i64) -> Document {
    let db = client.database(&format!("shop~{branch}@{seq}"));
    let items = db.collection::<Document>("items");
    let mut names = db.list_collection_names().await.expect("listCollections");
    names.sort();
    let by_id = items.find_one(doc! {"_id": 5}).await.expect("find by _id");
    let by_index = all(&items, doc! {"qty": {"$gte": 3, "$lt": 12}}).await;
    let joined: Vec<Document> = items
        .aggregate(vec![
            doc! {"$match": {"owner": {"$in": [0, 1]}}},
            doc! {"$lookup": {"from": "owners", "localField": "owner", "foreignField": "_id", "as": "who"}},
            doc! {"$sort": {"_id": 1}},
            doc! {"$project": {"who.name": 1, "qty": 1}},
        ])
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("aggregate batches");
    let tags = items.distinct("tag", doc! {}).await.expect("distinct");
    let capped: Vec<Document> = if names.iter().any(|n| n == "log") {
        db.collection::<Document>("log")
            .find(doc! {})
            .await
            .expect("find in capped")
            .try_collect()
            .await
            .expect("capped batches")
    } else {
        Vec::new()
    };
    doc! {
        "collections": names,
        "count": items.count_documents(doc! {}).await.expect("count") as i64,
        "estimated": items.estimated_document_count().await.expect("estimated") as i64,
        "all": all(&items, doc! {}).await,
        "by_id": by_id.map_or(Bson::Null, Bson::Document),
        "by_index": by_index,
        "joined": joined,
        "tags": tags,
        "capped_natural_order": capped,
    }
}

/// Every past point of `main` and `dev` (not the heads: those are served
/// from memory either way).
async fn read_history(client: &mongodb::Client) -> Vec<(String, i64, Document)> {
    let mut out = Vec::new();
    for branch in ["main", "dev"] {
        let head = head_seq(client, branch).await;
        for seq in 0..head {
            out.push((
                branch.to_string(),
                seq,
                read_point(client, branch, seq).await,
            ));
        }
    }
    out
}

async fn serve(data: &Path, cache: Option<&Path>) -> Sidecar {
    serve_with(data, cache, &[]).await
}

async fn serve_with(data: &Path, cache: Option<&Path>, more: &[&str]) -> Sidecar {
    let data = data.display().to_string();
    let mut args = vec!["--data".to_string(), data];
    args.extend(more.iter().map(|a| a.to_string()));
    if let Some(c) = cache {
        args.extend(["--cache-dir".to_string(), c.display().to_string()]);
        args.extend(["--cache-bytes".to_string(), (32u64 << 20).to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Sidecar::start("argon-sidecar", &args)
        .await
        .expect("argon-sidecar starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_points_read_from_the_cache_equal_the_replayed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cache) = (dir.path().join("wal"), dir.path().join("cache"));

    let writer = serve(&data, None).await;
    write_history(&writer.client().await.unwrap()).await;
    let replayed = read_history(&writer.client().await.unwrap()).await;
    drop(writer);
    assert!(
        replayed.len() > 40,
        "a history of {} points",
        replayed.len()
    );

    let cached = serve(&data, Some(&cache)).await;
    let client = cached.client().await.unwrap();
    let from_cache = read_history(&client).await;
    for ((branch, seq, want), (_, _, got)) in replayed.iter().zip(&from_cache) {
        assert_eq!(got, want, "{branch} at seq {seq}");
    }
    assert_eq!(from_cache.len(), replayed.len());
    // The store was filled by those reads (it caught up from the log).
    let files = walk_bytes(&cache);
    assert!(files > 0, "the cache directory holds the store");
    drop(client);
    drop(cached);

    // A warm cache after a restart (caught up already) and one that was
    // deleted (rebuilt from the log) read the same.
    let again = serve(&data, Some(&cache)).await;
    let warm = read_history(&again.client().await.unwrap()).await;
    assert!(
        warm == replayed,
        "a restarted sidecar's warm cache reads the same"
    );
    drop(again);
    std::fs::remove_dir_all(&cache).unwrap();
    let rebuilt = serve(&data, Some(&cache)).await;
    let fresh = read_history(&rebuilt.client().await.unwrap()).await;
    assert!(fresh == replayed, "a rebuilt cache reads the same");
}

/// A cache kept while its log was replaced (the data directory deleted and
/// the project created again) is never read as the new log's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_outliving_its_log_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cache) = (dir.path().join("wal"), dir.path().join("cache"));
    let first = serve(&data, Some(&cache)).await;
    let client = first.client().await.unwrap();
    let items = client.database("shop").collection::<Document>("items");
    for i in 0..5 {
        items
            .insert_one(doc! {"_id": i, "old": true})
            .await
            .unwrap();
    }
    let old = read_point(&client, "main", 4).await;
    assert_eq!(old.get_i64("count").unwrap(), 4);
    drop(client);
    drop(first);

    std::fs::remove_dir_all(&data).unwrap();
    let second = serve(&data, Some(&cache)).await;
    let client = second.client().await.unwrap();
    let items = client.database("shop").collection::<Document>("items");
    for i in 0..5 {
        items
            .insert_one(doc! {"_id": i * 10, "new": true})
            .await
            .unwrap();
    }
    let point = read_point(&client, "main", 4).await;
    let docs = point.get_array("all").unwrap();
    assert_eq!(docs.len(), 4);
    assert!(
        docs.iter()
            .all(|d| d.as_document().unwrap().get_bool("new").is_ok_and(|b| b)),
        "the new log's history, not the old cache's: {docs:?}"
    );
}

/// The disk bound of the test below: the smallest `--cache-disk-bytes`.
const DISK_BOUND: u64 = 16 << 20;

/// Bytes of noise per document: incompressible, so the store's size on disk
/// follows the history's.
const BLOB: usize = 64 << 10;

/// A blob of `BLOB` pseudo-random bytes (xorshift) seeded by `seed`.
fn blob(seed: u64) -> Bson {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(BLOB);
    while bytes.len() < BLOB {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    })
}

/// 400 inserts of a 64 KiB document and 100 updates rewriting one: ~32 MiB
/// of history, twice the bound.
async fn write_big_history(client: &mongodb::Client) {
    let blobs = client.database("shop").collection::<Document>("blobs");
    for i in 0..400i64 {
        blobs
            .insert_one(doc! {"_id": i, "n": i, "blob": blob(i as u64)})
            .await
            .expect("insert");
        if i % 4 == 3 {
            blobs
                .update_one(
                    doc! {"_id": i / 2},
                    doc! {"$set": {"n": -i, "blob": blob(1_000 + i as u64)}},
                )
                .await
                .expect("update");
        }
    }
}

/// What a client reads of `main` at `seq`: every document without its blob
/// (ids and counters: a view missing a commit shows here), one whole
/// document, and the count.
async fn read_big_point(client: &mongodb::Client, seq: i64) -> Document {
    let db = client.database(&format!("shop~main@{seq}"));
    let blobs = db.collection::<Document>("blobs");
    let listed: Vec<Document> = blobs
        .find(doc! {})
        .projection(doc! {"blob": 0})
        .sort(doc! {"_id": 1})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("getMore");
    let whole = blobs
        .find_one(doc! {"_id": seq / 3})
        .await
        .expect("find by _id");
    doc! {
        "count": blobs.count_documents(doc! {}).await.expect("count") as i64,
        "listed": listed,
        "whole": whole.map_or(Bson::Null, Bson::Document),
    }
}

/// Every 10th past point of `main` and the one before its head, in order.
async fn read_big_history(client: &mongodb::Client) -> Vec<(i64, Document)> {
    let head = head_seq(client, "main").await;
    let mut out = Vec::new();
    for seq in (1..head).filter(|s| s % 10 == 0 || *s == head - 1) {
        out.push((seq, read_big_point(client, seq).await));
    }
    out
}

/// The cached sidecar of the test below, with its metrics port.
async fn serve_bounded(data: &Path, cache: &Path) -> (Sidecar, u16) {
    let metrics_port = free_port().expect("a free port");
    let args = [
        "--data".to_string(),
        data.display().to_string(),
        "--cache-dir".to_string(),
        cache.display().to_string(),
        "--cache-disk-bytes".to_string(),
        DISK_BOUND.to_string(),
        "--metrics-listen".to_string(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start("argon-sidecar-bounded", &args)
        .await
        .expect("argon-sidecar starts");
    (sidecar, metrics_port)
}

fn replays(text: &str) -> f64 {
    common::metric(text, "argon_sidecar_past_reads_total{served_by=\"replay\"}")
}

/// A store at its disk bound applies nothing more, and every past point
/// still reads what replaying the log reads: the points it holds from the
/// store, the others replayed (never a view of less than the point).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_at_its_disk_bound_stops_growing_and_reads_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cache) = (dir.path().join("wal"), dir.path().join("cache"));

    let writer = serve(&data, None).await;
    write_big_history(&writer.client().await.unwrap()).await;
    let replayed = read_big_history(&writer.client().await.unwrap()).await;
    drop(writer);
    assert!(replayed.len() > 40, "{} points", replayed.len());

    let (bounded, metrics_port) = serve_bounded(&data, &cache).await;
    let client = bounded.client().await.unwrap();
    // Oldest first: the early points fill the store (caught up from the
    // log), the later ones find it full and are replayed.
    let read = read_big_history(&client).await;
    assert_eq!(read.len(), replayed.len());
    for ((seq, want), (_, got)) in replayed.iter().zip(&read) {
        assert!(got == want, "main at seq {seq}");
    }
    let text = common::metrics_text(metrics_port).await;
    assert_eq!(
        common::metric(&text, "argon_sidecar_cache_full "),
        1.0,
        "{text}"
    );
    let disk = common::metric(&text, "argon_sidecar_cache_disk_bytes ");
    assert!(disk >= DISK_BOUND as f64, "{disk} bytes measured");
    let stored = common::metric(&text, "argon_sidecar_past_reads_total{served_by=\"store\"}");
    assert!(stored > 0.0, "the points it held were read from it: {text}");
    let replayed_before = replays(&text);
    assert!(replayed_before > 0.0, "points past the bound were replayed");
    assert!(
        bounded.output().contains("materialized store is full"),
        "one warning says so: {}",
        bounded.output()
    );

    // Writes go on (the log takes them; the store does not), and the
    // newest point is replayed.
    let blobs = client.database("shop").collection::<Document>("blobs");
    for i in 1_000..1_050i64 {
        blobs
            .insert_one(doc! {"_id": i, "n": i, "blob": blob(i as u64)})
            .await
            .expect("insert past the bound");
    }
    let head = head_seq(&client, "main").await;
    let newest = read_big_point(&client, head - 1).await;
    assert_eq!(newest.get_i64("count").unwrap(), 449);
    let text = common::metrics_text(metrics_port).await;
    assert!(
        replays(&text) > replayed_before,
        "replays counted after it filled"
    );
    // The bound is checked before each batch and measured at most every
    // 16 batches (a batch here: ~64 KiB, a 128 KiB update at most), and
    // fjall's directory holds a little it does not count (manifest,
    // tables a compaction replaced, not yet deleted): 8 MiB of slack is
    // generous for both. Without the bound the store holds ~32 MiB.
    let used = du(&cache);
    assert!(
        used <= DISK_BOUND + (8 << 20),
        "the cache directory holds {used} bytes, bound {DISK_BOUND}"
    );
    drop(client);
    drop(bounded);

    // Reopened: measured at once, still full, still right.
    let (again, metrics_port) = serve_bounded(&data, &cache).await;
    let text = common::metrics_text(metrics_port).await;
    assert_eq!(
        common::metric(&text, "argon_sidecar_cache_full "),
        1.0,
        "{text}"
    );
    let client = again.client().await.unwrap();
    for (seq, want) in &replayed {
        let got = read_big_point(&client, *seq).await;
        assert!(&got == want, "main at seq {seq} after a restart");
    }
    let used = du(&cache);
    assert!(
        used <= DISK_BOUND + (8 << 20),
        "after a restart the cache directory holds {used} bytes"
    );
}

#[tokio::test]
async fn cache_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("wal").display().to_string();
    let refused = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_argon-sidecar"))
            .arg("serve")
            .args(args)
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A budget without a cache, or below what the store can work in.
    let e = refused(&["--data", &data, "--cache-bytes", "67108864"]);
    assert!(e.contains("--cache-dir"), "{e}");
    let cache = dir.path().join("cache").display().to_string();
    let e = refused(&[
        "--data",
        &data,
        "--cache-dir",
        &cache,
        "--cache-bytes",
        "1024",
    ]);
    assert!(e.contains("--cache-bytes"), "{e}");
    let e = refused(&["--data", &data, "--cache-dir", &cache, "--cache-bytes=-1"]);
    assert!(e.contains("-1"), "{e}");
    let e = refused(&[
        "--data",
        &data,
        "--cache-dir",
        &cache,
        "--cache-bytes",
        "99999999999999999999",
    ]);
    assert!(e.contains("--cache-bytes"), "{e}");
    // A disk bound: only with a cache, at least 16 MiB, a number of bytes
    // that fits in 64 bits.
    let e = refused(&["--data", &data, "--cache-disk-bytes", "67108864"]);
    assert!(e.contains("--cache-dir"), "{e}");
    for bound in [
        "0",
        "1",
        "16777215",
        "16MiB",
        "lots",
        "-1",
        "18446744073709551616",
    ] {
        let e = refused(&[
            "--data",
            &data,
            "--cache-dir",
            &cache,
            &format!("--cache-disk-bytes={bound}"),
        ]);
        assert!(e.contains("--cache-disk-bytes"), "{bound}: {e}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_argon-sidecar"))
        .args(["serve", "--data", &data, "--cache-dir", &cache])
        .env("ARGON_CACHE_DISK_BYTES", "1")
        .output()
        .expect("runs");
    assert!(
        !out.status.success(),
        "ARGON_CACHE_DISK_BYTES=1 was accepted"
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("--cache-disk-bytes"), "{e}");
    // A cache directory that cannot be one (a file) stops the start with a
    // message, before any client is served.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let listen = "127.0.0.1:0";
    let e = refused(&[
        "--data",
        &data,
        "--cache-dir",
        &file.display().to_string(),
        "--listen",
        listen,
    ]);
    assert!(e.contains("cannot open"), "{e}");
}

/// Bytes under `dir`, recursively.
fn walk_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        n += if p.is_dir() {
            walk_bytes(&p)
        } else {
            e.metadata().map_or(0, |m| m.len())
        };
    }
    n
}

/// Blocks allocated under `dir`, recursively, as `du` and the kubelet count
/// them (fjall's journal is a 64 MiB sparse file: its length is not its use).
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        n += if p.is_dir() {
            du(&p)
        } else {
            e.metadata().map_or(0, |m| m.blocks() * 512)
        };
    }
    n
}

/// A find at `db` with `filter` and `sort`, every batch.
async fn find_sorted(db: &mongodb::Database, filter: Document, sort: Document) -> Vec<Document> {
    db.collection::<Document>("items")
        .find(filter)
        .sort(sort)
        .batch_size(3)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("getMore")
}

/// The queries whose plans and answers the test below compares: index
/// ranges and points in both index directions, and `_id` descending.
fn plan_queries() -> Vec<(Document, Document)> {
    vec![
        (doc! {"qty": {"$gte": 2, "$lt": 9}}, doc! {"qty": 1}),
        (doc! {"qty": {"$gte": 2, "$lt": 9}}, doc! {"qty": -1}),
        (doc! {"qty": {"$in": [1, 7, 104]}}, doc! {"qty": -1}),
        (doc! {"qty": {"$gt": 100}}, doc! {}),
        (doc! {}, doc! {"_id": -1}),
    ]
}

/// The explained winning plan's index scan of `find` at `db`, with the
/// execution stats.
async fn explain_find(
    db: &mongodb::Database,
    filter: Document,
    sort: Document,
) -> (Option<Document>, Document) {
    let e = db
        .run_command(doc! {
            "explain": {"find": "items", "filter": filter, "sort": sort},
            "verbosity": "executionStats",
        })
        .await
        .expect("explain");
    fn ixscan(plan: &Document) -> Option<Document> {
        if plan.get_str("stage").ok() == Some("IXSCAN") {
            return Some(plan.clone());
        }
        plan.get_document("inputStage").ok().and_then(ixscan)
    }
    let plan = e
        .get_document("queryPlanner")
        .and_then(|q| q.get_document("winningPlan"))
        .expect("a winning plan");
    let stats = e
        .get_document("executionStats")
        .expect("executionStats")
        .clone();
    (ixscan(plan), stats)
}

/// Past points served by the store plan and answer as the head did at that
/// point (in memory): index scans in both directions, on `main` and on a
/// fork that changed and deleted its parent's documents, the multikey flag
/// as it was at each point, and `_id` descending (a reverse scan of the
/// store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_points_from_the_store_use_indexes_as_the_head_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, cache) = (dir.path().join("wal"), dir.path().join("cache"));
    let metrics_port = free_port().expect("a free port");
    let listen = format!("127.0.0.1:{metrics_port}");
    let sidecar = serve_with(&data, Some(&cache), &["--metrics-listen", &listen]).await;
    let client = sidecar.client().await.expect("client");
    let shop = client.database("shop");
    let items = shop.collection::<Document>("items");
    items
        .insert_many((0..60).map(|i| doc! {"_id": i, "qty": i % 12, "tag": format!("t{}", i % 4)}))
        .await
        .expect("insert");
    shop.run_command(
        doc! {"createIndexes": "items", "indexes": [{"key": {"qty": 1}, "name": "qty_1"}]},
    )
    .await
    .expect("createIndexes");
    items
        .update_many(doc! {"qty": {"$gte": 6}}, doc! {"$inc": {"qty": 100}})
        .await
        .expect("update");
    items.delete_many(doc! {"qty": 3}).await.expect("delete");
    client
        .database("admin")
        .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
        .await
        .expect("fork");
    let dev = client.database("shop~dev").collection::<Document>("items");
    dev.update_many(doc! {"qty": {"$lt": 4}}, doc! {"$set": {"qty": 7}})
        .await
        .expect("update on dev");
    dev.delete_one(doc! {"_id": 4})
        .await
        .expect("delete on dev");

    for branch in ["main", "dev"] {
        // What the head answers now, in memory, and how it plans.
        let seq = head_seq(&client, branch).await;
        let at = client.database(&format!("shop~{branch}@{seq}"));
        let mut at_head = Vec::new();
        for (filter, sort) in plan_queries() {
            at_head.push(find_sorted(&at, filter, sort).await);
        }
        let (ix, _) =
            explain_find(&at, doc! {"qty": {"$gte": 2, "$lt": 9}}, doc! {"qty": -1}).await;
        let ix = ix.expect("the head scans the index");
        assert_eq!(ix.get_str("direction").expect("direction"), "backward");
        assert!(!ix.get_bool("isMultiKey").expect("isMultiKey"));

        // Later writes make that point past: the store serves it.
        let coll = client
            .database(&format!("shop~{branch}"))
            .collection::<Document>("items");
        coll.insert_one(doc! {"_id": 1000, "qty": 5})
            .await
            .expect("a later insert");
        coll.update_one(doc! {"_id": 1}, doc! {"$set": {"qty": [2, 8]}})
            .await
            .expect("a later multikey update");
        let before = common::metric(
            &common::metrics_text(metrics_port).await,
            "argon_sidecar_past_reads_total{served_by=\"store\"}",
        );
        for ((filter, sort), want) in plan_queries().into_iter().zip(&at_head) {
            let got = find_sorted(&at, filter.clone(), sort.clone()).await;
            assert_eq!(&got, want, "{filter} sorted by {sort} on {branch}@{seq}");
        }
        let (ix, stats) =
            explain_find(&at, doc! {"qty": {"$gte": 2, "$lt": 9}}, doc! {"qty": -1}).await;
        let ix = ix.expect("the past point scans the index");
        assert_eq!(ix.get_str("indexName").expect("indexName"), "qty_1");
        assert_eq!(ix.get_str("direction").expect("direction"), "backward");
        assert!(!ix.get_bool("isMultiKey").expect("isMultiKey"));
        assert_eq!(
            stats.get_i64("totalDocsExamined").expect("docs examined"),
            stats.get_i64("nReturned").expect("nReturned"),
            "only the matches are fetched"
        );
        let text = common::metrics_text(metrics_port).await;
        let after = common::metric(&text, "argon_sidecar_past_reads_total{served_by=\"store\"}");
        assert!(after > before, "the store served {branch}@{seq}");
        assert_eq!(replays(&text), 0.0, "nothing was replayed");

        // The point after the multikey update, once past, knows it.
        let multikey = head_seq(&client, branch).await;
        coll.insert_one(doc! {"_id": 1001, "qty": 0})
            .await
            .expect("one more insert");
        let later = client.database(&format!("shop~{branch}@{multikey}"));
        let (ix, _) = explain_find(&later, doc! {"qty": 2}, doc! {}).await;
        assert!(
            ix.expect("an index scan")
                .get_bool("isMultiKey")
                .expect("isMultiKey"),
            "{branch}@{multikey} holds an array in qty"
        );
        let twos = find_sorted(&later, doc! {"qty": 2}, doc! {"_id": 1}).await;
        let ids: Vec<i32> = twos.iter().filter_map(|d| d.get_i32("_id").ok()).collect();
        assert!(ids.contains(&1), "the array's element is found: {ids:?}");
    }
}
