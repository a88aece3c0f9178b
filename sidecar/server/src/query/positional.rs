//! Positional update paths: `a.$.b` (the element the query matched),
//! `a.$[].b` (every element) and `a.$[id].b` (the elements an
//! `arrayFilters` entry matches), expanded for one document into the
//! concrete paths (`a.3.b`) the update operators then write.

use bson::{Bson, Document};

use super::filter::Filter;
use super::path;
use crate::error::{CommandError, Result};
use crate::limits::{self, Budget};

/// An update's `arrayFilters`: each identifier with its filter, which is
/// matched against `{<identifier>: element}`.
#[derive(Debug, Clone, Default)]
pub struct ArrayFilters(Vec<(String, Filter)>);

impl ArrayFilters {
    /// Parses `arrayFilters` (an array of filter documents, each naming
    /// one identifier at its top level).
    pub fn parse(v: Option<&Bson>) -> Result<ArrayFilters> {
        let items = match v {
            None | Some(Bson::Null) => return Ok(ArrayFilters::default()),
            Some(Bson::Array(a)) => a,
            Some(other) => {
                return Err(CommandError::type_mismatch(format!(
                    "BSON field 'arrayFilters' is the wrong type '{}', expected type 'array'",
                    super::expr::type_name(other)
                )));
            }
        };
        limits::check_write_batch(items.len())?;
        let mut out: Vec<(String, Filter)> = Vec::with_capacity(items.len());
        for item in items {
            let Bson::Document(d) = item else {
                return Err(CommandError::type_mismatch(
                    "BSON field 'arrayFilters' items must be objects",
                ));
            };
            let mut ids = Vec::new();
            identifiers(d, &mut ids, 0)?;
            ids.dedup();
            let id = match ids.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(CommandError::failed_to_parse(
                        "Cannot use an expression without a top-level field name in arrayFilters",
                    ));
                }
                [a, b, ..] => {
                    return Err(CommandError::failed_to_parse(format!(
                        "Error parsing array filter :: caused by :: Expected a single top-level field name, found '{a}' and '{b}'"
                    )));
                }
            };
            if out.iter().any(|(o, _)| *o == id) {
                return Err(CommandError::failed_to_parse(format!(
                    "Found multiple array filters with the same top-level field name {id}"
                )));
            }
            out.push((id, Filter::parse(d)?));
        }
        Ok(ArrayFilters(out))
    }

    fn get(&self, id: &str) -> Option<&Filter> {
        self.0.iter().find(|(i, _)| i == id).map(|(_, f)| f)
    }

    /// Every identifier must be used by some path, and every `$[id]` of
    /// `paths` must have a filter (MongoDB checks both when it parses).
    pub fn check_used(&self, paths: &[&str]) -> Result<()> {
        for p in paths {
            for part in p.split('.') {
                if let Some(id) = identifier_of(part)
                    && !id.is_empty()
                    && self.get(id).is_none()
                {
                    return Err(CommandError::bad_value(format!(
                        "No array filter found for identifier '{id}' in path '{p}'"
                    )));
                }
            }
        }
        for (id, _) in &self.0 {
            let used = paths
                .iter()
                .any(|p| p.split('.').any(|part| identifier_of(part) == Some(id)));
            if !used {
                return Err(CommandError::failed_to_parse(format!(
                    "The array filter for identifier '{id}' was not used in the update"
                )));
            }
        }
        Ok(())
    }
}

/// `$[id]` → `Some("id")`, `$[]` → `Some("")`, anything else `None`.
fn identifier_of(part: &str) -> Option<&str> {
    part.strip_prefix("$[")?.strip_suffix(']')
}

/// Whether `path` has a positional component (`$`, `$[]`, `$[id]`).
pub fn is_positional(path: &str) -> bool {
    path.split('.')
        .any(|p| p == "$" || identifier_of(p).is_some())
}

