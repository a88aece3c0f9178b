//! `$densify`: documents added so that, in each partition, `field` takes
//! every value of a grid `step` apart over the range (`bounds`): `"full"`
//! (from the least to the greatest value in the input, for every
//! partition), `"partition"` (each partition's own least to greatest) or
//! `[lo, hi)`. An added document holds only `field` and the partition
//! fields. Documents whose `field` is null or missing pass through.
//!
//! The stage sorts its input by partition then `field` (an
//! `ExternalSorter` within the stage budget, spilling past it, as
//! MongoDB's rewrite puts a `$sort` first), tracking the input's least
//! and greatest value, then streams: each document is preceded by the
//! grid values below it not yet passed, and each partition is finished
//! up to the range's end. At most 500,000 documents are generated per
//! command (MongoDB's `internalQueryMaxAllowedDensifyDocs`), 5897900
//! past it, so a tiny `step` cannot flood the server.

use bson::{Bson, Document, doc};

use super::super::compare::{as_f64, compare, is_number};
use super::super::expr::type_name;
use super::super::path;
use super::super::sort::SortSpec;
use super::ops::with_field;
use super::time_unit::TimeUnit;
use super::{Cx, Op};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits;
use crate::spill::{ExternalSorter, Sorted, StageBudget};

/// MongoDB's `internalQueryMaxAllowedDensifyDocs` default.
const MAX_GENERATED: usize = 500_000;

/// A parsed `$densify`.
#[derive(Debug, Clone)]
pub(super) struct Densify {
    field: String,
    partition_by: Vec<String>,
    step: Bson,
    /// For dates.
    unit: Option<TimeUnit>,
    bounds: Bounds,
    order: SortSpec,
}

#[derive(Debug, Clone)]
enum Bounds {
    Full,
    Partition,
    /// `[lo, hi)`.
    Explicit(Box<(Bson, Bson)>),
}

fn err(code: u32, message: impl Into<String>) -> CommandError {
    let code = match code {
        5733401 => ErrorCode::Location5733401,
        5733402 => ErrorCode::Location5733402,
        5733403 => ErrorCode::Location5733403,
        5733404 => ErrorCode::Location5733404,
        5733405 => ErrorCode::Location5733405,
        5733406 => ErrorCode::Location5733406,
        5733408 => ErrorCode::Location5733408,
        5733409 => ErrorCode::Location5733409,
        5733410 => ErrorCode::Location5733410,
        5946800 => ErrorCode::Location5946800,
        5946802 => ErrorCode::Location5946802,
        6586400 => ErrorCode::Location6586400,
        5876900 => ErrorCode::Location5876900,
        8993000 => ErrorCode::Location8993000,
        9554500 => ErrorCode::Location9554500,
        5733201 => ErrorCode::Location5733201,
        6053600 => ErrorCode::Location6053600,
        _ => ErrorCode::Location5897900,
    };
    CommandError::new(code, message)
}

fn is_whole(v: &Bson) -> bool {
    match v {
        Bson::Int32(_) | Bson::Int64(_) => true,
        v => as_f64(v).is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.0e18),
    }
}

