//! Embedded key-value stores on Argon's versioned-store access pattern
//! (issue 17), side by side in one run; `bench/kv` runs it in release mode
//! and writes its markdown into docs/benchmarks.md. Never a test.
//!
//! `kv_bench [--keys N] [--budget-mib M] [--dir D]` prints a markdown section
//! on stdout and progress on stderr. Each engine runs in its own child
//! process (`--child run|crash|reopen --engine E`), so that its RSS, its
//! bytes written (`/proc/self/io`) and its recovery after `kill -9` are its
//! own.
//!
//! The pattern (see sidecar/wal/DESIGN.md, "Materialized store"):
//! - key `incarnation u64 BE | collection u32 BE | document key | !seq u64 BE`,
//!   so a document's versions are adjacent, newest first, and "the newest
//!   version at or below `s`" is the first key at or after
//!   `(…, document key, !s)` that still has the document's prefix: one seek;
//! - values of 1 KB (half random bytes, half text: about 2:1 for lz4);
//! - one write batch per commit (N versions at one seq), never fsync'd:
//!   the log is the durable copy, and the store records the seq it applied
//!   in the same batch (key `META_APPLIED`);
//! - a branch reads its own versions, then its parent's up to the fork seq,
//!   and so on up the chain.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---- keys ------------------------------------------------------------------------

/// The key recording the last seq applied (sorts before every document key:
/// incarnation 0 is never a branch).
const META_APPLIED: &[u8] = b"\0\0\0\0\0\0\0\0applied";

/// A document key as `IdKey` makes an int64 `_id`: a type tag and 8 bytes,
/// prefix-free (no document key is a prefix of another).
fn doc_key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = 0x12;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn prefix(inc: u64, coll: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + 9 + 8);
    k.extend_from_slice(&inc.to_be_bytes());
    k.extend_from_slice(&coll.to_be_bytes());
    k
}

/// `(inc, coll, doc, !seq)`: newer versions sort first.
fn version_key(inc: u64, coll: u32, doc: &[u8], seq: u64) -> Vec<u8> {
    let mut k = prefix(inc, coll);
    k.extend_from_slice(doc);
    k.extend_from_slice(&(u64::MAX - seq).to_be_bytes());
    k
}

fn seq_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[key.len() - 8..]);
    u64::MAX - u64::from_be_bytes(b)
}

/// The exclusive end of every key starting with `p`.
fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut e = p.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xff {
            e.push(last + 1);
            return e;
        }
    }
    vec![0xff; p.len() + 1]
}

// ---- the stores ------------------------------------------------------------------

/// What the versioned store needs from a KV: atomic unsynced batches, a seek,
/// an ordered scan, deletes, and a way to reclaim space.
trait Kv {
    /// One commit's versions and the applied marker, atomically, no fsync.
    fn write(&self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) -> Result<()>;
    /// The first entry in `[from, end)`.
    fn seek(&self, from: &[u8], end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>>;
    /// Every entry in `[from, end)` in key order, until `f` returns false.
    fn scan(&self, from: &[u8], end: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Writes what is buffered in memory to its files (still no fsync
    /// promise), so that disk usage and bytes written are comparable.
    fn flush(&self) -> Result<()>;
    /// Full compaction: what retention's deletes give back.
    fn compact(&mut self) -> Result<()>;
    /// Whether background flushes and compactions are still running (reads
    /// are timed only once they are not, so that no engine's reads pay for
    /// its own load's compaction).
    fn busy(&self) -> bool {
        false
    }
}

/// Waits (at most 120 s) until the engine's background work is done.
fn settle(kv: &dyn Kv) -> f64 {
    let t = Instant::now();
    let mut quiet = 0;
    while quiet < 5 && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
        quiet = if kv.busy() { 0 } else { quiet + 1 };
    }
    t.elapsed().as_secs_f64()
}

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path, budget: u64) -> Result<Fjall> {
        let db = fjall::Database::builder(dir)
            .cache_size(budget / 2)
            // Bounds the journal, so replay after a crash (and the disk it
            // takes) is bounded too; 64 MiB is fjall's smallest.
            .max_journaling_size(64 << 20)
            .open()?;
        let ks = db.keyspace("versions", || {
            fjall::KeyspaceCreateOptions::default().max_memtable_size(budget / 4)
        })?;
        Ok(Fjall { db, ks })
    }
}

