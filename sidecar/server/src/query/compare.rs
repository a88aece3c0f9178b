//! BSON's total order across types, as MongoDB sorts and compares values:
//! MinKey < null < numbers < strings < objects < arrays < binary < ObjectId
//! < booleans < dates < timestamps < regexes < MaxKey. Numbers of different
//! BSON types compare by value (1, 1i64 and 1.0 are equal). Strings compare
//! under the collation the command entered (`super::collation`), by their
//! UTF-8 bytes outside one.

use std::cmp::Ordering;

use bson::{Bson, Document};

/// The rank of a value's type in the cross-type order. Values of one rank
/// are compared by value; different ranks by rank.
pub fn type_rank(v: &Bson) -> u8 {
    match v {
        Bson::MinKey => 0,
        Bson::Undefined | Bson::Null => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 2,
        Bson::String(_) | Bson::Symbol(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Binary(_) => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Timestamp(_) => 10,
        Bson::RegularExpression(_) => 11,
        Bson::DbPointer(_) => 12,
        Bson::JavaScriptCode(_) => 13,
        Bson::JavaScriptCodeWithScope(_) => 14,
        Bson::MaxKey => 15,
    }
}

/// A number as f64 (Decimal128 through its decimal string), or None.
pub fn as_f64(v: &Bson) -> Option<f64> {
    match v {
        Bson::Int32(i) => Some(*i as f64),
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(d) => Some(*d),
        Bson::Decimal128(d) => d.to_string().parse().ok(),
        _ => None,
    }
}

/// A number as i64 when it is integral, or None.
pub fn as_i64(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some(*i as i64),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) if d.fract() == 0.0 && d.is_finite() => Some(*d as i64),
        Bson::Decimal128(_) => as_f64(v).filter(|d| d.fract() == 0.0).map(|d| d as i64),
        _ => None,
    }
}

pub fn is_number(v: &Bson) -> bool {
    type_rank(v) == 2
}

/// Numbers compare by their exact values, as MongoDB's `compareLongToDouble`
/// does: an integer is never rounded to a double first. (Rounding made
/// 2^53 == 2^53 as a double == 2^53 + 1 but 2^53 < 2^53 + 1, no order at all,
/// and `sort_by` panics on such a comparison.) Decimal128 compares as the
/// double nearest to it.
fn compare_numbers(a: &Bson, b: &Bson) -> Ordering {
    let int = |v: &Bson| match v {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        _ => None,
    };
    let float = |v: &Bson| as_f64(v).unwrap_or(f64::NAN);
    match (int(a), int(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(x), None) => compare_int_double(x, float(b)),
        (None, Some(y)) => compare_int_double(y, float(a)).reverse(),
        (None, None) => {
            let (x, y) = (float(a), float(b));
            // MongoDB orders NaN below every other number and equal to itself.
            match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            }
        }
    }
}

/// An integer against a double, exactly (NaN is below every number).
fn compare_int_double(i: i64, d: f64) -> Ordering {
    // 2^63: the first double past every i64.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if d.is_nan() {
        return Ordering::Greater;
    }
    if d >= TWO_63 {
        return Ordering::Less;
    }
    if d < -TWO_63 {
        return Ordering::Greater;
    }
    // -2^63 <= d < 2^63: its integer part is an i64, exactly.
    let whole = d.trunc();
    i.cmp(&(whole as i64)).then_with(|| {
        if d > whole {
            Ordering::Less
        } else if d < whole {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    })
}

/// Compares two BSON values in MongoDB's order.
pub fn compare(a: &Bson, b: &Bson) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        _ if ra == 2 => compare_numbers(a, b),
        _ if ra == 1 || ra == 0 || ra == 15 => Ordering::Equal,
        (Bson::String(x) | Bson::Symbol(x), Bson::String(y) | Bson::Symbol(y)) => {
            super::collation::compare_strings(x, y)
        }
        (Bson::Document(x), Bson::Document(y)) => compare_documents(x, y),
        (Bson::Array(x), Bson::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let o = compare(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.cmp(y),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .as_str()
            .cmp(y.pattern.as_str())
            .then_with(|| x.options.as_str().cmp(y.options.as_str())),
        (Bson::JavaScriptCode(x), Bson::JavaScriptCode(y)) => x.cmp(y),
        (Bson::JavaScriptCodeWithScope(x), Bson::JavaScriptCodeWithScope(y)) => x.code.cmp(&y.code),
        (Bson::DbPointer(_), Bson::DbPointer(_)) => Ordering::Equal,
        _ => Ordering::Equal,
    }
}