impl Densify {
    pub(super) fn parse(arg: &Bson) -> Result<Densify> {
        let Bson::Document(spec) = arg else {
            return Err(CommandError::failed_to_parse(format!(
                "The $densify stage specification must be an object, found {}",
                type_name(arg)
            )));
        };
        let mut field = None;
        let mut partition_by = Vec::new();
        let mut range = None;
        for (k, v) in spec {
            match (k.as_str(), v) {
                ("field", Bson::String(f)) => field = Some(f.clone()),
                ("partitionByFields", Bson::Array(a)) => {
                    for f in a {
                        let Bson::String(f) = f else {
                            return Err(CommandError::type_mismatch(
                                "BSON field '$densify.partitionByFields' must be an array of strings",
                            ));
                        };
                        partition_by.push(f.clone());
                    }
                }
                ("range", Bson::Document(r)) => range = Some(r),
                ("field" | "partitionByFields" | "range", _) => {
                    return Err(CommandError::type_mismatch(format!(
                        "BSON field '$densify.{k}' is the wrong type '{}'",
                        type_name(v)
                    )));
                }
                _ => {
                    return Err(CommandError::new(
                        ErrorCode::Location40415,
                        format!("BSON field '$densify.{k}' is an unknown field."),
                    ));
                }
            }
        }
        let (Some(field), Some(range)) = (field, range) else {
            return Err(CommandError::new(
                ErrorCode::Location40414,
                "BSON field '$densify.field' and '$densify.range' are required fields",
            ));
        };
        for f in std::iter::once(&field).chain(&partition_by) {
            if f.is_empty() || f.starts_with('$') {
                return Err(CommandError::new(
                    ErrorCode::Location16410,
                    format!("FieldPath field names may not start with '$' or be empty: '{f}'"),
                ));
            }
            limits::check_path(f)?;
        }
        for p in &partition_by {
            if p.starts_with(field.as_str()) {
                return Err(err(
                    8993000,
                    format!(
                        "partitionByFields '{p}' cannot include field '{field}' that is being densified."
                    ),
                ));
            }
            if field.starts_with(p.as_str()) {
                return Err(err(
                    9554500,
                    format!(
                        "field '{field}' that is being densified cannot include partitionByFields '{p}'."
                    ),
                ));
            }
        }
        let mut step = None;
        let mut unit = None;
        let mut bounds = None;
        for (k, v) in range {
            match k.as_str() {
                "step" => step = Some(v.clone()),
                "unit" => unit = Some(TimeUnit::parse(v, "$densify.range.unit")?),
                "bounds" => bounds = Some(v.clone()),
                other => {
                    return Err(CommandError::new(
                        ErrorCode::Location40415,
                        format!("BSON field '$densify.range.{other}' is an unknown field."),
                    ));
                }
            }
        }
        let (Some(step), Some(bounds)) = (step, bounds) else {
            return Err(CommandError::new(
                ErrorCode::Location40414,
                "BSON field '$densify.range.step' and '$densify.range.bounds' are required fields",
            ));
        };
        if !is_number(&step) || !as_f64(&step).is_some_and(|f| f > 0.0) {
            return Err(err(
                5733401,
                "The step parameter in a range statement must be a strictly positive numeric value",
            ));
        }
        if unit.is_some() && !is_whole(&step) {
            return Err(err(
                6586400,
                "The step parameter in a range statement must be a whole number when densifying a date range",
            ));
        }
        let bounds = match &bounds {
            Bson::Array(a) => {
                if a.len() != 2 {
                    return Err(err(
                        5733403,
                        "A bounding array in a range statement must have exactly two elements",
                    ));
                }
                let (lo, hi) = (&a[0], &a[1]);
                if compare(lo, hi).is_gt() {
                    return Err(err(
                        5733402,
                        "A bounding array must be an ascending array of either two dates or two numbers",
                    ));
                }
                if is_number(lo) {
                    if unit.is_some() {
                        return Err(err(5733409, "Numeric bounds may not have unit parameter"));
                    }
                    if !is_number(hi) {
                        return Err(err(
                            5733406,
                            "A bounding array must contain either both dates or both numeric types",
                        ));
                    }
                    if std::mem::discriminant(lo) != std::mem::discriminant(hi)
                        || std::mem::discriminant(lo) != std::mem::discriminant(&step)
                    {
                        return Err(err(
                            5876900,
                            "Upper bound, lower bound, and step must all have the same type",
                        ));
                    }
                } else if matches!(lo, Bson::DateTime(_)) {
                    if !matches!(hi, Bson::DateTime(_)) {
                        return Err(err(
                            5733405,
                            "A bounding array must contain either both dates or both numeric types",
                        ));
                    }
                    if unit.is_none() {
                        return Err(err(
                            5733410,
                            "A bounding array of dates must specify a unit",
                        ));
                    }
                } else {
                    return Err(err(5946800, "Explicit bounds must be numeric or dates"));
                }
                Bounds::Explicit(Box::new((lo.clone(), hi.clone())))
            }
            Bson::String(s) if s == "full" => Bounds::Full,
            Bson::String(s) if s == "partition" => Bounds::Partition,
            Bson::String(_) => {
                return Err(err(
                    5946802,
                    "Bounds string must either be 'full' or 'partition'",
                ));
            }
            _ => {
                return Err(err(
                    5733404,
                    "The bounds in a range statement must be the string 'full', 'partition', or an ascending array of two numbers or two dates",
                ));
            }
        };
        if matches!(bounds, Bounds::Partition) && partition_by.is_empty() {
            return Err(err(
                5733408,
                "One cannot specify the bounds as 'partition' without specifying a non-empty array of partitionByFields. You may have meant to specify 'full' bounds.",
            ));
        }
        Ok(Densify {
            field,
            partition_by,
            step,
            unit,
            bounds,
            order: SortSpec::parse(&doc! {"p": 1, "x": 1})?,
        })
    }

