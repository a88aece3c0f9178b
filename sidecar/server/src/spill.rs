//! Blocking stages within a memory budget: MongoDB's 100 MiB per blocking
//! stage ([`limits::MAX_BLOCKING_STAGE_BYTES`], `serve
//! --max-blocking-sort-bytes`), for a sorted `find` and for the pipeline's
//! `$sort` and `$group`.
//!
//! A stage holds what it builds until its budget is spent; past it, it
//! writes what it holds as a sorted *run* to an anonymous temporary file
//! (deleted when closed, whatever happens to the process) and starts again.
//! Its result is its runs merged, read back one document at a time, so a
//! stage of any size holds at most one budget plus one document per open
//! run in memory.
//!
//! This module owns the rule and the mechanics:
//! - [`StageBudget`]: past the budget a stage spills; with `allowDiskUse:
//!   false` it fails with `QueryExceededMemoryLimitNoDiskUseAllowed` (292)
//!   instead. Spilling is on by default (MongoDB 6.0+'s
//!   `allowDiskUseByDefault`).
//! - run files and their merge in an [`Order`], which may *fold* equal
//!   documents into one (`$group`'s partial groups) or keep them all (a
//!   sort);
//! - [`Runs`]: spilled runs, merged in tiers of [`FAN_IN`] as they come
//!   (the newest `FAN_IN` runs of one tier become one run of the next), so
//!   a stage of N budgets keeps fewer than `FAN_IN` runs per tier and
//!   `log_FAN_IN(N)` tiers open — a few dozen files, never one per budget —
//!   and rewrites each byte once per tier;
//! - [`ExternalSorter`]: a sort, or a top-k sort when a limit follows. It
//!   holds each document as its BSON bytes and its sort key (computed once,
//!   so n documents cost n path lookups, not n log n), so what it is
//!   charged is what it takes; a parsed document would take several times
//!   its BSON size.
//!
//! Invariant: merges only ever join *adjacent* runs, and a merge takes the
//! earlier run first among equal documents. Runs hold the input in order,
//! so "earlier run" means "earlier input": the sort stays stable and a fold
//! sees partial groups in input order (`$first`, `$last`, `$push`).

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};
use crate::query::SortSpec;

/// Runs merged into one at a time (and the most a final merge reads at
/// once).
pub const FAN_IN: usize = 16;

/// A top-k sort holds up to this many times `k` documents before it drops
/// all but the best `k` (at least [`TOP_K_SLACK_MIN`]): sorting `2k` to keep
/// `k` costs O(log k) per document.
const TOP_K_SLACK: usize = 2;
const TOP_K_SLACK_MIN: usize = 64;

/// The blocking stages, for their messages (MongoDB's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    Sort,
    Group,
    Facet,
}

/// What one blocking stage may hold in memory, and whether it may spill
/// past that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageBudget {
    pub bytes: usize,
    pub allow_disk: bool,
}

impl StageBudget {
    pub fn new(bytes: usize, allow_disk: bool) -> StageBudget {
        StageBudget { bytes, allow_disk }
    }

    /// A stage holds `held` bytes: `false` while that is within the budget,
    /// `true` when it must spill now, 292 when the request forbids disk use.
    pub fn must_spill(&self, held: usize, stage: Blocking) -> Result<bool> {
        if held <= self.bytes {
            return Ok(false);
        }
        if self.allow_disk {
            return Ok(true);
        }
        let message = match stage {
            Blocking::Sort => format!(
                "Sort exceeded memory limit of {} bytes, but did not opt in to external sorting.",
                self.bytes
            ),
            Blocking::Group => {
                "Exceeded memory limit for $group, but didn't allow external sort. Pass allowDiskUse:true to opt in.".to_owned()
            }
            Blocking::Facet => format!(
                "$facet's input exceeded the memory limit of {} bytes, but did not opt in to spilling it. Pass allowDiskUse:true to opt in.",
                self.bytes
            ),
        };
        Err(CommandError::new(
            ErrorCode::QueryExceededMemoryLimitNoDiskUseAllowed,
            message,
        ))
    }
}

// ---- runs ------------------------------------------------------------------------

/// The order of a stage's runs, by a key computed once per document.
pub trait Order: Clone {
    type Key;

    fn key(&self, d: &Document) -> Self::Key;

    fn cmp(&self, a: &Self::Key, b: &Self::Key) -> Ordering;

    /// Whether documents of equal keys fold into one.
    fn folds(&self) -> bool {
        false
    }

