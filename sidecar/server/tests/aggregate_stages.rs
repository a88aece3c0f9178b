//! `$facet`, `$unionWith`, `$sample` and `$lookup` with `let` + `pipeline`
//! against the real binary through the Rust driver: collections of the
//! same branch read in chunks across several batches, the command's
//! `let` reaching a sub-pipeline, and hostile nesting refused with
//! MongoDB's code.

use crate::common;

use bson::{Document, doc};
use futures::TryStreamExt;
use mongodb::Database;

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
    let (_s, _d, client) = common::standalone().await;
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
    // MongoDB 6.0's collectionless forms: the sub-pipeline's own documents.
    let out = aggregate(
        &db,
        "a",
        vec![
            doc! {"$match": {"_id": {"$lt": 2}}},
            doc! {"$unionWith": {"pipeline": [{"$documents": [{"_id": "x", "side": "d"}]}]}},
            doc! {"$lookup": {"localField": "side", "foreignField": "s", "as": "names",
            "pipeline": [{"$documents": [{"s": "a", "n": "first"}, {"s": "d", "n": "made"}]},
                         {"$project": {"_id": 0, "n": 1}}]}},
            doc! {"$project": {"side": 1, "names": 1}},
        ],
    )
    .await;
    assert_eq!(
        out,
        vec![
            doc! {"_id": 0, "side": "a", "names": [{"n": "first"}]},
            doc! {"_id": 1, "side": "a", "names": [{"n": "first"}]},
            doc! {"_id": "x", "side": "d", "names": [{"n": "made"}]},
        ]
    );
    let err = db
        .collection::<Document>("a")
        .aggregate(vec![
            doc! {"$lookup": {"as": "m", "pipeline": [{"$match": {}}]}},
        ])
        .await
        .expect_err("a collectionless $lookup without $documents");
    match *err.kind {
        mongodb::error::ErrorKind::Command(c) => assert_eq!(c.code, 9, "{}", c.message),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn lookup_pipeline_facet_and_sample_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
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
    let (_s, _d, client) = common::standalone().await;
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

/// `$bucket`, `$bucketAuto`, `$redact` and `$graphLookup` through the
/// driver, with MongoDB's documented answers (FerretDB has none of these
/// stages to compare with).
#[tokio::test]
async fn bucket_redact_and_graph_lookup_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("t");
    db.collection::<Document>("artists")
        .insert_many(vec![
            doc! {"_id": 1, "last_name": "Bernard", "year_born": 1845, "price": 199.99},
            doc! {"_id": 2, "last_name": "Rippl-Ronai", "year_born": 1861, "price": 280.00},
            doc! {"_id": 3, "last_name": "Ostroumova", "year_born": 1871, "price": 76.04},
            doc! {"_id": 4, "last_name": "Van Gogh", "year_born": 1853, "price": 167.30},
            doc! {"_id": 5, "last_name": "Maurer", "year_born": 1868, "price": 483.00},
            doc! {"_id": 6, "last_name": "Munch", "year_born": 1863, "price": 385.00},
            doc! {"_id": 7, "last_name": "Redon", "year_born": 1840, "price": 159.00},
            doc! {"_id": 8, "last_name": "Lorenz", "year_born": 1895, "price": 118.42},
        ])
        .await
        .expect("insert artists");
    // The manual's $facet of a $bucket and a $bucketAuto.
    let out = aggregate(
        &db,
        "artists",
        vec![doc! {"$facet": {
            "price": [{"$bucket": {
                "groupBy": "$price",
                "boundaries": [0, 200, 400],
                "default": "Other",
                "output": {"count": {"$sum": 1}, "artwork": {"$push": "$last_name"}},
            }}],
            "year": [{"$bucketAuto": {"groupBy": "$year_born", "buckets": 3}}],
        }}],
    )
    .await;
    assert_eq!(
        out,
        vec![doc! {
            "price": [
                {"_id": 0, "count": 5, "artwork": ["Bernard", "Ostroumova", "Van Gogh", "Redon", "Lorenz"]},
                {"_id": 200, "count": 2, "artwork": ["Rippl-Ronai", "Munch"]},
                {"_id": "Other", "count": 1, "artwork": ["Maurer"]},
            ],
            "year": [
                {"_id": {"min": 1840, "max": 1861}, "count": 3},
                {"_id": {"min": 1861, "max": 1871}, "count": 3},
                {"_id": {"min": 1871, "max": 1895}, "count": 2},
            ],
        }]
    );

    db.collection::<Document>("employees")
        .insert_many(vec![
            doc! {"_id": 1, "name": "Dev"},
            doc! {"_id": 2, "name": "Eliot", "reportsTo": "Dev"},
            doc! {"_id": 3, "name": "Ron", "reportsTo": "Eliot"},
            doc! {"_id": 4, "name": "Andrew", "reportsTo": "Eliot"},
            doc! {"_id": 5, "name": "Asya", "reportsTo": "Ron"},
            doc! {"_id": 6, "name": "Dan", "reportsTo": "Andrew"},
        ])
        .await
        .expect("insert employees");
    let out = aggregate(
        &db,
        "employees",
        vec![
            doc! {"$match": {"name": "Dan"}},
            doc! {"$graphLookup": {
                "from": "employees",
                "startWith": "$reportsTo",
                "connectFromField": "reportsTo",
                "connectToField": "name",
                "as": "chain",
                "depthField": "d",
            }},
            doc! {"$unwind": "$chain"},
            doc! {"$sort": {"chain.d": 1}},
            doc! {"$project": {"_id": 0, "n": "$chain.name", "d": "$chain.d"}},
        ],
    )
    .await;
    assert_eq!(
        out,
        vec![
            doc! {"n": "Andrew", "d": 0i64},
            doc! {"n": "Eliot", "d": 1i64},
            doc! {"n": "Dev", "d": 2i64},
        ]
    );
    // A cycle in the graph ends: Dev now reports to Dan.
    db.collection::<Document>("employees")
        .update_one(doc! {"_id": 1}, doc! {"$set": {"reportsTo": "Dan"}})
        .await
        .expect("update");
    let out = aggregate(
        &db,
        "employees",
        vec![
            doc! {"$match": {"name": "Dan"}},
            doc! {"$graphLookup": {"from": "employees", "startWith": "$reportsTo", "connectFromField": "reportsTo", "connectToField": "name", "as": "chain"}},
            doc! {"$project": {"n": {"$size": "$chain"}}},
        ],
    )
    .await;
    assert_eq!(out, vec![doc! {"_id": 6, "n": 4}]);

    let out = aggregate(
        &db,
        "employees",
        vec![
            doc! {"$match": {"_id": 2}},
            doc! {"$addFields": {"private": {"level": 9, "salary": 1}, "notes": [{"level": 9}, {"level": 1, "t": "ok"}]}},
            doc! {"$redact": {"$cond": [{"$gt": [{"$ifNull": ["$level", 0]}, 5]}, "$$PRUNE", "$$DESCEND"]}},
        ],
    )
    .await;
    assert_eq!(
        out,
        vec![
            doc! {"_id": 2, "name": "Eliot", "reportsTo": "Dev", "notes": [{"level": 1, "t": "ok"}]}
        ]
    );
}

