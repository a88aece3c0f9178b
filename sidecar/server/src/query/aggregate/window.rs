//! `$setWindowFields`: each document gets fields computed over a window
//! of the documents of its partition, in `sortBy` order.
//!
//! **Blocking, within the budget.** As MongoDB does, the stage sorts its
//! input by partition then `sortBy` first: an `ExternalSorter` of
//! `{p: {v: <partition value>}, d: <document>}` (spilling past the stage
//! budget like `$sort`), so partitions come out one after another. One
//! partition at a time is then held in memory, charged to the same
//! budget; a partition larger than the budget fails (292 without
//! `allowDiskUse`, else 146: a window can reach any document of its
//! partition, so it is not spilled). The values computed for it are held
//! to the budget too (a running `$push` builds ever longer arrays); a
//! window that is the whole partition is folded once and its value is
//! cloned into each document as it is emitted, one at a time.
//!
//! **Windows.** `documents: [lo, hi]` (offsets from the current document,
//! `"current"`, `"unbounded"`) and `range: [lo, hi]` (offsets of the
//! `sortBy` value, numbers or, with `unit`, dates; `"current"` is the
//! current document's value) select a contiguous run of the sorted
//! partition; the default is the whole partition. Offsets are added in
//! 128-bit integers (documents) or as doubles (range), so no bound
//! overflows. A window from the partition's start is one running fold
//! (O(n) for the partition), `$count` is the window's size; any other
//! window is folded from scratch,
//! O(window) per document, checked against the command's deadline.
//!
//! Functions: the `$group` accumulators (`$sum`, `$avg`, `$min`, `$max`,
//! `$count`, `$first`, `$last`, `$push`, `$addToSet`, `$firstN`,
//! `$lastN`, `$minN`, `$maxN`, `$topN`, `$bottomN`, `$top`, `$bottom`,
//! `$percentile`, `$median`, through `group`'s own state; `n` is
//! evaluated against nothing, as mongod has no group key here),
//! `$stdDevPop`/`$stdDevSamp`, `$covariancePop`/
//! `$covarianceSamp`, `$derivative`, `$integral` over a window; `$rank`,
//! `$denseRank`, `$documentNumber`, `$shift`, `$expMovingAvg`, `$locf` and
//! `$linearFill` over the partition in order. `$mergeObjects`,
//! `$concatArrays`, `$setUnion` and `$minMaxScaler`, no window functions
//! in mongod 8.0, are refused by name (115).

use bson::{Bson, Document, doc};

use super::super::compare::{as_f64, compare, is_number};
use super::super::expr::{Expr, type_name};
use super::super::path;
use super::super::sort::SortSpec;
use super::group::Accumulator;
use super::ops::with_field;
use super::stage::Acc;
use super::time_unit::TimeUnit;
use super::{Cx, Op};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits;
use crate::spill::{ExternalSorter, Sorted, StageBudget};

/// A parsed `$setWindowFields`.
#[derive(Debug, Clone)]
pub(super) struct SetWindowFields {
    partition_by: Option<Expr>,
    /// `sortBy`'s fields and directions (1 or -1).
    sort_by: Option<Vec<(String, i32)>>,
    outputs: Vec<Output>,
    /// By partition, then `sortBy`, of the wrapped documents.
    order: SortSpec,
}

#[derive(Debug, Clone)]
struct Output {
    field: String,
    func: Func,
    window: Window,
}

