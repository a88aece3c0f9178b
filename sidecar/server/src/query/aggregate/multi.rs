//! The accumulators that take arguments, parsed and evaluated as mongod
//! 8.0 does (`accumulator_multi.cpp`, `accumulator_percentile.cpp`):
//!
//! - `$firstN`, `$lastN`, `$minN`, `$maxN`, `$topN`, `$bottomN`, `$top`,
//!   `$bottom`: a [`Pick`] of at most `n` values. `n` is an expression of
//!   the group's `_id` (the `_id` document's fields, or nothing when the
//!   `_id` is not a document), validated per group (5787902/5787903/
//!   5787908). A [`Picked`] state holds at most `n` entries and never
//!   allocates for `n` up front, so `n: 1e9` costs what the group holds;
//!   the values it holds are held to the 16 MiB value limit.
//! - `$percentile` and `$median` (`method: "approximate"`, the only method
//!   mongod 8.0 accepts; "discrete" and "continuous" are 8.1's and fail
//!   with BadValue as 8.0 fails them): the answer is the discrete
//!   percentile of the numbers seen (rank `ceil(p·n) - 1`), which is what
//!   mongod's t-digest returns for inputs of up to a few thousand values
//!   and within its accuracy bounds past that. The numbers are held
//!   (8 bytes each, at most [`MAX_QUANTILE_VALUES`]).
//!
//! The same parsers serve the array expressions of these names
//! (`{$maxN: {n, input: [..]}}`, `{$median: {input, method}}`), which
//! `expr` evaluates with [`eval_pick_expression`] and [`quantiles`].

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use bson::{Bson, Document, doc};

use super::super::compare::{as_f64, compare, is_number};
use super::super::expr::{Expr, Scope, type_name};
use super::super::sort::{SortBy, SortSpec};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::{self, Budget};

/// The most numbers one `$percentile`/`$median` state holds: the
/// blocking-stage budget's worth of doubles (100 MiB, 13,107,200), since
/// a group's merged state is held whole; past it the group fails with
/// ExceededMemoryLimit, as mongod fails past
/// `internalQueryMaxPercentileAccumulatorBytes`.
pub(crate) const MAX_QUANTILE_VALUES: usize = limits::MAX_BLOCKING_STAGE_BYTES / 8;

/// Whether a `$percentile`/`$median` state holding `len` numbers may take
/// one more (ExceededMemoryLimit past [`MAX_QUANTILE_VALUES`]).
pub(crate) fn room_for_number(len: usize) -> Result<()> {
    if len >= MAX_QUANTILE_VALUES {
        return Err(CommandError::new(
            ErrorCode::ExceededMemoryLimit,
            format!(
                "$percentile used too much memory and cannot spill to disk. Used: {} bytes. Memory limit: {} bytes",
                len.saturating_mul(8),
                MAX_QUANTILE_VALUES * 8
            ),
        ));
    }
    Ok(())
}

/// Bytes charged per kept entry beyond its values (heap slot, key vector).
const ENTRY_OVERHEAD: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickKind {
    FirstN,
    LastN,
    MinN,
    MaxN,
    Top,
    Bottom,
}

/// A parsed `$firstN` … `$bottom`.
#[derive(Debug, Clone)]
pub struct Pick {
    pub kind: PickKind,
    pub name: &'static str,
    /// `n` (the constant 1 for `$top`/`$bottom`).
    pub n: Expr,
    /// `$top`/`$bottom`: the one value, not an array of it.
    pub single: bool,
    /// `$top`/`$bottom`: the order of `sortBy`, over the fields `k0`,
    /// `k1`, … of the evaluated input `{o: <output>, k0: <key 0>, …}` (as
    /// mongod's `sortFields0`…): an array key sorts by its least element
    /// ascending and its greatest descending, like `$sort`.
    pub sort: Option<SortSpec>,
}

