//! What a collection's rules enforce, against the real binary through the
//! Rust driver (pymongo and mongoose for validation): document validation
//! (`validator`, `validationLevel`, `validationAction`,
//! `bypassDocumentValidation`, `collMod`), TTL indexes, capped collections
//! and tailable `awaitData` cursors on both stores, and server-side
//! JavaScript refused by name with MongoDB's codes.

use crate::common;

use argon_testkit::FerretDb;
use argon_testkit::clients::{run_node, run_python};
use bson::{Bson, Document, doc};
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use mongodb::{Client, Database};

/// The command's error (or its first write error): code and the whole
/// error document as the server sent it.
async fn error_of(db: &Database, cmd: Document) -> Option<(i32, Document)> {
    match db.run_command(cmd).await {
        Ok(reply) => reply
            .get_array("writeErrors")
            .ok()
            .and_then(|e| e.first())
            .and_then(Bson::as_document)
            .map(|e| (e.get_i32("code").expect("a code"), e.clone())),
        Err(e) => match &*e.kind {
            mongodb::error::ErrorKind::Command(c) => {
                Some((c.code, doc! {"errmsg": c.message.clone()}))
            }
            other => panic!("not a command error: {other:?}"),
        },
    }
}

async fn code_of(db: &Database, cmd: Document) -> Option<i32> {
    error_of(db, cmd).await.map(|(c, _)| c)
}

// ---- server-side JavaScript -------------------------------------------------------

#[tokio::test]
async fn server_side_javascript_is_refused_by_name() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("js");
    db.collection::<Document>("c")
        .insert_one(doc! {"_id": 1, "a": 1})
        .await
        .unwrap();
    let no_engine = "Cannot run server-side javascript without the javascript engine enabled";
    // `$where`: as a mongod without a script engine, in every command
    // that takes a filter, even where nothing would match.
    for cmd in [
        doc! {"find": "c", "filter": {"$where": "this.a == 1"}},
        doc! {"find": "nothing", "filter": {"$where": "true"}},
        doc! {"count": "c", "query": {"$where": "true"}},
        doc! {"delete": "c", "deletes": [{"q": {"$where": "true"}, "limit": 0}]},
        doc! {"update": "c", "updates": [{"q": {"$where": "true"}, "u": {"$set": {"b": 1}}}]},
        doc! {"aggregate": "c", "pipeline": [{"$match": {"$where": "true"}}], "cursor": {}},
    ] {
        let (code, err) = error_of(&db, cmd.clone())
            .await
            .unwrap_or_else(|| panic!("{cmd} refused"));
        assert_eq!(code, 6108304, "{cmd}");
        assert_eq!(
            err.get_str("errmsg").unwrap(),
            "no globalScriptEngine in $where parsing"
        );
    }
    let function =
        doc! {"$function": {"body": "function(x) { return x; }", "args": ["$a"], "lang": "js"}};
    for cmd in [
        doc! {"aggregate": "c", "pipeline": [{"$project": {"x": function.clone()}}], "cursor": {}},
        doc! {"find": "c", "filter": {"$expr": function.clone()}},
        doc! {"aggregate": "c", "pipeline": [{"$group": {"_id": null, "x": {"$accumulator": {
        "init": "function() { return 0; }", "accumulate": "function(s, v) { return s + v; }",
        "accumulateArgs": ["$a"], "merge": "function(a, b) { return a + b; }", "lang": "js"}}}}], "cursor": {}},
    ] {
        let (code, err) = error_of(&db, cmd.clone())
            .await
            .unwrap_or_else(|| panic!("{cmd} refused"));
        assert_eq!(code, 31264, "{cmd}");
        assert_eq!(err.get_str("errmsg").unwrap(), no_engine);
    }
    let (code, err) = error_of(
        &db,
        doc! {"mapReduce": "c", "map": "function() { emit(this.a, 1); }",
        "reduce": "function(k, v) { return Array.sum(v); }", "out": {"inline": 1}},
    )
    .await
    .expect("refused");
    assert_eq!(code, 31246);
    assert_eq!(err.get_str("errmsg").unwrap(), no_engine);
    // Nothing was written by the refused update.
    let left = db
        .collection::<Document>("c")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left, doc! {"_id": 1, "a": 1});
    assert_eq!(code_of(&db, doc! {"ping": 1}).await, None);
}

// ---- validation -------------------------------------------------------------------

const PYMONGO_SCENARIO: &str = include_str!("scenarios/validation.py");
const MONGOOSE_SCENARIO: &str = include_str!("scenarios/validation.js");

/// pymongo's and mongoose's own helpers meet validation and TTL indexes as
/// on MongoDB (each script asserts and prints OK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_and_mongoose_see_validation_as_on_mongodb() {
    let (s, _d, _client) = common::standalone().await;
    let uri = s.uri();
    let out = tokio::task::spawn_blocking(move || {
        let py = run_python(PYMONGO_SCENARIO, &[&uri, "pyval"])?;
        let node = run_node(
            MONGOOSE_SCENARIO,
            &[("ARGON_URI", &uri), ("ARGON_DB", "nodeval")],
        )?;
        anyhow::Ok((py, node))
    })
    .await
    .expect("the clients run")
    .expect("the scenarios pass");
    assert_eq!(
        out.0.trim().lines().last(),
        Some("OK"),
        "pymongo: {}",
        out.0
    );
    assert_eq!(
        out.1.trim().lines().last(),
        Some("OK"),
        "mongoose: {}",
        out.1
    );
}

/// MongoDB's documented `$jsonSchema` example (schema validation).
fn students_schema() -> Document {
    doc! {"$jsonSchema": {
        "bsonType": "object",
        "title": "Student Object Validation",
        "required": ["address", "major", "name", "year"],
        "properties": {
            "name": {"bsonType": "string", "description": "'name' must be a string and is required"},
            "year": {"bsonType": "int", "minimum": 2017, "maximum": 3017,
                     "description": "'year' must be an integer in [ 2017, 3017 ] and is required"},
            "gpa": {"bsonType": ["double"], "description": "'gpa' must be a double if the field exists"},
        },
    }}
}

