//! `IdKey`: the canonical, totally ordered byte key of a BSON `_id`.
//!
//! Invariants (tested below and by property tests):
//! - `IdKey::from_bson(a) == IdKey::from_bson(b)` iff MongoDB treats `a` and
//!   `b` as the same `_id` (numbers compare by value across int32, int64 and
//!   double; `-0.0 == 0`).
//! - Byte order of keys is MongoDB's BSON comparison order: MinKey < null <
//!   numbers < strings (and symbols) < objects < arrays < binary < ObjectId <
//!   bool < date < timestamp < regex < code < MaxKey.
//! - Every encoding is prefix-free, so composite values (objects, arrays)
//!   order element by element as MongoDB's do.
//!
//! Not covered: Decimal128 compares by its raw bytes, not by value (the bson
//! crate offers no arithmetic on it); a Decimal128 `_id` equal in value to an
//! integer is therefore a different key.

use bson::Bson;
use std::fmt;
use std::sync::Arc;

// Type classes, in MongoDB's comparison order. Values start at 0x10 so that
// the end-of-object/array terminator (0x00) sorts below any element.
const C_MINKEY: u8 = 0x10;
const C_NULL: u8 = 0x20;
const C_NUMBER: u8 = 0x30;
const C_DECIMAL: u8 = 0x31; // see the module doc: not unified with numbers
const C_STRING: u8 = 0x40;
const C_OBJECT: u8 = 0x50;
const C_ARRAY: u8 = 0x60;
const C_BINARY: u8 = 0x70;
const C_OBJECTID: u8 = 0x80;
const C_BOOL: u8 = 0x90;
const C_DATE: u8 = 0xA0;
const C_TIMESTAMP: u8 = 0xB0;
const C_REGEX: u8 = 0xC0;
const C_DBPOINTER: u8 = 0xC8;
const C_CODE: u8 = 0xD0;
const C_CODE_WITH_SCOPE: u8 = 0xD8;
const C_MAXKEY: u8 = 0xF0;
const END: u8 = 0x00;

/// The type-class bytes a planner brackets comparisons with
/// (`indexkey::type_bracket`).
pub(crate) mod class {
    pub const NUMBER: u8 = super::C_NUMBER;
    pub const STRING: u8 = super::C_STRING;
    pub const OBJECTID: u8 = super::C_OBJECTID;
    pub const BOOL: u8 = super::C_BOOL;
    pub const DATE: u8 = super::C_DATE;
}

/// The canonical ordered key of an `_id` value. Cheap to clone (shared bytes),
/// because persistent maps clone keys when they copy a node.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdKey(Arc<[u8]>);

