//! String operators: `$trim` family, `$indexOf*`, `$substr*`, `$strLenBytes`, `$strcasecmp`, `$toUpper`/`$toLower`, `$replaceOne`/`$replaceAll`, `$regexFind`/`$regexFindAll`/`$regexMatch`.
//!
//! Byte offsets (`$indexOfBytes`, `$substrBytes`) are mongod's: a range
//! that would split a UTF-8 character is an error (28656/28657) or finds
//! nothing, so every string built here stays valid UTF-8. Regular
//! expressions are compiled by the filter's builder
//! ([`crate::query::filter::compile_regex`]), so one rule bounds a pattern
//! wherever it comes from; `idx` in a match counts code points, as mongod's.

use std::collections::HashSet;

use bson::{Bson, Document, doc};
use regex::Regex;

use super::args::{as_int32, between, exactly, nullish, positional, shown};
use super::{Expr, Locals, Scope, type_name};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::{self, Budget};

/// A parsed operator of this family.
#[derive(Debug, Clone)]
pub enum StringExpr {
    /// `$trim`, `$ltrim`, `$rtrim`.
    Trim {
        name: &'static str,
        left: bool,
        right: bool,
        input: Expr,
        chars: Option<Expr>,
    },
    /// The operators whose arguments are positional.
    Positional { op: StrOp, args: Vec<Expr> },
    /// `$replaceOne` / `$replaceAll`.
    Replace {
        all: bool,
        input: Expr,
        find: Expr,
        replacement: Expr,
    },
    /// `$regexFind`, `$regexFindAll`, `$regexMatch`.
    Regex {
        op: RegexOp,
        input: Expr,
        regex: Expr,
        options: Option<Expr>,
        /// Compiled once when `regex` and `options` are constants (as
        /// mongod does, so a bad constant pattern fails at parse time);
        /// the inner `None` is a null pattern.
        constant: Option<Option<Regex>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    IndexOfBytes,
    IndexOfCP,
    SubstrBytes,
    SubstrCP,
    StrLenBytes,
    Strcasecmp,
    ToUpper,
    ToLower,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegexOp {
    Find,
    FindAll,
    Match,
}

impl RegexOp {
    fn name(self) -> &'static str {
        match self {
            RegexOp::Find => "$regexFind",
            RegexOp::FindAll => "$regexFindAll",
            RegexOp::Match => "$regexMatch",
        }
    }
}

/// What `$trim` removes without `chars` (mongod's list: the ASCII
/// whitespace and NUL, no-break space, ogham space mark, U+2000..U+200A).
fn default_trim_char(c: char) -> bool {
    matches!(
        c,
        '\0' | ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{A0}' | '\u{1680}'
    ) || ('\u{2000}'..='\u{200A}').contains(&c)
}

impl StringExpr {
    /// Parses `{name: arg}`; `None` when `name` is not of this family.
    pub(super) fn parse(name: &str, arg: &Bson, scope: Scope) -> Result<Option<StringExpr>> {
        let op = match name {
            "$trim" => return parse_trim("$trim", true, true, arg, scope).map(Some),
            "$ltrim" => return parse_trim("$ltrim", true, false, arg, scope).map(Some),
            "$rtrim" => return parse_trim("$rtrim", false, true, arg, scope).map(Some),
            "$replaceOne" => return parse_replace("$replaceOne", false, arg, scope).map(Some),
            "$replaceAll" => return parse_replace("$replaceAll", true, arg, scope).map(Some),
            "$regexFind" => return parse_regex(RegexOp::Find, arg, scope).map(Some),
            "$regexFindAll" => return parse_regex(RegexOp::FindAll, arg, scope).map(Some),
            "$regexMatch" => return parse_regex(RegexOp::Match, arg, scope).map(Some),
            "$indexOfBytes" => StrOp::IndexOfBytes,
            "$indexOfCP" => StrOp::IndexOfCP,
            "$substr" | "$substrBytes" => StrOp::SubstrBytes,
            "$substrCP" => StrOp::SubstrCP,
            "$strLenBytes" => StrOp::StrLenBytes,
            "$strcasecmp" => StrOp::Strcasecmp,
            "$toUpper" => StrOp::ToUpper,
            "$toLower" => StrOp::ToLower,
            _ => return Ok(None),
        };
        let args = positional(arg, scope)?;
        let args = match op {
            StrOp::IndexOfBytes | StrOp::IndexOfCP => between(name, args, 2, 4)?,
            // `$substr` is `$substrBytes`, and mongod names it so.
            StrOp::SubstrBytes => exactly("$substrBytes", args, 3)?,
            StrOp::SubstrCP => exactly(name, args, 3)?,
            StrOp::StrLenBytes | StrOp::ToUpper | StrOp::ToLower => exactly(name, args, 1)?,
            StrOp::Strcasecmp => exactly(name, args, 2)?,
        };
        Ok(Some(StringExpr::Positional { op, args }))
    }

    pub(super) fn eval(&self, doc: &Document, locals: Locals) -> Result<Option<Bson>> {
        match self {
            StringExpr::Trim {
                name,
                left,
                right,
                input,
                chars,
            } => eval_trim(name, *left, *right, input, chars.as_ref(), doc, locals),
            StringExpr::Positional { op, args } => {
                let arg = |i: usize| -> Result<Option<Bson>> {
                    match args.get(i) {
                        Some(e) => e.eval_in(doc, locals),
                        None => Ok(None),
                    }
                };
                match op {
                    StrOp::IndexOfBytes => index_of_bytes(args.len(), arg),
                    StrOp::IndexOfCP => index_of_cp(args.len(), arg),
                    StrOp::SubstrBytes => substr_bytes(arg(0)?, arg(1)?, arg(2)?),
                    StrOp::SubstrCP => substr_cp(arg(0)?, arg(1)?, arg(2)?),
                    StrOp::StrLenBytes => match arg(0)? {
                        Some(Bson::String(s)) => {
                            Ok(Some(Bson::Int32(i32::try_from(s.len()).map_err(|_| {
                                CommandError::new(
                                    ErrorCode::Location34470,
                                    "string length could not be represented as an int.",
                                )
                            })?)))
                        }
                        other => Err(CommandError::new(
                            ErrorCode::Location34473,
                            format!(
                                "$strLenBytes requires a string argument, found: {}",
                                type_of(&other)
                            ),
                        )),
                    },
                    StrOp::ToUpper | StrOp::ToLower => {
                        // ASCII only, as mongod's (`é` stays `é`); a
                        // number or date is folded as its string form.
                        let mut s = coerce_to_string(&arg(0)?)?;
                        if *op == StrOp::ToUpper {
                            s.make_ascii_uppercase();
                        } else {
                            s.make_ascii_lowercase();
                        }
                        let name = if *op == StrOp::ToUpper {
                            "$toUpper"
                        } else {
                            "$toLower"
                        };
                        Budget::value(name).charge(s.len())?;
                        Ok(Some(Bson::String(s)))
                    }
                    StrOp::Strcasecmp => {
                        // ASCII case folding only, as mongod's.
                        let a = coerce_to_string(&arg(0)?)?.to_ascii_uppercase();
                        let b = coerce_to_string(&arg(1)?)?.to_ascii_uppercase();
                        Ok(Some(Bson::Int32(a.as_bytes().cmp(b.as_bytes()) as i32)))
                    }
                }
            }
            StringExpr::Replace {
                all,
                input,
                find,
                replacement,
            } => eval_replace(*all, input, find, replacement, doc, locals),
            StringExpr::Regex {
                op,
                input,
                regex,
                options,
                constant,
            } => {
                let input = input.eval_in(doc, locals)?;
                let pattern = regex.eval_in(doc, locals)?;
                let options = match options {
                    Some(o) => o.eval_in(doc, locals)?,
                    None => None,
                };
                let re = match constant {
                    Some(re) => re.clone(),
                    None => compile(op.name(), &pattern, &options)?,
                };
                let input = match input {
                    Some(Bson::String(s)) => Some(s),
                    v if nullish(&v) => None,
                    _ => {
                        return Err(CommandError::new(
                            ErrorCode::Location51104,
                            format!("{} needs 'input' to be of type string", op.name()),
                        ));
                    }
                };
                let (Some(input), Some(re)) = (input, re) else {
                    return Ok(Some(match op {
                        RegexOp::Find => Bson::Null,
                        RegexOp::FindAll => Bson::Array(Vec::new()),
                        RegexOp::Match => Bson::Boolean(false),
                    }));
                };
                Ok(Some(match op {
                    RegexOp::Match => Bson::Boolean(re.is_match(&input)),
                    RegexOp::Find => match next_match(&re, &input, 0, 0) {
                        Some((found, _)) => found,
                        None => Bson::Null,
                    },
                    RegexOp::FindAll => find_all(&re, &input)?,
                }))
            }
        }
    }

