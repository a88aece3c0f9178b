//! Where a sidecar's memory goes under `bench/sidecar`'s insert load (issue
//! 17, "find today's peak"), measured on the WAL engine alone with a
//! counting allocator; `bench/memory` runs it in release mode and writes its
//! markdown into docs/benchmarks.md.
//!
//! `mem_bench [--docs N] [--seconds S] [--dir <scratch dir>]` prints a
//! markdown section on stdout and progress on stderr.
//!
//! The load is `bench/sidecar`'s (`sidecar/server/examples/wire_bench.rs`)
//! without the wire: 1 KB documents `{_id, n, pad}` inserted by 1, 16 and
//! 64 concurrent writers into a collection each (one retryable insert per
//! write, as the driver sends them), each phase capped in time and then
//! topped up to N documents by commits of 1,000, every collection but the
//! first dropped after its phase. So at most two collections of N documents
//! are live at once, as in the wire benchmark.
//!
//! Parts, all in one run:
//! 1. the state alone: N documents folded into a `BranchState` (no engine),
//!    with and without a secondary index: bytes per live document by kind;
//! 2. the engine under the load, with its defaults and with automatic
//!    snapshots off: peak and retained heap, and what they are made of.

// The counting allocator: a `GlobalAlloc` impl is `unsafe` by definition; it
// only forwards to the system allocator and counts bytes.
#![allow(unsafe_code)]

use argon_wal::{
    BranchState, CommitTime, DocOp, EmbeddedStore, LogStore, Namespace, ReadPoint, RetryKey, Wal,
    WalOptions,
};
use bson::{Bson, Document, doc};
use std::alloc::{GlobalAlloc, Layout, System};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type BoxResult<T> = Result<T, Box<dyn Error>>;

// ---- counting allocator ----------------------------------------------------------

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
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
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak window at the current live size.
fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// The process's peak RSS (VmHWM) since the last [`reset_rss_peak`].
fn rss_peak() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Resets VmHWM to the current RSS (`clear_refs` 5, Linux ≥ 4.0).
fn reset_rss_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mb(b: usize) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn signed_mb(b: isize) -> String {
    format!("{:+.1} MB", b as f64 / 1e6)
}

fn err(e: impl std::fmt::Debug) -> Box<dyn Error> {
    format!("{e:?}").into()
}

// ---- the load --------------------------------------------------------------------

const DB: &str = "wire_bench";

/// `wire_bench`'s document: 1 KB with its `_id` and a counter.
fn document(i: u64) -> Document {
    doc! {"_id": i as i64, "n": i as i64, "pad": "x".repeat(1000 - 40)}
}

fn bson_len(d: &Document) -> usize {
    d.to_vec().map_or(0, |v| v.len())
}

struct Args {
    docs: u64,
    seconds: u64,
    clients: Vec<u64>,
    dir: Option<PathBuf>,
    /// Run configuration `i` of `CONFIGS` (a child process).
    child: Option<usize>,
}

