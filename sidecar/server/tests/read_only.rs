//! `argon-sidecar serve --read-only` (what the operator starts for an
//! `ArgonBranch` with `readOnly: true`, through `ARGON_READ_ONLY=true`):
//! reads and reset previews work; every write and branch change is refused
//! with IllegalOperation (code 20) naming the flag, and the data is untouched.

use crate::common;

use bson::{Document, doc};
use common::code;
use common::sidecar::Sidecar;
use mongodb::Collection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_server_refuses_writes_and_branch_changes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal");
    let data_arg = data.display().to_string();
    {
        let mut writable = Sidecar::standalone(&data)
            .await
            .expect("the sidecar starts");
        let c = writable.client().await.expect("a client");
        c.database("app")
            .collection::<Document>("items")
            .insert_many([doc! {"_id": 1, "v": "a"}, doc! {"_id": 2, "v": "b"}])
            .await
            .expect("insert on a writable server");
        writable.kill();
    }

    let ro = Sidecar::start("argon-sidecar-ro", &["--data", &data_arg, "--read-only"])
        .await
        .expect("the read-only sidecar starts");
    let client = ro.client().await.expect("a client");
    let items: Collection<Document> = client.database("app").collection("items");
    assert_eq!(items.count_documents(doc! {}).await.expect("count"), 2);

    let refusals = [
        items
            .insert_one(doc! {"_id": 3})
            .await
            .map(|_| ())
            .expect_err("insert"),
        items
            .update_one(doc! {"_id": 1}, doc! {"$set": {"v": "z"}})
            .await
            .map(|_| ())
            .expect_err("update"),
        items
            .delete_many(doc! {})
            .await
            .map(|_| ())
            .expect_err("delete"),
        client
            .database("app~other")
            .collection::<Document>("items")
            .insert_one(doc! {"_id": 4})
            .await
            .map(|_| ())
            .expect_err("insert on another branch"),
        client
            .database("admin")
            .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
            .await
            .map(|_| ())
            .expect_err("create a branch"),
        client
            .database("admin")
            .run_command(doc! {"argonResetBranch": "main", "toSeq": 0})
            .await
            .map(|_| ())
            .expect_err("reset"),
    ];
    for e in &refusals {
        assert_eq!(code(e), Some(20), "{e}");
        assert!(e.to_string().contains("read-only"), "{e}");
    }

    let preview = client
        .database("admin")
        .run_command(doc! {"argonResetBranch": "main", "toSeq": 0, "dryRun": true})
        .await
        .expect("a dry-run reset is a read");
    assert!(!preview.get_bool("applied").expect("applied"));
    let mut docs = items
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .expect("find");
    let mut seen = Vec::new();
    while docs.advance().await.expect("next") {
        seen.push(docs.deserialize_current().expect("a document"));
    }
    assert_eq!(
        seen,
        vec![doc! {"_id": 1, "v": "a"}, doc! {"_id": 2, "v": "b"}]
    );
}
