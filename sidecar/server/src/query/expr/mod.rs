//! Aggregation expressions (`"$field"`, literals, `{$add: [...]}`, ...),
//! used by `$expr`, `$project`/`$addFields` and `$group`.

use std::cmp::Ordering;

use bson::{Bson, Document};

use std::sync::Arc;

use super::aggregate::multi::{self, Pick, Quantile};
use super::compare::{as_f64, compare, equal, is_number};
use super::path::get_expr;
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::{self, Budget};

mod args;
mod array;
mod bindata;
mod binder;
mod convert;
mod date;
mod decimal;
mod hashed;
mod math;
mod number;
mod scope;
mod string;
pub(crate) mod summation;
#[cfg(test)]
pub(super) mod test_support;

pub use scope::{Locals, Scope, Slot};

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Literal(Bson),
    /// `"$a.b"`: a field path of the current document.
    Field(String),
    /// `"$$ROOT"` / `"$$CURRENT"`.
    Root,
    /// `"$$REMOVE"`: evaluates to missing (a field set to it is left out).
    Remove,
    Object(Vec<(String, Expr)>),
    Array(Vec<Expr>),
    Op(Op, Vec<Expr>),
    /// `$getField`: one field of `input` by its exact name (dots and
    /// dollars included, which a field path cannot name).
    GetField {
        field: String,
        input: Box<Expr>,
    },
    /// `$setField` / `$unsetField` (`value: None`): `input` with one field,
    /// named exactly, set or removed.
    SetField {
        field: String,
        input: Box<Expr>,
        value: Option<Box<Expr>>,
    },
    /// `{$meta: "<name>"}`: the document's metadata (`query::meta`).
    Meta(super::meta::MetaName),
    /// `$firstN`, `$lastN`, `$minN`, `$maxN` over an array
    /// (`aggregate::multi`, shared with the accumulators).
    Pick {
        pick: Arc<Pick>,
        input: Box<Expr>,
    },
    /// `$percentile` and `$median` over a number or an array.
    Quantile {
        quantile: Quantile,
        input: Box<Expr>,
    },
    /// `"$$name"` / `"$$name.a.b"`: a variable bound by an enclosing
    /// `$let`, `$map`, `$filter` or `$reduce` (resolved when parsed).
    Var {
        name: String,
        slot: Slot,
        path: Option<String>,
    },
    /// Arithmetic, trigonometry, rounding and bitwise operators.
    Math(Box<math::MathExpr>),
    /// Type conversion and inspection (`$convert`, `$toInt`, `$bsonSize`, ...).
    Convert(Box<convert::ConvertExpr>),
    /// Dates (`$dateAdd`, `$dateToString`, `$year`, ...).
    Date(Box<date::DateExpr>),
    /// Strings and regular expressions (`$trim`, `$regexFind`, ...).
    Text(Box<string::StringExpr>),
    /// Arrays, sets and objects (`$slice`, `$setUnion`, `$zip`, ...).
    Sequence(Box<array::ArrayExpr>),
    /// Operators that bind variables or choose among branches
    /// (`$let`, `$map`, `$filter`, `$reduce`, `$switch`).
    Binder(Box<binder::BinderExpr>),
}

macro_rules! ops {
    ($($variant:ident = $name:literal,)*) => {
        /// Expression operators this engine evaluates.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Op { $($variant,)* }
        impl Op {
            fn from_name(s: &str) -> Option<Op> {
                match s { $($name => Some(Op::$variant),)* _ => None }
            }
        }
    };
}

ops! {
    Eq = "$eq", Ne = "$ne", Gt = "$gt", Gte = "$gte", Lt = "$lt", Lte = "$lte",
    Cmp = "$cmp", And = "$and", Or = "$or", Not = "$not", Cond = "$cond", IfNull = "$ifNull",
    Concat = "$concat", Size = "$size", In = "$in",
    ArrayElemAt = "$arrayElemAt", Type = "$type", Max = "$max", Min = "$min",
    Sum = "$sum", Avg = "$avg", First = "$first", Last = "$last", StrLenCP = "$strLenCP",
    Split = "$split", IsArray = "$isArray", ConcatArrays = "$concatArrays",
    Range = "$range", MergeObjects = "$mergeObjects", StdDevPop = "$stdDevPop",
    StdDevSamp = "$stdDevSamp",
}

impl Expr {
    pub fn parse(v: &Bson) -> Result<Expr> {
        Self::parse_at(v, 0)
    }

    /// Whether the expression reads nothing of the document (so it has
    /// one value, as mongod's constant folding finds).
    pub fn is_constant(&self) -> bool {
        match self {
            Expr::Literal(_) => true,
            Expr::Field(_) | Expr::Root | Expr::Meta(_) => false,
            Expr::Remove => true,
            Expr::Object(fields) => fields.iter().all(|(_, e)| e.is_constant()),
            Expr::Array(items) | Expr::Op(_, items) => items.iter().all(Expr::is_constant),
            Expr::GetField { input, .. } => input.is_constant(),
            Expr::SetField { input, value, .. } => {
                input.is_constant() && value.as_ref().is_none_or(|v| v.is_constant())
            }
            Expr::Pick { pick, input } => pick.n.is_constant() && input.is_constant(),
            Expr::Quantile { input, .. } => input.is_constant(),
            Expr::Var { .. } => false,
            Expr::Math(e) => e.is_constant(),
            Expr::Convert(e) => e.is_constant(),
            Expr::Date(e) => e.is_constant(),
            Expr::Text(e) => e.is_constant(),
            Expr::Sequence(e) => e.is_constant(),
            Expr::Binder(e) => e.is_constant(),
        }
    }

