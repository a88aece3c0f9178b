//! Collation against the real binary through the Rust driver: filters,
//! sorts (across getMore batches), count, distinct, `$group`, `$lookup`,
//! writes, a collection's default, collated unique indexes, and hostile
//! collation specs. The comparisons themselves (MongoDB's documented
//! examples per option) are unit tests in `query::collation`.

use crate::common;

use bson::{Bson, Document, doc};
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use mongodb::Database;

async fn server() -> (Sidecar, tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sidecar = Sidecar::standalone(&dir.path().join("wal"))
        .await
        .expect("argon-sidecar starts");
    let db = sidecar.client().await.expect("a client").database("coll");
    (sidecar, dir, db)
}

/// Every document of a command's cursor, following getMore.
async fn all(db: &Database, cmd: Document) -> Vec<Document> {
    let reply = db.run_command(cmd).await.expect("the command");
    let cursor = reply.get_document("cursor").expect("a cursor");
    let ns = cursor.get_str("ns").expect("a namespace");
    let coll = ns.split_once('.').map_or(ns, |(_, c)| c).to_string();
    let mut out: Vec<Document> = cursor
        .get_array("firstBatch")
        .expect("a first batch")
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect();
    let mut id = cursor.get_i64("id").expect("an id");
    while id != 0 {
        let more = db
            .run_command(doc! {"getMore": id, "collection": coll.clone(), "batchSize": 2})
            .await
            .expect("getMore");
        let c = more.get_document("cursor").expect("a cursor");
        out.extend(
            c.get_array("nextBatch")
                .expect("a next batch")
                .iter()
                .filter_map(|d| d.as_document().cloned()),
        );
        id = c.get_i64("id").expect("an id");
    }
    out
}

fn ids(docs: &[Document]) -> Vec<i32> {
    docs.iter()
        .map(|d| d.get_i32("_id").expect("an int _id"))
        .collect()
}

