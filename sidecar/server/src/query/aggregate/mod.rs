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
        Pipeline::parse_at(stages, 0)
    }

    /// A pipeline `depth` sub-pipelines deep (`$facet`, `$unionWith`).
    fn parse_at(stages: &[Bson], depth: usize) -> Result<Pipeline> {
        limits::check_pipeline_length(stages.len())?;
        let mut out = Vec::with_capacity(stages.len());
        // Whether the documents are still as the first `$match` read them
        // (the `$text` score of a document is computed from its indexed
        // fields, see `query::text`).
        let mut intact = true;
        // What a leading `$geoNear` writes (its `distanceField` and
        // `includeLocs`): `{$meta: "geoNearDistance"}` and
        // `"geoNearPoint"` read them (`query::geo::rewrite_meta`).
        let geo_fields = match stages.first() {
            Some(Bson::Document(d)) if depth == 0 => {
                d.get_document("$geoNear")
                    .ok()
                    .map(|g| super::geo::NearFields {
                        distance: g.get_str("distanceField").ok().map(str::to_owned),
                        location: g.get_str("includeLocs").ok().map(str::to_owned),
                    })
            }
            _ => None,
        };
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
            if super::text::mentions_score(arg) {
                check_text_score(stages, depth, intact)?;
            }
            let rewritten;
            let arg = match &geo_fields {
                Some(fields) if i > 0 && name != "$sort" && super::geo::mentions_meta(arg) => {
                    rewritten = super::geo::rewrite_meta(arg, fields, intact)?;
                    &rewritten
                }
                _ => arg,
            };
            intact &= matches!(
                name.as_str(),
                "$match" | "$sort" | "$skip" | "$limit" | "$sample" | "$geoNear"
            );
            stage::parse_into(name, arg, &mut out, depth)?;
        }
        Ok(Pipeline { stages: out })
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
    /// already comes in its order.
    pub fn drop_leading_sort(&mut self) {
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
        let mut op = input;
        for (stage, top) in self.stages.into_iter().zip(tops) {
            op = match stage {
                Stage::Sort(spec) => ops::sort(op, spec, top, budget),
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
        let mut op = self.clone().stream(Box::new(ops::Docs::new(docs)), budget);
        let mut cx = Cx::new(lookup, Deadline::NONE);
        let mut out = Vec::new();
        while let Some(d) = op.next(&mut cx)? {
            out.push(d);
        }
        Ok(out)
    }
}

/// Where `{$meta: "textScore"}` may be read: the pipeline must start with
/// a `$text` `$match` (MongoDB's 40218), and the score is computed from
/// the documents as that `$match` passed them, so it is refused by name
/// after a stage that reshapes them, and inside sub-pipelines.
fn check_text_score(stages: &[Bson], depth: usize, intact: bool) -> Result<()> {
    if depth > 0 {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            "{$meta: \"textScore\"} inside a sub-pipeline is not supported by Argon",
        ));
    }
    let leading_text = matches!(
        stages.first(),
        Some(Bson::Document(d)) if matches!(d.get("$match"), Some(Bson::Document(f)) if super::text::mentions_text(f))
    );
    if !leading_text {
        return Err(super::text::no_score());
    }
    if !intact {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            "{$meta: \"textScore\"} after a stage that reshapes documents ($project, $group, ...) is not supported by Argon; compute it in the first such stage",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_accumulators;
#[cfg(test)]
mod tests_more_stages;
#[cfg(test)]
mod tests_sub_pipelines;
