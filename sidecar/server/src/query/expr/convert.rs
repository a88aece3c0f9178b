//! Type conversion and inspection: `$convert`, `$toInt` and the other `$to*`, `$isNumber`, `$bsonSize`, `$binarySize`, `$tsSecond`, `$tsIncrement`, `$toHashedIndexKey`.
//!
//! The conversion matrix is mongod 8.0's (`expression_convert.cpp`): which
//! type converts to which, and every failure a ConversionFailure (241)
//! that `onError` replaces. `$convert`'s `format` (BinData to and from
//! strings) is refused by name; `$toUUID` and `$toString` of a BinData
//! use the formats they imply.

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, oid::ObjectId};

use super::math::{exactly, nullish, operands};
use super::number::{self, Digits};
use super::{Expr, Locals, Scope, type_name};
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::compare::is_number;

/// A parsed operator of this family.
#[derive(Debug, Clone)]
pub enum ConvertExpr {
    Convert {
        input: Box<Expr>,
        to: Box<Expr>,
        on_error: Option<Box<Expr>>,
        on_null: Option<Box<Expr>>,
    },
    /// `$toInt`, `$toString`, ...: `$convert` to one target without
    /// `onError`/`onNull`.
    To(Shorthand, Expr),
    IsNumber(Expr),
    BsonSize(Expr),
    BinarySize(Expr),
    TsSecond(Expr),
    TsIncrement(Expr),
    HashedIndexKey(Expr),
}

/// BSON type codes and the names `$convert`'s `to` (and `$type`) use.
const TYPES: &[(i32, &str)] = &[
    (1, "double"),
    (2, "string"),
    (3, "object"),
    (4, "array"),
    (5, "binData"),
    (6, "undefined"),
    (7, "objectId"),
    (8, "bool"),
    (9, "date"),
    (10, "null"),
    (11, "regex"),
    (12, "dbPointer"),
    (13, "javascript"),
    (14, "symbol"),
    (15, "javascriptWithScope"),
    (16, "int"),
    (17, "timestamp"),
    (18, "long"),
    (19, "decimal"),
    (-1, "minKey"),
    (127, "maxKey"),
];

const DOUBLE: i32 = 1;
const STRING: i32 = 2;
const BIN_DATA: i32 = 5;
const OBJECT_ID: i32 = 7;
const BOOL: i32 = 8;
const DATE: i32 = 9;
const INT: i32 = 16;
const LONG: i32 = 18;
const DECIMAL: i32 = 19;

/// What a `$to*` shorthand converts to.
#[derive(Debug, Clone, Copy)]
pub enum Shorthand {
    /// A BSON type code, as `$convert`'s `to`.
    Type(i32),
    /// A UUID: BinData subtype 4, from a UUID or its string form.
    Uuid,
}

/// The `$to*` shorthands and their targets.
const SHORTHANDS: &[(&str, Shorthand)] = &[
    ("$toBool", Shorthand::Type(BOOL)),
    ("$toDate", Shorthand::Type(DATE)),
    ("$toDecimal", Shorthand::Type(DECIMAL)),
    ("$toDouble", Shorthand::Type(DOUBLE)),
    ("$toInt", Shorthand::Type(INT)),
    ("$toLong", Shorthand::Type(LONG)),
    ("$toObjectId", Shorthand::Type(OBJECT_ID)),
    ("$toString", Shorthand::Type(STRING)),
    ("$toUUID", Shorthand::Uuid),
];

fn type_label(code: i32) -> &'static str {
    TYPES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("?", |(_, n)| n)
}

fn failed_to_parse(message: String) -> CommandError {
    CommandError::new(ErrorCode::FailedToParse, message)
}

/// A ConversionFailure: what `onError` replaces.
fn failure(message: impl Into<String>) -> CommandError {
    CommandError::new(ErrorCode::ConversionFailure, message.into())
}

const NO_ON_ERROR: &str = "in $convert with no onError value";

impl ConvertExpr {
    /// Parses `{name: arg}`; `None` when `name` is not of this family.
    pub(super) fn parse(name: &str, arg: &Bson, scope: Scope) -> Result<Option<ConvertExpr>> {
        let one = |arg: &Bson| -> Result<Expr> {
            let [a] = exactly(name, operands(arg, scope)?)?;
            Ok(a)
        };
        if let Some((_, target)) = SHORTHANDS.iter().find(|(n, _)| *n == name) {
            return Ok(Some(ConvertExpr::To(*target, one(arg)?)));
        }
        Ok(Some(match name {
            "$convert" => parse_convert(arg, scope)?,
            "$isNumber" => ConvertExpr::IsNumber(one(arg)?),
            "$bsonSize" => ConvertExpr::BsonSize(one(arg)?),
            "$binarySize" => ConvertExpr::BinarySize(one(arg)?),
            "$tsSecond" => ConvertExpr::TsSecond(one(arg)?),
            "$tsIncrement" => ConvertExpr::TsIncrement(one(arg)?),
            // One operand, an array included (it is hashed as an array).
            "$toHashedIndexKey" => {
                ConvertExpr::HashedIndexKey(Expr::parse_in(arg, scope.nested())?)
            }
            _ => return Ok(None),
        }))
    }

