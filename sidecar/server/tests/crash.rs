//! kill -9 of a standalone `argon-sidecar` in the middle of a write load
//! from the Rust driver: after a restart on the same `--data` directory,
//! every write the server acknowledged is there.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bson::{Document, doc};
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use mongodb::Collection;

const WRITERS: i64 = 8;
/// Acknowledged writes to wait for before the kill (per round).
const ACKED_BEFORE_KILL: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal");
    let mut acked_all: Vec<i64> = Vec::new();
    for round in 0..2i64 {
        let mut sidecar = Sidecar::standalone(&data)
            .await
            .expect("the sidecar starts");
        let uri = format!(
            "{}&retryWrites=false&serverSelectionTimeoutMS=1000",
            sidecar.uri()
        );
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        let coll: Collection<Document> = client.database("app").collection("load");
        let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (coll, acked) = (coll.clone(), acked.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let id = round * 1_000_000_000 + w * 10_000_000 + i;
                        match coll
                            .insert_one(doc! {"_id": id, "pad": "x".repeat(200)})
                            .await
                        {
                            Ok(_) => acked.lock().expect("not poisoned").push(id),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        argon_testkit::wait_until("acknowledged writes", Duration::from_secs(60), || {
            let n = acked.lock().expect("not poisoned").len();
            async move { Ok(n >= ACKED_BEFORE_KILL) }
        })
        .await
        .expect("the load runs");
        sidecar.kill(); // SIGKILL, writes in flight
        for w in writers {
            w.await.expect("a writer ends when the server is gone");
        }
        acked_all.extend(acked.lock().expect("not poisoned").iter().copied());
    }

    let sidecar = Sidecar::standalone(&data)
        .await
        .expect("the sidecar restarts");
    let coll: Collection<Document> = sidecar
        .client()
        .await
        .unwrap()
        .database("app")
        .collection("load");
    let found: Vec<Document> = coll
        .find(doc! {})
        .projection(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let found: std::collections::HashSet<i64> =
        found.iter().filter_map(|d| d.get_i64("_id").ok()).collect();
    let missing: Vec<&i64> = acked_all.iter().filter(|id| !found.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes are missing after kill -9, e.g. {:?}",
        missing.len(),
        acked_all.len(),
        &missing[..missing.len().min(10)]
    );
    // At most the writes in flight at each kill were applied but not acknowledged.
    assert!(found.len() <= acked_all.len() + 2 * WRITERS as usize);
}
