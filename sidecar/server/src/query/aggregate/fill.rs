//! `$fill`: MongoDB's rewrite of it, into the stages it stands for. A
//! `method` output (`locf`, `linear`) becomes a `$setWindowFields` with
//! `$locf`/`$linearFill` of the field (partitioned and sorted as asked);
//! a `value` output becomes `$addFields: {f: {$ifNull: ["$f", value]}}`,
//! after the window stage, as in `document_source_fill.cpp`.

use bson::{Bson, Document, doc};

use super::super::expr::{Expr, type_name};
use super::super::sort::SortSpec;
use crate::error::{CommandError, ErrorCode, Result};

/// The stages (`{name: spec}`) a `$fill` specification stands for.
pub(super) fn rewrite(arg: &Bson) -> Result<Vec<(&'static str, Bson)>> {
    let Bson::Document(spec) = arg else {
        return Err(CommandError::failed_to_parse(format!(
            "The $fill stage specification must be an object, found {}",
            type_name(arg)
        )));
    };
    let mut sort_by = None;
    let mut partition_by = None;
    let mut partition_by_fields = None;
    let mut output = None;
    for (k, v) in spec {
        match (k.as_str(), v) {
            ("sortBy", Bson::Document(d)) => sort_by = Some(d),
            ("partitionBy", Bson::String(_) | Bson::Document(_)) => partition_by = Some(v),
            ("partitionByFields", Bson::Array(a)) => partition_by_fields = Some(a),
            ("output", Bson::Document(d)) => output = Some(d),
            ("sortBy" | "partitionBy" | "partitionByFields" | "output", _) => {
                return Err(CommandError::type_mismatch(format!(
                    "BSON field '$fill.{k}' is the wrong type '{}'",
                    type_name(v)
                )));
            }
            _ => {
                return Err(CommandError::new(
                    ErrorCode::Location40415,
                    format!("BSON field '$fill.{k}' is an unknown field."),
                ));
            }
        }
    }
    let Some(output) = output else {
        return Err(CommandError::new(
            ErrorCode::Location40414,
            "BSON field '$fill.output' is missing but a required field",
        ));
    };
    if output.is_empty() {
        return Err(CommandError::new(
            ErrorCode::Location6050203,
            "The output field in '$fill' must contain an object with at least one element",
        ));
    }
    let mut window_output = Document::new();
    let mut add_fields = Document::new();
    for (field, f) in output {
        let Bson::Document(f) = f else {
            return Err(CommandError::new(
                ErrorCode::Location6050200,
                "Each fill output specification must be an object with exactly one field",
            ));
        };
        let mut method = None;
        let mut value = None;
        for (k, v) in f {
            match k.as_str() {
                "method" => match v {
                    Bson::String(m) => method = Some(m.as_str()),
                    _ => {
                        return Err(CommandError::type_mismatch(format!(
                            "BSON field '$fill.method' is the wrong type '{}', expected type 'string'",
                            type_name(v)
                        )));
                    }
                },
                "value" => value = Some(v),
                other => {
                    return Err(CommandError::new(
                        ErrorCode::Location40415,
                        format!("BSON field '$fill.{other}' is an unknown field."),
                    ));
                }
            }
        }
        match (method, value) {
            (Some(_), Some(_)) => {
                return Err(CommandError::new(
                    ErrorCode::Location6050201,
                    "Each fill output specification must have exactly one of 'method' or 'value' fields, not both",
                ));
            }
            (Some(m), None) => {
                let function = match m {
                    "locf" => "$locf",
                    "linear" => "$linearFill",
                    _ => {
                        return Err(CommandError::new(
                            ErrorCode::Location6050202,
                            "Method must be either locf or linear",
                        ));
                    }
                };
                window_output.insert(field.clone(), doc! {function: format!("${field}")});
            }
            (None, Some(v)) => {
                add_fields.insert(
                    field.clone(),
                    doc! {"$ifNull": [format!("${field}"), v.clone()]},
                );
            }
            (None, None) => {
                return Err(CommandError::new(
                    ErrorCode::Location6050200,
                    "Each fill output specification must be an object with exactly one field",
                ));
            }
        }
    }
    if partition_by.is_some() && partition_by_fields.is_some() {
        return Err(CommandError::new(
            ErrorCode::Location6050204,
            "Maximum one of 'partitionBy' and 'partitionByFields can be specified in '$fill'",
        ));
    }
    // Checked even when no window stage uses them, as MongoDB does.
    if let Some(s) = sort_by {
        SortSpec::parse(s)?;
    }
    if let Some(p) = partition_by {
        Expr::parse(p)?;
    }
    let partition_fields = match partition_by_fields {
        Some(fields) => Some(fields_document(fields)?),
        None => None,
    };
    let mut stages = Vec::new();
    if !window_output.is_empty() {
        let mut swf = doc! {"output": window_output};
        if let Some(s) = sort_by {
            swf.insert("sortBy", s.clone());
        }
        if let Some(p) = partition_by {
            swf.insert("partitionBy", p.clone());
        } else if let Some(p) = partition_fields {
            swf.insert("partitionBy", p);
        }
        stages.push(("$setWindowFields", Bson::Document(swf)));
    }
    if !add_fields.is_empty() {
        stages.push(("$addFields", Bson::Document(add_fields)));
    }
    Ok(stages)
}

/// `partitionByFields: ["a", "b.c"]` as the expression `{a: "$a", b: {c: "$b.c"}}`.
fn fields_document(fields: &[Bson]) -> Result<Bson> {
    let mut out = Document::new();
    for f in fields {
        let Bson::String(name) = f else {
            return Err(CommandError::type_mismatch(
                "BSON field '$fill.partitionByFields' must be an array of strings",
            ));
        };
        if name.is_empty() || name.starts_with('$') {
            return Err(CommandError::new(
                ErrorCode::Location16410,
                format!("FieldPath field names may not start with '$' or be empty: '{name}'"),
            ));
        }
        let parts: Vec<&str> = name.split('.').collect();
        let mut at = &mut out;
        for (i, p) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                at.insert(*p, format!("${name}"));
            } else {
                if !matches!(at.get(*p), Some(Bson::Document(_))) {
                    at.insert(*p, Document::new());
                }
                at = match at.get_mut(*p) {
                    Some(Bson::Document(d)) => d,
                    _ => return Err(CommandError::bad_value("partitionByFields collide")),
                };
            }
        }
    }
    Ok(Bson::Document(out))
}