impl Pick {
    /// The order entries are kept in: `Less` is better (kept first).
    /// `$minN`/`$maxN` rank by the value itself (no key is stored).
    fn rank(&self, a: &Ranked, b: &Ranked) -> Ordering {
        match (self.kind, &self.sort) {
            (PickKind::Top, Some(s)) => s.compare_keys(&a.key, &b.key),
            (PickKind::Bottom, Some(s)) => s.compare_keys(&a.key, &b.key).reverse(),
            (PickKind::MinN, _) => compare(&a.out, &b.out),
            (PickKind::MaxN, _) => compare(&a.out, &b.out).reverse(),
            _ => Ordering::Equal,
        }
    }

    fn keeps_deque(&self) -> bool {
        matches!(self.kind, PickKind::FirstN | PickKind::LastN)
    }
}

/// Parses `{$firstN: {n, input}}` … `{$bottom: {sortBy, output}}` into a
/// pick and the expression its state is fed (for `$top`…: `{o, k0, …}`);
/// `None` for other names.
pub(crate) fn parse_pick(name: &str, arg: &Bson, scope: Scope) -> Result<Option<(Pick, Expr)>> {
    let sub = |v: &Bson| Expr::parse_in(v, scope.nested());
    let (kind, name, single): (PickKind, &'static str, bool) = match name {
        "$firstN" => (PickKind::FirstN, "$firstN", false),
        "$lastN" => (PickKind::LastN, "$lastN", false),
        "$minN" => (PickKind::MinN, "$minN", false),
        "$maxN" => (PickKind::MaxN, "$maxN", false),
        "$topN" => (PickKind::Top, "$topN", false),
        "$bottomN" => (PickKind::Bottom, "$bottomN", false),
        "$top" => (PickKind::Top, "$top", true),
        "$bottom" => (PickKind::Bottom, "$bottom", true),
        _ => return Ok(None),
    };
    let not_object = match kind {
        PickKind::MinN | PickKind::MaxN => ErrorCode::Location5787900,
        PickKind::FirstN | PickKind::LastN => ErrorCode::Location5787801,
        PickKind::Top | PickKind::Bottom => ErrorCode::Location5788001,
    };
    let Bson::Document(spec) = arg else {
        return Err(CommandError::new(
            not_object,
            format!("specification must be an object; found {name}: {arg}"),
        ));
    };
    if matches!(kind, PickKind::Top | PickKind::Bottom) {
        return parse_top_bottom(kind, name, single, spec, scope).map(Some);
    }
    let mut n = None;
    let mut input = None;
    for (k, v) in spec {
        match k.as_str() {
            "n" => n = Some(sub(v)?),
            "input" => input = Some(sub(v)?),
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location5787901,
                    format!("Unknown argument for 'n' operator: {other}"),
                ));
            }
        }
    }
    let n =
        n.ok_or_else(|| CommandError::new(ErrorCode::Location5787906, "Missing value for 'n'"))?;
    let input = input.ok_or_else(|| {
        CommandError::new(ErrorCode::Location5787907, "Missing value for 'input'")
    })?;
    Ok(Some((
        Pick {
            kind,
            name,
            n,
            single,
            sort: None,
        },
        input,
    )))
}

