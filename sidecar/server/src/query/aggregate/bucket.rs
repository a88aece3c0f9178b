//! `$bucket` and `$bucketAuto`: documents grouped into ranges of a value.
//!
//! **`$bucket`** is MongoDB's `$group` by a `$switch` over the boundaries
//! then `$sort: {_id: 1}`; here the group runs through `group`'s table
//! (same budget, same spilling) keyed by a binary search of the sorted
//! boundaries instead of a `$switch` of one branch per range, so a
//! million boundaries cost O(log n) per document, not O(n). The search
//! finds what the `$switch` finds: the ranges are `[b[i], b[i+1])` in
//! `compare`'s order, which is the order `$gte`/`$lt` use.
//!
//! **`$bucketAuto`** sorts its input by the `groupBy` value (an
//! `ExternalSorter` within the stage budget, spilling past it), then fills
//! `buckets` buckets of about `n / buckets` documents each, never splitting
//! equal values between two buckets, as MongoDB's
//! `DocumentSourceBucketAuto` does; with a `granularity`, bucket edges are
//! rounded to a preferred-number series or to powers of two
//! ([`Granularity`]).

use bson::{Bson, Document, doc};

use super::super::compare::{as_f64, compare, is_number, type_rank};
use super::super::expr::{Expr, type_name};
use super::super::sort::SortSpec;
use super::group::{self, Accumulator};
use super::stage::{Acc, Group, parse_accumulator};
use super::{Cx, Op};
use crate::error::{CommandError, ErrorCode, Result};
use crate::spill::{ExternalSorter, Sorted, StageBudget};

/// A parsed `$bucket`.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    group_by: Expr,
    /// Strictly ascending, all of one type class.
    boundaries: Vec<Bson>,
    default: Option<Bson>,
    accumulators: Vec<(String, Acc, Expr)>,
    /// `{_id: 1}`: buckets come out in boundary order.
    order: SortSpec,
}

/// A parsed `$bucketAuto`.
#[derive(Debug, Clone)]
pub(super) struct BucketAuto {
    group_by: Expr,
    buckets: usize,
    granularity: Option<Granularity>,
    accumulators: Vec<(String, Acc, Expr)>,
    /// By the wrapped `groupBy` value (see [`BucketAutoOp`]).
    order: SortSpec,
}

fn err(code: ErrorCode, message: impl Into<String>) -> CommandError {
    CommandError::new(code, message)
}

/// `groupBy` must be a `$`-prefixed path or an expression object.
fn parse_group_by(v: &Bson, code: ErrorCode, stage: &str) -> Result<Expr> {
    let ok = match v {
        Bson::String(s) => s.len() > 1 && s.starts_with('$'),
        Bson::Document(d) => d.keys().next().is_some_and(|k| k.starts_with('$')),
        _ => false,
    };
    if !ok {
        return Err(err(
            code,
            format!(
                "The {stage} 'groupBy' field must be defined as a $-prefixed path or an expression, but found: {v}"
            ),
        ));
    }
    Expr::parse(v)
}

/// A constant expression's value, or `None` when it is not constant.
fn constant(v: &Bson) -> Result<Option<Bson>> {
    let e = Expr::parse(v)?;
    if !e.is_constant() {
        return Ok(None);
    }
    Ok(Some(e.eval(&Document::new())?.unwrap_or(Bson::Null)))
}

fn parse_output(v: &Bson, code: ErrorCode, stage: &str) -> Result<Vec<(String, Acc, Expr)>> {
    let Bson::Document(d) = v else {
        return Err(err(
            code,
            format!(
                "The {stage} 'output' field must be an object, but found type: {}",
                type_name(v)
            ),
        ));
    };
    d.iter().map(|(k, v)| parse_accumulator(k, v)).collect()
}

fn count_only() -> Vec<(String, Acc, Expr)> {
    vec![("count".into(), Acc::Count, Expr::Literal(Bson::Null))]
}

