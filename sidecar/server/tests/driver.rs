//! The Rust `mongodb` driver against the sidecar in-process: the scenario
//! every real driver must pass (CRUD, cursors, errors, branches, time travel).

use crate::common;

use bson::{Bson, Document, doc};
use common::TestServer;
use futures::TryStreamExt;
use mongodb::options::{FindOneAndUpdateOptions, FindOptions, IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};

fn write_error_code(e: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::InsertMany(i) => i
            .write_errors
            .as_ref()
            .and_then(|w| w.first())
            .map(|w| w.code),
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_scenario() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("app");
    db.run_command(doc! {"ping": 1}).await.unwrap();
    let people: Collection<Document> = db.collection("people");

    people
        .insert_many((0..10).map(|i| doc! {"_id": i, "name": format!("p{i}"), "age": 20 + i, "tags": if i % 2 == 0 { vec!["even"] } else { vec!["odd"] }}))
        .await
        .unwrap();
    people
        .insert_one(doc! {"name": "no-id", "age": 99})
        .await
        .unwrap();
    assert_eq!(people.count_documents(doc! {}).await.unwrap(), 11);
    assert_eq!(people.estimated_document_count().await.unwrap(), 11);

    // find with filter, sort, skip, limit, projection
    let found: Vec<Document> = people
        .find(doc! {"age": {"$gte": 22, "$lt": 99}, "tags": "even"})
        .sort(doc! {"age": -1})
        .skip(1)
        .limit(2)
        .projection(doc! {"name": 1, "_id": 0})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(found, vec![doc! {"name": "p6"}, doc! {"name": "p4"}]);
    let one = people.find_one(doc! {"_id": 3}).await.unwrap().unwrap();
    assert_eq!(one.get_str("name").unwrap(), "p3");

    // updates
    let r = people
        .update_many(
            doc! {"tags": "odd"},
            doc! {"$inc": {"age": 100}, "$set": {"odd": true}},
        )
        .await
        .unwrap();
    assert_eq!((r.matched_count, r.modified_count), (5, 5));
    let r = people
        .update_one(doc! {"_id": 0}, doc! {"$push": {"tags": "zero"}})
        .await
        .unwrap();
    assert_eq!(r.modified_count, 1);
    let r = people
        .replace_one(doc! {"_id": 2}, doc! {"name": "two"})
        .await
        .unwrap();
    assert_eq!(r.modified_count, 1);
    assert_eq!(
        people.find_one(doc! {"_id": 2}).await.unwrap().unwrap(),
        doc! {"_id": 2, "name": "two"}
    );

    // upserts
    let r = people
        .update_one(doc! {"_id": 50}, doc! {"$set": {"name": "fifty"}})
        .upsert(true)
        .await
        .unwrap();
    assert_eq!(r.upserted_id, Some(Bson::Int32(50)));
    let r = people
        .update_one(doc! {"name": "new"}, doc! {"$setOnInsert": {"age": 1}})
        .upsert(true)
        .await
        .unwrap();
    assert!(matches!(r.upserted_id, Some(Bson::ObjectId(_))));
    assert_eq!(
        people
            .find_one(doc! {"name": "new"})
            .await
            .unwrap()
            .unwrap()
            .get_i32("age")
            .unwrap(),
        1
    );

    // findAndModify: pre- and post-images, remove
    let before = people
        .find_one_and_update(doc! {"_id": 1}, doc! {"$set": {"v": 1}})
        .await
        .unwrap()
        .unwrap();
    assert!(!before.contains_key("v"));
    let after = people
        .find_one_and_update(doc! {"_id": 1}, doc! {"$inc": {"v": 1}})
        .with_options(
            FindOneAndUpdateOptions::builder()
                .return_document(ReturnDocument::After)
                .build(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.get_i32("v").unwrap(), 2);
    let removed = people
        .find_one_and_delete(doc! {"_id": 1})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.get_i32("v").unwrap(), 2);
    assert!(people.find_one(doc! {"_id": 1}).await.unwrap().is_none());

    // deletes
    let r = people.delete_many(doc! {"odd": true}).await.unwrap();
    assert_eq!(r.deleted_count, 4);
    let r = people
        .delete_one(doc! {"age": {"$exists": true}})
        .await
        .unwrap();
    assert_eq!(r.deleted_count, 1);

    // distinct and aggregate
    let tags = people.distinct("tags", doc! {}).await.unwrap();
    assert!(tags.contains(&Bson::String("even".into())));
    let groups: Vec<Document> = people
        .aggregate(vec![
            doc! {"$match": {"tags": "even"}},
            doc! {"$group": {"_id": null, "n": {"$sum": 1}}},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);

    // an unknown command
    let e = db.run_command(doc! {"noSuchCommand": 1}).await.unwrap_err();
    assert_eq!(write_error_code(&e), Some(59));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_span_batches_and_keep_their_snapshot() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let coll: Collection<Document> = client.database("app").collection("many");
    coll.insert_many((0..250).map(|i| doc! {"_id": i, "x": i}))
        .await
        .unwrap();
    let mut cursor = coll
        .find(doc! {})
        .with_options(FindOptions::builder().batch_size(7).build())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut deleted = false;
    while let Some(d) = cursor.try_next().await.unwrap() {
        seen.push(d.get_i32("_id").unwrap());
        if !deleted {
            // Written after the cursor opened: the cursor does not see it.
            coll.delete_many(doc! {"x": {"$gte": 100}}).await.unwrap();
            deleted = true;
        }
    }
    assert_eq!(seen, (0..250).collect::<Vec<_>>());
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 100);
    let e = client
        .database("app")
        .run_command(doc! {"getMore": 987654321i64, "collection": "many"})
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&e), Some(43));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_and_unique_indexes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("app");
    let coll: Collection<Document> = db.collection("users");
    coll.insert_one(doc! {"_id": 1, "email": "a@x"})
        .await
        .unwrap();
    let e = coll
        .insert_one(doc! {"_id": 1, "email": "b@x"})
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&e), Some(11000));
    assert!(
        e.to_string().contains(
            "E11000 duplicate key error collection: app.users index: _id_ dup key: { _id: 1 }"
        ),
        "{e}"
    );

    // unordered: the good documents go in, the bad one is reported by index
    let e = coll
        .insert_many(vec![doc! {"_id": 2}, doc! {"_id": 1}, doc! {"_id": 3}])
        .ordered(false)
        .await
        .unwrap_err();
    let mongodb::error::ErrorKind::InsertMany(ref im) = *e.kind else {
        panic!("{e}")
    };
    let we = im.write_errors.as_ref().unwrap();
    assert_eq!((we.len(), we[0].index, we[0].code), (1, 1, 11000));
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 3);
    // ordered: stops at the first error
    let _ = coll
        .insert_many(vec![doc! {"_id": 4}, doc! {"_id": 1}, doc! {"_id": 5}])
        .await
        .unwrap_err();
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 4);

    // Documents without an email share the key null: a non-sparse unique index is refused.
    let e = coll
        .create_index(
            IndexModel::builder()
                .keys(doc! {"email": 1})
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&e), Some(11000));
    coll.create_index(
        IndexModel::builder()
            .keys(doc! {"email": 1})
            .options(IndexOptions::builder().unique(true).sparse(true).build())
            .build(),
    )
    .await
    .unwrap();
    let e = coll
        .insert_one(doc! {"_id": 10, "email": "a@x"})
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&e), Some(11000));
    assert!(e.to_string().contains("index: email_1"), "{e}");
    let e = coll
        .update_one(doc! {"_id": 2}, doc! {"$set": {"email": "a@x"}})
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&e), Some(11000));

    let names = coll.list_index_names().await.unwrap();
    assert_eq!(names, vec!["_id_".to_string(), "email_1".to_string()]);
    let colls = db.list_collection_names().await.unwrap();
    assert_eq!(colls, vec!["users".to_string()]);
    let filtered = db
        .list_collection_names()
        .filter(doc! {"name": "nope"})
        .await
        .unwrap();
    assert!(filtered.is_empty());
    coll.drop_index("email_1").await.unwrap();
    coll.insert_one(doc! {"_id": 10, "email": "a@x"})
        .await
        .unwrap();
    let dbs = client.list_database_names().await.unwrap();
    assert!(dbs.contains(&"app".to_string()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_and_time_travel() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let admin = client.database("admin");
    let main: Collection<Document> = client.database("shop").collection("items");
    let r = main.insert_one(doc! {"_id": 1, "qty": 1}).await.unwrap();
    assert_eq!(r.inserted_id, Bson::Int32(1));
    let created = admin
        .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
        .await
        .unwrap();
    let branch = created.get_document("branch").unwrap();
    assert_eq!(branch.get_str("name").unwrap(), "dev");
    assert_eq!(branch.get_str("parent").unwrap(), "main");
    let fork_seq = branch.get_i64("forkSeq").unwrap();
    assert!(fork_seq >= 1);

    let dev: Collection<Document> = client.database("shop~dev").collection("items");
    dev.insert_one(doc! {"_id": 2, "qty": 2}).await.unwrap();
    dev.update_one(doc! {"_id": 1}, doc! {"$set": {"qty": 10}})
        .await
        .unwrap();
    assert_eq!(dev.count_documents(doc! {}).await.unwrap(), 2);
    assert_eq!(
        main.count_documents(doc! {}).await.unwrap(),
        1,
        "main is unchanged"
    );
    assert_eq!(
        main.find_one(doc! {"_id": 1})
            .await
            .unwrap()
            .unwrap()
            .get_i32("qty")
            .unwrap(),
        1
    );

    // the branch as of its fork point: read-only
    let past: Collection<Document> = client.database("shop~dev@0").collection("items");
    assert_eq!(past.count_documents(doc! {}).await.unwrap(), 1);
    let e = past.insert_one(doc! {"_id": 3}).await.unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");

    // main at a past seq, and snapshot reads through atClusterTime
    let info = admin
        .run_command(doc! {"argonLogInfo": "main"})
        .await
        .unwrap();
    let head = info
        .get_document("branch")
        .unwrap()
        .get_i64("headSeq")
        .unwrap();
    let reply = client
        .database("shop")
        .run_command(doc! {"insert": "items", "documents": [{"_id": 9}]})
        .await
        .unwrap();
    let op_time = reply.get_timestamp("operationTime").unwrap();
    // Commit times have millisecond resolution and two commits may share
    // one: let the clock move on so the delete lands after `op_time`.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    main.delete_many(doc! {}).await.unwrap();
    let at_head: Collection<Document> = client
        .database(&format!("shop~main@{head}"))
        .collection("items");
    assert_eq!(at_head.count_documents(doc! {}).await.unwrap(), 1);
    let snap = client
        .database("shop")
        .run_command(doc! {"find": "items", "filter": {}, "readConcern": {"level": "snapshot", "atClusterTime": op_time}})
        .await
        .unwrap();
    let batch = snap
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    assert_eq!(batch.len(), 2, "state at the insert's commit: {batch:?}");

    let list = admin
        .run_command(doc! {"argonListBranches": 1})
        .await
        .unwrap();
    let names: Vec<&str> = list
        .get_array("branches")
        .unwrap()
        .iter()
        .filter_map(|b| b.as_document()?.get_str("name").ok())
        .collect();
    assert!(names.contains(&"main") && names.contains(&"dev"));

    // reset dev to its fork point: dry run first, then with a backup
    let preview = admin
        .run_command(doc! {"argonResetBranch": "dev", "toSeq": 0i64, "dryRun": true})
        .await
        .unwrap();
    assert!(!preview.get_bool("applied").unwrap());
    assert_eq!(
        preview
            .get_document("preview")
            .unwrap()
            .get_i64("removed")
            .unwrap(),
        1
    );
    admin
        .run_command(doc! {"argonResetBranch": "dev", "toSeq": 0i64, "backupBranch": "dev-backup"})
        .await
        .unwrap();
    assert_eq!(dev.count_documents(doc! {}).await.unwrap(), 1);
    let backup: Collection<Document> = client.database("shop~dev-backup").collection("items");
    assert_eq!(backup.count_documents(doc! {}).await.unwrap(), 2);

    let e = admin
        .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&e), Some(48));
    let e = client
        .database("x~nope")
        .collection::<Document>("c")
        .find_one(doc! {})
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&e), Some(26));
    admin
        .run_command(doc! {"argonDeleteBranch": "dev-backup"})
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_with_a_request_applies_once() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let admin = client.database("admin");
    let items: Collection<Document> = client.database("shop").collection("items");
    items.insert_one(doc! {"_id": 1}).await.unwrap();
    admin
        .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
        .await
        .unwrap();
    let dev: Collection<Document> = client.database("shop~dev").collection("items");
    dev.insert_one(doc! {"_id": 2}).await.unwrap();
    let reset = doc! {"argonResetBranch": "dev", "toSeq": 0i64, "request": "r-1"};
    let first = admin.run_command(reset.clone()).await.unwrap();
    assert!(first.get_bool("applied").unwrap());
    assert!(!first.get_bool("alreadyApplied").unwrap());
    assert_eq!(dev.count_documents(doc! {}).await.unwrap(), 1);
    // Written after the reset: a retry of the same request keeps it.
    dev.insert_one(doc! {"_id": 3}).await.unwrap();
    let retry = admin.run_command(reset).await.unwrap();
    assert!(retry.get_bool("alreadyApplied").unwrap(), "{retry}");
    assert_eq!(dev.count_documents(doc! {}).await.unwrap(), 2);
    // A new request resets again.
    admin
        .run_command(doc! {"argonResetBranch": "dev", "toSeq": 0i64, "request": "r-2"})
        .await
        .unwrap();
    assert_eq!(dev.count_documents(doc! {}).await.unwrap(), 1);

    for (request, dry_run, code) in [
        (Bson::Int32(1), false, 14),
        (Bson::Document(doc! {"id": "x"}), false, 14),
        (Bson::String(String::new()), false, 2),
        (Bson::String("r".repeat(257)), false, 2),
        (Bson::String("r".repeat(16 << 20 >> 1)), false, 2),
        (Bson::String("r-3".into()), true, 2),
    ] {
        let e = admin
            .run_command(doc! {"argonResetBranch": "dev", "toSeq": 0i64, "dryRun": dry_run, "request": request})
            .await
            .unwrap_err();
        assert_eq!(write_error_code(&e), Some(code), "{e}");
    }
    assert_eq!(dev.count_documents(doc! {}).await.unwrap(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_connections() {
    let server = TestServer::start().await;
    for compressor in ["snappy", "zlib", "zstd"] {
        let client =
            mongodb::Client::with_uri_str(format!("{}&compressors={compressor}", server.uri()))
                .await
                .unwrap();
        let coll: Collection<Document> = client.database("z").collection(compressor);
        coll.insert_many((0..50).map(|i| doc! {"_id": i, "pad": "x".repeat(200)}))
            .await
            .unwrap();
        let all: Vec<Document> = coll
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all.len(), 50, "{compressor}");
    }
    assert_eq!(server.metrics.protocol_errors.get(), 0);
    server.stop().await;
}

/// One rule for index keys on every path: a compound index over two arrays
/// refuses the document (171) on insert, update and index creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_arrays_are_refused_on_every_path() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let c: Collection<Document> = client.database("idx").collection("c");
    c.create_index(
        mongodb::IndexModel::builder()
            .keys(doc! {"a": 1, "b": 1})
            .build(),
    )
    .await
    .unwrap();
    c.insert_one(doc! {"_id": 1, "a": [1, 2], "b": 3})
        .await
        .unwrap();
    let e = c
        .insert_one(doc! {"_id": 2, "a": [1, 2], "b": [3, 4]})
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&e), Some(171), "{e}");
    let e = c
        .update_one(doc! {"_id": 1}, doc! {"$set": {"b": [5, 6]}})
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&e), Some(171), "{e}");
    let d: Collection<Document> = client.database("idx").collection("d");
    d.insert_one(doc! {"_id": 1, "x": [1], "y": [2]})
        .await
        .unwrap();
    let e = d
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"x": 1, "y": 1})
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&e), Some(171), "{e}");
    assert_eq!(c.count_documents(doc! {}).await.unwrap(), 1);
    server.stop().await;
}

