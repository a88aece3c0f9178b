//! `$convert` between BinData and strings through the Rust driver against
//! the real binary: every `format` both ways, `to: {type, subtype}` making
//! BinData of that subtype (the subtype the driver reads back), `$toUUID`
//! and `$toString`, `onError`/`onNull`, and mongod's codes for a bad
//! `format`, a bad subtype, a missing format and mongod 8.1's `byteOrder`.

use super::{aggregate, common};

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};

fn bin(subtype: BinarySubtype, bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype,
        bytes: bytes.to_vec(),
    })
}

const UUID_TEXT: &str = "0e3b9063-8abd-4eb3-9f9f-f4c59fd30a60";

#[tokio::test]
async fn binary_data_converts_to_and_from_strings_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("exprconvert");
    let coll = db.collection::<Document>("blobs");
    let uuid = bson::Uuid::parse_str(UUID_TEXT).expect("uuid");
    coll.insert_many(vec![
        doc! {"_id": 1, "b": bin(BinarySubtype::Generic, b"hello"), "s": "aGVsbG8=", "f": "base64"},
        doc! {"_id": 2, "b": uuid, "s": UUID_TEXT, "f": "uuid"},
        doc! {"_id": 3, "b": bin(BinarySubtype::Generic, b"\xe2\x82"), "s": "not base64!", "f": "base64"},
    ])
    .await
    .expect("insert");

    let out = aggregate(
        &db,
        "blobs",
        vec![
            doc! {"$sort": {"_id": 1}},
            doc! {"$project": {
                "_id": 0,
                "base64": {"$convert": {"input": "$b", "to": "string", "format": "base64"}},
                "base64url": {"$convert": {"input": "$b", "to": "string", "format": "base64url"}},
                "hex": {"$convert": {"input": "$b", "to": "string", "format": "hex"}},
                "utf8": {"$convert": {"input": "$b", "to": "string", "format": "utf8", "onError": "no utf8"}},
                "auto": {"$convert": {"input": "$b", "to": "string", "format": "auto"}},
                "shown": {"$toString": "$b"},
                "asUuid": {"$toUUID": {"$cond": [{"$eq": ["$f", "uuid"]}, "$s", null]}},
                // The format from the document: subtype 4 for a UUID.
                "read": {"$convert": {
                    "input": "$s",
                    "to": {"type": "binData", "subtype": {"$cond": [{"$eq": ["$f", "uuid"]}, 4, 0]}},
                    "format": "$f",
                    "onError": "unreadable",
                }},
                "custom": {"$convert": {"input": "$s", "to": {"type": 5, "subtype": 128}, "format": "utf8"}},
                "missing": {"$convert": {"input": "$nothing", "to": "binData", "format": "hex", "onNull": "none"}},
            }},
        ],
    )
    .await;
    assert_eq!(
        out[0],
        doc! {
            "base64": "aGVsbG8=",
            "base64url": "aGVsbG8",
            "hex": "68656C6C6F",
            "utf8": "hello",
            "auto": "aGVsbG8=",
            "shown": "aGVsbG8=",
            "asUuid": null,
            "read": bin(BinarySubtype::Generic, b"hello"),
            "custom": bin(BinarySubtype::UserDefined(128), b"aGVsbG8="),
            "missing": "none",
        }
    );
    assert_eq!(out[1].get_str("auto").ok(), Some(UUID_TEXT));
    assert_eq!(out[1].get_str("shown").ok(), Some(UUID_TEXT));
    assert_eq!(
        out[1].get_str("hex").ok(),
        Some("0E3B90638ABD4EB39F9FF4C59FD30A60")
    );
    // The driver reads a BinData of subtype 4 back.
    assert_eq!(out[1].get("read"), Some(&Bson::from(uuid)));
    assert_eq!(out[1].get("asUuid"), Some(&Bson::from(uuid)));
    assert_eq!(out[2].get_str("utf8").ok(), Some("no utf8"));
    assert_eq!(out[2].get_str("read").ok(), Some("unreadable"));

    // A string read as a UUID in a find's $expr.
    let found: Vec<Document> = {
        use futures::TryStreamExt;
        coll.find(doc! {"$expr": {"$eq": ["$b", {"$convert": {
            "input": "$s",
            "to": {"type": "binData", "subtype": 4},
            "format": "uuid",
            "onError": null,
        }}]}})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents")
    };
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_i32("_id").ok(), Some(2));

    let project =
        |expr: Document| vec![doc! {"$match": {"_id": 1}}, doc! {"$project": {"x": expr}}];
    for (expr, code) in [
        // Invalid input, without onError: ConversionFailure.
        (
            doc! {"$convert": {"input": "abc", "to": "binData", "format": "hex"}},
            241,
        ),
        (
            doc! {"$convert": {"input": "ab*d", "to": "binData", "format": "base64"}},
            241,
        ),
        (
            doc! {"$convert": {"input": "$b", "to": "string", "format": "uuid"}},
            241,
        ),
        (doc! {"$toUUID": "$s"}, 241),
        // The uuid format is the UUID subtype's only.
        (
            doc! {"$convert": {"input": UUID_TEXT, "to": "binData", "format": "uuid"}},
            241,
        ),
        (
            doc! {"$convert": {"input": "$b", "to": {"type": "binData", "subtype": 4}}},
            241,
        ),
        // Arguments onError does not hide.
        (
            doc! {"$convert": {"input": "$b", "to": "string", "onError": 0}},
            4341115,
        ),
        (
            doc! {"$convert": {"input": "$s", "to": "binData", "onError": 0}},
            4341115,
        ),
        (
            doc! {"$convert": {"input": "$b", "to": "string", "format": 1, "onError": 0}},
            4341114,
        ),
        (
            doc! {"$convert": {"input": "$b", "to": "string", "format": "b64", "onError": 0}},
            4341125,
        ),
        (
            doc! {"$convert": {"input": "$s", "to": {"type": "binData", "subtype": 1.5}, "format": "base64", "onError": 0}},
            4341106,
        ),
        (
            doc! {"$convert": {"input": "$s", "to": {"type": "binData", "subtype": 300}, "format": "base64", "onError": 0}},
            4341107,
        ),
        (
            doc! {"$convert": {"input": "$s", "to": {"type": "binData", "subtype": "4"}, "format": "base64", "onError": 0}},
            4341108,
        ),
        (
            doc! {"$convert": {"input": 1, "to": {"subtype": 0}, "onError": 0}},
            9,
        ),
        // Numbers to and from BinData are mongod 8.1's.
        (
            doc! {"$convert": {"input": 1, "to": "binData", "byteOrder": "big"}},
            9,
        ),
    ] {
        assert_eq!(
            common::aggregate_code(&db, "blobs", project(expr.clone())).await,
            Some(code),
            "{expr}"
        );
    }
}

#[tokio::test]
async fn a_huge_binary_string_is_refused_not_built() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("exprconvert");
    let coll = db.collection::<Document>("huge");
    // 9 MB: its hex (18 MB) is past what an expression may build.
    coll.insert_one(doc! {"_id": 1, "b": bin(BinarySubtype::Generic, &vec![7; 9 * 1024 * 1024])})
        .await
        .expect("insert");
    let hex = vec![
        doc! {"$project": {"n": {"$strLenBytes": {"$convert": {"input": "$b", "to": "string", "format": "hex", "onError": 0}}}}},
    ];
    assert_eq!(common::aggregate_code(&db, "huge", hex).await, Some(146));
    // Its base64 (12 MB) is built, read back and measured.
    let round_trip = vec![doc! {"$project": {"same": {"$eq": ["$b", {"$convert": {
        "input": {"$convert": {"input": "$b", "to": "string", "format": "base64"}},
        "to": "binData",
        "format": "base64",
    }}]}}}];
    let out = aggregate(&db, "huge", round_trip).await;
    assert_eq!(out[0].get_bool("same").ok(), Some(true));
}
