//! Acknowledged inserts against their two ceilings (issue 17 item 8), run by
//! `bench/inserts`: for each client count, the same server's `ping`
//! throughput (the wire path and the driver on this machine) and the
//! durability bound (clients × the disk's fdatasync rate: with one write in
//! flight per client and every acknowledgement after its fsync, no server
//! can do more), both measured in the same run as the inserts.
//!
//! Several sidecars (`--target name=uri[,metrics-url]`, e.g. a build of
//! `main` and this branch's) are measured in alternated rounds, each round
//! on fresh collections, so a neighbour's load on the shared machine falls
//! on all of them alike; the table gives medians over rounds and ratios.
//! With a metrics URL, the writes per commit come from the sidecar's
//! `argon_sidecar_branch_commit_writes_total` / `argon_sidecar_branch_commits_total`.
//!
//! Prints a markdown table on stdout; progress goes to stderr.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use bson::{Document, doc};
use clap::Parser;
use mongodb::{Client, Collection};

#[derive(Debug, Parser)]
struct Args {
    /// A server to measure: `name=mongodb-uri` or
    /// `name=mongodb-uri,http://host:port/metrics`. Repeat for each.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Client task counts.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<u64>,
    /// Seconds per timed run (ping, inserts, fdatasync).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Alternated rounds (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A directory on the disk the sidecars write their logs to (the
    /// fdatasync rate is measured there).
    #[arg(long)]
    sync_dir: std::path::PathBuf,
}

struct Target {
    name: String,
    client: Client,
    metrics: Option<String>,
}

/// What one target did at one client count in one round.
#[derive(Clone, Copy, Default)]
struct Sample {
    ping: f64,
    inserts: f64,
    /// Writes per commit over the insert run (from the metrics), if known.
    per_commit: Option<f64>,
}

fn document(i: u64) -> Document {
    // `_id`, `n` and a pad to 1 KB of BSON in all (as bench/sidecar).
    doc! {"_id": i as i64, "n": i as i64, "pad": "x".repeat(1000 - 40)}
}

/// Operations per second of `clients` tasks each repeating `op` for `secs`.
async fn rate<F, Fut>(clients: u64, secs: f64, op: F) -> anyhow::Result<f64>
where
    F: Fn(u64, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    op(c, n).await?;
                    n += 1;
                }
                Ok::<_, anyhow::Error>(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// This disk's fdatasync rate: 256-byte appends, each made durable, for `secs`.
fn fdatasync_rate(dir: &std::path::Path, secs: f64) -> anyhow::Result<f64> {
    let path = dir.join("fdatasync-probe");
    let mut f = std::fs::File::create(&path).context("creating the fdatasync probe")?;
    let block = [0x5au8; 256];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    let r = n as f64 / start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).ok();
    Ok(r)
}

