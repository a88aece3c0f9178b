//! `$unionWith`: the stage's input, then the documents of another
//! collection of the same database (its sub-pipeline applied), in that
//! order.
//!
//! Streaming: the other collection is read in chunks of
//! [`Collection::CHUNK`] documents, each chunk resuming after the last key
//! of the one before (`Lookup::scan_after`), so the stage holds a chunk
//! at most, whatever the collection's size.

use std::collections::VecDeque;

use bson::Document;

use super::{Cx, Op, Pipeline};
use crate::error::Result;
use crate::spill::StageBudget;

/// Where the other side's documents come from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A collection of the pipeline's database.
    Collection(String),
    /// A leading `$documents` stage's documents, made when parsed.
    Documents(Vec<Document>),
}

impl Source {
    fn open(self) -> Box<dyn Op> {
        match self {
            Source::Collection(coll) => Box::new(Collection::new(coll)),
            Source::Documents(docs) => Box::new(super::ops::Docs::new(docs)),
        }
    }
}

pub(super) fn op(
    input: Box<dyn Op>,
    source: Source,
    pipeline: Pipeline,
    budget: StageBudget,
) -> Box<dyn Op> {
    Box::new(UnionWith {
        input: Some(input),
        pending: Some((source, pipeline, budget)),
        other: None,
    })
}

struct UnionWith {
    input: Option<Box<dyn Op>>,
    /// The other side, until the input is exhausted and it starts.
    pending: Option<(Source, Pipeline, StageBudget)>,
    other: Option<Box<dyn Op>>,
}

impl Op for UnionWith {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        if let Some(input) = self.input.as_mut() {
            if let Some(d) = input.next(cx)? {
                return Ok(Some(d));
            }
            self.input = None;
        }
        if let Some((source, pipeline, budget)) = self.pending.take() {
            self.other = Some(pipeline.stream(source.open(), budget));
        }
        match self.other.as_mut() {
            Some(op) => op.next(cx),
            None => Ok(None),
        }
    }
}

/// A collection of the pipeline's database read in key order, a chunk at
/// a time (also `$lookup`'s sub-pipeline input).
pub(super) struct Collection {
    coll: String,
    after: Option<Vec<u8>>,
    chunk: VecDeque<Document>,
    done: bool,
}

impl Collection {
    const CHUNK: usize = 64;

    pub(super) fn new(coll: String) -> Collection {
        Collection {
            coll,
            after: None,
            chunk: VecDeque::new(),
            done: false,
        }
    }
}

impl Op for Collection {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        cx.tick()?;
        if self.chunk.is_empty() && !self.done {
            let mut last = None;
            let chunk = &mut self.chunk;
            cx.lookup()
                .scan_after(&self.coll, self.after.as_deref(), &mut |key, doc| {
                    chunk.push_back(doc);
                    if chunk.len() == Self::CHUNK {
                        last = Some(key.to_vec());
                        return Ok(false);
                    }
                    Ok(true)
                })?;
            match last {
                Some(key) => self.after = Some(key),
                // The scan ended before the chunk filled: no more.
                None => self.done = true,
            }
        }
        Ok(self.chunk.pop_front())
    }
}
