//! The sidecar's wire benchmark (issue 5), run by `bench/sidecar`: the Rust
//! driver against two servers side by side, `argon-sidecar` standalone and
//! FerretDB, on this machine:
//!
//! - inserts/s with 1 KB documents, `--docs` of them, by 1/16/64 client
//!   tasks (one `insert_one` per request, acknowledged);
//! - point reads by `_id`/s over those documents, with p50/p99 latency;
//! - point reads by an indexed field (`n`, with an index `{n: 1}`)/s over
//!   the same documents (the planner's IXSCAN, issue 17 item 4);
//! - the latency floor: median `find` by `_id` against median `ping` on one
//!   connection;
//! - resident memory (VmRSS) of each server idle and under load.
//!
//! Prints a markdown table on stdout; progress goes to stderr.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bson::{Document, doc};
use clap::Parser;
use mongodb::{Client, Collection};

#[derive(Debug, Parser)]
struct Args {
    /// The argon-sidecar's connection string.
    #[arg(long)]
    sidecar_uri: String,
    /// The argon-sidecar's process id (for VmRSS).
    #[arg(long)]
    sidecar_pid: u32,
    /// FerretDB's connection string.
    #[arg(long)]
    ferretdb_uri: String,
    #[arg(long)]
    ferretdb_pid: u32,
    /// Column names of the two servers (`bench/hardening` compares two
    /// builds of the sidecar instead).
    #[arg(long, default_value = "argon-sidecar")]
    sidecar_name: String,
    #[arg(long, default_value = "FerretDB")]
    ferretdb_name: String,
    /// Leave out the goal column (issue 5's goals are the sidecar's against FerretDB).
    #[arg(long)]
    no_goals: bool,
    /// Documents per insert run (and the collection size for point reads).
    #[arg(long, default_value_t = 100_000)]
    docs: u64,
    /// Point reads per run.
    #[arg(long, default_value_t = 100_000)]
    reads: u64,
    /// Client task counts.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<u64>,
    /// A run stops after this many seconds even if unfinished (its rate is
    /// then over what it did).
    #[arg(long, default_value_t = 15)]
    max_seconds: u64,
    /// Pings and finds in the latency-floor measurement.
    #[arg(long, default_value_t = 5_000)]
    floor_samples: usize,
}

/// One timed run: how many operations in how long, and their latencies.
struct Run {
    ops: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Results for one server.
#[derive(Default)]
struct Results {
    inserts: Vec<(u64, Run)>,
    reads: Vec<(u64, Run)>,
    indexed_reads: Vec<(u64, Run)>,
    floor_find: Duration,
    floor_ping: Duration,
    rss_idle_kb: u64,
    rss_load_kb: u64,
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples a process's VmRSS every 50 ms until stopped; the peak is kept.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kb(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        RssSampler { stop, peak, task }
    }
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

fn document(i: u64) -> Document {
    // `_id`, `n` and a pad to 1 KB of BSON in all.
    doc! {"_id": i as i64, "n": i as i64, "pad": "x".repeat(1000 - 40)}
}

/// Inserts whatever of `0..docs` is not in `coll` yet, 1000 at a time.
async fn top_up(coll: &Collection<Document>, docs: u64) -> anyhow::Result<()> {
    let have = coll.count_documents(doc! {}).await?;
    if have >= docs {
        return Ok(());
    }
    let present: Vec<Document> = {
        use futures::TryStreamExt;
        coll.find(doc! {})
            .projection(doc! {"_id": 1})
            .await?
            .try_collect()
            .await?
    };
    let present: std::collections::HashSet<i64> = present
        .iter()
        .filter_map(|d| d.get_i64("_id").ok())
        .collect();
    let missing: Vec<u64> = (0..docs)
        .filter(|i| !present.contains(&(*i as i64)))
        .collect();
    for chunk in missing.chunks(1000) {
        coll.insert_many(chunk.iter().map(|&i| document(i))).await?;
    }
    Ok(())
}

/// `total` operations shared by `clients` tasks, each calling `op(i)` for
/// its next index; stops early at `max`.
async fn run_tasks<F, Fut>(clients: u64, total: u64, max: Duration, op: F) -> anyhow::Result<Run>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + max;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || Instant::now() >= deadline {
                        return Ok::<_, anyhow::Error>(lat);
                    }
                    let t = Instant::now();
                    op(i).await?;
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Ok(Run {
        ops: latencies.len() as u64,
        elapsed,
        latencies,
    })
}

