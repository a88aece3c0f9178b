//! Index bounds from a filter: which key intervals of one index can hold
//! the documents a filter matches (MongoDB's index bounds builder, for the
//! predicates listed in `plan`'s module doc).
//!
//! Bounds are built as bytes of the WAL's key encoding (`IndexKey`): a key
//! is the concatenation of its fields' prefix-free encodings, ascending on
//! every field, so "field 0 is 5 and field 1 is above 3" is the byte range
//! `[enc(5) ++ prefix_end(enc(3)), enc(5) ++ [end of numbers])`. Every
//! interval end is normalized to an inclusive low and an exclusive high.
//! Each field also keeps the bounds as MongoDB's explain shows them.

use std::ops::Bound;

use argon_wal::indexkey::type_bracket;
use argon_wal::{IndexKey, KeyInterval};
use bson::{Bson, Document};

use crate::query::filter::{Filter, InItem, Pred};

/// The most intervals a compound index's bounds may hold (the product of
/// its fields' `$in` lists); past it, later fields are left unbounded, and
/// an index whose first field alone has more is not used.
pub const MAX_INTERVALS: usize = 10_000;

/// One field's interval, in the byte encoding: `lo` inclusive, `hi`
/// exclusive (`None`: past every key), and as explain shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Range {
    pub lo: Vec<u8>,
    pub hi: Option<Vec<u8>>,
    pub shown_lo: String,
    pub shown_hi: String,
}

/// What bounds one index field.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldBound {
    /// Equality points (`$eq`, `$in`), sorted by key bytes, deduplicated.
    Points(Vec<(Vec<u8>, String)>),
    Range(Range),
    /// `[MinKey, MaxKey]`.
    All,
    /// A geo field's cell key ranges (`plan::geo`), as explain shows them.
    Cells(Vec<String>),
}

/// The bounds of one index for one filter.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Per index field, in spec order.
    pub fields: Vec<FieldBound>,
    pub intervals: Vec<KeyInterval>,
}

impl Bounds {
    /// Leading fields bound to points, then whether the next has a range.
    pub fn shape(&self) -> (usize, bool) {
        let eq = self
            .fields
            .iter()
            .take_while(|f| matches!(f, FieldBound::Points(_)))
            .count();
        let range = matches!(self.fields.get(eq), Some(FieldBound::Range(_)));
        (eq, range)
    }

    /// Whether the first field is bounded at all (the index narrows the scan).
    pub fn is_selective(&self) -> bool {
        !matches!(self.fields.first(), None | Some(FieldBound::All))
    }

    /// `indexBounds` as MongoDB's explain shows them: per field, its
    /// intervals in scan order.
    pub fn shown(&self, names: &[String], backward: bool) -> Document {
        let mut out = Document::new();
        for (name, f) in names.iter().zip(&self.fields) {
            let mut list: Vec<Bson> = match f {
                FieldBound::Points(ps) => ps
                    .iter()
                    .map(|(_, v)| Bson::String(format!("[{v}, {v}]")))
                    .collect(),
                FieldBound::Range(r) if backward => {
                    vec![Bson::String(format!(
                        "{}, {}",
                        flip(&r.shown_hi),
                        flip(&r.shown_lo)
                    ))]
                }
                FieldBound::Range(r) => {
                    vec![Bson::String(format!("{}, {}", r.shown_lo, r.shown_hi))]
                }
                FieldBound::All if backward => vec![Bson::String("[MaxKey, MinKey]".into())],
                FieldBound::All => vec![Bson::String("[MinKey, MaxKey]".into())],
                FieldBound::Cells(cells) => cells.iter().cloned().map(Bson::String).collect(),
            };
            if backward && matches!(f, FieldBound::Points(_)) {
                list.reverse();
            }
            out.insert(name.clone(), Bson::Array(list));
        }
        out
    }