fn parse_args() -> BoxResult<Args> {
    let mut a = Args {
        docs: 100_000,
        seconds: 15,
        clients: vec![1, 16, 64],
        dir: None,
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--docs" => a.docs = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--clients" => {
                a.clients = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--dir" => a.dir = Some(PathBuf::from(value()?)),
            "--child" => a.child = Some(value()?.parse()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

// ---- part 1: the state alone ---------------------------------------------------------

struct StateCost {
    docs: u64,
    bson: usize,
    heap: usize,
    with_index: usize,
    fork_write: usize,
}

/// Bytes a `BranchState` holds for `docs` documents, folded one put at a
/// time in `_id` order (as the load inserts them), without and with a key
/// map; and what a checkpoint of it costs once the head moved on by one
/// put per 1,000 documents (the path copies it pins).
fn state_cost(docs: u64) -> StateCost {
    let ns = Namespace::new(DB, "c");
    let mut bson = 0;
    let before = live();
    let mut s = BranchState::empty(CommitTime(0));
    for i in 0..docs {
        let d = document(i);
        bson += bson_len(&d);
        s.apply(&DocOp::Put {
            ns: ns.clone(),
            id: Bson::Int64(i as i64),
            doc: argon_wal::rawdoc::encode(&d).unwrap_or_default(),
        });
    }
    let heap = live() - before;
    // A checkpoint is a clone: what it pins is what the head then copies.
    let checkpoint = s.clone();
    let before_writes = live();
    for i in (0..docs).step_by(1000) {
        s.apply(&DocOp::Put {
            ns: ns.clone(),
            id: Bson::Int64(i as i64),
            doc: argon_wal::rawdoc::encode(&doc! {"_id": i as i64, "n": -1}).unwrap_or_default(),
        });
    }
    let fork_write = live().saturating_sub(before_writes);
    drop(checkpoint);
    drop(s);
    let before = live();
    let mut s = BranchState::empty(CommitTime(0));
    s.apply(&DocOp::CreateIndex {
        ns: ns.clone(),
        spec: doc! {"name": "n_1", "key": {"n": 1}},
    });
    for i in 0..docs {
        s.apply(&DocOp::Put {
            ns: ns.clone(),
            id: Bson::Int64(i as i64),
            doc: argon_wal::rawdoc::encode(&document(i)).unwrap_or_default(),
        });
    }
    let with_index = live() - before;
    drop(s);
    StateCost {
        docs,
        bson,
        heap,
        with_index,
        fork_write,
    }
}

// ---- part 2: the engine under the load ---------------------------------------------

#[derive(Default)]
struct Phase {
    clients: u64,
    inserted: u64,
    commits: u64,
    peak_heap: usize,
    end_heap: usize,
    peak_rss: usize,
    live_docs: u64,
}

struct EngineRun {
    label: String,
    phases: Vec<Phase>,
    /// Heap after the load, the handle still open.
    retained: usize,
    /// Heap held by a new handle on the same store once it read the head
    /// (what a restarted process holds: the state, plus the latest snapshot
    /// it decoded, kept as a checkpoint, which pins what the head dropped
    /// since that snapshot).
    fresh_head: usize,
    live_docs: u64,
}

async fn insert_phase(
    wal: &Wal,
    coll: &str,
    clients: u64,
    docs: u64,
    max: Duration,
) -> BoxResult<(u64, f64)> {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let deadline = t + max;
    let mut tasks = Vec::new();
    for task in 0..clients {
        let (wal, next, done) = (wal.clone(), next.clone(), done.clone());
        let ns = Namespace::new(DB, coll);
        let coll = coll.to_string();
        tasks.push(tokio::spawn(async move {
            // One session per client, as a driver's connection pool gives.
            let session = format!("{coll}-{task}").into_bytes();
            let mut txn_number = 0i64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= docs || Instant::now() >= deadline {
                    return Ok::<_, String>(());
                }
                txn_number += 1;
                let key = RetryKey {
                    session: session.clone(),
                    txn_number,
                };
                let ns = ns.clone();
                wal.write_retryable("main", key, move |txn| {
                    txn.ensure_collection(&ns)?;
                    txn.insert(&ns, &document(i))?;
                    Ok::<_, argon_wal::WalError>(doc! {"n": 1, "ok": 1.0})
                })
                .await
                .map_err(|e| format!("{e:?}"))?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.map_err(err)?.map_err(err)?;
    }
    Ok((done.load(Ordering::Relaxed), t.elapsed().as_secs_f64()))
}

/// Tops `coll` up to `docs` documents with commits of 1,000 (the wire
/// benchmark's `insert_many` batches).
async fn top_up(wal: &Wal, coll: &str, docs: u64) -> BoxResult<()> {
    let ns = Namespace::new(DB, coll);
    let head = wal.read("main", ReadPoint::Head).await?;
    let missing: Vec<u64> = match head.collection(&ns)? {
        Some(c) => {
            let mut missing = Vec::new();
            for i in 0..docs {
                if c.get(&Bson::Int64(i as i64))?.is_none() {
                    missing.push(i);
                }
            }
            missing
        }
        None => (0..docs).collect(),
    };
    drop(head);
    for chunk in missing.chunks(1000) {
        let chunk = chunk.to_vec();
        let ns = ns.clone();
        wal.write_in("main", move |txn| {
            txn.ensure_collection(&ns)?;
            for &i in &chunk {
                txn.insert(&ns, &document(i))?;
            }
            Ok::<_, argon_wal::WalError>(())
        })
        .await
        .map_err(|e| err(format!("{e:?}")))?;
    }
    Ok(())
}

async fn engine_run(
    label: &str,
    dir: &Path,
    options: WalOptions,
    args: &Args,
) -> BoxResult<EngineRun> {
    std::fs::create_dir_all(dir)?;
    let idle_heap = live();
    let store: Arc<dyn LogStore> = EmbeddedStore::open(dir)?;
    let wal = Wal::open(store.clone(), "bench", options.clone()).await?;
    let mut phases = Vec::new();
    let first = args.clients.first().copied().unwrap_or(1);
    let mut live_docs = 0;
    for &c in &args.clients {
        reset_peak();
        reset_rss_peak();
        let coll = format!("docs_c{c}");
        let seq0 = wal.read("main", ReadPoint::Head).await?.seq();
        let (inserted, seconds) =
            insert_phase(&wal, &coll, c, args.docs, Duration::from_secs(args.seconds)).await?;
        top_up(&wal, &coll, args.docs).await?;
        let commits = wal.read("main", ReadPoint::Head).await?.seq().0 - seq0.0;
        let phase_live = live_docs + args.docs;
        if c != first {
            let ns = Namespace::new(DB, &coll);
            wal.write("main", move |_| {
                Ok::<_, ()>((vec![DocOp::DropCollection { ns: ns.clone() }], ()))
            })
            .await
            .map_err(|e| err(format!("{e:?}")))?;
        } else {
            live_docs += args.docs;
        }
        // Let a background snapshot of this phase finish before reading the
        // retained heap.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let p = Phase {
            clients: c,
            inserted,
            commits,
            peak_heap: peak().saturating_sub(idle_heap),
            end_heap: live().saturating_sub(idle_heap),
            peak_rss: rss_peak(),
            live_docs: phase_live,
        };
        eprintln!(
            "  {label}: {c} clients: {inserted} inserts in {seconds:.1} s, {commits} commits; \
             heap peak {} end {}, RSS peak {}",
            mb(p.peak_heap),
            mb(p.end_heap),
            mb(p.peak_rss)
        );
        phases.push(p);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let retained = live().saturating_sub(idle_heap);
    drop(wal);
    // Committer tasks end when their queues close; give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_close = live().saturating_sub(idle_heap);
    let fresh = Wal::open(store, "bench", options).await?;
    let before = live();
    let head = fresh.read("main", ReadPoint::Head).await?;
    let fresh_head = live().saturating_sub(before);
    eprintln!(
        "  {label}: retained {} (after close {}), a fresh handle's head {} ({} docs)",
        mb(retained),
        mb(after_close),
        mb(fresh_head),
        head.doc_count()?
    );
    drop(head);
    drop(fresh);
    Ok(EngineRun {
        label: label.to_string(),
        phases,
        retained,
        fresh_head,
        live_docs,
    })
}

impl EngineRun {
    /// `retained fresh_head live_docs` then per phase `clients inserted
    /// commits peak_heap end_heap peak_rss live_docs`, space-separated.
    fn to_line(&self) -> String {
        let mut v = vec![self.retained as u64, self.fresh_head as u64, self.live_docs];
        for p in &self.phases {
            v.extend([
                p.clients,
                p.inserted,
                p.commits,
                p.peak_heap as u64,
                p.end_heap as u64,
                p.peak_rss as u64,
                p.live_docs,
            ]);
        }
        v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
    }

    fn from_line(label: &str, line: &str) -> BoxResult<EngineRun> {
        let v: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let (head, rest) = v.split_at(3.min(v.len()));
        let [retained, fresh_head, live_docs] = head else {
            return Err("short result line".into());
        };
        let phases = rest
            .chunks_exact(7)
            .map(|c| Phase {
                clients: c[0],
                inserted: c[1],
                commits: c[2],
                peak_heap: c[3] as usize,
                end_heap: c[4] as usize,
                peak_rss: c[5] as usize,
                live_docs: c[6],
            })
            .collect();
        Ok(EngineRun {
            label: label.to_string(),
            phases,
            retained: *retained as usize,
            fresh_head: *fresh_head as usize,
            live_docs: *live_docs,
        })
    }
}

// ---- report -----------------------------------------------------------------------

fn report(args: &Args, cost: &StateCost, runs: &[EngineRun]) -> String {
    let mut out = String::new();
    let per = |b: usize| b as f64 / cost.docs as f64;
    out.push_str(&format!(
        "### The state alone, per live document\n\n\
         {} documents of `wire_bench`'s shape folded into a `BranchState` in `_id` order \
         (no engine), counted by a global allocator (requested bytes; malloc's own \
         headers come on top).\n\n\
         | what | bytes per document | × BSON |\n| --- | ---: | ---: |\n",
        thousands(cost.docs)
    ));
    let bson = per(cost.bson);
    let row = |out: &mut String, what: &str, b: f64| {
        out.push_str(&format!("| {what} | {b:.0} | {:.2}× |\n", b / bson));
    };
    row(&mut out, "the document's BSON", bson);
    let stored = bson + 4.0 + 9.0; // length header + an int64 IdKey (tag + 8 bytes)
    row(&mut out, "its `StoredDoc` (length, `IdKey`, BSON)", stored);
    row(&mut out, "B-tree nodes (the rest)", per(cost.heap) - stored);
    row(
        &mut out,
        "**a collection, no secondary index**",
        per(cost.heap),
    );
    row(
        &mut out,
        "one secondary index's key map (`{n: 1}`)",
        per(cost.with_index) - per(cost.heap),
    );
    row(
        &mut out,
        "a checkpoint, once the head rewrote 1 document in 1,000",
        per(cost.fork_write),
    );
    out.push('\n');

    out.push_str(&format!(
        "### The engine under `bench/sidecar`'s insert load\n\n\
         Per phase: {} writers insert 1 KB documents into their own collection (one \
         retryable insert per write, group-committed, embedded store with fdatasync), capped \
         at {} s, then topped up to {} documents by commits of 1,000; every collection but \
         the first is dropped after its phase. Heap = bytes allocated and not freed (counting \
         allocator) above the idle process; RSS is the process's.\n\n",
        args.clients
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("/"),
        args.seconds,
        thousands(args.docs),
    ));
    out.push_str(
        "| engine | writers | inserts (commits) | live docs in the phase | heap peak | heap at phase end | peak RSS | peak ÷ live BSON |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in runs {
        for p in &r.phases {
            let live_bson = p.live_docs as f64 * bson;
            out.push_str(&format!(
                "| {} | {} | {} ({}) | {} | {} | {} | {} | {:.2}× |\n",
                r.label,
                p.clients,
                p.inserted,
                p.commits,
                thousands(p.live_docs),
                mb(p.peak_heap),
                mb(p.end_heap),
                mb(p.peak_rss),
                p.peak_heap as f64 / live_bson
            ));
        }
    }
    out.push('\n');
    out.push_str(
        "| engine | heap retained after the load | a new handle after one head read (a restart) | retained − restart | live docs |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
    );
    for r in runs {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.label,
            mb(r.retained),
            mb(r.fresh_head),
            signed_mb(r.retained as isize - r.fresh_head as isize),
            thousands(r.live_docs)
        ));
    }
    out.push('\n');
    out
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The engine configurations compared, each run in its own child process
/// (so that RSS, which malloc does not give back, is the run's own).
const CONFIGS: [(&str, argon_wal::SnapshotPolicy); 2] = [
    (
        "defaults (a snapshot once the log grows by the last one's size)",
        argon_wal::SnapshotPolicy::LogBytes {
            floor: 4 << 20,
            percent: 100,
        },
    ),
    ("snapshots off", argon_wal::SnapshotPolicy::Never),
];

fn main() -> BoxResult<()> {
    let args = parse_args()?;
    if let Some(i) = args.child {
        let (label, policy) = CONFIGS.get(i).ok_or("no such configuration")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let options = WalOptions {
            snapshot_policy: *policy,
            ..WalOptions::default()
        };
        let dir = args.dir.clone().ok_or("--dir")?;
        let run = rt.block_on(engine_run(label, &dir, options, &args))?;
        println!("{}", run.to_line());
        return Ok(());
    }
    let scratch = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    eprintln!("the state alone ({} documents)", args.docs);
    let cost = state_cost(args.docs);
    let mut runs = Vec::new();
    for (i, (label, _)) in CONFIGS.iter().enumerate() {
        eprintln!("engine: {label}");
        let dir = scratch.path().join(format!("c{i}"));
        let out = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--child".to_string(),
                i.to_string(),
                "--dir".to_string(),
                dir.to_string_lossy().into_owned(),
                "--docs".to_string(),
                args.docs.to_string(),
                "--seconds".to_string(),
                args.seconds.to_string(),
                "--clients".to_string(),
                args.clients
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ])
            .stderr(std::process::Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("{label}: child failed ({})", out.status).into());
        }
        let text = String::from_utf8(out.stdout)?;
        let line = text.lines().last().ok_or("no result")?;
        runs.push(EngineRun::from_line(label, line)?);
        std::fs::remove_dir_all(&dir).ok();
    }
    print!("{}", report(&args, &cost, &runs));
    Ok(())
}