    pub(super) fn eval(&self, doc: &Document, locals: Locals) -> Result<Option<Bson>> {
        let ev = |e: &Expr| e.eval_in(doc, locals);
        Ok(Some(match self {
            ConvertExpr::Convert {
                input,
                to,
                on_error,
                on_null,
            } => {
                let to = ev(to)?;
                let input = ev(input)?;
                let target = target_type(to)?;
                if nullish(&input) {
                    return match on_null {
                        Some(e) => ev(e),
                        None => Ok(Some(Bson::Null)),
                    };
                }
                let Some(target) = target else {
                    return Ok(Some(Bson::Null));
                };
                match convert(input.unwrap_or(Bson::Null), target, false) {
                    Err(e) if e.code == ErrorCode::ConversionFailure && on_error.is_some() => {
                        return on_error.as_ref().map_or(Ok(None), |e| ev(e));
                    }
                    other => other?,
                }
            }
            ConvertExpr::To(target, input) => {
                let input = ev(input)?;
                if nullish(&input) {
                    return Ok(Some(Bson::Null));
                }
                let input = input.unwrap_or(Bson::Null);
                match target {
                    Shorthand::Type(code) => convert(input, *code, true)?,
                    Shorthand::Uuid => to_uuid(input)?,
                }
            }
            ConvertExpr::IsNumber(input) => {
                Bson::Boolean(ev(input)?.as_ref().is_some_and(is_number))
            }
            ConvertExpr::BsonSize(input) => match ev(input)? {
                v if nullish(&v) => Bson::Null,
                Some(Bson::Document(d)) => size(crate::limits::document_size(&d)),
                Some(other) => {
                    return Err(CommandError::new(
                        ErrorCode::Location31393,
                        format!(
                            "$bsonSize requires a document input, found: {}",
                            type_name(&other)
                        ),
                    ));
                }
                None => Bson::Null,
            },
            ConvertExpr::BinarySize(input) => match ev(input)? {
                v if nullish(&v) => Bson::Null,
                Some(Bson::String(s)) => size(s.len()),
                Some(Bson::Binary(b)) => size(b.bytes.len()),
                Some(other) => {
                    return Err(CommandError::new(
                        ErrorCode::Location51276,
                        format!(
                            "$binarySize requires a string or BinData argument, found: {}",
                            type_name(&other)
                        ),
                    ));
                }
                None => Bson::Null,
            },
            // Missing hashes as null, as mongod.
            ConvertExpr::HashedIndexKey(input) => {
                Bson::Int64(super::hashed::hash64(&ev(input)?.unwrap_or(Bson::Null)))
            }
            ConvertExpr::TsSecond(input) | ConvertExpr::TsIncrement(input) => {
                let second = matches!(self, ConvertExpr::TsSecond(_));
                match ev(input)? {
                    v if nullish(&v) => Bson::Null,
                    Some(Bson::Timestamp(ts)) => {
                        Bson::Int64(i64::from(if second { ts.time } else { ts.increment }))
                    }
                    Some(other) => {
                        let (code, name) = if second {
                            (ErrorCode::Location5687301, "$tsSecond")
                        } else {
                            (ErrorCode::Location5687302, "$tsIncrement")
                        };
                        return Err(CommandError::new(
                            code,
                            format!(
                                // The leading space is mongod's.
                                " Argument to {name} must be a timestamp, but is {}",
                                type_name(&other)
                            ),
                        ));
                    }
                    None => Bson::Null,
                }
            }
        }))
    }

    pub(super) fn is_constant(&self) -> bool {
        match self {
            ConvertExpr::Convert {
                input,
                to,
                on_error,
                on_null,
            } => {
                input.is_constant()
                    && to.is_constant()
                    && on_error.as_ref().is_none_or(|e| e.is_constant())
                    && on_null.as_ref().is_none_or(|e| e.is_constant())
            }
            ConvertExpr::To(_, e)
            | ConvertExpr::IsNumber(e)
            | ConvertExpr::BsonSize(e)
            | ConvertExpr::BinarySize(e)
            | ConvertExpr::TsSecond(e)
            | ConvertExpr::TsIncrement(e)
            | ConvertExpr::HashedIndexKey(e) => e.is_constant(),
        }
    }
}

/// A size as mongod answers it: an int (BSON values stay far below 2^31).
fn size(n: usize) -> Bson {
    i32::try_from(n).map_or(Bson::Int64(n as i64), Bson::Int32)
}

fn parse_convert(arg: &Bson, scope: Scope) -> Result<ConvertExpr> {
    let Bson::Document(spec) = arg else {
        return Err(failed_to_parse(format!(
            "$convert expects an object of named arguments but found: {}",
            type_name(arg)
        )));
    };
    let sub = |v: &Bson| Expr::parse_in(v, scope.nested()).map(Box::new);
    let (mut input, mut to, mut on_error, mut on_null) = (None, None, None, None);
    for (k, v) in spec {
        match k.as_str() {
            "input" => input = Some(sub(v)?),
            "to" => to = Some(sub(v)?),
            "onError" => on_error = Some(sub(v)?),
            "onNull" => on_null = Some(sub(v)?),
            "format" => {
                return Err(CommandError::new(
                    ErrorCode::CommandNotSupported,
                    "$convert's 'format' argument (BinData to and from strings) is not supported by Argon yet",
                ));
            }
            other => {
                return Err(failed_to_parse(format!(
                    "$convert found an unknown argument: {other}"
                )));
            }
        }
    }
    let input =
        input.ok_or_else(|| failed_to_parse("Missing 'input' parameter to $convert".into()))?;
    let to = to.ok_or_else(|| failed_to_parse("Missing 'to' parameter to $convert".into()))?;
    Ok(ConvertExpr::Convert {
        input,
        to,
        on_error,
        on_null,
    })
}

