//! Every write MongoDB accepts within its limits is accepted, against the
//! real `argon-sidecar` binary: through pymongo and the Node.js driver on
//! both stores (embedded, and the mongodb store on FerretDB), a 16 MiB
//! document, a bulk insert of 80 MB, an updateMany and a deleteMany whose
//! images total ~100 MB and a 40 MB transaction, each one atomic commit
//! (`scenarios/large.{py,js}`). What is past a limit fails with MongoDB's
//! error on that request (or statement) only, sent as raw OP_MSG frames
//! where drivers refuse to send it: a document of 16 MiB + 1 byte (BadValue,
//! the rest of its batch by ordered/unordered rules), an update result or
//! upsert over 16 MiB (17419, 17420), 100,001 statements (InvalidLength), a
//! message over 48,000,000 bytes (the connection is closed).

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use argon_sidecar::wire::message::encode_op_msg;
use argon_testkit::FerretDb;
use argon_testkit::clients::{run_node, run_python};
use bson::{Bson, Document, doc};
use common::RawClient;
use common::sidecar::Sidecar;
use futures::TryStreamExt;

const PYTHON: &str = include_str!("scenarios/large.py");
const NODE: &str = include_str!("scenarios/large.js");
const MIB: usize = 1 << 20;
const LIMIT: usize = 16 * MIB;

/// A standalone sidecar and one on a fresh FerretDB.
async fn both_stores() -> (Sidecar, Sidecar, FerretDb, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("a temporary directory");
    let wal = data.path().join("wal");
    let (ferretdb, standalone) = tokio::join!(FerretDb::start(), Sidecar::standalone(&wal));
    let ferretdb = ferretdb.expect("FerretDB starts");
    let on_ferretdb = Sidecar::on_store("argon-sidecar-ferretdb", ferretdb.uri(), "large")
        .await
        .expect("a sidecar on FerretDB starts");
    (
        standalone.expect("the standalone sidecar starts"),
        on_ferretdb,
        ferretdb,
        data,
    )
}