#[tokio::test]
async fn reads_compare_and_sort_under_the_collation() {
    let (_s, _d, db) = server().await;
    let c = db.collection::<Document>("words");
    c.insert_many([
        doc! {"_id": 1, "w": "cafe", "n": "10"},
        doc! {"_id": 2, "w": "Café", "n": "9"},
        doc! {"_id": 3, "w": "CAFE", "n": "100"},
        doc! {"_id": 4, "w": "café", "n": "2"},
        doc! {"_id": 5, "w": "tea", "n": "1"},
        doc! {"_id": 6, "w": ["x", "CAFÉ"], "n": "20"},
    ])
    .await
    .expect("insert");
    let strength = |s: i32| doc! {"locale": "fr", "strength": s};

    // Equality: strength 1 ignores case and accents, 2 only case, 3 neither.
    for (s, want) in [(1, vec![1, 2, 3, 4, 6]), (2, vec![1, 3]), (3, vec![1])] {
        let found = all(
            &db,
            doc! {"find": "words", "filter": {"w": "cafe"}, "collation": strength(s), "sort": {"_id": 1}},
        )
        .await;
        assert_eq!(ids(&found), want, "strength {s}");
    }
    // $in and ranges under strength 2; the binary comparison without one.
    let found = all(
        &db,
        doc! {"find": "words", "filter": {"w": {"$in": ["CAFÉ", "TEA"]}}, "collation": strength(2), "sort": {"_id": 1}},
    )
    .await;
    assert_eq!(ids(&found), vec![2, 4, 5, 6]);
    let found = all(
        &db,
        doc! {"find": "words", "filter": {"w": {"$gt": "CAFF", "$lt": "U"}}, "collation": strength(1)},
    )
    .await;
    // An array satisfies each bound with any element ("x" > "CAFF",
    // "CAFÉ" < "U"), as in MongoDB.
    assert_eq!(ids(&found), vec![5, 6]);
    let found = all(
        &db,
        doc! {"find": "words", "filter": {"w": {"$in": ["CAFÉ", "TEA"]}}},
    )
    .await;
    assert_eq!(ids(&found), vec![6]);
    // $regex is never collated (as in MongoDB).
    let found = all(
        &db,
        doc! {"find": "words", "filter": {"w": {"$regex": "^caf"}}, "collation": strength(1)},
    )
    .await;
    assert_eq!(ids(&found), vec![1, 4]);
    // $expr comparisons too.
    let found = all(
        &db,
        doc! {"find": "words", "filter": {"$expr": {"$eq": ["$w", "TEA"]}}, "collation": strength(2)},
    )
    .await;
    assert_eq!(ids(&found), vec![5]);

    // numericOrdering sorts digits as numbers, in batches of 2 (the
    // cursor's getMores keep the collation).
    let sorted = all(
        &db,
        doc! {"find": "words", "sort": {"n": 1}, "batchSize": 2, "collation": {"locale": "en", "numericOrdering": true}},
    )
    .await;
    assert_eq!(ids(&sorted), vec![5, 4, 2, 1, 6, 3]);
    let binary = all(
        &db,
        doc! {"find": "words", "sort": {"n": 1}, "batchSize": 2},
    )
    .await;
    assert_eq!(ids(&binary), vec![5, 1, 3, 4, 6, 2]);
    // An unsorted scan that pages keeps it too.
    let paged = all(
        &db,
        doc! {"find": "words", "filter": {"w": "CAFE"}, "batchSize": 1, "collation": strength(2)},
    )
    .await;
    assert_eq!(ids(&paged), vec![1, 3]);
    // caseFirst upper puts capitals first.
    let found = all(
        &db,
        doc! {"find": "words", "filter": {"_id": {"$in": [1, 3]}}, "sort": {"w": 1}, "collation": {"locale": "en", "caseFirst": "upper"}},
    )
    .await;
    assert_eq!(ids(&found), vec![3, 1]);
    // A point lookup by a string _id would miss collation-equal _ids.
    let t = db.collection::<Document>("ids");
    t.insert_many([doc! {"_id": "Key"}, doc! {"_id": "other"}])
        .await
        .expect("insert");
    let found = all(
        &db,
        doc! {"find": "ids", "filter": {"_id": "KEY"}, "collation": strength(2)},
    )
    .await;
    assert_eq!(found, vec![doc! {"_id": "Key"}]);

    // count and distinct.
    let n = db
        .run_command(doc! {"count": "words", "query": {"w": "cafe"}, "collation": strength(1)})
        .await
        .expect("count");
    assert_eq!(n.get_i32("n").expect("n"), 5);
    let d = db
        .run_command(doc! {"distinct": "words", "key": "w", "collation": strength(1)})
        .await
        .expect("distinct");
    assert_eq!(d.get_array("values").expect("values").len(), 3, "{d}");
    let d = db
        .run_command(doc! {"distinct": "words", "key": "w", "collation": strength(2)})
        .await
        .expect("distinct");
    assert_eq!(d.get_array("values").expect("values").len(), 4, "{d}");

    // $group keys and a $sort in a pipeline.
    let groups = all(
        &db,
        doc! {"aggregate": "words", "pipeline": [
            {"$match": {"_id": {"$lte": 5}}},
            {"$group": {"_id": "$w", "n": {"$sum": 1}}},
            {"$sort": {"n": -1}},
        ], "cursor": {"batchSize": 1}, "collation": strength(2)},
    )
    .await;
    let counts: Vec<i32> = groups.iter().map(|g| g.get_i32("n").expect("n")).collect();
    assert_eq!(counts, vec![2, 2, 1], "{groups:?}");
    // $addToSet members are one per collation class.
    let set = all(
        &db,
        doc! {"aggregate": "words", "pipeline": [
            {"$match": {"_id": {"$lte": 4}}},
            {"$group": {"_id": null, "s": {"$addToSet": "$w"}}},
        ], "cursor": {}, "collation": strength(1)},
    )
    .await;
    assert_eq!(set[0].get_array("s").expect("s").len(), 1, "{set:?}");
    // $lookup's equality (its hash index) under the collation.
    db.collection::<Document>("prices")
        .insert_many([doc! {"w": "TEA", "p": 3}, doc! {"w": "tea", "p": 4}])
        .await
        .expect("insert");
    let joined = all(
        &db,
        doc! {"aggregate": "words", "pipeline": [
            {"$match": {"_id": 5}},
            {"$lookup": {"from": "prices", "localField": "w", "foreignField": "w", "as": "p"}},
        ], "cursor": {}, "collation": strength(2)},
    )
    .await;
    assert_eq!(joined[0].get_array("p").expect("p").len(), 2);
}

