//! `{$meta: ...}` through the real binary and the Rust driver: the sort
//! key, `$sample`'s random value, the text score, `$geoNear`'s distance and
//! point and the index key, carried through the stages that keep a
//! document's metadata as mongod 8.0 does, missing after the stages that
//! make new documents, and refused with mongod's codes (or by name, 115,
//! where Argon does not carry it) — hostile forms included.

use crate::common;

use bson::{Bson, Document, bson, doc};
use mongodb::Database;

async fn load(db: &Database) {
    let c = db.collection::<Document>("m");
    c.insert_many(vec![
        doc! {"_id": 1, "a": 3, "tags": ["x", "y"], "body": "coffee cream"},
        doc! {"_id": 2, "a": [5, 1], "tags": ["z"], "body": "coffee"},
        doc! {"_id": 3, "tags": [], "body": "tea"},
        doc! {"_id": 4, "a": 2, "tags": ["x"], "body": "cream cake"},
    ])
    .await
    .expect("the documents inserted");
    db.run_command(doc! {"createIndexes": "m", "indexes": [
        {"key": {"a": 1}, "name": "a_1"},
        {"key": {"body": "text"}, "name": "body_text"},
    ]})
    .await
    .expect("the indexes created");
}

fn pipeline(stages: Bson) -> Vec<Document> {
    match stages {
        Bson::Array(items) => items
            .into_iter()
            .map(|s| match s {
                Bson::Document(d) => d,
                other => panic!("a stage: {other}"),
            })
            .collect(),
        other => panic!("a pipeline: {other}"),
    }
}

/// The sort key as mongod serializes it (an array, one value per key, an
/// array field's smallest element ascending, null for missing), through
/// `$project`, `$unwind`, `$lookup` and `$replaceRoot`; missing after
/// `$group` and before any `$sort`.
#[tokio::test]
async fn sort_key_in_aggregation() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("meta");
    load(&db).await;
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([
            {"$sort": {"a": 1, "_id": -1}},
            {"$project": {"k": {"$meta": "sortKey"}}},
        ])),
    )
    .await;
    assert_eq!(
        got,
        vec![
            doc! {"_id": 3, "k": [null, 3]},
            doc! {"_id": 2, "k": [1, 2]},
            doc! {"_id": 4, "k": [2, 4]},
            doc! {"_id": 1, "k": [3, 1]},
        ]
    );
    // Kept through the stages that pass a document on.
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([
            {"$sort": {"_id": -1}},
            {"$unwind": "$tags"},
            {"$lookup": {"from": "m", "localField": "_id", "foreignField": "_id", "as": "self"}},
            {"$replaceRoot": {"newRoot": {"t": "$tags"}}},
            {"$addFields": {"k": {"$meta": "sortKey"}}},
        ])),
    )
    .await;
    assert_eq!(
        got,
        vec![
            doc! {"t": "x", "k": [4]},
            doc! {"t": "z", "k": [2]},
            doc! {"t": "x", "k": [1]},
            doc! {"t": "y", "k": [1]},
        ]
    );
    // A sort the index gives still attaches its key.
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([
            {"$match": {"a": {"$gte": 2}}},
            {"$sort": {"a": -1}},
            {"$project": {"_id": 1, "k": {"$meta": "sortKey"}}},
        ])),
    )
    .await;
    assert_eq!(
        got,
        vec![
            doc! {"_id": 2, "k": [5]},
            doc! {"_id": 1, "k": [3]},
            doc! {"_id": 4, "k": [2]},
        ]
    );
    // No sort yet, or new documents: missing, as in mongod.
    for stages in [
        bson!([{"$project": {"k": {"$meta": "sortKey"}}}]),
        bson!([{"$sort": {"a": 1}}, {"$group": {"_id": null}}, {"$project": {"k": {"$meta": "sortKey"}}}]),
        bson!([{"$sort": {"a": 1}}, {"$count": "n"}, {"$project": {"k": {"$meta": "sortKey"}}}]),
    ] {
        for d in common::aggregate(&db, "m", pipeline(stages.clone())).await {
            assert!(!d.contains_key("k"), "{stages}: {d}");
        }
    }
    // `$sortByCount` is `$group` then `$sort`: the count is the key.
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([
            {"$unwind": "$tags"},
            {"$sortByCount": "$tags"},
            {"$match": {"_id": "x"}},
            {"$addFields": {"k": {"$meta": "sortKey"}}},
        ])),
    )
    .await;
    assert_eq!(got, vec![doc! {"_id": "x", "count": 2, "k": [2]}]);
}

