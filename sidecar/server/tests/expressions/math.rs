//! The math and conversion expression operators (`$round`, `$pow`, `$sqrt`,
//! `$bitAnd`, `$convert`, `$toInt`, `$toString`, `$bsonSize`, ...) through
//! the Rust driver against the real binary: `aggregate` projections, a
//! `find` with `$expr`, `onError` replacing a failed conversion, and
//! mongod's codes for a domain error and a failed conversion; the exact
//! arithmetic (`$add`, `$subtract`, `$multiply`, `$divide`) answering
//! mongod's BSON types.

use super::{aggregate, common};

use bson::{Bson, Document, doc};
use futures::TryStreamExt;

#[tokio::test]
async fn math_and_conversion_operators_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("exprmath");
    let coll = db.collection::<Document>("readings");
    coll.insert_many(vec![
        doc! {"_id": 1, "v": 19.25, "n": 10, "s": "42", "bits": 12},
        doc! {"_id": 2, "v": -45.39, "n": 3, "s": "x", "bits": 10},
        doc! {"_id": 3, "v": 2.5, "n": -4, "s": "7", "bits": 6i64},
    ])
    .await
    .expect("insert");

    let out = aggregate(
        &db,
        "readings",
        vec![
            doc! {"$sort": {"_id": 1}},
            doc! {"$project": {
                "rounded": {"$round": ["$v", 1]},
                "truncated": {"$trunc": "$v"},
                "squared": {"$pow": ["$n", 2]},
                "root": {"$sqrt": {"$abs": "$n"}},
                "masked": {"$bitAnd": ["$bits", 7]},
                "parsed": {"$convert": {"input": "$s", "to": "int", "onError": -1}},
                "text": {"$toString": "$v"},
                "size": {"$bsonSize": "$$ROOT"},
                "isNumber": {"$isNumber": "$s"},
            }},
        ],
    )
    .await;
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].get("rounded"), Some(&Bson::Double(19.2)));
    assert_eq!(out[1].get("rounded"), Some(&Bson::Double(-45.4)));
    assert_eq!(out[2].get("rounded"), Some(&Bson::Double(2.5)));
    assert_eq!(out[1].get("truncated"), Some(&Bson::Double(-45.0)));
    assert_eq!(out[0].get("squared"), Some(&Bson::Int32(100)));
    assert_eq!(out[2].get("squared"), Some(&Bson::Int32(16)));
    assert_eq!(out[2].get("root"), Some(&Bson::Double(2.0)));
    assert_eq!(out[0].get("masked"), Some(&Bson::Int32(4)));
    assert_eq!(out[2].get("masked"), Some(&Bson::Int64(6)));
    assert_eq!(out[0].get("parsed"), Some(&Bson::Int32(42)));
    assert_eq!(out[1].get("parsed"), Some(&Bson::Int32(-1)));
    assert_eq!(out[0].get("text"), Some(&Bson::String("19.25".into())));
    assert!(matches!(out[0].get("size"), Some(Bson::Int32(n)) if *n > 40));
    assert_eq!(out[0].get("isNumber"), Some(&Bson::Boolean(false)));

    // find with $expr: the readings whose parsed string is over 10.
    let found: Vec<Document> = coll
        .find(doc! {"$expr": {"$gt": [{"$toInt": {"$ifNull": [{"$convert": {"input": "$s", "to": "int", "onError": null}}, 0]}}, 10]}})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_i32("_id").expect("_id"), 1);

    // A failed conversion with no onError: ConversionFailure (241).
    let e = coll
        .aggregate(vec![doc! {"$project": {"x": {"$toInt": "$s"}}}])
        .await
        .expect_err("\"x\" is not a number");
    assert_eq!(common::code(&e), Some(241));

    // A domain error: $sqrt of a negative number is mongod's 28714.
    let e = coll
        .aggregate(vec![doc! {"$project": {"x": {"$sqrt": "$n"}}}])
        .await
        .expect_err("sqrt of -4");
    assert_eq!(common::code(&e), Some(28714));

    // A malformed $round is refused when parsed (28667).
    let e = coll
        .aggregate(vec![doc! {"$project": {"x": {"$round": [1, 2, 3]}}}])
        .await
        .expect_err("three arguments");
    assert_eq!(common::code(&e), Some(28667));
}

#[tokio::test]
async fn bit_test_query_operators_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
    let coll = client.database("exprmath").collection::<Document>("flags");
    coll.insert_many(vec![
        doc! {"_id": 1, "a": 54},
        doc! {"_id": 2, "a": 20},
        doc! {"_id": 3, "a": -5i64},
        doc! {"_id": 4, "a": "x"},
    ])
    .await
    .expect("insert");
    let ids = |docs: Vec<Document>| -> Vec<i32> {
        docs.iter()
            .map(|d| d.get_i32("_id").expect("_id"))
            .collect()
    };
    let find = |filter: Document| {
        let coll = coll.clone();
        async move {
            coll.find(filter)
                .sort(doc! {"_id": 1})
                .await
                .expect("find")
                .try_collect::<Vec<Document>>()
                .await
                .expect("documents")
        }
    };
    // 54 = 0b110110, 20 = 0b10100, -5 = ...11111011.
    assert_eq!(
        ids(find(doc! {"a": {"$bitsAllSet": [1, 5]}}).await),
        vec![1, 3]
    );
    assert_eq!(ids(find(doc! {"a": {"$bitsAllSet": 20}}).await), vec![1, 2]);
    assert_eq!(ids(find(doc! {"a": {"$bitsAnySet": [100]}}).await), vec![3]);
    assert_eq!(
        ids(find(doc! {"a": {"$bitsAllClear": [0, 1]}}).await),
        vec![2]
    );
    assert_eq!(ids(find(doc! {"a": {"$bitsAnyClear": [2]}}).await), vec![3]);
    let e = coll
        .find(doc! {"a": {"$bitsAllSet": -1}})
        .await
        .expect_err("a negative bitmask");
    assert_eq!(common::code(&e), Some(9));
}

