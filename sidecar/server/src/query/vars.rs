//! `let`: a command's user variables (`$$name`), bound once per command.
//!
//! MongoDB evaluates each `let` expression once, before the command runs,
//! so a variable is a constant for the whole command. That is what lets
//! this module bind them by substitution: every `"$$name"` (or
//! `"$$name.a.b"`) in an expression position becomes `{$literal: value}`
//! before the filter or pipeline is parsed, and the parsers never see a
//! user variable. Only expression positions are rewritten, as in MongoDB:
//! `$expr` in a filter (at its top or under `$and`/`$or`/`$nor`), and the
//! expressions of pipeline stages; a plain query value `{x: "$$id"}` and
//! an update operator's argument `{$set: {x: "$$id"}}` stay literal
//! strings. A `$literal` is never rewritten.

use bson::{Bson, Document, doc};

use super::expr::Expr;
use super::path;
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits;

/// A command's user variables, evaluated.
#[derive(Debug, Clone, Default)]
pub struct Vars(Document);

impl Vars {
    /// Parses and evaluates a command's `let` document. Names follow
    /// MongoDB's rule for user variables (a lowercase letter or a non-ASCII
    /// character first, then letters, digits and `_`); `CURRENT`, `ROOT`
    /// and the other system variables cannot be set.
    pub fn parse(spec: Option<&Bson>) -> Result<Vars> {
        let spec = match spec {
            None | Some(Bson::Null) => return Ok(Vars::default()),
            Some(Bson::Document(d)) => d,
            Some(other) => {
                return Err(CommandError::type_mismatch(format!(
                    "BSON field 'let' is the wrong type '{}', expected type 'object'",
                    super::expr::type_name(other)
                )));
            }
        };
        let mut out = Document::new();
        for (name, value) in spec {
            validate_name(name)?;
            // Variables defined earlier in the same `let` are visible.
            let bound = Vars(out.clone()).bind_expression(value, 0)?;
            let v = Expr::parse(&bound)?
                .eval(&Document::new())?
                .unwrap_or(Bson::Null);
            out.insert(name.clone(), v);
        }
        Ok(Vars(out))
    }

    /// Variables with values already computed (`$merge`'s `let`, evaluated
    /// per output document); names are checked as `let`'s are.
    pub fn from_values(values: Document) -> Result<Vars> {
        for name in values.keys() {
            validate_name(name)?;
        }
        Ok(Vars(values))
    }

