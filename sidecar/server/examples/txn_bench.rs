//! The transaction benchmark (hardening issue), run by `bench/transactions`:
//! the Rust driver against one `argon-sidecar`, side by side in one run:
//!
//! - `ping`/s (the wire ceiling on this machine);
//! - single `update_one` (`$inc` on a random one of `--docs` accounts)/s;
//! - transactions of two such updates (`with_transaction`, retried on
//!   `WriteConflict`)/s, with how many attempts conflicted;
//!
//! each at `--clients` client tasks for `--seconds`. Prints a markdown
//! table on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use clap::Parser;
use futures::FutureExt;
use mongodb::{Client, Collection};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    uri: String,
    #[arg(long, default_value_t = 16)]
    clients: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Accounts the updates pick from (fewer: more conflicts).
    #[arg(long, default_value_t = 10_000)]
    docs: u64,
}

/// A cheap per-task random sequence (xorshift), so tasks pick different accounts.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

struct Rate {
    ops: u64,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn timed<F, Fut>(clients: u64, seconds: u64, op: F) -> anyhow::Result<Rate>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut seed =
                    0x9E37_79B9_7F4A_7C15u64 ^ (c + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
                let mut lat = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    op(next(&mut seed)).await?;
                    lat.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Rate {
        ops: all.len() as u64,
        per_second: all.len() as f64 / elapsed,
        p50: pct(0.5),
        p99: pct(0.99),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::with_uri_str(&args.uri).await?;
    let db = client.database("txnbench");
    db.drop().await?;
    let accounts: Collection<Document> = db.collection("accounts");
    let batch: Vec<Document> = (0..args.docs)
        .map(|i| doc! {"_id": i as i64, "balance": 1_000_000i64})
        .collect();
    for chunk in batch.chunks(10_000) {
        accounts.insert_many(chunk.to_vec()).await?;
    }
    let docs = args.docs;

    eprintln!("ping…");
    let c = client.clone();
    let ping = timed(args.clients, args.seconds, move |_| {
        let c = c.clone();
        async move {
            c.database("admin").run_command(doc! {"ping": 1}).await?;
            Ok(())
        }
    })
    .await?;

    eprintln!("single updates…");
    let a = accounts.clone();
    let single = timed(args.clients, args.seconds, move |r| {
        let a = a.clone();
        async move {
            a.update_one(
                doc! {"_id": (r % docs) as i64},
                doc! {"$inc": {"balance": 1i64}},
            )
            .await?;
            Ok(())
        }
    })
    .await?;

    eprintln!("transactions…");
    let conflicts = Arc::new(AtomicU64::new(0));
    let (a, c, k) = (accounts.clone(), client.clone(), conflicts.clone());
    let txn = timed(args.clients, args.seconds, move |r| {
        let (a, c, k) = (a.clone(), c.clone(), k.clone());
        async move {
            let mut session = c.start_session().await?;
            let from = (r % docs) as i64;
            let to = ((r >> 20) % docs) as i64;
            let mut context = (a, k, 0u32);
            session
                .start_transaction()
                .and_run(&mut context, |s, ctx| {
                    async move {
                        let (a, k, attempts) = &mut **ctx;
                        *attempts += 1;
                        if *attempts > 1 {
                            k.fetch_add(1, Ordering::Relaxed);
                        }
                        a.update_one(doc! {"_id": from}, doc! {"$inc": {"balance": -1i64}})
                            .session(&mut *s)
                            .await?;
                        a.update_one(doc! {"_id": to}, doc! {"$inc": {"balance": 1i64}})
                            .session(&mut *s)
                            .await?;
                        Ok(())
                    }
                    .boxed()
                })
                .await?;
            Ok(())
        }
    })
    .await?;

    let ratio = |x: &Rate| x.per_second / ping.per_second;
    println!(
        "| operation ({} clients, {} s each) | ops | ops/s | vs ping | p50 | p99 |",
        args.clients, args.seconds
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, r) in [
        ("`ping` (the wire ceiling)", &ping),
        ("single `update_one` ($inc)", &single),
        ("transaction of two `update_one`", &txn),
    ] {
        println!(
            "| {name} | {} | {:.0} | {:.2}× | {:.2} ms | {:.2} ms |",
            r.ops,
            r.per_second,
            ratio(r),
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3
        );
    }
    println!();
    println!(
        "Transactions/s as a ratio to single updates/s: **{:.2}×**; attempts retried after a `WriteConflict`: {} ({} accounts).",
        txn.per_second / single.per_second,
        conflicts.load(Ordering::Relaxed),
        args.docs
    );
    // Conservation: every transaction moved 1 from one account to another.
    let total: i64 = {
        use futures::TryStreamExt;
        accounts
            .find(doc! {})
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .iter()
            .filter_map(|d| d.get_i64("balance").ok())
            .sum()
    };
    let expected = docs as i64 * 1_000_000 + single.ops as i64;
    anyhow::ensure!(
        total == expected,
        "balances sum to {total}, expected {expected}"
    );
    Ok(())
}
