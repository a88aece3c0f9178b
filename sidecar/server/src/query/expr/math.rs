//! Arithmetic, trigonometry, logarithms, rounding and bitwise operators.
//!
//! `$add`, `$subtract` and `$multiply` are exact and typed as mongod types
//! them ([`step`]): ints stay an int while the result fits (else a long),
//! any long makes a long computed in 64-bit integers, a long overflow
//! becomes a double, any double a double, any decimal a decimal computed
//! in Decimal128 ([`super::decimal`]); `$divide` answers a double, or a
//! decimal when either side is one; `$mod` keeps the widest type, exactly;
//! `$abs` keeps its argument's type.
//!
//! Result types follow mongod: an int or long argument gives a double for
//! the transcendental functions, a decimal gives a decimal, `$ceil`/`$floor`
//! and `$round`/`$trunc` keep integers integers, `$pow` of integers stays
//! an integer while the result fits a long. Decimal arguments of the
//! transcendental functions and `$pow` are computed through a double and
//! answered as its shortest decimal (mongod computes them in decimal to 34
//! digits, so the digits past a double's can differ).

use bson::{Bson, Decimal128, Document};

use super::decimal;
use super::number::{self, Digits, Rounding};
use super::{Expr, Locals, Scope, type_name};
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::compare::is_number;

/// A parsed operator of this family.
#[derive(Debug, Clone)]
pub enum MathExpr {
    /// `$add` (numbers and at most one date) and `$multiply`.
    Add(Vec<Expr>),
    Multiply(Vec<Expr>),
    Subtract(Expr, Expr),
    Divide(Expr, Expr),
    Mod(Expr, Expr),
    /// One numeric argument: trigonometry, logarithms, `$sqrt`, `$ceil`, ...
    Unary(Unary, Expr),
    Atan2(Expr, Expr),
    /// `$log`: value, base.
    Log(Expr, Expr),
    /// `$pow`: base, exponent.
    Pow(Expr, Expr),
    /// `$round` (`truncate: false`) and `$trunc`: value and decimal place.
    Round {
        truncate: bool,
        value: Expr,
        place: Option<Expr>,
    },
    Bitwise(BitOp, Vec<Expr>),
    Rand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    Acos,
    Acosh,
    Asin,
    Asinh,
    Atan,
    Atanh,
    Cos,
    Cosh,
    Sin,
    Sinh,
    Tan,
    Tanh,
    DegreesToRadians,
    RadiansToDegrees,
    Ceil,
    Floor,
    Exp,
    Ln,
    Log10,
    Sqrt,
    BitNot,
    Abs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOp {
    And,
    Or,
    Xor,
}

const UNARY: &[(&str, Unary)] = &[
    ("$acos", Unary::Acos),
    ("$acosh", Unary::Acosh),
    ("$asin", Unary::Asin),
    ("$asinh", Unary::Asinh),
    ("$atan", Unary::Atan),
    ("$atanh", Unary::Atanh),
    ("$cos", Unary::Cos),
    ("$cosh", Unary::Cosh),
    ("$sin", Unary::Sin),
    ("$sinh", Unary::Sinh),
    ("$tan", Unary::Tan),
    ("$tanh", Unary::Tanh),
    ("$degreesToRadians", Unary::DegreesToRadians),
    ("$radiansToDegrees", Unary::RadiansToDegrees),
    ("$ceil", Unary::Ceil),
    ("$floor", Unary::Floor),
    ("$exp", Unary::Exp),
    ("$ln", Unary::Ln),
    ("$log10", Unary::Log10),
    ("$sqrt", Unary::Sqrt),
    ("$bitNot", Unary::BitNot),
    ("$abs", Unary::Abs),
];

impl Unary {
    fn name(self) -> &'static str {
        UNARY
            .iter()
            .find(|(_, u)| *u == self)
            .map_or("?", |(n, _)| n)
    }

    /// The domain of a bounded trigonometric function: lower and upper
    /// bound, and whether the bounds are included.
    fn bounds(self) -> Option<(f64, f64, bool)> {
        match self {
            Unary::Acos | Unary::Asin | Unary::Atanh => Some((-1.0, 1.0, true)),
            Unary::Acosh => Some((1.0, f64::INFINITY, true)),
            Unary::Cos | Unary::Sin | Unary::Tan => Some((f64::NEG_INFINITY, f64::INFINITY, false)),
            _ => None,
        }
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            Unary::Acos => x.acos(),
            Unary::Acosh => x.acosh(),
            Unary::Asin => x.asin(),
            Unary::Asinh => x.asinh(),
            Unary::Atan => x.atan(),
            Unary::Atanh => x.atanh(),
            Unary::Cos => x.cos(),
            Unary::Cosh => x.cosh(),
            Unary::Sin => x.sin(),
            Unary::Sinh => x.sinh(),
            Unary::Tan => x.tan(),
            Unary::Tanh => x.tanh(),
            Unary::DegreesToRadians => x * (std::f64::consts::PI / 180.0),
            Unary::RadiansToDegrees => x * (180.0 / std::f64::consts::PI),
            Unary::Exp => x.exp(),
            Unary::Ln => x.ln(),
            Unary::Log10 => x.log10(),
            Unary::Sqrt => x.sqrt(),
            Unary::Ceil => x.ceil(),
            Unary::Floor => x.floor(),
            Unary::BitNot => x,
            Unary::Abs => x.abs(),
        }
    }
}

/// An operator's arguments: the elements of an array, or the one value
/// (`{$sqrt: 4}` is `{$sqrt: [4]}`).
pub(super) fn operands(arg: &Bson, scope: Scope) -> Result<Vec<Expr>> {
    match arg {
        Bson::Array(items) => items
            .iter()
            .map(|v| Expr::parse_in(v, scope.nested()))
            .collect(),
        other => Ok(vec![Expr::parse_in(other, scope.nested())?]),
    }
}

/// mongod's arity check of a fixed-arity operator (16020).
pub(super) fn exactly<const N: usize>(name: &str, args: Vec<Expr>) -> Result<[Expr; N]> {
    let passed = args.len();
    args.try_into().map_err(|_| {
        CommandError::new(
            ErrorCode::Location16020,
            format!("Expression {name} takes exactly {N} arguments. {passed} were passed in."),
        )
    })
}

/// Null, undefined or missing: what most operators answer null for.
pub(super) fn nullish(v: &Option<Bson>) -> bool {
    matches!(v, None | Some(Bson::Null) | Some(Bson::Undefined))
}

/// A number as mongod prints it in a message: doubles (and integers made
/// doubles) as `%g`, decimals in full.
fn show(v: &Bson, x: f64) -> String {
    match v {
        Bson::Decimal128(d) => d.to_string(),
        _ => number::format_g(x),
    }
}

fn to_f64(v: &Bson) -> f64 {
    match v {
        Bson::Int32(i) => f64::from(*i),
        Bson::Int64(i) => *i as f64,
        Bson::Double(d) => *d,
        Bson::Decimal128(d) => number::decimal_to_f64(d),
        _ => f64::NAN,
    }
}

fn error(code: ErrorCode, message: String) -> CommandError {
    CommandError::new(code, message)
}

impl MathExpr {
    /// Parses `{name: arg}`; `None` when `name` is not of this family.
    pub(super) fn parse(name: &str, arg: &Bson, scope: Scope) -> Result<Option<MathExpr>> {
        if let Some((_, op)) = UNARY.iter().find(|(n, _)| *n == name) {
            let [a] = exactly(name, operands(arg, scope)?)?;
            return Ok(Some(MathExpr::Unary(*op, a)));
        }
        Ok(Some(match name {
            "$add" => MathExpr::Add(operands(arg, scope)?),
            "$multiply" => MathExpr::Multiply(operands(arg, scope)?),
            "$subtract" => {
                let [a, b] = exactly(name, operands(arg, scope)?)?;
                MathExpr::Subtract(a, b)
            }
            "$divide" => {
                let [a, b] = exactly(name, operands(arg, scope)?)?;
                MathExpr::Divide(a, b)
            }
            "$mod" => {
                let [a, b] = exactly(name, operands(arg, scope)?)?;
                MathExpr::Mod(a, b)
            }
            "$atan2" | "$log" | "$pow" => {
                let [a, b] = exactly(name, operands(arg, scope)?)?;
                match name {
                    "$atan2" => MathExpr::Atan2(a, b),
                    "$log" => MathExpr::Log(a, b),
                    _ => MathExpr::Pow(a, b),
                }
            }
            "$round" | "$trunc" => {
                let mut args = operands(arg, scope)?;
                if !(1..=2).contains(&args.len()) {
                    return Err(error(
                        ErrorCode::Location28667,
                        format!(
                            "Expression {name} takes at least 1 arguments, and at most 2, but {} were passed in.",
                            args.len()
                        ),
                    ));
                }
                let place = if args.len() == 2 { args.pop() } else { None };
                let value = args.pop().ok_or_else(|| {
                    error(ErrorCode::Location28667, format!("{name} needs a value"))
                })?;
                MathExpr::Round {
                    truncate: name == "$trunc",
                    value,
                    place,
                }
            }
            "$bitAnd" | "$bitOr" | "$bitXor" => {
                let op = match name {
                    "$bitAnd" => BitOp::And,
                    "$bitOr" => BitOp::Or,
                    _ => BitOp::Xor,
                };
                MathExpr::Bitwise(op, operands(arg, scope)?)
            }
            "$rand" => match arg {
                Bson::Document(d) if d.is_empty() => MathExpr::Rand,
                _ => {
                    return Err(error(
                        ErrorCode::Location3040501,
                        "$rand does not currently accept arguments".into(),
                    ));
                }
            },
            _ => return Ok(None),
        }))
    }

