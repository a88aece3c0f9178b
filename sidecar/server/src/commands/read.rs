//! Reads: find, getMore, killCursors, count, distinct, aggregate. Each reads
//! one branch state (a consistent point); a cursor keeps the rest of its
//! result from that state.

use argon_wal::{BranchState, Namespace};
use bson::{Bson, Document, doc};

use super::options::{self, check_hint};
use super::{Ctx, collection_name, cursor_reply, opt_bool, opt_doc, opt_i64, view};
use crate::cursor::{PipelineScan, Scan, SortedScan};
use crate::deadline::Deadline;
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::aggregate::Pipeline;
use crate::query::find_meta::FindMetadata;
use crate::query::plan::{self, Access};
use crate::query::vars::Vars;
use crate::query::{Filter, Projection, SortSpec};
use crate::query::{collation, text};
use crate::service::operation_time;
use crate::spill::{ExternalSorter, Sorted, StageBudget};

/// `batchSize` from a document (`find`'s command, or `cursor: {batchSize}`).
pub(crate) fn batch_size(d: Option<&Document>) -> Result<Option<usize>> {
    let Some(d) = d else { return Ok(None) };
    match opt_i64(d, "batchSize")? {
        None => Ok(None),
        Some(n) if n < 0 => Err(CommandError::bad_value(format!(
            "BSON field 'batchSize' value must be >= 0, actual value '{n}'"
        ))),
        Some(n) => Ok(Some(n as usize)),
    }
}