    pub(super) fn is_constant(&self) -> bool {
        match self {
            StringExpr::Trim { input, chars, .. } => {
                input.is_constant() && chars.as_ref().is_none_or(Expr::is_constant)
            }
            StringExpr::Positional { args, .. } => args.iter().all(Expr::is_constant),
            StringExpr::Replace {
                input,
                find,
                replacement,
                ..
            } => input.is_constant() && find.is_constant() && replacement.is_constant(),
            StringExpr::Regex {
                input,
                regex,
                options,
                ..
            } => {
                input.is_constant()
                    && regex.is_constant()
                    && options.as_ref().is_none_or(Expr::is_constant)
            }
        }
    }
}

/// The type name mongod reports, "missing" included.
fn type_of(v: &Option<Bson>) -> &'static str {
    v.as_ref().map_or("missing", type_name)
}

/// An object argument's fields, each checked against `allowed` (the first
/// unknown one is `unknown`'s error, before any missing one, as mongod).
fn named_args<'a>(
    arg: &'a Bson,
    allowed: &[&str],
    not_object: impl FnOnce(&Bson) -> CommandError,
    unknown: impl Fn(&str) -> CommandError,
) -> Result<&'a Document> {
    let Bson::Document(d) = arg else {
        return Err(not_object(arg));
    };
    if let Some(k) = d.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(unknown(k));
    }
    Ok(d)
}

fn parse_trim(
    name: &'static str,
    left: bool,
    right: bool,
    arg: &Bson,
    scope: Scope,
) -> Result<StringExpr> {
    let d = named_args(
        arg,
        &["input", "chars"],
        |a| {
            CommandError::new(
                ErrorCode::Location50696,
                format!(
                    "{name} only supports an object as an argument, found {}",
                    type_name(a)
                ),
            )
        },
        |k| {
            CommandError::new(
                ErrorCode::Location50694,
                format!("{name} found an unknown argument: {k}"),
            )
        },
    )?;
    let sub = |v: &Bson| Expr::parse_in(v, scope.nested());
    let input = d.get("input").ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location50695,
            format!("{name} requires an 'input' field"),
        )
    })?;
    Ok(StringExpr::Trim {
        name,
        left,
        right,
        input: sub(input)?,
        chars: d.get("chars").map(sub).transpose()?,
    })
}

fn eval_trim(
    name: &str,
    left: bool,
    right: bool,
    input: &Expr,
    chars: Option<&Expr>,
    doc: &Document,
    locals: Locals,
) -> Result<Option<Bson>> {
    let input = input.eval_in(doc, locals)?;
    let input = match input {
        v if nullish(&v) => return Ok(Some(Bson::Null)),
        Some(Bson::String(s)) => s,
        other => {
            return Err(CommandError::new(
                ErrorCode::Location50699,
                format!(
                    "{name} requires its input to be a string, got {} (of type {}) instead.",
                    shown(&other),
                    type_of(&other)
                ),
            ));
        }
    };
    // A set, so a long `chars` costs one pass over the input, not one per
    // character of `chars`.
    let set: Option<HashSet<char>> = match chars {
        None => None,
        Some(e) => match e.eval_in(doc, locals)? {
            v if nullish(&v) => return Ok(Some(Bson::Null)),
            Some(Bson::String(s)) => Some(s.chars().collect()),
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location50700,
                    format!(
                        "{name} requires 'chars' to be a string, got {} (of type {}) instead.",
                        shown(&other),
                        type_of(&other)
                    ),
                ));
            }
        },
    };
    let trims = |c: char| match &set {
        None => default_trim_char(c),
        Some(set) => set.contains(&c),
    };
    let mut s = input.as_str();
    if left {
        s = s.trim_start_matches(trims);
    }
    if right {
        s = s.trim_end_matches(trims);
    }
    Ok(Some(Bson::String(s.to_owned())))
}

/// Checks a start or end index of `$indexOfBytes`/`$indexOfCP`: an int32,
/// not negative (mongod's message has no space after the name).
fn index_arg(op: &str, what: &str, v: &Option<Bson>) -> Result<usize> {
    let Some(i) = v.as_ref().and_then(as_int32) else {
        return Err(CommandError::new(
            ErrorCode::Location40096,
            format!(
                "{op}requires an integral {what}, found a value of type: {}, with value: {}",
                type_of(v),
                shown(v)
            ),
        ));
    };
    usize::try_from(i).map_err(|_| {
        CommandError::new(
            ErrorCode::Location40097,
            format!("{op} requires a nonnegative {what}, found: {}", shown(v)),
        )
    })
}

/// The string and the token of `$indexOfBytes`/`$indexOfCP`; `None` when the
/// string is nullish (the answer is null).
fn index_operands(
    op: &str,
    (first, second): (ErrorCode, ErrorCode),
    arg: &impl Fn(usize) -> Result<Option<Bson>>,
) -> Result<Option<(String, String)>> {
    let input = match arg(0)? {
        v if nullish(&v) => return Ok(None),
        Some(Bson::String(s)) => s,
        other => {
            return Err(CommandError::new(
                first,
                format!(
                    "{op} requires a string as the first argument, found: {}",
                    type_of(&other)
                ),
            ));
        }
    };
    match arg(1)? {
        Some(Bson::String(token)) => Ok(Some((input, token))),
        other => Err(CommandError::new(
            second,
            format!(
                "{op} requires a string as the second argument, found: {}",
                type_of(&other)
            ),
        )),
    }
}

