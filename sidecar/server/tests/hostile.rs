//! A hostile client against the real `argon-sidecar serve` binary: inputs
//! that once crashed the process or tried to take all its memory (a filter
//! nested 20,000 deep, `$addFields: {"a.400000000": 1}` over an array,
//! `$range` to 1e9, a pipeline that doubles its document per stage, ...),
//! oversized OP_COMPRESSED claims, a stalled partial frame and too many
//! connections. After each one the server still answers `ping` on a new
//! connection and every write it acknowledged before is still there. Legal
//! inputs at the limits (a 100-level document, a 200-level message) work.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use argon_testkit::clients::run_python;
use bson::{Bson, Document, doc};
use common::RawClient;
use common::sidecar::Sidecar;
use futures::TryStreamExt;
use mongodb::{Client, Collection};

/// A sidecar, a driver client, and the `_id`s it acknowledged.
struct Target {
    sidecar: Sidecar,
    client: Client,
    coll: Collection<Document>,
    acked: Vec<i64>,
    _dir: tempfile::TempDir,
}

impl Target {
    async fn start(extra: &[&str]) -> Target {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("wal").display().to_string();
        let mut args = vec!["--data", data.as_str()];
        args.extend_from_slice(extra);
        let sidecar = Sidecar::start("argon-sidecar-hostile", &args)
            .await
            .expect("the sidecar starts");
        let uri = format!(
            "{}&retryWrites=false&serverSelectionTimeoutMS=5000&maxPoolSize=2",
            sidecar.uri()
        );
        let client = Client::with_uri_str(&uri).await.expect("a driver client");
        let coll = client.database("hostile").collection("acked");
        let mut t = Target {
            sidecar,
            client,
            coll,
            acked: Vec::new(),
            _dir: dir,
        };
        t.write().await;
        t
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sidecar.port))
    }

    async fn raw(&self) -> RawClient {
        RawClient::connect(self.addr()).await
    }

    /// One more acknowledged write.
    async fn write(&mut self) {
        let id = self.acked.iter().filter(|&&i| i < 1_000_000).count() as i64;
        self.coll
            .insert_one(doc! {"_id": id, "v": format!("acked {id}")})
            .await
            .expect("an ordinary insert is acknowledged");
        self.acked.push(id);
    }

    /// The server answers ping on a new connection, every acknowledged write
    /// is there, and it takes another one.
    async fn assert_alive(&mut self, after: &str) {
        let mut raw = self.raw().await;
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            raw.command(doc! {"ping": 1, "$db": "admin"}),
        )
        .await
        .unwrap_or_else(|_| panic!("ping timed out after {after}"));
        assert_eq!(
            reply.get_f64("ok").ok(),
            Some(1.0),
            "ping after {after}: {reply}"
        );
        let found: Vec<Document> = self
            .coll
            .find(doc! {})
            .await
            .unwrap_or_else(|e| panic!("find after {after}: {e}"))
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("find after {after}: {e}"));
        let mut ids: Vec<i64> = found.iter().filter_map(|d| d.get_i64("_id").ok()).collect();
        ids.sort();
        let mut acked = self.acked.clone();
        acked.sort();
        assert_eq!(ids, acked, "acknowledged writes after {after}");
        self.write().await;
    }

    async fn command(&self, db: &str, cmd: Document) -> Result<Document, mongodb::error::Error> {
        self.client.database(db).run_command(cmd).await
    }
}

/// `bench/hardening` runs this suite against a release build and reports
/// the sidecar's peak RSS (VmHWM) under it: with `ARGON_PEAK_RSS_FILE` set,
/// each test's sidecar appends `<test> <peak KiB>` there when it is done.
impl Drop for Target {
    fn drop(&mut self) {
        let Ok(path) = std::env::var("ARGON_PEAK_RSS_FILE") else {
            return;
        };
        let peak = peak_rss_kib(self.sidecar.pid());
        let test = std::thread::current()
            .name()
            .unwrap_or("hostile")
            .to_string();
        if let Some(kb) = peak {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                let _ = writeln!(f, "{test} {kb}");
            }
        }
    }
}

fn code_of(r: Result<Document, mongodb::error::Error>) -> i32 {
    match r {
        Ok(d) => {
            let mut shown = d.to_string();
            shown.truncate(300);
            panic!("expected an error, got {shown}")
        }
        Err(e) => common::code(&e).unwrap_or_else(|| panic!("no code in {e}")),
    }
}

