//! Array, set and object operators: `$slice`, `$reverseArray`, `$indexOfArray`, `$zip`, `$sortArray`, `$arrayToObject`/`$objectToArray`, `$allElementsTrue`/`$anyElementTrue`, the `$set*` operators.
//!
//! Sets are mongod's: elements are equal as `$eq` finds them
//! ([`crate::query::compare`]: 1, 1.0 and NumberLong(1) are one element,
//! NaN equals NaN, strings under the command's collation), duplicates are
//! dropped, and `$setUnion`/`$setIntersection` answer in that order.
//! `$sortArray` orders as `$sort` does ([`SortSpec`]).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use bson::{Bson, Document, doc};

use super::args::{as_int32, between, double_string, exactly, nullish, positional, shown};
use super::{Expr, Locals, Scope, truthy, type_name};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::{self, Budget};
use crate::query::compare::{compare, equal, is_number};
use crate::query::sort::SortSpec;

/// A parsed operator of this family.
#[derive(Debug, Clone)]
pub enum ArrayExpr {
    /// The operators whose arguments are positional.
    Positional {
        op: ArrOp,
        args: Vec<Expr>,
    },
    Zip {
        inputs: Vec<Expr>,
        longest: bool,
        defaults: Vec<Expr>,
    },
    SortArray {
        input: Expr,
        by: SortBy,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrOp {
    Slice,
    ReverseArray,
    IndexOfArray,
    ArrayToObject,
    ObjectToArray,
    AllElementsTrue,
    AnyElementTrue,
    SetDifference,
    SetEquals,
    SetIntersection,
    SetIsSubset,
    SetUnion,
}

/// `$sortArray`'s `sortBy`: whole values (1 / -1) or a sort document.
#[derive(Debug, Clone)]
pub enum SortBy {
    Whole { ascending: bool },
    Pattern(SortSpec),
}

impl ArrayExpr {
    /// Parses `{name: arg}`; `None` when `name` is not of this family.
    pub(super) fn parse(name: &str, arg: &Bson, scope: Scope) -> Result<Option<ArrayExpr>> {
        let op = match name {
            "$zip" => return parse_zip(arg, scope).map(Some),
            "$sortArray" => return parse_sort_array(arg, scope).map(Some),
            "$slice" => ArrOp::Slice,
            "$reverseArray" => ArrOp::ReverseArray,
            "$indexOfArray" => ArrOp::IndexOfArray,
            "$arrayToObject" => ArrOp::ArrayToObject,
            "$objectToArray" => ArrOp::ObjectToArray,
            "$allElementsTrue" => ArrOp::AllElementsTrue,
            "$anyElementTrue" => ArrOp::AnyElementTrue,
            "$setDifference" => ArrOp::SetDifference,
            "$setEquals" => ArrOp::SetEquals,
            "$setIntersection" => ArrOp::SetIntersection,
            "$setIsSubset" => ArrOp::SetIsSubset,
            "$setUnion" => ArrOp::SetUnion,
            _ => return Ok(None),
        };
        let args = positional(arg, scope)?;
        let args = match op {
            ArrOp::Slice => between(name, args, 2, 3)?,
            ArrOp::IndexOfArray => between(name, args, 2, 4)?,
            ArrOp::ReverseArray
            | ArrOp::ArrayToObject
            | ArrOp::ObjectToArray
            | ArrOp::AllElementsTrue
            | ArrOp::AnyElementTrue => exactly(name, args, 1)?,
            ArrOp::SetDifference | ArrOp::SetIsSubset => exactly(name, args, 2)?,
            ArrOp::SetEquals if args.len() < 2 => {
                return Err(CommandError::new(
                    ErrorCode::Location17045,
                    format!(
                        "$setEquals needs at least two arguments had: {}",
                        args.len()
                    ),
                ));
            }
            ArrOp::SetEquals | ArrOp::SetIntersection | ArrOp::SetUnion => args,
        };
        Ok(Some(ArrayExpr::Positional { op, args }))
    }

    pub(super) fn eval(&self, doc: &Document, locals: Locals) -> Result<Option<Bson>> {
        match self {
            ArrayExpr::Positional { op, args } => {
                let arg = |i: usize| -> Result<Option<Bson>> {
                    match args.get(i) {
                        Some(e) => e.eval_in(doc, locals),
                        None => Ok(None),
                    }
                };
                eval_positional(*op, args.len(), arg)
            }
            ArrayExpr::Zip {
                inputs,
                longest,
                defaults,
            } => eval_zip(inputs, *longest, defaults, doc, locals),
            ArrayExpr::SortArray { input, by } => {
                let input = input.eval_in(doc, locals)?;
                let mut items = match input {
                    v if nullish(&v) => return Ok(Some(Bson::Null)),
                    Some(Bson::Array(a)) => a,
                    other => {
                        return Err(CommandError::new(
                            ErrorCode::Location2942504,
                            format!(
                                "The input argument to $sortArray must be an array, but was of type: {}",
                                type_of(&other)
                            ),
                        ));
                    }
                };
                sort_values(&mut items, by);
                Ok(Some(Bson::Array(items)))
            }
        }
    }

    pub(super) fn is_constant(&self) -> bool {
        match self {
            ArrayExpr::Positional { args, .. } => args.iter().all(Expr::is_constant),
            ArrayExpr::Zip {
                inputs, defaults, ..
            } => inputs.iter().chain(defaults).all(Expr::is_constant),
            ArrayExpr::SortArray { input, .. } => input.is_constant(),
        }
    }
}

fn type_of(v: &Option<Bson>) -> &'static str {
    v.as_ref().map_or("missing", type_name)
}

fn eval_positional(
    op: ArrOp,
    count: usize,
    arg: impl Fn(usize) -> Result<Option<Bson>>,
) -> Result<Option<Bson>> {
    Ok(Some(match op {
        ArrOp::Slice => return slice(count, arg),
        ArrOp::ReverseArray => match arg(0)? {
            v if nullish(&v) => Bson::Null,
            Some(Bson::Array(mut a)) => {
                a.reverse();
                Bson::Array(a)
            }
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location34435,
                    format!(
                        "The argument to $reverseArray must be an array, but was of type: {}",
                        type_of(&other)
                    ),
                ));
            }
        },
        ArrOp::IndexOfArray => return index_of_array(count, arg),
        ArrOp::ArrayToObject => return array_to_object(arg(0)?),
        ArrOp::ObjectToArray => match arg(0)? {
            v if nullish(&v) => Bson::Null,
            Some(Bson::Document(d)) => {
                let mut budget = Budget::value("$objectToArray");
                let mut out = Vec::with_capacity(d.len());
                for (k, v) in d {
                    let pair = Bson::Document(doc! {"k": k, "v": v});
                    budget.charge(8 + limits::bson_size(&pair))?;
                    out.push(pair);
                }
                Bson::Array(out)
            }
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location40390,
                    format!(
                        "$objectToArray requires a document input, found: {}",
                        type_of(&other)
                    ),
                ));
            }
        },
        ArrOp::AllElementsTrue | ArrOp::AnyElementTrue => {
            let name = if op == ArrOp::AllElementsTrue {
                "$allElementsTrue"
            } else {
                "$anyElementTrue"
            };
            let a = match arg(0)? {
                Some(Bson::Array(a)) => a,
                other => {
                    return Err(CommandError::new(
                        ErrorCode::Location17040,
                        format!(
                            "{name}'s argument must be an array, but is {}",
                            type_of(&other)
                        ),
                    ));
                }
            };
            Bson::Boolean(if op == ArrOp::AllElementsTrue {
                a.iter().all(truthy)
            } else {
                a.iter().any(truthy)
            })
        }
        ArrOp::SetDifference => {
            let (lhs, rhs) = (arg(0)?, arg(1)?);
            if nullish(&lhs) || nullish(&rhs) {
                return Ok(Some(Bson::Null));
            }
            let Some(Bson::Array(lhs)) = lhs else {
                return Err(both_arrays(
                    "$setDifference",
                    "First",
                    &lhs,
                    ErrorCode::Location17048,
                ));
            };
            let Some(Bson::Array(rhs)) = rhs else {
                return Err(both_arrays(
                    "$setDifference",
                    "Second",
                    &rhs,
                    ErrorCode::Location17049,
                ));
            };
            // The set both drops what the right holds and what the left
            // already gave.
            let mut seen: BTreeSet<Element> = rhs.into_iter().map(Element).collect();
            let mut out = Vec::new();
            for v in lhs {
                if seen.insert(Element(v.clone())) {
                    out.push(v);
                }
            }
            Bson::Array(out)
        }
        ArrOp::SetEquals => {
            let mut first: Option<BTreeSet<Element>> = None;
            let mut all_equal = true;
            for i in 0..count {
                let v = arg(i)?;
                let Some(Bson::Array(a)) = v else {
                    return Err(CommandError::new(
                        ErrorCode::Location17044,
                        format!(
                            "All operands of $setEquals must be arrays. {}-th argument is of type: {}",
                            i + 1,
                            type_of(&v)
                        ),
                    ));
                };
                let set = to_set(a);
                match &first {
                    None => first = Some(set),
                    Some(f) => all_equal &= *f == set,
                }
            }
            Bson::Boolean(all_equal)
        }
        ArrOp::SetIntersection => {
            let mut current: Option<BTreeSet<Element>> = None;
            for i in 0..count {
                let v = arg(i)?;
                if nullish(&v) {
                    return Ok(Some(Bson::Null));
                }
                let Some(Bson::Array(a)) = v else {
                    return Err(CommandError::new(
                        ErrorCode::Location17047,
                        format!(
                            "All operands of $setIntersection must be arrays. One argument is of type: {}",
                            type_of(&v)
                        ),
                    ));
                };
                let next = to_set(a);
                current = Some(match current {
                    None => next,
                    Some(cur) => cur.intersection(&next).cloned().collect(),
                });
            }
            Bson::Array(
                current
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| e.0)
                    .collect(),
            )
        }
        ArrOp::SetIsSubset => {
            let lhs = arg(0)?;
            let Some(Bson::Array(lhs)) = lhs else {
                return Err(both_arrays(
                    "$setIsSubset",
                    "First",
                    &lhs,
                    ErrorCode::Location17046,
                ));
            };
            let rhs = arg(1)?;
            let Some(Bson::Array(rhs)) = rhs else {
                return Err(both_arrays(
                    "$setIsSubset",
                    "Second",
                    &rhs,
                    ErrorCode::Location17042,
                ));
            };
            let rhs = to_set(rhs);
            Bson::Boolean(lhs.into_iter().all(|v| rhs.contains(&Element(v))))
        }
        ArrOp::SetUnion => {
            let mut budget = Budget::value("$setUnion");
            let mut union = BTreeSet::new();
            for i in 0..count {
                let v = arg(i)?;
                if nullish(&v) {
                    return Ok(Some(Bson::Null));
                }
                let Some(Bson::Array(a)) = v else {
                    return Err(CommandError::new(
                        ErrorCode::Location17043,
                        format!(
                            "All operands of $setUnion must be arrays. One argument is of type: {}",
                            type_of(&v)
                        ),
                    ));
                };
                // Every element counts, duplicates too, as mongod's.
                for e in &a {
                    budget.charge(8 + limits::bson_size(e))?;
                }
                union.extend(a.into_iter().map(Element));
            }
            Bson::Array(union.into_iter().map(|e| e.0).collect())
        }
    }))
}

