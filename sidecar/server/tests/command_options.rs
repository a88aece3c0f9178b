//! Update forms and command options against the real binary through the
//! Rust driver: pipeline updates, positional paths with `arrayFilters`,
//! `let`, the `sort` of an update of one, `hint` and `collation` (its
//! errors; what it compares is `tests/collation.rs`), unknown
//! fields. Each has its hostile inputs beside it: they fail alone with
//! MongoDB's code and the server keeps answering.

use crate::common;

use bson::{Bson, Document, doc};
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use mongodb::{Collection, Database};

async fn server() -> (Sidecar, tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sidecar = Sidecar::standalone(&dir.path().join("wal"))
        .await
        .expect("argon-sidecar starts");
    let db = sidecar.client().await.expect("a client").database("opts");
    (sidecar, dir, db)
}

async fn contents(coll: &Collection<Document>) -> Vec<Document> {
    coll.find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents")
}

async fn alive(db: &Database) {
    db.run_command(doc! {"ping": 1})
        .await
        .expect("the server still answers");
}

#[tokio::test]
async fn pipeline_positional_let_and_sort_updates() {
    let (_s, _d, db) = server().await;
    let c = db.collection::<Document>("u");
    c.insert_many([
        doc! {"_id": 1, "x": 1, "g": [80, 95, 100], "y": [{"b": 3}, {"b": 1}]},
        doc! {"_id": 2, "x": 2, "g": [90], "y": []},
        doc! {"_id": 3, "x": 3},
    ])
    .await
    .expect("insert");

    // A pipeline update, with a let variable in its expressions.
    db.run_command(doc! {"update": "u", "updates": [
        {"q": {"_id": 3}, "u": [{"$set": {"x": {"$add": ["$x", "$$inc"]}, "s": "$$inc"}}]},
    ], "let": {"inc": 10}})
        .await
        .expect("pipeline update");
    // Statement constants (`c`) in a pipeline update, beside the command's let.
    db.run_command(doc! {"update": "u", "updates": [
        {"q": {"_id": 2}, "u": [{"$set": {"c": {"$add": ["$$k", "$$inc"]}}}], "c": {"k": 100}},
    ], "let": {"inc": 1}})
        .await
        .expect("pipeline update with constants");
    // Positional: the matched element, every element, filtered elements.
    db.run_command(doc! {"update": "u", "updates": [
        {"q": {"_id": 1, "g": {"$gte": 90}}, "u": {"$set": {"g.$": 0}}},
        {"q": {"_id": 1}, "u": {"$inc": {"y.$[].b": 10}}},
        {"q": {"_id": 1}, "u": {"$set": {"y.$[e].hit": true}}, "arrayFilters": [{"e.b": {"$gt": 12}}]},
    ]})
    .await
    .expect("positional updates");
    // The sort of an update of one: the highest x among those matched.
    db.run_command(doc! {"update": "u", "updates": [
        {"q": {"x": {"$lt": 10}}, "u": {"$set": {"top": true}}, "sort": {"x": -1}},
    ]})
    .await
    .expect("sorted update");
    // let in a find's $expr; a plain query value stays a literal string.
    let found = db
        .run_command(
            doc! {"find": "u", "filter": {"$expr": {"$eq": ["$_id", "$$id"]}}, "let": {"id": 2}},
        )
        .await
        .expect("find with let");
    assert_eq!(
        found
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        contents(&c).await,
        vec![
            doc! {"_id": 1, "x": 1, "g": [80, 0, 100], "y": [{"b": 13, "hit": true}, {"b": 11}]},
            doc! {"_id": 2, "x": 2, "g": [90], "y": [], "c": 101, "top": true},
            doc! {"_id": 3, "x": 13, "s": 10},
        ]
    );
}

