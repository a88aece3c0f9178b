//! A blocking sort within a memory budget: MongoDB's 100 MiB per blocking
//! stage. Documents are collected until the budget is spent; past it the
//! sorted run is written to an anonymous temporary file (deleted when
//! closed, whatever happens to the process) and a new run starts. The
//! result is the runs merged, read back one document at a time, so a sort
//! of any size holds at most one budget of documents plus one document per
//! run in memory.
//!
//! Spilling is on by default (MongoDB 6.0+'s `allowDiskUseByDefault`); a
//! request with `allowDiskUse: false` that needs it fails with
//! `QueryExceededMemoryLimitNoDiskUseAllowed` (292).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use bson::Document;

use crate::error::{CommandError, ErrorCode, Result};
use crate::query::SortSpec;

/// MongoDB's memory limit of one blocking stage.
pub const BLOCKING_STAGE_BYTES: usize = 100 << 20;

pub struct ExternalSorter {
    spec: SortSpec,
    budget: usize,
    allow_disk: bool,
    run: Vec<Document>,
    run_bytes: usize,
    spilled: Vec<File>,
}

impl ExternalSorter {
    pub fn new(spec: SortSpec, budget: usize, allow_disk: bool) -> ExternalSorter {
        ExternalSorter {
            spec,
            budget,
            allow_disk,
            run: Vec::new(),
            run_bytes: 0,
            spilled: Vec::new(),
        }
    }

    /// Adds a document of about `bytes` bytes (its BSON size).
    pub fn push(&mut self, doc: Document, bytes: usize) -> Result<()> {
        self.run_bytes = self.run_bytes.saturating_add(bytes);
        self.run.push(doc);
        if self.run_bytes > self.budget {
            if !self.allow_disk {
                return Err(CommandError::new(
                    ErrorCode::QueryExceededMemoryLimitNoDiskUseAllowed,
                    format!(
                        "Sort exceeded memory limit of {} bytes, but did not opt in to external sorting.",
                        self.budget
                    ),
                ));
            }
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        let mut run = std::mem::take(&mut self.run);
        self.run_bytes = 0;
        self.spec.sort(&mut run);
        let mut file = tempfile::tempfile().map_err(spill_error)?;
        {
            let mut w = BufWriter::new(&mut file);
            for d in &run {
                let bytes = d
                    .to_vec()
                    .map_err(|e| CommandError::bad_value(e.to_string()))?;
                w.write_all(&bytes).map_err(spill_error)?;
            }
            w.flush().map_err(spill_error)?;
        }
        file.seek(SeekFrom::Start(0)).map_err(spill_error)?;
        self.spilled.push(file);
        Ok(())
    }

    /// The documents in order.
    pub fn finish(mut self) -> Result<Sorted> {
        if self.spilled.is_empty() {
            self.spec.sort(&mut self.run);
            return Ok(Sorted::Memory(self.run.into()));
        }
        if !self.run.is_empty() {
            self.spill()?;
        }
        let mut runs = Vec::with_capacity(self.spilled.len());
        for file in self.spilled {
            let mut reader = BufReader::new(file);
            let head = read_doc(&mut reader)?;
            runs.push(Run { reader, head });
        }
        Ok(Sorted::Merge(Merge {
            spec: self.spec,
            runs,
        }))
    }
}

/// A sorted result: in memory, or runs on disk being merged.
pub enum Sorted {
    Memory(VecDeque<Document>),
    Merge(Merge),
}

impl Sorted {
    pub fn next_doc(&mut self) -> Result<Option<Document>> {
        match self {
            Sorted::Memory(docs) => Ok(docs.pop_front()),
            Sorted::Merge(m) => m.next_doc(),
        }
    }
}

struct Run {
    reader: BufReader<File>,
    head: Option<Document>,
}

/// Spilled runs, merged: each step takes the smallest head. Runs are few
/// (one per budget of data), so a linear pick is cheaper than a heap.
pub struct Merge {
    spec: SortSpec,
    runs: Vec<Run>,
}

impl Merge {
    fn next_doc(&mut self) -> Result<Option<Document>> {
        let mut best: Option<usize> = None;
        for (i, run) in self.runs.iter().enumerate() {
            let Some(head) = &run.head else { continue };
            let better = match best.and_then(|b| self.runs[b].head.as_ref()) {
                // Ties go to the earlier run: runs hold the input in order, so
                // the merge is stable like the in-memory sort.
                Some(current) => self.spec.compare(head, current).is_lt(),
                None => true,
            };
            if better {
                best = Some(i);
            }
        }
        let Some(i) = best else { return Ok(None) };
        let run = &mut self.runs[i];
        let next = read_doc(&mut run.reader)?;
        Ok(std::mem::replace(&mut run.head, next))
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
        .ok_or_else(|| CommandError::new(ErrorCode::InternalError, "a spilled run is damaged"))?;
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

fn spill_error(e: std::io::Error) -> CommandError {
    CommandError::new(
        ErrorCode::InternalError,
        format!("cannot spill a sort to a temporary file: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn spec(d: Document) -> SortSpec {
        SortSpec::parse(&d).unwrap()
    }

    fn drain(mut s: Sorted) -> Vec<Document> {
        let mut out = Vec::new();
        while let Some(d) = s.next_doc().unwrap() {
            out.push(d);
        }
        out
    }

    #[test]
    fn spills_and_merges_in_order_and_stably() {
        let mut sorter = ExternalSorter::new(spec(doc! {"k": 1}), 200, true);
        let input: Vec<Document> = (0..500)
            .map(|i| doc! {"_id": i, "k": (i * 7919) % 13})
            .collect();
        for d in &input {
            sorter.push(d.clone(), 30).unwrap();
        }
        let out = drain(sorter.finish().unwrap());
        let mut expected = input;
        spec(doc! {"k": 1}).sort(&mut expected);
        assert_eq!(out, expected);
    }

    #[test]
    fn in_memory_when_it_fits() {
        let mut sorter = ExternalSorter::new(spec(doc! {"k": -1}), 1 << 20, false);
        for i in 0..10 {
            sorter.push(doc! {"k": i}, 20).unwrap();
        }
        let s = sorter.finish().unwrap();
        assert!(matches!(s, Sorted::Memory(_)));
        assert_eq!(drain(s)[0], doc! {"k": 9});
    }

    #[test]
    fn no_disk_use_fails_with_292() {
        let mut sorter = ExternalSorter::new(spec(doc! {"k": 1}), 100, false);
        let e = (0..10)
            .try_for_each(|i| sorter.push(doc! {"k": i}, 30))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::QueryExceededMemoryLimitNoDiskUseAllowed);
    }
}
