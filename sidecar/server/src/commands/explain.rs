//! `explain` (and `aggregate` with `explain: true`): the plan `query::plan`
//! chooses for a find, aggregate, count, distinct, update, delete or
//! findAndModify, shaped as MongoDB's explain output; with
//! `executionStats` (or `allPlansExecution`, whose list of other plans is
//! empty: no trial runs) the plan is also run over the snapshot to count
//! what it examined and returned. Explain never writes: an update or a
//! delete is planned and its matches counted, nothing more.

use std::time::Instant;

use argon_wal::Namespace;
use bson::{Bson, Document, doc};

use super::{Ctx, collection_name, opt_bool, opt_doc, opt_i64, options, view};
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::aggregate::Pipeline;
use crate::query::plan::{self, Access};
use crate::query::vars::Vars;
use crate::query::{Filter, SortSpec, collation};
use crate::service::operation_time;

/// The `explain` command's own fields (besides the generic ones).
const EXPLAIN: options::Fields = options::Fields {
    what: "explain",
    known: &["verbosity"],
    unsupported: &[],
    generic: true,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verbosity {
    QueryPlanner,
    ExecutionStats,
    AllPlansExecution,
}

impl Verbosity {
    fn parse(v: Option<&Bson>) -> Result<Verbosity> {
        match v {
            None => Ok(Verbosity::AllPlansExecution),
            Some(Bson::String(s)) => match s.as_str() {
                "queryPlanner" => Ok(Verbosity::QueryPlanner),
                "executionStats" => Ok(Verbosity::ExecutionStats),
                "allPlansExecution" => Ok(Verbosity::AllPlansExecution),
                other => Err(CommandError::bad_value(format!(
                    "Enumeration value '{other}' for field 'explain.verbosity' is not a valid value."
                ))),
            },
            Some(other) => Err(CommandError::type_mismatch(format!(
                "BSON field 'explain.verbosity' is the wrong type '{}', expected type 'string'",
                crate::query::expr::type_name(other)
            ))),
        }
    }
}

/// What one explained command reads: its collection, filter, sort, hint,
/// collation, and the stage MongoDB puts above the fetch.
struct Explained {
    coll: String,
    filter_doc: Document,
    let_vars: Option<Bson>,
    sort: Option<Document>,
    hint: Option<Bson>,
    collation: Option<Bson>,
    /// `COUNT`, `UPDATE`, `DELETE`... (none for a find or an aggregate).
    top_stage: Option<&'static str>,
    skip: u64,
    limit: Option<u64>,
    /// A find's `min`/`max` (empty when not given).
    min: Document,
    max: Document,
}

pub async fn explain(ctx: &Ctx<'_>) -> Result<Document> {
    let inner = match ctx.cmd.get("explain") {
        Some(Bson::Document(d)) => d,
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'explain.explain' is the wrong type '{}', expected type 'object'",
                crate::query::expr::type_name(other)
            )));
        }
        None => return Err(CommandError::bad_value("explain needs a command")),
    };
    EXPLAIN.check(ctx.cmd, Some("explain"))?;
    let verbosity = Verbosity::parse(ctx.cmd.get("verbosity"))?;
    run(ctx, inner, verbosity).await
}

/// An `aggregate` with `explain: true`: its plan at `queryPlanner`.
pub(crate) async fn aggregate_explain(ctx: &Ctx<'_>) -> Result<Document> {
    let mut inner = ctx.cmd.clone();
    inner.remove("explain");
    run(ctx, &inner, Verbosity::QueryPlanner).await
}

