//! `spec.import` against real servers: a source database in one FerretDB,
//! the project's store in another. The import lands in `main` exactly (every
//! document byte for byte, the indexes, in several bounded commits, the
//! large documents' commits stored as chunk records and a commit record), is
//! recorded in `status.import`, and never runs again: not on a restarted
//! operator, not after `spec.import` changes. Bad input (a missing Secret, a
//! missing key, an invalid or unreachable URI, a database that does not
//! exist, a main that already has data) says what is wrong in `Imported`.

use crate::support::*;
use argon_operator::crd::{ArgonProject, ImportPhase};
use argon_testkit::{FerretDb, free_port};
use argon_wal::{DocOp, LogStore, MongoStore, Namespace, ReadPoint, Seq, Wal, WalOptions};
use bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use mongodb::IndexModel;
use mongodb::options::IndexOptions;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const ORDERS: i32 = 2_500;
const CUSTOMERS: i32 = 50;
/// Documents of 5 MB: a batch of two is a 10 MB commit, stored in chunks.
const BLOBS: i32 = 3;
/// Copying thousands of documents on a loaded test machine.
const IMPORT_WAIT: Duration = Duration::from_secs(120);

async fn seed_source(source: &FerretDb) -> anyhow::Result<()> {
    let client = source.client().await?;
    let shop = client.database("shop");
    let customers: Vec<Document> = (0..CUSTOMERS)
        .map(|i| {
            doc! {
                "_id": ObjectId::new(),
                "code": format!("c{i:02}"),
                "email": format!("c{i:02}@example.com"),
                "since": DateTime::from_millis(1_700_000_000_000 + i64::from(i) * 86_400_000),
            }
        })
        .collect();
    shop.collection::<Document>("customers")
        .insert_many(customers)
        .await?;
    let orders: Vec<Document> = (0..ORDERS)
        .map(|i| {
            doc! {
                "_id": i,
                "customer": format!("c{:02}", i % CUSTOMERS),
                "total": f64::from(i) * 1.25,
                "items": [{"sku": format!("sku-{}", i % 7), "qty": i % 5 + 1}],
                "shipping": {"city": "Lyon", "express": i % 2 == 0},
                // ~1 KiB each: the orders take several commits.
                "note": "x".repeat(1000),
            }
        })
        .collect();
    shop.collection::<Document>("orders")
        .insert_many(orders)
        .await?;
    shop.collection::<Document>("orders")
        .create_index(
            IndexModel::builder()
                .keys(doc! {"customer": 1, "total": -1})
                .options(
                    IndexOptions::builder()
                        .name("by_customer".to_string())
                        .build(),
                )
                .build(),
        )
        .await?;
    shop.collection::<Document>("customers")
        .create_index(
            IndexModel::builder()
                .keys(doc! {"email": 1})
                .options(
                    IndexOptions::builder()
                        .name("email_1".to_string())
                        .unique(true)
                        .build(),
                )
                .build(),
        )
        .await?;
    let blobs: Vec<Document> = (0..BLOBS)
        .map(|i| {
            doc! {"_id": format!("blob-{i}"), "data": bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: (0..5_000_000u32).map(|b| (b % 251) as u8 ^ i as u8).collect(),
            }}
        })
        .collect();
    for b in blobs {
        shop.collection::<Document>("blobs").insert_one(b).await?;
    }
    // A database the spec does not name: it must not be copied.
    client
        .database("archive")
        .collection::<Document>("old")
        .insert_one(doc! {"_id": 1})
        .await?;
    Ok(())
}

async fn secret(
    client: &Client,
    ns: &str,
    name: &str,
    data: &[(&str, &str)],
) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    };
    api.create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// The store of project `name` as the operator opens it (see `ProjectFixture`).
async fn open_store(store: &FerretDb, name: &str) -> anyhow::Result<(Arc<MongoStore>, Wal)> {
    let db = format!("argon_{}", name.replace('-', "_"));
    let s = MongoStore::connect(store.uri(), &db).await?;
    let wal = Wal::open(s.clone(), name, WalOptions::default()).await?;
    Ok((s, wal))
}