    pub(super) fn eval(&self, doc: &Document, locals: Locals) -> Result<Option<Bson>> {
        let ev = |e: &Expr| e.eval_in(doc, locals);
        Ok(Some(match self {
            MathExpr::Add(args) => add(args.iter().map(ev))?,
            MathExpr::Multiply(args) => multiply(args.iter().map(ev))?,
            MathExpr::Subtract(a, b) => subtract(ev(a)?, ev(b)?)?,
            MathExpr::Divide(a, b) => divide(ev(a)?, ev(b)?)?,
            MathExpr::Mod(a, b) => modulo(ev(a)?, ev(b)?)?,
            MathExpr::Unary(op, a) => {
                let v = ev(a)?;
                if nullish(&v) {
                    return Ok(Some(Bson::Null));
                }
                let v = v.unwrap_or(Bson::Null);
                if !is_number(&v) {
                    return Err(error(
                        ErrorCode::Location28765,
                        format!(
                            "{} only supports numeric types, not {}",
                            op.name(),
                            type_name(&v)
                        ),
                    ));
                }
                unary(*op, v)?
            }
            MathExpr::Atan2(a, b) => {
                let y = ev(a)?;
                if nullish(&y) {
                    return Ok(Some(Bson::Null));
                }
                let y = numeric(y, ErrorCode::Location51044, "$atan2")?;
                let x = ev(b)?;
                if nullish(&x) {
                    return Ok(Some(Bson::Null));
                }
                let x = numeric(x, ErrorCode::Location51045, "$atan2")?;
                let r = to_f64(&y).atan2(to_f64(&x));
                if is_decimal(&y) || is_decimal(&x) {
                    decimal_via_f64(r)
                } else {
                    Bson::Double(r)
                }
            }
            MathExpr::Log(a, b) => {
                let (value, base) = (ev(a)?, ev(b)?);
                if nullish(&value) || nullish(&base) {
                    return Ok(Some(Bson::Null));
                }
                let (value, base) = (value.unwrap_or(Bson::Null), base.unwrap_or(Bson::Null));
                if !is_number(&value) {
                    return Err(error(
                        ErrorCode::Location28756,
                        format!("$log's argument must be numeric, not {}", type_name(&value)),
                    ));
                }
                if !is_number(&base) {
                    return Err(error(
                        ErrorCode::Location28757,
                        format!("$log's base must be numeric, not {}", type_name(&base)),
                    ));
                }
                let (x, b) = (to_f64(&value), to_f64(&base));
                if !(x > 0.0 || x.is_nan()) {
                    return Err(error(
                        ErrorCode::Location28758,
                        format!(
                            "$log's argument must be a positive number, but is {}",
                            number::format_g(x)
                        ),
                    ));
                }
                if !((b > 0.0 && b != 1.0) || b.is_nan()) {
                    return Err(error(
                        ErrorCode::Location28759,
                        format!(
                            "$log's base must be a positive number not equal to 1, but is {}",
                            number::format_g(b)
                        ),
                    ));
                }
                let r = x.ln() / b.ln();
                if is_decimal(&value) || is_decimal(&base) {
                    decimal_via_f64(r)
                } else {
                    Bson::Double(r)
                }
            }
            MathExpr::Pow(a, b) => {
                let (base, exponent) = (ev(a)?, ev(b)?);
                if nullish(&base) || nullish(&exponent) {
                    return Ok(Some(Bson::Null));
                }
                pow(base.unwrap_or(Bson::Null), exponent.unwrap_or(Bson::Null))?
            }
            MathExpr::Round {
                truncate,
                value,
                place,
            } => {
                let name = if *truncate { "$trunc" } else { "$round" };
                let v = ev(value)?;
                if nullish(&v) {
                    return Ok(Some(Bson::Null));
                }
                let v = v.unwrap_or(Bson::Null);
                if !is_number(&v) {
                    return Err(error(
                        ErrorCode::Location51081,
                        format!("{name} only supports numeric types, not {}", type_name(&v)),
                    ));
                }
                let place = match place {
                    None => 0,
                    Some(p) => {
                        let p = ev(p)?;
                        if nullish(&p) {
                            return Ok(Some(Bson::Null));
                        }
                        decimal_place(name, &p.unwrap_or(Bson::Null))?
                    }
                };
                let rounding = if *truncate {
                    Rounding::TowardZero
                } else {
                    Rounding::HalfEven
                };
                round(name, v, place, rounding)?
            }
            MathExpr::Bitwise(op, args) => {
                let name = match op {
                    BitOp::And => "$bitAnd",
                    BitOp::Or => "$bitOr",
                    BitOp::Xor => "$bitXor",
                };
                let mut acc = match op {
                    BitOp::And => Bson::Int32(-1),
                    _ => Bson::Int32(0),
                };
                for a in args {
                    let v = ev(a)?;
                    if nullish(&v) {
                        return Ok(Some(Bson::Null));
                    }
                    let apply = |x: i64, y: i64| match op {
                        BitOp::And => x & y,
                        BitOp::Or => x | y,
                        BitOp::Xor => x ^ y,
                    };
                    acc = match (&acc, v.unwrap_or(Bson::Null)) {
                        (Bson::Int32(x), Bson::Int32(y)) => {
                            Bson::Int32(apply(i64::from(*x), i64::from(y)) as i32)
                        }
                        (x, y @ (Bson::Int32(_) | Bson::Int64(_))) => {
                            let int = |b: &Bson| match b {
                                Bson::Int32(i) => i64::from(*i),
                                Bson::Int64(i) => *i,
                                _ => 0,
                            };
                            Bson::Int64(apply(int(x), int(&y)))
                        }
                        _ => {
                            return Err(error(
                                ErrorCode::TypeMismatch,
                                format!("{name} only supports int and long operands."),
                            ));
                        }
                    };
                }
                acc
            }
            MathExpr::Rand => Bson::Double(rand::random::<f64>()),
        }))
    }

    pub(super) fn is_constant(&self) -> bool {
        match self {
            MathExpr::Add(args) | MathExpr::Multiply(args) => args.iter().all(Expr::is_constant),
            MathExpr::Unary(_, a) => a.is_constant(),
            MathExpr::Subtract(a, b)
            | MathExpr::Divide(a, b)
            | MathExpr::Mod(a, b)
            | MathExpr::Atan2(a, b)
            | MathExpr::Log(a, b)
            | MathExpr::Pow(a, b) => a.is_constant() && b.is_constant(),
            MathExpr::Round { value, place, .. } => {
                value.is_constant() && place.as_ref().is_none_or(Expr::is_constant)
            }
            MathExpr::Bitwise(_, args) => args.iter().all(Expr::is_constant),
            // A new value for every document.
            MathExpr::Rand => false,
        }
    }
}

/// A number as `$add`, `$subtract` and `$multiply` carry it: its type
/// decides how the next operand combines with it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Typed {
    /// Only ints so far: an int at the end if it fits, else a long.
    Int(i64),
    Long(i64),
    Double(f64),
    Decimal(Decimal128),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Subtract,
    Multiply,
}

impl Typed {
    fn of(v: &Bson) -> Option<Typed> {
        Some(match v {
            Bson::Int32(i) => Typed::Int(i64::from(*i)),
            Bson::Int64(i) => Typed::Long(*i),
            Bson::Double(d) => Typed::Double(*d),
            Bson::Decimal128(d) => Typed::Decimal(*d),
            _ => return None,
        })
    }

    fn to_f64(self) -> f64 {
        match self {
            Typed::Int(i) | Typed::Long(i) => i as f64,
            Typed::Double(d) => d,
            Typed::Decimal(d) => number::decimal_to_f64(&d),
        }
    }

    /// As mongod widens to a decimal: integers exactly, a double rounded
    /// to 15 significant digits.
    fn to_decimal(self) -> Decimal128 {
        match self {
            Typed::Int(i) | Typed::Long(i) => number::decimal_from_i64(i),
            Typed::Double(d) => number::decimal_from_f64(d),
            Typed::Decimal(d) => d,
        }
    }