#[tokio::test]
async fn hostile_update_forms_fail_alone() {
    let (_s, _d, db) = server().await;
    let c = db.collection::<Document>("h");
    c.insert_one(doc! {"_id": 1, "a": [1, 2, 3], "n": 1})
        .await
        .expect("insert");
    let update = |u: Bson, extra: Document| {
        let mut stmt = doc! {"q": {"_id": 1}, "u": u};
        stmt.extend(extra);
        doc! {"update": "h", "updates": [stmt]}
    };

    // Stages an update does not allow, malformed stages.
    let cases: Vec<(Document, i32)> = vec![
        (update(bson::bson!([{"$match": {}}]), doc! {}), 72),
        (update(bson::bson!([1]), doc! {}), 14),
        (update(bson::bson!([{"$set": {"_id": 2}}]), doc! {}), 66),
        // Positional paths without their match, or on a non-array.
        (update(bson::bson!({"$set": {"a.$": 0}}), doc! {}), 2),
        (update(bson::bson!({"$set": {"n.$[]": 0}}), doc! {}), 2),
        (update(bson::bson!({"$set": {"a.$[i]": 0}}), doc! {}), 2),
        (
            update(
                bson::bson!({"$set": {"a.$[i]": 0}}),
                doc! {"arrayFilters": [{"I": 1}]},
            ),
            2,
        ),
        (
            update(
                bson::bson!({"$set": {"a.$[i]": 0}}),
                doc! {"arrayFilters": [{"i": 1}, {"i": 2}]},
            ),
            9,
        ),
        (
            update(
                bson::bson!({"$set": {"a.0": 0}}),
                doc! {"arrayFilters": [{"i": 1}]},
            ),
            9,
        ),
        (
            update(
                bson::bson!({"$set": {"a.$[i]": 0}}),
                doc! {"arrayFilters": "x"},
            ),
            14,
        ),
        // sort with multi, unknown and unsupported statement fields.
        (
            update(
                bson::bson!({"$set": {"z": 1}}),
                doc! {"multi": true, "sort": {"n": 1}},
            ),
            72,
        ),
        (
            update(bson::bson!({"$set": {"z": 1}}), doc! {"foo": 1}),
            40415,
        ),
        (update(bson::bson!([{"$set": {"z": 1}}]), doc! {"c": 5}), 14),
        (
            update(bson::bson!([{"$set": {"z": "$$A"}}]), doc! {"c": {"A": 1}}),
            16867,
        ),
        // A locale not compiled in, a hint naming no index.
        (
            update(
                bson::bson!({"$set": {"z": 1}}),
                doc! {"collation": {"locale": "xx_YY"}},
            ),
            2,
        ),
        (
            update(bson::bson!({"$set": {"z": 1}}), doc! {"hint": "nope_1"}),
            2,
        ),
        // Bad let names and types.
        (
            doc! {"update": "h", "updates": [{"q": {}, "u": {"$set": {"z": 1}}}], "let": {"Bad": 1}},
            16867,
        ),
        (
            doc! {"update": "h", "updates": [{"q": {}, "u": {"$set": {"z": 1}}}], "let": 5},
            14,
        ),
        // An _id holding a $-prefixed field.
        (doc! {"insert": "h", "documents": [{"_id": {"$a": 1}}]}, 52),
        // Unknown and unsupported command fields.
        (doc! {"find": "h", "foo": 1}, 40415),
        (doc! {"find": "h", "showRecordId": true}, 115),
        (doc! {"getMore": 5i64, "collection": "h", "foo": 1}, 40415),
        (doc! {"killCursors": "h", "cursors": [], "foo": 1}, 40415),
        (
            doc! {"find": "h", "collation": {"locale": "en_US", "strength": 7}},
            2,
        ),
        (
            doc! {"find": "h", "collation": {"locale": "en_US", "bogus": 1}},
            40415,
        ),
        (doc! {"find": "h", "collation": {"strength": 1}}, 40414),
        (doc! {"find": "h", "collation": "en"}, 14),
        (
            doc! {"delete": "h", "deletes": [{"q": {}, "limit": 0}], "bar": 1},
            40415,
        ),
        (
            doc! {"count": "h", "collation": {"locale": "de@collation=search"}},
            2,
        ),
        (
            doc! {"distinct": "h", "key": "a", "collation": {"locale": "de", "caseFirst": "x"}},
            2,
        ),
        (
            doc! {"aggregate": "h", "pipeline": [], "cursor": {}, "collation": {"locale": "sv", "backwards": true}},
            115,
        ),
        (
            doc! {"findAndModify": "h", "update": {"$set": {"z": 1}}, "hint": {"q": 1}},
            2,
        ),
        // A collection's or an index's collation is validated the same way.
        (doc! {"create": "hc", "collation": {"locale": "zz"}}, 2),
        (
            doc! {"createIndexes": "h", "indexes": [{"key": {"s": 1}, "name": "s_1", "collation": {"locale": "en", "strength": 0}}]},
            2,
        ),
    ];
    for (cmd, expected) in cases {
        let shown = cmd.to_string();
        assert_eq!(common::code_of(&db, cmd).await, Some(expected), "{shown}");
    }

    // Deep expressions in a pipeline update, in let and in arrayFilters.
    let mut deep = Bson::Int32(1);
    for _ in 0..150 {
        deep = Bson::Document(doc! {"$add": [deep]});
    }
    let mut deep_filter = doc! {"i": 1};
    for _ in 0..150 {
        deep_filter = doc! {"$and": [deep_filter]};
    }
    for cmd in [
        update(bson::bson!([{"$set": {"x": deep.clone()}}]), doc! {}),
        doc! {"update": "h", "updates": [{"q": {}, "u": {"$set": {"z": 1}}}], "let": {"v": deep.clone()}},
        update(
            bson::bson!({"$set": {"a.$[i]": 0}}),
            doc! {"arrayFilters": [deep_filter]},
        ),
    ] {
        assert!(common::code_of(&db, cmd).await.is_some());
    }
    // Many array filters; a $[] over a large array is one bounded write.
    let many: Vec<Bson> = (0..100_001)
        .map(|i| Bson::Document(doc! {format!("i{i}"): 1}))
        .collect();
    assert_eq!(
        common::code_of(
            &db,
            update(
                bson::bson!({"$set": {"a.$[i0]": 0}}),
                doc! {"arrayFilters": many}
            )
        )
        .await,
        Some(16)
    );
    let big: Vec<Bson> = (0..200_000).map(Bson::Int32).collect();
    c.insert_one(doc! {"_id": 2, "big": big})
        .await
        .expect("a large array");
    db.run_command(
        doc! {"update": "h", "updates": [{"q": {"_id": 2}, "u": {"$inc": {"big.$[]": 1}}}]},
    )
    .await
    .expect("$[] over 200,000 elements");
    let d = c.find_one(doc! {"_id": 2}).await.unwrap().unwrap();
    assert_eq!(d.get_array("big").unwrap()[199_999], Bson::Int32(200_000));
    // Integer overflow in an expression and in $inc at a position.
    db.run_command(doc! {"update": "h", "updates": [
        {"q": {"_id": 1}, "u": [{"$set": {"n": {"$add": [i64::MAX, 1i64]}}}]},
    ]})
    .await
    .expect("an overflowing $add gives a double, as MongoDB's");
    c.insert_one(doc! {"_id": 3, "a": [i32::MAX]})
        .await
        .unwrap();
    db.run_command(
        doc! {"update": "h", "updates": [{"q": {"_id": 3}, "u": {"$inc": {"a.$[]": 1}}}]},
    )
    .await
    .expect("$inc at a position widens to a long");
    let d = c.find_one(doc! {"_id": 3}).await.unwrap().unwrap();
    assert_eq!(
        d.get_array("a").unwrap()[0],
        Bson::Int64(i32::MAX as i64 + 1)
    );

    // Nothing above changed document 1's array.
    let d = c.find_one(doc! {"_id": 1}).await.unwrap().unwrap();
    assert_eq!(
        d.get_array("a").unwrap(),
        &vec![Bson::Int32(1), Bson::Int32(2), Bson::Int32(3)]
    );
    alive(&db).await;
}

