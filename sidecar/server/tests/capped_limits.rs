//! Capped collections' remaining options, through the Rust driver against
//! the server in-process: `collMod` with `cappedSize`/`cappedMax` (the new
//! limits hold from the next insert, which removes the oldest documents),
//! and writes to a capped collection inside a multi-document transaction
//! (refused with MongoDB's 263; reads allowed).

use crate::common;

use bson::{Bson, Document, doc};
use common::{TestServer, code, code_of};
use futures::TryStreamExt;
use mongodb::Database;

/// The collection's `_id`s in natural (insertion) order.
async fn natural_ids(db: &Database, coll: &str) -> Vec<i32> {
    db.collection::<Document>(coll)
        .find(doc! {})
        .sort(doc! {"$natural": 1})
        .await
        .expect("find")
        .try_collect::<Vec<Document>>()
        .await
        .expect("documents")
        .iter()
        .map(|d| d.get_i32("_id").expect("an int _id"))
        .collect()
}

async fn options_of(db: &Database, coll: &str) -> Document {
    let reply = db
        .run_command(doc! {"listCollections": 1, "filter": {"name": coll}})
        .await
        .expect("listCollections");
    reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("firstBatch")
        .first()
        .and_then(Bson::as_document)
        .and_then(|d| d.get_document("options").ok())
        .cloned()
        .expect("options")
}