/// The documents of `ns` matching `filter`, parsed, in plan order,
/// stopping after `limit` matches (an `updateOne` or
/// a `deleteOne` reads no further than its first match).
pub(crate) fn matching_limit(
    state: &BranchState,
    ns: &Namespace,
    filter: &Filter,
    hint: Option<&Bson>,
    limit: Option<usize>,
    deadline: Deadline,
) -> Result<Vec<Document>> {
    if let Some(k) = limit
        && crate::query::geo::near_of(filter).is_some()
    {
        return nearest(state, ns, filter, k, deadline);
    }
    let limit = limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for_each_planned(state, ns, filter, None, hint, deadline, |d, _| {
        out.push(d);
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// The `k` matches of a `$near` filter nearest its point (a single-document
/// update, delete or findAndModify changes the nearest, as in MongoDB).
fn nearest(
    state: &BranchState,
    ns: &Namespace,
    filter: &Filter,
    k: usize,
    deadline: Deadline,
) -> Result<Vec<Document>> {
    let budget = StageBudget::new(crate::limits::MAX_BLOCKING_STAGE_BYTES, true);
    let mut sorted = near_matching(state, ns, filter, Some(k), budget, deadline)?;
    let mut out = Vec::new();
    while out.len() < k
        && let Some(d) = sorted.next_doc()?
    {
        out.push(d);
    }
    Ok(out)
}

/// The `_id`s of the documents [`matching_limit`] would return: what a
/// multi-document update or delete holds while it writes (one document
/// parsed at a time, not every match at once).
pub(crate) fn matching_ids(
    state: &BranchState,
    ns: &Namespace,
    filter: &Filter,
    hint: Option<&Bson>,
    limit: Option<usize>,
    deadline: Deadline,
) -> Result<Vec<bson::Bson>> {
    if let Some(k) = limit
        && crate::query::geo::near_of(filter).is_some()
    {
        return Ok(nearest(state, ns, filter, k, deadline)?
            .into_iter()
            .map(|d| d.get("_id").cloned().unwrap_or(bson::Bson::Null))
            .collect());
    }
    let limit = limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for_each_planned(state, ns, filter, None, hint, deadline, |d, _| {
        out.push(d.get("_id").cloned().unwrap_or(bson::Bson::Null));
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// The first document matching `filter` in `sort` order (an `updateOne`,
/// `replaceOne` or `findAndModify` with `sort`): one document held, not
/// every match.
pub(crate) fn first_in_order(
    state: &BranchState,
    ns: &Namespace,
    filter: &Filter,
    hint: Option<&Bson>,
    sort: &SortSpec,
    deadline: Deadline,
) -> Result<Option<Document>> {
    let mut best: Option<Document> = None;
    for_each_planned(state, ns, filter, None, hint, deadline, |d, _| {
        if best
            .as_ref()
            .is_none_or(|b| sort.compare(&d, b) == std::cmp::Ordering::Less)
        {
            best = Some(d);
        }
        Ok(true)
    })?;
    Ok(best)
}

/// Calls `f` with each document of `ns` matching `filter` (parsed, with its
/// BSON size) until `f` returns `false`, in the order of the plan
/// `query::plan` chooses for `filter`, `sort` and `hint` (`_id` lookups, an
/// index scan or the collection in `_id` order), checking `deadline` every
/// 256 entries. The one scan loop every read and write path uses. Returns
/// the run, whose counts explain reports.
pub(crate) fn for_each_planned(
    state: &BranchState,
    ns: &Namespace,
    filter: &Filter,
    sort: Option<&SortSpec>,
    hint: Option<&Bson>,
    deadline: Deadline,
    f: impl FnMut(Document, usize) -> Result<bool>,
) -> Result<Access> {
    let plan = plan::choose(state.collection(ns)?.as_ref(), filter, sort, hint)?;
    for_each_in_plan(state, ns, filter, plan, deadline, f)
}

/// [`for_each_planned`] through a plan already chosen.
fn for_each_in_plan(
    state: &BranchState,
    ns: &Namespace,
    filter: &Filter,
    plan: plan::Plan,
    deadline: Deadline,
    mut f: impl FnMut(Document, usize) -> Result<bool>,
) -> Result<Access> {
    let coll = state.collection(ns)?;
    let mut access = Access::new(plan);
    let Some(coll) = coll else {
        return Ok(access);
    };
    let mut stop = false;
    access.run(&coll, deadline, |raw| {
        if stop {
            return Ok(false);
        }
        let d = argon_wal::rawdoc::parse(raw);
        if (filter.is_empty() || filter.try_matches(&d)?) && !f(d, raw.as_bytes().len())? {
            stop = true;
        }
        Ok(true)
    })?;
    Ok(access)
}

/// How many documents of `ns` match `filter` (no parse for an empty filter).
fn count_matching(
    state: &BranchState,
    ns: &Namespace,
    filter: &Filter,
    hint: Option<&Bson>,
    deadline: Deadline,
) -> Result<usize> {
    let hinted = hint.is_some_and(|h| !matches!(h, Bson::Null));
    Ok(match state.collection(ns)? {
        Some(coll) if filter.is_empty() && !hinted => coll.len()? as usize,
        Some(_) => {
            let mut n = 0usize;
            for_each_planned(state, ns, filter, None, hint, deadline, |_, _| {
                n += 1;
                Ok(true)
            })?;
            n
        }
        None => 0,
    })
}

/// A command's filter with its variables bound, as sent (a read of a view
/// passes it on as `$match`) and parsed.
fn parse_filter(cmd: &Document, key: &str, vars: &Vars) -> Result<(Option<Document>, Filter)> {
    match opt_doc(cmd, key)? {
        Some(d) => {
            let bound = vars.bind_filter(d)?;
            let filter = Filter::parse_query(&bound)?;
            Ok((Some(bound), filter))
        }
        None => Ok((None, Filter::And(Vec::new()))),
    }
}

/// Runs `stages` after a view's pipeline, over the collection under it,
/// to the end (a count's or a distinct's input), batch by batch.
fn run_view(
    state: &BranchState,
    db: &str,
    view: view::Resolved,
    stages: Vec<Bson>,
    budget: StageBudget,
    deadline: Deadline,
    mut each: impl FnMut(Document) -> Result<()>,
) -> Result<()> {
    let mut all = view.pipeline;
    all.extend(stages);
    view::refuse_lookups_of_views(state, db, &all)?;
    let pipeline = Pipeline::parse(&all)?;
    let mut scan = PipelineScan::new(state.clone(), db, &view.source, pipeline, budget);
    loop {
        for d in scan.next_batch(1000, deadline)? {
            if let Bson::Document(d) = d {
                each(d)?;
            }
        }
        if scan.is_done() {
            return Ok(());
        }
    }
}

/// `tailable` and `awaitData` of a find: `Some(await_data)` for a tailable
/// cursor; MongoDB's errors on a collection that is not capped, with a
/// sort, or `awaitData` alone.
fn tailable(cmd: &Document, coll: &str, capped: bool) -> Result<Option<bool>> {
    let tailable = opt_bool(cmd, "tailable", false)?;
    let await_data = opt_bool(cmd, "awaitData", false)?;
    if await_data && !tailable {
        return Err(CommandError::failed_to_parse(
            "Cannot set 'awaitData' without also setting 'tailable'",
        ));
    }
    if !tailable {
        return Ok(None);
    }
    // As mongod's `validateFindCommandRequest`, before the collection is
    // looked at.
    let natural = doc! {"$natural": 1};
    if opt_doc(cmd, "sort")?.is_some_and(|s| !s.is_empty() && *s != natural) {
        return Err(CommandError::bad_value(
            "cannot use tailable option with a sort other than {$natural: 1}",
        ));
    }
    if opt_bool(cmd, "singleBatch", false)? {
        return Err(CommandError::bad_value(
            "cannot use tailable option with the 'singleBatch' option",
        ));
    }
    if !capped {
        return Err(CommandError::bad_value(format!(
            "error processing query: ns={coll} tailable cursor requested on non capped collection"
        )));
    }
    // mongod's tailable plan is a collection scan in the hint's
    // direction; a backward one returns the newest documents first and
    // then never what is inserted after them. The tail here only reads
    // forward, so that one is refused by name rather than read forward.
    if let Some(Bson::Document(h)) = cmd.get("hint")
        && h.contains_key("$natural")
        && !options::natural_direction(h, "hint")?
    {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            "a tailable cursor with hint {$natural: -1} is not supported by Argon",
        ));
    }
    Ok(Some(await_data))
}

/// How long a `getMore` of an `awaitData` cursor waits for new documents
/// when it gives no `maxTimeMS` (the driver's `maxAwaitTimeMS`): MongoDB's
/// 1 s.
const DEFAULT_AWAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How often a waiting `getMore` looks at the branch's head.
const AWAIT_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// A `getMore` of a tailable cursor: the documents inserted since, after
/// waiting for some (up to `maxTimeMS`) when it is `awaitData`.
async fn tail_more(
    ctx: &Ctx<'_>,
    id: i64,
    mut tail: crate::cursor::Tail,
    info: crate::current_op::CursorInfo,
    batch: Option<usize>,
) -> Result<Document> {
    let wait = match opt_i64(ctx.cmd, "maxTimeMS")? {
        Some(ms) if ms > 0 => std::time::Duration::from_millis(ms.unsigned_abs()),
        _ => DEFAULT_AWAIT,
    };
    let until = std::time::Instant::now() + wait;
    let no_read_options = Document::new();
    loop {
        let state = ctx.svc.read_state(&tail.target, &no_read_options).await?;
        // An error kills the cursor, as in MongoDB (it is not put back).
        let docs = tail.next_batch(&state, batch.unwrap_or(usize::MAX))?;
        if !docs.is_empty() || !tail.await_data || std::time::Instant::now() >= until {
            let shown = tail.shown.clone();
            ctx.svc.cursors.return_tail(id, tail, info, docs.len());
            return Ok(cursor_reply(&shown, docs, id, false));
        }
        tokio::time::sleep(
            AWAIT_POLL.min(until.saturating_duration_since(std::time::Instant::now())),
        )
        .await;
    }
}

pub async fn find(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "find")?;
    options::FIND.check(ctx.cmd, Some("find"))?;
    let own_collation = options::collation(ctx.cmd)?;
    let target = ctx.target()?;
    let vars = Vars::parse(ctx.cmd.get("let"))?;
    let (filter_doc, filter) = parse_filter(ctx.cmd, "filter", &vars)?;
    // `sort: {$natural: ±1}` is a hint (MongoDB's canonical query).
    let natural = options::natural_sort(opt_doc(ctx.cmd, "sort")?, ctx.cmd.get("hint"))?;
    let sort = match natural {
        Some(_) => None,
        None => opt_doc(ctx.cmd, "sort")?.map(SortSpec::parse).transpose()?,
    };
    let hint = natural.as_ref().or(ctx.cmd.get("hint"));
    let empty = Document::new();
    let projection = opt_doc(ctx.cmd, "projection")?
        .filter(|p| !p.is_empty())
        .map(|p| Projection::parse_find(p, filter_doc.as_ref().unwrap_or(&empty)))
        .transpose()?;
    // `returnKey` replaces the projection, which is still checked (as
    // MongoDB parses it before its ReturnKeyStage drops it).
    let return_key = opt_bool(ctx.cmd, "returnKey", false)?;
    if let Some(p) = &projection
        && natural.is_none()
    {
        let metas = p.find_metas();
        crate::query::find_meta::check_sort_key(&metas, sort.as_ref())?;
        if return_key && metas.contains(&crate::query::find_meta::FindMeta::SortKey) {
            // mongod's ReturnKeyStage keeps the sortKey fields beside the key.
            return Err(CommandError::new(
                ErrorCode::CommandNotSupported,
                "returnKey with {$meta: \"sortKey\"} is not supported by Argon",
            ));
        }
    }
    let projection = if return_key {
        Some(Projection::return_key())
    } else {
        projection
    };
    let skip = opt_i64(ctx.cmd, "skip")?.unwrap_or(0);
    if skip < 0 {
        return Err(CommandError::bad_value(
            "BSON field 'skip' value must be >= 0",
        ));
    }
    let limit = opt_i64(ctx.cmd, "limit")?.unwrap_or(0);
    if limit < 0 {
        return Err(CommandError::bad_value(
            "BSON field 'limit' value must be >= 0",
        ));
    }
    let batch = batch_size(Some(ctx.cmd))?;
    let single_batch = opt_bool(ctx.cmd, "singleBatch", false)? || limit == 1;
    let min = plan::min_max::field(ctx.cmd, "min")?;
    let max = plan::min_max::field(ctx.cmd, "max")?;
    let bounded = plan::min_max::check(&min, &max, hint)?;
    let deadline = ctx.deadline()?;
    let state = ctx.read_state(&target).await?;
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let tail = tailable(
        ctx.cmd,
        &coll,
        state.collection(&ns)?.is_some_and(|c| c.is_capped()),
    )?;
    if sort
        .as_ref()
        .is_some_and(|s| s.uses_meta(crate::query::meta::MetaName::GeoNearDistance))
    {
        // A find measures distances in its projection, not its sort.
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            "a find's sort by {$meta: \"geoNearDistance\"} is not supported by Argon",
        ));
    }
    // `{$meta: "textScore"}` needs the query's `$text` (MongoDB's 40218).
    if filter.text_query().is_none()
        && (sort.as_ref().is_some_and(SortSpec::uses_text_score)
            || ctx.cmd.get("projection").is_some_and(text::mentions_score))
    {
        return Err(text::no_score());
    }
    if tail.is_some() && filter.text_query().is_some() {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            "$text in a tailable cursor is not supported by Argon",
        ));
    }
    if view::is_view(state.collection(&ns)?.as_ref()) {
        // A find of a view runs as an aggregation, which has no min/max
        // and no natural order (MongoDB's `asAggregationCommand`, before
        // the hint is looked at).
        if return_key {
            return Err(CommandError::new(
                ErrorCode::InvalidPipelineOperator,
                "Option returnKey not supported in aggregation.",
            ));
        }
        for (name, given) in [("min", &min), ("max", &max)] {
            if !given.is_empty() {
                return Err(CommandError::new(
                    ErrorCode::InvalidPipelineOperator,
                    format!("Option {name} not supported in aggregation."),
                ));
            }
        }
        if natural.is_some() {
            return Err(CommandError::new(
                ErrorCode::InvalidPipelineOperator,
                "Sort option $natural not supported in aggregation.",
            ));
        }
    }
    check_hint(ctx.cmd.get("hint"), state.collection(&ns)?.as_ref())?;
    if bounded && tail.is_some() {
        return Err(CommandError::bad_value(
            "min/max cannot be used with a tailable cursor",
        ));
    }
    if projection.as_ref().is_some_and(Projection::reads_index_key)
        && (filter.text_query().is_some() || crate::query::geo::near_of(&filter).is_some())
    {
        // Their keys are a text or geo index's (terms, cells), which Argon
        // does not build.
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            "returnKey and {$meta: \"indexKey\"} with $text, $near or $nearSphere are not supported by Argon",
        ));
    }
    let shown = format!("{}.{coll}", target.raw);
    if let Some(await_data) = tail {
        // A tailable cursor reads the collection in natural order.
        let projection = projection.map(|p| {
            let natural = plan::Plan::Natural(argon_wal::ScanDirection::Forward);
            p.with_metadata(FindMetadata::of(&natural, &filter))
        });
        let collation =
            collation::for_collection(own_collation.as_ref(), state.collection(&ns)?.as_ref())?;
        let mut tail = crate::cursor::Tail {
            shown: shown.clone(),
            target: target.clone(),
            ns,
            filter,
            projection,
            last: None,
            await_data,
            collation,
            last_used: std::time::Instant::now(),
        };
        let first = tail.next_batch(&state, batch.unwrap_or(crate::cursor::FIRST_BATCH))?;
        let info = ctx.cursor_info(&shown).tailable(await_data);
        let id = ctx.svc.cursors.open_tail(tail, info, first.len());
        let mut out = cursor_reply(&shown, first, id, true);
        out.insert("operationTime", operation_time(state.time()));
        return Ok(out);
    }
    if let Some(view) = view::resolve(&state, &target.db, &coll)? {
        // The view's pipeline, then the find as stages (as MongoDB runs it).
        let _collation = view.collation_for(own_collation.as_ref())?.enter();
        let mut stages = view.pipeline;
        stages.extend(view::find_stages(
            filter_doc,
            opt_doc(ctx.cmd, "sort")?,
            skip,
            limit,
            opt_doc(ctx.cmd, "projection")?,
        ));
        view::refuse_lookups_of_views(&state, &target.db, &stages)?;
        let pipeline = Pipeline::parse(&stages)?;
        let allow_disk = opt_bool(ctx.cmd, "allowDiskUse", true)?;
        let budget = StageBudget::new(ctx.svc.blocking_sort_bytes(), allow_disk);
        let scan = PipelineScan::new(state.clone(), &target.db, &view.source, pipeline, budget);
        let (first, id) = ctx.svc.cursors.open_pipeline(
            ctx.cursor_info(&shown),
            scan,
            batch,
            single_batch,
            deadline,
        )?;
        let mut out = cursor_reply(&shown, first, id, true);
        out.insert("operationTime", operation_time(state.time()));
        return Ok(out);
    }
    // Every comparison below (and the cursor's later batches) under the
    // command's collation, or the collection's default.
    let _collation =
        collation::for_collection(own_collation.as_ref(), state.collection(&ns)?.as_ref())?.enter();
    // The `$text` query bound to the collection's text index: matching,
    // scores, and the cursor's later batches (which keep it).
    let _text = text::bind(&filter, state.collection(&ns)?.as_ref())?.enter();
    crate::query::geo::require_index(&filter, state.collection(&ns)?.as_ref())?;
    let sort = sort.filter(|s| !s.is_empty());
    let near_first = sort.is_none() && crate::query::geo::near_of(&filter).is_some();
    if bounded && crate::query::geo::near_of(&filter).is_some() {
        return Err(CommandError::new(
            ErrorCode::NoQueryExecutionPlans,
            "min/max cannot be used with $near or $nearSphere",
        ));
    }
    let plan = plan::choose_bounded(
        state.collection(&ns)?.as_ref(),
        &filter,
        sort.as_ref(),
        hint,
        &min,
        &max,
    )?;
    let projection = projection
        .map(|p| p.with_metadata(FindMetadata::of(&plan, &filter).sorted_by(sort.as_ref())));
    let sort = sort.or(index_order(&plan)?);
    let (first, id) = match &sort {
        _ if near_first => {
            // `$near`/`$nearSphere` without a sort: nearest first, through
            // the blocking sort like any sort.
            let allow_disk = opt_bool(ctx.cmd, "allowDiskUse", true)?;
            let top = (limit > 0)
                .then(|| usize::try_from(skip.saturating_add(limit)).unwrap_or(usize::MAX));
            let budget = StageBudget::new(ctx.svc.blocking_sort_bytes(), allow_disk);
            let sorted = near_matching(&state, &ns, &filter, top, budget, deadline)?;
            let sorted = SortedScan::new(
                sorted,
                projection,
                usize::try_from(skip).unwrap_or(usize::MAX),
                (limit > 0).then(|| usize::try_from(limit).unwrap_or(usize::MAX)),
            );
            ctx.svc.cursors.open_sorted(
                ctx.cursor_info(&shown),
                sorted,
                batch,
                single_batch,
                deadline,
            )?
        }
        Some(s) if !plan.provides_sort() => {
            // A sort is blocking: every match first (spilled to disk past
            // the blocking-stage budget), then the order.
            let allow_disk = opt_bool(ctx.cmd, "allowDiskUse", true)?;
            // With a limit, only the first skip + limit in order are kept
            // (a top-k sort).
            let top = (limit > 0)
                .then(|| usize::try_from(skip.saturating_add(limit)).unwrap_or(usize::MAX));
            let budget = StageBudget::new(ctx.svc.blocking_sort_bytes(), allow_disk);
            let sorted = sort_matching(&state, &ns, &filter, plan, s, top, budget, deadline)?;
            let sorted = SortedScan::new(
                sorted,
                projection,
                usize::try_from(skip).unwrap_or(usize::MAX),
                (limit > 0).then(|| usize::try_from(limit).unwrap_or(usize::MAX)),
            );
            ctx.svc.cursors.open_sorted(
                ctx.cursor_info(&shown),
                sorted,
                batch,
                single_batch,
                deadline,
            )?
        }
        _ => {
            // Streams through the plan (whose order is the sort, if any):
            // each batch is read from the state when asked for, and the
            // scan stops at `limit`.
            let scan = Scan::planned(
                state.clone(),
                ns,
                filter,
                projection,
                usize::try_from(skip).unwrap_or(usize::MAX),
                (limit > 0).then(|| usize::try_from(limit).unwrap_or(usize::MAX)),
                plan,
            );
            ctx.svc.cursors.open_scan(
                ctx.cursor_info(&shown),
                scan,
                batch,
                single_batch,
                deadline,
            )?
        }
    };
    let mut out = cursor_reply(&shown, first, id, true);
    out.insert("operationTime", operation_time(state.time()));
    Ok(out)
}