impl Kv for Fjall {
    fn write(&self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) -> Result<()> {
        let mut b = self.db.batch();
        for (k, v) in puts {
            b.insert(&self.ks, k.as_slice(), v.as_slice());
        }
        for k in deletes {
            b.remove(&self.ks, k.as_slice());
        }
        // Default durability: written to the OS (survives kill -9), no fsync.
        b.commit()?;
        Ok(())
    }
    fn seek(&self, from: &[u8], end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        match self.ks.range(from..end).next() {
            Some(g) => {
                let (k, v) = g.into_inner()?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }
    fn scan(&self, from: &[u8], end: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        for g in self.ks.range(from..end) {
            let (k, v) = g.into_inner()?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.ks.get(key)?.map(|v| v.to_vec()))
    }
    fn flush(&self) -> Result<()> {
        self.ks.rotate_memtable_and_wait()?;
        Ok(())
    }
    fn busy(&self) -> bool {
        self.db.active_compactions() > 0 || self.db.outstanding_flushes() > 0
    }
    fn compact(&mut self) -> Result<()> {
        self.ks.rotate_memtable_and_wait()?;
        // fjall drops a superseded or deleted version only below its GC
        // watermark, which moves every 10,000 closed snapshots (each
        // iterator is one): a serving process closes that many in seconds;
        // this run must close them itself before compacting.
        for _ in 0..10_000 {
            let _ = self.ks.range(META_APPLIED..META_APPLIED).next();
        }
        self.ks.major_compact()?;
        Ok(())
    }
}

#[cfg(feature = "redb")]
mod redb_kv {
    use super::*;
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};

    const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("versions");

    pub struct Redb {
        db: redb::Database,
    }

    impl Redb {
        pub fn open(dir: &Path, budget: u64) -> Result<Redb> {
            std::fs::create_dir_all(dir)?;
            let db = redb::Database::builder()
                .set_cache_size(budget as usize)
                .create(dir.join("db.redb"))?;
            let w = db.begin_write()?;
            w.open_table(TABLE)?;
            w.commit()?;
            Ok(Redb { db })
        }
    }

    impl Kv for Redb {
        fn write(&self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) -> Result<()> {
            let mut w = self.db.begin_write()?;
            // Not durable until a later durable commit: the log is the copy.
            w.set_durability(redb::Durability::None)?;
            {
                let mut t = w.open_table(TABLE)?;
                for (k, v) in puts {
                    t.insert(k.as_slice(), v.as_slice())?;
                }
                for k in deletes {
                    t.remove(k.as_slice())?;
                }
            }
            w.commit()?;
            Ok(())
        }
        fn seek(&self, from: &[u8], end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
            let r = self.db.begin_read()?;
            let t = r.open_table(TABLE)?;
            let mut it = t.range(from..end)?;
            match it.next() {
                Some(e) => {
                    let (k, v) = e?;
                    Ok(Some((k.value().to_vec(), v.value().to_vec())))
                }
                None => Ok(None),
            }
        }
        fn scan(
            &self,
            from: &[u8],
            end: &[u8],
            f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<()> {
            let r = self.db.begin_read()?;
            let t = r.open_table(TABLE)?;
            for e in t.range(from..end)? {
                let (k, v) = e?;
                if !f(k.value(), v.value()) {
                    break;
                }
            }
            Ok(())
        }
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            let r = self.db.begin_read()?;
            let t = r.open_table(TABLE)?;
            Ok(t.get(key)?.map(|v| v.value().to_vec()))
        }
        fn flush(&self) -> Result<()> {
            // A durable commit writes the pages and the commit slot.
            let w = self.db.begin_write()?;
            w.commit()?;
            Ok(())
        }
        fn compact(&mut self) -> Result<()> {
            self.flush()?;
            while self.db.compact(redb::CompactionMode::Maximum)? {}
            Ok(())
        }
    }
}

#[cfg(feature = "rocksdb")]
mod rocks_kv {
    use super::*;

    pub struct Rocks {
        db: rocksdb::DB,
        write: rocksdb::WriteOptions,
    }

    impl Rocks {
        pub fn open(dir: &Path, budget: u64) -> Result<Rocks> {
            let mut o = rocksdb::Options::default();
            o.create_if_missing(true);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            // Memtables: half the budget, as for fjall.
            o.set_write_buffer_size((budget / 4) as usize);
            o.set_max_write_buffer_number(2);
            o.set_db_write_buffer_size((budget / 2) as usize);
            o.increase_parallelism(2);
            // As fjall's journal: bounds the WAL and so replay after a crash.
            o.set_max_total_wal_size(64 << 20);
            let cache = rocksdb::Cache::new_lru_cache((budget / 2) as usize);
            let mut t = rocksdb::BlockBasedOptions::default();
            t.set_block_cache(&cache);
            t.set_cache_index_and_filter_blocks(true);
            // Index and filter blocks stay cached: without this a 32 MiB
            // cache evicts them for data blocks and every seek re-reads them.
            t.set_pin_l0_filter_and_index_blocks_in_cache(true);
            t.set_pin_top_level_index_and_filter(true);
            t.set_bloom_filter(10.0, false);
            o.set_block_based_table_factory(&t);
            let db = rocksdb::DB::open(&o, dir)?;
            let mut write = rocksdb::WriteOptions::default();
            // Its own WAL, written to the OS (survives kill -9), never fsync'd.
            write.set_sync(false);
            Ok(Rocks { db, write })
        }
    }

