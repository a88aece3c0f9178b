//! `$let`, `$map`, `$filter`, `$reduce`, `$switch`, with a command's own
//! `let` variables beside them.

use bson::{Bson, Document, doc};
use futures::TryStreamExt;

use super::{aggregate, common};

#[tokio::test]
async fn binders_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("expr");
    let orders = db.collection::<Document>("orders");
    orders
        .insert_many(vec![
            doc! {"_id": 1, "items": [{"sku": "a", "qty": 2, "price": 10}, {"sku": "b", "qty": 1, "price": 240}]},
            doc! {"_id": 2, "items": [{"sku": "c", "qty": 5, "price": 110}]},
            doc! {"_id": 3, "items": null},
        ])
        .await
        .expect("insert");
    let out = aggregate(
        &db,
        "orders",
        vec![
            doc! {"$project": {
                "total": {"$reduce": {"input": {"$map": {"input": "$items", "as": "i",
                    "in": {"$multiply": ["$$i.qty", "$$i.price"]}}},
                    "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}},
                "dear": {"$filter": {"input": "$items", "cond": {"$gte": ["$$this.price", 100]}}},
                "size": {"$switch": {"branches": [
                    {"case": {"$not": ["$items"]}, "then": "none"},
                    {"case": {"$gt": [{"$size": "$items"}, 1]}, "then": "many"}],
                    "default": "one"}},
                "label": {"$let": {"vars": {"n": {"$ifNull": [{"$size": {"$ifNull": ["$items", []]}}, 0]}},
                    "in": {"$concat": ["n=", {"$toString": "$$n"}]}}},
            }},
            doc! {"$sort": {"_id": 1}},
        ],
    )
    .await;
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].get("total"), Some(&Bson::Int32(260)));
    assert_eq!(out[1].get("total"), Some(&Bson::Int32(550)));
    assert_eq!(out[2].get("total"), Some(&Bson::Null));
    assert_eq!(
        out[0].get_array("dear").expect("dear").len(),
        1,
        "{:?}",
        out[0]
    );
    assert_eq!(out[2].get("dear"), Some(&Bson::Null));
    let sizes: Vec<&str> = out
        .iter()
        .map(|d| d.get_str("size").expect("size"))
        .collect();
    assert_eq!(sizes, ["many", "one", "none"]);
    assert_eq!(out[1].get_str("label").expect("label"), "n=1");

    // `find` with `$expr` and a command `let` the bound `as` hides.
    let found: Vec<Document> = orders
        .find(doc! {"$expr": {"$gt": [
        {"$size": {"$filter": {"input": {"$ifNull": ["$items", []]}, "as": "min",
            "cond": {"$gte": ["$$min.price", "$$min_price"]}}}}, 0]}})
        .let_vars(doc! {"min_price": 200, "min": 0})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents");
    let ids: Vec<i32> = found
        .iter()
        .map(|d| d.get_i32("_id").expect("_id"))
        .collect();
    assert_eq!(ids, [1]);

    // Errors reach the client with MongoDB's codes.
    for (expr, code) in [
        (
            doc! {"$map": {"input": "$items", "as": "Bad", "in": 1}},
            16867,
        ),
        (
            doc! {"$switch": {"branches": [{"case": false, "then": 1}]}},
            40066,
        ),
        (
            doc! {"$reduce": {"input": {"$range": [0, 10_000]}, "initialValue": [], "in": ["$$value"]}},
            15,
        ),
    ] {
        let pipeline = vec![doc! {"$project": {"x": expr.clone()}}];
        let got = common::aggregate_code(&db, "orders", pipeline).await;
        assert_eq!(got, Some(code), "{expr}");
    }
    // The server is still there.
    assert_eq!(orders.count_documents(doc! {}).await.expect("count"), 3);
}
