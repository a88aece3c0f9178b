//! Real drivers run one scenario against the real `argon-sidecar` binary,
//! standalone (embedded store) and on a FerretDB store (`--store`): inserts,
//! finds with filters, sort and limit, updates, deletes, upserts,
//! findAndModify, a cursor over several batches, a duplicate key (11000),
//! branch create -> write on the branch -> main unchanged, and a read at a
//! past point (`<db>~main@<seq>`).
//!
//! The scenario is data: `tests/scenarios/scenario.{py,js,mongosh.js}` for
//! pymongo, the Node.js driver with mongoose, and mongosh; the Rust
//! `mongodb` crate's edition is [`rust_scenario`]. Each script asserts and
//! prints OK.

use crate::common;

use anyhow::Context;
use argon_testkit::FerretDb;
use argon_testkit::clients::{run_mongosh, run_node, run_python};
use bson::{Bson, Document, doc};
use common::code;
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;
use mongodb::{Client, Collection};

const PYTHON: &str = include_str!("scenarios/scenario.py");
const NODE: &str = include_str!("scenarios/scenario.js");
const MONGOSH: &str = include_str!("scenarios/scenario.mongosh.js");

/// A standalone sidecar and one on a fresh FerretDB, both real processes.
struct Backends {
    standalone: Sidecar,
    on_ferretdb: Sidecar,
    _ferretdb: FerretDb,
    _data: tempfile::TempDir,
}

impl Backends {
    async fn start() -> Backends {
        let data = tempfile::tempdir().expect("a temporary directory");
        let wal = data.path().join("wal");
        let (ferretdb, standalone) = tokio::join!(FerretDb::start(), Sidecar::standalone(&wal));
        let ferretdb = ferretdb.expect("FerretDB starts");
        let on_ferretdb = Sidecar::on_store("argon-sidecar-ferretdb", ferretdb.uri(), "default")
            .await
            .expect("a sidecar on FerretDB starts");
        Backends {
            standalone: standalone.expect("the standalone sidecar starts"),
            on_ferretdb,
            _ferretdb: ferretdb,
            _data: data,
        }
    }

