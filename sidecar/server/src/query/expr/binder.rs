//! Operators that bind variables or choose a branch: `$let`, `$map`,
//! `$filter`, `$reduce` and `$switch`.
//!
//! Names are resolved when parsed ([`Scope`]): a reference to a variable
//! no enclosing operator binds is 17276 before any document is read, and
//! each reference knows which frame its value will be in. As in mongod,
//! `input`, `initialValue`, `limit` and `$let`'s `vars` see only the
//! variables bound outside the operator; `in` and `cond` see the operator's
//! own too, an inner binding hiding an outer one of the same name.
//! `CURRENT` may be rebound (`$let: {vars: {CURRENT: …}}`, `as: "CURRENT"`):
//! field paths inside then read that value.

use bson::{Bson, Document};

use super::{Expr, Locals, Scope, truthy, type_name};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::{self, Budget};
use crate::query::vars::validate_name;

/// A parsed binding or branching operator.
#[derive(Debug, Clone)]
pub enum BinderExpr {
    /// `{$let: {vars: {name: expr, …}, in}}`: `vars` in the order given.
    Let { vars: Vec<Expr>, body: Expr },
    /// `{$map: {input, as, in}}`.
    Map { input: Expr, body: Expr },
    /// `{$filter: {input, as, cond, limit}}`.
    Filter {
        input: Expr,
        cond: Expr,
        limit: Option<Expr>,
    },
    /// `{$reduce: {input, initialValue, in}}`; `in` sees `$$value` (slot
    /// 0) and `$$this` (slot 1).
    Reduce {
        input: Expr,
        initial: Expr,
        body: Expr,
    },
    /// `{$switch: {branches: [{case, then}, …], default}}`.
    Switch {
        branches: Vec<(Expr, Expr)>,
        default: Option<Expr>,
    },
}

impl BinderExpr {
    /// Parses `{name: arg}`; `None` when `name` is not one of these.
    pub(super) fn parse(name: &str, arg: &Bson, scope: Scope) -> Result<Option<BinderExpr>> {
        Ok(Some(match name {
            "$let" => parse_let(arg, scope)?,
            "$map" => parse_map(arg, scope)?,
            "$filter" => parse_filter(arg, scope)?,
            "$reduce" => parse_reduce(arg, scope)?,
            "$switch" => parse_switch(arg, scope)?,
            _ => return Ok(None),
        }))
    }

