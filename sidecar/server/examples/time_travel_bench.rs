//! Time travel through the wire, run by `bench/time-travel`: point reads at
//! random past points (`db~main@seq`, a `find` by `_id`) against sidecars
//! serving the same log, one replaying the log into memory and one reading
//! the materialized store (`--cache-dir`), beside each one's `ping` (the
//! wire path's own latency on this machine). One client, latencies.
//!
//! `write` builds the history (`--commits` single-document updates spread
//! over `--docs` documents, several writers); `measure` times the targets
//! in alternated rounds and prints a markdown table (progress on stderr).

use std::time::{Duration, Instant};

use anyhow::Context;
use bson::{Document, doc};
use clap::{Parser, Subcommand};
use mongodb::Client;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Writes the history to one server.
    Write {
        #[arg(long)]
        uri: String,
        #[arg(long, default_value_t = 200_000)]
        commits: u64,
        #[arg(long, default_value_t = 20_000)]
        docs: u64,
        #[arg(long, default_value_t = 8)]
        writers: u64,
    },
    /// Times reads at past points on each `name=uri` target.
    Measure {
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// Reads (and pings) per target per round.
        #[arg(long, default_value_t = 1_000)]
        reads: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 20_000)]
        docs: u64,
    },
}

const DB: &str = "bench";

async fn connect(uri: &str) -> anyhow::Result<Client> {
    Client::with_uri_str(uri)
        .await
        .with_context(|| format!("connect {uri}"))
}

async fn write(uri: &str, commits: u64, docs: u64, writers: u64) -> anyhow::Result<()> {
    let client = connect(uri).await?;
    let coll = client.database(DB).collection::<Document>("items");
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let coll = coll.clone();
            tokio::spawn(async move {
                let mut i = w;
                while i < commits {
                    coll.update_one(
                        doc! {"_id": (i % docs) as i64},
                        doc! {"$set": {"v": i as i64, "pad": "x".repeat(200)}},
                    )
                    .upsert(true)
                    .await?;
                    i += writers;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    eprintln!(
        "wrote {commits} updates over {docs} documents in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The head seq of `main`.
async fn head(client: &Client) -> anyhow::Result<u64> {
    let info = client
        .database("admin")
        .run_command(doc! {"argonLogInfo": "main"})
        .await?;
    Ok(info.get_document("branch")?.get_i64("headSeq")? as u64)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// A tiny deterministic generator (xorshift), so every target reads the
/// same points in the same order.
struct Points(u64);
impl Points {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

struct Sample {
    ping: Vec<Duration>,
    reads: Vec<Duration>,
}

async fn sample(
    client: &Client,
    reads: usize,
    docs: u64,
    head: u64,
    seed: u64,
) -> anyhow::Result<Sample> {
    let admin = client.database("admin");
    let mut ping = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        admin.run_command(doc! {"ping": 1}).await?;
        ping.push(t.elapsed());
    }
    let mut points = Points(seed);
    let mut out = Vec::with_capacity(reads);
    for _ in 0..reads {
        // Past points only (1..head): the head is served from memory by both.
        let seq = 1 + points.next(head.saturating_sub(1));
        let id = points.next(docs) as i64;
        let coll = client
            .database(&format!("{DB}~main@{seq}"))
            .collection::<Document>("items");
        let t = Instant::now();
        coll.find_one(doc! {"_id": id}).await?;
        out.push(t.elapsed());
    }
    ping.sort();
    out.sort();
    Ok(Sample { ping, reads: out })
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn measure(targets: &[String], reads: usize, rounds: usize, docs: u64) -> anyhow::Result<()> {
    let mut named = Vec::new();
    for t in targets {
        let (name, uri) = t.split_once('=').context("a target is name=uri")?;
        let client = connect(uri).await?;
        let head = head(&client).await?;
        // The first past read: a cold cache catches the store up from the
        // log here (the whole history); replay reads a snapshot.
        let t0 = Instant::now();
        client
            .database(&format!("{DB}~main@{}", head / 2))
            .collection::<Document>("items")
            .find_one(doc! {"_id": 0})
            .await?;
        let first = t0.elapsed();
        eprintln!("{name}: head {head}, first past read {} ms", ms(first));
        named.push((name.to_string(), client, head, first, Vec::new()));
    }
    for round in 0..rounds {
        for (name, client, head, _, samples) in named.iter_mut() {
            let s = sample(
                client,
                reads,
                docs,
                *head,
                0x9e37_79b9_7f4a_7c15 + round as u64,
            )
            .await?;
            eprintln!(
                "round {round} {name}: ping p50 {} p99 {}, past read p50 {} p99 {}",
                ms(percentile(&s.ping, 0.5)),
                ms(percentile(&s.ping, 0.99)),
                ms(percentile(&s.reads, 0.5)),
                ms(percentile(&s.reads, 0.99))
            );
            samples.push(s);
        }
    }
    println!(
        "| server | first past read (ms) | ping p50 / p99 (ms) | past point read p50 / p99 (ms) | read p99 ÷ ping p99 |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, _, head, first, samples) in &named {
        let mut ping: Vec<Duration> = samples.iter().flat_map(|s| s.ping.clone()).collect();
        let mut reads: Vec<Duration> = samples.iter().flat_map(|s| s.reads.clone()).collect();
        ping.sort();
        reads.sort();
        let (p99, r99) = (percentile(&ping, 0.99), percentile(&reads, 0.99));
        println!(
            "| {name} (head {head}) | {} | {} / {} | {} / {} | {:.1}× |",
            ms(*first),
            ms(percentile(&ping, 0.5)),
            ms(p99),
            ms(percentile(&reads, 0.5)),
            ms(r99),
            r99.as_secs_f64() / p99.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Args::parse().mode {
        Mode::Write {
            uri,
            commits,
            docs,
            writers,
        } => write(&uri, commits, docs, writers).await,
        Mode::Measure {
            targets,
            reads,
            rounds,
            docs,
        } => measure(&targets, reads, rounds, docs).await,
    }
}
