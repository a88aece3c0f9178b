//! Parsing a pipeline's stages: each stage's specification into a
//! [`Stage`], with MongoDB's error codes. Nothing here runs a stage.

use std::sync::Arc;

use bson::Bson;

use super::super::compare::{as_f64, as_i64};
use super::super::expr::type_name;
use super::super::expr::{Expr, Scope};
use super::super::filter::Filter;
use super::super::projection::Projection;
use super::super::sort::SortSpec;
use super::Pipeline;
use super::lookup_pipeline::{SubLookup, references};
use super::multi::{self, Pick, Quantile};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits;
use crate::query::vars::Vars;

#[derive(Debug, Clone)]
pub(super) enum Stage {
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
    /// `$lookup` with `let` + `pipeline` (see `lookup_pipeline`).
    SubLookup(Box<SubLookup>),
    /// `$facet`: each output field's sub-pipeline over the whole input.
    Facet(Vec<(String, Pipeline)>),
    /// `$unionWith`: the input, then `source`'s documents through `pipeline`.
    UnionWith {
        source: super::union::Source,
        pipeline: Pipeline,
    },
    /// `$sample`: `size` documents chosen at random (`order`: of the
    /// random keys, see `sample`).
    Sample {
        size: usize,
        order: SortSpec,
    },
    Bucket(Box<super::bucket::Bucket>),
    BucketAuto(Box<super::bucket::BucketAuto>),
    Redact(super::redact::Redact),
    GraphLookup(Box<super::graph_lookup::GraphLookup>),
    SetWindowFields(Box<super::window::SetWindowFields>),
    Densify(Box<super::densify::Densify>),
    /// `$geoNear` (first stage only; see `geo_near`).
    GeoNear(Box<super::geo_near::GeoNear>),
}

#[derive(Debug, Clone)]
pub(super) struct Group {
    pub id: Expr,
    pub accumulators: Vec<(String, Acc, Expr)>,
}

#[derive(Debug, Clone)]
pub(super) enum Acc {
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    Push,
    AddToSet,
    Count,
    StdDevPop,
    StdDevSamp,
    MergeObjects,
    /// `$firstN` … `$bottom` (see `multi`).
    Pick(Arc<Pick>),
    /// `$percentile`, `$median` (see `multi`).
    Quantile(Arc<Quantile>),
}

/// Parses one stage into `out` (`$sortByCount` is two stages, `$fill`
/// one or two); `depth`
/// counts the sub-pipelines (`$facet`, `$unionWith`) it is inside, and
/// `flow` is the metadata its input has (what `$facet` hands down).
pub(super) fn parse_into(
    name: &str,
    arg: &Bson,
    out: &mut Vec<Stage>,
    depth: usize,
    flow: &super::meta_flow::Flow,
) -> Result<()> {
    if name == "$sortByCount" {
        // {$sortByCount: e} is {$group: {_id: e, count: {$sum: 1}}}, {$sort: {count: -1}}.
        out.push(Stage::Group(Group {
            id: Expr::parse(arg)?,
            accumulators: vec![("count".into(), Acc::Count, Expr::Literal(Bson::Null))],
        }));
        out.push(Stage::Sort(SortSpec::parse(&bson::doc! {"count": -1})?));
        return Ok(());
    }
    if name == "$fill" {
        for (stage, spec) in super::fill::rewrite(arg)? {
            out.push(parse_stage(stage, &spec, depth, flow)?);
        }
        return Ok(());
    }
    out.push(parse_stage(name, arg, depth, flow)?);
    Ok(())
}

fn non_negative(name: &str, v: &Bson) -> Result<usize> {
    match as_i64(v) {
        Some(n) if n >= 0 => Ok(n as usize),
        _ => Err(CommandError::bad_value(format!(
            "invalid argument to {name} stage: expected a non-negative number, got {v}"
        ))),
    }
}

