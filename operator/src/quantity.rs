//! Kubernetes quantities (`256Mi`, `2Gi`, `1.5G`) as byte counts: the one
//! parser for every size the operator reads from a user (the chart's
//! `sidecar.cache` values, `ArgonProject.spec.sidecar.cache`, a sidecar's
//! memory limit). `k8s_openapi`'s `Quantity` is only a string.
//!
//! Accepted: a non-negative decimal number (digits, optionally `.` and more
//! digits) and at most one suffix, binary (`Ki` … `Ei`) or decimal (`k` …
//! `E`); no sign, no exponent, no milli-units (a byte count has none). The
//! CRD's pattern for these fields is [`PATTERN`], so what the apiserver
//! admits is exactly what this parses. A fraction of a byte rounds up, as
//! the Kubernetes `Quantity.Value()` does.

use std::fmt;

/// The syntax [`parse_bytes`] takes, as the CRD's `pattern`.
pub const PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";
/// Longest quantity accepted (the CRD's `maxLength` too): enough for any
/// real size, short enough that no digit string needs more than `u128`.
pub const MAX_LEN: usize = 20;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

/// Why a string is not a byte quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuantityError {
    Empty,
    TooLong(usize),
    Malformed(String),
    Overflow(String),
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantityError::Empty => write!(f, "an empty quantity"),
            QuantityError::TooLong(n) => write!(
                f,
                "a quantity of {n} characters (at most {MAX_LEN}, e.g. 256Mi or 2Gi)"
            ),
            QuantityError::Malformed(s) => write!(
                f,
                "{s:?} is not a quantity of bytes (digits with an optional fraction and one of the suffixes Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E, e.g. 256Mi or 2Gi)"
            ),
            QuantityError::Overflow(s) => write!(f, "{s:?} is more bytes than can be counted"),
        }
    }
}

impl std::error::Error for QuantityError {}

fn multiplier(suffix: &str) -> Option<u128> {
    let (base, power): (u128, u32) = match suffix {
        "" => (1, 0),
        "Ki" => (1024, 1),
        "Mi" => (1024, 2),
        "Gi" => (1024, 3),
        "Ti" => (1024, 4),
        "Pi" => (1024, 5),
        "Ei" => (1024, 6),
        "k" => (1000, 1),
        "M" => (1000, 2),
        "G" => (1000, 3),
        "T" => (1000, 4),
        "P" => (1000, 5),
        "E" => (1000, 6),
        _ => return None,
    };
    Some(base.pow(power))
}

/// The number of bytes `quantity` stands for.
pub fn parse_bytes(quantity: &str) -> Result<u64, QuantityError> {
    if quantity.is_empty() {
        return Err(QuantityError::Empty);
    }
    if quantity.len() > MAX_LEN {
        return Err(QuantityError::TooLong(quantity.len()));
    }
    let malformed = || QuantityError::Malformed(quantity.to_string());
    let overflow = || QuantityError::Overflow(quantity.to_string());
    let number_end = quantity
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(number_end);
    let unit = multiplier(suffix).ok_or_else(malformed)?;
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || (number.contains('.') && fraction.is_empty())
    {
        return Err(malformed());
    }
    // At most MAX_LEN digits in all: each part fits in a u128 (< 10^20),
    // and so does its product with a unit of at most 2^60.
    let whole: u128 = whole.parse().map_err(|_| overflow())?;
    let mut bytes = whole.checked_mul(unit).ok_or_else(overflow)?;
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().map_err(|_| overflow())?;
        let len = u32::try_from(fraction.len()).map_err(|_| overflow())?;
        let denominator = 10u128.checked_pow(len).ok_or_else(overflow)?;
        let scaled = numerator.checked_mul(unit).ok_or_else(overflow)?;
        bytes = bytes
            .checked_add(scaled.div_ceil(denominator))
            .ok_or_else(overflow)?;
    }
    u64::try_from(bytes).map_err(|_| overflow())
}

/// `bytes` as a short human size (`256 MiB`), for messages.
pub fn describe(bytes: u64) -> String {
    for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1234"), Ok(1234));
        assert_eq!(parse_bytes("1Ki"), Ok(1024));
        assert_eq!(parse_bytes("256Mi"), Ok(256 << 20));
        assert_eq!(parse_bytes("2Gi"), Ok(2 << 30));
        assert_eq!(parse_bytes("3Ti"), Ok(3 << 40));
        assert_eq!(parse_bytes("1Pi"), Ok(1 << 50));
        assert_eq!(parse_bytes("1Ei"), Ok(1 << 60));
        assert_eq!(parse_bytes("1k"), Ok(1000));
        assert_eq!(parse_bytes("5M"), Ok(5_000_000));
        assert_eq!(parse_bytes("2G"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("1T"), Ok(1_000_000_000_000));
        assert_eq!(parse_bytes("1P"), Ok(1_000_000_000_000_000));
        assert_eq!(parse_bytes("1E"), Ok(1_000_000_000_000_000_000));
    }

    #[test]
    fn fractions_round_up_to_a_whole_byte() {
        assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_bytes("0.5Ki"), Ok(512));
        assert_eq!(parse_bytes("0.001k"), Ok(1));
        assert_eq!(parse_bytes("0.0001k"), Ok(1));
        assert_eq!(parse_bytes("1.0"), Ok(1));
        assert_eq!(parse_bytes("0.1"), Ok(1));
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        for bad in [
            "", "Mi", "-1Mi", "+1Mi", "1mi", "1MB", "1 Mi", " 1Mi", "1Mi ", "1e3", "1.", ".5Mi",
            "1..5", "1.5.5", "100m", "1Mi1", "0x10", "1_000", "１Mi", "1Mi\n", "NaN", "∞",
        ] {
            let e = parse_bytes(bad).unwrap_err();
            assert!(
                matches!(e, QuantityError::Empty | QuantityError::Malformed(_)),
                "{bad:?}: {e:?}"
            );
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn huge_values_overflow_instead_of_wrapping() {
        assert_eq!(parse_bytes("15Ei"), Ok(15 << 60));
        assert!(matches!(
            parse_bytes("16Ei"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            parse_bytes("99999E"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            parse_bytes("99999999999999999999"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            parse_bytes("9999999999999999999E"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            parse_bytes("0.9999999999999999Ei"),
            Ok(n) if n < 1 << 60 && n > 1 << 59
        ));
        assert_eq!(
            parse_bytes(&"1".repeat(21)),
            Err(QuantityError::TooLong(21))
        );
        assert_eq!(
            parse_bytes(&"9".repeat(10_000)),
            Err(QuantityError::TooLong(10_000))
        );
    }

    /// The CRD's fields of sizes take this parser's syntax and length.
    #[test]
    fn the_crd_admits_exactly_this_syntax() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(crate::crd::ArgonProject::crd()).unwrap();
        let cache = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["sidecar"]["properties"]["cache"]["properties"];
        for field in ["memory", "disk"] {
            assert_eq!(cache[field]["pattern"], PATTERN, "{field}: {cache}");
            assert_eq!(cache[field]["maxLength"], MAX_LEN, "{field}: {cache}");
        }
    }

    #[test]
    fn sizes_read_back_for_people() {
        assert_eq!(describe(256 << 20), "256 MiB");
        assert_eq!(describe(2 << 30), "2 GiB");
        assert_eq!(describe(1000), "1000 bytes");
    }
}
