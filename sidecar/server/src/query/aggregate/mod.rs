//! The aggregation pipeline: `$match`, `$project`, `$addFields`/`$set`,
//! `$unset`, `$sort`, `$limit`, `$skip`, `$count`, `$group`, `$unwind`,
//! `$replaceRoot`/`$replaceWith`, `$sortByCount`, `$lookup` (equality
//! and sub-pipeline forms), `$facet`, `$unionWith`, `$sample`, `$bucket`,
//! `$bucketAuto`, `$redact`, `$graphLookup`, `$setWindowFields`,
//! `$densify` and `$fill`. Other stages are refused by name.
//!
//! A pipeline runs as a chain of pull-based operators ([`Op`]): the cursor
//! asks the last stage for a document, which asks the stage before it, down
//! to the input (the branch snapshot, see `cursor::pipeline`). Streaming
//! stages (`$match`, `$project`, `$addFields`, `$unset`, `$skip`, `$limit`,
//! `$unwind`, `$replaceRoot`, `$lookup`) hold one document at a time, so a
//! batch costs what it returns, and `$limit` stops the scan under it.
//! Blocking stages hold at most one [`StageBudget`] each and spill past it
//! (`spill`): `$sort` through `spill::ExternalSorter` (a top-k sort when a
//! `$limit` follows, as MongoDB coalesces them), `$group` through its own
//! partial-group runs (see `group`), `$count` holds a counter, `$facet`
//! holds its input once and replays it to each facet (see `facet`),
//! `$sample` is a top-k sort by a random key (see `sample`). `$unionWith`
//! streams the other collection a chunk at a time (see `union`).
//! `$bucket` is a keyed `$group` and a `$sort`; `$bucketAuto`,
//! `$setWindowFields` and `$densify` sort through the external sorter
//! first (see `bucket`, `window`, `densify`); `$graphLookup` searches
//! through `$lookup`'s index (see `graph_lookup`); `$redact` streams.
//!
//! Each document's metadata (`{$meta: ...}`: text score, sort key, ...)
//! travels beside it through the operators (`query::meta`); `meta_flow`
//! is the one table of what each stage does to it and where it may be
//! read, checked as the pipeline is parsed.
//!
//! Files: `stage` parses (`fill` rewrites `$fill`), `ops` holds the streaming stages and `$sort`,
//! `group` the grouping and its accumulators (`multi` those with
//! arguments: `$topN`, `$percentile`, …), `lookup` the join.

mod bucket;
mod densify;
pub(crate) mod documents;
mod facet;
mod fill;
mod geo_near;
mod graph_lookup;
mod group;
mod lookup;
mod lookup_pipeline;
mod meta_flow;
pub(crate) mod multi;
mod ops;
mod redact;
mod sample;
mod stage;
pub(crate) mod time_unit;
mod union;
mod window;

use bson::{Bson, Document};

use super::filter::Filter;
use crate::deadline::Deadline;
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits;
use crate::spill::StageBudget;
use stage::Stage;

pub use lookup::{InMemory, Lookup};

/// A parsed pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stages: Vec<Stage>,
    /// A `$lookup` or `$unionWith` sub-pipeline: its input (another
    /// collection's documents) carries no metadata (`meta_flow`).
    bare_input: bool,
    /// The metadata its stages read (the input attaches the costly kinds
    /// only when read: `cursor::pipeline`).
    reads: Vec<super::meta::MetaName>,
}

/// One step of a running pipeline (its input included): the next
/// document, or `None` once it has no more.
pub trait Op: Send {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>>;
}

/// What a running pipeline consults while it produces one batch: the
/// other collections (for `$lookup`) and the command's deadline, checked
/// every [`Cx::CHECK_EVERY`] steps.
pub struct Cx<'a> {
    lookup: &'a dyn Lookup,
    deadline: Deadline,
    ticks: u32,
}

impl<'a> Cx<'a> {
    const CHECK_EVERY: u32 = 256;

    pub fn new(lookup: &'a dyn Lookup, deadline: Deadline) -> Cx<'a> {
        Cx {
            lookup,
            deadline,
            ticks: 0,
        }
    }

    /// One unit of work done (a document read, built or compared): fails
    /// with `MaxTimeMSExpired` once the deadline has passed.
    pub fn tick(&mut self) -> Result<()> {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(Self::CHECK_EVERY) {
            self.deadline.check()?;
        }
        Ok(())
    }

    pub fn lookup(&self) -> &'a dyn Lookup {
        self.lookup
    }
}

impl Pipeline {
    pub fn parse(stages: &[Bson]) -> Result<Pipeline> {
        Pipeline::parse_with(stages, 0, meta_flow::Flow::top(stages), false)
    }