fn parse_stage(
    name: &str,
    arg: &Bson,
    depth: usize,
    flow: &super::meta_flow::Flow,
) -> Result<Stage> {
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
                accumulators.push(parse_accumulator(field, spec)?);
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
        "$lookup" => parse_lookup(doc_arg()?, depth)?,
        "$facet" => Stage::Facet(parse_facet(arg, depth, flow)?),
        "$unionWith" => parse_union_with(arg, depth)?,
        "$sample" => Stage::Sample {
            size: parse_sample(arg)?,
            order: super::sample::key_order()?,
        },
        "$out" | "$merge" if depth > 0 => {
            // Only the top level writes (and only it is authorized to).
            return Err(CommandError::new(
                ErrorCode::Location40600,
                format!(
                    "{name} is not allowed to be used within a sub-pipeline ($facet, $unionWith, $lookup)"
                ),
            ));
        }
        "$bucket" => Stage::Bucket(Box::new(super::bucket::Bucket::parse(arg)?)),
        "$bucketAuto" => Stage::BucketAuto(Box::new(super::bucket::BucketAuto::parse(arg)?)),
        "$redact" => Stage::Redact(super::redact::Redact::parse(arg)?),
        "$graphLookup" => {
            Stage::GraphLookup(Box::new(super::graph_lookup::GraphLookup::parse(arg)?))
        }
        "$setWindowFields" => {
            Stage::SetWindowFields(Box::new(super::window::SetWindowFields::parse(arg)?))
        }
        "$densify" => Stage::Densify(Box::new(super::densify::Densify::parse(arg)?)),
        "$geoNear" => Stage::GeoNear(Box::new(super::geo_near::GeoNear::parse(arg)?)),
        "$out" | "$merge" => {
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

/// One output field of `$group` (and `$bucket`, `$bucketAuto`):
/// `field: {$accumulator: expression}`.
pub(super) fn parse_accumulator(field: &str, spec: &Bson) -> Result<(String, Acc, Expr)> {
    let Bson::Document(spec) = spec else {
        return Err(CommandError::new(
            ErrorCode::Location40234,
            format!("The field '{field}' must be an accumulator object"),
        ));
    };
    let Some((acc_name, acc_arg)) = spec.iter().next().filter(|_| spec.len() == 1) else {
        return Err(CommandError::new(
            ErrorCode::Location40234,
            format!("The field '{field}' must specify one accumulator"),
        ));
    };
    let (acc, input) = accumulator(acc_name, acc_arg)?;
    Ok((field.to_owned(), acc, input))
}

/// One accumulator by name and its argument: what it folds and the
/// expression each document gives it (15952 for an unknown name, as
/// mongod 8.0, which has no `$concatArrays`/`$setUnion` accumulators).
pub(super) fn accumulator(name: &str, arg: &Bson) -> Result<(Acc, Expr)> {
    if let Some((pick, input)) = multi::parse_pick(name, arg, Scope::top(0))? {
        return Ok((Acc::Pick(Arc::new(pick)), input));
    }
    if let Some((q, input)) = multi::parse_quantile(name, arg, false, Scope::top(0))? {
        return Ok((Acc::Quantile(Arc::new(q)), input));
    }
    let acc = match name {
        "$sum" => Acc::Sum,
        "$avg" => Acc::Avg,
        "$min" => Acc::Min,
        "$max" => Acc::Max,
        "$first" => Acc::First,
        "$last" => Acc::Last,
        "$push" => Acc::Push,
        "$addToSet" => Acc::AddToSet,
        "$count" => Acc::Count,
        "$stdDevPop" => Acc::StdDevPop,
        "$stdDevSamp" => Acc::StdDevSamp,
        "$mergeObjects" => Acc::MergeObjects,
        "$accumulator" => return Err(crate::query::javascript::function_operator()),
        other => {
            return Err(CommandError::new(
                ErrorCode::Location15952,
                format!("unknown group operator '{other}'"),
            ));
        }
    };
    Ok((acc, Expr::parse(arg)?))
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

/// A sub-pipeline of a stage, one level deeper than the stage.
fn sub_pipeline(stages: &[Bson], depth: usize) -> Result<Pipeline> {
    let depth = depth + 1;
    limits::check_sub_pipeline_depth(depth)?;
    Pipeline::parse_at(stages, depth)
}

/// `{$facet: {name: [stages], ...}}`, with MongoDB's codes.
fn parse_facet(
    arg: &Bson,
    depth: usize,
    flow: &super::meta_flow::Flow,
) -> Result<Vec<(String, Pipeline)>> {
    let spec = match arg {
        Bson::Document(d) if !d.is_empty() => d,
        _ => {
            return Err(CommandError::new(
                ErrorCode::Location40169,
                format!("the $facet specification must be a non-empty object, but found: {arg}"),
            ));
        }
    };
    let mut facets = Vec::with_capacity(spec.len());
    for (name, stages) in spec {
        if name.is_empty() || name.starts_with('$') || name.contains('.') {
            return Err(CommandError::new(
                ErrorCode::Location40174,
                format!(
                    "$facet field names may not be empty, start with '$' or contain '.': {name}"
                ),
            ));
        }
        let Bson::Array(stages) = stages else {
            return Err(CommandError::new(
                ErrorCode::Location40170,
                format!(
                    "arguments to $facet must be arrays, {name} is type {}",
                    type_name(stages)
                ),
            ));
        };
        if let Some(bad) = stages
            .iter()
            .find(|s| !matches!(s, Bson::Document(d) if !d.is_empty()))
        {
            return Err(CommandError::new(
                ErrorCode::Location40171,
                format!(
                    "elements of arrays in $facet spec must be non-empty objects, {name} argument contained an element of type {}",
                    type_name(bad)
                ),
            ));
        }
        for s in stages {
            if let Some(inner) = s.as_document().and_then(|d| d.keys().next()) {
                // MongoDB's list: stages that must be first or that write.
                if matches!(
                    inner.as_str(),
                    "$facet"
                        | "$out"
                        | "$merge"
                        | "$geoNear"
                        | "$collStats"
                        | "$indexStats"
                        | "$planCacheStats"
                        | "$changeStream"
                        | "$documents"
                ) {
                    return Err(CommandError::new(
                        ErrorCode::Location40600,
                        format!("{inner} is not allowed to be used within a $facet stage"),
                    ));
                }
            }
        }
        let depth = depth + 1;
        limits::check_sub_pipeline_depth(depth)?;
        facets.push((name.clone(), Pipeline::parse_facet(stages, depth, flow)?));
    }
    Ok(facets)
}

/// `{$unionWith: "coll"}`, `{$unionWith: {coll, pipeline}}`, or
/// `{$unionWith: {pipeline}}` whose pipeline starts with `$documents`.
fn parse_union_with(arg: &Bson, depth: usize) -> Result<Stage> {
    let (coll, stages): (Option<&str>, &[Bson]) = match arg {
        Bson::String(c) => (Some(c.as_str()), &[][..]),
        Bson::Document(d) => {
            let mut coll = None;
            let mut stages: &[Bson] = &[];
            for (k, v) in d {
                match (k.as_str(), v) {
                    ("coll", Bson::String(c)) => coll = Some(c.as_str()),
                    ("pipeline", Bson::Array(a)) => stages = a.as_slice(),
                    ("coll" | "pipeline", _) => {
                        return Err(CommandError::type_mismatch(format!(
                            "BSON field '$unionWith.{k}' is the wrong type '{}', expected type '{}'",
                            type_name(v),
                            if k == "coll" { "string" } else { "array" }
                        )));
                    }
                    _ => {
                        return Err(CommandError::new(
                            ErrorCode::Location40415,
                            format!("BSON field '$unionWith.{k}' is an unknown field."),
                        ));
                    }
                }
            }
            (coll, stages)
        }
        _ => {
            return Err(CommandError::failed_to_parse(format!(
                "the $unionWith stage specification must be an object or string, but found {}",
                type_name(arg)
            )));
        }
    };
    let Some(coll) = coll else {
        let (documents, rest) =
            super::documents::split_leading(stages, "$unionWith", "collection")?;
        return Ok(Stage::UnionWith {
            source: super::union::Source::Documents(super::documents::evaluate(documents)?),
            pipeline: sub_pipeline(rest, depth)?,
        });
    };
    if coll.is_empty() || coll.contains('\0') || coll.starts_with("system.") || coll.contains('$') {
        return Err(CommandError::new(
            ErrorCode::InvalidNamespace,
            format!("Invalid collection name for $unionWith: '{coll}'"),
        ));
    }
    Ok(Stage::UnionWith {
        source: super::union::Source::Collection(coll.to_owned()),
        pipeline: sub_pipeline(stages, depth)?,
    })
}

/// `{$sample: {size: n}}`.
fn parse_sample(arg: &Bson) -> Result<usize> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::new(
            ErrorCode::Location28745,
            "the $sample stage specification must be an object",
        ));
    };
    let mut size = None;
    for (k, v) in d {
        if k != "size" {
            return Err(CommandError::new(
                ErrorCode::Location28748,
                format!("unrecognized option to $sample: {k}"),
            ));
        }
        if !super::super::compare::is_number(v) {
            return Err(CommandError::new(
                ErrorCode::Location28746,
                "size argument to $sample must be a number",
            ));
        }
        size = Some(match as_f64(v) {
            Some(n) if n >= 0.0 => n as usize,
            _ => {
                return Err(CommandError::new(
                    ErrorCode::Location28747,
                    "size argument to $sample must not be negative",
                ));
            }
        });
    }
    size.ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location28749,
            "$sample stage must specify a size",
        )
    })
}

