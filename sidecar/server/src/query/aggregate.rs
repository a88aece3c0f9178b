//! The aggregation pipeline core: `$match`, `$project`, `$addFields`/`$set`,
//! `$unset`, `$sort`, `$limit`, `$skip`, `$count`, `$group`, `$unwind`,
//! `$replaceRoot`/`$replaceWith`, `$sortByCount` and a simple `$lookup`.
//! Stages run over an in-memory batch of documents.

use bson::{Bson, Document, doc};

use super::compare::{as_f64, as_i64, compare, equal, is_number};
use super::expr::Expr;
use super::filter::Filter;
use super::path;
use super::projection::Projection;
use super::sort::SortSpec;
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::{self, Budget};

#[derive(Debug, Clone)]
enum Stage {
    Match(Filter),
    Project(Projection),
    AddFields(Vec<(String, Expr)>),
    Unset(Vec<String>),
    Sort(SortSpec),
    Limit(usize),
    Skip(usize),
    Count(String),
    Group(Group),
    Unwind {
        path: String,
        index_field: Option<String>,
        preserve: bool,
    },
    ReplaceRoot(Expr),
    Lookup {
        from: String,
        local: String,
        foreign: String,
        as_field: String,
    },
}

#[derive(Debug, Clone)]
struct Group {
    id: Expr,
    accumulators: Vec<(String, Acc, Expr)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Acc {
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    Push,
    AddToSet,
    Count,
}

/// A parsed pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stages: Vec<Stage>,
}

/// The collections a pipeline reads besides its input (for `$lookup`).
pub trait Lookup {
    fn collection(&self, name: &str) -> Vec<Document>;
}

impl Pipeline {
    pub fn parse(stages: &[Bson]) -> Result<Pipeline> {
        limits::check_pipeline_length(stages.len())?;
        let mut out = Vec::with_capacity(stages.len());
        for s in stages {
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
            out.push(parse_stage(name, arg)?);
        }
        Ok(Pipeline { stages: out })
    }

    /// Runs the pipeline over `input`.
    pub fn run(&self, mut docs: Vec<Document>, lookup: &dyn Lookup) -> Result<Vec<Document>> {
        for stage in &self.stages {
            docs = run_stage(stage, docs, lookup)?;
        }
        Ok(docs)
    }
}

fn non_negative(name: &str, v: &Bson) -> Result<usize> {
    match as_i64(v) {
        Some(n) if n >= 0 => Ok(n as usize),
        _ => Err(CommandError::bad_value(format!(
            "invalid argument to {name} stage: expected a non-negative number, got {v}"
        ))),
    }
}