#[tokio::test]
async fn client_bulk_write() {
    let (s, _d, db) = server().await;
    let admin = s.client().await.expect("a client").database("admin");
    db.collection::<Document>("a")
        .insert_many([doc! {"_id": 1, "x": 1}, doc! {"_id": 2, "x": 2}])
        .await
        .expect("insert");
    let reply = admin
        .run_command(doc! {"bulkWrite": 1, "ops": [
            {"insert": 0, "document": {"_id": 3, "x": 3}},
            {"update": 0, "filter": {"x": {"$gte": 2}}, "updateMods": {"$inc": {"x": 10}}, "multi": true},
            {"update": 1, "filter": {"_id": 9}, "updateMods": [{"$set": {"y": "$$v"}}], "upsert": true},
            {"delete": 0, "filter": {"_id": 1}},
            {"insert": 0, "document": {"_id": 3}},
            {"delete": 1, "filter": {}, "multi": true},
        ], "nsInfo": [{"ns": "opts.a"}, {"ns": "opts.b"}], "ordered": false, "let": {"v": 7}})
        .await
        .expect("bulkWrite");
    assert_eq!(reply.get_i32("nErrors").ok(), Some(1), "{reply}");
    assert_eq!(reply.get_i32("nInserted").ok(), Some(1));
    assert_eq!(reply.get_i32("nMatched").ok(), Some(2));
    assert_eq!(reply.get_i32("nUpserted").ok(), Some(1));
    assert_eq!(reply.get_i32("nDeleted").ok(), Some(2));
    let results = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("results");
    assert_eq!(results.len(), 6);
    let failed = results[4].as_document().expect("a result");
    assert_eq!(failed.get_i32("code").ok(), Some(11000), "{failed}");
    assert_eq!(failed.get_i32("idx").ok(), Some(4));
    assert_eq!(
        contents(&db.collection("a")).await,
        vec![doc! {"_id": 2, "x": 12}, doc! {"_id": 3, "x": 13}]
    );
    assert!(contents(&db.collection("b")).await.is_empty());

    // errorsOnly, and an ordered bulk stops at its first error.
    let reply = admin
        .run_command(doc! {"bulkWrite": 1, "ops": [
            {"insert": 0, "document": {"_id": 2}},
            {"insert": 0, "document": {"_id": 4}},
        ], "nsInfo": [{"ns": "opts.a"}], "errorsOnly": true})
        .await
        .expect("bulkWrite");
    let results = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("results");
    assert_eq!(results.len(), 1);
    assert_eq!(reply.get_i32("nInserted").ok(), Some(0));

    // Hostile: each refused whole, with MongoDB's code.
    let many: Vec<Bson> = (0..100_001)
        .map(|i| Bson::Document(doc! {"insert": 0, "document": {"_id": i}}))
        .collect();
    let mut deep = doc! {"x": 1};
    for _ in 0..150 {
        deep = doc! {"$and": [deep]};
    }
    let cases: Vec<(Document, i32)> = vec![
        (
            doc! {"bulkWrite": 1, "ops": [{"insert": 1, "document": {}}], "nsInfo": [{"ns": "opts.a"}]},
            2,
        ),
        (
            doc! {"bulkWrite": 1, "ops": [{"insert": -1, "document": {}}], "nsInfo": [{"ns": "opts.a"}]},
            2,
        ),
        (
            doc! {"bulkWrite": 1, "ops": [{"insert": 0, "document": {}, "x": 1}], "nsInfo": [{"ns": "opts.a"}]},
            40415,
        ),
        (
            doc! {"bulkWrite": 1, "ops": [{"upsert": 0}], "nsInfo": [{"ns": "opts.a"}]},
            9,
        ),
        (
            doc! {"bulkWrite": 1, "ops": [5], "nsInfo": [{"ns": "opts.a"}]},
            14,
        ),
        (
            doc! {"bulkWrite": 1, "ops": [], "nsInfo": [{"ns": "nodot"}]},
            73,
        ),
        (
            doc! {"bulkWrite": 1, "ops": [], "nsInfo": [{"ns": "opts.a", "collectionUUID": 1}]},
            115,
        ),
        (doc! {"bulkWrite": 1, "ops": [], "nsInfo": "x"}, 14),
        (
            doc! {"bulkWrite": 1, "ops": [], "nsInfo": [{"ns": "opts.a"}], "foo": 1},
            40415,
        ),
        (
            doc! {"bulkWrite": 1, "ops": many, "nsInfo": [{"ns": "opts.a"}]},
            16,
        ),
        (
            doc! {"bulkWrite": 1, "ops": [{"delete": 0, "filter": deep}], "nsInfo": [{"ns": "opts.a"}]},
            15,
        ),
    ];
    for (cmd, expected) in cases {
        let shown: String = cmd.to_string().chars().take(200).collect();
        let got = match admin.run_command(cmd).await {
            Ok(r) => r
                .get_document("cursor")
                .ok()
                .and_then(|c| c.get_array("firstBatch").ok())
                .and_then(|b| b.first())
                .and_then(Bson::as_document)
                .and_then(|e| e.get_i32("code").ok()),
            Err(e) => common::code(&e),
        };
        assert_eq!(got, Some(expected), "{shown}");
    }
    // Only on admin.
    assert_eq!(
        common::code_of(
            &db,
            doc! {"bulkWrite": 1, "ops": [], "nsInfo": [{"ns": "opts.a"}]}
        )
        .await,
        Some(13)
    );
    alive(&db).await;
}