    fn into_bson(self) -> Bson {
        match self {
            Typed::Int(i) => i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32),
            Typed::Long(i) => Bson::Int64(i),
            Typed::Double(d) => Bson::Double(d),
            Typed::Decimal(d) => Bson::Decimal128(d),
        }
    }

    /// The milliseconds this number moves a date by: a double rounded half
    /// away from zero, a decimal half to even; `None` when that is not a
    /// long (NaN, the infinities, out of range).
    fn date_millis(self) -> Option<i64> {
        match self {
            Typed::Int(i) | Typed::Long(i) => Some(i),
            // 2^63 itself rounds up past a long, so the bound is exclusive.
            Typed::Double(d) if d >= -(2f64.powi(63)) && d < 2f64.powi(63) => {
                Some(d.round() as i64)
            }
            Typed::Double(_) => None,
            Typed::Decimal(d) => decimal::to_i64(&d),
        }
    }
}

/// `acc op v`, typed as mongod's `$add`, `$subtract` and `$multiply` type
/// it; every path of the three goes through here. `double_product` is the
/// running product in doubles (operand included), which mongod keeps
/// beside the exact one and answers when a long product overflows.
fn step(op: Arith, acc: Typed, v: Typed, double_product: f64) -> Typed {
    match (acc, v) {
        (Typed::Decimal(_), _) | (_, Typed::Decimal(_)) => {
            let (a, b) = (acc.to_decimal(), v.to_decimal());
            Typed::Decimal(match op {
                Arith::Add => decimal::add(&a, &b),
                Arith::Subtract => decimal::subtract(&a, &b),
                Arith::Multiply => decimal::multiply(&a, &b),
            })
        }
        (Typed::Double(_), _) | (_, Typed::Double(_)) => in_doubles(op, acc, v, double_product),
        (Typed::Int(x) | Typed::Long(x), Typed::Int(y) | Typed::Long(y)) => {
            let exact = match op {
                Arith::Add => x.checked_add(y),
                Arith::Subtract => x.checked_sub(y),
                Arith::Multiply => x.checked_mul(y),
            };
            match exact {
                None => in_doubles(op, acc, v, double_product),
                Some(r) if matches!(acc, Typed::Long(_)) || matches!(v, Typed::Long(_)) => {
                    Typed::Long(r)
                }
                Some(r) => Typed::Int(r),
            }
        }
    }
}

fn in_doubles(op: Arith, acc: Typed, v: Typed, double_product: f64) -> Typed {
    Typed::Double(match op {
        Arith::Add => acc.to_f64() + v.to_f64(),
        Arith::Subtract => acc.to_f64() - v.to_f64(),
        Arith::Multiply => double_product,
    })
}

fn date_overflow() -> CommandError {
    error(ErrorCode::Overflow, "date overflow".into())
}

/// `$add`: operands in order, null at the first null or missing one
/// (those after it are not evaluated), a type error at the first that is
/// neither a number nor a date; with a date, the date moved by the rest.
fn add(operands: impl Iterator<Item = Result<Option<Bson>>>) -> Result<Bson> {
    let mut total = Typed::Int(0);
    let mut date: Option<i64> = None;
    for v in operands {
        let v = v?;
        if nullish(&v) {
            return Ok(Bson::Null);
        }
        let v = v.unwrap_or(Bson::Null);
        match (&v, Typed::of(&v)) {
            (Bson::DateTime(t), _) => {
                if date.is_some() {
                    return Err(error(
                        ErrorCode::Location16612,
                        "only one date allowed in an $add expression".into(),
                    ));
                }
                // What was summed before the date becomes milliseconds.
                let before = total.date_millis().ok_or_else(date_overflow)?;
                date = Some(
                    before
                        .checked_add(t.timestamp_millis())
                        .ok_or_else(date_overflow)?,
                );
            }
            (_, Some(n)) => match date {
                Some(ms) => {
                    let moved = n.date_millis().and_then(|by| ms.checked_add(by));
                    date = Some(moved.ok_or_else(date_overflow)?);
                }
                None => total = step(Arith::Add, total, n, 0.0),
            },
            (_, None) => {
                return Err(CommandError::type_mismatch(format!(
                    "$add only supports numeric or date types, not {}",
                    type_name(&v)
                )));
            }
        }
    }
    Ok(match date {
        Some(ms) => Bson::DateTime(bson::DateTime::from_millis(ms)),
        None => total.into_bson(),
    })
}

/// `$multiply`: as `$add`, without dates.
fn multiply(operands: impl Iterator<Item = Result<Option<Bson>>>) -> Result<Bson> {
    let mut product = Typed::Int(1);
    let mut double_product = 1.0;
    for v in operands {
        let v = v?;
        if nullish(&v) {
            return Ok(Bson::Null);
        }
        let v = v.unwrap_or(Bson::Null);
        let n = Typed::of(&v).ok_or_else(|| {
            CommandError::type_mismatch(format!(
                "$multiply only supports numeric types, not {}",
                type_name(&v)
            ))
        })?;
        double_product *= n.to_f64();
        product = step(Arith::Multiply, product, n, double_product);
    }
    Ok(product.into_bson())
}

/// `$subtract`: numbers, a date less a number (a date), or a date less a
/// date (a long of milliseconds).
fn subtract(left: Option<Bson>, right: Option<Bson>) -> Result<Bson> {
    if let (Some(l), Some(r)) = (
        left.as_ref().and_then(Typed::of),
        right.as_ref().and_then(Typed::of),
    ) {
        return Ok(step(Arith::Subtract, l, r, 0.0).into_bson());
    }
    if nullish(&left) || nullish(&right) {
        return Ok(Bson::Null);
    }
    let (l, r) = (left.unwrap_or(Bson::Null), right.unwrap_or(Bson::Null));
    match (&l, &r) {
        // mongod subtracts the two longs unchecked (wrapping on x86).
        (Bson::DateTime(a), Bson::DateTime(b)) => Ok(Bson::Int64(
            a.timestamp_millis().wrapping_sub(b.timestamp_millis()),
        )),
        (Bson::DateTime(a), _) => match Typed::of(&r) {
            Some(n) => {
                let ms = n
                    .date_millis()
                    .and_then(|by| a.timestamp_millis().checked_sub(by))
                    .ok_or_else(date_overflow)?;
                Ok(Bson::DateTime(bson::DateTime::from_millis(ms)))
            }
            None => Err(CommandError::type_mismatch(format!(
                "can't $subtract {} from Date",
                type_name(&r)
            ))),
        },
        _ => Err(CommandError::type_mismatch(format!(
            "can't $subtract {} from {}",
            type_name(&r),
            type_name(&l)
        ))),
    }
}

/// `$divide`: a double, or a decimal when either side is one; a zero
/// divisor is an error.
fn divide(left: Option<Bson>, right: Option<Bson>) -> Result<Bson> {
    let by_zero = || error(ErrorCode::Location16608, "can't $divide by zero".into());
    match (
        left.as_ref().and_then(Typed::of),
        right.as_ref().and_then(Typed::of),
    ) {
        (Some(l), Some(r)) if matches!(l, Typed::Decimal(_)) || matches!(r, Typed::Decimal(_)) => {
            let divisor = r.to_decimal();
            if decimal::is_zero(&divisor) {
                return Err(by_zero());
            }
            Ok(Bson::Decimal128(decimal::divide(&l.to_decimal(), &divisor)))
        }
        (Some(l), Some(r)) => {
            let divisor = r.to_f64();
            if divisor == 0.0 {
                return Err(by_zero());
            }
            Ok(Bson::Double(l.to_f64() / divisor))
        }
        _ if nullish(&left) || nullish(&right) => Ok(Bson::Null),
        _ => Err(error(
            ErrorCode::Location16609,
            format!(
                "$divide only supports numeric types, not {} and {}",
                left.as_ref().map_or("missing", type_name),
                right.as_ref().map_or("missing", type_name)
            ),
        )),
    }
}

