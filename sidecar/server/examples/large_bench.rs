//! The large-writes benchmark (issue 14), run by `bench/large` against a
//! release `argon-sidecar`: the Rust driver writing documents of 1 KB,
//! 1 MB, 4 MB and 16 MB with 1 and 8 clients, in MB/s, with the server's
//! peak resident memory during each run; then the memory of one ~100 MB
//! commit (an `updateMany` over ten 5 MB documents: 50 MB of new documents
//! and the 50 MB they replace) as it is built, stored and applied, and, in a
//! second phase against a restarted server, as it is replayed.
//!
//! Peaks are the kernel's high-water mark (VmHWM), reset before each
//! measurement through `/proc/<pid>/clear_refs`. Prints markdown on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bson::{Document, doc};
use clap::Parser;
use mongodb::Client;

#[derive(Debug, Parser)]
struct Args {
    /// The argon-sidecar's connection string.
    #[arg(long)]
    uri: String,
    /// The argon-sidecar's process id (for its memory).
    #[arg(long)]
    pid: u32,
    /// `throughput` (the table), `commit` (the ~100 MB commit, on a fresh
    /// server) or `replay` (after a restart: the memory of loading that log
    /// again).
    #[arg(long, default_value = "throughput")]
    phase: String,
    /// Document sizes in bytes (BSON).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,1000000,4000000,16000000"
    )]
    sizes: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    clients: Vec<u64>,
    /// A run stops after this many seconds...
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// ...or once its clients wrote this many bytes.
    #[arg(long, default_value_t = 400_000_000)]
    max_bytes: u64,
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_mb(pid: u32) -> f64 {
    status_kb(pid, "VmRSS:") as f64 / 1024.0
}

fn peak_mb(pid: u32) -> f64 {
    status_kb(pid, "VmHWM:") as f64 / 1024.0
}

/// Resets the process's peak resident size to its current one.
fn reset_peak(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak RSS of process {pid}"))
}

/// A document of `size` BSON bytes: `_id`, a client tag and a pad.
fn document(id: i64, size: usize) -> Document {
    let mut d = doc! {"_id": id, "pad": bson::Binary {
    subtype: bson::spec::BinarySubtype::Generic, bytes: Vec::new() }};
    let overhead = d.to_vec().map(|v| v.len()).unwrap_or(0);
    d.insert(
        "pad",
        bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: vec![(id % 251) as u8; size.saturating_sub(overhead)],
        },
    );
    d
}

fn label(size: usize) -> String {
    match size {
        s if s >= 1_000_000 => format!("{} MB", s / 1_000_000),
        s if s >= 1_000 => format!("{} KB", s / 1_000),
        s => format!("{s} B"),
    }
}