#[tokio::test]
async fn exact_arithmetic_answers_mongods_types_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("exprmath");
    let coll = db.collection::<Document>("ledger");
    let dec = |s: &str| Bson::Decimal128(s.parse().expect("a decimal"));
    let two53 = 1i64 << 53;
    coll.insert_many(vec![
        doc! {
            "_id": 1, "i": 2_147_483_647, "l": two53, "big": i64::MAX, "d": 0.5,
            "a": dec("0.1"), "b": dec("0.2"), "at": bson::DateTime::from_millis(1_000),
            "s": "Café au lait",
        },
        doc! {"_id": 2, "i": 1, "l": 1i64, "big": 1i64, "d": 2.0, "a": dec("1"), "b": dec("3"),
        "at": bson::DateTime::from_millis(0), "s": "x"},
    ])
    .await
    .expect("insert");

    let out = aggregate(
        &db,
        "ledger",
        vec![
            doc! {"$sort": {"_id": 1}},
            doc! {"$project": {
                "intSum": {"$add": ["$i", 0]},
                "intOverflow": {"$add": ["$i", 1]},
                "longExact": {"$add": ["$l", 1i64]},
                "longOverflow": {"$add": ["$big", 1]},
                "mixed": {"$add": ["$i", "$d"]},
                "decimalSum": {"$add": ["$a", "$b"]},
                "decimalAndDouble": {"$add": ["$a", "$d"]},
                "product": {"$multiply": ["$l", 3]},
                "difference": {"$subtract": ["$l", 1]},
                "quotient": {"$divide": ["$a", "$b"]},
                "later": {"$add": ["$at", 1.5]},
                "elapsed": {"$subtract": ["$at", {"$literal": bson::DateTime::from_millis(0)}]},
                "upper": {"$toUpper": "$s"},
                "lower": {"$toLower": "$s"},
            }},
        ],
    )
    .await;
    assert_eq!(out.len(), 2);
    let first = &out[0];
    assert_eq!(first.get("intSum"), Some(&Bson::Int32(2_147_483_647)));
    assert_eq!(first.get("intOverflow"), Some(&Bson::Int64(2_147_483_648)));
    assert_eq!(first.get("longExact"), Some(&Bson::Int64(two53 + 1)));
    assert_eq!(
        first.get("longOverflow"),
        Some(&Bson::Double(9_223_372_036_854_775_808.0))
    );
    assert_eq!(first.get("mixed"), Some(&Bson::Double(2_147_483_647.5)));
    assert_eq!(first.get("decimalSum"), Some(&dec("0.3")));
    assert_eq!(
        first.get("decimalAndDouble"),
        Some(&dec("0.600000000000000"))
    );
    assert_eq!(first.get("product"), Some(&Bson::Int64(3 * two53)));
    assert_eq!(first.get("difference"), Some(&Bson::Int64(two53 - 1)));
    assert_eq!(first.get("quotient"), Some(&dec("0.5")));
    assert_eq!(
        first.get("later"),
        Some(&Bson::DateTime(bson::DateTime::from_millis(1_002)))
    );
    assert_eq!(first.get("elapsed"), Some(&Bson::Int64(1_000)));
    assert_eq!(
        first.get("upper"),
        Some(&Bson::String("CAFé AU LAIT".into()))
    );
    assert_eq!(
        first.get("lower"),
        Some(&Bson::String("café au lait".into()))
    );
    let second = &out[1];
    assert_eq!(second.get("intSum"), Some(&Bson::Int32(1)));
    assert_eq!(second.get("longExact"), Some(&Bson::Int64(2)));
    assert_eq!(
        second.get("quotient"),
        Some(&dec("0.3333333333333333333333333333333333"))
    );

    // find with $expr: exact long arithmetic tells 2^53 + 1 from 2^53.
    let found: Vec<Document> = coll
        .find(doc! {"$expr": {"$eq": [{"$add": ["$l", 1i64]}, two53 + 1]}})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_i32("_id").expect("_id"), 1);

    // Errors keep mongod's codes: a decimal zero divisor, two dates.
    let e = coll
        .aggregate(vec![
            doc! {"$project": {"x": {"$divide": ["$a", dec("0")]}}},
        ])
        .await
        .expect_err("a zero divisor");
    assert_eq!(common::code(&e), Some(16608));
    let e = coll
        .aggregate(vec![doc! {"$project": {"x": {"$add": ["$at", "$at"]}}}])
        .await
        .expect_err("two dates");
    assert_eq!(common::code(&e), Some(16612));
    let e = coll
        .aggregate(vec![doc! {"$project": {"x": {"$subtract": ["$i"]}}}])
        .await
        .expect_err("one argument");
    assert_eq!(common::code(&e), Some(16020));
}
