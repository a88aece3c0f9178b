//! Single-document reads and writes through three sidecars on one branch
//! (one writer, two forwarding to it) are linearizable, with the writer
//! killed (-9) and restarted in the middle: a recorded history checked by
//! porcupine (`argon-lincheck`, tests/infra/lincheck).
//!
//! A write the client saw fail has an unknown outcome (it may have landed):
//! the checker lets it take effect at any time after its call. A failed
//! read constrains nothing.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use argon_testkit::{FerretDb, free_port};
use bson::{Document, doc};
use common::sidecar::Sidecar;
use mongodb::{Client, Collection};

const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];
const CLIENTS: usize = 6;

#[derive(serde::Serialize)]
struct Op {
    client: usize,
    kind: &'static str,
    key: &'static str,
    value: i64,
    call: i64,
    #[serde(rename = "return")]
    ret: i64,
    unknown: bool,
}

struct Slot {
    sidecar: Option<Sidecar>,
    peer_port: u16,
    client: Arc<RwLock<Option<Client>>>,
}

async fn start(name: &str, store: &str, peer_port: u16) -> (Sidecar, Client) {
    let peer = format!("127.0.0.1:{peer_port}");
    let sidecar = Sidecar::start(
        name,
        &["--store", store, "--project", "lin", "--peer-listen", &peer],
    )
    .await
    .expect("the sidecar starts");
    // A dead sidecar must fail an operation quickly, not after the
    // driver's default 30 s of server selection.
    let client = Client::with_uri_str(format!(
        "{}&serverSelectionTimeoutMS=500&connectTimeoutMS=500",
        sidecar.uri()
    ))
    .await
    .expect("a client");
    (sidecar, client)
}

/// Reads and writes random keys through slot `n`'s current client until `end`.
async fn run_client(
    id: usize,
    client: Arc<RwLock<Option<Client>>>,
    t0: Instant,
    end: Instant,
    history: Arc<Mutex<Vec<Op>>>,
) {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ ((id as u64 + 1) << 17);
    let mut i = 0i64;
    let ns = |t: Instant| t.duration_since(t0).as_nanos() as i64;
    while Instant::now() < end {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let key = KEYS[(seed % KEYS.len() as u64) as usize];
        let write = (seed >> 8).is_multiple_of(2);
        let current = client.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(c) = current else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let coll: Collection<Document> = c.database("app").collection("registers");
        let call = Instant::now();
        let op = if write {
            i += 1;
            let value = (id as i64 + 1) * 1_000_000 + i;
            let r = coll
                .update_one(doc! {"_id": key}, doc! {"$set": {"v": value}})
                .upsert(true)
                .await;
            Op {
                client: id,
                kind: "write",
                key,
                value,
                call: ns(call),
                ret: ns(Instant::now()),
                unknown: r.is_err(),
            }
        } else {
            let r = coll.find_one(doc! {"_id": key}).await;
            let ret = ns(Instant::now());
            let value = match &r {
                Ok(Some(d)) => d.get_i64("v").unwrap_or(-1),
                _ => 0,
            };
            Op {
                client: id,
                kind: "read",
                key,
                value,
                call: ns(call),
                ret,
                unknown: r.is_err(),
            }
        };
        let failed = op.unknown;
        history.lock().unwrap_or_else(|e| e.into_inner()).push(op);
        if failed {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_and_writes_stay_linearizable_while_the_writer_dies() {
    let checker = argon_testkit::assets::lincheck().unwrap();
    let ferretdb = FerretDb::start().await.expect("FerretDB starts");
    let mut slots = Vec::new();
    for n in 0..3 {
        let peer_port = free_port().unwrap();
        let (sidecar, client) = start(&format!("sidecar-{n}"), ferretdb.uri(), peer_port).await;
        if n == 0 {
            // The first sidecar to write takes the writer lease.
            client
                .database("app")
                .collection::<Document>("registers")
                .insert_one(doc! {"_id": "warm"})
                .await
                .unwrap();
        }
        slots.push(Slot {
            sidecar: Some(sidecar),
            peer_port,
            client: Arc::new(RwLock::new(Some(client))),
        });
    }

    let history = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(10);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(run_client(
                id,
                slots[id % 3].client.clone(),
                t0,
                end,
                history.clone(),
            ))
        })
        .collect();

    // Kill the writer (sidecar 0 took the lease) under load, restart it later.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    *slots[0].client.write().unwrap() = None;
    slots[0].sidecar.as_mut().unwrap().kill();
    let killed_at = t0.elapsed().as_nanos() as i64;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (sidecar, client) = start("sidecar-0-again", ferretdb.uri(), slots[0].peer_port).await;
    slots[0].sidecar = Some(sidecar);
    *slots[0].client.write().unwrap() = Some(client);

    for t in tasks {
        t.await.unwrap();
    }
    let history = std::mem::take(&mut *history.lock().unwrap());
    let ok_after_kill = history
        .iter()
        .filter(|o| !o.unknown && o.call > killed_at)
        .count();
    let writes = history
        .iter()
        .filter(|o| o.kind == "write" && !o.unknown)
        .count();
    let reads = history
        .iter()
        .filter(|o| o.kind == "read" && !o.unknown)
        .count();
    assert!(
        ok_after_kill > 0,
        "nothing succeeded after the writer was killed"
    );
    assert!(writes > 0 && reads > 0, "{writes} writes, {reads} reads");

    let json = serde_json::to_vec(&history).unwrap();
    let html = std::env::temp_dir().join("argon-lincheck.html");
    let mut child = Command::new(&checker)
        .env("ARGON_LINCHECK_HTML", &html)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&json).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    println!(
        "{said}({writes} writes and {reads} reads acknowledged, {} failed)",
        history.len() - writes - reads
    );
    assert!(
        out.status.success(),
        "{said}{}\nvisualization: {}",
        String::from_utf8_lossy(&out.stderr),
        html.display()
    );
}
