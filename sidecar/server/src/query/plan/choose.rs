//! Plan choice: for a filter, a sort and a hint over one collection's
//! indexes, the plan a read runs (see the module doc of `plan` for what
//! may bound a scan).
//!
//! The rule, without trial runs:
//! 1. a hint decides: `{$natural: ±1}` a natural-order scan (forward or
//!    backward), an index a scan
//!    of it (over the filter's bounds, or all of it when they bound
//!    nothing, as MongoDB's hinted scans);
//! 2. a `$text`: its text index's terms (`plan::text`), else a scan;
//! 3. `_id` equality or `_id` `$in` scalars: point lookups;
//! 4. among the indexes with a key map (not hidden) (no Decimal128 key) whose first
//!    field is bounded, or that give the sort: most equality fields, then
//!    a range field, then giving the sort, then the fewest key fields,
//!    then the smallest name;
//!    a geo index (`plan::geo`) is ranked as a range when the filter's
//!    `$geoWithin`/`$geoIntersects` on its first field can be covered;
//! 5. otherwise a collection scan (in natural order on a capped
//!    collection).

use argon_wal::{CollectionState, ScanDirection};
use bson::{Bson, Document};

use super::bounds::{self, Bounds, FieldBound};
use super::{IndexPlan, Plan, min_max};
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::filter::{Filter, InItem, Pred};
use crate::query::{SortSpec, collation};

/// The plan for `filter` (sorted by `sort`, hinted by `hint`, already
/// validated by `options::check_hint`) over `coll`.
pub fn choose(
    coll: Option<&CollectionState>,
    filter: &Filter,
    sort: Option<&SortSpec>,
    hint: Option<&Bson>,
) -> Result<Plan> {
    let Some(coll) = coll else {
        return Ok(Plan::Collscan);
    };
    // A capped collection is scanned in its natural (insertion) order,
    // as MongoDB's collection scan reads it.
    Ok(match choose_in(coll, filter, sort, hint)? {
        Plan::Collscan if coll.is_capped() => Plan::Natural(ScanDirection::Forward),
        p => p,
    })
}

fn choose_in(
    coll: &CollectionState,
    filter: &Filter,
    sort: Option<&SortSpec>,
    hint: Option<&Bson>,
) -> Result<Plan> {
    let plannable = collation::active_is_simple() && filter.text_query().is_none();
    if let Some(plan) = hinted(coll, filter, sort, hint, plannable)? {
        return Ok(plan);
    }
    if filter.text_query().is_some() {
        // The bound query (`text::bind` ran before planning); under a
        // collation the prefix equalities would not compare as bytes.
        let active = crate::query::text::active();
        return Ok(match active.compiled() {
            Some(c) if collation::active_is_simple() => {
                super::text::plan(coll, filter, c).unwrap_or(Plan::Collscan)
            }
            _ => Plan::Collscan,
        });
    }
    if let Some(plan) = id_hack(filter) {
        return Ok(plan);
    }
    if !plannable {
        return Ok(Plan::Collscan);
    }
    let mut best: Option<(Rank, IndexPlan)> = None;
    for spec in coll.indexes().iter().skip(1) {
        // A hidden index is kept up to date but never chosen (MongoDB's).
        if matches!(spec.get("hidden"), Some(Bson::Boolean(true))) {
            continue;
        }
        let plan = if super::geo::is_geo(spec) {
            super::geo::plan(coll, spec, filter)
        } else {
            index_plan(coll, spec, filter, sort, false)
        };
        let Some(plan) = plan else {
            continue;
        };
        if !plan.bounds.is_selective() && !plan.provides_sort {
            continue;
        }
        let rank = Rank::of(&plan);
        if best.as_ref().is_none_or(|(r, _)| rank > *r) {
            best = Some((rank, plan));
        }
    }
    Ok(best.map_or(Plan::Collscan, |(_, p)| Plan::Index(p)))
}

