//! The multi-writer benchmark (issue "many pods, one branch"), run by
//! `bench/writers`: 1, 2, 4 and 8 `argon-sidecar` processes on one branch
//! of one mongodb store (FerretDB, a fresh one per row), the same total of
//! client tasks spread evenly over them, each inserting small documents
//! through its own sidecar for `--seconds`. Side by side in one run:
//!
//! - acknowledged inserts/s in total and as a ratio to one sidecar's;
//! - each sidecar's share of the inserts (the smallest as a ratio to the
//!   mean: 1.0 is perfectly fair, 0 is a starved pod);
//! - per-sidecar p50/p99 latency (the worst sidecar's);
//! - replication lag: a probe writes through sidecar 0 and polls sidecar 1
//!   until it reads the write, under the same load;
//! - that every acknowledged insert is there at the end.
//!
//! Prints a markdown table on stdout.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use argon_testkit::FerretDb;
use argon_testkit::process::ServerProcess;
use bson::{Document, doc};
use clap::Parser;
use mongodb::{Client, Collection};

#[derive(Debug, Parser)]
struct Args {
    /// The argon-sidecar binary (a release build).
    #[arg(long)]
    bin: PathBuf,
    /// Sidecar counts, one row each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    sidecars: Vec<usize>,
    /// Client tasks in total, spread evenly over the sidecars.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Extra arguments for every sidecar; `{n}` is replaced by the
    /// sidecar's number, `{free_port}` by a free port (one per sidecar).
    #[arg(long, allow_hyphen_values = true)]
    sidecar_args: Vec<String>,
}

struct Sidecar {
    _process: ServerProcess,
    client: Client,
}

