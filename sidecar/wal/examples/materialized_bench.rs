//! Figures of the materialized store (`bench/materialized` runs it in release
//! mode; never a test): apply throughput, point reads at the head, at a past
//! seq and through 0/1/5/10 fork levels (own-key filters off and on, side by
//! side), collection scans, and RSS against the cache budget. Prints a
//! markdown table.
//!
//! `materialized_bench --dir D [--docs N] [--budget-mib M]`

use argon_wal::materialized::{Materialized, MaterializedOptions, View, ViewBase};
use argon_wal::{BranchId, Commit, CommitTime, DocOp, LoggedOp, Namespace, Seq, rawdoc};
use bson::{Bson, doc};
use std::collections::HashMap;
use std::time::Instant;

/// A small deterministic generator (no dependency, same numbers every run).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn rss_mib(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn document(id: i64, version: i64) -> bson::RawDocumentBuf {
    let text = "lorem ipsum dolor sit amet ".repeat(19);
    let d = doc! {"_id": id, "v": version, "g": id % 100, "text": &text[..500], "bin": bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: (0..450).map(|i| ((id as u64).wrapping_mul(2654435761).wrapping_add(i) >> 3) as u8).collect(),
    }};
    rawdoc::encode(&d).expect("a small document encodes")
}

struct Chain {
    bases: HashMap<BranchId, ViewBase>,
    heads: HashMap<BranchId, u64>,
    project: u32,
}

impl Chain {
    fn view(&self, inc: BranchId, seq: u64) -> View {
        View::new(self.project, inc, Seq(seq), |b| self.bases.get(&b).copied())
            .expect("known chain")
    }

    fn commit(&mut self, store: &Materialized, inc: BranchId, ops: Vec<DocOp>) {
        let head = self.heads[&inc];
        let c = Commit {
            branch: inc,
            seq: Seq(head + 1),
            time: CommitTime(head as i64 + 1),
            actor: "bench".into(),
            ops: ops
                .into_iter()
                .map(|op| LoggedOp {
                    op,
                    pre_image: None,
                })
                .collect(),
            seal: None,
            retries: Vec::new(),
        };
        store.apply(&self.view(inc, head), &c).expect("apply");
        self.heads.insert(inc, head + 1);
    }
}

