//! Aggregation expressions (`"$field"`, literals, `{$add: [...]}`, ...),
//! used by `$expr`, `$project`/`$addFields` and `$group`.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::compare::{as_f64, as_i64, compare, equal, is_number};
use super::path::get_expr;
use crate::error::{CommandError, ErrorCode, Result};

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Literal(Bson),
    /// `"$a.b"`: a field path of the current document.
    Field(String),
    /// `"$$ROOT"` / `"$$CURRENT"`.
    Root,
    Object(Vec<(String, Expr)>),
    Array(Vec<Expr>),
    Op(Op, Vec<Expr>),
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
    Add = "$add", Subtract = "$subtract", Multiply = "$multiply", Divide = "$divide", Mod = "$mod",
    Abs = "$abs", Eq = "$eq", Ne = "$ne", Gt = "$gt", Gte = "$gte", Lt = "$lt", Lte = "$lte",
    Cmp = "$cmp", And = "$and", Or = "$or", Not = "$not", Cond = "$cond", IfNull = "$ifNull",
    Concat = "$concat", ToUpper = "$toUpper", ToLower = "$toLower", Size = "$size", In = "$in",
    ArrayElemAt = "$arrayElemAt", Type = "$type", ToString = "$toString", Max = "$max", Min = "$min",
    Sum = "$sum", Avg = "$avg", First = "$first", Last = "$last", StrLenCP = "$strLenCP",
    Substr = "$substrCP", Split = "$split", IsArray = "$isArray", ConcatArrays = "$concatArrays",
}

impl Expr {
    pub fn parse(v: &Bson) -> Result<Expr> {
        match v {
            Bson::String(s) if s == "$$ROOT" || s == "$$CURRENT" => Ok(Expr::Root),
            Bson::String(s) if s.starts_with("$$") => {
                let rest = &s[2..];
                if let Some(path) = rest
                    .strip_prefix("ROOT.")
                    .or_else(|| rest.strip_prefix("CURRENT."))
                {
                    Ok(Expr::Field(path.to_owned()))
                } else {
                    Err(CommandError::new(
                        ErrorCode::Location16410,
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
                Ok(Expr::Field(s[1..].to_owned()))
            }
            Bson::Array(items) => Ok(Expr::Array(
                items.iter().map(Expr::parse).collect::<Result<_>>()?,
            )),
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
                        let op = Op::from_name(k).ok_or_else(|| {
                            CommandError::new(
                                ErrorCode::InvalidPipelineOperator,
                                format!("Unrecognized expression '{k}'"),
                            )
                        })?;
                        let args = match (op, arg) {
                            (Op::Cond, Bson::Document(c)) => {
                                let get = |n: &str| c.get(n).cloned().unwrap_or(Bson::Null);
                                vec![
                                    Expr::parse(&get("if"))?,
                                    Expr::parse(&get("then"))?,
                                    Expr::parse(&get("else"))?,
                                ]
                            }
                            (_, Bson::Array(items)) => {
                                items.iter().map(Expr::parse).collect::<Result<_>>()?
                            }
                            (_, other) => vec![Expr::parse(other)?],
                        };
                        Ok(Expr::Op(op, args))
                    }
                    _ => Ok(Expr::Object(
                        d.iter()
                            .map(|(k, v)| Ok((k.clone(), Expr::parse(v)?)))
                            .collect::<Result<_>>()?,
                    )),
                }
            }
            other => Ok(Expr::Literal(other.clone())),
        }
    }