/// Puts per commit of `main`, oldest first.
async fn puts_per_commit(
    store: &MongoStore,
    wal: &Wal,
    project: &str,
) -> anyhow::Result<Vec<usize>> {
    let log = wal.log_info("main").await?;
    let mut puts = Vec::new();
    let mut after = Seq::ZERO;
    loop {
        let page = store
            .read_commits(project, log.id, after, Seq::MAX, 100_000)
            .await?;
        puts.extend(page.iter().map(|c| {
            c.ops
                .iter()
                .filter(|o| matches!(o.op, DocOp::Put { .. }))
                .count()
        }));
        match page.last() {
            Some(c) if page.more => after = c.seq,
            _ => return Ok(puts),
        }
    }
}

fn imported(p: &ArgonProject) -> Option<(&str, &str, &str)> {
    project_condition(p, "Imported")
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

#[tokio::test]
async fn import_copies_a_database_into_main_once() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let store = FerretDb::start().await?;
    let source = FerretDb::start().await?;
    seed_source(&source).await?;
    let ns = namespace(&client, "import").await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();

    store_secret(&client, &ns, "shop-store", store.uri()).await?;
    store_secret(&client, &ns, "shop-source", source.uri()).await?;
    projects
        .create(
            &pp,
            &ProjectFixture::test("shop")
                .import("shop-source", &["shop"])
                .build(),
        )
        .await?;
    let operator = RunningOperator::start(client.clone(), test_config("import-op"));

    let project = wait_for_within(&projects, "shop", "Imported=True", IMPORT_WAIT, |p| {
        imported(p).is_some_and(|(s, _, _)| s == "True")
    })
    .await?;
    let st = project.status.clone().unwrap_or_default();
    let imp = st.import.clone().expect("status.import");
    assert_eq!(imp.phase, ImportPhase::Completed);
    assert_eq!(imp.attempts, 1);
    assert_eq!(
        (imp.databases, imp.collections, imp.indexes, imp.documents),
        (1, 3, 2, i64::from(ORDERS + CUSTOMERS + BLOBS))
    );
    assert!(imp.started_at.is_some() && imp.completed_at.is_some());
    let (_, reason, message) = imported(&project).expect("Imported");
    assert_eq!(reason, "Completed");
    assert!(
        message.contains("2553 documents") && message.contains("3 collections"),
        "{message}"
    );

    // main holds exactly the source's collections, documents and indexes.
    let (log_store, wal) = open_store(&store, "shop").await?;
    let state = wal.read("main", ReadPoint::Head).await?;
    assert_eq!(state.databases()?, vec!["shop".to_string()]);
    assert_eq!(
        state.collections("shop")?,
        vec![
            "blobs".to_string(),
            "customers".to_string(),
            "orders".to_string()
        ]
    );
    let src = source.client().await?;
    for coll in ["blobs", "customers", "orders"] {
        let want: Vec<Document> = src
            .database("shop")
            .collection::<Document>(coll)
            .find(doc! {})
            .await?
            .try_collect()
            .await?;
        let got = state
            .collection(&Namespace::new("shop", coll))?
            .expect("collection in main");
        assert_eq!(got.len()?, want.len() as u64, "documents of shop.{coll}");
        for d in &want {
            let id = d.get("_id").expect("_id");
            assert_eq!(
                got.get(id)?.map(|g| g.as_bytes().to_vec()),
                Some(d.to_vec()?),
                "shop.{coll} {id}"
            );
        }
    }
    let index = |coll: &str, name: &str| {
        state
            .collection(&Namespace::new("shop", coll))
            .expect("reads")
            .and_then(|c| {
                c.indexes()
                    .iter()
                    .find(|i| i.get_str("name").ok() == Some(name))
                    .cloned()
            })
    };
    let by_customer = index("orders", "by_customer").expect("index by_customer");
    assert_eq!(
        by_customer.get_document("key")?,
        &doc! {"customer": 1, "total": -1}
    );
    let email = index("customers", "email_1").expect("index email_1");
    assert_eq!(email.get_document("key")?, &doc! {"email": 1});
    assert_eq!(email.get_bool("unique").ok(), Some(true));
    for coll in ["orders", "customers"] {
        let n = state
            .collection(&Namespace::new("shop", coll))?
            .map_or(0, |c| c.indexes().len());
        assert_eq!(n, 2, "shop.{coll}: _id_ and one secondary index");
    }

    // Several bounded commits, each document put once.
    let log = wal.log_info("main").await?;
    let head = log.last.expect("main has commits").seq;
    assert_eq!(imp.main_seq, Some(head.0 as i64));
    assert_eq!(st.main_head_seq, Some(head.0 as i64));
    let puts_per_commit = puts_per_commit(&log_store, &wal, "shop").await?;
    assert_eq!(
        puts_per_commit.iter().sum::<usize>(),
        (ORDERS + CUSTOMERS + BLOBS) as usize
    );
    assert!(
        puts_per_commit.iter().all(|n| *n <= 1000),
        "{puts_per_commit:?}"
    );
    assert!(
        puts_per_commit.iter().filter(|n| **n > 0).count() >= 3,
        "orders span several commits: {puts_per_commit:?}"
    );
    // The 5 MB documents' commits are multi-record ones (chunks, then the
    // commit record), read back like any other above.
    let chunks = store
        .client()
        .await?
        .database("argon_shop")
        .collection::<Document>("chunks")
        .count_documents(doc! {"project": "shop"})
        .await?;
    assert!(chunks >= 4, "{chunks} chunk records");

    // A restarted operator, and a changed spec.import: no second import.
    operator.stop().await?;
    let patch = json!({
        "metadata": {"annotations": {"test.argon.dev/bump": "1"}},
        "spec": {"import": {"secretRef": {"name": "shop-source"}, "databases": ["archive"]}},
    });
    let patched = projects
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let generation = patched.metadata.generation;
    let operator = RunningOperator::start(client.clone(), test_config("import-op-2"));
    let project = wait_for(&projects, "shop", "the new generation reconciled", |p| {
        let st = p.status.as_ref();
        st.and_then(|s| s.observed_generation) == generation
            && st.and_then(|s| s.phase.as_deref()) == Some("Ready")
    })
    .await?;
    // A few more head refreshes (500 ms each) for a second import to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let project = projects.get("shop").await.unwrap_or(project);
    let after = project.status.clone().unwrap_or_default();
    assert_eq!(after.import.as_ref(), Some(&imp), "status.import unchanged");
    assert_eq!(imported(&project).map(|c| c.0), Some("True"));
    let log = wal.log_info("main").await?;
    assert_eq!(
        log.last.map(|l| l.seq),
        Some(head),
        "main's head did not move"
    );
    let (_, fresh) = open_store(&store, "shop").await?;
    let state = fresh.read("main", ReadPoint::Head).await?;
    assert_eq!(state.databases()?, vec!["shop".to_string()]);

    // Bad input: each says what is wrong; the operator keeps going.
    let unreachable = format!("mongodb://127.0.0.1:{}/", free_port()?);
    secret(&client, &ns, "no-key", &[("url", source.uri())]).await?;
    secret(&client, &ns, "bad-uri", &[("uri", "not-a-uri")]).await?;
    secret(&client, &ns, "down", &[("uri", &unreachable)]).await?;
    let mut cases: Vec<(&str, ProjectFixture, &[&str])> = vec![
        (
            "no-secret",
            ProjectFixture::test("no-secret").import("missing-source", &["shop"]),
            &["missing-source", "not found"],
        ),
        (
            "no-key",
            ProjectFixture::test("no-key").import("no-key", &["shop"]),
            &["no-key", "has no key \"uri\""],
        ),
        (
            "bad-uri",
            ProjectFixture::test("bad-uri").import("bad-uri", &["shop"]),
            &["connection string is invalid"],
        ),
        (
            "down",
            ProjectFixture::test("down").import("down", &["shop"]),
            &["listing the collections of database \"shop\""],
        ),
        (
            "no-db",
            ProjectFixture::test("no-db").import("shop-source", &["nope"]),
            &["\"nope\"", "does not exist"],
        ),
    ];
    for (name, fixture, _) in &mut cases {
        store_secret(&client, &ns, &format!("{name}-store"), store.uri()).await?;
        projects.create(&pp, &fixture.0).await?;
    }
    for (name, _, needles) in &cases {
        let p = wait_for(&projects, name, "Imported=False/ImportFailed", |p| {
            imported(p).is_some_and(|(s, r, _)| s == "False" && r == "ImportFailed")
        })
        .await?;
        let (_, _, message) = imported(&p).expect("Imported");
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{name}: {message:?} should name {needle:?}"
            );
        }
        let st = p.status.clone().unwrap_or_default();
        let imp = st.import.expect("status.import");
        assert_eq!(imp.phase, ImportPhase::Failed, "{name}");
        // Retried with backoff (5 s, 10 s, …), not at every status write.
        assert!(imp.attempts <= 4, "{name}: {} attempts", imp.attempts);
        assert_eq!(st.phase.as_deref(), Some("Failed"), "{name}");
        assert!(project_condition(&p, "Ready").is_some_and(|c| c.status == "False"));
    }

    // main already has data and no import on record: refused, nothing copied.
    store_secret(&client, &ns, "seeded-store", store.uri()).await?;
    let (_, seeded) = open_store(&store, "seeded").await?;
    seeded
        .write("main", |_| {
            Ok::<_, std::convert::Infallible>((
                vec![DocOp::Put {
                    ns: Namespace::new("app", "things"),
                    id: Bson::Int32(1),
                    doc: argon_wal::rawdoc::encode(&doc! {"_id": 1}).expect("encodes"),
                }],
                (),
            ))
        })
        .await
        .map_err(|e| anyhow::anyhow!("write: {e:?}"))?;
    projects
        .create(
            &pp,
            &ProjectFixture::test("seeded")
                .import("shop-source", &["shop"])
                .build(),
        )
        .await?;
    let p = wait_for(&projects, "seeded", "Imported=False/MainNotEmpty", |p| {
        imported(p).is_some_and(|(s, r, _)| s == "False" && r == "MainNotEmpty")
    })
    .await?;
    assert!(p.status.as_ref().is_some_and(|s| s.import.is_none()));
    assert_eq!(seeded.log_info("main").await?.commits, 1);

    let shop = projects.get("shop").await?;
    assert_eq!(shop.status.and_then(|s| s.phase).as_deref(), Some("Ready"));
    operator.stop().await?;
    Ok(())
}

