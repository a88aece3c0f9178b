//! Positional operator arguments (`{$op: [a, b]}`, or `{$op: a}` for one),
//! mongod's arity errors, and the readings of argument values that several
//! families share (a 32-bit integral number, mongod's rendering of a value
//! in an error message).

use bson::Bson;

use super::{Expr, Scope};
use crate::error::{CommandError, ErrorCode, Result};

/// The arguments of a positional operator: an array's elements, or the one
/// value given (as mongod's `ExpressionNary` reads them).
pub(super) fn positional(arg: &Bson, scope: Scope) -> Result<Vec<Expr>> {
    match arg {
        Bson::Array(items) => items
            .iter()
            .map(|v| Expr::parse_in(v, scope.nested()))
            .collect(),
        other => Ok(vec![Expr::parse_in(other, scope.nested())?]),
    }
}

/// `args` when there are exactly `n` of them, else mongod's 16020.
pub(super) fn exactly(name: &str, args: Vec<Expr>, n: usize) -> Result<Vec<Expr>> {
    if args.len() != n {
        return Err(CommandError::new(
            ErrorCode::Location16020,
            format!(
                "Expression {name} takes exactly {n} arguments. {} were passed in.",
                args.len()
            ),
        ));
    }
    Ok(args)
}

/// `args` when there are `min..=max` of them, else mongod's 28667.
pub(super) fn between(name: &str, args: Vec<Expr>, min: usize, max: usize) -> Result<Vec<Expr>> {
    if args.len() < min || args.len() > max {
        return Err(CommandError::new(
            ErrorCode::Location28667,
            format!(
                "Expression {name} takes at least {min} arguments, and at most {max}, but {} were passed in.",
                args.len()
            ),
        ));
    }
    Ok(args)
}

/// Null, undefined or missing: what mongod calls nullish.
pub(super) fn nullish(v: &Option<Bson>) -> bool {
    matches!(v, None | Some(Bson::Null) | Some(Bson::Undefined))
}

/// A number whose value an int32 holds exactly (mongod's
/// `Value::integral()`), as that int.
pub(super) fn as_int32(v: &Bson) -> Option<i32> {
    match v {
        Bson::Int32(i) => Some(*i),
        Bson::Int64(i) => i32::try_from(*i).ok(),
        Bson::Double(_) | Bson::Decimal128(_) => {
            let d = crate::query::compare::as_f64(v)?;
            (d.fract() == 0.0 && d >= f64::from(i32::MIN) && d <= f64::from(i32::MAX))
                .then_some(d as i32)
        }
        _ => None,
    }
}

/// A value as mongod's `Value::toString` shows it in a message.
pub(super) fn shown(v: &Option<Bson>) -> String {
    match v {
        None => "MISSING".to_owned(),
        Some(Bson::Double(d)) => double_string(*d),
        Some(other) => other.to_string(),
    }
}

/// A double as C++'s stream prints it (six significant digits, `%g`):
/// `1.5`, `1e+20`, `9.22337e+18`; mongod's messages are built that way.
pub(super) fn double_string(d: f64) -> String {
    if d.is_nan() {
        return "nan".to_owned();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = format!("{d:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(5 - exp).unwrap_or(0);
        trim(&format!("{d:.decimals$}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_mongod_prints_them() {
        for (d, s) in [
            (1.5, "1.5"),
            (1e20, "1e+20"),
            (9.223372036854776e18, "9.22337e+18"),
            (-9.223372036854776e18, "-9.22337e+18"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (2.5, "2.5"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(double_string(d), s, "{d}");
        }
    }

    #[test]
    fn integral_means_an_int32_exactly() {
        assert_eq!(as_int32(&Bson::Double(3.0)), Some(3));
        assert_eq!(as_int32(&Bson::Double(3.5)), None);
        assert_eq!(as_int32(&Bson::Int64(i64::MAX)), None);
        assert_eq!(as_int32(&Bson::Int64(-5)), Some(-5));
        assert_eq!(as_int32(&Bson::Double(f64::NAN)), None);
        assert_eq!(as_int32(&Bson::String("1".into())), None);
    }
}