#[tokio::test]
async fn hostile_bucket_graph_and_redact_specifications() {
    let (_s, _d, client) = common::standalone().await;
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
    assert_eq!(
        run(vec![
            doc! {"$bucketAuto": {"groupBy": "$k", "buckets": 2147483648i64}}
        ])
        .await,
        Some(40242)
    );
    assert_eq!(
        run(vec![
            doc! {"$bucket": {"groupBy": "$k", "boundaries": [3, 1]}}
        ])
        .await,
        Some(40194)
    );
    assert_eq!(
        run(vec![
            doc! {"$bucket": {"groupBy": "$k", "boundaries": [0, 1]}}
        ])
        .await,
        Some(7158303)
    );
    assert_eq!(
        run(vec![doc! {"$graphLookup": {"from": "b", "startWith": "$k", "connectFromField": "k", "connectToField": "k", "as": "g", "maxDepth": 1e19}}]).await,
        Some(40102)
    );
    assert_eq!(run(vec![doc! {"$redact": "$k"}]).await, Some(17053));
    // A million boundaries (a 12 MB command) parse and answer.
    let boundaries: Vec<i32> = (0..1_000_000).collect();
    let reply = db
        .run_command(doc! {
            "aggregate": "a",
            "pipeline": [{"$bucket": {"groupBy": "$k", "boundaries": boundaries}}],
            "cursor": {},
        })
        .await
        .expect("a million boundaries");
    let batch = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a first batch");
    assert_eq!(batch.len(), 3);
    // The server still answers.
    db.run_command(doc! {"ping": 1}).await.expect("ping");
}