    pub(super) fn eval(&self, doc: &Document, locals: Locals) -> Result<Option<Bson>> {
        match self {
            BinderExpr::Let { vars, body } => {
                let mut values = Vec::with_capacity(vars.len());
                for v in vars {
                    // A variable set to a missing value is missing inside
                    // `in`; null is the closest a stored value gets, and
                    // mongod's `$$x` of a missing value compares as null.
                    values.push(v.eval_in(doc, locals)?.unwrap_or(Bson::Null));
                }
                locals.with(&values, |inner| body.eval_in(doc, inner))
            }
            BinderExpr::Map { input, body } => {
                let Some(items) = array_input(input, doc, locals, map_not_array)? else {
                    return Ok(Some(Bson::Null));
                };
                let mut budget = Budget::value("$map");
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let v = locals
                        .with(std::slice::from_ref(&item), |inner| {
                            body.eval_in(doc, inner)
                        })?
                        .unwrap_or(Bson::Null);
                    budget.charge(8 + limits::bson_size(&v))?;
                    out.push(v);
                }
                Ok(Some(Bson::Array(out)))
            }
            BinderExpr::Filter { input, cond, limit } => {
                let Some(items) = array_input(input, doc, locals, filter_not_array)? else {
                    return Ok(Some(Bson::Null));
                };
                if items.is_empty() {
                    return Ok(Some(Bson::Array(items)));
                }
                let mut remaining = match limit {
                    Some(l) => filter_limit(l.eval_in(doc, locals)?)?,
                    None => None,
                };
                let mut out = Vec::new();
                for item in items {
                    let keep = locals
                        .with(std::slice::from_ref(&item), |inner| {
                            cond.eval_in(doc, inner)
                        })?
                        .is_some_and(|v| truthy(&v));
                    if keep {
                        out.push(item);
                        if let Some(n) = remaining.as_mut() {
                            *n -= 1;
                            if *n == 0 {
                                break;
                            }
                        }
                    }
                }
                Ok(Some(Bson::Array(out)))
            }
            BinderExpr::Reduce {
                input,
                initial,
                body,
            } => {
                let items = match input.eval_in(doc, locals)? {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => {
                        return Ok(Some(Bson::Null));
                    }
                    Some(Bson::Array(items)) => items,
                    Some(other) => {
                        return Err(CommandError::new(
                            ErrorCode::Location40080,
                            format!("$reduce requires that 'input' be an array, found: {other}"),
                        ));
                    }
                };
                let mut value = initial.eval_in(doc, locals)?;
                for item in items {
                    let frame = [value.take().unwrap_or(Bson::Null), item];
                    value = locals.with(&frame, |inner| body.eval_in(doc, inner))?;
                    if let Some(v) = &value {
                        check_accumulated(v)?;
                    }
                }
                Ok(value)
            }
            BinderExpr::Switch { branches, default } => {
                for (case, then) in branches {
                    if case.eval_in(doc, locals)?.is_some_and(|v| truthy(&v)) {
                        return then.eval_in(doc, locals);
                    }
                }
                match default {
                    Some(d) => d.eval_in(doc, locals),
                    None => Err(CommandError::new(
                        ErrorCode::Location40066,
                        "$switch could not find a matching branch for an input, and no default was specified.",
                    )),
                }
            }
        }
    }

    pub(super) fn is_constant(&self) -> bool {
        match self {
            BinderExpr::Let { vars, body } => {
                vars.iter().all(Expr::is_constant) && body.is_constant()
            }
            BinderExpr::Map { input, body } => input.is_constant() && body.is_constant(),
            BinderExpr::Filter { input, cond, limit } => {
                input.is_constant()
                    && cond.is_constant()
                    && limit.as_ref().is_none_or(Expr::is_constant)
            }
            BinderExpr::Reduce {
                input,
                initial,
                body,
            } => input.is_constant() && initial.is_constant() && body.is_constant(),
            BinderExpr::Switch { branches, default } => {
                branches
                    .iter()
                    .all(|(c, t)| c.is_constant() && t.is_constant())
                    && default.as_ref().is_none_or(Expr::is_constant)
            }
        }
    }
}

/// The object argument of `op`, or `code` "`op` only supports an object
/// as its argument".
fn object_arg<'a>(op: &str, arg: &'a Bson, code: ErrorCode) -> Result<&'a Document> {
    match arg {
        Bson::Document(d) => Ok(d),
        _ => Err(CommandError::new(
            code,
            format!("{op} only supports an object as its argument"),
        )),
    }
}

/// A variable name a user may bind: a user variable's name, or `CURRENT`.
fn bindable_name(name: &str) -> Result<String> {
    if name != "CURRENT" {
        validate_name(name)?;
    }
    Ok(name.to_owned())
}

/// `as`: a string naming the variable (`this` when absent). mongod reads a
/// non-string `as` as the empty name, refused as such (16866).
fn as_name(v: Option<&Bson>) -> Result<String> {
    match v {
        None => Ok("this".to_owned()),
        Some(Bson::String(s)) => bindable_name(s),
        Some(_) => bindable_name(""),
    }
}

fn parse_let(arg: &Bson, scope: Scope) -> Result<BinderExpr> {
    let spec = object_arg("$let", arg, ErrorCode::Location16874)?;
    let (mut vars, mut body) = (None, None);
    for (k, v) in spec {
        match k.as_str() {
            "vars" => vars = Some(v),
            "in" => body = Some(v),
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location16875,
                    format!("Unrecognized parameter to $let: {other}"),
                ));
            }
        }
    }
    let vars = vars.ok_or_else(|| {
        CommandError::new(ErrorCode::Location16876, "Missing 'vars' parameter to $let")
    })?;
    let body = body.ok_or_else(|| {
        CommandError::new(ErrorCode::Location16877, "Missing 'in' parameter to $let")
    })?;
    let Bson::Document(vars) = vars else {
        return Err(CommandError::new(
            ErrorCode::Location10065,
            "invalid parameter: expected an object (vars)",
        ));
    };
    let mut names = Vec::with_capacity(vars.len());
    let mut exprs = Vec::with_capacity(vars.len());
    for (name, e) in vars {
        names.push(bindable_name(name)?);
        // Only the outer variables: `vars` do not see each other.
        exprs.push(Expr::parse_in(e, scope.nested())?);
    }
    let body = scope.with_names(&names, |inner| Expr::parse_in(body, inner))?;
    Ok(BinderExpr::Let { vars: exprs, body })
}

