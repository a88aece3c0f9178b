//! The date expression operators through the Rust driver against the real
//! binary: parts in an Olson zone, `$dateToString`/`$dateFromString` round
//! trips, calendar arithmetic across New York's DST change, `$dateTrunc`
//! buckets in a `$group`, a `find` with `$expr`, and mongod's codes for an
//! unknown zone and an overflowing `$dateAdd`.

use super::{aggregate, common};

use bson::{Bson, DateTime, Document, doc};
use futures::TryStreamExt;
use mongodb::Database;

fn at(s: &str) -> DateTime {
    DateTime::parse_rfc3339_str(s).expect("a date")
}

async fn seed(db: &Database) {
    db.collection::<Document>("events")
        .insert_many(vec![
            doc! {"_id": 1, "at": at("2021-03-13T12:00:00Z"), "s": "2021-03-13 07:00"},
            doc! {"_id": 2, "at": at("2021-03-14T12:00:00Z"), "s": "2021-03-14 08:00"},
            doc! {"_id": 3, "at": at("2021-03-20T23:30:00Z"), "s": "not a date"},
            doc! {"_id": 4, "at": Bson::Null, "s": Bson::Null},
        ])
        .await
        .expect("insert");
}

#[tokio::test]
async fn date_operators_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("dates");
    seed(&db).await;
    let ny = "America/New_York";
    let out = aggregate(
        &db,
        "events",
        vec![
            doc! {"$sort": {"_id": 1}},
            doc! {"$project": {
                "hour": {"$hour": {"date": "$at", "timezone": ny}},
                "iso": {"$isoWeekYear": "$at"},
                "text": {"$dateToString": {"date": "$at", "format": "%Y-%m-%d %H:%M %z", "timezone": ny, "onNull": "none"}},
                "parsed": {"$dateFromString": {"dateString": "$s", "timezone": ny, "onError": "bad", "onNull": "null"}},
                "next": {"$dateAdd": {"startDate": "$at", "unit": "day", "amount": 1, "timezone": ny}},
                "days": {"$dateDiff": {"startDate": at("2021-03-01T00:00:00Z"), "endDate": "$at", "unit": "day"}},
                "parts": {"$dateToParts": {"date": "$at", "timezone": ny}},
            }},
        ],
    )
    .await;
    assert_eq!(out.len(), 4);
    // Standard time before March 14th, daylight time after.
    assert_eq!(out[0].get_i32("hour").unwrap(), 7);
    assert_eq!(out[1].get_i32("hour").unwrap(), 8);
    assert_eq!(out[0].get_i64("iso").unwrap(), 2021);
    assert_eq!(out[0].get_str("text").unwrap(), "2021-03-13 07:00 -0500");
    assert_eq!(out[1].get_str("text").unwrap(), "2021-03-14 08:00 -0400");
    assert_eq!(out[3].get_str("text").unwrap(), "none");
    assert_eq!(
        out[0].get_datetime("parsed").unwrap(),
        &at("2021-03-13T12:00:00Z")
    );
    assert_eq!(
        out[1].get_datetime("parsed").unwrap(),
        &at("2021-03-14T12:00:00Z")
    );
    assert_eq!(out[2].get_str("parsed").unwrap(), "bad");
    assert_eq!(out[3].get_str("parsed").unwrap(), "null");
    // A day across the change keeps New York's wall-clock hour.
    assert_eq!(
        out[0].get_datetime("next").unwrap(),
        &at("2021-03-14T11:00:00Z")
    );
    assert_eq!(out[2].get_i64("days").unwrap(), 19);
    assert_eq!(out[3].get("days"), Some(&Bson::Null));
    assert_eq!(
        out[2].get_document("parts").unwrap(),
        &doc! {"year": 2021, "month": 3, "day": 20, "hour": 19, "minute": 30, "second": 0, "millisecond": 0}
    );

    // Weekly buckets (weeks starting Monday) in a $group.
    let weeks = aggregate(
        &db,
        "events",
        vec![
            doc! {"$match": {"at": {"$type": "date"}}},
            doc! {"$group": {
                "_id": {"$dateTrunc": {"date": "$at", "unit": "week", "startOfWeek": "monday"}},
                "n": {"$sum": 1},
            }},
            doc! {"$sort": {"_id": 1}},
        ],
    )
    .await;
    assert_eq!(
        weeks,
        vec![
            doc! {"_id": at("2021-03-08T00:00:00Z"), "n": 2},
            doc! {"_id": at("2021-03-15T00:00:00Z"), "n": 1},
        ]
    );

    // find with $expr: the events on a Sunday in New York.
    let sundays: Vec<Document> = db
        .collection::<Document>("events")
        .find(doc! {"$expr": {"$eq": [{"$dayOfWeek": {"date": "$at", "timezone": ny}}, 1]}})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents");
    let ids: Vec<i32> = sundays.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    assert_eq!(ids, vec![2]);

    // mongod's codes: an unknown zone, an overflowing $dateAdd, a malformed
    // spec refused before any document is read.
    for (expr, code) in [
        (
            doc! {"$year": {"date": "$at", "timezone": "Mars/Olympus"}},
            40485,
        ),
        (
            doc! {"$dateAdd": {"startDate": "$at", "unit": "millisecond", "amount": i64::MAX}},
            5166406,
        ),
        (doc! {"$dateTrunc": {"date": "$at"}}, 5439010),
    ] {
        let pipeline = vec![
            doc! {"$match": {"_id": 1}},
            doc! {"$project": {"v": expr.clone()}},
        ];
        let code_got = common::aggregate_code(&db, "events", pipeline).await;
        assert_eq!(code_got, Some(code), "{expr}");
    }
}