async fn bench_server(name: &str, uri: &str, pid: u32, args: &Args) -> anyhow::Result<Results> {
    let mut r = Results {
        rss_idle_kb: rss_kb(pid),
        ..Results::default()
    };
    let max_pool = args.clients.iter().copied().max().unwrap_or(1) as u32 + 4;
    let client = Client::with_uri_str(format!("{uri}&maxPoolSize={max_pool}&minPoolSize=0"))
        .await
        .context("connecting")?;
    let db = client.database("wire_bench");
    db.drop().await.ok();
    let sampler = RssSampler::start(pid);
    let max = Duration::from_secs(args.max_seconds);
    for &c in &args.clients {
        let coll: Collection<Document> = db.collection(&format!("docs_c{c}"));
        let run = {
            let coll = coll.clone();
            run_tasks(c, args.docs, max, move |i| {
                let coll = coll.clone();
                async move {
                    coll.insert_one(document(i)).await?;
                    Ok(())
                }
            })
            .await?
        };
        eprintln!(
            "{name}: {c} clients: {} inserts in {:.1?} = {:.0}/s",
            run.ops,
            run.elapsed,
            run.rate()
        );
        // Point reads always run over `--docs` documents: top up (untimed)
        // what a capped insert run left out. Indices were handed out in
        // order, so the missing ones are the tail.
        r.inserts.push((c, run));
        top_up(&coll, args.docs).await?;
        let inserted = args.docs;

        let run = {
            let coll = coll.clone();
            run_tasks(c, args.reads, max, move |i| {
                let coll = coll.clone();
                // A scattered, repeatable walk over the inserted ids.
                let id = (i.wrapping_mul(2_654_435_761)) % inserted;
                async move {
                    let d = coll.find_one(doc! {"_id": id as i64}).await?;
                    anyhow::ensure!(d.is_some(), "_id {id} not found");
                    Ok(())
                }
            })
            .await?
        };
        eprintln!(
            "{name}: {c} clients: {} point reads in {:.1?} = {:.0}/s, p50 {:.2?}, p99 {:.2?}",
            run.ops,
            run.elapsed,
            run.rate(),
            run.percentile(0.5),
            run.percentile(0.99)
        );
        r.reads.push((c, run));

        // The same walk by an indexed field (`n` equals `_id`).
        db.run_command(doc! {
            "createIndexes": coll.name(),
            "indexes": [{"key": {"n": 1}, "name": "n_1"}],
        })
        .await?;
        let run = {
            let coll = coll.clone();
            run_tasks(c, args.reads, max, move |i| {
                let coll = coll.clone();
                let n = (i.wrapping_mul(2_654_435_761)) % inserted;
                async move {
                    let d = coll.find_one(doc! {"n": n as i64}).await?;
                    anyhow::ensure!(d.is_some(), "n {n} not found");
                    Ok(())
                }
            })
            .await?
        };
        eprintln!(
            "{name}: {c} clients: {} indexed-field reads in {:.1?} = {:.0}/s, p50 {:.2?}, p99 {:.2?}",
            run.ops,
            run.elapsed,
            run.rate(),
            run.percentile(0.5),
            run.percentile(0.99)
        );
        r.indexed_reads.push((c, run));
        if Some(&c) != args.clients.first() {
            // Keep one collection (for the floor), not 3 × `--docs` documents.
            coll.drop().await?;
        }
    }
    r.rss_load_kb = sampler.finish().await;

    // The latency floor: one connection, pings and finds interleaved.
    let single = Client::with_uri_str(format!("{uri}&maxPoolSize=1")).await?;
    let sdb = single.database("wire_bench");
    let coll: Collection<Document> = sdb.collection(&format!(
        "docs_c{}",
        args.clients.first().copied().unwrap_or(1)
    ));
    let (mut pings, mut finds) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    for i in 0..args.floor_samples as u64 {
        if Instant::now() >= deadline {
            break;
        }
        let t = Instant::now();
        sdb.run_command(doc! {"ping": 1}).await?;
        pings.push(t.elapsed());
        let t = Instant::now();
        coll.find_one(doc! {"_id": (i % 1000) as i64}).await?;
        finds.push(t.elapsed());
    }
    pings.sort();
    finds.sort();
    r.floor_ping = percentile(&pings, 0.5);
    r.floor_find = percentile(&finds, 0.5);
    eprintln!(
        "{name}: floor: find {:.1?} / ping {:.1?} over {} pairs",
        r.floor_find,
        r.floor_ping,
        finds.len()
    );
    db.drop().await.ok();
    Ok(r)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn yes(met: bool) -> &'static str {
    if met { "**met**" } else { "**missed**" }
}