fn both_arrays(op: &str, which: &str, v: &Option<Bson>, code: ErrorCode) -> CommandError {
    CommandError::new(
        code,
        format!(
            "both operands of {op} must be arrays. {which} argument is of type: {}",
            type_of(v)
        ),
    )
}

/// A value ordered (and so deduplicated) as mongod's sets order values.
#[derive(Debug, Clone)]
struct Element(Bson);

impl PartialEq for Element {
    fn eq(&self, other: &Self) -> bool {
        equal(&self.0, &other.0)
    }
}

impl Eq for Element {}

impl PartialOrd for Element {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Element {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(&self.0, &other.0)
    }
}

fn to_set(items: Vec<Bson>) -> BTreeSet<Element> {
    items.into_iter().map(Element).collect()
}

/// A `$slice` position or count: a number an int32 holds.
fn slice_int(v: &Option<Bson>, which: &str, codes: (ErrorCode, ErrorCode)) -> Result<i32> {
    let Some(n) = v.as_ref().filter(|n| is_number(n)) else {
        let kind = if which == "Second" {
            "must be a numeric value, but is of type:"
        } else {
            "must be numeric, but is of type:"
        };
        return Err(CommandError::new(
            codes.0,
            format!("{which} argument to $slice {kind} {}", type_of(v)),
        ));
    };
    as_int32(n).ok_or_else(|| {
        let d = crate::query::compare::as_f64(n).unwrap_or(f64::NAN);
        CommandError::new(
            codes.1,
            format!(
                "{which} argument to $slice can't be represented as a 32-bit integer: {}",
                double_string(d)
            ),
        )
    })
}