fn index_of_bytes(
    count: usize,
    arg: impl Fn(usize) -> Result<Option<Bson>>,
) -> Result<Option<Bson>> {
    const OP: &str = "$indexOfBytes";
    let codes = (ErrorCode::Location40091, ErrorCode::Location40092);
    let Some((input, token)) = index_operands(OP, codes, &arg)? else {
        return Ok(Some(Bson::Null));
    };
    let start = if count > 2 {
        index_arg(OP, "starting index", &arg(2)?)?
    } else {
        0
    };
    let end = if count > 3 {
        index_arg(OP, "ending index", &arg(3)?)?.min(input.len())
    } else {
        input.len()
    };
    if start > input.len() || end < start {
        return Ok(Some(Bson::Int32(-1)));
    }
    if token.is_empty() {
        return Ok(Some(Bson::Int32(start as i32)));
    }
    // A token (whole characters) can only match whole characters, so the
    // range may be narrowed to character boundaries without losing a match.
    let from = ceil_boundary(&input, start);
    let to = floor_boundary(&input, end);
    let found = input
        .get(from..to.max(from))
        .and_then(|hay| hay.find(token.as_str()))
        .map_or(-1, |i| (from + i) as i32);
    Ok(Some(Bson::Int32(found)))
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn index_of_cp(count: usize, arg: impl Fn(usize) -> Result<Option<Bson>>) -> Result<Option<Bson>> {
    const OP: &str = "$indexOfCP";
    let codes = (ErrorCode::Location40093, ErrorCode::Location40094);
    let Some((input, token)) = index_operands(OP, codes, &arg)? else {
        return Ok(Some(Bson::Null));
    };
    let start = if count > 2 {
        index_arg(OP, "starting index", &arg(2)?)?
    } else {
        0
    };
    let length = input.chars().count();
    let end = if count > 3 {
        index_arg(OP, "ending index", &arg(3)?)?.min(length)
    } else {
        length
    };
    // mongod: an empty range finds nothing (even "" in "abc" from 3), but ""
    // in "" is at 0.
    if end < start {
        return Ok(Some(Bson::Int32(-1)));
    }
    if input.is_empty() && token.is_empty() && start == 0 {
        return Ok(Some(Bson::Int32(0)));
    }
    if start >= end {
        return Ok(Some(Bson::Int32(-1)));
    }
    let byte_at = |cp: usize| input.char_indices().nth(cp).map_or(input.len(), |(b, _)| b);
    let (from, to) = (byte_at(start), byte_at(end));
    // The match must start before `end`; it may run past it, as mongod's.
    let found = input.get(from..).and_then(|hay| hay.find(token.as_str()));
    Ok(Some(Bson::Int32(match found {
        Some(i) if from + i < to => (start + input[from..from + i].chars().count()) as i32,
        _ => -1,
    })))
}

/// mongod's `Value::coerceToString`: what `$substr*` and `$strcasecmp` read.
fn coerce_to_string(v: &Option<Bson>) -> Result<String> {
    Ok(match v {
        None | Some(Bson::Null) | Some(Bson::Undefined) => String::new(),
        Some(Bson::String(s)) | Some(Bson::Symbol(s)) | Some(Bson::JavaScriptCode(s)) => s.clone(),
        Some(Bson::Int32(i)) => i.to_string(),
        Some(Bson::Int64(i)) => i.to_string(),
        Some(Bson::Double(d)) => super::args::double_string(*d),
        Some(Bson::Decimal128(d)) => d.to_string(),
        Some(Bson::DateTime(d)) => {
            super::convert::format_date(d.timestamp_millis()).map_err(|e| {
                CommandError::new(
                    e.code,
                    format!(
                        "failed while coercing date to string :: caused by :: {}",
                        e.message
                    ),
                )
            })?
        }
        Some(Bson::Timestamp(t)) => timestamp_pretty(t.time, t.increment),
        Some(other) => {
            return Err(CommandError::new(
                ErrorCode::Location16007,
                format!(
                    "can't convert from BSON type {} to String",
                    type_name(other)
                ),
            ));
        }
    })
}

/// A Timestamp as mongod's `Timestamp::toStringPretty` writes it: `ctime`'s
/// month, day and time of its seconds without the weekday and year (the
/// server's zone; UTC here, as in a container), then `:` and the increment:
/// `Nov 14 22:13:20:5`.
fn timestamp_pretty(secs: u32, increment: u32) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = i64::from(secs);
    let (_, month, day) = super::convert::civil_from_days(secs.div_euclid(86_400));
    let in_day = secs.rem_euclid(86_400);
    let month =
        usize::try_from(month - 1).map_or("???", |m| MONTHS.get(m).copied().unwrap_or("???"));
    format!(
        "{month} {day:>2} {:02}:{:02}:{:02}:{increment}",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

/// A number as mongod's `coerceToLong` reads it (a double truncated,
/// saturating at the ends of the range; NaN as 0).
fn coerce_to_long(v: &Bson) -> i64 {
    match v {
        Bson::Int32(i) => i64::from(*i),
        Bson::Int64(i) => *i,
        other => crate::query::compare::as_f64(other).map_or(0, |d| d as i64),
    }
}

fn substr_bytes(
    input: Option<Bson>,
    lower: Option<Bson>,
    length: Option<Bson>,
) -> Result<Option<Bson>> {
    const OP: &str = "$substrBytes";
    let s = coerce_to_string(&input)?;
    let number = |v: &Option<Bson>, code, what: &str| match v {
        Some(n) if crate::query::compare::is_number(n) => Ok(coerce_to_long(n)),
        other => Err(CommandError::new(
            code,
            format!(
                "{OP}:  {what} must be a numeric type (is BSON type {})",
                type_of(other)
            ),
        )),
    };
    let lower = number(&lower, ErrorCode::Location16034, "starting index")?;
    let length = number(&length, ErrorCode::Location16035, "length")?;
    let Ok(lower) = usize::try_from(lower) else {
        return Err(CommandError::new(
            ErrorCode::Location50752,
            format!("{OP}:  starting index must be non-negative (got: {lower})"),
        ));
    };
    // A negative length is the rest of the string.
    let length = usize::try_from(length).unwrap_or(s.len());
    if lower < s.len() && !s.is_char_boundary(lower) {
        return Err(CommandError::new(
            ErrorCode::Location28656,
            format!("{OP}:  Invalid range, starting index is a UTF-8 continuation byte."),
        ));
    }
    let end = lower.saturating_add(length);
    if end < s.len() && !s.is_char_boundary(end) {
        return Err(CommandError::new(
            ErrorCode::Location28657,
            format!("{OP}:  Invalid range, ending index is in the middle of a UTF-8 character."),
        ));
    }
    let out = s.get(lower..end.min(s.len())).unwrap_or_default();
    Ok(Some(Bson::String(out.to_owned())))
}

fn substr_cp(
    input: Option<Bson>,
    lower: Option<Bson>,
    length: Option<Bson>,
) -> Result<Option<Bson>> {
    const OP: &str = "$substrCP";
    let s = coerce_to_string(&input)?;
    let int = |v: &Option<Bson>, not_number, not_int, what: &str| -> Result<i32> {
        match v {
            Some(n) if crate::query::compare::is_number(n) => as_int32(n).ok_or_else(|| {
                CommandError::new(
                    not_int,
                    format!(
                        "{OP}: {what} cannot be represented as a 32-bit integral value: {}",
                        shown(v)
                    ),
                )
            }),
            other => Err(CommandError::new(
                not_number,
                format!(
                    "{OP}: {what} must be a numeric type (is BSON type {})",
                    type_of(other)
                ),
            )),
        }
    };
    let start = int(
        &lower,
        ErrorCode::Location34450,
        ErrorCode::Location34451,
        "starting index",
    )?;
    let length = int(
        &length,
        ErrorCode::Location34452,
        ErrorCode::Location34453,
        "length",
    )?;
    let Ok(length) = usize::try_from(length) else {
        return Err(CommandError::new(
            ErrorCode::Location34454,
            format!("{OP}: length must be a nonnegative integer."),
        ));
    };
    let Ok(start) = usize::try_from(start) else {
        return Err(CommandError::new(
            ErrorCode::Location34455,
            format!("{OP}: the starting index must be nonnegative integer."),
        ));
    };
    Ok(Some(Bson::String(
        s.chars().skip(start).take(length).collect(),
    )))
}

fn parse_replace(name: &'static str, all: bool, arg: &Bson, scope: Scope) -> Result<StringExpr> {
    let d = named_args(
        arg,
        &["input", "find", "replacement"],
        |a| {
            CommandError::new(
                ErrorCode::Location51751,
                format!(
                    "{name} requires an object as an argument, found: {}",
                    type_name(a)
                ),
            )
        },
        |k| {
            CommandError::new(
                ErrorCode::Location51750,
                format!("{name} found an unknown argument: {k}"),
            )
        },
    )?;
    let field = |f: &str, code| -> Result<Expr> {
        match d.get(f) {
            Some(v) => Expr::parse_in(v, scope.nested()),
            None => Err(CommandError::new(
                code,
                format!("{name} requires '{f}' to be specified"),
            )),
        }
    };
    Ok(StringExpr::Replace {
        all,
        input: field("input", ErrorCode::Location51749)?,
        find: field("find", ErrorCode::Location51748)?,
        replacement: field("replacement", ErrorCode::Location51747)?,
    })
}

fn eval_replace(
    all: bool,
    input: &Expr,
    find: &Expr,
    replacement: &Expr,
    doc: &Document,
    locals: Locals,
) -> Result<Option<Bson>> {
    let name = if all { "$replaceAll" } else { "$replaceOne" };
    let input = input.eval_in(doc, locals)?;
    let find = find.eval_in(doc, locals)?;
    let replacement = replacement.eval_in(doc, locals)?;
    // Every argument's type first, then null if any is nullish.
    for (v, what, code) in [
        (&input, "input", ErrorCode::Location51746),
        (&find, "find", ErrorCode::Location51745),
        (&replacement, "replacement", ErrorCode::Location51744),
    ] {
        if !nullish(v) && !matches!(v, Some(Bson::String(_))) {
            return Err(CommandError::new(
                code,
                format!(
                    "{name} requires that '{what}' be a string, found: {}",
                    shown(v)
                ),
            ));
        }
    }
    let (Some(Bson::String(input)), Some(Bson::String(find)), Some(Bson::String(replacement))) =
        (input, find, replacement)
    else {
        return Ok(Some(Bson::Null));
    };
    // The size is known before building, so a huge result is refused
    // before its memory is spent.
    let matches = if all {
        if find.is_empty() {
            input.chars().count() + 1
        } else {
            input.matches(find.as_str()).count()
        }
    } else {
        usize::from(input.contains(find.as_str()))
    };
    let size = input
        .len()
        .saturating_add(matches.saturating_mul(replacement.len()));
    Budget::value(if all { "$replaceAll" } else { "$replaceOne" }).reserve(size)?;
    let out = if all {
        input.replace(find.as_str(), &replacement)
    } else {
        input.replacen(find.as_str(), &replacement, 1)
    };
    Ok(Some(Bson::String(out)))
}

fn parse_regex(op: RegexOp, arg: &Bson, scope: Scope) -> Result<StringExpr> {
    let name = op.name();
    let d = named_args(
        arg,
        &["input", "regex", "options"],
        |a| {
            CommandError::new(
                ErrorCode::Location51103,
                format!(
                    "{name} expects an object of named arguments but found: {}",
                    type_name(a)
                ),
            )
        },
        |k| {
            CommandError::new(
                ErrorCode::Location31024,
                format!("{name} found an unknown argument: {k}"),
            )
        },
    )?;
    let sub = |v: &Bson| Expr::parse_in(v, scope.nested());
    let input = d.get("input").ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location31022,
            format!("{name} requires 'input' parameter"),
        )
    })?;
    let regex = d.get("regex").ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location31023,
            format!("{name} requires 'regex' parameter"),
        )
    })?;
    let input = sub(input)?;
    let regex = sub(regex)?;
    let options = d.get("options").map(sub).transpose()?;
    let constant = if regex.is_constant() && options.as_ref().is_none_or(Expr::is_constant) {
        let empty = Document::new();
        let pattern = regex.eval_in(&empty, Locals::NONE)?;
        let opts = match &options {
            Some(o) => o.eval_in(&empty, Locals::NONE)?,
            None => None,
        };
        Some(compile(name, &pattern, &opts)?)
    } else {
        None
    };
    Ok(StringExpr::Regex {
        op,
        input,
        regex,
        options,
        constant,
    })
}