/// `to`'s value as a BSON type code; `None` when it is null or missing.
fn target_type(to: Option<Bson>) -> Result<Option<i32>> {
    let to = match to {
        v if nullish(&v) => return Ok(None),
        Some(v) => v,
        None => return Ok(None),
    };
    match &to {
        Bson::String(name) => TYPES
            .iter()
            .find(|(_, n)| n == name)
            .map(|(c, _)| Some(*c))
            .ok_or_else(|| {
                CommandError::new(ErrorCode::BadValue, format!("Unknown type name: {name}"))
            }),
        v if is_number(v) => {
            let x = match v {
                Bson::Int32(i) => f64::from(*i),
                Bson::Int64(i) => *i as f64,
                Bson::Double(d) => *d,
                Bson::Decimal128(d) => number::decimal_to_f64(d),
                _ => f64::NAN,
            };
            if x.fract() != 0.0 || !x.is_finite() || x.abs() > f64::from(i32::MAX) {
                return Err(failed_to_parse(
                    "In $convert, numeric 'to' argument is not an integer".into(),
                ));
            }
            let code = x as i32;
            if TYPES.iter().any(|(c, _)| *c == code) {
                Ok(Some(code))
            } else {
                Err(failed_to_parse(format!(
                    "In $convert, numeric value for 'to' does not correspond to a BSON type: {code}"
                )))
            }
        }
        Bson::Document(_) => Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            "$convert's 'to' as an object (type and BinData subtype) is not supported by Argon yet",
        )),
        other => Err(failed_to_parse(format!(
            "$convert's 'to' argument must be a string or number, but is {}",
            type_name(other)
        ))),
    }
}

fn type_code(v: &Bson) -> i32 {
    let name = type_name(v);
    TYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(0, |(c, _)| *c)
}

fn unsupported(v: &Bson, target: i32) -> CommandError {
    failure(format!(
        "Unsupported conversion from {} to {} {NO_ON_ERROR}",
        type_name(v),
        type_label(target)
    ))
}

fn overflow(shown: &str) -> CommandError {
    failure(format!(
        "Conversion would overflow target type {NO_ON_ERROR}: {shown}"
    ))
}

/// Converts a value that is not null or missing to `target`, as mongod's
/// conversion table; `to_string_operator` is `$toString`, which shows a
/// BinData in its implied format where `$convert` wants a `format`.
fn convert(v: Bson, target: i32, to_string_operator: bool) -> Result<Bson> {
    // mongod's table converts these types to themselves, and no other.
    let identity = [DOUBLE, STRING, OBJECT_ID, BOOL, DATE, INT, LONG, DECIMAL];
    if type_code(&v) == target && identity.contains(&target) {
        return Ok(v);
    }
    Ok(match target {
        BOOL => Bson::Boolean(match &v {
            Bson::Double(d) => *d != 0.0,
            Bson::Int32(i) => *i != 0,
            Bson::Int64(i) => *i != 0,
            Bson::Decimal128(d) => Digits::from_decimal(d).is_none_or(|x| x.coefficient != "0"),
            Bson::JavaScriptCode(_)
            | Bson::JavaScriptCodeWithScope(_)
            | Bson::Symbol(_)
            | Bson::String(_)
            | Bson::ObjectId(_)
            | Bson::DateTime(_)
            | Bson::Document(_)
            | Bson::Array(_)
            | Bson::Binary(_)
            | Bson::RegularExpression(_)
            | Bson::DbPointer(_)
            | Bson::Timestamp(_)
            | Bson::MinKey
            | Bson::MaxKey => true,
            _ => return Err(unsupported(&v, target)),
        }),
        DOUBLE => Bson::Double(match &v {
            Bson::Int32(i) => f64::from(*i),
            Bson::Int64(i) => *i as f64,
            Bson::Boolean(b) => f64::from(u8::from(*b)),
            Bson::DateTime(d) => d.timestamp_millis() as f64,
            Bson::Decimal128(d) => {
                let x = number::decimal_to_f64(d);
                let finite_zero = Digits::from_decimal(d).is_some_and(|x| x.coefficient == "0");
                if Digits::from_decimal(d).is_some()
                    && (x.is_infinite() || (x == 0.0 && !finite_zero))
                {
                    return Err(overflow(&d.to_string()));
                }
                x
            }
            Bson::String(s) => parse_double(s)?,
            _ => return Err(unsupported(&v, target)),
        }),
        INT | LONG => integer(&v, target)?,
        DECIMAL => Bson::Decimal128(match &v {
            Bson::Double(d) => number::decimal_from_f64(*d),
            Bson::Int32(i) => number::decimal_from_i64(i64::from(*i)),
            Bson::Int64(i) => number::decimal_from_i64(*i),
            Bson::Boolean(b) => number::decimal_from_i64(i64::from(*b)),
            Bson::DateTime(d) => number::decimal_from_i64(d.timestamp_millis()),
            Bson::String(s) => parse_decimal(s)?,
            _ => return Err(unsupported(&v, target)),
        }),
        DATE => Bson::DateTime(bson::DateTime::from_millis(match &v {
            Bson::Double(_) | Bson::Int64(_) | Bson::Decimal128(_) => match integer(&v, LONG)? {
                Bson::Int64(ms) => ms,
                _ => 0,
            },
            Bson::ObjectId(o) => o.timestamp().timestamp_millis(),
            Bson::Timestamp(ts) => i64::from(ts.time) * 1000,
            Bson::String(s) => parse_date(s)?,
            _ => return Err(unsupported(&v, target)),
        })),
        OBJECT_ID => match &v {
            Bson::String(s) => Bson::ObjectId(parse_object_id(s)?),
            _ => return Err(unsupported(&v, target)),
        },
        STRING => Bson::String(match &v {
            Bson::Double(d) => format_double(*d),
            Bson::Int32(i) => i.to_string(),
            Bson::Int64(i) => i.to_string(),
            Bson::Decimal128(d) => d.to_string(),
            Bson::Boolean(b) => b.to_string(),
            Bson::ObjectId(o) => o.to_hex(),
            Bson::DateTime(d) => format_date(d.timestamp_millis())?,
            Bson::Binary(b) if to_string_operator => binary_to_string(b),
            Bson::Binary(_) => return Err(format_required(&v, target)),
            _ => return Err(unsupported(&v, target)),
        }),
        BIN_DATA => match &v {
            // The target's subtype is 0 (generic) when `to` names only the type.
            Bson::Binary(b) if b.subtype == BinarySubtype::Generic => v.clone(),
            Bson::Binary(_) => {
                return Err(failure(
                    "Conversions between different BinData subtypes are not supported",
                ));
            }
            Bson::String(_) => return Err(format_required(&v, target)),
            _ => return Err(unsupported(&v, target)),
        },
        _ => return Err(unsupported(&v, target)),
    })
}