/// find's projection operators through a real driver, over the real
/// server: MongoDB's manual examples for `$slice`, `$elemMatch` and
/// positional `$`, findAndModify's `fields`, and mongod's codes for misuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_projection_operators() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("app");
    let students: Collection<Document> = db.collection("students");
    students
        .insert_many([
            doc! {"_id": 1, "semester": 1, "grades": [70, 87, 90], "s": [{"school": 102, "age": 10}, {"school": 100, "age": 7}]},
            doc! {"_id": 2, "semester": 1, "grades": [90, 88, 92], "s": [{"school": 100, "age": 8}]},
            doc! {"_id": 3, "semester": 2, "grades": [85, 100, 90], "s": []},
        ])
        .await
        .unwrap();
    let find = |filter: Document, projection: Document| {
        let students = students.clone();
        async move {
            students
                .find(filter)
                .sort(doc! {"_id": 1})
                .projection(projection)
                .await?
                .try_collect::<Vec<Document>>()
                .await
        }
    };
    assert_eq!(
        find(
            doc! {"semester": 1, "grades": {"$gte": 85}},
            doc! {"grades.$": 1}
        )
        .await
        .unwrap(),
        vec![
            doc! {"_id": 1, "grades": [87]},
            doc! {"_id": 2, "grades": [90]}
        ]
    );
    assert_eq!(
        find(doc! {}, doc! {"_id": 1, "grades": {"$slice": [-2, 1]}})
            .await
            .unwrap(),
        vec![
            doc! {"_id": 1, "grades": [87]},
            doc! {"_id": 2, "grades": [88]},
            doc! {"_id": 3, "grades": [100]}
        ]
    );
    assert_eq!(
        find(doc! {}, doc! {"s": {"$elemMatch": {"school": 102}}})
            .await
            .unwrap(),
        vec![
            doc! {"_id": 1, "s": [{"school": 102, "age": 10}]},
            doc! {"_id": 2},
            doc! {"_id": 3}
        ]
    );
    let r = db
        .run_command(doc! {"findAndModify": "students", "query": {"_id": 1}, "update": {"$inc": {"semester": 1}}, "new": true, "fields": {"grades": {"$slice": -1}, "s": 0}})
        .await
        .unwrap();
    assert_eq!(
        r.get_document("value").unwrap(),
        &doc! {"_id": 1, "semester": 2, "grades": [90]}
    );
    for (projection, code) in [
        (doc! {"a": 1, "a.b": 1}, 31249),
        (doc! {"a": 1, "b": 0}, 31254),
        (doc! {"b.$": 1}, 31277),
        (doc! {"grades": {"$slice": [1, 0]}}, 31259),
        // No `$text` in the query: no score (MongoDB's 40218).
        (doc! {"g": {"$meta": "textScore"}}, 40218),
    ] {
        let e = find(doc! {"grades": 90}, projection.clone())
            .await
            .unwrap_err();
        assert_eq!(write_error_code(&e), Some(code), "{projection}");
    }
}
