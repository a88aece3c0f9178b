//! Decimal128 arithmetic: sum, difference, product and quotient as IEEE
//! 754-2008's decimal128 defines them (34 significant digits, ties to
//! even, exponents in [-6176, 6111]), which is what mongod's decimal
//! library computes. bson's `Decimal128` only stores the bits; the
//! arithmetic is here, on the coefficient and exponent those bits hold.
//!
//! What must stay true: every operation computes the exact result (or a
//! stand-in that rounds the same way: the exact digits down to a few
//! guard digits, then one "sticky" digit that is nonzero exactly when
//! something nonzero lies below) and rounds it once, in [`round`].

use bson::Decimal128;

/// Significant digits of a decimal128.
const PRECISION: u32 = 34;
/// The largest and smallest exponent of a coefficient.
const MAX_EXPONENT: i64 = 6111;
const MIN_EXPONENT: i64 = -6176;
/// The exponent bias of the encoding.
const BIAS: i64 = 6176;

/// A decimal128 taken apart.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dec {
    NaN,
    Infinite {
        negative: bool,
    },
    Finite {
        negative: bool,
        coefficient: u128,
        exponent: i64,
    },
}

fn pow10(n: u32) -> Option<u128> {
    10u128.checked_pow(n)
}

/// How many decimal digits `c` has (0 has none).
fn digit_count(c: u128) -> u32 {
    if c == 0 { 0 } else { c.ilog10() + 1 }
}

impl Dec {
    /// The binary integer decimal encoding BSON stores (a non-canonical
    /// coefficient reads as zero, as the standard says).
    fn decode(d: &Decimal128) -> Dec {
        let bits = u128::from_le_bytes(d.bytes());
        let negative = bits >> 127 == 1;
        let combination = (bits >> 122) & 0x1f;
        if combination == 0x1f {
            return Dec::NaN;
        }
        if combination == 0x1e {
            return Dec::Infinite { negative };
        }
        let (exponent, coefficient) = if (bits >> 125) & 0b11 == 0b11 {
            // The coefficient's implicit high bits make it at least
            // 2^113, past the largest canonical one: zero.
            (((bits >> 111) & 0x3fff) as i64, 0)
        } else {
            (((bits >> 113) & 0x3fff) as i64, bits & ((1u128 << 113) - 1))
        };
        let coefficient = if coefficient >= 10u128.pow(PRECISION) {
            0
        } else {
            coefficient
        };
        Dec::Finite {
            negative,
            coefficient,
            exponent: exponent - BIAS,
        }
    }

    /// Back to the encoding; a finite value must already be in range
    /// (what [`round`] returns is).
    fn encode(self) -> Decimal128 {
        let bits: u128 = match self {
            Dec::NaN => 0x7c00_u128 << 112,
            Dec::Infinite { negative } => (u128::from(negative) << 127) | (0x78_u128 << 120),
            Dec::Finite {
                negative,
                coefficient,
                exponent,
            } => {
                let biased = (exponent.clamp(MIN_EXPONENT, MAX_EXPONENT) + BIAS) as u128;
                (u128::from(negative) << 127) | (biased << 113) | coefficient
            }
        };
        Decimal128::from_bytes(bits.to_le_bytes())
    }

    fn negated(self) -> Dec {
        match self {
            Dec::NaN => Dec::NaN,
            Dec::Infinite { negative } => Dec::Infinite {
                negative: !negative,
            },
            Dec::Finite {
                negative,
                coefficient,
                exponent,
            } => Dec::Finite {
                negative: !negative,
                coefficient,
                exponent,
            },
        }
    }

    fn is_negative(self) -> bool {
        match self {
            Dec::NaN => false,
            Dec::Infinite { negative } | Dec::Finite { negative, .. } => negative,
        }
    }
}

/// Whether `q` (a quotient by `unit`, `r` its remainder) rounds up to
/// the nearest, ties to even. `r < unit <= 10^38`, so `2r` fits.
fn ties_to_even_up(q: u128, r: u128, unit: u128) -> bool {
    match (2 * r).cmp(&unit) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => q % 2 == 1,
        std::cmp::Ordering::Less => false,
    }
}