fn format_required(v: &Bson, target: i32) -> CommandError {
    CommandError::new(
        ErrorCode::Location4341115,
        format!(
            "Format must be speficied when converting from '{}' to '{}'",
            type_name(v),
            type_label(target)
        ),
    )
}

/// `$toInt`/`$toLong` (and dates' milliseconds): whole numbers truncated
/// toward zero, NaN, infinities and overflow refused.
fn integer(v: &Bson, target: i32) -> Result<Bson> {
    let fits = |i: i64| target == LONG || i32::try_from(i).is_ok();
    let out = |i: i64| {
        if target == LONG {
            Bson::Int64(i)
        } else {
            Bson::Int32(i as i32)
        }
    };
    let non_finite = |nan: bool| {
        failure(if nan {
            format!("Attempt to convert NaN value to integer type {NO_ON_ERROR}")
        } else {
            format!("Attempt to convert infinity value to integer type {NO_ON_ERROR}")
        })
    };
    Ok(match v {
        Bson::Int32(i) => out(i64::from(*i)),
        Bson::Int64(i) if fits(*i) => out(*i),
        Bson::Int64(_) => return Err(overflow("")),
        Bson::Boolean(b) => out(i64::from(*b)),
        Bson::DateTime(d) if target == LONG => out(d.timestamp_millis()),
        Bson::Double(d) => {
            if !d.is_finite() {
                return Err(non_finite(d.is_nan()));
            }
            let in_range = if target == LONG {
                *d >= -9_223_372_036_854_775_808.0 && *d < 9_223_372_036_854_775_808.0
            } else {
                *d >= f64::from(i32::MIN) && *d <= f64::from(i32::MAX)
            };
            if !in_range {
                return Err(overflow(&number::format_g(*d)));
            }
            out(d.trunc() as i64)
        }
        Bson::Decimal128(d) => {
            let Some(digits) = Digits::from_decimal(d) else {
                return Err(non_finite(d.to_string().contains("NaN")));
            };
            let whole = digits
                .quantize(0, number::Rounding::TowardZero)
                .and_then(|q| {
                    let c: i128 = q.coefficient.parse().ok()?;
                    let i = i64::try_from(if q.negative { -c } else { c }).ok()?;
                    fits(i).then_some(i)
                })
                .ok_or_else(|| overflow(&d.to_string()))?;
            out(whole)
        }
        Bson::String(s) => {
            let i = parse_integer(s)?;
            if !fits(i) {
                return Err(failure(format!(
                    "Failed to parse number '{s}' {NO_ON_ERROR}: Overflow"
                )));
            }
            out(i)
        }
        other => return Err(unsupported(other, target)),
    })
}

fn reject_hex(s: &str) -> Result<()> {
    if s.starts_with("0x") || s.starts_with("0X") {
        return Err(failure(format!(
            "Illegal hexadecimal input {NO_ON_ERROR}: {s}"
        )));
    }
    Ok(())
}

fn parse_failure(s: &str, reason: &str) -> CommandError {
    failure(format!(
        "Failed to parse number '{s}' {NO_ON_ERROR}: {reason}"
    ))
}

/// A base-10 integer: an optional sign, digits, nothing else.
fn parse_integer(s: &str) -> Result<i64> {
    reject_hex(s)?;
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() {
        return Err(parse_failure(s, "No digits"));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(parse_failure(s, "Did not consume whole string."));
    }
    s.parse::<i64>().map_err(|_| parse_failure(s, "Overflow"))
}

fn parse_double(s: &str) -> Result<f64> {
    reject_hex(s)?;
    if s.is_empty() {
        return Err(parse_failure(s, "No digits"));
    }
    let x: f64 = s
        .parse()
        .map_err(|_| parse_failure(s, "Did not consume whole string."))?;
    let spelled_infinite = s
        .trim_start_matches(['-', '+'])
        .to_ascii_lowercase()
        .starts_with("inf");
    if x.is_infinite() && !spelled_infinite {
        return Err(parse_failure(s, "Out of range"));
    }
    Ok(x)
}

fn parse_decimal(s: &str) -> Result<bson::Decimal128> {
    reject_hex(s)?;
    let plausible = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'));
    plausible
        .then(|| s.parse::<bson::Decimal128>().ok())
        .flatten()
        .ok_or_else(|| parse_failure(s, "Failed to parse string to decimal"))
}

