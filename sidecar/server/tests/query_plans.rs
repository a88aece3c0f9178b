//! Secondary indexes used by queries (`query::plan`), through the Rust
//! driver against the server on the embedded store: index plans return
//! what a collection scan returns (a property test), `explain` shows the
//! plan MongoDB's way, cursors on an index plan page one snapshot, and
//! hostile plans and explains are answered with MongoDB's codes.

use crate::common;

use bson::{Bson, Document, doc};
use common::{TestServer, code};
use futures::TryStreamExt;
use mongodb::{Collection, Database};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn run(db: &Database, cmd: Document) -> mongodb::error::Result<Document> {
    db.run_command(cmd).await
}

/// Every document of a find (all batches), with the given options.
async fn find_all(db: &Database, coll: &str, options: Document) -> Vec<Document> {
    let mut find = doc! {"find": coll, "batchSize": 7};
    find.extend(options);
    let reply = run(db, find).await.expect("find");
    let cursor = reply.get_document("cursor").expect("a cursor");
    let mut docs: Vec<Document> = cursor
        .get_array("firstBatch")
        .expect("firstBatch")
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect();
    let mut id = cursor.get_i64("id").expect("cursor id");
    while id != 0 {
        let more = run(db, doc! {"getMore": id, "collection": coll, "batchSize": 5})
            .await
            .expect("getMore");
        let c = more.get_document("cursor").expect("a cursor");
        docs.extend(
            c.get_array("nextBatch")
                .expect("nextBatch")
                .iter()
                .filter_map(|d| d.as_document().cloned()),
        );
        id = c.get_i64("id").expect("cursor id");
    }
    docs
}

fn value() -> impl Strategy<Value = Option<Bson>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(Bson::Null)),
        4 => (-2i32..3).prop_map(|n| Some(Bson::Int32(n))),
        2 => (-2i32..3).prop_map(|n| Some(Bson::Double(n as f64 + 0.5))),
        1 => (-2i64..3).prop_map(|n| Some(Bson::Int64(n))),
        3 => prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(|s| Some(Bson::String(s.into()))),
        2 => prop::collection::vec(-2i32..3, 0..3)
            .prop_map(|v| Some(Bson::Array(v.into_iter().map(Bson::Int32).collect()))),
        1 => (-2i32..3).prop_map(|n| Some(Bson::Document(doc! {"x": n}))),
        1 => prop::collection::vec(-2i32..3, 1..3).prop_map(|v| Some(Bson::Array(
            v.into_iter().map(|n| Bson::Document(doc! {"x": n})).collect()
        ))),
    ]
}

fn scalar() -> impl Strategy<Value = Bson> {
    prop_oneof![
        (-2i32..3).prop_map(Bson::Int32),
        (-2i32..3).prop_map(|n| Bson::Double(n as f64 + 0.5)),
        prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(|s| Bson::String(s.into())),
    ]
}

fn field() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("c.x")]
}

/// Filters of the shapes the planner bounds and of the shapes it must not.
fn filter() -> impl Strategy<Value = Document> {
    let v = scalar;
    prop_oneof![
        (field(), v()).prop_map(|(f, x)| doc! {f: x}),
        (field(), v()).prop_map(|(f, x)| doc! {f: {"$gt": x}}),
        (field(), v(), v()).prop_map(|(f, x, y)| doc! {f: {"$gte": x, "$lt": y}}),
        (field(), v(), v()).prop_map(|(f, x, y)| doc! {f: {"$in": [x, y]}}),
        (v(), v()).prop_map(|(x, y)| doc! {"a": x, "b": {"$lte": y}}),
        (v(), v()).prop_map(|(x, y)| doc! {"$and": [{"a": {"$gt": x}}, {"a": {"$lt": y}}]}),
        (v(), v()).prop_map(|(x, y)| doc! {"$and": [{"a": x}, {"a": y}]}),
        (v(), v()).prop_map(|(x, y)| doc! {"b": {"$in": [x]}, "a": {"$in": [y, 1]}}),
        field().prop_map(|f| doc! {f: null}),
        (field(), v()).prop_map(|(f, x)| doc! {f: {"$ne": x}}),
        (v(), v()).prop_map(|(x, y)| doc! {"$or": [{"a": x}, {"b": y}]}),
        field().prop_map(|f| doc! {f: {"$exists": false}}),
        v().prop_map(|x| doc! {"a": {"$elemMatch": {"$gte": x}}}),
        v().prop_map(|x| doc! {"a": {"$not": {"$gt": x}}}),
        (-1i32..3).prop_map(|n| doc! {"_id": n}),
        Just(doc! {"a": {"$regex": "^[ab]"}}),
        Just(doc! {}),
    ]
}

