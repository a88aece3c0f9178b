//! `$graphLookup`: for each document, a breadth-first search of another
//! collection of the same snapshot (`from`, read through [`Lookup`] as
//! `$lookup` reads it): the documents whose `connectToField` `$eq`-matches
//! a value of `startWith`, then those matching their `connectFromField`
//! values, and so on, up to `maxDepth` rounds (unbounded without it).
//!
//! **Termination.** A document joins the result once (by its `_id`), and
//! a value is searched for once per document, so a cycle in the graph
//! ends the search when no new value is left.
//!
//! **Finding the next round.** The foreign collection's hash index by
//! `connectToField` (`lookup::LookupIndex`, charged to the stage budget)
//! finds candidates in O(1) per value; when it would pass the budget, or a
//! value cannot be keyed, a round scans the collection once for the whole
//! frontier. Candidates are always checked with `$eq` and
//! `restrictSearchWithMatch`.
//!
//! **Memory.** What one search holds (the documents found and the values
//! seen and still to search) is held to the stage budget: past it the
//! search fails with MongoDB's 40099, `allowDiskUse` or not (it is not
//! spilled here). The result is one array in the output
//! document, so it is held to the 16 MiB document limit too (10334).

use std::collections::HashSet;

use argon_wal::IdKey;
use bson::{Bson, Document};

use super::super::expr::{Expr, type_name};
use super::super::filter::{Filter, Pred};
use super::super::path;
use super::lookup::{LookupIndex, joins};
use super::ops::with_field;
use super::{Cx, Op};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits;
use crate::spill::StageBudget;

/// A parsed `$graphLookup`.
#[derive(Debug, Clone)]
pub(super) struct GraphLookup {
    from: String,
    start_with: Expr,
    connect_from: String,
    connect_to: String,
    as_field: String,
    max_depth: Option<i64>,
    depth_field: Option<String>,
    restrict: Option<Filter>,
}

fn err(code: ErrorCode, message: impl Into<String>) -> CommandError {
    CommandError::new(code, message)
}

/// Bytes charged per value and per document held beyond their BSON size.
const HELD_OVERHEAD: usize = 64;

impl GraphLookup {
    pub(super) fn parse(arg: &Bson) -> Result<GraphLookup> {
        let Bson::Document(spec) = arg else {
            return Err(CommandError::failed_to_parse(format!(
                "the $graphLookup stage specification must be an object, but found {}",
                type_name(arg)
            )));
        };
        let mut from = None;
        let mut start_with = None;
        let mut connect_from = None;
        let mut connect_to = None;
        let mut as_field = None;
        let mut max_depth = None;
        let mut depth_field = None;
        let mut restrict = None;
        for (k, v) in spec {
            let string = || match v {
                Bson::String(s) => Ok(Some(s.clone())),
                _ => Err(err(
                    ErrorCode::Location40103,
                    format!(
                        "expected string as argument for {k}, found: {}",
                        type_name(v)
                    ),
                )),
            };
            match k.as_str() {
                "from" => from = string()?,
                "as" => as_field = string()?,
                "connectFromField" => connect_from = string()?,
                "connectToField" => connect_to = string()?,
                "depthField" => depth_field = string()?,
                "startWith" => start_with = Some(Expr::parse(v)?),
                "maxDepth" => max_depth = Some(parse_max_depth(v)?),
                "restrictSearchWithMatch" => match v {
                    Bson::Document(d) => restrict = Some(Filter::parse(d)?),
                    _ => {
                        return Err(err(
                            ErrorCode::Location40185,
                            format!(
                                "hint must be a document, but found {}: restrictSearchWithMatch must be an object",
                                type_name(v)
                            ),
                        ));
                    }
                },
                other => {
                    return Err(err(
                        ErrorCode::Location40104,
                        format!("Unknown argument to $graphLookup: {other}"),
                    ));
                }
            }
        }
        let (Some(from), Some(start_with), Some(connect_from), Some(connect_to), Some(as_field)) =
            (from, start_with, connect_from, connect_to, as_field)
        else {
            return Err(err(
                ErrorCode::Location40105,
                "$graphLookup requires 'from', 'as', 'startWith', 'connectFromField', and 'connectToField' to be specified.",
            ));
        };
        if from.is_empty()
            || from.contains('\0')
            || from.starts_with("system.")
            || from.contains('$')
        {
            return Err(err(
                ErrorCode::InvalidNamespace,
                format!("Invalid collection name for $graphLookup: '{from}'"),
            ));
        }
        for p in [&connect_from, &connect_to, &as_field]
            .into_iter()
            .chain(depth_field.as_ref())
        {
            if p.is_empty() || p.starts_with('$') {
                return Err(err(
                    ErrorCode::Location16410,
                    format!("FieldPath field names may not start with '$' or be empty: '{p}'"),
                ));
            }
            limits::check_path(p)?;
        }
        Ok(GraphLookup {
            from,
            start_with,
            connect_from,
            connect_to,
            as_field,
            max_depth,
            depth_field,
            restrict,
        })
    }

    pub(super) fn stream(self, input: Box<dyn Op>, budget: StageBudget) -> Box<dyn Op> {
        Box::new(GraphLookupOp {
            input,
            spec: self,
            budget,
            index: None,
        })
    }
}