    /// Parses an expression nested `depth` levels inside another.
    pub(crate) fn parse_at(v: &Bson, depth: usize) -> Result<Expr> {
        Self::parse_in(v, Scope::top(depth))
    }

    /// Parses an expression inside `scope`: its depth and the variables
    /// enclosing operators bind.
    pub(crate) fn parse_in(v: &Bson, scope: Scope) -> Result<Expr> {
        let depth = scope.depth();
        limits::check_expression_depth(depth)?;
        let sub = |v: &Bson| Self::parse_in(v, scope.nested());
        if let Bson::String(s) = v
            && let Some(e) = scope::rebound_current(s, scope)?
        {
            return Ok(e);
        }
        match v {
            Bson::String(s) if s == "$$ROOT" || s == "$$CURRENT" => Ok(Expr::Root),
            Bson::String(s) if s == "$$REMOVE" => Ok(Expr::Remove),
            // One value for the whole command, as MongoDB binds it once.
            Bson::String(s) if s == "$$NOW" => Ok(Expr::Literal(Bson::DateTime(now()))),
            Bson::String(s) if s.starts_with("$$") => {
                let rest = &s[2..];
                if let Some(path) = rest
                    .strip_prefix("ROOT.")
                    .or_else(|| rest.strip_prefix("CURRENT."))
                {
                    limits::check_path(path)?;
                    Ok(Expr::Field(path.to_owned()))
                } else if let Some(var) = scope::parse_var(rest, scope)? {
                    Ok(var)
                } else {
                    Err(CommandError::new(
                        ErrorCode::Location17276,
                        format!("Use of undefined variable: {rest}"),
                    ))
                }
            }
            Bson::String(s) if s.starts_with('$') => {
                if s.len() == 1 {
                    return Err(CommandError::new(
                        ErrorCode::Location16410,
                        "'$' by itself is not a valid FieldPath",
                    ));
                }
                limits::check_path(&s[1..])?;
                Ok(Expr::Field(s[1..].to_owned()))
            }
            Bson::Array(items) => Ok(Expr::Array(items.iter().map(sub).collect::<Result<_>>()?)),
            Bson::Document(d) => {
                let first = d.keys().next();
                match first {
                    Some(k) if k.starts_with('$') => {
                        if d.len() != 1 {
                            return Err(CommandError::new(
                                ErrorCode::Location15983,
                                format!(
                                    "an expression specification must contain exactly one field, the name of the expression. Found {} fields",
                                    d.len()
                                ),
                            ));
                        }
                        let arg = d.get(k).unwrap_or(&Bson::Null);
                        if k == "$literal" {
                            return Ok(Expr::Literal(arg.clone()));
                        }
                        if k == "$meta" {
                            return super::meta::MetaName::parse_produced(arg).map(Expr::Meta);
                        }
                        if k == "$function" {
                            return Err(super::javascript::function_operator());
                        }
                        if let Some(e) = parse_field_op(k, arg, scope)? {
                            return Ok(e);
                        }
                        if let Some(e) = parse_family(k, arg, scope)? {
                            return Ok(e);
                        }
                        if matches!(k.as_str(), "$firstN" | "$lastN" | "$minN" | "$maxN")
                            && let Some((pick, input)) = multi::parse_pick(k, arg, scope)?
                        {
                            return Ok(Expr::Pick {
                                pick: Arc::new(pick),
                                input: Box::new(input),
                            });
                        }
                        if let Some((quantile, input)) = multi::parse_quantile(k, arg, true, scope)?
                        {
                            return Ok(Expr::Quantile {
                                quantile,
                                input: Box::new(input),
                            });
                        }
                        let op = Op::from_name(k).ok_or_else(|| {
                            CommandError::new(
                                ErrorCode::InvalidPipelineOperator,
                                format!("Unrecognized expression '{k}'"),
                            )
                        })?;
                        let args = match (op, arg) {
                            (Op::Cond, Bson::Document(c)) => {
                                let get = |n: &str| c.get(n).cloned().unwrap_or(Bson::Null);
                                vec![sub(&get("if"))?, sub(&get("then"))?, sub(&get("else"))?]
                            }
                            (_, Bson::Array(items)) => {
                                items.iter().map(sub).collect::<Result<_>>()?
                            }
                            (_, other) => vec![sub(other)?],
                        };
                        if op == Op::Range && !(2..=3).contains(&args.len()) {
                            return Err(CommandError::new(
                                ErrorCode::Location16020,
                                format!(
                                    "Expression $range takes at least 2 arguments, and at most 3, but {} were passed in.",
                                    args.len()
                                ),
                            ));
                        }
                        Ok(Expr::Op(op, args))
                    }
                    _ => Ok(Expr::Object(
                        d.iter()
                            .map(|(k, v)| Ok((k.clone(), sub(v)?)))
                            .collect::<Result<_>>()?,
                    )),
                }
            }
            other => Ok(Expr::Literal(other.clone())),
        }
    }

