//! `find`'s `min` and `max`: bounds given as index keys of the hinted
//! index (MongoDB's `.min()`/`.max()` cursor options) instead of derived
//! from the filter. `min` is inclusive, `max` exclusive, and both compare
//! as index keys do: field by field, each in its index direction, so on
//! `{a: 1, b: -1}` the key `{a: 1, b: 5}` comes before `{a: 1, b: 2}`.
//!
//! MongoDB's rules (`query_request_helper::validateFindCommandRequest` and
//! `QueryPlanner::plan`), with its codes: `min` and `max` name the same
//! fields (51176); a hint is required (291), not `$natural` (291); the
//! hinted index's key pattern has exactly those fields in that order, and
//! is not a wildcard index (51174); `min` comes before `max` (51175).
//!
//! How a range is read: the key maps are ascending on every field (see
//! `argon_wal::indexkey`), so "keys at or after `min` in index order" is a
//! union of byte intervals, one per field: the keys sharing `min`'s first
//! `i` values and beyond `min`'s value on field `i` (above it on an
//! ascending field, below it on a descending one), plus `min` itself.
//! Likewise before `max`; the range is the intersection of the two unions.
//! Those intervals are exact when every bound value encodes in the order
//! MongoDB compares it (the planner's bracketed types, null, MinKey,
//! MaxKey) and the index holds no Decimal128 key; otherwise the whole
//! index is scanned and each document is kept when one of its keys is in
//! the range ([`KeyRange::holds`]). An index without a key map (`_id_`, a
//! partial or collated index) is read as the collection with that check.

use std::cmp::Ordering;
use std::sync::Arc;

use argon_wal::indexkey::type_bracket;
use argon_wal::{CollectionState, IndexKey, KeyInterval, ScanDirection};
use bson::{Bson, Document};

use super::bounds::{self, Bounds};
use super::{IndexPlan, Plan};
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::compare::{as_f64, compare};
use crate::query::{Filter, SortSpec, collation};

/// A key range of one index: what `min`/`max` keep.
#[derive(Debug)]
pub struct KeyRange {
    /// The index spec, without `partialFilterExpression` and `collation`
    /// (the key rules alone, for [`CollectionState::index_keys`]).
    key_spec: Document,
    /// The partial index's filter: a document it does not match has no key.
    partial: Option<Filter>,
    /// Per index field: ascending?
    ascending: Vec<bool>,
    /// Inclusive lower key (`None`: from the first key).
    min: Option<Vec<Bson>>,
    /// Exclusive upper key (`None`: to the last key).
    max: Option<Vec<Bson>>,
}

impl KeyRange {
    /// Whether the key tuple `key` is in the range.
    pub(super) fn contains(&self, key: &[Bson]) -> bool {
        self.min
            .as_ref()
            .is_none_or(|m| self.cmp_keys(key, m) != Ordering::Less)
            && self
                .max
                .as_ref()
                .is_none_or(|m| self.cmp_keys(key, m) == Ordering::Less)
    }

    /// The index spec whose keys the range holds (`index_key`).
    pub(super) fn key_spec(&self) -> &Document {
        &self.key_spec
    }

    /// Index order: field by field, each in its direction.
    pub(super) fn cmp_keys(&self, a: &[Bson], b: &[Bson]) -> Ordering {
        for ((x, y), asc) in a.iter().zip(b).zip(&self.ascending) {
            let o = compare(x, y);
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// The range as explain shows it: MongoDB's simple-range index bounds
    /// (`startKey` inclusive, `endKey` exclusive), a bound not given
    /// filled with MinKey/MaxKey in index order as MongoDB's planner
    /// finishes it.
    pub fn shown(&self) -> Document {
        let names = self
            .key_spec
            .get_document("key")
            .cloned()
            .unwrap_or_default();
        let finish = |given: &Option<Vec<Bson>>, start: bool| -> Document {
            names
                .keys()
                .zip(&self.ascending)
                .enumerate()
                .map(|(i, (name, asc))| {
                    let v = match given {
                        Some(vs) => vs.get(i).cloned().unwrap_or(Bson::Null),
                        None if start == *asc => Bson::MinKey,
                        None => Bson::MaxKey,
                    };
                    (name.clone(), v)
                })
                .collect()
        };
        bson::doc! {
            "startKey": finish(&self.min, true),
            "endKey": finish(&self.max, false),
            "endKeyInclusive": false,
        }
    }

    /// Whether `doc` has a key of the index in the range (what an exact
    /// scan of the range would find it under).
    pub fn holds(&self, doc: &Document) -> Result<bool> {
        if let Some(p) = &self.partial
            && !p.try_matches(doc)?
        {
            return Ok(false);
        }
        let keys = CollectionState::index_keys(&self.key_spec, doc).unwrap_or_default();
        Ok(keys.iter().any(|k| self.contains(k)))
    }
}

/// `min` or `max` of a find: a document (empty: not given).
pub fn field(cmd: &Document, name: &str) -> Result<Document> {
    match cmd.get(name) {
        None => Ok(Document::new()),
        Some(Bson::Document(d)) => Ok(d.clone()),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field 'find.{name}' is the wrong type '{}', expected type 'object'",
            crate::query::expr::type_name(other)
        ))),
    }
}

