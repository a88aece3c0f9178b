//! `$facet`: every sub-pipeline runs over the whole input, and the stage
//! outputs one document with each sub-pipeline's results as an array.
//!
//! The input is read once and held (a blocking stage: within the stage
//! budget in memory, past it spilled to one run file, or 292 when the
//! request forbids disk use); each facet then replays it from the start,
//! one facet after the other, so only one sub-pipeline runs at a time,
//! each document with its metadata (`query::meta`), as mongod hands it
//! down. The output is one document, held to MongoDB's 16 MiB.

use std::sync::Arc;

use bson::{Bson, Document, doc};

use super::super::meta::{self, Metadata};
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

/// The input as read once, each document with its metadata: in memory,
/// or spilled past the budget (as `{d: document, m: metadata}`).
enum Held {
    Memory(Arc<Vec<(Document, Metadata)>>),
    Disk(RunFile),
}

const HELD_DOC: &str = "d";
const HELD_META: &str = "m";

fn spilled(d: &Document, m: &Metadata) -> Document {
    doc! {HELD_DOC: d.clone(), HELD_META: m.to_document()}
}

impl Held {
    fn read(mut input: Box<dyn Op>, cx: &mut Cx<'_>, budget: StageBudget) -> Result<Held> {
        let mut docs = Vec::new();
        let mut bytes = 0usize;
        let mut disk: Option<RunWriter> = None;
        while let Some(d) = input.next(cx)? {
            cx.tick()?;
            let m = meta::take();
            if let Some(w) = disk.as_mut() {
                w.push(&spilled(&d, &m))?;
                continue;
            }
            bytes = bytes.saturating_add(limits::document_size(&d));
            docs.push((d, m));
            if budget.must_spill(bytes, Blocking::Facet)? {
                let mut w = RunWriter::new()?;
                for (d, m) in docs.drain(..) {
                    w.push(&spilled(&d, &m))?;
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
    docs: Arc<Vec<(Document, Metadata)>>,
    at: usize,
}

impl Op for Replay {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        cx.tick()?;
        let Some((d, m)) = self.docs.get(self.at) else {
            return Ok(None);
        };
        self.at += 1;
        meta::set(m.clone());
        Ok(Some(d.clone()))
    }
}

struct Reread(RunReader);

impl Op for Reread {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        cx.tick()?;
        let Some(mut held) = self.0.next_doc()? else {
            return Ok(None);
        };
        let (Some(Bson::Document(d)), Some(Bson::Document(m))) =
            (held.remove(HELD_DOC), held.remove(HELD_META))
        else {
            return Err(crate::spill::damaged());
        };
        meta::set(Metadata::from_document(&m)?);
        Ok(Some(d))
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