async fn start_sidecar(
    bin: &std::path::Path,
    store: &str,
    n: usize,
    logs: &std::path::Path,
    extra: &[String],
) -> anyhow::Result<Sidecar> {
    let port = argon_testkit::free_port()?;
    let mut args = vec![
        "serve".to_string(),
        "--store".into(),
        store.into(),
        "--project".into(),
        "bench".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    let peer_port = argon_testkit::free_port()?.to_string();
    args.extend(extra.iter().map(|a| {
        a.replace("{n}", &n.to_string())
            .replace("{free_port}", &peer_port)
    }));
    let mut process = ServerProcess::start_with_env(
        &format!("sidecar-{n}"),
        bin,
        &args,
        logs,
        &[("ARGON_LOG", "warn")],
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        process.ensure_running()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "sidecar {n} did not listen within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = Client::with_uri_str(format!(
        "mongodb://127.0.0.1:{port}/?directConnection=true&maxPoolSize=64"
    ))
    .await?;
    Ok(Sidecar {
        _process: process,
        client,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

struct Row {
    sidecars: usize,
    per_second: f64,
    shares: Vec<u64>,
    p50: Duration,
    p99: Duration,
    errors: u64,
    lag_p50: Option<Duration>,
    lag_p99: Option<Duration>,
    missing: u64,
}

async fn run_row(args: &Args, k: usize) -> anyhow::Result<Row> {
    let ferretdb = FerretDb::start().await.context("FerretDB starts")?;
    let logs = tempfile::Builder::new()
        .prefix("argon-writers-bench-")
        .tempdir()?;
    let mut sidecars = Vec::new();
    for n in 0..k {
        sidecars.push(
            start_sidecar(
                &args.bin,
                ferretdb.uri(),
                n,
                logs.path(),
                &args.sidecar_args,
            )
            .await?,
        );
    }
    let colls: Vec<Collection<Document>> = sidecars
        .iter()
        .map(|s| s.client.database("bench").collection("items"))
        .collect();
    // Warm every sidecar's head and connection pool.
    for (n, c) in colls.iter().enumerate() {
        c.insert_one(doc! {"_id": format!("warm-{n}")}).await?;
    }

    let start = Instant::now();
    let run = Duration::from_secs(args.seconds);
    let end = start + run;
    let mut tasks = Vec::new();
    for t in 0..args.clients.max(k) {
        let n = t % k;
        let coll = colls[n].clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut acked, mut errors) = (Vec::new(), Vec::new(), 0u64);
            let mut i = 0u64;
            while Instant::now() < end {
                let id = format!("{n}-{t}-{i}");
                i += 1;
                let began = Instant::now();
                // A starved insert counts as an error after the run's own
                // length, so a row ends in bounded time.
                let insert = coll.insert_one(doc! {"_id": &id, "pad": "x".repeat(100)});
                match tokio::time::timeout(run, insert.into_future()).await {
                    Ok(Ok(_)) => {
                        lat.push(began.elapsed());
                        acked.push(id);
                    }
                    Ok(Err(_)) | Err(_) => errors += 1,
                }
            }
            (n, lat, acked, errors)
        }));
    }
    // The lag probe: write through sidecar 0, poll sidecar 1 until seen.
    let probing = Arc::new(AtomicBool::new(true));
    let probe = (k >= 2 && std::env::var_os("BENCH_NO_PROBE").is_none()).then(|| {
        let (w, r, probing) = (colls[0].clone(), colls[1].clone(), probing.clone());
        tokio::spawn(async move {
            let mut lags = Vec::new();
            let mut i = 0u64;
            while probing.load(Ordering::Relaxed) {
                let id = format!("probe-{i}");
                i += 1;
                if w.insert_one(doc! {"_id": &id}).await.is_err() {
                    continue;
                }
                let acked = Instant::now();
                loop {
                    if let Ok(Some(_)) = r.find_one(doc! {"_id": &id}).await {
                        lags.push(acked.elapsed());
                        break;
                    }
                    if acked.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                    // A reader polling as an app would, not a spin: each
                    // read through a sidecar behind the writer catches up.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            lags
        })
    });

    let mut shares = vec![0u64; k];
    let (mut lat_by, mut all_acked, mut errors) = (vec![Vec::new(); k], Vec::new(), 0u64);
    for t in tasks {
        let (n, lat, acked, e) = t.await?;
        shares[n] += acked.len() as u64;
        lat_by[n].extend(lat);
        all_acked.extend(acked);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    probing.store(false, Ordering::Relaxed);
    let mut lags = match probe {
        Some(p) => p.await?,
        None => Vec::new(),
    };
    lags.sort();

    // The worst sidecar's percentiles.
    let (mut p50, mut p99) = (Duration::ZERO, Duration::ZERO);
    for l in &mut lat_by {
        l.sort();
        p50 = p50.max(percentile(l, 0.5));
        p99 = p99.max(percentile(l, 0.99));
    }
    // Every acknowledged insert is there, read through the last sidecar.
    let mut missing = 0u64;
    let last = &colls[k - 1];
    for chunk in all_acked.chunks(10_000) {
        let n = last
            .count_documents(doc! {"_id": {"$in": chunk.to_vec()}})
            .await?;
        missing += chunk.len() as u64 - n;
    }
    Ok(Row {
        sidecars: k,
        per_second: all_acked.len() as f64 / elapsed,
        shares,
        p50,
        p99,
        errors,
        lag_p50: (!lags.is_empty()).then(|| percentile(&lags, 0.5)),
        lag_p99: (!lags.is_empty()).then(|| percentile(&lags, 0.99)),
        missing,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    for &k in &args.sidecars {
        anyhow::ensure!(k >= 1, "a row needs at least one sidecar");
        eprintln!("{k} sidecar(s)…");
        rows.push(run_row(&args, k).await?);
    }
    let base = rows.first().map_or(1.0, |r| r.per_second.max(1e-9));
    println!(
        "| sidecars ({} clients in all, {} s) | inserts/s | vs {} sidecar | smallest share / mean | per-sidecar inserts | worst p50 | worst p99 | errors | lag p50 | lag p99 | acked but missing |",
        args.clients,
        args.seconds,
        args.sidecars.first().copied().unwrap_or(1)
    );
    println!("| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let mean = r.shares.iter().sum::<u64>() as f64 / r.shares.len() as f64;
        let min = r.shares.iter().copied().min().unwrap_or(0) as f64;
        let shares: Vec<String> = r.shares.iter().map(u64::to_string).collect();
        println!(
            "| {} | {:.0} | {:.2}× | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
            r.sidecars,
            r.per_second,
            r.per_second / base,
            if mean > 0.0 { min / mean } else { 0.0 },
            shares.join(" / "),
            ms(r.p50),
            ms(r.p99),
            r.errors,
            r.lag_p50.map_or("–".into(), ms),
            r.lag_p99.map_or("–".into(), ms),
            r.missing
        );
    }
    Ok(())
}