fn parse_top_bottom(
    kind: PickKind,
    name: &'static str,
    single: bool,
    spec: &Document,
    scope: Scope,
) -> Result<(Pick, Expr)> {
    let sub = |v: &Bson| Expr::parse_in(v, scope.nested());
    let mut n = None;
    let mut output = None;
    let mut sort_by = None;
    for (k, v) in spec {
        match k.as_str() {
            "n" if !single => n = Some(sub(v)?),
            "output" => output = Some(v),
            "sortBy" => {
                let Bson::Document(s) = v else {
                    return Err(CommandError::new(
                        ErrorCode::Location10065,
                        "invalid parameter: expected an object (sortBy)",
                    ));
                };
                sort_by = Some(s);
            }
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location5788002,
                    format!("Unknown argument to {name} '{other}'"),
                ));
            }
        }
    }
    let n = match n {
        Some(n) => n,
        None if single => Expr::Literal(Bson::Int32(1)),
        None => {
            return Err(CommandError::new(
                ErrorCode::Location5788003,
                "Missing value for 'n'",
            ));
        }
    };
    let output = output.ok_or_else(|| {
        CommandError::new(ErrorCode::Location5788004, "Missing value for 'output'")
    })?;
    let sort_by = sort_by.ok_or_else(|| {
        CommandError::new(ErrorCode::Location5788005, "Missing value for 'sortBy'")
    })?;
    let user = SortSpec::parse(sort_by)?;
    if user.is_empty() {
        return Err(CommandError::bad_value(format!(
            "{name}'s 'sortBy' must not be empty"
        )));
    }
    // The input `{o: output, k0: "$a", k1: {$meta: "textScore"}, …}` and
    // the same order over `k0`, `k1`, … (a text score sorts highest first).
    let mut fields = vec![("o".to_owned(), sub(output)?)];
    let mut internal = Document::new();
    for (i, (path, ascending)) in user.parts().into_iter().enumerate() {
        let key = format!("k{i}");
        let e = match path {
            SortBy::Path(p) => Expr::parse(&Bson::String(format!("${p}")))?,
            SortBy::Meta(m) => Expr::Meta(m),
        };
        fields.push((key.clone(), e));
        internal.insert(key, if ascending { 1 } else { -1 });
    }
    Ok((
        Pick {
            kind,
            name,
            n,
            single,
            sort: Some(SortSpec::parse(&internal)?),
        },
        Expr::Object(fields),
    ))
}

/// `$firstN`/`$lastN` as `$bucketAuto` runs them (mongod's
/// `AccumulatorFirstLastNForBucketAuto`): by *input* position, which the
/// stage's sort by `groupBy` loses; the pick it becomes is fed
/// `{o: <value>, k0: <position>}`. `None` for other picks.
pub(crate) fn by_position(pick: &Pick) -> Result<Option<Pick>> {
    let kind = match pick.kind {
        PickKind::FirstN => PickKind::Top,
        PickKind::LastN => PickKind::Bottom,
        _ => return Ok(None),
    };
    Ok(Some(Pick {
        kind,
        name: pick.name,
        n: pick.n.clone(),
        single: false,
        sort: Some(SortSpec::parse(&doc! {"k0": 1})?),
    }))
}

/// `n` as mongod validates it: a number (5787902) holding a whole value
/// (5787903) above zero (5787908).
pub(crate) fn validate_n(v: Option<&Bson>) -> Result<u64> {
    let shown = v.map_or_else(|| "MISSING".to_owned(), ToString::to_string);
    let x = match v {
        Some(v) if is_number(v) => as_f64(v).unwrap_or(f64::NAN),
        _ => {
            return Err(CommandError::new(
                ErrorCode::Location5787902,
                format!("Value for 'n' must be of integral type, but found {shown}"),
            ));
        }
    };
    let whole = match v {
        Some(Bson::Int32(i)) => Some(i64::from(*i)),
        Some(Bson::Int64(i)) => Some(*i),
        _ if x.fract() == 0.0 && x.abs() < 9.2e18 => Some(x as i64),
        _ => None,
    };
    let Some(n) = whole else {
        return Err(CommandError::new(
            ErrorCode::Location5787903,
            format!("Value for 'n' must be of integral type, but found {shown}"),
        ));
    };
    if n <= 0 {
        return Err(CommandError::new(
            ErrorCode::Location5787908,
            format!("'n' must be greater than 0, found {n}"),
        ));
    }
    Ok(n as u64)
}

/// One kept entry of a `$minN`/`$maxN`/`$topN`/`$bottomN` state, ordered
/// by its pick's rank then by arrival (`seq`), so of equal keys the first
/// seen is kept, as mongod keeps it.
struct Ranked {
    key: Vec<Bson>,
    out: Bson,
    seq: u64,
    pick: Arc<Pick>,
}