async fn all(db: &Database, coll: &str) -> Vec<Document> {
    db.collection::<Document>(coll)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents")
}

/// Every write path refuses an invalid document with 121 and lets it
/// through with `bypassDocumentValidation`; valid writes pass.
async fn every_write_path_is_validated(client: &Client, store: &str) {
    let db = client.database("val");
    db.run_command(
        doc! {"create": "c", "validator": {"qty": {"$gte": 0}, "name": {"$type": "string"}}},
    )
    .await
    .expect("create with a validator");
    let ok = |i: i32| doc! {"_id": i, "qty": i, "name": format!("n{i}")};
    db.collection::<Document>("c")
        .insert_many([ok(1), ok(2), ok(3)])
        .await
        .expect("valid documents");
    let bad_writes: Vec<(&str, Document)> = vec![
        (
            "insert",
            doc! {"insert": "c", "documents": [{"_id": 10, "qty": -1, "name": "x"}]},
        ),
        (
            "update $set",
            doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$set": {"qty": -5}}}]},
        ),
        (
            "replacement",
            doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"qty": 1}}]},
        ),
        (
            "upsert",
            doc! {"update": "c", "updates": [{"q": {"_id": 11}, "u": {"$set": {"qty": -1, "name": "u"}}, "upsert": true}]},
        ),
        (
            "pipeline update",
            doc! {"update": "c", "updates": [{"q": {"_id": 2}, "u": [{"$set": {"name": 7}}]}]},
        ),
        (
            "findAndModify",
            doc! {"findAndModify": "c", "query": {"_id": 3}, "update": {"$unset": {"name": ""}}},
        ),
        (
            "findAndModify upsert",
            doc! {"findAndModify": "c", "query": {"_id": 12}, "update": {"$set": {"qty": -3}}, "upsert": true},
        ),
        (
            "$merge",
            doc! {"aggregate": "c", "pipeline": [{"$match": {"_id": 1}}, {"$set": {"qty": -9}}, {"$merge": {"into": "c"}}], "cursor": {}},
        ),
    ];
    for (what, cmd) in &bad_writes {
        let (code, err) = error_of(&db, cmd.clone())
            .await
            .unwrap_or_else(|| panic!("{store}: {what} was accepted"));
        assert_eq!(code, 121, "{store}: {what}: {err}");
    }
    // `$out` into a collection with a validator.
    db.run_command(doc! {"create": "src"})
        .await
        .expect("create src");
    db.collection::<Document>("src")
        .insert_one(doc! {"_id": 1, "qty": -1})
        .await
        .expect("a source document");
    let out = doc! {"aggregate": "src", "pipeline": [{"$out": "c"}], "cursor": {}};
    assert_eq!(code_of(&db, out.clone()).await, Some(121), "{store}: $out");
    // Client-level bulkWrite.
    let admin = client.database("admin");
    let bulk = doc! {"bulkWrite": 1, "ops": [{"insert": 0, "document": {"_id": 20, "qty": -1, "name": "b"}}], "nsInfo": [{"ns": "val.c"}]};
    let reply = admin
        .run_command(bulk.clone())
        .await
        .expect("bulkWrite answers");
    assert_eq!(
        reply.get_i32("nErrors").expect("the reply has it"),
        1,
        "{store}: {reply}"
    );
    let first = reply
        .get_document("cursor")
        .expect("the reply has it")
        .get_array("firstBatch")
        .expect("the reply has it")[0]
        .as_document()
        .expect("the reply has it")
        .clone();
    assert_eq!(
        first.get_i32("code").expect("the reply has it"),
        121,
        "{store}: bulkWrite {first}"
    );
    assert!(first.get_document("errInfo").is_ok(), "{store}: {first}");
    assert_eq!(
        all(&db, "c").await,
        vec![ok(1), ok(2), ok(3)],
        "{store}: nothing invalid was written"
    );

    // Each with bypassDocumentValidation goes through.
    for (what, cmd) in bad_writes.iter().chain([("$out", out.clone())].iter()) {
        let mut cmd = cmd.clone();
        cmd.insert("bypassDocumentValidation", true);
        assert_eq!(code_of(&db, cmd).await, None, "{store}: {what} with bypass");
    }
    let mut bulk = bulk;
    bulk.insert("bypassDocumentValidation", true);
    let reply = admin.run_command(bulk).await.expect("bulkWrite answers");
    assert_eq!(
        reply.get_i32("nErrors").expect("the reply has it"),
        0,
        "{store}: {reply}"
    );
    let after = all(&db, "c").await;
    assert!(
        after.iter().any(|d| d.get_i32("_id").ok() == Some(20)),
        "{store}: {after:?}"
    );
    assert!(
        after.iter().any(|d| d.get_i32("qty").ok() == Some(-1)),
        "{store}: {after:?}"
    );
    // Unordered inserts: the invalid one fails alone.
    let reply = db
        .run_command(doc! {"insert": "c2", "documents": [{"_id": 1}], "ordered": false})
        .await
        .expect("c2");
    assert_eq!(reply.get_i32("n").expect("the reply has it"), 1);
    db.run_command(doc! {"collMod": "c2", "validator": {"a": {"$exists": true}}})
        .await
        .expect("collMod");
    let reply = db
        .run_command(doc! {"insert": "c2", "documents": [{"_id": 2, "a": 1}, {"_id": 3}, {"_id": 4, "a": 2}], "ordered": false})
        .await
        .expect("insert answers");
    assert_eq!(
        reply.get_i32("n").expect("the reply has it"),
        2,
        "{store}: {reply}"
    );
    let errors = reply.get_array("writeErrors").expect("the reply has it");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0]
            .as_document()
            .expect("the reply has it")
            .get_i32("index")
            .expect("the reply has it"),
        1
    );
}

