//! `find`'s `min`/`max` (index key bounds with a hint) and natural order
//! (`{$natural: ±1}` as hint or sort, a capped collection's insertion
//! order), through the Rust driver against the server in-process. Every
//! expected answer is computed here from the inserted documents, not read
//! back from the server.

use crate::common;

use std::cmp::Ordering;

use bson::{Bson, Document, doc};
use common::{TestServer, code};
use mongodb::Database;

/// Runs a find command and follows its cursor with getMores of
/// `batch` documents: every document, in the order the server gave.
async fn find_all(db: &Database, mut cmd: Document, batch: i32) -> Vec<Document> {
    cmd.insert("batchSize", batch);
    let coll = cmd
        .get_str("find")
        .expect("find names a collection")
        .to_string();
    let reply = db.run_command(cmd).await.expect("find");
    let cursor = reply.get_document("cursor").expect("a cursor");
    let mut out: Vec<Document> = cursor
        .get_array("firstBatch")
        .expect("firstBatch")
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect();
    let mut id = cursor.get_i64("id").expect("cursor id");
    while id != 0 {
        let more = db
            .run_command(doc! {"getMore": id, "collection": &coll, "batchSize": batch})
            .await
            .expect("getMore");
        let cursor = more.get_document("cursor").expect("a cursor");
        out.extend(
            cursor
                .get_array("nextBatch")
                .expect("nextBatch")
                .iter()
                .filter_map(|d| d.as_document().cloned()),
        );
        id = cursor.get_i64("id").expect("cursor id");
    }
    out
}

fn ids(docs: &[Document]) -> Vec<i32> {
    docs.iter()
        .map(|d| d.get_i32("_id").expect("an int _id"))
        .collect()
}

/// MongoDB's order for the value types these tests insert: MinKey, null
/// (and missing), numbers by value, strings, MaxKey.
fn cmp_value(a: &Bson, b: &Bson) -> Ordering {
    let rank = |v: &Bson| match v {
        Bson::MinKey => 0,
        Bson::Null => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => 2,
        Bson::String(_) => 3,
        Bson::MaxKey => 99,
        other => panic!("no order here for {other:?}"),
    };
    let num = |v: &Bson| match v {
        Bson::Int32(i) => f64::from(*i),
        Bson::Int64(i) => *i as f64,
        Bson::Double(x) => *x,
        _ => 0.0,
    };
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Bson::String(x), Bson::String(y)) => x.cmp(y),
        _ => num(a).total_cmp(&num(b)),
    })
}