/// Checks that need no collection: same fields (51176), a hint (291), not
/// `$natural` (291). `Ok(false)` when neither is given.
pub fn check(min: &Document, max: &Document, hint: Option<&Bson>) -> Result<bool> {
    if min.is_empty() && max.is_empty() {
        return Ok(false);
    }
    if !min.is_empty()
        && !max.is_empty()
        && (min.len() != max.len() || min.keys().zip(max.keys()).any(|(a, b)| a != b))
    {
        return Err(CommandError::new(
            ErrorCode::Location51176,
            "min and max must have the same field names",
        ));
    }
    match hint {
        None | Some(Bson::Null) => Err(no_plans(
            "When using min()/max() a hint of which index to use must be provided",
        )),
        Some(Bson::String(s)) if s.is_empty() => Err(no_plans(
            "When using min()/max() a hint of which index to use must be provided",
        )),
        Some(Bson::Document(d)) if d.is_empty() => Err(no_plans(
            "When using min()/max() a hint of which index to use must be provided",
        )),
        Some(Bson::Document(d)) if d.contains_key("$natural") => {
            Err(no_plans("min and max are incompatible with $natural"))
        }
        Some(_) => Ok(true),
    }
}

fn no_plans(msg: &str) -> CommandError {
    CommandError::new(ErrorCode::NoQueryExecutionPlans, msg)
}

fn incompatible() -> CommandError {
    CommandError::new(
        ErrorCode::Location51174,
        "The index chosen is not compatible with min/max",
    )
}

/// The plan of a find with `min`/`max` (already [`check`]ed) over the
/// hinted index `spec` of `coll`, ordered for `sort` when the index gives
/// it.
pub fn plan(
    coll: &CollectionState,
    spec: &Document,
    min: &Document,
    max: &Document,
    sort: Option<&SortSpec>,
) -> Result<Plan> {
    let key_pattern = spec.get_document("key").map_err(|_| incompatible())?;
    let paths: Vec<String> = key_pattern.keys().cloned().collect();
    let name = spec.get_str("name").unwrap_or_default().to_string();
    // Field names equal the key pattern's, in order (MongoDB's
    // `indexCompatibleMaxMin`); a wildcard index never takes min/max.
    let matches = |d: &Document| {
        d.is_empty() || (d.len() == paths.len() && d.keys().zip(&paths).all(|(a, b)| a == b))
    };
    if !matches(min) || !matches(max) || paths.iter().any(|p| p.ends_with("$**")) {
        return Err(incompatible());
    }
    if let Some((_, kind)) = key_pattern
        .iter()
        .find(|(_, v)| matches!(v, Bson::String(_)))
    {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            format!("min/max over a {kind} index is not supported by Argon"),
        ));
    }
    // Strings (and what holds them) compare under a collation: only when
    // the query's and the index's are both the simple one.
    let collated = spec.contains_key("collation") || !collation::active_is_simple();
    if collated && min.values().chain(max.values()).any(collatable) {
        return Err(incompatible());
    }
    let ascending: Vec<bool> = key_pattern
        .values()
        .map(|d| as_f64(d).is_none_or(|x| x >= 0.0))
        .collect();
    let values = |d: &Document| (!d.is_empty()).then(|| d.values().cloned().collect::<Vec<_>>());
    let mut key_spec = spec.clone();
    key_spec.remove("partialFilterExpression");
    key_spec.remove("collation");
    let partial = match spec.get_document("partialFilterExpression") {
        Ok(p) => Some(Filter::parse(p)?),
        Err(_) => None,
    };
    let range = KeyRange {
        key_spec,
        partial,
        ascending,
        min: values(min),
        max: values(max),
    };
    if let (Some(lo), Some(hi)) = (&range.min, &range.max)
        && range.cmp_keys(lo, hi) != Ordering::Less
    {
        return Err(CommandError::new(
            ErrorCode::Location51175,
            "The value provided for min() does not come before the value provided for max() in \
             the hinted index",
        ));
    }
    let Some(shape) = coll.index_shape(&name) else {
        return Ok(Plan::KeyRange(Arc::new(range)));
    };
    let exact = !shape.decimal && min.values().chain(max.values()).all(orders_as_bytes);
    let intervals = if exact {
        range_intervals(&range)
    } else {
        Bounds::full(paths.len()).intervals
    };
    let sparse = spec
        .get("sparse")
        .is_some_and(|s| matches!(s, Bson::Boolean(true)) || as_f64(s).is_some_and(|x| x != 0.0));
    let full = Bounds::full(paths.len());
    let sort_direction = if shape.multikey || sparse || shape.decimal {
        None
    } else {
        sort.and_then(|s| super::choose::sort_order(&full, &paths, s))
    };
    // Without a sort: index order when the first field descends (the
    // key map ascends on every field).
    let natural = if range.ascending.first().copied().unwrap_or(true) {
        ScanDirection::Forward
    } else {
        ScanDirection::Backward
    };
    Ok(Plan::Index(IndexPlan {
        name,
        key_pattern: key_pattern.clone(),
        paths,
        multikey: shape.multikey,
        bounds: Bounds {
            fields: full.fields,
            intervals,
        },
        direction: sort_direction.unwrap_or(natural),
        provides_sort: sort_direction.is_some(),
        min_max: Some(MinMax {
            range: Arc::new(range),
            exact,
        }),
    }))
}