#[tokio::test]
async fn aggregate_out_and_merge() {
    let (_s, _d, db) = server().await;
    let src = db.collection::<Document>("src");
    src.insert_many((1..=5).map(|i| doc! {"_id": i, "x": i, "k": format!("k{i}")}))
        .await
        .expect("insert");
    let agg =
        |pipeline: Vec<Document>| doc! {"aggregate": "src", "pipeline": pipeline, "cursor": {}};
    // $out replaces the target's documents with the output.
    let out = db.collection::<Document>("out");
    out.insert_one(doc! {"_id": 99}).await.unwrap();
    db.run_command(agg(vec![
        doc! {"$match": {"x": {"$gt": 3}}},
        doc! {"$out": "out"},
    ]))
    .await
    .expect("$out");
    assert_eq!(
        contents(&out).await,
        vec![
            doc! {"_id": 4, "x": 4, "k": "k4"},
            doc! {"_id": 5, "x": 5, "k": "k5"}
        ]
    );
    // $merge: default merge/insert, then a pipeline with $$new, keepExisting, discard.
    let m = db.collection::<Document>("m");
    m.insert_one(doc! {"_id": 1, "keep": true}).await.unwrap();
    db.run_command(agg(vec![
        doc! {"$match": {"x": {"$lte": 2}}},
        doc! {"$merge": {"into": "m"}},
    ]))
    .await
    .expect("$merge");
    db.run_command(agg(vec![doc! {"$merge": {"into": "m", "whenMatched": [{"$set": {"seen": "$$new.k"}}], "whenNotMatched": "discard"}}]))
        .await
        .expect("$merge with a pipeline");
    assert_eq!(
        contents(&m).await,
        vec![
            doc! {"_id": 1, "keep": true, "x": 1, "k": "k1", "seen": "k1"},
            doc! {"_id": 2, "x": 2, "k": "k2", "seen": "k2"},
        ]
    );
    // Refused whole, with MongoDB's codes, and nothing written.
    let cases: Vec<(Document, i32)> = vec![
        (agg(vec![doc! {"$out": "o2"}, doc! {"$match": {}}]), 40601),
        (agg(vec![doc! {"$merge": {"into": "m", "on": "k"}}]), 51183),
        (
            agg(vec![doc! {"$merge": {"into": "m", "whenMatched": "fail"}}]),
            11000,
        ),
        (
            agg(vec![
                doc! {"$merge": {"into": "fresh", "whenNotMatched": "fail"}},
            ]),
            13113,
        ),
        (
            agg(vec![doc! {"$merge": {"into": "m", "whenMatched": "nope"}}]),
            2,
        ),
        (
            agg(vec![doc! {"$merge": {"into": "m", "let": {"a": 1}}}]),
            51199,
        ),
        (agg(vec![doc! {"$merge": {"into": "m", "bogus": 1}}]), 40415),
        (
            agg(vec![
                doc! {"$merge": {"into": "m", "whenMatched": [{"$match": {}}]}},
            ]),
            72,
        ),
        (
            agg(vec![
                doc! {"$out": {"db": "opts", "coll": "o3", "timeseries": {}}},
            ]),
            115,
        ),
        (agg(vec![doc! {"$out": 5}]), 16990),
        (
            agg(vec![
                doc! {"$project": {"_id": 0}},
                doc! {"$merge": {"into": "m", "on": ["_id"]}},
            ]),
            11000,
        ),
    ];
    for (cmd, expected) in cases {
        let shown = cmd.to_string();
        let got = common::code_of(&db, cmd).await;
        // The last: output without _id gets new ids; 11000 only if it clashes.
        if expected == 11000 && shown.contains("$project") {
            assert!(got.is_none(), "{shown}: {got:?}");
            continue;
        }
        assert_eq!(got, Some(expected), "{shown}");
    }
    assert_eq!(contents(&m).await.len(), 2 + 5);
    assert!(contents(&db.collection("fresh")).await.is_empty());
    alive(&db).await;
}