#[tokio::test]
async fn writes_match_under_the_collation() {
    let (_s, _d, db) = server().await;
    let c = db.collection::<Document>("w");
    c.insert_many([
        doc! {"_id": 1, "s": "apple", "tags": ["Red"]},
        doc! {"_id": 2, "s": "APPLE", "tags": ["red", "RED"]},
        doc! {"_id": 3, "s": "pear", "tags": []},
    ])
    .await
    .expect("insert");
    let ci = doc! {"locale": "en", "strength": 2};
    let r = db
        .run_command(doc! {"update": "w", "updates": [
            {"q": {"s": "Apple"}, "u": {"$set": {"hit": true}}, "multi": true, "collation": ci.clone()},
            // $addToSet and $pull compare under it too.
            {"q": {"_id": 3}, "u": {"$addToSet": {"tags": {"$each": ["A", "a"]}}}, "collation": ci.clone()},
            {"q": {"_id": 2}, "u": {"$pull": {"tags": "Red"}}, "collation": ci.clone()},
        ]})
        .await
        .expect("update");
    assert_eq!(r.get_i32("nModified").expect("nModified"), 4, "{r}");
    let docs: Vec<Document> = c
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("docs");
    assert!(docs[0].get_bool("hit").expect("hit") && docs[1].get_bool("hit").expect("hit"));
    assert_eq!(docs[2].get_array("tags").expect("tags").len(), 1);
    assert!(docs[1].get_array("tags").expect("tags").is_empty());
    // findAndModify with a sort under the collation.
    let r = db
        .run_command(doc! {"findAndModify": "w", "query": {"s": "APPLE"}, "sort": {"_id": -1}, "remove": true, "collation": ci.clone()})
        .await
        .expect("findAndModify");
    assert_eq!(
        r.get_document("value")
            .expect("value")
            .get_i32("_id")
            .expect("_id"),
        2
    );
    // deleteMany under strength 1.
    let r = db
        .run_command(doc! {"delete": "w", "deletes": [
            {"q": {"s": "ÁPPLE"}, "limit": 0, "collation": {"locale": "en", "strength": 1}},
        ]})
        .await
        .expect("delete");
    assert_eq!(r.get_i32("n").expect("n"), 1);
    assert_eq!(c.count_documents(doc! {}).await.expect("count"), 1);
}

#[tokio::test]
async fn a_collections_default_collation_and_collated_unique_indexes() {
    let (_s, _d, db) = server().await;
    db.run_command(doc! {"create": "people", "collation": {"locale": "en", "strength": 2}})
        .await
        .expect("create");
    // Stored resolved, every option filled in.
    let listed = all(
        &db,
        doc! {"listCollections": 1, "filter": {"name": "people"}},
    )
    .await;
    let spec = listed[0]
        .get_document("options")
        .and_then(|o| o.get_document("collation"))
        .expect("a stored collation");
    assert_eq!(spec.get_i32("strength").expect("strength"), 2);
    assert_eq!(spec.get_str("caseFirst").expect("caseFirst"), "off");
    assert_eq!(spec.get_str("version").expect("version"), "57.1");

    let c = db.collection::<Document>("people");
    c.insert_many([
        doc! {"_id": 1, "name": "Ann"},
        doc! {"_id": 2, "name": "ANN"},
    ])
    .await
    .expect("insert");
    // Queries without a collation inherit the default; an explicit simple
    // collation compares bytes.
    let found = all(&db, doc! {"find": "people", "filter": {"name": "ann"}}).await;
    assert_eq!(ids(&found), vec![1, 2]);
    let found = all(
        &db,
        doc! {"find": "people", "filter": {"name": "ann"}, "collation": {"locale": "simple"}},
    )
    .await;
    assert!(found.is_empty());
    let n = db
        .run_command(doc! {"count": "people", "query": {"name": "aNN"}})
        .await
        .expect("count");
    assert_eq!(n.get_i32("n").expect("n"), 2);

    // A unique index created without a collation inherits the default:
    // the two names are duplicates under it.
    assert_eq!(
        common::code_of(
            &db,
            doc! {"createIndexes": "people", "indexes": [{"key": {"name": 1}, "name": "name_1", "unique": true}]}
        )
        .await,
        Some(11000)
    );
    c.delete_one(doc! {"_id": 2}).await.expect("delete");
    db.run_command(doc! {"createIndexes": "people", "indexes": [{"key": {"name": 1}, "name": "name_1", "unique": true}]})
        .await
        .expect("createIndexes");
    let indexes = all(&db, doc! {"listIndexes": "people"}).await;
    let index = indexes
        .iter()
        .find(|i| i.get_str("name").ok() == Some("name_1"))
        .expect("name_1");
    assert_eq!(
        index
            .get_document("collation")
            .expect("inherited collation")
            .get_i32("strength")
            .expect("strength"),
        2
    );
    assert_eq!(
        common::code_of(
            &db,
            doc! {"insert": "people", "documents": [{"_id": 3, "name": "aNn"}]}
        )
        .await,
        Some(11000)
    );
    // Another name, and an update into a duplicate.
    c.insert_one(doc! {"_id": 4, "name": "Bob"})
        .await
        .expect("insert");
    assert_eq!(
        common::code_of(
            &db,
            doc! {"update": "people", "updates": [{"q": {"_id": 4}, "u": {"$set": {"name": "ANN"}}}]}
        )
        .await,
        Some(11000)
    );
    // An index with the simple collation on the same key, under another
    // name: byte-distinct names are not duplicates there.
    db.run_command(doc! {"createIndexes": "people", "indexes": [
        {"key": {"name": 1}, "name": "name_bin", "unique": true, "collation": {"locale": "simple"}},
    ]})
    .await
    .expect("a simple-collation index beside it");
    let indexes = all(&db, doc! {"listIndexes": "people"}).await;
    assert!(
        !indexes
            .iter()
            .find(|i| i.get_str("name").ok() == Some("name_bin"))
            .expect("name_bin")
            .contains_key("collation")
    );

    // An index collation on a collection without a default.
    let t = db.collection::<Document>("tags");
    db.run_command(doc! {"createIndexes": "tags", "indexes": [
        {"key": {"t": 1}, "name": "t_1", "unique": true, "collation": {"locale": "de", "strength": 1}},
    ]})
    .await
    .expect("createIndexes");
    t.insert_one(doc! {"t": "Straße"}).await.expect("insert");
    assert_eq!(
        common::code_of(
            &db,
            doc! {"insert": "tags", "documents": [{"t": "STRASSE"}]}
        )
        .await,
        Some(11000)
    );
    t.insert_one(doc! {"t": "Strasse2"})
        .await
        .expect("a different key");
}