    /// Folds `later` (of the same key as `into`, from a later run) into
    /// `into`; the key stays the same.
    fn fold(&self, _into: &mut Document, _later: Document) -> Result<()> {
        Ok(())
    }
}

/// A run being written.
pub struct RunWriter {
    out: BufWriter<File>,
}

impl RunWriter {
    pub fn new() -> Result<RunWriter> {
        Ok(RunWriter {
            out: BufWriter::new(tempfile::tempfile().map_err(spill_error)?),
        })
    }

    pub fn push(&mut self, d: &Document) -> Result<()> {
        self.push_bytes(&encode(d)?)
    }

    /// A document already encoded as BSON.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(spill_error)
    }

    pub fn finish(self) -> Result<RunFile> {
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| spill_error(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(spill_error)?;
        Ok(RunFile(file))
    }
}

/// A written run, positioned at its start.
pub struct RunFile(File);

impl RunFile {
    /// A reader of the run from its start; the run stays, so it can be
    /// read again (`$facet` replays its input once per facet). Readers
    /// share the file's position: one at a time.
    pub fn reread(&self) -> Result<RunReader> {
        let mut file = self.0.try_clone().map_err(spill_error)?;
        file.seek(SeekFrom::Start(0)).map_err(spill_error)?;
        Ok(RunReader(BufReader::new(file)))
    }
}

/// Reads a run's documents in order (see [`RunFile::reread`]).
pub struct RunReader(BufReader<File>);

impl RunReader {
    pub fn next_doc(&mut self) -> Result<Option<Document>> {
        read_doc(&mut self.0)
    }
}

/// Spilled runs, in input order, merged in tiers as they arrive (see the
/// module doc).
#[derive(Default)]
pub struct Runs {
    /// (tier, run); tiers never increase from left to right.
    runs: Vec<(u32, RunFile)>,
}

impl Runs {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Adds the newest run; `limit` bounds what a merge needs to keep.
    pub fn push<O: Order>(&mut self, order: &O, run: RunFile, limit: Option<usize>) -> Result<()> {
        self.runs.push((0, run));
        loop {
            let n = self.runs.len();
            let Some(&(tier, _)) = self.runs.last() else {
                break;
            };
            if n < FAN_IN || self.runs[n - FAN_IN..].iter().any(|(t, _)| *t != tier) {
                break;
            }
            let merged = merge_to_run(order, self.runs.drain(n - FAN_IN..), limit)?;
            self.runs.push((tier + 1, merged));
        }
        Ok(())
    }

    /// All runs merged, read one document at a time (at most `limit`).
    pub fn merge<O: Order>(mut self, order: O, limit: Option<usize>) -> Result<Merge<O>> {
        // Merge the oldest (adjacent) runs until one merge reads them all.
        while self.runs.len() > FAN_IN {
            let merged = merge_to_run(&order, self.runs.drain(..FAN_IN), limit)?;
            self.runs.insert(0, (u32::MAX, merged));
        }
        Merge::open(order, self.runs.into_iter().map(|(_, f)| f), limit)
    }
}

fn merge_to_run<O: Order>(
    order: &O,
    runs: impl Iterator<Item = (u32, RunFile)>,
    limit: Option<usize>,
) -> Result<RunFile> {
    let mut merge = Merge::open(order.clone(), runs.map(|(_, f)| f), limit)?;
    let mut out = RunWriter::new()?;
    while let Some(d) = merge.next_doc()? {
        out.push(&d)?;
    }
    out.finish()
}

struct Run<K> {
    reader: BufReader<File>,
    head: Option<(K, Document)>,
}

impl<K> Run<K> {
    fn advance<O: Order<Key = K>>(&mut self, order: &O) -> Result<Option<(K, Document)>> {
        let next = read_doc(&mut self.reader)?.map(|d| (order.key(&d), d));
        Ok(std::mem::replace(&mut self.head, next))
    }
}

/// Runs merged: each step takes the smallest head, the earliest run's
/// among equals (and, when the order folds, every equal head after it).
/// Runs are few (at most [`FAN_IN`]), so a linear pick beats a heap.
pub struct Merge<O: Order> {
    order: O,
    runs: Vec<Run<O::Key>>,
    remaining: Option<usize>,
}

impl<O: Order> Merge<O> {
    fn open(order: O, files: impl Iterator<Item = RunFile>, limit: Option<usize>) -> Result<Self> {
        let mut runs = Vec::new();
        for RunFile(file) in files {
            let mut run = Run {
                reader: BufReader::new(file),
                head: None,
            };
            run.advance(&order)?;
            runs.push(run);
        }
        Ok(Merge {
            order,
            runs,
            remaining: limit,
        })
    }