fn parse_stage(name: &str, arg: &Bson) -> Result<Stage> {
    let doc_arg = || match arg {
        Bson::Document(d) => Ok(d),
        _ => Err(CommandError::failed_to_parse(format!(
            "the {name} stage specification must be an object"
        ))),
    };
    Ok(match name {
        "$match" => Stage::Match(Filter::parse(doc_arg()?)?),
        "$project" => Stage::Project(Projection::parse(doc_arg()?)?),
        "$addFields" | "$set" => Stage::AddFields(
            doc_arg()?
                .iter()
                .map(|(k, v)| Ok((k.clone(), Expr::parse(v)?)))
                .collect::<Result<_>>()?,
        ),
        "$unset" => Stage::Unset(match arg {
            Bson::String(s) => vec![s.clone()],
            Bson::Array(a) => a
                .iter()
                .map(|v| match v {
                    Bson::String(s) => Ok(s.clone()),
                    _ => Err(CommandError::failed_to_parse(
                        "$unset specification must be a string or an array of strings",
                    )),
                })
                .collect::<Result<_>>()?,
            _ => {
                return Err(CommandError::failed_to_parse(
                    "$unset specification must be a string or an array of strings",
                ));
            }
        }),
        "$sort" => Stage::Sort(SortSpec::parse(doc_arg()?)?),
        "$limit" => match as_i64(arg) {
            Some(n) if n > 0 => Stage::Limit(n as usize),
            _ => {
                return Err(CommandError::new(
                    ErrorCode::Location15955,
                    "the limit must be positive",
                ));
            }
        },
        "$skip" => Stage::Skip(non_negative("$skip", arg)?),
        "$count" => match arg {
            Bson::String(s) if !s.is_empty() && !s.starts_with('$') && !s.contains('.') => {
                Stage::Count(s.clone())
            }
            _ => {
                return Err(CommandError::bad_value(
                    "the count field must be a non-empty string without '$' or '.'",
                ));
            }
        },
        "$group" => {
            let d = doc_arg()?;
            let id = d.get("_id").ok_or_else(|| {
                CommandError::new(
                    ErrorCode::Location15955,
                    "a group specification must include an _id",
                )
            })?;
            let mut accumulators = Vec::new();
            for (field, spec) in d {
                if field == "_id" {
                    continue;
                }
                let Bson::Document(spec) = spec else {
                    return Err(CommandError::new(
                        ErrorCode::Location40234,
                        format!("The field '{field}' must be an accumulator object"),
                    ));
                };
                let Some((acc_name, acc_arg)) = spec.iter().next().filter(|_| spec.len() == 1)
                else {
                    return Err(CommandError::new(
                        ErrorCode::Location40234,
                        format!("The field '{field}' must specify one accumulator"),
                    ));
                };
                let acc = match acc_name.as_str() {
                    "$sum" => Acc::Sum,
                    "$avg" => Acc::Avg,
                    "$min" => Acc::Min,
                    "$max" => Acc::Max,
                    "$first" => Acc::First,
                    "$last" => Acc::Last,
                    "$push" => Acc::Push,
                    "$addToSet" => Acc::AddToSet,
                    "$count" => Acc::Count,
                    other => {
                        return Err(CommandError::new(
                            ErrorCode::Location15952,
                            format!("unknown group operator '{other}'"),
                        ));
                    }
                };
                accumulators.push((field.clone(), acc, Expr::parse(acc_arg)?));
            }
            Stage::Group(Group {
                id: Expr::parse(id)?,
                accumulators,
            })
        }
        "$unwind" => match arg {
            Bson::String(p) => Stage::Unwind {
                path: unwind_path(p)?,
                index_field: None,
                preserve: false,
            },
            Bson::Document(d) => {
                let p = d
                    .get_str("path")
                    .map_err(|_| CommandError::failed_to_parse("$unwind needs a 'path' string"))?;
                Stage::Unwind {
                    path: unwind_path(p)?,
                    index_field: d.get_str("includeArrayIndex").ok().map(str::to_owned),
                    preserve: d.get_bool("preserveNullAndEmptyArrays").unwrap_or(false),
                }
            }
            _ => {
                return Err(CommandError::failed_to_parse(
                    "expected either a string or an object as specification for $unwind stage",
                ));
            }
        },
        "$replaceRoot" => Stage::ReplaceRoot(Expr::parse(doc_arg()?.get("newRoot").ok_or_else(
            || CommandError::failed_to_parse("no newRoot specified for the $replaceRoot stage"),
        )?)?),
        "$replaceWith" => Stage::ReplaceRoot(Expr::parse(arg)?),
        "$sortByCount" => {
            // {$sortByCount: e} is {$group: {_id: e, count: {$sum: 1}}}, {$sort: {count: -1}}.
            return Ok(Stage::Group(Group {
                id: Expr::parse(arg)?,
                accumulators: vec![
                    ("count".into(), Acc::Count, Expr::Literal(Bson::Null)),
                    (
                        "\u{0}sortByCount".into(),
                        Acc::Count,
                        Expr::Literal(Bson::Null),
                    ),
                ],
            }));
        }
        "$lookup" => {
            let d = doc_arg()?;
            let s = |k: &str| {
                d.get_str(k)
                    .map(str::to_owned)
                    .map_err(|_| CommandError::failed_to_parse(format!("$lookup needs a string '{k}' (pipeline-style $lookup is not implemented yet)")))
            };
            Stage::Lookup {
                from: s("from")?,
                local: s("localField")?,
                foreign: s("foreignField")?,
                as_field: s("as")?,
            }
        }
        "$out" | "$merge" | "$facet" | "$bucket" | "$bucketAuto" | "$graphLookup" | "$geoNear"
        | "$unionWith" => {
            return Err(CommandError::not_implemented(&format!("the {name} stage")));
        }
        other => {
            return Err(CommandError::new(
                ErrorCode::Location40324,
                format!("Unrecognized pipeline stage name: '{other}'"),
            ));
        }
    })
}