/// A min/max range on an index scan; `exact` when its intervals hold the
/// range's keys and nothing else (otherwise every candidate is checked).
#[derive(Clone, Debug)]
pub struct MinMax {
    pub range: Arc<KeyRange>,
    pub exact: bool,
}

/// Values compared under a collation: strings, and documents or arrays
/// that may hold them.
fn collatable(v: &Bson) -> bool {
    matches!(
        v,
        Bson::String(_) | Bson::Symbol(_) | Bson::Document(_) | Bson::Array(_)
    )
}

/// A bound value whose key encoding orders as MongoDB compares it.
fn orders_as_bytes(v: &Bson) -> bool {
    type_bracket(v).is_some() || matches!(v, Bson::Null | Bson::MinKey | Bson::MaxKey)
}

fn encoded(v: &Bson) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    IndexKey::encode_value(v, &mut out);
    out
}

/// A byte interval `[lo, hi)` (`hi` `None`: past every key).
type Span = (Vec<u8>, Option<Vec<u8>>);

/// The keys at or after `key` (`inclusive`) or strictly before it (not
/// `inclusive`, `after` false), in index order, as disjoint byte spans.
fn side(key: &[Bson], ascending: &[bool], after: bool) -> Vec<Span> {
    let mut out = Vec::with_capacity(key.len() + 1);
    let mut prefix: Vec<u8> = Vec::new();
    for (v, asc) in key.iter().zip(ascending) {
        let e = encoded(v);
        let with_e = [&prefix[..], &e[..]].concat();
        // Beyond `v` in byte order on this field, the rest free.
        let above = IndexKey::prefix_end(&e).map(|pe| {
            (
                [&prefix[..], &pe[..]].concat(),
                IndexKey::prefix_end(&prefix),
            )
        });
        // Before `v` in byte order on this field.
        let below = (prefix.clone(), Some(with_e.clone()));
        // After `min` in index order is above on an ascending field;
        // before `max` is below on it.
        let pick_above = *asc == after;
        if pick_above {
            out.extend(above);
        } else {
            out.push(below);
        }
        prefix = with_e;
    }
    if after {
        // `min` itself (every key of the index has all its fields).
        let end = IndexKey::prefix_end(&prefix);
        out.push((prefix, end));
    }
    out.retain(|(lo, hi)| hi.as_ref().is_none_or(|h| h > lo));
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The intersection of two lists of sorted, disjoint spans.
fn intersect(a: &[Span], b: &[Span]) -> Vec<Span> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    // `None` (no end) is above every byte string.
    let end_cmp = |x: &Option<Vec<u8>>, y: &Option<Vec<u8>>| match (x, y) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(p), Some(q)) => p.cmp(q),
    };
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        let lo = std::cmp::max(&x.0, &y.0).clone();
        let hi = if end_cmp(&x.1, &y.1) == Ordering::Greater {
            y.1.clone()
        } else {
            x.1.clone()
        };
        if hi.as_ref().is_none_or(|h| *h > lo) {
            out.push((lo, hi));
        }
        if end_cmp(&x.1, &y.1) == Ordering::Greater {
            j += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The byte intervals of a range (see the module doc).
fn range_intervals(r: &KeyRange) -> Vec<KeyInterval> {
    let everything: Vec<Span> = vec![(Vec::new(), None)];
    let lower = r
        .min
        .as_ref()
        .map_or_else(|| everything.clone(), |m| side(m, &r.ascending, true));
    let upper = r
        .max
        .as_ref()
        .map_or_else(|| everything.clone(), |m| side(m, &r.ascending, false));
    intersect(&lower, &upper)
        .into_iter()
        .map(|(lo, hi)| bounds::interval(lo, hi))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use std::ops::Bound;

    fn range(pattern: Document, min: Document, max: Document) -> KeyRange {
        let ascending = pattern
            .values()
            .map(|d| as_f64(d).is_none_or(|x| x >= 0.0))
            .collect();
        let values = |d: &Document| (!d.is_empty()).then(|| d.values().cloned().collect());
        KeyRange {
            key_spec: doc! {"name": "i", "key": pattern},
            partial: None,
            ascending,
            min: values(&min),
            max: values(&max),
        }
    }

    fn in_intervals(ivs: &[KeyInterval], key: &[Bson]) -> bool {
        let k = IndexKey::from_values(key);
        ivs.iter().any(|(lo, hi)| {
            let above = match lo {
                Bound::Included(l) => k >= *l,
                Bound::Excluded(l) => k > *l,
                Bound::Unbounded => true,
            };
            let below = match hi {
                Bound::Included(h) => k <= *h,
                Bound::Excluded(h) => k < *h,
                Bound::Unbounded => true,
            };
            above && below
        })
    }

    /// The byte intervals hold exactly the keys the comparison keeps, for
    /// every direction mix of a two-field index over a grid of keys.
    #[test]
    fn intervals_match_the_index_order_comparison() {
        let vals: Vec<Bson> = vec![
            Bson::MinKey,
            Bson::Null,
            Bson::Int32(1),
            Bson::Double(1.5),
            Bson::Int64(2),
            Bson::Int32(3),
            Bson::String("a".into()),
            Bson::String("b".into()),
            Bson::Boolean(true),
            Bson::MaxKey,
        ];
        let keys: Vec<Vec<Bson>> = vals
            .iter()
            .flat_map(|a| vals.iter().map(move |b| vec![a.clone(), b.clone()]))
            .collect();
        let bounds = [
            (doc! {}, doc! {"a": 2, "b": "a"}),
            (doc! {"a": 1, "b": 3}, doc! {}),
            (doc! {"a": 1, "b": 3}, doc! {"a": 2, "b": 1.5}),
            (doc! {"a": 1, "b": 3}, doc! {"a": "a", "b": 1}),
            (
                doc! {"a": Bson::MinKey, "b": 2},
                doc! {"a": 3, "b": Bson::MaxKey},
            ),
            (doc! {"a": 2, "b": Bson::Null}, doc! {"a": 2, "b": 2}),
        ];
        for pattern in [
            doc! {"a": 1, "b": 1},
            doc! {"a": 1, "b": -1},
            doc! {"a": -1, "b": 1},
            doc! {"a": -1, "b": -1},
        ] {
            for (min, max) in &bounds {
                let r = range(pattern.clone(), min.clone(), max.clone());
                if let (Some(lo), Some(hi)) = (&r.min, &r.max)
                    && r.cmp_keys(lo, hi) != Ordering::Less
                {
                    continue;
                }
                let ivs = range_intervals(&r);
                for k in &keys {
                    assert_eq!(
                        in_intervals(&ivs, k),
                        r.contains(k),
                        "{pattern} min {min} max {max} key {k:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn checks_without_a_collection() {
        let hint = Bson::String("a_1".into());
        assert!(!check(&doc! {}, &doc! {}, None).unwrap());
        assert!(check(&doc! {"a": 1}, &doc! {}, Some(&hint)).unwrap());
        let code = |r: Result<bool>| r.unwrap_err().code;
        assert_eq!(
            code(check(&doc! {"a": 1}, &doc! {}, None)),
            ErrorCode::NoQueryExecutionPlans
        );
        assert_eq!(
            code(check(&doc! {"a": 1}, &doc! {"b": 1}, Some(&hint))),
            ErrorCode::Location51176
        );
        assert_eq!(
            code(check(&doc! {"a": 1}, &doc! {"a": 2, "b": 1}, Some(&hint))),
            ErrorCode::Location51176
        );
        assert_eq!(
            code(check(
                &doc! {"a": 1},
                &doc! {},
                Some(&Bson::Document(doc! {"$natural": 1}))
            )),
            ErrorCode::NoQueryExecutionPlans
        );
    }
}