fn slice(count: usize, arg: impl Fn(usize) -> Result<Option<Bson>>) -> Result<Option<Bson>> {
    let (array, second) = (arg(0)?, arg(1)?);
    if nullish(&array) || nullish(&second) {
        return Ok(Some(Bson::Null));
    }
    let Some(Bson::Array(array)) = array else {
        return Err(CommandError::new(
            ErrorCode::Location28724,
            format!(
                "First argument to $slice must be an array, but is of type: {}",
                type_of(&array)
            ),
        ));
    };
    let second = slice_int(
        &second,
        "Second",
        (ErrorCode::Location28725, ErrorCode::Location28726),
    )?;
    let len = array.len();
    // Distances from the back, in i64 so no int32 or length overflows.
    let from_back = |n: i32| usize::try_from((len as i64 + i64::from(n)).max(0)).unwrap_or(0);
    let (start, end) = if count == 2 {
        match usize::try_from(second) {
            Ok(n) => (0, n.min(len)),
            Err(_) => (from_back(second), len),
        }
    } else {
        let start = match usize::try_from(second) {
            Ok(n) => n.min(len),
            Err(_) => from_back(second),
        };
        let third = arg(2)?;
        if nullish(&third) {
            return Ok(Some(Bson::Null));
        }
        let n = slice_int(
            &third,
            "Third",
            (ErrorCode::Location28727, ErrorCode::Location28728),
        )?;
        let Some(n) = usize::try_from(n).ok().filter(|n| *n > 0) else {
            return Err(CommandError::new(
                ErrorCode::Location28729,
                format!("Third argument to $slice must be positive: {n}"),
            ));
        };
        (start, start.saturating_add(n).min(len))
    };
    Ok(Some(Bson::Array(
        array
            .get(start..end)
            .map(<[Bson]>::to_vec)
            .unwrap_or_default(),
    )))
}

fn index_arg(what: &str, v: &Option<Bson>) -> Result<usize> {
    let Some(i) = v.as_ref().and_then(as_int32) else {
        return Err(CommandError::new(
            ErrorCode::Location40096,
            format!(
                "$indexOfArrayrequires an integral {what}, found a value of type: {}, with value: {}",
                type_of(v),
                shown(v)
            ),
        ));
    };
    usize::try_from(i).map_err(|_| {
        CommandError::new(
            ErrorCode::Location40097,
            format!(
                "$indexOfArray requires a nonnegative {what}, found: {}",
                shown(v)
            ),
        )
    })
}

fn index_of_array(
    count: usize,
    arg: impl Fn(usize) -> Result<Option<Bson>>,
) -> Result<Option<Bson>> {
    let array = match arg(0)? {
        v if nullish(&v) => return Ok(Some(Bson::Null)),
        Some(Bson::Array(a)) => a,
        other => {
            return Err(CommandError::new(
                ErrorCode::Location40090,
                format!(
                    "$indexOfArray requires an array as a first argument, found: {}",
                    type_of(&other)
                ),
            ));
        }
    };
    let start = if count > 2 {
        index_arg("starting index", &arg(2)?)?
    } else {
        0
    };
    let end = if count > 3 {
        index_arg("ending index", &arg(3)?)?.min(array.len())
    } else {
        array.len()
    };
    // Missing equals no element (an array holds no missing value).
    let Some(target) = arg(1)? else {
        return Ok(Some(Bson::Int32(-1)));
    };
    let found = array
        .get(start..end.max(start).min(array.len()))
        .unwrap_or_default()
        .iter()
        .position(|v| equal(v, &target))
        .map_or(-1, |i| (start + i) as i32);
    Ok(Some(Bson::Int32(found)))
}