impl Ranked {
    fn size(&self) -> usize {
        limits::bson_size(&self.out) + self.key.iter().map(limits::bson_size).sum::<usize>()
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.pick.rank(self, other).then(self.seq.cmp(&other.seq))
    }
}

/// The state of one pick for one group: at most `n` entries (a max-heap
/// of the worst kept, or for `$firstN`/`$lastN` a queue).
pub(crate) struct Picked {
    n: u64,
    heap: BinaryHeap<Ranked>,
    queue: VecDeque<Bson>,
    next_seq: u64,
    /// BSON bytes of the kept values, held to the 16 MiB value limit.
    bytes: usize,
    /// What the state is charged beyond its fixed size.
    pub mem: usize,
}

impl Picked {
    /// A new state; `n` is the value of the pick's `n` for this group.
    pub(crate) fn start(n: Option<&Bson>) -> Result<Picked> {
        Ok(Picked {
            n: validate_n(n)?,
            heap: BinaryHeap::new(),
            queue: VecDeque::new(),
            next_seq: 0,
            bytes: 0,
            mem: 0,
        })
    }

    fn full(&self) -> bool {
        (self.heap.len().max(self.queue.len()) as u64) >= self.n
    }

    pub(crate) fn add(&mut self, pick: &Arc<Pick>, v: Option<Bson>) -> Result<()> {
        match pick.kind {
            PickKind::FirstN | PickKind::LastN => {
                let v = v.unwrap_or(Bson::Null);
                if self.full() {
                    if pick.kind == PickKind::FirstN {
                        return Ok(());
                    }
                    if let Some(old) = self.queue.pop_front() {
                        self.release(limits::bson_size(&old));
                    }
                }
                let size = limits::bson_size(&v);
                self.hold(pick.name, size)?;
                self.queue.push_back(v);
                Ok(())
            }
            PickKind::MinN | PickKind::MaxN => match v {
                None | Some(Bson::Null) | Some(Bson::Undefined) => Ok(()),
                Some(v) => self.offer(pick, Vec::new(), v),
            },
            PickKind::Top | PickKind::Bottom => {
                let mut d = match v {
                    Some(Bson::Document(d)) => d,
                    _ => Document::new(),
                };
                let key = match &pick.sort {
                    Some(s) => s.key(&d),
                    None => Vec::new(),
                };
                let out = d.remove("o").unwrap_or(Bson::Null);
                self.offer(pick, key, out)
            }
        }
    }

    /// Keeps `(key, out)` if fewer than `n` are kept or it ranks before
    /// the worst kept (which then goes).
    fn offer(&mut self, pick: &Arc<Pick>, key: Vec<Bson>, out: Bson) -> Result<()> {
        let entry = Ranked {
            key,
            out,
            seq: self.next_seq,
            pick: Arc::clone(pick),
        };
        self.next_seq += 1;
        self.push_ranked(pick.name, entry)
    }

    fn push_ranked(&mut self, name: &'static str, entry: Ranked) -> Result<()> {
        if self.full() {
            match self.heap.peek() {
                Some(worst) if entry < *worst => {
                    if let Some(old) = self.heap.pop() {
                        self.release(old.size());
                    }
                }
                _ => return Ok(()),
            }
        }
        self.hold(name, entry.size())?;
        self.heap.push(entry);
        Ok(())
    }

    fn hold(&mut self, name: &'static str, size: usize) -> Result<()> {
        let mut budget = Budget::value(name);
        budget.charge(self.bytes)?;
        budget.charge(size)?;
        self.bytes += size;
        self.mem = self
            .mem
            .saturating_add(size + ENTRY_OVERHEAD + std::mem::size_of::<Bson>());
        Ok(())
    }