/// `$setWindowFields`, `$densify` and `$fill` through the driver, over
/// more documents than one batch, with MongoDB's documented answers.
#[tokio::test]
async fn window_densify_and_fill_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("t");
    // Readings every 2 units for two sensors, one value missing.
    let mut docs: Vec<Document> = Vec::new();
    for sensor in ["a", "b"] {
        for i in 0..30 {
            let mut d = doc! {"sensor": sensor, "t": i * 2};
            if i != 5 {
                d.insert("v", i);
            }
            docs.push(d);
        }
    }
    db.collection::<Document>("r")
        .insert_many(docs)
        .await
        .expect("insert readings");
    let out = aggregate(
        &db,
        "r",
        vec![
            doc! {"$setWindowFields": {
                "partitionBy": "$sensor",
                "sortBy": {"t": 1},
                "output": {
                    "running": {"$sum": "$v", "window": {"documents": ["unbounded", "current"]}},
                    "near": {"$count": {}, "window": {"range": [-2, 2]}},
                    "rank": {"$rank": {}},
                },
            }},
            doc! {"$match": {"sensor": "b"}},
            doc! {"$project": {"_id": 0, "t": 1, "running": 1, "near": 1, "rank": 1}},
        ],
    )
    .await;
    assert_eq!(out.len(), 30);
    assert_eq!(out[0], doc! {"t": 0, "running": 0, "near": 2, "rank": 1});
    // 0 + 1 + 2 + 3 + 4 (+ nothing for the missing 5) + 6.
    assert_eq!(out[6], doc! {"t": 12, "running": 16, "near": 3, "rank": 7});
    assert_eq!(out[29].get_i32("near").unwrap(), 2);

    let out = aggregate(
        &db,
        "r",
        vec![
            doc! {"$densify": {"field": "t", "partitionByFields": ["sensor"], "range": {"step": 1, "bounds": "partition"}}},
            doc! {"$fill": {"partitionBy": "$sensor", "sortBy": {"t": 1}, "output": {"v": {"method": "linear"}}}},
            doc! {"$match": {"sensor": "a"}},
            doc! {"$project": {"_id": 0, "t": 1, "v": 1}},
        ],
    )
    .await;
    // 0..=58 every 1 unit; v interpolated between the readings.
    assert_eq!(out.len(), 59);
    assert_eq!(out[9], doc! {"t": 9, "v": 4.5});
    assert_eq!(out[10], doc! {"t": 10, "v": 5.0});
    assert_eq!(out[58], doc! {"t": 58, "v": 29});

    let run = |pipeline: Vec<Document>| {
        let db = db.clone();
        async move {
            let e = db
                .run_command(doc! {"aggregate": "r", "pipeline": pipeline, "cursor": {}})
                .await
                .expect_err("refused");
            common::code(&e)
        }
    };
    // Hostile: bounds that overflow, a flood of generated documents.
    assert_eq!(
        run(vec![doc! {"$setWindowFields": {"sortBy": {"t": 1}, "output": {"x": {"$sum": 1, "window": {"documents": [i64::MIN, 0]}}}}}]).await,
        Some(9)
    );
    // The generated documents stream: the limit is met on a later batch.
    let e = db
        .collection::<Document>("r")
        .aggregate(vec![
            doc! {"$densify": {"field": "t", "range": {"step": 1e-6, "bounds": "full"}}},
        ])
        .await
        .expect("the first batch")
        .try_collect::<Vec<Document>>()
        .await
        .expect_err("past 500,000 generated documents");
    assert_eq!(common::code(&e), Some(5897900));
    assert_eq!(
        run(vec![
            doc! {"$fill": {"output": {"v": {"method": "linear"}}}}
        ])
        .await,
        Some(605001)
    );
    db.run_command(doc! {"ping": 1}).await.expect("ping");
}