    /// A full scan of an index of `n` fields (a hint that bounds nothing).
    pub fn full(n: usize) -> Bounds {
        Bounds {
            fields: vec![FieldBound::All; n],
            intervals: vec![(Bound::Unbounded, Bound::Unbounded)],
        }
    }
}

/// `"(5"` ↔ `"5)"`: an interval end shown from the other side.
fn flip(end: &str) -> String {
    if let Some(v) = end.strip_prefix('(') {
        format!("{v})")
    } else if let Some(v) = end.strip_prefix('[') {
        format!("{v}]")
    } else if let Some(v) = end.strip_suffix(')') {
        format!("({v}")
    } else if let Some(v) = end.strip_suffix(']') {
        format!("[{v}")
    } else {
        end.to_string()
    }
}

/// The predicates of a filter's top-level conjunction (implicit or
/// `$and`, nested) on `path`: each one alone is implied by a match, so any
/// of them may bound the scan. Others (`$or`, `$expr`, ...) are left to the
/// filter, which still checks every candidate.
fn conjuncts<'a>(filter: &'a Filter, path: &str, out: &mut Vec<&'a Pred>) {
    match filter {
        Filter::And(fs) => fs.iter().for_each(|f| conjuncts(f, path, out)),
        Filter::Field { path: p, pred } if p == path => match pred {
            Pred::And(ps) => out.extend(ps.iter()),
            p => out.push(p),
        },
        _ => {}
    }
}

