//! `$facet`: every sub-pipeline runs over the whole input, and the stage
//! outputs one document with each sub-pipeline's results as an array.
//!
//! The input is read once and held (a blocking stage: within the stage
//! budget in memory, past it spilled to one run file, or 292 when the
//! request forbids disk use); each facet then replays it from the start,
//! one facet after the other, so only one sub-pipeline runs at a time.
//! The output is one document, held to MongoDB's 16 MiB.

use std::sync::Arc;

use bson::{Bson, Document};

use super::{Cx, Op, Pipeline};
use crate::error::Result;
use crate::limits;
use crate::spill::{Blocking, RunFile, RunReader, RunWriter, StageBudget};

pub(super) fn op(
    input: Box<dyn Op>,
    facets: Vec<(String, Pipeline)>,
    budget: StageBudget,
) -> Box<dyn Op> {
    Box::new(Facet {
        input: Some(input),
        facets,
        budget,
    })
}

struct Facet {
    input: Option<Box<dyn Op>>,
    facets: Vec<(String, Pipeline)>,
    budget: StageBudget,
}

/// The input as read once: in memory, or spilled past the budget.
enum Held {
    Memory(Arc<Vec<Document>>),
    Disk(RunFile),
}

impl Held {
    fn read(mut input: Box<dyn Op>, cx: &mut Cx<'_>, budget: StageBudget) -> Result<Held> {
        let mut docs = Vec::new();
        let mut bytes = 0usize;
        let mut disk: Option<RunWriter> = None;
        while let Some(d) = input.next(cx)? {
            cx.tick()?;
            if let Some(w) = disk.as_mut() {
                w.push(&d)?;
                continue;
            }
            bytes = bytes.saturating_add(limits::document_size(&d));
            docs.push(d);
            if budget.must_spill(bytes, Blocking::Facet)? {
                let mut w = RunWriter::new()?;
                for d in docs.drain(..) {
                    w.push(&d)?;
                }
                disk = Some(w);
            }
        }
        Ok(match disk {
            Some(w) => Held::Disk(w.finish()?),
            None => Held::Memory(Arc::new(docs)),
        })
    }

    /// The held input from its start, as a pipeline's input.
    fn replay(&self) -> Result<Box<dyn Op>> {
        Ok(match self {
            Held::Memory(docs) => Box::new(Replay {
                docs: Arc::clone(docs),
                at: 0,
            }),
            Held::Disk(run) => Box::new(Reread(run.reread()?)),
        })
    }
}

struct Replay {
    docs: Arc<Vec<Document>>,
    at: usize,
}

impl Op for Replay {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        cx.tick()?;
        let d = self.docs.get(self.at).cloned();
        self.at += 1;
        Ok(d)
    }
}

struct Reread(RunReader);

impl Op for Reread {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        cx.tick()?;
        self.0.next_doc()
    }
}

impl Op for Facet {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        let Some(input) = self.input.take() else {
            return Ok(None);
        };
        let held = Held::read(input, cx, self.budget)?;
        let mut out = Document::new();
        // The output's size so far: checked as results arrive, so a facet
        // that returns its whole input fails at 16 MiB, not after it.
        let mut size = 5usize;
        for (name, pipeline) in std::mem::take(&mut self.facets) {
            let mut op = pipeline.stream(held.replay()?, self.budget);
            let mut results = Vec::new();
            size = size.saturating_add(name.len() + 7);
            while let Some(d) = op.next(cx)? {
                size = size.saturating_add(limits::document_size(&d) + 8);
                if size > limits::MAX_DOCUMENT_SIZE {
                    return Err(limits::Budget::document("$facet").exceeded(size));
                }
                results.push(Bson::Document(d));
            }
            out.insert(name, results);
        }
        limits::check_built_document(&out, "$facet")?;
        Ok(Some(out))
    }
}
