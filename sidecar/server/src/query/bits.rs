//! The bit-test query operators `$bitsAllSet`, `$bitsAllClear`,
//! `$bitsAnySet` and `$bitsAnyClear`: which bit positions to test (an array
//! of positions, a non-negative bitmask number, or a BinData mask), and
//! whether a value passes (a whole number in a long's range, negative ones
//! in two's complement sign-extended past bit 63, or a BinData whose bits
//! past its end are clear).

use bson::Bson;

use crate::error::{CommandError, ErrorCode, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitTest {
    AllSet,
    AllClear,
    AnySet,
    AnyClear,
}

/// A parsed bit test: the operator and the positions it tests.
#[derive(Debug, Clone)]
pub struct Bits {
    test: BitTest,
    positions: Vec<u32>,
}

impl BitTest {
    pub fn from_name(op: &str) -> Option<BitTest> {
        Some(match op {
            "$bitsAllSet" => BitTest::AllSet,
            "$bitsAllClear" => BitTest::AllClear,
            "$bitsAnySet" => BitTest::AnySet,
            "$bitsAnyClear" => BitTest::AnyClear,
            _ => return None,
        })
    }
}

/// A value as mongod prints a BSON element's value in these messages.
fn shown(v: &Bson) -> String {
    match v {
        Bson::String(s) => format!("\"{s}\""),
        Bson::Double(d) if d.fract() == 0.0 && d.is_finite() => format!("{d:.1}"),
        other => other.to_string(),
    }
}

/// A number that must be a whole, non-negative 64-bit integer (a bitmask
/// or, with `max`, a bit position), mongod's messages when it is not.
fn whole(v: &Bson, what: &str, max: Option<i64>) -> std::result::Result<i64, String> {
    let value = match v {
        Bson::Int32(i) => i64::from(*i),
        Bson::Int64(i) => *i,
        Bson::Double(_) | Bson::Decimal128(_) => {
            let x = super::compare::as_f64(v).unwrap_or(f64::NAN);
            if x.is_nan() {
                return Err(format!("Expected an integer, but found NaN in: {what}"));
            }
            if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x) {
                return Err(format!("Cannot represent as a 64-bit integer: {what}"));
            }
            if x.fract() != 0.0 {
                return Err(format!("Expected an integer: {what}"));
            }
            x as i64
        }
        _ => return Err(format!("Expected a number in: {what}")),
    };
    if value < 0 {
        return Err(format!("Expected a non-negative number in: {what}"));
    }
    if let Some(max) = max
        && value > max
    {
        return Err(format!("Cannot represent {what} in an int"));
    }
    Ok(value)
}

impl Bits {
    /// Parses `{path: {op: arg}}`'s argument.
    pub fn parse(path: &str, op: &str, test: BitTest, arg: &Bson) -> Result<Bits> {
        let mut positions = Vec::new();
        match arg {
            Bson::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let what = format!("{i}: {}", shown(item));
                    let p = whole(item, &what, Some(i64::from(i32::MAX))).map_err(|m| {
                        CommandError::new(
                            ErrorCode::BadValue,
                            format!("Failed to parse bit position. {m}"),
                        )
                    })?;
                    positions.push(p as u32);
                }
                positions.sort_unstable();
                positions.dedup();
            }
            v if super::compare::is_number(v) => {
                let mask = whole(v, &format!("{op}: {}", shown(v)), None)
                    .map_err(|m| CommandError::new(ErrorCode::FailedToParse, m))?;
                positions.extend((0..63).filter(|b| mask >> b & 1 == 1));
            }
            Bson::Binary(b) => {
                for (i, byte) in b.bytes.iter().enumerate() {
                    for bit in 0..8 {
                        if byte >> bit & 1 == 1 {
                            positions.push((i * 8 + bit) as u32);
                        }
                    }
                }
            }
            other => {
                return Err(CommandError::new(
                    ErrorCode::BadValue,
                    format!(
                        "{path} takes an Array, a number, or a BinData but received: {op}: {}",
                        shown(other)
                    ),
                ));
            }
        }
        Ok(Bits { test, positions })
    }

    /// Whether one value (not an array: the caller expands those) passes.
    pub fn matches(&self, v: &Bson) -> bool {
        let bit: Box<dyn Fn(u32) -> bool + '_> = match v {
            Bson::Binary(b) => Box::new(move |p: u32| {
                b.bytes
                    .get((p / 8) as usize)
                    .is_some_and(|byte| byte >> (p % 8) & 1 == 1)
            }),
            Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => {
                let Some(n) = whole_value(v) else {
                    return false;
                };
                Box::new(move |p: u32| if p >= 64 { n < 0 } else { n >> p & 1 == 1 })
            }
            _ => return false,
        };
        let mut each = self.positions.iter().map(|&p| bit(p));
        match self.test {
            BitTest::AllSet => each.all(|set| set),
            BitTest::AllClear => each.all(|set| !set),
            BitTest::AnySet => each.any(|set| set),
            BitTest::AnyClear => each.any(|set| !set),
        }
    }
}

