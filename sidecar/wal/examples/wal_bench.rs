//! The WAL engine's benchmarks (issue 4), side by side in one run; `bench/wal`
//! runs it in release mode and writes its markdown into docs/benchmarks.md.
//!
//! `wal_bench [--quick] [--dir <scratch dir on the disk to measure>] [--only <section>]`
//! prints a markdown section on stdout and progress on stderr. `--quick`
//! shrinks every size (a smoke run; its figures mean little).
//!
//! Sections: durable append on the embedded store (1/16/64 writers, 1-doc
//! commits and group commit); the mongodb store on FerretDB next to
//! FerretDB's own inserts; branch creation from a 1,000- and a
//! 1,000,000-document parent; reads at random points of a 100,000-commit
//! history with snapshots every 10,000; fork (clone) of a 1,000,000-document
//! state; memory per materialized document (a counting allocator).

// The counting allocator: a `GlobalAlloc` impl is `unsafe` by definition; it
// only forwards to the system allocator and counts bytes.
#![allow(unsafe_code)]

use argon_testkit::FerretDb;
use argon_wal::materialized::{Materialized, MaterializedOptions};
use argon_wal::record::EncodedCommit;
use argon_wal::{
    BranchState, Commit, CommitTime, DocOp, EmbeddedStore, LogStore, LoggedOp, MongoStore,
    Namespace, ReadPoint, Seq, Wal, WalOptions, snapshot,
};
use bson::{Bson, Document, RawDocumentBuf, doc};
use futures::StreamExt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type BoxResult<T> = Result<T, Box<dyn Error>>;

// ---- counting allocator ----------------------------------------------------------

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

// ---- helpers ----------------------------------------------------------------------

const DB: &str = "bench";

fn ns(coll: &str) -> Namespace {
    Namespace::new(DB, coll)
}

/// The benchmark document: ~200 bytes of BSON, the shape of a user record.
fn make_doc(n: i64) -> Document {
    doc! {
        "_id": n,
        "name": format!("user-{n:08}"),
        "email": format!("user-{n:08}@example.com"),
        "age": (n % 90) as i32,
        "active": n % 3 == 0,
        "score": n as f64 * 0.5,
        "tags": ["alpha", "beta"],
        "address": {"city": "Berlin", "zip": format!("{:05}", n % 100_000)},
        "created": bson::DateTime::from_millis(1_700_000_000_000 + n),
    }
}

fn put(coll: &str, n: i64) -> DocOp {
    DocOp::Put {
        ns: ns(coll),
        id: Bson::Int64(n),
        doc: argon_wal::rawdoc::encode(&make_doc(n)).unwrap_or_default(),
    }
}

fn bson_len(d: &Document) -> usize {
    d.to_vec().map_or(0, |v| v.len())
}

/// A small deterministic PRNG (xorshift64*): reproducible random points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v < 0.001 {
        format!("{} ns", d.as_nanos())
    } else if v < 0.1 {
        format!("{:.1} µs", v * 1000.0)
    } else {
        format!("{v:.2} ms")
    }
}

fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn goal(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

fn err(e: impl std::fmt::Debug) -> Box<dyn Error> {
    format!("{e:?}").into()
}

async fn open_embedded(dir: &Path, project: &str, options: WalOptions) -> BoxResult<Wal> {
    std::fs::create_dir_all(dir)?;
    let store: Arc<dyn LogStore> = EmbeddedStore::open(dir)?;
    Ok(Wal::open(store, project, options).await?)
}

async fn write_ops(wal: &Wal, branch: &str, ops: Vec<DocOp>) -> BoxResult<()> {
    wal.write(branch, move |_| Ok::<_, ()>((ops.clone(), ())))
        .await
        .map_err(err)?;
    Ok(())
}

struct Sizes {
    append_secs: f64,
    mongo_secs: f64,
    big: i64,
    branch_reps: usize,
    history: u64,
    snapshot_every: u64,
    reads: usize,
    cold_reads: usize,
    /// Branches created in one burst on the mongodb store.
    burst: usize,
}

// ---- 1. durable append on the embedded store ----------------------------------------

struct AppendRun {
    ops_per_sec: f64,
    ops_per_commit: f64,
    /// With a materialized store: commits it had not applied when the load
    /// stopped, of all the load's commits.
    behind: Option<(u64, u64)>,
}

/// `writers` tasks, each writing `docs_per_write` new documents per
/// acknowledged write, for `secs`.
async fn append_run(
    dir: &Path,
    writers: usize,
    docs_per_write: usize,
    max_batch: usize,
    secs: f64,
    materialized: bool,
) -> BoxResult<AppendRun> {
    let kv = match materialized {
        true => Some(Arc::new(Materialized::open(
            dir.join("kv"),
            MaterializedOptions::with_budget(256 << 20),
        )?)),
        false => None,
    };
    let options = WalOptions {
        max_batch,
        materialized: kv.clone(),
        ..WalOptions::default()
    };
    let wal = open_embedded(dir, "append", options).await?;
    write_ops(&wal, "main", vec![put("warm", 0)]).await?;
    let start_seq = wal.read("main", ReadPoint::Head).await?.seq();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers as i64 {
        let (wal, stop, done) = (wal.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let ops: Vec<DocOp> = (0..docs_per_write)
                    .map(|_| {
                        i += 1;
                        put("docs", w * 1_000_000_000 + i)
                    })
                    .collect();
                write_ops(&wal, "main", ops)
                    .await
                    .map_err(|e| e.to_string())?;
                done.fetch_add(docs_per_write as u64, Ordering::Relaxed);
            }
            Ok::<_, String>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.map_err(err)?.map_err(err)?;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let head = wal.read("main", ReadPoint::Head).await?.seq();
    let commits = head.0 - start_seq.0;
    let behind = match &kv {
        Some(kv) => {
            let id = wal.branch("main").await?.id;
            let applied = kv.applied(kv.project("append")?, id)?.map_or(0, |a| a.0.0);
            Some((head.0.saturating_sub(applied), commits))
        }
        None => None,
    };
    let ops = done.load(Ordering::Relaxed) as f64;
    Ok(AppendRun {
        ops_per_sec: ops / elapsed,
        ops_per_commit: ops / commits.max(1) as f64,
        behind,
    })
}

/// Median latency of a 256-byte append + `fdatasync` on the scratch disk:
/// the floor under every durable commit.
fn fdatasync_latency(scratch: &Path) -> BoxResult<Duration> {
    use std::io::Write;
    let path = scratch.join("fdatasync-probe");
    let mut f = std::fs::File::create(&path)?;
    let mut lat = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        f.write_all(&[7u8; 256])?;
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    lat.sort();
    Ok(percentile(&lat, 0.5))
}

async fn bench_append(scratch: &Path, sizes: &Sizes, out: &mut String) -> BoxResult<()> {
    eprintln!("append: embedded store");
    let fsync = fdatasync_latency(scratch)?;
    out.push_str("### Durable append, embedded store\n\n");
    out.push_str(&format!(
        "This disk: a 256-byte append + `fdatasync` takes {} (median of 200), so one \
         branch commits at most ~{} times per second, whatever the CPU.\n\n",
        ms(fsync),
        thousands(1.0 / fsync.as_secs_f64().max(1e-9))
    ));
    out.push_str(
        "An op is one document put. Each writer waits for its acknowledgement (fdatasync) \
         before the next write. *1-doc commits*: `max_batch = 1`, every write is its own \
         commit and its own fdatasync. *Group commit*: the default `max_batch = 512`; \
         concurrent writes share one commit (one record, one fdatasync); shown with 1 and \
         with 10 documents per write (an `insertMany` of 10).\n\n",
    );
    out.push_str(
        "| writers | 1-doc commits: ops/s | group commit, 1 doc/write: ops/s (ops/commit) | group commit, 10 docs/write: ops/s (ops/commit) |\n|---:|---:|---:|---:|\n",
    );
    let mut best64 = 0.0f64;
    let mut one_doc64 = 0.0f64;
    for writers in [1usize, 16, 64] {
        let mut cells = Vec::new();
        for (i, (docs, batch)) in [(1usize, 1usize), (1, 512), (10, 512)].iter().enumerate() {
            let dir = scratch.join(format!("append-{writers}-{i}"));
            let r = append_run(&dir, writers, *docs, *batch, sizes.append_secs, false).await?;
            std::fs::remove_dir_all(&dir)?;
            eprintln!(
                "  {writers} writers, {docs} docs/write, max_batch {batch}: {:.0} ops/s, {:.1} ops/commit",
                r.ops_per_sec, r.ops_per_commit
            );
            if writers == 64 {
                best64 = best64.max(r.ops_per_sec);
                if *docs == 1 {
                    one_doc64 = one_doc64.max(r.ops_per_sec);
                }
            }
            cells.push(if *batch == 1 {
                thousands(r.ops_per_sec)
            } else {
                format!("{} ({:.1})", thousands(r.ops_per_sec), r.ops_per_commit)
            });
        }
        out.push_str(&format!("| {writers} | {} |\n", cells.join(" | ")));
    }
    out.push_str(&format!(
        "\nGoal ≥ 100,000 ops/s at 64 writers: 1 doc per write {} ({} ops/s); 10 docs per write {} ({} ops/s).\n\n",
        goal(one_doc64 >= 100_000.0),
        thousands(one_doc64),
        goal(best64 >= 100_000.0),
        thousands(best64),
    ));
    bench_append_materialized(scratch, sizes, out).await
}

/// The same group-commit load with and without a materialized store kept
/// up by the committer's background apply (issue 17), alternated in one run.
async fn bench_append_materialized(
    scratch: &Path,
    sizes: &Sizes,
    out: &mut String,
) -> BoxResult<()> {
    eprintln!("append: with and without the materialized store");
    out.push_str(
        "With the materialized store kept up (issue 17: the committer offers each \
         acknowledged commit to a background apply into fjall, 256 MiB budget), against the \
         same load without it, alternated in one run (64 writers, group commit). *Behind*: \
         commits the store had not applied when the load stopped, of the load's commits.\n\n\
         | docs/write | without: ops/s | with: ops/s | ratio | behind |\n|---:|---:|---:|---:|---:|\n",
    );
    for docs in [1usize, 10] {
        let (mut without, mut with, mut behind) = (0.0f64, 0.0f64, (0u64, 0u64));
        for round in 0..2 {
            for on in [false, true] {
                let dir = scratch.join(format!("append-kv-{docs}-{round}-{on}"));
                let r = append_run(&dir, 64, docs, 512, sizes.append_secs, on).await?;
                std::fs::remove_dir_all(&dir)?;
                match on {
                    true => {
                        with += r.ops_per_sec / 2.0;
                        let (b, c) = r.behind.unwrap_or_default();
                        behind = (behind.0 + b, behind.1 + c);
                    }
                    false => without += r.ops_per_sec / 2.0,
                }
            }
        }
        eprintln!("  {docs} docs/write: {without:.0} ops/s without, {with:.0} with");
        out.push_str(&format!(
            "| {docs} | {} | {} | {:.2} | {} of {} |\n",
            thousands(without),
            thousands(with),
            with / without.max(1.0),
            behind.0,
            behind.1
        ));
    }
    out.push('\n');
    Ok(())
}

// ---- 2. mongodb store on FerretDB vs FerretDB's own inserts --------------------------

async fn ferret_inserts(
    server: &FerretDb,
    clients: usize,
    round: usize,
    secs: f64,
) -> BoxResult<f64> {
    let client = mongodb::Client::with_uri_str(server.uri()).await?;
    let coll = client
        .database("plain")
        .collection::<Document>(&format!("c{clients}-{round}"));
    coll.insert_one(make_doc(-1)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients as i64 {
        let (coll, stop, done) = (coll.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                coll.insert_one(make_doc(w * 1_000_000_000 + i))
                    .await
                    .map_err(|e| e.to_string())?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, String>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.map_err(err)?.map_err(err)?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64())
}

async fn wal_on_ferret(
    server: &FerretDb,
    writers: usize,
    round: usize,
    secs: f64,
) -> BoxResult<(f64, f64)> {
    let store: Arc<dyn LogStore> = MongoStore::connect(server.uri(), "argon_wal_bench").await?;
    let wal = Wal::open(store, &format!("w{writers}-{round}"), WalOptions::default()).await?;
    write_ops(&wal, "main", vec![put("warm", 0)]).await?;
    let start_seq = wal.read("main", ReadPoint::Head).await?.seq();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers as i64 {
        let (wal, stop, done) = (wal.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                write_ops(&wal, "main", vec![put("docs", w * 1_000_000_000 + i)])
                    .await
                    .map_err(|e| e.to_string())?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, String>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.map_err(err)?.map_err(err)?;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let commits = wal.read("main", ReadPoint::Head).await?.seq().0 - start_seq.0;
    let ops = done.load(Ordering::Relaxed) as f64;
    Ok((ops / elapsed, ops / commits.max(1) as f64))
}

async fn bench_mongo(sizes: &Sizes, out: &mut String) -> BoxResult<()> {
    eprintln!("append: mongodb store on FerretDB");
    let server = FerretDb::start().await.map_err(err)?;
    out.push_str("### Append to the mongodb store on FerretDB, next to FerretDB's own inserts\n\n");
    out.push_str(
        "Same documents, same FerretDB (v1.24, SQLite backend, one server for both), same \
         number of concurrent clients, each waiting for its acknowledgement. FerretDB: \
         `insert_one` per document. WAL: `Wal::write` of a 1-document put on the mongodb \
         store (one `insert` of the commit record into `commits`, `w: majority, j: true`); \
         with 1 writer every commit holds 1 document, with 16 concurrent writers group \
         commit packs them. Three interleaved rounds of each; medians.\n\n",
    );
    out.push_str("| clients | FerretDB insert_one: docs/s | WAL on FerretDB: docs/s (docs/commit) | ratio WAL / FerretDB |\n|---:|---:|---:|---:|\n");
    let mut ratios = Vec::new();
    for clients in [1usize, 16] {
        // Interleaved rounds, medians: both share one noisy disk.
        let (mut plain, mut wal, mut per_commit) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..3 {
            plain.push(ferret_inserts(&server, clients, round, sizes.mongo_secs).await?);
            let (w, p) = wal_on_ferret(&server, clients, round, sizes.mongo_secs).await?;
            wal.push(w);
            per_commit.push(p);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (plain, wal, per_commit) = (
            median(&mut plain),
            median(&mut wal),
            median(&mut per_commit),
        );
        eprintln!(
            "  {clients} clients: ferretdb {plain:.0}/s, wal {wal:.0}/s ({per_commit:.1}/commit)"
        );
        let ratio = wal / plain.max(1e-9);
        ratios.push((clients, ratio));
        out.push_str(&format!(
            "| {clients} | {} | {} ({per_commit:.1}) | {ratio:.2} |\n",
            thousands(plain),
            thousands(wal)
        ));
    }
    let line: Vec<String> = ratios
        .iter()
        .map(|(c, r)| format!("{c} client(s) {} ({r:.2})", goal(*r >= 0.8)))
        .collect();
    out.push_str(&format!("\nGoal ratio ≥ 0.8: {}.\n\n", line.join("; ")));

    // A branch creation is one catalog record: at best one FerretDB insert.
    let plain = ferret_inserts(&server, 16, 9, sizes.mongo_secs).await?;
    let (n, took) = branch_burst(&server, sizes.burst).await?;
    let rate = n as f64 / took.as_secs_f64();
    eprintln!("  {n} branch creations, 16 at once: {rate:.0}/s");
    out.push_str(&format!(
        "{n} branch creations from `main`'s head through one handle, 16 at once (as the \
         operator reconciles a directory of `ArgonBranch`es): {}/s, {:.2}× FerretDB's \
         `insert_one` rate at 16 clients in the same run ({}/s; a creation is one catalog \
         record, so that rate is its ceiling).\n\n",
        thousands(rate),
        rate / plain.max(1e-9),
        thousands(plain)
    ));
    Ok(())
}

/// `n` branches created 16 at a time through one handle, each as the
/// operator does it (look the name up, create, read its info and its log's
/// size); how long all took.
async fn branch_burst(server: &FerretDb, n: usize) -> BoxResult<(usize, Duration)> {
    let store: Arc<dyn LogStore> = MongoStore::connect(server.uri(), "argon_burst")
        .await
        .map_err(err)?;
    let wal = Wal::open(store, "burst", WalOptions::default())
        .await
        .map_err(err)?;
    let started = Instant::now();
    let results: Vec<BoxResult<()>> = futures::stream::iter(0..n)
        .map(|i| {
            let wal = wal.clone();
            async move {
                let name = format!("b{i}");
                if wal.branch(&name).await.is_ok() {
                    return Err(format!("{name} exists before its creation").into());
                }
                wal.create_branch(&name, "main", ReadPoint::Head)
                    .await
                    .map_err(err)?;
                wal.log_info(&name).await.map_err(err)?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = started.elapsed();
    results.into_iter().collect::<BoxResult<Vec<()>>>()?;
    Ok((n, took))
}

// ---- 3. branch creation, 5. fork ---------------------------------------------------

/// Fills `branch` with `n` documents in commits of at most 10,000.
async fn fill(wal: &Wal, branch: &str, n: i64) -> BoxResult<()> {
    let mut next = 0i64;
    while next < n {
        let end = (next + 10_000).min(n);
        write_ops(wal, branch, (next..end).map(|i| put("docs", i)).collect()).await?;
        next = end;
    }
    Ok(())
}

struct CreateRun {
    small: Vec<Duration>,
    big: Vec<Duration>,
}

async fn creation_run(dir: &Path, sizes: &Sizes) -> BoxResult<(CreateRun, Wal)> {
    let options = WalOptions {
        snapshot_policy: argon_wal::SnapshotPolicy::Never,
        ..WalOptions::default()
    };
    let wal = open_embedded(dir, "branches", options).await?;
    wal.create_branch("p-small", "main", ReadPoint::Head)
        .await?;
    wal.create_branch("p-big", "main", ReadPoint::Head).await?;
    let t = Instant::now();
    fill(&wal, "p-small", 1_000).await?;
    fill(&wal, "p-big", sizes.big).await?;
    eprintln!("  parents filled in {:.1} s", t.elapsed().as_secs_f64());
    let mut run = CreateRun {
        small: Vec::new(),
        big: Vec::new(),
    };
    for i in 0..sizes.branch_reps {
        for (parent, into) in [("p-small", &mut run.small), ("p-big", &mut run.big)] {
            let t = Instant::now();
            wal.create_branch(&format!("{parent}-{i}"), parent, ReadPoint::Head)
                .await?;
            into.push(t.elapsed());
        }
    }
    run.small.sort();
    run.big.sort();
    Ok((run, wal))
}

async fn bench_branches(scratch: &Path, sizes: &Sizes, out: &mut String) -> BoxResult<()> {
    eprintln!("branch creation");
    out.push_str("### Branch creation\n\n");
    out.push_str(&format!(
        "`Wal::create_branch(name, parent, Head)`, alternating between a parent holding \
         1,000 documents and one holding {} (filled with commits of 10,000 documents), \
         {} creations each. A creation is one catalog record appended durably \
         (one fdatasync) whatever the parent's size. Run twice: on the disk under \
         test, and on tmpfs (`/dev/shm`, no real fsync) to show the engine's own cost.\n\n",
        thousands(sizes.big as f64),
        sizes.branch_reps
    ));
    out.push_str("| store | parent 1,000 docs: median (p99) | parent 1,000,000 docs: median (p99) | ratio of medians |\n|---|---:|---:|---:|\n");
    let shm = PathBuf::from("/dev/shm");
    let mut targets = vec![("disk (fdatasync)", scratch.join("branches"))];
    if shm.is_dir() {
        targets.push((
            "tmpfs (engine cost)",
            shm.join(format!("argon-wal-bench-{}", std::process::id())),
        ));
    }
    let mut verdicts = Vec::new();
    let mut fork_source = None;
    for (label, dir) in targets {
        let (run, wal) = creation_run(&dir, sizes).await?;
        let (a, b) = (percentile(&run.small, 0.5), percentile(&run.big, 0.5));
        let ratio = b.as_secs_f64() / a.as_secs_f64().max(1e-12);
        eprintln!("  {label}: {} vs {} (ratio {ratio:.2})", ms(a), ms(b));
        out.push_str(&format!(
            "| {label} | {} ({}) | {} ({}) | {ratio:.2} |\n",
            ms(a),
            ms(percentile(&run.small, 0.99)),
            ms(b),
            ms(percentile(&run.big, 0.99))
        ));
        verdicts.push(format!(
            "{label}: < 1 ms {}, ratio ≤ 1.2 {}",
            goal(b < Duration::from_millis(1) && a < Duration::from_millis(1)),
            goal(ratio <= 1.2)
        ));
        if fork_source.is_none() {
            fork_source = Some(wal.read("p-big", ReadPoint::Head).await?);
        }
        drop(wal);
        std::fs::remove_dir_all(&dir)?;
    }
    out.push_str(&format!("\nGoals: {}.\n\n", verdicts.join("; ")));

    // 5. Fork of a materialized state.
    if let Some(state) = fork_source {
        eprintln!("fork of a materialized state");
        let docs = state.doc_count()?;
        let mut clones = Vec::with_capacity(10_000);
        let mut first_writes = Vec::with_capacity(1_000);
        for i in 0..10_000 {
            let t = Instant::now();
            let fork = std::hint::black_box(state.clone());
            clones.push(t.elapsed());
            if i < 1_000 {
                let mut fork = fork;
                let t = Instant::now();
                fork.apply(&put("docs", i));
                first_writes.push(t.elapsed());
            }
        }
        clones.sort();
        first_writes.sort();
        let median = percentile(&clones, 0.5);
        out.push_str("### Fork of a materialized state\n\n");
        out.push_str(&format!(
            "`BranchState::clone()` of a head holding {} documents (persistent maps: \
             O(1), shares everything), 10,000 times; then the first write into such a fork \
             (copies one root-to-leaf path).\n\n",
            thousands(docs as f64)
        ));
        out.push_str("| operation | median | p99 |\n|---|---:|---:|\n");
        out.push_str(&format!(
            "| fork (clone) | {} | {} |\n| first put into the fork | {} | {} |\n\nGoal < 1 ms: {}.\n\n",
            ms(median),
            ms(percentile(&clones, 0.99)),
            ms(percentile(&first_writes, 0.5)),
            ms(percentile(&first_writes, 0.99)),
            goal(median < Duration::from_millis(1))
        ));
    }
    Ok(())
}

// ---- 4. time travel -----------------------------------------------------------------

struct HistoryRun {
    warm: Vec<Duration>,
    by_time: Vec<Duration>,
    cold: Vec<Duration>,
    /// The same points through the materialized store (issue 17).
    views: Option<ViewRun>,
}

struct ViewRun {
    /// Catching an empty store up with the whole history from the log.
    catch_up: Duration,
    /// A view at a random point and one point read of a random `_id`.
    point: Vec<Duration>,
    /// A view at a random point and a scan of the whole collection.
    scan: Vec<Duration>,
    /// `point` for the oldest and the newest tenth of the history.
    oldest: Vec<Duration>,
    newest: Vec<Duration>,
    disk_bytes: u64,
}

/// Time travel through the materialized store: one catch-up of an empty
/// store from the log, then views at random points (no replay).
async fn view_run(
    store: Arc<dyn LogStore>,
    scratch: &Path,
    sizes: &Sizes,
    ids: i64,
) -> BoxResult<ViewRun> {
    let kv_dir = scratch.join("history-kv");
    let kv = Arc::new(Materialized::open(
        &kv_dir,
        MaterializedOptions::with_budget(256 << 20),
    )?);
    let options = WalOptions {
        materialized: Some(Arc::clone(&kv)),
        ..WalOptions::default()
    };
    let wal = Wal::open(store, "history", options).await?;
    let t = Instant::now();
    wal.materialized_view("main", ReadPoint::Head).await?;
    let catch_up = t.elapsed();
    eprintln!(
        "  materialized store caught up with {} commits in {:.1} s",
        sizes.history,
        catch_up.as_secs_f64()
    );
    let coll_ns = ns("docs");
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut point, mut scan, mut oldest, mut newest) = (vec![], vec![], vec![], vec![]);
    let tenth = (sizes.history / 10).max(1);
    for i in 0..sizes.reads * 2 {
        let s = match i % 4 {
            // A quarter each from the oldest and the newest tenth.
            0 => 1 + rng.next() % tenth,
            1 => sizes.history - rng.next() % tenth,
            _ => 1 + rng.next() % sizes.history,
        };
        let id = Bson::Int64((rng.next() % ids as u64) as i64);
        let t = Instant::now();
        let view = wal
            .materialized_view("main", ReadPoint::Seq(Seq(s)))
            .await?;
        let found = match kv.collection(&view, &coll_ns)? {
            Some(c) => c.get(&id)?.is_some(),
            None => false,
        };
        let took = t.elapsed();
        point.push(took);
        match i % 4 {
            0 => oldest.push(took),
            1 => newest.push(took),
            _ => {}
        }
        // `_id` n is first written by commit n * 7919⁻¹ mod 10,000 (< 10,000).
        if s >= ids as u64 && !found {
            return Err(format!("view at {s}: _id {id} missing").into());
        }
    }
    for _ in 0..sizes.cold_reads {
        let s = 1 + rng.next() % sizes.history;
        let t = Instant::now();
        let view = wal
            .materialized_view("main", ReadPoint::Seq(Seq(s)))
            .await?;
        let n = match kv.collection(&view, &coll_ns)? {
            Some(c) => c.scan().try_fold(0u64, |n, r| r.map(|_| n + 1))?,
            None => 0,
        };
        scan.push(t.elapsed());
        if s >= ids as u64 && n != ids as u64 {
            return Err(format!("view at {s}: {n} documents").into());
        }
    }
    for v in [&mut point, &mut scan, &mut oldest, &mut newest] {
        v.sort();
    }
    let disk_bytes = kv.disk_space();
    drop((wal, kv));
    std::fs::remove_dir_all(&kv_dir)?;
    Ok(ViewRun {
        catch_up,
        point,
        scan,
        oldest,
        newest,
        disk_bytes,
    })
}

/// Writes the history with a stored snapshot every `every` commits, then
/// reads it at random points.
async fn history_run(scratch: &Path, sizes: &Sizes, every: u64) -> BoxResult<HistoryRun> {
    eprintln!("time travel, snapshots every {every}");
    let dir = scratch.join(format!("history-{every}"));
    std::fs::create_dir_all(&dir)?;
    let store = EmbeddedStore::open(&dir)?;
    let store: Arc<dyn LogStore> = store;
    let options = WalOptions {
        snapshot_policy: argon_wal::SnapshotPolicy::EveryCommits(every),
        ..WalOptions::default()
    };
    let wal = Wal::open(store.clone(), "history", options.clone()).await?;
    let main = wal.branch("main").await?;
    let t = Instant::now();
    // The history is appended straight to the store, 2,000 commits in
    // flight (one fdatasync per group): the engine's per-branch committer
    // would need one fdatasync per commit. Snapshots are taken where the
    // engine would take them, from the same fold.
    let mut state = BranchState::empty(CommitTime(0));
    let ids = 10_000i64;
    let base_time = main.head_time.0 + 1;
    let mut seq = 0u64;
    while seq < sizes.history {
        let end = (seq + 2_000).min(sizes.history);
        let mut commits = Vec::with_capacity((end - seq) as usize);
        for s in seq + 1..=end {
            let op = put("docs", (s as i64 * 7919) % ids);
            let pre_image = state.apply(&op);
            commits.push(EncodedCommit::new(Commit {
                branch: main.id,
                seq: Seq(s),
                time: CommitTime(base_time + s as i64),
                actor: "bench".into(),
                ops: vec![LoggedOp { op, pre_image }],
                seal: None,
                retries: Vec::new(),
            })?);
            if s % every == 0 {
                let at = labelled(state.clone(), Seq(s), CommitTime(base_time + s as i64));
                store
                    .put_snapshot("history", snapshot::SnapshotStream::encode(main.id, at))
                    .await?;
            }
        }
        let results =
            futures::future::join_all(commits.iter().map(|c| store.append_commit("history", c)))
                .await;
        for r in results {
            r?;
        }
        seq = end;
    }
    drop(wal);
    eprintln!(
        "  {} commits written in {:.1} s",
        sizes.history,
        t.elapsed().as_secs_f64()
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Warm: one long-lived handle (a running sidecar), its in-memory
    // checkpoints filling as it reads.
    let warm = Wal::open(store.clone(), "history", options.clone()).await?;
    let _ = warm.read("main", ReadPoint::Head).await?;
    let mut warm_lat = Vec::with_capacity(sizes.reads);
    for _ in 0..sizes.reads {
        let s = Seq(1 + rng.next() % sizes.history);
        let t = Instant::now();
        let st = warm.read("main", ReadPoint::Seq(s)).await?;
        warm_lat.push(t.elapsed());
        if st.seq() != s {
            return Err(format!("read seq {s} got {}", st.seq()).into());
        }
    }
    // Cold: a fresh handle per read (nothing in memory: the head and the
    // point are each loaded from a stored snapshot plus replay).
    let mut cold_lat = Vec::with_capacity(sizes.cold_reads);
    for _ in 0..sizes.cold_reads {
        let s = Seq(1 + rng.next() % sizes.history);
        let fresh = Wal::open(store.clone(), "history", options.clone()).await?;
        let t = Instant::now();
        let st = fresh.read("main", ReadPoint::Seq(s)).await?;
        cold_lat.push(t.elapsed());
        if st.seq() != s {
            return Err(format!("read seq {s} got {}", st.seq()).into());
        }
    }
    // By time: the same path after a time → seq lookup.
    let mut time_lat = Vec::with_capacity(sizes.reads);
    for _ in 0..sizes.reads {
        let s = 1 + rng.next() % sizes.history;
        let t = Instant::now();
        let st = warm
            .read("main", ReadPoint::Time(CommitTime(base_time + s as i64)))
            .await?;
        time_lat.push(t.elapsed());
        if st.seq() != Seq(s) {
            return Err(format!("read time of seq {s} got {}", st.seq()).into());
        }
    }
    warm_lat.sort();
    cold_lat.sort();
    time_lat.sort();
    drop(warm);
    let views = match every == sizes.snapshot_every {
        true => Some(view_run(store.clone(), scratch, sizes, ids).await?),
        false => None,
    };
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(HistoryRun {
        warm: warm_lat,
        by_time: time_lat,
        cold: cold_lat,
        views,
    })
}

async fn bench_time_travel(scratch: &Path, sizes: &Sizes, out: &mut String) -> BoxResult<()> {
    let goal_every = sizes.snapshot_every;
    let dense = (goal_every / 10).max(1);
    let mut runs = Vec::new();
    for every in [goal_every, dense] {
        runs.push((every, history_run(scratch, sizes, every).await?));
    }
    out.push_str("### State at a random point of the history\n\n");
    out.push_str(&format!(
        "A {}-commit history of `main` (one put per commit over 10,000 `_id`s, \
         ~200-byte documents, written straight to the store with 2,000 commits in flight), \
         embedded store on the disk. `Wal::read(\"main\", point)` at uniformly random \
         points: nearest in-memory checkpoint or stored snapshot at or before the point, \
         then replay of the log up to it. *Warm*: one long-lived handle ({} reads; it keeps \
         decoded snapshots as in-memory checkpoints). *Cold*: a new handle per read ({} \
         reads; decodes the head's and the point's snapshots first). The goal's setting is \
         a snapshot every {} commits; the same history with one every {} is shown \
         for comparison.\n\n",
        thousands(sizes.history as f64),
        sizes.reads,
        sizes.cold_reads,
        thousands(goal_every as f64),
        thousands(dense as f64),
    ));
    out.push_str("| snapshots every | read | p50 | p99 | max |\n|---:|---|---:|---:|---:|\n");
    for (every, run) in &runs {
        for (label, lat) in [
            ("by seq, warm handle", &run.warm),
            ("by time, warm handle", &run.by_time),
            ("by seq, cold handle", &run.cold),
        ] {
            out.push_str(&format!(
                "| {} | {label} | {} | {} | {} |\n",
                thousands(*every as f64),
                ms(percentile(lat, 0.5)),
                ms(percentile(lat, 0.99)),
                ms(percentile(lat, 1.0))
            ));
        }
    }
    let worst = |r: &HistoryRun| {
        percentile(&r.warm, 0.99)
            .max(percentile(&r.cold, 0.99))
            .max(percentile(&r.by_time, 0.99))
    };
    let p99 = worst(&runs[0].1);
    let p99_dense = worst(&runs[1].1);
    out.push_str(&format!(
        "\nGoal p99 < 50 ms with snapshots every {}: {} (worst p99 {}); with snapshots every {}: worst p99 {}.\n\n",
        thousands(goal_every as f64),
        goal(p99 < Duration::from_millis(50)),
        ms(p99),
        thousands(dense as f64),
        ms(p99_dense)
    ));
    if let Some(v) = &runs[0].1.views {
        out.push_str(&format!(
            "Through the materialized store (issue 17; `Wal::materialized_view`, 256 MiB \
             budget): the same history, the store first caught up from the log in {:.1} s \
             ({} on disk), then a view at a random point (no replay, no snapshot) and one \
             read in it.\n\n",
            v.catch_up.as_secs_f64(),
            mib(v.disk_bytes),
        ));
        out.push_str("| read | p50 | p99 | max |\n|---|---:|---:|---:|\n");
        for (label, lat) in [
            ("view + point read of a random `_id`", &v.point),
            ("… at the oldest tenth of the history", &v.oldest),
            ("… at the newest tenth", &v.newest),
            ("view + scan of the whole collection", &v.scan),
        ] {
            out.push_str(&format!(
                "| {label} | {} | {} | {} |\n",
                ms(percentile(lat, 0.5)),
                ms(percentile(lat, 0.99)),
                ms(percentile(lat, 1.0))
            ));
        }
        let p99 = percentile(&v.point, 0.99);
        out.push_str(&format!(
            "\nIssue 17's goal for time travel (p99 < 20 ms, flat from the oldest to the newest \
             point), for a view and a point read: {} (p99 {}; oldest tenth {}, newest tenth {}).\n\n",
            goal(p99 < Duration::from_millis(20)),
            ms(p99),
            ms(percentile(&v.oldest, 0.99)),
            ms(percentile(&v.newest, 0.99)),
        ));
    }
    Ok(())
}

/// `state` labelled as being at `seq`/`time` (what the engine's snapshots
/// carry): folding an empty commit only sets the label.
fn labelled(mut state: BranchState, seq: Seq, time: CommitTime) -> BranchState {
    state.apply_commit(&Commit {
        branch: argon_wal::BranchId(0),
        seq,
        time,
        actor: String::new(),
        ops: Vec::new(),
        seal: None,
        retries: Vec::new(),
    });
    state
}

// ---- 6. memory per document ---------------------------------------------------------

fn bench_memory(sizes: &Sizes, out: &mut String) {
    eprintln!("memory per document");
    let n = sizes.big;
    let bson_total: usize = (0..n).map(|i| bson_len(&make_doc(i))).sum();
    let avg_bson = bson_total as f64 / n as f64;

    // The representation as it is: BranchState built by replay.
    let (live0, rss0) = (live_bytes(), rss_bytes());
    let mut state = BranchState::empty(CommitTime(0));
    for i in 0..n {
        state.apply(&put("docs", i));
    }
    let (live1, rss1) = (live_bytes(), rss_bytes());
    let per_doc = (live1 - live0) as f64 / n as f64;
    let rss_per_doc = rss1.saturating_sub(rss0) as f64 / n as f64;
    drop(state);

    // Components, to see where the bytes go.
    let live_a = live_bytes();
    let docs: Vec<Document> = (0..n).map(make_doc).collect();
    let per_document =
        (live_bytes() - live_a) as f64 / n as f64 - std::mem::size_of::<Document>() as f64;
    drop(docs);
    let live_b = live_bytes();
    let raws: Vec<RawDocumentBuf> = (0..n)
        .filter_map(|i| argon_wal::rawdoc::encode(&make_doc(i)).ok())
        .collect();
    let per_raw = (live_bytes() - live_b) as f64 / n as f64;
    drop(raws);

    out.push_str("### Memory per materialized document\n\n");
    out.push_str(&format!(
        "{} documents of {:.0} bytes of BSON on average, put into a `BranchState` by \
         replay. Live heap bytes counted by a counting global allocator (requested sizes; \
         malloc's own per-allocation overhead comes on top, visible in the RSS column).\n\n",
        thousands(n as f64),
        avg_bson
    ));
    out.push_str("| representation | bytes per document | × BSON size |\n|---|---:|---:|\n");
    out.push_str(&format!(
        "| `BranchState` (per collection an `OrdSet` of entries, each `_id` key + BSON bytes in one `Arc<[u8]>`), heap | {per_doc:.0} | {:.2} |\n",
        per_doc / avg_bson
    ));
    out.push_str(&format!(
        "| same, RSS delta | {rss_per_doc:.0} | {:.2} |\n",
        rss_per_doc / avg_bson
    ));
    out.push_str(&format!(
        "| for comparison: the same document parsed as `bson::Document` (what state held before) | {:.0} | {:.2} |\n",
        per_document + std::mem::size_of::<Document>() as f64,
        (per_document + std::mem::size_of::<Document>() as f64) / avg_bson
    ));
    out.push_str(&format!(
        "| for comparison: the document's bytes alone, as an exactly sized `RawDocumentBuf` | {per_raw:.0} | {:.2} |\n",
        per_raw / avg_bson
    ));
    out.push_str(&format!(
        "\nGoal ≤ 1.5× BSON size: {} ({:.2}×). See `sidecar/wal/DESIGN.md` (\"Memory\") for where the bytes go.\n\n",
        goal(per_doc / avg_bson <= 1.5),
        per_doc / avg_bson
    ));
}

// ---- main ---------------------------------------------------------------------------

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let scratch_base = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let sizes = if quick {
        Sizes {
            append_secs: 0.5,
            mongo_secs: 0.5,
            big: 20_000,
            branch_reps: 20,
            history: 5_000,
            snapshot_every: 500,
            reads: 20,
            cold_reads: 5,
            burst: 32,
        }
    } else {
        Sizes {
            append_secs: 3.0,
            mongo_secs: 2.0,
            big: 1_000_000,
            branch_reps: 200,
            history: 100_000,
            snapshot_every: 10_000,
            reads: 200,
            cold_reads: 50,
            burst: 200,
        }
    };
    let scratch = tempfile::Builder::new()
        .prefix("argon-wal-bench-")
        .tempdir_in(&scratch_base)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // `--only <memory|append|mongo|branches|history>`: one section (a
    // partial run, for profiling; bench/wal always runs them all).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut out = String::new();
    let t0 = Instant::now();
    if run("memory") {
        bench_memory(&sizes, &mut out);
    }
    rt.block_on(async {
        if run("append") {
            bench_append(scratch.path(), &sizes, &mut out).await?;
        }
        if run("mongo") {
            bench_mongo(&sizes, &mut out).await?;
        }
        if run("branches") {
            bench_branches(scratch.path(), &sizes, &mut out).await?;
        }
        if run("history") {
            bench_time_travel(scratch.path(), &sizes, &mut out).await?;
        }
        Ok::<_, Box<dyn Error>>(())
    })?;
    eprintln!("all done in {:.0} s", t0.elapsed().as_secs_f64());
    print!("{out}");
    Ok(())
}