    fn release(&mut self, size: usize) {
        self.bytes = self.bytes.saturating_sub(size);
        self.mem = self
            .mem
            .saturating_sub(size + ENTRY_OVERHEAD + std::mem::size_of::<Bson>());
    }

    /// Folds in `other`, the state of the same group over later input.
    pub(crate) fn merge(&mut self, pick: &Arc<Pick>, other: Picked) -> Result<()> {
        if pick.keeps_deque() {
            for v in other.queue {
                self.add(pick, Some(v))?;
            }
            return Ok(());
        }
        let base = self.next_seq;
        for mut e in other.heap.into_sorted_vec() {
            e.seq += base;
            e.pick = Arc::clone(pick);
            self.next_seq = self.next_seq.max(e.seq + 1);
            self.push_ranked(pick.name, e)?;
        }
        self.next_seq = self.next_seq.max(base + other.next_seq);
        Ok(())
    }

    /// The kept values in the order the operator returns them.
    fn values(&self, pick: &Pick) -> Vec<Bson> {
        if pick.keeps_deque() {
            return self.queue.iter().cloned().collect();
        }
        let mut kept: Vec<&Ranked> = self.heap.iter().collect();
        match (pick.kind, &pick.sort) {
            // `$bottomN` returns the last n in `sortBy` order, ties in
            // arrival order.
            (PickKind::Bottom, Some(s)) => {
                kept.sort_by(|a, b| s.compare_keys(&a.key, &b.key).then(a.seq.cmp(&b.seq)))
            }
            _ => kept.sort(),
        }
        kept.into_iter().map(|e| e.out.clone()).collect()
    }

    pub(crate) fn finish(&self, pick: &Pick) -> Bson {
        let mut values = self.values(pick);
        if pick.single {
            return if values.is_empty() {
                Bson::Null
            } else {
                values.swap_remove(0)
            };
        }
        Bson::Array(values)
    }

    /// The state as a spilled run holds it.
    pub(crate) fn encode(&self) -> Bson {
        let entries: Vec<Bson> = if self.queue.is_empty() {
            self.heap
                .iter()
                .map(|e| {
                    Bson::Array(vec![
                        Bson::Array(e.key.clone()),
                        e.out.clone(),
                        Bson::Int64(e.seq as i64),
                    ])
                })
                .collect()
        } else {
            self.queue.iter().cloned().collect()
        };
        Bson::Document(doc! {
            "n": self.n as i64,
            "s": self.next_seq as i64,
            "e": entries,
        })
    }

    pub(crate) fn decode(pick: &Arc<Pick>, v: Bson) -> Result<Picked> {
        let Bson::Document(mut d) = v else {
            return Err(crate::spill::damaged());
        };
        let n = d.get_i64("n").map_err(|_| crate::spill::damaged())?;
        let mut st = Picked::start(Some(&Bson::Int64(n)))?;
        let next_seq = d.get_i64("s").map_err(|_| crate::spill::damaged())?;
        let Some(Bson::Array(entries)) = d.remove("e") else {
            return Err(crate::spill::damaged());
        };
        if pick.keeps_deque() {
            for v in entries {
                st.hold(pick.name, limits::bson_size(&v))?;
                st.queue.push_back(v);
            }
        } else {
            for e in entries {
                let Bson::Array(mut parts) = e else {
                    return Err(crate::spill::damaged());
                };
                let (Some(Bson::Int64(seq)), Some(out), Some(Bson::Array(key))) =
                    (parts.pop(), parts.pop(), parts.pop())
                else {
                    return Err(crate::spill::damaged());
                };
                let entry = Ranked {
                    key,
                    out,
                    seq: seq as u64,
                    pick: Arc::clone(pick),
                };
                st.hold(pick.name, entry.size())?;
                st.heap.push(entry);
            }
        }
        st.next_seq = next_seq as u64;
        Ok(st)
    }
}