    pub(super) fn stream(self, input: Box<dyn Op>, budget: StageBudget) -> Box<dyn Op> {
        Box::new(DensifyOp {
            input,
            spec: self,
            budget,
            state: None,
        })
    }

    /// The partition a document belongs to: its partition fields.
    fn partition_of(&self, d: &Document) -> Document {
        let mut p = Document::new();
        for f in &self.partition_by {
            p.insert(f.clone(), path::get_expr(d, f).unwrap_or(Bson::Null));
        }
        p
    }

    /// `v` one step on.
    fn next_value(&self, v: &Bson) -> Bson {
        match (v, &self.step) {
            (Bson::DateTime(t), step) => {
                let k = super::super::compare::as_i64(step).unwrap_or(1);
                // Past the last date, the grid ends there.
                let ms = self
                    .unit
                    .and_then(|u| u.add(t.timestamp_millis(), k))
                    .unwrap_or(i64::MAX);
                Bson::DateTime(bson::DateTime::from_millis(ms))
            }
            (Bson::Int32(a), Bson::Int32(b)) => a
                .checked_add(*b)
                .map(Bson::Int32)
                .unwrap_or(Bson::Int64(i64::from(*a) + i64::from(*b))),
            (Bson::Int32(_) | Bson::Int64(_), Bson::Int32(_) | Bson::Int64(_)) => {
                let (a, b) = (
                    super::super::compare::as_i64(v).unwrap_or(0),
                    super::super::compare::as_i64(&self.step).unwrap_or(1),
                );
                a.checked_add(b)
                    .map(Bson::Int64)
                    .unwrap_or(Bson::Double(a as f64 + b as f64))
            }
            (v, step) => Bson::Double(as_f64(v).unwrap_or(0.0) + as_f64(step).unwrap_or(1.0)),
        }
    }

    /// The value of `field` of `d` if it takes part: a number without a
    /// unit, a date with one (5733201/6053600 otherwise).
    fn value_of(&self, d: &Document) -> Result<Option<Bson>> {
        let v = match path::get_expr(d, &self.field) {
            None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(None),
            Some(v) => v,
        };
        let date = matches!(v, Bson::DateTime(_));
        if !is_number(&v) && !date {
            return Err(err(5733201, "Densify field type must be numeric or a date"));
        }
        if date != self.unit.is_some() {
            return Err(err(
                6053600,
                if date {
                    "Encountered date densify value in collection when step does not have a date unit"
                } else {
                    "Encountered numeric densify value in collection when step has a date unit"
                },
            ));
        }
        Ok(Some(v))
    }
}

struct DensifyOp {
    input: Box<dyn Op>,
    spec: Densify,
    budget: StageBudget,
    state: Option<Filling>,
}

struct Filling {
    sorted: Sorted,
    /// The input's least and greatest values (for `"full"`).
    min: Option<Bson>,
    max: Option<Bson>,
    /// The partition being read and its next grid value.
    partition: Option<(Document, Option<Bson>)>,
    /// The next input document (already read).
    pending: Option<(Document, Option<Bson>, Document)>,
    generated: usize,
}

impl Filling {
    fn read(&mut self) -> Result<Option<(Document, Option<Bson>, Document)>> {
        if let Some(e) = self.pending.take() {
            return Ok(Some(e));
        }
        let Some(mut w) = self.sorted.next_doc()? else {
            return Ok(None);
        };
        let p = match w.remove("p") {
            Some(Bson::Document(mut p)) => match p.remove("v") {
                Some(Bson::Document(p)) => p,
                _ => return Err(crate::spill::damaged()),
            },
            _ => return Err(crate::spill::damaged()),
        };
        let x = match w.remove("x") {
            Some(Bson::Document(mut x)) => x.remove("v"),
            _ => return Err(crate::spill::damaged()),
        };
        match w.remove("d") {
            Some(Bson::Document(d)) => Ok(Some((p, x, d))),
            _ => Err(crate::spill::damaged()),
        }
    }
}

