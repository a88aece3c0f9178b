//! mongod's hash of a value (`BSONElementHasher::hash64`, the key of a
//! hashed index and `$toHashedIndexKey`'s answer): MD5 over the seed, then
//! each element's canonical type, its field name inside objects and
//! arrays, and its value, numbers squashed to a 64-bit integer so that
//! 42, 42.5 and NumberLong(42) hash alike; the first eight bytes of the
//! digest, little-endian.

use bson::{Bson, Document};
use md5::{Digest, Md5};

use super::number::{Digits, Rounding};

/// The hash with mongod's default seed (0).
pub(super) fn hash64(v: &Bson) -> i64 {
    let mut md5 = Md5::new();
    md5.update(0i32.to_le_bytes());
    element(&mut md5, None, v);
    let digest = md5.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

/// The type ranks mongod hashes (its canonical types): all numbers alike,
/// strings and symbols alike.
fn canonical_type(v: &Bson) -> i32 {
    match v {
        Bson::MinKey => -1,
        Bson::Undefined => 0,
        Bson::Null => 5,
        Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_) => 10,
        Bson::String(_) | Bson::Symbol(_) => 15,
        Bson::Document(_) => 20,
        Bson::Array(_) => 25,
        Bson::Binary(_) => 30,
        Bson::ObjectId(_) => 35,
        Bson::Boolean(_) => 40,
        Bson::DateTime(_) => 45,
        Bson::Timestamp(_) => 47,
        Bson::RegularExpression(_) => 50,
        Bson::DbPointer(_) => 55,
        Bson::JavaScriptCode(_) => 60,
        Bson::JavaScriptCodeWithScope(_) => 65,
        Bson::MaxKey => 127,
    }
}

fn element(md5: &mut Md5, name: Option<&str>, v: &Bson) {
    md5.update(canonical_type(v).to_le_bytes());
    if let Some(name) = name {
        md5.update(name.as_bytes());
        md5.update([0]);
    }
    match v {
        Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_) => {
            md5.update(long_for_hash(v).to_le_bytes());
        }
        Bson::Document(d) => fields(md5, d.iter().map(|(k, v)| (k.clone(), v))),
        Bson::Array(items) => fields(
            md5,
            items.iter().enumerate().map(|(i, v)| (i.to_string(), v)),
        ),
        Bson::JavaScriptCodeWithScope(c) => {
            md5.update(c.code.as_bytes());
            md5.update([0]);
            fields(md5, c.scope.iter().map(|(k, v)| (k.clone(), v)));
        }
        other => md5.update(value_bytes(other)),
    }
}

/// An object's or array's elements, then the end-of-object element
/// (canonical type 0, no name, no value).
fn fields<'a>(md5: &mut Md5, items: impl Iterator<Item = (String, &'a Bson)>) {
    for (k, v) in items {
        element(md5, Some(&k), v);
    }
    md5.update(0i32.to_le_bytes());
}

/// A number as the 64-bit integer mongod hashes: truncated toward zero,
/// NaN as 0, out-of-range values clamped.
fn long_for_hash(v: &Bson) -> i64 {
    match v {
        Bson::Int32(i) => i64::from(*i),
        Bson::Int64(i) => *i,
        // `as` truncates, saturates and maps NaN to 0: mongod's rules.
        Bson::Double(d) => *d as i64,
        Bson::Decimal128(d) => match Digits::from_decimal(d) {
            None => {
                let s = d.to_string();
                if s.contains("NaN") {
                    0
                } else if s.starts_with('-') {
                    i64::MIN
                } else {
                    i64::MAX
                }
            }
            Some(digits) => {
                let whole = digits.quantize(0, Rounding::TowardZero);
                match whole.and_then(|w| w.coefficient.parse::<i128>().ok()) {
                    Some(c) => {
                        let c = if digits.negative { -c } else { c };
                        c.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
                    }
                    None if digits.negative => i64::MIN,
                    None => i64::MAX,
                }
            }
        },
        _ => 0,
    }
}

