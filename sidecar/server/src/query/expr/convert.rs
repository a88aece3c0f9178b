//! Type conversion and inspection: `$convert`, `$toInt` and the other `$to*`, `$isNumber`, `$bsonSize`, `$binarySize`, `$tsSecond`, `$tsIncrement`, `$toHashedIndexKey`.
//!
//! The conversion matrix is mongod 8.0's (`expression_convert.cpp`): which
//! type converts to which, and every failure a ConversionFailure (241)
//! that `onError` replaces. BinData converts to and from strings in the
//! `format` `$convert` names (`bindata`), and to the subtype its `to:
//! {type, subtype}` names; `$toUUID` and `$toString` of a BinData use the
//! formats they imply. Numbers to and from BinData (`byteOrder`) are
//! mongod 8.1's: 8.0 refuses `byteOrder` as an unknown argument, and so
//! does this.

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, oid::ObjectId};

use super::bindata::{self, Format};
use super::math::{exactly, nullish, operands};
use super::number::{self, Digits};
use super::{Expr, Locals, Scope, type_name};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::Budget;
use crate::query::compare::is_number;

/// A parsed operator of this family.
#[derive(Debug, Clone)]
pub enum ConvertExpr {
    Convert {
        input: Box<Expr>,
        to: Box<Expr>,
        format: Option<Box<Expr>>,
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
const UUID_SUBTYPE: i32 = 4;
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

impl Shorthand {
    /// The `to` and `format` of the `$convert` it stands for: `$toString`
    /// shows a BinData in the `auto` format, `$toUUID` reads a string as a
    /// UUID.
    fn convert(self) -> (Target, Option<Format>) {
        match self {
            Shorthand::Type(STRING) => (Target::of(STRING), Some(Format::Auto)),
            Shorthand::Type(code) => (Target::of(code), None),
            Shorthand::Uuid => (
                Target {
                    code: BIN_DATA,
                    subtype: Bson::Int32(UUID_SUBTYPE),
                },
                Some(Format::Uuid),
            ),
        }
    }
}

/// What `$convert` converts to: a BSON type code and, for a BinData, the
/// subtype (`to: {type, subtype}`; 0 when `to` names only the type). The
/// subtype is kept as given and checked only when a BinData is made, as
/// mongod checks it.
#[derive(Debug, Clone)]
struct Target {
    code: i32,
    subtype: Bson,
}

impl Target {
    fn of(code: i32) -> Target {
        Target {
            code,
            subtype: Bson::Int32(0),
        }
    }
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
                format,
                on_error,
                on_null,
            } => {
                let to = ev(to)?;
                let input = ev(input)?;
                let format = match format {
                    Some(f) => ev(f)?,
                    None => None,
                };
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
                // Read only once a conversion is due, as mongod reads it:
                // a bad one beside a null input is no error.
                let format = binary_format(format)?;
                match convert(input.unwrap_or(Bson::Null), &target, format) {
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
                let (target, format) = target.convert();
                convert(input.unwrap_or(Bson::Null), &target, format)?
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
                format,
                on_error,
                on_null,
            } => {
                input.is_constant()
                    && to.is_constant()
                    && format.as_ref().is_none_or(|e| e.is_constant())
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
    let (mut input, mut to, mut format, mut on_error, mut on_null) = (None, None, None, None, None);
    for (k, v) in spec {
        match k.as_str() {
            "input" => input = Some(sub(v)?),
            "to" => to = Some(sub(v)?),
            "format" => format = Some(sub(v)?),
            "onError" => on_error = Some(sub(v)?),
            "onNull" => on_null = Some(sub(v)?),
            // `byteOrder` (numbers to and from BinData) is 8.1's: 8.0
            // names it an unknown argument here.
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
        format,
        on_error,
        on_null,
    })
}

/// `format`'s value; `None` when it is null or missing.
fn binary_format(format: Option<Bson>) -> Result<Option<Format>> {
    match format {
        None | Some(Bson::Null | Bson::Undefined) => Ok(None),
        Some(Bson::String(name)) => Format::from_name(&name).map(Some).ok_or_else(|| {
            CommandError::new(
                ErrorCode::Location4341125,
                format!("Invalid 'format' argument for $convert: {name}"),
            )
        }),
        Some(other) => Err(CommandError::new(
            ErrorCode::Location4341114,
            format!(
                "$convert requires that 'format' be a string, found: {} with value {}",
                type_name(&other),
                super::date::shell(&other)
            ),
        )),
    }
}

/// `to`'s value as a target; `None` when it is null or missing. An object
/// names the type in `type` and the BinData subtype in `subtype`.
fn target_type(to: Option<Bson>) -> Result<Option<Target>> {
    let to = match to {
        v if nullish(&v) => return Ok(None),
        Some(v) => v,
        None => return Ok(None),
    };
    if let Bson::Document(spec) = &to {
        let code = type_code_of(spec.get("type"))?;
        let subtype = spec.get("subtype").cloned().unwrap_or(Bson::Int32(0));
        return Ok(Some(Target { code, subtype }));
    }
    type_code_of(Some(&to)).map(|code| Some(Target::of(code)))
}

/// A type named by its name or its number (`to`, or `to`'s `type`).
fn type_code_of(to: Option<&Bson>) -> Result<i32> {
    let Some(to) = to else {
        return Err(failed_to_parse(
            "$convert's 'to' argument must be a string or number, but is missing".into(),
        ));
    };
    match to {
        Bson::String(name) => TYPES
            .iter()
            .find(|(_, n)| n == name)
            .map(|(c, _)| *c)
            .ok_or_else(|| {
                CommandError::new(ErrorCode::BadValue, format!("Unknown type name: {name}"))
            }),
        v if is_number(v) => {
            let Some(code) = whole_int(v) else {
                return Err(failed_to_parse(
                    "In $convert, numeric 'to' argument is not an integer".into(),
                ));
            };
            if TYPES.iter().any(|(c, _)| *c == code) {
                Ok(code)
            } else {
                Err(failed_to_parse(format!(
                    "In $convert, numeric value for 'to' does not correspond to a BSON type: {code}"
                )))
            }
        }
        other => Err(failed_to_parse(format!(
            "$convert's 'to' argument must be a string or number, but is {}",
            type_name(other)
        ))),
    }
}

/// A number that is a whole int (mongod's `Value::integral`); `None` for
/// a fraction, a non-finite value or one past an int's range.
fn whole_int(v: &Bson) -> Option<i32> {
    let x = match v {
        Bson::Int32(i) => f64::from(*i),
        Bson::Int64(i) => *i as f64,
        Bson::Double(d) => *d,
        Bson::Decimal128(d) => number::decimal_to_f64(d),
        _ => f64::NAN,
    };
    (x.fract() == 0.0 && x.is_finite() && x.abs() <= f64::from(i32::MAX)).then_some(x as i32)
}

/// The BinData subtype a `subtype` names: a whole number, 0 to 8 (the
/// defined subtypes) or 128 to 255 (user defined). Not a ConversionFailure:
/// `onError` does not hide it.
fn binary_subtype(subtype: &Bson) -> Result<BinarySubtype> {
    if !is_number(subtype) {
        return Err(CommandError::new(
            ErrorCode::Location4341108,
            format!(
                "For BinData, $convert's 'subtype' argument must be a number, but is {}",
                type_name(subtype)
            ),
        ));
    }
    let code = whole_int(subtype).ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location4341106,
            "In $convert, numeric 'subtype' argument is not an integer",
        )
    })?;
    match u8::try_from(code) {
        Ok(byte @ (0..=8 | 128..=255)) => Ok(BinarySubtype::from(byte)),
        _ => Err(CommandError::new(
            ErrorCode::Location4341107,
            format!(
                "In $convert, numeric value for 'subtype' does not correspond to a BinData type: {code}"
            ),
        )),
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
/// conversion table; `format` is how a BinData is shown as a string or
/// read from one (ignored by the other conversions, as mongod's).
fn convert(v: Bson, target: &Target, format: Option<Format>) -> Result<Bson> {
    let Target {
        code: target,
        subtype,
    } = target;
    let target = *target;
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
            Bson::Binary(b) => {
                let format = format.ok_or_else(|| format_required(&v, target))?;
                binary_to_string(b, format)?
            }
            _ => return Err(unsupported(&v, target)),
        }),
        BIN_DATA => match &v {
            Bson::Binary(b) => {
                if b.subtype != binary_subtype(subtype)? {
                    return Err(failure(
                        "Conversions between different BinData subtypes are not supported",
                    ));
                }
                v
            }
            Bson::String(s) => {
                let format = format.ok_or_else(|| format_required(&v, target))?;
                string_to_binary(s, format, subtype)?
            }
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

/// A BinData as a string in `format`; what it cannot show is a
/// ConversionFailure naming it.
fn binary_to_string(b: &Binary, format: Format) -> Result<String> {
    // Hex doubles a BinData: refused before it is built when too large.
    Budget::value("$convert").reserve(bindata::encoded_len(b, format))?;
    bindata::encode(b, format).map_err(|reason| {
        failure(format!(
            "Failed to convert '{}' to string {NO_ON_ERROR}: {reason}",
            bindata::shown(b)
        ))
    })
}

/// A string read in `format` as a BinData of `subtype`; only `uuid` reads
/// the UUID subtype (4), and it reads no other.
fn string_to_binary(s: &str, format: Format, subtype: &Bson) -> Result<Bson> {
    let subtype = binary_subtype(subtype)?;
    let bytes = if (format == Format::Uuid) != (subtype == BinarySubtype::Uuid) {
        Err("Only the 'uuid' format is allowed with the UUID subtype".to_owned())
    } else {
        bindata::decode(s, format)
    };
    match bytes {
        Ok(bytes) => Ok(Bson::Binary(Binary { subtype, bytes })),
        Err(reason) => Err(failure(format!(
            "Failed to parse BinData '{s}' {NO_ON_ERROR}: {reason}"
        ))),
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
        // `byteOrder` is mongod 8.1's; 8.0 does not know it.
        assert_eq!(
            code(
                bson!({"$convert": {"input": 1, "to": "binData", "byteOrder": "little"}}),
                doc! {}
            ),
            (9, "$convert found an unknown argument: byteOrder".into())
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
        assert_eq!(
            ev(bson!({"$binarySize": generic.clone()}), doc! {}),
            Some(bson!(5))
        );
        assert_eq!(
            code(bson!({"$toUUID": generic.clone()}), doc! {}),
            (
                241,
                "Conversions between different BinData subtypes are not supported".into()
            ),
            "a generic BinData is no UUID"
        );
        assert_eq!(ev(bson!({"$binarySize": "héllo"}), doc! {}), Some(bson!(6)));
        assert_eq!(ev(bson!({"$binarySize": null}), doc! {}), Some(Bson::Null));
        assert_eq!(code(bson!({"$binarySize": 1}), doc! {}).0, 51276);
    }

    fn bin(subtype: u8, bytes: &[u8]) -> Bson {
        Bson::Binary(Binary {
            subtype: BinarySubtype::from(subtype),
            bytes: bytes.to_vec(),
        })
    }

    fn convert_with(input: Bson, to: Bson, format: Bson) -> Result<Option<Bson>> {
        Expr::parse(&bson!({"$convert": {"input": input, "to": to, "format": format}}))?
            .eval(&doc! {})
    }

    fn ok(input: Bson, to: Bson, format: Bson) -> Bson {
        convert_with(input, to, format).unwrap().unwrap()
    }

    fn fails(input: Bson, to: Bson, format: Bson) -> (i32, String) {
        let e = convert_with(input, to, format).unwrap_err();
        (e.code.code(), e.message)
    }

    const UUID_TEXT: &str = "0e3b9063-8abd-4eb3-9f9f-f4c59fd30a60";

    fn uuid() -> Bson {
        let bytes = (0..16)
            .map(|i| u8::from_str_radix(&UUID_TEXT.replace('-', "")[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<u8>>();
        bin(4, &bytes)
    }

    #[test]
    fn binary_to_and_from_strings() {
        let hello = bin(0, b"hello");
        for (format, text) in [
            ("base64", "aGVsbG8="),
            ("base64url", "aGVsbG8"),
            ("hex", "68656C6C6F"),
            ("utf8", "hello"),
            ("auto", "aGVsbG8="),
        ] {
            assert_eq!(
                ok(hello.clone(), bson!("string"), bson!(format)),
                bson!(text),
                "{format}"
            );
            if format != "auto" {
                assert_eq!(
                    ok(bson!(text), bson!("binData"), bson!(format)),
                    hello,
                    "{format}"
                );
                // `to` by number, and as an object naming subtype 0.
                assert_eq!(ok(bson!(text), bson!(5), bson!(format)), hello);
                assert_eq!(
                    ok(bson!(text), bson!({"type": "binData"}), bson!(format)),
                    hello
                );
            }
        }
        // Any subtype but the UUID one, by the object form of `to`.
        for subtype in [0, 1, 2, 3, 5, 6, 7, 8, 128, 200, 255] {
            assert_eq!(
                ok(
                    bson!("aGk="),
                    bson!({"type": "binData", "subtype": subtype}),
                    bson!("base64")
                ),
                bin(subtype as u8, b"hi"),
                "{subtype}"
            );
        }
        assert_eq!(
            ok(
                bson!("6869"),
                bson!({"type": 5, "subtype": 128.0}),
                bson!("hex")
            ),
            bin(128, b"hi")
        );
        assert_eq!(
            ok(
                bson!("hi"),
                bson!({"type": "binData", "subtype": 6i64}),
                bson!("utf8")
            ),
            bin(6, b"hi")
        );
        // UUIDs: the `uuid` format is the UUID subtype's, and only its.
        let to_uuid = bson!({"type": "binData", "subtype": 4});
        assert_eq!(ok(bson!(UUID_TEXT), to_uuid.clone(), bson!("uuid")), uuid());
        assert_eq!(ok(uuid(), bson!("string"), bson!("uuid")), bson!(UUID_TEXT));
        assert_eq!(ok(uuid(), bson!("string"), bson!("auto")), bson!(UUID_TEXT));
        assert_eq!(
            ok(uuid(), bson!("string"), bson!("hex")),
            bson!("0E3B90638ABD4EB39F9FF4C59FD30A60")
        );
        let only_uuid = "Only the 'uuid' format is allowed with the UUID subtype";
        assert_eq!(
            fails(bson!(UUID_TEXT), bson!("binData"), bson!("uuid")),
            (
                241,
                format!(
                    "Failed to parse BinData '{UUID_TEXT}' in $convert with no onError value: {only_uuid}"
                )
            )
        );
        assert_eq!(
            fails(bson!("aGk="), to_uuid.clone(), bson!("base64")),
            (
                241,
                format!(
                    "Failed to parse BinData 'aGk=' in $convert with no onError value: {only_uuid}"
                )
            )
        );
        assert_eq!(
            fails(bin(0, &[0; 16]), bson!("string"), bson!("uuid")),
            (
                241,
                "Failed to convert 'BinData(0, 00000000000000000000000000000000)' to string in $convert with no onError value: BinData does not represent a valid UUID".into()
            )
        );
        // BinData to BinData: only to its own subtype.
        assert_eq!(ok(uuid(), to_uuid.clone(), Bson::Null), uuid());
        assert_eq!(ok(hello.clone(), bson!("binData"), Bson::Null), hello);
        assert_eq!(
            fails(hello.clone(), to_uuid.clone(), Bson::Null),
            (
                241,
                "Conversions between different BinData subtypes are not supported".into()
            )
        );
        assert_eq!(fails(uuid(), bson!("binData"), Bson::Null).0, 241);
        // `format` is ignored where no BinData is shown or read.
        assert_eq!(ok(bson!(5), bson!("string"), bson!("hex")), bson!("5"));
        assert_eq!(ok(bson!("7"), bson!("int"), bson!("uuid")), bson!(7));
        assert_eq!(
            ok(
                hello.clone(),
                bson!({"type": "bool", "subtype": "x"}),
                bson!("hex")
            ),
            bson!(true)
        );
        // $toString and $toUUID imply their formats.
        assert_eq!(
            ev(bson!({"$toString": hello.clone()}), doc! {}),
            Some(bson!("aGVsbG8="))
        );
        assert_eq!(
            ev(bson!({"$toUUID": UUID_TEXT.to_uppercase()}), doc! {}),
            Some(uuid())
        );
        assert_eq!(ev(bson!({"$toUUID": uuid()}), doc! {}), Some(uuid()));
    }

    /// The conversions of mongod 8.0's `expression_convert_bindata.js`.
    #[test]
    fn mongod_bindata_conversion_vectors() {
        let bytes = bindata::decode("867DEE52C331484E92D1C56479B8E67E", Format::Hex).unwrap();
        let (uuid, generic) = (bin(4, &bytes), bin(0, &bytes));
        let text = "867dee52-c331-484e-92d1-c56479b8e67e";
        let sub = |n: i32| bson!({"type": "binData", "subtype": n});
        for (input, to, format, want) in [
            (
                bson!(1.9),
                bson!({"type": "double"}),
                Bson::Null,
                bson!(1.9),
            ),
            (
                bson!(1.9),
                bson!({"type": "string"}),
                Bson::Null,
                bson!("1.9"),
            ),
            (bson!(1.9), bson!({"type": "int"}), Bson::Null, bson!(1)),
            (bson!(text), sub(4), bson!("uuid"), uuid.clone()),
            (
                bson!("hn3uUsMxSE6S0cVkebjmfg=="),
                sub(0),
                bson!("base64"),
                generic.clone(),
            ),
            (
                bson!("hn3uUsMxSE6S0cVkebjmfg"),
                sub(0),
                bson!("base64url"),
                generic.clone(),
            ),
            (
                bson!("867DEE52C331484E92D1C56479B8E67E"),
                sub(0),
                bson!("hex"),
                generic.clone(),
            ),
            (
                bson!("🙂😎"),
                sub(0),
                bson!("utf8"),
                bin(0, "🙂😎".as_bytes()),
            ),
            (uuid.clone(), bson!("string"), bson!("uuid"), bson!(text)),
            (uuid.clone(), bson!("string"), bson!("auto"), bson!(text)),
            (
                generic.clone(),
                bson!("string"),
                bson!("auto"),
                bson!("hn3uUsMxSE6S0cVkebjmfg=="),
            ),
            (
                uuid.clone(),
                bson!("string"),
                bson!("base64"),
                bson!("hn3uUsMxSE6S0cVkebjmfg=="),
            ),
            (
                generic.clone(),
                bson!("string"),
                bson!("base64url"),
                bson!("hn3uUsMxSE6S0cVkebjmfg"),
            ),
            (
                generic.clone(),
                bson!("string"),
                bson!("hex"),
                bson!("867DEE52C331484E92D1C56479B8E67E"),
            ),
            (
                bin(0, "🙂😎".as_bytes()),
                bson!("string"),
                bson!("utf8"),
                bson!("🙂😎"),
            ),
            (uuid.clone(), sub(4), Bson::Null, uuid.clone()),
            (generic.clone(), sub(0), Bson::Null, generic.clone()),
            (
                generic.clone(),
                bson!("binData"),
                Bson::Null,
                generic.clone(),
            ),
        ] {
            assert_eq!(
                ok(input.clone(), to.clone(), format),
                want,
                "{input} to {to}"
            );
        }
        let oid = Bson::ObjectId(ObjectId::parse_str("0123456789abcdef01234567").unwrap());
        for (input, to, format) in [
            (oid.clone(), sub(4), Bson::Null),
            (oid, sub(0), Bson::Null),
            (bson!(text), sub(0), bson!("uuid")),
            (bson!("867dee--52-c331-484e-"), sub(4), bson!("uuid")),
            (bson!("867dee--52-c331-484e-"), sub(0), bson!("base64")),
            (bson!("867dee--52-c331-484e-"), sub(0), bson!("base64url")),
            (bson!("867dee--52-c331-484e-zx"), sub(0), bson!("hex")),
            (bson!(text), sub(0), bson!("auto")),
            (bson!("hn3uUsMxSE6S0cVkebjmfg=="), sub(4), bson!("base64")),
            (bson!("hn3uUsMxSE6S0cVkebjmfg=="), sub(4), bson!("auto")),
            (uuid.clone(), sub(0), Bson::Null),
            (generic.clone(), sub(4), Bson::Null),
            (uuid, sub(255), Bson::Null),
            (bin(255, &bytes), sub(0), Bson::Null),
        ] {
            assert_eq!(
                fails(input.clone(), to.clone(), format).0,
                241,
                "{input} to {to}"
            );
        }
        for subtype in [-1, 1000, 256, 127] {
            assert_eq!(
                fails(
                    bson!("hn3uUsMxSE6S0cVkebjmfg=="),
                    sub(subtype),
                    bson!("base64")
                )
                .0,
                4341107
            );
        }
        assert_eq!(fails(bson!(123), bson!({"type": -2}), Bson::Null).0, 9);
        assert_eq!(fails(bson!(123), bson!(-2), Bson::Null).0, 9);
    }

    #[test]
    fn binary_conversion_failures() {
        let parse_failure = |input: &str, reason: &str| {
            (
                241,
                format!(
                    "Failed to parse BinData '{input}' in $convert with no onError value: {reason}"
                ),
            )
        };
        for (input, format, reason) in [
            ("abc", "base64", "invalid base64"),
            ("a", "base64url", "invalid base64"),
            ("ab*d", "base64", "Invalid base64 character"),
            ("ab-_", "base64", "Invalid base64 character"),
            ("ab+/", "base64url", "Invalid base64 character"),
            ("abc", "hex", "Hex blob with odd digit count"),
            ("zz", "hex", "The character \\x7a failed to parse from hex."),
            ("nope", "auto", "Invalid format 'auto'"),
        ] {
            assert_eq!(
                fails(bson!(input), bson!("binData"), bson!(format)),
                parse_failure(input, reason),
                "{input} {format}"
            );
            // A conversion failure: `onError` replaces it.
            assert_eq!(
                ev(
                    bson!({"$convert": {"input": input, "to": "binData", "format": format, "onError": "bad"}}),
                    doc! {}
                ),
                Some(bson!("bad"))
            );
        }
        assert_eq!(
            code(bson!({"$toUUID": "0e3b9063"}), doc! {}),
            parse_failure("0e3b9063", "Invalid UUID string: 0e3b9063")
        );
        assert_eq!(
            fails(bin(0, b"\xe2\x82"), bson!("string"), bson!("utf8")),
            (
                241,
                "Failed to convert 'BinData(0, E282)' to string in $convert with no onError value: BinData does not represent a valid UTF-8 string".into()
            )
        );
        // Without a format, string and BinData do not meet (not a
        // conversion failure: `onError` does not hide it).
        for (input, to, from_name, to_name) in [
            (bson!("aGk="), bson!("binData"), "string", "binData"),
            (bin(0, b"hi"), bson!("string"), "binData", "string"),
        ] {
            assert_eq!(
                code(
                    bson!({"$convert": {"input": input, "to": to, "onError": 0}}),
                    doc! {}
                ),
                (
                    4341115,
                    format!(
                        "Format must be speficied when converting from '{from_name}' to '{to_name}'"
                    )
                )
            );
        }
        assert_eq!(
            fails(bson!("aGk="), bson!("binData"), Bson::Null).0,
            4341115,
            "a null format is none"
        );
    }

    #[test]
    fn binary_argument_errors() {
        let to_sub = |subtype: Bson| bson!({"type": "binData", "subtype": subtype});
        // Subtypes: checked when a BinData is made, never hidden by onError.
        for (subtype, want) in [
            (
                bson!("x"),
                (
                    4341108,
                    "For BinData, $convert's 'subtype' argument must be a number, but is string",
                ),
            ),
            (
                Bson::Null,
                (
                    4341108,
                    "For BinData, $convert's 'subtype' argument must be a number, but is null",
                ),
            ),
            (
                bson!([4]),
                (
                    4341108,
                    "For BinData, $convert's 'subtype' argument must be a number, but is array",
                ),
            ),
            (
                bson!(1.5),
                (
                    4341106,
                    "In $convert, numeric 'subtype' argument is not an integer",
                ),
            ),
            (
                bson!(1e10),
                (
                    4341106,
                    "In $convert, numeric 'subtype' argument is not an integer",
                ),
            ),
            (
                bson!(f64::NAN),
                (
                    4341106,
                    "In $convert, numeric 'subtype' argument is not an integer",
                ),
            ),
            (
                bson!(i64::MAX),
                (
                    4341106,
                    "In $convert, numeric 'subtype' argument is not an integer",
                ),
            ),
            (
                bson!(9),
                (
                    4341107,
                    "In $convert, numeric value for 'subtype' does not correspond to a BinData type: 9",
                ),
            ),
            (
                bson!(127),
                (
                    4341107,
                    "In $convert, numeric value for 'subtype' does not correspond to a BinData type: 127",
                ),
            ),
            (
                bson!(256),
                (
                    4341107,
                    "In $convert, numeric value for 'subtype' does not correspond to a BinData type: 256",
                ),
            ),
            (
                bson!(-1),
                (
                    4341107,
                    "In $convert, numeric value for 'subtype' does not correspond to a BinData type: -1",
                ),
            ),
        ] {
            let want = (want.0, want.1.to_owned());
            assert_eq!(
                fails(bson!("aGk="), to_sub(subtype.clone()), bson!("base64")),
                want
            );
            assert_eq!(
                fails(bin(0, b"hi"), to_sub(subtype.clone()), Bson::Null),
                want
            );
            assert_eq!(
                code(
                    bson!({"$convert": {"input": "aGk=", "to": to_sub(subtype.clone()), "format": "base64", "onError": 0}}),
                    doc! {}
                ),
                want
            );
            // No BinData made, no subtype read.
            assert_eq!(
                fails(bson!(1), to_sub(subtype.clone()), Bson::Null),
                (
                    241,
                    "Unsupported conversion from int to binData in $convert with no onError value"
                        .into()
                )
            );
        }
        // `to` as an object: its `type` as `to` itself is read.
        assert_eq!(
            code(bson!({"$convert": {"input": 1, "to": {}}}), doc! {}),
            (
                9,
                "$convert's 'to' argument must be a string or number, but is missing".into()
            )
        );
        assert_eq!(
            code(
                bson!({"$convert": {"input": 1, "to": {"subtype": 0}}}),
                doc! {}
            )
            .0,
            9
        );
        assert_eq!(
            code(
                bson!({"$convert": {"input": 1, "to": {"type": true}}}),
                doc! {}
            ),
            (
                9,
                "$convert's 'to' argument must be a string or number, but is bool".into()
            )
        );
        assert_eq!(
            code(
                bson!({"$convert": {"input": 1, "to": {"type": "nope"}}}),
                doc! {}
            ),
            (2, "Unknown type name: nope".into())
        );
        assert_eq!(
            code(
                bson!({"$convert": {"input": 1, "to": {"type": 5.5}}}),
                doc! {}
            )
            .0,
            9
        );
        assert_eq!(
            code(
                bson!({"$convert": {"input": 1, "to": {"type": {"type": "int"}}}}),
                doc! {}
            )
            .0,
            9
        );
        assert_eq!(ok(bson!("5"), bson!({"type": "int"}), Bson::Null), bson!(5));
        assert_eq!(
            fails(bson!(1), bson!({"type": "binData"}), Bson::Null),
            (
                241,
                "Unsupported conversion from int to binData in $convert with no onError value"
                    .into()
            )
        );
        // `format`: a string naming a format, read once a conversion is due.
        assert_eq!(
            fails(bin(0, b"hi"), bson!("string"), bson!(1)),
            (
                4341114,
                "$convert requires that 'format' be a string, found: int with value 1".into()
            )
        );
        assert_eq!(
            fails(bin(0, b"hi"), bson!("string"), bson!({"f": "hex"})),
            (4341114, "$convert requires that 'format' be a string, found: object with value { f: \"hex\" }".into())
        );
        assert_eq!(
            fails(bson!(1), bson!("int"), bson!("HEX")),
            (
                4341125,
                "Invalid 'format' argument for $convert: HEX".into()
            )
        );
        assert_eq!(
            code(
                bson!({"$convert": {"input": "aGk=", "to": "binData", "format": "nope", "onError": 0}}),
                doc! {}
            )
            .0,
            4341125
        );
        assert_eq!(ok(Bson::Null, bson!("string"), bson!(1)), Bson::Null);
        assert_eq!(ok(bson!(1), Bson::Null, bson!("nope")), Bson::Null);
        assert_eq!(
            ev(
                bson!({"$convert": {"input": "$missing", "to": "binData", "format": "nope", "onNull": "none"}}),
                doc! {}
            ),
            Some(bson!("none"))
        );
        // `format` and `to` from the document, and nested conversions.
        assert_eq!(
            ev(
                bson!({"$convert": {
                    "input": {"$convert": {"input": "$s", "to": "$t", "format": "$f"}},
                    "to": "string",
                    "format": "base64url",
                }}),
                doc! {"s": "fbff", "t": {"type": "binData", "subtype": 128}, "f": "hex"}
            ),
            Some(bson!("-_8"))
        );
        assert!(
            Expr::parse(&bson!({"$convert": {"input": "a", "to": "binData", "format": "utf8"}}))
                .unwrap()
                .is_constant()
        );
        assert!(
            !Expr::parse(&bson!({"$convert": {"input": "a", "to": "binData", "format": "$f"}}))
                .unwrap()
                .is_constant()
        );
    }

    #[test]
    fn huge_binary_strings_are_charged() {
        // Hex doubles 9 MB to 18 MB: past the built-value budget, refused
        // before it is built, and not a conversion failure.
        let big = bin(0, &vec![0xab; 9 * 1024 * 1024]);
        let (code, message) = fails(big.clone(), bson!("string"), bson!("hex"));
        assert_eq!(code, 146, "{message}");
        // base64 of the same fits, and reads back.
        let text = ok(big.clone(), bson!("string"), bson!("base64"));
        assert_eq!(ok(text, bson!("binData"), bson!("base64")), big);
        // A 16 MB string that is no base64 fails as one, its length first.
        let junk = "*".repeat(16 * 1024 * 1024 + 1);
        let (code, message) = fails(bson!(junk), bson!("binData"), bson!("base64"));
        assert_eq!(code, 241);
        assert!(message.ends_with("' in $convert with no onError value: invalid base64"));
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
