//! Read-only views against the real binary through the Rust driver:
//! `create` with `viewOn`/`pipeline`, `listCollections`, find / count /
//! distinct / aggregate composed with the view's pipeline (views on views
//! too), writes refused with 166, a view's collation, `drop`, branches and
//! time travel, and hostile definitions.

use crate::common;

use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::Database;

async fn find(db: &Database, coll: &str, filter: Document, sort: Document) -> Vec<Document> {
    db.collection::<Document>(coll)
        .find(filter)
        .sort(sort)
        .batch_size(2)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents")
}

#[tokio::test]
async fn queries_compose_the_views_pipeline() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("v");
    let orders = db.collection::<Document>("orders");
    orders
        .insert_many((1..=10).map(|i| {
            doc! {"_id": i, "status": if i % 2 == 0 { "paid" } else { "open" }, "amount": i * 10, "who": if i % 3 == 0 { "Ann" } else { "bob" }}
        }))
        .await
        .expect("insert");
    db.run_command(doc! {"create": "paid", "viewOn": "orders", "pipeline": [
        {"$match": {"status": "paid"}},
        {"$project": {"status": 0}},
    ]})
    .await
    .expect("create view");
    // A view on the view.
    db.run_command(doc! {"create": "big_paid", "viewOn": "paid", "pipeline": [
        {"$match": {"amount": {"$gte": 60}}},
    ]})
    .await
    .expect("create view on a view");

    let listed: Vec<Document> = db
        .run_command(doc! {"listCollections": 1, "filter": {"type": "view"}})
        .await
        .expect("listCollections")
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a batch")
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect();
    let mut names: Vec<&str> = listed
        .iter()
        .map(|d| d.get_str("name").expect("name"))
        .collect();
    names.sort();
    assert_eq!(names, ["big_paid", "paid"]);
    let paid = listed
        .iter()
        .find(|d| d.get_str("name").ok() == Some("paid"))
        .expect("paid");
    assert_eq!(
        paid.get_document("options")
            .expect("options")
            .get_str("viewOn")
            .expect("viewOn"),
        "orders"
    );
    assert!(
        paid.get_document("info")
            .expect("info")
            .get_bool("readOnly")
            .expect("readOnly")
    );

    // find: filter, sort, skip, limit and projection after the pipeline,
    // paged through getMore.
    let all = find(&db, "paid", doc! {}, doc! {"_id": 1}).await;
    assert_eq!(all.len(), 5);
    assert!(all.iter().all(|d| !d.contains_key("status")));
    let some: Vec<Document> = db
        .collection::<Document>("paid")
        .find(doc! {"amount": {"$gt": 20}})
        .sort(doc! {"amount": -1})
        .skip(1)
        .limit(2)
        .projection(doc! {"amount": 1})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents");
    assert_eq!(
        some,
        vec![doc! {"_id": 8, "amount": 80}, doc! {"_id": 6, "amount": 60}]
    );
    let big = find(&db, "big_paid", doc! {}, doc! {"_id": 1}).await;
    let ids: Vec<i32> = big.iter().map(|d| d.get_i32("_id").expect("_id")).collect();
    assert_eq!(ids, vec![6, 8, 10]);
    // count (and estimatedDocumentCount, which is count without a query).
    let paid_view = db.collection::<Document>("paid");
    assert_eq!(
        paid_view.estimated_document_count().await.expect("count"),
        5
    );
    assert_eq!(
        paid_view
            .count_documents(doc! {"who": "bob"})
            .await
            .expect("count"),
        4
    );
    let n = db
        .run_command(doc! {"count": "big_paid", "skip": 1})
        .await
        .expect("count");
    assert_eq!(n.get_i32("n").expect("n"), 2);
    // distinct.
    let values = paid_view.distinct("who", doc! {}).await.expect("distinct");
    assert_eq!(values.len(), 2);
    // aggregate: the view's stages, then the command's.
    let total: Vec<Document> = paid_view
        .aggregate([doc! {"$group": {"_id": null, "sum": {"$sum": "$amount"}}}])
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("documents");
    assert_eq!(total[0].get_i32("sum").expect("sum"), 300);

    // Writes and index commands are refused with 166, nothing changes.
    for cmd in [
        doc! {"insert": "paid", "documents": [{"_id": 99}]},
        doc! {"update": "paid", "updates": [{"q": {}, "u": {"$set": {"x": 1}}, "multi": true}]},
        doc! {"delete": "paid", "deletes": [{"q": {}, "limit": 0}]},
        doc! {"findAndModify": "paid", "query": {}, "remove": true},
        doc! {"createIndexes": "paid", "indexes": [{"key": {"a": 1}, "name": "a_1"}]},
        doc! {"listIndexes": "paid"},
        doc! {"aggregate": "orders", "pipeline": [{"$out": "paid"}], "cursor": {}},
    ] {
        let shown = cmd.to_string();
        assert_eq!(common::code_of(&db, cmd).await, Some(166), "{shown}");
    }
    assert_eq!(orders.count_documents(doc! {}).await.expect("count"), 10);
    // $lookup from a view is refused by name, not answered empty.
    assert_eq!(
        common::code_of(
            &db,
            doc! {"aggregate": "orders", "pipeline": [{"$lookup": {"from": "paid", "localField": "_id", "foreignField": "_id", "as": "p"}}], "cursor": {}}
        )
        .await,
        Some(115)
    );
    // So is $graphLookup, which reads `from` the same way.
    assert_eq!(
        common::code_of(
            &db,
            doc! {"aggregate": "orders", "pipeline": [{"$graphLookup": {"from": "paid", "startWith": "$_id", "connectFromField": "_id", "connectToField": "_id", "as": "p"}}], "cursor": {}}
        )
        .await,
        Some(115)
    );
}