/// Validates `regex` and `options` as mongod does and compiles them;
/// `None` when the pattern is nullish.
fn compile(name: &str, pattern: &Option<Bson>, options: &Option<Bson>) -> Result<Option<Regex>> {
    let (pattern, mut flags) = match pattern {
        v if nullish(v) => (None, None),
        Some(Bson::String(s)) => (Some(s.clone()), None),
        Some(Bson::RegularExpression(r)) => {
            let own = r.options.as_str();
            if !own.is_empty() && !nullish(options) {
                return Err(CommandError::new(
                    ErrorCode::Location51107,
                    format!(
                        "{name}: found regex option(s) specified in both 'regex' and 'option' fields"
                    ),
                ));
            }
            (
                Some(r.pattern.as_str().to_owned()),
                (!own.is_empty()).then(|| own.to_owned()),
            )
        }
        _ => {
            return Err(CommandError::new(
                ErrorCode::Location51105,
                format!("{name} needs 'regex' to be of type string or regex"),
            ));
        }
    };
    match options {
        v if nullish(v) => {}
        Some(Bson::String(s)) => flags = Some(s.clone()),
        _ => {
            return Err(CommandError::new(
                ErrorCode::Location51106,
                format!("{name} needs 'options' to be of type string"),
            ));
        }
    }
    if pattern.as_ref().is_some_and(|p| p.contains('\0')) {
        return Err(CommandError::new(
            ErrorCode::Location51109,
            format!("{name}: regular expression cannot contain an embedded null byte"),
        ));
    }
    if flags.as_ref().is_some_and(|f| f.contains('\0')) {
        return Err(CommandError::new(
            ErrorCode::Location51110,
            format!("{name}: regular expression options cannot contain an embedded null byte"),
        ));
    }
    let Some(pattern) = pattern else {
        return Ok(None);
    };
    let flags = flags.unwrap_or_default();
    if let Some(bad) = flags
        .chars()
        .find(|c| !matches!(c, 'i' | 'm' | 's' | 'x' | 'u'))
    {
        return Err(CommandError::new(
            ErrorCode::Location51108,
            format!("{name} invalid flag in regex options: {bad}"),
        ));
    }
    // A flag given twice is one flag (the engine refuses repeats).
    let mut unique = String::new();
    for c in flags.chars() {
        if !unique.contains(c) {
            unique.push(c);
        }
    }
    crate::query::filter::compile_regex(&pattern, &unique)
        .map(Some)
        .map_err(|e| {
            CommandError::new(
                ErrorCode::Location51111,
                format!("Invalid Regex in {name}: {}", e.message),
            )
        })
}

