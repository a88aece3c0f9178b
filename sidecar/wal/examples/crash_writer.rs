//! Appends to an embedded store until killed; the crash test runs it.
//!
//! `crash_writer <dir>`: 8 concurrent writers put ~64 KiB documents on
//! `main`; after each acknowledged write one line `ack <seq> <writer> <i>`
//! is printed (and flushed). Everything printed must survive `kill -9`.

use argon_wal::{DocOp, EmbeddedStore, LogStore, Namespace, Wal, WalOptions};
use bson::{Bson, doc};
use std::io::Write;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: crash_writer <dir>")?;
    let store: Arc<dyn LogStore> = EmbeddedStore::open(&dir)?;
    let wal = Wal::open(
        store,
        "crash",
        WalOptions {
            snapshot_every: 50,
            ..WalOptions::default()
        },
    )
    .await?;
    let payload = "x".repeat(64 << 10);
    let mut tasks = Vec::new();
    for w in 0..8i64 {
        let wal = wal.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0i64.. {
                let id = w * 1_000_000 + i;
                let doc = argon_wal::rawdoc::encode(
                    &doc! {"_id": id, "w": w, "i": i, "pad": payload.as_str()},
                )
                .expect("a plain document encodes");
                let op = DocOp::Put {
                    ns: Namespace::new("db", "c"),
                    id: Bson::Int64(id),
                    doc,
                };
                let res = wal
                    .write("main", move |_| Ok::<_, ()>((vec![op.clone()], ())))
                    .await;
                match res {
                    Ok((_, info)) => {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ack {} {w} {i}", info.seq.0);
                        let _ = out.flush();
                    }
                    Err(e) => {
                        eprintln!("write failed: {e:?}");
                        return;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}