/// `{$firstN|$lastN|$minN|$maxN: {n, input}}` as an expression: `input`
/// must be an array (5788200).
pub(crate) fn eval_pick_expression(
    pick: &Arc<Pick>,
    n: Option<Bson>,
    input: Option<Bson>,
) -> Result<Bson> {
    let mut st = Picked::start(n.as_ref())?;
    let Some(Bson::Array(items)) = input else {
        return Err(CommandError::new(
            ErrorCode::Location5788200,
            "Input must be an array",
        ));
    };
    for v in items {
        st.add(pick, Some(v))?;
    }
    Ok(st.finish(pick))
}

/// A parsed `$percentile` (`ps`) or `$median` (`ps = [0.5]`, one value
/// out).
#[derive(Debug, Clone)]
pub struct Quantile {
    pub ps: Vec<f64>,
    pub median: bool,
}

impl Quantile {
    /// The answer over `nums` (sorted here): one double per `p`, or nulls
    /// when there is no number.
    pub(crate) fn answer(&self, nums: &mut [f64]) -> Bson {
        let values = quantiles(nums, &self.ps);
        if self.median {
            return values.into_iter().next().unwrap_or(Bson::Null);
        }
        Bson::Array(values)
    }
}

/// The discrete percentiles of `nums` (mongod's `computeTrueRank`: rank
/// `ceil(p·n) - 1`, at least 0; `p = 1` the greatest), nulls when empty.
pub(crate) fn quantiles(nums: &mut [f64], ps: &[f64]) -> Vec<Bson> {
    if nums.is_empty() {
        return ps.iter().map(|_| Bson::Null).collect();
    }
    nums.sort_unstable_by(f64::total_cmp);
    let n = nums.len();
    ps.iter()
        .map(|&p| {
            let rank = if p >= 1.0 {
                n - 1
            } else {
                ((n as f64 * p).ceil() as usize)
                    .saturating_sub(1)
                    .min(n - 1)
            };
            Bson::Double(nums[rank])
        })
        .collect()
}

/// Parses `{$percentile: {input, p, method}}` / `{$median: {input,
/// method}}` (fields as mongod's IDL checks them); `expression` picks
/// the codes of the expression form. `None` for other names.
pub(crate) fn parse_quantile(
    name: &str,
    arg: &Bson,
    expression: bool,
    scope: Scope,
) -> Result<Option<(Quantile, Expr)>> {
    let median = match name {
        "$percentile" => false,
        "$median" => true,
        _ => return Ok(None),
    };
    let Bson::Document(spec) = arg else {
        let code = match (median, expression) {
            (false, false) => ErrorCode::Location7429703,
            (false, true) => ErrorCode::Location7436200,
            (true, false) => ErrorCode::Location7436100,
            (true, true) => ErrorCode::Location7436201,
        };
        return Err(CommandError::new(
            code,
            format!("specification must be an object; found {name}: {arg}"),
        ));
    };
    let mut input = None;
    let mut p = None;
    let mut method = None;
    for (k, v) in spec {
        match k.as_str() {
            "input" => input = Some(v),
            "p" if !median => p = Some(v),
            "method" => match v {
                Bson::String(s) => method = Some(s.as_str()),
                other => {
                    return Err(CommandError::type_mismatch(format!(
                        "BSON field '{name}.method' is the wrong type '{}', expected type 'string'",
                        type_name(other)
                    )));
                }
            },
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location40415,
                    format!("BSON field '{name}.{other}' is an unknown field."),
                ));
            }
        }
    }
    let missing = |field: &str| {
        CommandError::new(
            ErrorCode::Location40414,
            format!("BSON field '{name}.{field}' is missing but a required field"),
        )
    };
    let input = input.ok_or_else(|| missing("input"))?;
    if !median && p.is_none() {
        return Err(missing("p"));
    }
    let method = method.ok_or_else(|| missing("method"))?;
    if method != "approximate" {
        return Err(CommandError::bad_value(
            "Currently only 'approximate' can be used as percentile 'method'.",
        ));
    }
    let input = Expr::parse_in(input, scope.nested())?;
    let ps = match p {
        Some(p) => parse_p(p, scope)?,
        None => vec![0.5],
    };
    Ok(Some((Quantile { ps, median }, input)))
}

