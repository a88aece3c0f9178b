//! `$lookup` with a sub-pipeline (`let` + `pipeline`, and MongoDB 5.0's
//! form that adds `localField`/`foreignField` to them): for each local
//! document, the `let` expressions are evaluated against it, bound into
//! the sub-pipeline (`vars`: every `$$name` becomes its value, as a
//! command's `let` is bound), and the bound pipeline runs over the
//! foreign collection, after the equality match when there is one.
//!
//! The foreign collection is streamed a chunk at a time
//! (`union::Collection`) for each local document: a nested-loop join, as
//! MongoDB runs a correlated sub-pipeline. What one local document joins
//! is held to 16 MiB + 16 KiB (4568), as the equality form.

use bson::{Bson, Document};

use super::super::expr::Expr;
use super::super::filter::Pred;
use super::super::meta;
use super::super::vars::Vars;
use super::lookup::{Matched, joins, local_keys};
use super::ops::with_field;
use super::union::Collection;
use super::{Cx, Op, Pipeline};
use crate::error::{CommandError, ErrorCode, Result};
use crate::spill::StageBudget;

/// A parsed `$lookup` with a sub-pipeline.
#[derive(Debug, Clone)]
pub(super) struct SubLookup {
    /// The foreign collection; `None` when the pipeline makes its own
    /// documents (it starts with `$documents`, checked when parsed).
    pub from: Option<String>,
    /// `(localField, foreignField)`, when both are given.
    pub equality: Option<(String, String)>,
    pub lets: Vec<(String, Expr)>,
    /// The sub-pipeline as sent: bound and parsed per local document.
    pub stages: Vec<Bson>,
    /// How deep the sub-pipeline is (see `stage::sub_pipeline`).
    pub depth: usize,
    pub as_field: String,
    /// A `$$name` reference count of `stages` times the bytes a bound
    /// copy may add stays under this (see [`SubLookup::check_binding`]).
    pub references: usize,
}

/// The bytes binding may add to one sub-pipeline: each reference is a copy
/// of its variable's value.
const MAX_BOUND_BYTES: usize = 64 * 1024 * 1024;

impl SubLookup {
    /// Binding copies every variable's value into each reference: a large
    /// value referenced many times is refused rather than multiplied.
    fn check_binding(&self, values: &Document) -> Result<()> {
        let value_bytes = crate::limits::document_size(values);
        if self.references.saturating_mul(value_bytes) > MAX_BOUND_BYTES {
            return Err(CommandError::new(
                ErrorCode::ExceededMemoryLimit,
                format!(
                    "$lookup's let variables ({value_bytes} bytes) are referenced {} times in its pipeline: over {MAX_BOUND_BYTES} bytes once bound",
                    self.references
                ),
            ));
        }
        Ok(())
    }

    /// The sub-pipeline for one local document and its input: the foreign
    /// collection, or the documents its leading `$documents` makes with
    /// the variables bound.
    fn bind(&self, local: &Document) -> Result<(Pipeline, Box<dyn Op>)> {
        let mut values = Document::new();
        for (name, e) in &self.lets {
            values.insert(name.clone(), e.eval(local)?.unwrap_or(Bson::Null));
        }
        self.check_binding(&values)?;
        let stages = Vars::from_values(values)?.bind_pipeline(&self.stages)?;
        match &self.from {
            Some(from) => Ok((
                Pipeline::parse_at(&stages, self.depth)?,
                Box::new(Collection::new(from.clone())),
            )),
            None => {
                let (documents, rest) =
                    super::documents::split_leading(&stages, "$lookup", "collection")?;
                let docs = super::documents::evaluate(documents)?;
                Ok((
                    Pipeline::parse_at(rest, self.depth)?,
                    Box::new(super::ops::Docs::new(docs)),
                ))
            }
        }
    }
}

/// Counts the `$$name` strings of `v` (references to user variables).
pub(super) fn references(v: &Bson) -> usize {
    let mut n = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Bson::String(s) if s.starts_with("$$") => n += 1,
            Bson::Document(d) => stack.extend(d.values()),
            Bson::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    n
}

pub(super) fn op(input: Box<dyn Op>, spec: SubLookup, budget: StageBudget) -> Box<dyn Op> {
    Box::new(SubLookupOp {
        input,
        spec,
        budget,
    })
}

struct SubLookupOp {
    input: Box<dyn Op>,
    spec: SubLookup,
    budget: StageBudget,
}

/// The foreign collection narrowed to the documents that join by the
/// equality fields.
struct Joining {
    input: Box<dyn Op>,
    foreign: String,
    preds: Vec<Pred>,
}

impl Op for Joining {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        while let Some(f) = self.input.next(cx)? {
            if joins(&f, &self.foreign, &self.preds) {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }
}

impl Op for SubLookupOp {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        let Some(d) = self.input.next(cx)? else {
            return Ok(None);
        };
        let (pipeline, foreign) = self.spec.bind(&d)?;
        let source: Box<dyn Op> = match &self.spec.equality {
            None => foreign,
            Some((local, foreign_field)) => Box::new(Joining {
                input: foreign,
                foreign: foreign_field.clone(),
                preds: local_keys(&d, local).into_iter().map(Pred::Eq).collect(),
            }),
        };
        // The sub-pipeline's documents carry their own metadata; the
        // outer document's is put back once they are read.
        let outer = meta::take();
        let mut op = pipeline.stream(source, self.budget);
        let mut matched = Matched::new(self.spec.from.as_deref().unwrap_or("$documents"));
        while let Some(f) = op.next(cx)? {
            matched.push(f)?;
        }
        meta::set(outer);
        let docs = matched.into_docs();
        with_field(d, &self.spec.as_field, Bson::Array(docs), "$lookup").map(Some)
    }
}