/// The decimal128 nearest `(-1)^negative × coefficient × 10^exponent`,
/// ties to even; past the largest finite value, an infinity; below the
/// smallest, rounded to a multiple of 10^-6176.
fn round(negative: bool, coefficient: u128, exponent: i64) -> Dec {
    let digits = i64::from(digit_count(coefficient));
    let drop = (digits - i64::from(PRECISION))
        .max(MIN_EXPONENT - exponent)
        .max(0);
    let (mut c, mut e) = (coefficient, exponent);
    if drop > 0 {
        // Below 10^39 > u128::MAX, so past 38 dropped digits the value is
        // under half a unit of what is kept: it rounds to zero.
        let unit = u32::try_from(drop).ok().and_then(pow10);
        c = match unit {
            None => 0,
            Some(unit) => {
                let (q, r) = (c / unit, c % unit);
                q + u128::from(ties_to_even_up(q, r, unit))
            }
        };
        e += drop;
        if digit_count(c) > PRECISION {
            // 99...9 rounded up to 10^34.
            c /= 10;
            e += 1;
        }
    }
    if e > MAX_EXPONENT {
        if c == 0 {
            e = MAX_EXPONENT;
        } else {
            // Zeros moved into the coefficient while it has room (clamping).
            while e > MAX_EXPONENT && digit_count(c) < PRECISION {
                c *= 10;
                e -= 1;
            }
            if e > MAX_EXPONENT {
                return Dec::Infinite { negative };
            }
        }
    }
    Dec::Finite {
        negative,
        coefficient: c,
        exponent: e,
    }
}

/// `digits` (ASCII, the exact coefficient, any length) × 10^exponent
/// rounded: the first 37 digits and a sticky one stand for the rest.
fn round_digits(negative: bool, digits: &str, exponent: i64) -> Dec {
    const KEPT: usize = 37;
    let digits = digits.trim_start_matches('0');
    if digits.len() <= KEPT + 1 {
        return round(negative, digits.parse().unwrap_or(0), exponent);
    }
    let (head, tail) = digits.split_at(KEPT);
    let sticky = u128::from(tail.bytes().any(|b| b != b'0'));
    let c = head.parse::<u128>().unwrap_or(0) * 10 + sticky;
    round(negative, c, exponent + tail.len() as i64 - 1)
}

/// `a + b`.
pub(super) fn add(a: &Decimal128, b: &Decimal128) -> Decimal128 {
    sum(Dec::decode(a), Dec::decode(b)).encode()
}

/// `a - b`.
pub(super) fn subtract(a: &Decimal128, b: &Decimal128) -> Decimal128 {
    sum(Dec::decode(a), Dec::decode(b).negated()).encode()
}

fn sum(x: Dec, y: Dec) -> Dec {
    let (
        Dec::Finite {
            negative: xn,
            coefficient: xc,
            exponent: xe,
        },
        Dec::Finite {
            negative: yn,
            coefficient: yc,
            exponent: ye,
        },
    ) = (x, y)
    else {
        return match (x, y) {
            (Dec::NaN, _) | (_, Dec::NaN) => Dec::NaN,
            (Dec::Infinite { negative: a }, Dec::Infinite { negative: b }) if a != b => Dec::NaN,
            (Dec::Infinite { .. }, _) => x,
            _ => y,
        };
    };
    // `hi` has the larger exponent; the exact sum's exponent is `lo`'s.
    let ((hn, hc, he), (ln, lc, le)) = if xe >= ye {
        ((xn, xc, xe), (yn, yc, ye))
    } else {
        ((yn, yc, ye), (xn, xc, xe))
    };
    let shift = he - le;
    let hd = i64::from(digit_count(hc));
    // Both in units of 10^unit_exponent: exact while `hi` scaled keeps
    // under 38 digits; else `hi` is scaled to 38 digits and `lo` (below
    // a hundredth of it) is cut to whole units, remembering whether
    // anything was cut. The sum then has at least 37 digits, so rounding
    // drops at least three and the last digit only says whether anything
    // nonzero lies below the rounding digit.
    let (big, small, unit_exponent, cut) = if hc == 0 {
        (0, lc, le, false)
    } else if hd + shift <= 37 {
        (hc * 10u128.pow(shift as u32), lc, le, false)
    } else {
        let s = 37 - hd;
        let unit_exponent = he - s - 1;
        let (kept, cut) = match u32::try_from(unit_exponent - le).ok().and_then(pow10) {
            Some(unit) => (lc / unit, lc % unit != 0),
            None => (0, lc != 0),
        };
        (hc * 10u128.pow((s + 1) as u32), kept, unit_exponent, cut)
    };
    let (negative, magnitude) = if hn == ln {
        let m = big + small;
        (hn, if cut && m % 10 == 0 { m + 1 } else { m })
    } else if cut {
        // `lo`'s true value lies strictly between `small` and `small + 1`.
        let m = big - small - 1;
        (hn, if m % 10 == 0 { m + 1 } else { m })
    } else if big >= small {
        (hn, big - small)
    } else {
        (ln, small - big)
    };
    // An exact zero is positive unless both were negative.
    let negative = if magnitude == 0 { hn && ln } else { negative };
    round(negative, magnitude, unit_exponent)
}