fn per_sec(n: u64, t: Instant) -> f64 {
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut docs, mut budget) = (None, 1_000_000i64, 64u64);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dir" => dir = Some(value),
            "--docs" => docs = value.parse()?,
            "--budget-mib" => budget = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let dir = dir.ok_or("--dir is required")?;
    let store = Materialized::open(&dir, MaterializedOptions::with_budget(budget << 20))?;
    let project = store.project("bench")?.0;
    let root = BranchId(1);
    let mut chain = Chain {
        bases: HashMap::from([(root, ViewBase::Root)]),
        heads: HashMap::from([(root, 0)]),
        project,
    };
    let ns = Namespace::new("d", "big");
    let small = Namespace::new("d", "small");
    let put = |ns: &Namespace, id: i64, v: i64| DocOp::Put {
        ns: ns.clone(),
        id: Bson::Int64(id),
        doc: document(id, v),
    };
    let mut rows: Vec<(String, String)> = Vec::new();

    // Load: commits of 100 documents.
    let t = Instant::now();
    for start in (0..docs).step_by(100) {
        let ops = (start..(start + 100).min(docs))
            .map(|id| put(&ns, id, 0))
            .collect();
        chain.commit(&store, root, ops);
    }
    let load = per_sec(docs as u64, t);
    rows.push((
        "apply, commits of 100 new 1 KB documents (documents/s)".into(),
        format!("{load:.0}"),
    ));
    let loaded_seq = chain.heads[&root];
    for id in 0..10_000 {
        if id % 100 == 0 {
            chain.commit(
                &store,
                root,
                (id..id + 100).map(|i| put(&small, i, 0)).collect(),
            );
        }
    }
    // Commits of 1 document (overwrites at random ids).
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let n1 = 20_000u64;
    let t = Instant::now();
    for v in 0..n1 {
        let id = (rng.next() % docs as u64) as i64;
        chain.commit(&store, root, vec![put(&ns, id, v as i64 + 1)]);
    }
    rows.push((
        "apply, commits of 1 overwritten document (commits/s)".into(),
        format!("{:.0}", per_sec(n1, t)),
    ));
    let rss_load = rss_mib("VmRSS");

    // A chain of forks: each level forks its parent's head and overwrites
    // 1,000 random documents of the big collection (1 commit of 100 × 10).
    let mut levels = vec![root];
    for depth in 1..=10u64 {
        let parent = *levels.last().expect("root");
        let child = BranchId(depth * 4 + 1);
        chain.bases.insert(
            child,
            ViewBase::Fork {
                parent,
                seq: Seq(chain.heads[&parent]),
            },
        );
        chain.heads.insert(child, 0);
        for _ in 0..10 {
            let ops = (0..100)
                .map(|_| put(&ns, (rng.next() % docs as u64) as i64, depth as i64))
                .collect();
            chain.commit(&store, child, ops);
        }
        levels.push(child);
    }

    let reads = 50_000u64;
    let read_at = |view: &View, rng: &mut Rng| -> f64 {
        let coll = store
            .collection(view, &ns)
            .expect("read")
            .expect("collection");
        let t = Instant::now();
        let mut found = 0u64;
        for _ in 0..reads {
            let id = (rng.next() % docs as u64) as i64;
            found += u64::from(coll.get(&Bson::Int64(id)).expect("read").is_some());
        }
        assert_eq!(found, reads, "every document is there");
        per_sec(reads, t)
    };
    // Warm the cache once over the head, then measure each read with the
    // own-key filters off (every level seeks, as before they existed) and
    // on, side by side: ratios are within one mode. Each figure is the best
    // of three rounds, off and on alternating (the machine is shared).
    let both = |view: &View, rng: &mut Rng| -> [f64; 2] {
        let mut best = [0f64; 2];
        for _ in 0..3 {
            for (i, on) in [false, true].into_iter().enumerate() {
                store.set_own_key_filters(on);
                best[i] = best[i].max(read_at(view, rng));
            }
        }
        store.set_own_key_filters(true);
        best
    };
    let head = chain.view(root, chain.heads[&root]);
    read_at(&head, &mut rng);
    let base = both(&head, &mut rng);
    rows.push((
        "point read at the head, depth 0 (reads/s; filters off / on)".into(),
        format!("{:.0} / {:.0}", base[0], base[1]),
    ));
    let cells = |r: [f64; 2]| -> String {
        format!(
            "{:.0} ({:.2}) / {:.0} ({:.2})",
            r[0],
            r[0] / base[0],
            r[1],
            r[1] / base[1]
        )
    };
    let past = both(&chain.view(root, loaded_seq), &mut rng);
    rows.push((
        "point read at a past seq (after the load), depth 0 (reads/s; ÷ head; filters off / on)"
            .into(),
        cells(past),
    ));
    for depth in [1usize, 5, 10] {
        let inc = levels[depth];
        let r = both(&chain.view(inc, chain.heads[&inc]), &mut rng);
        rows.push((
            format!("point read at depth {depth} (reads/s; ÷ depth 0; filters off / on)"),
            cells(r),
        ));
    }
    let f = store.own_key_filters();
    rows.push((
        "own-key filters: incarnations / keys noted / KiB (cap KiB)".into(),
        format!(
            "{} / {} / {:.0} ({:.0})",
            f.loaded,
            f.keys,
            f.bytes as f64 / 1024.0,
            f.cap as f64 / 1024.0
        ),
    ));
    // Collection scans of the 10,000-document collection.
    for (label, view) in [
        ("head", chain.view(root, chain.heads[&root])),
        ("depth 10", chain.view(levels[10], chain.heads[&levels[10]])),
    ] {
        let coll = store.collection(&view, &small)?.ok_or("small")?;
        let t = Instant::now();
        let n = coll
            .scan()
            .map(|r| r.map(|_| 1u64))
            .sum::<Result<u64, _>>()?;
        assert_eq!(n, 10_000);
        rows.push((
            format!("scan of 10,000 documents at {label} (ms)"),
            format!("{:.1}", t.elapsed().as_secs_f64() * 1000.0),
        ));
    }
    // A scan of the big collection (first 100,000 documents).
    let coll = store.collection(&head, &ns)?.ok_or("big")?;
    let t = Instant::now();
    let n = coll.scan().take(100_000).count() as u64;
    rows.push((
        "scan of the big collection at the head (documents/s)".into(),
        format!("{:.0}", per_sec(n, t)),
    ));
    let t = Instant::now();
    while store.busy() && t.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    println!("| measure ({docs} documents of ~1 KB, cache budget {budget} MiB) | value |");
    println!("| --- | ---: |");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    println!(
        "| RSS after the load / at the end / peak (MiB) | {rss_load:.0} / {:.0} / {:.0} |",
        rss_mib("VmRSS"),
        rss_mib("VmHWM")
    );
    println!(
        "| store on disk after the run (MiB) | {:.0} |",
        store.disk_space() as f64 / (1 << 20) as f64
    );
    Ok(())
}