#[tokio::test]
async fn validators_hold_on_every_write_path_on_both_stores() {
    let (_s, _d, client) = common::standalone().await;
    every_write_path_is_validated(&client, "embedded").await;
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let on_ferretdb = Sidecar::on_store("argon-sidecar-ferretdb", ferretdb.uri(), "rules")
        .await
        .expect("a sidecar on FerretDB starts");
    let client = on_ferretdb.client().await.expect("a client");
    every_write_path_is_validated(&client, "FerretDB").await;
}

#[tokio::test]
async fn error_info_is_shaped_as_mongodb_reports_it() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("val");
    db.run_command(doc! {"create": "students", "validator": students_schema()})
        .await
        .expect("create");
    let err = db
        .collection::<Document>("students")
        .insert_one(
            doc! {"_id": 1, "name": "Alice", "year": 2019i32, "major": "History", "gpa": 3i32},
        )
        .await
        .expect_err("gpa is an int");
    let mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) = &*err.kind
    else {
        panic!("a write error: {err:?}");
    };
    assert_eq!(w.code, 121);
    assert_eq!(w.message, "Document failed validation");
    assert_eq!(
        w.details.clone().expect("errInfo"),
        doc! {
            "failingDocumentId": 1,
            "details": {
                "operatorName": "$jsonSchema",
                "title": "Student Object Validation",
                "schemaRulesNotSatisfied": [
                    {"operatorName": "properties", "propertiesNotSatisfied": [
                        {"propertyName": "gpa", "description": "'gpa' must be a double if the field exists", "details": [
                            {"operatorName": "bsonType", "specifiedAs": {"bsonType": ["double"]}, "reason": "type did not match", "consideredValue": 3, "consideredType": "int"},
                        ]},
                    ]},
                    {"operatorName": "required", "specifiedAs": {"required": ["address", "major", "name", "year"]}, "missingProperties": ["address"]},
                ],
            },
        }
    );
    // A query-operator validator: the clauses not satisfied.
    db.run_command(doc! {"create": "q", "validator": {"$or": [{"phone": {"$type": "string"}}, {"email": {"$regex": "@"}}], "status": {"$in": ["A", "B"]}}})
        .await
        .expect("create q");
    let (code, err) = error_of(
        &db,
        doc! {"insert": "q", "documents": [{"_id": 5, "phone": 1, "status": "C"}]},
    )
    .await
    .expect("refused");
    assert_eq!(code, 121);
    assert_eq!(
        err.get_document("errInfo")
            .unwrap()
            .get_document("details")
            .unwrap(),
        &doc! {"operatorName": "$and", "clausesNotSatisfied": [
            {"index": 0, "details": {"operatorName": "$or", "clausesNotSatisfied": [
                {"index": 0, "details": {"operatorName": "$type", "specifiedAs": {"phone": {"$type": "string"}}, "reason": "type did not match", "consideredValue": 1, "consideredType": "int"}},
                {"index": 1, "details": {"operatorName": "$regex", "specifiedAs": {"email": {"$regex": "@"}}, "reason": "field was missing"}},
            ]}},
            {"index": 1, "details": {"operatorName": "$in", "specifiedAs": {"status": {"$in": ["A", "B"]}}, "reason": "no matching value found in array", "consideredValue": "C"}},
        ]}
    );
    // $jsonSchema is a query operator too.
    db.collection::<Document>("plain")
        .insert_many([doc! {"_id": 1, "a": "x"}, doc! {"_id": 2, "a": 5}])
        .await
        .unwrap();
    let found: Vec<Document> = db
        .collection::<Document>("plain")
        .find(doc! {"$jsonSchema": {"properties": {"a": {"bsonType": "int"}}}})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(found, vec![doc! {"_id": 2, "a": 5}]);
}

#[tokio::test]
async fn levels_and_actions() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("val");
    let c = db.collection::<Document>("c");
    c.insert_many([
        doc! {"_id": 1, "a": 1},
        doc! {"_id": 2, "a": "old and invalid"},
    ])
    .await
    .unwrap();
    db.run_command(
        doc! {"collMod": "c", "validator": {"a": {"$type": "int"}}, "validationLevel": "moderate"},
    )
    .await
    .expect("collMod");
    // Moderate: an invalid document may be updated (and stay invalid),
    // a valid one may not become invalid, inserts are checked.
    c.update_one(doc! {"_id": 2}, doc! {"$set": {"b": 1}})
        .await
        .expect("an invalid document is not checked");
    assert_eq!(
        code_of(
            &db,
            doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$set": {"a": "x"}}}]}
        )
        .await,
        Some(121)
    );
    assert_eq!(
        code_of(
            &db,
            doc! {"insert": "c", "documents": [{"_id": 3, "a": "x"}]}
        )
        .await,
        Some(121)
    );
    // Strict: the invalid document can no longer be updated.
    db.run_command(doc! {"collMod": "c", "validationLevel": "strict"})
        .await
        .unwrap();
    assert_eq!(
        code_of(
            &db,
            doc! {"update": "c", "updates": [{"q": {"_id": 2}, "u": {"$set": {"b": 2}}}]}
        )
        .await,
        Some(121)
    );
    // Warn: accepted (and logged).
    db.run_command(doc! {"collMod": "c", "validationAction": "warn"})
        .await
        .unwrap();
    assert_eq!(
        code_of(
            &db,
            doc! {"insert": "c", "documents": [{"_id": 4, "a": "x"}]}
        )
        .await,
        None
    );
    // Off: nothing is checked.
    db.run_command(doc! {"collMod": "c", "validationAction": "error", "validationLevel": "off"})
        .await
        .unwrap();
    assert_eq!(
        code_of(
            &db,
            doc! {"insert": "c", "documents": [{"_id": 5, "a": "x"}]}
        )
        .await,
        None
    );
    let options = collection_options(&db, "c").await;
    assert_eq!(
        options,
        doc! {"validator": {"a": {"$type": "int"}}, "validationLevel": "off", "validationAction": "error"}
    );
    // Bad values are refused with MongoDB's codes, and nothing changes.
    for (cmd, code) in [
        (doc! {"collMod": "c", "validationLevel": "lax"}, 2),
        (doc! {"collMod": "c", "validationAction": 5}, 14),
        (doc! {"collMod": "c", "validator": "no"}, 14),
        (doc! {"collMod": "c", "validator": {"$bogus": 1}}, 2),
        (doc! {"collMod": "c", "cappedSize": 100}, 72),
        (doc! {"collMod": "c", "nope": 1}, 40415),
        (doc! {"collMod": "missing", "validationLevel": "strict"}, 26),
        (doc! {"create": "d", "validationAction": "explode"}, 2),
    ] {
        assert_eq!(code_of(&db, cmd.clone()).await, Some(code), "{cmd}");
    }
    assert_eq!(collection_options(&db, "c").await, options);
}