    /// Evaluates against `doc`; `None` is "missing" (a field that is not there).
    pub fn eval(&self, doc: &Document) -> Option<Bson> {
        match self {
            Expr::Literal(v) => Some(v.clone()),
            Expr::Field(p) => get_expr(doc, p),
            Expr::Root => Some(Bson::Document(doc.clone())),
            Expr::Object(fields) => {
                let mut out = Document::new();
                for (k, e) in fields {
                    if let Some(v) = e.eval(doc) {
                        out.insert(k.clone(), v);
                    }
                }
                Some(Bson::Document(out))
            }
            Expr::Array(items) => Some(Bson::Array(
                items
                    .iter()
                    .map(|e| e.eval(doc).unwrap_or(Bson::Null))
                    .collect(),
            )),
            Expr::Op(op, args) => eval_op(*op, args, doc),
        }
    }
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

fn num_result(x: f64, all_int: bool) -> Bson {
    if all_int && x.fract() == 0.0 && x.abs() < 9.0e15 {
        let i = x as i64;
        i32::try_from(i).map(Bson::Int32).unwrap_or(Bson::Int64(i))
    } else {
        Bson::Double(x)
    }
}

fn eval_op(op: Op, args: &[Expr], doc: &Document) -> Option<Bson> {
    let vals = || {
        args.iter()
            .map(|a| a.eval(doc).unwrap_or(Bson::Null))
            .collect::<Vec<_>>()
    };
    let arg = |i: usize| args.get(i).and_then(|a| a.eval(doc)).unwrap_or(Bson::Null);
    let int_like = |v: &Bson| matches!(v, Bson::Int32(_) | Bson::Int64(_));
    Some(match op {
        Op::Add | Op::Multiply => {
            let vs = vals();
            if vs.iter().any(|v| matches!(v, Bson::Null)) {
                return Some(Bson::Null);
            }
            if op == Op::Add
                && let Some(Bson::DateTime(d)) = vs.iter().find(|v| matches!(v, Bson::DateTime(_)))
            {
                let extra: f64 = vs.iter().filter_map(as_f64).sum();
                return Some(Bson::DateTime(bson::DateTime::from_millis(
                    d.timestamp_millis() + extra as i64,
                )));
            }
            let nums: Vec<f64> = vs.iter().filter_map(as_f64).collect();
            let x = if op == Op::Add {
                nums.iter().sum()
            } else {
                nums.iter().product()
            };
            num_result(x, vs.iter().all(int_like))
        }
        Op::Subtract | Op::Divide | Op::Mod => {
            let (a, b) = (arg(0), arg(1));
            let (Some(x), Some(y)) = (as_f64(&a), as_f64(&b)) else {
                return Some(Bson::Null);
            };
            match op {
                Op::Subtract => num_result(x - y, int_like(&a) && int_like(&b)),
                Op::Divide if y == 0.0 => Bson::Null,
                Op::Divide => Bson::Double(x / y),
                _ if y == 0.0 => Bson::Null,
                _ => num_result(x % y, int_like(&a) && int_like(&b)),
            }
        }
        Op::Abs => match as_f64(&arg(0)) {
            Some(x) => num_result(x.abs(), int_like(&arg(0))),
            None => Bson::Null,
        },
        Op::Eq => Bson::Boolean(equal(&arg(0), &arg(1))),
        Op::Ne => Bson::Boolean(!equal(&arg(0), &arg(1))),
        Op::Gt => Bson::Boolean(compare(&arg(0), &arg(1)) == Ordering::Greater),
        Op::Gte => Bson::Boolean(compare(&arg(0), &arg(1)) != Ordering::Less),
        Op::Lt => Bson::Boolean(compare(&arg(0), &arg(1)) == Ordering::Less),
        Op::Lte => Bson::Boolean(compare(&arg(0), &arg(1)) != Ordering::Greater),
        Op::Cmp => Bson::Int32(compare(&arg(0), &arg(1)) as i32),
        Op::And => Bson::Boolean(vals().iter().all(truthy)),
        Op::Or => Bson::Boolean(vals().iter().any(truthy)),
        Op::Not => Bson::Boolean(!truthy(&arg(0))),
        Op::Cond => {
            if truthy(&arg(0)) {
                return args.get(1).and_then(|a| a.eval(doc));
            }
            return args.get(2).and_then(|a| a.eval(doc));
        }
        Op::IfNull => {
            for a in args {
                match a.eval(doc) {
                    Some(Bson::Null) | Some(Bson::Undefined) | None => continue,
                    Some(v) => return Some(v),
                }
            }
            Bson::Null
        }
        Op::Concat => {
            let mut s = String::new();
            for v in vals() {
                match v {
                    Bson::String(x) => s.push_str(&x),
                    _ => return Some(Bson::Null),
                }
            }
            Bson::String(s)
        }
        Op::ToUpper => Bson::String(to_str(&arg(0)).to_uppercase()),
        Op::ToLower => Bson::String(to_str(&arg(0)).to_lowercase()),
        Op::ToString => match arg(0) {
            Bson::Null => Bson::Null,
            v => Bson::String(to_str(&v)),
        },
        Op::StrLenCP => Bson::Int32(to_str(&arg(0)).chars().count() as i32),
        Op::Substr => {
            let s = to_str(&arg(0));
            let start = as_i64(&arg(1)).unwrap_or(0).max(0) as usize;
            let len = as_i64(&arg(2)).unwrap_or(0).max(0) as usize;
            Bson::String(s.chars().skip(start).take(len).collect())
        }
        Op::Split => match (arg(0), arg(1)) {
            (Bson::String(s), Bson::String(sep)) if !sep.is_empty() => Bson::Array(
                s.split(sep.as_str())
                    .map(|p| Bson::String(p.to_owned()))
                    .collect(),
            ),
            _ => Bson::Null,
        },
        Op::Size => match arg(0) {
            Bson::Array(a) => Bson::Int32(a.len() as i32),
            _ => Bson::Null,
        },
        Op::IsArray => Bson::Boolean(matches!(arg(0), Bson::Array(_))),
        Op::In => match arg(1) {
            Bson::Array(a) => {
                let x = arg(0);
                Bson::Boolean(a.iter().any(|e| equal(e, &x)))
            }
            _ => Bson::Null,
        },
        Op::ArrayElemAt => match (arg(0), as_i64(&arg(1))) {
            (Bson::Array(a), Some(i)) => {
                let idx = if i < 0 { a.len() as i64 + i } else { i };
                return usize::try_from(idx).ok().and_then(|i| a.get(i).cloned());
            }
            _ => Bson::Null,
        },
        Op::ConcatArrays => {
            let mut out = Vec::new();
            for v in vals() {
                match v {
                    Bson::Array(a) => out.extend(a),
                    _ => return Some(Bson::Null),
                }
            }
            Bson::Array(out)
        }
        Op::Type => Bson::String(
            match args.first().and_then(|a| a.eval(doc)) {
                None => "missing",
                Some(v) => type_name(&v),
            }
            .to_owned(),
        ),
        Op::Max | Op::Min | Op::Sum | Op::Avg | Op::First | Op::Last => {
            // With one array argument these operate on its elements.
            let items = match (args.len(), arg(0)) {
                (1, Bson::Array(a)) => a,
                _ => vals(),
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
                Op::Sum => {
                    let nums: Vec<&Bson> = items.iter().filter(|v| is_number(v)).collect();
                    num_result(
                        nums.iter().filter_map(|v| as_f64(v)).sum(),
                        nums.iter().all(|v| int_like(v)),
                    )
                }
                Op::Avg => {
                    let nums: Vec<f64> = items.iter().filter_map(as_f64).collect();
                    if nums.is_empty() {
                        Bson::Null
                    } else {
                        Bson::Double(nums.iter().sum::<f64>() / nums.len() as f64)
                    }
                }
                Op::First => items.first().cloned().unwrap_or(Bson::Null),
                _ => items.last().cloned().unwrap_or(Bson::Null),
            }
        }
    })
}

fn to_str(v: &Bson) -> String {
    match v {
        Bson::String(s) => s.clone(),
        Bson::Null | Bson::Undefined => String::new(),
        Bson::ObjectId(o) => o.to_hex(),
        Bson::DateTime(d) => d.try_to_rfc3339_string().unwrap_or_default(),
        other => other.to_string(),
    }
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
    use super::*;
    use bson::{bson, doc};

    fn ev(e: Bson, d: Document) -> Option<Bson> {
        Expr::parse(&e).unwrap().eval(&d)
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
    fn unknown_operator_is_an_error() {
        assert!(Expr::parse(&bson!({"$nope": 1})).is_err());
        assert!(Expr::parse(&bson!("$$nope")).is_err());
    }
}