/// `$lookup`'s hash join: the foreign documents by the canonical key
/// (`IdKey`) of every value their `foreignField` holds, so a local key finds
/// its candidates in O(1) instead of a scan of the foreign collection.
///
/// The index only narrows: the equality predicate still decides each
/// candidate. Values whose equality `IdKey` does not capture exactly
/// (Decimal128, NaN, symbols, undefined) and null keys (which also match a
/// missing field) fall back to the scan.
struct LookupIndex {
    by_key: std::collections::HashMap<argon_wal::IdKey, Vec<usize>>,
}

impl LookupIndex {
    fn hashable(v: &Bson) -> bool {
        match v {
            Bson::Decimal128(_) | Bson::Symbol(_) | Bson::Undefined | Bson::Null => false,
            Bson::Double(d) => !d.is_nan(),
            Bson::Array(a) => a.iter().all(Self::hashable),
            Bson::Document(d) => d.iter().all(|(_, v)| Self::hashable(v)),
            _ => true,
        }
    }

    /// `None` when a foreign value cannot be indexed (then every lookup scans).
    fn build(foreign_docs: &[Document], field: &str) -> Option<LookupIndex> {
        let mut by_key: std::collections::HashMap<argon_wal::IdKey, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, f) in foreign_docs.iter().enumerate() {
            let r = path::resolve(f, field);
            for v in &r.values {
                let mut add = |v: &Bson| -> Option<()> {
                    match v {
                        // Null and missing are looked up by scan (see above).
                        Bson::Null | Bson::Undefined => Some(()),
                        v if Self::hashable(v) => {
                            let ids = by_key.entry(argon_wal::IdKey::from_bson(v)).or_default();
                            if ids.last() != Some(&i) {
                                ids.push(i);
                            }
                            Some(())
                        }
                        _ => None,
                    }
                };
                add(v)?;
                if let Bson::Array(items) = v {
                    for item in items {
                        add(item)?;
                    }
                }
            }
        }
        Some(LookupIndex { by_key })
    }

    /// The foreign documents that may equal one of `keys`, in collection
    /// order; `None` when a key cannot use the index.
    fn candidates(&self, keys: &[Bson]) -> Option<Vec<usize>> {
        if !keys.iter().all(Self::hashable) {
            return None;
        }
        let mut out: Vec<usize> = keys
            .iter()
            .filter_map(|k| self.by_key.get(&argon_wal::IdKey::from_bson(k)))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        Some(out)
    }
}

fn unwind_path(p: &str) -> Result<String> {
    p.strip_prefix('$')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            CommandError::new(
                ErrorCode::Location28769,
                format!("path option to $unwind stage should be prefixed with a '$': {p}"),
            )
        })
}

/// `doc` with `field` set by aggregation's path rules, held to the
/// document limits (`stage` names the stage in errors).
fn with_field(mut doc: Document, field: &str, v: Bson, stage: &'static str) -> Result<Document> {
    let mut budget = Budget::document(stage);
    budget.charge(limits::document_size(&doc))?;
    path::set_field(&mut doc, field, v, &mut budget)?;
    // A long path (`as: "a.a. … .a"`, 200 components) puts the value that
    // deep: the nesting is held to the limit as `$addFields` holds it.
    limits::check_built_document(&doc, stage)?;
    Ok(doc)
}