#[tokio::test]
async fn views_live_in_branch_state_and_can_be_dropped() {
    let (_s, _d, client) = common::standalone().await;
    let admin = client.database("admin");
    let db = client.database("t");
    db.collection::<Document>("c")
        .insert_many([doc! {"_id": 1, "k": "A"}, doc! {"_id": 2, "k": "a"}])
        .await
        .expect("insert");
    // A view with a collation: its reads use it, another is refused.
    db.run_command(doc! {"create": "ci", "viewOn": "c", "pipeline": [], "collation": {"locale": "en", "strength": 2}})
        .await
        .expect("create view");
    assert_eq!(
        find(&db, "ci", doc! {"k": "a"}, doc! {"_id": 1})
            .await
            .len(),
        2
    );
    assert_eq!(
        common::code_of(
            &db,
            doc! {"find": "ci", "filter": {"k": "a"}, "collation": {"locale": "fr"}}
        )
        .await,
        Some(167)
    );
    let head = admin
        .run_command(doc! {"argonLogInfo": "main"})
        .await
        .expect("log info")
        .get_document("branch")
        .and_then(|b| b.get_i64("headSeq"))
        .expect("headSeq");
    admin
        .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
        .await
        .expect("branch");
    db.run_command(doc! {"drop": "ci"})
        .await
        .expect("drop view");
    let names = db.list_collection_names().await.expect("names");
    assert_eq!(names, vec!["c".to_string()]);
    // The branch forked before the drop, and the past point, still have it.
    let dev = client.database("t~dev");
    assert_eq!(
        find(&dev, "ci", doc! {"k": "A"}, doc! {"_id": 1})
            .await
            .len(),
        2
    );
    let past = client.database(&format!("t~main@{head}"));
    assert_eq!(
        find(&past, "ci", doc! {"k": "A"}, doc! {"_id": 1})
            .await
            .len(),
        2
    );
    // Re-created under the same name as a collection.
    db.collection::<Document>("ci")
        .insert_one(doc! {"_id": 1})
        .await
        .expect("a collection now");
}

#[tokio::test]
async fn hostile_view_definitions_fail_alone() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("h");
    db.run_command(doc! {"create": "base"})
        .await
        .expect("create");
    db.run_command(doc! {"create": "v0", "viewOn": "base"})
        .await
        .expect("view");
    // Views on views up to MongoDB's depth; one more is refused.
    for i in 1..=20 {
        db.run_command(doc! {"create": format!("v{i}"), "viewOn": format!("v{}", i - 1)})
            .await
            .expect("view on view");
    }
    assert_eq!(
        common::code_of(&db, doc! {"find": "v20"}).await,
        None,
        "the deepest reads"
    );
    assert_eq!(
        common::code_of(&db, doc! {"create": "v21", "viewOn": "v20"}).await,
        Some(149)
    );
    let long_pipeline: Vec<Bson> = (0..1001)
        .map(|_| Bson::Document(doc! {"$match": {}}))
        .collect();
    for (cmd, code) in [
        // A cycle through views.
        (doc! {"create": "self", "viewOn": "self"}, 5),
        (doc! {"create": "v5", "viewOn": "base"}, 48),
        (doc! {"create": "x", "viewOn": 5}, 14),
        (doc! {"create": "x", "viewOn": ""}, 73),
        (doc! {"create": "x", "viewOn": "base", "pipeline": 1}, 14),
        (
            doc! {"create": "x", "viewOn": "base", "pipeline": [{"$merge": "base"}]},
            167,
        ),
        (
            doc! {"create": "x", "viewOn": "base", "pipeline": [{"$bogus": 1}]},
            40324,
        ),
        (
            doc! {"create": "x", "viewOn": "base", "pipeline": long_pipeline},
            7749501,
        ),
        (doc! {"create": "x", "viewOn": "base", "capped": true}, 72),
        (
            doc! {"create": "x", "viewOn": "base", "collation": {"locale": "zz"}},
            2,
        ),
    ] {
        let shown = cmd.to_string();
        let shown = &shown[..shown.len().min(120)];
        assert_eq!(common::code_of(&db, cmd).await, Some(code), "{shown}");
    }
    db.run_command(doc! {"ping": 1})
        .await
        .expect("the server still answers");
}
