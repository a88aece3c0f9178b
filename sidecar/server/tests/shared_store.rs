//! Two real `argon-sidecar` processes on one branch of one project over a
//! FerretDB store (the sidecar-mode deployment: several pods, one branch).
//! Writes through one are read through the other (a head read catches up
//! with the store); concurrent inserts of one `_id` through both: exactly
//! one succeeds, the other gets E11000 (optimistic append picks one winner).

use crate::common;

use argon_testkit::FerretDb;
use bson::{Bson, Document, doc};
use common::code;
use common::sidecar::Sidecar;
use mongodb::Collection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_share_one_branch_over_ferretdb() {
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    // Both start at once: both race to create the project and `main`.
    let (a, b) = tokio::join!(
        Sidecar::on_store("sidecar-a", ferretdb.uri(), "shared"),
        Sidecar::on_store("sidecar-b", ferretdb.uri(), "shared")
    );
    let (a, b) = (a.expect("sidecar a starts"), b.expect("sidecar b starts"));
    let (ca, cb) = (a.client().await.unwrap(), b.client().await.unwrap());
    let via_a: Collection<Document> = ca.database("app").collection("items");
    let via_b: Collection<Document> = cb.database("app").collection("items");

    // writes from one are read through the other, both ways
    via_a.insert_one(doc! {"_id": 1, "by": "a"}).await.unwrap();
    let seen = via_b.find_one(doc! {"_id": 1}).await.unwrap();
    assert_eq!(seen, Some(doc! {"_id": 1, "by": "a"}));
    via_b
        .update_one(doc! {"_id": 1}, doc! {"$set": {"by": "b"}})
        .await
        .unwrap();
    let seen = via_a.find_one(doc! {"_id": 1}).await.unwrap().unwrap();
    assert_eq!(seen.get_str("by").unwrap(), "b");
    via_a
        .insert_many((2..102).map(|i| doc! {"_id": i}))
        .await
        .unwrap();
    assert_eq!(via_b.count_documents(doc! {}).await.unwrap(), 101);

    // a branch created through one is usable through the other
    ca.database("admin")
        .run_command(doc! {"argonCreateBranch": "feature", "from": "main"})
        .await
        .unwrap();
    let feature_b: Collection<Document> = cb.database("app~feature").collection("items");
    feature_b.insert_one(doc! {"_id": "f"}).await.unwrap();
    let feature_a: Collection<Document> = ca.database("app~feature").collection("items");
    assert_eq!(feature_a.count_documents(doc! {}).await.unwrap(), 102);
    assert_eq!(via_a.count_documents(doc! {}).await.unwrap(), 101);

    // concurrent inserts of the same _id: exactly one wins each race
    for i in 0..20 {
        let id = format!("race-{i}");
        let (ra, rb) = tokio::join!(
            via_a.insert_one(doc! {"_id": &id, "by": "a"}),
            via_b.insert_one(doc! {"_id": &id, "by": "b"})
        );
        let winner = match (&ra, &rb) {
            (Ok(_), Err(e)) => {
                assert_eq!(code(e), Some(11000), "{id}: b's error: {e}");
                "a"
            }
            (Err(e), Ok(_)) => {
                assert_eq!(code(e), Some(11000), "{id}: a's error: {e}");
                "b"
            }
            other => panic!("{id}: exactly one insert must succeed, got {other:?}"),
        };
        // both sidecars agree on who won
        for coll in [&via_a, &via_b] {
            let d = coll.find_one(doc! {"_id": &id}).await.unwrap().unwrap();
            assert_eq!(d.get_str("by").unwrap(), winner, "{id}");
        }
    }
    let expected = 101 + 20;
    assert_eq!(via_a.count_documents(doc! {}).await.unwrap(), expected);
    assert_eq!(via_b.count_documents(doc! {}).await.unwrap(), expected);

    // both see one history of main
    let heads: Vec<Bson> = futures::future::join_all([&ca, &cb].map(|c| async move {
        c.database("admin")
            .run_command(doc! {"argonLogInfo": "main"})
            .await
            .unwrap()
            .get_document("branch")
            .unwrap()
            .get("headSeq")
            .cloned()
            .unwrap()
    }))
    .await;
    assert_eq!(heads[0], heads[1]);
}