impl Bucket {
    pub(super) fn parse(arg: &Bson) -> Result<Bucket> {
        let Bson::Document(spec) = arg else {
            return Err(err(
                ErrorCode::Location40201,
                format!(
                    "Argument to $bucket stage must be an object, but found type: {}.",
                    type_name(arg)
                ),
            ));
        };
        let mut group_by = None;
        let mut boundaries = Vec::new();
        let mut default = None;
        let mut accumulators = None;
        for (k, v) in spec {
            match k.as_str() {
                "groupBy" => {
                    group_by = Some(parse_group_by(v, ErrorCode::Location40202, "$bucket")?)
                }
                "boundaries" => boundaries = parse_boundaries(v)?,
                "default" => {
                    default = Some(constant(v)?.ok_or_else(|| {
                        err(
                            ErrorCode::Location40195,
                            format!(
                                "The $bucket 'default' field must be a constant expression, but found: {v}."
                            ),
                        )
                    })?)
                }
                "output" => {
                    accumulators = Some(parse_output(v, ErrorCode::Location40196, "$bucket")?)
                }
                other => {
                    return Err(err(
                        ErrorCode::Location40197,
                        format!("Unrecognized option to $bucket: {other}."),
                    ));
                }
            }
        }
        let (Some(group_by), false) = (group_by, boundaries.is_empty()) else {
            return Err(err(
                ErrorCode::Location40198,
                "$bucket requires 'groupBy' and 'boundaries' to be specified.",
            ));
        };
        if let (Some(d), Some(lo), Some(hi)) = (&default, boundaries.first(), boundaries.last())
            && type_rank(d) == type_rank(lo)
            && !(compare(d, lo).is_lt() || compare(d, hi).is_ge())
        {
            return Err(err(
                ErrorCode::Location40199,
                "The $bucket 'default' field must be less than the lowest boundary or greater than or equal to the highest boundary.",
            ));
        }
        Ok(Bucket {
            group_by,
            boundaries,
            default,
            accumulators: accumulators.unwrap_or_else(count_only),
            order: SortSpec::parse(&doc! {"_id": 1})?,
        })
    }

    /// The `$group` and `$sort` this stage is.
    pub(super) fn stream(self, input: Box<dyn Op>, budget: StageBudget) -> Box<dyn Op> {
        let Bucket {
            group_by,
            boundaries,
            default,
            accumulators,
            order,
        } = self;
        let group = Group {
            id: Expr::Literal(Bson::Null),
            accumulators,
        };
        let key: group::KeyOf = Box::new(move |d| {
            let v = group_by.eval(d)?.unwrap_or(Bson::Null);
            match bucket_of(&boundaries, &v) {
                Some(i) => Ok(boundaries[i].clone()),
                // mongod 7.0+ runs the `$group` (and its `$switch`) in
                // SBE, whose no-branch code is 7158303 (the classic
                // engine's is 40066; MongoDB's tests map one to the other).
                None => default.clone().ok_or_else(|| {
                    err(
                        ErrorCode::Location7158303,
                        "$switch could not find a matching branch for an input, and no default was specified.",
                    )
                }),
            }
        });
        let grouped = group::op_keyed(input, group, key, budget);
        super::ops::sort(grouped, order, None, budget, true)
    }
}

/// The index `i` with `b[i] <= v < b[i + 1]`, if any.
fn bucket_of(b: &[Bson], v: &Bson) -> Option<usize> {
    // The number of boundaries at or below `v`.
    let at_or_below = b.partition_point(|x| compare(x, v).is_le());
    (at_or_below >= 1 && at_or_below < b.len()).then(|| at_or_below - 1)
}