#[derive(Debug, Clone)]
enum Func {
    Acc(Acc, Expr),
    StdDev {
        sample: bool,
        input: Expr,
    },
    Covariance {
        sample: bool,
        x: Expr,
        y: Expr,
    },
    Derivative {
        input: Expr,
        unit: Option<f64>,
    },
    Integral {
        input: Expr,
        unit: Option<f64>,
    },
    Rank,
    DenseRank,
    DocumentNumber,
    Shift {
        output: Expr,
        by: i64,
        default: Bson,
    },
    ExpMovingAvg {
        input: Expr,
        alpha: f64,
    },
    Locf(Expr),
    LinearFill(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    Unbounded,
    Current,
    /// Documents: an offset; range: an offset of the `sortBy` value (in
    /// `unit`s of milliseconds when a unit is given).
    Offset(f64),
}

#[derive(Debug, Clone, PartialEq)]
enum Window {
    Documents(Bound, Bound),
    Range {
        lo: Bound,
        hi: Bound,
        /// For dates.
        unit: Option<TimeUnit>,
    },
}

const WHOLE: Window = Window::Documents(Bound::Unbounded, Bound::Unbounded);

fn parse_err(message: impl Into<String>) -> CommandError {
    CommandError::failed_to_parse(message)
}

/// `$derivative`'s and `$integral`'s unit: milliseconds per unit; a
/// calendar unit has no fixed length and is refused by name.
fn fixed_unit_ms(v: &Bson, name: &str) -> Result<f64> {
    match TimeUnit::parse(v, &format!("{name}.unit"))?.fixed_ms() {
        Some(ms) => Ok(ms as f64),
        None => Err(CommandError::not_implemented(&format!(
            "a calendar unit ({v}) in {name}"
        ))),
    }
}

impl SetWindowFields {
    pub(super) fn parse(arg: &Bson) -> Result<SetWindowFields> {
        let Bson::Document(spec) = arg else {
            return Err(parse_err(format!(
                "the $setWindowFields stage specification must be an object, found {}",
                type_name(arg)
            )));
        };
        let mut partition_by = None;
        let mut sort_by = None;
        let mut outputs = None;
        for (k, v) in spec {
            match k.as_str() {
                "partitionBy" => partition_by = Some(Expr::parse(v)?),
                "sortBy" => {
                    let Bson::Document(d) = v else {
                        return Err(CommandError::type_mismatch(format!(
                            "BSON field '$setWindowFields.sortBy' is the wrong type '{}', expected type 'object'",
                            type_name(v)
                        )));
                    };
                    // Checked as `$sort` checks it.
                    SortSpec::parse(d)?;
                    let mut fields = Vec::new();
                    for (f, dir) in d {
                        match super::super::compare::as_i64(dir) {
                            Some(1) => fields.push((f.clone(), 1)),
                            Some(-1) => fields.push((f.clone(), -1)),
                            _ => {
                                return Err(CommandError::not_implemented(
                                    "a $meta sortBy in $setWindowFields",
                                ));
                            }
                        }
                    }
                    sort_by = Some(fields);
                }
                "output" => {
                    let Bson::Document(d) = v else {
                        return Err(CommandError::type_mismatch(format!(
                            "BSON field '$setWindowFields.output' is the wrong type '{}', expected type 'object'",
                            type_name(v)
                        )));
                    };
                    outputs = Some(d);
                }
                other => {
                    return Err(CommandError::new(
                        ErrorCode::Location40415,
                        format!("BSON field '$setWindowFields.{other}' is an unknown field."),
                    ));
                }
            }
        }
        let Some(outputs) = outputs else {
            return Err(CommandError::new(
                ErrorCode::Location40414,
                "BSON field '$setWindowFields.output' is missing but a required field",
            ));
        };
        let outputs = outputs
            .iter()
            .map(|(field, spec)| Output::parse(field, spec, sort_by.as_deref()))
            .collect::<Result<Vec<_>>>()?;
        let mut order = doc! {"p": 1};
        for (f, dir) in sort_by.iter().flatten() {
            order.insert(format!("d.{f}"), *dir);
        }
        Ok(SetWindowFields {
            partition_by,
            sort_by,
            outputs,
            order: SortSpec::parse(&order)?,
        })
    }