fn table(args: &Args, s: &Results, f: &Results) -> String {
    let mut out = String::new();
    let (a_name, b_name) = (&args.sidecar_name, &args.ferretdb_name);
    out.push_str(&format!(
        "| measure | clients | {a_name} | {b_name} | {a_name} ÷ {b_name} | goal (issue 5) |\n"
    ));
    out.push_str("| --- | ---: | ---: | ---: | ---: | --- |\n");
    let top = args.clients.iter().copied().max().unwrap_or(1);
    for ((c, a), (_, b)) in s.inserts.iter().zip(&f.inserts) {
        let goal = if *c == top {
            format!("≥ 50,000/s at 64: {}", yes(a.rate() >= 50_000.0))
        } else {
            String::new()
        };
        let partial = |r: &Run| {
            if r.ops < args.docs {
                format!(" ({} docs in {:.0} s cap)", r.ops, r.elapsed.as_secs_f64())
            } else {
                String::new()
            }
        };
        out.push_str(&format!(
            "| inserts/s (1 KB docs) | {c} | {:.0}{} | {:.0}{} | {:.1}× | {goal} |\n",
            a.rate(),
            partial(a),
            b.rate(),
            partial(b),
            a.rate() / b.rate()
        ));
    }
    for ((c, a), (_, b)) in s.reads.iter().zip(&f.reads) {
        let goal = if *c == top {
            let met = a.rate() >= 100_000.0 && a.percentile(0.99) < Duration::from_millis(2);
            format!("≥ 100,000/s, p99 < 2 ms: {}", yes(met))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| point reads by `_id`/s (p50 / p99 ms) | {c} | {:.0} ({} / {}) | {:.0} ({} / {}) | {:.1}× | {goal} |\n",
            a.rate(),
            ms(a.percentile(0.5)),
            ms(a.percentile(0.99)),
            b.rate(),
            ms(b.percentile(0.5)),
            ms(b.percentile(0.99)),
            a.rate() / b.rate()
        ));
    }
    for ((c, a), (_, b)) in s.indexed_reads.iter().zip(&f.indexed_reads) {
        out.push_str(&format!(
            "| point reads by an indexed field/s (p50 / p99 ms) | {c} | {:.0} ({} / {}) | {:.0} ({} / {}) | {:.1}× | |\n",
            a.rate(),
            ms(a.percentile(0.5)),
            ms(a.percentile(0.99)),
            b.rate(),
            ms(b.percentile(0.5)),
            ms(b.percentile(0.99)),
            a.rate() / b.rate()
        ));
    }
    let ratio = |r: &Results| r.floor_find.as_secs_f64() / r.floor_ping.as_secs_f64();
    out.push_str(&format!(
        "| latency floor: median find by `_id` ÷ median ping, one connection (µs) | 1 | {:.2}× ({} / {}) | {:.2}× ({} / {}) | | ≤ 1.5×: {} |\n",
        ratio(s),
        us(s.floor_find),
        us(s.floor_ping),
        ratio(f),
        us(f.floor_find),
        us(f.floor_ping),
        yes(ratio(s) <= 1.5)
    ));
    out.push_str(&format!(
        "| RSS idle (before any load) | | {} | {} | | ≤ 20 MB: {} |\n",
        mb(s.rss_idle_kb),
        mb(f.rss_idle_kb),
        yes(s.rss_idle_kb <= 20 * 1024)
    ));
    out.push_str(&format!(
        "| RSS peak under load (up to 2 × {} live 1 KB docs, plus their history) | | {} | {} | | |\n",
        args.docs,
        mb(s.rss_load_kb),
        mb(f.rss_load_kb)
    ));
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let s = bench_server(
        &args.sidecar_name,
        &args.sidecar_uri,
        args.sidecar_pid,
        &args,
    )
    .await
    .with_context(|| format!("benchmarking {}", args.sidecar_name))?;
    let f = bench_server(
        &args.ferretdb_name,
        &args.ferretdb_uri,
        args.ferretdb_pid,
        &args,
    )
    .await
    .with_context(|| format!("benchmarking {}", args.ferretdb_name))?;
    let mut out = table(&args, &s, &f);
    if args.no_goals {
        // Drop the goal column: every row's last cell.
        out = out
            .lines()
            .map(|l| {
                let cells: Vec<&str> = l.trim_end_matches('|').split('|').collect();
                format!("{}|", cells[..cells.len() - 1].join("|"))
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    print!("{out}");
    Ok(())
}