/// The top-level field names of an array filter, through `$and`/`$or`/`$nor`.
fn identifiers(d: &Document, out: &mut Vec<String>, depth: usize) -> Result<()> {
    limits::check_query_depth(depth, d)?;
    for (k, v) in d {
        match (k.as_str(), v) {
            ("$and" | "$or" | "$nor", Bson::Array(items)) => {
                for i in items {
                    if let Bson::Document(sub) = i {
                        identifiers(sub, out, depth + 1)?;
                    }
                }
            }
            (k, _) if k.starts_with('$') => {
                return Err(CommandError::failed_to_parse(format!(
                    "Cannot use {k} at the top level of an array filter"
                )));
            }
            (k, _) => {
                let id = k.split('.').next().unwrap_or(k);
                let mut chars = id.chars();
                let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                    && chars.all(|c| c.is_ascii_alphanumeric());
                if !valid {
                    return Err(CommandError::bad_value(format!(
                        "Error parsing array filter :: caused by :: The top-level field name must be an alphanumeric string beginning with a lowercase letter, found '{id}'"
                    )));
                }
                out.push(id.to_string());
            }
        }
    }
    Ok(())
}

/// Expands `path` in `doc` into concrete paths. `query` is the statement's
/// filter (for `$`); the concrete paths' total length is held to a
/// document's size, so `a.$[].b.$[]` over large arrays cannot take
/// unbounded memory.
pub fn expand(
    doc: &Document,
    path: &str,
    query: Option<&Filter>,
    filters: &ArrayFilters,
) -> Result<Vec<String>> {
    let mut budget = Budget::value("the array elements an update's positional paths reach");
    // (concrete prefix, the value there if any)
    let mut current: Vec<(String, Option<&Bson>)> = vec![(String::new(), None)];
    let mut first = true;
    for part in path.split('.') {
        let mut next = Vec::with_capacity(current.len());
        for (prefix, value) in current {
            let join = |c: &str| {
                if prefix.is_empty() {
                    c.to_string()
                } else {
                    format!("{prefix}.{c}")
                }
            };
            let child = |c: &str| -> Option<&Bson> {
                if first {
                    return doc.get(c);
                }
                match value? {
                    Bson::Document(d) => d.get(c),
                    Bson::Array(a) => a.get(c.parse::<usize>().ok()?),
                    _ => None,
                }
            };
            if part == "$" {
                let i = matched_position(&prefix, value, query)?;
                let c = i.to_string();
                budget.charge(prefix.len() + c.len() + 1)?;
                next.push((join(&c), child(&c)));
            } else if let Some(id) = identifier_of(part) {
                let Some(Bson::Array(items)) = value.filter(|_| !first) else {
                    return Err(CommandError::bad_value(format!(
                        "The path '{prefix}' must exist in the document in order to apply array updates."
                    )));
                };
                let filter = if id.is_empty() {
                    None
                } else {
                    Some(filters.get(id).ok_or_else(|| {
                        CommandError::bad_value(format!(
                            "No array filter found for identifier '{id}' in path '{path}'"
                        ))
                    })?)
                };
                for (i, e) in items.iter().enumerate() {
                    if let Some(f) = filter {
                        let mut one = Document::new();
                        one.insert(id, e.clone());
                        if !f.try_matches(&one)? {
                            continue;
                        }
                    }
                    let c = i.to_string();
                    budget.charge(prefix.len() + c.len() + 1)?;
                    next.push((join(&c), Some(e)));
                }
            } else {
                budget.charge(prefix.len() + part.len() + 1)?;
                next.push((join(part), child(part)));
            }
        }
        current = next;
        first = false;
    }
    Ok(current.into_iter().map(|(p, _)| p).collect())
}

/// The index of the first element of the array at `prefix` that the
/// query's conditions on that array match (the `$` positional operator).
pub(crate) fn matched_position(
    prefix: &str,
    value: Option<&Bson>,
    query: Option<&Filter>,
) -> Result<usize> {
    let not_found = || {
        CommandError::bad_value(
            "The positional operator did not find the match needed from the query.",
        )
    };
    let (Some(Bson::Array(items)), Some(query)) = (value, query) else {
        return Err(not_found());
    };
    let mut conditions = Vec::new();
    array_conditions(query, prefix, &mut conditions);
    if conditions.is_empty() {
        return Err(not_found());
    }
    for (i, e) in items.iter().enumerate() {
        // The document as the query sees it with only this element in the
        // array: the conditions on the array's path match it or not.
        let mut one = Document::new();
        path::set(&mut one, prefix, Bson::Array(vec![e.clone()]))?;
        let mut all = true;
        for c in &conditions {
            if !c.try_matches(&one)? {
                all = false;
                break;
            }
        }
        if all {
            return Ok(i);
        }
    }
    Err(not_found())
}