    /// Evaluates against `doc`; `Ok(None)` is "missing" (a field that is
    /// not there). A value it would build past
    /// [`limits::MAX_BUILT_VALUE_SIZE`] is an error, raised before the
    /// memory is spent.
    pub fn eval(&self, doc: &Document) -> Result<Option<Bson>> {
        self.eval_in(doc, Locals::NONE)
    }

    /// [`Expr::eval`] inside the variables that enclosing `$let`, `$map`,
    /// `$filter` and `$reduce` have bound.
    pub fn eval_in(&self, doc: &Document, locals: Locals) -> Result<Option<Bson>> {
        Ok(match self {
            Expr::Var { name, slot, path } => {
                let value = locals.get(*slot).ok_or_else(|| {
                    // Parsing resolved the name; reaching here is a bug,
                    // answered as an error rather than a panic.
                    CommandError::new(
                        ErrorCode::Location17276,
                        format!("Use of undefined variable: {name}"),
                    )
                })?;
                match path {
                    None => Some(value.clone()),
                    Some(path) => scope::get_path(value, path),
                }
            }
            Expr::Math(e) => e.eval(doc, locals)?,
            Expr::Convert(e) => e.eval(doc, locals)?,
            Expr::Date(e) => e.eval(doc, locals)?,
            Expr::Text(e) => e.eval(doc, locals)?,
            Expr::Sequence(e) => e.eval(doc, locals)?,
            Expr::Binder(e) => e.eval(doc, locals)?,
            Expr::Literal(v) => Some(v.clone()),
            Expr::Field(p) => get_expr(doc, p),
            Expr::Root => Some(Bson::Document(doc.clone())),
            Expr::Remove => None,
            Expr::Meta(name) => super::meta::value(*name, doc)?,
            Expr::GetField { field, input } => match input.eval_in(doc, locals)? {
                Some(Bson::Document(d)) => d.get(field).cloned(),
                None | Some(Bson::Null) => None,
                Some(other) => {
                    return Err(CommandError::new(
                        ErrorCode::Location3041705,
                        format!(
                            "$getField requires 'input' to evaluate to type Object, but got {}",
                            type_name(&other)
                        ),
                    ));
                }
            },
            Expr::SetField {
                field,
                input,
                value,
            } => {
                let mut d = match input.eval_in(doc, locals)? {
                    Some(Bson::Document(d)) => d,
                    None | Some(Bson::Null) => return Ok(Some(Bson::Null)),
                    Some(other) => {
                        return Err(CommandError::new(
                            ErrorCode::Location4161105,
                            format!(
                                "$setField requires 'input' to evaluate to type Object, but got {}",
                                type_name(&other)
                            ),
                        ));
                    }
                };
                match value
                    .as_ref()
                    .map(|v| v.eval_in(doc, locals))
                    .transpose()?
                    .flatten()
                {
                    Some(v) => {
                        let mut budget = Budget::value("$setField");
                        budget.charge(limits::document_size(&d))?;
                        budget.charge(2 + field.len() + limits::bson_size(&v))?;
                        d.insert(field.clone(), v);
                    }
                    None => {
                        d.remove(field);
                    }
                }
                Some(Bson::Document(d))
            }
            Expr::Object(fields) => {
                let mut budget = Budget::value("an object expression");
                let mut out = Document::new();
                for (k, e) in fields {
                    if let Some(v) = e.eval_in(doc, locals)? {
                        budget.charge(2 + k.len() + limits::bson_size(&v))?;
                        out.insert(k.clone(), v);
                    }
                }
                Some(Bson::Document(out))
            }
            Expr::Array(items) => {
                let mut budget = Budget::value("an array expression");
                let mut out = Vec::with_capacity(items.len());
                for e in items {
                    let v = e.eval_in(doc, locals)?.unwrap_or(Bson::Null);
                    budget.charge(4 + limits::bson_size(&v))?;
                    out.push(v);
                }
                Some(Bson::Array(out))
            }
            Expr::Op(op, args) => eval_op(*op, args, doc, locals)?,
            Expr::Pick { pick, input } => {
                // `n` first, as mongod validates it before the input.
                let n = pick.n.eval_in(doc, locals)?;
                let n = multi::validate_n(n.as_ref()).map(|n| Bson::Int64(n as i64))?;
                Some(multi::eval_pick_expression(
                    pick,
                    Some(n),
                    input.eval_in(doc, locals)?,
                )?)
            }
            Expr::Quantile { quantile, input } => Some(multi::eval_quantile_expression(
                quantile,
                input.eval_in(doc, locals)?,
            )),
        })
    }
}