async fn run(ctx: &Ctx<'_>, inner: &Document, verbosity: Verbosity) -> Result<Document> {
    let name = inner.keys().next().cloned().unwrap_or_default();
    let e = parse(&name, inner)?;
    let target = ctx.target()?;
    let state = ctx.read_state(&target).await?;
    if view::resolve(&state, &target.db, &e.coll)?.is_some() {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            "explain of a read of a view is not supported by Argon",
        ));
    }
    let ns = Namespace::new(target.db.as_str(), e.coll.as_str());
    let coll = state.collection(&ns)?;
    let own_collation = crate::query::collation::Collation::from_field(e.collation.as_ref())?;
    let _collation = collation::for_collection(own_collation.as_ref(), coll.as_ref())?.enter();
    let vars = Vars::parse(e.let_vars.as_ref())?;
    let bound = vars.bind_filter(&e.filter_doc)?;
    let filter = Filter::parse_query(&bound)?;
    let _text = crate::query::text::bind(&filter, coll.as_ref())?.enter();
    let sort = e.sort.as_ref().map(SortSpec::parse).transpose()?;
    let sort = sort.filter(|s| !s.is_empty());
    options::check_hint(e.hint.as_ref(), coll.as_ref())?;
    let started = Instant::now();
    let chosen = plan::choose_bounded(
        coll.as_ref(),
        &filter,
        sort.as_ref(),
        e.hint.as_ref(),
        &e.min,
        &e.max,
    )?;
    let mut winning = chosen.explain(&bound);
    if let Some(near) = near_stage(coll.as_ref(), &filter, &bound) {
        winning = near;
    }
    if let (Some(s), false) = (&e.sort, chosen.provides_sort()) {
        winning = doc! {"stage": "SORT", "sortPattern": s.clone(), "inputStage": winning};
    }
    if let Some(top) = e.top_stage {
        winning = doc! {"stage": top, "inputStage": winning};
    }
    let mut out = doc! {
        "explainVersion": "1",
        "queryPlanner": {
            "namespace": format!("{}.{}", target.raw, e.coll),
            "indexFilterSet": false,
            "parsedQuery": bound.clone(),
            "winningPlan": winning.clone(),
            "rejectedPlans": [],
        },
    };
    if verbosity != Verbosity::QueryPlanner {
        let deadline = ctx.deadline()?;
        let mut access = Access::new(chosen.clone());
        let mut matched = 0u64;
        // Without a blocking sort the run stops at skip + limit, as the
        // command's own scan does (so the counts are what it examines).
        let enough = match (e.limit, e.sort.is_none() || chosen.provides_sort()) {
            (Some(l), true) => e.skip.saturating_add(l),
            _ => u64::MAX,
        };
        if let Some(c) = coll {
            access.run(&c, deadline, |raw| {
                if matched >= enough {
                    return Ok(false);
                }
                let d = argon_wal::rawdoc::parse(raw);
                if filter.is_empty() || filter.try_matches(&d)? {
                    matched += 1;
                }
                Ok(true)
            })?;
        }
        let returned = matched.saturating_sub(e.skip);
        let returned = e.limit.map_or(returned, |l| returned.min(l));
        let millis = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let stages = with_counts(&winning, &access, returned);
        let mut stats = doc! {
            "executionSuccess": true,
            "nReturned": returned as i64,
            "executionTimeMillis": millis,
            "totalKeysExamined": access.keys_examined as i64,
            "totalDocsExamined": access.docs_examined as i64,
            "executionStages": stages,
        };
        if verbosity == Verbosity::AllPlansExecution {
            stats.insert("allPlansExecution", Bson::Array(Vec::new()));
        }
        out.insert("executionStats", stats);
    }
    out.insert("command", inner.clone());
    out.insert("operationTime", operation_time(state.time()));
    Ok(out)
}

/// The winning plan's stages with MongoDB's per-stage counts.
fn with_counts(stage: &Document, access: &Access, returned: u64) -> Document {
    let mut d = stage.clone();
    d.insert("nReturned", returned as i64);
    match d.get_str("stage").unwrap_or_default() {
        "COLLSCAN" | "FETCH" => {
            d.insert("docsExamined", access.docs_examined as i64);
        }
        "IXSCAN" => {
            d.insert("keysExamined", access.keys_examined as i64);
            d.insert("nReturned", access.keys_examined as i64);
        }
        "IDHACK" => {
            d.insert("keysExamined", access.keys_examined as i64);
            d.insert("docsExamined", access.docs_examined as i64);
        }
        _ => {}
    }
    if let Ok(input) = stage.get_document("inputStage") {
        // Below the stage that filters, every candidate goes up.
        let below = match d.get_str("stage").unwrap_or_default() {
            "FETCH" => access.keys_examined,
            _ => returned,
        };
        d.insert("inputStage", with_counts(input, access, below));
    }
    d
}