/// `p`: a constant array of numbers in [0, 1] (7750300…7750303).
fn parse_p(v: &Bson, scope: Scope) -> Result<Vec<f64>> {
    let e = Expr::parse_in(v, scope.nested())?;
    if !e.is_constant() {
        return Err(CommandError::new(
            ErrorCode::Location7750300,
            format!(
                "The $percentile 'p' field must be an array of constant values, but found value: {v}."
            ),
        ));
    }
    let value = e.eval(&Document::new())?.unwrap_or(Bson::Null);
    const MSG: &str =
        "The $percentile 'p' field must be an array of numbers from [0.0, 1.0], but found: ";
    let items = match &value {
        Bson::Array(a) if !a.is_empty() => a,
        other => {
            return Err(CommandError::new(
                ErrorCode::Location7750301,
                format!("{MSG}{other}"),
            ));
        }
    };
    items
        .iter()
        .map(|p| {
            if !is_number(p) {
                return Err(CommandError::new(
                    ErrorCode::Location7750302,
                    format!("{MSG}{p}"),
                ));
            }
            let x = as_f64(p).unwrap_or(f64::NAN);
            if !(0.0..=1.0).contains(&x) {
                return Err(CommandError::new(
                    ErrorCode::Location7750303,
                    format!("{MSG}{x}"),
                ));
            }
            Ok(x)
        })
        .collect()
}

/// `{$percentile|$median: …}` as an expression over one value: a number
/// is every percentile; an array's numbers are ranked; else nulls.
pub(crate) fn eval_quantile_expression(q: &Quantile, input: Option<Bson>) -> Bson {
    let mut nums: Vec<f64> = match input {
        Some(v) if is_number(&v) => {
            let x = as_f64(&v).unwrap_or(f64::NAN);
            vec![x; 1]
        }
        Some(Bson::Array(items)) => items
            .iter()
            .filter(|v| is_number(v))
            .filter_map(as_f64)
            .filter(|x| !x.is_nan())
            .collect(),
        _ => Vec::new(),
    };
    q.answer(&mut nums)
}

/// `$stdDevPop`/`$stdDevSamp`'s state, as mongod keeps it: Welford's
/// running count, mean and sum of squared deviations, and the parallel
/// formula to combine two (a spilled group's runs).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Deviation {
    pub count: i64,
    pub mean: f64,
    pub m2: f64,
}

impl Deviation {
    /// Adds a value; anything but a number is no part of a deviation.
    pub(crate) fn add(&mut self, v: &Bson) {
        let Some(x) = Some(v).filter(|v| is_number(v)).and_then(as_f64) else {
            return;
        };
        self.count += 1;
        let delta = x - self.mean;
        if delta != 0.0 {
            self.mean += delta / self.count as f64;
            self.m2 += delta * (x - self.mean);
        }
    }

    pub(crate) fn merge(&mut self, other: Deviation) {
        if other.count == 0 {
            return;
        }
        let n = self.count + other.count;
        let delta = other.mean - self.mean;
        if delta != 0.0 {
            self.mean =
                (self.count as f64 * self.mean + other.count as f64 * other.mean) / n as f64;
            self.m2 += delta * delta * (self.count as f64 * other.count as f64 / n as f64);
        }
        self.m2 += other.m2;
        self.count = n;
    }

    /// The deviation, or null with no number (or one, for a sample).
    pub(crate) fn result(&self, sample: bool) -> Bson {
        let n = self.count - i64::from(sample);
        if n <= 0 {
            return Bson::Null;
        }
        Bson::Double((self.m2 / n as f64).sqrt())
    }
}