/// The operator families, each in its own module, asked in turn; `None`
/// when no family knows `name`.
fn parse_family(name: &str, arg: &Bson, scope: Scope) -> Result<Option<Expr>> {
    if let Some(e) = math::MathExpr::parse(name, arg, scope)? {
        return Ok(Some(Expr::Math(Box::new(e))));
    }
    if let Some(e) = convert::ConvertExpr::parse(name, arg, scope)? {
        return Ok(Some(Expr::Convert(Box::new(e))));
    }
    if let Some(e) = date::DateExpr::parse(name, arg, scope)? {
        return Ok(Some(Expr::Date(Box::new(e))));
    }
    if let Some(e) = string::StringExpr::parse(name, arg, scope)? {
        return Ok(Some(Expr::Text(Box::new(e))));
    }
    if let Some(e) = array::ArrayExpr::parse(name, arg, scope)? {
        return Ok(Some(Expr::Sequence(Box::new(e))));
    }
    if let Some(e) = binder::BinderExpr::parse(name, arg, scope)? {
        return Ok(Some(Expr::Binder(Box::new(e))));
    }
    Ok(None)
}

/// The command's `$$NOW`.
fn now() -> bson::DateTime {
    bson::DateTime::now()
}

/// `$getField`, `$setField` and `$unsetField`, whose arguments are named
/// (`{field, input, value}`); `None` for any other operator. `field` must
/// be a constant string, as in MongoDB (a `$literal` included).
fn parse_field_op(name: &str, arg: &Bson, scope: Scope) -> Result<Option<Expr>> {
    if !matches!(name, "$getField" | "$setField" | "$unsetField") {
        return Ok(None);
    }
    let sub = |v: &Bson| Expr::parse_in(v, scope.nested());
    let field_name = |v: Option<&Bson>| -> Result<String> {
        match v {
            Some(Bson::String(s)) if !s.starts_with('$') => Ok(s.clone()),
            Some(Bson::Document(d)) if d.len() == 1 => match d.get("$literal") {
                Some(Bson::String(s)) => Ok(s.clone()),
                _ => Err(field_must_be_constant(name)),
            },
            _ => Err(field_must_be_constant(name)),
        }
    };
    let spec = match arg {
        Bson::Document(d) => d,
        // `{$getField: "a.b"}` is `{$getField: {field: "a.b", input: "$$CURRENT"}}`.
        Bson::String(_) if name == "$getField" => {
            return Ok(Some(Expr::GetField {
                field: field_name(Some(arg))?,
                input: Box::new(Expr::Root),
            }));
        }
        _ => {
            return Err(CommandError::new(
                ErrorCode::Location4161100,
                format!("{name} only supports an object as its argument"),
            ));
        }
    };
    let allowed: &[&str] = match name {
        "$setField" => &["field", "input", "value"],
        _ => &["field", "input"],
    };
    if let Some(k) = spec.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(CommandError::new(
            ErrorCode::Location4161101,
            format!("{name} found an unknown argument: {k}"),
        ));
    }
    let field = field_name(spec.get("field"))?;
    let input = match spec.get("input") {
        Some(v) => sub(v)?,
        None if name == "$getField" => Expr::Root,
        None => {
            return Err(CommandError::new(
                ErrorCode::Location4161102,
                format!("{name} requires 'input' to be specified"),
            ));
        }
    };
    Ok(Some(match name {
        "$getField" => Expr::GetField {
            field,
            input: Box::new(input),
        },
        "$setField" => {
            let value = spec.get("value").ok_or_else(|| {
                CommandError::new(
                    ErrorCode::Location4161103,
                    "$setField requires 'value' to be specified",
                )
            })?;
            Expr::SetField {
                field,
                input: Box::new(input),
                value: Some(Box::new(sub(value)?)),
            }
        }
        _ => Expr::SetField {
            field,
            input: Box::new(input),
            value: None,
        },
    }))
}

fn field_must_be_constant(name: &str) -> CommandError {
    CommandError::new(
        ErrorCode::Location4161106,
        format!("{name} requires 'field' to evaluate to a constant string"),
    )
}

/// Truthiness as aggregation defines it: false, null, missing and 0 are false.
pub fn truthy(v: &Bson) -> bool {
    match v {
        Bson::Boolean(b) => *b,
        Bson::Null | Bson::Undefined => false,
        v if is_number(v) => as_f64(v).is_some_and(|x| x != 0.0),
        _ => true,
    }
}

/// `$range`'s arguments: whole numbers that fit an int32.
fn range_arg(v: &Bson, what: &str, not_number: ErrorCode, not_int: ErrorCode) -> Result<i64> {
    if !is_number(v) {
        return Err(CommandError::new(
            not_number,
            format!(
                "$range requires a numeric {what}, found value of type: {}",
                type_name(v)
            ),
        ));
    }
    match as_f64(v) {
        Some(x) if x.fract() == 0.0 && x >= i32::MIN as f64 && x <= i32::MAX as f64 => Ok(x as i64),
        _ => Err(CommandError::new(
            not_int,
            format!(
                "$range requires a {what} that can be represented as a 32-bit integer, found value: {v}"
            ),
        )),
    }
}

