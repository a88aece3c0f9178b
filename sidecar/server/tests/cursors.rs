//! Cursors stream, sorts spill past their memory budget, and commands
//! honour `maxTimeMS`, through the Rust driver against the server
//! (in-process, or the real binary where a flag is needed).

mod common;

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