    impl Kv for Rocks {
        fn write(&self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) -> Result<()> {
            let mut b = rocksdb::WriteBatch::default();
            for (k, v) in puts {
                b.put(k, v);
            }
            for k in deletes {
                b.delete(k);
            }
            self.db.write_opt(b, &self.write)?;
            Ok(())
        }
        fn seek(&self, from: &[u8], end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
            let mut ro = rocksdb::ReadOptions::default();
            ro.set_iterate_upper_bound(end.to_vec());
            let mut it = self.db.raw_iterator_opt(ro);
            it.seek(from);
            if it.valid() {
                if let (Some(k), Some(v)) = (it.key(), it.value()) {
                    return Ok(Some((k.to_vec(), v.to_vec())));
                }
            }
            it.status()?;
            Ok(None)
        }
        fn scan(
            &self,
            from: &[u8],
            end: &[u8],
            f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<()> {
            let mut ro = rocksdb::ReadOptions::default();
            ro.set_iterate_upper_bound(end.to_vec());
            let mut it = self.db.raw_iterator_opt(ro);
            it.seek(from);
            while it.valid() {
                match (it.key(), it.value()) {
                    (Some(k), Some(v)) => {
                        if !f(k, v) {
                            break;
                        }
                    }
                    _ => break,
                }
                it.next();
            }
            it.status()?;
            Ok(())
        }
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(self.db.get(key)?)
        }
        fn flush(&self) -> Result<()> {
            self.db.flush()?;
            Ok(())
        }
        fn compact(&mut self) -> Result<()> {
            self.db.flush()?;
            self.db.compact_range(None::<&[u8]>, None::<&[u8]>);
            Ok(())
        }
        fn busy(&self) -> bool {
            [
                "rocksdb.num-running-compactions",
                "rocksdb.num-running-flushes",
                "rocksdb.compaction-pending",
            ]
            .iter()
            .any(|&p| matches!(self.db.property_int_value(p), Ok(Some(n)) if n > 0))
        }
    }
}

fn engines() -> Vec<&'static str> {
    let mut v = vec!["fjall"];
    if cfg!(feature = "redb") {
        v.push("redb");
    }
    if cfg!(feature = "rocksdb") {
        v.push("rocksdb");
    }
    v
}

fn open(engine: &str, dir: &Path, budget: u64) -> Result<Box<dyn Kv>> {
    Ok(match engine {
        "fjall" => Box::new(Fjall::open(dir, budget)?),
        #[cfg(feature = "redb")]
        "redb" => Box::new(redb_kv::Redb::open(dir, budget)?),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Box::new(rocks_kv::Rocks::open(dir, budget)?),
        other => bail!("engine {other} is not built in (features redb, rocksdb)"),
    })
}

// ---- the workload ------------------------------------------------------------------

/// xorshift64*: reproducible choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const VALUE: usize = 1024;