fn parse_map(arg: &Bson, scope: Scope) -> Result<BinderExpr> {
    let spec = object_arg("$map", arg, ErrorCode::Location16878)?;
    let (mut input, mut name, mut body) = (None, None, None);
    for (k, v) in spec {
        match k.as_str() {
            "input" => input = Some(v),
            "as" => name = Some(v),
            "in" => body = Some(v),
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location16879,
                    format!("Unrecognized parameter to $map: {other}"),
                ));
            }
        }
    }
    let input = input.ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location16880,
            "Missing 'input' parameter to $map",
        )
    })?;
    let body = body.ok_or_else(|| {
        CommandError::new(ErrorCode::Location16882, "Missing 'in' parameter to $map")
    })?;
    let input = Expr::parse_in(input, scope.nested())?;
    let name = as_name(name)?;
    let body = scope.with_names(&[name], |inner| Expr::parse_in(body, inner))?;
    Ok(BinderExpr::Map { input, body })
}

fn parse_filter(arg: &Bson, scope: Scope) -> Result<BinderExpr> {
    let spec = object_arg("$filter", arg, ErrorCode::Location28646)?;
    let (mut input, mut name, mut cond, mut limit) = (None, None, None, None);
    for (k, v) in spec {
        match k.as_str() {
            "input" => input = Some(v),
            "as" => name = Some(v),
            "cond" => cond = Some(v),
            "limit" => limit = Some(v),
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location28647,
                    format!("Unrecognized parameter to $filter: {other}"),
                ));
            }
        }
    }
    let input = input.ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location28648,
            "Missing 'input' parameter to $filter",
        )
    })?;
    let cond = cond.ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location28650,
            "Missing 'cond' parameter to $filter",
        )
    })?;
    let input = Expr::parse_in(input, scope.nested())?;
    let name = as_name(name)?;
    let cond = scope.with_names(&[name], |inner| Expr::parse_in(cond, inner))?;
    let limit = limit
        .map(|l| Expr::parse_in(l, scope.nested()))
        .transpose()?;
    Ok(BinderExpr::Filter { input, cond, limit })
}

fn parse_reduce(arg: &Bson, scope: Scope) -> Result<BinderExpr> {
    let Bson::Document(spec) = arg else {
        return Err(CommandError::new(
            ErrorCode::Location40075,
            format!(
                "$reduce requires an object as an argument, found: {}",
                type_name(arg)
            ),
        ));
    };
    let (mut input, mut initial, mut body) = (None, None, None);
    for (k, v) in spec {
        match k.as_str() {
            "input" => input = Some(v),
            "initialValue" => initial = Some(v),
            "in" => body = Some(v),
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location40076,
                    format!("$reduce found an unknown argument: {other}"),
                ));
            }
        }
    }
    let missing = |code, field: &str| {
        CommandError::new(code, format!("$reduce requires '{field}' to be specified"))
    };
    let input = input.ok_or_else(|| missing(ErrorCode::Location40077, "input"))?;
    let initial = initial.ok_or_else(|| missing(ErrorCode::Location40078, "initialValue"))?;
    let body = body.ok_or_else(|| missing(ErrorCode::Location40079, "in"))?;
    let input = Expr::parse_in(input, scope.nested())?;
    let initial = Expr::parse_in(initial, scope.nested())?;
    // Slot order matches the frame `eval` builds: [value, this].
    let names = ["value".to_owned(), "this".to_owned()];
    let body = scope.with_names(&names, |inner| Expr::parse_in(body, inner))?;
    Ok(BinderExpr::Reduce {
        input,
        initial,
        body,
    })
}