#[tokio::test]
async fn hostile_collations_fail_alone() {
    let (_s, _d, db) = server().await;
    let c = db.collection::<Document>("h");
    // 1 MiB strings compare and key under a collation.
    let big = "é".repeat(512 * 1024);
    c.insert_many([
        doc! {"_id": 1, "s": big.clone()},
        doc! {"_id": 2, "s": big.to_uppercase()},
    ])
    .await
    .expect("insert");
    let found = all(
        &db,
        doc! {"find": "h", "filter": {"s": big.clone()}, "collation": {"locale": "fr", "strength": 2}},
    )
    .await;
    assert_eq!(ids(&found), vec![1, 2]);
    let groups = all(
        &db,
        doc! {"aggregate": "h", "pipeline": [{"$group": {"_id": "$s"}}, {"$project": {"_id": 0, "one": {"$literal": 1}}}], "cursor": {}, "collation": {"locale": "fr", "strength": 1}},
    )
    .await;
    assert_eq!(groups.len(), 1);
    // Many distinct collation specs: each parses (the collator cache is
    // bounded), none leaks into the next command.
    for i in 0..300 {
        let spec = doc! {
            "locale": if i % 2 == 0 { "en" } else { "sv" },
            "strength": 1 + (i % 5),
            "caseLevel": i % 3 == 0,
            "numericOrdering": i % 7 == 0,
            "alternate": if i % 11 == 0 { "shifted" } else { "non-ignorable" },
        };
        db.run_command(doc! {"count": "h", "query": {"s": "x"}, "collation": spec})
            .await
            .expect("count");
    }
    let found = all(&db, doc! {"find": "h", "filter": {"s": big.to_uppercase()}}).await;
    assert_eq!(ids(&found), vec![2], "no collation left behind");
    // Malformed specs: MongoDB's codes, the server keeps answering.
    let long_locale = "x".repeat(1 << 20);
    for (spec, code) in [
        (Bson::Document(doc! {"locale": long_locale}), 2),
        (
            Bson::Document(doc! {"locale": "en", "strength": i64::MAX}),
            2,
        ),
        (Bson::Document(doc! {"locale": "en", "strength": 2.5}), 14),
        (Bson::Document(doc! {"locale": "en", "caseLevel": 1}), 14),
        (Bson::Document(doc! {"locale": "en", "version": "1"}), 2),
        (Bson::Document(doc! {"locale": "en@collation=phonebook"}), 2),
        (Bson::Document(doc! {"locale": "en", "$x": 1}), 40415),
        (Bson::Array(vec![]), 14),
        (Bson::Document(doc! {}), 40414),
    ] {
        assert_eq!(
            common::code_of(&db, doc! {"find": "h", "collation": spec.clone()}).await,
            Some(code),
            "{spec}"
        );
    }
    db.run_command(doc! {"ping": 1})
        .await
        .expect("the server still answers");
}