fn parse_object_id(s: &str) -> Result<ObjectId> {
    if s.len() != 24 {
        return Err(failure(format!(
            "Failed to parse objectId '{s}' {NO_ON_ERROR}: Invalid string length for parsing to OID, expected 24 but found {}",
            s.len()
        )));
    }
    ObjectId::parse_str(s).map_err(|_| {
        failure(format!(
            "Failed to parse objectId '{s}' {NO_ON_ERROR}: Invalid character found in hex string: {s}"
        ))
    })
}

/// An ISO-8601 date string: `YYYY-MM-DD`, then optionally a time (`T` or a
/// space before `HH:MM[:SS[.fff]]`) and a zone (`Z`, `±HH`, `±HHMM`,
/// `±HH:MM`, a space allowed before it); UTC when none.
fn parse_date(s: &str) -> Result<i64> {
    parse_iso_date(s).ok_or_else(|| failure(format!("Error parsing date string '{s}'")))
}

fn parse_iso_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut at = 10;
    let mut ms = 0i64;
    if matches!(b.get(at), Some(b'T' | b't' | b' '))
        && b.get(at + 1).is_some_and(u8::is_ascii_digit)
    {
        let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
        if b.get(at + 3) != Some(&b':') || h > 23 || m > 59 {
            return None;
        }
        at += 6;
        let mut sec = 0;
        if b.get(at) == Some(&b':') {
            sec = num(at + 1, 2)?;
            if sec > 59 {
                return None;
            }
            at += 3;
            if b.get(at) == Some(&b'.') {
                at += 1;
                let start = at;
                while b.get(at).is_some_and(u8::is_ascii_digit) {
                    at += 1;
                }
                let digits = s.get(start..at)?;
                if digits.is_empty() {
                    return None;
                }
                let first3: String = digits.chars().chain("000".chars()).take(3).collect();
                ms = first3.parse().ok()?;
            }
        }
        ms += (h * 3600 + m * 60 + sec) * 1000;
    }
    if b.get(at) == Some(&b' ') {
        at += 1;
    }
    let offset_minutes = match b.get(at) {
        None => 0,
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let h = num(at + 1, 2)?;
            let rest = b.len() - (at + 3);
            let m = match rest {
                0 => 0,
                2 => num(at + 3, 2)?,
                3 if b.get(at + 3) == Some(&b':') => num(at + 4, 2)?,
                _ => return None,
            };
            let total = h * 60 + m;
            if *sign == b'-' { -total } else { total }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400_000 + ms - offset_minutes * 60_000)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 as a civil (year, month, day), proleptic
/// Gregorian (Howard Hinnant's algorithm).
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// mongod's `%Y-%m-%dT%H:%M:%S.%LZ`; years past 0..=9999 are refused as
/// mongod's date formatting refuses them.
pub(super) fn format_date(ms: i64) -> Result<String> {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return Err(CommandError::new(
            ErrorCode::Location18537,
            format!(
                "Could not convert date to string: date component was outside the supported range of 0-9999: {year}"
            ),
        ));
    }
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    ))
}

/// 8.0's double to string: `%g`, with JavaScript's names for the
/// non-finite values and negative zero.
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d < 0.0 { "-Infinity" } else { "Infinity" }.into()
    } else if d == 0.0 && d.is_sign_negative() {
        "-0".into()
    } else {
        number::format_g(d)
    }
}