impl IdKey {
    pub fn from_bson(value: &Bson) -> IdKey {
        let mut out = Vec::with_capacity(16);
        encode(value, &mut out);
        IdKey(out.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key from bytes `as_bytes` gave (state keeps keys inside its
    /// document entries and rebuilds them for key maps).
    pub(crate) fn from_key_bytes(bytes: &[u8]) -> IdKey {
        IdKey(Arc::from(bytes))
    }

    /// Sorts below every real key (which is never empty): a range start.
    pub(crate) fn min() -> IdKey {
        IdKey(Arc::from(&[][..]))
    }
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdKey(")?;
        for b in self.0.iter() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Writes `s` so that byte order equals string order and the result is
/// prefix-free: 0x00 is escaped as 0x00 0xFF and the end is 0x00 0x00.
fn encode_str(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn ordered_f64(v: f64) -> [u8; 8] {
    let bits = v.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    ordered.to_be_bytes()
}

/// Numbers: the nearest double (order-preserving bytes), then the exact
/// integer remainder `n - round(n)` as a tie-break. Rounding is monotonic,
/// a non-integral double never rounds-ties with an integer, and integers
/// that round to the same double are ordered by the remainder; so byte order
/// is numeric order and equal values get equal bytes.
fn encode_integer(n: i64, out: &mut Vec<u8>) {
    let d = n as f64;
    let remainder = (n as i128 - d as i128) as i64;
    out.push(1);
    out.extend_from_slice(&ordered_f64(d));
    out.extend_from_slice(&ordered_i64(remainder));
}

fn encode_double(x: f64, out: &mut Vec<u8>) {
    if x.is_nan() {
        // MongoDB sorts NaN below every other number.
        out.push(0);
        return;
    }
    // Integral doubles in i64 range are the same _id as the integer.
    if x.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x)
    {
        encode_integer(x as i64, out);
        return;
    }
    out.push(1);
    out.extend_from_slice(&ordered_f64(x));
    out.extend_from_slice(&ordered_i64(0));
}

/// Appends the canonical, prefix-free encoding of `value` (also used for
/// the values of secondary-index keys, `indexkey.rs`).
pub(crate) fn encode(value: &Bson, out: &mut Vec<u8>) {
    match value {
        Bson::MinKey => out.push(C_MINKEY),
        Bson::Null | Bson::Undefined => out.push(C_NULL),
        Bson::Int32(n) => {
            out.push(C_NUMBER);
            encode_integer(i64::from(*n), out);
        }
        Bson::Int64(n) => {
            out.push(C_NUMBER);
            encode_integer(*n, out);
        }
        Bson::Double(x) => {
            out.push(C_NUMBER);
            encode_double(*x, out);
        }
        Bson::Decimal128(d) => {
            out.push(C_DECIMAL);
            out.extend_from_slice(&d.bytes());
        }
        Bson::String(s) => {
            out.push(C_STRING);
            encode_str(s.as_bytes(), out);
        }
        Bson::Symbol(s) => {
            out.push(C_STRING);
            encode_str(s.as_bytes(), out);
        }
        Bson::Document(doc) => {
            out.push(C_OBJECT);
            // Per MongoDB: for each field, compare type, then name, then value.
            let mut value = Vec::new();
            for (name, v) in doc {
                value.clear();
                encode(v, &mut value);
                // The value's type class goes in front of the field name.
                out.push(value[0]);
                encode_str(name.as_bytes(), out);
                out.extend_from_slice(&value[1..]);
            }
            out.push(END);
        }
        Bson::Array(items) => {
            out.push(C_ARRAY);
            for v in items {
                encode(v, out);
            }
            out.push(END);
        }
        Bson::Binary(b) => {
            out.push(C_BINARY);
            // MongoDB compares length first, then subtype, then bytes.
            out.extend_from_slice(&(b.bytes.len() as u32).to_be_bytes());
            out.push(u8::from(b.subtype));
            out.extend_from_slice(&b.bytes);
        }
        Bson::ObjectId(oid) => {
            out.push(C_OBJECTID);
            out.extend_from_slice(&oid.bytes());
        }
        Bson::Boolean(b) => {
            out.push(C_BOOL);
            out.push(u8::from(*b));
        }
        Bson::DateTime(dt) => {
            out.push(C_DATE);
            out.extend_from_slice(&ordered_i64(dt.timestamp_millis()));
        }
        Bson::Timestamp(ts) => {
            out.push(C_TIMESTAMP);
            out.extend_from_slice(&ts.time.to_be_bytes());
            out.extend_from_slice(&ts.increment.to_be_bytes());
        }
        Bson::RegularExpression(re) => {
            out.push(C_REGEX);
            encode_str(re.pattern.as_str().as_bytes(), out);
            encode_str(re.options.as_str().as_bytes(), out);
        }
        Bson::DbPointer(p) => {
            out.push(C_DBPOINTER);
            // The bson crate keeps DbPointer's fields private; its debug form is stable enough
            // for an ordering nobody relies on (DbPointer is deprecated and never an _id in practice).
            encode_str(format!("{p:?}").as_bytes(), out);
        }
        Bson::JavaScriptCode(code) => {
            out.push(C_CODE);
            encode_str(code.as_bytes(), out);
        }
        Bson::JavaScriptCodeWithScope(cws) => {
            out.push(C_CODE_WITH_SCOPE);
            encode_str(cws.code.as_bytes(), out);
            encode(&Bson::Document(cws.scope.clone()), out);
        }
        Bson::MaxKey => out.push(C_MAXKEY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId};

    fn k(v: Bson) -> IdKey {
        IdKey::from_bson(&v)
    }

    #[test]
    fn numbers_are_equal_by_value_across_types() {
        assert_eq!(k(Bson::Int32(1)), k(Bson::Int64(1)));
        assert_eq!(k(Bson::Int32(1)), k(Bson::Double(1.0)));
        assert_eq!(k(Bson::Double(0.0)), k(Bson::Double(-0.0)));
        assert_ne!(k(Bson::Double(1.5)), k(Bson::Int32(1)));
        assert_ne!(k(Bson::Int32(1)), k(Bson::String("1".into())));
    }

    #[test]
    fn numbers_order_by_value() {
        let values = [
            Bson::Double(f64::NAN),
            Bson::Double(f64::NEG_INFINITY),
            Bson::Int64(i64::MIN),
            Bson::Double(-1.5),
            Bson::Int32(-1),
            Bson::Double(-0.5),
            Bson::Int32(0),
            Bson::Double(0.25),
            Bson::Int64(1),
            Bson::Double(2.5),
            Bson::Int64((1 << 53) + 1),
            Bson::Int64(i64::MAX - 1),
            Bson::Int64(i64::MAX),
            Bson::Double(9_223_372_036_854_775_808.0),
            Bson::Double(1e30),
            Bson::Double(f64::INFINITY),
        ];
        for pair in values.windows(2) {
            assert!(k(pair[0].clone()) < k(pair[1].clone()), "{pair:?}");
        }
        // Large longs that share a nearest double stay distinct and ordered.
        assert!(k(Bson::Int64(1 << 62)) < k(Bson::Int64((1 << 62) + 1)));
    }

    #[test]
    fn type_classes_follow_mongodb_order() {
        let values = [
            Bson::MinKey,
            Bson::Null,
            Bson::Int32(5),
            Bson::String("".into()),
            Bson::String("a".into()),
            Bson::String("a\0".into()),
            Bson::String("ab".into()),
            Bson::Document(doc! {}),
            Bson::Document(doc! {"a": 1}),
            Bson::Document(doc! {"a": 1, "b": 1}),
            // Field types compare before field names.
            Bson::Document(doc! {"b": 0}),
            Bson::Document(doc! {"a": "x"}),
            Bson::Array(vec![]),
            Bson::ObjectId(ObjectId::from_bytes([0; 12])),
            Bson::ObjectId(ObjectId::from_bytes([1; 12])),
            Bson::Boolean(false),
            Bson::Boolean(true),
            Bson::DateTime(bson::DateTime::from_millis(-5)),
            Bson::DateTime(bson::DateTime::from_millis(5)),
            Bson::MaxKey,
        ];
        for pair in values.windows(2) {
            assert!(k(pair[0].clone()) < k(pair[1].clone()), "{pair:?}");
        }
    }

    #[test]
    fn embedded_numbers_compare_by_value() {
        assert_eq!(
            k(Bson::Document(doc! {"a": 1i32})),
            k(Bson::Document(doc! {"a": 1.0f64}))
        );
    }
}