/// A path whose keys and whose query values walk arrays alike: no numeric
/// component (`a.0` picks an element in a key but also reaches field "0"
/// of embedded documents in a query).
fn plannable_path(path: &str) -> bool {
    !path
        .split('.')
        .any(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// An equality value an index finds exactly as the filter matches it:
/// scalars of the bracketed types (no null, arrays, documents, regexes,
/// NaN or Decimal128, whose matching differs from their keys).
pub fn plannable_value(v: &Bson) -> bool {
    type_bracket(v).is_some()
}

fn encoded(v: &Bson) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    IndexKey::encode_value(v, &mut out);
    out
}

/// The equality points of a predicate, or `None` when it gives none.
fn points(pred: &Pred) -> Option<Vec<(Vec<u8>, String)>> {
    let values: Vec<&Bson> = match pred {
        Pred::Eq(v) => vec![v],
        Pred::In(items) => {
            let mut vs = Vec::with_capacity(items.len());
            for i in items {
                match i {
                    InItem::Value(v) => vs.push(v),
                    InItem::Regex(_) => return None,
                }
            }
            vs
        }
        _ => return None,
    };
    if values.is_empty() || !values.iter().all(|v| plannable_value(v)) {
        return None;
    }
    let mut ps: Vec<(Vec<u8>, String)> = values.iter().map(|v| (encoded(v), shown(v))).collect();
    ps.sort_by(|a, b| a.0.cmp(&b.0));
    ps.dedup_by(|a, b| a.0 == b.0);
    Some(ps)
}

/// The interval of a comparison, type-bracketed as MongoDB's (`{$gt: 5}`
/// reaches the end of the numbers, not strings).
fn range(pred: &Pred) -> Option<Range> {
    let Pred::Cmp(dir, inclusive, v) = pred else {
        return None;
    };
    let (start, end) = type_bracket(v)?;
    let (class_lo, class_hi) = class_edges(v);
    let ev = encoded(v);
    let mut r = Range {
        lo: vec![start],
        hi: Some(vec![end]),
        shown_lo: format!("[{class_lo}"),
        shown_hi: class_hi,
    };
    match (dir, inclusive) {
        (std::cmp::Ordering::Greater, true) => {
            r.lo = ev;
            r.shown_lo = format!("[{}", shown(v));
        }
        (std::cmp::Ordering::Greater, false) => {
            r.lo = IndexKey::prefix_end(&ev)?;
            r.shown_lo = format!("({}", shown(v));
        }
        (std::cmp::Ordering::Less, true) => {
            r.hi = IndexKey::prefix_end(&ev);
            r.shown_hi = format!("{}]", shown(v));
        }
        (std::cmp::Ordering::Less, false) => {
            r.hi = Some(ev);
            r.shown_hi = format!("{})", shown(v));
        }
        _ => return None,
    }
    Some(r)
}

/// The intersection of two intervals on one (not multikey) field.
fn intersect(a: Range, b: Range) -> Range {
    let (lo, shown_lo) = if a.lo >= b.lo {
        (a.lo, a.shown_lo)
    } else {
        (b.lo, b.shown_lo)
    };
    let (hi, shown_hi) = match (a.hi, b.hi) {
        (Some(x), Some(y)) if x <= y => (Some(x), a.shown_hi),
        (Some(_), Some(y)) => (Some(y), b.shown_hi),
        (Some(x), None) => (Some(x), a.shown_hi),
        (None, y) => (y, b.shown_hi),
    };
    Range {
        lo,
        hi,
        shown_lo,
        shown_hi,
    }
}

/// The bound of one index field. On a multikey index one document may
/// satisfy two predicates on a field with two different elements
/// (`{a: [1, 9]}` matches `{a: {$gt: 5, $lt: 3}}`), so only one predicate
/// bounds it; otherwise they intersect.
fn field_bound(filter: &Filter, path: &str, multikey: bool) -> FieldBound {
    if !plannable_path(path) {
        return FieldBound::All;
    }
    let mut preds = Vec::new();
    conjuncts(filter, path, &mut preds);
    let mut pts: Option<Vec<(Vec<u8>, String)>> = None;
    for p in &preds {
        if let Some(ps) = points(p) {
            pts = Some(match pts {
                None => ps,
                Some(_) if multikey => continue,
                Some(have) => have
                    .into_iter()
                    .filter(|(b, _)| ps.iter().any(|(c, _)| c == b))
                    .collect(),
            });
        }
    }
    if let Some(ps) = pts {
        return FieldBound::Points(ps);
    }
    let mut r: Option<Range> = None;
    for p in &preds {
        if let Some(next) = range(p) {
            r = Some(match r {
                None => next,
                Some(_) if multikey => continue,
                Some(have) => intersect(have, next),
            });
        }
    }
    r.map_or(FieldBound::All, FieldBound::Range)
}

/// The bounds of the index on `paths` for `filter`: equality points on
/// leading fields (their product capped at [`MAX_INTERVALS`]), then one
/// range field; later fields are unbounded.
pub fn build(filter: &Filter, paths: &[String], multikey: bool) -> Bounds {
    let mut fields = Vec::with_capacity(paths.len());
    let mut product = 1usize;
    let mut open = true;
    for path in paths {
        if !open {
            fields.push(FieldBound::All);
            continue;
        }
        let b = field_bound(filter, path, multikey);
        match &b {
            FieldBound::Points(ps) => {
                let next = product.saturating_mul(ps.len().max(1));
                if next > MAX_INTERVALS {
                    open = false;
                    fields.push(FieldBound::All);
                    continue;
                }
                product = next;
            }
            FieldBound::Range(_) | FieldBound::All | FieldBound::Cells(_) => open = false,
        }
        fields.push(b);
    }
    let intervals = intervals(&fields);
    Bounds { fields, intervals }
}

/// The byte intervals of per-field bounds, ascending and disjoint.
fn intervals(fields: &[FieldBound]) -> Vec<KeyInterval> {
    let mut prefixes: Vec<Vec<u8>> = vec![Vec::new()];
    for f in fields {
        match f {
            FieldBound::Points(ps) => {
                prefixes = prefixes
                    .iter()
                    .flat_map(|p| {
                        ps.iter().map(move |(b, _)| {
                            let mut k = p.clone();
                            k.extend_from_slice(b);
                            k
                        })
                    })
                    .collect();
            }
            FieldBound::Range(r) => {
                return prefixes
                    .into_iter()
                    .filter_map(|p| {
                        let lo = [&p[..], &r.lo[..]].concat();
                        let hi = match &r.hi {
                            Some(h) => Some([&p[..], &h[..]].concat()),
                            None => IndexKey::prefix_end(&p),
                        };
                        if hi.as_ref().is_some_and(|h| *h <= lo) {
                            return None;
                        }
                        Some(interval(lo, hi))
                    })
                    .collect();
            }
            // Cell ranges are `plan::geo`'s own intervals: unbounded here.
            FieldBound::All | FieldBound::Cells(_) => break,
        }
    }
    prefixes
        .into_iter()
        .map(|p| {
            let hi = IndexKey::prefix_end(&p);
            interval(p, hi)
        })
        .collect()
}

pub(crate) fn interval(lo: Vec<u8>, hi: Option<Vec<u8>>) -> KeyInterval {
    let lo = if lo.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(IndexKey::from_bytes(lo))
    };
    let hi = match hi {
        Some(h) => Bound::Excluded(IndexKey::from_bytes(h)),
        None => Bound::Unbounded,
    };
    (lo, hi)
}