    /// A `$lookup` or `$unionWith` sub-pipeline, `depth` sub-pipelines
    /// deep: it reads another collection.
    fn parse_at(stages: &[Bson], depth: usize) -> Result<Pipeline> {
        Pipeline::parse_with(stages, depth, meta_flow::Flow::foreign(), true)
    }

    /// A `$facet` sub-pipeline: it reads the documents (and metadata) the
    /// stage before `$facet` gave, as `flow` has them.
    fn parse_facet(stages: &[Bson], depth: usize, flow: &meta_flow::Flow) -> Result<Pipeline> {
        Pipeline::parse_with(stages, depth, flow.clone(), false)
    }

    fn parse_with(
        stages: &[Bson],
        depth: usize,
        mut flow: meta_flow::Flow,
        bare_input: bool,
    ) -> Result<Pipeline> {
        limits::check_pipeline_length(stages.len())?;
        let mut out = Vec::with_capacity(stages.len());
        for (i, s) in stages.iter().enumerate() {
            let Bson::Document(d) = s else {
                return Err(CommandError::type_mismatch(
                    "Each element of the 'pipeline' array must be an object",
                ));
            };
            if d.len() != 1 {
                return Err(CommandError::new(
                    ErrorCode::Location40323,
                    "A pipeline stage specification object must contain exactly one field.",
                ));
            }
            let Some((name, arg)) = d.iter().next() else {
                continue;
            };
            if name == "$match"
                && let Bson::Document(f) = arg
                && super::geo::mentions_near(f)
            {
                return Err(super::geo::not_in_match());
            }
            if name == "$match"
                && let Bson::Document(f) = arg
                && super::text::mentions_text(f)
            {
                // `$text` only in the top-level pipeline's first `$match`.
                if i > 0 || depth > 0 {
                    return Err(super::text::not_first_stage());
                }
                out.push(Stage::Match(Filter::parse_query(f)?));
                continue;
            }
            if name == "$geoNear" && (i > 0 || depth > 0) {
                return Err(if depth > 0 {
                    CommandError::new(
                        ErrorCode::CommandNotSupported,
                        "$geoNear in a sub-pipeline is not supported by Argon",
                    )
                } else {
                    CommandError::new(
                        ErrorCode::Location40603,
                        "$geoNear was not the first stage in the pipeline.",
                    )
                });
            }
            // `$facet`'s sub-pipelines start where the flow is before it.
            let before = flow.clone();
            flow.stage(name, arg)?;
            stage::parse_into(name, arg, &mut out, depth, &before)?;
        }
        let mut reads = Vec::new();
        for s in stages {
            super::meta::mentioned(s, &mut reads);
        }
        let text_or_geo_input = match out.first() {
            Some(Stage::GeoNear(_)) => true,
            Some(Stage::Match(f)) => f.text_query().is_some(),
            _ => false,
        };
        if reads.contains(&super::meta::MetaName::IndexKey) && text_or_geo_input {
            // Their keys are a text or geo index's (terms, cells), which
            // Argon does not build (as find's `returnKey`).
            return Err(CommandError::new(
                ErrorCode::CommandNotSupported,
                "{$meta: \"indexKey\"} after $text or $geoNear is not supported by Argon",
            ));
        }
        Ok(Pipeline {
            stages: out,
            bare_input,
            reads,
        })
    }

    /// Whether a stage reads `{$meta: name}`.
    pub fn reads(&self, name: super::meta::MetaName) -> bool {
        self.reads.contains(&name)
    }

    /// The pipeline's leading `$match` filter (what the input applies and
    /// a `$text` query is bound from).
    pub fn leading_filter(&self) -> Option<&Filter> {
        match self.stages.first() {
            Some(Stage::Match(f)) => Some(f),
            _ => None,
        }
    }

    /// Binds a leading `$geoNear` to the geo index of the collection it
    /// reads (`ns` for messages); nothing to do without one.
    pub fn bind_geo_near(
        &mut self,
        coll: Option<&argon_wal::CollectionState>,
        ns: &str,
    ) -> Result<()> {
        match self.stages.first_mut() {
            Some(Stage::GeoNear(g)) => g.bind(coll, ns),
            _ => Ok(()),
        }
    }

    /// Takes a leading `$match` off the pipeline, for the input to apply
    /// (with the `_id` point lookup when the filter pins `_id`).
    pub fn take_leading_match(&mut self) -> Option<Filter> {
        match self.stages.first() {
            Some(Stage::Match(_)) => match self.stages.remove(0) {
                Stage::Match(f) => Some(f),
                _ => None,
            },
            _ => None,
        }
    }

