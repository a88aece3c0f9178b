//! Multi-document transactions through the Rust `mongodb` driver, against
//! the server in-process: all-or-nothing commits, aborts, reads of a
//! snapshot plus the transaction's own writes, write conflicts labelled
//! for retry, unique keys across transactions, refused commands, and the
//! session rules (repeated commit, stale txnNumber). Pymongo, the Node
//! driver and mongoose run theirs against the real binary in
//! `transaction_clients.rs`.

use crate::common;

use bson::{Document, doc};
use common::{RawClient, TestServer, code};
use futures::FutureExt;
use mongodb::Collection;
use mongodb::error::{TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::options::IndexOptions;

async fn balance(accounts: &Collection<Document>, id: &str) -> i64 {
    let d = accounts
        .find_one(doc! {"_id": id})
        .await
        .expect("find an account")
        .expect("the account exists");
    d.get_i64("balance")
        .or_else(|_| d.get_i32("balance").map(i64::from))
        .expect("a numeric balance")
}

async fn seeded(server: &TestServer) -> (mongodb::Client, Collection<Document>) {
    let client = server.client().await;
    let accounts: Collection<Document> = client.database("bank").collection("accounts");
    accounts
        .insert_many([
            doc! {"_id": "a", "balance": 100i64},
            doc! {"_id": "b", "balance": 0i64},
        ])
        .await
        .expect("seed the accounts");
    (client, accounts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_commits_whole_and_is_invisible_until_then() {
    let server = TestServer::start().await;
    let (client, accounts) = seeded(&server).await;
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    accounts
        .update_one(doc! {"_id": "a"}, doc! {"$inc": {"balance": -10i64}})
        .session(&mut session)
        .await
        .unwrap();
    // The transaction reads its own write; others do not see it yet.
    let inside = accounts
        .find_one(doc! {"_id": "a"})
        .session(&mut session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inside.get_i64("balance").unwrap(), 90);
    assert_eq!(balance(&accounts, "a").await, 100);
    accounts
        .update_one(doc! {"_id": "b"}, doc! {"$inc": {"balance": 10i64}})
        .session(&mut session)
        .await
        .unwrap();
    accounts
        .insert_one(doc! {"_id": "log1", "note": "transfer"})
        .session(&mut session)
        .await
        .unwrap();
    assert_eq!(accounts.count_documents(doc! {}).await.unwrap(), 2);
    session.commit_transaction().await.unwrap();
    assert_eq!(balance(&accounts, "a").await, 90);
    assert_eq!(balance(&accounts, "b").await, 10);
    assert_eq!(accounts.count_documents(doc! {}).await.unwrap(), 3);
    // One commit: the log's head moved by exactly one.
    let info = client
        .database("admin")
        .run_command(doc! {"argonLogInfo": "main"})
        .await
        .unwrap();
    assert_eq!(
        info.get_document("branch")
            .and_then(|b| b.get_i64("headSeq"))
            .ok(),
        Some(2),
        "{info}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_leaves_nothing() {
    let server = TestServer::start().await;
    let (client, accounts) = seeded(&server).await;
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    accounts
        .update_one(doc! {"_id": "a"}, doc! {"$set": {"balance": 0i64}})
        .session(&mut session)
        .await
        .unwrap();
    accounts
        .delete_one(doc! {"_id": "b"})
        .session(&mut session)
        .await
        .unwrap();
    session.abort_transaction().await.unwrap();
    assert_eq!(balance(&accounts, "a").await, 100);
    assert_eq!(balance(&accounts, "b").await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_write_to_the_same_document_conflicts_and_a_retry_succeeds() {
    let server = TestServer::start().await;
    let (client, accounts) = seeded(&server).await;
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    accounts
        .update_one(doc! {"_id": "a"}, doc! {"$inc": {"balance": -10i64}})
        .session(&mut session)
        .await
        .unwrap();
    // Another client changes "a" and commits first.
    accounts
        .update_one(doc! {"_id": "a"}, doc! {"$inc": {"balance": 1000i64}})
        .await
        .unwrap();
    let e = session.commit_transaction().await.unwrap_err();
    assert_eq!(code(&e), Some(112), "{e}");
    assert!(e.contains_label(TRANSIENT_TRANSACTION_ERROR), "{e}");
    assert_eq!(balance(&accounts, "a").await, 1100);

    // The driver's convenient API retries the whole transaction.
    let mut context = (accounts.clone(), 0i32);
    session
        .start_transaction()
        .and_run(&mut context, |session, context| {
            async move {
                let (accounts, attempts) = &mut **context;
                *attempts += 1;
                accounts
                    .update_one(doc! {"_id": "a"}, doc! {"$inc": {"balance": -10i64}})
                    .session(&mut *session)
                    .await?;
                if *attempts == 1 {
                    // Interfere once: the first attempt must conflict.
                    let other = accounts.clone();
                    tokio::spawn(async move {
                        other
                            .update_one(doc! {"_id": "a"}, doc! {"$inc": {"balance": 1i64}})
                            .await
                    })
                    .await
                    .expect("the interfering write's task")?;
                }
                accounts
                    .update_one(doc! {"_id": "b"}, doc! {"$inc": {"balance": 10i64}})
                    .session(&mut *session)
                    .await?;
                Ok(())
            }
            .boxed()
        })
        .await
        .unwrap();
    let attempts = context.1;
    assert_eq!(attempts, 2);
    assert_eq!(balance(&accounts, "a").await, 1091);
    assert_eq!(balance(&accounts, "b").await, 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// As on mongod, the first transaction to write a document holds it until
/// it ends: the second writer's statement fails at once with a transient
/// WriteConflict (its transaction aborted), and the first commits. Once
/// the first has ended, the document is free again.
async fn two_transactions_on_one_document_first_writer_wins() {
    let server = TestServer::start().await;
    let (client, accounts) = seeded(&server).await;
    let mut s1 = client.start_session().await.unwrap();
    let mut s2 = client.start_session().await.unwrap();
    s1.start_transaction().await.unwrap();
    s2.start_transaction().await.unwrap();
    accounts
        .update_one(doc! {"_id": "b"}, doc! {"$set": {"balance": 1i64}})
        .session(&mut s1)
        .await
        .unwrap();
    let e = accounts
        .update_one(doc! {"_id": "b"}, doc! {"$set": {"balance": 2i64}})
        .session(&mut s2)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(112), "{e}");
    assert!(e.contains_label("TransientTransactionError"), "{e}");
    let e = s2.commit_transaction().await.unwrap_err();
    assert_eq!(code(&e), Some(251), "the second was aborted: {e}");
    s1.commit_transaction().await.unwrap();
    assert_eq!(balance(&accounts, "b").await, 1);
    // Released at the end of the first: a new transaction writes it.
    s2.start_transaction().await.unwrap();
    accounts
        .update_one(doc! {"_id": "b"}, doc! {"$set": {"balance": 3i64}})
        .session(&mut s2)
        .await
        .unwrap();
    s2.commit_transaction().await.unwrap();
    assert_eq!(balance(&accounts, "b").await, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_keys_hold_across_transactions() {
    let server = TestServer::start().await;
    let (client, accounts) = seeded(&server).await;
    accounts
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"email": 1})
                .options(IndexOptions::builder().unique(true).sparse(true).build())
                .build(),
        )
        .await
        .unwrap();
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    accounts
        .insert_one(doc! {"_id": "c", "email": "x@example.com"})
        .session(&mut session)
        .await
        .unwrap();
    // A different document with the same unique key commits first.
    accounts
        .insert_one(doc! {"_id": "d", "email": "x@example.com"})
        .await
        .unwrap();
    let e = session.commit_transaction().await.unwrap_err();
    assert_eq!(code(&e), Some(11000), "{e}");
    assert!(
        accounts
            .find_one(doc! {"_id": "c"})
            .await
            .unwrap()
            .is_none()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_statement_aborts_and_refused_commands_are_named() {
    let server = TestServer::start().await;
    let (client, accounts) = seeded(&server).await;
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    accounts
        .update_one(doc! {"_id": "a"}, doc! {"$set": {"balance": 1i64}})
        .session(&mut session)
        .await
        .unwrap();
    let e = accounts
        .insert_one(doc! {"_id": "b"})
        .session(&mut session)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(11000), "{e}");
    // The transaction is gone: its first write never lands.
    let e = session.commit_transaction().await.unwrap_err();
    assert_eq!(code(&e), Some(251), "{e}");
    assert_eq!(balance(&accounts, "a").await, 100);

    session.start_transaction().await.unwrap();
    let e = client
        .database("bank")
        .run_command(doc! {"count": "accounts"})
        .session(&mut session)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(263), "{e}");
    let e = client
        .database("bank~other")
        .collection::<Document>("accounts")
        .find_one(doc! {})
        .session(&mut session)
        .await;
    assert!(e.is_err());
    server.stop().await;
}

/// The session rules at the wire: a repeated commit answers again, a stale
/// or unknown txnNumber is refused, commit outside a transaction is refused,
/// and a reply's error carries its labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_rules_on_the_wire() {
    let server = TestServer::start().await;
    let mut c = RawClient::connect(server.addr).await;
    let lsid =
        doc! {"id": bson::Binary {subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![9; 16]}};
    let stmt = |body: Document, n: i64, start: bool| {
        let mut d = body;
        d.insert("lsid", lsid.clone());
        d.insert("txnNumber", n);
        d.insert("autocommit", false);
        if start {
            d.insert("startTransaction", true);
        }
        d.insert("$db", "t");
        d
    };
    let r = c
        .command(stmt(
            doc! {"insert": "c", "documents": [{"_id": 1}]},
            5,
            true,
        ))
        .await;
    assert_eq!(r.get_f64("ok").ok(), Some(1.0), "{r}");
    let mut commit = stmt(doc! {"commitTransaction": 1}, 5, false);
    commit.insert("$db", "admin");
    let first = c.command(commit.clone()).await;
    assert_eq!(first.get_f64("ok").ok(), Some(1.0), "{first}");
    let again = c.command(commit.clone()).await;
    assert_eq!(again.get_f64("ok").ok(), Some(1.0), "{again}");
    assert_eq!(first.get("operationTime"), again.get("operationTime"));
    // Stale number.
    let r = c.command(stmt(doc! {"find": "c"}, 4, true)).await;
    assert_eq!(r.get_i32("code").ok(), Some(225), "{r}");
    // A number never started.
    let r = c.command(stmt(doc! {"find": "c"}, 9, false)).await;
    assert_eq!(r.get_i32("code").ok(), Some(251), "{r}");
    assert_eq!(
        r.get_array("errorLabels").ok().map(|l| l.len()),
        Some(1),
        "{r}"
    );
    // Not a transaction statement at all.
    let r = c
        .command(doc! {"commitTransaction": 1, "$db": "admin"})
        .await;
    assert_eq!(r.get_f64("ok").ok(), Some(0.0), "{r}");
    // autocommit: true is refused by name.
    let mut bad = stmt(doc! {"find": "c"}, 10, true);
    bad.insert("autocommit", true);
    let r = c.command(bad).await;
    assert_eq!(r.get_i32("code").ok(), Some(72), "{r}");
    let _ = UNKNOWN_TRANSACTION_COMMIT_RESULT;
    server.stop().await;
}