/// A stored number as the integer tested: whole and within a long, else
/// it does not match.
fn whole_value(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        _ => {
            let x = super::compare::as_f64(v)?;
            let in_range = (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x);
            (in_range && x.fract() == 0.0).then_some(x as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::filter::Filter;
    use bson::spec::BinarySubtype;
    use bson::{Binary, Document, bson, doc};

    fn m(filter: Document, d: Document) -> bool {
        Filter::parse(&filter).unwrap().matches(&d)
    }

    fn err(filter: Document) -> (i32, String) {
        let e = Filter::parse(&filter).unwrap_err();
        (e.code.code(), e.message)
    }

    #[test]
    fn manual_examples() {
        // The manual's collection: a: 54 (0b110110), -> 20 (0b10100), ...
        let d54 = doc! {"a": 54};
        assert!(m(doc! {"a": {"$bitsAllSet": [1, 5]}}, d54.clone()));
        assert!(m(doc! {"a": {"$bitsAllSet": 50}}, d54.clone()));
        assert!(!m(doc! {"a": {"$bitsAllSet": [0, 1]}}, d54.clone()));
        assert!(m(doc! {"a": {"$bitsAllClear": [0, 3]}}, d54.clone()));
        assert!(m(doc! {"a": {"$bitsAnySet": [0, 1]}}, d54.clone()));
        assert!(m(doc! {"a": {"$bitsAnyClear": [1, 5, 0]}}, d54.clone()));
        assert!(!m(doc! {"a": {"$bitsAnyClear": [1, 5]}}, d54.clone()));
        let bin = |bytes: &[u8]| {
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: bytes.to_vec(),
            })
        };
        // BinData values and masks: bits from the first byte's low bit.
        assert!(m(doc! {"a": {"$bitsAllSet": bin(&[0x30])}}, d54.clone()));
        assert!(m(
            doc! {"a": {"$bitsAllSet": [1, 5]}},
            doc! {"a": bin(&[0x22])}
        ));
        assert!(m(
            doc! {"a": {"$bitsAllClear": [100]}},
            doc! {"a": bin(&[0xff])}
        ));
        // Negative numbers: two's complement, sign-extended past bit 63.
        assert!(m(
            doc! {"a": {"$bitsAllSet": [0, 1, 63, 100]}},
            doc! {"a": -1}
        ));
        assert!(!m(doc! {"a": {"$bitsAllClear": [100]}}, doc! {"a": -5}));
        assert!(m(doc! {"a": {"$bitsAllClear": [100]}}, doc! {"a": 5}));
        assert!(m(doc! {"a": {"$bitsAllSet": [1]}}, doc! {"a": -2i64}));
        // Whole doubles match as integers; others never.
        assert!(m(doc! {"a": {"$bitsAllSet": [1]}}, doc! {"a": 2.0}));
        assert!(!m(doc! {"a": {"$bitsAnySet": [1]}}, doc! {"a": 2.5}));
        assert!(!m(doc! {"a": {"$bitsAllClear": [1]}}, doc! {"a": f64::NAN}));
        assert!(!m(doc! {"a": {"$bitsAllClear": [1]}}, doc! {"a": 1e19}));
        assert!(!m(doc! {"a": {"$bitsAllClear": [1]}}, doc! {"a": "x"}));
        assert!(!m(doc! {"a": {"$bitsAllClear": [1]}}, doc! {}));
        // Arrays: any element.
        assert!(m(doc! {"a": {"$bitsAllSet": [3]}}, doc! {"a": [1, 8]}));
        // No positions: all-tests pass, any-tests fail.
        assert!(m(doc! {"a": {"$bitsAllSet": []}}, doc! {"a": 0}));
        assert!(!m(doc! {"a": {"$bitsAnySet": 0}}, doc! {"a": 7}));
        assert!(m(
            doc! {"a": {"$bitsAllSet": i64::MAX}},
            doc! {"a": i64::MAX}
        ));
    }

    #[test]
    fn malformed_masks_and_positions() {
        assert_eq!(
            err(doc! {"a": {"$bitsAllClear": "123"}}),
            (
                2,
                "a takes an Array, a number, or a BinData but received: $bitsAllClear: \"123\""
                    .into()
            )
        );
        assert_eq!(
            err(doc! {"a": {"$bitsAllClear": 1.2}}),
            (9, "Expected an integer: $bitsAllClear: 1.2".into())
        );
        assert_eq!(
            err(doc! {"a": {"$bitsAllSet": -1}}),
            (
                9,
                "Expected a non-negative number in: $bitsAllSet: -1".into()
            )
        );
        assert_eq!(err(doc! {"a": {"$bitsAllSet": f64::NAN}}).0, 9);
        assert_eq!(err(doc! {"a": {"$bitsAllSet": 1e30}}).0, 9);
        assert_eq!(
            err(doc! {"a": {"$bitsAnySet": [1, -1]}}),
            (
                2,
                "Failed to parse bit position. Expected a non-negative number in: 1: -1".into()
            )
        );
        assert_eq!(err(doc! {"a": {"$bitsAnySet": [1.5]}}).0, 2);
        assert_eq!(err(doc! {"a": {"$bitsAnySet": ["a"]}}).0, 2);
        assert_eq!(err(doc! {"a": {"$bitsAnySet": [3_000_000_000i64]}}).0, 2);
        // The largest position is fine, and costs nothing to test.
        assert!(m(doc! {"a": {"$bitsAnySet": [i32::MAX]}}, doc! {"a": -1}));
        let many: Vec<Bson> = (0..100_000).map(Bson::Int32).collect();
        assert!(m(doc! {"a": {"$bitsAnySet": many}}, doc! {"a": 1}));
        let _ = bson!(1);
    }
}