#[tokio::test]
async fn database_aggregate_documents() {
    let (_s, _d, db) = server().await;
    let reply = db
        .run_command(doc! {"aggregate": 1, "pipeline": [
            {"$documents": [{"a": 1}, {"a": "$$v"}]},
            {"$match": {"a": 2}},
            {"$set": {"b": {"$add": ["$a", 1]}}},
        ], "cursor": {}, "let": {"v": 2}})
        .await
        .expect("$documents");
    let batch = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a batch");
    assert_eq!(batch, &vec![Bson::Document(doc! {"a": 2, "b": 3})]);
    let agg1 = |pipeline: Vec<Document>| doc! {"aggregate": 1, "pipeline": pipeline, "cursor": {}};
    let cases: Vec<(Document, i32)> = vec![
        (agg1(vec![doc! {"$documents": 5}]), 5858203),
        (agg1(vec![doc! {"$documents": [1]}]), 14),
        (agg1(vec![doc! {"$match": {}}]), 73),
        (agg1(vec![]), 73),
        (agg1(vec![doc! {"$listCatalog": {}}]), 115),
        // $currentOp runs on admin only (tests/current_op.rs).
        (agg1(vec![doc! {"$currentOp": {}}]), 73),
        (agg1(vec![doc! {"$listLocalSessions": {"users": []}}]), 115),
        (agg1(vec![doc! {"$listLocalSessions": {"allUsers": 1}}]), 14),
        (
            agg1(vec![doc! {"$listLocalSessions": {"bogus": true}}]),
            40415,
        ),
        (agg1(vec![doc! {"$listLocalSessions": 1}]), 14),
        (agg1(vec![doc! {"$documents": []}, doc! {"$out": "x"}]), 115),
        (doc! {"aggregate": 2, "pipeline": [], "cursor": {}}, 14),
    ];
    for (cmd, expected) in cases {
        let shown = cmd.to_string();
        assert_eq!(common::code_of(&db, cmd).await, Some(expected), "{shown}");
    }
    // The sessions this server holds, the command's own among them (the
    // driver sends every command in a session).
    let sessions = db
        .run_command(doc! {"aggregate": 1, "pipeline": [{"$listLocalSessions": {}}], "cursor": {}})
        .await
        .expect("$listLocalSessions");
    let batch = sessions
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a batch");
    assert!(!batch.is_empty(), "{sessions}");
    alive(&db).await;
}