    pub fn next_doc(&mut self) -> Result<Option<Document>> {
        if self.remaining == Some(0) {
            return Ok(None);
        }
        let mut best: Option<usize> = None;
        for (i, run) in self.runs.iter().enumerate() {
            let Some((head, _)) = &run.head else { continue };
            let better = match best.and_then(|b| self.runs[b].head.as_ref()) {
                Some((current, _)) => self.order.cmp(head, current).is_lt(),
                None => true,
            };
            if better {
                best = Some(i);
            }
        }
        let Some(i) = best else { return Ok(None) };
        let Some((key, mut doc)) = self.runs[i].advance(&self.order)? else {
            return Ok(None);
        };
        if self.order.folds() {
            // Runs before `i` have no head equal to `doc` (it was the
            // earliest smallest); a run holds each key once, but a `while`
            // costs nothing and holds without that.
            for j in i..self.runs.len() {
                while self.runs[j]
                    .head
                    .as_ref()
                    .is_some_and(|(h, _)| self.order.cmp(h, &key).is_eq())
                {
                    if let Some((_, later)) = self.runs[j].advance(&self.order)? {
                        self.order.fold(&mut doc, later)?;
                    }
                }
            }
        }
        if let Some(r) = &mut self.remaining {
            *r -= 1;
        }
        Ok(Some(doc))
    }
}

fn read_doc(r: &mut BufReader<File>) -> Result<Option<Document>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(spill_error(e)),
    }
    let n = i32::from_le_bytes(len);
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n >= 5)
        .ok_or_else(damaged)?;
    let mut buf = vec![0u8; n];
    buf[..4].copy_from_slice(&len);
    r.read_exact(&mut buf[4..]).map_err(spill_error)?;
    Document::from_reader(&buf[..]).map(Some).map_err(|e| {
        CommandError::new(
            ErrorCode::InternalError,
            format!("a spilled run is damaged: {e}"),
        )
    })
}