fn parse_boundaries(v: &Bson) -> Result<Vec<Bson>> {
    let Bson::Array(items) = v else {
        return Err(err(
            ErrorCode::Location40200,
            format!(
                "The $bucket 'boundaries' field must be an array, but found type: {}.",
                type_name(v)
            ),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(constant(item)?.ok_or_else(|| {
            err(
                ErrorCode::Location40191,
                format!(
                    "The $bucket 'boundaries' field must be an array of constant values, but found value: {item}."
                ),
            )
        })?);
    }
    if out.len() < 2 {
        return Err(err(
            ErrorCode::Location40192,
            format!(
                "The $bucket 'boundaries' field must have at least 2 values, but found {} value(s).",
                out.len()
            ),
        ));
    }
    for (i, w) in out.windows(2).enumerate() {
        let (lower, upper) = (&w[0], &w[1]);
        if type_rank(lower) != type_rank(upper) {
            return Err(err(
                ErrorCode::Location40193,
                format!(
                    "All values in the the 'boundaries' option to $bucket must have the same type. Found conflicting types {} and {}.",
                    type_name(lower),
                    type_name(upper)
                ),
            ));
        }
        if !compare(lower, upper).is_lt() {
            return Err(err(
                ErrorCode::Location40194,
                format!(
                    "The 'boundaries' option to $bucket must be sorted, but elements {} and {} are not in ascending order ({lower} is not less than {upper}).",
                    i,
                    i + 1
                ),
            ));
        }
    }
    Ok(out)
}

impl BucketAuto {
    pub(super) fn parse(arg: &Bson) -> Result<BucketAuto> {
        let Bson::Document(spec) = arg else {
            return Err(err(
                ErrorCode::Location40240,
                format!(
                    "The argument to $bucketAuto must be an object, but found type: {}",
                    type_name(arg)
                ),
            ));
        };
        let mut group_by = None;
        let mut buckets = None;
        let mut granularity = None;
        let mut accumulators = None;
        for (k, v) in spec {
            match k.as_str() {
                "groupBy" => {
                    group_by = Some(parse_group_by(v, ErrorCode::Location40239, "$bucketAuto")?)
                }
                "buckets" => buckets = Some(parse_buckets(v)?),
                "output" => {
                    accumulators = Some(parse_output(v, ErrorCode::Location40244, "$bucketAuto")?)
                }
                "granularity" => {
                    let Bson::String(name) = v else {
                        return Err(err(
                            ErrorCode::Location40261,
                            format!(
                                "The $bucketAuto 'granularity' field must be a string, but found type: {}",
                                type_name(v)
                            ),
                        ));
                    };
                    granularity = Some(Granularity::named(name)?);
                }
                other => {
                    return Err(err(
                        ErrorCode::Location40245,
                        format!("Unrecognized option to $bucketAuto: {other}"),
                    ));
                }
            }
        }
        let (Some(group_by), Some(buckets)) = (group_by, buckets) else {
            return Err(err(
                ErrorCode::Location40246,
                "$bucketAuto requires 'groupBy' and 'buckets' to be specified",
            ));
        };
        Ok(BucketAuto {
            group_by,
            buckets,
            granularity,
            accumulators: accumulators.unwrap_or_else(count_only),
            order: SortSpec::parse(&doc! {"k": 1})?,
        })
    }

    pub(super) fn stream(self, input: Box<dyn Op>, budget: StageBudget) -> Box<dyn Op> {
        Box::new(BucketAutoOp {
            input,
            spec: self,
            budget,
            state: None,
        })
    }
}

/// `buckets`: a positive 32-bit integer (2^31 is 40242, as in MongoDB).
fn parse_buckets(v: &Bson) -> Result<usize> {
    if !is_number(v) {
        return Err(err(
            ErrorCode::Location40241,
            format!(
                "The $bucketAuto 'buckets' field must be a numeric value, but found type: {}",
                type_name(v)
            ),
        ));
    }
    let f = as_f64(v).unwrap_or(f64::NAN);
    let n = match v {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => i32::try_from(*n).ok().map(i64::from),
        _ => (f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX))
            .then_some(f as i64),
    };
    let Some(n) = n else {
        return Err(err(
            ErrorCode::Location40242,
            format!(
                "The $bucketAuto 'buckets' field must be representable as a 32-bit integer, but found {f}"
            ),
        ));
    };
    if n <= 0 {
        return Err(err(
            ErrorCode::Location40243,
            format!("The $bucketAuto 'buckets' field must be greater than 0, but found: {n}"),
        ));
    }
    usize::try_from(n).map_err(|_| err(ErrorCode::Location40242, "buckets out of range"))
}

struct BucketAutoOp {
    input: Box<dyn Op>,
    spec: BucketAuto,
    budget: StageBudget,
    state: Option<Filling>,
}

/// The sorted input being cut into buckets.
struct Filling {
    sorted: Sorted,
    /// The first document of the next bucket (already read).
    pending: Option<Entry>,
    /// The last bucket's max, for the next one's min (with a granularity).
    previous_max: Option<Bson>,
    approx_size: usize,
    made: usize,
}

impl Filling {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        let Some(mut d) = self.sorted.next_doc()? else {
            return Ok(None);
        };
        let key = match d.remove("k") {
            Some(Bson::Document(mut k)) => k.remove("v").unwrap_or(Bson::Null),
            _ => return Err(crate::spill::damaged()),
        };
        let pos = d.get_i64("n").map_err(|_| crate::spill::damaged())?;
        match d.remove("d") {
            Some(Bson::Document(doc)) => Ok(Some((key, doc, pos))),
            _ => Err(crate::spill::damaged()),
        }
    }
}