/// Runs `scenario(uri, past_reads)` on both stores, one after the other
/// (each run moves ~400 MB through the server). Past-point reads, which
/// show each large write is one commit from the outside, run on the
/// embedded store only: on FerretDB each replays 150 to 300 MB of log from
/// its SQLite backend (~20 MB/s there, and every query scans the whole
/// collection), minutes in all. The mongodb store's replay of large commits
/// at past points is tested in `sidecar/wal/tests/large.rs`.
async fn run_everywhere(client: &str, scenario: fn(String, &str) -> anyhow::Result<String>) {
    let (standalone, on_ferretdb, _ferretdb, _data) = both_stores().await;
    for (store, sidecar, past) in [
        ("standalone", &standalone, "yes"),
        ("FerretDB", &on_ferretdb, "no"),
    ] {
        let uri = sidecar.uri();
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || scenario(uri, past))
            .await
            .expect("the scenario thread")
            .unwrap_or_else(|e| panic!("{client} large writes on {store}: {e:#}"));
        assert_eq!(
            out.trim().lines().last(),
            Some("OK"),
            "{client} on {store}: {out}"
        );
        eprintln!("{client} on {store}: {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_large_writes() {
    run_everywhere("pymongo", |uri, past| {
        run_python(PYTHON, &[&uri, "big", past])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_driver_large_writes() {
    run_everywhere("node", |uri, past| {
        run_node(
            NODE,
            &[
                ("ARGON_URI", &uri),
                ("ARGON_DB", "big"),
                ("ARGON_PAST_READS", past),
            ],
        )
    })
    .await;
}

/// A document of exactly `size` BSON bytes: `{_id?, pad: <binary>}`.
fn sized_doc(id: Option<Bson>, size: usize) -> Document {
    let binary = |n: usize| bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: vec![7; n],
    };
    let mut d = Document::new();
    if let Some(id) = id {
        d.insert("_id", id);
    }
    d.insert("pad", binary(0));
    let overhead = d.to_vec().expect("encodes").len();
    d.insert("pad", binary(size - overhead));
    assert_eq!(d.to_vec().expect("encodes").len(), size);
    d
}

fn sized(id: i32, size: usize) -> Document {
    sized_doc(Some(Bson::Int32(id)), size)
}

struct Standalone {
    sidecar: Sidecar,
    client: mongodb::Client,
    _dir: tempfile::TempDir,
}

impl Standalone {
    async fn start() -> Standalone {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sidecar = Sidecar::standalone(&dir.path().join("wal"))
            .await
            .expect("the sidecar starts");
        let client = sidecar.client().await.expect("a driver client");
        Standalone {
            sidecar,
            client,
            _dir: dir,
        }
    }

    async fn raw(&self) -> RawClient {
        RawClient::connect(SocketAddr::from(([127, 0, 0, 1], self.sidecar.port))).await
    }

    /// `insert` of `docs` into `coll` as one raw OP_MSG (a document sequence).
    async fn raw_insert(&self, coll: &str, ordered: bool, docs: Vec<Document>) -> Document {
        let mut raw = self.raw().await;
        let body = doc! {"insert": coll, "ordered": ordered, "$db": "limits"};
        raw.send_bytes(&encode_op_msg(5, 0, &body, &[("documents", docs)]))
            .await
            .expect("send");
        tokio::time::timeout(Duration::from_secs(60), raw.read_reply())
            .await
            .expect("answered in time")
            .expect("a reply, not a closed connection")
    }

    async fn ids(&self, coll: &str) -> Vec<Bson> {
        let docs: Vec<Document> = self
            .client
            .database("limits")
            .collection::<Document>(coll)
            .find(doc! {})
            .projection(doc! {"_id": 1})
            .sort(doc! {"_id": 1})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("documents");
        docs.iter().filter_map(|d| d.get("_id").cloned()).collect()
    }

    async fn alive(&self) {
        let pong = self
            .client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .expect("ping");
        assert_eq!(pong.get_f64("ok").ok(), Some(1.0));
    }
}

fn write_errors(reply: &Document) -> Vec<(i32, i32, String)> {
    reply
        .get_array("writeErrors")
        .map(|errs| {
            errs.iter()
                .filter_map(Bson::as_document)
                .map(|e| {
                    (
                        e.get_i32("index").unwrap_or(-1),
                        e.get_i32("code").unwrap_or(-1),
                        e.get_str("errmsg").unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_over_16_mib_fails_alone_in_its_batch() {
    let s = Standalone::start().await;
    let batch = || {
        vec![
            doc! {"_id": 1, "v": "before"},
            sized(2, LIMIT + 1),
            doc! {"_id": 3, "v": "after"},
        ]
    };
    // Ordered: the documents before it are in, the ones after it are not
    // tried (MongoDB's rule), and the reply says which failed and why.
    let reply = s.raw_insert("ordered", true, batch()).await;
    assert_eq!(reply.get_f64("ok").ok(), Some(1.0), "{reply}");
    assert_eq!(reply.get_i32("n").ok(), Some(1), "{reply}");
    let errors = write_errors(&reply);
    assert_eq!(errors.len(), 1, "{reply}");
    assert_eq!((errors[0].0, errors[0].1), (1, 2), "{reply}");
    assert_eq!(
        errors[0].2,
        "object to insert too large. size in bytes: 16777217, max size: 16777216"
    );
    assert_eq!(s.ids("ordered").await, vec![Bson::Int32(1)]);
    // Unordered: only it fails.
    let reply = s.raw_insert("unordered", false, batch()).await;
    assert_eq!(reply.get_i32("n").ok(), Some(2), "{reply}");
    let errors = write_errors(&reply);
    assert_eq!(
        errors.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
        vec![(1, 2)]
    );
    assert_eq!(
        s.ids("unordered").await,
        vec![Bson::Int32(1), Bson::Int32(3)]
    );
    // Exactly 16 MiB is a legal document (and gets an `_id` added past it
    // if it had none, as mongod does).
    let reply = s
        .raw_insert("exact", true, vec![sized(1, LIMIT), sized(2, LIMIT)])
        .await;
    assert_eq!(reply.get_i32("n").ok(), Some(2), "{reply}");
    let reply = s
        .raw_insert("exact", true, vec![sized_doc(None, LIMIT)])
        .await;
    assert_eq!(reply.get_i32("n").ok(), Some(1), "{reply}");
    assert_eq!(s.ids("exact").await.len(), 3);
    // Past 16 MiB + 16 KiB a document cannot even be in a message: the
    // whole request is refused (BSONObjectTooLarge), the connection stays.
    let reply = s
        .raw_insert(
            "beyond",
            true,
            vec![doc! {"_id": 1}, sized(2, LIMIT + 16 * 1024 + 1)],
        )
        .await;
    assert_eq!(reply.get_i32("code").ok(), Some(10334), "{reply}");
    assert!(s.ids("beyond").await.is_empty());
    s.alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_past_16_mib_fail_with_mongodbs_codes() {
    let s = Standalone::start().await;
    let coll = s.client.database("limits").collection::<Document>("upd");
    coll.insert_one(sized(1, 10 * MIB))
        .await
        .expect("a 10 MiB document");
    // $set growing it past 16 MiB: 17419, the document unchanged.
    let big = "y".repeat(7 * MIB);
    let e = coll
        .update_one(doc! {"_id": 1}, doc! {"$set": {"more": &big}})
        .await
        .unwrap_err();
    assert_eq!(common::code(&e), Some(17419), "{e}");
    assert!(
        e.to_string()
            .contains("Resulting document after update is larger than 16777216")
    );
    let e = coll
        .find_one_and_update(doc! {"_id": 1}, doc! {"$set": {"more": &big}})
        .await
        .unwrap_err();
    assert_eq!(common::code(&e), Some(17419), "{e}");
    let one = coll
        .find_one(doc! {"_id": 1})
        .await
        .expect("find")
        .expect("there");
    assert!(!one.contains_key("more"));
    // An upsert inserting more than 16 MiB: 17420, a replacement or from
    // update operators. Drivers check statement sizes themselves, so these
    // go as a raw update (each statement under 16 MiB + 16 KiB, the result
    // over 16 MiB); the small upsert after them is in.
    let mut replacement = sized(3, LIMIT + 100);
    replacement.remove("_id");
    let half = "h".repeat(8 * MIB);
    let more = "m".repeat(8 * MIB + 200);
    let mut raw = s.raw().await;
    let body = doc! {"update": "upd", "$db": "limits", "ordered": false};
    let stmts = vec![
        doc! {"q": {"_id": 3}, "u": replacement, "upsert": true},
        doc! {"q": {"_id": 2, "a": half}, "u": {"$set": {"b": more}}, "upsert": true},
        doc! {"q": {"_id": 4}, "u": {"$set": {"small": 1}}, "upsert": true},
    ];
    raw.send_bytes(&encode_op_msg(9, 0, &body, &[("updates", stmts)]))
        .await
        .expect("send");
    let reply = raw.read_reply().await.expect("a reply");
    assert_eq!(
        write_errors(&reply)
            .iter()
            .map(|e| (e.0, e.1))
            .collect::<Vec<_>>(),
        vec![(0, 17420), (1, 17420)],
        "{reply}"
    );
    assert_eq!(reply.get_i32("n").ok(), Some(1), "{reply}");
    assert_eq!(s.ids("upd").await, vec![Bson::Int32(1), Bson::Int32(4)]);
    s.alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_messages_at_mongodbs_limits() {
    let s = Standalone::start().await;
    // 100,000 statements are one batch; 100,001 are refused whole.
    let docs = |n: i32| (0..n).map(|i| doc! {"_id": i}).collect::<Vec<_>>();
    let reply = s.raw_insert("many", false, docs(100_000)).await;
    assert_eq!(reply.get_i32("n").ok(), Some(100_000), "{reply}");
    let reply = s.raw_insert("toomany", false, docs(100_001)).await;
    assert_eq!(reply.get_i32("code").ok(), Some(16), "{reply}");
    assert_eq!(reply.get_str("codeName").ok(), Some("InvalidLength"));
    assert_eq!(
        reply.get_str("errmsg").ok(),
        Some("Write batch sizes must be between 1 and 100000. Got 100001 operations.")
    );
    assert!(s.ids("toomany").await.is_empty());
    let reply = s.raw_insert("none", false, Vec::new()).await;
    assert_eq!(reply.get_i32("code").ok(), Some(16), "{reply}");
    // A message just under maxMessageSizeBytes is taken whole: one commit.
    let three: Vec<Document> = (0..3).map(|i| sized(i, 15_990_000)).collect();
    let msg = encode_op_msg(
        3,
        0,
        &doc! {"insert": "near", "$db": "limits"},
        &[("documents", three.clone())],
    );
    assert!(
        msg.len() > 47_900_000 && msg.len() <= 48_000_000,
        "{}",
        msg.len()
    );
    let reply = s.raw_insert("near", true, three).await;
    assert_eq!(reply.get_i32("n").ok(), Some(3), "{reply}");
    // One byte over it: the connection is closed, as mongod does; the
    // server goes on.
    let mut raw = s.raw().await;
    let mut header = Vec::new();
    header.extend_from_slice(&48_000_001i32.to_le_bytes());
    header.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0xdd, 7, 0, 0]);
    raw.send_bytes(&header).await.expect("send");
    let closed = tokio::time::timeout(Duration::from_secs(10), raw.read_reply())
        .await
        .expect("the connection is closed at once");
    assert!(closed.is_none(), "expected a closed connection: {closed:?}");
    s.alive().await;
    assert_eq!(s.ids("near").await.len(), 3);
}