/// The parts of an explained command; its fields are checked as the
/// command itself checks them.
fn parse(name: &str, inner: &Document) -> Result<Explained> {
    let get_doc =
        |key: &str| -> Result<Document> { Ok(opt_doc(inner, key)?.cloned().unwrap_or_default()) };
    let base = |coll: String, filter_doc: Document| Explained {
        coll,
        filter_doc,
        let_vars: inner.get("let").cloned(),
        sort: None,
        hint: inner.get("hint").cloned(),
        collation: inner.get("collation").cloned(),
        top_stage: None,
        skip: 0,
        limit: None,
        min: Document::new(),
        max: Document::new(),
    };
    let count = |key: &str| -> Result<u64> { Ok(opt_i64(inner, key)?.unwrap_or(0).unsigned_abs()) };
    Ok(match name {
        "find" => {
            options::FIND.check(inner, Some("find"))?;
            let mut e = base(collection_name(inner, "find")?, get_doc("filter")?);
            e.sort = opt_doc(inner, "sort")?.cloned();
            // `sort: {$natural: ±1}` is a hint, as the find runs it.
            if let Some(h) = options::natural_sort(e.sort.as_ref(), e.hint.as_ref())? {
                e.hint = Some(h);
                e.sort = None;
            }
            e.skip = count("skip")?;
            e.limit = Some(count("limit")?).filter(|l| *l > 0);
            e.min = plan::min_max::field(inner, "min")?;
            e.max = plan::min_max::field(inner, "max")?;
            if opt_bool(inner, "returnKey", false)? {
                e.top_stage = Some("RETURN_KEY");
            }
            e
        }
        "count" => {
            options::COUNT.check(inner, Some("count"))?;
            let mut e = base(collection_name(inner, "count")?, get_doc("query")?);
            e.top_stage = Some("COUNT");
            e.skip = count("skip")?;
            e.limit = Some(count("limit")?).filter(|l| *l > 0);
            e
        }
        "distinct" => {
            options::DISTINCT.check(inner, Some("distinct"))?;
            let mut e = base(collection_name(inner, "distinct")?, get_doc("query")?);
            e.top_stage = Some("PROJECTION_DEFAULT");
            e
        }
        "aggregate" => {
            let mut checked = inner.clone();
            checked.remove("explain");
            options::AGGREGATE.check(&checked, Some("aggregate"))?;
            let coll = collection_name(inner, "aggregate")?;
            let stages = match inner.get("pipeline") {
                Some(Bson::Array(a)) => a.clone(),
                _ => return Err(CommandError::type_mismatch("'pipeline' must be an array")),
            };
            // Parsed as the aggregate would be (a malformed stage fails here too).
            Pipeline::parse(&stages)?;
            let stage = |i: usize, name: &str| match stages.get(i) {
                Some(Bson::Document(s)) => match s.get(name) {
                    Some(Bson::Document(m)) => Some(m.clone()),
                    _ => None,
                },
                _ => None,
            };
            // The leading `$match` is the scan's filter, and a `$sort`
            // right after it is what an index may give (`PipelineScan`).
            let filter = stage(0, "$match");
            let sort = stage(usize::from(filter.is_some()), "$sort");
            let mut e = base(coll, filter.unwrap_or_default());
            e.sort = sort;
            e
        }
        "update" => {
            options::UPDATE.check(inner, Some("update"))?;
            let s = single_statement(inner, "updates")?;
            options::UPDATE_STATEMENT.check(&s, None)?;
            let mut e = base(
                collection_name(inner, "update")?,
                opt_doc(&s, "q")?.cloned().unwrap_or_default(),
            );
            e.hint = s.get("hint").cloned();
            e.collation = s.get("collation").cloned();
            e.sort = opt_doc(&s, "sort")?.cloned();
            e.top_stage = Some("UPDATE");
            let multi = matches!(s.get("multi"), Some(Bson::Boolean(true)));
            e.limit = (!multi).then_some(1);
            e
        }
        "delete" => {
            options::DELETE.check(inner, Some("delete"))?;
            let s = single_statement(inner, "deletes")?;
            options::DELETE_STATEMENT.check(&s, None)?;
            let mut e = base(
                collection_name(inner, "delete")?,
                opt_doc(&s, "q")?.cloned().unwrap_or_default(),
            );
            e.hint = s.get("hint").cloned();
            e.collation = s.get("collation").cloned();
            e.top_stage = Some("DELETE");
            e.limit = (opt_i64(&s, "limit")?.unwrap_or(0) == 1).then_some(1);
            e
        }
        "findAndModify" | "findandmodify" => {
            options::FIND_AND_MODIFY.check(inner, Some(name))?;
            let mut e = base(collection_name(inner, name)?, get_doc("query")?);
            e.sort = opt_doc(inner, "sort")?.cloned();
            let remove = matches!(inner.get("remove"), Some(Bson::Boolean(true)));
            e.top_stage = Some(if remove { "DELETE" } else { "UPDATE" });
            e.limit = Some(1);
            e
        }
        other if super::lookup(other).is_some() => {
            return Err(CommandError::new(
                ErrorCode::IllegalOperation,
                format!("Cannot explain cmd: {other}"),
            ));
        }
        other => {
            return Err(CommandError::new(
                ErrorCode::CommandNotFound,
                format!("Explain failed due to unknown command: {other}"),
            ));
        }
    })
}

/// The one statement of an explained update or delete (MongoDB explains
/// exactly one).
fn single_statement(inner: &Document, key: &str) -> Result<Document> {
    match inner.get(key) {
        Some(Bson::Array(a)) if a.len() == 1 => match &a[0] {
            Bson::Document(d) => Ok(d.clone()),
            _ => Err(CommandError::type_mismatch(format!(
                "BSON field '{key}' must hold documents"
            ))),
        },
        Some(Bson::Array(_)) => Err(CommandError::bad_value(format!(
            "explained {key} must hold exactly one statement"
        ))),
        _ => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' must be an array"
        ))),
    }
}

/// A `$near`'s stage as MongoDB names it (`GEO_NEAR_2DSPHERE`,
/// `GEO_NEAR_2D`) when an index serves it (see `read::near_by_rings`).
fn near_stage(
    coll: Option<&argon_wal::CollectionState>,
    filter: &Filter,
    shown: &Document,
) -> Option<Document> {
    let (path, near) = crate::query::geo::near_of(filter)?;
    let (spec, field) = plan::geo::near_index(coll?, path, near)?;
    let stage = match field {
        argon_wal::indexkey::geo::GeoField::Sphere => "GEO_NEAR_2DSPHERE",
        argon_wal::indexkey::geo::GeoField::Flat(_) => "GEO_NEAR_2D",
    };
    Some(doc! {
        "stage": stage,
        "keyPattern": spec.get_document("key").cloned().unwrap_or_default(),
        "indexName": spec.get_str("name").unwrap_or_default(),
        "filter": shown.clone(),
    })
}