/// Key tuples compared in index order (`dirs`: ascending per field).
fn cmp_key(a: &[Bson], b: &[Bson], dirs: &[bool]) -> Ordering {
    for ((x, y), asc) in a.iter().zip(b).zip(dirs) {
        let o = cmp_value(x, y);
        let o = if *asc { o } else { o.reverse() };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// The `_id`s (sorted) of `docs` whose key on `pattern` is in
/// `[min, max)` in index order: what a min/max find must return.
fn expected(docs: &[Document], pattern: &Document, min: &Document, max: &Document) -> Vec<i32> {
    let fields: Vec<&String> = pattern.keys().collect();
    let dirs: Vec<bool> = pattern
        .values()
        .map(|v| v.as_i32().expect("1 or -1") > 0)
        .collect();
    let key = |d: &Document| -> Vec<Bson> {
        fields
            .iter()
            .map(|f| d.get(f.as_str()).cloned().unwrap_or(Bson::Null))
            .collect()
    };
    let bound = |d: &Document| -> Option<Vec<Bson>> {
        (!d.is_empty()).then(|| d.values().cloned().collect())
    };
    let (lo, hi) = (bound(min), bound(max));
    let mut out: Vec<i32> = docs
        .iter()
        .filter(|d| {
            let k = key(d);
            lo.as_ref()
                .is_none_or(|l| cmp_key(&k, l, &dirs) != Ordering::Less)
                && hi
                    .as_ref()
                    .is_none_or(|h| cmp_key(&k, h, &dirs) == Ordering::Less)
        })
        .map(|d| d.get_i32("_id").expect("an int _id"))
        .collect();
    out.sort_unstable();
    out
}

/// Documents with numbers of three types, strings and missing fields on
/// `a` and `b`.
fn grid() -> Vec<Document> {
    let mut docs = Vec::new();
    for i in 0..72 {
        let a = match i % 4 {
            0 => Bson::Int32(i % 6),
            1 => Bson::Int64(i64::from(i % 6)),
            2 => Bson::Double(f64::from(i % 6) + 0.5),
            _ => Bson::Int32(i % 6),
        };
        let b = Bson::Int32(i % 5);
        docs.push(doc! {"_id": i, "a": a, "b": b});
    }
    docs.push(doc! {"_id": 100, "a": "x", "b": 1});
    docs.push(doc! {"_id": 101, "a": "y", "b": "z"});
    docs.push(doc! {"_id": 102, "b": 2});
    docs.push(doc! {"_id": 103, "a": Bson::Null, "b": 0});
    docs
}

async fn seeded(db: &Database, coll: &str, docs: &[Document]) {
    db.collection::<Document>(coll)
        .insert_many(docs.to_vec())
        .await
        .expect("seed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_and_max_bound_the_hinted_index_in_its_order() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("bounds");
    let docs = grid();
    seeded(&db, "g", &docs).await;
    let patterns = [
        doc! {"a": 1, "b": 1},
        doc! {"a": 1, "b": -1},
        doc! {"a": -1, "b": 1},
        doc! {"a": -1, "b": -1},
    ];
    for (i, p) in patterns.iter().enumerate() {
        db.run_command(
            doc! {"createIndexes": "g", "indexes": [{"key": p.clone(), "name": format!("i{i}")}]},
        )
        .await
        .expect("index");
    }
    let ranges = [
        (doc! {"a": 1, "b": 2}, doc! {"a": 4, "b": 1}),
        (doc! {"a": 2.5, "b": 0}, doc! {}),
        (doc! {}, doc! {"a": 3, "b": 3}),
        (doc! {"a": Bson::Null, "b": 0}, doc! {"a": "x", "b": 5}),
        (
            doc! {"a": 0, "b": Bson::MinKey},
            doc! {"a": 5, "b": Bson::MaxKey},
        ),
        (doc! {"a": 5, "b": 4}, doc! {"a": 1, "b": 1}),
    ];
    let mut nonempty = 0;
    for p in &patterns {
        for (min, max) in &ranges {
            let mut cmd = doc! {"find": "g", "hint": p.clone()};
            if !min.is_empty() {
                cmd.insert("min", min.clone());
            }
            if !max.is_empty() {
                cmd.insert("max", max.clone());
            }
            // A range that is empty in this index's order is MongoDB's 51175.
            let inverted = !min.is_empty() && !max.is_empty() && {
                let dirs: Vec<bool> = p.values().map(|v| v.as_i32() == Some(1)).collect();
                let (lo, hi): (Vec<Bson>, Vec<Bson>) = (
                    min.values().cloned().collect(),
                    max.values().cloned().collect(),
                );
                cmp_key(&lo, &hi, &dirs) != Ordering::Less
            };
            if inverted {
                assert_eq!(
                    common::code_of(&db, cmd).await,
                    Some(51175),
                    "{p} {min} {max}"
                );
                continue;
            }
            let want = expected(&docs, p, min, max);
            nonempty += usize::from(!want.is_empty());
            let found = find_all(&db, cmd.clone(), 3).await;
            // In index order, as mongod returns an unsorted scan: field by
            // field, each in its direction (mixed ones too).
            let dirs: Vec<bool> = p.values().map(|v| v.as_i32() == Some(1)).collect();
            let key = |d: &Document| -> Vec<Bson> {
                p.keys()
                    .map(|f| d.get(f.as_str()).cloned().unwrap_or(Bson::Null))
                    .collect()
            };
            for w in found.windows(2) {
                assert_ne!(
                    cmp_key(&key(&w[0]), &key(&w[1]), &dirs),
                    Ordering::Greater,
                    "index order of {p} {min} {max}: {} then {}",
                    w[0],
                    w[1]
                );
            }
            let mut got = ids(&found);
            let n = got.len();
            got.sort_unstable();
            got.dedup();
            assert_eq!(got.len(), n, "each document once: {p} {min} {max}");
            assert_eq!(got, want, "{p} min {min} max {max}");
            // With a filter as well: both apply.
            let mut filtered = cmd.clone();
            filtered.insert("filter", doc! {"b": {"$gte": 2}});
            let got = ids(&find_all(&db, filtered, 1000).await);
            let want_f: Vec<i32> = want
                .iter()
                .copied()
                .filter(|id| {
                    docs.iter()
                        .find(|d| d.get_i32("_id").ok() == Some(*id))
                        .and_then(|d| d.get_i32("b").ok())
                        .is_some_and(|b| b >= 2)
                })
                .collect();
            let mut got_sorted = got.clone();
            got_sorted.sort_unstable();
            assert_eq!(got_sorted, want_f, "filtered {p} {min} {max}");
        }
    }
    assert!(nonempty >= 12, "the ranges select something");

    // Sorted by the index (no blocking sort) and by another field.
    let cmd = doc! {"find": "g", "hint": {"a": 1, "b": -1}, "min": {"a": 1, "b": 4}, "max": {"a": 3, "b": 0}, "sort": {"a": -1, "b": 1}};
    let got = find_all(&db, cmd, 2).await;
    let keys: Vec<(Bson, Bson)> = got
        .iter()
        .map(|d| {
            (
                d.get("a").cloned().unwrap_or(Bson::Null),
                d.get("b").cloned().unwrap_or(Bson::Null),
            )
        })
        .collect();
    assert!(!keys.is_empty());
    for w in keys.windows(2) {
        let o = cmp_value(&w[0].0, &w[1].0)
            .reverse()
            .then_with(|| cmp_value(&w[0].1, &w[1].1));
        assert_ne!(o, Ordering::Greater, "{keys:?}");
    }
    let cmd = doc! {"find": "g", "hint": "i0", "min": {"a": 2, "b": 0}, "max": {"a": 4, "b": 0}, "sort": {"_id": -1}};
    let got = ids(&find_all(&db, cmd, 5).await);
    let mut want = expected(
        &docs,
        &doc! {"a": 1, "b": 1},
        &doc! {"a": 2, "b": 0},
        &doc! {"a": 4, "b": 0},
    );
    want.reverse();
    assert_eq!(got, want);

    // Without a sort, a descending first field returns index order.
    db.run_command(doc! {"createIndexes": "g", "indexes": [{"key": {"a": -1}, "name": "a_desc"}]})
        .await
        .expect("index");
    let got = find_all(
        &db,
        doc! {"find": "g", "hint": "a_desc", "min": {"a": 4}, "max": {"a": 1}},
        4,
    )
    .await;
    let a: Vec<Bson> = got
        .iter()
        .map(|d| d.get("a").cloned().unwrap_or(Bson::Null))
        .collect();
    assert!(!a.is_empty());
    for w in a.windows(2) {
        assert_ne!(cmp_value(&w[0], &w[1]), Ordering::Less, "{a:?}");
    }
    assert_eq!(
        ids(&got).len(),
        expected(&docs, &doc! {"a": -1}, &doc! {"a": 4}, &doc! {"a": 1}).len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_and_max_over_id_partial_and_multikey_indexes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("bounds");
    let docs = grid();
    seeded(&db, "g", &docs).await;
    // `_id_`: no key map, read through the collection.
    let got = ids(&find_all(
        &db,
        doc! {"find": "g", "hint": {"_id": 1}, "min": {"_id": 10}, "max": {"_id": 20}},
        4,
    )
    .await);
    assert_eq!(got, (10..20).collect::<Vec<i32>>());
    let got = ids(&find_all(
        &db,
        doc! {"find": "g", "hint": "_id_", "min": {"_id": 70}},
        2,
    )
    .await);
    assert_eq!(got, vec![70, 71, 100, 101, 102, 103]);
    // A partial index holds only the documents its filter matches.
    db.run_command(doc! {"createIndexes": "g", "indexes": [{"key": {"b": 1}, "name": "b_partial", "partialFilterExpression": {"a": {"$gte": 3}}}]})
        .await
        .expect("partial index");
    let mut got = ids(&find_all(
        &db,
        doc! {"find": "g", "hint": "b_partial", "min": {"b": 1}, "max": {"b": 3}},
        4,
    )
    .await);
    got.sort_unstable();
    let want: Vec<i32> = docs
        .iter()
        .filter(|d| {
            let a_ok = d.get("a").is_some_and(|a| {
                cmp_value(a, &Bson::Int32(3)) != Ordering::Less
                    && !matches!(a, Bson::String(_) | Bson::Null)
            });
            let b_ok = d.get("b").is_some_and(|b| matches!(b, Bson::Int32(1 | 2)));
            a_ok && b_ok
        })
        .map(|d| d.get_i32("_id").expect("id"))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // Multikey: a document is in the range when one of its keys is, once.
    db.collection::<Document>("m")
        .insert_many(vec![
            doc! {"_id": 1, "t": [1, 9]},
            doc! {"_id": 2, "t": [2, 3]},
            doc! {"_id": 3, "t": [7, 8, 20]},
            doc! {"_id": 4, "t": 5},
            doc! {"_id": 5, "t": []},
        ])
        .await
        .expect("seed");
    db.run_command(doc! {"createIndexes": "m", "indexes": [{"key": {"t": 1}, "name": "t_1"}]})
        .await
        .expect("index");
    let mut got = ids(&find_all(
        &db,
        doc! {"find": "m", "hint": "t_1", "min": {"t": 5}, "max": {"t": 9}},
        1,
    )
    .await);
    got.sort_unstable();
    assert_eq!(got, vec![3, 4]);
    let mut got = ids(&find_all(&db, doc! {"find": "m", "hint": "t_1", "min": {"t": 3}}, 1).await);
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3, 4]);
    // A Decimal128 key: the scan checks each candidate and still agrees.
    db.collection::<Document>("m")
        .insert_one(doc! {"_id": 6, "t": Bson::Decimal128("6".parse().expect("decimal"))})
        .await
        .expect("insert");
    let mut got = ids(&find_all(
        &db,
        doc! {"find": "m", "hint": "t_1", "min": {"t": 5}, "max": {"t": 9}},
        1,
    )
    .await);
    got.sort_unstable();
    assert_eq!(got, vec![3, 4, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_and_max_explain_their_bounds() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("bounds");
    seeded(&db, "g", &grid()).await;
    db.run_command(
        doc! {"createIndexes": "g", "indexes": [{"key": {"a": 1, "b": -1}, "name": "ab"}]},
    )
    .await
    .expect("index");
    let reply = db
        .run_command(doc! {"explain": {"find": "g", "hint": "ab", "min": {"a": 1, "b": 2}}, "verbosity": "executionStats"})
        .await
        .expect("explain");
    let ixscan = reply
        .get_document("queryPlanner")
        .and_then(|q| q.get_document("winningPlan"))
        .and_then(|w| w.get_document("inputStage"))
        .expect("FETCH over IXSCAN");
    assert_eq!(ixscan.get_str("stage").expect("stage"), "IXSCAN");
    assert_eq!(ixscan.get_str("indexName").expect("name"), "ab");
    assert_eq!(
        ixscan.get_document("indexBounds").expect("bounds"),
        &doc! {"startKey": {"a": 1, "b": 2}, "endKey": {"a": Bson::MaxKey, "b": Bson::MinKey}, "endKeyInclusive": false}
    );
    let stats = reply.get_document("executionStats").expect("stats");
    let want = expected(
        &grid(),
        &doc! {"a": 1, "b": -1},
        &doc! {"a": 1, "b": 2},
        &doc! {},
    );
    assert_eq!(stats.get_i64("nReturned").expect("n"), want.len() as i64);
    // An exact range examines only its own keys.
    assert_eq!(
        stats.get_i64("totalKeysExamined").expect("keys"),
        want.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_and_max_fail_as_mongodb_does() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("bounds");
    seeded(&db, "g", &grid()).await;
    db.run_command(doc! {"createIndexes": "g", "indexes": [
        {"key": {"a": 1, "b": -1}, "name": "ab"},
        {"key": {"a": 1}, "name": "a_1"},
        {"key": {"s": "text"}, "name": "s_text"},
        {"key": {"loc": "2dsphere"}, "name": "loc_geo"},
    ]})
    .await
    .expect("indexes");
    db.run_command(doc! {"create": "v", "viewOn": "g", "pipeline": []})
        .await
        .expect("view");
    let many: Document = (0..100)
        .map(|i| (format!("f{i}"), Bson::Int32(i)))
        .collect();
    let mut deep = doc! {"x": 1};
    for _ in 0..90 {
        deep = doc! {"x": deep};
    }
    let cases: Vec<(Document, Option<i32>)> = vec![
        (doc! {"find": "g", "min": {"a": 1}}, Some(291)),
        (
            doc! {"find": "g", "min": {"a": 1}, "max": {"b": 1}, "hint": "a_1"},
            Some(51176),
        ),
        (
            doc! {"find": "g", "min": {"a": 1, "b": 1}, "max": {"a": 1}, "hint": "ab"},
            Some(51176),
        ),
        (
            doc! {"find": "g", "min": {"a": 1}, "hint": "ab"},
            Some(51174),
        ),
        (
            doc! {"find": "g", "min": {"b": 1, "a": 1}, "hint": "ab"},
            Some(51174),
        ),
        (
            doc! {"find": "g", "min": {"a": 2}, "max": {"a": 2}, "hint": "a_1"},
            Some(51175),
        ),
        (
            doc! {"find": "g", "min": {"a": 3}, "max": {"a": 1}, "hint": "a_1"},
            Some(51175),
        ),
        (
            doc! {"find": "g", "min": {"a": 1}, "hint": {"$natural": 1}},
            Some(291),
        ),
        (
            doc! {"find": "g", "max": {"a": 1}, "sort": {"$natural": -1}},
            Some(291),
        ),
        (doc! {"find": "g", "min": {"a": 1}, "hint": "nope"}, Some(2)),
        (doc! {"find": "g", "min": 5, "hint": "a_1"}, Some(14)),
        (doc! {"find": "g", "max": [1], "hint": "a_1"}, Some(14)),
        (
            doc! {"find": "g", "min": many.clone(), "hint": "a_1"},
            Some(51174),
        ),
        (
            doc! {"find": "g", "min": many.clone(), "max": many, "hint": "a_1"},
            Some(51174),
        ),
        // A text index's key pattern is `{_fts: "text", _ftsx: 1}`.
        (
            doc! {"find": "g", "min": {"s": "a"}, "hint": "s_text"},
            Some(51174),
        ),
        (
            doc! {"find": "g", "min": {"loc": 1}, "hint": "loc_geo"},
            Some(115),
        ),
        (
            doc! {"find": "v", "min": {"a": 1}, "hint": "a_1"},
            Some(168),
        ),
        (
            doc! {"find": "g", "min": {"a": 1}, "hint": "a_1", "collation": {"locale": "en"}},
            None,
        ),
        (
            doc! {"find": "g", "min": {"a": "x"}, "hint": "a_1", "collation": {"locale": "en"}},
            Some(51174),
        ),
        (
            doc! {"find": "g", "min": {"a": deep.clone()}, "hint": "a_1"},
            None,
        ),
        (
            doc! {"find": "g", "min": {"a": 1}, "max": {"a": deep}, "hint": "a_1"},
            None,
        ),
        (
            doc! {"find": "nothere", "min": {"a": 1}, "hint": "a_1"},
            None,
        ),
        (doc! {"find": "g", "min": {}, "max": {}}, None),
    ];
    for (cmd, want) in cases {
        assert_eq!(common::code_of(&db, cmd.clone()).await, want, "{cmd}");
    }
    // A document key above every number: nothing numeric or string.
    let got = find_all(
        &db,
        doc! {"find": "g", "min": {"a": {"x": 1}}, "hint": "a_1"},
        10,
    )
    .await;
    assert!(got.is_empty(), "{got:?}");
    // The server still answers.
    assert!(db.run_command(doc! {"ping": 1}).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_order_runs_both_ways_and_resumes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("natural");
    // Not capped: natural order is `_id` order here.
    let plain: Vec<Document> = [5, 3, 9, 1, 7, 2, 8]
        .iter()
        .map(|i| doc! {"_id": *i, "k": i % 2})
        .collect();
    seeded(&db, "plain", &plain).await;
    let mut by_id: Vec<i32> = plain
        .iter()
        .map(|d| d.get_i32("_id").expect("id"))
        .collect();
    by_id.sort_unstable();
    let reversed: Vec<i32> = by_id.iter().rev().copied().collect();
    for cmd in [
        doc! {"find": "plain", "hint": {"$natural": -1}},
        doc! {"find": "plain", "sort": {"$natural": -1}},
        doc! {"find": "plain", "sort": {"$natural": -1}, "hint": {"$natural": -1}},
    ] {
        assert_eq!(ids(&find_all(&db, cmd.clone(), 2).await), reversed, "{cmd}");
    }
    assert_eq!(
        ids(&find_all(&db, doc! {"find": "plain", "hint": {"$natural": 1}}, 2).await),
        by_id
    );
    let odd: Vec<i32> = reversed.iter().copied().filter(|i| i % 2 == 1).collect();
    assert_eq!(
        ids(&find_all(&db, doc! {"find": "plain", "filter": {"k": 1}, "hint": {"$natural": -1}, "skip": 1, "limit": 2}, 1).await),
        odd[1..3].to_vec()
    );
    // Capped: insertion order, forward and back, across getMores.
    db.run_command(doc! {"create": "log", "capped": true, "size": 100_000})
        .await
        .expect("create capped");
    let order = [40, 10, 30, 20, 50, 0];
    for i in order {
        db.collection::<Document>("log")
            .insert_one(doc! {"_id": i, "v": i})
            .await
            .expect("insert");
    }
    let forward: Vec<i32> = order.to_vec();
    let backward: Vec<i32> = order.iter().rev().copied().collect();
    assert_eq!(ids(&find_all(&db, doc! {"find": "log"}, 2).await), forward);
    assert_eq!(
        ids(&find_all(&db, doc! {"find": "log", "sort": {"$natural": 1}}, 2).await),
        forward
    );
    assert_eq!(
        ids(&find_all(&db, doc! {"find": "log", "hint": {"$natural": 1}}, 2).await),
        forward
    );
    assert_eq!(
        ids(&find_all(&db, doc! {"find": "log", "sort": {"$natural": -1}}, 2).await),
        backward
    );
    assert_eq!(
        ids(&find_all(&db, doc! {"find": "log", "hint": {"$natural": -1}}, 1).await),
        backward
    );
    // An aggregate with a natural hint reads the same order.
    let reply = db
        .run_command(
            doc! {"aggregate": "log", "pipeline": [], "hint": {"$natural": -1}, "cursor": {}},
        )
        .await
        .expect("aggregate");
    let first: Vec<Document> = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("firstBatch")
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect();
    assert_eq!(ids(&first), backward);
    // Without a hint an aggregate reads a capped collection in natural
    // order too, as a find does.
    let reply = db
        .run_command(
            doc! {"aggregate": "log", "pipeline": [{"$match": {"v": {"$gte": 0}}}], "cursor": {}},
        )
        .await
        .expect("aggregate");
    let first: Vec<Document> = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("firstBatch")
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect();
    assert_eq!(ids(&first), forward);
    // A cursor keeps reading the state it started on while writes go on.
    let reply = db
        .run_command(doc! {"find": "log", "sort": {"$natural": -1}, "batchSize": 2})
        .await
        .expect("find");
    let id = reply
        .get_document("cursor")
        .and_then(|c| c.get_i64("id"))
        .expect("id");
    db.collection::<Document>("log")
        .insert_one(doc! {"_id": 99})
        .await
        .expect("insert");
    let more = db
        .run_command(doc! {"getMore": id, "collection": "log", "batchSize": 100})
        .await
        .expect("getMore");
    let rest: Vec<Document> = more
        .get_document("cursor")
        .and_then(|c| c.get_array("nextBatch"))
        .expect("nextBatch")
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect();
    assert_eq!(ids(&rest), backward[2..].to_vec());
    // A findAndModify or an updateOne with a natural sort takes the
    // newest (reverse insertion order), as a natural hint.
    let newest = backward[0];
    let reply = db
        .run_command(doc! {"findAndModify": "log", "query": {}, "sort": {"$natural": -1}, "update": {"$set": {"seen": 1}}})
        .await
        .expect("findAndModify");
    assert_eq!(
        reply
            .get_document("value")
            .and_then(|v| v.get_i32("_id"))
            .expect("value"),
        99,
        "the document inserted last"
    );
    let reply = db
        .run_command(doc! {"update": "log", "updates": [{"q": {"seen": {"$exists": false}}, "u": {"$set": {"seen": 2}}, "sort": {"$natural": -1}}]})
        .await
        .expect("updateOne");
    assert_eq!(reply.get_i32("nModified").expect("n"), 1);
    let second = db
        .collection::<Document>("log")
        .find_one(doc! {"seen": 2})
        .await
        .expect("find")
        .expect("updated");
    assert_eq!(second.get_i32("_id").expect("id"), newest);
    assert_eq!(
        common::code_of(&db, doc! {"update": "log", "updates": [{"q": {}, "u": {"$set": {"x": 1}}, "multi": true, "sort": {"$natural": 1}}]}).await,
        Some(72)
    );
    // Explain names the direction.
    let reply = db
        .run_command(doc! {"explain": {"find": "log", "sort": {"$natural": -1}}, "verbosity": "queryPlanner"})
        .await
        .expect("explain");
    let plan = reply
        .get_document("queryPlanner")
        .and_then(|q| q.get_document("winningPlan"))
        .expect("plan");
    assert_eq!(plan.get_str("stage").expect("stage"), "COLLSCAN");
    assert_eq!(plan.get_str("direction").expect("direction"), "backward");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_sorts_and_hints_are_checked() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("natural");
    seeded(&db, "c", &[doc! {"_id": 1, "a": 1}]).await;
    db.run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1"}]})
        .await
        .expect("index");
    db.run_command(doc! {"create": "v", "viewOn": "c", "pipeline": []})
        .await
        .expect("view");
    let cases: Vec<(Document, Option<i32>)> = vec![
        (doc! {"find": "c", "sort": {"$natural": 1, "a": 1}}, Some(2)),
        (doc! {"find": "c", "sort": {"$natural": 2}}, Some(2)),
        (doc! {"find": "c", "sort": {"$natural": "x"}}, Some(2)),
        (doc! {"find": "c", "hint": {"$natural": 0}}, Some(2)),
        (
            doc! {"find": "c", "hint": {"$natural": -1, "a": 1}},
            Some(2),
        ),
        (
            doc! {"find": "c", "sort": {"$natural": 1}, "hint": "a_1"},
            Some(2),
        ),
        (
            doc! {"find": "c", "sort": {"$natural": 1}, "hint": {"$natural": -1}},
            Some(2),
        ),
        (doc! {"find": "v", "sort": {"$natural": 1}}, Some(168)),
        (doc! {"count": "c", "hint": {"$natural": -1}}, None),
        // In an aggregation `$natural` is no field path (MongoDB's 16410).
        (
            doc! {"aggregate": "c", "pipeline": [{"$sort": {"$natural": 1}}], "cursor": {}},
            Some(16410),
        ),
        (doc! {"find": "c", "hint": {"$natural": -1.0}}, None),
    ];
    for (cmd, want) in cases {
        assert_eq!(common::code_of(&db, cmd.clone()).await, want, "{cmd}");
    }
    // A tailable cursor keeps to its own rule: only {$natural: 1}.
    db.run_command(doc! {"create": "cap", "capped": true, "size": 4096})
        .await
        .expect("capped");
    let e = db
        .run_command(doc! {"find": "cap", "tailable": true, "sort": {"$natural": -1}})
        .await
        .expect_err("reverse tailable");
    assert_eq!(code(&e), Some(2));
}

const PYMONGO_SCENARIO: &str = include_str!("scenarios/cursor_bounds.py");

/// pymongo's own `Cursor.min()`/`max()`/`hint()`, `$natural` sorts, a capped
/// collection's `collMod` and a capped write in a transaction, against the
/// real binary (the script asserts and prints OK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_cursor_bounds() {
    let (s, _d, _client) = common::standalone().await;
    let uri = s.uri();
    let out = tokio::task::spawn_blocking(move || {
        argon_testkit::clients::run_python(PYMONGO_SCENARIO, &[&uri, "pybounds"])
    })
    .await
    .expect("the client runs")
    .expect("the scenario passes");
    assert_eq!(out.trim().lines().last(), Some("OK"), "pymongo: {out}");
}