/// `maxDepth`: a non-negative whole number that fits a long (40100-40102).
fn parse_max_depth(v: &Bson) -> Result<i64> {
    let n = match v {
        Bson::Int32(n) => i64::from(*n),
        Bson::Int64(n) => *n,
        Bson::Double(_) | Bson::Decimal128(_) => {
            let f = super::super::compare::as_f64(v).unwrap_or(f64::NAN);
            // 2^63 itself does not fit.
            if f.fract() != 0.0
                || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
            {
                return Err(err(
                    ErrorCode::Location40102,
                    format!("maxDepth could not be represented as a long long: {v}"),
                ));
            }
            f as i64
        }
        _ => {
            return Err(err(
                ErrorCode::Location40100,
                format!("maxDepth must be numeric, found type: {}", type_name(v)),
            ));
        }
    };
    if n < 0 {
        return Err(err(
            ErrorCode::Location40101,
            format!("maxDepth requires a nonnegative argument, found: {n}"),
        ));
    }
    Ok(n)
}

/// The foreign collection's index by `connectToField`, built on the
/// first search that needs it.
enum Index {
    Built(LookupIndex),
    Unusable,
}

struct GraphLookupOp {
    input: Box<dyn Op>,
    spec: GraphLookup,
    budget: StageBudget,
    index: Option<Index>,
}

/// The values a field holds, each element of an array value on its own.
fn values_of(d: &Document, field: &str) -> Vec<Bson> {
    let r = path::resolve(d, field);
    let mut out = Vec::new();
    for v in r.values {
        match v {
            Bson::Array(items) => out.extend(items.iter().cloned()),
            v => out.push(v.clone()),
        }
    }
    out
}

/// One document's search: what it has found and what it has searched for.
struct Search<'a> {
    spec: &'a GraphLookup,
    budget: usize,
    found: Vec<Bson>,
    found_ids: HashSet<IdKey>,
    searched: HashSet<IdKey>,
    bytes: usize,
}

impl Search<'_> {
    fn charge(&mut self, bytes: usize) -> Result<()> {
        self.bytes = self.bytes.saturating_add(bytes + HELD_OVERHEAD);
        if self.bytes > self.budget {
            return Err(err(
                ErrorCode::Location40099,
                format!(
                    "$graphLookup reached maximum memory consumption ({} bytes)",
                    self.budget
                ),
            ));
        }
        Ok(())
    }

    /// The values of `candidates` not searched for yet (and now marked).
    fn fresh(&mut self, candidates: Vec<Bson>) -> Result<Vec<Bson>> {
        let mut out = Vec::new();
        for v in candidates {
            let key = super::group::group_key(&v);
            if self.searched.contains(&key) {
                continue;
            }
            self.charge(key.as_bytes().len() + limits::bson_size(&v))?;
            self.searched.insert(key);
            out.push(v);
        }
        Ok(out)
    }

    /// Takes `f` if it is new, joins the frontier and passes the filter;
    /// returns its `connectFromField` values when taken.
    fn offer(&mut self, f: Document, preds: &[Pred], depth: i64) -> Result<Option<Vec<Bson>>> {
        // A null (or missing) value searches for documents whose
        // `connectToField` is null, never for those without it (MongoDB
        // adds `{connectToField: {$exists: true}}` to such a search).
        if path::resolve(&f, &self.spec.connect_to).values.is_empty()
            || !joins(&f, &self.spec.connect_to, preds)
        {
            return Ok(None);
        }
        if let Some(r) = &self.spec.restrict
            && !r.try_matches(&f)?
        {
            return Ok(None);
        }
        let id = IdKey::from_bson(f.get("_id").unwrap_or(&Bson::Null));
        if self.found_ids.contains(&id) {
            return Ok(None);
        }
        let next = values_of(&f, &self.spec.connect_from);
        let mut f = f;
        if let Some(depth_field) = &self.spec.depth_field {
            f = with_field(f, depth_field, Bson::Int64(depth), "$graphLookup")?;
        }
        self.charge(id.as_bytes().len() + limits::document_size(&f))?;
        self.found_ids.insert(id);
        self.found.push(Bson::Document(f));
        Ok(Some(next))
    }
}

impl Op for GraphLookupOp {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        let Some(d) = self.input.next(cx)? else {
            return Ok(None);
        };
        let spec = &self.spec;
        let mut search = Search {
            spec,
            budget: self.budget.bytes,
            found: Vec::new(),
            found_ids: HashSet::new(),
            searched: HashSet::new(),
            bytes: 0,
        };
        let start = match spec.start_with.eval(&d)? {
            Some(Bson::Array(items)) => items,
            Some(v) => vec![v],
            // Missing is searched as null.
            None => vec![Bson::Null],
        };
        let mut frontier = search.fresh(start)?;
        let lookup = cx.lookup();
        let mut depth = 0i64;
        while !frontier.is_empty() {
            if self.index.is_none() {
                self.index = Some(
                    match LookupIndex::build(cx, &spec.from, &spec.connect_to, self.budget.bytes)? {
                        Some(ix) => Index::Built(ix),
                        None => Index::Unusable,
                    },
                );
            }
            let preds: Vec<Pred> = frontier.iter().map(|v| Pred::Eq(v.clone())).collect();
            let mut next = Vec::new();
            let candidates = match &self.index {
                Some(Index::Built(ix)) => ix.candidates(&frontier),
                _ => None,
            };
            match candidates {
                Some(keys) => {
                    for key in keys {
                        cx.tick()?;
                        if let Some(f) = lookup.fetch(&spec.from, &key)?
                            && let Some(values) = search.offer(f, &preds, depth)?
                        {
                            next.extend(values);
                        }
                    }
                }
                None => lookup.scan(&spec.from, &mut |_, f| {
                    cx.tick()?;
                    if let Some(values) = search.offer(f, &preds, depth)? {
                        next.extend(values);
                    }
                    Ok(true)
                })?,
            }
            if spec.max_depth.is_some_and(|m| depth >= m) {
                break;
            }
            depth += 1;
            frontier = search.fresh(next)?;
        }
        let found = std::mem::take(&mut search.found);
        with_field(d, &spec.as_field, Bson::Array(found), "$graphLookup").map(Some)
    }
}
