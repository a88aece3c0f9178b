//! The string, array and set expression operators through the Rust driver
//! against the real binary: `aggregate` with `$project`, `find` with
//! `$expr`, and mongod's code for a bad argument in the reply.

use super::{aggregate, common};

use bson::{Bson, Document, doc};
use futures::TryStreamExt;

#[tokio::test]
async fn string_array_and_set_operators_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("exprstr");
    let coll = db.collection::<Document>("items");
    coll.insert_many(vec![
        doc! {"_id": 1, "name": "  café latte ", "tags": ["b", "a", "b"], "sizes": [3, 1, 2], "codes": "A1-B22-C3"},
        doc! {"_id": 2, "name": "Tea", "tags": ["a"], "sizes": [1.0, 2i64], "codes": "none"},
    ])
    .await
    .expect("insert");

    let out = aggregate(
        &db,
        "items",
        vec![
            doc! {"$sort": {"_id": 1}},
            doc! {"$project": {
                "_id": 0,
                "trimmed": {"$trim": {"input": "$name"}},
                "at": {"$indexOfCP": [{"$trim": {"input": "$name"}}, "latte"]},
                "bytes": {"$strLenBytes": "$name"},
                "head": {"$substrBytes": [{"$ltrim": {"input": "$name"}}, 0, 3]},
                "swapped": {"$replaceAll": {"input": "$codes", "find": "-", "replacement": "/"}},
                "digits": {"$regexFindAll": {"input": "$codes", "regex": "[0-9]+"}},
                "letters": {"$regexFind": {"input": "$codes", "regex": "([a-z])([0-9])", "options": "i"}},
                "set": {"$setUnion": ["$tags", ["c"]]},
                "sorted": {"$sortArray": {"input": "$sizes", "sortBy": -1}},
                "pairs": {"$zip": {"inputs": ["$tags", "$sizes"]}},
                "last": {"$slice": ["$sizes", -1]},
                "kv": {"$arrayToObject": [[["k", "$codes"]]]},
                "same": {"$setEquals": ["$sizes", [1, 2, 3]]},
            }},
        ],
    )
    .await;
    assert_eq!(
        out[0],
        doc! {
            "trimmed": "café latte",
            "at": 5,
            "bytes": 14,
            "head": "caf",
            "swapped": "A1/B22/C3",
            "digits": [
                {"match": "1", "idx": 1, "captures": []},
                {"match": "22", "idx": 4, "captures": []},
                {"match": "3", "idx": 8, "captures": []},
            ],
            "letters": {"match": "A1", "idx": 0, "captures": ["A", "1"]},
            "set": ["a", "b", "c"],
            "sorted": [3, 2, 1],
            "pairs": [["b", 3], ["a", 1], ["b", 2]],
            "last": [2],
            "kv": {"k": "A1-B22-C3"},
            "same": true,
        }
    );
    assert_eq!(out[1].get("digits"), Some(&Bson::Array(vec![])));
    assert_eq!(out[1].get("letters"), Some(&Bson::Null));
    assert_eq!(out[1].get("same"), Some(&Bson::Boolean(false)));

    // `find` with `$expr`: the documents whose name matches and whose tags
    // hold "b".
    let found: Vec<Document> = coll
        .find(doc! {"$expr": {"$and": [
            {"$regexMatch": {"input": "$name", "regex": "LATTE", "options": "i"}},
            {"$setIsSubset": [["b"], "$tags"]},
        ]}})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_i32("_id").expect("an _id"), 1);

    // mongod's codes in the reply: a byte range splitting "é" (28657), a
    // bad argument found at parse time (34465), a wrong type at evaluation
    // (17043).
    for (expr, code) in [
        (doc! {"$substrBytes": ["$name", 0, 6]}, 28657),
        (doc! {"$zip": {"inputs": []}}, 34465),
        (doc! {"$setUnion": ["$tags", "$name"]}, 17043),
    ] {
        let pipeline = vec![doc! {"$project": {"x": expr.clone()}}];
        let got = common::aggregate_code(&db, coll.name(), pipeline).await;
        assert_eq!(got, Some(code), "{expr}");
    }
}