fn parse_switch(arg: &Bson, scope: Scope) -> Result<BinderExpr> {
    let Bson::Document(spec) = arg else {
        return Err(CommandError::new(
            ErrorCode::Location40060,
            format!(
                "$switch requires an object as an argument, found: {}",
                type_name(arg)
            ),
        ));
    };
    let mut branches = Vec::new();
    let mut default = None;
    for (k, v) in spec {
        match k.as_str() {
            "branches" => {
                let Bson::Array(items) = v else {
                    return Err(CommandError::new(
                        ErrorCode::Location40061,
                        format!(
                            "$switch expected an array for 'branches', found: {}",
                            type_name(v)
                        ),
                    ));
                };
                for item in items {
                    branches.push(parse_branch(item, scope)?);
                }
            }
            "default" => default = Some(Expr::parse_in(v, scope.nested())?),
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location40067,
                    format!("$switch found an unknown argument: {other}"),
                ));
            }
        }
    }
    if branches.is_empty() {
        return Err(CommandError::new(
            ErrorCode::Location40068,
            "$switch requires at least one branch.",
        ));
    }
    Ok(BinderExpr::Switch { branches, default })
}

fn parse_branch(item: &Bson, scope: Scope) -> Result<(Expr, Expr)> {
    let Bson::Document(branch) = item else {
        return Err(CommandError::new(
            ErrorCode::Location40062,
            format!(
                "$switch expected each branch to be an object, found: {}",
                type_name(item)
            ),
        ));
    };
    let (mut case, mut then) = (None, None);
    for (k, v) in branch {
        match k.as_str() {
            "case" => case = Some(Expr::parse_in(v, scope.nested())?),
            "then" => then = Some(Expr::parse_in(v, scope.nested())?),
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location40063,
                    format!("$switch found an unknown argument to a branch: {other}"),
                ));
            }
        }
    }
    let case = case.ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location40064,
            "$switch requires each branch have a 'case' expression",
        )
    })?;
    let then = then.ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location40065,
            "$switch requires each branch have a 'then' expression.",
        )
    })?;
    Ok((case, then))
}

/// The array `input` evaluates to; `None` for null and missing (the
/// operator's result is then null); `not_array` builds the error for
/// anything else.
fn array_input(
    input: &Expr,
    doc: &Document,
    locals: Locals,
    not_array: fn(&Bson) -> CommandError,
) -> Result<Option<Vec<Bson>>> {
    match input.eval_in(doc, locals)? {
        None | Some(Bson::Null) | Some(Bson::Undefined) => Ok(None),
        Some(Bson::Array(items)) => Ok(Some(items)),
        Some(other) => Err(not_array(&other)),
    }
}

fn map_not_array(v: &Bson) -> CommandError {
    CommandError::new(
        ErrorCode::Location16883,
        format!("input to $map must be an array not {}", type_name(v)),
    )
}

fn filter_not_array(v: &Bson) -> CommandError {
    CommandError::new(
        ErrorCode::Location28651,
        format!("input to $filter must be an array not {}", type_name(v)),
    )
}

/// `$filter`'s `limit`, evaluated: null or missing is no limit; otherwise
/// a whole number that fits an int32 (327391) and is positive (327392).
fn filter_limit(v: Option<Bson>) -> Result<Option<usize>> {
    let v = match v {
        None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(None),
        Some(v) => v,
    };
    let n = match &v {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => i32::try_from(*n).ok().map(i64::from),
        Bson::Double(x) if x.fract() == 0.0 && *x >= i32::MIN as f64 && *x <= i32::MAX as f64 => {
            Some(*x as i64)
        }
        Bson::Decimal128(_) => super::as_f64(&v)
            .filter(|x| x.fract() == 0.0 && *x >= i32::MIN as f64 && *x <= i32::MAX as f64)
            .map(|x| x as i64),
        _ => None,
    };
    let n = n.ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location327391,
            format!("$filter: limit must be represented as a 32-bit integral value: {v}"),
        )
    })?;
    if n <= 0 {
        return Err(CommandError::new(
            ErrorCode::Location327392,
            format!("$filter: limit must be greater than 0: {v}"),
        ));
    }
    Ok(Some(n as usize))
}

