//! Many sidecars, one branch: real `argon-sidecar` processes on one FerretDB
//! store, each with a peer listener, so they choose one writer per branch
//! and forward their writes to it (`writer`).
//!
//! - four sidecars under concurrent inserts: every one makes progress,
//!   nothing acknowledged is lost, all end with the same state; then the
//!   writer is killed (-9) under load and the other three go on;
//! - a write through a forwarding sidecar is read back through it at once
//!   (read-your-writes), and a read elsewhere with `afterClusterTime` sees it;
//! - duplicate `_id`s and unique keys raced through two sidecars: one wins;
//! - a transaction begun on a forwarding sidecar runs on the writer;
//! - the peer listener runs forwarded writes only, for a sidecar that
//!   proved the project's peer key (strangers, wrong keys, forged proofs
//!   and malformed steps refused), and forwarding works with `--auth`.

use crate::common;
use common::{metric, metrics_text};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use argon_sidecar::writer::peer_auth::{Forwarder, PeerKey};
use argon_testkit::{FerretDb, free_port};
use bson::{Bson, Document, doc};
use common::sidecar::Sidecar;
use common::{RawClient, code};
use futures::FutureExt;
use mongodb::{Client, Collection};

struct Pod {
    sidecar: Sidecar,
    peer_port: u16,
    client: Client,
}

async fn pod(name: &str, store: &str, project: &str) -> Pod {
    pod_with(name, store, project, &[]).await
}

async fn pod_with(name: &str, store: &str, project: &str, extra: &[&str]) -> Pod {
    let peer_port = free_port().expect("a free port");
    let peer = format!("127.0.0.1:{peer_port}");
    let mut args = vec![
        "--store",
        store,
        "--project",
        project,
        "--peer-listen",
        &peer,
    ];
    args.extend_from_slice(extra);
    let sidecar = Sidecar::start(name, &args)
        .await
        .expect("the sidecar starts");
    let client = sidecar.client().await.expect("a client");
    Pod {
        sidecar,
        peer_port,
        client,
    }
}

/// The peer port of the branch's writer, from the lease in the store.
async fn writer_port(ferretdb: &FerretDb, project: &str) -> Option<u16> {
    let lease = ferretdb
        .client()
        .await
        .expect("a FerretDB client")
        .database("argon")
        .collection::<Document>("leases")
        .find_one(doc! {"_id": format!("{project}/main")})
        .await
        .expect("the lease is readable")?;
    lease
        .get_str("address")
        .ok()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

/// Inserts through `coll` until `stop`; returns the acknowledged `_id`s.
async fn insert_until(
    coll: Collection<Document>,
    prefix: String,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut acked = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("{prefix}-{i}");
        i += 1;
        if coll.insert_one(doc! {"_id": &id}).await.is_ok() {
            acked.push(id);
        }
    }
    acked
}