/// `a × b`.
pub(super) fn multiply(a: &Decimal128, b: &Decimal128) -> Decimal128 {
    let (x, y) = (Dec::decode(a), Dec::decode(b));
    let negative = x.is_negative() != y.is_negative();
    match (x, y) {
        (Dec::NaN, _) | (_, Dec::NaN) => Dec::NaN,
        (Dec::Infinite { .. }, Dec::Finite { coefficient: 0, .. })
        | (Dec::Finite { coefficient: 0, .. }, Dec::Infinite { .. }) => Dec::NaN,
        (Dec::Infinite { .. }, _) | (_, Dec::Infinite { .. }) => Dec::Infinite { negative },
        (
            Dec::Finite {
                coefficient: xc,
                exponent: xe,
                ..
            },
            Dec::Finite {
                coefficient: yc,
                exponent: ye,
                ..
            },
        ) => round_digits(negative, &product_digits(xc, yc), xe + ye),
    }
    .encode()
}

/// The exact product of two coefficients (each under 10^34) as decimal
/// digits, computed in base 10^17 so every partial product fits a u128.
fn product_digits(x: u128, y: u128) -> String {
    const BASE: u128 = 100_000_000_000_000_000;
    let (x1, x0) = (x / BASE, x % BASE);
    let (y1, y0) = (y / BASE, y % BASE);
    let mut limbs = [0u128; 4];
    let mut carry = x0 * y0;
    for (i, partial) in [x1 * y0 + x0 * y1, x1 * y1, 0].into_iter().enumerate() {
        limbs[i] = carry % BASE;
        carry = carry / BASE + partial;
    }
    limbs[3] = carry;
    format!(
        "{}{:017}{:017}{:017}",
        limbs[3], limbs[2], limbs[1], limbs[0]
    )
}

/// `a ÷ b`; the caller has refused a zero divisor (mongod's 16608).
pub(super) fn divide(a: &Decimal128, b: &Decimal128) -> Decimal128 {
    let (x, y) = (Dec::decode(a), Dec::decode(b));
    let negative = x.is_negative() != y.is_negative();
    match (x, y) {
        (Dec::NaN, _) | (_, Dec::NaN) => Dec::NaN,
        (Dec::Infinite { .. }, Dec::Infinite { .. }) => Dec::NaN,
        (Dec::Infinite { .. }, _) => Dec::Infinite { negative },
        // A finite value over an infinity: zero at the smallest exponent.
        (_, Dec::Infinite { .. }) => round(negative, 0, MIN_EXPONENT),
        (_, Dec::Finite { coefficient: 0, .. }) => Dec::NaN,
        (
            Dec::Finite {
                coefficient: xc,
                exponent: xe,
                ..
            },
            Dec::Finite {
                coefficient: yc,
                exponent: ye,
                ..
            },
        ) => {
            // Long division, a digit at a time, until the quotient has two
            // digits past the 34 kept or divides exactly (the exact quotient
            // then has the exponent nearest `xe - ye`, as the standard wants).
            let (mut q, mut r, mut e) = (xc / yc, xc % yc, xe - ye);
            while r != 0 && digit_count(q) < PRECISION + 2 {
                r *= 10;
                q = q * 10 + r / yc;
                r %= yc;
                e -= 1;
            }
            if r != 0 {
                q = q * 10 + 1;
                e -= 1;
            }
            round(negative, q, e)
        }
    }
    .encode()
}