fn value(rng: &mut Rng, id: u64, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(VALUE);
    while v.len() < VALUE / 2 {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    let text = format!("{{\"_id\": {id}, \"seq\": {seq}, \"pad\": \"");
    while v.len() < VALUE {
        v.extend_from_slice(text.as_bytes());
    }
    v.truncate(VALUE);
    v
}

/// The root incarnation, its big and small collections, and the chain.
const ROOT: u64 = 1;
const BIG: u32 = 1;
const SMALL: u32 = 2;
const SMALL_DOCS: u64 = 10_000;
const PER_COMMIT: usize = 100;
/// Commits (of `PER_COMMIT` versions) written before the crash test's kill.
const CRASH_COMMITS: u64 = 3_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Params {
    keys: u64,
    budget: u64,
    reads: u64,
}

/// A branch of the chain: reads its own versions, then its parent's up to
/// the fork seq. `levels[0]` is the branch itself (bound = the read seq).
struct Chain {
    /// `(incarnation, fork seq in it)`, child first; the root last.
    levels: Vec<(u64, u64)>,
}

impl Chain {
    /// The levels to read for a read at `seq` of the branch: each level with
    /// the newest seq it may show.
    fn bounds(&self, seq: u64) -> Vec<(u64, u64)> {
        let mut out = vec![(self.levels[0].0, seq)];
        for w in self.levels.windows(2) {
            // `w[0]` forked from `w[1]` at `w[0].1`.
            out.push((w[1].0, w[0].1));
        }
        out
    }
}

/// The newest version of `doc` at or below `seq` through the chain's levels.
fn read_point(
    kv: &dyn Kv,
    levels: &[(u64, u64)],
    coll: u32,
    doc: &[u8],
) -> Result<Option<Vec<u8>>> {
    for &(inc, bound) in levels {
        let from = version_key(inc, coll, doc, bound);
        let mut p = prefix(inc, coll);
        p.extend_from_slice(doc);
        if let Some((_, v)) = kv.seek(&from, &prefix_end(&p))? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// A collection at `seq` through the levels: per document, the version of
/// the child-most level that has one at or below its bound. Returns the
/// number of documents and their bytes.
fn read_scan(kv: &dyn Kv, levels: &[(u64, u64)], coll: u32) -> Result<(u64, u64)> {
    // One ordered map per level (document key → value) merged child first.
    // A real store merges the level iterators lazily; collecting keeps the
    // benchmark simple and costs the same reads.
    let mut merged: std::collections::BTreeMap<Vec<u8>, usize> = Default::default();
    for &(inc, bound) in levels.iter().rev() {
        let p = prefix(inc, coll);
        let end = prefix_end(&p);
        let mut last_doc: Option<Vec<u8>> = None;
        kv.scan(&p, &end, &mut |k, v| {
            let doc = &k[p.len()..k.len() - 8];
            if last_doc.as_deref() == Some(doc) {
                return true; // an older version of a document already taken
            }
            if seq_of(k) <= bound {
                last_doc = Some(doc.to_vec());
                merged.insert(doc.to_vec(), v.len());
            }
            true
        })?;
    }
    Ok((
        merged.len() as u64,
        merged.values().map(|&n| n as u64).sum(),
    ))
}

#[derive(Default, Debug, Serialize, Deserialize)]
struct RunResult {
    engine: String,
    versions: u64,
    logical_bytes: u64,
    load_seconds: f64,
    written_bytes: u64,
    disk_bytes: u64,
    rss_after_load: u64,
    /// Waiting for the load's background flushes and compactions.
    settle_seconds: f64,
    /// name → (p50 µs, p99 µs, reads/s)
    reads: Vec<(String, f64, f64, f64)>,
    /// name → (docs, ms per scan)
    scans: Vec<(String, u64, f64)>,
    retention_deleted: u64,
    retention_seconds: f64,
    disk_before_retention: u64,
    disk_after_retention: u64,
    compact_seconds: f64,
    rss_end: u64,
    rss_peak: u64,
}

fn proc_io_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("write_bytes:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => n += dir_bytes(&p),
                // Allocated blocks, not the apparent length (sparse files).
                Ok(m) => n += std::os::unix::fs::MetadataExt::blocks(&m) * 512,
                Err(_) => {}
            }
        }
    }
    n
}

fn timed_reads(n: u64, mut f: impl FnMut(u64) -> Result<bool>) -> Result<(f64, f64, f64)> {
    // A warm-up pass first, so that no row pays for the cache the one
    // before it left cold.
    for i in 0..n / 2 {
        f(i)?;
    }
    let mut lat = Vec::with_capacity(n as usize);
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        if !f(i)? {
            bail!("read {i} found nothing");
        }
        lat.push(t.elapsed());
    }
    let total = t0.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    Ok((pct(0.5), pct(0.99), n as f64 / total))
}