fn run_stage(stage: &Stage, docs: Vec<Document>, lookup: &dyn Lookup) -> Result<Vec<Document>> {
    Ok(match stage {
        Stage::Match(f) => {
            let mut out = Vec::with_capacity(docs.len());
            for d in docs {
                if f.try_matches(&d)? {
                    out.push(d);
                }
            }
            out
        }
        Stage::Project(p) => docs
            .iter()
            .map(|d| p.try_apply(d))
            .collect::<Result<_>>()?,
        Stage::AddFields(fields) => docs
            .into_iter()
            .map(|mut d| {
                let root = d.clone();
                let mut budget = Budget::document("$addFields");
                budget.charge(limits::document_size(&d))?;
                for (k, e) in fields {
                    match e.eval(&root)? {
                        Some(v) => path::set_field(&mut d, k, v, &mut budget)?,
                        None => path::unset_field(&mut d, k),
                    }
                }
                limits::check_built_document(&d, "$addFields")?;
                Ok(d)
            })
            .collect::<Result<_>>()?,
        Stage::Unset(fields) => docs
            .into_iter()
            .map(|mut d| {
                for f in fields {
                    path::unset_field(&mut d, f);
                }
                d
            })
            .collect(),
        Stage::Sort(s) => {
            let mut docs = docs;
            s.sort(&mut docs);
            docs
        }
        Stage::Limit(n) => docs.into_iter().take(*n).collect(),
        Stage::Skip(n) => docs.into_iter().skip(*n).collect(),
        Stage::Count(name) => {
            if docs.is_empty() {
                Vec::new()
            } else {
                vec![doc! { name.clone(): docs.len() as i32 }]
            }
        }
        Stage::Group(g) => group(g, docs)?,
        Stage::Unwind { path: p, index_field, preserve } => {
            let mut growth = Budget::stage_growth("$unwind");
            let mut out = Vec::with_capacity(docs.len());
            for d in docs {
                match path::get_field(&d, p).cloned() {
                    Some(Bson::Array(items)) if !items.is_empty() => {
                        // Every element after the first is a new copy of the document.
                        if items.len() > 1 {
                            let size = limits::document_size(&d);
                            growth.charge(size.saturating_mul(items.len() - 1))?;
                        }
                        for (i, item) in items.into_iter().enumerate() {
                            let mut e = with_field(d.clone(), p, item, "$unwind")?;
                            if let Some(f) = index_field {
                                e = with_field(e, f, Bson::Int64(i as i64), "$unwind")?;
                            }
                            out.push(e);
                        }
                    }
                    Some(Bson::Array(_)) | Some(Bson::Null) | None => {
                        if *preserve {
                            let mut e = d.clone();
                            if let Some(f) = index_field {
                                e = with_field(e, f, Bson::Null, "$unwind")?;
                            }
                            out.push(e);
                        }
                    }
                    Some(_) => {
                        let mut e = d;
                        if let Some(f) = index_field {
                            e = with_field(e, f, Bson::Null, "$unwind")?;
                        }
                        out.push(e);
                    }
                }
            }
            out
        }
        Stage::ReplaceRoot(e) => docs
            .iter()
            .map(|d| match e.eval(d)? {
                Some(Bson::Document(new_root)) => {
                    limits::check_built_document(&new_root, "$replaceRoot")?;
                    Ok(new_root)
                }
                other => Err(CommandError::new(
                    ErrorCode::Location40228,
                    format!("'newRoot' expression must evaluate to an object, but resulting value was: {}", other.map(|v| v.to_string()).unwrap_or_else(|| "MISSING".into())),
                )),
            })
            .collect::<Result<_>>()?,
        Stage::Lookup { from, local, foreign, as_field } => {
            let foreign_docs = lookup.collection(from);
            let index = LookupIndex::build(&foreign_docs, foreign);
            let mut growth = Budget::stage_growth("$lookup");
            docs.into_iter()
                .map(|d| {
                    let local_vals = path::resolve(&d, local);
                    let keys: Vec<Bson> = if local_vals.values.is_empty() {
                        vec![Bson::Null]
                    } else {
                        local_vals
                            .values
                            .iter()
                            .flat_map(|v| match v {
                                Bson::Array(a) => a.clone(),
                                v => vec![(*v).clone()],
                            })
                            .collect()
                    };
                    let mut matched_size = Budget::document("$lookup");
                    let mut matched: Vec<Bson> = Vec::new();
                    let preds: Vec<_> = keys.iter().map(|k| super::filter::Pred::Eq(k.clone())).collect();
                    // Candidates from the hash index when every key can use
                    // it, else every foreign document; the predicate decides.
                    let candidates: Box<dyn Iterator<Item = usize>> =
                        match index.as_ref().and_then(|ix| ix.candidates(&keys)) {
                            Some(c) => Box::new(c.into_iter()),
                            None => Box::new(0..foreign_docs.len()),
                        };
                    for i in candidates {
                        let Some(f) = foreign_docs.get(i) else { continue };
                        let r = path::resolve(f, foreign);
                        if preds.iter().any(|p| p.matches(&r)) {
                            let size = limits::document_size(f);
                            matched_size.charge(size)?;
                            growth.charge(size)?;
                            matched.push(Bson::Document(f.clone()));
                        }
                    }
                    with_field(d, as_field, Bson::Array(matched), "$lookup")
                })
                .collect::<Result<_>>()?
        }
    })
}