fn sort() -> impl Strategy<Value = Option<Document>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(doc! {"a": 1, "_id": 1})),
        1 => Just(Some(doc! {"a": -1, "_id": -1})),
        1 => Just(Some(doc! {"b": 1, "_id": 1})),
        1 => Just(Some(doc! {"a": 1, "b": 1, "_id": 1})),
        1 => Just(Some(doc! {"b": -1, "a": -1, "_id": -1})),
        1 => Just(Some(doc! {"c.x": 1, "_id": 1})),
    ]
}

fn index() -> impl Strategy<Value = Document> {
    prop_oneof![
        Just(doc! {"key": {"a": 1}, "name": "a_1"}),
        Just(doc! {"key": {"b": -1}, "name": "b_-1"}),
        Just(doc! {"key": {"a": 1, "b": 1}, "name": "a_1_b_1"}),
        Just(doc! {"key": {"b": 1, "a": -1}, "name": "b_1_a_-1"}),
        Just(doc! {"key": {"c.x": 1}, "name": "c.x_1"}),
        Just(doc! {"key": {"b": 1}, "name": "b_sparse", "sparse": true}),
        Just(doc! {"key": {"u": 1}, "name": "u_unique", "unique": true}),
        Just(
            doc! {"key": {"a": 1}, "name": "a_partial", "partialFilterExpression": {"a": {"$gt": 0}}}
        ),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    docs: Vec<(Option<Bson>, Option<Bson>, Option<Bson>)>,
    indexes: Vec<Document>,
    queries: Vec<(Document, Option<Document>, i64)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((value(), value(), value()), 0..40),
        prop::collection::vec(index(), 1..4),
        prop::collection::vec((filter(), sort(), prop_oneof![Just(0i64), 1i64..6]), 1..6),
    )
        .prop_map(|(docs, indexes, queries)| Case {
            docs,
            indexes,
            queries,
        })
}

fn by_id(mut docs: Vec<Document>) -> Vec<Document> {
    docs.sort_by_key(|d| format!("{:?}", d.get("_id")));
    docs
}