/// A find's `{$meta: "sortKey"}`: the key of its `sort`; without one,
/// mongod's BadValue.
#[tokio::test]
async fn sort_key_in_find() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("meta");
    load(&db).await;
    let reply = db
        .run_command(doc! {"find": "m", "filter": {"_id": {"$lte": 2}}, "sort": {"a": -1}, "projection": {"_id": 1, "k": {"$meta": "sortKey"}}})
        .await
        .unwrap();
    let got = reply
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .clone();
    assert_eq!(
        Bson::Array(got),
        bson!([{"_id": 2, "k": [5]}, {"_id": 1, "k": [3]}])
    );
    for (cmd, code) in [
        (
            doc! {"find": "m", "projection": {"k": {"$meta": "sortKey"}}},
            2,
        ),
        (
            doc! {"find": "m", "sort": {}, "projection": {"k": {"$meta": "sortKey"}}},
            2,
        ),
        (
            doc! {"find": "m", "sort": {"a": 1}, "returnKey": true, "projection": {"k": {"$meta": "sortKey"}}},
            115,
        ),
        (
            doc! {"findAndModify": "m", "query": {"_id": 1}, "sort": {"a": 1}, "fields": {"k": {"$meta": "sortKey"}}, "update": {"$set": {"z": 1}}},
            115,
        ),
        // Nested in an expression of a find: refused by name.
        (
            doc! {"find": "m", "sort": {"a": 1}, "projection": {"k": {"$concatArrays": [{"$meta": "sortKey"}]}}},
            115,
        ),
    ] {
        assert_eq!(common::code_of(&db, cmd.clone()).await, Some(code), "{cmd}");
    }
}

/// `$sample` attaches a random double in [0, 1) per document; without it
/// `randVal` is missing; a sort by it is mongod's.
#[tokio::test]
async fn rand_val_after_sample() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("meta");
    load(&db).await;
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([
            {"$sample": {"size": 10}},
            {"$project": {"r": {"$meta": "randVal"}}},
            {"$sort": {"r": {"$meta": "randVal"}}},
            {"$addFields": {"again": {"$meta": "randVal"}}},
        ])),
    )
    .await;
    assert_eq!(got.len(), 4);
    let mut last = f64::INFINITY;
    for d in &got {
        let r = d.get_f64("r").unwrap();
        assert!((0.0..1.0).contains(&r), "{d}");
        assert_eq!(d.get_f64("again").unwrap(), r, "{d}");
        // A `$meta` sort is highest first.
        assert!(r <= last, "{got:?}");
        last = r;
    }
    for d in common::aggregate(
        &db,
        "m",
        pipeline(bson!([{"$project": {"r": {"$meta": "randVal"}}}])),
    )
    .await
    {
        assert!(!d.contains_key("r"), "{d}");
    }
    let reply = db
        .run_command(doc! {"find": "m", "projection": {"r": {"$meta": "randVal"}}})
        .await
        .unwrap();
    for d in reply
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
    {
        assert!(!d.as_document().unwrap().contains_key("r"), "{d}");
    }
}