fn group(g: &Group, docs: Vec<Document>) -> Result<Vec<Document>> {
    let sort_by_count = g
        .accumulators
        .iter()
        .any(|(n, _, _)| n == "\u{0}sortByCount");
    let mut keys: Vec<Bson> = Vec::new();
    let mut states: Vec<Vec<AccState>> = Vec::new();
    for d in &docs {
        let key = g.id.eval(d)?.unwrap_or(Bson::Null);
        let idx = match keys.iter().position(|k| {
            equal(k, &key) && super::compare::type_rank(k) == super::compare::type_rank(&key)
        }) {
            Some(i) => i,
            None => {
                keys.push(key);
                states.push(g.accumulators.iter().map(|_| AccState::default()).collect());
                keys.len() - 1
            }
        };
        for ((_, acc, e), st) in g.accumulators.iter().zip(states[idx].iter_mut()) {
            st.add(*acc, e.eval(d)?)?;
        }
    }
    let mut out: Vec<Document> = Vec::with_capacity(keys.len());
    for (k, sts) in keys.into_iter().zip(states) {
        let mut d = doc! {"_id": k};
        for ((name, acc, _), st) in g.accumulators.iter().zip(sts) {
            if !name.starts_with('\u{0}') {
                d.insert(name.clone(), st.finish(*acc));
            }
        }
        limits::check_built_document(&d, "$group")?;
        out.push(d);
    }
    if sort_by_count {
        out.sort_by(|a, b| {
            compare(
                b.get("count").unwrap_or(&Bson::Null),
                a.get("count").unwrap_or(&Bson::Null),
            )
        });
    }
    Ok(out)
}

#[derive(Default)]
struct AccState {
    values: Vec<Bson>,
    /// BSON bytes `values` holds ($push, $addToSet), held to
    /// [`limits::MAX_BUILT_VALUE_SIZE`].
    values_size: usize,
    count: i64,
    sum: f64,
    all_int: bool,
    numeric: usize,
    best: Option<Bson>,
}