fn eval_range(args: &[Expr], doc: &Document, locals: Locals) -> Result<Bson> {
    let arg = |i: usize| -> Result<Bson> {
        Ok(match args.get(i) {
            Some(a) => a.eval_in(doc, locals)?.unwrap_or(Bson::Null),
            None => Bson::Int32(1),
        })
    };
    let start = range_arg(
        &arg(0)?,
        "starting value",
        ErrorCode::Location34443,
        ErrorCode::Location34444,
    )?;
    let end = range_arg(
        &arg(1)?,
        "ending value",
        ErrorCode::Location34445,
        ErrorCode::Location34446,
    )?;
    let step = range_arg(
        &arg(2)?,
        "step value",
        ErrorCode::Location34447,
        ErrorCode::Location34448,
    )?;
    if step == 0 {
        return Err(CommandError::new(
            ErrorCode::Location34449,
            "$range requires a non-zero step value",
        ));
    }
    let span = end - start;
    let len = if span == 0 || (span > 0) != (step > 0) {
        0
    } else {
        ((span.abs() + step.abs() - 1) / step.abs()) as usize
    };
    // Each element is an int32 under its index: type, key, NUL, 4 bytes.
    let bytes = len.saturating_mul(6 + len.to_string().len());
    Budget::value("$range").reserve(bytes)?;
    let mut out = Vec::with_capacity(len);
    let mut cur = start;
    while (step > 0 && cur < end) || (step < 0 && cur > end) {
        out.push(Bson::Int32(cur as i32));
        cur += step;
    }
    Ok(Bson::Array(out))
}