/// The sort that gives an unsorted scan of `plan`'s index its index order,
/// when the scan alone does not: key maps are ascending on every field, so
/// on an index with fields in both directions (`{a: 1, b: -1}`) they run
/// `a` ascending then `b` ascending, where MongoDB returns index order
/// (`b` descending within each `a`). Sorting by the key pattern gives it
/// exactly for a non-multikey index (a document has one key there, and a
/// missing field sorts as the null it is indexed as). A multikey index's
/// order is each key's, which no document sort gives: left as scanned.
fn index_order(plan: &plan::Plan) -> Result<Option<SortSpec>> {
    let plan::Plan::Index(p) = plan else {
        return Ok(None);
    };
    let ascending = |v: &bson::Bson| crate::query::compare::as_f64(v).is_none_or(|d| d >= 0.0);
    let mixed = {
        let mut directions = p.key_pattern.values().map(ascending);
        let first = directions.next();
        directions.any(|d| Some(d) != first)
    };
    if p.multikey || !mixed {
        return Ok(None);
    }
    let pattern: Document = p
        .key_pattern
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                bson::Bson::Int32(if ascending(v) { 1 } else { -1 }),
            )
        })
        .collect();
    SortSpec::parse(&pattern).map(Some)
}

/// The documents of `ns` matching `filter`, sorted within the server's
/// blocking-sort budget (see `spill`); only the first `top` when given.
#[allow(clippy::too_many_arguments)]
fn sort_matching(
    state: &BranchState,
    ns: &Namespace,
    filter: &Filter,
    plan: plan::Plan,
    spec: &SortSpec,
    top: Option<usize>,
    budget: StageBudget,
    deadline: Deadline,
) -> Result<Sorted> {
    let mut sorter = ExternalSorter::new(spec.clone(), budget).with_limit(top);
    for_each_in_plan(state, ns, filter, plan, deadline, |d, _| {
        sorter.push(&d)?;
        Ok(true)
    })?;
    sorter.finish()
}

