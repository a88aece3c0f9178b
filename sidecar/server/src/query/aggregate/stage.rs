//! Parsing a pipeline's stages: each stage's specification into a
//! [`Stage`], with MongoDB's error codes. Nothing here runs a stage.

use bson::Bson;

use super::super::compare::as_i64;
use super::super::expr::Expr;
use super::super::filter::Filter;
use super::super::projection::Projection;
use super::super::sort::SortSpec;
use crate::error::{CommandError, ErrorCode, Result};

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
}

#[derive(Debug, Clone)]
pub(super) struct Group {
    pub id: Expr,
    pub accumulators: Vec<(String, Acc, Expr)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
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
}

/// Parses one stage into `out` (`$sortByCount` is two stages).
pub(super) fn parse_into(name: &str, arg: &Bson, out: &mut Vec<Stage>) -> Result<()> {
    if name == "$sortByCount" {
        // {$sortByCount: e} is {$group: {_id: e, count: {$sum: 1}}}, {$sort: {count: -1}}.
        out.push(Stage::Group(Group {
            id: Expr::parse(arg)?,
            accumulators: vec![("count".into(), Acc::Count, Expr::Literal(Bson::Null))],
        }));
        out.push(Stage::Sort(SortSpec::parse(&bson::doc! {"count": -1})?));
        return Ok(());
    }
    out.push(parse_stage(name, arg)?);
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
        "$lookup" => {
            let d = doc_arg()?;
            // Only the equality form: a sub-pipeline is refused by name,
            // never accepted beside the fields and dropped.
            for k in d.keys() {
                match k.as_str() {
                    "from" | "localField" | "foreignField" | "as" => {}
                    "pipeline" | "let" => {
                        return Err(CommandError::not_implemented(&format!(
                            "$lookup with '{k}' (a sub-pipeline)"
                        )));
                    }
                    other => {
                        return Err(CommandError::failed_to_parse(format!(
                            "unknown argument to $lookup: {other}"
                        )));
                    }
                }
            }
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