impl Op for BucketAutoOp {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        if self.state.is_none() {
            let mut sorter = ExternalSorter::new(std::mem::take(&mut self.spec.order), self.budget);
            let mut n = 0usize;
            while let Some(d) = self.input.next(cx)? {
                cx.tick()?;
                let key = self.spec.group_by.eval(&d)?.unwrap_or(Bson::Null);
                if let Some(g) = &self.spec.granularity {
                    g.check_key(&key)?;
                }
                // `{v: key}` orders as `key` does (a document compares its
                // fields' values), and an array key stays one value.
                // `n`: the input position, for `$first`/`$last`.
                sorter.push(&doc! {"k": {"v": key}, "d": d, "n": n as i64})?;
                n += 1;
            }
            let approx = (n as f64 / self.spec.buckets as f64).round() as usize;
            self.state = Some(Filling {
                sorted: sorter.finish()?,
                pending: None,
                previous_max: None,
                approx_size: approx.max(1),
                made: 0,
            });
        }
        let Some(st) = &mut self.state else {
            return Ok(None);
        };
        if st.made >= self.spec.buckets {
            return Ok(None);
        }
        st.made += 1;
        let first = match st.pending.take() {
            Some(e) => e,
            None => match st.next_entry()? {
                Some(e) => e,
                None => return Ok(None),
            },
        };
        let last_bucket = st.made == self.spec.buckets;
        let mut accs = BucketAccs::new(&self.spec.accumulators)?;
        let granularity = self.spec.granularity.as_ref();
        let mut min = first.0.clone();
        if let Some(g) = granularity {
            min = match st.previous_max.take() {
                Some(m) => m,
                None => g.round_down(&first.0)?,
            };
        }
        let mut max = first.0;
        accs.add(first.2, &first.1)?;
        let mut taken = 1usize;
        let mut next = st.next_entry()?;
        while let Some((k, d, p)) = next.take() {
            if taken >= st.approx_size && !last_bucket {
                next = Some((k, d, p));
                break;
            }
            cx.tick()?;
            accs.add(p, &d)?;
            max = k;
            taken += 1;
            next = st.next_entry()?;
        }
        // Equal values (and, with a granularity, values below the rounded
        // edge) stay in this bucket.
        let boundary = match granularity {
            Some(g) => Some(g.round_up(&max)?),
            None => None,
        };
        while let Some((k, d, p)) = next.take() {
            let absorb = compare(&max, &k).is_eq()
                || boundary.as_ref().is_some_and(|b| compare(b, &k).is_gt());
            if !absorb {
                next = Some((k, d, p));
                break;
            }
            cx.tick()?;
            accs.add(p, &d)?;
            max = k;
            next = st.next_entry()?;
        }
        match (granularity, boundary) {
            (Some(g), Some(b)) => {
                max = match &next {
                    Some((k, _, _)) if as_f64(&b) == Some(0.0) => g.round_down(k)?,
                    _ => b,
                };
            }
            _ => {
                if let Some((k, _, _)) = &next {
                    max = k.clone();
                }
            }
        }
        st.previous_max = Some(max.clone());
        st.pending = next;
        let mut out = doc! {"_id": {"min": min, "max": max}};
        accs.finish_into(&mut out);
        crate::limits::check_built_document(&out, "$bucketAuto")?;
        Ok(Some(out))
    }
}