/// The documents of `ns` matching `filter` (which has a `$near`), nearest
/// first, within the blocking-sort budget; only the first `top` when given.
fn near_matching(
    state: &BranchState,
    ns: &Namespace,
    filter: &Filter,
    top: Option<usize>,
    budget: StageBudget,
    deadline: Deadline,
) -> Result<Sorted> {
    let mut sorter = crate::query::geo::DistanceSorter::new(budget, top);
    let near = crate::query::geo::near_of(filter);
    if let (Some(top), Some((path, n)), Some(coll)) = (top, near, state.collection(ns)?)
        && let Some((spec, field)) = plan::geo::near_index(&coll, path, n)
    {
        near_by_rings(
            state,
            ns,
            filter,
            (path, n),
            (spec, field),
            top,
            &mut sorter,
            deadline,
        )?;
        return sorter.finish();
    }
    for_each_planned(state, ns, filter, None, None, deadline, |d, _| {
        let distance = near
            .and_then(|(path, n)| n.distance(&crate::query::path::resolve(&d, path).values))
            .unwrap_or(f64::INFINITY);
        sorter.push(distance, d)?;
        Ok(true)
    })?;
    sorter.finish()
}

/// `$near` with a limit over a geo index: caps (or boxes) of doubling
/// radius around the point, each read through the index, every new
/// matching candidate measured once and given to `sorter` (which keeps the
/// nearest `top`, ties by `_id` as for a scan). Once `top` of them lie
/// within the current radius, or the radius reaches `$maxDistance` or
/// covers everything, no unread document can be nearer: it stops. Each
/// round re-reads the previous rounds' keys (skipping their documents),
/// at most a constant factor over the final round's.
#[allow(clippy::too_many_arguments)]
fn near_by_rings(
    state: &BranchState,
    ns: &Namespace,
    filter: &Filter,
    (path, near): (&str, &crate::query::geo::Near),
    (spec, field): (&Document, argon_wal::indexkey::geo::GeoField),
    top: usize,
    sorter: &mut crate::query::geo::DistanceSorter,
    deadline: Deadline,
) -> Result<()> {
    use crate::query::geo::Units;
    use argon_wal::indexkey::geo::GeoField;
    let name = spec.get_str("name").unwrap_or_default();
    let multikey = state
        .collection(ns)?
        .and_then(|c| c.index_shape(name))
        .is_some_and(|s| s.multikey);
    // Everything lies within this radius (the query's units).
    let everything = match (field, near.units) {
        (GeoField::Sphere, Units::Meters) => {
            std::f64::consts::PI * crate::query::geo::sphere::EARTH_RADIUS_METERS
        }
        (GeoField::Sphere, _) => std::f64::consts::PI,
        (GeoField::Flat(f), _) => {
            let span = f.max - f.min;
            let p = near.point;
            let far = |c: f64| (c - f.min).abs().max((c - f.max).abs());
            (far(p.x).max(far(p.y)) + span).max(span)
        }
    };
    let mut radius = match (field, near.units) {
        (GeoField::Sphere, Units::Meters) => 1_000.0,
        (GeoField::Sphere, _) => 1_000.0 / crate::query::geo::sphere::EARTH_RADIUS_METERS,
        (GeoField::Flat(f), _) => (f.max - f.min) / 4096.0,
    }
    .max(near.min);
    let mut seen: std::collections::HashSet<argon_wal::IdKey> = Default::default();
    let mut distances: Vec<f64> = Vec::new();
    loop {
        let last = radius >= near.max || radius >= everything;
        let r = radius.min(near.max).min(everything);
        let ranges = plan::geo::near_ranges(near, field, r);
        let scan = plan::geo::scan_of(name, spec, multikey, ranges);
        for_each_in_plan(
            state,
            ns,
            filter,
            plan::Plan::Index(scan),
            deadline,
            |d, _| {
                let id = argon_wal::IdKey::from_bson(d.get("_id").unwrap_or(&Bson::Null));
                if seen.insert(id) {
                    let distance = near
                        .distance(&crate::query::path::resolve(&d, path).values)
                        .unwrap_or(f64::INFINITY);
                    distances.push(distance);
                    sorter.push(distance, d)?;
                }
                Ok(true)
            },
        )?;
        if last || distances.iter().filter(|d| **d <= r).count() >= top {
            return Ok(());
        }
        radius *= 2.0;
    }
}