fn eval_op(op: Op, args: &[Expr], doc: &Document, locals: Locals) -> Result<Option<Bson>> {
    // All arguments at once (`{$max: ["$$ROOT", "$$ROOT", ...]}`): held to
    // the built-value limit together.
    let vals = || -> Result<Vec<Bson>> {
        let mut budget = Budget::value("the arguments of an expression");
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            let v = a.eval_in(doc, locals)?.unwrap_or(Bson::Null);
            budget.charge(limits::bson_size(&v))?;
            out.push(v);
        }
        Ok(out)
    };
    let arg = |i: usize| -> Result<Bson> {
        Ok(match args.get(i) {
            Some(a) => a.eval_in(doc, locals)?.unwrap_or(Bson::Null),
            None => Bson::Null,
        })
    };
    // An argument as evaluated, missing kept apart from null (mongod's
    // messages name it "missing").
    let raw = |i: usize| -> Result<Option<Bson>> {
        match args.get(i) {
            Some(a) => a.eval_in(doc, locals),
            None => Ok(None),
        }
    };
    Ok(Some(match op {
        Op::Eq => Bson::Boolean(equal(&arg(0)?, &arg(1)?)),
        Op::Ne => Bson::Boolean(!equal(&arg(0)?, &arg(1)?)),
        Op::Gt => Bson::Boolean(compare(&arg(0)?, &arg(1)?) == Ordering::Greater),
        Op::Gte => Bson::Boolean(compare(&arg(0)?, &arg(1)?) != Ordering::Less),
        Op::Lt => Bson::Boolean(compare(&arg(0)?, &arg(1)?) == Ordering::Less),
        Op::Lte => Bson::Boolean(compare(&arg(0)?, &arg(1)?) != Ordering::Greater),
        Op::Cmp => Bson::Int32(compare(&arg(0)?, &arg(1)?) as i32),
        Op::And => Bson::Boolean(vals()?.iter().all(truthy)),
        Op::Or => Bson::Boolean(vals()?.iter().any(truthy)),
        Op::Not => Bson::Boolean(!truthy(&arg(0)?)),
        Op::Cond => {
            let branch = if truthy(&arg(0)?) { 1 } else { 2 };
            return match args.get(branch) {
                Some(a) => a.eval_in(doc, locals),
                None => Ok(None),
            };
        }
        Op::IfNull => {
            for a in args {
                match a.eval_in(doc, locals)? {
                    Some(Bson::Null) | Some(Bson::Undefined) | None => continue,
                    Some(v) => return Ok(Some(v)),
                }
            }
            Bson::Null
        }
        Op::Concat => {
            let mut budget = Budget::value("$concat");
            let mut s = String::new();
            for a in args {
                match a.eval_in(doc, locals)? {
                    Some(Bson::String(x)) => {
                        budget.charge(x.len())?;
                        s.push_str(&x);
                    }
                    None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                    Some(other) => {
                        return Err(CommandError::new(
                            ErrorCode::Location16702,
                            format!("$concat only supports strings, not {}", type_name(&other)),
                        ));
                    }
                }
            }
            Bson::String(s)
        }
        Op::StrLenCP => match raw(0)? {
            Some(Bson::String(s)) => Bson::Int32(s.chars().count() as i32),
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location34471,
                    format!(
                        "$strLenCP requires a string argument, found: {}",
                        type_or_missing(&other)
                    ),
                ));
            }
        },
        Op::Split => match (arg(0)?, arg(1)?) {
            (s, sep) if is_nullish(&s) || is_nullish(&sep) => Bson::Null,
            (Bson::String(s), Bson::String(sep)) => {
                if sep.is_empty() {
                    return Err(CommandError::new(
                        ErrorCode::Location40087,
                        "$split requires a non-empty separator",
                    ));
                }
                let mut budget = Budget::value("$split");
                let mut out = Vec::new();
                for p in s.split(sep.as_str()) {
                    budget.charge(12 + p.len())?;
                    out.push(Bson::String(p.to_owned()));
                }
                Bson::Array(out)
            }
            (Bson::String(_), other) => {
                return Err(CommandError::new(
                    ErrorCode::Location40086,
                    format!(
                        "$split requires an expression that evaluates to a string as a second argument, found: {}",
                        type_name(&other)
                    ),
                ));
            }
            (other, _) => {
                return Err(CommandError::new(
                    ErrorCode::Location40085,
                    format!(
                        "$split requires an expression that evaluates to a string as a first argument, found: {}",
                        type_name(&other)
                    ),
                ));
            }
        },
        Op::Size => match raw(0)? {
            Some(Bson::Array(a)) => Bson::Int32(a.len() as i32),
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location17124,
                    format!(
                        "The argument to $size must be an array. Type of argument was: {}",
                        type_or_missing(&other)
                    ),
                ));
            }
        },
        Op::IsArray => Bson::Boolean(matches!(arg(0)?, Bson::Array(_))),
        Op::In => match raw(1)? {
            Some(Bson::Array(a)) => {
                let x = arg(0)?;
                Bson::Boolean(a.iter().any(|e| equal(e, &x)))
            }
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location40081,
                    format!(
                        "$in requires an array as a second argument, found: {}",
                        type_or_missing(&other)
                    ),
                ));
            }
        },
        Op::ArrayElemAt => {
            let (array, index) = (arg(0)?, arg(1)?);
            if is_nullish(&array) || is_nullish(&index) {
                return Ok(Some(Bson::Null));
            }
            let Bson::Array(a) = array else {
                return Err(CommandError::new(
                    ErrorCode::Location28689,
                    format!(
                        "$arrayElemAt's first argument must be an array, but is {}",
                        type_name(&array)
                    ),
                ));
            };
            if !is_number(&index) {
                return Err(CommandError::new(
                    ErrorCode::Location28690,
                    format!(
                        "$arrayElemAt's second argument must be a numeric value, but is {}",
                        type_name(&index)
                    ),
                ));
            }
            let i = as_f64(&index)
                .filter(|x| x.fract() == 0.0 && *x >= i32::MIN as f64 && *x <= i32::MAX as f64)
                .map(|x| x as i64)
                .ok_or_else(|| {
                    CommandError::new(
                        ErrorCode::Location28691,
                        format!(
                            "$arrayElemAt's second argument must be representable as a 32-bit integer: {index}"
                        ),
                    )
                })?;
            let idx = if i < 0 { a.len() as i64 + i } else { i };
            return Ok(usize::try_from(idx).ok().and_then(|i| a.get(i).cloned()));
        }
        Op::ConcatArrays => {
            let mut budget = Budget::value("$concatArrays");
            let mut out = Vec::new();
            for a in args {
                match a.eval_in(doc, locals)?.unwrap_or(Bson::Null) {
                    Bson::Array(items) => {
                        budget.charge(limits::bson_size(&Bson::Array(Vec::new())))?;
                        for e in &items {
                            budget.charge(8 + limits::bson_size(e))?;
                        }
                        out.extend(items);
                    }
                    _ => return Ok(Some(Bson::Null)),
                }
            }
            Bson::Array(out)
        }
        Op::Range => eval_range(args, doc, locals)?,
        Op::MergeObjects => {
            // Later objects' fields over earlier ones'; null and missing
            // are skipped (40400 for anything else, as mongod).
            let mut budget = Budget::value("$mergeObjects");
            let mut out = Document::new();
            for a in args {
                match a.eval_in(doc, locals)? {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => {}
                    Some(Bson::Document(d)) => {
                        budget.charge(limits::document_size(&d))?;
                        out.extend(d);
                    }
                    Some(other) => {
                        return Err(CommandError::new(
                            ErrorCode::Location40400,
                            format!(
                                "$mergeObjects requires object inputs, but input {other} is of type {}",
                                type_name(&other)
                            ),
                        ));
                    }
                }
            }
            Bson::Document(out)
        }
        Op::StdDevPop | Op::StdDevSamp => {
            // With one array argument, over its elements (as `$avg`).
            let items = match (args.len(), arg(0)?) {
                (1, Bson::Array(a)) => a,
                _ => vals()?,
            };
            let mut deviation = multi::Deviation::default();
            for v in &items {
                deviation.add(v);
            }
            deviation.result(op == Op::StdDevSamp)
        }
        Op::Type => Bson::String(
            match args.first() {
                None => "missing",
                Some(a) => match a.eval_in(doc, locals)? {
                    None => "missing",
                    Some(v) => type_name(&v),
                },
            }
            .to_owned(),
        ),
        Op::Max | Op::Min | Op::Sum | Op::Avg | Op::First | Op::Last => {
            // With one array argument these operate on its elements.
            let items = match (args.len(), arg(0)?) {
                (1, Bson::Array(a)) => a,
                _ => vals()?,
            };
            match op {
                Op::Max => items
                    .into_iter()
                    .filter(|v| !matches!(v, Bson::Null))
                    .max_by(compare)
                    .unwrap_or(Bson::Null),
                Op::Min => items
                    .into_iter()
                    .filter(|v| !matches!(v, Bson::Null))
                    .min_by(compare)
                    .unwrap_or(Bson::Null),
                Op::Sum | Op::Avg => {
                    let mut total = summation::Summation::default();
                    for v in &items {
                        total.add(v);
                    }
                    if matches!(op, Op::Sum) {
                        total.sum()
                    } else {
                        total.average()
                    }
                }
                Op::First => items.first().cloned().unwrap_or(Bson::Null),
                _ => items.last().cloned().unwrap_or(Bson::Null),
            }
        }
    }))
}