async fn collection_options(db: &Database, name: &str) -> Document {
    let reply = db
        .run_command(doc! {"listCollections": 1, "filter": {"name": name}})
        .await
        .expect("listCollections");
    reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a batch")
        .first()
        .and_then(Bson::as_document)
        .and_then(|d| d.get_document("options").ok())
        .cloned()
        .unwrap_or_else(|| panic!("{name} is listed: {reply}"))
}

#[tokio::test]
async fn validators_are_branch_state() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("t");
    let admin = client.database("admin");
    db.run_command(doc! {"create": "c", "validator": {"a": {"$gte": 0}}})
        .await
        .unwrap();
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
    db.run_command(doc! {"collMod": "c", "validator": {"a": {"$gte": 10}}})
        .await
        .unwrap();
    assert_eq!(
        code_of(&db, doc! {"insert": "c", "documents": [{"_id": 1, "a": 5}]}).await,
        Some(121)
    );
    // The branch forked before the collMod has the old rule.
    let dev = client.database("t~dev");
    assert_eq!(
        code_of(
            &dev,
            doc! {"insert": "c", "documents": [{"_id": 1, "a": 5}]}
        )
        .await,
        None
    );
    assert_eq!(
        code_of(
            &dev,
            doc! {"insert": "c", "documents": [{"_id": 2, "a": -1}]}
        )
        .await,
        Some(121)
    );
    // Time travel shows the options as they were.
    let past = client.database(&format!("t~main@{head}"));
    assert_eq!(
        collection_options(&past, "c")
            .await
            .get_document("validator")
            .unwrap(),
        &doc! {"a": {"$gte": 0}}
    );
    assert_eq!(
        collection_options(&db, "c")
            .await
            .get_document("validator")
            .unwrap(),
        &doc! {"a": {"$gte": 10}}
    );
}

#[tokio::test]
async fn coll_mod_hides_and_unhides_an_index() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("t");
    db.run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1"}]})
        .await
        .unwrap();
    let reply = db
        .run_command(doc! {"collMod": "c", "index": {"name": "a_1", "hidden": true}})
        .await
        .unwrap();
    assert!(!reply.get_bool("hidden_old").unwrap());
    assert!(reply.get_bool("hidden_new").unwrap());
    let listed = db.run_command(doc! {"listIndexes": "c"}).await.unwrap();
    let a = listed
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()[1]
        .as_document()
        .unwrap()
        .clone();
    assert!(a.get_bool("hidden").unwrap(), "{a}");
    let reply = db
        .run_command(doc! {"collMod": "c", "index": {"keyPattern": {"a": 1}, "hidden": false}})
        .await
        .unwrap();
    assert!(!reply.get_bool("hidden_new").unwrap());
    for (cmd, code) in [
        (
            doc! {"collMod": "c", "index": {"name": "_id_", "hidden": true}},
            2,
        ),
        (
            doc! {"collMod": "c", "index": {"name": "nope", "hidden": true}},
            27,
        ),
        (doc! {"collMod": "c", "index": {"name": "a_1"}}, 72),
        (
            doc! {"collMod": "c", "index": {"name": "a_1", "keyPattern": {"a": 1}, "hidden": true}},
            72,
        ),
        (
            doc! {"collMod": "c", "index": {"name": "a_1", "hidden": "yes"}},
            14,
        ),
        (
            doc! {"collMod": "c", "index": {"name": "a_1", "unique": true}},
            115,
        ),
        (
            doc! {"collMod": "c", "index": {"name": "a_1", "bogus": true}},
            40415,
        ),
        (doc! {"collMod": "c", "index": 5}, 14),
    ] {
        assert_eq!(code_of(&db, cmd.clone()).await, Some(code), "{cmd}");
    }
}