/// Any field a command does not declare fails the command with 40415
/// (never dropped), and nothing is written: checked over generated names
/// for each command that declares its fields.
#[tokio::test]
async fn unknown_fields_fail_with_40415_and_change_nothing() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    let (s, _d, db) = server().await;
    let admin = s.client().await.expect("a client").database("admin");
    let c = db.collection::<Document>("p");
    c.insert_many([doc! {"_id": 1, "a": [1, 2]}, doc! {"_id": 2, "a": []}])
        .await
        .expect("insert");
    let before = contents(&c).await;
    let commands: Vec<(Document, bool)> = vec![
        (doc! {"find": "p", "filter": {}}, false),
        (doc! {"count": "p"}, false),
        (doc! {"distinct": "p", "key": "a"}, false),
        (doc! {"aggregate": "p", "pipeline": [], "cursor": {}}, false),
        (
            doc! {"aggregate": 1, "pipeline": [{"$documents": []}], "cursor": {}},
            false,
        ),
        (doc! {"insert": "p", "documents": [{"_id": 3}]}, false),
        (
            doc! {"update": "p", "updates": [{"q": {}, "u": {"$set": {"z": 1}}, "multi": true}]},
            false,
        ),
        (
            doc! {"delete": "p", "deletes": [{"q": {}, "limit": 0}]},
            false,
        ),
        (
            doc! {"findAndModify": "p", "query": {}, "remove": true},
            false,
        ),
        (doc! {"killCursors": "p", "cursors": []}, false),
        (doc! {"create": "never"}, false),
        (
            doc! {"bulkWrite": 1, "ops": [{"delete": 0, "filter": {}, "multi": true}], "nsInfo": [{"ns": "opts.p"}]},
            true,
        ),
    ];
    // Field names: a letter, then letters and digits (the shape of real
    // option names, so typos of real ones come up too).
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let names = (
        0usize..52,
        proptest::collection::vec(0usize..CHARS.len(), 0..12),
    )
        .prop_map(|(first, rest)| {
            let mut s = String::from(CHARS[first] as char);
            s.extend(rest.into_iter().map(|i| CHARS[i] as char));
            s
        });
    let mut runner = TestRunner::deterministic();
    for round in 0..40 {
        let name = names
            .new_tree(&mut runner)
            .expect("a generated name")
            .current();
        for (cmd, on_admin) in &commands {
            let command_name = cmd.keys().next().expect("a command name").clone();
            let mut cmd = cmd.clone();
            if cmd.contains_key(&name) || is_generic(&name) {
                continue;
            }
            cmd.insert(name.clone(), round);
            let target = if *on_admin { &admin } else { &db };
            let code = match target.run_command(cmd).await {
                Ok(r) => panic!("{command_name} with '{name}' was accepted: {r}"),
                Err(e) => common::code(&e),
            };
            // A real field of that command given a wrong value fails
            // otherwise; an unknown one fails with 40415.
            if code != Some(40415) {
                assert!(
                    code.is_some() && known_elsewhere(&name),
                    "{command_name} with '{name}': {code:?}"
                );
            }
        }
    }
    assert_eq!(contents(&c).await, before);
    // Options MongoDB has and Argon does not enforce yet are refused by
    // name, never stored and ignored.
    for option in [
        doc! {"timeseries": {"timeField": "t"}},
        doc! {"clusteredIndex": {"key": {"_id": 1}, "unique": true}},
    ] {
        let mut cmd = doc! {"create": "never"};
        cmd.extend(option.clone());
        let e = db
            .run_command(cmd)
            .await
            .expect_err("an unenforced option is refused");
        assert_eq!(common::code(&e), Some(115), "{option}: {e}");
    }
    let names = db.list_collection_names().await.expect("listCollections");
    assert!(!names.contains(&"never".to_string()), "{names:?}");
    // Index types and options that would change inserts or queries are
    // refused by name; an unknown option with MongoDB's 197; the honoured
    // ones are kept.
    for (index, want) in [
        // Text indexes are built (tests/text_search.rs); their version 2 is not.
        (
            doc! {"key": {"t": "text"}, "name": "t", "textIndexVersion": 2},
            115,
        ),
        // Geo indexes are built (tests/geo.rs); a 2dsphere version 1 and a
        // unique geo index are not.
        (
            doc! {"key": {"loc": "2dsphere"}, "name": "g", "2dsphereIndexVersion": 1},
            115,
        ),
        (
            doc! {"key": {"loc": "2d"}, "name": "g2", "unique": true},
            115,
        ),
        (doc! {"key": {"$**": 1}, "name": "w"}, 115),
        (doc! {"key": {"a": 1}, "name": "x", "bogus": true}, 197),
    ] {
        let e = db
            .run_command(doc! {"createIndexes": "p", "indexes": [index.clone()]})
            .await
            .expect_err("refused");
        assert_eq!(common::code(&e), Some(want), "{index}: {e}");
    }
    db.run_command(doc! {"createIndexes": "p", "indexes": [
        {"key": {"a": 1}, "name": "a_hidden", "hidden": true, "sparse": true},
        {"key": {"h": "hashed"}, "name": "h_hashed"},
    ]})
    .await
    .expect("honoured options are kept");
    alive(&db).await;
}