async fn check_case(db: &Database, case: &Case) -> Result<(), String> {
    let coll: Collection<Document> = db.collection("p");
    coll.drop().await.map_err(|e| e.to_string())?;
    let mut seen = std::collections::HashSet::new();
    for spec in &case.indexes {
        let name = spec.get_str("name").unwrap_or_default().to_string();
        if seen.insert(name) {
            // Two specs on one key pattern conflict (85), as in MongoDB:
            // the first one stays.
            if let Err(e) = run(db, doc! {"createIndexes": "p", "indexes": [spec.clone()]}).await
                && code(&e) != Some(85)
            {
                return Err(e.to_string());
            }
        }
    }
    let docs: Vec<Document> = case
        .docs
        .iter()
        .enumerate()
        .map(|(i, (a, b, c))| {
            let mut d = doc! {"_id": i as i32, "u": i as i32};
            for (k, v) in [("a", a), ("b", b), ("c", c)] {
                if let Some(v) = v {
                    d.insert(k, v.clone());
                }
            }
            d
        })
        .collect();
    if !docs.is_empty() {
        // Parallel arrays in a compound index are refused, as MongoDB's:
        // the documents that go in are the ones compared.
        let _ = coll.insert_many(docs).ordered(false).await;
    }
    for (filter, sort, limit) in &case.queries {
        let mut planned = doc! {"filter": filter.clone()};
        if let Some(s) = sort {
            planned.insert("sort", s.clone());
            if *limit > 0 {
                planned.insert("limit", *limit);
            }
        }
        let mut scanned = planned.clone();
        scanned.insert("hint", doc! {"$natural": 1});
        let mut shown = doc! {"find": "p"};
        shown.extend(planned.clone());
        let plan = run(db, doc! {"explain": shown, "verbosity": "queryPlanner"})
            .await
            .map_err(|e| e.to_string())?;
        if plan
            .get_document("queryPlanner")
            .ok()
            .and_then(|q| q.get_document("winningPlan").ok())
            .and_then(ixscan)
            .is_some()
        {
            INDEX_PLANS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let got = find_all(db, "p", planned.clone()).await;
        let want = find_all(db, "p", scanned).await;
        let (got, want) = if sort.is_some() {
            (got, want)
        } else {
            (by_id(got), by_id(want))
        };
        if got != want {
            return Err(format!(
                "find {planned}\n planned {got:?}\n scanned {want:?}\n plan {plan:?}"
            ));
        }
        // The same through an aggregate: `$match` then `$sort` (which an
        // index may give, dropping the blocking sort).
        let mut pipeline = vec![Bson::Document(doc! {"$match": filter.clone()})];
        if let Some(s) = sort {
            pipeline.push(Bson::Document(doc! {"$sort": s.clone()}));
            if *limit > 0 {
                pipeline.push(Bson::Document(doc! {"$limit": *limit}));
            }
        }
        let agg = |hint: Option<Document>| {
            let mut cmd = doc! {"aggregate": "p", "pipeline": pipeline.clone(), "cursor": {"batchSize": 1000}};
            if let Some(h) = hint {
                cmd.insert("hint", h);
            }
            cmd
        };
        let batch = |r: Document| -> Vec<Document> {
            r.get_document("cursor")
                .and_then(|c| c.get_array("firstBatch"))
                .map(|a| a.iter().filter_map(|d| d.as_document().cloned()).collect())
                .unwrap_or_default()
        };
        let got = batch(run(db, agg(None)).await.map_err(|e| e.to_string())?);
        let want = batch(
            run(db, agg(Some(doc! {"$natural": 1})))
                .await
                .map_err(|e| e.to_string())?,
        );
        let (got, want) = if sort.is_some() {
            (got, want)
        } else {
            (by_id(got), by_id(want))
        };
        if got != want {
            return Err(format!(
                "aggregate {pipeline:?}\n planned {got:?}\n scanned {want:?}"
            ));
        }
        let count = run(db, doc! {"count": "p", "query": filter.clone()})
            .await
            .map_err(|e| e.to_string())?;
        let n = count
            .get_i32("n")
            .map(i64::from)
            .or_else(|_| count.get_i64("n"))
            .ok();
        let expected = if sort.is_some() && *limit > 0 {
            None
        } else {
            Some(want.len() as i64)
        };
        if let Some(e) = expected
            && n != Some(e)
        {
            return Err(format!("count {filter}: {n:?}, scan found {e}"));
        }
    }
    Ok(())
}

/// Queries the property test ran on an index plan (it must not pass by
/// planning nothing).
static INDEX_PLANS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The planner's results equal a forced collection scan's: as multisets
/// without a sort, as sequences with one (`_id` breaks ties), for random
/// documents (numbers, strings, null, missing, arrays, sub-documents),
/// random single, compound, unique, sparse and partial indexes, and
/// filters of the supported and unsupported shapes.
#[test]
fn index_plans_return_what_a_collection_scan_returns() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let client = rt.block_on(server.client());
    let db = client.database("plans");
    let mut runner = TestRunner::new(Config {
        cases: std::env::var("ARGON_PLAN_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(48),
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        rt.block_on(check_case(&db, &case))
            .map_err(TestCaseError::fail)
    });
    rt.block_on(server.stop());
    result.unwrap();
    let planned = INDEX_PLANS.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{planned} queries ran on an index plan");
    assert!(planned >= 10, "only {planned} queries ran on an index plan");
}

async fn explain(db: &Database, inner: Document, verbosity: &str) -> Document {
    run(db, doc! {"explain": inner, "verbosity": verbosity})
        .await
        .expect("explain")
}

fn winning(e: &Document) -> Document {
    e.get_document("queryPlanner")
        .and_then(|q| q.get_document("winningPlan"))
        .expect("a winning plan")
        .clone()
}

/// The IXSCAN under a plan (below FETCH, SORT, COUNT...), if any.
fn ixscan(plan: &Document) -> Option<Document> {
    if plan.get_str("stage").ok() == Some("IXSCAN") {
        return Some(plan.clone());
    }
    plan.get_document("inputStage").ok().and_then(ixscan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_index_and_its_bounds() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("ex");
    let coll: Collection<Document> = db.collection("c");
    let docs: Vec<Document> = (0..10_000)
        .map(|i| doc! {"_id": i, "a": i % 100, "b": i % 7, "s": format!("s{:05}", i)})
        .collect();
    for chunk in docs.chunks(5_000) {
        coll.insert_many(chunk.to_vec()).await.unwrap();
    }
    run(
        &db,
        doc! {"createIndexes": "c", "indexes": [
            {"key": {"a": 1}, "name": "a_1"},
            {"key": {"a": 1, "b": -1}, "name": "a_1_b_-1"},
            {"key": {"s": 1}, "name": "s_1"},
        ]},
    )
    .await
    .unwrap();

    // Equality: the single-field index, a point interval, and only the
    // matches examined.
    let e = explain(
        &db,
        doc! {"find": "c", "filter": {"a": 42}},
        "executionStats",
    )
    .await;
    let ix = ixscan(&winning(&e)).expect("an index scan");
    assert_eq!(ix.get_str("indexName").unwrap(), "a_1");
    assert_eq!(
        ix.get_document("indexBounds").unwrap(),
        &doc! {"a": ["[42, 42]"]}
    );
    assert_eq!(ix.get_str("direction").unwrap(), "forward");
    assert!(!ix.get_bool("isMultiKey").unwrap());
    let stats = e.get_document("executionStats").unwrap();
    assert_eq!(stats.get_i64("nReturned").unwrap(), 100);
    assert_eq!(stats.get_i64("totalDocsExamined").unwrap(), 100);
    assert_eq!(stats.get_i64("totalKeysExamined").unwrap(), 100);
    assert_eq!(
        e.get_document("queryPlanner")
            .unwrap()
            .get_str("namespace")
            .unwrap(),
        "ex.c"
    );

    // Range, type-bracketed.
    let e = explain(
        &db,
        doc! {"find": "c", "filter": {"s": {"$gt": "s09990"}}},
        "executionStats",
    )
    .await;
    let ix = ixscan(&winning(&e)).unwrap();
    assert_eq!(ix.get_str("indexName").unwrap(), "s_1");
    assert_eq!(
        ix.get_document("indexBounds").unwrap(),
        &doc! {"s": ["(\"s09990\", {})"]}
    );
    assert_eq!(
        e.get_document("executionStats")
            .unwrap()
            .get_i64("totalDocsExamined")
            .unwrap(),
        9
    );

    // $in and a compound prefix: the compound index, points times a range.
    let e = explain(
        &db,
        doc! {"find": "c", "filter": {"a": {"$in": [3, 1]}, "b": {"$lt": 2}}},
        "queryPlanner",
    )
    .await;
    let ix = ixscan(&winning(&e)).unwrap();
    assert_eq!(ix.get_str("indexName").unwrap(), "a_1_b_-1");
    assert_eq!(
        ix.get_document("indexBounds").unwrap(),
        &doc! {"a": ["[1, 1]", "[3, 3]"], "b": ["[-inf.0, 2)"]}
    );
    assert!(e.get("executionStats").is_none());

    // Sort by the index: no SORT stage, the index read backward.
    let e = explain(
        &db,
        doc! {"find": "c", "filter": {"a": 5}, "sort": {"b": -1}, "limit": 3},
        "queryPlanner",
    )
    .await;
    let w = winning(&e);
    assert_ne!(w.get_str("stage").unwrap(), "SORT", "{w}");
    let ix = ixscan(&w).unwrap();
    assert_eq!(ix.get_str("indexName").unwrap(), "a_1_b_-1");
    let sorted = find_all(
        &db,
        "c",
        doc! {"filter": {"a": 5}, "sort": {"b": -1}, "limit": 3},
    )
    .await;
    let bs: Vec<i32> = sorted.iter().map(|d| d.get_i32("b").unwrap()).collect();
    assert_eq!(bs, vec![6, 6, 6]);
    // An aggregate's `$sort` after its `$match`, given by the index.
    let pipeline = doc! {"aggregate": "c", "pipeline": [{"$match": {"a": 5}}, {"$sort": {"b": -1}}], "cursor": {}};
    let e = explain(&db, pipeline.clone(), "queryPlanner").await;
    let w = winning(&e);
    assert_ne!(w.get_str("stage").unwrap(), "SORT", "{w}");
    assert_eq!(
        ixscan(&w).unwrap().get_str("indexName").unwrap(),
        "a_1_b_-1"
    );
    let reply = run(&db, pipeline).await.unwrap();
    let bs: Vec<i32> = reply
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .map(|d| d.as_document().unwrap().get_i32("b").unwrap())
        .collect();
    let mut sorted_bs = bs.clone();
    sorted_bs.sort_by(|x, y| y.cmp(x));
    assert_eq!((bs.len(), &bs), (100, &sorted_bs));

    // With a limit and the index's order, the scan stops there.
    let e = explain(
        &db,
        doc! {"find": "c", "filter": {"a": 42}, "limit": 5},
        "executionStats",
    )
    .await;
    let stats = e.get_document("executionStats").unwrap();
    assert_eq!(stats.get_i64("nReturned").unwrap(), 5);
    assert_eq!(stats.get_i64("totalDocsExamined").unwrap(), 5);

    // Unsupported shapes: a collection scan with the filter on it.
    for f in [
        doc! {"a": {"$ne": 1}},
        doc! {"$or": [{"a": 1}, {"b": 2}]},
        doc! {"s": {"$regex": "^s0"}},
        doc! {"zz": 1},
    ] {
        let e = explain(&db, doc! {"find": "c", "filter": f.clone()}, "queryPlanner").await;
        let w = winning(&e);
        assert_eq!(w.get_str("stage").unwrap(), "COLLSCAN", "{f}: {w}");
        assert_eq!(w.get_document("filter").unwrap(), &f);
    }
    // `_id` equality: IDHACK.
    let e = explain(
        &db,
        doc! {"find": "c", "filter": {"_id": 7}},
        "executionStats",
    )
    .await;
    assert_eq!(winning(&e).get_str("stage").unwrap(), "IDHACK");
    // The other explained commands; allPlansExecution has an empty list.
    for inner in [
        doc! {"count": "c", "query": {"a": 1}},
        doc! {"distinct": "c", "key": "b", "query": {"a": 1}},
        doc! {"aggregate": "c", "pipeline": [{"$match": {"a": 1}}], "cursor": {}},
        doc! {"update": "c", "updates": [{"q": {"a": 1}, "u": {"$set": {"z": 1}}, "multi": true}]},
        doc! {"delete": "c", "deletes": [{"q": {"a": 1}, "limit": 0}]},
        doc! {"findAndModify": "c", "query": {"a": 1}, "remove": true},
    ] {
        let e = explain(&db, inner.clone(), "allPlansExecution").await;
        let ix = ixscan(&winning(&e)).unwrap_or_else(|| panic!("{inner}: {e}"));
        assert_eq!(ix.get_str("indexName").unwrap(), "a_1", "{inner}");
        let stats = e.get_document("executionStats").unwrap();
        assert_eq!(stats.get_array("allPlansExecution").unwrap().len(), 0);
        // findAndModify reads no further than its first match.
        let examined = if inner.contains_key("findAndModify") {
            1
        } else {
            100
        };
        assert_eq!(
            stats.get_i64("totalDocsExamined").unwrap(),
            examined,
            "{inner}"
        );
    }
    // Explain never writes.
    assert_eq!(coll.count_documents(doc! {"a": 1}).await.unwrap(), 100);
    assert_eq!(coll.count_documents(doc! {"z": 1}).await.unwrap(), 0);
    // aggregate with explain: true.
    let e = run(
        &db,
        doc! {"aggregate": "c", "pipeline": [{"$match": {"a": 2}}], "explain": true},
    )
    .await
    .unwrap();
    assert_eq!(
        ixscan(&winning(&e)).unwrap().get_str("indexName").unwrap(),
        "a_1"
    );
    // A hint forces the index, over all of it when it bounds nothing.
    let e = explain(
        &db,
        doc! {"find": "c", "filter": {"b": 1}, "hint": "s_1"},
        "executionStats",
    )
    .await;
    let ix = ixscan(&winning(&e)).unwrap();
    assert_eq!(
        ix.get_document("indexBounds").unwrap(),
        &doc! {"s": ["[MinKey, MaxKey]"]}
    );
    assert_eq!(
        e.get_document("executionStats")
            .unwrap()
            .get_i64("nReturned")
            .unwrap(),
        coll.count_documents(doc! {"b": 1}).await.unwrap() as i64
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_on_an_index_plan_pages_its_snapshot_while_writes_land() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("gm");
    let coll: Collection<Document> = db.collection("c");
    run(
        &db,
        doc! {"createIndexes": "c", "indexes": [{"key": {"k": 1}, "name": "k_1"}]},
    )
    .await
    .unwrap();
    let docs: Vec<Document> = (0..1_000)
        .map(|i| doc! {"_id": i, "k": i % 10, "tags": [i % 3, 3 + i % 4]})
        .collect();
    coll.insert_many(docs).await.unwrap();
    let mut cursor = coll
        .find(doc! {"k": {"$gte": 3, "$lt": 5}})
        .batch_size(17)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(d) = cursor.try_next().await.unwrap() {
        seen.push((d.get_i32("k").unwrap(), d.get_i32("_id").unwrap()));
        if seen.len() == 40 {
            // Writes that move, add and remove matches do not reach it.
            coll.update_many(doc! {"k": 4}, doc! {"$set": {"k": 3}})
                .await
                .unwrap();
            coll.insert_one(doc! {"_id": -1, "k": 3}).await.unwrap();
            coll.delete_many(doc! {"k": 3, "_id": {"$gt": 500}})
                .await
                .unwrap();
        }
    }
    // Index order: by key, then `_id`; the snapshot's 200 matches, once each.
    let mut want: Vec<(i32, i32)> = (0..1_000)
        .filter(|i| (3..5).contains(&(i % 10)))
        .map(|i| (i % 10, i))
        .collect();
    want.sort();
    assert_eq!(seen, want);
    // A multikey index returns each document once.
    run(
        &db,
        doc! {"createIndexes": "c", "indexes": [{"key": {"tags": 1}, "name": "tags_1"}]},
    )
    .await
    .unwrap();
    let e = explain(
        &db,
        doc! {"find": "c", "filter": {"tags": {"$in": [0, 3]}}},
        "executionStats",
    )
    .await;
    let ix = ixscan(&winning(&e)).unwrap();
    assert!(ix.get_bool("isMultiKey").unwrap());
    let found = find_all(&db, "c", doc! {"filter": {"tags": {"$in": [0, 3]}}}).await;
    let scanned = find_all(
        &db,
        "c",
        doc! {"filter": {"tags": {"$in": [0, 3]}}, "hint": {"$natural": 1}},
    )
    .await;
    assert_eq!(by_id(found), by_id(scanned));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plans_and_explains_get_mongodb_codes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("h");
    let coll: Collection<Document> = db.collection("c");
    run(
        &db,
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1"}]},
    )
    .await
    .unwrap();
    coll.insert_many(
        (0..500)
            .map(|i| doc! {"_id": i, "a": i})
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    // $in of 200,000 values: past the interval cap, still the right answer.
    let many: Vec<i32> = (0..200_000).map(|i| i * 2).collect();
    let n = coll
        .count_documents(doc! {"a": {"$in": many.clone()}})
        .await
        .unwrap();
    assert_eq!(n, 250);
    let e = explain(
        &db,
        doc! {"count": "c", "query": {"a": {"$in": many}}},
        "queryPlanner",
    )
    .await;
    assert!(
        ixscan(&winning(&e)).is_none(),
        "too many points: not bounded"
    );
    // Deep $and nesting: bounded by the innermost predicate, or refused
    // past the depth limit with MongoDB's code, never a crash.
    let mut deep = doc! {"a": 7};
    for _ in 0..90 {
        deep = doc! {"$and": [deep]};
    }
    match coll.count_documents(deep.clone()).await {
        Ok(n) => assert_eq!(n, 1),
        Err(e) => assert!(code(&e).is_some(), "{e}"),
    }
    // A 100-field compound index with equality on every field.
    let mut key = Document::new();
    let mut filter = Document::new();
    let mut wide = doc! {"_id": "wide"};
    for i in 0..100 {
        key.insert(format!("f{i}"), 1);
        filter.insert(format!("f{i}"), i);
        wide.insert(format!("f{i}"), i);
    }
    run(
        &db,
        doc! {"createIndexes": "w", "indexes": [{"key": key, "name": "wide"}]},
    )
    .await
    .unwrap();
    db.collection::<Document>("w")
        .insert_one(wide)
        .await
        .unwrap();
    let e = explain(
        &db,
        doc! {"find": "w", "filter": filter.clone()},
        "executionStats",
    )
    .await;
    let ix = ixscan(&winning(&e)).unwrap();
    assert_eq!(ix.get_document("indexBounds").unwrap().len(), 100);
    assert_eq!(
        e.get_document("executionStats")
            .unwrap()
            .get_i64("nReturned")
            .unwrap(),
        1
    );
    // A hint naming no index: 2.
    let err = run(&db, doc! {"find": "c", "filter": {"a": 1}, "hint": "nope"})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(2));
    let err = run(&db, doc! {"explain": {"find": "c", "hint": {"zz": 1}}})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(2));
    // {$natural: -1} reads backward; another value than ±1 is 2.
    assert!(
        run(&db, doc! {"find": "c", "hint": {"$natural": -1}})
            .await
            .is_ok()
    );
    let err = run(&db, doc! {"find": "c", "hint": {"$natural": 2}})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(2));
    // Explain of an unknown command, of one it cannot explain, nested.
    let err = run(&db, doc! {"explain": {"frobnicate": "c"}})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(59));
    let err = run(&db, doc! {"explain": {"insert": "c", "documents": [{}]}})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(20));
    let err = run(&db, doc! {"explain": {"explain": {"find": "c"}}})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(20));
    // Bad verbosity, an unknown field, a malformed explain.
    let err = run(&db, doc! {"explain": {"find": "c"}, "verbosity": "loud"})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(2));
    let err = run(&db, doc! {"explain": {"find": "c"}, "verbosity": 1})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(14));
    let err = run(&db, doc! {"explain": {"find": "c"}, "extra": 1})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(40415));
    let err = run(&db, doc! {"explain": 1}).await.unwrap_err();
    assert_eq!(code(&err), Some(14));
    let err = run(&db, doc! {"explain": {"find": "c", "bogus": 1}})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(40415));
    let err = run(&db, doc! {"explain": {"update": "c", "updates": []}})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(2));
    // Explain of a read of a view is refused by name.
    run(&db, doc! {"create": "v", "viewOn": "c", "pipeline": []})
        .await
        .unwrap();
    let err = run(&db, doc! {"explain": {"find": "v"}}).await.unwrap_err();
    assert_eq!(code(&err), Some(115));
    // The server still answers.
    assert_eq!(coll.count_documents(doc! {"a": 3}).await.unwrap(), 1);
    server.stop().await;
}