fn array_to_object(input: Option<Bson>) -> Result<Option<Bson>> {
    let items = match input {
        v if nullish(&v) => return Ok(Some(Bson::Null)),
        Some(Bson::Array(a)) => a,
        other => {
            return Err(CommandError::new(
                ErrorCode::Location40386,
                format!(
                    "$arrayToObject requires an array input, found: {}",
                    type_of(&other)
                ),
            ));
        }
    };
    let mut out = Document::new();
    // The first element decides the shape: [k, v] pairs or {k, v} objects.
    let pairs = match items.first() {
        None => return Ok(Some(Bson::Document(out))),
        Some(Bson::Array(_)) => true,
        Some(Bson::Document(_)) => false,
        Some(other) => {
            return Err(CommandError::new(
                ErrorCode::Location40398,
                format!(
                    "Unrecognised input type format for $arrayToObject: {}",
                    type_name(other)
                ),
            ));
        }
    };
    for item in items {
        let (key, value) = if pairs {
            let mut pair = match item {
                Bson::Array(pair) => pair,
                other => {
                    return Err(CommandError::new(
                        ErrorCode::Location40396,
                        format!(
                            "$arrayToObject requires a consistent input format. Elements mustall be arrays or all be objects. Array was detected, now found: {}",
                            type_name(&other)
                        ),
                    ));
                }
            };
            if pair.len() != 2 {
                return Err(CommandError::new(
                    ErrorCode::Location40397,
                    format!(
                        "$arrayToObject requires an array of size 2 arrays,found array of size: {}",
                        pair.len()
                    ),
                ));
            }
            let value = pair.pop().unwrap_or(Bson::Null);
            let key = match pair.pop() {
                Some(Bson::String(key)) => key,
                other => {
                    return Err(CommandError::new(
                        ErrorCode::Location40395,
                        format!(
                            "$arrayToObject requires an array of key-value pairs, where the key must be of type string. Found key type: {}",
                            type_of(&other)
                        ),
                    ));
                }
            };
            check_key(&key, ErrorCode::Location4940400)?;
            (key, value)
        } else {
            let Bson::Document(d) = &item else {
                return Err(CommandError::new(
                    ErrorCode::Location40391,
                    format!(
                        "$arrayToObject requires a consistent input format. Elements mustall be arrays or all be objects. Object was detected, now found: {}",
                        type_name(&item)
                    ),
                ));
            };
            if d.len() != 2 {
                return Err(CommandError::new(
                    ErrorCode::Location40392,
                    format!(
                        "$arrayToObject requires an object keys of 'k' and 'v'. Found incorrect number of keys:{}",
                        d.len()
                    ),
                ));
            }
            let (Some(k), Some(v)) = (d.get("k"), d.get("v")) else {
                return Err(CommandError::new(
                    ErrorCode::Location40393,
                    format!(
                        "$arrayToObject requires an object with keys 'k' and 'v'. Missing either or both keys from: {item}"
                    ),
                ));
            };
            let Bson::String(key) = k else {
                return Err(CommandError::new(
                    ErrorCode::Location40394,
                    format!(
                        "$arrayToObject requires an object with keys 'k' and 'v', where the value of 'k' must be of type string. Found type: {}",
                        type_name(k)
                    ),
                ));
            };
            check_key(key, ErrorCode::Location4940401)?;
            (key.clone(), v.clone())
        };
        // A repeated key keeps its first place and takes the last value.
        out.insert(key, value);
    }
    Ok(Some(Bson::Document(out)))
}

fn check_key(key: &str, code: ErrorCode) -> Result<()> {
    if key.contains('\0') {
        return Err(CommandError::new(
            code,
            "Key field cannot contain an embedded null byte",
        ));
    }
    Ok(())
}

fn parse_zip(arg: &Bson, scope: Scope) -> Result<ArrayExpr> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::new(
            ErrorCode::Location34460,
            format!(
                "$zip only supports an object as an argument, found {}",
                type_name(arg)
            ),
        ));
    };
    let sub = |v: &Bson| Expr::parse_in(v, scope.nested());
    let (mut inputs, mut defaults, mut longest) = (Vec::new(), None, false);
    for (k, v) in d {
        match k.as_str() {
            "inputs" => {
                let Bson::Array(items) = v else {
                    return Err(CommandError::new(
                        ErrorCode::Location34461,
                        format!(
                            "inputs must be an array of expressions, found {}",
                            type_name(v)
                        ),
                    ));
                };
                inputs = items.iter().map(sub).collect::<Result<_>>()?;
            }
            "defaults" => {
                let Bson::Array(items) = v else {
                    return Err(CommandError::new(
                        ErrorCode::Location34462,
                        format!(
                            "defaults must be an array of expressions, found {}",
                            type_name(v)
                        ),
                    ));
                };
                defaults = Some(items.iter().map(sub).collect::<Result<Vec<_>>>()?);
            }
            "useLongestLength" => {
                let Bson::Boolean(b) = v else {
                    return Err(CommandError::new(
                        ErrorCode::Location34463,
                        format!("useLongestLength must be a bool, found {}", type_name(v)),
                    ));
                };
                longest = *b;
            }
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location34464,
                    format!("$zip found an unknown argument: {other}"),
                ));
            }
        }
    }
    if inputs.is_empty() {
        return Err(CommandError::new(
            ErrorCode::Location34465,
            "$zip requires at least one input array",
        ));
    }
    let defaults = match defaults {
        None => Vec::new(),
        Some(_) if !longest => {
            return Err(CommandError::new(
                ErrorCode::Location34466,
                "cannot specify defaults unless useLongestLength is true",
            ));
        }
        Some(d) if d.len() != inputs.len() => {
            return Err(CommandError::new(
                ErrorCode::Location34467,
                "defaults and inputs must have the same length",
            ));
        }
        Some(d) => d,
    };
    Ok(ArrayExpr::Zip {
        inputs,
        longest,
        defaults,
    })
}

fn eval_zip(
    inputs: &[Expr],
    longest: bool,
    defaults: &[Expr],
    doc: &Document,
    locals: Locals,
) -> Result<Option<Bson>> {
    // The inputs are held while the output is built: both count.
    let mut budget = Budget::value("$zip");
    let mut arrays = Vec::with_capacity(inputs.len());
    for e in inputs {
        let v = e.eval_in(doc, locals)?;
        match v {
            v if nullish(&v) => return Ok(Some(Bson::Null)),
            Some(Bson::Array(a)) => {
                budget.charge(limits::bson_size(&Bson::Array(Vec::new())))?;
                for x in &a {
                    budget.charge(8 + limits::bson_size(x))?;
                }
                arrays.push(a);
            }
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location34468,
                    format!(
                        "$zip found a non-array expression in input: {}",
                        shown(&other)
                    ),
                ));
            }
        }
    }
    let min = arrays.iter().map(Vec::len).min().unwrap_or(0);
    let max = arrays.iter().map(Vec::len).max().unwrap_or(0);
    let mut fill = vec![Bson::Null; arrays.len()];
    if min != max {
        for (slot, e) in fill.iter_mut().zip(defaults) {
            let v = e.eval_in(doc, locals)?.unwrap_or(Bson::Null);
            budget.charge(limits::bson_size(&v))?;
            *slot = v;
        }
    }
    let rows = if longest { max } else { min };
    // Each cell is at least a type byte and a key; refuse before building
    // when even that cannot fit.
    budget.reserve(rows.saturating_mul(8 + arrays.len().saturating_mul(3)))?;
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut cells = Vec::with_capacity(arrays.len());
        for (col, a) in arrays.iter().enumerate() {
            let v = a.get(row).unwrap_or(&fill[col]).clone();
            budget.charge(8 + limits::bson_size(&v))?;
            cells.push(v);
        }
        budget.charge(8)?;
        out.push(Bson::Array(cells));
    }
    Ok(Some(Bson::Array(out)))
}