#[tokio::test]
async fn import_resumes_after_an_operator_crash_without_duplicates() -> anyhow::Result<()> {
    const EVENTS: i32 = 30_000;
    let (_server, client) = kube_with_crds().await?;
    let store = FerretDb::start().await?;
    let source = FerretDb::start().await?;
    let events = source
        .client()
        .await?
        .database("big")
        .collection::<Document>("events");
    for chunk in 0..EVENTS / 5_000 {
        let docs: Vec<Document> = (chunk * 5_000..(chunk + 1) * 5_000)
            .map(|i| doc! {"_id": i, "kind": format!("k{}", i % 3), "payload": "y".repeat(1000)})
            .collect();
        events.insert_many(docs).await?;
    }
    let ns = namespace(&client, "import-crash").await?;
    store_secret(&client, &ns, "big-store", store.uri()).await?;
    store_secret(&client, &ns, "big-source", source.uri()).await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    projects
        .create(
            &PostParams::default(),
            &ProjectFixture::test("big")
                .import("big-source", &["big"])
                .build(),
        )
        .await?;

    // Killed once progress shows documents in main, before the end.
    let first = RunningOperator::start(client.clone(), test_config("crash-1"));
    let midway = wait_for_within(&projects, "big", "import midway", IMPORT_WAIT, |p| {
        p.status
            .as_ref()
            .and_then(|s| s.import.as_ref())
            .is_some_and(|i| i.phase != ImportPhase::Running || i.documents > 0)
    })
    .await?;
    first.kill();
    let imp = midway.status.and_then(|s| s.import).expect("status.import");
    assert_eq!(imp.phase, ImportPhase::Running, "killed midway: {imp:?}");
    let (log_store, wal) = open_store(&store, "big").await?;
    let before = puts_per_commit(&log_store, &wal, "big").await?;
    let copied: usize = before.iter().sum();
    assert!(
        copied > 0 && copied < EVENTS as usize,
        "main holds part of the import: {copied}"
    );

    let second = RunningOperator::start(client.clone(), test_config("crash-2"));
    let project = wait_for_within(&projects, "big", "Imported=True", IMPORT_WAIT, |p| {
        imported(p).is_some_and(|(s, _, _)| s == "True")
    })
    .await?;
    second.stop().await?;
    let imp = project
        .status
        .and_then(|s| s.import)
        .expect("status.import");
    assert_eq!(imp.attempts, 2);
    assert_eq!(imp.documents, i64::from(EVENTS));
    let state = wal.read("main", ReadPoint::Head).await?;
    let got = state
        .collection(&Namespace::new("big", "events"))?
        .expect("big.events in main");
    assert_eq!(got.len()?, EVENTS as u64);
    assert_eq!(got.indexes().len(), 1, "only _id_");
    // The second attempt re-read everything but logged only what was missing.
    let puts = puts_per_commit(&log_store, &wal, "big").await?;
    assert_eq!(puts.iter().sum::<usize>(), EVENTS as usize, "{puts:?}");
    assert!(puts.iter().all(|n| *n <= 1000), "{puts:?}");
    Ok(())
}