fn encode(d: &Document) -> Result<Vec<u8>> {
    d.to_vec()
        .map_err(|e| CommandError::bad_value(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<Document> {
    Document::from_reader(bytes).map_err(|e| {
        CommandError::new(
            ErrorCode::InternalError,
            format!("a held document is damaged: {e}"),
        )
    })
}

/// A run file that does not hold what this module wrote.
pub fn damaged() -> CommandError {
    CommandError::new(ErrorCode::InternalError, "a spilled run is damaged")
}

fn spill_error(e: std::io::Error) -> CommandError {
    CommandError::new(
        ErrorCode::InternalError,
        format!("cannot spill a blocking stage to a temporary file: {e}"),
    )
}

// ---- the sort --------------------------------------------------------------------

/// A sort's order: the sort specification's key, equal documents kept.
/// `stored`: each document is a wrapper holding its key already computed
/// under [`KEY_FIELD`] (see [`ExternalSorter::keyed`]).
#[derive(Clone)]
pub struct SortOrder {
    spec: SortSpec,
    stored: bool,
}

/// Where a keyed sort's wrappers hold their key.
pub const KEY_FIELD: &str = "k";

impl Order for SortOrder {
    type Key = Vec<Bson>;

    fn key(&self, d: &Document) -> Vec<Bson> {
        if self.stored {
            // The sorter wrote the wrapper; one without a key (impossible)
            // sorts first rather than failing the merge.
            return match d.get(KEY_FIELD) {
                Some(Bson::Array(k)) => k.clone(),
                _ => Vec::new(),
            };
        }
        self.spec.key(d)
    }

    fn cmp(&self, a: &Vec<Bson>, b: &Vec<Bson>) -> Ordering {
        self.spec.compare_keys(a, b)
    }
}

/// A document a sort holds: its sort key, computed once, and its BSON
/// bytes (what it is charged is what it takes: no parsed tree is held).
struct Held {
    key: Vec<Bson>,
    bson: Vec<u8>,
}

impl Held {
    /// Bytes charged: the BSON, the key's values and their slots.
    fn charge(&self) -> usize {
        HELD_OVERHEAD
            + self.bson.len()
            + self
                .key
                .iter()
                .map(|v| std::mem::size_of::<Bson>() + crate::limits::bson_size(v))
                .sum::<usize>()
    }
}

/// Bytes charged per held document beyond its BSON and key (vectors).
const HELD_OVERHEAD: usize = 64;

/// A blocking sort within a [`StageBudget`]. With a limit `k` (a `$sort`
/// followed by `$limit`, or a find's `limit`), it keeps only the best `k`
/// documents seen so far (MongoDB's top-k sort), so it spills only when
/// `k` documents themselves pass the budget.
pub struct ExternalSorter {
    order: SortOrder,
    budget: StageBudget,
    limit: Option<usize>,
    /// The current run, in input order (sorted only by a top-k compaction,
    /// which keeps earlier documents first among equals).
    run: Vec<Held>,
    run_bytes: usize,
    runs: Runs,
}

impl ExternalSorter {
    pub fn new(spec: SortSpec, budget: StageBudget) -> ExternalSorter {
        ExternalSorter {
            order: SortOrder {
                spec,
                stored: false,
            },
            budget,
            limit: None,
            run: Vec::new(),
            run_bytes: 0,
            runs: Runs::default(),
        }
    }

    /// A sorter of wrappers `{k: [key values], ...}` whose key was computed
    /// outside them (under `spec`'s order): a pipeline's `$sort`, which
    /// keeps each document's metadata beside it (`aggregate::ops`).
    pub fn keyed(spec: SortSpec, budget: StageBudget) -> ExternalSorter {
        let mut sorter = ExternalSorter::new(spec, budget);
        sorter.order.stored = true;
        sorter
    }

    /// Only the first `k` documents in order are wanted.
    pub fn with_limit(mut self, k: Option<usize>) -> ExternalSorter {
        self.limit = k;
        self
    }

    /// Adds a document.
    pub fn push(&mut self, doc: &Document) -> Result<()> {
        let held = Held {
            key: self.order.key(doc),
            bson: encode(doc)?,
        };
        self.run_bytes = self.run_bytes.saturating_add(held.charge());
        self.run.push(held);
        if let Some(k) = self.limit
            && self.run.len() >= k.saturating_mul(TOP_K_SLACK).max(TOP_K_SLACK_MIN)
        {
            self.compact(k);
        }
        if self.run_bytes > self.budget.bytes {
            if let Some(k) = self.limit
                && self.run.len() > k
            {
                self.compact(k);
            }
            if self.budget.must_spill(self.run_bytes, Blocking::Sort)? {
                self.spill()?;
            }
        }
        Ok(())
    }

    fn sort_run(&mut self) {
        let spec = &self.order.spec;
        if !spec.is_empty() {
            // Stable: among equals, earlier input stays first.
            self.run.sort_by(|a, b| spec.compare_keys(&a.key, &b.key));
        }
    }

    /// Keeps the best `k` of the current run.
    fn compact(&mut self, k: usize) {
        self.sort_run();
        self.run.truncate(k);
        self.run_bytes = self.run.iter().map(Held::charge).sum();
    }

    fn sorted_run(&mut self) -> Vec<Held> {
        self.sort_run();
        if let Some(k) = self.limit {
            self.run.truncate(k);
        }
        self.run_bytes = 0;
        std::mem::take(&mut self.run)
    }

    fn spill(&mut self) -> Result<()> {
        let run = self.sorted_run();
        let mut w = RunWriter::new()?;
        for held in &run {
            w.push_bytes(&held.bson)?;
        }
        drop(run);
        self.runs.push(&self.order, w.finish()?, self.limit)
    }

    /// The documents in order.
    pub fn finish(mut self) -> Result<Sorted> {
        if self.runs.is_empty() {
            let run = self.sorted_run();
            return Ok(Sorted::Memory(run.into_iter().map(|h| h.bson).collect()));
        }
        if !self.run.is_empty() {
            self.spill()?;
        }
        let runs = std::mem::take(&mut self.runs);
        Ok(Sorted::Merge(runs.merge(self.order, self.limit)?))
    }
}

/// A sorted result: BSON in memory (parsed as it is read), or runs on
/// disk being merged.
pub enum Sorted {
    Memory(VecDeque<Vec<u8>>),
    Merge(Merge<SortOrder>),
    /// Documents sorted inside a wrapper `{k: key, d: document}` (an order
    /// computed outside them: `query::geo::DistanceSorter`), given back
    /// unwrapped.
    Inner(Box<Sorted>),
}

impl Sorted {
    pub fn next_doc(&mut self) -> Result<Option<Document>> {
        match self {
            Sorted::Memory(docs) => docs.pop_front().map(|b| decode(&b)).transpose(),
            Sorted::Merge(m) => m.next_doc(),
            Sorted::Inner(s) => match s.next_doc()? {
                Some(mut w) => match w.remove("d") {
                    Some(Bson::Document(d)) => Ok(Some(d)),
                    _ => Err(damaged()),
                },
                None => Ok(None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn spec(d: Document) -> SortSpec {
        SortSpec::parse(&d).expect("a valid sort")
    }

    fn drain(mut s: Sorted) -> Vec<Document> {
        let mut out = Vec::new();
        while let Some(d) = s.next_doc().expect("the next document") {
            out.push(d);
        }
        out
    }

    fn input(n: i32) -> Vec<Document> {
        (0..n)
            .map(|i| doc! {"_id": i, "k": (i * 7919) % 13})
            .collect()
    }

    #[test]
    fn spills_and_merges_in_order_and_stably() {
        let mut sorter = ExternalSorter::new(spec(doc! {"k": 1}), StageBudget::new(200, true));
        let input = input(500);
        for d in &input {
            sorter.push(d).unwrap();
        }
        let out = drain(sorter.finish().unwrap());
        let mut expected = input;
        spec(doc! {"k": 1}).sort(&mut expected);
        assert_eq!(out, expected);
    }

    /// Thousands of runs are merged in tiers: few files open, same order.
    #[test]
    fn many_runs_merge_in_tiers() {
        let mut sorter = ExternalSorter::new(spec(doc! {"k": -1}), StageBudget::new(40, true));
        let input = input(3000);
        for d in &input {
            sorter.push(d).unwrap();
            assert!(sorter.runs.runs.len() <= 3 * FAN_IN);
        }
        let out = drain(sorter.finish().unwrap());
        let mut expected = input;
        spec(doc! {"k": -1}).sort(&mut expected);
        assert_eq!(out, expected);
    }

    /// A top-k sort gives the first k of the full sort, in memory while k
    /// documents fit and through runs when they do not.
    #[test]
    fn top_k_is_the_head_of_the_full_sort() {
        let input = input(1000);
        let mut expected = input.clone();
        spec(doc! {"k": 1}).sort(&mut expected);
        for (k, budget, allow) in [
            (1, 1 << 20, false),
            (10, 1 << 20, false),
            (300, 1 << 20, false),
            (300, 1000, true),
            (5, 100, true),
        ] {
            let mut sorter =
                ExternalSorter::new(spec(doc! {"k": 1}), StageBudget::new(budget, allow))
                    .with_limit(Some(k));
            for d in &input {
                sorter.push(d).unwrap();
            }
            assert!(sorter.run.len() <= (2 * k).max(TOP_K_SLACK_MIN));
            let out = drain(sorter.finish().unwrap());
            assert_eq!(out, expected[..k].to_vec(), "k = {k}, budget = {budget}");
        }
        // k documents past the budget without disk use: 292.
        let mut sorter = ExternalSorter::new(spec(doc! {"k": 1}), StageBudget::new(100, false))
            .with_limit(Some(10));
        let e = input.iter().try_for_each(|d| sorter.push(d)).unwrap_err();
        assert_eq!(e.code, ErrorCode::QueryExceededMemoryLimitNoDiskUseAllowed);
    }

    #[test]
    fn in_memory_when_it_fits() {
        let mut sorter =
            ExternalSorter::new(spec(doc! {"k": -1}), StageBudget::new(1 << 20, false));
        for i in 0..10 {
            sorter.push(&doc! {"k": i}).unwrap();
        }
        let s = sorter.finish().unwrap();
        assert!(matches!(s, Sorted::Memory(_)));
        assert_eq!(drain(s)[0], doc! {"k": 9});
    }

    #[test]
    fn no_disk_use_fails_with_292() {
        let mut sorter = ExternalSorter::new(spec(doc! {"k": 1}), StageBudget::new(100, false));
        let e = (0..10)
            .try_for_each(|i| sorter.push(&doc! {"k": i}))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::QueryExceededMemoryLimitNoDiskUseAllowed);
        assert!(
            e.message
                .contains("Sort exceeded memory limit of 100 bytes")
        );
        let e = StageBudget::new(10, false)
            .must_spill(11, Blocking::Group)
            .unwrap_err();
        assert!(e.message.contains("$group"), "{}", e.message);
        assert!(
            !StageBudget::new(10, false)
                .must_spill(10, Blocking::Group)
                .unwrap()
        );
        assert!(
            StageBudget::new(10, true)
                .must_spill(11, Blocking::Group)
                .unwrap()
        );
    }
}