/// A scalar's value as BSON encodes it (after the type byte and name).
fn value_bytes(v: &Bson) -> Vec<u8> {
    let mut doc = Document::new();
    doc.insert("", v.clone());
    let bytes = doc.to_vec().unwrap_or_default();
    // length (4), type (1), empty name (1) ... value ..., document end (1).
    bytes
        .get(6..bytes.len().saturating_sub(1))
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::oid::ObjectId;
    use bson::spec::BinarySubtype;
    use bson::{Binary, JavaScriptCodeWithScope, Regex, bson, doc};

    /// mongod's own test vectors (`hasher_test.cpp`).
    #[test]
    fn mongod_test_vectors() {
        let bin = |subtype, bytes: &[u8]| {
            Bson::Binary(Binary {
                subtype,
                bytes: bytes.to_vec(),
            })
        };
        let oid = |s: &str| Bson::ObjectId(ObjectId::parse_str(s).unwrap());
        let regex = |pattern: &str, options: &str| {
            Bson::RegularExpression(Regex {
                pattern: pattern.to_string().try_into().unwrap(),
                options: options.to_string().try_into().unwrap(),
            })
        };
        for (v, want) in [
            (bson!(42), -944302157085130861i64),
            (bson!(42.123), -944302157085130861),
            (bson!(42i64), -944302157085130861),
            (bson!(0), 4854801880128277513),
            (bson!(0.456), 4854801880128277513),
            (bson!(f64::NAN), 4854801880128277513),
            (bson!(1), 5902408780260971510),
            (bson!(1.987), 5902408780260971510),
            (bson!(-1), 1140205862565771219),
            (bson!(-1.789), 1140205862565771219),
            (bson!(i32::MIN), 6165898260261354870),
            (bson!(f64::from(i32::MIN)), 6165898260261354870),
            (bson!(i32::MAX), 1143184177162245883),
            (bson!(f64::MAX), 921523596458303250),
            (bson!(i64::MAX), 921523596458303250),
            (bson!(-f64::MAX), 4532067210535695462),
            (bson!(i64::MIN), 4532067210535695462),
            (Bson::MinKey, 7961148599568647290),
            (Bson::MaxKey, 5504842513779440750),
            (Bson::Undefined, 40158834000849533),
            (bson!("abc"), 8478485326885698097),
            (Bson::Symbol("abc".into()), 8478485326885698097),
            (bson!(""), 2049396243249673340),
            (bson!({"a": "abc", "b": 123i64}), 4771603801758380216),
            (bson!({}), 7980500913326740417),
            (bson!(["bar", "baz", "qux"]), -2938911267422831539),
            (bson!([]), 8849948234993459283),
            (
                bin(BinarySubtype::Generic, &[0, 1, 2, 3, 4, 6]),
                7252465090394235301,
            ),
            (
                bin(BinarySubtype::UserDefined(0x80), &[0, 1, 2, 3, 4, 6]),
                5736670452907618262,
            ),
            (
                bin(BinarySubtype::Uuid, &(0..16).collect::<Vec<u8>>()),
                6084661258071355978,
            ),
            (oid("010203040506070809101112"), -5588663249627035708),
            (oid("000000000000000000000000"), -4293118519463489418),
            (bson!(true), 6405873908747105701),
            (bson!(false), 6289544573401934092),
            (
                Bson::DateTime(bson::DateTime::from_millis(0x5566778811223344)),
                4476222765095560467,
            ),
            (
                Bson::DateTime(bson::DateTime::from_millis(0)),
                -1178696894582842035,
            ),
            (regex("mongodb", ""), -7275792090268217043),
            (regex(".*", "i"), 7095855029187981886),
            (
                Bson::JavaScriptCode("func f() { return 1; }".into()),
                6861638109178014270,
            ),
            (
                Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
                    code: "func f() { return 1; }".into(),
                    scope: doc! {"c": true},
                }),
                501342939894575968,
            ),
        ] {
            assert_eq!(hash64(&v), want, "{v:?}");
        }
    }
}
