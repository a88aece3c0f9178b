//! Cursors stream, sorts spill past their memory budget, and commands
//! honour `maxTimeMS`, through the Rust driver against the server
//! (in-process, or the real binary where a flag is needed).

use crate::common;

use common::sidecar::Sidecar;

use bson::{Document, doc};
use common::{TestServer, code};
use futures::TryStreamExt;
use mongodb::Collection;

async fn filled(server: &TestServer, n: i32) -> Collection<Document> {
    let client = server.client().await;
    let items: Collection<Document> = client.database("cur").collection("items");
    let docs: Vec<Document> = (0..n)
        .map(|i| doc! {"_id": i, "name": format!("item-{i:06}"), "even": i % 2 == 0})
        .collect();
    for chunk in docs.chunks(5_000) {
        items.insert_many(chunk.to_vec()).await.expect("seed");
    }
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_cursor_reads_one_snapshot_while_writes_go_on() {
    let server = TestServer::start().await;
    let items = filled(&server, 5_000).await;
    let mut cursor = items
        .find(doc! {"even": true})
        .batch_size(100)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(d) = cursor.try_next().await.unwrap() {
        seen.push(d.get_i32("_id").unwrap());
        if seen.len() == 150 {
            // Later batches still read the state the find started on.
            items
                .delete_many(doc! {"_id": {"$gte": 4000}})
                .await
                .unwrap();
            items
                .insert_one(doc! {"_id": 10_000, "even": true})
                .await
                .unwrap();
        }
    }
    assert_eq!(seen.len(), 2_500);
    assert_eq!(seen, (0..5_000).step_by(2).collect::<Vec<i32>>());
    // skip and limit with a streaming scan.
    let page: Vec<Document> = items
        .find(doc! {"even": false})
        .skip(10)
        .limit(7)
        .batch_size(3)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<i32> = page.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    assert_eq!(ids, vec![21, 23, 25, 27, 29, 31, 33]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_ms_stops_long_scans() {
    let server = TestServer::start().await;
    let items = filled(&server, 30_000).await;
    let db = server.client().await.database("cur");
    let slow = doc! {"name": {"$regex": "^item-.*9$"}, "even": {"$in": [true, false]}};
    let e = db
        .run_command(
            doc! {"find": "items", "filter": slow.clone(), "sort": {"name": -1}, "maxTimeMS": 1},
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(50), "{e}");
    let e = db
        .run_command(doc! {"count": "items", "query": slow.clone(), "maxTimeMS": 1})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(50), "{e}");
    let e = db
        .run_command(doc! {"aggregate": "items", "pipeline": [{"$match": slow.clone()}], "cursor": {}, "maxTimeMS": 1})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(50), "{e}");
    let e = db
        .run_command(doc! {"find": "items", "maxTimeMS": -5})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(2), "{e}");
    // Writes too: the statement fails whole, nothing is written.
    let r = db
        .run_command(doc! {"update": "items", "updates": [{"q": slow.clone(), "u": {"$set": {"touched": true}}, "multi": true}], "maxTimeMS": 1})
        .await
        .unwrap();
    let errors = r.get_array("writeErrors").unwrap();
    assert_eq!(
        errors[0].as_document().unwrap().get_i32("code").ok(),
        Some(50),
        "{r}"
    );
    assert_eq!(
        items.count_documents(doc! {"touched": true}).await.unwrap(),
        0
    );
    // A generous limit changes nothing.
    let n = items
        .count_documents(slow)
        .max_time(std::time::Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(n, 3_000);
    db.run_command(doc! {"ping": 1}).await.unwrap();
    server.stop().await;
}

/// A sort larger than the blocking-stage budget (64 KiB here, 100 MiB by
/// default) spills to disk and still returns every document in order;
/// with `allowDiskUse: false` it fails with 292 instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sort_past_its_memory_budget_spills_or_fails_as_asked() {
    let data = tempfile::tempdir().unwrap();
    let wal = data.path().join("wal").display().to_string();
    let sidecar = Sidecar::start(
        "argon-sidecar",
        &["--data", &wal, "--max-blocking-sort-bytes", "65536"],
    )
    .await
    .unwrap();
    let client = sidecar.client().await.unwrap();
    let items: Collection<Document> = client.database("cur").collection("items");
    let docs: Vec<Document> = (0..4_000)
        .map(|i| doc! {"_id": i, "k": (i * 7919) % 1000, "pad": "x".repeat(100)})
        .collect();
    items.insert_many(docs).await.unwrap();
    let sorted: Vec<Document> = items
        .find(doc! {"k": {"$gte": 10}})
        .sort(doc! {"k": -1, "_id": 1})
        .skip(5)
        .projection(doc! {"pad": 0})
        .batch_size(333)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let keys: Vec<(i32, i32)> = sorted
        .iter()
        .map(|d| (d.get_i32("k").unwrap(), d.get_i32("_id").unwrap()))
        .collect();
    let mut expected: Vec<(i32, i32)> = (0..4_000)
        .map(|i| ((i * 7919) % 1000, i))
        .filter(|(k, _)| *k >= 10)
        .collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(keys, expected[5..].to_vec());
    assert!(sorted.iter().all(|d| !d.contains_key("pad")));
    let e = client
        .database("cur")
        .run_command(doc! {"find": "items", "sort": {"k": 1}, "allowDiskUse": false})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(292), "{e}");
    // Small sorts do not need the disk.
    let few = client
        .database("cur")
        .run_command(doc! {"find": "items", "filter": {"_id": {"$lt": 10}}, "sort": {"k": 1}, "allowDiskUse": false})
        .await
        .unwrap();
    assert_eq!(
        few.get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .len(),
        10
    );
}