/// The text score through reshaping stages (it was refused there before
/// the metadata was carried), in `$group` keys and accumulators, missing
/// after `$group`; the index key of an index-backed `$match`, missing for a
/// collection scan.
#[tokio::test]
async fn text_score_and_index_key_through_stages() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("meta");
    load(&db).await;
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([
            {"$match": {"$text": {"$search": "coffee cream"}}},
            {"$project": {"body": 1}},
            {"$unwind": {"path": "$body"}},
            {"$sort": {"s": {"$meta": "textScore"}, "_id": 1}},
            {"$addFields": {"score": {"$meta": "textScore"}}},
            {"$project": {"_id": 1, "score": 1}},
        ])),
    )
    .await;
    assert_eq!(
        got,
        vec![
            doc! {"_id": 1, "score": 1.5},
            doc! {"_id": 2, "score": 1.0},
            doc! {"_id": 4, "score": 0.75},
        ]
    );
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([
            {"$match": {"$text": {"$search": "coffee cream"}}},
            {"$group": {"_id": {"$meta": "textScore"}, "total": {"$sum": {"$meta": "textScore"}}}},
            {"$sort": {"_id": 1}},
            {"$addFields": {"after": {"$meta": "textScore"}}},
        ])),
    )
    .await;
    assert_eq!(
        got,
        vec![
            doc! {"_id": 0.75, "total": 0.75},
            doc! {"_id": 1.0, "total": 1.0},
            doc! {"_id": 1.5, "total": 1.5},
        ]
    );
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([
            {"$match": {"a": {"$gte": 3}}},
            {"$project": {"k": {"$meta": "indexKey"}}},
            {"$sort": {"_id": 1}},
        ])),
    )
    .await;
    assert_eq!(
        got,
        vec![
            doc! {"_id": 1, "k": {"a": 3}},
            doc! {"_id": 2, "k": {"a": 5}}
        ]
    );
    for d in common::aggregate(
        &db,
        "m",
        pipeline(bson!([{"$match": {"body": "tea"}}, {"$project": {"k": {"$meta": "indexKey"}}}])),
    )
    .await
    {
        assert_eq!(d, doc! {"_id": 3});
    }
}

/// `$facet` hands its input's metadata down to each sub-pipeline, as
/// mongod: scored results and their count in one round trip.
#[tokio::test]
async fn metadata_in_facet_sub_pipelines() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("meta");
    load(&db).await;
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([
            {"$match": {"$text": {"$search": "coffee cream"}}},
            {"$sort": {"_id": 1}},
            {"$facet": {
                "top": [
                    {"$sort": {"s": {"$meta": "textScore"}}},
                    {"$limit": 2},
                    {"$project": {"s": {"$meta": "textScore"}}},
                ],
                "keys": [{"$project": {"k": {"$meta": "sortKey"}}}],
                "total": [{"$count": "n"}],
            }},
        ])),
    )
    .await;
    assert_eq!(
        got,
        vec![doc! {
            "top": [{"_id": 1, "s": 1.5}, {"_id": 2, "s": 1.0}],
            "keys": [{"_id": 1, "k": [1]}, {"_id": 2, "k": [2]}, {"_id": 4, "k": [4]}],
            "total": [{"n": 3}],
        }]
    );
}