/// `returnKey` and `{$meta: "indexKey"}`: the key the plan reached each
/// document under, as MongoDB's `jstests/core/query/return_key.js` checks
/// it (index scans in both directions, a blocking sort, projections it
/// overrides), and what it gives for `_id` lookups, collection scans,
/// multikey and compound indexes and min/max.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_key_gives_the_plans_index_keys() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("rk");
    let coll: Collection<Document> = db.collection("c");
    coll.insert_many(vec![
        doc! {"_id": 1, "a": 1, "b": 3},
        doc! {"_id": 2, "a": 2, "b": 2},
        doc! {"_id": 3, "a": 3, "b": 1},
    ])
    .await
    .unwrap();
    run(
        &db,
        doc! {"createIndexes": "c", "indexes": [
            {"key": {"a": 1}, "name": "a_1"},
            {"key": {"b": 1}, "name": "b_1"},
            {"key": {"b": 1, "a": -1}, "name": "b_1_a_-1"},
        ]},
    )
    .await
    .unwrap();
    let keys = |vals: &[i32]| -> Vec<Document> { vals.iter().map(|a| doc! {"a": *a}).collect() };
    for (options, want) in [
        (doc! {"hint": {"a": 1}, "sort": {"a": 1}}, keys(&[1, 2, 3])),
        (doc! {"hint": {"a": 1}, "sort": {"a": -1}}, keys(&[3, 2, 1])),
        // A blocking sort on another field: still the index's keys.
        (doc! {"hint": {"a": 1}, "sort": {"b": 1}}, keys(&[3, 2, 1])),
        (doc! {"hint": {"a": 1}, "sort": {"b": -1}}, keys(&[1, 2, 3])),
        // The projection is checked, then replaced.
        (
            doc! {"hint": {"a": 1}, "sort": {"a": -1}, "projection": {"b": 1}},
            keys(&[3, 2, 1]),
        ),
        (
            doc! {"hint": {"a": 1}, "sort": {"a": -1}, "projection": {"a": 0}},
            keys(&[3, 2, 1]),
        ),
        // Bounds from the filter; every batch (of one) keeps the rule.
        (
            doc! {"filter": {"a": {"$gte": 2}}, "hint": "a_1", "batchSize": 1},
            keys(&[2, 3]),
        ),
        // min/max over the hinted index.
        (doc! {"hint": {"a": 1}, "min": {"a": 2}}, keys(&[2, 3])),
        (
            doc! {"hint": "_id_", "min": {"_id": 2}},
            vec![doc! {"_id": 2}, doc! {"_id": 3}],
        ),
        // `_id` lookups give the `_id` key; a collection scan none.
        (doc! {"filter": {"_id": 2}}, vec![doc! {"_id": 2}]),
        (
            doc! {"filter": {"_id": {"$in": [3, 1]}}},
            vec![doc! {"_id": 1}, doc! {"_id": 3}],
        ),
        (
            doc! {"hint": {"$natural": 1}},
            vec![doc! {}, doc! {}, doc! {}],
        ),
        // A compound index: its fields in its order.
        (
            doc! {"filter": {"b": {"$lte": 2}}, "hint": "b_1_a_-1", "sort": {"b": 1}},
            vec![doc! {"b": 1, "a": 3}, doc! {"b": 2, "a": 2}],
        ),
    ] {
        let mut options = options;
        options.insert("returnKey", true);
        let shown = options.to_string();
        assert_eq!(find_all(&db, "c", options).await, want, "{shown}");
    }
    // A multikey document: the key it matched under, once.
    coll.insert_one(doc! {"_id": 10, "a": [7, 5, 9], "b": 0})
        .await
        .unwrap();
    assert_eq!(
        find_all(
            &db,
            "c",
            doc! {"filter": {"a": {"$gte": 6}}, "hint": "a_1", "returnKey": true}
        )
        .await,
        vec![doc! {"a": 7}]
    );
    assert_eq!(
        find_all(
            &db,
            "c",
            doc! {"filter": {"a": {"$gt": 4, "$lt": 6}}, "hint": "a_1", "returnKey": true}
        )
        .await,
        vec![doc! {"a": 5}]
    );
    // {$meta: "indexKey"}: the same key under a field, in an inclusion or
    // an exclusion projection; left out without an index.
    assert_eq!(
        find_all(
            &db,
            "c",
            doc! {"filter": {"a": 2}, "hint": "a_1", "projection": {"a": 1, "k.x": {"$meta": "indexKey"}}}
        )
        .await,
        vec![doc! {"_id": 2, "a": 2, "k": {"x": {"a": 2}}}]
    );
    assert_eq!(
        find_all(
            &db,
            "c",
            doc! {"filter": {"a": 2}, "hint": "a_1", "projection": {"b": 0, "k": {"$meta": "indexKey"}}}
        )
        .await,
        vec![doc! {"_id": 2, "a": 2, "k": {"a": 2}}]
    );
    assert_eq!(
        find_all(
            &db,
            "c",
            doc! {"filter": {"a": 2}, "hint": {"$natural": 1}, "projection": {"k": {"$meta": "indexKey"}}}
        )
        .await,
        vec![doc! {"_id": 2, "a": 2, "b": 2}]
    );
    // explain shows MongoDB's RETURN_KEY stage on top.
    let e = explain(
        &db,
        doc! {"find": "c", "hint": "a_1", "returnKey": true},
        "queryPlanner",
    )
    .await;
    assert_eq!(winning(&e).get_str("stage").unwrap(), "RETURN_KEY");
    // Refusals: a bad projection still fails, a wrong type, a view (as
    // MongoDB's aggregation), and the keys of text and geo indexes.
    run(&db, doc! {"create": "v", "viewOn": "c", "pipeline": []})
        .await
        .unwrap();
    run(
        &db,
        doc! {"createIndexes": "c", "indexes": [{"key": {"t": "text"}, "name": "t_text"}]},
    )
    .await
    .unwrap();
    for (cmd, want) in [
        (
            doc! {"find": "c", "returnKey": true, "projection": {"a": 1, "b": 0}},
            31254,
        ),
        (doc! {"find": "c", "returnKey": "yes"}, 14),
        (doc! {"find": "v", "returnKey": true}, 168),
        (
            doc! {"find": "c", "returnKey": true, "filter": {"$text": {"$search": "x"}}},
            115,
        ),
        (
            doc! {"find": "c", "filter": {"$text": {"$search": "x"}}, "projection": {"k": {"$meta": "indexKey"}}},
            115,
        ),
        (
            doc! {"findAndModify": "c", "query": {"a": 2}, "fields": {"k": {"$meta": "indexKey"}}, "update": {"$set": {"z": 1}}},
            115,
        ),
    ] {
        let shown = cmd.to_string();
        let e = run(&db, cmd).await.expect_err(&shown);
        assert_eq!(code(&e), Some(want), "{shown}: {e}");
    }
    server.stop().await;
}
