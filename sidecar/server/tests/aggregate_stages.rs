//! `$facet`, `$unionWith`, `$sample` and `$lookup` with `let` + `pipeline`
//! against the real binary through the Rust driver: collections of the
//! same branch read in chunks across several batches, the command's
//! `let` reaching a sub-pipeline, and hostile nesting refused with
//! MongoDB's code.

mod common;

use bson::{Document, doc};
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use mongodb::{Client, Database};

async fn server() -> (Sidecar, tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sidecar = Sidecar::standalone(&dir.path().join("wal"))
        .await
        .expect("argon-sidecar starts");
    let client = sidecar.client().await.expect("a client");
    (sidecar, dir, client)
}

async fn aggregate(db: &Database, coll: &str, pipeline: Vec<Document>) -> Vec<Document> {
    db.collection::<Document>(coll)
        .aggregate(pipeline)
        .batch_size(7)
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("documents")
}

async fn seed(db: &Database) {
    db.collection::<Document>("a")
        .insert_many((0..150).map(|i| doc! {"_id": i, "k": i % 3, "side": "a"}))
        .await
        .expect("insert a");
    db.collection::<Document>("b")
        .insert_many((0..200).map(|i| doc! {"_id": i, "k": i % 5, "side": "b"}))
        .await
        .expect("insert b");
}

#[tokio::test]
async fn union_with_reads_the_other_collection_of_the_branch() {
    let (_s, _d, client) = server().await;
    let db = client.database("t");
    seed(&db).await;
    let out = aggregate(&db, "a", vec![doc! {"$unionWith": "b"}]).await;
    assert_eq!(out.len(), 350);
    // The input first, then the other collection in `_id` order: 200
    // documents cross several 64-document chunks and 7-document batches.
    let sides: Vec<&str> = out.iter().map(|d| d.get_str("side").unwrap()).collect();
    assert!(sides[..150].iter().all(|s| *s == "a"));
    assert!(sides[150..].iter().all(|s| *s == "b"));
    let b_ids: Vec<i32> = out[150..]
        .iter()
        .map(|d| d.get_i32("_id").unwrap())
        .collect();
    assert_eq!(b_ids, (0..200).collect::<Vec<_>>());
    let out = aggregate(
        &db,
        "a",
        vec![
            doc! {"$unionWith": {"coll": "b", "pipeline": [{"$match": {"k": 0}}]}},
            doc! {"$group": {"_id": "$side", "n": {"$sum": 1}}},
            doc! {"$sort": {"_id": 1}},
        ],
    )
    .await;
    assert_eq!(
        out,
        vec![doc! {"_id": "a", "n": 150}, doc! {"_id": "b", "n": 40}]
    );
    // A collection that does not exist adds nothing.
    let out = aggregate(
        &db,
        "a",
        vec![doc! {"$unionWith": "nope"}, doc! {"$count": "n"}],
    )
    .await;
    assert_eq!(out, vec![doc! {"n": 150}]);
}

#[tokio::test]
async fn lookup_pipeline_facet_and_sample_through_the_driver() {
    let (_s, _d, client) = server().await;
    let db = client.database("t");
    seed(&db).await;
    // `let` per local document, and the command's `let` inside the
    // sub-pipeline.
    let reply = db
        .run_command(doc! {
            "aggregate": "a",
            "pipeline": [
                {"$match": {"_id": {"$lt": 3}}},
                {"$lookup": {
                    "from": "b",
                    "let": {"key": "$k"},
                    "pipeline": [
                        {"$match": {"$expr": {"$and": [{"$eq": ["$k", "$$key"]}, {"$lt": ["$_id", "$$below"]}]}}},
                        {"$project": {"_id": 1}},
                    ],
                    "as": "m",
                }},
            ],
            "let": {"below": 12},
            "cursor": {},
        })
        .await
        .expect("aggregate with let");
    let batch = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a first batch");
    let joined: Vec<Vec<i32>> = batch
        .iter()
        .map(|d| {
            d.as_document()
                .unwrap()
                .get_array("m")
                .unwrap()
                .iter()
                .map(|m| m.as_document().unwrap().get_i32("_id").unwrap())
                .collect()
        })
        .collect();
    assert_eq!(joined, vec![vec![0, 5, 10], vec![1, 6, 11], vec![2, 7]]);
    // localField/foreignField with a pipeline (5.0+).
    let out = aggregate(
        &db,
        "a",
        vec![
            doc! {"$match": {"_id": 4}},
            doc! {"$lookup": {"from": "b", "localField": "k", "foreignField": "k", "pipeline": [{"$count": "n"}], "as": "c"}},
        ],
    )
    .await;
    assert_eq!(
        out,
        vec![doc! {"_id": 4, "k": 1, "side": "a", "c": [{"n": 40}]}]
    );
    let out = aggregate(
        &db,
        "b",
        vec![doc! {"$facet": {
            "byK": [{"$sortByCount": "$k"}, {"$sort": {"_id": 1}}],
            "few": [{"$sample": {"size": 3}}, {"$project": {"_id": 1}}],
        }}],
    )
    .await;
    assert_eq!(out.len(), 1);
    let by_k = out[0].get_array("byK").unwrap();
    assert_eq!(by_k.len(), 5);
    assert!(
        by_k.iter()
            .all(|g| g.as_document().unwrap().get_i32("count").ok() == Some(40))
    );
    let few = out[0].get_array("few").unwrap();
    assert_eq!(few.len(), 3);
    let mut ids: Vec<i32> = few
        .iter()
        .map(|d| d.as_document().unwrap().get_i32("_id").unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| (0..200).contains(i)));
}

#[tokio::test]
async fn hostile_sub_pipelines_are_refused_with_mongodb_codes() {
    let (_s, _d, client) = server().await;
    let db = client.database("t");
    seed(&db).await;
    let run = |pipeline: Vec<Document>| {
        let db = db.clone();
        async move {
            let e = db
                .run_command(doc! {"aggregate": "a", "pipeline": pipeline, "cursor": {}})
                .await
                .expect_err("refused");
            common::code(&e)
        }
    };
    let mut nested = vec![doc! {"$match": {}}];
    for _ in 0..21 {
        nested = vec![doc! {"$unionWith": {"coll": "b", "pipeline": nested}}];
    }
    assert_eq!(run(nested).await, Some(232));
    assert_eq!(
        run(vec![doc! {"$facet": {"x": [{"$out": "c"}]}}]).await,
        Some(40600)
    );
    assert_eq!(
        run(vec![
            doc! {"$unionWith": {"coll": "b", "pipeline": [{"$merge": "c"}]}}
        ])
        .await,
        Some(40600)
    );
    assert_eq!(run(vec![doc! {"$sample": {"size": -1}}]).await, Some(28747));
    assert_eq!(
        run(vec![doc! {"$lookup": {"from": "b", "pipeline": [{"$match": {"$expr": "$$nope"}}], "as": "m"}}]).await,
        Some(17276)
    );
    // Nothing was written, and the server still answers.
    let names = db.list_collection_names().await.expect("list");
    assert!(!names.contains(&"c".to_owned()), "{names:?}");
}