/// The plan a hint forces, if any.
fn hinted(
    coll: &CollectionState,
    filter: &Filter,
    sort: Option<&SortSpec>,
    hint: Option<&Bson>,
    plannable: bool,
) -> Result<Option<Plan>> {
    let spec = match hint {
        None | Some(Bson::Null) => return Ok(None),
        Some(Bson::String(name)) if name.is_empty() => return Ok(None),
        Some(Bson::Document(k)) if k.is_empty() => return Ok(None),
        Some(Bson::Document(k)) if k.contains_key("$natural") => {
            // `options::natural_direction` checked the value (±1).
            return Ok(Some(Plan::Natural(
                match k.get("$natural").and_then(crate::query::compare::as_f64) {
                    Some(d) if d < 0.0 => ScanDirection::Backward,
                    _ => ScanDirection::Forward,
                },
            )));
        }
        Some(h) => hinted_spec(coll, h),
    };
    // `check_hint` refused a hint naming no index; the `_id_` index and
    // indexes without a key map (text, partial, collated) are read through
    // the collection, which holds the same candidates.
    let Some(spec) = spec else {
        return Ok(Some(Plan::Collscan));
    };
    // A geo index's keys are cells: it is read for a geo predicate it
    // covers, otherwise through the collection (which holds the same
    // candidates).
    if super::geo::is_geo(spec) {
        let plan = plannable
            .then(|| super::geo::plan(coll, spec, filter))
            .flatten();
        return Ok(Some(plan.map_or(Plan::Collscan, Plan::Index)));
    }
    Ok(Some(
        index_plan(coll, spec, filter, sort, !plannable).map_or(Plan::Collscan, Plan::Index),
    ))
}

/// The index spec a hint names (by name or key pattern), if any.
fn hinted_spec<'a>(coll: &'a CollectionState, hint: &Bson) -> Option<&'a Document> {
    match hint {
        Bson::String(name) => coll
            .indexes()
            .iter()
            .find(|i| i.get_str("name").ok() == Some(name.as_str())),
        Bson::Document(keys) => coll.indexes().iter().find(|i| {
            i.get_document("key").is_ok_and(|k| {
                k.len() == keys.len()
                    && k.iter()
                        .zip(keys.iter())
                        .all(|((a, x), (b, y))| a == b && crate::query::compare::equal(x, y))
            })
        }),
        _ => None,
    }
}

/// The plan of a find with `min`/`max` (see `min_max`), or [`choose`]'s
/// when it gives neither.
pub fn choose_bounded(
    coll: Option<&CollectionState>,
    filter: &Filter,
    sort: Option<&SortSpec>,
    hint: Option<&Bson>,
    min: &Document,
    max: &Document,
) -> Result<Plan> {
    if !min_max::check(min, max, hint)? {
        return choose(coll, filter, sort, hint);
    }
    if filter.text_query().is_some() {
        return Err(CommandError::new(
            ErrorCode::NoQueryExecutionPlans,
            "min/max cannot be used with $text",
        ));
    }
    // A missing collection has no documents (MongoDB plans EOF).
    let Some(coll) = coll else {
        return Ok(Plan::Collscan);
    };
    // `check_hint` refused a hint that names no index.
    let spec = hint.and_then(|h| hinted_spec(coll, h)).ok_or_else(|| {
        CommandError::bad_value("hint provided does not correspond to an existing index")
    })?;
    min_max::plan(coll, spec, min, max, sort)
}

/// `_id` equality or `$in` of scalars: point lookups in `_id` order.
fn id_hack(filter: &Filter) -> Option<Plan> {
    let (pred, exact) = match filter {
        Filter::Field { path, pred } if path == "_id" => (pred, true),
        Filter::And(fs) => fs.iter().find_map(|f| match f {
            Filter::Field { path, pred } if path == "_id" => Some((pred, false)),
            _ => None,
        })?,
        _ => return None,
    };
    let mut ids: Vec<Bson> = match pred {
        Pred::Eq(v) => vec![v.clone()],
        Pred::In(items) => items
            .iter()
            .map(|i| match i {
                InItem::Value(v) => Some(v.clone()),
                InItem::Regex(_) => None,
            })
            .collect::<Option<_>>()?,
        _ => return None,
    };
    if !ids.iter().all(id_value) || ids.len() > bounds::MAX_INTERVALS {
        return None;
    }
    ids.sort_by_key(argon_wal::IdKey::from_bson);
    ids.dedup_by(|a, b| argon_wal::IdKey::from_bson(a) == argon_wal::IdKey::from_bson(b));
    Some(Plan::IdHack { ids, exact })
}