/// A sorted document: its `groupBy` value, itself, its input position.
type Entry = (Bson, Document, i64);

/// One bucket's accumulators. `$first`, `$last`, `$firstN` and `$lastN`
/// take the values of the bucket's earliest and latest documents in
/// *input* order, not in `groupBy` order, as MongoDB's
/// `AccumulatorFirstLastNForBucketAuto`.
struct BucketAccs<'a> {
    specs: &'a [(String, Acc, Expr)],
    slots: Vec<Slot>,
}

enum Slot {
    Fold(Accumulator),
    /// `$firstN`/`$lastN`: a `$topN`/`$bottomN` by input position.
    PositionalN(Accumulator),
    /// The best (position, value) so far.
    Positional(Option<(i64, Bson)>),
}

impl<'a> BucketAccs<'a> {
    fn new(specs: &'a [(String, Acc, Expr)]) -> Result<BucketAccs<'a>> {
        let slots = specs
            .iter()
            .map(|(_, acc, _)| {
                if let Acc::Pick(pick) = acc
                    && let Some(by_position) = super::multi::by_position(pick)?
                {
                    let acc = Acc::Pick(std::sync::Arc::new(by_position));
                    return Ok(Slot::PositionalN(Accumulator::new(&acc)?));
                }
                Ok(match acc {
                    Acc::First | Acc::Last => Slot::Positional(None),
                    acc => Slot::Fold(Accumulator::new(acc)?),
                })
            })
            .collect::<Result<_>>()?;
        Ok(BucketAccs { specs, slots })
    }

    fn add(&mut self, pos: i64, d: &Document) -> Result<()> {
        for ((_, acc, e), slot) in self.specs.iter().zip(self.slots.iter_mut()) {
            match slot {
                Slot::Fold(a) => a.add(e.eval(d)?)?,
                Slot::PositionalN(a) => {
                    let v = e.eval(d)?.unwrap_or(Bson::Null);
                    a.add(Some(Bson::Document(doc! {"o": v, "k0": pos})))?;
                }
                Slot::Positional(best) => {
                    let better = match best {
                        None => true,
                        Some((p, _)) if matches!(acc, Acc::First) => pos < *p,
                        Some((p, _)) => pos > *p,
                    };
                    if better {
                        *best = Some((pos, e.eval(d)?.unwrap_or(Bson::Null)));
                    }
                }
            }
        }
        Ok(())
    }

    fn finish_into(self, doc: &mut Document) {
        for ((name, _, _), slot) in self.specs.iter().zip(self.slots) {
            let v = match slot {
                Slot::Fold(a) | Slot::PositionalN(a) => a.finish(),
                Slot::Positional(best) => best.map_or(Bson::Null, |(_, v)| v),
            };
            doc.insert(name.clone(), v);
        }
    }
}

/// `$bucketAuto`'s `granularity`: a preferred-number series (each value
/// times a power of ten) or powers of two.
#[derive(Debug, Clone)]
pub(super) enum Granularity {
    Series(&'static [f64]),
    PowersOf2,
}

const R5: &[f64] = &[10., 16., 25., 40., 63.];
const R10: &[f64] = &[100., 125., 160., 200., 250., 315., 400., 500., 630., 800.];
const R20: &[f64] = &[
    100., 112., 125., 140., 160., 180., 200., 224., 250., 280., 315., 355., 400., 450., 500., 560.,
    630., 710., 800., 900.,
];
const R40: &[f64] = &[
    100., 106., 112., 118., 125., 132., 140., 150., 160., 170., 180., 190., 200., 212., 224., 236.,
    250., 265., 280., 300., 315., 355., 375., 400., 425., 450., 475., 500., 530., 560., 600., 630.,
    670., 710., 750., 800., 850., 900., 950.,
];
const R80: &[f64] = &[
    103., 109., 115., 122., 128., 136., 145., 155., 165., 175., 185., 195., 206., 218., 230., 243.,
    258., 272., 290., 307., 325., 345., 365., 387., 412., 437., 462., 487., 515., 545., 575., 615.,
    650., 690., 730., 775., 825., 875., 925., 975.,
];
const S125: &[f64] = &[10., 20., 50.];
const E6: &[f64] = &[10., 15., 22., 33., 47., 68.];
const E12: &[f64] = &[10., 12., 15., 18., 22., 27., 33., 39., 47., 56., 68., 82.];
const E24: &[f64] = &[
    10., 11., 12., 13., 15., 16., 18., 20., 22., 24., 27., 30., 33., 36., 39., 43., 47., 51., 56.,
    62., 68., 75., 82., 91.,
];
const E48: &[f64] = &[
    100., 105., 110., 115., 121., 127., 133., 140., 147., 154., 162., 169., 178., 187., 196., 205.,
    215., 226., 237., 249., 261., 274., 287., 301., 316., 332., 348., 365., 383., 402., 422., 442.,
    464., 487., 511., 536., 562., 590., 619., 649., 681., 715., 750., 787., 825., 866., 909., 953.,
];
const E96: &[f64] = &[
    100., 102., 105., 107., 110., 113., 115., 118., 121., 124., 127., 130., 133., 137., 140., 143.,
    147., 150., 154., 158., 162., 165., 169., 174., 178., 182., 187., 191., 196., 200., 205., 210.,
    215., 221., 226., 232., 237., 243., 249., 255., 261., 267., 274., 280., 287., 294., 301., 309.,
    316., 324., 332., 340., 348., 357., 365., 374., 383., 392., 402., 412., 422., 432., 442., 453.,
    464., 475., 487., 499., 511., 523., 536., 549., 562., 576., 590., 604., 619., 634., 649., 665.,
    681., 698., 715., 732., 750., 768., 787., 806., 825., 845., 866., 887., 909., 931., 953., 976.,
];
const E192: &[f64] = &[
    100., 101., 102., 104., 105., 106., 107., 109., 110., 111., 113., 114., 115., 117., 118., 120.,
    121., 123., 124., 126., 127., 129., 130., 132., 133., 135., 137., 138., 140., 142., 143., 145.,
    147., 149., 150., 152., 154., 156., 158., 160., 162., 164., 165., 167., 169., 172., 174., 176.,
    178., 180., 182., 184., 187., 189., 191., 193., 196., 198., 200., 203., 205., 208., 210., 213.,
    215., 218., 221., 223., 226., 229., 232., 234., 237., 240., 243., 246., 249., 252., 255., 258.,
    261., 264., 267., 271., 274., 277., 280., 284., 287., 291., 294., 298., 301., 305., 309., 312.,
    316., 320., 324., 328., 332., 336., 340., 344., 348., 352., 357., 361., 365., 370., 374., 379.,
    383., 388., 392., 397., 402., 407., 412., 417., 422., 427., 432., 437., 442., 448., 453., 459.,
    464., 470., 475., 481., 487., 493., 499., 505., 511., 517., 523., 530., 536., 542., 549., 556.,
    562., 569., 576., 583., 590., 597., 604., 612., 619., 626., 634., 642., 649., 657., 665., 673.,
    681., 690., 698., 706., 715., 723., 732., 741., 750., 759., 768., 777., 787., 796., 806., 816.,
    825., 835., 845., 856., 866., 876., 887., 898., 909., 920., 931., 942., 953., 965., 976., 988.,
];

impl Granularity {
    fn named(name: &str) -> Result<Granularity> {
        Ok(Granularity::Series(match name {
            "R5" => R5,
            "R10" => R10,
            "R20" => R20,
            "R40" => R40,
            "R80" => R80,
            "1-2-5" => S125,
            "E6" => E6,
            "E12" => E12,
            "E24" => E24,
            "E48" => E48,
            "E96" => E96,
            "E192" => E192,
            "POWERSOF2" => return Ok(Granularity::PowersOf2),
            other => {
                return Err(err(
                    ErrorCode::Location40257,
                    format!("Unknown rounding granularity '{other}'"),
                ));
            }
        }))
    }