fn parse_sort_array(arg: &Bson, scope: Scope) -> Result<ArrayExpr> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::new(
            ErrorCode::Location2942500,
            format!(
                "$sortArray requires an object as an argument, found: {}",
                type_name(arg)
            ),
        ));
    };
    if let Some(k) = d.keys().find(|k| !matches!(k.as_str(), "input" | "sortBy")) {
        return Err(CommandError::new(
            ErrorCode::Location2942501,
            format!("$sortArray found an unknown argument: {k}"),
        ));
    }
    let input = d.get("input").ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location2942502,
            "$sortArray requires 'input' to be specified",
        )
    })?;
    let by = match d.get("sortBy") {
        None => {
            return Err(CommandError::new(
                ErrorCode::Location2942503,
                "$sortArray requires 'sortBy' to be specified",
            ));
        }
        Some(Bson::Document(spec)) => SortBy::Pattern(SortSpec::parse(spec)?),
        Some(v) => match crate::query::compare::as_f64(v) {
            Some(1.0) => SortBy::Whole { ascending: true },
            Some(-1.0) => SortBy::Whole { ascending: false },
            _ => {
                return Err(CommandError::new(
                    ErrorCode::Location2942506,
                    "The $sort element value must be either 1 or -1",
                ));
            }
        },
    };
    Ok(ArrayExpr::SortArray {
        input: Expr::parse_in(input, scope.nested())?,
        by,
    })
}