    /// A leading `$sort` (asked after `take_leading_match`): the one an
    /// index scan may give.
    pub fn leading_sort(&self) -> Option<&super::SortSpec> {
        match self.stages.first() {
            Some(Stage::Sort(s)) => Some(s),
            _ => None,
        }
    }

    /// Drops the leading `$sort` (after `take_leading_match`): the input
    /// already comes in its order. Kept when a stage reads the sort key,
    /// which the sort attaches.
    pub fn drop_leading_sort(&mut self) {
        if self.reads(super::meta::MetaName::SortKey) {
            return;
        }
        if matches!(self.stages.first(), Some(Stage::Sort(_))) {
            self.stages.remove(0);
        }
    }

    /// The pipeline over `input`, as one operator; blocking stages hold at
    /// most `budget` each.
    pub fn stream(self, input: Box<dyn Op>, budget: StageBudget) -> Box<dyn Op> {
        // `$sort` then `$skip`/`$limit`: only the first skip + limit
        // documents in order are ever read.
        let tops: Vec<Option<usize>> = (0..self.stages.len())
            .map(|i| {
                let mut skipped = 0usize;
                let mut top: Option<usize> = None;
                for s in &self.stages[i + 1..] {
                    match s {
                        Stage::Skip(n) => skipped = skipped.saturating_add(*n),
                        Stage::Limit(n) => {
                            let k = skipped.saturating_add(*n);
                            top = Some(top.map_or(k, |t| t.min(k)));
                        }
                        _ => break,
                    }
                }
                top
            })
            .collect();
        let mut op: Box<dyn Op> = if self.bare_input {
            Box::new(ops::Bare(input))
        } else {
            input
        };
        for (stage, top) in self.stages.into_iter().zip(tops) {
            // Stages that make new documents, and those that hold and
            // rebuild theirs (`meta_flow`), give them bare; `$group` (and
            // so `$bucket`, `$sortByCount`) does so itself.
            let bare = matches!(
                stage,
                Stage::Count(_)
                    | Stage::Facet(_)
                    | Stage::BucketAuto(_)
                    | Stage::SetWindowFields(_)
                    | Stage::Densify(_)
            );
            op = match stage {
                Stage::Sort(spec) => ops::sort(op, spec, top, budget, true),
                Stage::Group(g) => group::op(op, g, budget),
                Stage::Lookup {
                    from,
                    local,
                    foreign,
                    as_field,
                } => lookup::op(op, from, local, foreign, as_field, budget),
                Stage::SubLookup(spec) => lookup_pipeline::op(op, *spec, budget),
                Stage::Facet(facets) => facet::op(op, facets, budget),
                Stage::UnionWith { source, pipeline } => union::op(op, source, pipeline, budget),
                Stage::Sample { size, order } => sample::op(op, size, order, budget),
                Stage::Bucket(b) => b.stream(op, budget),
                Stage::BucketAuto(b) => b.stream(op, budget),
                Stage::Redact(r) => r.stream(op),
                Stage::GraphLookup(g) => g.stream(op, budget),
                Stage::SetWindowFields(w) => w.stream(op, budget),
                Stage::Densify(d) => d.stream(op, budget),
                Stage::GeoNear(g) => g.stream(op, budget),
                other => ops::streaming(op, other),
            };
            if bare {
                op = Box::new(ops::Bare(op));
            }
        }
        op
    }

    /// Runs the pipeline over `docs` to the end, with the default budget
    /// and no deadline (tests and the fuzz targets; the server streams).
    pub fn run(&self, docs: Vec<Document>, lookup: &dyn Lookup) -> Result<Vec<Document>> {
        self.run_within(
            docs,
            lookup,
            StageBudget::new(limits::MAX_BLOCKING_STAGE_BYTES, true),
        )
    }

    /// [`Pipeline::run`] with blocking stages held to `budget`.
    pub fn run_within(
        &self,
        docs: Vec<Document>,
        lookup: &dyn Lookup,
        budget: StageBudget,
    ) -> Result<Vec<Document>> {
        let _metadata = super::meta::enter();
        let mut op = self.clone().stream(Box::new(ops::Docs::new(docs)), budget);
        let mut cx = Cx::new(lookup, Deadline::NONE);
        let mut out = Vec::new();
        while let Some(d) = op.next(&mut cx)? {
            out.push(d);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_accumulators;
#[cfg(test)]
mod tests_metadata;
#[cfg(test)]
mod tests_more_stages;
#[cfg(test)]
mod tests_sub_pipelines;