    /// A `groupBy` value must be a non-negative number (40258-40260).
    fn check_key(&self, v: &Bson) -> Result<()> {
        if !is_number(v) {
            return Err(err(
                ErrorCode::Location40258,
                format!(
                    "$bucketAuto can specify a 'granularity' with numeric boundaries only, but found a value with type: {}",
                    type_name(v)
                ),
            ));
        }
        let f = as_f64(v).unwrap_or(f64::NAN);
        if f.is_nan() {
            return Err(err(
                ErrorCode::Location40259,
                "$bucketAuto can specify a 'granularity' with numeric boundaries only, but found a NaN",
            ));
        }
        if f < 0.0 {
            return Err(err(
                ErrorCode::Location40260,
                "$bucketAuto can specify a 'granularity' with non-negative numbers only, but found a negative number",
            ));
        }
        Ok(())
    }

    /// The smallest edge strictly above `v` (0 stays 0).
    fn round_up(&self, v: &Bson) -> Result<Bson> {
        self.check_key(v)?;
        let x = as_f64(v).unwrap_or(0.0);
        if x == 0.0 {
            return Ok(v.clone());
        }
        Ok(match self {
            Granularity::PowersOf2 => match v {
                Bson::Int32(_) | Bson::Int64(_) => {
                    let n = as_i64_exact(v);
                    pow2(i64::from(64 - n.leading_zeros()))
                }
                _ => pow2_double(x.log2().floor() + 1.0),
            },
            Granularity::Series(s) => Bson::Double(series_round_up(s, x)),
        })
    }

