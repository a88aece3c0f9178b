//! The cost of authentication and TLS (issue 16), run by `bench/auth`: two
//! servers in this process on embedded stores, one plain and one with
//! `--auth` and TLS (a test CA), driven by the Rust driver in the same run:
//!
//! - the SCRAM-SHA-256 handshake: a new client's first `ping` over TLS with
//!   authentication, against a new client's first `ping` on the plain server
//!   (connection, `hello`, and on the secure one TLS and SCRAM);
//! - inserts/s (1 KB documents) and point reads by `_id`/s through 1 and 16
//!   client tasks on each, best of three interleaved rounds, and the
//!   secure ÷ plain ratio (goal ≥ 0.8).
//!
//! Prints a markdown table on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon_sidecar::Service;
use argon_sidecar::config::{StoreChoice, open_wal};
use argon_sidecar::metrics::Metrics;
use argon_sidecar::server::{ServerOptions, run_with_tls};
use argon_testkit::tls::TestCa;
use bson::{Document, doc};
use clap::Parser;
use mongodb::{Client, Collection};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
struct Args {
    /// Documents per insert run (and the collection size for point reads).
    #[arg(long, default_value_t = 20_000)]
    docs: u64,
    /// Point reads per run.
    #[arg(long, default_value_t = 50_000)]
    reads: u64,
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<u64>,
    /// New clients timed for the handshake.
    #[arg(long, default_value_t = 200)]
    handshakes: usize,
}

const PASSWORD: &str = "bench-password-1";
/// Throughput rounds per server and client count (the best is kept).
const ROUNDS: usize = 3;

async fn server(
    dir: &std::path::Path,
    secure: Option<(&str, &str)>,
) -> anyhow::Result<std::net::SocketAddr> {
    let wal = open_wal(&StoreChoice::Embedded(dir.to_owned()), "default").await?;
    let svc = Service::new(wal, "main", Arc::new(Metrics::default()));
    let tls = match secure {
        Some((cert, key)) => {
            svc.set_auth_required(true).await?;
            let serving = argon_sidecar::tls::ServingCert::load(cert.as_ref(), key.as_ref())?;
            Some(serving.acceptor()?)
        }
        None => None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(run_with_tls(
        listener,
        svc,
        ServerOptions::default(),
        tls,
        std::future::pending::<()>(),
    ));
    Ok(addr)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn p99(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get((v.len() * 99 / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// New clients, each timed to its first `ping`.
async fn handshakes(uri: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let c = Client::with_uri_str(uri).await?;
        c.database("admin").run_command(doc! {"ping": 1}).await?;
        out.push(t.elapsed());
        c.shutdown().await;
    }
    Ok(out)
}

/// `total` operations over `clients` tasks; the rate per second.
async fn rate<F, Fut>(clients: u64, total: u64, op: F) -> anyhow::Result<f64>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, anyhow::Error>(());
                    }
                    op(i).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Inserts/s and reads/s with `clients` tasks on `uri`, in a collection of
/// its own (`round` tells runs apart).
async fn throughput(
    client: &Client,
    clients: u64,
    round: usize,
    args: &Args,
) -> anyhow::Result<(f64, f64)> {
    let coll: Collection<Document> = client
        .database("bench")
        .collection(&format!("c{clients}r{round}"));
    let c = coll.clone();
    let inserts = rate(clients, args.docs, move |i| {
        let c = c.clone();
        async move {
            c.insert_one(doc! {"_id": i as i64, "pad": "x".repeat(1000 - 30)})
                .await?;
            Ok(())
        }
    })
    .await?;
    let docs = args.docs;
    let reads = rate(clients, args.reads, move |i| {
        let c = coll.clone();
        async move {
            let id = (i.wrapping_mul(7919) % docs) as i64;
            anyhow::ensure!(
                c.find_one(doc! {"_id": id}).await?.is_some(),
                "missing {id}"
            );
            Ok(())
        }
    })
    .await?;
    Ok((inserts, reads))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("argon-bench-ca")?;
    let serving = ca.serving_cert(&["127.0.0.1"])?;
    let path = |name: &str, text: &str| -> anyhow::Result<String> {
        let p = dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p.display().to_string())
    };
    let (cert, key) = (
        path("tls.crt", &serving.cert_pem)?,
        path("tls.key", &serving.key_pem)?,
    );
    let ca_file = path("ca.crt", &ca.cert_pem())?;
    let plain = server(&dir.path().join("plain"), None).await?;
    let secure = server(&dir.path().join("secure"), Some((&cert, &key))).await?;

    let plain_uri = format!("mongodb://{plain}/?directConnection=true");
    let first = format!("mongodb://{secure}/?directConnection=true&tls=true&tlsCAFile={ca_file}");
    Client::with_uri_str(&first)
        .await?
        .database("admin")
        .run_command(doc! {"createUser": "bench", "pwd": PASSWORD, "roles": ["root"]})
        .await?;
    let secure_uri = format!(
        "mongodb://bench:{PASSWORD}@{secure}/?directConnection=true&authSource=admin&authMechanism=SCRAM-SHA-256&tls=true&tlsCAFile={ca_file}"
    );

    eprintln!("handshakes…");
    let mut hs_plain = handshakes(&plain_uri, args.handshakes).await?;
    let mut hs_secure = handshakes(&secure_uri, args.handshakes).await?;
    eprintln!("throughput…");
    // Interleaved rounds, the best of each: the machine's other load (and
    // fsync latency) varies over a run, and neither server should always go
    // first.
    let (plain_client, secure_client) = (
        Client::with_uri_str(&plain_uri).await?,
        Client::with_uri_str(&secure_uri).await?,
    );
    let mut plain_rates = Vec::new();
    let mut secure_rates = Vec::new();
    for &clients in &args.clients {
        let (mut p, mut s) = ((0f64, 0f64), (0f64, 0f64));
        for round in 0..ROUNDS {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for secure in order {
                let (client, best) = if secure {
                    (&secure_client, &mut s)
                } else {
                    (&plain_client, &mut p)
                };
                let (i, r) = throughput(client, clients, round, &args).await?;
                *best = (best.0.max(i), best.1.max(r));
            }
        }
        plain_rates.push((clients, p.0, p.1));
        secure_rates.push((clients, s.0, s.1));
    }

    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    println!("| measure | clients | plain | TLS + SCRAM-SHA-256 | secure ÷ plain | goal |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    println!(
        "| new client to its first ping, median / p99 (ms) | 1 | {} / {} | {} / {} | | |",
        ms(median(&mut hs_plain)),
        ms(p99(&mut hs_plain)),
        ms(median(&mut hs_secure)),
        ms(p99(&mut hs_secure)),
    );
    for ((clients, pi, pr), (_, si, sr)) in plain_rates.iter().zip(&secure_rates) {
        let verdict = |r: f64| {
            if r >= 0.8 {
                "≥ 0.8: **met**"
            } else {
                "≥ 0.8: **missed**"
            }
        };
        println!(
            "| inserts/s (1 KB docs) | {clients} | {pi:.0} | {si:.0} | {:.2} | {} |",
            si / pi,
            verdict(si / pi)
        );
        println!(
            "| point reads by `_id`/s | {clients} | {pr:.0} | {sr:.0} | {:.2} | {} |",
            sr / pr,
            verdict(sr / pr)
        );
    }
    Ok(())
}