    pub(super) fn stream(self, input: Box<dyn Op>, budget: StageBudget) -> Box<dyn Op> {
        Box::new(WindowOp {
            input,
            spec: self,
            budget,
            sorted: None,
            pending: None,
            emitting: None,
        })
    }
}

impl Output {
    fn parse(field: &str, spec: &Bson, sort_by: Option<&[(String, i32)]>) -> Result<Output> {
        if field.is_empty() || field.starts_with('$') {
            return Err(CommandError::new(
                ErrorCode::Location16410,
                format!("FieldPath field names may not start with '$' or be empty: '{field}'"),
            ));
        }
        limits::check_path(field)?;
        let Bson::Document(spec) = spec else {
            return Err(parse_err(format!(
                "The field '{field}' must be an object, found {}",
                type_name(spec)
            )));
        };
        let mut func = None;
        let mut window = None;
        for (k, v) in spec {
            if k == "window" {
                window = Some(parse_window(v, sort_by)?);
            } else if k.starts_with('$') {
                if func.is_some() {
                    return Err(parse_err(format!(
                        "Expected exactly one window function in '{field}'"
                    )));
                }
                func = Some((k.as_str(), v));
            } else {
                return Err(parse_err(format!(
                    "'window' field can only be specified alongside a window function, found '{k}'"
                )));
            }
        }
        let Some((name, arg)) = func else {
            return Err(parse_err(format!(
                "Expected a window function in '{field}'"
            )));
        };
        let needs_sort = |what: &str, one: bool| -> Result<()> {
            match sort_by {
                Some(s) if !one || s.len() == 1 => Ok(()),
                _ => Err(parse_err(format!(
                    "{what} must be specified with a top level sortBy expression{}",
                    if one { " with exactly one element" } else { "" }
                ))),
            }
        };
        let no_window = |what: &str| -> Result<()> {
            if window.is_some() {
                return Err(parse_err(format!(
                    "{what} does not accept a 'window' field"
                )));
            }
            Ok(())
        };
        let acc = |a: Acc| -> Result<Func> { Ok(Func::Acc(a, Expr::parse(arg)?)) };
        let func = match name {
            "$sum" => acc(Acc::Sum)?,
            "$avg" => acc(Acc::Avg)?,
            "$min" => acc(Acc::Min)?,
            "$max" => acc(Acc::Max)?,
            "$first" => acc(Acc::First)?,
            "$last" => acc(Acc::Last)?,
            "$push" => acc(Acc::Push)?,
            "$addToSet" => acc(Acc::AddToSet)?,
            "$count" => {
                empty_object(name, arg)?;
                Func::Acc(Acc::Count, Expr::Literal(Bson::Null))
            }
            "$stdDevPop" | "$stdDevSamp" => Func::StdDev {
                sample: name == "$stdDevSamp",
                input: Expr::parse(arg)?,
            },
            "$covariancePop" | "$covarianceSamp" => match arg {
                Bson::Array(a) if a.len() == 2 => Func::Covariance {
                    sample: name == "$covarianceSamp",
                    x: Expr::parse(&a[0])?,
                    y: Expr::parse(&a[1])?,
                },
                _ => {
                    return Err(parse_err(format!(
                        "{name} requires an array of two expressions"
                    )));
                }
            },
            "$derivative" | "$integral" => {
                needs_sort(name, true)?;
                let (input, unit) = input_and_unit(name, arg)?;
                if name == "$derivative" && window.is_none() {
                    return Err(parse_err("$derivative requires explicit window bounds"));
                }
                if name == "$derivative" {
                    Func::Derivative { input, unit }
                } else {
                    Func::Integral { input, unit }
                }
            }
            "$rank" | "$denseRank" | "$documentNumber" => {
                // MongoDB's order of checks and codes for the rank family.
                if window.is_some() {
                    return Err(CommandError::new(
                        ErrorCode::Location5371601,
                        format!("Rank style window functions take no other arguments: {name}"),
                    ));
                }
                if !matches!(arg, Bson::Document(d) if d.is_empty()) {
                    return Err(CommandError::new(
                        ErrorCode::Location5371603,
                        format!("{name} must be specified with '{{}}' as the value"),
                    ));
                }
                if sort_by.is_none_or(|s| s.len() != 1) {
                    return Err(CommandError::new(
                        ErrorCode::Location5371602,
                        format!(
                            "{name} must be specified with a top level sortBy expression with exactly one element"
                        ),
                    ));
                }
                match name {
                    "$rank" => Func::Rank,
                    "$denseRank" => Func::DenseRank,
                    _ => Func::DocumentNumber,
                }
            }
            "$shift" => {
                needs_sort(name, false)?;
                no_window(name)?;
                parse_shift(arg)?
            }
            "$expMovingAvg" => {
                needs_sort(name, false)?;
                no_window(name)?;
                parse_ema(arg)?
            }
            "$locf" => {
                no_window(name)?;
                Func::Locf(Expr::parse(arg)?)
            }
            "$linearFill" => {
                if sort_by.is_none_or(|s| s.len() != 1) {
                    return Err(CommandError::new(
                        ErrorCode::Location605001,
                        "$linearFill must be specified with a top level sortBy expression with exactly one element",
                    ));
                }
                no_window(name)?;
                Func::LinearFill(Expr::parse(arg)?)
            }
            "$topN" | "$top" | "$bottomN" | "$bottom" | "$firstN" | "$lastN" | "$maxN"
            | "$minN" | "$percentile" | "$median" => {
                let (acc, input) = super::stage::accumulator(name, arg)?;
                Func::Acc(acc, input)
            }
            // Not window functions in mongod 8.0 (`$concatArrays` and
            // `$setUnion` are 8.1's, `$minMaxScaler` 8.2's).
            "$mergeObjects" | "$concatArrays" | "$setUnion" | "$minMaxScaler" => {
                return Err(CommandError::not_implemented(&format!(
                    "the window function {name}"
                )));
            }
            other => {
                return Err(parse_err(format!("Unrecognized window function, {other}")));
            }
        };
        Ok(Output {
            field: field.to_owned(),
            func,
            window: window.unwrap_or(WHOLE),
        })
    }
}

fn empty_object(name: &str, arg: &Bson) -> Result<()> {
    match arg {
        Bson::Document(d) if d.is_empty() => Ok(()),
        _ => Err(parse_err(format!(
            "{name} accepts only an empty object, found {}",
            type_name(arg)
        ))),
    }
}

fn input_and_unit(name: &str, arg: &Bson) -> Result<(Expr, Option<f64>)> {
    let Bson::Document(d) = arg else {
        return Err(parse_err(format!("{name} expects an object with 'input'")));
    };
    let mut input = None;
    let mut unit = None;
    for (k, v) in d {
        match k.as_str() {
            "input" => input = Some(Expr::parse(v)?),
            "unit" => unit = Some(fixed_unit_ms(v, name)?),
            other => {
                return Err(parse_err(format!(
                    "{name} got unexpected argument: {other}"
                )));
            }
        }
    }
    let input = input.ok_or_else(|| parse_err(format!("{name} requires an 'input' expression")))?;
    Ok((input, unit))
}

fn parse_shift(arg: &Bson) -> Result<Func> {
    let Bson::Document(d) = arg else {
        return Err(parse_err("Argument to $shift must be an object"));
    };
    let mut output = None;
    let mut by = None;
    let mut default = Bson::Null;
    for (k, v) in d {
        match k.as_str() {
            "output" => output = Some(Expr::parse(v)?),
            "by" => {
                by = Some(match v {
                    Bson::Int32(n) => i64::from(*n),
                    Bson::Int64(n) => *n,
                    Bson::Double(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => *f as i64,
                    _ => {
                        return Err(parse_err(
                            "'$shift:by' field must be an integer, but found a value of another type",
                        ));
                    }
                })
            }
            "default" => {
                let e = Expr::parse(v)?;
                default = e.eval(&Document::new())?.unwrap_or(Bson::Null);
            }
            other => {
                return Err(parse_err(format!("Unknown argument in $shift: {other}")));
            }
        }
    }
    match (output, by) {
        (Some(output), Some(by)) => Ok(Func::Shift {
            output,
            by,
            default,
        }),
        _ => Err(parse_err(
            "$shift requires an 'output' expression and a 'by' integer",
        )),
    }
}

fn parse_ema(arg: &Bson) -> Result<Func> {
    let Bson::Document(d) = arg else {
        return Err(parse_err(
            "$expMovingAvg must have exactly one argument that is an object",
        ));
    };
    let mut input = None;
    let mut alpha = None;
    for (k, v) in d {
        match k.as_str() {
            "input" => input = Some(Expr::parse(v)?),
            "N" => {
                let n = match v {
                    Bson::Int32(n) => i64::from(*n),
                    Bson::Int64(n) => *n,
                    Bson::Double(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => *f as i64,
                    _ => return Err(parse_err("'N' field must be an integer")),
                };
                if n <= 0 {
                    return Err(parse_err("'N' must be greater than zero"));
                }
                alpha = Some(2.0 / (n as f64 + 1.0));
            }
            "alpha" => {
                let a = as_f64(v)
                    .filter(|_| is_number(v))
                    .ok_or_else(|| parse_err("'alpha' must be a number"))?;
                if !(a > 0.0 && a < 1.0) {
                    return Err(parse_err("'alpha' must be between 0 and 1 (exclusive)"));
                }
                alpha = Some(a);
            }
            other => {
                return Err(parse_err(format!(
                    "Got unrecognized field in $expMovingAvg: {other}"
                )));
            }
        }
    }
    if d.contains_key("N") && d.contains_key("alpha") {
        return Err(parse_err("$expMovingAvg accepts 'N' or 'alpha', not both"));
    }
    match (input, alpha) {
        (Some(input), Some(alpha)) => Ok(Func::ExpMovingAvg { input, alpha }),
        _ => Err(parse_err(
            "$expMovingAvg requires 'input' and one of 'N' or 'alpha'",
        )),
    }
}

fn parse_bound(v: &Bson, documents: bool, with_unit: bool) -> Result<Bound> {
    match v {
        Bson::String(s) if s == "unbounded" => Ok(Bound::Unbounded),
        Bson::String(s) if s == "current" => Ok(Bound::Current),
        Bson::String(_) => Err(parse_err(
            "Window bounds must be 'unbounded', 'current', or a number.",
        )),
        v if is_number(v) => {
            let f = as_f64(v).unwrap_or(f64::NAN);
            if documents || with_unit {
                if f.fract() != 0.0 || !f.is_finite() {
                    return Err(parse_err(if documents {
                        "Numeric document-based bounds must be an integer"
                    } else {
                        "With 'unit', range-based bounds must be an integer"
                    }));
                }
                // MongoDB holds document bounds in an int.
                if documents && !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&f) {
                    return Err(parse_err(format!(
                        "Numeric document-based bounds must fit a 32-bit integer, found {f}"
                    )));
                }
            } else if f.is_nan() {
                return Err(parse_err("Range-based bounds expression must be a number"));
            }
            Ok(Bound::Offset(f))
        }
        _ if documents => Err(parse_err(
            "Numeric document-based bounds must be an integer",
        )),
        _ => Err(parse_err("Range-based bounds expression must be a number")),
    }
}

fn parse_window(v: &Bson, sort_by: Option<&[(String, i32)]>) -> Result<Window> {
    let Bson::Document(d) = v else {
        return Err(parse_err("'window' field must be an object"));
    };
    let documents = d.get("documents");
    let range = d.get("range");
    let unit = d.get("unit");
    if documents.is_some() && range.is_some() {
        return Err(parse_err(
            "Window bounds can specify either 'documents' or 'unit', not both.",
        ));
    }
    if range.is_none() && unit.is_some() {
        return Err(parse_err(
            "Window bounds can only specify 'unit' with range-based bounds.",
        ));
    }
    let allowed = usize::from(documents.is_some())
        + usize::from(range.is_some())
        + usize::from(unit.is_some());
    if allowed != d.len() {
        return Err(parse_err(
            "'window' field can only contain 'documents' as the only argument or 'range' with an optional 'unit' field",
        ));
    }
    let pair = |e: &Bson| -> Result<(Bson, Bson)> {
        match e {
            Bson::Array(a) if a.len() == 2 => Ok((a[0].clone(), a[1].clone())),
            _ => Err(parse_err(format!(
                "Window bounds must be a 2-element array: {e}"
            ))),
        }
    };
    let forward = |lo: Bound, hi: Bound| -> Result<()> {
        let n = |b: Bound| match b {
            Bound::Current => Some(0.0),
            Bound::Offset(f) => Some(f),
            Bound::Unbounded => None,
        };
        if let (Some(l), Some(h)) = (n(lo), n(hi))
            && l > h
        {
            return Err(CommandError::new(
                ErrorCode::Location5339900,
                format!("Lower bound must not exceed upper bound: [{l}, {h}]"),
            ));
        }
        Ok(())
    };
    if let Some(docs) = documents {
        let (l, h) = pair(docs)?;
        let (lo, hi) = (parse_bound(&l, true, false)?, parse_bound(&h, true, false)?);
        forward(lo, hi)?;
        if !(lo == Bound::Unbounded && hi == Bound::Unbounded) && sort_by.is_none() {
            return Err(CommandError::new(
                ErrorCode::Location5339901,
                "Document-based bounds require a sortBy",
            ));
        }
        return Ok(Window::Documents(lo, hi));
    }
    let Some(range) = range else {
        return Ok(WHOLE);
    };
    let unit = unit
        .map(|u| TimeUnit::parse(u, "$setWindowFields.window.unit"))
        .transpose()?;
    let (l, h) = pair(range)?;
    let (lo, hi) = (
        parse_bound(&l, false, unit.is_some())?,
        parse_bound(&h, false, unit.is_some())?,
    );
    forward(lo, hi)?;
    match sort_by {
        Some([(_, 1)]) => {}
        Some([(_, _)]) => {
            return Err(CommandError::new(
                ErrorCode::Location8947401,
                "Range-based bounds require an ascending sortBy",
            ));
        }
        _ => {
            return Err(CommandError::new(
                ErrorCode::Location5339902,
                "Range-based bounds require sortBy a single field",
            ));
        }
    }
    Ok(Window::Range { lo, hi, unit })
}

/// A partition (or the values computed for it) past the stage budget: it
/// cannot spill, as a window can reach any document of its partition.
fn exceeded(budget: StageBudget, what: &str) -> CommandError {
    if budget.allow_disk {
        CommandError::new(
            ErrorCode::ExceededMemoryLimit,
            format!(
                "$setWindowFields: {what} exceeds the memory limit of {} bytes and cannot spill",
                budget.bytes
            ),
        )
    } else {
        CommandError::new(
            ErrorCode::QueryExceededMemoryLimitNoDiskUseAllowed,
            format!(
                "Exceeded memory limit in $setWindowFields ({} bytes), but did not opt in to spilling. Pass allowDiskUse:true to opt in.",
                budget.bytes
            ),
        )
    }
}

/// The values an accumulator computed for a partition are held until the
/// partition is emitted (a `$push` or `$topN` over a whole partition
/// repeats its array in every document): together they are held to the
/// stage budget, so such a window fails rather than exhausting memory.
struct Held {
    bytes: usize,
    budget: StageBudget,
}

impl Held {
    fn charge(&mut self, size: usize) -> Result<()> {
        self.bytes = self.bytes.saturating_add(size + HELD_OVERHEAD);
        if self.bytes > self.budget.bytes {
            return Err(exceeded(self.budget, "the values computed for a partition"));
        }
        Ok(())
    }
}

struct WindowOp {
    input: Box<dyn Op>,
    spec: SetWindowFields,
    budget: StageBudget,
    sorted: Option<Sorted>,
    /// The first document of the next partition (already read).
    pending: Option<(Bson, Document)>,
    /// The partition being emitted with its computed values.
    emitting: Option<Emitting>,
}

/// One output's values for a partition: one per document, or the one
/// value every document gets (a window that is the whole partition),
/// cloned as each document is emitted rather than held once per document.
enum Column {
    Each(Vec<Bson>),
    Shared(Bson),
}

/// A partition's documents, emitted one at a time with their values.
struct Emitting {
    docs: std::vec::IntoIter<Document>,
    columns: Vec<Column>,
    next: usize,
}

/// Bytes charged per held document beyond its BSON size.
const HELD_OVERHEAD: usize = 64;

impl WindowOp {
    fn next_wrapped(&mut self) -> Result<Option<(Bson, Document)>> {
        let Some(sorted) = &mut self.sorted else {
            return Ok(None);
        };
        let Some(mut d) = sorted.next_doc()? else {
            return Ok(None);
        };
        let key = match d.remove("p") {
            Some(Bson::Document(mut k)) => k.remove("v").unwrap_or(Bson::Null),
            _ => return Err(crate::spill::damaged()),
        };
        match d.remove("d") {
            Some(Bson::Document(doc)) => Ok(Some((key, doc))),
            _ => Err(crate::spill::damaged()),
        }
    }

    /// The next partition, whole, within the budget.
    fn next_partition(&mut self, cx: &mut Cx<'_>) -> Result<Vec<Document>> {
        let Some((key, first)) = (match self.pending.take() {
            Some(e) => Some(e),
            None => self.next_wrapped()?,
        }) else {
            return Ok(Vec::new());
        };
        let mut bytes = limits::document_size(&first) + HELD_OVERHEAD;
        let mut part = vec![first];
        while let Some((k, d)) = self.next_wrapped()? {
            cx.tick()?;
            if !compare(&k, &key).is_eq() {
                self.pending = Some((k, d));
                break;
            }
            bytes = bytes.saturating_add(limits::document_size(&d) + HELD_OVERHEAD);
            if bytes > self.budget.bytes {
                return Err(exceeded(self.budget, "a partition"));
            }
            part.push(d);
        }
        Ok(part)
    }
}

impl Op for WindowOp {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        if self.sorted.is_none() {
            let mut sorter = ExternalSorter::new(std::mem::take(&mut self.spec.order), self.budget);
            while let Some(d) = self.input.next(cx)? {
                cx.tick()?;
                let key = match &self.spec.partition_by {
                    Some(e) => e.eval(&d)?.unwrap_or(Bson::Null),
                    None => Bson::Null,
                };
                // `$sort` would not partition an array the way it groups.
                if matches!(key, Bson::Array(_)) {
                    return Err(CommandError::type_mismatch(
                        "An expression used to partition cannot evaluate to value of type array",
                    ));
                }
                sorter.push(&doc! {"p": {"v": key}, "d": d})?;
            }
            self.sorted = Some(sorter.finish()?);
        }
        loop {
            if let Some(e) = &mut self.emitting {
                if let Some(mut d) = e.docs.next() {
                    let i = e.next;
                    e.next += 1;
                    for (o, col) in self.spec.outputs.iter().zip(e.columns.iter_mut()) {
                        let v = match col {
                            Column::Each(values) => std::mem::replace(&mut values[i], Bson::Null),
                            Column::Shared(v) => v.clone(),
                        };
                        d = with_field(d, &o.field, v, "$setWindowFields")?;
                    }
                    return Ok(Some(d));
                }
                self.emitting = None;
            }
            let part = self.next_partition(cx)?;
            if part.is_empty() {
                return Ok(None);
            }
            let mut columns = Vec::with_capacity(self.spec.outputs.len());
            let mut held = Held {
                bytes: 0,
                budget: self.budget,
            };
            for o in &self.spec.outputs {
                columns.push(compute(
                    o,
                    &part,
                    self.spec.sort_by.as_deref(),
                    cx,
                    &mut held,
                )?);
            }
            self.emitting = Some(Emitting {
                docs: part.into_iter(),
                columns,
                next: 0,
            });
        }
    }
}

/// The `sortBy` value of a document (its first field), null if missing.
fn sort_value(d: &Document, sort_by: Option<&[(String, i32)]>) -> Bson {
    sort_by
        .and_then(|s| s.first())
        .and_then(|(f, _)| path::get_expr(d, f))
        .unwrap_or(Bson::Null)
}

/// A range window's coordinate: a number, or a date's milliseconds with a
/// unit (5429413/5429414/5429513 otherwise, as MongoDB).
fn coordinate(v: &Bson, unit: Option<TimeUnit>) -> Result<f64> {
    match (v, unit) {
        (Bson::DateTime(t), Some(_)) => Ok(t.timestamp_millis() as f64),
        (_, Some(_)) => Err(CommandError::new(
            ErrorCode::Location5429513,
            format!(
                "Invalid range: Expected the sortBy field to be a Date, but it was {}",
                type_name(v)
            ),
        )),
        (Bson::DateTime(_), None) => Err(CommandError::new(
            ErrorCode::Location5429413,
            "Invalid range: For windows that involve date or time ranges, a unit must be provided.",
        )),
        (v, None) if is_number(v) => Ok(as_f64(v).unwrap_or(f64::NAN)),
        (v, None) => Err(CommandError::new(
            ErrorCode::Location5429414,
            format!(
                "Invalid range: Expected the sortBy field to be a number, but it was {}",
                type_name(v)
            ),
        )),
    }
}

/// `$derivative`'s and `$integral`'s x: a number, or a date's
/// milliseconds with a unit (their own codes, as MongoDB).
fn slope_coordinate(v: &Bson, unit: Option<f64>, derivative: bool) -> Result<f64> {
    let name = if derivative {
        "$derivative"
    } else {
        "$integral"
    };
    match (v, unit) {
        (Bson::DateTime(t), Some(_)) => Ok(t.timestamp_millis() as f64),
        (_, Some(_)) => Err(CommandError::new(
            if derivative {
                ErrorCode::Location5624900
            } else {
                ErrorCode::Location5423901
            },
            format!("{name} with unit expects the sortBy field to be a Date"),
        )),
        (Bson::DateTime(_), None) => Err(CommandError::new(
            if derivative {
                ErrorCode::Location5624901
            } else {
                ErrorCode::Location5423902
            },
            format!("{name} where the sortBy is a Date requires an 'unit'"),
        )),
        (v, None) => Ok(as_f64(v).filter(|_| is_number(v)).unwrap_or(f64::NAN)),
    }
}

/// The inclusive index range of document `i`'s window (empty when
/// `lo > hi`).
fn bounds(w: &Window, i: usize, n: usize, xs: Option<&[f64]>) -> (usize, usize) {
    let last = n as i128 - 1;
    match w {
        Window::Documents(lo, hi) => {
            let at = |b: &Bound, unbounded: i128| match b {
                Bound::Unbounded => unbounded,
                Bound::Current => i as i128,
                Bound::Offset(f) => i as i128 + *f as i128,
            };
            let l = at(lo, 0).clamp(0, last + 1);
            let h = at(hi, last).clamp(-1, last);
            if l > h {
                (1, 0)
            } else {
                (l as usize, h as usize)
            }
        }
        Window::Range { lo, hi, unit } => {
            let Some(xs) = xs else { return (1, 0) };
            let x = xs[i];
            // A date offset is whole units added as `$dateAdd` adds them;
            // past what a date holds, the window reaches that end.
            let offset = |f: f64, past: f64| match unit {
                None => x + f,
                Some(u) => u.add(x as i64, f as i64).map_or(past, |t| t as f64),
            };
            let lo_x = match lo {
                Bound::Unbounded => f64::NEG_INFINITY,
                Bound::Current => x,
                Bound::Offset(f) => offset(*f, f.signum() * f64::INFINITY),
            };
            let hi_x = match hi {
                Bound::Unbounded => f64::INFINITY,
                Bound::Current => x,
                Bound::Offset(f) => offset(*f, f.signum() * f64::INFINITY),
            };
            let l = xs.partition_point(|v| *v < lo_x);
            let h = xs.partition_point(|v| *v <= hi_x);
            if l >= h { (1, 0) } else { (l, h - 1) }
        }
    }
}

/// One output's values for a whole partition, in order.
fn compute(
    o: &Output,
    part: &[Document],
    sort_by: Option<&[(String, i32)]>,
    cx: &mut Cx<'_>,
    held: &mut Held,
) -> Result<Column> {
    let n = part.len();
    let xs: Option<Vec<f64>> = match &o.window {
        Window::Range { unit, .. } => Some(
            part.iter()
                .map(|d| coordinate(&sort_value(d, sort_by), *unit))
                .collect::<Result<_>>()?,
        ),
        _ => None,
    };
    let window_of = |i: usize| bounds(&o.window, i, n, xs.as_deref());
    let eval_all =
        |e: &Expr| -> Result<Vec<Option<Bson>>> { part.iter().map(|d| e.eval(d)).collect() };
    let numbers = |vals: &[Option<Bson>]| -> Vec<Option<f64>> {
        vals.iter()
            .map(|v| v.as_ref().filter(|v| is_number(v)).and_then(as_f64))
            .collect()
    };
    let mut out = Vec::with_capacity(n);
    match &o.func {
        Func::Acc(acc, e)
            if matches!(
                o.window,
                Window::Documents(Bound::Unbounded, Bound::Current | Bound::Offset(_))
                    | Window::Range {
                        lo: Bound::Unbounded,
                        hi: Bound::Current | Bound::Offset(_),
                        ..
                    }
            ) =>
        {
            // From the partition's start: windows only grow (their ends
            // never move back in sorted order), so one running fold
            // serves every document, O(n) for the partition.
            let vals = eval_all(e)?;
            let mut running = Accumulator::new(acc)?;
            let mut fed = 0usize;
            for i in 0..n {
                let (l, h) = window_of(i);
                let upto = if l > h { 0 } else { h + 1 };
                while fed < upto {
                    cx.tick()?;
                    running.add(vals[fed].clone())?;
                    fed += 1;
                }
                let v = if upto == 0 {
                    Accumulator::new(acc)?.finish()
                } else {
                    running.peek()
                };
                held.charge(limits::bson_size(&v))?;
                out.push(v);
            }
        }
        // `$count` is the window's size: O(1) per document for any window.
        Func::Acc(Acc::Count, _) => {
            for i in 0..n {
                let (l, h) = window_of(i);
                out.push(int(if l > h { 0 } else { (h - l + 1) as i64 }));
            }
        }
        // The whole partition is one window: fold it once, every document
        // gets the value.
        Func::Acc(acc, e) if o.window == WHOLE => {
            let mut a = Accumulator::new(acc)?;
            for d in part {
                cx.tick()?;
                a.add(e.eval(d)?)?;
            }
            let v = a.finish();
            held.charge(limits::bson_size(&v))?;
            return Ok(Column::Shared(v));
        }
        Func::Acc(acc, e) => {
            let vals = eval_all(e)?;
            for i in 0..n {
                let (l, h) = window_of(i);
                let mut a = Accumulator::new(acc)?;
                for v in vals.iter().take(h.saturating_add(1)).skip(l) {
                    cx.tick()?;
                    a.add(v.clone())?;
                }
                let v = a.finish();
                held.charge(limits::bson_size(&v))?;
                out.push(v);
            }
        }
        Func::StdDev { sample, input } => {
            let ys = numbers(&eval_all(input)?);
            for i in 0..n {
                let (l, h) = window_of(i);
                let w: Vec<f64> = (l..=h)
                    .filter_map(|j| ys.get(j).copied().flatten())
                    .collect();
                cx.tick()?;
                out.push(std_dev(&w, *sample));
            }
        }
        Func::Covariance { sample, x, y } => {
            let a = numbers(&eval_all(x)?);
            let b = numbers(&eval_all(y)?);
            for i in 0..n {
                let (l, h) = window_of(i);
                let w: Vec<(f64, f64)> = (l..=h)
                    .filter_map(|j| {
                        Some((a.get(j).copied().flatten()?, b.get(j).copied().flatten()?))
                    })
                    .collect();
                cx.tick()?;
                out.push(covariance(&w, *sample));
            }
        }
        Func::Derivative { input, unit } | Func::Integral { input, unit } => {
            let ys = numbers(&eval_all(input)?);
            let derivative = matches!(o.func, Func::Derivative { .. });
            let xs: Vec<f64> = part
                .iter()
                .map(|d| slope_coordinate(&sort_value(d, sort_by), *unit, derivative))
                .collect::<Result<_>>()?;
            let scale = unit.unwrap_or(1.0);
            for i in 0..n {
                let (l, h) = window_of(i);
                let pts: Vec<(f64, f64)> = (l..=h)
                    .filter_map(|j| Some((xs[j] / scale, ys.get(j).copied().flatten()?)))
                    .collect();
                cx.tick()?;
                out.push(if matches!(o.func, Func::Derivative { .. }) {
                    match (pts.first(), pts.last()) {
                        (Some(a), Some(b)) if pts.len() >= 2 && b.0 != a.0 => {
                            Bson::Double((b.1 - a.1) / (b.0 - a.0))
                        }
                        _ => Bson::Null,
                    }
                } else if pts.is_empty() {
                    Bson::Null
                } else {
                    Bson::Double(
                        pts.windows(2)
                            .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
                            .sum(),
                    )
                });
            }
        }
        Func::DocumentNumber => out.extend((1..=n as i64).map(int)),
        Func::Rank | Func::DenseRank => {
            let keys: Vec<Bson> = part.iter().map(|d| sort_value(d, sort_by)).collect();
            let (mut rank, mut dense) = (0i64, 0i64);
            for i in 0..n {
                if i == 0 || !compare(&keys[i], &keys[i - 1]).is_eq() {
                    rank = i as i64 + 1;
                    dense += 1;
                }
                out.push(int(if matches!(o.func, Func::Rank) {
                    rank
                } else {
                    dense
                }));
            }
        }
        Func::Shift {
            output,
            by,
            default,
        } => {
            for i in 0..n {
                let j = i as i128 + i128::from(*by);
                out.push(if (0..n as i128).contains(&j) {
                    output.eval(&part[j as usize])?.unwrap_or(Bson::Null)
                } else {
                    default.clone()
                });
            }
        }
        Func::ExpMovingAvg { input, alpha } => {
            let mut ema: Option<f64> = None;
            for v in numbers(&eval_all(input)?) {
                if let Some(y) = v {
                    ema = Some(match ema {
                        None => y,
                        Some(prev) => alpha * y + (1.0 - alpha) * prev,
                    });
                }
                out.push(ema.map_or(Bson::Null, Bson::Double));
            }
        }
        Func::Locf(e) => {
            let mut last = Bson::Null;
            for v in eval_all(e)? {
                match v {
                    Some(Bson::Null) | Some(Bson::Undefined) | None => {}
                    Some(v) => last = v,
                }
                out.push(last.clone());
            }
        }
        Func::LinearFill(e) => {
            let vals = eval_all(e)?;
            let xs: Vec<Bson> = part.iter().map(|d| sort_value(d, sort_by)).collect();
            // Which neighbour to interpolate from is ambiguous otherwise.
            if xs.windows(2).any(|w| compare(&w[0], &w[1]).is_eq()) {
                return Err(CommandError::new(
                    ErrorCode::Location6050106,
                    "There can be no repeated values in the sort field in the same partition",
                ));
            }
            let known: Vec<usize> = (0..n)
                .filter(|&j| !matches!(vals[j], None | Some(Bson::Null) | Some(Bson::Undefined)))
                .collect();
            for i in 0..n {
                if let Some(v) = vals[i]
                    .clone()
                    .filter(|v| !matches!(v, Bson::Null | Bson::Undefined))
                {
                    out.push(v);
                    continue;
                }
                let after = known.partition_point(|&j| j < i);
                let (Some(&a), Some(&b)) = (
                    after.checked_sub(1).and_then(|k| known.get(k)),
                    known.get(after),
                ) else {
                    out.push(Bson::Null);
                    continue;
                };
                let num = |v: &Bson| match v {
                    Bson::DateTime(t) => Some(t.timestamp_millis() as f64),
                    v if is_number(v) => as_f64(v),
                    _ => None,
                };
                let ya = vals[a].as_ref().and_then(num);
                let yb = vals[b].as_ref().and_then(num);
                let (xa, xb, x) = (num(&xs[a]), num(&xs[b]), num(&xs[i]));
                out.push(match (ya, yb, xa, xb, x) {
                    (Some(ya), Some(yb), Some(xa), Some(xb), Some(x)) if xb != xa => {
                        Bson::Double(ya + (yb - ya) * (x - xa) / (xb - xa))
                    }
                    _ => Bson::Null,
                });
            }
        }
    }
    Ok(Column::Each(out))
}

fn int(n: i64) -> Bson {
    i32::try_from(n).map(Bson::Int32).unwrap_or(Bson::Int64(n))
}

fn std_dev(w: &[f64], sample: bool) -> Bson {
    let n = w.len() as f64;
    if w.is_empty() || (sample && w.len() < 2) {
        return Bson::Null;
    }
    let mean = w.iter().sum::<f64>() / n;
    let ss: f64 = w.iter().map(|x| (x - mean) * (x - mean)).sum();
    Bson::Double((ss / if sample { n - 1.0 } else { n }).sqrt())
}

fn covariance(w: &[(f64, f64)], sample: bool) -> Bson {
    let n = w.len() as f64;
    if w.is_empty() || (sample && w.len() < 2) {
        return Bson::Null;
    }
    let mx = w.iter().map(|p| p.0).sum::<f64>() / n;
    let my = w.iter().map(|p| p.1).sum::<f64>() / n;
    let s: f64 = w.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Bson::Double(s / if sample { n - 1.0 } else { n })
}