async fn insert(db: &Database, coll: &str, id: i32, pad: usize) {
    db.collection::<Document>(coll)
        .insert_one(doc! {"_id": id, "pad": "x".repeat(pad)})
        .await
        .expect("insert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coll_mod_changes_capped_limits_from_the_next_insert() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("capped");
    db.run_command(doc! {"create": "log", "capped": true, "size": 1_000_000, "max": 100})
        .await
        .expect("create");
    for i in 0..10 {
        insert(&db, "log", i, 10).await;
    }
    // A smaller count: nothing goes until the next insert, which leaves
    // the newest `cappedMax`.
    db.run_command(doc! {"collMod": "log", "cappedMax": 4})
        .await
        .expect("collMod cappedMax");
    assert_eq!(options_of(&db, "log").await.get_i64("max").expect("max"), 4);
    assert_eq!(natural_ids(&db, "log").await, (0..10).collect::<Vec<i32>>());
    insert(&db, "log", 10, 10).await;
    assert_eq!(natural_ids(&db, "log").await, vec![7, 8, 9, 10]);
    // Zero or less lifts the count limit.
    db.run_command(doc! {"collMod": "log", "cappedMax": 0})
        .await
        .expect("collMod cappedMax 0");
    assert!(options_of(&db, "log").await.get("max").is_none());
    for i in 11..16 {
        insert(&db, "log", i, 10).await;
    }
    assert_eq!(natural_ids(&db, "log").await, (7..16).collect::<Vec<i32>>());
    // A smaller size: at the next insert the oldest go until the rest fit.
    let docs: Vec<Document> = db
        .collection::<Document>("log")
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents");
    let one = bson::RawDocumentBuf::try_from(&docs[0])
        .expect("bson")
        .as_bytes()
        .len();
    let size = i64::try_from(one * 3 + one / 2).expect("small");
    db.run_command(doc! {"collMod": "log", "cappedSize": size})
        .await
        .expect("collMod cappedSize");
    assert_eq!(
        options_of(&db, "log").await.get_i64("size").expect("size"),
        size
    );
    insert(&db, "log", 16, 10).await;
    assert_eq!(natural_ids(&db, "log").await, vec![14, 15, 16]);
    // Both at once, and growing back: nothing is removed.
    db.run_command(doc! {"collMod": "log", "cappedSize": 1_000_000i64, "cappedMax": 5})
        .await
        .expect("collMod both");
    for i in 17..20 {
        insert(&db, "log", i, 10).await;
    }
    assert_eq!(natural_ids(&db, "log").await, vec![15, 16, 17, 18, 19]);
    let o = options_of(&db, "log").await;
    assert_eq!(
        (
            o.get_i64("size").expect("size"),
            o.get_i64("max").expect("max")
        ),
        (1_000_000, 5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_capped_limits_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("capped");
    db.run_command(doc! {"create": "log", "capped": true, "size": 4096, "max": 10})
        .await
        .expect("create");
    db.run_command(doc! {"create": "plain"})
        .await
        .expect("create");
    db.run_command(doc! {"create": "v", "viewOn": "log", "pipeline": []})
        .await
        .expect("view");
    let before = options_of(&db, "log").await;
    for (cmd, want) in [
        (doc! {"collMod": "plain", "cappedSize": 4096}, 72),
        (doc! {"collMod": "plain", "cappedMax": 5}, 72),
        (doc! {"collMod": "log", "cappedMax": 1i64 << 31}, 2),
        (doc! {"collMod": "log", "cappedMax": i64::MAX}, 2),
        (
            doc! {"collMod": "log", "cappedMax": 9.223_372_036_854_776e18},
            2,
        ),
        (doc! {"collMod": "log", "cappedMax": "5"}, 14),
        (doc! {"collMod": "log", "cappedMax": Bson::Null}, 14),
        (doc! {"collMod": "log", "cappedSize": -1}, 2),
        (doc! {"collMod": "log", "cappedSize": 0}, 2),
        (doc! {"collMod": "log", "cappedSize": (1i64 << 50) + 1}, 2),
        (doc! {"collMod": "log", "cappedSize": i64::MIN}, 2),
        (doc! {"collMod": "log", "cappedSize": 1e308}, 2),
        (doc! {"collMod": "log", "cappedSize": f64::NAN}, 14),
        (doc! {"collMod": "log", "cappedSize": {"n": 1}}, 14),
        (doc! {"collMod": "log", "cappedSize": [4096]}, 14),
        (
            doc! {"collMod": "log", "cappedSize": 4096, "cappedMax": "x"},
            14,
        ),
        (doc! {"collMod": "missing", "cappedSize": 4096}, 26),
        (doc! {"collMod": "v", "cappedSize": 4096}, 166),
    ] {
        assert_eq!(code_of(&db, cmd.clone()).await, Some(want), "{cmd}");
    }
    assert_eq!(options_of(&db, "log").await, before);
    // 1 PB exactly is allowed (and negative max lifts the count).
    db.run_command(doc! {"collMod": "log", "cappedSize": 1i64 << 50, "cappedMax": -3})
        .await
        .expect("the largest size");
    let o = options_of(&db, "log").await;
    assert_eq!(o.get_i64("size").expect("size"), 1 << 50);
    assert!(o.get("max").is_none(), "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_collections_refuse_writes_inside_transactions() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let db = client.database("capped");
    db.run_command(doc! {"create": "log", "capped": true, "size": 100_000})
        .await
        .expect("create");
    insert(&db, "log", 1, 1).await;
    let log = db.collection::<Document>("log");
    let plain = db.collection::<Document>("plain");
    // Inserts and updates are 263; a delete statement is 20, from
    // mongod's delete path (findAndModify's remove is 263, checked first).
    let capped = "is a capped collection";
    let remove = "Cannot remove from a capped collection";
    let writes: Vec<(Document, i32, &str)> = vec![
        (
            doc! {"insert": "log", "documents": [{"_id": 2}]},
            263,
            capped,
        ),
        (
            doc! {"update": "log", "updates": [{"q": {"_id": 1}, "u": {"$set": {"a": 1}}}]},
            263,
            capped,
        ),
        (
            doc! {"update": "log", "updates": [{"q": {"_id": 99}, "u": {"$set": {"a": 1}}, "upsert": true}]},
            263,
            capped,
        ),
        (
            doc! {"delete": "log", "deletes": [{"q": {"_id": 1}, "limit": 1}]},
            20,
            remove,
        ),
        (
            doc! {"findAndModify": "log", "query": {"_id": 1}, "update": {"$set": {"a": 1}}},
            263,
            capped,
        ),
        (
            doc! {"findAndModify": "log", "query": {"_id": 1}, "remove": true},
            263,
            capped,
        ),
        (
            doc! {"bulkWrite": 1, "ops": [{"insert": 0, "document": {"_id": 3}}], "nsInfo": [{"ns": "capped.log"}]},
            263,
            capped,
        ),
        (
            doc! {"bulkWrite": 1, "ops": [{"delete": 0, "filter": {}, "multi": true}], "nsInfo": [{"ns": "capped.log"}]},
            20,
            remove,
        ),
    ];
    for (cmd, want, says) in writes {
        let mut session = client.start_session().await.expect("session");
        session.start_transaction().await.expect("start");
        // A read of the capped collection inside the transaction is fine.
        let seen = log
            .find_one(doc! {"_id": 1})
            .session(&mut session)
            .await
            .expect("read in a transaction");
        assert!(seen.is_some());
        plain
            .insert_one(doc! {"note": "in the same transaction"})
            .session(&mut session)
            .await
            .expect("a plain write");
        let target = if cmd.contains_key("bulkWrite") {
            client.database("admin")
        } else {
            db.clone()
        };
        let e = target
            .run_command(cmd.clone())
            .session(&mut session)
            .await
            .expect_err("refused");
        assert_eq!(code(&e), Some(want), "{cmd}: {e}");
        assert!(e.to_string().contains(says), "{cmd}: {e}");
        // The refusal aborted the transaction, as a failed statement does.
        let e = session.commit_transaction().await.expect_err("aborted");
        assert_eq!(code(&e), Some(251), "{cmd}: {e}");
    }
    // Nothing of any refused transaction landed.
    assert_eq!(natural_ids(&db, "log").await, vec![1]);
    assert_eq!(
        plain.count_documents(doc! {}).await.expect("count"),
        0,
        "the aborted transactions' plain writes are gone"
    );
    let one = log
        .find_one(doc! {"_id": 1})
        .await
        .expect("find")
        .expect("doc");
    assert!(one.get("a").is_none());
    // Outside a transaction the same writes work.
    log.insert_one(doc! {"_id": 2}).await.expect("insert");
    assert_eq!(natural_ids(&db, "log").await, vec![1, 2]);
}