/// An `_id` a lookup finds exactly as the filter matches it: `_id` keys
/// compare as MongoDB's values (not Decimal128, keyed apart), and strings
/// only as bytes (not under a collation that equates others).
fn id_value(v: &Bson) -> bool {
    !matches!(
        v,
        Bson::Document(_)
            | Bson::Array(_)
            | Bson::Null
            | Bson::Undefined
            | Bson::RegularExpression(_)
            | Bson::Decimal128(_)
    ) && !matches!(v, Bson::Double(x) if x.is_nan())
        && (collation::active_is_simple() || !collation::has_string(v))
}

/// A scan of index `spec` for `filter` and `sort`; `None` without a key
/// map or with a Decimal128 key. `full` scans all of it (a hint under a
/// collation, or with `$text`).
fn index_plan(
    coll: &CollectionState,
    spec: &Document,
    filter: &Filter,
    sort: Option<&SortSpec>,
    full: bool,
) -> Option<IndexPlan> {
    let name = spec.get_str("name").ok()?;
    if super::geo::is_geo(spec) {
        return None;
    }
    let shape = coll.index_shape(name)?;
    let key_pattern = spec.get_document("key").ok()?.clone();
    if key_pattern.contains_key(crate::query::text::index::FTS) {
        // Its keys are terms, and a document without one has none: only
        // a `$text` plan (`plan::text`) reads it.
        return None;
    }
    let paths: Vec<String> = key_pattern.keys().cloned().collect();
    let bounds = if full || shape.decimal {
        Bounds::full(paths.len())
    } else {
        bounds::build(filter, &paths, shape.multikey)
    };
    let sparse = spec.get("sparse").is_some_and(|s| {
        matches!(s, Bson::Boolean(true))
            || crate::query::compare::as_f64(s).is_some_and(|x| x != 0.0)
    });
    let sort_direction = if shape.multikey || sparse || shape.decimal {
        None
    } else {
        sort.and_then(|s| sort_order(&bounds, &paths, s))
    };
    Some(IndexPlan {
        name: name.to_string(),
        key_pattern,
        paths,
        multikey: shape.multikey,
        bounds,
        direction: sort_direction.unwrap_or(ScanDirection::Forward),
        provides_sort: sort_direction.is_some(),
        min_max: None,
    })
}

/// The direction in which a scan with `bounds` over `paths` returns
/// documents in `sort`'s order, if one does. Fields bound to one point
/// are constant and may appear anywhere in the sort; the rest of the sort
/// must follow the index fields after the equality prefix, all in one
/// direction (the key map ascends on every field), optionally ending with
/// `_id` once every field is covered (ties in a key map are in `_id`
/// order).
pub(super) fn sort_order(
    bounds: &Bounds,
    paths: &[String],
    sort: &SortSpec,
) -> Option<ScanDirection> {
    let keys = sort.paths()?;
    let single =
        |i: usize| matches!(bounds.fields.get(i), Some(FieldBound::Points(p)) if p.len() == 1);
    let eq = bounds
        .fields
        .iter()
        .take_while(|f| matches!(f, FieldBound::Points(p) if p.len() == 1))
        .count();
    // A multi-point field before the sorted ones interleaves its points.
    if bounds
        .fields
        .iter()
        .skip(eq)
        .any(|f| matches!(f, FieldBound::Points(_)))
    {
        return None;
    }
    let rest: Vec<(&str, bool)> = keys
        .into_iter()
        .filter(|(p, _)| !paths.iter().enumerate().any(|(i, q)| q == p && single(i)))
        .collect();
    let ascending = rest.first().map(|(_, a)| *a)?;
    if rest.iter().any(|(_, a)| *a != ascending) {
        return None;
    }
    for (next, (p, _)) in (eq..).zip(rest.iter()) {
        let follows = paths.get(next).is_some_and(|q| q == p);
        let id_tiebreak = *p == "_id" && next == paths.len();
        if !(follows || id_tiebreak) {
            return None;
        }
    }
    Some(if ascending {
        ScanDirection::Forward
    } else {
        ScanDirection::Backward
    })
}

/// How good an index plan is (greater is better), per the module doc.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    eq: usize,
    range: bool,
    sort: bool,
    fewer_fields: std::cmp::Reverse<usize>,
    name: std::cmp::Reverse<String>,
}