/// `a` less the largest whole multiple of `b` toward zero (C's `fmod`,
/// the sign of `a`), which is always exact; the caller has refused a zero
/// divisor (mongod's 5733415).
pub(super) fn remainder(a: &Decimal128, b: &Decimal128) -> Decimal128 {
    let (x, y) = (Dec::decode(a), Dec::decode(b));
    match (x, y) {
        (Dec::NaN, _) | (_, Dec::NaN) | (Dec::Infinite { .. }, _) => Dec::NaN,
        (_, Dec::Infinite { .. }) => x,
        (_, Dec::Finite { coefficient: 0, .. }) => Dec::NaN,
        (
            Dec::Finite {
                negative,
                coefficient: xc,
                exponent: xe,
            },
            Dec::Finite {
                coefficient: yc,
                exponent: ye,
                ..
            },
        ) => {
            if xe >= ye {
                // x = xc·10^(xe-ye) in units of 10^ye: reduce digit by digit.
                let mut r = xc % yc;
                for _ in 0..(xe - ye) {
                    if r == 0 {
                        break;
                    }
                    r = (r * 10) % yc;
                }
                round(negative, r, ye)
            } else {
                // In units of 10^xe the divisor is yc·10^(ye-xe); past 38
                // digits it is beyond any coefficient, so x is the remainder.
                let divisor = u32::try_from(ye - xe)
                    .ok()
                    .and_then(pow10)
                    .and_then(|scale| yc.checked_mul(scale));
                match divisor {
                    Some(divisor) => round(negative, xc % divisor, xe),
                    None => x,
                }
            }
        }
    }
    .encode()
}

/// `d` rounded to a whole number (ties to even) as a long; `None` for NaN,
/// the infinities and values out of a long's range (mongod's "invalid").
pub(super) fn to_i64(d: &Decimal128) -> Option<i64> {
    let Dec::Finite {
        negative,
        coefficient,
        exponent,
    } = Dec::decode(d)
    else {
        return None;
    };
    let magnitude = if coefficient == 0 {
        0
    } else if exponent >= 0 {
        coefficient.checked_mul(pow10(u32::try_from(exponent).ok()?)?)?
    } else if exponent < -38 {
        // Under 10^34 / 10^39: less than half.
        0
    } else {
        let unit = pow10(u32::try_from(-exponent).ok()?)?;
        let (q, r) = (coefficient / unit, coefficient % unit);
        q + u128::from(ties_to_even_up(q, r, unit))
    };
    let signed = if negative {
        0i128.checked_sub(i128::try_from(magnitude).ok()?)?
    } else {
        i128::try_from(magnitude).ok()?
    };
    i64::try_from(signed).ok()
}

/// `|d|` (NaN stays NaN): the sign bit cleared.
pub(super) fn abs(d: &Decimal128) -> Decimal128 {
    let mut bytes = d.bytes();
    bytes[15] &= 0x7f;
    Decimal128::from_bytes(bytes)
}

