//! Numbers as decimal digits: the exact rounding `$round`, `$trunc`,
//! `$ceil` and `$floor` do on Decimal128 (and on a double's 34-digit decimal
//! form, as mongod rounds doubles), the Decimal128 a double converts to,
//! and the C `%g` form mongod prints doubles with in messages and
//! `$toString`.

use bson::Decimal128;

/// A finite decimal `(-1)^negative × coefficient × 10^exponent`, the
/// coefficient as ASCII digits without leading zeros ("0" for zero).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Digits {
    pub negative: bool,
    pub coefficient: String,
    pub exponent: i64,
}

/// How [`Digits::quantize`] drops digits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Rounding {
    HalfEven,
    TowardZero,
    Up,
    Down,
}

impl Digits {
    /// A Decimal128's digits; `None` for NaN and the infinities.
    pub fn from_decimal(d: &Decimal128) -> Option<Digits> {
        let s = d.to_string();
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.as_str()),
        };
        if !body.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let (mantissa, exp) = match body.split_once('E') {
            Some((m, e)) => (m, e.trim_start_matches('+').parse::<i64>().ok()?),
            None => (body, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let joined = format!("{int}{frac}");
        let trimmed = joined.trim_start_matches('0');
        Some(Digits {
            negative,
            coefficient: if trimmed.is_empty() {
                "0".into()
            } else {
                trimmed.into()
            },
            exponent: exp - frac.len() as i64,
        })
    }

    /// A finite double's value rounded to `significant` digits (the
    /// double's exact binary value is a terminating decimal).
    pub fn from_f64(x: f64, significant: usize) -> Option<Digits> {
        if !x.is_finite() {
            return None;
        }
        let s = format!("{:.*e}", significant.saturating_sub(1), x.abs());
        let (mantissa, exp) = s.split_once('e')?;
        let exp: i64 = exp.parse().ok()?;
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let joined = format!("{int}{frac}");
        let trimmed = joined.trim_start_matches('0');
        Some(Digits {
            negative: x.is_sign_negative(),
            coefficient: if trimmed.is_empty() {
                "0".into()
            } else {
                trimmed.into()
            },
            exponent: exp - frac.len() as i64,
        })
    }

    /// The value with exponent `-place` (`place` digits after the point),
    /// as Decimal128's `quantize`. A value that already has fewer digits
    /// after the point is padded with zeros, as mongod's result keeps the
    /// requested exponent; `None` (NaN in mongod) when that takes more than
    /// Decimal128's 34 digits.
    pub fn quantize(&self, place: i64, rounding: Rounding) -> Option<Digits> {
        let target = -place;
        if self.exponent >= target {
            let zeros = usize::try_from(self.exponent - target).ok()?;
            if self.coefficient == "0" {
                return Some(Digits {
                    negative: self.negative,
                    coefficient: "0".to_owned(),
                    exponent: target,
                });
            }
            if self.coefficient.len().saturating_add(zeros) > 34 {
                return None;
            }
            return Some(Digits {
                negative: self.negative,
                coefficient: format!("{}{}", self.coefficient, "0".repeat(zeros)),
                exponent: target,
            });
        }
        let drop = usize::try_from(target - self.exponent).ok()?;
        let digits = self.coefficient.as_bytes();
        let (kept, dropped): (&[u8], &[u8]) = if drop >= digits.len() {
            (&[], digits)
        } else {
            digits.split_at(digits.len() - drop)
        };
        // What the dropped digits are against half a unit of the kept last.
        let leading_zeros = drop.saturating_sub(digits.len());
        let first = if leading_zeros > 0 {
            b'0'
        } else {
            dropped.first().copied().unwrap_or(b'0')
        };
        let rest_zero = if leading_zeros > 0 {
            dropped.iter().all(|&c| c == b'0')
        } else {
            dropped.iter().skip(1).all(|&c| c == b'0')
        };
        let any_dropped = dropped.iter().any(|&c| c != b'0');
        let last_odd = kept.last().is_some_and(|&c| (c - b'0') % 2 == 1);
        let up = match rounding {
            Rounding::TowardZero => false,
            Rounding::HalfEven => first > b'5' || (first == b'5' && (!rest_zero || last_odd)),
            Rounding::Up => any_dropped && !self.negative,
            Rounding::Down => any_dropped && self.negative,
        };
        let mut out: Vec<u8> = if kept.is_empty() {
            vec![b'0']
        } else {
            kept.to_vec()
        };
        if up {
            let mut i = out.len();
            loop {
                if i == 0 {
                    out.insert(0, b'1');
                    break;
                }
                i -= 1;
                if out[i] == b'9' {
                    out[i] = b'0';
                } else {
                    out[i] += 1;
                    break;
                }
            }
        }
        let s = String::from_utf8(out).unwrap_or_default();
        let trimmed = s.trim_start_matches('0');
        Some(Digits {
            negative: self.negative,
            coefficient: if trimmed.is_empty() {
                "0".into()
            } else {
                trimmed.into()
            },
            exponent: target,
        })
    }

    /// As a Decimal128 (rounded to 34 digits by the parser when longer);
    /// `None` when its exponent is out of Decimal128's range.
    pub fn to_decimal(&self) -> Option<Decimal128> {
        let sign = if self.negative { "-" } else { "" };
        format!("{sign}{}E{}", self.coefficient, self.exponent)
            .parse()
            .ok()
    }

    pub fn to_f64(&self) -> f64 {
        let sign = if self.negative { "-" } else { "" };
        format!("{sign}{}e{}", self.coefficient, self.exponent)
            .parse()
            .unwrap_or(f64::NAN)
    }
}