impl Rank {
    fn of(p: &IndexPlan) -> Rank {
        let (eq, range) = p.bounds.shape();
        Rank {
            eq,
            range,
            sort: p.provides_sort,
            fewer_fields: std::cmp::Reverse(p.paths.len()),
            name: std::cmp::Reverse(p.name.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon_wal::{BranchState, CommitTime, DocOp, Namespace};
    use bson::doc;

    fn coll(specs: &[Document], docs: &[Document]) -> BranchState {
        let ns = Namespace::new("d", "c");
        let mut s = BranchState::empty(CommitTime(0));
        for spec in specs {
            s.apply(&DocOp::CreateIndex {
                ns: ns.clone(),
                spec: spec.clone(),
            });
        }
        for d in docs {
            s.apply(&DocOp::Put {
                ns: ns.clone(),
                id: d.get("_id").cloned().unwrap(),
                doc: argon_wal::rawdoc::encode(d).unwrap(),
            });
        }
        s
    }

    fn plan(s: &BranchState, filter: Document, sort: Option<Document>, hint: Option<Bson>) -> Plan {
        let c = s.collection(&Namespace::new("d", "c")).expect("reads");
        let f = Filter::parse(&filter).unwrap();
        let sort = sort.map(|d| SortSpec::parse(&d).unwrap());
        choose(c.as_ref(), &f, sort.as_ref(), hint.as_ref()).unwrap()
    }

    fn index_name(p: &Plan) -> Option<&str> {
        match p {
            Plan::Index(p) => Some(&p.name),
            _ => None,
        }
    }

    #[test]
    fn the_rule_picks_equality_then_range_then_sort_then_size() {
        let s = coll(
            &[
                doc! {"name": "a_1", "key": {"a": 1}},
                doc! {"name": "a_1_b_1", "key": {"a": 1, "b": 1}},
                doc! {"name": "b_1", "key": {"b": 1}},
                doc! {"name": "t_1", "key": {"t": 1}},
            ],
            &[doc! {"_id": 1, "a": 1, "b": 2, "t": [1, 2]}],
        );
        assert_eq!(
            index_name(&plan(&s, doc! {"a": 1}, None, None)),
            Some("a_1")
        );
        assert_eq!(
            index_name(&plan(&s, doc! {"a": 1, "b": 2}, None, None)),
            Some("a_1_b_1")
        );
        assert_eq!(
            index_name(&plan(&s, doc! {"a": 1, "b": {"$gt": 2}}, None, None)),
            Some("a_1_b_1")
        );
        assert_eq!(
            index_name(&plan(&s, doc! {"a": 1}, Some(doc! {"b": -1}), None)),
            Some("a_1_b_1")
        );
        assert!(matches!(
            plan(&s, doc! {"c": 1}, None, None),
            Plan::Collscan
        ));
        assert!(matches!(
            plan(&s, doc! {"a": {"$ne": 1}}, None, None),
            Plan::Collscan
        ));
        assert!(matches!(
            plan(&s, doc! {"_id": 1, "a": 1}, None, None),
            Plan::IdHack { exact: false, .. }
        ));
        // Sort only: an index that is not multikey gives it.
        let p = plan(&s, doc! {}, Some(doc! {"b": -1, "_id": -1}), None);
        assert_eq!(index_name(&p), Some("b_1"));
        assert!(p.provides_sort());
        // A multikey index never gives a sort.
        assert!(!plan(&s, doc! {"t": 1}, Some(doc! {"t": 1}), None).provides_sort());
        // Hints decide.
        assert!(matches!(
            plan(
                &s,
                doc! {"a": 1},
                None,
                Some(Bson::Document(doc! {"$natural": 1}))
            ),
            Plan::Natural(ScanDirection::Forward)
        ));
        assert!(matches!(
            plan(
                &s,
                doc! {"a": 1},
                None,
                Some(Bson::Document(doc! {"$natural": -1}))
            ),
            Plan::Natural(ScanDirection::Backward)
        ));
        let hinted = plan(&s, doc! {"a": 1}, None, Some(Bson::String("b_1".into())));
        assert_eq!(index_name(&hinted), Some("b_1"));
        assert!(!matches!(&hinted, Plan::Index(p) if p.bounds.is_selective()));
    }
}