impl AccState {
    fn add(&mut self, acc: Acc, v: Option<Bson>) -> Result<()> {
        if self.count == 0 {
            self.all_int = true;
        }
        self.count += 1;
        match acc {
            Acc::Sum | Acc::Avg => {
                if let Some(v) = v.filter(is_number) {
                    self.sum += as_f64(&v).unwrap_or(0.0);
                    self.numeric += 1;
                    self.all_int &= matches!(v, Bson::Int32(_) | Bson::Int64(_));
                }
            }
            Acc::Min | Acc::Max => {
                if let Some(v) = v.filter(|v| !matches!(v, Bson::Null | Bson::Undefined)) {
                    let better = match &self.best {
                        None => true,
                        Some(b) => {
                            let o = compare(&v, b);
                            if acc == Acc::Min {
                                o.is_lt()
                            } else {
                                o.is_gt()
                            }
                        }
                    };
                    if better {
                        self.best = Some(v);
                    }
                }
            }
            Acc::First => {
                if self.count == 1 {
                    self.best = Some(v.unwrap_or(Bson::Null));
                }
            }
            Acc::Last => self.best = Some(v.unwrap_or(Bson::Null)),
            Acc::Push => {
                if let Some(v) = v {
                    self.charge("$push", &v)?;
                    self.values.push(v);
                }
            }
            Acc::AddToSet => {
                if let Some(v) = v
                    && !self.values.iter().any(|e| equal(e, &v))
                {
                    self.charge("$addToSet", &v)?;
                    self.values.push(v);
                }
            }
            Acc::Count => {}
        }
        Ok(())
    }

    fn charge(&mut self, what: &'static str, v: &Bson) -> Result<()> {
        let mut budget = Budget::value(what);
        budget.charge(self.values_size)?;
        let element = 8 + limits::bson_size(v);
        budget.charge(element)?;
        self.values_size += element;
        Ok(())
    }