fn enc(d: &Document) -> Vec<u8> {
    let mut v = Vec::new();
    d.to_writer(&mut v).expect("a document encodes");
    v
}

fn wrap(kind: u8, name: &str, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + name.len() + 7);
    let len = (4 + 1 + name.len() + 1 + inner.len() + 1) as i32;
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(inner);
    out.push(0);
    out
}

/// Raw BSON of `{$and: [{$and: [ ... {x: 1} ]}]}`, `levels` `$and`s deep
/// (two BSON levels each), built without a recursive encoder.
fn deep_and_filter(levels: usize) -> Vec<u8> {
    let mut cur = enc(&doc! {"x": 1});
    for _ in 0..levels {
        let arr = wrap(0x03, "0", &cur);
        cur = wrap(0x04, "$and", &arr);
    }
    cur
}

/// Raw BSON of `{x: {x: ... {x: 1}}}` with `levels` levels in all.
fn nested_raw(levels: usize) -> Vec<u8> {
    let mut cur = enc(&doc! {"x": 1});
    for _ in 1..levels {
        cur = wrap(0x03, "x", &cur);
    }
    cur
}

/// An OP_MSG `{find: coll, filter: <raw filter>, $db: db}`.
fn raw_find(request_id: i32, db: &str, coll: &str, filter: &[u8]) -> Vec<u8> {
    let mut body = enc(&doc! {"find": coll, "$db": db});
    body.pop();
    body.push(0x03);
    body.extend_from_slice(b"filter\0");
    body.extend_from_slice(filter);
    body.push(0);
    let n = body.len() as i32;
    body[..4].copy_from_slice(&n.to_le_bytes());
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + 5 + body.len()) as i32).to_le_bytes());
    msg.extend_from_slice(&request_id.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes());
    msg.extend_from_slice(&2013i32.to_le_bytes());
    msg.extend_from_slice(&0u32.to_le_bytes());
    msg.push(0);
    msg.extend_from_slice(&body);
    msg
}