/// Whether `d` is zero (of either sign, at any exponent).
pub(super) fn is_zero(d: &Decimal128) -> bool {
    matches!(Dec::decode(d), Dec::Finite { coefficient: 0, .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal128 {
        s.parse().unwrap()
    }

    fn show(x: Decimal128) -> String {
        x.to_string()
    }

    // Expected values are Python's `decimal` module with decimal128's
    // context (precision 34, exponents -6176..6111, ties to even), which
    // implements the same standard (80,000 random cases of the four
    // operations agreed with it when this module was written).
    #[test]
    fn encoding_round_trips() {
        for s in [
            "0",
            "-0",
            "1",
            "-1.5",
            "0.1",
            "1E+6111",
            "9.999999999999999999999999999999999E+6144",
            "1E-6176",
            "1234567890123456789012345678901234",
            "NaN",
            "Infinity",
            "-Infinity",
        ] {
            assert_eq!(show(Dec::decode(&d(s)).encode()), show(d(s)), "{s}");
        }
    }

    #[test]
    fn sums_are_exact_then_rounded_half_even() {
        for (a, b, want) in [
            ("0.1", "0.2", "0.3"),
            ("1", "2", "3"),
            ("1.00", "2", "3.00"),
            ("1", "-1", "0"),
            ("-0", "-0", "-0"),
            ("-1.0", "1", "0.0"),
            ("0E+10", "1E-10", "1E-10"),
            ("1E+10", "0", "10000000000"),
            (
                "9999999999999999999999999999999999",
                "1",
                "1.000000000000000000000000000000000E+34",
            ),
            (
                "1234567890123456789012345678901234",
                "0.5",
                "1234567890123456789012345678901234",
            ),
            (
                "1234567890123456789012345678901235",
                "0.5",
                "1234567890123456789012345678901236",
            ),
            (
                "1234567890123456789012345678901234",
                "0.5000000000000000000001",
                "1234567890123456789012345678901235",
            ),
            (
                "1E+100",
                "1E-100",
                "1.000000000000000000000000000000000E+100",
            ),
            // All nines below the kept digits round up.
            (
                "1E+100",
                "-1E-100",
                "1.000000000000000000000000000000000E+100",
            ),
            // Exactly half a unit below: to even; a hair more: down.
            (
                "1E+40",
                "-500000",
                "1.000000000000000000000000000000000E+40",
            ),
            (
                "1E+40",
                "-500001",
                "9.999999999999999999999999999999999E+39",
            ),
            ("1E+40", "-1", "1.000000000000000000000000000000000E+40"),
            ("Infinity", "1", "Infinity"),
            ("Infinity", "-Infinity", "NaN"),
            ("NaN", "1", "NaN"),
            (
                "9.999999999999999999999999999999999E+6144",
                "1E+6111",
                "Infinity",
            ),
            ("1E-6176", "1E-6176", "2E-6176"),
        ] {
            assert_eq!(show(add(&d(a), &d(b))), want, "{a} + {b}");
        }
        assert_eq!(show(subtract(&d("0.3"), &d("0.1"))), "0.2");
        assert_eq!(show(subtract(&d("1"), &d("1"))), "0");
        assert_eq!(show(subtract(&d("-1"), &d("-Infinity"))), "Infinity");
    }

    #[test]
    fn products_and_quotients() {
        for (a, b, want) in [
            ("1.5", "2", "3.0"),
            ("-2", "0", "-0"),
            ("0.1", "0.1", "0.01"),
            (
                "1234567890123456789012345678901234",
                "1234567890123456789012345678901234",
                "1.524157875323883675049535156256667E+66",
            ),
            ("Infinity", "0", "NaN"),
            ("-Infinity", "2", "-Infinity"),
            ("1E+6000", "1E+6000", "Infinity"),
            ("1E-6000", "1E-6000", "0E-6176"),
        ] {
            assert_eq!(show(multiply(&d(a), &d(b))), want, "{a} * {b}");
        }
        for (a, b, want) in [
            ("1", "4", "0.25"),
            ("10", "2", "5"),
            ("1.00", "1", "1.00"),
            ("1", "3", "0.3333333333333333333333333333333333"),
            ("2", "3", "0.6666666666666666666666666666666667"),
            ("-1", "8", "-0.125"),
            ("0", "5", "0"),
            ("1", "Infinity", "0E-6176"),
            ("Infinity", "-1", "-Infinity"),
            ("1E+6111", "1E-6111", "Infinity"),
            // Exact: the exponent nearest the ideal 15.
            ("10", "5.00000000000000E-1", "2E+1"),
        ] {
            assert_eq!(show(divide(&d(a), &d(b))), want, "{a} / {b}");
        }
    }

    #[test]
    fn remainders_are_exact() {
        for (a, b, want) in [
            ("7", "3", "1"),
            ("-7", "3", "-1"),
            ("7", "-3", "1"),
            ("7.5", "2", "1.5"),
            ("1E+6000", "7", "1"),
            ("1", "1E+100", "1"),
            ("0.3", "0.1", "0.0"),
            ("5", "Infinity", "5"),
            ("Infinity", "2", "NaN"),
            ("NaN", "2", "NaN"),
        ] {
            assert_eq!(show(remainder(&d(a), &d(b))), want, "{a} % {b}");
        }
    }

    #[test]
    fn longs_in_and_out() {
        assert_eq!(to_i64(&d("1.5")), Some(2));
        assert_eq!(to_i64(&d("2.5")), Some(2));
        assert_eq!(to_i64(&d("-2.5")), Some(-2));
        assert_eq!(to_i64(&d("1E+3")), Some(1000));
        assert_eq!(to_i64(&d("-9223372036854775808")), Some(i64::MIN));
        assert_eq!(to_i64(&d("9223372036854775808")), None);
        assert_eq!(to_i64(&d("1E+100")), None);
        assert_eq!(to_i64(&d("1E-100")), Some(0));
        assert_eq!(to_i64(&d("NaN")), None);
        assert!(is_zero(&d("-0E+5")));
        assert_eq!(show(abs(&d("-1.50"))), "1.50");
        assert_eq!(show(abs(&d("-Infinity"))), "Infinity");
        assert!(!is_zero(&d("1E-6176")));
    }
}