    /// The largest edge strictly below `v` (0 stays 0).
    fn round_down(&self, v: &Bson) -> Result<Bson> {
        self.check_key(v)?;
        let x = as_f64(v).unwrap_or(0.0);
        if x == 0.0 {
            return Ok(v.clone());
        }
        Ok(match self {
            Granularity::PowersOf2 => match v {
                Bson::Int32(_) | Bson::Int64(_) => {
                    let n = as_i64_exact(v);
                    let top = 63 - i64::from(n.leading_zeros());
                    pow2(if n.count_ones() == 1 { top - 1 } else { top })
                }
                _ => pow2_double(x.log2().ceil() - 1.0),
            },
            Granularity::Series(s) => Bson::Double(series_round_down(s, x)),
        })
    }
}

fn as_i64_exact(v: &Bson) -> i64 {
    match v {
        Bson::Int32(n) => i64::from(*n),
        Bson::Int64(n) => *n,
        _ => 0,
    }
}

/// `$pow(2, e)` of integers: an int when it fits, else a long, else a double.
fn pow2(e: i64) -> Bson {
    match e {
        0..=30 => Bson::Int32(1 << e),
        31..=62 => Bson::Int64(1 << e),
        _ => Bson::Double(2f64.powf(e as f64)),
    }
}

fn pow2_double(e: f64) -> Bson {
    Bson::Double(2f64.powf(e))
}

/// MongoDB's `GranularityRounderPreferredNumbers::roundUp` for a double.
fn series_round_up(s: &[f64], x: f64) -> f64 {
    let (first, last) = (s[0], s[s.len() - 1]);
    let mut m = 1.0;
    while x >= last * m {
        m *= 10.0;
    }
    while x < first * m {
        let previous_min = first * m;
        m /= 10.0;
        if x >= last * m {
            return previous_min;
        }
    }
    let i = s.partition_point(|&y| y * m <= x);
    s.get(i).map_or(last * m, |y| y * m)
}

/// MongoDB's `GranularityRounderPreferredNumbers::roundDown` for a double.
fn series_round_down(s: &[f64], x: f64) -> f64 {
    let (first, last) = (s[0], s[s.len() - 1]);
    let mut m = 1.0;
    while x <= first * m {
        m /= 10.0;
    }
    while x > last * m {
        let previous_max = last * m;
        m *= 10.0;
        if x <= first * m {
            return previous_max;
        }
    }
    let i = s.partition_point(|&y| y * m < x);
    s[i.saturating_sub(1)] * m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_round_as_mongodb_documents() {
        // MongoDB's manual: R5 rounds 1 up to 1.6 and down to 0.63; E6
        // rounds 0.8 up to 1.0.
        assert!((series_round_up(R5, 1.0) - 1.6).abs() < 1e-12);
        assert!((series_round_down(R5, 1.0) - 0.63).abs() < 1e-12);
        assert!((series_round_up(E6, 0.8) - 1.0).abs() < 1e-12);
        assert!((series_round_down(E6, 0.8) - 0.68).abs() < 1e-12);
        assert_eq!(series_round_up(S125, 20.0), 50.0);
        assert_eq!(series_round_down(S125, 20.0), 10.0);
        assert_eq!(series_round_up(R10, 1000.0), 1250.0);
        assert_eq!(series_round_up(E192, 988.0), 1000.0);
        // A value past the series' end rolls to the next decade.
        assert_eq!(series_round_up(S125, 60.0), 100.0);
        assert_eq!(series_round_down(S125, 101.0), 100.0);
    }

    #[test]
    fn powers_of_two_round_strictly() {
        let g = Granularity::PowersOf2;
        assert_eq!(g.round_up(&Bson::Int32(4)).unwrap(), Bson::Int32(8));
        assert_eq!(g.round_up(&Bson::Int32(5)).unwrap(), Bson::Int32(8));
        assert_eq!(g.round_down(&Bson::Int32(4)).unwrap(), Bson::Int32(2));
        assert_eq!(g.round_down(&Bson::Int32(5)).unwrap(), Bson::Int32(4));
        assert_eq!(g.round_up(&Bson::Double(3.5)).unwrap(), Bson::Double(4.0));
        assert_eq!(g.round_down(&Bson::Double(4.0)).unwrap(), Bson::Double(2.0));
        assert_eq!(
            g.round_up(&Bson::Int32(i32::MAX)).unwrap(),
            Bson::Int64(1 << 31)
        );
        assert_eq!(
            g.round_up(&Bson::Int64(i64::MAX)).unwrap(),
            Bson::Double(2f64.powi(63))
        );
        assert_eq!(g.round_up(&Bson::Int32(0)).unwrap(), Bson::Int32(0));
        assert_eq!(
            g.round_up(&Bson::Int32(-1)).unwrap_err().code,
            ErrorCode::Location40260
        );
    }

    #[test]
    fn bucket_of_is_the_half_open_range() {
        let b: Vec<Bson> = [0, 10, 20].into_iter().map(Bson::Int32).collect();
        assert_eq!(bucket_of(&b, &Bson::Int32(0)), Some(0));
        assert_eq!(bucket_of(&b, &Bson::Double(9.99)), Some(0));
        assert_eq!(bucket_of(&b, &Bson::Int64(10)), Some(1));
        assert_eq!(bucket_of(&b, &Bson::Int32(20)), None);
        assert_eq!(bucket_of(&b, &Bson::Int32(-1)), None);
        assert_eq!(bucket_of(&b, &Bson::String("a".into())), None);
    }
}