/// `$lookup`: the equality form (`from`, `localField`, `foreignField`,
/// `as`), the sub-pipeline form (`from`, `let`, `pipeline`, `as`), or
/// both together (MongoDB 5.0+).
fn parse_lookup(d: &bson::Document, depth: usize) -> Result<Stage> {
    let mut from = None;
    let mut local = None;
    let mut foreign = None;
    let mut as_field = None;
    let mut lets = None;
    let mut stages = None;
    for (k, v) in d {
        let string = || match v {
            Bson::String(s) => Ok(Some(s.clone())),
            _ => Err(CommandError::failed_to_parse(format!(
                "$lookup argument '{k}' must be a string, is type {}",
                type_name(v)
            ))),
        };
        match k.as_str() {
            "from" => from = string()?,
            "localField" => local = string()?,
            "foreignField" => foreign = string()?,
            "as" => as_field = string()?,
            "let" => match v {
                Bson::Document(l) => lets = Some(l),
                _ => {
                    return Err(CommandError::failed_to_parse(format!(
                        "$lookup argument 'let' must be an object, is type {}",
                        type_name(v)
                    )));
                }
            },
            "pipeline" => match v {
                Bson::Array(a) => stages = Some(a),
                _ => {
                    return Err(CommandError::failed_to_parse(
                        "'pipeline' option must be specified as an array",
                    ));
                }
            },
            other => {
                return Err(CommandError::failed_to_parse(format!(
                    "unknown argument to $lookup: {other}"
                )));
            }
        }
    }
    let Some(as_field) = as_field else {
        return Err(CommandError::failed_to_parse(
            "must specify 'as' field for a $lookup",
        ));
    };
    let equality = match (local, foreign) {
        (Some(l), Some(f)) => Some((l, f)),
        (None, None) => None,
        _ => {
            return Err(CommandError::failed_to_parse(
                "$lookup requires both or neither of 'localField' and 'foreignField' to be specified",
            ));
        }
    };
    let Some(stages) = stages else {
        if lets.is_some() {
            return Err(CommandError::failed_to_parse(
                "$lookup with 'let' must also specify a 'pipeline'",
            ));
        }
        let Some((local, foreign)) = equality else {
            return Err(CommandError::failed_to_parse(
                "$lookup requires either 'pipeline' or both 'localField' and 'foreignField' to be specified",
            ));
        };
        let Some(from) = from else {
            return Err(CommandError::failed_to_parse(
                "must specify 'from' field for a $lookup",
            ));
        };
        return Ok(Stage::Lookup {
            from,
            local,
            foreign,
            as_field,
        });
    };
    if from.is_none() {
        // MongoDB 6.0's form: the pipeline makes its own documents.
        super::documents::split_leading(stages, "$lookup", "collection")?;
    }
    let mut parsed_lets = Vec::new();
    let mut placeholders = bson::Document::new();
    for (name, e) in lets.into_iter().flatten() {
        parsed_lets.push((name.clone(), Expr::parse(e)?));
        placeholders.insert(name.clone(), Bson::Null);
    }
    // Parsed once now with every variable null, so a bad sub-pipeline
    // fails before any document is read (and names are checked).
    let checked = Vars::from_values(placeholders)?.bind_pipeline(stages)?;
    match from {
        Some(_) => sub_pipeline(&checked, depth)?,
        None => sub_pipeline(&checked[1..], depth)?,
    };
    Ok(Stage::SubLookup(Box::new(SubLookup {
        from,
        equality,
        lets: parsed_lets,
        references: stages.iter().map(references).sum(),
        stages: stages.clone(),
        depth: depth + 1,
        as_field,
    })))
}