/// The whole workload on one engine (a child process).
fn child_run(engine: &str, dir: &Path, p: &Params) -> Result<RunResult> {
    let mut kv = open(engine, dir, p.budget)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut r = RunResult {
        engine: engine.to_string(),
        ..RunResult::default()
    };
    let io0 = proc_io_write_bytes();
    let t0 = Instant::now();
    let mut seq = 0u64;
    let commit = |kv: &dyn Kv,
                  rng: &mut Rng,
                  r: &mut RunResult,
                  inc: u64,
                  seq: &mut u64,
                  docs: &mut dyn Iterator<Item = (u32, u64)>|
     -> Result<()> {
        *seq += 1;
        let mut puts = Vec::with_capacity(PER_COMMIT + 1);
        for (coll, id) in docs {
            let k = version_key(inc, coll, &doc_key(id), *seq);
            let v = value(rng, id, *seq);
            r.logical_bytes += (k.len() + v.len()) as u64;
            r.versions += 1;
            puts.push((k, v));
        }
        let mut marker = META_APPLIED.to_vec();
        marker.extend_from_slice(&inc.to_be_bytes());
        puts.push((marker, seq.to_be_bytes().to_vec()));
        kv.write(&puts, &[])
    };
    // The root: the small collection (inserts, then three rewrites), then
    // the big one's inserts, then random updates until `keys` versions.
    let big_docs = (p.keys / 4).max(PER_COMMIT as u64);
    for round in 0..4 {
        let _ = round;
        for chunk in (0..SMALL_DOCS).collect::<Vec<_>>().chunks(PER_COMMIT) {
            commit(
                &*kv,
                &mut rng,
                &mut r,
                ROOT,
                &mut seq,
                &mut chunk.iter().map(|&i| (SMALL, i)),
            )?;
        }
    }
    let small_end = seq;
    for chunk in (0..big_docs).collect::<Vec<_>>().chunks(PER_COMMIT) {
        commit(
            &*kv,
            &mut rng,
            &mut r,
            ROOT,
            &mut seq,
            &mut chunk.iter().map(|&i| (BIG, i)),
        )?;
    }
    while r.versions < p.keys {
        let ids: Vec<u64> = (0..PER_COMMIT).map(|_| rng.below(big_docs)).collect();
        commit(
            &*kv,
            &mut rng,
            &mut r,
            ROOT,
            &mut seq,
            &mut ids.iter().map(|&i| (BIG, i)),
        )?;
        if seq.is_multiple_of(1000) {
            eprintln!(
                "    {engine}: {} versions, {:.0} s",
                r.versions,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let root_head = seq;
    // The chain: incarnations 2..=11, each forked from the previous one's
    // head, each rewriting 1 % of the big collection's documents.
    let mut levels = vec![(ROOT, root_head)];
    for inc in 2..=11u64 {
        let fork = levels.last().map_or(0, |l| l.1);
        let mut s = fork;
        for _ in 0..(big_docs / 100 / PER_COMMIT as u64).max(1) {
            let ids: Vec<u64> = (0..PER_COMMIT).map(|_| rng.below(big_docs)).collect();
            commit(
                &*kv,
                &mut rng,
                &mut r,
                inc,
                &mut s,
                &mut ids.iter().map(|&i| (BIG, i)),
            )?;
        }
        levels.push((inc, s));
    }
    kv.flush()?;
    r.load_seconds = t0.elapsed().as_secs_f64();
    r.written_bytes = proc_io_write_bytes() - io0;
    r.disk_bytes = dir_bytes(dir);
    r.rss_after_load = status_kb("VmRSS:");
    r.settle_seconds = settle(&*kv);
    eprintln!(
        "    {engine}: loaded {} versions in {:.1} s",
        r.versions, r.load_seconds
    );

    // Point reads: head and a random past seq of the root.
    let root = Chain {
        levels: vec![(ROOT, 0)],
    };
    let mut rr = Rng(7);
    let (a, b, c) = timed_reads(p.reads, |_| {
        let id = rr.below(big_docs);
        Ok(read_point(&*kv, &root.bounds(root_head), BIG, &doc_key(id))?.is_some())
    })?;
    r.reads.push(("point, head (depth 0)".into(), a, b, c));
    let (a, b, c) = timed_reads(p.reads, |_| {
        let id = rr.below(big_docs);
        // A past seq after the document's insert (the inserts end at
        // `small_end + big_docs / PER_COMMIT`).
        let first = small_end + id / PER_COMMIT as u64 + 1;
        let s = first + rr.below(root_head - first + 1);
        Ok(read_point(&*kv, &root.bounds(s), BIG, &doc_key(id))?.is_some())
    })?;
    r.reads
        .push(("point, random past seq (depth 0)".into(), a, b, c));
    // Through chains: the branch at depth 3 and at depth 10 (its own
    // versions, then each ancestor's up to the fork seq).
    for depth in [3usize, 10] {
        let chain = Chain {
            levels: levels[..=depth].iter().rev().copied().collect(),
        };
        let head = chain.levels[0].1;
        let (a, b, c) = timed_reads(p.reads, |_| {
            let id = rr.below(big_docs);
            Ok(read_point(&*kv, &chain.bounds(head), BIG, &doc_key(id))?.is_some())
        })?;
        r.reads
            .push((format!("point, head (depth {depth})"), a, b, c));
    }
    // Scans of the small collection (10,000 documents, 4 versions each).
    let scan = |kv: &dyn Kv, levels: &[(u64, u64)]| -> Result<(u64, f64)> {
        let reps = 5;
        read_scan(kv, levels, SMALL)?; // warm-up
        let t = Instant::now();
        let mut n = 0;
        for _ in 0..reps {
            n = read_scan(kv, levels, SMALL)?.0;
        }
        Ok((n, t.elapsed().as_secs_f64() * 1e3 / reps as f64))
    };
    let (n, ms) = scan(&*kv, &root.bounds(root_head))?;
    r.scans
        .push(("collection scan, head (depth 0)".into(), n, ms));
    let (n, ms) = scan(&*kv, &root.bounds(small_end / 2))?;
    r.scans
        .push(("collection scan, past seq (depth 0)".into(), n, ms));
    for depth in [3usize, 10] {
        let chain = Chain {
            levels: levels[..=depth].iter().rev().copied().collect(),
        };
        let (n, ms) = scan(&*kv, &chain.bounds(chain.levels[0].1))?;
        r.scans
            .push((format!("collection scan, head (depth {depth})"), n, ms));
    }

    // Retention: drop the root's versions that no read at or above the
    // horizon can see (for each document, all but the newest at or below it).
    let horizon = small_end + (root_head - small_end) * 3 / 4;
    r.disk_before_retention = dir_bytes(dir);
    let t = Instant::now();
    for coll in [SMALL, BIG] {
        let p0 = prefix(ROOT, coll);
        let end = prefix_end(&p0);
        let mut doomed = Vec::new();
        let mut last_doc: Vec<u8> = Vec::new();
        let mut kept_at_horizon = false;
        kv.scan(&p0, &end, &mut |k, _| {
            let doc = &k[p0.len()..k.len() - 8];
            if doc != last_doc.as_slice() {
                last_doc = doc.to_vec();
                kept_at_horizon = false;
            }
            if seq_of(k) <= horizon {
                if kept_at_horizon {
                    doomed.push(k.to_vec());
                } else {
                    kept_at_horizon = true;
                }
            }
            true
        })?;
        for chunk in doomed.chunks(10_000) {
            kv.write(&[], chunk)?;
        }
        r.retention_deleted += doomed.len() as u64;
    }
    r.retention_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    kv.compact()?;
    settle(&*kv);
    r.compact_seconds = t.elapsed().as_secs_f64();
    r.disk_after_retention = dir_bytes(dir);
    // Reads still answer after retention.
    let id = rr.below(big_docs);
    if read_point(&*kv, &root.bounds(root_head), BIG, &doc_key(id))?.is_none() {
        bail!("retention removed a live version");
    }
    r.rss_end = status_kb("VmRSS:");
    r.rss_peak = status_kb("VmHWM:");
    Ok(r)
}

/// Writes commits until killed, printing each applied seq once its batch
/// returned (a child process; the parent kills it with SIGKILL).
fn child_crash(engine: &str, dir: &Path, p: &Params) -> Result<()> {
    let kv = open(engine, dir, p.budget)?;
    let mut rng = Rng(3);
    let out = std::io::stdout();
    for seq in 1.. {
        let mut puts = Vec::with_capacity(PER_COMMIT + 1);
        for i in 0..PER_COMMIT as u64 {
            let id = seq * PER_COMMIT as u64 + i;
            puts.push((
                version_key(ROOT, BIG, &doc_key(id), seq),
                value(&mut rng, id, seq),
            ));
        }
        let mut marker = META_APPLIED.to_vec();
        marker.extend_from_slice(&ROOT.to_be_bytes());
        puts.push((marker, seq.to_be_bytes().to_vec()));
        kv.write(&puts, &[])?;
        let mut o = out.lock();
        writeln!(o, "{seq}")?;
        o.flush()?;
    }
    Ok(())
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ReopenResult {
    open_ms: f64,
    applied: u64,
    /// The applied commit's versions are all there and the next one's none.
    consistent: bool,
}

fn child_reopen(engine: &str, dir: &Path, p: &Params) -> Result<ReopenResult> {
    let t = Instant::now();
    let kv = open(engine, dir, p.budget)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut marker = META_APPLIED.to_vec();
    marker.extend_from_slice(&ROOT.to_be_bytes());
    let applied = match kv.get(&marker)? {
        Some(v) if v.len() == 8 => u64::from_be_bytes(v.as_slice().try_into()?),
        _ => 0,
    };
    let has = |seq: u64, i: u64| -> Result<bool> {
        let id = seq * PER_COMMIT as u64 + i;
        Ok(kv
            .get(&version_key(ROOT, BIG, &doc_key(id), seq))?
            .is_some())
    };
    let mut consistent = true;
    for i in 0..PER_COMMIT as u64 {
        if applied > 0 && !has(applied, i)? {
            consistent = false;
        }
        if has(applied + 1, i)? {
            consistent = false;
        }
    }
    Ok(ReopenResult {
        open_ms,
        applied,
        consistent,
    })
}

// ---- the parent ------------------------------------------------------------------

struct Crash {
    acknowledged: u64,
    reopen: ReopenResult,
    log_bytes: u64,
}

fn spawn_child(mode: &str, engine: &str, dir: &Path, p: &Params) -> Result<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args([
        "--child",
        mode,
        "--engine",
        engine,
        "--dir",
        &dir.to_string_lossy(),
        "--params",
        &serde_json::to_string(p)?,
    ]);
    Ok(c)
}

fn run_child<T: for<'de> Deserialize<'de>>(
    mode: &str,
    engine: &str,
    dir: &Path,
    p: &Params,
) -> Result<T> {
    let out = spawn_child(mode, engine, dir, p)?
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("{engine} {mode} failed: {}", out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    let line = text.lines().last().context("no result line")?;
    Ok(serde_json::from_str(line)?)
}

fn crash_test(engine: &str, dir: &Path, p: &Params) -> Result<Crash> {
    let mut child = spawn_child("crash", engine, dir, p)?
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let t = Instant::now();
    let mut acknowledged = 0;
    // Kill it mid-stream after the same number of commits for every engine
    // (or 60 s).
    while acknowledged < CRASH_COMMITS && t.elapsed() < Duration::from_secs(60) {
        match lines.next() {
            Some(l) => acknowledged = l?.trim().parse()?,
            None => bail!("{engine} crash writer ended early"),
        }
    }
    // `Child::kill` is SIGKILL on Unix: kill -9, no chance to flush.
    child.kill()?;
    // Lines already printed before the kill also count as acknowledged.
    for l in lines.map_while(|l| l.ok()) {
        if let Ok(n) = l.trim().parse() {
            acknowledged = n;
        }
    }
    let _ = child.wait();
    let log_bytes = dir_bytes(dir);
    let reopen: ReopenResult = run_child("reopen", engine, dir, p)?;
    Ok(Crash {
        acknowledged,
        reopen,
        log_bytes,
    })
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut p = Params {
        keys: 1_000_000,
        budget: 64 << 20,
        reads: 20_000,
    };
    let (mut child, mut engine, mut dir) = (None, None, None::<PathBuf>);
    while let Some(a) = args.next() {
        let mut v = || args.next().context("missing value");
        match a.as_str() {
            "--keys" => p.keys = v()?.parse()?,
            "--budget-mib" => p.budget = v()?.parse::<u64>()? << 20,
            "--reads" => p.reads = v()?.parse()?,
            "--dir" => dir = Some(PathBuf::from(v()?)),
            "--child" => child = Some(v()?),
            "--engine" => engine = Some(v()?),
            "--params" => p = serde_json::from_str(&v()?)?,
            other => bail!("unknown argument {other}"),
        }
    }
    if let Some(mode) = child {
        let engine = engine.context("--engine")?;
        let dir = dir.context("--dir")?;
        match mode.as_str() {
            "run" => println!("{}", serde_json::to_string(&child_run(&engine, &dir, &p)?)?),
            "crash" => child_crash(&engine, &dir, &p)?,
            "reopen" => println!(
                "{}",
                serde_json::to_string(&child_reopen(&engine, &dir, &p)?)?
            ),
            other => bail!("unknown child mode {other}"),
        }
        return Ok(());
    }

    let scratch = match &dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let mut runs = Vec::new();
    let mut crashes = Vec::new();
    for e in engines() {
        eprintln!("{e}: workload ({} versions)", p.keys);
        let d = scratch.path().join(format!("{e}-run"));
        runs.push(run_child::<RunResult>("run", e, &d, &p)?);
        std::fs::remove_dir_all(&d).ok();
        eprintln!("{e}: kill -9 while writing, then reopen");
        let d = scratch.path().join(format!("{e}-crash"));
        crashes.push((e, crash_test(e, &d, &p)?));
        std::fs::remove_dir_all(&d).ok();
    }
    print!("{}", report(&p, &runs, &crashes));
    Ok(())
}

fn report(p: &Params, runs: &[RunResult], crashes: &[(&str, Crash)]) -> String {
    let mut o = String::new();
    let names: Vec<&str> = runs.iter().map(|r| r.engine.as_str()).collect();
    let header = |o: &mut String, first: &str| {
        o.push_str(&format!("| {first} | {} |\n", names.join(" | ")));
        o.push_str(&format!("| --- |{}\n", " ---: |".repeat(names.len())));
    };
    let row = |o: &mut String, what: &str, cells: Vec<String>| {
        o.push_str(&format!("| {what} | {} |\n", cells.join(" | ")));
    };
    let base = &runs[0];
    let ratio = |x: f64, b: f64| {
        if b > 0.0 {
            format!(" ({:.2}×)", x / b)
        } else {
            String::new()
        }
    };
    header(&mut o, "measure (ratio: ÷ first column)");
    row(
        &mut o,
        "load: versions written (1 KB, 100 per batch, no fsync)",
        runs.iter().map(|r| r.versions.to_string()).collect(),
    );
    row(
        &mut o,
        "load: versions/s",
        runs.iter()
            .map(|r| {
                let v = r.versions as f64 / r.load_seconds;
                format!(
                    "{v:.0}{}",
                    ratio(v, base.versions as f64 / base.load_seconds)
                )
            })
            .collect(),
    );
    row(
        &mut o,
        "write amplification (bytes the process wrote ÷ logical bytes)",
        runs.iter()
            .map(|r| format!("{:.2}", r.written_bytes as f64 / r.logical_bytes as f64))
            .collect(),
    );
    row(
        &mut o,
        "space amplification after load (disk ÷ logical)",
        runs.iter()
            .map(|r| {
                format!(
                    "{:.2} ({})",
                    r.disk_bytes as f64 / r.logical_bytes as f64,
                    mb(r.disk_bytes)
                )
            })
            .collect(),
    );
    row(
        &mut o,
        "background work after the load (flushes, compactions), s",
        runs.iter()
            .map(|r| format!("{:.1}", r.settle_seconds))
            .collect(),
    );
    for (i, (name, ..)) in base.reads.iter().enumerate() {
        row(
            &mut o,
            &format!("{name}: p50 / p99 µs, reads/s"),
            runs.iter()
                .map(|r| {
                    let (_, a, b, c) = &r.reads[i];
                    format!("{a:.1} / {b:.1}, {c:.0}{}", ratio(*c, base.reads[i].3))
                })
                .collect(),
        );
    }
    for (i, (name, ..)) in base.scans.iter().enumerate() {
        row(
            &mut o,
            &format!("{name}: ms per 10,000 documents"),
            runs.iter()
                .map(|r| {
                    let (_, n, ms) = &r.scans[i];
                    format!("{ms:.1} ({n} docs){}", ratio(*ms, base.scans[i].2))
                })
                .collect(),
        );
    }
    for r in runs {
        let _ = r;
    }
    row(
        &mut o,
        "depth 10 ÷ depth 0, point reads/s (same engine)",
        runs.iter()
            .map(|r| format!("{:.2}", r.reads[3].3 / r.reads[0].3))
            .collect(),
    );
    row(
        &mut o,
        "retention: versions deleted, seconds (scan + deletes)",
        runs.iter()
            .map(|r| format!("{}, {:.1} s", r.retention_deleted, r.retention_seconds))
            .collect(),
    );
    row(
        &mut o,
        "retention: disk before → after full compaction (compaction time)",
        runs.iter()
            .map(|r| {
                format!(
                    "{} → {} ({:.1} s)",
                    mb(r.disk_before_retention),
                    mb(r.disk_after_retention),
                    r.compact_seconds
                )
            })
            .collect(),
    );
    row(
        &mut o,
        &format!("RSS after load (budget {} MiB)", p.budget >> 20),
        runs.iter().map(|r| mb(r.rss_after_load)).collect(),
    );
    row(
        &mut o,
        "RSS at the end / peak RSS",
        runs.iter()
            .map(|r| format!("{} / {}", mb(r.rss_end), mb(r.rss_peak)))
            .collect(),
    );
    row(
        &mut o,
        "kill -9 while writing: last acknowledged commit → applied seq after reopen",
        crashes
            .iter()
            .map(|(_, c)| {
                format!(
                    "{} → {}{}",
                    c.acknowledged,
                    c.reopen.applied,
                    if c.reopen.consistent {
                        ""
                    } else {
                        " (**inconsistent**)"
                    }
                )
            })
            .collect(),
    );
    row(
        &mut o,
        "reopen after kill -9: ms (store size)",
        crashes
            .iter()
            .map(|(_, c)| format!("{:.0} ({})", c.reopen.open_ms, mb(c.log_bytes)))
            .collect(),
    );
    o
}