/// `$mod`: the remainder with the dividend's sign; a decimal when either
/// side is one, else a double when either is one, else a long when either
/// is one, else an int (all exact; the smallest long mod -1 is 0).
fn modulo(left: Option<Bson>, right: Option<Bson>) -> Result<Bson> {
    let by_zero = |code| error(code, "can't $mod by zero".into());
    match (
        left.as_ref().and_then(Typed::of),
        right.as_ref().and_then(Typed::of),
    ) {
        (Some(l), Some(r)) if matches!(l, Typed::Decimal(_)) || matches!(r, Typed::Decimal(_)) => {
            let divisor = r.to_decimal();
            if decimal::is_zero(&divisor) {
                return Err(by_zero(ErrorCode::Location5733415));
            }
            Ok(Bson::Decimal128(decimal::remainder(
                &l.to_decimal(),
                &divisor,
            )))
        }
        (Some(l), Some(r)) => {
            if r.to_f64() == 0.0 {
                return Err(by_zero(ErrorCode::Location16610));
            }
            Ok(match (l, r) {
                (Typed::Int(x), Typed::Int(y)) => Typed::Int(x.wrapping_rem(y)).into_bson(),
                (Typed::Int(x) | Typed::Long(x), Typed::Int(y) | Typed::Long(y)) => {
                    Bson::Int64(x.wrapping_rem(y))
                }
                _ => Bson::Double(l.to_f64() % r.to_f64()),
            })
        }
        _ if nullish(&left) || nullish(&right) => Ok(Bson::Null),
        _ => Err(error(
            ErrorCode::Location16611,
            format!(
                "$mod only supports numeric types, not {} and {}",
                left.as_ref().map_or("missing", type_name),
                right.as_ref().map_or("missing", type_name)
            ),
        )),
    }
}

fn is_decimal(v: &Bson) -> bool {
    matches!(v, Bson::Decimal128(_))
}

fn numeric(v: Option<Bson>, code: ErrorCode, name: &str) -> Result<Bson> {
    let v = v.unwrap_or(Bson::Null);
    if is_number(&v) {
        Ok(v)
    } else {
        Err(error(
            code,
            format!("{name} only supports numeric types, not {}", type_name(&v)),
        ))
    }
}

/// A decimal's result computed through a double.
fn decimal_via_f64(x: f64) -> Bson {
    Bson::Decimal128(number::decimal_shortest(x))
}

fn unary(op: Unary, v: Bson) -> Result<Bson> {
    let x = to_f64(&v);
    if let Some((low, high, inclusive)) = op.bounds() {
        if x.is_nan() {
            return Ok(v);
        }
        let inside = if inclusive {
            x >= low && x <= high
        } else {
            x > low && x < high
        };
        if !inside {
            let (open, close) = if inclusive { ("[", "]") } else { ("(", ")") };
            // mongod's message reads "value must in" (sic).
            return Err(error(
                ErrorCode::Location50989,
                format!(
                    "cannot apply {} to {}, value must in {open}{},{}{close}",
                    op.name(),
                    show(&v, x),
                    number::format_g(low),
                    number::format_g(high)
                ),
            ));
        }
    }
    Ok(match op {
        Unary::Ceil | Unary::Floor => match &v {
            Bson::Double(d) => Bson::Double(op.apply(*d)),
            Bson::Decimal128(d) => {
                let rounding = if op == Unary::Ceil {
                    Rounding::Up
                } else {
                    Rounding::Down
                };
                match Digits::from_decimal(d) {
                    None => v,
                    Some(digits) => quantized_decimal(&digits, 0, rounding),
                }
            }
            _ => v,
        },
        Unary::Ln | Unary::Log10 => {
            if !(x > 0.0 || x.is_nan()) {
                let (code, name) = if op == Unary::Ln {
                    (ErrorCode::Location28766, "$ln")
                } else {
                    (ErrorCode::Location28761, "$log10")
                };
                return Err(error(
                    code,
                    format!(
                        "{name}'s argument must be a positive number, but is {}",
                        number::format_g(x)
                    ),
                ));
            }
            if is_decimal(&v) {
                decimal_via_f64(op.apply(x))
            } else {
                Bson::Double(op.apply(x))
            }
        }
        Unary::Sqrt => {
            if x < 0.0 {
                return Err(error(
                    ErrorCode::Location28714,
                    "$sqrt's argument must be greater than or equal to 0".into(),
                ));
            }
            if is_decimal(&v) {
                decimal_via_f64(x.sqrt())
            } else {
                Bson::Double(x.sqrt())
            }
        }
        Unary::Abs => match v {
            Bson::Int32(i) => Typed::Int(i64::from(i).abs()).into_bson(),
            Bson::Int64(i) => Bson::Int64(i.checked_abs().ok_or_else(|| {
                error(
                    ErrorCode::Location28680,
                    "can't take $abs of long long min".into(),
                )
            })?),
            Bson::Decimal128(d) => Bson::Decimal128(decimal::abs(&d)),
            other => Bson::Double(to_f64(&other).abs()),
        },
        Unary::BitNot => match v {
            Bson::Int32(i) => Bson::Int32(!i),
            Bson::Int64(i) => Bson::Int64(!i),
            other => {
                return Err(error(
                    ErrorCode::TypeMismatch,
                    format!(
                        "$bitNot only supports int and long, not: {}.",
                        type_name(&other)
                    ),
                ));
            }
        },
        _ => {
            if is_decimal(&v) {
                decimal_via_f64(op.apply(x))
            } else {
                Bson::Double(op.apply(x))
            }
        }
    })
}

/// `digits` rounded to `place` places as a Decimal128 (NaN past 34 digits,
/// as mongod's quantize).
fn quantized_decimal(digits: &Digits, place: i64, rounding: Rounding) -> Bson {
    let nan = || Bson::Decimal128(number::decimal_from_f64(f64::NAN));
    match digits.quantize(place, rounding) {
        Some(q) => q.to_decimal().map_or_else(nan, Bson::Decimal128),
        None => nan(),
    }
}

/// `$round`/`$trunc`'s place: a whole number (representable as an int) in
/// [-20, 100].
fn decimal_place(name: &str, p: &Bson) -> Result<i64> {
    if !is_number(p) {
        return Err(error(
            ErrorCode::Location16004,
            format!("can't convert from BSON type {} to long", type_name(p)),
        ));
    }
    let x = to_f64(p);
    if x.fract() != 0.0 || !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&x) {
        return Err(error(
            ErrorCode::Location51082,
            format!("precision argument to  {name} must be a integral value"),
        ));
    }
    let place = x as i64;
    if !(-20..=100).contains(&place) {
        return Err(error(
            ErrorCode::Location51083,
            format!("cannot apply {name} with precision value {place} value must be in [-20, 100]"),
        ));
    }
    Ok(place)
}

fn round(name: &str, v: Bson, place: i64, rounding: Rounding) -> Result<Bson> {
    Ok(match v {
        Bson::Decimal128(d) => match Digits::from_decimal(&d) {
            None => Bson::Decimal128(d),
            Some(digits) => quantized_decimal(&digits, place, rounding),
        },
        // The double's exact value to 34 digits, rounded in decimal (so
        // 2.675, really 2.67499999..., rounds to 2.67 as in mongod).
        Bson::Double(x) => match Digits::from_f64(x, 34) {
            None => Bson::Double(x),
            Some(digits) => Bson::Double(
                digits
                    .quantize(place, rounding)
                    .map_or(f64::NAN, |q| q.to_f64()),
            ),
        },
        Bson::Int32(_) | Bson::Int64(_) if place >= 0 => v,
        Bson::Int32(_) | Bson::Int64(_) => {
            let long = matches!(v, Bson::Int64(_));
            let i = match v {
                Bson::Int32(i) => i64::from(i),
                Bson::Int64(i) => i,
                _ => 0,
            };
            let digits = Digits {
                negative: i < 0,
                coefficient: i.unsigned_abs().to_string(),
                exponent: 0,
            };
            let out = digits
                .quantize(place, rounding)
                .and_then(|q| {
                    let c: i128 = q.coefficient.parse().ok()?;
                    let scale = 10i128.checked_pow(u32::try_from(q.exponent).ok()?)?;
                    let r = c.checked_mul(scale)?;
                    i64::try_from(if q.negative { -r } else { r }).ok()
                })
                .ok_or_else(|| {
                    error(
                        ErrorCode::Location51080,
                        format!(
                            "invalid conversion from Decimal128 result in {name} resulting from arguments: [{i}, {place}]"
                        ),
                    )
                })?;
            match i32::try_from(out) {
                Ok(small) if !long => Bson::Int32(small),
                _ => Bson::Int64(out),
            }
        }
        other => other,
    })
}