    /// These variables and an update statement's constants (`c`: values,
    /// not expressions), which take precedence for that statement.
    pub fn with_constants(&self, constants: Option<&Bson>) -> Result<Vars> {
        match constants {
            None | Some(Bson::Null) => Ok(self.clone()),
            Some(Bson::Document(c)) => {
                let mut out = self.0.clone();
                for (name, value) in c {
                    validate_name(name)?;
                    out.insert(name.clone(), value.clone());
                }
                Ok(Vars(out))
            }
            Some(other) => Err(CommandError::type_mismatch(format!(
                "BSON field 'c' is the wrong type '{}', expected type 'object'",
                super::expr::type_name(other)
            ))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A query filter with its `$expr`s bound.
    pub fn bind_filter(&self, filter: &Document) -> Result<Document> {
        self.filter_at(filter, 0)
    }

    fn filter_at(&self, filter: &Document, depth: usize) -> Result<Document> {
        if self.is_empty() {
            return Ok(filter.clone());
        }
        limits::check_query_depth(depth, filter)?;
        let mut out = Document::new();
        for (k, v) in filter {
            let v = match (k.as_str(), v) {
                ("$expr", e) => self.bind_expression(e, depth + 1)?,
                ("$and" | "$or" | "$nor", Bson::Array(items)) => Bson::Array(
                    items
                        .iter()
                        .map(|i| match i {
                            Bson::Document(d) => self.filter_at(d, depth + 1).map(Bson::Document),
                            other => Ok(other.clone()),
                        })
                        .collect::<Result<_>>()?,
                ),
                (_, other) => other.clone(),
            };
            out.insert(k.clone(), v);
        }
        Ok(out)
    }

    /// A pipeline's stages with their expressions bound: `$match` as a
    /// filter, the other stages' arguments as expressions.
    pub fn bind_pipeline(&self, stages: &[Bson]) -> Result<Vec<Bson>> {
        if self.is_empty() {
            return Ok(stages.to_vec());
        }
        stages
            .iter()
            .map(|stage| {
                let Bson::Document(d) = stage else {
                    return Ok(stage.clone());
                };
                let mut out = Document::new();
                for (name, arg) in d {
                    let arg = match (name.as_str(), arg) {
                        ("$match", Bson::Document(f)) => Bson::Document(self.bind_filter(f)?),
                        _ => self.bind_expression(arg, 0)?,
                    };
                    out.insert(name.clone(), arg);
                }
                Ok(Bson::Document(out))
            })
            .collect()
    }

    /// An expression with every `$$name` of these variables replaced by
    /// `{$literal: value}`.
    fn bind_expression(&self, e: &Bson, depth: usize) -> Result<Bson> {
        self.bind_scoped(e, depth, &[])
    }

    /// [`Vars::bind_expression`] inside operators that bind `shadowed`:
    /// there a `$$name` is the operator's variable, not the command's, and
    /// stays for the expression parser to resolve.
    fn bind_scoped(&self, e: &Bson, depth: usize, shadowed: &[String]) -> Result<Bson> {
        limits::check_expression_depth(depth)?;
        Ok(match e {
            Bson::String(s) if s.starts_with("$$") => {
                let name = s[2..].split('.').next().unwrap_or_default();
                if shadowed.iter().any(|n| n == name) {
                    return Ok(e.clone());
                }
                match self.lookup(&s[2..]) {
                    Some(v) => Bson::Document(doc! {"$literal": v}),
                    None => e.clone(),
                }
            }
            Bson::Document(d) if d.len() == 1 && d.contains_key("$literal") => e.clone(),
            Bson::Document(d) => {
                let mut out = Document::new();
                for (k, v) in d {
                    let v = match (d.len(), binder_names(k, v)) {
                        (1, Some(names)) => self.bind_binder(v, depth + 1, shadowed, &names)?,
                        _ => self.bind_scoped(v, depth + 1, shadowed)?,
                    };
                    out.insert(k.clone(), v);
                }
                Bson::Document(out)
            }
            Bson::Array(items) => Bson::Array(
                items
                    .iter()
                    .map(|i| self.bind_scoped(i, depth + 1, shadowed))
                    .collect::<Result<_>>()?,
            ),
            other => other.clone(),
        })
    }

    /// The argument of a binding operator: the fields its own variables
    /// are visible in (`in`, `cond`) are bound with them shadowed, the
    /// others (`input`, `vars`, `initialValue`, `limit`) without.
    fn bind_binder(
        &self,
        spec: &Bson,
        depth: usize,
        shadowed: &[String],
        names: &[String],
    ) -> Result<Bson> {
        limits::check_expression_depth(depth)?;
        let Bson::Document(spec) = spec else {
            return self.bind_scoped(spec, depth, shadowed);
        };
        let mut inner = shadowed.to_vec();
        inner.extend(names.iter().cloned());
        let mut out = Document::new();
        for (k, v) in spec {
            let v = match k.as_str() {
                "in" | "cond" => self.bind_scoped(v, depth + 1, &inner)?,
                _ => self.bind_scoped(v, depth + 1, shadowed)?,
            };
            out.insert(k.clone(), v);
        }
        Ok(Bson::Document(out))
    }

    /// `name` or `name.a.b`: the variable's value, or the value at that
    /// path inside it (missing is null, as a field path of a variable).
    fn lookup(&self, reference: &str) -> Option<Bson> {
        let (name, rest) = match reference.split_once('.') {
            Some((n, r)) => (n, Some(r)),
            None => (reference, None),
        };
        let v = self.0.get(name)?;
        Some(match (rest, v) {
            (None, v) => v.clone(),
            (Some(p), Bson::Document(d)) => path::get_expr(d, p).unwrap_or(Bson::Null),
            (Some(_), _) => Bson::Null,
        })
    }
}

/// The variables the operator `name` binds for its `in`/`cond` (`$let`'s
/// `vars`, the `as` of `$map` and `$filter`, `$reduce`'s `value` and
/// `this`); `None` for any other key.
fn binder_names(name: &str, arg: &Bson) -> Option<Vec<String>> {
    let spec = arg.as_document()?;
    let as_name = || match spec.get("as") {
        Some(Bson::String(s)) => s.clone(),
        _ => "this".to_owned(),
    };
    match name {
        "$let" => Some(match spec.get("vars") {
            Some(Bson::Document(vars)) => vars.keys().cloned().collect(),
            _ => Vec::new(),
        }),
        "$map" | "$filter" => Some(vec![as_name()]),
        "$reduce" => Some(vec!["value".to_owned(), "this".to_owned()]),
        _ => None,
    }
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(CommandError::new(
            ErrorCode::Location16866,
            "empty variable names are not allowed",
        ));
    };
    if first.is_ascii() && !first.is_ascii_lowercase() {
        return Err(CommandError::new(
            ErrorCode::Location16867,
            format!("'{name}' starts with an invalid character for a user variable name"),
        ));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || !c.is_ascii())) {
        return Err(CommandError::new(
            ErrorCode::Location16868,
            format!("'{name}' contains an invalid character for a variable name: '{c}'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::bson;

    fn vars(d: Document) -> Vars {
        Vars::parse(Some(&Bson::Document(d))).unwrap()
    }

    #[test]
    fn binds_expressions_only() {
        let v = vars(doc! {"id": 1, "o": {"a": {"b": 2}}, "sum": {"$add": [1, 2]}});
        let f = v
            .bind_filter(&doc! {"x": "$$id", "$or": [{"$expr": {"$eq": ["$_id", "$$id"]}}], "$expr": "$$o.a.b"})
            .unwrap();
        assert_eq!(
            f,
            doc! {"x": "$$id", "$or": [{"$expr": {"$eq": ["$_id", {"$literal": 1}]}}], "$expr": {"$literal": 2}}
        );
        let p = v
            .bind_pipeline(&[
                bson!({"$match": {"$expr": "$$sum", "y": "$$sum"}}),
                bson!({"$set": {"z": "$$sum", "l": {"$literal": "$$sum"}, "n": "$$nope"}}),
            ])
            .unwrap();
        assert_eq!(
            p,
            vec![
                bson!({"$match": {"$expr": {"$literal": 3}, "y": "$$sum"}}),
                bson!({"$set": {"z": {"$literal": 3}, "l": {"$literal": "$$sum"}, "n": "$$nope"}}),
            ]
        );
    }

    #[test]
    fn names_and_types_are_checked() {
        let err = |d: Bson| Vars::parse(Some(&d)).unwrap_err().code;
        assert_eq!(err(bson!({"Id": 1})), ErrorCode::Location16867);
        assert_eq!(err(bson!({"ROOT": 1})), ErrorCode::Location16867);
        assert_eq!(err(bson!({"a-b": 1})), ErrorCode::Location16868);
        assert_eq!(err(bson!({"": 1})), ErrorCode::Location16866);
        assert_eq!(err(bson!(5)), ErrorCode::TypeMismatch);
        // Earlier variables are visible to later ones.
        let v = vars(doc! {"a": 2, "b": {"$multiply": ["$$a", 3]}});
        assert_eq!(
            v.bind_filter(&doc! {"$expr": "$$b"}).unwrap(),
            doc! {"$expr": {"$literal": 6}}
        );
    }

    #[test]
    fn deep_input_is_refused_not_overflowed() {
        crate::limits::with_worker_stack(|| {
            let v = vars(doc! {"a": 1});
            let mut deep = bson!("$$a");
            for _ in 0..(limits::MAX_EXPRESSION_DEPTH + 5) {
                deep = bson!([deep]);
            }
            assert!(v.bind_filter(&doc! {"$expr": deep.clone()}).is_err());
            assert!(v.bind_pipeline(&[bson!({"$set": {"x": deep}})]).is_err());
            let mut deep_filter = doc! {"x": 1};
            for _ in 0..(limits::MAX_QUERY_TREE_DEPTH + 5) {
                deep_filter = doc! {"$and": [deep_filter]};
            }
            assert!(v.bind_filter(&deep_filter).is_err());
        });
    }
}