/// The first match at or after byte `from` (whose code-point index is
/// `from_cp`) as `{match, idx, captures}`, with the byte range it covers.
fn next_match(
    re: &Regex,
    input: &str,
    from: usize,
    from_cp: usize,
) -> Option<(Bson, (usize, usize))> {
    let caps = re.captures_at(input, from)?;
    let whole = caps.get(0)?;
    let idx = from_cp + input.get(from..whole.start())?.chars().count();
    let captures: Vec<Bson> = caps
        .iter()
        .skip(1)
        .map(|c| c.map_or(Bson::Null, |m| Bson::String(m.as_str().to_owned())))
        .collect();
    let found = doc! {
        "match": whole.as_str(),
        "idx": i32::try_from(idx).unwrap_or(i32::MAX),
        "captures": captures,
    };
    Some((Bson::Document(found), (whole.start(), whole.end())))
}

/// Every match, none overlapping; after an empty match the search moves on
/// one character (as mongod's `$regexFindAll`).
fn find_all(re: &Regex, input: &str) -> Result<Bson> {
    let mut budget = Budget::value("$regexFindAll");
    let mut out = Vec::new();
    let (mut pos, mut cp) = (0, 0);
    loop {
        let Some((found, (start, end))) = next_match(re, input, pos, cp) else {
            break;
        };
        budget.charge(8 + limits::bson_size(&found))?;
        cp += input.get(pos..start).map_or(0, |s| s.chars().count());
        out.push(found);
        if start == end {
            match input.get(start..).and_then(|s| s.chars().next()) {
                Some(c) => {
                    pos = start + c.len_utf8();
                    cp += 1;
                }
                None => break,
            }
        } else {
            cp += input.get(start..end).map_or(0, |s| s.chars().count());
            pos = end;
        }
        if pos >= input.len() {
            break;
        }
    }
    Ok(Bson::Array(out))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use bson::{Regex as BsonRegex, bson};

    fn re(pattern: &str, options: &str) -> Bson {
        Bson::RegularExpression(BsonRegex {
            pattern: pattern.to_owned().try_into().unwrap(),
            options: options.to_owned().try_into().unwrap(),
        })
    }

    #[test]
    fn nesting_is_bounded() {
        crate::limits::with_worker_stack(nesting_is_bounded_inner);
    }

    fn nesting_is_bounded_inner() {
        // Each operator parses its arguments one level down, so a deep
        // chain is refused (15), never a stack overflow.
        let wrap: [fn(Bson) -> Bson; 4] = [
            |e| bson!({"$trim": {"input": e}}),
            |e| bson!({"$regexMatch": {"input": e, "regex": "a"}}),
            |e| bson!({"$replaceAll": {"input": e, "find": "a", "replacement": "b"}}),
            |e| bson!({"$substrBytes": [e, 0, 1]}),
        ];
        for w in wrap {
            let mut e = bson!("a");
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
    fn dates_and_timestamps_coerce_as_mongod_writes_them() {
        let d = doc! {
            "day": bson::DateTime::from_millis(1_577_836_800_000),
            "ms": bson::DateTime::from_millis(1_700_000_000_123),
            "before": bson::DateTime::from_millis(-1),
            "far": bson::DateTime::from_millis(253_402_300_800_000),
            "ts": Bson::Timestamp(bson::Timestamp { time: 1_700_000_000, increment: 5 }),
            "jan": Bson::Timestamp(bson::Timestamp { time: 3_600, increment: 0 }),
        };
        check(
            &d,
            vec![
                // `%Y-%m-%dT%H:%M:%S.%LZ`: milliseconds even when zero.
                (
                    bson!({"$toLower": "$day"}),
                    bson!("2020-01-01t00:00:00.000z"),
                ),
                (
                    bson!({"$toUpper": "$ms"}),
                    bson!("2023-11-14T22:13:20.123Z"),
                ),
                (
                    bson!({"$toUpper": "$before"}),
                    bson!("1969-12-31T23:59:59.999Z"),
                ),
                (
                    bson!({"$substrBytes": ["$day", 0, 10]}),
                    bson!("2020-01-01"),
                ),
                // ctime's month, space-padded day and time, then the increment.
                (bson!({"$toUpper": "$ts"}), bson!("NOV 14 22:13:20:5")),
                (bson!({"$toLower": "$jan"}), bson!("jan  1 01:00:00:0")),
                (
                    bson!({"$strcasecmp": ["$day", "2020-01-01T00:00:00.000Z"]}),
                    bson!(0),
                ),
            ],
        );
        // Year 10000: mongod's date formatting refuses it.
        let (code, message) = code(bson!({"$toUpper": "$far"}), d.clone());
        assert_eq!(code, 18537, "{message}");
        assert!(
            message.starts_with("failed while coercing date to string"),
            "{message}"
        );
    }

    #[test]
    fn trim_family() {
        let d = doc! {"s": "  \n good  bye \t  ", "x": "xxxhelloxx", "n": 5};
        check(
            &d,
            vec![
                (bson!({"$trim": {"input": "$s"}}), bson!("good  bye")),
                (bson!({"$ltrim": {"input": "$s"}}), bson!("good  bye \t  ")),
                (bson!({"$rtrim": {"input": "$s"}}), bson!("  \n good  bye")),
                (
                    bson!({"$ltrim": {"input": "$x", "chars": "x"}}),
                    bson!("helloxx"),
                ),
                (
                    bson!({"$trim": {"input": "$x", "chars": "xo"}}),
                    bson!("hell"),
                ),
                (
                    bson!({"$trim": {"input": "$x", "chars": ""}}),
                    bson!("xxxhelloxx"),
                ),
                (
                    bson!({"$trim": {"input": "ééaé", "chars": "é"}}),
                    bson!("a"),
                ),
                // mongod's whitespace: NUL, no-break space, U+2000..U+200A; not U+3000.
                (
                    bson!({"$trim": {"input": "\u{0}\u{a0}\u{2003}a\u{200a}\u{1680}"}}),
                    bson!("a"),
                ),
                (bson!({"$trim": {"input": "\u{3000}a"}}), bson!("\u{3000}a")),
                (bson!({"$trim": {"input": "$nope"}}), Bson::Null),
                (bson!({"$trim": {"input": "a", "chars": null}}), Bson::Null),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$trim": "x"}), ErrorCode::Location50696),
                (bson!({"$trim": {"k": 1}}), ErrorCode::Location50694),
                (bson!({"$trim": {}}), ErrorCode::Location50695),
                (bson!({"$trim": {"input": "$n"}}), ErrorCode::Location50699),
                (
                    bson!({"$trim": {"input": "a", "chars": 1}}),
                    ErrorCode::Location50700,
                ),
            ],
        );
        let e = run(bson!({"$rtrim": {"input": 5}}), doc! {}).unwrap_err();
        assert_eq!(
            e.message,
            "$rtrim requires its input to be a string, got 5 (of type int) instead."
        );
        // A long `chars` over a long input is one pass.
        let big = doc! {"s": "ab".repeat(1 << 20), "c": "c".repeat(1 << 20) + "ab"};
        check(
            &big,
            vec![(bson!({"$trim": {"input": "$s", "chars": "$c"}}), bson!(""))],
        );
    }

    #[test]
    fn index_of_bytes_and_code_points() {
        let d = doc! {};
        check(
            &d,
            vec![
                (bson!({"$indexOfBytes": ["cafeteria", "e"]}), bson!(3)),
                (bson!({"$indexOfBytes": ["cafétéria", "é"]}), bson!(3)),
                (bson!({"$indexOfBytes": ["cafétéria", "e"]}), bson!(-1)),
                (bson!({"$indexOfBytes": ["cafétéria", "t"]}), bson!(5)),
                (bson!({"$indexOfBytes": ["foo.bar.fi", ".", 5]}), bson!(7)),
                (bson!({"$indexOfBytes": ["vanilla", "ll", 0, 2]}), bson!(-1)),
                (bson!({"$indexOfBytes": ["vanilla", "ll", 12]}), bson!(-1)),
                (bson!({"$indexOfBytes": ["vanilla", "ll", 5, 2]}), bson!(-1)),
                (bson!({"$indexOfBytes": ["vanilla", "nilla", 3]}), bson!(-1)),
                (bson!({"$indexOfBytes": ["vanilla", "", 3]}), bson!(3)),
                (bson!({"$indexOfBytes": ["abc", "", 3]}), bson!(3)),
                (bson!({"$indexOfBytes": ["abc", "c", 1.0, 3i64]}), bson!(2)),
                // Offsets inside a character: no match can start or end there.
                (bson!({"$indexOfBytes": ["éé", "é", 1]}), bson!(2)),
                (bson!({"$indexOfBytes": ["éé", "é", 0, 3]}), bson!(0)),
                (bson!({"$indexOfBytes": ["éé", "é", 1, 3]}), bson!(-1)),
                (bson!({"$indexOfBytes": [null, "foo"]}), Bson::Null),
                (bson!({"$indexOfBytes": ["$nope", "foo"]}), Bson::Null),
                (bson!({"$indexOfCP": ["cafétéria", "é"]}), bson!(3)),
                (bson!({"$indexOfCP": ["cafétéria", "t"]}), bson!(4)),
                (bson!({"$indexOfCP": ["cafétéria", "é", 4]}), bson!(5)),
                (bson!({"$indexOfCP": ["vanilla", "ll", 0, 2]}), bson!(-1)),
                (bson!({"$indexOfCP": ["vanilla", "ll", 0, 5]}), bson!(4)),
                // The match may run past the end; only its start is bounded.
                (bson!({"$indexOfCP": ["vanilla", "lla", 4, 5]}), bson!(4)),
                (bson!({"$indexOfCP": ["abc", "", 3]}), bson!(-1)),
                (bson!({"$indexOfCP": ["abc", "", 1]}), bson!(1)),
                (bson!({"$indexOfCP": ["", ""]}), bson!(0)),
                (bson!({"$indexOfCP": ["abc", "b", 9]}), bson!(-1)),
                (bson!({"$indexOfCP": [null, "b"]}), Bson::Null),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$indexOfBytes": ["a"]}), ErrorCode::Location28667),
                (
                    bson!({"$indexOfBytes": ["a", "b", 1, 2, 3]}),
                    ErrorCode::Location28667,
                ),
                (bson!({"$indexOfBytes": [1, "b"]}), ErrorCode::Location40091),
                (
                    bson!({"$indexOfBytes": ["a", null]}),
                    ErrorCode::Location40092,
                ),
                (
                    bson!({"$indexOfBytes": ["vanilla", "ll", -1]}),
                    ErrorCode::Location40097,
                ),
                (
                    bson!({"$indexOfBytes": ["vanilla", "ll", 1.5]}),
                    ErrorCode::Location40096,
                ),
                (
                    bson!({"$indexOfBytes": ["a", "a", i64::MAX]}),
                    ErrorCode::Location40096,
                ),
                (
                    bson!({"$indexOfBytes": ["a", "a", 0, "x"]}),
                    ErrorCode::Location40096,
                ),
                (bson!({"$indexOfCP": [1, "b"]}), ErrorCode::Location40093),
                (bson!({"$indexOfCP": ["a", 1]}), ErrorCode::Location40094),
                (
                    bson!({"$indexOfCP": ["a", "a", 0, -1]}),
                    ErrorCode::Location40097,
                ),
                (
                    bson!({"$indexOfCP": ["a", "a", f64::NAN]}),
                    ErrorCode::Location40096,
                ),
            ],
        );
        let e = run(bson!({"$indexOfBytes": ["a", "a", 1.5]}), doc! {}).unwrap_err();
        assert_eq!(
            e.message,
            "$indexOfBytesrequires an integral starting index, found a value of type: double, with value: 1.5"
        );
        // Long, nearly matching input and token: linear search, not quadratic.
        let hostile = doc! {"s": "a".repeat(4 << 20), "t": "a".repeat(2 << 20) + "b"};
        check(
            &hostile,
            vec![
                (bson!({"$indexOfBytes": ["$s", "$t"]}), bson!(-1)),
                (bson!({"$indexOfCP": ["$s", "$t"]}), bson!(-1)),
            ],
        );
    }

    #[test]
    fn substr_bytes_and_code_points() {
        let d = doc! {"s": "cafétéria"};
        check(
            &d,
            vec![
                (bson!({"$substrBytes": ["abcde", 1, 2]}), bson!("bc")),
                (bson!({"$substr": ["abcde", 1, 2]}), bson!("bc")),
                (bson!({"$substrBytes": ["abc", 1, -1]}), bson!("bc")),
                (bson!({"$substrBytes": ["abc", 5, 1]}), bson!("")),
                (bson!({"$substrBytes": ["abc", 1.9, 1]}), bson!("b")),
                (bson!({"$substrBytes": ["$s", 0, 5]}), bson!("café")),
                (bson!({"$substrBytes": ["abc", 0, i64::MAX]}), bson!("abc")),
                (bson!({"$substrBytes": [null, 0, 1]}), bson!("")),
                (bson!({"$substrBytes": [12345, 1, 2]}), bson!("23")),
                (bson!({"$substrCP": ["$s", 0, 4]}), bson!("café")),
                (bson!({"$substrCP": ["$s", 3, 2]}), bson!("ét")),
                (bson!({"$substrCP": ["$s", 30, 2]}), bson!("")),
                (bson!({"$substrCP": ["abc", 1.0, 5i64]}), bson!("bc")),
                (bson!({"$strLenBytes": "$s"}), bson!(11)),
                (bson!({"$strLenBytes": ""}), bson!(0)),
            ],
        );
        check_err(
            &d,
            vec![
                (
                    bson!({"$substrBytes": ["$s", 0, 4]}),
                    ErrorCode::Location28657,
                ),
                (
                    bson!({"$substrBytes": ["$s", 4, 2]}),
                    ErrorCode::Location28656,
                ),
                (
                    bson!({"$substrBytes": ["abc", -1, 1]}),
                    ErrorCode::Location50752,
                ),
                (
                    bson!({"$substrBytes": ["abc", i64::MIN, 1]}),
                    ErrorCode::Location50752,
                ),
                (
                    bson!({"$substrBytes": ["abc", "x", 1]}),
                    ErrorCode::Location16034,
                ),
                (
                    bson!({"$substrBytes": ["abc", 0, null]}),
                    ErrorCode::Location16035,
                ),
                (
                    bson!({"$substrBytes": [[1], 0, 1]}),
                    ErrorCode::Location16007,
                ),
                (bson!({"$substr": ["abc", 0]}), ErrorCode::Location16020),
                (
                    bson!({"$substrCP": ["abc", -1, 1]}),
                    ErrorCode::Location34455,
                ),
                (
                    bson!({"$substrCP": ["abc", 0, -1]}),
                    ErrorCode::Location34454,
                ),
                (
                    bson!({"$substrCP": ["abc", 1.5, 1]}),
                    ErrorCode::Location34451,
                ),
                (
                    bson!({"$substrCP": ["abc", "1", 1]}),
                    ErrorCode::Location34450,
                ),
                (
                    bson!({"$substrCP": ["abc", 0, i64::MAX]}),
                    ErrorCode::Location34453,
                ),
                (
                    bson!({"$substrCP": ["abc", 0, "x"]}),
                    ErrorCode::Location34452,
                ),
                (bson!({"$strLenBytes": null}), ErrorCode::Location34473),
                (
                    bson!({"$strLenBytes": ["a", "b"]}),
                    ErrorCode::Location16020,
                ),
            ],
        );
        let e = run(bson!({"$substrBytes": ["$s", 0, 4]}), d).unwrap_err();
        assert_eq!(
            e.message,
            "$substrBytes:  Invalid range, ending index is in the middle of a UTF-8 character."
        );
    }

    #[test]
    fn strcasecmp() {
        check(
            &doc! {},
            vec![
                (bson!({"$strcasecmp": ["13Q1", "13q1"]}), bson!(0)),
                (bson!({"$strcasecmp": ["abc", "abd"]}), bson!(-1)),
                (bson!({"$strcasecmp": ["b", "A"]}), bson!(1)),
                (bson!({"$strcasecmp": [null, ""]}), bson!(0)),
                (bson!({"$strcasecmp": [1, "1"]}), bson!(0)),
                // ASCII folding only, as mongod.
                (bson!({"$strcasecmp": ["é", "É"]}), bson!(1)),
            ],
        );
        check_err(
            &doc! {},
            vec![
                (bson!({"$strcasecmp": ["a"]}), ErrorCode::Location16020),
                (bson!({"$strcasecmp": [{}, "a"]}), ErrorCode::Location16007),
            ],
        );
    }

    #[test]
    fn replace_one_and_all() {
        let d = doc! {"item": "blue paint", "n": 3};
        check(
            &d,
            vec![
                (
                    bson!({"$replaceOne": {"input": "$item", "find": "blue paint", "replacement": "red paint"}}),
                    bson!("red paint"),
                ),
                (
                    bson!({"$replaceOne": {"input": "aXbXc", "find": "X", "replacement": "-"}}),
                    bson!("a-bXc"),
                ),
                (
                    bson!({"$replaceAll": {"input": "aXbXc", "find": "X", "replacement": "-"}}),
                    bson!("a-b-c"),
                ),
                (
                    bson!({"$replaceAll": {"input": "ab", "find": "", "replacement": "-"}}),
                    bson!("-a-b-"),
                ),
                (
                    bson!({"$replaceOne": {"input": "ab", "find": "", "replacement": "-"}}),
                    bson!("-ab"),
                ),
                (
                    bson!({"$replaceAll": {"input": "aaa", "find": "aa", "replacement": "b"}}),
                    bson!("ba"),
                ),
                (
                    bson!({"$replaceAll": {"input": null, "find": "a", "replacement": "b"}}),
                    Bson::Null,
                ),
                (
                    bson!({"$replaceAll": {"input": "a", "find": "$nope", "replacement": "b"}}),
                    Bson::Null,
                ),
                (
                    bson!({"$replaceOne": {"input": "a", "find": "a", "replacement": null}}),
                    Bson::Null,
                ),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$replaceAll": "x"}), ErrorCode::Location51751),
                (
                    bson!({"$replaceAll": {"input": "a", "find": "a", "replacement": "b", "x": 1}}),
                    ErrorCode::Location51750,
                ),
                (bson!({"$replaceAll": {}}), ErrorCode::Location51749),
                (
                    bson!({"$replaceAll": {"input": "a", "replacement": "b"}}),
                    ErrorCode::Location51748,
                ),
                (
                    bson!({"$replaceOne": {"input": "a", "find": "a"}}),
                    ErrorCode::Location51747,
                ),
                // Types are checked before nulls.
                (
                    bson!({"$replaceAll": {"input": null, "find": 1, "replacement": "b"}}),
                    ErrorCode::Location51745,
                ),
                (
                    bson!({"$replaceAll": {"input": "$n", "find": "a", "replacement": "b"}}),
                    ErrorCode::Location51746,
                ),
                (
                    bson!({"$replaceOne": {"input": "a", "find": "a", "replacement": 1}}),
                    ErrorCode::Location51744,
                ),
            ],
        );
        // A result past the built-value limit is refused before it is built.
        let big = doc! {"s": "x".repeat(100_000), "r": "y".repeat(1000)};
        check_err(
            &big,
            vec![
                (
                    bson!({"$replaceAll": {"input": "$s", "find": "x", "replacement": "$r"}}),
                    ErrorCode::ExceededMemoryLimit,
                ),
                (
                    bson!({"$replaceAll": {"input": "$s", "find": "", "replacement": "$r"}}),
                    ErrorCode::ExceededMemoryLimit,
                ),
            ],
        );
    }

    #[test]
    fn regex_operators() {
        let d = doc! {"s": "Single LINE description.", "n": 1};
        check(
            &d,
            vec![
                (
                    bson!({"$regexFind": {"input": "$s", "regex": re("line", "i")}}),
                    bson!({"match": "LINE", "idx": 7, "captures": []}),
                ),
                (
                    bson!({"$regexFind": {"input": "$s", "regex": "line", "options": "i"}}),
                    bson!({"match": "LINE", "idx": 7, "captures": []}),
                ),
                (
                    bson!({"$regexFind": {"input": "$s", "regex": "line"}}),
                    Bson::Null,
                ),
                (
                    bson!({"$regexFind": {"input": "abc", "regex": "(a)(x)?(b)"}}),
                    bson!({"match": "ab", "idx": 0, "captures": ["a", null, "b"]}),
                ),
                // `idx` counts code points.
                (
                    bson!({"$regexFind": {"input": "ééa", "regex": "a"}}),
                    bson!({"match": "a", "idx": 2, "captures": []}),
                ),
                (
                    bson!({"$regexFind": {"input": null, "regex": "a"}}),
                    Bson::Null,
                ),
                (
                    bson!({"$regexFind": {"input": "a", "regex": null, "options": "z"}}),
                    Bson::Null,
                ),
                (
                    bson!({"$regexFindAll": {"input": "a1b22é3", "regex": "[0-9]+"}}),
                    bson!([
                        {"match": "1", "idx": 1, "captures": []},
                        {"match": "22", "idx": 3, "captures": []},
                        {"match": "3", "idx": 6, "captures": []},
                    ]),
                ),
                // Empty matches move on one character and not past the end.
                (
                    bson!({"$regexFindAll": {"input": "aé", "regex": ""}}),
                    bson!([
                        {"match": "", "idx": 0, "captures": []},
                        {"match": "", "idx": 1, "captures": []},
                    ]),
                ),
                (
                    bson!({"$regexFindAll": {"input": "", "regex": ""}}),
                    bson!([{"match": "", "idx": 0, "captures": []}]),
                ),
                (
                    bson!({"$regexFindAll": {"input": "aaa", "regex": "a*"}}),
                    bson!([{"match": "aaa", "idx": 0, "captures": []}]),
                ),
                (
                    bson!({"$regexFindAll": {"input": "$nope", "regex": "a"}}),
                    bson!([]),
                ),
                (
                    bson!({"$regexFindAll": {"input": "ab\ncd", "regex": "^[a-z]", "options": "m"}}),
                    bson!([
                        {"match": "a", "idx": 0, "captures": []},
                        {"match": "c", "idx": 3, "captures": []},
                    ]),
                ),
                (
                    bson!({"$regexMatch": {"input": "abc", "regex": "^A", "options": "i"}}),
                    bson!(true),
                ),
                (
                    bson!({"$regexMatch": {"input": "abc", "regex": "^A"}}),
                    bson!(false),
                ),
                (
                    bson!({"$regexMatch": {"input": "a b", "regex": "a b", "options": "xu"}}),
                    bson!(false),
                ),
                (
                    bson!({"$regexMatch": {"input": "a\nb", "regex": "a.b", "options": "ss"}}),
                    bson!(true),
                ),
                (
                    bson!({"$regexMatch": {"input": null, "regex": "a"}}),
                    bson!(false),
                ),
                // A pattern read from the document, compiled per evaluation.
                (
                    bson!({"$regexMatch": {"input": "$s", "regex": {"$concat": ["^", "Single"]}}}),
                    bson!(true),
                ),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$regexFind": "a"}), ErrorCode::Location51103),
                (
                    bson!({"$regexFind": {"input": "a", "regex": "a", "x": 1}}),
                    ErrorCode::Location31024,
                ),
                (bson!({"$regexFind": {}}), ErrorCode::Location31022),
                (
                    bson!({"$regexMatch": {"input": "a"}}),
                    ErrorCode::Location31023,
                ),
                (
                    bson!({"$regexFind": {"input": "$n", "regex": "a"}}),
                    ErrorCode::Location51104,
                ),
                (
                    bson!({"$regexFind": {"input": "a", "regex": 1}}),
                    ErrorCode::Location51105,
                ),
                (
                    bson!({"$regexFind": {"input": "a", "regex": "a", "options": 1}}),
                    ErrorCode::Location51106,
                ),
                (
                    bson!({"$regexFind": {"input": "a", "regex": re("a", "i"), "options": "m"}}),
                    ErrorCode::Location51107,
                ),
                (
                    bson!({"$regexFind": {"input": "a", "regex": re("a", "i"), "options": ""}}),
                    ErrorCode::Location51107,
                ),
                (
                    bson!({"$regexFind": {"input": "a", "regex": "a", "options": "z"}}),
                    ErrorCode::Location51108,
                ),
                (
                    bson!({"$regexFind": {"input": "a", "regex": "a\u{0}"}}),
                    ErrorCode::Location51109,
                ),
                (
                    bson!({"$regexFind": {"input": "a", "regex": "a", "options": "i\u{0}"}}),
                    ErrorCode::Location51110,
                ),
                (
                    bson!({"$regexFind": {"input": "a", "regex": "("}}),
                    ErrorCode::Location51111,
                ),
                (
                    bson!({"$regexMatch": {"input": "a", "regex": {"$concat": ["("]}}}),
                    ErrorCode::Location51111,
                ),
            ],
        );
        // A constant bad pattern fails when parsed, before any document.
        assert_eq!(
            Expr::parse(&bson!({"$regexMatch": {"input": "$s", "regex": "("}}))
                .unwrap_err()
                .code,
            ErrorCode::Location51111
        );
        // Many matches are held to the built-value limit.
        let big = doc! {"s": "a".repeat(4 << 20)};
        check_err(
            &big,
            vec![(
                bson!({"$regexFindAll": {"input": "$s", "regex": "a"}}),
                ErrorCode::ExceededMemoryLimit,
            )],
        );
        // A huge pattern is the compiler's to refuse, not a crash.
        let huge = doc! {"p": "(a{1000}){1000}"};
        check_err(
            &huge,
            vec![(
                bson!({"$regexMatch": {"input": "a", "regex": "$p"}}),
                ErrorCode::Location51111,
            )],
        );
    }

    #[test]
    fn case_folding_is_ascii_only_as_mongod() {
        let d = doc! {"s": "Café Ünïcode ß", "n": 7, "x": 2.5};
        check(
            &d,
            vec![
                (bson!({"$toUpper": "abc"}), bson!("ABC")),
                (bson!({"$toLower": "ABC"}), bson!("abc")),
                // Manual: {item: "ABC1", description: "PRODUCT 1"}.
                (bson!({"$toLower": "PRODUCT 1"}), bson!("product 1")),
                (bson!({"$toUpper": ["abc1"]}), bson!("ABC1")),
                // Non-ASCII letters are left alone, as mongod's.
                (bson!({"$toUpper": "$s"}), bson!("CAFé ÜNïCODE ß")),
                (bson!({"$toLower": "$s"}), bson!("café Ünïcode ß")),
                (bson!({"$toLower": "ÀÉ"}), bson!("ÀÉ")),
                // Null and missing are the empty string; numbers their
                // string forms.
                (bson!({"$toUpper": null}), bson!("")),
                (bson!({"$toLower": "$nope"}), bson!("")),
                (bson!({"$toUpper": "$n"}), bson!("7")),
                (bson!({"$toUpper": "$x"}), bson!("2.5")),
                (bson!({"$strcasecmp": ["é", "É"]}), bson!(1)),
                (bson!({"$strcasecmp": ["abc", "ABC"]}), bson!(0)),
            ],
        );
        check_err(
            &d,
            vec![
                (bson!({"$toUpper": true}), ErrorCode::Location16007),
                (bson!({"$toLower": {"a": 1}}), ErrorCode::Location16007),
                (bson!({"$toLower": [[1]]}), ErrorCode::Location16007),
                (bson!({"$toUpper": ["a", "b"]}), ErrorCode::Location16020),
                (bson!({"$toLower": []}), ErrorCode::Location16020),
            ],
        );
        // A huge string folds within the built-value limit.
        let big = doc! {"s": "a".repeat(4 << 20)};
        match run(bson!({"$toUpper": "$s"}), big) {
            Ok(Some(Bson::String(s))) => assert_eq!(s.len(), 4 << 20),
            other => panic!("{other:?}"),
        }
    }
}