/// One run: `clients` tasks insert documents of `size` bytes (one
/// acknowledged `insert_one` each) into a fresh collection until the time
/// or byte cap; the collection is dropped after, so runs do not add up.
async fn run(
    client: &Client,
    pid: u32,
    size: usize,
    clients: u64,
    args: &Args,
) -> anyhow::Result<String> {
    let coll_name = format!("s{size}_c{clients}");
    let coll = client.database("bench").collection::<Document>(&coll_name);
    coll.drop().await?;
    reset_peak(pid)?;
    let written = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let max_bytes = args.max_bytes;
    let template = Arc::new(document(0, size));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (coll, written, next, template) = (
                coll.clone(),
                written.clone(),
                next.clone(),
                template.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < deadline && written.load(Ordering::Relaxed) < max_bytes {
                    let id = next.fetch_add(1, Ordering::Relaxed) as i64;
                    let mut d = (*template).clone();
                    d.insert("_id", id);
                    coll.insert_one(d).await?;
                    written.fetch_add(size as u64, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    let peak = peak_mb(pid);
    let docs = coll.count_documents(doc! {}).await?;
    coll.drop().await?;
    let bytes = written.load(Ordering::Relaxed) as f64;
    eprintln!(
        "  {} × {clients}: {docs} docs in {elapsed:.1?}",
        label(size)
    );
    Ok(format!(
        "| {} | {clients} | {docs} | {:.0} | {:.1} | {:.1} | {:.0} |",
        label(size),
        bytes / 1e6,
        elapsed.as_secs_f64(),
        bytes / 1e6 / elapsed.as_secs_f64(),
        peak
    ))
}

async fn log_bytes(client: &Client) -> anyhow::Result<(i64, i64)> {
    let info = client
        .database("admin")
        .run_command(doc! {"argonLogInfo": "main"})
        .await?;
    Ok((
        info.get_i64("bytes")?,
        info.get_document("branch")?.get_i64("headSeq")?,
    ))
}

/// The ~100 MB commit: ten 5 MB documents loaded, then one `updateMany`
/// rewriting all of them (the commit logs them and their pre-images).
async fn large_commit(client: &Client, pid: u32) -> anyhow::Result<String> {
    let coll = client.database("bench").collection::<Document>("commit");
    coll.drop().await?;
    for i in 0..10 {
        coll.insert_one(document(i, 5_000_000)).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_mb(pid);
    reset_peak(pid)?;
    let (bytes_before, _) = log_bytes(client).await?;
    let start = Instant::now();
    let r = coll.update_many(doc! {}, doc! {"$set": {"tag": 1}}).await?;
    let elapsed = start.elapsed();
    anyhow::ensure!(r.modified_count == 10, "updated {}", r.modified_count);
    let peak = peak_mb(pid);
    let (bytes_after, _) = log_bytes(client).await?;
    let commit_mb = (bytes_after - bytes_before) as f64 / 1e6;
    let after = rss_mb(pid);
    Ok(format!(
        "| build, store and apply (`updateMany`, {elapsed:.1?}) | {commit_mb:.0} MB | {before:.0} MB | {peak:.0} MB | {:.0} MB | {:.1}× | {after:.0} MB |",
        peak - before,
        (peak - before) / commit_mb
    ))
}

/// A write command larger than a commit (the server runs with
/// `--max-commit-bytes 64 MiB`): eighty 5 MB documents loaded, then one
/// `updateMany` rewriting all of them (~800 MB logged), committed in parts.
/// Its memory should follow the part, not the command.
async fn in_parts(client: &Client, pid: u32) -> anyhow::Result<String> {
    const DOCS: i64 = 80;
    const PART_MB: f64 = 64.0 * 1024.0 * 1024.0 / 1e6;
    let coll = client.database("bench").collection::<Document>("parts");
    coll.drop().await?;
    for i in 0..DOCS {
        coll.insert_one(document(i, 5_000_000)).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_mb(pid);
    reset_peak(pid)?;
    let (bytes_before, seq_before) = log_bytes(client).await?;
    let start = Instant::now();
    let r = coll.update_many(doc! {}, doc! {"$set": {"tag": 1}}).await?;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        r.modified_count == DOCS as u64,
        "updated {}",
        r.modified_count
    );
    let peak = peak_mb(pid);
    let (bytes_after, seq_after) = log_bytes(client).await?;
    let logged_mb = (bytes_after - bytes_before) as f64 / 1e6;
    Ok(format!(
        "| one `updateMany` in {} parts of ≤ 64 MiB ({elapsed:.1?}) | {logged_mb:.0} MB | {before:.0} MB | {peak:.0} MB | {:.0} MB | {:.1}× (÷ part: {:.1}×) | {:.0} MB |",
        seq_after - seq_before,
        peak - before,
        (peak - before) / logged_mb,
        (peak - before) / PART_MB,
        rss_mb(pid)
    ))
}

/// After a restart: the first read loads `main`, replaying the log
/// (including the ~100 MB commit) from its last snapshot.
async fn replay(client: &Client, pid: u32) -> anyhow::Result<String> {
    let before = rss_mb(pid);
    reset_peak(pid)?;
    let start = Instant::now();
    let n = client
        .database("bench")
        .collection::<Document>("commit")
        .count_documents(doc! {"tag": 1})
        .await?;
    let elapsed = start.elapsed();
    anyhow::ensure!(n == 10, "found {n} updated documents");
    let peak = peak_mb(pid);
    let (bytes, seq) = log_bytes(client).await?;
    Ok(format!(
        "| replay after a restart ({seq} commits, {:.0} MB of log, {elapsed:.1?}) | 100 MB | {before:.0} MB | {peak:.0} MB | {:.0} MB | {:.1}× | {:.0} MB |",
        bytes as f64 / 1e6,
        peak - before,
        (peak - before) / 100.0,
        rss_mb(pid)
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::with_uri_str(&args.uri).await?;
    client
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await?;
    match args.phase.as_str() {
        "throughput" => {
            println!(
                "| document size | clients | documents | MB written | seconds | MB/s | peak RSS (MB) |"
            );
            println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
            for &size in &args.sizes {
                for &clients in &args.clients {
                    println!("{}", run(&client, args.pid, size, clients, &args).await?);
                }
            }
        }
        "commit" => {
            println!(
                "| one large commit | logged | RSS before | peak RSS | peak − before | ÷ logged | RSS after |"
            );
            println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
            println!("{}", large_commit(&client, args.pid).await?);
        }
        "replay" => println!("{}", replay(&client, args.pid).await?),
        "parts" => println!("{}", in_parts(&client, args.pid).await?),
        other => anyhow::bail!("unknown phase {other:?}"),
    }
    Ok(())
}
