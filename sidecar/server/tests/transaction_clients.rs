//! Transactions against the real `argon-sidecar` binary: pymongo (including
//! `with_transaction` and the lifetime limit), the Node.js driver's
//! `withTransaction` and mongoose, on the embedded store and on FerretDB;
//! and kill -9 in the middle of a stream of transactions, after which every
//! transaction is there whole or not at all.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon_testkit::FerretDb;
use argon_testkit::clients::{run_node, run_python};
use bson::{Document, doc};
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use mongodb::Collection;

const PYTHON: &str = include_str!("scenarios/transactions.py");
const NODE: &str = include_str!("scenarios/transactions.js");
const LIFETIME_SECONDS: &str = "2";

async fn both_stores() -> (Sidecar, Sidecar, FerretDb, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("a temporary directory");
    let wal = data.path().join("wal").display().to_string();
    let lifetime = ["--transaction-lifetime-limit-seconds", LIFETIME_SECONDS];
    let mut standalone_args = vec!["--data", wal.as_str()];
    standalone_args.extend(lifetime);
    let (ferretdb, standalone) = tokio::join!(
        FerretDb::start(),
        Sidecar::start("argon-sidecar", &standalone_args)
    );
    let ferretdb = ferretdb.expect("FerretDB starts");
    let mut store_args = vec!["--store", ferretdb.uri(), "--project", "txn"];
    store_args.extend(lifetime);
    let on_ferretdb = Sidecar::start("argon-sidecar-ferretdb", &store_args)
        .await
        .expect("a sidecar on FerretDB starts");
    (
        standalone.expect("the standalone sidecar starts"),
        on_ferretdb,
        ferretdb,
        data,
    )
}

async fn run_everywhere(client: &str, scenario: fn(String) -> anyhow::Result<String>) {
    let (standalone, on_ferretdb, _ferretdb, _data) = both_stores().await;
    // Without directConnection: drivers must find transactions supported
    // from the handshake alone.
    let uris = [standalone.port, on_ferretdb.port].map(|p| format!("mongodb://127.0.0.1:{p}/"));
    let runs = uris.map(|uri| tokio::task::spawn_blocking(move || scenario(uri)));
    for (store, run) in ["standalone", "FerretDB"].into_iter().zip(runs) {
        let out = run
            .await
            .expect("the scenario thread")
            .unwrap_or_else(|e| panic!("{client} transactions on {store}: {e:#}"));
        assert!(
            out.trim_end().ends_with("OK"),
            "{client} on {store} printed: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_transactions() {
    run_everywhere("pymongo", |uri| {
        run_python(PYTHON, &[&uri, "bank", LIFETIME_SECONDS])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_driver_and_mongoose_transactions() {
    run_everywhere("node", |uri| {
        run_node(NODE, &[("ARGON_URI", &uri), ("ARGON_DB", "shop")])
    })
    .await;
}

/// Transfers of 1 from `a` to `b`, each with a receipt (`writer`'s own
/// numbers), in transactions, until the server dies; returns the receipts
/// acknowledged. A transaction that loses a write conflict to another
/// writer's (a transient error, as on mongod) is tried again, as an
/// application does.
async fn transfer_until_killed(writer: i64, uri: String, acked: Arc<Mutex<Vec<i64>>>) {
    let Ok(client) = mongodb::Client::with_uri_str(&uri).await else {
        return;
    };
    let accounts: Collection<Document> = client.database("bank").collection("accounts");
    let receipts: Collection<Document> = client.database("bank").collection("receipts");
    for n in (writer * 1_000_000_000).. {
        let Ok(mut s) = client.start_session().await else {
            return;
        };
        let run = async {
            s.start_transaction().await?;
            accounts
                .update_one(doc! {"_id": "a"}, doc! {"$inc": {"balance": -1i64}})
                .session(&mut s)
                .await?;
            receipts
                .insert_one(doc! {"_id": n, "amount": 1i64})
                .session(&mut s)
                .await?;
            accounts
                .update_one(doc! {"_id": "b"}, doc! {"$inc": {"balance": 1i64}})
                .session(&mut s)
                .await?;
            s.commit_transaction().await
        };
        match run.await {
            Ok(()) => acked.lock().unwrap_or_else(|e| e.into_inner()).push(n),
            // Not a network error (the driver labels those transient too,
            // and the server is gone then): the server's own conflict.
            Err(e)
                if e.contains_label("TransientTransactionError")
                    && common::code(&e) == Some(112) =>
            {
                continue;
            }
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_transactions_leaves_each_whole_or_absent() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let wal = data.path().join("wal");
    let mut sidecar = Sidecar::standalone(&wal).await.expect("the sidecar starts");
    let client = sidecar.client().await.expect("a client");
    let accounts: Collection<Document> = client.database("bank").collection("accounts");
    accounts
        .insert_many([
            doc! {"_id": "a", "balance": 1_000_000i64},
            doc! {"_id": "b", "balance": 0i64},
        ])
        .await
        .expect("seed");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let acked = acked.clone();
            // After the kill, a writer between transactions learns the
            // server is gone in 2 s, not the driver's default 30.
            let uri = format!(
                "mongodb://127.0.0.1:{}/?appName=w{w}&retryWrites=false&serverSelectionTimeoutMS=2000",
                sidecar.port
            );
            tokio::spawn(transfer_until_killed(w, uri, acked))
        })
        .collect();
    // Let some transactions commit, then kill mid-stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap_or_else(|e| e.into_inner()).len() < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "transactions are not committing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sidecar.kill();
    for w in writers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
    drop(client);
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();

    let restarted = Sidecar::standalone(&wal)
        .await
        .expect("the sidecar restarts");
    let client = restarted.client().await.expect("a client");
    let db = client.database("bank");
    let a = db
        .collection::<Document>("accounts")
        .find_one(doc! {"_id": "a"})
        .await
        .expect("read a")
        .expect("a exists");
    let b = db
        .collection::<Document>("accounts")
        .find_one(doc! {"_id": "b"})
        .await
        .expect("read b")
        .expect("b exists");
    let receipts: Vec<i64> = db
        .collection::<Document>("receipts")
        .find(doc! {})
        .await
        .expect("find receipts")
        .try_collect::<Vec<Document>>()
        .await
        .expect("receipts")
        .iter()
        .filter_map(|d| d.get_i64("_id").ok())
        .collect();
    let (a, b) = (
        a.get_i64("balance").expect("a balance"),
        b.get_i64("balance").expect("b balance"),
    );
    // Whole or absent: money is conserved and every transfer has its receipt.
    assert_eq!(a + b, 1_000_000, "money appeared or vanished");
    assert_eq!(b, receipts.len() as i64, "a transfer without its receipt");
    for n in &acked {
        assert!(
            receipts.contains(n),
            "acknowledged transaction {n} was lost"
        );
    }
}