    /// Runs `scenario(uri)` against both servers at once; each must print OK.
    async fn run_blocking(&self, client: &str, scenario: fn(String) -> anyhow::Result<String>) {
        let runs = [
            ("standalone", &self.standalone),
            ("FerretDB", &self.on_ferretdb),
        ]
        .map(|(store, s)| {
            let uri = s.uri();
            (store, tokio::task::spawn_blocking(move || scenario(uri)))
        });
        for (store, run) in runs {
            let out = run
                .await
                .expect("the client runs")
                .unwrap_or_else(|e| panic!("{client} on the {store} sidecar: {e:#}"));
            assert_eq!(
                out.trim().lines().last(),
                Some("OK"),
                "{client} on {store}: {out}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_scenario() {
    let b = Backends::start().await;
    b.run_blocking("pymongo", |uri| run_python(PYTHON, &[&uri, "app", "dev"]))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_driver_and_mongoose_scenario() {
    let b = Backends::start().await;
    b.run_blocking("node", |uri| {
        run_node(
            NODE,
            &[
                ("ARGON_URI", &uri),
                ("ARGON_DB", "app"),
                ("ARGON_BRANCH", "dev"),
            ],
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongosh_scenario() {
    let b = Backends::start().await;
    b.run_blocking("mongosh", |uri| {
        run_mongosh(
            &uri,
            &format!("const DB = \"app\"; const BRANCH = \"dev\";\n{MONGOSH}"),
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_driver_scenario() {
    let b = Backends::start().await;
    let (standalone, on_ferretdb) = tokio::join!(
        rust_scenario(b.standalone.uri(), "app", "dev"),
        rust_scenario(b.on_ferretdb.uri(), "app", "dev")
    );
    standalone.expect("the Rust driver on the standalone sidecar");
    on_ferretdb.expect("the Rust driver on the FerretDB sidecar");
}

async fn ids(
    coll: &Collection<Document>,
    filter: Document,
    sort: Document,
    limit: i64,
) -> anyhow::Result<Vec<Bson>> {
    let docs: Vec<Document> = coll
        .find(filter)
        .sort(sort)
        .limit(limit)
        .await?
        .try_collect()
        .await?;
    Ok(docs.iter().filter_map(|d| d.get("_id").cloned()).collect())
}

/// The scenario with the Rust `mongodb` crate.
async fn rust_scenario(uri: String, db_name: &str, branch: &str) -> anyhow::Result<()> {
    let client = Client::with_uri_str(&uri).await.context("client")?;
    let admin = client.database("admin");
    let db = client.database(db_name);
    let people: Collection<Document> = db.collection("people");
    db.run_command(doc! {"ping": 1}).await?;

    // inserts
    people
        .insert_many((0..10).map(|i| doc! {"_id": i, "name": format!("p{i}"), "age": 20 + i, "group": if i % 2 == 0 { "even" } else { "odd" }}))
        .await?;
    people.insert_one(doc! {"name": "no-id", "age": 99}).await?;
    assert_eq!(people.count_documents(doc! {}).await?, 11);

    // finds with filters, sort and limit
    let found = ids(
        &people,
        doc! {"age": {"$gte": 22, "$lt": 99}, "group": "even"},
        doc! {"age": -1},
        2,
    )
    .await?;
    assert_eq!(found, vec![Bson::Int32(8), Bson::Int32(6)]);
    let p3 = people.find_one(doc! {"_id": 3}).await?.context("_id 3")?;
    assert_eq!(p3.get_str("name")?, "p3");
    let names: Vec<Document> = people
        .find(doc! {"_id": {"$in": [1, 2]}})
        .projection(doc! {"name": 1, "_id": 0})
        .sort(doc! {"_id": 1})
        .await?
        .try_collect()
        .await?;
    assert_eq!(names, vec![doc! {"name": "p1"}, doc! {"name": "p2"}]);

    // updates
    let r = people
        .update_many(doc! {"group": "odd"}, doc! {"$inc": {"age": 100}})
        .await?;
    assert_eq!((r.matched_count, r.modified_count), (5, 5));
    let r = people
        .update_one(doc! {"_id": 0}, doc! {"$set": {"name": "zero"}})
        .await?;
    assert_eq!(r.modified_count, 1);

    // deletes
    assert_eq!(people.delete_one(doc! {"_id": 9}).await?.deleted_count, 1);
    assert_eq!(
        people
            .delete_many(doc! {"age": {"$gt": 100, "$lt": 199}})
            .await?
            .deleted_count,
        4
    );
    assert_eq!(people.count_documents(doc! {}).await?, 6);

    // upserts
    let r = people
        .update_one(doc! {"_id": 100}, doc! {"$set": {"name": "hundred"}})
        .upsert(true)
        .await?;
    assert_eq!(r.upserted_id, Some(Bson::Int32(100)));
    let r = people
        .update_one(doc! {"_id": 100}, doc! {"$set": {"age": 1}})
        .upsert(true)
        .await?;
    assert_eq!((r.upserted_id, r.matched_count), (None, 1));

    // findAndModify: post-image, pre-image, remove
    let after = people
        .find_one_and_update(doc! {"_id": 0}, doc! {"$inc": {"age": 1}})
        .return_document(ReturnDocument::After)
        .await?
        .context("post-image")?;
    assert_eq!(after.get_i32("age")?, 21);
    let before = people
        .find_one_and_update(doc! {"_id": 0}, doc! {"$set": {"tag": "x"}})
        .await?
        .context("pre-image")?;
    assert!(!before.contains_key("tag"));
    let removed = people
        .find_one_and_delete(doc! {"_id": 100})
        .await?
        .context("removed")?;
    assert_eq!(removed.get_str("name")?, "hundred");
    assert_eq!(people.count_documents(doc! {}).await?, 6);

    // a cursor over several batches
    let many: Collection<Document> = db.collection("many");
    many.insert_many((0..250).map(|i| doc! {"_id": i, "x": i}))
        .await?;
    let seen: Vec<Document> = many
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .batch_size(7)
        .await?
        .try_collect()
        .await?;
    let seen: Vec<i32> = seen.iter().filter_map(|d| d.get_i32("_id").ok()).collect();
    assert_eq!(seen, (0..250).collect::<Vec<_>>());

    // a duplicate key
    let e = people
        .insert_one(doc! {"_id": 0, "name": "again"})
        .await
        .expect_err("duplicate _id");
    assert_eq!(code(&e), Some(11000), "{e}");

    // branch create -> write on the branch -> main unchanged
    let created = admin
        .run_command(doc! {"argonCreateBranch": branch, "from": "main"})
        .await?;
    let record = created.get_document("branch")?;
    assert_eq!(
        (record.get_str("name")?, record.get_str("parent")?),
        (branch, "main")
    );
    let on_branch: Collection<Document> = client
        .database(&format!("{db_name}~{branch}"))
        .collection("people");
    on_branch
        .insert_one(doc! {"_id": 500, "name": "branch-only"})
        .await?;
    on_branch
        .update_one(
            doc! {"_id": 0},
            doc! {"$set": {"name": "changed-on-branch"}},
        )
        .await?;
    assert_eq!(on_branch.count_documents(doc! {}).await?, 7);
    assert_eq!(people.count_documents(doc! {}).await?, 6);
    let zero = people
        .find_one(doc! {"_id": 0})
        .await?
        .context("_id 0 on main")?;
    assert_eq!(zero.get_str("name")?, "zero");
    assert!(people.find_one(doc! {"_id": 500}).await?.is_none());

    // a read at a past point of main
    let info = admin.run_command(doc! {"argonLogInfo": "main"}).await?;
    let head = info.get_document("branch")?.get_i64("headSeq")?;
    people.delete_one(doc! {"_id": 0}).await?;
    assert!(people.find_one(doc! {"_id": 0}).await?.is_none());
    let past: Collection<Document> = client
        .database(&format!("{db_name}~main@{head}"))
        .collection("people");
    let zero = past
        .find_one(doc! {"_id": 0})
        .await?
        .context("_id 0 at the past point")?;
    assert_eq!(zero.get_str("name")?, "zero");
    assert_eq!(past.count_documents(doc! {}).await?, 6);
    let e = past
        .insert_one(doc! {"_id": 1000})
        .await
        .expect_err("a write to a past point");
    assert!(e.to_string().contains("read-only"), "{e}");
    Ok(())
}