/// `$reduce`'s value after each element: held to the built-value limit
/// and to twice the BSON depth limit (as mongod), so a reduction that
/// nests its value one level per element (`in: ["$$value"]`) stops with
/// an error before anything that walks the value recursively could
/// exhaust the stack.
fn check_accumulated(v: &Bson) -> Result<()> {
    if !matches!(v, Bson::Document(_) | Bson::Array(_)) {
        return Ok(());
    }
    if limits::value_depth_exceeds(v, 2 * limits::MAX_BSON_DEPTH) {
        return Err(CommandError::new(
            ErrorCode::Overflow,
            "$reduce accumulated value exceeded max allowable BSON depth",
        ));
    }
    Budget::value("$reduce").reserve(limits::bson_size(v))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::query::vars::Vars;
    use bson::{bson, doc};

    #[test]
    fn let_binds_for_in_only() {
        // The manual's example.
        let d = doc! {"price": 10, "tax": 0.5, "applyDiscount": true};
        let e = bson!({"$let": {
            "vars": {"total": {"$add": ["$price", "$tax"]},
                     "discounted": {"$cond": {"if": "$applyDiscount", "then": 0.9, "else": 1}}},
            "in": {"$multiply": ["$$total", "$$discounted"]}}});
        assert_eq!(ev(e, d), Some(Bson::Double(10.5 * 0.9)));
        // An inner binding hides the outer one; `vars` see only the outer.
        let e = bson!({"$let": {"vars": {"x": 1}, "in":
            {"$let": {"vars": {"x": 2, "y": "$$x"}, "in": ["$$x", "$$y", "$$x.a"]}}}});
        assert_eq!(ev(e, doc! {}), Some(bson!([2, 1, null])));
        // Paths inside a variable, through arrays as a field path reads.
        let e = bson!({"$let": {"vars": {"o": {"a": [{"b": 1}, {"b": 2}]}}, "in": "$$o.a.b"}});
        assert_eq!(ev(e, doc! {}), Some(bson!([1, 2])));
        // A later `vars` entry cannot see an earlier one.
        assert_eq!(
            code(
                bson!({"$let": {"vars": {"a": 1, "b": "$$a"}, "in": "$$b"}}),
                doc! {}
            )
            .0,
            17276
        );
        // Outside `in` the variable does not exist.
        assert_eq!(
            code(
                bson!([{"$let": {"vars": {"a": 1}, "in": "$$a"}}, "$$a"]),
                doc! {}
            )
            .0,
            17276
        );
    }

    #[test]
    fn current_can_be_rebound() {
        let d = doc! {"a": 1, "sub": {"a": 5}};
        let e =
            bson!({"$let": {"vars": {"CURRENT": "$sub"}, "in": ["$a", "$$CURRENT.a", "$$ROOT.a"]}});
        assert_eq!(ev(e, d.clone()), Some(bson!([5, 5, 1])));
        let e = bson!({"$map": {"input": [{"a": 7}, 3], "as": "CURRENT", "in": "$a"}});
        assert_eq!(ev(e, d), Some(bson!([7, null])));
    }

    #[test]
    fn map_filter_reduce_as_the_manual() {
        let d = doc! {"quizzes": [5, 6, 7], "items": [
        {"item_id": 43, "quantity": 2, "price": 10},
        {"item_id": 2, "quantity": 1, "price": 240},
        {"item_id": 23, "quantity": 3, "price": 110}]};
        let e =
            bson!({"$map": {"input": "$quizzes", "as": "grade", "in": {"$add": ["$$grade", 2]}}});
        assert_eq!(ev(e, d.clone()), Some(bson!([7, 8, 9])));
        let e = bson!({"$map": {"input": "$quizzes", "in": {"$multiply": ["$$this", 10]}}});
        assert_eq!(ev(e, d.clone()), Some(bson!([50, 60, 70])));
        // A missing result is null in the array.
        let e = bson!({"$map": {"input": [1, 2], "in": "$nope"}});
        assert_eq!(ev(e, d.clone()), Some(bson!([null, null])));
        let e = bson!({"$filter": {"input": "$items", "as": "item", "cond": {"$gte": ["$$item.price", 100]}}});
        assert_eq!(
            ev(e, d.clone()),
            Some(
                bson!([{"item_id": 2, "quantity": 1, "price": 240}, {"item_id": 23, "quantity": 3, "price": 110}])
            )
        );
        let e = bson!({"$filter": {"input": "$items", "cond": {"$gte": ["$$this.price", 100]}, "limit": 1}});
        assert_eq!(
            ev(e, d.clone()),
            Some(bson!([{"item_id": 2, "quantity": 1, "price": 240}]))
        );
        let e = bson!({"$filter": {"input": [1, 2, 3], "cond": true, "limit": null}});
        assert_eq!(ev(e, d.clone()), Some(bson!([1, 2, 3])));
        let e = bson!({"$filter": {"input": [1, 2, 3], "cond": true, "limit": 2.0}});
        assert_eq!(ev(e, d.clone()), Some(bson!([1, 2])));
        let e = bson!({"$reduce": {"input": ["a", "b", "c"], "initialValue": "", "in": {"$concat": ["$$value", "$$this"]}}});
        assert_eq!(ev(e, d.clone()), Some(bson!("abc")));
        let e = bson!({"$reduce": {"input": [1, 2, 3, 4], "initialValue": {"sum": 5, "product": 2},
            "in": {"sum": {"$add": ["$$value.sum", "$$this"]}, "product": {"$multiply": ["$$value.product", "$$this"]}}}});
        assert_eq!(ev(e, d.clone()), Some(bson!({"sum": 15, "product": 48})));
        let e = bson!({"$reduce": {"input": [[3, 4], [5, 6]], "initialValue": [1, 2], "in": {"$concatArrays": ["$$value", "$$this"]}}});
        assert_eq!(ev(e, d.clone()), Some(bson!([1, 2, 3, 4, 5, 6])));
        let e = bson!({"$reduce": {"input": [], "initialValue": 7, "in": 0}});
        assert_eq!(ev(e, d.clone()), Some(bson!(7)));
        // Null and missing inputs give null; other types are errors.
        for op in ["$map", "$filter"] {
            let key = if op == "$map" { "in" } else { "cond" };
            assert_eq!(
                ev(bson!({op: {"input": "$nope", key: 1}}), d.clone()),
                Some(Bson::Null)
            );
            assert_eq!(
                ev(bson!({op: {"input": null, key: 1}}), d.clone()),
                Some(Bson::Null)
            );
        }
        assert_eq!(
            ev(
                bson!({"$reduce": {"input": "$nope", "initialValue": 0, "in": 1}}),
                d.clone()
            ),
            Some(Bson::Null)
        );
        assert_eq!(
            code(bson!({"$map": {"input": "x", "in": 1}}), d.clone()).0,
            16883
        );
        assert_eq!(
            code(bson!({"$filter": {"input": 1, "cond": 1}}), d.clone()).0,
            28651
        );
        assert_eq!(
            code(
                bson!({"$reduce": {"input": {}, "initialValue": 0, "in": 1}}),
                d.clone()
            )
            .0,
            40080
        );
        // Nested: `$$this` of the inner operator hides the outer one.
        let e = bson!({"$map": {"input": [[1, 2], [3]], "in": {"$map": {"input": "$$this", "as": "x", "in": {"$add": ["$$x", {"$size": [[]]}]}}}}});
        assert_eq!(ev(e, d.clone()), Some(bson!([[1, 2], [3]])));
        let e = bson!({"$map": {"input": [[3, 1, 2]], "as": "a", "in": {"$firstN": {"n": 2, "input": "$$a"}}}});
        assert_eq!(ev(e, d), Some(bson!([[3, 1]])));
    }

    #[test]
    fn filter_limit_is_checked_as_mongod() {
        let f = |limit: Bson| bson!({"$filter": {"input": [1, 2], "cond": true, "limit": limit}});
        assert_eq!(code(f(bson!(0)), doc! {}).0, 327392);
        assert_eq!(code(f(bson!(-1)), doc! {}).0, 327392);
        assert_eq!(code(f(bson!(1.5)), doc! {}).0, 327391);
        assert_eq!(code(f(bson!("1")), doc! {}).0, 327391);
        assert_eq!(code(f(Bson::Int64(1 << 40)), doc! {}).0, 327391);
        assert_eq!(code(f(bson!(f64::NAN)), doc! {}).0, 327391);
        // An empty input is returned before the limit is looked at.
        let e = bson!({"$filter": {"input": [], "cond": true, "limit": 0}});
        assert_eq!(ev(e, doc! {}), Some(bson!([])));
    }

    #[test]
    fn switch_as_the_manual() {
        let e = |score: i32| {
            ev(
                bson!({"$switch": {"branches": [
                    {"case": {"$gte": ["$s", 90]}, "then": "A"},
                    {"case": {"$gte": ["$s", 80]}, "then": "B"}],
                    "default": "F"}}),
                doc! {"s": score},
            )
        };
        assert_eq!(e(95), Some(bson!("A")));
        assert_eq!(e(85), Some(bson!("B")));
        assert_eq!(e(5), Some(bson!("F")));
        let no_default = bson!({"$switch": {"branches": [{"case": false, "then": 1}]}});
        assert_eq!(code(no_default, doc! {}).0, 40066);
        // A branch not taken is not evaluated.
        let lazy = bson!({"$switch": {"branches": [{"case": true, "then": 1},
            {"case": true, "then": {"$map": {"input": "x", "in": 1}}}]}});
        assert_eq!(ev(lazy, doc! {}), Some(bson!(1)));
    }

    #[test]
    fn malformed_arguments_get_mongods_codes() {
        let cases: Vec<(Bson, i32)> = vec![
            (bson!({"$let": 1}), 16874),
            (bson!({"$let": {"vars": {}, "in": 1, "x": 1}}), 16875),
            (bson!({"$let": {"in": 1}}), 16876),
            (bson!({"$let": {"vars": {}}}), 16877),
            (bson!({"$let": {"vars": 1, "in": 1}}), 10065),
            (bson!({"$let": {"vars": {"Bad": 1}, "in": 1}}), 16867),
            (bson!({"$let": {"vars": {"a-b": 1}, "in": 1}}), 16868),
            (bson!({"$let": {"vars": {"ROOT": 1}, "in": 1}}), 16867),
            (bson!({"$map": []}), 16878),
            (bson!({"$map": {"input": [], "in": 1, "x": 1}}), 16879),
            (bson!({"$map": {"in": 1}}), 16880),
            (bson!({"$map": {"input": []}}), 16882),
            (bson!({"$map": {"input": [], "as": 5, "in": 1}}), 16866),
            (bson!({"$map": {"input": [], "as": "", "in": 1}}), 16866),
            (bson!({"$map": {"input": [], "as": "X", "in": 1}}), 16867),
            (bson!({"$filter": "x"}), 28646),
            (bson!({"$filter": {"input": [], "cond": 1, "x": 1}}), 28647),
            (bson!({"$filter": {"cond": 1}}), 28648),
            (bson!({"$filter": {"input": []}}), 28650),
            (bson!({"$reduce": 1}), 40075),
            (
                bson!({"$reduce": {"input": [], "initialValue": 0, "in": 1, "x": 1}}),
                40076,
            ),
            (bson!({"$reduce": {"initialValue": 0, "in": 1}}), 40077),
            (bson!({"$reduce": {"input": [], "in": 1}}), 40078),
            (bson!({"$reduce": {"input": [], "initialValue": 0}}), 40079),
            (bson!({"$switch": 1}), 40060),
            (bson!({"$switch": {"branches": 1}}), 40061),
            (bson!({"$switch": {"branches": [1]}}), 40062),
            (
                bson!({"$switch": {"branches": [{"case": 1, "then": 1, "x": 1}]}}),
                40063,
            ),
            (bson!({"$switch": {"branches": [{"then": 1}]}}), 40064),
            (bson!({"$switch": {"branches": [{"case": 1}]}}), 40065),
            (bson!({"$switch": {"branches": [], "default": 1}}), 40068),
            (bson!({"$switch": {"default": 1}}), 40068),
            (
                bson!({"$switch": {"branches": [{"case": 1, "then": 1}], "x": 1}}),
                40067,
            ),
            // `$$value` exists only inside `$reduce`'s `in`.
            (
                bson!({"$reduce": {"input": [], "initialValue": "$$value", "in": 1}}),
                17276,
            ),
            (bson!({"$map": {"input": "$$this", "in": 1}}), 17276),
        ];
        for (e, want) in cases {
            assert_eq!(code(e.clone(), doc! {}).0, want, "{e}");
        }
    }

    #[test]
    fn hostile_sizes_are_bounded() {
        crate::limits::with_worker_stack(|| {
            // A reduction nesting its value one level per element stops at
            // the depth limit instead of building 100,000 levels.
            let e = bson!({"$reduce": {"input": {"$range": [0, 100_000]}, "initialValue": [], "in": ["$$value"]}});
            assert_eq!(code(e, doc! {}).0, 15);
            let e = bson!({"$reduce": {"input": {"$range": [0, 100_000]}, "initialValue": {}, "in": {"a": "$$value"}}});
            assert_eq!(code(e, doc! {}).0, 15);
            // A reduction doubling its value hits the built-value limit.
            let e = bson!({"$reduce": {"input": {"$range": [0, 64]}, "initialValue": ["xxxxxxxxxxxxxxxx"],
                "in": {"$concatArrays": ["$$value", "$$value"]}}});
            assert_eq!(code(e, doc! {}).0, 146);
            // A map repeating a 1 MB document 1,000 times.
            let big = doc! {"s": "x".repeat(1 << 20)};
            let e = bson!({"$map": {"input": {"$range": [0, 1000]}, "in": "$$ROOT"}});
            assert_eq!(code(e, big).0, 146);
            // 100,000 variables in one `$let`, each reference resolved directly.
            let mut vars = Document::new();
            for i in 0..100_000 {
                vars.insert(format!("v{i}"), i);
            }
            let e = bson!({"$let": {"vars": vars, "in": {"$add": ["$$v0", "$$v99999"]}}});
            assert_eq!(ev(e, doc! {}), Some(bson!(99_999)));
            // Deeply nested binders are refused by the expression depth limit.
            let mut e = bson!("$$this");
            for _ in 0..(limits::MAX_EXPRESSION_DEPTH + 5) {
                e = bson!({"$map": {"input": [1], "in": e}});
            }
            assert!(Expr::parse(&e).is_err());
        });
    }

    #[test]
    fn command_variables_are_hidden_by_bound_ones() {
        let vars = Vars::parse(Some(&bson!({"x": 10, "this": 20}))).unwrap();
        let stages = vars
            .bind_pipeline(&[bson!({"$set": {
                "a": {"$let": {"vars": {"x": 1}, "in": "$$x"}},
                "b": {"$let": {"vars": {"y": "$$x"}, "in": "$$y"}},
                "c": {"$map": {"input": ["$$x"], "as": "x", "in": "$$x"}},
                "d": {"$map": {"input": [1], "in": ["$$this", "$$x"]}},
                "e": {"$reduce": {"input": [1], "initialValue": "$$this", "in": ["$$value", "$$this"]}},
                "f": "$$this",
            }})])
            .unwrap();
        let Bson::Document(stage) = &stages[0] else {
            panic!("a stage")
        };
        let set = stage.get_document("$set").unwrap();
        let get = |k: &str| ev(set.get(k).unwrap().clone(), doc! {});
        assert_eq!(get("a"), Some(bson!(1)));
        assert_eq!(get("b"), Some(bson!(10)));
        assert_eq!(get("c"), Some(bson!([10])));
        assert_eq!(get("d"), Some(bson!([[1, 10]])));
        assert_eq!(get("e"), Some(bson!([20, 1])));
        assert_eq!(get("f"), Some(bson!(20)));
    }
}