/// `(commits, writes)` summed over branches from a Prometheus text page.
fn commit_counters(url: &str) -> anyhow::Result<(f64, f64)> {
    let rest = url
        .strip_prefix("http://")
        .context("metrics URL must be http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).context("connecting to metrics")?;
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut page = String::new();
    s.read_to_string(&mut page)?;
    let sum = |metric: &str| -> f64 {
        page.lines()
            .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok((
        sum("argon_sidecar_branch_commits_total"),
        sum("argon_sidecar_branch_commit_writes_total"),
    ))
}

async fn measure(t: &Target, clients: u64, round: usize, secs: f64) -> anyhow::Result<Sample> {
    let db = t.client.database("insert_bench");
    let ping = {
        let db = db.clone();
        rate(clients, secs, move |_, _| {
            let db = db.clone();
            async move {
                db.run_command(doc! {"ping": 1}).await?;
                Ok(())
            }
        })
        .await?
    };
    // A fresh, empty collection per run.
    let coll: Collection<Document> = db.collection(&format!("c{clients}_r{round}"));
    let before = match &t.metrics {
        Some(url) => Some(commit_counters(url)?),
        None => None,
    };
    let inserts = rate(clients, secs, move |c, n| {
        let coll = coll.clone();
        async move {
            coll.insert_one(document(n * 1024 + c)).await?;
            Ok(())
        }
    })
    .await?;
    let per_commit = match (&t.metrics, before) {
        (Some(url), Some((c0, w0))) => {
            let (c1, w1) = commit_counters(url)?;
            (c1 > c0).then(|| (w1 - w0) / (c1 - c0))
        }
        _ => None,
    };
    Ok(Sample {
        ping,
        inserts,
        per_commit,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn int(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let max_pool = args.clients.iter().copied().max().unwrap_or(1) + 4;
    let mut targets = Vec::new();
    for spec in &args.targets {
        let (name, rest) = spec
            .split_once('=')
            .context("--target is name=uri[,metrics-url]")?;
        let (uri, metrics) = match rest.split_once(",http") {
            Some((u, m)) => (u, Some(format!("http{m}"))),
            None => (rest, None),
        };
        let sep = if uri.contains('?') { '&' } else { '?' };
        let client = Client::with_uri_str(format!("{uri}{sep}maxPoolSize={max_pool}"))
            .await
            .with_context(|| format!("connecting to {name}"))?;
        client.database("insert_bench").drop().await.ok();
        targets.push(Target {
            name: name.to_string(),
            client,
            metrics,
        });
    }
    // samples[client index][target index] over rounds; fsync rates per client count.
    let mut samples = vec![vec![Vec::<Sample>::new(); targets.len()]; args.clients.len()];
    let mut syncs = vec![Vec::<f64>::new(); args.clients.len()];
    for round in 0..args.rounds {
        for (ci, &clients) in args.clients.iter().enumerate() {
            let dir = args.sync_dir.clone();
            let secs = args.seconds.min(2.0);
            let sync = tokio::task::spawn_blocking(move || fdatasync_rate(&dir, secs)).await??;
            eprintln!("round {round}: {clients} clients: fdatasync {sync:.0}/s");
            syncs[ci].push(sync);
            // Alternate which target goes first, round by round.
            let order: Vec<usize> = match round % 2 {
                0 => (0..targets.len()).collect(),
                _ => (0..targets.len()).rev().collect(),
            };
            for ti in order {
                let s = measure(&targets[ti], clients, round, args.seconds).await?;
                eprintln!(
                    "round {round}: {clients} clients: {}: ping {:.0}/s, inserts {:.0}/s ({:?} writes/commit)",
                    targets[ti].name, s.ping, s.inserts, s.per_commit
                );
                samples[ci][ti].push(s);
            }
        }
    }
    let mut out = String::new();
    out.push_str("| clients | fdatasync/s | durability bound (clients × fdatasync/s) |");
    for t in &targets {
        out.push_str(&format!(
            " {n}: ping/s | {n}: inserts/s (writes/commit) | {n}: inserts ÷ lower ceiling |",
            n = t.name
        ));
    }
    if targets.len() == 2 {
        out.push_str(&format!(" {} ÷ {} |", targets[1].name, targets[0].name));
    }
    out.push('\n');
    out.push_str("|---:|---:|---:|");
    for _ in &targets {
        out.push_str("---:|---:|---:|");
    }
    if targets.len() == 2 {
        out.push_str("---:|");
    }
    out.push('\n');
    for (ci, &clients) in args.clients.iter().enumerate() {
        let sync = median(syncs[ci].clone());
        let bound = clients as f64 * sync;
        out.push_str(&format!("| {clients} | {} | {} |", int(sync), int(bound)));
        let mut ins = Vec::new();
        for s in &samples[ci] {
            let ping = median(s.iter().map(|x| x.ping).collect());
            let inserts = median(s.iter().map(|x| x.inserts).collect());
            let per: Vec<f64> = s.iter().filter_map(|x| x.per_commit).collect();
            let per = match per.is_empty() {
                true => String::new(),
                false => format!(" ({:.1})", median(per)),
            };
            let ceiling = ping.min(bound);
            out.push_str(&format!(
                " {} | {}{per} | {:.2}× |",
                int(ping),
                int(inserts),
                inserts / ceiling
            ));
            ins.push(inserts);
        }
        if ins.len() == 2 {
            out.push_str(&format!(" {:.2}× |", ins[1] / ins[0]));
        }
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