fn nested_doc(levels: usize) -> Document {
    let mut d = doc! {"x": 1};
    for _ in 1..levels {
        d = doc! {"x": d};
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_fail_alone() {
    let mut t = Target::start(&[]).await;
    t.coll
        .insert_one(doc! {"_id": 1_000_000i64, "a": [1, {"b": 2}], "s": "x".repeat(1000)})
        .await
        .expect("the array document");
    t.acked.push(1_000_000);

    // A filter nested 20,000 deep, as raw OP_MSG bytes (~360 KB): an error
    // reply on the same connection, which stays usable.
    let mut raw = t.raw().await;
    let filter = deep_and_filter(20_000);
    assert!(filter.len() > 300_000);
    raw.send_bytes(&raw_find(7, "hostile", "acked", &filter))
        .await
        .expect("send");
    let reply = raw
        .read_reply()
        .await
        .expect("a reply, not a closed connection");
    assert_eq!(reply.get_i32("code").ok(), Some(15), "{reply}");
    assert_eq!(reply.get_str("codeName").ok(), Some("Overflow"));
    let pong = raw.command(doc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(pong.get_f64("ok").ok(), Some(1.0));
    t.assert_alive("a 20,000-deep $and filter").await;

    // A message nesting exactly 200 levels decodes and runs.
    let mut raw = t.raw().await;
    raw.send_bytes(&raw_find(8, "hostile", "acked", &nested_raw(200)))
        .await
        .expect("send");
    let reply = raw.read_reply().await.expect("a reply");
    assert_eq!(
        reply.get_f64("ok").ok(),
        Some(1.0),
        "200-level message: {reply}"
    );
    raw.send_bytes(&raw_find(9, "hostile", "acked", &nested_raw(201)))
        .await
        .expect("send");
    let reply = raw.read_reply().await.expect("a reply");
    assert_eq!(reply.get_i32("code").ok(), Some(15), "201 levels: {reply}");
    // 100 nested $and (201 levels with the filter) is one level too many;
    // 99 decode and the query tree is within its 100.
    let mut f = doc! {"_id": 0i64};
    for _ in 0..99 {
        f = doc! {"$and": [f]};
    }
    let found = t.coll.find(f).await.expect("a 99-deep $and runs");
    let found: Vec<Document> = found.try_collect().await.expect("results");
    assert_eq!(found.len(), 1);
    t.assert_alive("filters at the limit").await;

    // A deep projection: a path of 1,000 components, and a nested one.
    let long = vec!["a"; 1000].join(".");
    let r = t
        .command("hostile", doc! {"find": "acked", "projection": {long: 1}})
        .await;
    assert_eq!(code_of(r), 5729100);
    let r = t
        .command(
            "hostile",
            doc! {"find": "acked", "projection": {"p": Bson::Document(nested_doc(250))}},
        )
        .await;
    assert_eq!(code_of(r), 15);
    t.assert_alive("deep projections").await;

    // A deep pipeline expression: 150 nested $add (300 BSON levels).
    let mut e = Bson::Int32(1);
    for _ in 0..150 {
        e = Bson::Document(doc! {"$add": [e, 1]});
    }
    let r = t
        .command(
            "hostile",
            doc! {"aggregate": "acked", "pipeline": [{"$project": {"v": e}}], "cursor": {}},
        )
        .await;
    assert_eq!(code_of(r), 15);
    t.assert_alive("a deep pipeline expression").await;

    // Updates: a deep value, a long path, padding an array 400 million deep.
    let r = t
        .coll
        .update_one(
            doc! {"_id": 0i64},
            doc! {"$set": {"deep": Bson::Document(nested_doc(150))}},
        )
        .await;
    assert_eq!(common::code(&r.unwrap_err()), Some(15));
    let r = t
        .coll
        .update_one(
            doc! {"_id": 0i64},
            doc! {"$set": {vec!["p"; 300].join("."): 1}},
        )
        .await;
    assert_eq!(common::code(&r.unwrap_err()), Some(15));
    let r = t
        .coll
        .update_one(
            doc! {"_id": 1_000_000i64},
            doc! {"$set": {"a.400000000": 1}},
        )
        .await;
    let e = r.unwrap_err();
    assert_eq!(common::code(&e), Some(34), "{e}");
    assert!(
        e.to_string()
            .contains("can't backfill more than 1500000 elements")
    );
    let r = t
        .coll
        .find_one_and_update(
            doc! {"_id": 0i64},
            doc! {"$set": {"deep": Bson::Document(nested_doc(101))}},
        )
        .await;
    assert_eq!(common::code(&r.unwrap_err()), Some(15));
    let r = t
        .coll
        .update_one(
            doc! {"_id": 99_999i64},
            doc! {"$set": {"deep": Bson::Document(nested_doc(120))}},
        )
        .upsert(true)
        .await;
    assert_eq!(common::code(&r.unwrap_err()), Some(15));
    t.assert_alive("hostile updates").await;

    // Inserts: 101 levels fail with Overflow, 100 levels are stored.
    let r = t
        .client
        .database("hostile")
        .collection::<Document>("deep")
        .insert_one(doc! {"_id": 1, "x": nested_doc(100)})
        .await;
    assert_eq!(common::code(&r.unwrap_err()), Some(15));
    t.client
        .database("hostile")
        .collection::<Document>("deep")
        .insert_one(doc! {"_id": 2, "x": nested_doc(99)})
        .await
        .expect("a 100-level document is stored");
    let back = t
        .client
        .database("hostile")
        .collection::<Document>("deep")
        .find_one(doc! {"_id": 2})
        .await
        .expect("read back")
        .expect("found");
    assert_eq!(back.get_document("x").ok(), Some(&nested_doc(99)));
    t.assert_alive("deep inserts").await;

    // Aggregation: $addFields "a.400000000" names a field of each element.
    let out: Vec<Document> = t
        .coll
        .aggregate([
            doc! {"$match": {"_id": 1_000_000i64}},
            doc! {"$addFields": {"a.400000000": 1}},
            doc! {"$project": {"a": 1}},
        ])
        .await
        .expect("$addFields runs")
        .try_collect()
        .await
        .expect("results");
    assert_eq!(
        out,
        vec![doc! {"_id": 1_000_000i64, "a": [{"400000000": 1}, {"b": 2, "400000000": 1}]}]
    );
    let out: Vec<Document> = t
        .coll
        .aggregate([
            doc! {"$match": {"_id": 1_000_000i64}},
            doc! {"$set": {"a.400000000": 1}},
            doc! {"$project": {"n": {"$size": "$a"}}},
        ])
        .await
        .expect("$set runs")
        .try_collect()
        .await
        .expect("results");
    assert_eq!(out[0].get_i32("n").ok(), Some(2));
    t.assert_alive("$addFields on a numeric path").await;

    // Values built past 16 MiB.
    for (what, stage, code) in [
        (
            "$range",
            doc! {"$project": {"r": {"$range": [0, 1_000_000_000]}}},
            146,
        ),
        (
            "$concatArrays",
            doc! {"$project": {"r": {"$concatArrays": (0..10).map(|_| Bson::Document(doc! {"$range": [0, 200_000]})).collect::<Vec<_>>()}}},
            146,
        ),
        (
            "$concat",
            doc! {"$project": {"r": {"$concat": (0..20_000).map(|_| Bson::String("$s".into())).collect::<Vec<_>>()}}},
            146,
        ),
    ] {
        let r = t
            .command(
                "hostile",
                doc! {"aggregate": "acked", "pipeline": [doc! {"$match": {"_id": 1_000_000i64}}, stage], "cursor": {}},
            )
            .await;
        assert_eq!(code_of(r), code, "{what}");
        t.assert_alive(what).await;
    }
    let stages: Vec<Document> = std::iter::once(doc! {"$match": {"_id": 1_000_000i64}})
        .chain((0..60).map(|_| doc! {"$project": {"a": "$$ROOT", "b": "$$ROOT"}}))
        .collect();
    let r = t
        .command(
            "hostile",
            doc! {"aggregate": "acked", "pipeline": stages, "cursor": {}},
        )
        .await;
    assert_eq!(code_of(r), 10334);
    t.assert_alive("a $$ROOT-doubling pipeline").await;
    // $unwind of a 20,000-element array streams: each output document is
    // made when a batch asks for it (it failed with 146 while a pipeline
    // was computed whole; see `hostile_pipelines_stay_within_their_budget`
    // for a 1 MiB document unwound so).
    let out: Vec<Document> = t
        .coll
        .aggregate([
            doc! {"$match": {"_id": 1_000_000i64}},
            doc! {"$project": {"r": {"$range": [0, 20_000]}}},
            doc! {"$unwind": "$r"},
        ])
        .await
        .expect("$unwind streams")
        .try_collect()
        .await
        .expect("every element");
    assert_eq!(out.len(), 20_000);
    assert_eq!(out[19_999].get_i32("r").ok(), Some(19_999));
    // $push of 20 one-MiB strings.
    let big = t.client.database("hostile").collection::<Document>("big");
    for i in 0..20 {
        big.insert_one(doc! {"_id": i, "s": format!("{i}{}", "y".repeat(1 << 20))})
            .await
            .expect("a 1 MiB document");
    }
    for acc in ["$push", "$addToSet"] {
        let r = t
            .command(
                "hostile",
                doc! {"aggregate": "big", "pipeline": [{"$group": {"_id": null, "all": {acc: "$s"}}}], "cursor": {}},
            )
            .await;
        assert_eq!(code_of(r), 146, "{acc}");
    }
    t.assert_alive("$unwind and accumulators").await;
    let stages: Vec<Document> = (0..1001).map(|_| doc! {"$match": {}}).collect();
    let r = t
        .command(
            "hostile",
            doc! {"aggregate": "acked", "pipeline": stages, "cursor": {}},
        )
        .await;
    assert_eq!(code_of(r), 7749501);
    let stages: Vec<Document> = (0..1000).map(|_| doc! {"$match": {}}).collect();
    t.command(
        "hostile",
        doc! {"aggregate": "acked", "pipeline": stages, "cursor": {}},
    )
    .await
    .expect("1000 stages run");
    t.assert_alive("long pipelines").await;

    // getParameter tells the truth about the nesting limit.
    let p = t
        .command("admin", doc! {"getParameter": 1, "maxBSONDepth": 1})
        .await
        .expect("getParameter");
    assert_eq!(p.get_i32("maxBSONDepth").ok(), Some(200));
}

/// The sidecar's peak resident memory so far (`VmHWM`), in MiB.
/// A process's peak RSS (VmHWM) in KiB, if it is still there to ask.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
}

fn peak_rss_mib(pid: u32) -> u64 {
    peak_rss_kib(pid).expect("VmHWM in /proc status") / 1024
}

fn first_batch(reply: &Document) -> (usize, i64) {
    let cursor = reply.get_document("cursor").expect("a cursor");
    (
        cursor.get_array("firstBatch").expect("firstBatch").len(),
        cursor.get_i64("id").expect("a cursor id"),
    )
}

/// Pipelines whose blocking stages would hold far more than their budget
/// (1 MiB here, `--max-blocking-sort-bytes`): `$group` over a million
/// distinct keys and `$sort` over them spill to temporary files, `$lookup`
/// over a foreign collection forty times the budget falls back from its
/// hash table to a nested-loop join, and `$unwind` of a 1 MiB document over
/// 20,000 elements (20 GiB if it were built) comes a batch at a time. The
/// process's peak memory stays far below what the data would take, each
/// `allowDiskUse: false` variant fails alone with 292, and the server still
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pipelines_stay_within_their_budget() {
    let mut t = Target::start(&["--max-blocking-sort-bytes", "1048576"]).await;
    let pid = t.sidecar.pid();
    let db = t.client.database("hostile");
    db.collection::<Document>("one")
        .insert_one(doc! {"_id": 0})
        .await
        .expect("a document");
    let before = peak_rss_mib(pid);

    // Distinct keys made from one document by two unwinds (no large
    // array is ever held): `n * 1000` groups, each charged a few hundred
    // bytes, so a million of them pass the budget a few hundred times.
    let groups = |n: i32| {
        vec![
            doc! {"$project": {"a": {"$range": [0, n]}}},
            doc! {"$unwind": "$a"},
            doc! {"$addFields": {"b": {"$range": [0, 1000]}}},
            doc! {"$unwind": "$b"},
            doc! {"$group": {"_id": {"$add": [{"$multiply": ["$a", 1000]}, "$b"]}, "n": {"$sum": 1}, "ids": {"$addToSet": "$_id"}}},
        ]
    };
    let mut p = groups(1000);
    p.push(doc! {"$group": {"_id": null, "groups": {"$sum": 1}, "total": {"$sum": "$n"}}});
    let out: Vec<Document> = db
        .collection::<Document>("one")
        .aggregate(p)
        .await
        .expect("a million groups spill")
        .try_collect()
        .await
        .expect("the count");
    assert_eq!(
        out,
        vec![doc! {"_id": null, "groups": 1_000_000, "total": 1_000_000}]
    );
    let grouped = peak_rss_mib(pid);
    let mut p = groups(100);
    p.push(doc! {"$sort": {"_id": -1}});
    let reply = t
        .command(
            "hostile",
            doc! {"aggregate": "one", "pipeline": p, "cursor": {"batchSize": 2}},
        )
        .await
        .expect("groups sorted");
    let top = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("firstBatch");
    assert_eq!(
        top[0].as_document().and_then(|d| d.get_i32("_id").ok()),
        Some(99_999)
    );
    let (_, id) = first_batch(&reply);
    t.command("hostile", doc! {"killCursors": "one", "cursors": [id]})
        .await
        .expect("killCursors");
    let mut p = groups(100);
    p.push(doc! {"$count": "n"});
    let r = t
        .command(
            "hostile",
            doc! {"aggregate": "one", "pipeline": p, "cursor": {}, "allowDiskUse": false},
        )
        .await;
    assert_eq!(code_of(r), 292);
    t.assert_alive("a million groups").await;

    // $lookup over 200,000 foreign documents (~40 MiB): no hash table.
    let foreign = db.collection::<Document>("foreign");
    let docs: Vec<Document> = (0..200_000)
        .map(|i| doc! {"_id": i, "f": i % 50_000, "pad": "z".repeat(150)})
        .collect();
    for chunk in docs.chunks(20_000) {
        foreign.insert_many(chunk.to_vec()).await.expect("seed");
    }
    drop(docs);
    let seeded = peak_rss_mib(pid);
    let out: Vec<Document> = db
        .collection::<Document>("one")
        .aggregate([
            doc! {"$project": {"k": [7, 49_999]}},
            doc! {"$lookup": {"from": "foreign", "localField": "k", "foreignField": "f", "as": "m"}},
        ])
        .await
        .expect("a nested-loop $lookup")
        .try_collect()
        .await
        .expect("the join");
    let ids: Vec<i32> = out[0]
        .get_array("m")
        .expect("m")
        .iter()
        .filter_map(|d| d.as_document().and_then(|d| d.get_i32("_id").ok()))
        .collect();
    assert_eq!(
        ids,
        vec![
            7, 49_999, 50_007, 99_999, 100_007, 149_999, 150_007, 199_999
        ]
    );
    // Everything joined to one document: past 16 MiB + 16 KiB, 4568.
    let r = t
        .command(
            "hostile",
            doc! {"aggregate": "one", "pipeline": [{"$lookup": {"from": "foreign", "localField": "none", "foreignField": "none", "as": "all"}}], "cursor": {}},
        )
        .await;
    assert_eq!(code_of(r), 4568);
    t.assert_alive("$lookup over a large collection").await;
    let joined = peak_rss_mib(pid);

    // A 1 MiB document unwound over 20,000 elements, a batch at a time.
    db.collection::<Document>("wide")
        .insert_one(doc! {"_id": 1, "s": "w".repeat(1 << 20)})
        .await
        .expect("a 1 MiB document");
    let reply = t
        .command(
            "hostile",
            doc! {"aggregate": "wide", "pipeline": [{"$addFields": {"r": {"$range": [0, 20_000]}}}, {"$unwind": "$r"}], "cursor": {}},
        )
        .await
        .expect("the first batch");
    let (n, id) = first_batch(&reply);
    assert!((1..=16).contains(&n), "{n} documents of 1 MiB in a batch");
    assert_ne!(id, 0);
    let more = t
        .command("hostile", doc! {"getMore": id, "collection": "wide"})
        .await
        .expect("a getMore");
    let next = more
        .get_document("cursor")
        .and_then(|c| c.get_array("nextBatch"))
        .expect("nextBatch");
    assert!((1..=16).contains(&next.len()));
    t.command("hostile", doc! {"killCursors": "wide", "cursors": [id]})
        .await
        .expect("killCursors");
    t.assert_alive("a 1 MiB document unwound").await;

    let unwound = peak_rss_mib(pid);
    eprintln!(
        "peak RSS (MiB): {before} at the start, {grouped} after a million groups, \
         {seeded} after storing the foreign collection, {joined} after the joins, \
         {unwound} after the unwind"
    );
    // The phases add little to the peak: the data they hold is bounded by
    // the budget and the batch size, not by what they read.
    assert!(grouped < before + 64, "{before} -> {grouped} MiB");
    // The joins hold at most one output document's matches: the 4568 case
    // gathers 16 MiB + 16 KiB of them, parsed (a few times their BSON
    // size). Holding the 40 MiB foreign collection parsed would be several
    // hundred MiB.
    assert!(joined < seeded + 128, "{seeded} -> {joined} MiB");
    assert!(unwound < joined + 128, "{joined} -> {unwound} MiB");
}

/// An OP_COMPRESSED message wrapping OP_MSG.
fn compressed(declared: i32, compressor: u8, payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + 9 + payload.len()) as i32).to_le_bytes());
    msg.extend_from_slice(&3i32.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes());
    msg.extend_from_slice(&2012i32.to_le_bytes());
    msg.extend_from_slice(&2013i32.to_le_bytes());
    msg.extend_from_slice(&declared.to_le_bytes());
    msg.push(compressor);
    msg.extend_from_slice(payload);
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_are_closed_alone() {
    let mut t = Target::start(&["--max-connections", "10", "--frame-timeout-ms", "1000"]).await;

    // OP_COMPRESSED claiming more than maxMessageSizeBytes, or a size its
    // payload does not decompress to: that connection is closed.
    let zeros = vec![0u8; 1 << 20];
    let zlib = {
        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&zeros).expect("compress");
        enc.finish().expect("compress")
    };
    for (what, msg) in [
        ("2 GB claim", compressed(i32::MAX, 2, &zlib)),
        ("48,000,001-byte claim", compressed(48_000_001, 2, &zlib)),
        ("negative claim", compressed(-5, 2, &zlib)),
        (
            "claim above the real size",
            compressed(47_000_000, 2, &zlib),
        ),
        ("claim below the real size", compressed(1000, 2, &zlib)),
        (
            "snappy lie",
            compressed(47_000_000, 1, &[0x80, 0x80, 0x80, 0x40, 0, 0]),
        ),
    ] {
        let mut raw = t.raw().await;
        raw.send_bytes(&msg).await.expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(10), raw.read_reply())
            .await
            .unwrap_or_else(|_| panic!("{what}: the connection was neither answered nor closed"));
        assert!(
            reply.is_none(),
            "{what}: expected a closed connection, got {reply:?}"
        );
        t.assert_alive(what).await;
    }

    // A header claiming 40 MB, then a stall: closed after the frame timeout,
    // and no 40 MB was reserved for it (many such connections at once).
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut raw = t.raw().await;
        let mut partial = Vec::new();
        partial.extend_from_slice(&40_000_000i32.to_le_bytes());
        partial.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0xdd, 7, 0, 0, 0, 0, 0, 0]);
        raw.send_bytes(&partial).await.expect("send");
        stalled.push(raw);
    }
    // An idle connection (no partial message) outlives the frame timeout.
    let mut idle = t.raw().await;
    let pong = idle.command(doc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(pong.get_f64("ok").ok(), Some(1.0));
    let started = std::time::Instant::now();
    for raw in &mut stalled {
        let r = tokio::time::timeout(Duration::from_secs(10), raw.read_reply())
            .await
            .expect("a stalled connection is closed within the timeout");
        assert!(r.is_none());
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pong = idle.command(doc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(
        pong.get_f64("ok").ok(),
        Some(1.0),
        "the idle connection stays"
    );
    drop(stalled);
    drop(idle);
    t.assert_alive("stalled partial frames").await;

    // Too many connections: beyond --max-connections they are closed on
    // arrival; the ones open keep working, and a freed slot is reusable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let mut raw = t.raw().await;
        let ping = tokio::time::timeout(Duration::from_secs(10), async {
            raw.send_bytes(&argon_sidecar::wire::message::encode_op_msg(
                1,
                0,
                &doc! {"ping": 1, "$db": "admin"},
                &[],
            ))
            .await
            .ok()?;
            raw.read_reply().await
        })
        .await
        .expect("answered or closed");
        match ping {
            Some(_) => open.push(raw),
            None => refused += 1,
        }
    }
    assert!(refused >= 10, "{refused} of 20 refused");
    assert!(!open.is_empty() && open.len() <= 10, "{} open", open.len());
    for raw in &mut open {
        let pong = raw.command(doc! {"ping": 1, "$db": "admin"}).await;
        assert_eq!(pong.get_f64("ok").ok(), Some(1.0));
    }
    drop(open);
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.assert_alive("too many connections").await;
}

const PYMONGO: &str = r#"
import sys
from pymongo import MongoClient
from pymongo.errors import OperationFailure
c = MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
coll = c.hostile.py
coll.insert_one({"_id": 1, "a": [1, {"b": 2}]})
out = list(coll.aggregate([{"$addFields": {"a.400000000": 1}}]))
assert out == [{"_id": 1, "a": [{"400000000": 1}, {"b": 2, "400000000": 1}]}], out
try:
    coll.update_one({"_id": 1}, {"$set": {"a.400000000": 1}})
    raise SystemExit("the update padded the array")
except OperationFailure as e:
    assert e.code == 34, e.details
try:
    list(coll.aggregate([{"$project": {"r": {"$range": [0, 1000000000]}}}]))
    raise SystemExit("$range built a billion elements")
except OperationFailure as e:
    assert e.code == 146, e.details
assert c.admin.command("ping")["ok"] == 1.0
assert coll.find_one({"_id": 1}) == {"_id": 1, "a": [1, {"b": 2}]}
print("OK")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_reproductions_fail_alone() {
    let mut t = Target::start(&[]).await;
    let uri = t.sidecar.uri();
    let out = tokio::task::spawn_blocking(move || run_python(PYMONGO, &[&uri]))
        .await
        .expect("the script runs")
        .expect("pymongo sees errors, not a dead server");
    assert!(out.contains("OK"), "{out}");
    t.assert_alive("pymongo's reproductions").await;
}