/// Documents compare field by field: type rank, then name, then value.
pub fn compare_documents(x: &Document, y: &Document) -> Ordering {
    for ((ka, va), (kb, vb)) in x.iter().zip(y.iter()) {
        let o = type_rank(va)
            .cmp(&type_rank(vb))
            .then_with(|| ka.cmp(kb))
            .then_with(|| compare(va, vb));
        if o != Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len())
}

/// Equality as `$eq` sees it (numbers across types, null == undefined).
pub fn equal(a: &Bson, b: &Bson) -> bool {
    compare(a, b) == Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, oid::ObjectId};

    #[test]
    fn cross_type_order() {
        let ordered = [
            Bson::MinKey,
            Bson::Null,
            bson!(-1.5),
            bson!(1),
            bson!(2i64),
            bson!("a"),
            bson!({"a": 1}),
            bson!([1]),
            Bson::ObjectId(ObjectId::new()),
            bson!(false),
            bson!(true),
            Bson::DateTime(bson::DateTime::from_millis(0)),
            Bson::MaxKey,
        ];
        for w in ordered.windows(2) {
            assert_eq!(
                compare(&w[0], &w[1]),
                Ordering::Less,
                "{:?} < {:?}",
                w[0],
                w[1]
            );
        }
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(equal(&bson!(1), &bson!(1.0)));
        assert!(equal(&bson!(1), &bson!(1i64)));
        assert_eq!(compare(&bson!(f64::NAN), &bson!(-1e300)), Ordering::Less);
        assert_eq!(
            compare(&bson!(i64::MAX), &bson!(i64::MAX - 1)),
            Ordering::Greater
        );
    }

    /// Found by the `query` fuzz target: int64 against double went through
    /// f64, so 2^53 + 1 == 2^53 as a double == 2^53 < 2^53 + 1, and sorting
    /// such numbers panicked ("user-provided comparison function does not
    /// correctly implement a total order").
    #[test]
    fn integers_and_doubles_compare_exactly() {
        let two_53 = 1i64 << 53;
        assert_eq!(
            compare(&bson!(two_53 + 1), &bson!(two_53 as f64)),
            Ordering::Greater
        );
        assert!(equal(&bson!(two_53), &bson!(two_53 as f64)));
        assert_eq!(
            compare(&bson!(i64::MAX), &bson!(9.223372036854776e18)),
            Ordering::Less
        );
        assert_eq!(
            compare(&bson!(9.223372036854776e18), &bson!(i64::MAX)),
            Ordering::Greater
        );
        assert!(equal(&bson!(i64::MIN), &bson!(-9.223372036854776e18)));
        assert_eq!(compare(&bson!(-1), &bson!(-0.5)), Ordering::Less);
        assert_eq!(compare(&bson!(0), &bson!(-0.5)), Ordering::Greater);
        assert!(equal(&bson!(0), &bson!(-0.0)));
        assert_eq!(
            compare(&bson!(i64::MIN), &bson!(f64::NAN)),
            Ordering::Greater
        );
        assert_eq!(compare(&bson!(1), &bson!(f64::INFINITY)), Ordering::Less);
        assert_eq!(
            compare(&bson!(1), &bson!(f64::NEG_INFINITY)),
            Ordering::Greater
        );
        // A total order: sorting every mix of them never panics.
        let vals = [
            bson!(i64::MAX),
            bson!(i64::MAX - 1),
            bson!(9.223372036854776e18),
            bson!(two_53),
            bson!(two_53 + 1),
            bson!(two_53 as f64),
            bson!(f64::NAN),
            bson!(0),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in 21..200 {
            let mut v: Vec<Bson> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    vals[(seed % vals.len() as u64) as usize].clone()
                })
                .collect();
            v.sort_by(compare);
            assert!(v.windows(2).all(|w| compare(&w[0], &w[1]).is_le()));
        }
    }

    #[test]
    fn documents_and_arrays() {
        assert_eq!(
            compare(&bson!({"a": 1}), &bson!({"a": 1, "b": 0})),
            Ordering::Less
        );
        assert_eq!(compare(&bson!({"a": 1}), &bson!({"b": 0})), Ordering::Less);
        assert_eq!(compare(&bson!([1, 2]), &bson!([1, 3])), Ordering::Less);
    }
}