/// `$toString` of a BinData: a UUID's canonical form, base64 otherwise.
fn binary_to_string(b: &Binary) -> String {
    if b.subtype == BinarySubtype::Uuid && b.bytes.len() == 16 {
        let h: String = b.bytes.iter().map(|x| format!("{x:02x}")).collect();
        return format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
    }
    base64(&b.bytes)
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `$toUUID`: a UUID string (or a UUID BinData) as a BinData of subtype 4.
fn to_uuid(v: Bson) -> Result<Bson> {
    match &v {
        Bson::Binary(b) if b.subtype == BinarySubtype::Uuid => Ok(v),
        Bson::Binary(_) => Err(failure(
            "Conversions between different BinData subtypes are not supported",
        )),
        Bson::String(s) => {
            let hex: String = s.chars().filter(|c| *c != '-').collect();
            let shaped = s.len() == 36
                && [8, 13, 18, 23]
                    .iter()
                    .all(|&i| s.as_bytes().get(i) == Some(&b'-'))
                && hex.len() == 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit());
            if !shaped {
                return Err(failure(format!(
                    "Failed to parse BinData '{s}' {NO_ON_ERROR}: Invalid UUID string: {s}"
                )));
            }
            let bytes = (0..16)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect();
            Ok(Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes,
            }))
        }
        _ => Err(unsupported(&v, BIN_DATA)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use bson::{Timestamp, bson, doc};

    fn to(v: Bson, t: &str) -> Option<Bson> {
        ev(bson!({"$convert": {"input": v, "to": t}}), doc! {})
    }

    fn to_err(v: Bson, t: &str) -> (i32, String) {
        code(bson!({"$convert": {"input": v, "to": t}}), doc! {})
    }

    #[test]
    fn manual_conversion_examples() {
        // $toBool
        for (v, want) in [
            (bson!(true), true),
            (bson!(0), false),
            (bson!(1.99999), true),
            (dec("5"), true),
            (dec("0"), false),
            (bson!(100i64), true),
            (bson!("false"), true),
            (bson!(""), true),
            (bson!({}), true),
            (bson!([]), true),
        ] {
            assert_eq!(
                ev(bson!({"$toBool": [v.clone()]}), doc! {}),
                Some(Bson::Boolean(want)),
                "{v}"
            );
        }
        assert_eq!(ev(bson!({"$toBool": null}), doc! {}), Some(Bson::Null));
        // $toInt / $toLong
        assert_eq!(ev(bson!({"$toInt": 5.5}), doc! {}), Some(bson!(5)));
        assert_eq!(ev(bson!({"$toInt": -5.5}), doc! {}), Some(bson!(-5)));
        assert_eq!(
            ev(bson!({"$toInt": dec("9.9999")}), doc! {}),
            Some(bson!(9))
        );
        assert_eq!(ev(bson!({"$toInt": "-2"}), doc! {}), Some(bson!(-2)));
        assert_eq!(ev(bson!({"$toInt": true}), doc! {}), Some(bson!(1)));
        assert_eq!(
            ev(bson!({"$toLong": 9223372036854775000i64}), doc! {}),
            Some(bson!(9223372036854775000i64))
        );
        assert_eq!(
            ev(
                bson!({"$toLong": Bson::DateTime(bson::DateTime::from_millis(1522039108044))}),
                doc! {}
            ),
            Some(bson!(1522039108044i64))
        );
        assert_eq!(
            ev(bson!({"$toLong": "-100"}), doc! {}),
            Some(bson!(-100i64))
        );
        // $toDouble / $toDecimal
        assert_eq!(
            ev(bson!({"$toDouble": "5e10"}), doc! {}),
            Some(bson!(50000000000.0))
        );
        assert_eq!(ev(bson!({"$toDouble": false}), doc! {}), Some(bson!(0.0)));
        assert_eq!(
            ev(bson!({"$toDouble": dec("-5.5")}), doc! {}),
            Some(bson!(-5.5))
        );
        assert_eq!(
            ev(bson!({"$toDecimal": 2.5}), doc! {}),
            Some(dec("2.50000000000000"))
        );
        assert_eq!(ev(bson!({"$toDecimal": 5}), doc! {}), Some(dec("5")));
        assert_eq!(
            ev(bson!({"$toDecimal": "-5.5"}), doc! {}),
            Some(dec("-5.5"))
        );
        assert_eq!(ev(bson!({"$toDecimal": true}), doc! {}), Some(dec("1")));
        // $toString
        assert_eq!(ev(bson!({"$toString": 2.5}), doc! {}), Some(bson!("2.5")));
        assert_eq!(
            ev(bson!({"$toString": 1.23456789}), doc! {}),
            Some(bson!("1.23457"))
        );
        assert_eq!(
            ev(bson!({"$toString": 1e20}), doc! {}),
            Some(bson!("1e+20"))
        );
        assert_eq!(ev(bson!({"$toString": -0.0}), doc! {}), Some(bson!("-0")));
        assert_eq!(
            ev(bson!({"$toString": f64::NAN}), doc! {}),
            Some(bson!("NaN"))
        );
        assert_eq!(ev(bson!({"$toString": 2}), doc! {}), Some(bson!("2")));
        assert_eq!(
            ev(bson!({"$toString": dec("2.50")}), doc! {}),
            Some(bson!("2.50"))
        );
        assert_eq!(
            ev(bson!({"$toString": false}), doc! {}),
            Some(bson!("false"))
        );
        assert_eq!(
            ev(
                bson!({"$toString": Bson::DateTime(bson::DateTime::from_millis(1522169931538))}),
                doc! {}
            ),
            Some(bson!("2018-03-27T16:58:51.538Z"))
        );
        let oid = ObjectId::parse_str("5ab9cbfa31c2ab715d42129e").unwrap();
        assert_eq!(
            ev(bson!({"$toString": oid}), doc! {}),
            Some(bson!("5ab9cbfa31c2ab715d42129e"))
        );
        assert_eq!(
            ev(bson!({"$toObjectId": "5ab9cbfa31c2ab715d42129e"}), doc! {}),
            Some(Bson::ObjectId(oid))
        );
        // $toDate
        assert_eq!(
            ev(bson!({"$toDate": "2018-03-03"}), doc! {}),
            Some(Bson::DateTime(bson::DateTime::from_millis(1520035200000)))
        );
        assert_eq!(
            ev(bson!({"$toDate": "2018-03-20 11:00:06 +0500"}), doc! {}),
            Some(Bson::DateTime(bson::DateTime::from_millis(1521525606000)))
        );
        assert_eq!(
            ev(bson!({"$toDate": "2018-03-20T11:00:06.5Z"}), doc! {}),
            Some(Bson::DateTime(bson::DateTime::from_millis(1521543606500)))
        );
        assert_eq!(
            ev(bson!({"$toDate": "2016-02-29T23:59:59-01:30"}), doc! {}),
            Some(Bson::DateTime(bson::DateTime::from_millis(1456795799000)))
        );
        assert_eq!(
            ev(bson!({"$toDate": 120000000000.5}), doc! {}),
            Some(Bson::DateTime(bson::DateTime::from_millis(120000000000)))
        );
        assert_eq!(
            ev(bson!({"$toDate": 1253372036000i64}), doc! {}),
            Some(Bson::DateTime(bson::DateTime::from_millis(1253372036000)))
        );
        assert_eq!(
            ev(bson!({"$toDate": oid}), doc! {}),
            Some(Bson::DateTime(bson::DateTime::from_millis(1522125818000)))
        );
        assert_eq!(
            ev(
                bson!({"$toDate": Bson::Timestamp(Timestamp { time: 1, increment: 2 })}),
                doc! {}
            ),
            Some(Bson::DateTime(bson::DateTime::from_millis(1000)))
        );
    }

    #[test]
    fn convert_arguments_and_failures() {
        assert_eq!(to(bson!("5"), "int"), Some(bson!(5)));
        assert_eq!(
            ev(bson!({"$convert": {"input": "5", "to": 16}}), doc! {}),
            Some(bson!(5))
        );
        assert_eq!(
            ev(bson!({"$convert": {"input": "5", "to": 18.0}}), doc! {}),
            Some(bson!(5i64))
        );
        assert_eq!(
            ev(bson!({"$convert": {"input": "$x", "to": "int"}}), doc! {}),
            Some(Bson::Null)
        );
        assert_eq!(
            ev(
                bson!({"$convert": {"input": "$x", "to": "int", "onNull": "none"}}),
                doc! {}
            ),
            Some(bson!("none"))
        );
        assert_eq!(
            ev(bson!({"$convert": {"input": 1, "to": null}}), doc! {}),
            Some(Bson::Null)
        );
        assert_eq!(
            ev(
                bson!({"$convert": {"input": "x", "to": "int", "onError": -1}}),
                doc! {}
            ),
            Some(bson!(-1))
        );
        assert_eq!(
            to_err(bson!("x"), "int"),
            (241, "Failed to parse number 'x' in $convert with no onError value: Did not consume whole string.".into())
        );
        assert_eq!(
            to_err(bson!("0x1F"), "double"),
            (
                241,
                "Illegal hexadecimal input in $convert with no onError value: 0x1F".into()
            )
        );
        assert_eq!(
            to_err(bson!(oid_like()), "int"),
            (
                241,
                "Unsupported conversion from objectId to int in $convert with no onError value"
                    .into()
            )
        );
        assert_eq!(
            to_err(bson!(1), "date"),
            (
                241,
                "Unsupported conversion from int to date in $convert with no onError value".into()
            )
        );
        assert_eq!(
            to_err(bson!(f64::NAN), "int"),
            (
                241,
                "Attempt to convert NaN value to integer type in $convert with no onError value"
                    .into()
            )
        );
        assert_eq!(to_err(bson!(f64::INFINITY), "long").0, 241);
        assert_eq!(to_err(dec("Infinity"), "long").0, 241);
        assert_eq!(
            to_err(bson!(3e9), "int"),
            (
                241,
                "Conversion would overflow target type in $convert with no onError value: 3e+09"
                    .into()
            )
        );
        assert_eq!(to_err(bson!(1e19), "long").0, 241);
        assert_eq!(to_err(bson!(i64::MAX), "int").0, 241);
        assert_eq!(to_err(dec("1E+30"), "long").0, 241);
        assert_eq!(to_err(dec("1E+400"), "double").0, 241);
        assert_eq!(to_err(bson!("99999999999999999999"), "long").0, 241);
        assert_eq!(to_err(bson!("1e400"), "double").0, 241);
        assert_eq!(to_err(bson!(""), "int").0, 241);
        assert_eq!(to_err(bson!("abc"), "objectId").0, 241);
        assert_eq!(to_err(bson!("not a date"), "date").0, 241);
        assert_eq!(to_err(bson!("2017-02-29"), "date").0, 241);
        assert_eq!(to_err(bson!("2017-01-01T25:00"), "date").0, 241);
        assert_eq!(to_err(bson!("2017-01-01Z junk"), "date").0, 241);
        assert_eq!(to_err(bson!("2017-01-01T00:00:00.Z"), "date").0, 241);
        assert_eq!(to_err(bson!("é017-01-01"), "date").0, 241);
        assert_eq!(to_err(bson!([1]), "string").0, 241);
        assert_eq!(to_err(bson!(1), "minKey").0, 241);
        assert_eq!(to_err(bson!({"a": 1}), "object").0, 241);
        assert_eq!(to_err(bson!([1]), "array").0, 241);
        // Arguments.
        assert_eq!(code(bson!({"$convert": 1}), doc! {}).0, 9);
        assert_eq!(
            code(bson!({"$convert": {"input": 1}}), doc! {}),
            (9, "Missing 'to' parameter to $convert".into())
        );
        assert_eq!(code(bson!({"$convert": {"to": "int"}}), doc! {}).0, 9);
        assert_eq!(
            code(
                bson!({"$convert": {"input": 1, "to": "int", "x": 1}}),
                doc! {}
            ),
            (9, "$convert found an unknown argument: x".into())
        );
        assert_eq!(
            code(
                bson!({"$convert": {"input": 1, "to": "int", "format": "hex"}}),
                doc! {}
            )
            .0,
            115
        );
        assert_eq!(
            code(
                bson!({"$convert": {"input": 1, "to": {"type": "binData"}}}),
                doc! {}
            )
            .0,
            115
        );
        assert_eq!(
            code(bson!({"$convert": {"input": 1, "to": "nope"}}), doc! {}),
            (2, "Unknown type name: nope".into())
        );
        assert_eq!(
            code(bson!({"$convert": {"input": 1, "to": 1.5}}), doc! {}).0,
            9
        );
        assert_eq!(
            code(bson!({"$convert": {"input": 1, "to": 99}}), doc! {}).0,
            9
        );
        assert_eq!(
            code(bson!({"$convert": {"input": 1, "to": 1e300}}), doc! {}).0,
            9
        );
        assert_eq!(
            code(bson!({"$convert": {"input": 1, "to": true}}), doc! {}).0,
            9
        );
        // A bad 'to' is not a conversion failure: onError does not hide it.
        assert_eq!(
            code(
                bson!({"$convert": {"input": 1, "to": "nope", "onError": 0}}),
                doc! {}
            )
            .0,
            2
        );
        assert_eq!(code(bson!({"$toInt": [1, 2]}), doc! {}).0, 16020);
        // Date strings past year 9999 are refused, never a panic.
        assert_eq!(
            code(
                bson!({"$toString": Bson::DateTime(bson::DateTime::from_millis(i64::MAX))}),
                doc! {}
            )
            .0,
            18537
        );
        assert_eq!(
            ev(
                bson!({"$toString": Bson::DateTime(bson::DateTime::from_millis(-1))}),
                doc! {}
            ),
            Some(bson!("1969-12-31T23:59:59.999Z"))
        );
    }

    fn oid_like() -> Bson {
        Bson::ObjectId(ObjectId::parse_str("5ab9cbfa31c2ab715d42129e").unwrap())
    }

    #[test]
    fn uuid_and_binary() {
        let uuid = ev(
            bson!({"$toUUID": "0e3b9063-8abd-4eb3-9f9f-f4c59fd30a60"}),
            doc! {},
        )
        .unwrap();
        let Bson::Binary(b) = &uuid else {
            panic!("{uuid:?}")
        };
        assert_eq!(b.subtype, BinarySubtype::Uuid);
        assert_eq!(b.bytes[0], 0x0e);
        assert_eq!(
            ev(bson!({"$toString": uuid.clone()}), doc! {}),
            Some(bson!("0e3b9063-8abd-4eb3-9f9f-f4c59fd30a60"))
        );
        assert_eq!(ev(bson!({"$toUUID": null}), doc! {}), Some(Bson::Null));
        assert_eq!(code(bson!({"$toUUID": "nope"}), doc! {}).0, 241);
        assert_eq!(code(bson!({"$toUUID": 1}), doc! {}).0, 241);
        let generic = Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: b"hello".to_vec(),
        });
        assert_eq!(
            ev(bson!({"$toString": generic.clone()}), doc! {}),
            Some(bson!("aGVsbG8="))
        );
        assert_eq!(
            code(
                bson!({"$convert": {"input": generic.clone(), "to": "string"}}),
                doc! {}
            )
            .0,
            4341115
        );
        assert_eq!(ev(bson!({"$binarySize": generic}), doc! {}), Some(bson!(5)));
        assert_eq!(ev(bson!({"$binarySize": "héllo"}), doc! {}), Some(bson!(6)));
        assert_eq!(ev(bson!({"$binarySize": null}), doc! {}), Some(Bson::Null));
        assert_eq!(code(bson!({"$binarySize": 1}), doc! {}).0, 51276);
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn inspection_operators() {
        for (v, want) in [
            (bson!(1), true),
            (bson!(1i64), true),
            (bson!(1.5), true),
            (dec("1"), true),
            (bson!("1"), false),
            (bson!(null), false),
        ] {
            assert_eq!(
                ev(bson!({"$isNumber": [v.clone()]}), doc! {}),
                Some(Bson::Boolean(want)),
                "{v}"
            );
        }
        assert_eq!(
            ev(bson!({"$isNumber": "$missing"}), doc! {}),
            Some(bson!(false))
        );
        assert_eq!(
            ev(bson!({"$bsonSize": {"$literal": {}}}), doc! {}),
            Some(bson!(5))
        );
        assert_eq!(
            ev(bson!({"$bsonSize": "$$ROOT"}), doc! {"a": 1}),
            Some(bson!(12))
        );
        assert_eq!(
            ev(bson!({"$bsonSize": "$missing"}), doc! {}),
            Some(Bson::Null)
        );
        assert_eq!(
            code(bson!({"$bsonSize": 1}), doc! {}),
            (
                31393,
                "$bsonSize requires a document input, found: int".into()
            )
        );
        let ts = Bson::Timestamp(Timestamp {
            time: 1622731060,
            increment: 10,
        });
        assert_eq!(
            ev(bson!({"$tsSecond": ts.clone()}), doc! {}),
            Some(bson!(1622731060i64))
        );
        assert_eq!(ev(bson!({"$tsIncrement": ts}), doc! {}), Some(bson!(10i64)));
        assert_eq!(ev(bson!({"$tsSecond": null}), doc! {}), Some(Bson::Null));
        assert_eq!(
            code(bson!({"$tsSecond": 1}), doc! {}),
            (
                5687301,
                " Argument to $tsSecond must be a timestamp, but is int".into()
            )
        );
        assert_eq!(code(bson!({"$tsIncrement": "a"}), doc! {}).0, 5687302);
        // mongod's hash (vectors from its hasher_test.cpp in `hashed`).
        assert_eq!(
            ev(bson!({"$toHashedIndexKey": 42.5}), doc! {}),
            Some(bson!(-944302157085130861i64))
        );
        assert_eq!(
            ev(bson!({"$toHashedIndexKey": "$missing"}), doc! {}),
            ev(bson!({"$toHashedIndexKey": null}), doc! {})
        );
        assert_eq!(
            ev(bson!({"$toHashedIndexKey": ["bar", "baz", "qux"]}), doc! {}),
            Some(bson!(-2938911267422831539i64))
        );
        assert!(Expr::parse(&bson!({"$toInt": "5"})).unwrap().is_constant());
        assert!(
            !Expr::parse(&bson!({"$convert": {"input": "$a", "to": "int"}}))
                .unwrap()
                .is_constant()
        );
    }
}