pub async fn get_more(ctx: &Ctx<'_>) -> Result<Document> {
    options::GET_MORE.check(ctx.cmd, Some("getMore"))?;
    let id = match ctx.cmd.get("getMore") {
        Some(Bson::Int64(id)) => *id,
        Some(Bson::Int32(id)) => *id as i64,
        _ => {
            return Err(CommandError::type_mismatch(
                "getMore's cursor id must be a long",
            ));
        }
    };
    let batch = batch_size(Some(ctx.cmd))?.filter(|n| *n > 0);
    may_use_cursor(ctx, id)?;
    if let Some((tail, info)) = ctx.svc.cursors.take_tail(id) {
        return tail_more(ctx, id, tail, info, batch).await;
    }
    let (ns, docs, next) = ctx
        .svc
        .cursors
        .next_batch(id, batch)
        .ok_or_else(|| crate::cursor::not_found(id))??;
    Ok(cursor_reply(&ns, docs, next, false))
}

/// Only the user who opened a cursor reads more of it or kills it, when
/// the server authenticates (mongod: Unauthorized, 13): a cursor id is not
/// a capability. An id no cursor has falls through to "not found".
fn may_use_cursor(ctx: &Ctx<'_>, id: i64) -> Result<()> {
    if !ctx.svc.auth_required() {
        return Ok(());
    }
    match ctx.svc.cursors.opener(id) {
        Some(opener) if opener != ctx.conn.auth().user => Err(CommandError::new(
            ErrorCode::Unauthorized,
            format!("cursor id {id} was not created by the authenticated user"),
        )),
        _ => Ok(()),
    }
}