fn pow(base: Bson, exponent: Bson) -> Result<Bson> {
    if !is_number(&base) {
        return Err(error(
            ErrorCode::Location28762,
            format!("$pow's base must be numeric, not {}", type_name(&base)),
        ));
    }
    if !is_number(&exponent) {
        return Err(error(
            ErrorCode::Location28763,
            format!(
                "$pow's exponent must be numeric, not {}",
                type_name(&exponent)
            ),
        ));
    }
    let (b, e) = (to_f64(&base), to_f64(&exponent));
    if b == 0.0 && e < 0.0 {
        return Err(error(
            ErrorCode::Location28764,
            "$pow cannot take a base of 0 and a negative exponent".into(),
        ));
    }
    if is_decimal(&base) || is_decimal(&exponent) {
        return Ok(decimal_via_f64(b.powf(e)));
    }
    if matches!(base, Bson::Double(_)) || matches!(exponent, Bson::Double(_)) {
        return Ok(Bson::Double(b.powf(e)));
    }
    let long = matches!(base, Bson::Int64(_)) || matches!(exponent, Bson::Int64(_));
    let int = |v: &Bson| match v {
        Bson::Int32(i) => i64::from(*i),
        Bson::Int64(i) => *i,
        _ => 0,
    };
    let (bl, el) = (int(&base), int(&exponent));
    let exact = match bl {
        0 => Some(if el == 0 { 1 } else { 0 }),
        1 => Some(1),
        -1 => Some(if el % 2 == 0 { 1 } else { -1 }),
        // Past a long (or fractional): a double, as mongod.
        _ => u32::try_from(el)
            .ok()
            .filter(|e| *e <= 63)
            .and_then(|e| bl.checked_pow(e)),
    };
    Ok(match exact {
        // Not representable as a long: a double, as mongod's std::pow.
        None => Bson::Double((bl as f64).powf(el as f64)),
        Some(r) if long => Bson::Int64(r),
        Some(r) => i32::try_from(r).map_or(Bson::Int64(r), Bson::Int32),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use bson::{bson, doc};

    fn close(v: Option<Bson>, want: f64) {
        match v {
            Some(Bson::Double(x)) => assert!((x - want).abs() < 1e-12, "{x} != {want}"),
            other => panic!("not a double: {other:?}"),
        }
    }

    #[test]
    fn trigonometry_manual_examples_and_domains() {
        close(ev(bson!({"$sin": 0}), doc! {}), 0.0);
        close(ev(bson!({"$cos": 0}), doc! {}), 1.0);
        close(ev(bson!({"$tan": {"$degreesToRadians": 45}}), doc! {}), 1.0);
        close(
            ev(bson!({"$acos": 0.5}), doc! {}),
            std::f64::consts::FRAC_PI_3,
        );
        close(
            ev(bson!({"$asin": 1}), doc! {}),
            std::f64::consts::FRAC_PI_2,
        );
        close(
            ev(bson!({"$atan": 1}), doc! {}),
            std::f64::consts::FRAC_PI_4,
        );
        close(
            ev(bson!({"$atan2": [1, 1]}), doc! {}),
            std::f64::consts::FRAC_PI_4,
        );
        close(ev(bson!({"$acosh": 1}), doc! {}), 0.0);
        close(ev(bson!({"$asinh": 0}), doc! {}), 0.0);
        close(ev(bson!({"$atanh": 0}), doc! {}), 0.0);
        close(ev(bson!({"$cosh": 0}), doc! {}), 1.0);
        close(ev(bson!({"$sinh": 0}), doc! {}), 0.0);
        close(ev(bson!({"$tanh": 0}), doc! {}), 0.0);
        close(
            ev(bson!({"$radiansToDegrees": std::f64::consts::PI}), doc! {}),
            180.0,
        );
        // Manual: a triangle's angle from its sides.
        let d = doc! {"side_a": 3, "side_b": 4, "hypotenuse": 5};
        close(
            ev(
                bson!({"$radiansToDegrees": {"$acos": {"$divide": ["$side_b", "$hypotenuse"]}}}),
                d,
            ),
            36.86989764584402,
        );
        assert_eq!(
            code(bson!({"$acos": 2}), doc! {}),
            (
                50989,
                "cannot apply $acos to 2, value must in [-1,1]".into()
            )
        );
        assert_eq!(
            code(bson!({"$acosh": 0.5}), doc! {}),
            (
                50989,
                "cannot apply $acosh to 0.5, value must in [1,inf]".into()
            )
        );
        assert_eq!(
            code(bson!({"$sin": f64::INFINITY}), doc! {}),
            (
                50989,
                "cannot apply $sin to inf, value must in (-inf,inf)".into()
            )
        );
        assert_eq!(code(bson!({"$atanh": dec("1.5")}), doc! {}).0, 50989);
        // NaN passes through the bounded functions.
        assert!(
            matches!(ev(bson!({"$acos": f64::NAN}), doc! {}), Some(Bson::Double(x)) if x.is_nan())
        );
        assert!(matches!(
            ev(bson!({"$sin": dec("0")}), doc! {}),
            Some(Bson::Decimal128(_))
        ));
        assert_eq!(ev(bson!({"$cos": null}), doc! {}), Some(Bson::Null));
        assert_eq!(ev(bson!({"$cos": "$missing"}), doc! {}), Some(Bson::Null));
        assert_eq!(
            code(bson!({"$cos": "x"}), doc! {}),
            (28765, "$cos only supports numeric types, not string".into())
        );
        assert_eq!(
            code(bson!({"$cos": [1, 2]}), doc! {}),
            (
                16020,
                "Expression $cos takes exactly 1 arguments. 2 were passed in.".into()
            )
        );
        assert_eq!(ev(bson!({"$atan2": [null, 1]}), doc! {}), Some(Bson::Null));
        assert_eq!(code(bson!({"$atan2": ["a", 1]}), doc! {}).0, 51044);
        assert_eq!(code(bson!({"$atan2": [1, "a"]}), doc! {}).0, 51045);
        assert_eq!(code(bson!({"$atan2": [1]}), doc! {}).0, 16020);
    }

    #[test]
    fn logarithms_exp_and_sqrt() {
        close(ev(bson!({"$ln": 1}), doc! {}), 0.0);
        close(ev(bson!({"$log10": 100}), doc! {}), 2.0);
        close(ev(bson!({"$log": [100, 10]}), doc! {}), 2.0);
        close(ev(bson!({"$log": [8, 2]}), doc! {}), 3.0);
        close(ev(bson!({"$exp": 0}), doc! {}), 1.0);
        close(ev(bson!({"$sqrt": 25}), doc! {}), 5.0);
        assert_eq!(ev(bson!({"$sqrt": dec("25")}), doc! {}), Some(dec("5")));
        assert_eq!(
            code(bson!({"$sqrt": -1}), doc! {}),
            (
                28714,
                "$sqrt's argument must be greater than or equal to 0".into()
            )
        );
        assert_eq!(
            code(bson!({"$ln": 0}), doc! {}),
            (
                28766,
                "$ln's argument must be a positive number, but is 0".into()
            )
        );
        assert_eq!(
            code(bson!({"$log10": -1.5}), doc! {}),
            (
                28761,
                "$log10's argument must be a positive number, but is -1.5".into()
            )
        );
        assert_eq!(code(bson!({"$ln": dec("-1")}), doc! {}).0, 28766);
        assert_eq!(code(bson!({"$log": ["a", 2]}), doc! {}).0, 28756);
        assert_eq!(code(bson!({"$log": [2, "a"]}), doc! {}).0, 28757);
        assert_eq!(code(bson!({"$log": [-2, 2]}), doc! {}).0, 28758);
        assert_eq!(
            code(bson!({"$log": [2, 1]}), doc! {}),
            (
                28759,
                "$log's base must be a positive number not equal to 1, but is 1".into()
            )
        );
        assert_eq!(ev(bson!({"$log": [null, "a"]}), doc! {}), Some(Bson::Null));
        assert!(
            matches!(ev(bson!({"$ln": f64::NAN}), doc! {}), Some(Bson::Double(x)) if x.is_nan())
        );
        assert_eq!(
            ev(bson!({"$exp": f64::INFINITY}), doc! {}),
            Some(Bson::Double(f64::INFINITY))
        );
    }

    #[test]
    fn ceil_floor_keep_types() {
        assert_eq!(ev(bson!({"$ceil": 1}), doc! {}), Some(bson!(1)));
        assert_eq!(ev(bson!({"$floor": 7i64}), doc! {}), Some(bson!(7i64)));
        assert_eq!(ev(bson!({"$ceil": 7.80}), doc! {}), Some(bson!(8.0)));
        assert_eq!(ev(bson!({"$ceil": -2.8}), doc! {}), Some(bson!(-2.0)));
        assert_eq!(ev(bson!({"$floor": -2.8}), doc! {}), Some(bson!(-3.0)));
        assert_eq!(ev(bson!({"$ceil": dec("1.1")}), doc! {}), Some(dec("2")));
        assert_eq!(ev(bson!({"$floor": dec("-1.1")}), doc! {}), Some(dec("-2")));
        assert_eq!(
            ev(bson!({"$floor": dec("Infinity")}), doc! {}),
            Some(dec("Infinity"))
        );
        assert_eq!(ev(bson!({"$ceil": null}), doc! {}), Some(Bson::Null));
        assert_eq!(code(bson!({"$floor": true}), doc! {}).0, 28765);
    }

    #[test]
    fn round_and_trunc_as_mongod() {
        // Manual: $round examples (half to even).
        for (v, p, want) in [
            (bson!(19.25), 1, bson!(19.2)),
            (bson!(28.73), 1, bson!(28.7)),
            (bson!(34.32), 1, bson!(34.3)),
            (bson!(-45.39), 1, bson!(-45.4)),
            (bson!(10.5), 0, bson!(10.0)),
            (bson!(11.5), 0, bson!(12.0)),
            (bson!(12.5), 0, bson!(12.0)),
            (bson!(-12.5), 0, bson!(-12.0)),
            (bson!(2.675), 2, bson!(2.67)),
            (bson!(1234.5678), -2, bson!(1200.0)),
            (bson!(1234), -2, bson!(1200)),
            (bson!(1250i64), -2, bson!(1200i64)),
            (bson!(19), 1, bson!(19)),
        ] {
            assert_eq!(
                ev(bson!({"$round": [v.clone(), p]}), doc! {}),
                Some(want),
                "{v} {p}"
            );
        }
        for (v, p, want) in [
            (bson!(19.25), 1, bson!(19.2)),
            (bson!(28.73), 1, bson!(28.7)),
            (bson!(-45.39), 1, bson!(-45.3)),
            (bson!(1234.5678), -2, bson!(1200.0)),
            (bson!(-1999), -3, bson!(-1000)),
        ] {
            assert_eq!(
                ev(bson!({"$trunc": [v.clone(), p]}), doc! {}),
                Some(want),
                "{v} {p}"
            );
        }
        assert_eq!(ev(bson!({"$round": 2.5}), doc! {}), Some(bson!(2.0)));
        assert_eq!(ev(bson!({"$trunc": -2.7}), doc! {}), Some(bson!(-2.0)));
        assert_eq!(
            ev(bson!({"$round": [dec("1.2345"), 2]}), doc! {}),
            Some(dec("1.23"))
        );
        assert_eq!(
            ev(bson!({"$round": [dec("1.2"), 3]}), doc! {}),
            Some(dec("1.200"))
        );
        // Past an int: a long.
        assert_eq!(
            ev(bson!({"$round": [2147483647, -1]}), doc! {}),
            Some(bson!(2147483650i64))
        );
        assert_eq!(ev(bson!({"$round": [null, 1]}), doc! {}), Some(Bson::Null));
        assert_eq!(
            ev(bson!({"$round": [1.5, null]}), doc! {}),
            Some(Bson::Null)
        );
        assert_eq!(
            ev(bson!({"$round": [f64::INFINITY, 1]}), doc! {}),
            Some(bson!(f64::INFINITY))
        );
        assert_eq!(
            code(bson!({"$round": [1.5, 101]}), doc! {}),
            (
                51083,
                "cannot apply $round with precision value 101 value must be in [-20, 100]".into()
            )
        );
        assert_eq!(code(bson!({"$round": [1.5, -21]}), doc! {}).0, 51083);
        assert_eq!(
            code(bson!({"$trunc": [1.5, 1.5]}), doc! {}),
            (
                51082,
                "precision argument to  $trunc must be a integral value".into()
            )
        );
        assert_eq!(code(bson!({"$round": [1.5, 1e30]}), doc! {}).0, 51082);
        assert_eq!(code(bson!({"$round": [1.5, "a"]}), doc! {}).0, 16004);
        assert_eq!(
            code(bson!({"$round": ["a", 1]}), doc! {}),
            (
                51081,
                "$round only supports numeric types, not string".into()
            )
        );
        assert_eq!(
            code(bson!({"$round": [1, 2, 3]}), doc! {}),
            (
                28667,
                "Expression $round takes at least 1 arguments, and at most 2, but 3 were passed in."
                    .into()
            )
        );
        assert_eq!(code(bson!({"$round": []}), doc! {}).0, 28667);
        // Overflow of a long is mongod's 51080, never a panic.
        assert_eq!(code(bson!({"$round": [i64::MAX, -1]}), doc! {}).0, 51080);
        assert_eq!(code(bson!({"$round": [i64::MIN, -1]}), doc! {}).0, 51080);
        assert_eq!(
            ev(bson!({"$round": [i64::MIN, -20]}), doc! {}),
            Some(bson!(0i64))
        );
        assert_eq!(
            ev(bson!({"$trunc": [i64::MIN, -1]}), doc! {}),
            Some(bson!(-9223372036854775800i64))
        );
        // Huge and tiny doubles do not panic.
        assert!(ev(bson!({"$round": [1e308, 100]}), doc! {}).is_some());
        assert_eq!(
            ev(bson!({"$round": [5e-324, 100]}), doc! {}),
            Some(bson!(0.0))
        );
    }

    #[test]
    fn pow_types_and_overflow() {
        assert_eq!(ev(bson!({"$pow": [5, 0]}), doc! {}), Some(bson!(1)));
        assert_eq!(ev(bson!({"$pow": [2, 10]}), doc! {}), Some(bson!(1024)));
        assert_eq!(
            ev(bson!({"$pow": [2, 40]}), doc! {}),
            Some(bson!(1099511627776i64))
        );
        assert_eq!(ev(bson!({"$pow": [2i64, 2]}), doc! {}), Some(bson!(4i64)));
        assert_eq!(
            ev(bson!({"$pow": [-2, 63]}), doc! {}),
            Some(bson!(i64::MIN))
        );
        assert_eq!(
            ev(bson!({"$pow": [2, 64]}), doc! {}),
            Some(bson!(18446744073709551616.0))
        );
        assert_eq!(ev(bson!({"$pow": [2, -1]}), doc! {}), Some(bson!(0.5)));
        assert_eq!(ev(bson!({"$pow": [-1, -3]}), doc! {}), Some(bson!(-1)));
        assert_eq!(
            ev(bson!({"$pow": [1, i64::MAX]}), doc! {}),
            Some(bson!(1i64))
        );
        assert_eq!(ev(bson!({"$pow": [3, 2.0]}), doc! {}), Some(bson!(9.0)));
        assert_eq!(ev(bson!({"$pow": [dec("2"), 2]}), doc! {}), Some(dec("4")));
        assert_eq!(ev(bson!({"$pow": [null, "a"]}), doc! {}), Some(Bson::Null));
        assert_eq!(
            code(bson!({"$pow": [0, -1]}), doc! {}),
            (
                28764,
                "$pow cannot take a base of 0 and a negative exponent".into()
            )
        );
        assert_eq!(code(bson!({"$pow": ["a", 1]}), doc! {}).0, 28762);
        assert_eq!(code(bson!({"$pow": [1, "a"]}), doc! {}).0, 28763);
        assert_eq!(code(bson!({"$pow": [1, 2, 3]}), doc! {}).0, 16020);
    }

    #[test]
    fn bitwise_int_and_long_only() {
        // Manual: {a: 0, b: 127}, ...
        assert_eq!(ev(bson!({"$bitAnd": [0, 127]}), doc! {}), Some(bson!(0)));
        assert_eq!(ev(bson!({"$bitAnd": [2, 3]}), doc! {}), Some(bson!(2)));
        assert_eq!(ev(bson!({"$bitOr": [2, 3i64]}), doc! {}), Some(bson!(3i64)));
        assert_eq!(ev(bson!({"$bitXor": [3, 5]}), doc! {}), Some(bson!(6)));
        assert_eq!(ev(bson!({"$bitNot": 3}), doc! {}), Some(bson!(-4)));
        assert_eq!(ev(bson!({"$bitNot": 3i64}), doc! {}), Some(bson!(-4i64)));
        assert_eq!(
            ev(bson!({"$bitNot": i64::MIN}), doc! {}),
            Some(bson!(i64::MAX))
        );
        assert_eq!(ev(bson!({"$bitAnd": []}), doc! {}), Some(bson!(-1)));
        assert_eq!(ev(bson!({"$bitOr": []}), doc! {}), Some(bson!(0)));
        assert_eq!(
            ev(bson!({"$bitOr": [1, null, "a"]}), doc! {}),
            Some(Bson::Null)
        );
        assert_eq!(
            code(bson!({"$bitAnd": [1, 1.5]}), doc! {}),
            (14, "$bitAnd only supports int and long operands.".into())
        );
        assert_eq!(
            code(bson!({"$bitNot": 1.5}), doc! {}),
            (
                14,
                "$bitNot only supports int and long, not: double.".into()
            )
        );
        assert_eq!(code(bson!({"$bitNot": "a"}), doc! {}).0, 28765);
    }

    #[test]
    fn rand_is_fresh_and_in_range() {
        let e = Expr::parse(&bson!({"$rand": {}})).unwrap();
        assert!(!e.is_constant());
        for _ in 0..100 {
            match e.eval(&doc! {}).unwrap() {
                Some(Bson::Double(x)) => assert!((0.0..1.0).contains(&x)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(code(bson!({"$rand": {"a": 1}}), doc! {}).0, 3040501);
        assert_eq!(code(bson!({"$rand": 1}), doc! {}).0, 3040501);
        assert!(Expr::parse(&bson!({"$sqrt": 4})).unwrap().is_constant());
        assert!(!Expr::parse(&bson!({"$sqrt": "$a"})).unwrap().is_constant());
    }

    #[test]
    fn deep_nesting_is_bounded() {
        crate::limits::with_worker_stack(|| {
            let mut e = bson!(1);
            for _ in 0..300 {
                e = bson!({"$sqrt": e});
            }
            assert_eq!(Expr::parse(&e).unwrap_err().code, ErrorCode::Overflow);
        });
    }

    fn date(ms: i64) -> Bson {
        Bson::DateTime(bson::DateTime::from_millis(ms))
    }

    /// (expression, expected value) against `{}`; NaN compared as NaN.
    fn table(cases: Vec<(Bson, Bson)>) {
        for (e, want) in cases {
            let got = ev(e.clone(), doc! {});
            let same = match (&got, &want) {
                (Some(Bson::Double(a)), Bson::Double(b)) if a.is_nan() => b.is_nan(),
                (Some(g), w) => g == w,
                (None, _) => false,
            };
            let shown: String = e.to_string().chars().take(200).collect();
            assert!(same, "{shown}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn add_is_exact_and_typed_as_mongod() {
        let two53 = 1i64 << 53;
        let thousand_longs: Vec<Bson> = (0..1000).map(|_| Bson::Int64(two53)).collect();
        let thousand_tenths: Vec<Bson> = (0..1000).map(|_| dec("0.1")).collect();
        let thousand_ints: Vec<Bson> = (0..1000).map(|_| bson!(3_000_000)).collect();
        table(vec![
            // Manual: {price: 10, fee: 2} -> 12.
            (bson!({"$add": [10, 2]}), bson!(12)),
            (bson!({"$add": []}), bson!(0)),
            (bson!({"$add": [i32::MAX, 1]}), bson!(2147483648i64)),
            (bson!({"$add": [i32::MAX, 1, -1]}), bson!(i32::MAX)),
            (bson!({"$add": [1i64, 2]}), bson!(3i64)),
            (
                bson!({"$add": [Bson::Int64(two53), Bson::Int64(1)]}),
                Bson::Int64(two53 + 1),
            ),
            // A long overflow is a double, which the rest is added to.
            (
                bson!({"$add": [i64::MAX, 1]}),
                Bson::Double(9_223_372_036_854_775_808.0),
            ),
            (
                bson!({"$add": [i64::MAX, 1i64, -1i64]}),
                Bson::Double(9_223_372_036_854_775_808.0),
            ),
            (
                bson!({"$add": [i64::MIN, -1]}),
                Bson::Double(-9_223_372_036_854_775_808.0),
            ),
            (bson!({"$add": [1, 0.5]}), bson!(1.5)),
            (bson!({"$add": [0.1, 0.2]}), bson!(0.1 + 0.2)),
            (bson!({"$add": [dec("0.1"), dec("0.2")]}), dec("0.3")),
            (bson!({"$add": [dec("1"), 2i64]}), dec("3")),
            // A double joins a decimal at 15 significant digits.
            (bson!({"$add": [dec("1"), 0.1]}), dec("1.100000000000000")),
            (bson!({"$add": [0.1, dec("0.2")]}), dec("0.300000000000000")),
            (
                bson!({"$add": [dec("9999999999999999999999999999999999"), 1]}),
                dec("1.000000000000000000000000000000000E+34"),
            ),
            (bson!({"$add": [1, f64::NAN]}), bson!(f64::NAN)),
            (
                bson!({"$add": [f64::INFINITY, f64::NEG_INFINITY]}),
                bson!(f64::NAN),
            ),
            (bson!({"$add": [dec("1"), f64::INFINITY]}), dec("Infinity")),
            (bson!({"$add": [dec("NaN"), 1]}), dec("NaN")),
            (
                Bson::Document(doc! {"$add": thousand_longs}),
                Bson::Int64(two53 * 1000),
            ),
            (Bson::Document(doc! {"$add": thousand_tenths}), dec("100.0")),
            (
                Bson::Document(doc! {"$add": thousand_ints}),
                bson!(3_000_000_000i64),
            ),
            // Null or missing: null, and nothing after it is evaluated.
            (bson!({"$add": [1, null]}), Bson::Null),
            (bson!({"$add": ["$nope", 1]}), Bson::Null),
            (bson!({"$add": [null, "x"]}), Bson::Null),
            (bson!({"$add": [null, {"$divide": [1, 0]}]}), Bson::Null),
        ]);
        assert_eq!(
            code(bson!({"$add": ["x", null]}), doc! {}),
            (
                14,
                "$add only supports numeric or date types, not string".into()
            )
        );
        assert_eq!(code(bson!({"$add": [1, [1]]}), doc! {}).0, 14);
        assert_eq!(code(bson!({"$add": [1, true]}), doc! {}).0, 14);
    }

    #[test]
    fn add_moves_a_date_as_mongod() {
        table(vec![
            (bson!({"$add": [date(1000), 500]}), date(1500)),
            (bson!({"$add": [500i64, date(1000)]}), date(1500)),
            // A double rounds half away from zero, a decimal half to even.
            (bson!({"$add": [date(0), 1.5]}), date(2)),
            (bson!({"$add": [date(0), 2.5]}), date(3)),
            (bson!({"$add": [date(0), -2.5]}), date(-3)),
            (bson!({"$add": [date(0), dec("2.5")]}), date(2)),
            (bson!({"$add": [date(0), dec("3.5")]}), date(4)),
            // Before the date numbers sum as numbers; after it each moves
            // the date on its own.
            (bson!({"$add": [0.6, 0.6, date(0)]}), date(1)),
            (bson!({"$add": [date(0), 0.6, 0.6]}), date(2)),
            (bson!({"$add": [1.4, date(0), 1.4]}), date(2)),
            (bson!({"$add": [date(5), null]}), Bson::Null),
        ]);
        for e in [
            bson!({"$add": [date(1), i64::MAX]}),
            bson!({"$add": [date(-1), i64::MIN, -1]}),
            bson!({"$add": [date(0), f64::NAN]}),
            bson!({"$add": [date(0), 9.3e18]}),
            bson!({"$add": [date(0), 9_223_372_036_854_775_808.0]}),
            bson!({"$add": [date(0), dec("Infinity")]}),
            bson!({"$add": [date(0), dec("1E+30")]}),
            bson!({"$add": [f64::INFINITY, date(0)]}),
        ] {
            assert_eq!(
                code(e.clone(), doc! {}),
                (15, "date overflow".into()),
                "{e}"
            );
        }
        assert_eq!(
            code(bson!({"$add": [date(0), 1, date(0)]}), doc! {}),
            (16612, "only one date allowed in an $add expression".into())
        );
    }

    #[test]
    fn subtract_is_exact_and_typed_as_mongod() {
        table(vec![
            (bson!({"$subtract": [5, 3]}), bson!(2)),
            (bson!({"$subtract": [i32::MIN, 1]}), bson!(-2147483649i64)),
            (bson!({"$subtract": [5i64, 3]}), bson!(2i64)),
            (
                bson!({"$subtract": [Bson::Int64((1 << 53) + 1), Bson::Int64(1)]}),
                Bson::Int64(1 << 53),
            ),
            (
                bson!({"$subtract": [i64::MIN, 1]}),
                Bson::Double(-9_223_372_036_854_775_808.0),
            ),
            (
                bson!({"$subtract": [0, i64::MIN]}),
                Bson::Double(9_223_372_036_854_775_808.0),
            ),
            (bson!({"$subtract": [1.5, 1]}), bson!(0.5)),
            (bson!({"$subtract": [dec("0.3"), dec("0.1")]}), dec("0.2")),
            (
                bson!({"$subtract": [dec("1"), 0.1]}),
                dec("0.900000000000000"),
            ),
            (
                bson!({"$subtract": [f64::INFINITY, f64::INFINITY]}),
                bson!(f64::NAN),
            ),
            // Manual: a date less a date is milliseconds; less a number, a date.
            (bson!({"$subtract": [date(1000), date(400)]}), bson!(600i64)),
            (bson!({"$subtract": [date(1000), 400]}), date(600)),
            (bson!({"$subtract": [date(1000), 2.5]}), date(997)),
            (bson!({"$subtract": [date(1000), dec("2.5")]}), date(998)),
            // mongod subtracts two dates unchecked.
            (
                bson!({"$subtract": [date(i64::MAX), date(-1)]}),
                Bson::Int64(i64::MIN),
            ),
            (bson!({"$subtract": [date(1), null]}), Bson::Null),
            (bson!({"$subtract": ["x", "$nope"]}), Bson::Null),
        ]);
        assert_eq!(
            code(bson!({"$subtract": [date(i64::MIN), 1]}), doc! {}),
            (15, "date overflow".into())
        );
        assert_eq!(
            code(bson!({"$subtract": [date(0), f64::NAN]}), doc! {}).0,
            15
        );
        assert_eq!(code(bson!({"$subtract": [date(0), 1e19]}), doc! {}).0, 15);
        assert_eq!(
            code(bson!({"$subtract": [date(0), dec("NaN")]}), doc! {}).0,
            15
        );
        assert_eq!(
            code(bson!({"$subtract": [date(0), "x"]}), doc! {}),
            (14, "can't $subtract string from Date".into())
        );
        assert_eq!(
            code(bson!({"$subtract": [1, date(0)]}), doc! {}),
            (14, "can't $subtract date from int".into())
        );
        assert_eq!(
            code(bson!({"$subtract": [1]}), doc! {}),
            (
                16020,
                "Expression $subtract takes exactly 2 arguments. 1 were passed in.".into()
            )
        );
        assert_eq!(code(bson!({"$subtract": [1, 2, 3]}), doc! {}).0, 16020);
    }

    #[test]
    fn multiply_is_exact_and_typed_as_mongod() {
        let thousand_twos: Vec<Bson> = (0..1000).map(|_| bson!(2)).collect();
        table(vec![
            // Manual: {price: 10, quantity: 2} -> 20.
            (bson!({"$multiply": [10, 2]}), bson!(20)),
            (bson!({"$multiply": []}), bson!(1)),
            (bson!({"$multiply": [65536, 65536]}), bson!(4294967296i64)),
            (bson!({"$multiply": [2i64, 3]}), bson!(6i64)),
            (
                bson!({"$multiply": [Bson::Int64((1 << 53) + 1), Bson::Int64(3)]}),
                Bson::Int64(27_021_597_764_222_979),
            ),
            // A long overflow answers the product taken in doubles.
            (
                bson!({"$multiply": [i64::MAX, 2]}),
                Bson::Double(i64::MAX as f64 * 2.0),
            ),
            (
                bson!({"$multiply": [i64::MIN, -1]}),
                Bson::Double(9_223_372_036_854_775_808.0),
            ),
            (bson!({"$multiply": [3, 0.5]}), bson!(1.5)),
            (bson!({"$multiply": [dec("1.1"), 3]}), dec("3.3")),
            (
                bson!({"$multiply": [0.1, dec("3")]}),
                dec("0.300000000000000"),
            ),
            (
                bson!({"$multiply": [dec("2"), f64::INFINITY]}),
                dec("Infinity"),
            ),
            (bson!({"$multiply": [2, f64::NAN]}), bson!(f64::NAN)),
            (bson!({"$multiply": [0, f64::INFINITY]}), bson!(f64::NAN)),
            (
                Bson::Document(doc! {"$multiply": thousand_twos}),
                Bson::Double(2f64.powi(1000)),
            ),
            (bson!({"$multiply": [null, "x"]}), Bson::Null),
        ]);
        assert_eq!(
            code(bson!({"$multiply": [2, "x"]}), doc! {}),
            (
                14,
                "$multiply only supports numeric types, not string".into()
            )
        );
        assert_eq!(code(bson!({"$multiply": [date(0), 2]}), doc! {}).0, 14);
    }

    #[test]
    fn divide_as_mongod() {
        table(vec![
            // Manual: {hours: 80, workdays: 8 -> 10} as a double.
            (bson!({"$divide": [80, 8]}), bson!(10.0)),
            (bson!({"$divide": [1, 4]}), bson!(0.25)),
            (bson!({"$divide": [i64::MAX, 1i64]}), bson!(i64::MAX as f64)),
            (
                bson!({"$divide": [dec("1"), 3]}),
                dec("0.3333333333333333333333333333333333"),
            ),
            (bson!({"$divide": [1, dec("8")]}), dec("0.125")),
            (bson!({"$divide": [dec("10"), 0.5]}), dec("2E+1")),
            (bson!({"$divide": [f64::NAN, 1]}), bson!(f64::NAN)),
            (bson!({"$divide": [1, f64::NAN]}), bson!(f64::NAN)),
            (bson!({"$divide": [1, f64::INFINITY]}), bson!(0.0)),
            (bson!({"$divide": [null, 0]}), Bson::Null),
            (bson!({"$divide": ["x", null]}), Bson::Null),
        ]);
        for e in [
            bson!({"$divide": [1, 0]}),
            bson!({"$divide": [1, -0.0]}),
            bson!({"$divide": [1, 0i64]}),
            bson!({"$divide": [dec("1"), 0]}),
            bson!({"$divide": [1, dec("-0E+5")]}),
            bson!({"$divide": [dec("NaN"), dec("0")]}),
        ] {
            assert_eq!(
                code(e.clone(), doc! {}),
                (16608, "can't $divide by zero".into()),
                "{e}"
            );
        }
        assert_eq!(
            code(bson!({"$divide": ["1", 2]}), doc! {}),
            (
                16609,
                "$divide only supports numeric types, not string and int".into()
            )
        );
        assert_eq!(code(bson!({"$divide": [1]}), doc! {}).0, 16020);
    }

    #[test]
    fn mod_as_mongod() {
        table(vec![
            // Manual: {hours: 80, tasks: 7} -> 3.
            (bson!({"$mod": [80, 7]}), bson!(3)),
            (bson!({"$mod": [-7, 3]}), bson!(-1)),
            (bson!({"$mod": [7, -3]}), bson!(1)),
            (bson!({"$mod": [7i64, 3]}), bson!(1i64)),
            (bson!({"$mod": [7.5, 2]}), bson!(1.5)),
            (bson!({"$mod": [-7.5, 2]}), bson!(-1.5)),
            (
                bson!({"$mod": [Bson::Int64(9_007_199_254_740_993), Bson::Int64(2)]}),
                bson!(1i64),
            ),
            (bson!({"$mod": [i64::MIN, -1i64]}), bson!(0i64)),
            (bson!({"$mod": [i32::MIN, -1]}), bson!(0)),
            (bson!({"$mod": [dec("7.5"), 2]}), dec("1.5")),
            (bson!({"$mod": [dec("0.3"), 0.1]}), dec("0.000000000000000")),
            (bson!({"$mod": [10, dec("3")]}), dec("1")),
            (bson!({"$mod": [1, f64::INFINITY]}), bson!(1.0)),
            (bson!({"$mod": [f64::INFINITY, 2]}), bson!(f64::NAN)),
            (bson!({"$mod": [null, 0]}), Bson::Null),
            (bson!({"$mod": ["x", "$nope"]}), Bson::Null),
        ]);
        assert_eq!(
            code(bson!({"$mod": [1, 0]}), doc! {}),
            (16610, "can't $mod by zero".into())
        );
        assert_eq!(code(bson!({"$mod": [1.5, -0.0]}), doc! {}).0, 16610);
        assert_eq!(
            code(bson!({"$mod": [dec("1"), 0]}), doc! {}),
            (5733415, "can't $mod by zero".into())
        );
        assert_eq!(
            code(bson!({"$mod": [1, true]}), doc! {}),
            (
                16611,
                "$mod only supports numeric types, not int and bool".into()
            )
        );
        assert_eq!(code(bson!({"$mod": [1]}), doc! {}).0, 16020);
    }

    #[test]
    fn abs_keeps_types() {
        table(vec![
            (bson!({"$abs": -1}), bson!(1)),
            (bson!({"$abs": i32::MIN}), bson!(2147483648i64)),
            (bson!({"$abs": -5i64}), bson!(5i64)),
            (bson!({"$abs": -2.5}), bson!(2.5)),
            (bson!({"$abs": dec("-1.50")}), dec("1.50")),
            (bson!({"$abs": null}), Bson::Null),
            (bson!({"$abs": {"$subtract": [5, 7]}}), bson!(2)),
        ]);
        assert_eq!(
            code(bson!({"$abs": i64::MIN}), doc! {}),
            (28680, "can't take $abs of long long min".into())
        );
        assert_eq!(code(bson!({"$abs": "x"}), doc! {}).0, 28765);
        assert_eq!(code(bson!({"$abs": [1, 2]}), doc! {}).0, 16020);
    }

    #[test]
    fn arithmetic_nests_within_the_depth_limit() {
        crate::limits::with_worker_stack(|| {
            let mut e = bson!(1);
            for _ in 0..300 {
                e = bson!({"$add": [e, 1]});
            }
            assert_eq!(Expr::parse(&e).unwrap_err().code, ErrorCode::Overflow);
        });
        let e =
            Expr::parse(&bson!({"$multiply": [{"$add": [1, 2]}, {"$subtract": [5, 1]}]})).unwrap();
        assert!(e.is_constant());
        assert!(
            !Expr::parse(&bson!({"$divide": ["$a", 2]}))
                .unwrap()
                .is_constant()
        );
    }
}