/// Generic fields every command takes.
fn is_generic(name: &str) -> bool {
    [
        "lsid",
        "txnNumber",
        "writeConcern",
        "readConcern",
        "comment",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "maxTimeMS",
        "autocommit",
        "startTransaction",
        "recoveryToken",
    ]
    .contains(&name)
}

/// Names some command declares (a generated one can hit another
/// command's field, which then fails by its own rule).
fn known_elsewhere(name: &str) -> bool {
    [
        "filter",
        "projection",
        "sort",
        "hint",
        "skip",
        "limit",
        "batchSize",
        "singleBatch",
        "allowDiskUse",
        "collation",
        "let",
        "allowPartialResults",
        "query",
        "fields",
        "key",
        "pipeline",
        "cursor",
        "documents",
        "ordered",
        "updates",
        "deletes",
        "remove",
        "update",
        "new",
        "upsert",
        "cursors",
        "ops",
        "nsInfo",
        "errorsOnly",
        "min",
        "max",
        "returnKey",
        "showRecordId",
        "tailable",
        "oplogReplay",
        "awaitData",
        "noCursorTimeout",
        "readOnce",
        "explain",
        "bypassDocumentValidation",
        "arrayFilters",
        "collection",
    ]
    .contains(&name)
}

/// A key pattern two indexes share (one with a collation) names neither:
/// BadValue as mongod's planner says, on every command that takes a hint;
/// each is still hinted by name.
#[tokio::test]
async fn a_hint_matching_two_indexes_is_refused() {
    let (_sidecar, _dir, db) = server().await;
    db.run_command(doc! {"createIndexes": "two", "indexes": [
        {"key": {"k": 1}, "name": "k_plain"},
        {"key": {"k": 1}, "name": "k_fr", "collation": {"locale": "fr"}},
    ]})
    .await
    .expect("two indexes on one key pattern");
    db.collection::<Document>("two")
        .insert_one(doc! {"_id": 1, "k": "a"})
        .await
        .expect("insert");
    for cmd in [
        doc! {"find": "two", "filter": {"k": "a"}, "hint": {"k": 1}},
        doc! {"count": "two", "query": {"k": "a"}, "hint": {"k": 1}},
        doc! {"delete": "two", "deletes": [{"q": {"k": "zz"}, "limit": 0, "hint": {"k": 1}}]},
    ] {
        let shown = cmd.to_string();
        let e = db.run_command(cmd).await.map(|r| r.to_string());
        let e = match e {
            Err(e) => e,
            Ok(reply) if reply.contains("writeErrors") => {
                assert!(reply.contains("Hint matched multiple indexes"), "{reply}");
                continue;
            }
            Ok(reply) => panic!("{shown} answered {reply}"),
        };
        assert_eq!(common::code(&e), Some(2), "{shown}: {e}");
        assert!(
            e.to_string()
                .contains("Hint matched multiple indexes, must hint by index name"),
            "{e}"
        );
    }
    for name in ["k_plain", "k_fr"] {
        let reply = db
            .run_command(doc! {"find": "two", "filter": {"k": "a"}, "hint": name})
            .await
            .expect("a hint by name");
        let batch = reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .expect("a cursor");
        assert_eq!(batch.len(), 1, "{name}");
    }
    alive(&db).await;
}