/// `distinct` drops duplicates across numeric types and array elements
/// (sorted, then neighbours compared: O(n log n)).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_values_are_deduplicated_in_order() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let c: Collection<Document> = client.database("cur").collection("d");
    c.insert_many([
        doc! {"_id": 1, "v": 1},
        doc! {"_id": 2, "v": 1.0},
        doc! {"_id": 3, "v": [2, 3, 1]},
        doc! {"_id": 4, "v": "a"},
        doc! {"_id": 5, "v": null},
        doc! {"_id": 6},
        doc! {"_id": 7, "v": 2i64},
    ])
    .await
    .unwrap();
    let values = c.distinct("v", doc! {}).await.unwrap();
    assert_eq!(
        values,
        vec![
            bson::Bson::Null,
            bson::Bson::Int32(1),
            bson::Bson::Int32(2),
            bson::Bson::Int32(3),
            bson::Bson::String("a".into())
        ]
    );
    server.stop().await;
}

/// An aggregate over a collection eight times the blocking-stage budget
/// (64 KiB here): a streaming pipeline gives its first batch and pages the
/// rest on getMore; `$sort` and `$group` spill and give the right results;
/// `allowDiskUse: false` fails with 292 where a stage would spill; a
/// getMore past the command's `maxTimeMS` fails with 50. The server
/// answers after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_streams_and_its_blocking_stages_spill() {
    let data = tempfile::tempdir().unwrap();
    let wal = data.path().join("wal").display().to_string();
    let sidecar = Sidecar::start(
        "argon-sidecar",
        &["--data", &wal, "--max-blocking-sort-bytes", "65536"],
    )
    .await
    .unwrap();
    let client = sidecar.client().await.unwrap();
    let db = client.database("cur");
    let items: Collection<Document> = db.collection("items");
    let k = |i: i32| (i * 7919) % 1000;
    let docs: Vec<Document> = (0..4_000)
        .map(|i| doc! {"_id": i, "k": k(i), "pad": "x".repeat(100)})
        .collect();
    items.insert_many(docs).await.unwrap();
    let ping = || async { db.run_command(doc! {"ping": 1}).await.unwrap() };

    // Streaming: the first batch, then getMore for the rest.
    let reply = db
        .run_command(doc! {"aggregate": "items", "pipeline": [{"$match": {"k": {"$lt": 500}}}, {"$project": {"pad": 0}}], "cursor": {}})
        .await
        .unwrap();
    let cursor = reply.get_document("cursor").unwrap();
    assert_eq!(cursor.get_array("firstBatch").unwrap().len(), 101);
    let id = cursor.get_i64("id").unwrap();
    assert_ne!(id, 0);
    let mut seen = 101;
    let mut id = id;
    while id != 0 {
        let more = db
            .run_command(doc! {"getMore": id, "collection": "items", "batchSize": 500})
            .await
            .unwrap();
        let c = more.get_document("cursor").unwrap();
        seen += c.get_array("nextBatch").unwrap().len();
        id = c.get_i64("id").unwrap();
    }
    assert_eq!(seen, 2_000);
    ping().await;

    // $sort spills; its order is the full order, stable on ties.
    let sorted: Vec<Document> = items
        .aggregate([doc! {"$sort": {"k": -1}}, doc! {"$project": {"pad": 0}}])
        .batch_size(333)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let got: Vec<(i32, i32)> = sorted
        .iter()
        .map(|d| (d.get_i32("k").unwrap(), d.get_i32("_id").unwrap()))
        .collect();
    let mut expected: Vec<(i32, i32)> = (0..4_000).map(|i| (k(i), i)).collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(got, expected);
    ping().await;

    // $group spills (1,000 groups); every group is whole.
    let groups: Vec<Document> = items
        .aggregate([
            doc! {"$group": {"_id": "$k", "n": {"$sum": 1}, "ids": {"$push": "$_id"}, "first": {"$first": "$_id"}, "last": {"$last": "$_id"}, "pads": {"$addToSet": "$pad"}}},
            doc! {"$sort": {"_id": 1}},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(groups.len(), 1_000);
    for g in &groups {
        let key = g.get_i32("_id").unwrap();
        let ids: Vec<i32> = (0..4_000).filter(|&i| k(i) == key).collect();
        assert_eq!(g.get_i32("n").unwrap(), 4);
        let pushed: Vec<i32> = g
            .get_array("ids")
            .unwrap()
            .iter()
            .map(|v| v.as_i32().unwrap())
            .collect();
        assert_eq!(pushed, ids, "{g}");
        assert_eq!(g.get_i32("first").unwrap(), ids[0]);
        assert_eq!(g.get_i32("last").unwrap(), ids[3]);
        assert_eq!(g.get_array("pads").unwrap().len(), 1);
    }
    ping().await;

    // allowDiskUse: false where a stage would spill: 292. A top-k sort
    // holds only k documents and needs no disk.
    for stage in [doc! {"$sort": {"k": 1}}, doc! {"$group": {"_id": "$_id"}}] {
        let e = db
            .run_command(doc! {"aggregate": "items", "pipeline": [stage.clone()], "cursor": {}, "allowDiskUse": false})
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(292), "{stage}: {e}");
        ping().await;
    }
    let top = db
        .run_command(doc! {"aggregate": "items", "pipeline": [{"$sort": {"k": 1, "_id": -1}}, {"$limit": 3}, {"$project": {"_id": 1}}], "cursor": {}, "allowDiskUse": false})
        .await
        .unwrap();
    let first = top
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .clone();
    let mut zero: Vec<i32> = (0..4_000).filter(|&i| k(i) == 0).collect();
    zero.reverse();
    let expected: Vec<bson::Bson> = zero[..3]
        .iter()
        .map(|&i| bson::Bson::Document(doc! {"_id": i}))
        .collect();
    assert_eq!(first, expected);

    // maxTimeMS covers the getMores too: the first batch comes at once,
    // the next one needs 8 M unwound documents and runs out of time.
    let reply = db
        .run_command(doc! {
            "aggregate": "items",
            "pipeline": [
                {"$addFields": {"r": {"$range": [0, 2000]}}},
                {"$unwind": "$r"},
                {"$match": {"$or": [{"_id": 0, "r": 0}, {"r": -1}]}},
            ],
            "cursor": {"batchSize": 1},
            "maxTimeMS": 500,
        })
        .await
        .unwrap();
    let cursor = reply.get_document("cursor").unwrap();
    assert_eq!(cursor.get_array("firstBatch").unwrap().len(), 1);
    let id = cursor.get_i64("id").unwrap();
    let e = db
        .run_command(doc! {"getMore": id, "collection": "items"})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(50), "{e}");
    // The cursor is closed with the error.
    let e = db
        .run_command(doc! {"getMore": id, "collection": "items"})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(43), "{e}");
    ping().await;
}