/// Sorts as `$sort` would: whole values, or by the pattern's paths with a
/// value that is not a document read as `{"": value}` (its paths missing).
fn sort_values(items: &mut Vec<Bson>, by: &SortBy) {
    match by {
        SortBy::Whole { ascending } => items.sort_by(|a, b| {
            let o = compare(a, b);
            if *ascending { o } else { o.reverse() }
        }),
        SortBy::Pattern(spec) => {
            let mut keyed: Vec<(Vec<Bson>, Bson)> = std::mem::take(items)
                .into_iter()
                .map(|v| {
                    let key = match &v {
                        Bson::Document(d) => spec.key(d),
                        other => spec.key(&doc! {"": other.clone()}),
                    };
                    (key, v)
                })
                .collect();
            keyed.sort_by(|a, b| spec.compare_keys(&a.0, &b.0));
            *items = keyed.into_iter().map(|(_, v)| v).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use bson::bson;

    #[test]
    fn nesting_is_bounded() {
        crate::limits::with_worker_stack(nesting_is_bounded_inner);
    }

    fn nesting_is_bounded_inner() {
        // Each operator parses its arguments one level down, so a deep
        // chain is refused (15), never a stack overflow.
        let wrap: [fn(Bson) -> Bson; 4] = [
            |e| bson!({"$reverseArray": [e]}),
            |e| bson!({"$zip": {"inputs": [e]}}),
            |e| bson!({"$sortArray": {"input": e, "sortBy": 1}}),
            |e| bson!({"$setUnion": [e, []]}),
        ];
        for w in wrap {
            let mut e = bson!([1]);
            for _ in 0..100 {
                e = w(e);
            }
            assert!(Expr::parse(&e).is_ok());
            for _ in 0..150 {
                e = w(e);
            }
            assert_eq!(Expr::parse(&e).unwrap_err().code, ErrorCode::Overflow);
        }
    }

    #[test]
    fn slice() {
        let d = doc! {"a": [1, 2, 3]};
        check(
            &d,
            vec![
                (bson!({"$slice": ["$a", 1, 1]}), bson!([2])),
                (bson!({"$slice": ["$a", 2]}), bson!([1, 2])),
                (bson!({"$slice": ["$a", -2]}), bson!([2, 3])),
                (bson!({"$slice": ["$a", 15, 2]}), bson!([])),
                (bson!({"$slice": ["$a", -15, 2]}), bson!([1, 2])),
                (bson!({"$slice": ["$a", -1, 5]}), bson!([3])),
                (bson!({"$slice": ["$a", 0]}), bson!([])),
                (bson!({"$slice": ["$a", 2.0, 1i64]}), bson!([3])),
                (bson!({"$slice": ["$a", i32::MIN]}), bson!([1, 2, 3])),
                (bson!({"$slice": ["$a", i32::MAX]}), bson!([1, 2, 3])),
                (
                    bson!({"$slice": ["$a", i32::MIN, i32::MAX]}),
                    bson!([1, 2, 3]),
                ),
                (bson!({"$slice": ["$a", i32::MAX, i32::MAX]}), bson!([])),
                (bson!({"$slice": [null, 1]}), Bson::Null),
                (bson!({"$slice": ["$a", "$nope"]}), Bson::Null),
                (bson!({"$slice": ["$a", 1, null]}), Bson::Null),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$slice": ["$a"]}), ErrorCode::Location28667),
                (bson!({"$slice": ["$a", 1, 2, 3]}), ErrorCode::Location28667),
                (bson!({"$slice": ["x", 1]}), ErrorCode::Location28724),
                (bson!({"$slice": ["$a", "1"]}), ErrorCode::Location28725),
                (
                    bson!({"$slice": ["$a", i64::MAX]}),
                    ErrorCode::Location28726,
                ),
                (
                    bson!({"$slice": ["$a", i64::MIN]}),
                    ErrorCode::Location28726,
                ),
                (bson!({"$slice": ["$a", 1.5]}), ErrorCode::Location28726),
                (
                    bson!({"$slice": ["$a", f64::NAN]}),
                    ErrorCode::Location28726,
                ),
                (bson!({"$slice": ["$a", 0, "1"]}), ErrorCode::Location28727),
                (
                    bson!({"$slice": ["$a", 0, i64::MAX]}),
                    ErrorCode::Location28728,
                ),
                (bson!({"$slice": ["$a", 0, 0]}), ErrorCode::Location28729),
                (bson!({"$slice": ["$a", 0, -1]}), ErrorCode::Location28729),
            ],
        );
        let e = run(bson!({"$slice": ["$a", i64::MAX]}), d).unwrap_err();
        assert_eq!(
            e.message,
            "Second argument to $slice can't be represented as a 32-bit integer: 9.22337e+18"
        );
    }

    #[test]
    fn reverse_and_index_of_array() {
        let d = doc! {"a": [1, 2, 3], "s": ["a", "abc", "a"]};
        check(
            &d,
            vec![
                (bson!({"$reverseArray": "$a"}), bson!([3, 2, 1])),
                (bson!({"$reverseArray": [[1, [2, 3]]]}), bson!([[2, 3], 1])),
                (bson!({"$reverseArray": [[]]}), bson!([])),
                (bson!({"$reverseArray": "$nope"}), Bson::Null),
                (bson!({"$indexOfArray": ["$s", "a"]}), bson!(0)),
                (bson!({"$indexOfArray": ["$s", "a", 1]}), bson!(2)),
                (bson!({"$indexOfArray": ["$s", "abc", 0, 1]}), bson!(-1)),
                (bson!({"$indexOfArray": ["$a", 2.0]}), bson!(1)),
                (bson!({"$indexOfArray": ["$a", 2i64, 0, 100]}), bson!(1)),
                (bson!({"$indexOfArray": ["$a", 3, 5]}), bson!(-1)),
                (bson!({"$indexOfArray": ["$a", 3, 2, 1]}), bson!(-1)),
                (bson!({"$indexOfArray": [[null], null]}), bson!(0)),
                (bson!({"$indexOfArray": [[null], "$nope"]}), bson!(-1)),
                (bson!({"$indexOfArray": [null, 1]}), Bson::Null),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$reverseArray": [1, 2]}), ErrorCode::Location16020),
                (bson!({"$reverseArray": "x"}), ErrorCode::Location34435),
                (bson!({"$indexOfArray": ["$a"]}), ErrorCode::Location28667),
                (bson!({"$indexOfArray": ["x", 1]}), ErrorCode::Location40090),
                (
                    bson!({"$indexOfArray": ["$a", 1, -1]}),
                    ErrorCode::Location40097,
                ),
                (
                    bson!({"$indexOfArray": ["$a", 1, 0, -1]}),
                    ErrorCode::Location40097,
                ),
                (
                    bson!({"$indexOfArray": ["$a", 1, 1.5]}),
                    ErrorCode::Location40096,
                ),
                (
                    bson!({"$indexOfArray": ["$a", 1, i64::MAX]}),
                    ErrorCode::Location40096,
                ),
            ],
        );
    }

    #[test]
    fn zip() {
        let d = doc! {"a": [1, 2], "b": [3]};
        check(
            &d,
            vec![
                (bson!({"$zip": {"inputs": ["$a", "$b"]}}), bson!([[1, 3]])),
                (
                    bson!({"$zip": {"inputs": ["$a", "$b"], "useLongestLength": true}}),
                    bson!([[1, 3], [2, null]]),
                ),
                (
                    bson!({"$zip": {"inputs": ["$a", "$b"], "useLongestLength": true, "defaults": [0, {"$add": [4, 5]}]}}),
                    bson!([[1, 3], [2, 9]]),
                ),
                (bson!({"$zip": {"inputs": ["$a", []]}}), bson!([])),
                (
                    bson!({"$zip": {"inputs": [[[1], [2]]]}}),
                    bson!([[[1]], [[2]]]),
                ),
                (bson!({"$zip": {"inputs": ["$a", "$nope"]}}), Bson::Null),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$zip": []}), ErrorCode::Location34460),
                (bson!({"$zip": {"inputs": "$a"}}), ErrorCode::Location34461),
                (
                    bson!({"$zip": {"inputs": ["$a"], "useLongestLength": true, "defaults": "x"}}),
                    ErrorCode::Location34462,
                ),
                (
                    bson!({"$zip": {"inputs": ["$a"], "useLongestLength": 1}}),
                    ErrorCode::Location34463,
                ),
                (
                    bson!({"$zip": {"inputs": ["$a"], "x": 1}}),
                    ErrorCode::Location34464,
                ),
                (bson!({"$zip": {}}), ErrorCode::Location34465),
                (bson!({"$zip": {"inputs": []}}), ErrorCode::Location34465),
                (
                    bson!({"$zip": {"inputs": ["$a"], "defaults": [1]}}),
                    ErrorCode::Location34466,
                ),
                (
                    bson!({"$zip": {"inputs": ["$a"], "useLongestLength": true, "defaults": [1, 2]}}),
                    ErrorCode::Location34467,
                ),
                (
                    bson!({"$zip": {"inputs": ["$a", 1]}}),
                    ErrorCode::Location34468,
                ),
            ],
        );
        // 1,000 arrays of 100,000 elements: refused by the built-value
        // limit, not built.
        let inputs: Vec<Bson> = (0..1000).map(|_| bson!({"$range": [0, 100_000]})).collect();
        check_err(
            &doc! {},
            vec![(
                bson!({"$zip": {"inputs": inputs, "useLongestLength": true}}),
                ErrorCode::ExceededMemoryLimit,
            )],
        );
        // Many short inputs and one long one with defaults: the output,
        // not the inputs, is what grows.
        let big = doc! {"long": (0..200_000).map(Bson::Int32).collect::<Vec<_>>()};
        let mut inputs: Vec<Bson> = vec![bson!("$long")];
        inputs.extend((0..200).map(|_| bson!([])));
        let defaults: Vec<Bson> = (0..201).map(|_| bson!("d")).collect();
        check_err(
            &big,
            vec![(
                bson!({"$zip": {"inputs": inputs, "useLongestLength": true, "defaults": defaults}}),
                ErrorCode::ExceededMemoryLimit,
            )],
        );
    }

    #[test]
    fn sort_array() {
        let d = doc! {
            "n": [3, 1.5, 2i64, 1, "a", null],
            "team": [
                {"name": "pat", "age": 30, "address": {"city": "b"}},
                {"name": "dallas", "age": 36, "address": {"city": "a"}},
                {"name": "charlie", "age": 42, "address": {"city": "c"}},
            ],
        };
        check(
            &d,
            vec![
                (
                    bson!({"$sortArray": {"input": "$n", "sortBy": 1}}),
                    bson!([null, 1, 1.5, 2i64, 3, "a"]),
                ),
                (
                    bson!({"$sortArray": {"input": "$n", "sortBy": -1}}),
                    bson!(["a", 3, 2i64, 1.5, 1, null]),
                ),
                (
                    bson!({"$sortArray": {"input": "$team", "sortBy": {"name": 1}}}),
                    bson!([
                        {"name": "charlie", "age": 42, "address": {"city": "c"}},
                        {"name": "dallas", "age": 36, "address": {"city": "a"}},
                        {"name": "pat", "age": 30, "address": {"city": "b"}},
                    ]),
                ),
                (
                    bson!({"$sortArray": {"input": "$team", "sortBy": {"address.city": -1}}}),
                    bson!([
                        {"name": "charlie", "age": 42, "address": {"city": "c"}},
                        {"name": "pat", "age": 30, "address": {"city": "b"}},
                        {"name": "dallas", "age": 36, "address": {"city": "a"}},
                    ]),
                ),
                // Values that are not documents have no sort fields (null).
                (
                    bson!({"$sortArray": {"input": [{"a": 2}, 5, {"a": 1}], "sortBy": {"a": 1}}}),
                    bson!([5, {"a": 1}, {"a": 2}]),
                ),
                (bson!({"$sortArray": {"input": [], "sortBy": 1}}), bson!([])),
                (
                    bson!({"$sortArray": {"input": "$nope", "sortBy": 1}}),
                    Bson::Null,
                ),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$sortArray": [1]}), ErrorCode::Location2942500),
                (
                    bson!({"$sortArray": {"input": [], "sortBy": 1, "x": 1}}),
                    ErrorCode::Location2942501,
                ),
                (
                    bson!({"$sortArray": {"sortBy": 1}}),
                    ErrorCode::Location2942502,
                ),
                (
                    bson!({"$sortArray": {"input": []}}),
                    ErrorCode::Location2942503,
                ),
                (
                    bson!({"$sortArray": {"input": 1, "sortBy": 1}}),
                    ErrorCode::Location2942504,
                ),
                (
                    bson!({"$sortArray": {"input": [], "sortBy": 2}}),
                    ErrorCode::Location2942506,
                ),
                (
                    bson!({"$sortArray": {"input": [], "sortBy": "a"}}),
                    ErrorCode::Location2942506,
                ),
                (
                    bson!({"$sortArray": {"input": [], "sortBy": {"a": 2}}}),
                    ErrorCode::BadValue,
                ),
            ],
        );
    }

    #[test]
    fn objects_and_arrays() {
        let d = doc! {"o": {"a": 1, "b": {"c": 2}}};
        check(
            &d,
            vec![
                (
                    bson!({"$objectToArray": "$o"}),
                    bson!([{"k": "a", "v": 1}, {"k": "b", "v": {"c": 2}}]),
                ),
                (bson!({"$objectToArray": {}}), bson!([])),
                (bson!({"$objectToArray": "$nope"}), Bson::Null),
                (
                    bson!({"$arrayToObject": [[["a", 1], ["b", 2]]]}),
                    bson!({"a": 1, "b": 2}),
                ),
                (
                    bson!({"$arrayToObject": [[{"k": "a", "v": 1}, {"v": 2, "k": "b"}]]}),
                    bson!({"a": 1, "b": 2}),
                ),
                // A repeated key keeps its place and takes the last value.
                (
                    bson!({"$arrayToObject": [[["a", 1], ["b", 2], ["a", 3]]]}),
                    bson!({"a": 3, "b": 2}),
                ),
                (bson!({"$arrayToObject": [[]]}), bson!({})),
                (bson!({"$arrayToObject": null}), Bson::Null),
                (
                    bson!({"$arrayToObject": {"$objectToArray": "$o"}}),
                    bson!({"a": 1, "b": {"c": 2}}),
                ),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$objectToArray": 1}), ErrorCode::Location40390),
                (bson!({"$objectToArray": [[]]}), ErrorCode::Location40390),
                (bson!({"$arrayToObject": "x"}), ErrorCode::Location40386),
                (bson!({"$arrayToObject": [[1]]}), ErrorCode::Location40398),
                (
                    bson!({"$arrayToObject": [[["a", 1], {"k": "b", "v": 1}]]}),
                    ErrorCode::Location40396,
                ),
                (
                    bson!({"$arrayToObject": [[["a", 1, 2]]]}),
                    ErrorCode::Location40397,
                ),
                (
                    bson!({"$arrayToObject": [[[1, 1]]]}),
                    ErrorCode::Location40395,
                ),
                (
                    bson!({"$arrayToObject": [[["a\u{0}", 1]]]}),
                    ErrorCode::Location4940400,
                ),
                (
                    bson!({"$arrayToObject": [[{"k": "a", "v": 1}, ["b", 1]]]}),
                    ErrorCode::Location40391,
                ),
                (
                    bson!({"$arrayToObject": [[{"k": "a"}]]}),
                    ErrorCode::Location40392,
                ),
                (
                    bson!({"$arrayToObject": [[{"k": "a", "x": 1}]]}),
                    ErrorCode::Location40393,
                ),
                (
                    bson!({"$arrayToObject": [[{"k": 1, "v": 1}]]}),
                    ErrorCode::Location40394,
                ),
                (
                    bson!({"$arrayToObject": [[{"k": "\u{0}", "v": 1}]]}),
                    ErrorCode::Location4940401,
                ),
            ],
        );
        // Many small fields make a larger array: held to the limit.
        let mut wide = Document::new();
        for i in 0..600_000 {
            wide.insert(format!("f{i}"), 1);
        }
        check_err(
            &doc! {"w": wide},
            vec![(
                bson!({"$objectToArray": "$w"}),
                ErrorCode::ExceededMemoryLimit,
            )],
        );
    }

    #[test]
    fn element_truth() {
        check(
            &doc! {},
            vec![
                (
                    bson!({"$allElementsTrue": [[true, 1, "x", [false]]]}),
                    bson!(true),
                ),
                (bson!({"$allElementsTrue": [[true, 0]]}), bson!(false)),
                (bson!({"$allElementsTrue": [[null]]}), bson!(false)),
                (bson!({"$allElementsTrue": [[]]}), bson!(true)),
                (
                    bson!({"$anyElementTrue": [[false, 0, null, 2]]}),
                    bson!(true),
                ),
                (bson!({"$anyElementTrue": [[]]}), bson!(false)),
            ],
        );
        check_err(
            &doc! {},
            vec![
                (bson!({"$allElementsTrue": null}), ErrorCode::Location17040),
                (
                    bson!({"$anyElementTrue": "$nope"}),
                    ErrorCode::Location17040,
                ),
                (
                    bson!({"$anyElementTrue": [[1], [2]]}),
                    ErrorCode::Location16020,
                ),
            ],
        );
    }

    #[test]
    fn sets() {
        let d = doc! {"a": [1, 2, 2, 3], "b": [2.0, 1i64, 4]};
        check(
            &d,
            vec![
                (bson!({"$setUnion": ["$a", "$b"]}), bson!([1, 2, 3, 4])),
                (bson!({"$setUnion": [[3, 1.0, 1, 1i64]]}), bson!([1.0, 3])),
                (bson!({"$setUnion": []}), bson!([])),
                (bson!({"$setUnion": ["$a", null]}), Bson::Null),
                (bson!({"$setIntersection": ["$a", "$b"]}), bson!([1, 2])),
                (bson!({"$setIntersection": ["$a", []]}), bson!([])),
                (bson!({"$setIntersection": []}), bson!([])),
                (bson!({"$setIntersection": ["$a", "$nope"]}), Bson::Null),
                (bson!({"$setDifference": ["$a", "$b"]}), bson!([3])),
                (
                    bson!({"$setDifference": [["b", "a", "b"], []]}),
                    bson!(["b", "a"]),
                ),
                (bson!({"$setDifference": [null, []]}), Bson::Null),
                (
                    bson!({"$setEquals": ["$a", [3, 2.0, 1i64, 1]]}),
                    bson!(true),
                ),
                (bson!({"$setEquals": ["$a", "$b"]}), bson!(false)),
                (bson!({"$setEquals": [[1], [1], [1, 2]]}), bson!(false)),
                (bson!({"$setIsSubset": [[1, 1.0], "$b"]}), bson!(true)),
                (bson!({"$setIsSubset": ["$a", "$b"]}), bson!(false)),
                (bson!({"$setIsSubset": [[], []]}), bson!(true)),
                (
                    bson!({"$setIsSubset": [[f64::NAN], [f64::NAN]]}),
                    bson!(true),
                ),
                // Arrays and documents as elements.
                (
                    bson!({"$setUnion": [[[1, 2], {"a": 1}], [[1, 2.0], {"a": 1i64}]]}),
                    bson!([{"a": 1}, [1, 2]]),
                ),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$setUnion": ["$a", 1]}), ErrorCode::Location17043),
                (
                    bson!({"$setIntersection": ["$a", "x"]}),
                    ErrorCode::Location17047,
                ),
                (
                    bson!({"$setDifference": [1, "$a"]}),
                    ErrorCode::Location17048,
                ),
                (
                    bson!({"$setDifference": ["$a", 1]}),
                    ErrorCode::Location17049,
                ),
                (bson!({"$setDifference": ["$a"]}), ErrorCode::Location16020),
                (bson!({"$setEquals": ["$a"]}), ErrorCode::Location17045),
                (
                    bson!({"$setEquals": ["$a", null]}),
                    ErrorCode::Location17044,
                ),
                (
                    bson!({"$setIsSubset": [null, "$a"]}),
                    ErrorCode::Location17046,
                ),
                (
                    bson!({"$setIsSubset": ["$a", null]}),
                    ErrorCode::Location17042,
                ),
            ],
        );
        // NaN is one element, equal to itself (and below every number).
        let union = run(bson!({"$setUnion": [[1, f64::NAN, 1, f64::NAN]]}), doc! {}).unwrap();
        match union {
            Some(Bson::Array(a)) => {
                assert_eq!(a.len(), 2, "{a:?}");
                assert!(matches!(a[0], Bson::Double(x) if x.is_nan()), "{a:?}");
                assert_eq!(a[1], Bson::Int32(1));
            }
            other => panic!("{other:?}"),
        }
        let e = run(bson!({"$setEquals": ["$a", null]}), d).unwrap_err();
        assert_eq!(
            e.message,
            "All operands of $setEquals must be arrays. 2-th argument is of type: null"
        );
        // Huge inputs: the union is held to the built-value limit.
        let big = doc! {"s": (0..100_000).map(|i| Bson::String(format!("{i:0>100}"))).collect::<Vec<_>>()};
        check_err(
            &big,
            vec![(
                bson!({"$setUnion": ["$s", "$s"]}),
                ErrorCode::ExceededMemoryLimit,
            )],
        );
    }
}