#[tokio::test]
async fn hostile_validators_fail_alone() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("h");
    // Nested $jsonSchema past MongoDB's 100 BSON levels: refused as the
    // message's nesting (15), the server stays.
    let mut deep = doc! {"bsonType": "object"};
    for _ in 0..150 {
        deep = doc! {"properties": {"a": deep}};
    }
    assert_eq!(
        code_of(
            &db,
            doc! {"create": "deep", "validator": {"$jsonSchema": deep}}
        )
        .await,
        Some(15)
    );
    // As deep as a message may nest: taken, and enforced at every level.
    let mut nested = doc! {"bsonType": "int"};
    let mut value = Bson::Int32(1);
    let mut wrong = Bson::String("x".into());
    for _ in 0..90 {
        nested = doc! {"items": nested};
        value = Bson::Array(vec![value]);
        wrong = Bson::Array(vec![wrong]);
    }
    db.run_command(
        doc! {"create": "nested", "validator": {"$jsonSchema": {"properties": {"a": nested}}}},
    )
    .await
    .expect("a deep schema");
    assert_eq!(
        code_of(
            &db,
            doc! {"insert": "nested", "documents": [{"_id": 1, "a": value}]}
        )
        .await,
        None
    );
    assert_eq!(
        code_of(
            &db,
            doc! {"insert": "nested", "documents": [{"_id": 2, "a": wrong}]}
        )
        .await,
        Some(121)
    );
    // A huge enum is taken and checked without blowing up.
    let many: Vec<Bson> = (0..100_000).map(Bson::Int32).collect();
    db.run_command(
        doc! {"create": "big", "validator": {"$jsonSchema": {"properties": {"a": {"enum": many}}}}},
    )
    .await
    .expect("a big enum");
    assert_eq!(
        code_of(
            &db,
            doc! {"insert": "big", "documents": [{"_id": 1, "a": 99_999}]}
        )
        .await,
        None
    );
    assert_eq!(
        code_of(
            &db,
            doc! {"insert": "big", "documents": [{"_id": 2, "a": -1}]}
        )
        .await,
        Some(121)
    );
    for (schema, code) in [
        (doc! {"pattern": "(unclosed"}, 2),
        (doc! {"pattern": 7}, 14),
        (doc! {"minLength": -3}, 9),
        (doc! {"maxItems": 1e300}, 9),
        (doc! {"bsonType": "integer"}, 2),
        (doc! {"type": "integer"}, 2),
        (doc! {"required": "a"}, 9),
        (doc! {"$ref": "#/definitions/a"}, 9),
        (doc! {"unknownKeyword": 1}, 9),
        (doc! {"encrypt": {"bsonType": "string"}}, 115),
        (doc! {"items": [1]}, 9),
    ] {
        assert_eq!(
            code_of(
                &db,
                doc! {"create": "x", "validator": {"$jsonSchema": schema.clone()}}
            )
            .await,
            Some(code),
            "{schema}"
        );
    }
    assert_eq!(
        code_of(&db, doc! {"create": "x", "validator": {"$jsonSchema": 5}}).await,
        Some(9)
    );
    assert_eq!(code_of(&db, doc! {"ping": 1}).await, None);
}

// ---- tailable cursors ---------------------------------------------------------------

#[tokio::test]
async fn tailable_cursors_get_mongodbs_error_on_collections_that_are_not_capped() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("t");
    let c = db.collection::<Document>("c");
    c.insert_one(doc! {"_id": 1}).await.unwrap();
    let (code, err) = error_of(&db, doc! {"find": "c", "tailable": true})
        .await
        .expect("refused");
    assert_eq!(code, 2);
    assert!(
        err.get_str("errmsg")
            .unwrap()
            .contains("tailable cursor requested on non capped collection"),
        "{err}"
    );
    assert_eq!(
        code_of(&db, doc! {"find": "c", "awaitData": true}).await,
        Some(9)
    );
    assert_eq!(
        code_of(&db, doc! {"find": "c", "tailable": "yes"}).await,
        Some(14)
    );
    // Through the driver's own cursor type.
    let e = c
        .find(doc! {})
        .cursor_type(mongodb::options::CursorType::TailableAwait)
        .await
        .expect_err("not capped");
    assert_eq!(common::code(&e), Some(2));
    assert_eq!(
        code_of(&db, doc! {"find": "c", "tailable": false}).await,
        None
    );
}

/// A tailable cursor reads the capped collection forward: `{$natural: 1}`
/// (as hint or sort) and an index hint give insertion order, as mongod's
/// tailable plan is always a collection scan; a backward `$natural` hint
/// is refused by name (115), `singleBatch` and a backward sort as mongod
/// refuses them (2).
#[tokio::test]
async fn tailable_cursors_read_forward_in_natural_order() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("t");
    db.run_command(doc! {"create": "log", "capped": true, "size": 4096})
        .await
        .unwrap();
    let log = db.collection::<Document>("log");
    for id in [3, 1, 2] {
        log.insert_one(doc! {"_id": id}).await.unwrap();
    }
    for extra in [
        doc! {},
        doc! {"hint": {"$natural": 1}},
        doc! {"sort": {"$natural": 1}},
        doc! {"hint": "_id_"},
    ] {
        let mut cmd = doc! {"find": "log", "tailable": true};
        cmd.extend(extra.clone());
        let reply = db.run_command(cmd).await.expect("a tailable find");
        let cursor = reply.get_document("cursor").unwrap();
        let ids: Vec<i32> = cursor
            .get_array("firstBatch")
            .unwrap()
            .iter()
            .map(|d| d.as_document().unwrap().get_i32("_id").unwrap())
            .collect();
        assert_eq!(ids, vec![3, 1, 2], "{extra}");
        assert_ne!(cursor.get_i64("id").unwrap(), 0, "{extra}");
    }
    for (cmd, want, says) in [
        (
            doc! {"find": "log", "tailable": true, "hint": {"$natural": -1}},
            115,
            "$natural: -1",
        ),
        (
            doc! {"find": "log", "tailable": true, "sort": {"$natural": -1}},
            2,
            "a sort other than {$natural: 1}",
        ),
        (
            doc! {"find": "log", "tailable": true, "singleBatch": true},
            2,
            "'singleBatch'",
        ),
        // Checked before the collection is: on one that is not capped too.
        (
            doc! {"find": "nope", "tailable": true, "singleBatch": true},
            2,
            "'singleBatch'",
        ),
    ] {
        let (code, err) = error_of(&db, cmd.clone())
            .await
            .unwrap_or_else(|| panic!("{cmd} refused"));
        assert_eq!(code, want, "{cmd}: {err}");
        assert!(
            err.get_str("errmsg").unwrap().contains(says),
            "{cmd}: {err}"
        );
    }
}

// ---- TTL ------------------------------------------------------------------------------

/// Polls `check` until it holds (30 s at most).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("never happened: {what}");
}

async fn ids(db: &Database, coll: &str) -> Vec<i32> {
    all(db, coll)
        .await
        .iter()
        .map(|d| d.get_i32("_id").expect("an int _id"))
        .collect()
}

async fn head_seq(client: &Client) -> i64 {
    client
        .database("admin")
        .run_command(doc! {"argonLogInfo": "main"})
        .await
        .expect("log info")
        .get_document("branch")
        .and_then(|b| b.get_i64("headSeq"))
        .expect("headSeq")
}