/// Hostile and refused forms, with mongod's codes: a non-string (17307),
/// an unknown name (17308), metadata Argon never produces (115), metadata
/// lost in a stage Argon does not carry it through, or the index key in a
/// `$lookup` sub-pipeline (115), a producer missing (40218), an illegal
/// `$meta` sort (31138), and `$meta` nested deep.
#[tokio::test]
async fn refused_as_mongod_refuses() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("meta");
    load(&db).await;
    let text = bson!({"$match": {"$text": {"$search": "coffee"}}});
    for (stages, code) in [
        (bson!([{"$project": {"x": {"$meta": 1}}}]), 17307),
        (bson!([{"$project": {"x": {"$meta": ["sortKey"]}}}]), 17307),
        (bson!([{"$project": {"x": {"$meta": null}}}]), 17307),
        (
            bson!([{"$project": {"x": {"$meta": {"$meta": "sortKey"}}}}]),
            17307,
        ),
        (bson!([{"$project": {"x": {"$meta": "SortKey"}}}]), 17308),
        (
            bson!([{"$project": {"x": {"$meta": "m".repeat(1 << 20)}}}]),
            17308,
        ),
        (bson!([{"$group": {"_id": {"$meta": "nope"}}}]), 17308),
        (bson!([{"$project": {"x": {"$meta": "recordId"}}}]), 115),
        (bson!([{"$project": {"x": {"$meta": "searchScore"}}}]), 115),
        (
            bson!([{"$setWindowFields": {"sortBy": {"a": 1}, "output": {"n": {"$sum": 1}}}}, {"$project": {"x": {"$meta": "sortKey"}}}]),
            115,
        ),
        (
            bson!([text.clone(), {"$densify": {"field": "a", "range": {"step": 1, "bounds": "full"}}}, {"$project": {"x": {"$meta": "textScore"}}}]),
            115,
        ),
        (
            bson!([{"$setWindowFields": {"sortBy": {"a": 1}, "output": {"n": {"$sum": 1}}}}, {"$facet": {"f": [{"$project": {"x": {"$meta": "sortKey"}}}]}}]),
            115,
        ),
        (
            bson!([{"$lookup": {"from": "m", "pipeline": [{"$match": {"a": 3}}, {"$project": {"x": {"$meta": "indexKey"}}}], "as": "l"}}]),
            115,
        ),
        (
            bson!([text.clone(), {"$lookup": {"from": "m", "pipeline": [{"$project": {"x": {"$meta": "textScore"}}}], "as": "l"}}]),
            40218,
        ),
        (
            bson!([text.clone(), {"$project": {"x": {"$meta": "indexKey"}}}]),
            115,
        ),
        (
            bson!([{"$sort": {"a": 1}}, {"$bucketAuto": {"groupBy": "$a", "buckets": 2, "output": {"k": {"$push": {"$meta": "sortKey"}}}}}]),
            115,
        ),
        (bson!([{"$project": {"x": {"$meta": "textScore"}}}]), 40218),
        (
            bson!([{"$sort": {"a": 1}}, {"$project": {"x": {"$meta": "geoNearDistance"}}}]),
            40218,
        ),
        (
            bson!([{"$group": {"_id": null, "p": {"$first": {"$meta": "geoNearPoint"}}}}]),
            40218,
        ),
        (bson!([{"$sort": {"x": {"$meta": "sortKey"}}}]), 31138),
        (bson!([{"$sort": {"x": {"$meta": 0.5}}}]), 31138),
        (bson!([{"$sort": {"x": {"$meta": "nope"}}}]), 31138),
    ] {
        assert_eq!(
            common::aggregate_code(&db, "m", pipeline(stages.clone())).await,
            Some(code),
            "{stages}"
        );
    }
    // Inside a sub-pipeline, what its own stages attach is there.
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([
            {"$match": {"_id": 1}},
            {"$lookup": {"from": "m", "pipeline": [{"$sort": {"_id": -1}}, {"$limit": 1}, {"$project": {"k": {"$meta": "sortKey"}}}], "as": "l"}},
            {"$project": {"l": 1}},
        ])),
    )
    .await;
    assert_eq!(got, vec![doc! {"_id": 1, "l": [{"_id": 4, "k": [4]}]}]);
    // `$meta` as deep as a pipeline may nest expressions.
    let mut deep = bson!({"$meta": "sortKey"});
    for _ in 0..20 {
        deep = bson!({"$ifNull": [deep, null]});
    }
    let got = common::aggregate(
        &db,
        "m",
        pipeline(bson!([{"$sort": {"_id": 1}}, {"$limit": 1}, {"$project": {"k": deep}}])),
    )
    .await;
    assert_eq!(got, vec![doc! {"_id": 1, "k": [1]}]);
    // In a find: the same names and codes.
    for (projection, code) in [
        (doc! {"x": {"$meta": 1}}, 17307),
        (doc! {"x": {"$meta": "nope"}}, 17308),
        (doc! {"x": {"$meta": "recordId"}}, 115),
    ] {
        assert_eq!(
            common::code_of(&db, doc! {"find": "m", "projection": projection.clone()}).await,
            Some(code),
            "{projection}"
        );
    }
}