impl DensifyOp {
    /// A generated document: `field` and the partition's fields.
    fn generate(&self, st: &mut Filling, partition: &Document, v: Bson) -> Result<Document> {
        st.generated += 1;
        if st.generated > MAX_GENERATED {
            return Err(err(
                5897900,
                format!(
                    "Generated {} documents in $densify, which is over the limit of {MAX_GENERATED}. Increase the 'internalQueryMaxAllowedDensifyDocs' parameter to allow more generated documents",
                    st.generated
                ),
            ));
        }
        let mut d = Document::new();
        for (k, pv) in partition {
            d = with_field(d, k, pv.clone(), "$densify")?;
        }
        with_field(d, &self.spec.field, v, "$densify")
    }

    /// Where a partition's grid starts and (with whether it is included)
    /// ends.
    fn range_of(&self, st: &Filling, first: Option<&Bson>) -> (Option<Bson>, Option<(Bson, bool)>) {
        match &self.spec.bounds {
            Bounds::Full => (st.min.clone(), st.max.clone().map(|m| (m, true))),
            Bounds::Partition => (first.cloned(), None),
            Bounds::Explicit(b) => (Some(b.0.clone()), Some((b.1.clone(), false))),
        }
    }

    fn below_end(end: &Option<(Bson, bool)>, v: &Bson) -> bool {
        match end {
            None => false,
            Some((e, inclusive)) => {
                let o = compare(v, e);
                o.is_lt() || (*inclusive && o.is_eq())
            }
        }
    }
}

impl Op for DensifyOp {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        if self.state.is_none() {
            let mut sorter = ExternalSorter::new(std::mem::take(&mut self.spec.order), self.budget);
            let (mut min, mut max): (Option<Bson>, Option<Bson>) = (None, None);
            while let Some(d) = self.input.next(cx)? {
                cx.tick()?;
                let x = self.spec.value_of(&d)?;
                if let Some(x) = &x {
                    if min.as_ref().is_none_or(|m| compare(x, m).is_lt()) {
                        min = Some(x.clone());
                    }
                    if max.as_ref().is_none_or(|m| compare(x, m).is_gt()) {
                        max = Some(x.clone());
                    }
                }
                let p = self.spec.partition_of(&d);
                let mut w = doc! {"p": {"v": p}, "x": {}, "d": d};
                if let (Some(x), Ok(xd)) = (x, w.get_document_mut("x")) {
                    xd.insert("v", x);
                }
                sorter.push(&w)?;
            }
            self.state = Some(Filling {
                sorted: sorter.finish()?,
                min,
                max,
                partition: None,
                pending: None,
                generated: 0,
            });
        }
        let Some(mut st) = self.state.take() else {
            return Ok(None);
        };
        let out = self.step(&mut st, cx);
        self.state = Some(st);
        out
    }
}

impl DensifyOp {
    fn step(&self, st: &mut Filling, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        {
            cx.tick()?;
            let next = st.read()?;
            // A new partition (or the end): finish the current one first.
            let same = match (&st.partition, &next) {
                (Some((p, _)), Some((q, _, _))) => {
                    compare(&Bson::Document(p.clone()), &Bson::Document(q.clone())).is_eq()
                }
                _ => false,
            };
            if !same && let Some((p, Some(g))) = st.partition.clone() {
                let (_, end) = self.range_of(st, None);
                if Self::below_end(&end, &g) {
                    st.pending = next;
                    let following = self.spec.next_value(&g);
                    st.partition = Some((p.clone(), Some(following)));
                    return self.generate(st, &p, g).map(Some);
                }
            }
            let Some((p, x, d)) = next else {
                return Ok(None);
            };
            if !same {
                let (start, _) = self.range_of(st, x.as_ref());
                st.partition = Some((p.clone(), start));
            }
            let Some(x) = x else {
                return Ok(Some(d));
            };
            // A partition's own range starts at its first value (its
            // documents without one sort first).
            if let Some((_, grid @ None)) = &mut st.partition
                && matches!(self.spec.bounds, Bounds::Partition)
            {
                *grid = Some(x.clone());
            }
            // Grid values below this document come first.
            let (_, end) = self.range_of(st, None);
            if let Some((part, Some(g))) = st.partition.clone() {
                let o = compare(&g, &x);
                let in_range = end.is_none() || Self::below_end(&end, &g);
                if o.is_lt() && in_range {
                    st.pending = Some((p, Some(x), d));
                    st.partition = Some((part.clone(), Some(self.spec.next_value(&g))));
                    return self.generate(st, &part, g).map(Some);
                }
                if o.is_eq() {
                    st.partition = Some((part, Some(self.spec.next_value(&g))));
                }
            }
            Ok(Some(d))
        }
    }
}