/// TTL indexes expire documents on every branch that has the index, in
/// commits that time travel reads past.
async fn ttl_expires_on_every_branch(client: &Client, store: &str) {
    let db = client.database("ttl");
    let admin = client.database("admin");
    let hour = 3_600_000;
    let now = bson::DateTime::now().timestamp_millis();
    let at = |ms: i64| Bson::DateTime(bson::DateTime::from_millis(ms));
    db.collection::<Document>("sessions")
        .insert_many([
            doc! {"_id": 1, "at": at(now - hour)},
            doc! {"_id": 2, "at": at(now + hour)},
            doc! {"_id": 3, "at": [at(now + hour), at(now - hour)]},
            doc! {"_id": 4, "at": "not a date"},
            doc! {"_id": 5},
        ])
        .await
        .expect("sessions");
    db.collection::<Document>("later")
        .insert_many([doc! {"_id": 1, "at": at(now - hour)}])
        .await
        .expect("later");
    let before = head_seq(client).await;
    admin
        .run_command(doc! {"argonCreateBranch": "old", "from": "main"})
        .await
        .expect("a branch before the index");
    db.run_command(doc! {"createIndexes": "sessions", "indexes": [{"key": {"at": 1}, "name": "at_1", "expireAfterSeconds": 0}]})
        .await
        .expect("a TTL index");
    db.run_command(doc! {"createIndexes": "later", "indexes": [{"key": {"at": 1}, "name": "at_1", "expireAfterSeconds": 7200}]})
        .await
        .expect("a TTL index of two hours");
    admin
        .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
        .await
        .expect("a branch after the index");
    let dev = client.database("ttl~dev");
    for (name, branch_db) in [("main", &db), ("dev", &dev)] {
        eventually(&format!("{store}: expiry on {name}"), || async {
            ids(branch_db, "sessions").await == vec![2, 4, 5]
        })
        .await;
    }
    // A pass ran on main: two hours have not passed for `later`, and the
    // branch forked before the index keeps everything.
    assert_eq!(ids(&db, "later").await, vec![1], "{store}");
    let old = client.database("ttl~old");
    assert_eq!(ids(&old, "sessions").await, vec![1, 2, 3, 4, 5], "{store}");
    // The log kept them: the past still has them.
    let past = client.database(&format!("ttl~main@{before}"));
    assert_eq!(ids(&past, "sessions").await, vec![1, 2, 3, 4, 5], "{store}");
    // collMod shortens the TTL: now `later`'s document expires.
    let reply = db
        .run_command(doc! {"collMod": "later", "index": {"name": "at_1", "expireAfterSeconds": 60}})
        .await
        .expect("collMod");
    assert_eq!(
        reply.get_i32("expireAfterSeconds_old").ok(),
        Some(7200),
        "{reply}"
    );
    assert_eq!(
        reply.get_i32("expireAfterSeconds_new").ok(),
        Some(60),
        "{reply}"
    );
    eventually(&format!("{store}: expiry after collMod"), || async {
        ids(&db, "later").await.is_empty()
    })
    .await;
    // A document updated to a fresh date is not expired.
    db.collection::<Document>("sessions")
        .update_one(doc! {"_id": 2}, doc! {"$set": {"at": at(now - hour)}})
        .await
        .expect("update");
    eventually(
        &format!("{store}: expiry of an updated document"),
        || async { ids(&db, "sessions").await == vec![4, 5] },
    )
    .await;
}

#[tokio::test]
async fn ttl_indexes_expire_documents_on_both_stores() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal").display().to_string();
    let standalone = Sidecar::start(
        "argon-sidecar",
        &["--data", &data, "--ttl-monitor-sleep-secs", "1"],
    )
    .await
    .expect("argon-sidecar starts");
    let client = standalone.client().await.expect("a client");
    ttl_expires_on_every_branch(&client, "embedded").await;

    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let on_ferretdb = Sidecar::start(
        "argon-sidecar-ferretdb",
        &[
            "--store",
            ferretdb.uri(),
            "--project",
            "ttl",
            "--ttl-monitor-sleep-secs",
            "1",
        ],
    )
    .await
    .expect("a sidecar on FerretDB starts");
    let client = on_ferretdb.client().await.expect("a client");
    ttl_expires_on_every_branch(&client, "FerretDB").await;
}

#[tokio::test]
async fn hostile_ttl_indexes_are_refused() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("t");
    for (index, code) in [
        (
            doc! {"key": {"at": 1}, "name": "a", "expireAfterSeconds": -1},
            67,
        ),
        (
            doc! {"key": {"at": 1}, "name": "a", "expireAfterSeconds": 2_147_483_648i64},
            67,
        ),
        (
            doc! {"key": {"at": 1}, "name": "a", "expireAfterSeconds": i64::MIN},
            67,
        ),
        (
            doc! {"key": {"at": 1}, "name": "a", "expireAfterSeconds": f64::NAN},
            67,
        ),
        (
            doc! {"key": {"at": 1}, "name": "a", "expireAfterSeconds": "60"},
            67,
        ),
        (
            doc! {"key": {"at": 1, "b": 1}, "name": "a", "expireAfterSeconds": 60},
            67,
        ),
        (
            doc! {"key": {"_id": 1}, "name": "a", "expireAfterSeconds": 60},
            197,
        ),
    ] {
        assert_eq!(
            code_of(&db, doc! {"createIndexes": "c", "indexes": [index.clone()]}).await,
            Some(code),
            "{index}"
        );
    }
    db.run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"at": 1}, "name": "at_1", "expireAfterSeconds": 60}]})
        .await
        .unwrap();
    // The same index with another TTL conflicts as in MongoDB (85: apps
    // that change a TTL match on it); another key under the name is 86.
    assert_eq!(
        code_of(&db, doc! {"createIndexes": "c", "indexes": [{"key": {"at": 1}, "name": "at_1", "expireAfterSeconds": 61}]}).await,
        Some(85)
    );
    assert_eq!(
        code_of(
            &db,
            doc! {"createIndexes": "c", "indexes": [{"key": {"other": 1}, "name": "at_1"}]}
        )
        .await,
        Some(86)
    );
    assert_eq!(
        code_of(
            &db,
            doc! {"collMod": "c", "index": {"name": "at_1", "expireAfterSeconds": -5}}
        )
        .await,
        Some(67)
    );
    assert_eq!(code_of(&db, doc! {"ping": 1}).await, None);
}