/// How many `_id`s of `acked` are not readable through `coll` (one scan).
async fn missing(coll: &Collection<Document>, acked: &[String]) -> usize {
    use futures::TryStreamExt;
    let present: std::collections::HashSet<String> = coll
        .find(doc! {})
        .projection(doc! {"_id": 1})
        .await
        .expect("a scan of the collection")
        .try_collect::<Vec<Document>>()
        .await
        .expect("the scan completes")
        .iter()
        .filter_map(|d| d.get_str("_id").ok().map(str::to_string))
        .collect();
    acked.iter().filter(|id| !present.contains(*id)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_sidecars_share_one_branch_and_survive_the_writer() {
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let mut pods = Vec::new();
    for n in 0..4 {
        pods.push(pod(&format!("sidecar-{n}"), ferretdb.uri(), "fleet").await);
    }
    let colls: Vec<Collection<Document>> = pods
        .iter()
        .map(|p| p.client.database("app").collection("items"))
        .collect();

    // Phase 1: two writers per sidecar for a few seconds.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (n, c) in colls.iter().enumerate() {
        for t in 0..2 {
            tasks.push((
                n,
                tokio::spawn(insert_until(c.clone(), format!("p1-{n}-{t}"), stop.clone())),
            ));
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let mut per_pod = [0usize; 4];
    let mut acked = Vec::new();
    for (n, t) in tasks {
        let ids = t.await.unwrap();
        per_pod[n] += ids.len();
        acked.extend(ids);
    }
    println!("phase 1: {per_pod:?} inserts acknowledged per sidecar");
    let mean = acked.len() / 4;
    assert!(mean > 0, "no insert was acknowledged: {per_pod:?}");
    for (n, count) in per_pod.iter().enumerate() {
        // Starvation is the failure this catches (2 of 4 sidecars had two
        // acknowledged inserts each before writes were forwarded).
        assert!(
            *count * 4 >= mean,
            "sidecar {n} acknowledged {count} inserts, the mean is {mean}: {per_pod:?}"
        );
    }
    // Every sidecar reads every acknowledged insert, and the same count.
    for (n, c) in colls.iter().enumerate() {
        assert_eq!(missing(c, &acked).await, 0, "through sidecar {n}");
        assert_eq!(
            c.count_documents(doc! {}).await.unwrap() as usize,
            acked.len(),
            "through sidecar {n}"
        );
    }

    println!("phase 1 checked");
    // Phase 2: kill -9 the writer under load; the others go on.
    let port = writer_port(&ferretdb, "fleet")
        .await
        .expect("a writer holds the lease");
    let victim = pods
        .iter()
        .position(|p| p.peer_port == port)
        .expect("the lease names one of the sidecars");
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (n, c) in colls.iter().enumerate() {
        if n == victim {
            continue;
        }
        tasks.push((
            n,
            tokio::spawn(insert_until(c.clone(), format!("p2-{n}"), stop.clone())),
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    pods[victim].sidecar.kill();
    let killed = Instant::now();
    // Long enough for a lease period and some writes after it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let mut after: HashMap<usize, Vec<String>> = HashMap::new();
    for (n, t) in tasks {
        after.insert(n, t.await.unwrap());
    }
    let counts: Vec<(usize, usize)> = after.iter().map(|(n, ids)| (*n, ids.len())).collect();
    println!(
        "phase 2: writer {victim} killed; acknowledged since: {counts:?} ({:?} after the kill)",
        killed.elapsed()
    );
    let survivor = (0..4).find(|n| *n != victim).unwrap();
    for (n, ids) in &after {
        assert!(
            !ids.is_empty(),
            "sidecar {n} acknowledged nothing after the writer died"
        );
        // The last inserts of every survivor were acknowledged after the kill.
        let last = ids.last().unwrap();
        assert!(
            colls[survivor]
                .find_one(doc! {"_id": last})
                .await
                .unwrap()
                .is_some(),
            "sidecar {n}'s last acknowledged insert {last} is missing"
        );
    }
    let all: Vec<String> = acked
        .iter()
        .cloned()
        .chain(after.values().flatten().cloned())
        .collect();
    for n in (0..4).filter(|n| *n != victim) {
        assert_eq!(missing(&colls[n], &all).await, 0, "through sidecar {n}");
    }
    println!("phase 2 checked {:?} after the kill", killed.elapsed());
    // A new writer took the lease.
    let new_port = writer_port(&ferretdb, "fleet").await.unwrap();
    assert_ne!(
        new_port,
        port,
        "the dead writer still holds the lease {:?} after the kill",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_writes_are_read_back_and_unique_keys_hold_across_sidecars() {
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    // Reads may be a minute stale: what must be seen at once is seen
    // because the sidecar knows it must, not because every read catches up.
    let stale = ["--max-staleness-ms", "60000"];
    let a = pod_with("sidecar-a", ferretdb.uri(), "pair", &stale).await;
    // `a` writes first: it takes the lease; `b` forwards.
    let via_a: Collection<Document> = a.client.database("app").collection("people");
    via_a.insert_one(doc! {"_id": 0}).await.unwrap();
    let b = pod_with("sidecar-b", ferretdb.uri(), "pair", &stale).await;
    let via_b: Collection<Document> = b.client.database("app").collection("people");
    assert_eq!(writer_port(&ferretdb, "pair").await, Some(a.peer_port));

    // read-your-writes through the forwarding sidecar, every time
    for i in 1..=30 {
        via_b.insert_one(doc! {"_id": i, "v": 1}).await.unwrap();
        assert!(
            via_b.find_one(doc! {"_id": i}).await.unwrap().is_some(),
            "insert {i}"
        );
        via_b
            .update_one(doc! {"_id": i}, doc! {"$inc": {"v": 1}})
            .await
            .unwrap();
        let d = via_b.find_one(doc! {"_id": i}).await.unwrap().unwrap();
        assert_eq!(d.get_i32("v").unwrap(), 2, "update {i}");
    }
    // causal read elsewhere: afterClusterTime of a write `a` committed,
    // read through `b` (whose head may be a minute old otherwise)
    let reply = a
        .client
        .database("app")
        .run_command(doc! {"insert": "people", "documents": [{"_id": "causal"}]})
        .await
        .unwrap();
    let time = reply.get("operationTime").cloned().expect("operationTime");
    let found = b
        .client
        .database("app")
        .run_command(doc! {"find": "people", "filter": {"_id": "causal"},
        "readConcern": {"afterClusterTime": time}})
        .await
        .unwrap();
    let batch = found
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    assert_eq!(batch.len(), 1, "{found}");

    // duplicate _id raced through both: one wins, the other gets E11000
    for i in 0..10 {
        let id = format!("race-{i}");
        let (ra, rb) = tokio::join!(
            via_a.insert_one(doc! {"_id": &id, "by": "a"}),
            via_b.insert_one(doc! {"_id": &id, "by": "b"})
        );
        match (&ra, &rb) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => assert_eq!(code(e), Some(11000), "{id}: {e}"),
            other => panic!("{id}: exactly one insert must succeed, got {other:?}"),
        }
    }
    // a unique secondary index holds across both
    let accounts_a: Collection<Document> = a.client.database("app").collection("accounts");
    let accounts_b: Collection<Document> = b.client.database("app").collection("accounts");
    accounts_a
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"email": 1})
                .options(
                    mongodb::options::IndexOptions::builder()
                        .unique(true)
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    for i in 0..10 {
        let email = format!("user{i}@example.com");
        let (ra, rb) = tokio::join!(
            accounts_a.insert_one(doc! {"_id": format!("ua-{i}"), "email": &email}),
            accounts_b.insert_one(doc! {"_id": format!("ub-{i}"), "email": &email})
        );
        match (&ra, &rb) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => assert_eq!(code(e), Some(11000), "{email}: {e}"),
            other => panic!("{email}: exactly one insert must succeed, got {other:?}"),
        }
    }
    assert_eq!(accounts_b.count_documents(doc! {}).await.unwrap(), 10);

    // a transaction begun on `b` runs on the writer and commits there
    let mut session = b.client.start_session().await.unwrap();
    session
        .start_transaction()
        .and_run(&mut (via_b.clone()), |s, coll| {
            async move {
                coll.insert_one(doc! {"_id": "t1"}).session(&mut *s).await?;
                let seen = coll.find_one(doc! {"_id": "t1"}).session(&mut *s).await?;
                assert!(seen.is_some(), "a transaction reads its own write");
                coll.update_one(doc! {"_id": 1}, doc! {"$set": {"v": 10}})
                    .session(&mut *s)
                    .await?;
                Ok(())
            }
            .boxed()
        })
        .await
        .unwrap();
    for coll in [&via_a, &via_b] {
        assert!(coll.find_one(doc! {"_id": "t1"}).await.unwrap().is_some());
        let d = coll.find_one(doc! {"_id": 1}).await.unwrap().unwrap();
        assert_eq!(d.get("v"), Some(&Bson::Int32(10)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_listener_runs_forwarded_writes_only_for_a_sidecar_holding_the_key() {
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let a = pod("sidecar-a", ferretdb.uri(), "peer").await;
    let peer_addr = format!("127.0.0.1:{}", a.peer_port).parse().unwrap();

    // Anyone else who reaches the port: nothing but the handshake.
    let stranger = Client::with_uri_str(format!(
        "mongodb://127.0.0.1:{}/?directConnection=true",
        a.peer_port
    ))
    .await
    .unwrap();
    let coll: Collection<Document> = stranger.database("app").collection("c");
    let err = coll.insert_one(doc! {"_id": "stranger"}).await.unwrap_err();
    assert_eq!(code(&err), Some(13), "{err}");
    let err = stranger
        .database("admin")
        .run_command(doc! {"argonCommits": 4i64, "after": 0i64})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(13), "the commit feed: {err}");

    // A key that is not the project's (another store, another project, a
    // forged proof): refused, and the connection stays unauthenticated.
    let key = PeerKey::derive(ferretdb.uri().as_bytes(), "peer");
    for wrong in [
        PeerKey::derive(b"mongodb://elsewhere/", "peer"),
        PeerKey::derive(ferretdb.uri().as_bytes(), "other"),
    ] {
        let mut raw = RawClient::connect(peer_addr).await;
        let (me, first) = Forwarder::start();
        let reply = raw.command(first).await;
        assert!(
            me.respond(&wrong, &reply).is_err(),
            "the writer's proof passed a wrong key"
        );
        let forged = doc! {"argonPeerAuth": 2, "proof": bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0; 32] }, "$db": "admin"};
        let reply = raw.command(forged).await;
        assert_eq!(reply.get_i32("code").ok(), Some(18), "{reply}");
        let reply = raw
            .command(doc! {"insert": "c", "documents": [{"_id": "forged"}], "$db": "app"})
            .await;
        assert_eq!(reply.get_i32("code").ok(), Some(13), "{reply}");
    }
    // Hostile steps: each fails alone.
    let mut raw = RawClient::connect(peer_addr).await;
    for bad in [
        doc! {"argonPeerAuth": 2, "$db": "admin"},
        doc! {"argonPeerAuth": 1, "nonce": "x", "$db": "admin"},
        doc! {"argonPeerAuth": 1, "nonce": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1; 100_000] }, "$db": "admin"},
        doc! {"argonPeerAuth": 9, "$db": "admin"},
        doc! {"argonPeerAuth": "1", "$db": "admin"},
    ] {
        let reply = raw.command(bad.clone()).await;
        assert_ne!(reply.get_f64("ok").ok(), Some(1.0), "{bad}: {reply}");
    }

    // The project's key: forwarded writes run, nothing else does.
    let mut raw = RawClient::connect(peer_addr).await;
    let (me, first) = Forwarder::start();
    let reply = raw.command(first).await;
    let second = me.respond(&key, &reply).expect("the writer holds the key");
    Forwarder::finish(&raw.command(second).await).expect("this side's proof accepted");
    let reply = raw
        .command(doc! {"insert": "c", "documents": [{"_id": 1}], "$db": "app"})
        .await;
    assert_eq!(reply.get_i32("n").ok(), Some(1), "{reply}");
    let reply = raw.command(doc! {"find": "c", "$db": "app"}).await;
    assert_eq!(
        reply.get_i32("code").ok(),
        Some(13),
        "reads stay local: {reply}"
    );
    let reply = raw
        .command(doc! {"argonResetBranch": "main", "toSeq": 0i64, "$db": "admin"})
        .await;
    assert_eq!(reply.get_i32("code").ok(), Some(13), "{reply}");
    // The commit feed: malformed arguments fail that request only; a
    // branch this sidecar never wrote has nothing to feed.
    for bad in [
        doc! {"argonCommits": -1i64, "after": 0i64, "$db": "admin"},
        doc! {"argonCommits": 4i64, "after": "x", "$db": "admin"},
        doc! {"argonCommits": 4i64, "$db": "admin"},
        doc! {"argonCommits": i64::MAX, "after": i64::MAX, "$db": "admin"},
    ] {
        let reply = raw.command(bad.clone()).await;
        match reply.get_i32("code") {
            Ok(c) => assert_eq!(c, 9, "{bad}: {reply}"),
            Err(_) => assert!(!reply.get_bool("found").unwrap(), "{bad}: {reply}"),
        }
    }
    // It is not a client command.
    let err = a
        .client
        .database("admin")
        .run_command(doc! {"argonCommits": 4i64, "after": 0i64})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(59), "{err}");
    // Hostile: a malformed message closes that peer connection only.
    let mut garbage = tokio::net::TcpStream::connect(("127.0.0.1", a.peer_port))
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt;
    garbage.write_all(&[0xff; 64]).await.unwrap();
    let d = a
        .client
        .database("app")
        .collection::<Document>("c")
        .find_one(doc! {"_id": 1})
        .await
        .unwrap();
    assert!(d.is_some());
}

/// With `--auth` the sidecars still choose one writer and forward to it:
/// the link proves the peer key, the writer runs what the client was
/// authorized for where it connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_with_authentication_forward_to_one_writer() {
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let metrics_port = free_port().unwrap();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let a = pod_with("sidecar-a", ferretdb.uri(), "secure", &["--auth"]).await;
    // The first user, through the localhost exception; users live in the
    // log, so every sidecar of the project knows them.
    a.client
        .database("admin")
        .run_command(doc! {"createUser": "app", "pwd": "app-secret-1", "roles": ["root"]})
        .await
        .expect("the first user");
    let b = pod_with(
        "sidecar-b",
        ferretdb.uri(),
        "secure",
        &["--auth", "--metrics-listen", &metrics],
    )
    .await;
    let login = |port: u16| {
        Client::with_uri_str(format!(
            "mongodb://app:app-secret-1@127.0.0.1:{port}/?directConnection=true&authSource=admin"
        ))
    };
    let via_a: Collection<Document> = login(a.sidecar.port)
        .await
        .unwrap()
        .database("app")
        .collection("c");
    let via_b: Collection<Document> = login(b.sidecar.port)
        .await
        .unwrap()
        .database("app")
        .collection("c");
    via_a.insert_one(doc! {"_id": "a"}).await.unwrap();
    assert_eq!(writer_port(&ferretdb, "secure").await, Some(a.peer_port));
    for i in 0..20 {
        via_b.insert_one(doc! {"_id": i}).await.unwrap();
    }
    assert_eq!(via_a.count_documents(doc! {}).await.unwrap(), 21);
    let text = metrics_text(metrics_port).await;
    assert!(
        metric(&text, "argon_sidecar_forwarded_total") >= 20.0,
        "b forwarded its writes: {}",
        text.lines()
            .filter(|l| l.contains("forward"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Unauthenticated, b still refuses the client (the link changes nothing
    // for clients).
    let err = b
        .client
        .database("app")
        .collection::<Document>("c")
        .insert_one(doc! {"_id": "anonymous"})
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(13), "{err}");
}

/// With TLS for clients the peer link is TLS too: the sidecars still choose
/// one writer and forward to it, over TLS verified against the peers' CA
/// and Service name; the peer port answers no plain connection; a sidecar
/// that does not trust the writer's certificate gets no forward through (it
/// commits its own writes, which still succeed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_serving_tls_forward_over_tls() {
    use argon_testkit::tls::TestCa;
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("a test file");
        path.display().to_string()
    };
    const NAME: &str = "abr-feature.shop.svc";
    let ca = TestCa::new("argon-peer-ca").expect("a CA");
    let serving = ca
        .serving_cert(&[NAME, "127.0.0.1"])
        .expect("a serving certificate");
    let (cert, key) = (
        write("tls.crt", &serving.cert_pem),
        write("tls.key", &serving.key_pem),
    );
    let ca_file = write("ca.crt", &ca.cert_pem());
    let other = TestCa::new("another-ca").expect("a CA");
    let other_file = write("other.crt", &other.cert_pem());
    let tls_args = |ca: &str| {
        vec![
            "--tls-cert-file".to_string(),
            cert.clone(),
            "--tls-key-file".to_string(),
            key.clone(),
            "--peer-tls-ca-file".to_string(),
            ca.to_string(),
            "--peer-tls-name".to_string(),
            NAME.to_string(),
        ]
    };
    let with_metrics = |ca: &str, metrics: &str| {
        let mut args = tls_args(ca);
        args.extend(["--metrics-listen".to_string(), metrics.to_string()]);
        args
    };
    let a_args = tls_args(&ca_file);
    let a = pod_with("sidecar-a", ferretdb.uri(), "tlspeers", &refs(&a_args)).await;
    let (b_metrics, c_metrics) = (free_port().unwrap(), free_port().unwrap());
    let b_args = with_metrics(&ca_file, &format!("127.0.0.1:{b_metrics}"));
    let b = pod_with("sidecar-b", ferretdb.uri(), "tlspeers", &refs(&b_args)).await;
    // c trusts another CA for its peers (its own clients are served as usual).
    let c_args = with_metrics(&other_file, &format!("127.0.0.1:{c_metrics}"));
    let c = pod_with("sidecar-c", ferretdb.uri(), "tlspeers", &refs(&c_args)).await;
    let over_tls = |port: u16| {
        Client::with_uri_str(format!(
            "mongodb://127.0.0.1:{port}/?directConnection=true&tls=true&tlsCAFile={ca_file}"
        ))
    };
    let collection = |client: Client| client.database("app").collection::<Document>("c");
    let via_a = collection(over_tls(a.sidecar.port).await.unwrap());
    let via_b = collection(over_tls(b.sidecar.port).await.unwrap());
    let via_c = collection(over_tls(c.sidecar.port).await.unwrap());
    via_a.insert_one(doc! {"_id": "a"}).await.unwrap();
    assert_eq!(writer_port(&ferretdb, "tlspeers").await, Some(a.peer_port));
    for i in 0..20 {
        via_b.insert_one(doc! {"_id": i}).await.unwrap();
    }
    for i in 0..5 {
        via_c
            .insert_one(doc! {"_id": format!("c{i}")})
            .await
            .unwrap();
    }
    assert_eq!(via_a.count_documents(doc! {}).await.unwrap(), 26);
    let forwarded = |text: &str| metric(text, "argon_sidecar_forwarded_total");
    let text = metrics_text(b_metrics).await;
    assert!(forwarded(&text) >= 20.0, "b forwarded over TLS: {text}");
    // Every forward c tried failed at the handshake (then it wrote here).
    let text = metrics_text(c_metrics).await;
    let failures = metric(&text, "argon_sidecar_forward_failures_total");
    assert!(
        failures >= 1.0 && forwarded(&text) == failures,
        "c forwarded to a writer it does not trust: {text}"
    );
    let log = c.sidecar.output();
    assert!(log.contains("TLS handshake"), "{log}");

    // A plain connection to the peer port gets no MongoDB reply (at most a
    // TLS alert, then the connection closes).
    let answer = tokio::time::timeout(Duration::from_secs(15), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", a.peer_port)).await?;
        stream.write_all(&hello_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    })
    .await
    .expect("the peer port closes a plain connection")
    .unwrap_or_default();
    let op_msg = answer.len() >= 16 && answer[12..16] == 2013i32.to_le_bytes();
    assert!(!op_msg, "the TLS peer port answered in clear: {answer:?}");
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// An OP_MSG `hello` on the admin database, as bytes.
fn hello_bytes() -> Vec<u8> {
    let mut body = Vec::new();
    doc! {"hello": 1, "$db": "admin"}
        .to_writer(&mut body)
        .expect("a document");
    let length = i32::try_from(16 + 4 + 1 + body.len()).expect("a small message");
    let mut message = Vec::new();
    for field in [length, 1, 0, 2013, 0] {
        message.extend_from_slice(&field.to_le_bytes());
    }
    message.push(0);
    message.extend_from_slice(&body);
    message
}