pub async fn kill_cursors(ctx: &Ctx<'_>) -> Result<Document> {
    let _ = collection_name(ctx.cmd, "killCursors")?;
    options::KILL_CURSORS.check(ctx.cmd, Some("killCursors"))?;
    let ids: Vec<i64> = match ctx.cmd.get("cursors") {
        Some(Bson::Array(a)) => a
            .iter()
            .map(|v| match v {
                Bson::Int64(i) => Ok(*i),
                Bson::Int32(i) => Ok(*i as i64),
                _ => Err(CommandError::type_mismatch("cursor ids must be longs")),
            })
            .collect::<Result<_>>()?,
        _ => {
            return Err(CommandError::failed_to_parse(
                "killCursors needs a 'cursors' array",
            ));
        }
    };
    for id in &ids {
        may_use_cursor(ctx, *id)?;
    }
    let (killed, not_found) = ctx.svc.cursors.kill(&ids);
    Ok(
        doc! {"cursorsKilled": killed, "cursorsNotFound": not_found, "cursorsAlive": [], "cursorsUnknown": []},
    )
}

pub async fn count(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "count")?;
    options::COUNT.check(ctx.cmd, Some("count"))?;
    let own_collation = options::collation(ctx.cmd)?;
    let target = ctx.target()?;
    let (filter_doc, filter) = parse_filter(ctx.cmd, "query", &Vars::default())?;
    let skip = opt_i64(ctx.cmd, "skip")?.unwrap_or(0).max(0) as usize;
    let limit = opt_i64(ctx.cmd, "limit")?.unwrap_or(0).unsigned_abs() as usize;
    let state = ctx.read_state(&target).await?;
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    check_hint(ctx.cmd.get("hint"), state.collection(&ns)?.as_ref())?;
    if let Some(view) = view::resolve(&state, &target.db, &coll)? {
        let _collation = view.collation_for(own_collation.as_ref())?.enter();
        let mut stages = view::find_stages(filter_doc, None, skip as i64, limit as i64, None);
        stages.push(Bson::Document(doc! {"$count": "n"}));
        let budget = StageBudget::new(ctx.svc.blocking_sort_bytes(), true);
        let mut n = 0i64;
        run_view(
            &state,
            &target.db,
            view,
            stages,
            budget,
            ctx.deadline()?,
            |d| {
                n = d
                    .get_i64("n")
                    .or_else(|_| d.get_i32("n").map(i64::from))
                    .unwrap_or(0);
                Ok(())
            },
        )?;
        return Ok(
            doc! {"n": super::count_value(n), "operationTime": operation_time(state.time())},
        );
    }
    let _collation =
        collation::for_collection(own_collation.as_ref(), state.collection(&ns)?.as_ref())?.enter();
    let _text = text::bind(&filter, state.collection(&ns)?.as_ref())?.enter();
    crate::query::geo::require_index(&filter, state.collection(&ns)?.as_ref())?;
    let mut n = if filter.is_empty() {
        match state.collection(&ns)? {
            Some(c) => c.len()? as usize,
            None => 0,
        }
    } else {
        count_matching(&state, &ns, &filter, ctx.cmd.get("hint"), ctx.deadline()?)?
    };
    n = n.saturating_sub(skip);
    if limit > 0 {
        n = n.min(limit);
    }
    Ok(doc! {"n": super::count_value(n as i64), "operationTime": operation_time(state.time())})
}

/// Values `distinct` collects before it drops duplicates (a blocking stage's budget).
const DISTINCT_COLLECT_BYTES: usize = crate::limits::MAX_BLOCKING_STAGE_BYTES;