/// The ends of a value's type bracket as explain shows them.
fn class_edges(v: &Bson) -> (String, String) {
    match v {
        Bson::String(_) => ("\"\"".into(), "{})".into()),
        Bson::ObjectId(_) => (
            "ObjectId('000000000000000000000000')".into(),
            "ObjectId('ffffffffffffffffffffffff')]".into(),
        ),
        Bson::Boolean(_) => ("false".into(), "true]".into()),
        Bson::DateTime(_) => (
            format!("new Date({})", i64::MIN),
            format!("new Date({})]", i64::MAX),
        ),
        _ => ("-inf.0".into(), "inf.0]".into()),
    }
}

/// A key value as MongoDB's explain prints it in bounds.
fn shown(v: &Bson) -> String {
    match v {
        Bson::Int32(n) => n.to_string(),
        Bson::Int64(n) => n.to_string(),
        Bson::Double(x) if x.is_infinite() => if *x > 0.0 { "inf.0" } else { "-inf.0" }.into(),
        Bson::Double(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.1}"),
        Bson::Double(x) => x.to_string(),
        Bson::String(s) => format!("{s:?}"),
        Bson::ObjectId(o) => format!("ObjectId('{o}')"),
        Bson::Boolean(b) => b.to_string(),
        Bson::DateTime(d) => format!("new Date({})", d.timestamp_millis()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn bounds(filter: Document, paths: &[&str], multikey: bool) -> Bounds {
        let f = Filter::parse(&filter).unwrap();
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        build(&f, &paths, multikey)
    }

    fn shown_of(filter: Document, paths: &[&str]) -> Document {
        let names: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        bounds(filter, paths, false).shown(&names, false)
    }

    fn key(vs: &[Bson]) -> Vec<u8> {
        IndexKey::from_values(vs).as_bytes().to_vec()
    }

    fn within(b: &Bounds, k: &[u8]) -> bool {
        b.intervals.iter().any(|(lo, hi)| {
            let above = match lo {
                Bound::Included(l) => k >= l.as_bytes(),
                Bound::Excluded(l) => k > l.as_bytes(),
                Bound::Unbounded => true,
            };
            let below = match hi {
                Bound::Included(h) => k <= h.as_bytes(),
                Bound::Excluded(h) => k < h.as_bytes(),
                Bound::Unbounded => true,
            };
            above && below
        })
    }

    #[test]
    fn equality_range_and_in_bounds_as_mongodb_shows_them() {
        assert_eq!(shown_of(doc! {"a": 5}, &["a"]), doc! {"a": ["[5, 5]"]});
        assert_eq!(
            shown_of(doc! {"a": {"$gt": 5}}, &["a"]),
            doc! {"a": ["(5, inf.0]"]}
        );
        assert_eq!(
            shown_of(doc! {"a": {"$gte": 2, "$lt": 7.5}}, &["a"]),
            doc! {"a": ["[2, 7.5)"]}
        );
        assert_eq!(
            shown_of(
                doc! {"a": {"$in": [3, 1, 3.0]}, "b": {"$lte": "x"}},
                &["a", "b", "c"]
            ),
            doc! {"a": ["[1, 1]", "[3, 3]"], "b": ["[\"\", \"x\"]"], "c": ["[MinKey, MaxKey]"]}
        );
        assert_eq!(
            shown_of(doc! {"b": 1}, &["a", "b"]),
            doc! {"a": ["[MinKey, MaxKey]"], "b": ["[MinKey, MaxKey]"]}
        );
    }

    #[test]
    fn intervals_hold_exactly_the_bracketed_keys() {
        let b = bounds(doc! {"a": 5, "b": {"$gt": 3}}, &["a", "b"], false);
        assert_eq!(b.intervals.len(), 1);
        assert!(within(&b, &key(&[Bson::Int32(5), Bson::Int32(4)])));
        assert!(within(&b, &key(&[Bson::Int32(5), Bson::Double(1e300)])));
        assert!(!within(&b, &key(&[Bson::Int32(5), Bson::Int32(3)])));
        assert!(!within(
            &b,
            &key(&[Bson::Int32(5), Bson::String("x".into())])
        ));
        assert!(!within(&b, &key(&[Bson::Int32(6), Bson::Int32(4)])));
        // An equality prefix holds every suffix.
        let b = bounds(doc! {"a": "k"}, &["a", "b"], false);
        assert!(within(&b, &key(&[Bson::String("k".into()), Bson::Null])));
        assert!(!within(&b, &key(&[Bson::String("k\0".into()), Bson::Null])));
        // Intersected on a field that is not multikey; one predicate when it is.
        let b = bounds(doc! {"a": {"$gt": 5, "$lt": 3}}, &["a"], false);
        assert!(b.intervals.is_empty());
        let b = bounds(doc! {"a": {"$gt": 5, "$lt": 3}}, &["a"], true);
        assert!(within(&b, &key(&[Bson::Int32(9)])));
        let b = bounds(doc! {"$and": [{"a": 1}, {"a": 2}]}, &["a"], true);
        assert!(within(&b, &key(&[Bson::Int32(1)])));
    }

    #[test]
    fn unplannable_shapes_leave_the_field_unbounded() {
        for f in [
            doc! {"a": null},
            doc! {"a": [1]},
            doc! {"a": {"x": 1}},
            doc! {"a": {"$ne": 1}},
            doc! {"a": {"$in": [1, null]}},
            doc! {"a": {"$gt": null}},
            doc! {"a": {"$regex": "^x"}},
            doc! {"$or": [{"a": 1}, {"a": 2}]},
            doc! {"a": {"$not": {"$gt": 1}}},
            doc! {"a": f64::NAN},
        ] {
            assert!(!bounds(f.clone(), &["a"], false).is_selective(), "{f}");
        }
        assert!(!bounds(doc! {"a.0": 1}, &["a.0"], false).is_selective());
    }

    #[test]
    fn a_huge_product_stops_at_the_cap() {
        let many: Vec<i32> = (0..200).collect();
        let b = bounds(
            doc! {"a": {"$in": &many}, "b": {"$in": &many}},
            &["a", "b"],
            false,
        );
        assert_eq!(b.shape(), (1, false));
        assert_eq!(b.intervals.len(), 200);
        let huge: Vec<i32> = (0..(MAX_INTERVALS as i32 + 1)).collect();
        assert!(!bounds(doc! {"a": {"$in": huge}}, &["a"], false).is_selective());
    }
}
