//! Appends to a store until killed; the crash tests run it.
//!
//! `crash_writer <dir> [--writers N] [--doc-bytes B] [--store <mongodb uri>]`:
//! N concurrent writers (default 8) put documents of about B bytes (default
//! 64 KiB) on `main` of project `crash`, in the embedded store in `<dir>` or,
//! with `--store`, in database `argon_crash` of that MongoDB. A document's
//! `pad` is `pattern(id, B)`, so a reader can tell a whole document from a
//! damaged one. After each acknowledged write one line `ack <seq> <writer>
//! <i>` is printed (and flushed). Everything printed must survive `kill -9`.
//! Documents above 1 MiB make every commit a multi-record one (chunks, then
//! the commit record).

use argon_wal::{DocOp, EmbeddedStore, LogStore, MongoStore, Namespace, Wal, WalOptions};
use bson::{Bson, doc};
use std::io::Write;
use std::sync::Arc;

/// The bytes of document `id`'s `pad` (the crash tests check them).
fn pattern(id: i64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(id as u64) as u8)
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: crash_writer <dir> [--writers N] [--doc-bytes B] [--store URI]")?;
    let (mut writers, mut doc_bytes, mut uri) = (8i64, 64usize << 10, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--writers" => writers = value.parse()?,
            "--doc-bytes" => doc_bytes = value.parse()?,
            "--store" => uri = Some(value),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let store: Arc<dyn LogStore> = match uri {
        Some(uri) => MongoStore::connect(&uri, "argon_crash").await?,
        None => EmbeddedStore::open(&dir)?,
    };
    let wal = Wal::open(
        store,
        "crash",
        WalOptions {
            snapshot_policy: argon_wal::SnapshotPolicy::EveryCommits(50),
            ..WalOptions::default()
        },
    )
    .await?;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0i64.. {
                let id = w * 1_000_000 + i;
                let pad = bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: pattern(id, doc_bytes),
                };
                let doc = argon_wal::rawdoc::encode(&doc! {"_id": id, "w": w, "i": i, "pad": pad})
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