pub async fn distinct(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "distinct")?;
    options::DISTINCT.check(ctx.cmd, Some("distinct"))?;
    let own_collation = options::collation(ctx.cmd)?;
    let target = ctx.target()?;
    let key = match ctx.cmd.get("key") {
        Some(Bson::String(k)) if !k.is_empty() => k.clone(),
        _ => {
            return Err(CommandError::failed_to_parse(
                "distinct needs a non-empty string 'key'",
            ));
        }
    };
    let (filter_doc, filter) = parse_filter(ctx.cmd, "query", &Vars::default())?;
    let state = ctx.read_state(&target).await?;
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    check_hint(ctx.cmd.get("hint"), state.collection(&ns)?.as_ref())?;
    let view = view::resolve(&state, &target.db, &coll)?;
    // Values equal under the collation are one value (the first in order).
    let _collation = match &view {
        Some(v) => v.collation_for(own_collation.as_ref())?,
        None => collation::for_collection(own_collation.as_ref(), state.collection(&ns)?.as_ref())?,
    }
    .enter();
    let _text = text::bind(&filter, state.collection(&ns)?.as_ref())?.enter();
    crate::query::geo::require_index(&filter, state.collection(&ns)?.as_ref())?;
    let deadline = ctx.deadline()?;
    let docs: Vec<Document> = match view {
        Some(view) => {
            let mut docs = Vec::new();
            let stages = view::find_stages(filter_doc, None, 0, 0, None);
            let budget = StageBudget::new(ctx.svc.blocking_sort_bytes(), true);
            let mut bytes = 0usize;
            run_view(&state, &target.db, view, stages, budget, deadline, |d| {
                // Bounded as a blocking stage is.
                bytes = bytes.saturating_add(crate::limits::bson_size(&Bson::Document(d.clone())));
                if bytes > DISTINCT_COLLECT_BYTES {
                    return Err(CommandError::new(
                        ErrorCode::ExceededMemoryLimit,
                        format!(
                            "distinct over a view used more than {DISTINCT_COLLECT_BYTES} bytes"
                        ),
                    ));
                }
                docs.push(d);
                Ok(())
            })?;
            docs
        }
        None => {
            let mut found = Vec::new();
            for_each_planned(
                &state,
                &ns,
                &filter,
                None,
                ctx.cmd.get("hint"),
                deadline,
                |d, _| {
                    found.push(d);
                    Ok(true)
                },
            )?;
            found
        }
    };
    use crate::query::compare::{compare, equal, type_rank};
    // Collect, sort, then drop neighbours that are the same value: O(n log n).
    let mut values: Vec<Bson> = Vec::new();
    let mut bytes = 0usize;
    for d in docs {
        for v in crate::query::path::resolve(&d, &key).values {
            let items: Vec<&Bson> = match v {
                Bson::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            for i in items {
                bytes = bytes.saturating_add(crate::limits::bson_size(i));
                values.push(i.clone());
            }
        }
        if bytes > DISTINCT_COLLECT_BYTES {
            // Bound what duplicates can cost before they are dropped.
            values.sort_by(compare);
            values.dedup_by(|a, b| type_rank(a) == type_rank(b) && equal(a, b));
            bytes = values.iter().map(crate::limits::bson_size).sum();
        }
    }
    values.sort_by(compare);
    values.dedup_by(|a, b| type_rank(a) == type_rank(b) && equal(a, b));
    let size: usize = values.iter().map(crate::limits::bson_size).sum();
    if size > crate::limits::MAX_DOCUMENT_SIZE {
        return Err(CommandError::new(
            ErrorCode::Location17217,
            "distinct too big, 16mb cap",
        ));
    }
    Ok(doc! {"values": values, "operationTime": operation_time(state.time())})
}

pub async fn aggregate(ctx: &Ctx<'_>) -> Result<Document> {
    let target = ctx.target()?;
    let coll = match ctx.cmd.get("aggregate") {
        Some(Bson::String(_)) => collection_name(ctx.cmd, "aggregate")?,
        Some(v) if crate::query::compare::as_f64(v) == Some(1.0) => {
            return aggregate_database(ctx, target).await;
        }
        _ => {
            return Err(CommandError::type_mismatch(
                "BSON field 'aggregate' must be a collection name or 1",
            ));
        }
    };
    let stages = match ctx.cmd.get("pipeline") {
        Some(Bson::Array(a)) => a,
        _ => return Err(CommandError::type_mismatch("'pipeline' must be an array")),
    };
    options::AGGREGATE.check(ctx.cmd, Some("aggregate"))?;
    match ctx.cmd.get("explain") {
        None | Some(Bson::Boolean(false)) => {}
        Some(Bson::Boolean(true)) => return super::explain::aggregate_explain(ctx).await,
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'aggregate.explain' is the wrong type '{}', expected type 'bool'",
                crate::query::expr::type_name(other)
            )));
        }
    }
    let own_collation = options::collation(ctx.cmd)?;
    let vars = Vars::parse(ctx.cmd.get("let"))?;
    let cursor = match ctx.cmd.get("cursor") {
        Some(Bson::Document(c)) => c,
        _ => {
            return Err(CommandError::failed_to_parse(
                "The 'cursor' option is required, except for aggregate with the explain argument",
            ));
        }
    };
    let mut stages = vars.bind_pipeline(stages)?;
    let output = super::merge::take_output_stage(&mut stages)?;
    let pipeline = Pipeline::parse(&stages)?;
    let allow_disk = opt_bool(ctx.cmd, "allowDiskUse", true)?;
    let budget = StageBudget::new(ctx.svc.blocking_sort_bytes(), allow_disk);
    if let Some(stage) = output {
        return super::merge::aggregate_into(
            ctx,
            target,
            coll,
            pipeline,
            stage,
            budget,
            own_collation,
        )
        .await;
    }
    let deadline = ctx.deadline()?;
    let state = ctx.read_state(&target).await?;
    let source = state.collection(&Namespace::new(target.db.as_str(), coll.as_str()))?;
    check_hint(ctx.cmd.get("hint"), source.as_ref())?;
    let (read_coll, pipeline, collation) = match view::resolve(&state, &target.db, &coll)? {
        // A view: its pipeline first, over the collection under it.
        Some(view) => {
            let collation = view.collation_for(own_collation.as_ref())?;
            let mut all = view.pipeline;
            all.extend(stages);
            view::refuse_lookups_of_views(&state, &target.db, &all)?;
            (view.source, Pipeline::parse(&all)?, collation)
        }
        None => {
            view::refuse_lookups_of_views(&state, &target.db, &stages)?;
            (
                coll.clone(),
                pipeline,
                collation::for_collection(own_collation.as_ref(), source.as_ref())?,
            )
        }
    };
    let _collation = collation.enter();
    let read_ns = Namespace::new(target.db.as_str(), read_coll.as_str());
    let mut pipeline = pipeline;
    pipeline.bind_geo_near(
        state.collection(&read_ns)?.as_ref(),
        &format!("{}.{read_coll}", target.raw),
    )?;
    let _text = match pipeline.leading_filter() {
        Some(f) => text::bind(f, state.collection(&read_ns)?.as_ref())?,
        None => text::Binding::none(),
    }
    .enter();
    let time = state.time();
    // Streams: the first batch runs the pipeline only as far as it needs
    // (all of a blocking stage's input, none past a $limit); getMore runs
    // it further.
    let scan = PipelineScan::hinted(
        state,
        &target.db,
        &read_coll,
        pipeline,
        budget,
        ctx.cmd.get("hint"),
    );
    let shown = format!("{}.{coll}", target.raw);
    let (first, id) = ctx.svc.cursors.open_pipeline(
        ctx.cursor_info(&shown),
        scan,
        batch_size(Some(cursor))?,
        false,
        deadline,
    )?;
    let mut reply = cursor_reply(&shown, first, id, true);
    reply.insert("operationTime", operation_time(time));
    Ok(reply)
}