// ---- capped collections -----------------------------------------------------------

async fn natural(db: &Database, coll: &str) -> Vec<i32> {
    db.collection::<Document>(coll)
        .find(doc! {})
        .batch_size(2)
        .await
        .expect("find")
        .try_collect::<Vec<Document>>()
        .await
        .expect("documents")
        .iter()
        .map(|d| d.get_i32("_id").expect("an int _id"))
        .collect()
}

/// Insertion order is natural order; an insert past `max` or `size` takes
/// the oldest documents out in its own commit.
async fn capped_collections_evict_the_oldest(client: &Client, store: &str) {
    let db = client.database("cap");
    db.run_command(doc! {"create": "log", "capped": true, "size": 100_000, "max": 3})
        .await
        .expect("create capped");
    let log = db.collection::<Document>("log");
    let mut heads = Vec::new();
    for id in [5, 1, 4, 2, 3] {
        log.insert_one(doc! {"_id": id, "line": format!("line {id}")})
            .await
            .expect("insert");
        heads.push(head_seq(client).await);
    }
    assert_eq!(natural(&db, "log").await, vec![4, 2, 3], "{store}");
    // Each insert was one commit, the eviction inside it: every past
    // point holds at most `max` documents, in insertion order.
    assert!(
        heads.windows(2).all(|w| w[1] == w[0] + 1),
        "{store}: {heads:?}"
    );
    for (seq, want) in heads.iter().zip([
        vec![5],
        vec![5, 1],
        vec![5, 1, 4],
        vec![1, 4, 2],
        vec![4, 2, 3],
    ]) {
        let past = client.database(&format!("cap~main@{seq}"));
        assert_eq!(natural(&past, "log").await, want, "{store} at {seq}");
    }
    // A filter, skip and limit in natural order; a sort still sorts.
    let found: Vec<Document> = log
        .find(doc! {"_id": {"$gte": 3}})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("docs");
    assert_eq!(
        found
            .iter()
            .map(|d| d.get_i32("_id").expect("id"))
            .collect::<Vec<_>>(),
        vec![4, 3]
    );
    let sorted: Vec<Document> = log
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("docs");
    assert_eq!(
        sorted
            .iter()
            .map(|d| d.get_i32("_id").expect("id"))
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    // MongoDB 8.0 lets updates change a document's size and deletes run;
    // an updated document keeps its place.
    log.update_one(doc! {"_id": 4}, doc! {"$set": {"line": "x".repeat(1000)}})
        .await
        .expect("a growing update");
    log.delete_one(doc! {"_id": 2}).await.expect("a delete");
    log.insert_one(doc! {"_id": 9}).await.expect("insert");
    assert_eq!(natural(&db, "log").await, vec![4, 3, 9], "{store}");
    // By size: documents of 1,021 bytes in a 4,096-byte collection: 4 fit.
    db.run_command(doc! {"create": "small", "capped": true, "size": 4096})
        .await
        .expect("create small");
    let small = db.collection::<Document>("small");
    small
        .insert_many((0..10).map(|i| doc! {"_id": i, "pad": "p".repeat(1000)}))
        .await
        .expect("insert many");
    let left = natural(&db, "small").await;
    assert_eq!(left, vec![6, 7, 8, 9], "{store}");
    let stats = db
        .run_command(doc! {"collStats": "small"})
        .await
        .expect("collStats");
    assert!(stats.get_bool("capped").expect("capped"), "{stats}");
    assert_eq!(stats.get_i64("maxSize").expect("maxSize"), 4096);
    assert!(stats.get_i64("size").expect("size") <= 4096, "{stats}");
    let options = collection_options(&db, "log").await;
    assert_eq!(
        options,
        doc! {"capped": true, "size": 100_000i64, "max": 3i64},
        "{store}"
    );
    // A document larger than the collection is refused alone.
    assert_eq!(
        code_of(
            &db,
            doc! {"insert": "small", "documents": [{"_id": 100, "pad": "p".repeat(5000)}]}
        )
        .await,
        Some(2)
    );
    assert_eq!(natural(&db, "small").await, vec![6, 7, 8, 9], "{store}");
}

/// A tailable, awaitData cursor on a capped collection: it stays open at
/// the end, a getMore waits up to maxAwaitTimeMS for new documents and
/// returns them as soon as they are inserted, and it dies with
/// CappedPositionLost (136) once the collection wraps past it.
async fn tailable_cursors_follow_inserts(client: &Client, store: &str) {
    let db = client.database("tail");
    db.run_command(doc! {"create": "events", "capped": true, "size": 1_000_000, "max": 5})
        .await
        .expect("create capped");
    let events = db.collection::<Document>("events");
    events
        .insert_many([doc! {"_id": 2, "k": "a"}, doc! {"_id": 1, "k": "b"}])
        .await
        .expect("insert");
    let mut cursor = events
        .find(doc! {"k": {"$ne": "skip"}})
        .cursor_type(mongodb::options::CursorType::TailableAwait)
        .max_await_time(std::time::Duration::from_millis(300))
        .await
        .expect("a tailable cursor");
    assert_eq!(
        cursor.try_next().await.expect("next"),
        Some(doc! {"_id": 2, "k": "a"}),
        "{store}"
    );
    assert_eq!(
        cursor.try_next().await.expect("next"),
        Some(doc! {"_id": 1, "k": "b"}),
        "{store}"
    );
    // Nothing new: the driver's getMores wait ~maxAwaitTimeMS each and the
    // cursor stays alive; an insert meanwhile is returned.
    let writer = events.clone();
    let insert_later = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        writer
            .insert_many([doc! {"_id": 7, "k": "skip"}, doc! {"_id": 8, "k": "c"}])
            .await
            .expect("a later insert");
    });
    let started = std::time::Instant::now();
    assert_eq!(
        cursor.try_next().await.expect("next"),
        Some(doc! {"_id": 8, "k": "c"}),
        "{store}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(600),
        "{store}: waited"
    );
    insert_later.await.expect("inserted");
    // A raw getMore with nothing new answers an empty batch after its
    // maxTimeMS, the cursor still open.
    let first = db
        .run_command(doc! {"find": "events", "tailable": true, "awaitData": true, "batchSize": 10})
        .await
        .expect("find");
    let id = first
        .get_document("cursor")
        .and_then(|c| c.get_i64("id"))
        .expect("an id");
    assert_ne!(id, 0);
    let started = std::time::Instant::now();
    let more = db
        .run_command(doc! {"getMore": id, "collection": "events", "maxTimeMS": 200})
        .await
        .expect("getMore");
    let cursor_doc = more.get_document("cursor").expect("cursor");
    assert!(cursor_doc.get_array("nextBatch").expect("batch").is_empty());
    assert_eq!(cursor_doc.get_i64("id").ok(), Some(id));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(150),
        "{store}"
    );
    // Wrapping past the cursor's position kills it (136).
    events
        .insert_many((10..20).map(|i| doc! {"_id": i, "k": "wrap"}))
        .await
        .expect("wrap");
    assert_eq!(
        code_of(
            &db,
            doc! {"getMore": id, "collection": "events", "maxTimeMS": 100}
        )
        .await,
        Some(136),
        "{store}"
    );
    // Tailable with a sort other than $natural is refused, as in MongoDB.
    assert_eq!(
        code_of(
            &db,
            doc! {"find": "events", "tailable": true, "sort": {"_id": 1}}
        )
        .await,
        Some(2)
    );
    // Killed like any cursor.
    let again = db
        .run_command(doc! {"find": "events", "tailable": true})
        .await
        .expect("find");
    let id = again
        .get_document("cursor")
        .and_then(|c| c.get_i64("id"))
        .expect("an id");
    let killed = db
        .run_command(doc! {"killCursors": "events", "cursors": [id]})
        .await
        .expect("killCursors");
    assert_eq!(killed.get_array("cursorsKilled").expect("killed").len(), 1);
    assert_eq!(
        code_of(&db, doc! {"getMore": id, "collection": "events"}).await,
        Some(43)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailable_await_cursors_on_both_stores() {
    let (_s, _d, client) = common::standalone().await;
    tailable_cursors_follow_inserts(&client, "embedded").await;
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let on_ferretdb = Sidecar::on_store("argon-sidecar-ferretdb", ferretdb.uri(), "tail")
        .await
        .expect("a sidecar on FerretDB starts");
    let client = on_ferretdb.client().await.expect("a client");
    tailable_cursors_follow_inserts(&client, "FerretDB").await;
}

#[tokio::test]
async fn capped_collections_on_both_stores() {
    let (s, dir, client) = common::standalone().await;
    capped_collections_evict_the_oldest(&client, "embedded").await;
    // Natural order is rebuilt from the log after a restart.
    drop(client);
    drop(s);
    let again = Sidecar::standalone(&dir.path().join("wal"))
        .await
        .expect("argon-sidecar restarts");
    let client = again.client().await.expect("a client");
    assert_eq!(natural(&client.database("cap"), "log").await, vec![4, 3, 9]);
    assert_eq!(
        natural(&client.database("cap"), "small").await,
        vec![6, 7, 8, 9]
    );
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let on_ferretdb = Sidecar::on_store("argon-sidecar-ferretdb", ferretdb.uri(), "capped")
        .await
        .expect("a sidecar on FerretDB starts");
    let client = on_ferretdb.client().await.expect("a client");
    capped_collections_evict_the_oldest(&client, "FerretDB").await;
}

#[tokio::test]
async fn hostile_capped_options_are_refused() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("cap");
    for (cmd, code) in [
        (doc! {"create": "a", "capped": true}, 72),
        (doc! {"create": "a", "capped": true, "size": -1}, 2),
        (doc! {"create": "a", "capped": true, "size": 0}, 2),
        (doc! {"create": "a", "capped": true, "size": i64::MAX}, 2),
        (doc! {"create": "a", "capped": true, "size": 1e300}, 2),
        (doc! {"create": "a", "capped": true, "size": f64::NAN}, 14),
        (doc! {"create": "a", "capped": true, "size": "big"}, 14),
        (
            doc! {"create": "a", "capped": true, "size": 4096, "max": i64::MAX},
            2,
        ),
        (
            doc! {"create": "a", "capped": true, "size": 4096, "max": "3"},
            14,
        ),
        (doc! {"create": "a", "capped": [true], "size": 4096}, 14),
        (doc! {"create": "a", "size": 4096}, 72),
        (doc! {"create": "a", "max": 3}, 72),
    ] {
        assert_eq!(code_of(&db, cmd.clone()).await, Some(code), "{cmd}");
    }
    assert!(db.list_collection_names().await.unwrap().is_empty());
    // Not built, refused by name.
    for cmd in [
        doc! {"convertToCapped": "x", "size": 4096},
        doc! {"cloneCollectionAsCapped": "x", "toCollection": "y", "size": 4096},
    ] {
        assert_eq!(code_of(&db, cmd.clone()).await, Some(115), "{cmd}");
    }
    // No TTL index on a capped collection, as in MongoDB.
    db.run_command(doc! {"create": "c", "capped": true, "size": 4096})
        .await
        .unwrap();
    assert_eq!(
        code_of(&db, doc! {"createIndexes": "c", "indexes": [{"key": {"at": 1}, "name": "at_1", "expireAfterSeconds": 5}]}).await,
        Some(67)
    );
    assert_eq!(code_of(&db, doc! {"ping": 1}).await, None);
}