/// The query's conditions on `prefix` or below it, from its top-level
/// conjunction.
fn array_conditions<'a>(f: &'a Filter, prefix: &str, out: &mut Vec<&'a Filter>) {
    match f {
        Filter::And(fs) => {
            for f in fs {
                array_conditions(f, prefix, out);
            }
        }
        Filter::Field { path, .. }
            if path == prefix
                || (path.len() > prefix.len()
                    && path.starts_with(prefix)
                    && path.as_bytes()[prefix.len()] == b'.') =>
        {
            out.push(f);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use bson::{bson, doc};

    fn filters(v: Bson) -> ArrayFilters {
        ArrayFilters::parse(Some(&v)).unwrap()
    }

    #[test]
    fn expands_each_form() {
        let d = doc! {"_id": 1, "y": [{"b": 3}, {"b": 1}, {"b": 2}], "g": [80, 95, 100]};
        let none = ArrayFilters::default();
        assert_eq!(
            expand(&d, "y.$[].b", None, &none).unwrap(),
            ["y.0.b", "y.1.b", "y.2.b"]
        );
        let f = filters(bson!([{"i.b": {"$gte": 2}}]));
        assert_eq!(
            expand(&d, "y.$[i].b", None, &f).unwrap(),
            ["y.0.b", "y.2.b"]
        );
        let q = Filter::parse(&doc! {"_id": 1, "g": {"$gte": 90}}).unwrap();
        assert_eq!(expand(&d, "g.$", Some(&q), &none).unwrap(), ["g.1"]);
        let q = Filter::parse(&doc! {"y.b": 2}).unwrap();
        assert_eq!(expand(&d, "y.$.b", Some(&q), &none).unwrap(), ["y.2.b"]);
        assert_eq!(expand(&d, "x.y", None, &none).unwrap(), ["x.y"]);
    }

    #[test]
    fn errors() {
        let d = doc! {"a": 1, "g": [1, 2]};
        let none = ArrayFilters::default();
        let code = |r: Result<Vec<String>>| r.unwrap_err().code;
        assert_eq!(code(expand(&d, "a.$[]", None, &none)), ErrorCode::BadValue);
        assert_eq!(code(expand(&d, "z.$[]", None, &none)), ErrorCode::BadValue);
        assert_eq!(code(expand(&d, "g.$", None, &none)), ErrorCode::BadValue);
        let q = Filter::parse(&doc! {"a": 1}).unwrap();
        assert_eq!(
            code(expand(&d, "g.$", Some(&q), &none)),
            ErrorCode::BadValue
        );
        assert_eq!(code(expand(&d, "g.$[i]", None, &none)), ErrorCode::BadValue);
        let bad = |v: Bson| ArrayFilters::parse(Some(&v)).unwrap_err().code;
        assert_eq!(bad(bson!([{"I": 1}])), ErrorCode::BadValue);
        assert_eq!(bad(bson!([{"i": 1}, {"i": 2}])), ErrorCode::FailedToParse);
        assert_eq!(bad(bson!([{"i": 1, "j": 2}])), ErrorCode::FailedToParse);
        assert_eq!(bad(bson!([{}])), ErrorCode::FailedToParse);
        assert_eq!(bad(bson!([1])), ErrorCode::TypeMismatch);
        assert_eq!(bad(bson!(1)), ErrorCode::TypeMismatch);
        let f = filters(bson!([{"i": 1}]));
        assert_eq!(
            f.check_used(&["a.b"]).unwrap_err().code,
            ErrorCode::FailedToParse
        );
        assert!(f.check_used(&["a.$[i]"]).is_ok());
        assert_eq!(
            ArrayFilters::default()
                .check_used(&["a.$[j]"])
                .unwrap_err()
                .code,
            ErrorCode::BadValue
        );
    }

    #[test]
    fn expansion_is_bounded() {
        // 4 x 500,000 positions of ~10 bytes each: refused past 16 MiB of paths.
        let inner: Vec<Bson> = (0..500_000).map(|_| Bson::Null).collect();
        let outer: Vec<Bson> = (0..4).map(|_| Bson::Array(inner.clone())).collect();
        let d = doc! {"a": outer};
        let r = expand(&d, "a.$[].$[]", None, &ArrayFilters::default());
        assert_eq!(r.unwrap_err().code, ErrorCode::ExceededMemoryLimit);
    }
}