/// `$listLocalSessions`: the sessions this server holds, as mongod's
/// session cache lists them (`{_id: {id, uid}, lastUse}`), the command's own
/// session included (mongod registers it before running the command).
/// Sessions are not bound to users here, so every `uid` is that of no user
/// (SHA-256 of the empty name, as mongod without authentication) and the
/// stage is refused under `--auth`, where it would list other users'
/// sessions; `users` is refused by name.
fn list_local_sessions(ctx: &Ctx<'_>, arg: &Bson) -> Result<Vec<Document>> {
    use sha2::Digest;
    let Bson::Document(spec) = arg else {
        return Err(CommandError::type_mismatch(
            "$listLocalSessions takes an object",
        ));
    };
    for (k, v) in spec {
        match (k.as_str(), v) {
            ("allUsers", Bson::Boolean(_)) => {}
            ("allUsers", _) => {
                return Err(CommandError::type_mismatch(
                    "$listLocalSessions.allUsers must be a boolean",
                ));
            }
            ("users", _) => {
                return Err(CommandError::not_implemented(
                    "$listLocalSessions with users",
                ));
            }
            (other, _) => {
                return Err(CommandError::new(
                    ErrorCode::Location40415,
                    format!("BSON field '$listLocalSessions.{other}' is an unknown field."),
                ));
            }
        }
    }
    if ctx.svc.auth_required() {
        return Err(CommandError::not_implemented(
            "$listLocalSessions with authentication (sessions are not bound to users yet)",
        ));
    }
    let now = std::time::Instant::now();
    let wall = std::time::SystemTime::now();
    let mut sessions = ctx.svc.sessions.list();
    if let Some(own) = crate::session::session_id(ctx.cmd)
        && !sessions.iter().any(|(id, _)| *id == own)
    {
        sessions.push((own, now));
    }
    let uid = bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: sha2::Sha256::digest(b"").to_vec(),
    };
    Ok(sessions
        .into_iter()
        .map(|(id, used)| {
            let last_use = wall - now.saturating_duration_since(used);
            doc! {
                "_id": {
                    "id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: id },
                    "uid": uid.clone(),
                },
                "lastUse": bson::DateTime::from_system_time(last_use),
            }
        })
        .collect())
}

/// `aggregate: 1`: a pipeline with no collection, which must start with a
/// stage that makes its own documents: `$documents`, `$listLocalSessions`,
/// `$currentOp`; the other server-state sources are refused by name. The documents come from the command itself, so the
/// whole result is computed at once (bounded by the command's size and the
/// stages' budgets).
async fn aggregate_database(ctx: &Ctx<'_>, target: crate::target::Target) -> Result<Document> {
    options::AGGREGATE.check(ctx.cmd, Some("aggregate"))?;
    let own_collation = options::collation(ctx.cmd)?.unwrap_or_default();
    let stages = match ctx.cmd.get("pipeline") {
        Some(Bson::Array(a)) => a,
        _ => return Err(CommandError::type_mismatch("'pipeline' must be an array")),
    };
    let cursor = match ctx.cmd.get("cursor") {
        Some(Bson::Document(c)) => c,
        _ => {
            return Err(CommandError::failed_to_parse(
                "The 'cursor' option is required, except for aggregate with the explain argument",
            ));
        }
    };
    let vars = Vars::parse(ctx.cmd.get("let"))?;
    let mut stages = vars.bind_pipeline(stages)?;
    let first = match stages.first() {
        Some(Bson::Document(d)) if d.len() == 1 => d.clone(),
        _ => {
            return Err(CommandError::new(
                ErrorCode::InvalidNamespace,
                "{aggregate: 1} is not valid for an empty pipeline; a collection name must be specified",
            ));
        }
    };
    let Some((name, arg)) = first.into_iter().next() else {
        return Err(CommandError::failed_to_parse("an empty stage"));
    };
    let docs = match name.as_str() {
        "$documents" => crate::query::aggregate::documents::evaluate(&arg)?,
        "$listLocalSessions" => list_local_sessions(ctx, &arg)?,
        "$currentOp" => super::current_op::current_op_stage(ctx, &arg)?,
        "$listCatalog" | "$changeStream" | "$queryStats" | "$querySettings" => {
            return Err(CommandError::not_implemented(&format!("the {name} stage")));
        }
        other => {
            return Err(CommandError::new(
                ErrorCode::InvalidNamespace,
                format!(
                    "{{aggregate: 1}} is not valid for '{other}'; a collection name must be specified"
                ),
            ));
        }
    };
    stages.remove(0);
    if super::merge::take_output_stage(&mut stages)?.is_some() {
        return Err(CommandError::not_implemented(
            "$out and $merge after $documents",
        ));
    }
    let pipeline = Pipeline::parse(&stages)?;
    let allow_disk = opt_bool(ctx.cmd, "allowDiskUse", true)?;
    let budget = StageBudget::new(ctx.svc.blocking_sort_bytes(), allow_disk);
    let state = ctx.read_state(&target).await?;
    let lookup = crate::cursor::SnapshotLookup::new(state.clone(), target.db.clone());
    let _collation = own_collation.enter();
    let out = pipeline.run_within(docs, &lookup, budget)?;
    let shown = format!("{}.$cmd.aggregate", target.raw);
    let (first, id) = ctx.svc.cursors.open(
        ctx.cursor_info(&shown),
        out,
        batch_size(Some(cursor))?,
        false,
    );
    let mut reply = cursor_reply(&shown, first, id, true);
    reply.insert("operationTime", operation_time(state.time()));
    Ok(reply)
}