/// A Decimal128 that is `x` rounded to 15 significant digits, as mongod's
/// `Decimal128(double)` (so `2.5` is `2.50000000000000`).
pub(super) fn decimal_from_f64(x: f64) -> Decimal128 {
    let text = if x.is_nan() {
        "NaN".to_owned()
    } else if x.is_infinite() {
        if x < 0.0 { "-Infinity" } else { "Infinity" }.to_owned()
    } else {
        let d = Digits::from_f64(x, 15).unwrap_or(Digits {
            negative: false,
            coefficient: "0".into(),
            exponent: 0,
        });
        let sign = if d.negative { "-" } else { "" };
        if d.coefficient == "0" {
            format!("{sign}0")
        } else {
            format!(
                "{sign}{:0<15}E{}",
                d.coefficient,
                d.exponent - (15 - d.coefficient.len() as i64)
            )
        }
    };
    text.parse()
        .unwrap_or_else(|_| Decimal128::from_bytes([0; 16]))
}

/// The shortest Decimal128 that reads back as `x` (so 5.0 is `5`): how a
/// result computed through a double is given as a decimal.
pub(super) fn decimal_shortest(x: f64) -> Decimal128 {
    if !x.is_finite() {
        return decimal_from_f64(x);
    }
    format!("{x:e}")
        .parse()
        .unwrap_or_else(|_| decimal_from_f64(x))
}

/// An integer as a Decimal128 (exponent 0).
pub(super) fn decimal_from_i64(i: i64) -> Decimal128 {
    i.to_string()
        .parse()
        .unwrap_or_else(|_| Decimal128::from_bytes([0; 16]))
}

/// A Decimal128 as the nearest double (NaN and the infinities included).
pub(super) fn decimal_to_f64(d: &Decimal128) -> f64 {
    let s = d.to_string();
    match s.as_str() {
        "NaN" | "-NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

/// C's `printf("%g", x)`: six significant digits, trailing zeros dropped,
/// an exponent when it is below -4 or at least 6. mongod's messages (and
/// 8.0's `$toString` of a double) print doubles this way.
pub(super) fn format_g(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_owned();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = format!("{:.5e}", x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let strip = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if (-4..6).contains(&exp) {
        strip(format!("{:.*}", (5 - exp) as usize, x))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa.to_owned()), exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_g_as_c_prints() {
        for (x, want) in [
            (2.0, "2"),
            (1.5, "1.5"),
            (-1.0, "-1"),
            (1.23456789, "1.23457"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (1e300, "1e+300"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (999999.5, "1e+06"),
        ] {
            assert_eq!(format_g(x), want, "{x}");
        }
    }

    #[test]
    fn quantize_rounds_as_decimal128() {
        let d = |s: &str| Digits::from_decimal(&s.parse().unwrap()).unwrap();
        let q = |s: &str, p: i64, r: Rounding| {
            d(s).quantize(p, r)
                .unwrap()
                .to_decimal()
                .unwrap()
                .to_string()
        };
        assert_eq!(q("2.5", 0, Rounding::HalfEven), "2");
        assert_eq!(q("3.5", 0, Rounding::HalfEven), "4");
        assert_eq!(q("-2.5", 0, Rounding::HalfEven), "-2");
        assert_eq!(q("2.51", 0, Rounding::HalfEven), "3");
        assert_eq!(q("19.99", 1, Rounding::HalfEven), "20.0");
        assert_eq!(q("1234", -2, Rounding::HalfEven), "1.2E+3");
        assert_eq!(q("1250", -2, Rounding::HalfEven), "1.2E+3");
        assert_eq!(q("1350", -2, Rounding::HalfEven), "1.4E+3");
        assert_eq!(q("999", -3, Rounding::HalfEven), "1E+3");
        assert_eq!(q("-1.9", 0, Rounding::TowardZero), "-1");
        assert_eq!(q("1.1", 0, Rounding::Up), "2");
        assert_eq!(q("-1.1", 0, Rounding::Up), "-1");
        assert_eq!(q("-1.1", 0, Rounding::Down), "-2");
        assert_eq!(q("1.1", 2, Rounding::HalfEven), "1.10");
        assert_eq!(q("0.0004", 2, Rounding::HalfEven), "0.00");
        // Past Decimal128's 34 digits: NaN in mongod.
        assert!(d("1E+30").quantize(10, Rounding::HalfEven).is_none());
    }

    #[test]
    fn doubles_become_fifteen_digit_decimals() {
        assert_eq!(decimal_from_f64(2.5).to_string(), "2.50000000000000");
        assert_eq!(decimal_from_f64(0.1).to_string(), "0.100000000000000");
        assert_eq!(decimal_from_f64(-3.0).to_string(), "-3.00000000000000");
        assert_eq!(decimal_from_f64(f64::NAN).to_string(), "NaN");
        assert_eq!(decimal_shortest(5.0).to_string(), "5");
        assert_eq!(decimal_shortest(0.1).to_string(), "0.1");
        assert_eq!(decimal_shortest(-2.5e-20).to_string(), "-2.5E-20");
        assert_eq!(decimal_shortest(f64::INFINITY).to_string(), "Infinity");
    }
}