/// Null, undefined (missing is `None` before it gets here).
fn is_nullish(v: &Bson) -> bool {
    matches!(v, Bson::Null | Bson::Undefined)
}

/// A value's type name, or "missing" (as mongod's messages say).
fn type_or_missing(v: &Option<Bson>) -> &'static str {
    v.as_ref().map_or("missing", type_name)
}

/// A value's type name as `$type` (the expression) reports it.
pub fn type_name(v: &Bson) -> &'static str {
    match v {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Binary(_) => "binData",
        Bson::Undefined => "undefined",
        Bson::ObjectId(_) => "objectId",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::DbPointer(_) => "dbPointer",
        Bson::JavaScriptCode(_) => "javascript",
        Bson::Symbol(_) => "symbol",
        Bson::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        Bson::Int32(_) => "int",
        Bson::Timestamp(_) => "timestamp",
        Bson::Int64(_) => "long",
        Bson::Decimal128(_) => "decimal",
        Bson::MinKey => "minKey",
        Bson::MaxKey => "maxKey",
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::ev;
    use super::*;
    use bson::{bson, doc};

    fn ev_err(e: Bson, d: Document) -> CommandError {
        Expr::parse(&e).unwrap().eval(&d).unwrap_err()
    }

    #[test]
    fn range_and_built_values_are_bounded() {
        assert_eq!(
            ev(bson!({"$range": [0, 5]}), doc! {}),
            Some(bson!([0, 1, 2, 3, 4]))
        );
        assert_eq!(
            ev(bson!({"$range": [5, 0, -2]}), doc! {}),
            Some(bson!([5, 3, 1]))
        );
        assert_eq!(ev(bson!({"$range": [0, 5, -1]}), doc! {}), Some(bson!([])));
        let e = ev_err(bson!({"$range": [0, 1_000_000_000]}), doc! {});
        assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
        assert!(
            e.message.starts_with("$range would use too much memory"),
            "{}",
            e.message
        );
        assert_eq!(
            ev_err(bson!({"$range": [0, 5, 0]}), doc! {}).code,
            ErrorCode::Location34449
        );
        assert_eq!(
            ev_err(bson!({"$range": ["a", 5]}), doc! {}).code,
            ErrorCode::Location34443
        );
        assert!(Expr::parse(&bson!({"$range": [1]})).is_err());
        let big =
            doc! {"s": "x".repeat(1 << 20), "a": (0..1000).map(Bson::Int32).collect::<Vec<_>>()};
        let many_s: Vec<Bson> = (0..20).map(|_| bson!("$s")).collect();
        assert_eq!(
            ev_err(bson!({"$concat": many_s}), big.clone()).code,
            ErrorCode::ExceededMemoryLimit
        );
        let many_a: Vec<Bson> = (0..3000).map(|_| bson!("$a")).collect();
        assert_eq!(
            ev_err(bson!({"$concatArrays": many_a}), big.clone()).code,
            ErrorCode::ExceededMemoryLimit
        );
        let many_root: Vec<Bson> = (0..20).map(|_| bson!("$$ROOT")).collect();
        assert_eq!(
            ev_err(Bson::Array(many_root), big.clone()).code,
            ErrorCode::ExceededMemoryLimit
        );
        let e = ev_err(
            bson!({"a": "$$ROOT", "b": "$$ROOT", "c": "$$ROOT", "d": {"e": "$s", "f": "$s"}, "g": "$s", "h": "$s", "i": "$s", "j": "$s", "k": "$s", "l": "$s", "m": "$s", "n": "$s", "o": "$s", "p": "$s", "q": "$s", "r": "$s"}),
            big,
        );
        assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
    }

    #[test]
    fn expression_depth_is_bounded() {
        crate::limits::with_worker_stack(expression_depth_is_bounded_inner);
    }

    fn expression_depth_is_bounded_inner() {
        let mut e = bson!(1);
        for _ in 0..150 {
            e = bson!({"$add": [e, 1]});
        }
        assert!(Expr::parse(&e).is_ok());
        for _ in 0..60 {
            e = bson!({"$add": [e, 1]});
        }
        assert_eq!(Expr::parse(&e).unwrap_err().code, ErrorCode::Overflow);
        let long = format!("${}", vec!["a"; 201].join("."));
        assert_eq!(
            Expr::parse(&Bson::String(long)).unwrap_err().code,
            ErrorCode::Overflow
        );
    }

    #[test]
    fn arithmetic_and_fields() {
        let d = doc! {"a": 2, "b": {"c": 3.5}, "arr": [{"x": 1}, {"x": 2}]};
        assert_eq!(ev(bson!({"$add": ["$a", 1]}), d.clone()), Some(bson!(3)));
        assert_eq!(
            ev(bson!({"$multiply": ["$a", "$b.c"]}), d.clone()),
            Some(bson!(7.0))
        );
        assert_eq!(ev(bson!("$arr.x"), d.clone()), Some(bson!([1, 2])));
        assert_eq!(ev(bson!("$nope"), d.clone()), None);
        assert_eq!(
            ev(
                bson!({"$cond": {"if": {"$gt": ["$a", 1]}, "then": "big", "else": "small"}}),
                d.clone()
            ),
            Some(bson!("big"))
        );
        assert_eq!(
            ev(bson!({"$ifNull": ["$nope", "dflt"]}), d.clone()),
            Some(bson!("dflt"))
        );
        assert_eq!(
            ev(bson!({"$concat": ["x", {"$toUpper": "y"}]}), d),
            Some(bson!("xY"))
        );
    }

    #[test]
    fn older_operators_refuse_wrong_types_as_mongod() {
        let d = doc! {"s": "ab", "n": 7, "a": [1, 2, 3], "t": bson::DateTime::from_millis(1_000)};
        let code = |e: Bson| ev_err(e, d.clone()).code.code();
        // Null or missing: null, as before.
        for e in [
            bson!({"$add": [1, null]}),
            bson!({"$multiply": ["$nope", 2]}),
            bson!({"$subtract": [null, 1]}),
            bson!({"$divide": [1, "$nope"]}),
            bson!({"$mod": [null, 0]}),
            bson!({"$concat": ["a", "$nope"]}),
            bson!({"$split": [null, ","]}),
            bson!({"$arrayElemAt": ["$a", null]}),
        ] {
            assert_eq!(ev(e.clone(), d.clone()), Some(Bson::Null), "{e}");
        }
        assert_eq!(code(bson!({"$add": [1, "x"]})), 14);
        assert_eq!(code(bson!({"$add": ["$t", "$t"]})), 16612);
        assert_eq!(code(bson!({"$multiply": [2, [1]]})), 14);
        assert_eq!(code(bson!({"$subtract": ["x", 1]})), 14);
        assert_eq!(code(bson!({"$divide": [1, 0]})), 16608);
        assert_eq!(code(bson!({"$divide": ["1", 2]})), 16609);
        assert_eq!(code(bson!({"$mod": [1, 0]})), 16610);
        assert_eq!(code(bson!({"$mod": [1, true]})), 16611);
        assert_eq!(code(bson!({"$concat": ["a", 1]})), 16702);
        assert_eq!(code(bson!({"$strLenCP": 5})), 34471);
        assert_eq!(code(bson!({"$strLenCP": "$nope"})), 34471);
        assert_eq!(code(bson!({"$split": [1, ","]})), 40085);
        assert_eq!(code(bson!({"$split": ["a,b", 1]})), 40086);
        assert_eq!(code(bson!({"$split": ["a,b", ""]})), 40087);
        assert_eq!(code(bson!({"$size": "$nope"})), 17124);
        assert_eq!(code(bson!({"$size": "x"})), 17124);
        assert_eq!(code(bson!({"$in": [1, "x"]})), 40081);
        assert_eq!(code(bson!({"$arrayElemAt": ["x", 0]})), 28689);
        assert_eq!(code(bson!({"$arrayElemAt": ["$a", "0"]})), 28690);
        assert_eq!(code(bson!({"$arrayElemAt": ["$a", 1.5]})), 28691);
        assert_eq!(code(bson!({"$arrayElemAt": ["$a", 1e12]})), 28691);
        // The answers they had stay.
        assert_eq!(
            ev(bson!({"$arrayElemAt": ["$a", -1]}), d.clone()),
            Some(bson!(3))
        );
        assert_eq!(ev(bson!({"$arrayElemAt": ["$a", 9]}), d.clone()), None);
        assert_eq!(ev(bson!({"$size": "$a"}), d.clone()), Some(bson!(3)));
        assert_eq!(
            ev(bson!({"$subtract": ["$t", 400]}), d.clone()),
            Some(Bson::DateTime(bson::DateTime::from_millis(600)))
        );
        assert_eq!(
            ev(bson!({"$subtract": ["$t", "$t"]}), d.clone()),
            Some(Bson::Int64(0))
        );
        // Integer `$mod` is exact past 2^53 and never overflows.
        assert_eq!(
            ev(
                bson!({"$mod": [Bson::Int64(9_007_199_254_740_993), Bson::Int64(2)]}),
                d.clone()
            ),
            Some(Bson::Int64(1))
        );
        assert_eq!(
            ev(
                bson!({"$mod": [Bson::Int64(i64::MIN), Bson::Int64(-1)]}),
                d.clone()
            ),
            Some(Bson::Int64(0))
        );
        assert_eq!(ev(bson!({"$mod": [7, 3]}), d.clone()), Some(bson!(1)));
        assert_eq!(ev(bson!({"$mod": [7.5, 2]}), d), Some(bson!(1.5)));
    }

    #[test]
    fn unknown_operator_is_an_error() {
        assert!(Expr::parse(&bson!({"$nope": 1})).is_err());
        assert!(Expr::parse(&bson!("$$nope")).is_err());
    }
}