    fn finish(self, acc: Acc) -> Bson {
        match acc {
            Acc::Sum => {
                if self.all_int && self.sum.abs() < 9.0e15 {
                    let i = self.sum as i64;
                    i32::try_from(i).map(Bson::Int32).unwrap_or(Bson::Int64(i))
                } else {
                    Bson::Double(self.sum)
                }
            }
            Acc::Avg => {
                if self.numeric == 0 {
                    Bson::Null
                } else {
                    Bson::Double(self.sum / self.numeric as f64)
                }
            }
            Acc::Min | Acc::Max | Acc::First | Acc::Last => self.best.unwrap_or(Bson::Null),
            Acc::Push | Acc::AddToSet => Bson::Array(self.values),
            Acc::Count => i32::try_from(self.count)
                .map(Bson::Int32)
                .unwrap_or(Bson::Int64(self.count)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::bson;

    struct NoLookup;
    impl Lookup for NoLookup {
        fn collection(&self, _: &str) -> Vec<Document> {
            vec![doc! {"_id": "x", "k": 1}]
        }
    }

    struct Foreign(Vec<Document>);
    impl Lookup for Foreign {
        fn collection(&self, _: &str) -> Vec<Document> {
            self.0.clone()
        }
    }

    /// The hash join finds exactly what a scan with `$eq` finds, across
    /// numeric types, arrays, nested paths, nulls, missing fields and the
    /// values it does not index.
    #[test]
    fn lookup_hash_join_matches_the_scan() {
        let values = vec![
            bson!(1),
            bson!(1.0),
            bson!(1i64),
            bson!(2),
            bson!("a"),
            bson!([1, 3]),
            bson!([[1, 3]]),
            bson!({"x": 1}),
            Bson::Null,
            bson!(9007199254740993i64),
            bson!(9007199254740992.0),
            Bson::Decimal128("1".parse().unwrap()),
        ];
        let mut foreign: Vec<Document> = values
            .iter()
            .enumerate()
            .map(|(i, v)| doc! {"_id": i as i32, "f": v.clone(), "n": {"g": v.clone()}})
            .collect();
        foreign.push(doc! {"_id": 100});
        let without_decimal: Vec<Document> = foreign
            .iter()
            .filter(|d| !matches!(d.get("f"), Some(Bson::Decimal128(_))))
            .cloned()
            .collect();
        let local: Vec<Document> = values
            .iter()
            .map(|v| doc! {"l": v.clone()})
            .chain([doc! {}])
            .collect();
        for foreign in [foreign, without_decimal] {
            for field in ["f", "n.g"] {
                let out = Pipeline::parse(&[bson!({"$lookup": {"from": "o", "localField": "l", "foreignField": field, "as": "m"}})])
                    .unwrap()
                    .run(local.clone(), &Foreign(foreign.clone()))
                    .unwrap();
                for (l, o) in local.iter().zip(&out) {
                    let r = path::resolve(l, "l");
                    let keys: Vec<Bson> = if r.values.is_empty() {
                        vec![Bson::Null]
                    } else {
                        r.values
                            .iter()
                            .flat_map(|v| match v {
                                Bson::Array(a) => a.clone(),
                                v => vec![(*v).clone()],
                            })
                            .collect()
                    };
                    let expected: Vec<Bson> = foreign
                        .iter()
                        .filter(|f| {
                            let r = path::resolve(f, field);
                            keys.iter()
                                .any(|k| super::super::filter::Pred::Eq(k.clone()).matches(&r))
                        })
                        .map(|f| Bson::Document(f.clone()))
                        .collect();
                    assert_eq!(o.get_array("m").unwrap(), &expected, "{l} on {field}");
                }
            }
        }
    }

    fn run(p: Bson, docs: Vec<Document>) -> Result<Vec<Document>> {
        let Bson::Array(stages) = p else {
            panic!("pipeline must be an array")
        };
        Pipeline::parse(&stages)?.run(docs, &NoLookup)
    }

    fn sample() -> Vec<Document> {
        vec![
            doc! {"_id": 1, "k": 1, "v": 10, "tags": ["a", "b"]},
            doc! {"_id": 2, "k": 2, "v": 5, "tags": []},
            doc! {"_id": 3, "k": 1, "v": 1.5},
        ]
    }

    /// Found by the `query` fuzz target and `tests/query_fuzz.rs`: a
    /// `$lookup` `as` (or `$unwind` `includeArrayIndex`) path of 200
    /// components put its value below 200 levels, past the nesting limit.
    #[test]
    fn long_paths_of_lookup_and_unwind_are_held_to_the_nesting_limit() {
        let deep = vec!["a"; 200].join(".");
        let e = run(
            bson!([{"$lookup": {"from": "c", "localField": "k", "foreignField": "k", "as": &deep}}]),
            sample(),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::Overflow);
        assert!(e.message.contains("$lookup"), "{}", e.message);
        // An index is a scalar: 200 levels hold it.
        let out = run(
            bson!([{"$unwind": {"path": "$tags", "includeArrayIndex": &deep}}]),
            vec![doc! {"tags": [{"t": {"u": 1}}]}],
        );
        assert!(out.is_ok());
        let fits = vec!["a"; 150].join(".");
        let out = run(
            bson!([{"$lookup": {"from": "c", "localField": "k", "foreignField": "k", "as": &fits}}]),
            sample(),
        )
        .unwrap();
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn match_sort_skip_limit_project_count() {
        let out = run(bson!([{"$match": {"v": {"$gt": 1}}}, {"$sort": {"v": 1}}, {"$skip": 1}, {"$limit": 1}, {"$project": {"v": 1, "_id": 0}}]), sample()).unwrap();
        assert_eq!(out, vec![doc! {"v": 5}]);
        let out = run(bson!([{"$match": {"k": 1}}, {"$count": "n"}]), sample()).unwrap();
        assert_eq!(out, vec![doc! {"n": 2}]);
    }

    #[test]
    fn group_accumulators() {
        let out = run(
            bson!([{"$group": {"_id": "$k", "total": {"$sum": "$v"}, "n": {"$sum": 1}, "avg": {"$avg": "$v"}, "mx": {"$max": "$v"}, "ids": {"$push": "$_id"}}}, {"$sort": {"_id": 1}}]),
            sample(),
        )
        .unwrap();
        assert_eq!(
            out[0],
            doc! {"_id": 1, "total": 11.5, "n": 2, "avg": 5.75, "mx": 10, "ids": [1, 3]}
        );
        assert_eq!(out[1].get_i32("total").unwrap(), 5);
    }

    #[test]
    fn unwind_add_fields_lookup() {
        let out = run(
            bson!([{"$unwind": "$tags"}, {"$addFields": {"double": {"$multiply": ["$v", 2]}}}]),
            sample(),
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].get_str("tags").unwrap(), "b");
        assert_eq!(out[1].get_i32("double").unwrap(), 20);
        let out = run(
            bson!([{"$unwind": {"path": "$tags", "preserveNullAndEmptyArrays": true}}]),
            sample(),
        )
        .unwrap();
        assert_eq!(out.len(), 4);
        let out = run(
            bson!([{"$lookup": {"from": "o", "localField": "k", "foreignField": "k", "as": "j"}}]),
            sample(),
        )
        .unwrap();
        assert_eq!(out[0].get_array("j").unwrap().len(), 1);
        assert_eq!(out[1].get_array("j").unwrap().len(), 0);
    }

    #[test]
    fn limits_hold() {
        // $addFields with a numeric component names a field of each element.
        let out = run(
            bson!([{"$addFields": {"tags.400000000": 1}}]),
            vec![doc! {"_id": 1, "tags": ["a", {"b": 1}]}],
        )
        .unwrap();
        assert_eq!(
            out[0],
            doc! {"_id": 1, "tags": [{"400000000": 1}, {"b": 1, "400000000": 1}]}
        );
        // Doubling the document every stage stops at 16 MiB.
        let stages: Vec<Bson> = (0..40)
            .map(|_| bson!({"$project": {"a": "$$ROOT", "b": "$$ROOT"}}))
            .collect();
        let e = run(
            Bson::Array(stages),
            vec![doc! {"_id": 1, "s": "x".repeat(1000)}],
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::BSONObjectTooLarge);
        // Nesting a document one level per stage stops at 200 levels.
        let stages: Vec<Bson> = (0..300)
            .map(|_| bson!({"$project": {"a": "$$ROOT"}}))
            .collect();
        let e = run(Bson::Array(stages), vec![doc! {"_id": 1}]).unwrap_err();
        assert_eq!(e.code, ErrorCode::Overflow);
        let stages: Vec<Bson> = (0..1001).map(|_| bson!({"$limit": 1})).collect();
        assert_eq!(
            run(Bson::Array(stages), vec![]).unwrap_err().code.code(),
            7749501
        );
        let stages: Vec<Bson> = (0..1000).map(|_| bson!({"$limit": 1})).collect();
        assert!(run(Bson::Array(stages), vec![]).is_ok());
        // $push stops at 16 MiB.
        let docs: Vec<Document> = (0..40)
            .map(|i| doc! {"_id": i, "s": "x".repeat(1 << 20)})
            .collect();
        let e = run(
            bson!([{"$group": {"_id": null, "all": {"$push": "$s"}}}]),
            docs.clone(),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
        assert!(e.message.contains("$push"));
        // $unwind copies a large document per element: bounded.
        let wide = doc! {"_id": 1, "s": "x".repeat(1 << 20), "a": (0..500).map(Bson::Int32).collect::<Vec<_>>()};
        let e = run(bson!([{"$unwind": "$a"}]), vec![wide]).unwrap_err();
        assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
        // $range in a pipeline.
        let e = run(
            bson!([{"$project": {"r": {"$range": [0, 1_000_000_000]}}}]),
            vec![doc! {"_id": 1}],
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
    }

    #[test]
    fn bad_stages() {
        assert_eq!(
            run(bson!([{"$nope": {}}]), vec![]).unwrap_err().code,
            ErrorCode::Location40324
        );
        assert!(run(bson!([{"$limit": 0}]), vec![]).is_err());
        assert!(run(bson!([{"$group": {"_id": 1, "x": {"$bad": 1}}}]), vec![]).is_err());
    }
}
