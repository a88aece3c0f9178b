//! A branch endpoint with two replicas behind one Service: two real
//! `argon-sidecar` processes on one FerretDB store, a round-robin TCP
//! balancer in front (what a Service does per connection), and a driver in
//! load-balanced mode, as the operator's connection string says
//! (`loadBalanced=true`). Cursors and transactions must stay on the
//! replica that holds them; writes from both replicas must all land.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon_testkit::FerretDb;
use bson::{Document, doc};
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::options::ClientOptions;
use tokio::net::{TcpListener, TcpStream};

/// Accepts connections and hands each to the next backend in turn.
async fn round_robin(listener: TcpListener, backends: Vec<u16>, accepted: Arc<AtomicUsize>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let n = accepted.fetch_add(1, Ordering::Relaxed);
        let port = backends[n % backends.len()];
        tokio::spawn(async move {
            if let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_a_balancer_keep_cursors_and_transactions() {
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let (a, b) = tokio::join!(
        Sidecar::on_store("argon-sidecar-a", ferretdb.uri(), "lb"),
        Sidecar::on_store("argon-sidecar-b", ferretdb.uri(), "lb")
    );
    let (a, b) = (a.expect("replica a starts"), b.expect("replica b starts"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let balancer = tokio::spawn(round_robin(
        listener,
        vec![a.port, b.port],
        accepted.clone(),
    ));

    let mut options = ClientOptions::parse(format!(
        "mongodb://127.0.0.1:{port}/?loadBalanced=true&maxPoolSize=8"
    ))
    .await
    .expect("options");
    options.app_name = Some("lb-test".into());
    let client = mongodb::Client::with_options(options).expect("client");
    let items: Collection<Document> = client.database("shop").collection("items");

    // Writes from many connections, so both replicas take some.
    let mut writers = Vec::new();
    for w in 0..8i64 {
        let items = items.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..40i64 {
                items.insert_one(doc! {"_id": w * 1000 + i, "w": w}).await?;
            }
            Ok::<_, mongodb::error::Error>(())
        }));
    }
    for w in writers {
        w.await
            .expect("writer task")
            .expect("inserts through the balancer");
    }
    assert!(
        accepted.load(Ordering::Relaxed) >= 2,
        "the driver used one connection only; both replicas were not exercised"
    );

    // A cursor of many batches: every getMore must reach its replica.
    for _ in 0..4 {
        let all: Vec<Document> = items
            .find(doc! {})
            .batch_size(7)
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("every batch of the cursor");
        assert_eq!(all.len(), 320);
    }

    // Transactions from several sessions at once.
    let mut txns = Vec::new();
    for t in 0..4i64 {
        let client = client.clone();
        let items = items.clone();
        txns.push(tokio::spawn(async move {
            let mut s = client.start_session().await?;
            s.start_transaction().await?;
            items
                .insert_one(doc! {"_id": 10_000 + t, "txn": t})
                .session(&mut s)
                .await?;
            let n = items.count_documents(doc! {"w": t}).session(&mut s).await?;
            items
                .update_many(doc! {"w": t}, doc! {"$set": {"seen": n as i64}})
                .session(&mut s)
                .await?;
            s.commit_transaction().await
        }));
    }
    for t in txns {
        t.await
            .expect("transaction task")
            .expect("a transaction through the balancer");
    }
    assert_eq!(
        items
            .count_documents(doc! {"seen": 40i64})
            .await
            .expect("count"),
        160
    );
    assert_eq!(
        items
            .count_documents(doc! {"txn": {"$exists": true}})
            .await
            .expect("count"),
        4
    );

    // Both replicas see the same data.
    for replica in [&a, &b] {
        let direct = replica.client().await.expect("a direct client");
        let n = direct
            .database("shop")
            .collection::<Document>("items")
            .count_documents(doc! {})
            .await
            .expect("count on a replica");
        assert_eq!(n, 324);
    }
    balancer.abort();
}
