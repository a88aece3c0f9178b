//! Date operators: parts (`$year` ... `$millisecond`, ISO weeks), `$dateToString`, `$dateFromString`, `$dateFromParts`, `$dateToParts`, `$dateAdd`, `$dateSubtract`, `$dateDiff`, `$dateTrunc`, with time zones.
//!
//! Calendar arithmetic is our own (proleptic Gregorian days from
//! `aggregate::time_unit`, shared with `$densify` and window ranges), done
//! in `i128` where a sum of parts can pass what a date holds, so no
//! input overflows. Time zones are the one thing not worth writing here:
//! Olson zones change several times a year, so their offsets come from
//! `chrono-tz` (the IANA database compiled in, updated with each release
//! of the crate) rather than from a table we would have to keep current.
//! `chrono` is used only to ask a zone for its UTC offset at an instant.
//!
//! A wall-clock time that a zone skips (a DST gap) is read with the offset
//! in force before the gap, and one it repeats (an overlap) as the earlier
//! instant, as mongod's timelib does.
//!
//! `$dateFromString` without a `format` accepts the forms drivers and
//! people send (ISO 8601 with `T` or a space, `YYYY/MM/DD`, `MM/DD/YYYY`,
//! month names, an offset, `Z`/`UTC`/`GMT`); mongod's timelib reads
//! many more free-text forms ("next monday"), which are refused here as a
//! parse error (ConversionFailure, so `onError` applies).

use std::fmt::Write as _;
use std::str::FromStr;

use bson::{Bson, Document};
use chrono::{Offset, TimeZone as _};

use super::{Expr, Locals, Scope, type_name};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::Budget;
use crate::query::aggregate::time_unit::{
    TimeUnit, civil_from_days, days_from_civil, days_in_month,
};

const DAY_MS: i64 = 86_400_000;
/// 2000-01-01T00:00:00Z: where `$dateTrunc` counts bins from.
const TRUNC_REFERENCE_MS: i64 = 946_684_800_000;

/// A parsed operator of this family.
#[derive(Debug, Clone)]
pub enum DateExpr {
    /// `$year`, `$month`, ... : one part of a date in a zone.
    Part {
        part: Part,
        date: Expr,
        timezone: Option<Expr>,
    },
    ToString {
        date: Expr,
        format: Option<Expr>,
        timezone: Option<Expr>,
        on_null: Option<Expr>,
    },
    FromString {
        date_string: Expr,
        format: Option<Expr>,
        timezone: Option<Expr>,
        on_null: Option<Expr>,
        on_error: Option<Expr>,
    },
    FromParts(Box<FromParts>),
    ToParts {
        date: Expr,
        timezone: Option<Expr>,
        iso8601: Option<Expr>,
    },
    /// `$dateAdd`, or `$dateSubtract` (`subtract`).
    Add {
        subtract: bool,
        start: Expr,
        unit: Expr,
        amount: Expr,
        timezone: Option<Expr>,
    },
    Diff {
        start: Expr,
        end: Expr,
        unit: Expr,
        timezone: Option<Expr>,
        start_of_week: Option<Expr>,
    },
    Trunc {
        date: Expr,
        unit: Expr,
        bin_size: Option<Expr>,
        timezone: Option<Expr>,
        start_of_week: Option<Expr>,
    },
}

/// `$dateFromParts`' arguments: the calendar form (`year` set) or the ISO
/// week form (`iso_week_year` set), never both.
#[derive(Debug, Clone)]
pub struct FromParts {
    year: Option<Expr>,
    month: Option<Expr>,
    day: Option<Expr>,
    hour: Option<Expr>,
    minute: Option<Expr>,
    second: Option<Expr>,
    millisecond: Option<Expr>,
    iso_week_year: Option<Expr>,
    iso_week: Option<Expr>,
    iso_day_of_week: Option<Expr>,
    timezone: Option<Expr>,
}

/// The single-date operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Year,
    Month,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    Hour,
    Minute,
    Second,
    Millisecond,
    Week,
    IsoWeek,
    IsoWeekYear,
    IsoDayOfWeek,
}

impl Part {
    fn from_name(name: &str) -> Option<Part> {
        Some(match name {
            "$year" => Part::Year,
            "$month" => Part::Month,
            "$dayOfMonth" => Part::DayOfMonth,
            "$dayOfWeek" => Part::DayOfWeek,
            "$dayOfYear" => Part::DayOfYear,
            "$hour" => Part::Hour,
            "$minute" => Part::Minute,
            "$second" => Part::Second,
            "$millisecond" => Part::Millisecond,
            "$week" => Part::Week,
            "$isoWeek" => Part::IsoWeek,
            "$isoWeekYear" => Part::IsoWeekYear,
            "$isoDayOfWeek" => Part::IsoDayOfWeek,
            _ => return None,
        })
    }

    fn of(self, t: &Local) -> Bson {
        let int = |v: i64| Bson::Int32(v as i32);
        match self {
            Part::Year => int(t.year),
            Part::Month => int(t.month),
            Part::DayOfMonth => int(t.day),
            Part::DayOfWeek => int(t.day_of_week()),
            Part::DayOfYear => int(t.day_of_year()),
            Part::Hour => int(t.hour),
            Part::Minute => int(t.minute),
            Part::Second => int(t.second),
            Part::Millisecond => int(t.milli),
            Part::Week => int(t.week()),
            Part::IsoWeek => int(t.iso_week().1),
            // mongod answers a long for this one part alone.
            Part::IsoWeekYear => Bson::Int64(t.iso_week().0),
            Part::IsoDayOfWeek => int(t.iso_day_of_week()),
        }
    }
}

type Named<'a> = Vec<Option<&'a Bson>>;

/// The named arguments of an object-argument operator, in `allowed`'s
/// order; an unknown one is `unknown(name)`.
fn named_args<'a>(
    spec: &'a Document,
    allowed: &[&str],
    unknown: impl Fn(&str) -> CommandError,
) -> Result<Named<'a>> {
    let mut out = vec![None; allowed.len()];
    for (k, v) in spec {
        match allowed.iter().position(|a| a == k) {
            Some(i) => out[i] = Some(v),
            None => return Err(unknown(k)),
        }
    }
    Ok(out)
}

fn err(code: ErrorCode, message: impl Into<String>) -> CommandError {
    CommandError::new(code, message)
}

impl DateExpr {
    /// Parses `{name: arg}`; `None` when `name` is not of this family.
    pub(super) fn parse(name: &str, arg: &Bson, scope: Scope) -> Result<Option<DateExpr>> {
        let sub = |v: &Bson| Expr::parse_in(v, scope.nested());
        let opt = |v: Option<&Bson>| v.map(sub).transpose();
        if let Some(part) = Part::from_name(name) {
            return Ok(Some(parse_part(name, part, arg, scope)?));
        }
        let expr = match name {
            "$dateToString" => {
                let Bson::Document(spec) = arg else {
                    return Err(err(
                        ErrorCode::Location18629,
                        "$dateToString only supports an object as its argument",
                    ));
                };
                let a = named_args(spec, &["format", "date", "timezone", "onNull"], |k| {
                    err(
                        ErrorCode::Location18534,
                        format!("Unrecognized argument to $dateToString: {k}"),
                    )
                })?;
                let date = a[1].ok_or_else(|| {
                    err(
                        ErrorCode::Location18628,
                        "Missing 'date' parameter to $dateToString",
                    )
                })?;
                DateExpr::ToString {
                    date: sub(date)?,
                    format: opt(a[0])?,
                    timezone: opt(a[2])?,
                    on_null: opt(a[3])?,
                }
            }
            "$dateFromString" => {
                let Bson::Document(spec) = arg else {
                    return Err(err(
                        ErrorCode::Location40540,
                        format!(
                            "$dateFromString only supports an object as an argument, found: {}",
                            type_name(arg)
                        ),
                    ));
                };
                let a = named_args(
                    spec,
                    &["format", "dateString", "timezone", "onNull", "onError"],
                    |k| {
                        err(
                            ErrorCode::Location40541,
                            format!("Unrecognized argument to $dateFromString: {k}"),
                        )
                    },
                )?;
                let date_string = a[1].ok_or_else(|| {
                    err(
                        ErrorCode::Location40542,
                        "Missing 'dateString' parameter to $dateFromString",
                    )
                })?;
                DateExpr::FromString {
                    date_string: sub(date_string)?,
                    format: opt(a[0])?,
                    timezone: opt(a[2])?,
                    on_null: opt(a[3])?,
                    on_error: opt(a[4])?,
                }
            }
            "$dateFromParts" => {
                let Bson::Document(spec) = arg else {
                    return Err(err(
                        ErrorCode::Location40519,
                        "$dateFromParts only supports an object as its argument",
                    ));
                };
                let a = named_args(
                    spec,
                    &[
                        "year",
                        "month",
                        "day",
                        "hour",
                        "minute",
                        "second",
                        "millisecond",
                        "isoWeekYear",
                        "isoWeek",
                        "isoDayOfWeek",
                        "timezone",
                    ],
                    |k| {
                        err(
                            ErrorCode::Location40518,
                            format!("Unrecognized argument to $dateFromParts: {k}"),
                        )
                    },
                )?;
                let (year, natural) = (a[0].is_some(), a[1].is_some() || a[2].is_some());
                let (iso_year, iso) = (a[7].is_some(), a[8].is_some() || a[9].is_some());
                if !year && !iso_year {
                    return Err(err(
                        ErrorCode::Location40516,
                        "$dateFromParts requires either 'year' or 'isoWeekYear' to be present",
                    ));
                }
                if year && (iso_year || iso) {
                    return Err(err(
                        ErrorCode::Location40489,
                        "$dateFromParts does not allow mixing natural dates with ISO dates",
                    ));
                }
                if iso_year && natural {
                    return Err(err(
                        ErrorCode::Location40525,
                        "$dateFromParts does not allow mixing ISO dates with natural dates",
                    ));
                }
                DateExpr::FromParts(Box::new(FromParts {
                    year: opt(a[0])?,
                    month: opt(a[1])?,
                    day: opt(a[2])?,
                    hour: opt(a[3])?,
                    minute: opt(a[4])?,
                    second: opt(a[5])?,
                    millisecond: opt(a[6])?,
                    iso_week_year: opt(a[7])?,
                    iso_week: opt(a[8])?,
                    iso_day_of_week: opt(a[9])?,
                    timezone: opt(a[10])?,
                }))
            }
            "$dateToParts" => {
                let Bson::Document(spec) = arg else {
                    return Err(err(
                        ErrorCode::Location40524,
                        "$dateToParts only supports an object as its argument",
                    ));
                };
                let a = named_args(spec, &["date", "timezone", "iso8601"], |k| {
                    err(
                        ErrorCode::Location40520,
                        format!("Unrecognized argument to $dateToParts: {k}"),
                    )
                })?;
                let date = a[0].ok_or_else(|| {
                    err(
                        ErrorCode::Location40522,
                        "Missing 'date' parameter to $dateToParts",
                    )
                })?;
                DateExpr::ToParts {
                    date: sub(date)?,
                    timezone: opt(a[1])?,
                    iso8601: opt(a[2])?,
                }
            }
            "$dateAdd" | "$dateSubtract" => {
                let Bson::Document(spec) = arg else {
                    return Err(err(
                        ErrorCode::Location5166400,
                        format!("{name} expects an object as its argument"),
                    ));
                };
                let a = named_args(spec, &["startDate", "unit", "amount", "timezone"], |k| {
                    err(
                        ErrorCode::Location5166401,
                        format!(
                            "Unrecognized argument to {name}: {k}. Expected arguments are startDate, unit, amount, and optionally timezone."
                        ),
                    )
                })?;
                let (Some(start), Some(unit), Some(amount)) = (a[0], a[1], a[2]) else {
                    return Err(err(
                        ErrorCode::Location5166402,
                        format!("{name} requires startDate, unit, and amount to be present"),
                    ));
                };
                DateExpr::Add {
                    subtract: name == "$dateSubtract",
                    start: sub(start)?,
                    unit: sub(unit)?,
                    amount: sub(amount)?,
                    timezone: opt(a[3])?,
                }
            }
            "$dateDiff" => {
                let Bson::Document(spec) = arg else {
                    return Err(err(
                        ErrorCode::Location5166301,
                        "$dateDiff only supports an object as its argument",
                    ));
                };
                let a = named_args(
                    spec,
                    &["startDate", "endDate", "unit", "timezone", "startOfWeek"],
                    |k| {
                        err(
                            ErrorCode::Location5166302,
                            format!("Unrecognized argument to $dateDiff: {k}"),
                        )
                    },
                )?;
                let missing = |code, what: &str| {
                    err(code, format!("Missing '{what}' parameter to $dateDiff"))
                };
                let start = a[0].ok_or_else(|| missing(ErrorCode::Location5166303, "startDate"))?;
                let end = a[1].ok_or_else(|| missing(ErrorCode::Location5166304, "endDate"))?;
                let unit = a[2].ok_or_else(|| missing(ErrorCode::Location5166305, "unit"))?;
                DateExpr::Diff {
                    start: sub(start)?,
                    end: sub(end)?,
                    unit: sub(unit)?,
                    timezone: opt(a[3])?,
                    start_of_week: opt(a[4])?,
                }
            }
            "$dateTrunc" => {
                let Bson::Document(spec) = arg else {
                    return Err(err(
                        ErrorCode::Location5439007,
                        "$dateTrunc only supports an object as its argument",
                    ));
                };
                let a = named_args(
                    spec,
                    &["date", "unit", "binSize", "timezone", "startOfWeek"],
                    |k| {
                        err(
                            ErrorCode::Location5439008,
                            format!(
                                "Unrecognized argument to $dateTrunc: {k}. Expected arguments are date, unit, and optionally, binSize, timezone, startOfWeek"
                            ),
                        )
                    },
                )?;
                let date = a[0].ok_or_else(|| {
                    err(
                        ErrorCode::Location5439009,
                        "Missing 'date' parameter to $dateTrunc",
                    )
                })?;
                let unit = a[1].ok_or_else(|| {
                    err(
                        ErrorCode::Location5439010,
                        "Missing 'unit' parameter to $dateTrunc",
                    )
                })?;
                DateExpr::Trunc {
                    date: sub(date)?,
                    unit: sub(unit)?,
                    bin_size: opt(a[2])?,
                    timezone: opt(a[3])?,
                    start_of_week: opt(a[4])?,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(expr))
    }

    pub(super) fn eval(&self, doc: &Document, locals: Locals) -> Result<Option<Bson>> {
        let ev = |e: &Expr| -> Result<Option<Bson>> { e.eval_in(doc, locals) };
        let ev_opt = |e: &Option<Expr>| -> Result<Option<Option<Bson>>> {
            e.as_ref().map(|e| e.eval_in(doc, locals)).transpose()
        };
        let zone = |e: &Option<Expr>| -> Result<Option<Zone>> { Zone::from_arg(ev_opt(e)?) };
        Ok(Some(match self {
            DateExpr::Part {
                part,
                date,
                timezone,
            } => {
                let Some(date) = ev(date)?.filter(|v| !nullish(v)) else {
                    return Ok(Some(Bson::Null));
                };
                let t = coerce_to_date(&date)?;
                let Some(zone) = zone(timezone)? else {
                    return Ok(Some(Bson::Null));
                };
                part.of(&zone.local(t))
            }
            DateExpr::ToString {
                date,
                format,
                timezone,
                on_null,
            } => {
                let date = ev(date)?.filter(|v| !nullish(v));
                // The format is checked first, whatever the date.
                let format = checked_format(
                    ev_opt(format)?,
                    "$dateToString",
                    TO_STRING_SPECIFIERS,
                    ErrorCode::Location18533,
                )?;
                let zone = zone(timezone)?;
                let Some(date) = date else {
                    return match on_null {
                        Some(e) => ev(e),
                        None => Ok(Some(Bson::Null)),
                    };
                };
                let Some(zone) = zone else {
                    return Ok(Some(Bson::Null));
                };
                let format = match format {
                    None if zone.is_utc() => "%Y-%m-%dT%H:%M:%S.%LZ".to_owned(),
                    None => "%Y-%m-%dT%H:%M:%S.%L".to_owned(),
                    Some(None) => return Ok(Some(Bson::Null)),
                    Some(Some(f)) => f,
                };
                Bson::String(format_date(&format, coerce_to_date(&date)?, zone)?)
            }
            DateExpr::FromString {
                date_string,
                format,
                timezone,
                on_null,
                on_error,
            } => {
                let input = ev(date_string)?.filter(|v| !nullish(v));
                let format = checked_format(
                    ev_opt(format)?,
                    "$dateFromString",
                    FROM_STRING_SPECIFIERS,
                    ErrorCode::Location40684,
                )?;
                let zone = zone(timezone)?;
                let Some(input) = input else {
                    return match on_null {
                        Some(e) => ev(e),
                        None => Ok(Some(Bson::Null)),
                    };
                };
                let parsed = (|| -> Result<Option<Bson>> {
                    let Bson::String(s) = &input else {
                        return Err(err(
                            ErrorCode::ConversionFailure,
                            format!(
                                "$dateFromString requires that 'dateString' be a string, found: {} with value {}",
                                type_name(&input),
                                shell(&input)
                            ),
                        ));
                    };
                    let Some(zone) = zone else {
                        return Ok(Some(Bson::Null));
                    };
                    let t = match &format {
                        Some(None) => return Ok(Some(Bson::Null)),
                        Some(Some(f)) => from_string(s, Some(f), zone)?,
                        None => from_string(s, None, zone)?,
                    };
                    Ok(Some(Bson::DateTime(bson::DateTime::from_millis(t))))
                })();
                return match (parsed, on_error) {
                    (Err(e), Some(on_error)) if e.code == ErrorCode::ConversionFailure => {
                        ev(on_error)
                    }
                    (result, _) => result,
                };
            }
            DateExpr::FromParts(p) => return p.eval(doc, locals),
            DateExpr::ToParts {
                date,
                timezone,
                iso8601,
            } => {
                let date = ev(date)?;
                let Some(zone) = zone(timezone)? else {
                    return Ok(Some(Bson::Null));
                };
                let iso = match ev_opt(iso8601)? {
                    None => false,
                    Some(v) => match v.filter(|v| !nullish(v)) {
                        None => return Ok(Some(Bson::Null)),
                        Some(Bson::Boolean(b)) => b,
                        Some(other) => {
                            return Err(err(
                                ErrorCode::Location40521,
                                format!(
                                    "iso8601 must evaluate to a bool, found {}",
                                    type_name(&other)
                                ),
                            ));
                        }
                    },
                };
                let Some(date) = date.filter(|v| !nullish(v)) else {
                    return Ok(Some(Bson::Null));
                };
                let t = zone.local(coerce_to_date(&date)?);
                let int = |v: i64| Bson::Int32(v as i32);
                let mut out = Document::new();
                if iso {
                    let (year, week) = t.iso_week();
                    out.insert("isoWeekYear", int(year));
                    out.insert("isoWeek", int(week));
                    out.insert("isoDayOfWeek", int(t.iso_day_of_week()));
                } else {
                    out.insert("year", int(t.year));
                    out.insert("month", int(t.month));
                    out.insert("day", int(t.day));
                }
                out.insert("hour", int(t.hour));
                out.insert("minute", int(t.minute));
                out.insert("second", int(t.second));
                out.insert("millisecond", int(t.milli));
                Bson::Document(out)
            }
            DateExpr::Add {
                subtract,
                start,
                unit,
                amount,
                timezone,
            } => {
                let op = if *subtract {
                    "$dateSubtract"
                } else {
                    "$dateAdd"
                };
                let Some(start) = ev(start)?.filter(|v| !nullish(v)) else {
                    return Ok(Some(Bson::Null));
                };
                let Some(unit) = ev(unit)?.filter(|v| !nullish(v)) else {
                    return Ok(Some(Bson::Null));
                };
                let unit = Unit::parse(&unit, op)?;
                let Some(amount) = ev(amount)?.filter(|v| !nullish(v)) else {
                    return Ok(Some(Bson::Null));
                };
                let Some(zone) = zone(timezone)? else {
                    return Ok(Some(Bson::Null));
                };
                let Some(t) = date_millis(&start) else {
                    return Err(err(
                        ErrorCode::Location5166403,
                        format!("{op} requires startDate to be convertible to a date"),
                    ));
                };
                let Some(mut amount) = integral64(&amount) else {
                    return Err(err(
                        ErrorCode::Location5166405,
                        format!("{op} expects integer amount of time units"),
                    ));
                };
                if *subtract {
                    amount = amount.checked_neg().ok_or_else(|| {
                        err(
                            ErrorCode::Location6045000,
                            format!("invalid $dateSubtract 'amount' parameter value: {amount}"),
                        )
                    })?;
                }
                date_value(date_add(t, unit, amount, zone)?)
            }
            DateExpr::Diff {
                start,
                end,
                unit,
                timezone,
                start_of_week,
            } => {
                let Some(start) = ev(start)?.filter(|v| !nullish(v)) else {
                    return Ok(Some(Bson::Null));
                };
                let Some(end) = ev(end)?.filter(|v| !nullish(v)) else {
                    return Ok(Some(Bson::Null));
                };
                let Some(unit) = ev(unit)?.filter(|v| !nullish(v)) else {
                    return Ok(Some(Bson::Null));
                };
                let unit = Unit::parse(&unit, "$dateDiff")?;
                let Some(week_start) = week_start(unit, start_of_week, "$dateDiff", &ev)? else {
                    return Ok(Some(Bson::Null));
                };
                let Some(zone) = zone(timezone).map_err(|e| context(e, "$dateDiff"))? else {
                    return Ok(Some(Bson::Null));
                };
                let as_date = |v: &Bson, what: &str| {
                    date_millis(v).ok_or_else(|| {
                        err(
                            ErrorCode::Location5166307,
                            format!(
                                "$dateDiff requires '{what}' to be a date, but got {}",
                                type_name(v)
                            ),
                        )
                    })
                };
                let (start, end) = (as_date(&start, "startDate")?, as_date(&end, "endDate")?);
                Bson::Int64(date_diff(start, end, unit, zone, week_start)?)
            }
            DateExpr::Trunc {
                date,
                unit,
                bin_size,
                timezone,
                start_of_week,
            } => {
                let Some(date) = ev(date)?.filter(|v| !nullish(v)) else {
                    return Ok(Some(Bson::Null));
                };
                let bin_size = match ev_opt(bin_size)? {
                    None => 1,
                    Some(v) => match v.filter(|v| !nullish(v)) {
                        None => return Ok(Some(Bson::Null)),
                        Some(v) => bin_size_of(&v)?,
                    },
                };
                let Some(unit) = ev(unit)?.filter(|v| !nullish(v)) else {
                    return Ok(Some(Bson::Null));
                };
                let unit = Unit::parse(&unit, "$dateTrunc")?;
                let Some(week_start) = week_start(unit, start_of_week, "$dateTrunc", &ev)? else {
                    return Ok(Some(Bson::Null));
                };
                let Some(zone) = zone(timezone).map_err(|e| context(e, "$dateTrunc"))? else {
                    return Ok(Some(Bson::Null));
                };
                let Some(t) = date_millis(&date) else {
                    return Err(err(
                        ErrorCode::Location5439012,
                        format!(
                            "$dateTrunc requires 'date' to be a date, but got {}",
                            type_name(&date)
                        ),
                    ));
                };
                date_value(date_trunc(t, unit, bin_size, zone, week_start)?)
            }
        }))
    }

    pub(super) fn is_constant(&self) -> bool {
        let all =
            |es: &[&Option<Expr>]| es.iter().all(|e| e.as_ref().is_none_or(Expr::is_constant));
        match self {
            DateExpr::Part { date, timezone, .. } => date.is_constant() && all(&[timezone]),
            DateExpr::ToString {
                date,
                format,
                timezone,
                on_null,
            } => date.is_constant() && all(&[format, timezone, on_null]),
            DateExpr::FromString {
                date_string,
                format,
                timezone,
                on_null,
                on_error,
            } => date_string.is_constant() && all(&[format, timezone, on_null, on_error]),
            DateExpr::FromParts(p) => all(&[
                &p.year,
                &p.month,
                &p.day,
                &p.hour,
                &p.minute,
                &p.second,
                &p.millisecond,
                &p.iso_week_year,
                &p.iso_week,
                &p.iso_day_of_week,
                &p.timezone,
            ]),
            DateExpr::ToParts {
                date,
                timezone,
                iso8601,
            } => date.is_constant() && all(&[timezone, iso8601]),
            DateExpr::Add {
                start,
                unit,
                amount,
                timezone,
                ..
            } => {
                start.is_constant()
                    && unit.is_constant()
                    && amount.is_constant()
                    && all(&[timezone])
            }
            DateExpr::Diff {
                start,
                end,
                unit,
                timezone,
                start_of_week,
            } => {
                start.is_constant()
                    && end.is_constant()
                    && unit.is_constant()
                    && all(&[timezone, start_of_week])
            }
            DateExpr::Trunc {
                date,
                unit,
                bin_size,
                timezone,
                start_of_week,
            } => {
                date.is_constant()
                    && unit.is_constant()
                    && all(&[bin_size, timezone, start_of_week])
            }
        }
    }
}

/// `{$year: <date>}`, `{$year: [<date>]}` or `{$year: {date, timezone}}`.
fn parse_part(name: &str, part: Part, arg: &Bson, scope: Scope) -> Result<DateExpr> {
    let sub = |v: &Bson| Expr::parse_in(v, scope.nested());
    match arg {
        Bson::Document(d) if !d.keys().next().is_some_and(|k| k.starts_with('$')) => {
            let (mut date, mut timezone) = (None, None);
            for (k, v) in d {
                match k.as_str() {
                    "date" => date = Some(sub(v)?),
                    "timezone" => timezone = Some(sub(v)?),
                    _ => {
                        return Err(err(
                            ErrorCode::Location40535,
                            format!("unrecognized option to {name}: \"{k}\""),
                        ));
                    }
                }
            }
            let date = date.ok_or_else(|| {
                err(
                    ErrorCode::Location40539,
                    format!(
                        "missing 'date' argument to {name}, provided: {name}: {}",
                        shell(arg)
                    ),
                )
            })?;
            Ok(DateExpr::Part {
                part,
                date,
                timezone,
            })
        }
        Bson::Array(items) => match items.as_slice() {
            [one] => Ok(DateExpr::Part {
                part,
                date: sub(one)?,
                timezone: None,
            }),
            _ => Err(err(
                ErrorCode::Location40536,
                format!(
                    "{name} accepts exactly one argument if given an array, but was given {}",
                    items.len()
                ),
            )),
        },
        other => Ok(DateExpr::Part {
            part,
            date: sub(other)?,
            timezone: None,
        }),
    }
}

impl FromParts {
    fn eval(&self, doc: &Document, locals: Locals) -> Result<Option<Bson>> {
        let null = Ok(Some(Bson::Null));
        let part = |e: &Option<Expr>, what: &str, default: i64, bounded: bool| {
            part_value(e, what, default, bounded, doc, locals)
        };
        let Some(hour) = part(&self.hour, "hour", 0, true)? else {
            return null;
        };
        let Some(minute) = part(&self.minute, "minute", 0, true)? else {
            return null;
        };
        let Some(second) = part(&self.second, "second", 0, false)? else {
            return null;
        };
        let Some(milli) = part(&self.millisecond, "millisecond", 0, false)? else {
            return null;
        };
        let tz = self
            .timezone
            .as_ref()
            .map(|e| e.eval_in(doc, locals))
            .transpose()?;
        let Some(zone) = Zone::from_arg(tz)? else {
            return null;
        };
        let days = if self.year.is_some() {
            let Some(year) = part(&self.year, "year", 1970, false)? else {
                return null;
            };
            let Some(month) = part(&self.month, "month", 1, true)? else {
                return null;
            };
            let Some(day) = part(&self.day, "day", 1, true)? else {
                return null;
            };
            if !(1..=9999).contains(&year) {
                return Err(err(
                    ErrorCode::Location40523,
                    format!(
                        "'year' must evaluate to an integer in the range 1 to 9999, found {year}"
                    ),
                ));
            }
            // Months past December (or before January) carry into the year,
            // days past the month's end into the next: 2017-14-01 is 2018-02-01.
            let months = year * 12 + month - 1;
            days_from_civil(months.div_euclid(12), months.rem_euclid(12) + 1, 1) + day - 1
        } else {
            let Some(year) = part(&self.iso_week_year, "isoWeekYear", 1970, false)? else {
                return null;
            };
            let Some(week) = part(&self.iso_week, "isoWeek", 1, true)? else {
                return null;
            };
            let Some(weekday) = part(&self.iso_day_of_week, "isoDayOfWeek", 1, true)? else {
                return null;
            };
            if !(1..=9999).contains(&year) {
                return Err(err(
                    ErrorCode::Location31095,
                    format!(
                        "'isoWeekYear' must evaluate to an integer in the range 1 to 9999, found {year}"
                    ),
                ));
            }
            iso_week_start(year) + (week - 1) * 7 + weekday - 1
        };
        let local = i128::from(days) * i128::from(DAY_MS)
            + i128::from(hour) * 3_600_000
            + i128::from(minute) * 60_000
            + i128::from(second) * 1_000
            + i128::from(milli);
        let t = i64::try_from(zone.to_utc(local)).map_err(|_| {
            err(
                ErrorCode::BadValue,
                "$dateFromParts: the parts describe a date past what a date holds",
            )
        })?;
        Ok(Some(Bson::DateTime(bson::DateTime::from_millis(t))))
    }
}

/// One `$dateFromParts` part: its default when absent, `None` when null
/// or missing; an integer (40515), within a 16-bit range when `bounded`
/// (31034), as mongod limits the parts it would otherwise iterate over.
fn part_value(
    e: &Option<Expr>,
    what: &str,
    default: i64,
    bounded: bool,
    doc: &Document,
    locals: Locals,
) -> Result<Option<i64>> {
    let Some(e) = e else {
        return Ok(Some(default));
    };
    let Some(v) = e.eval_in(doc, locals)?.filter(|v| !nullish(v)) else {
        return Ok(None);
    };
    let n = integral64(&v).ok_or_else(|| {
        err(
            ErrorCode::Location40515,
            format!(
                "'{what}' must evaluate to an integer, found {} with value {}",
                type_name(&v),
                shell(&v)
            ),
        )
    })?;
    if bounded && !(i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&n) {
        return Err(err(
            ErrorCode::Location31034,
            format!(
                "'{what}' must evaluate to a value in the range [-32768, 32767]; value {n} is not in range"
            ),
        ));
    }
    Ok(Some(n))
}

fn nullish(v: &Bson) -> bool {
    matches!(v, Bson::Null | Bson::Undefined)
}

/// A value as a whole number that fits 64 bits (mongod's `integral64Bit`).
fn integral64(v: &Bson) -> Option<i64> {
    let from_f64 = |d: f64| {
        (d.fract() == 0.0
            && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&d))
        .then_some(d as i64)
    };
    match v {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) => from_f64(*d),
        Bson::Decimal128(d) => {
            let s = d.to_string();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(from_f64))
        }
        _ => None,
    }
}

/// Milliseconds since the epoch of a date, a timestamp or an ObjectId
/// (its creation second), as mongod's `coerceToDate`; `None` otherwise.
fn date_millis(v: &Bson) -> Option<i64> {
    match v {
        Bson::DateTime(d) => Some(d.timestamp_millis()),
        Bson::Timestamp(ts) => Some(i64::from(ts.time) * 1000),
        Bson::ObjectId(id) => Some(
            i64::from(u32::from_be_bytes(
                id.bytes()[..4].try_into().unwrap_or([0; 4]),
            )) * 1000,
        ),
        _ => None,
    }
}

fn coerce_to_date(v: &Bson) -> Result<i64> {
    date_millis(v).ok_or_else(|| {
        err(
            ErrorCode::Location16006,
            format!("can't convert from BSON type {} to Date", type_name(v)),
        )
    })
}

fn date_value(t: i64) -> Bson {
    Bson::DateTime(bson::DateTime::from_millis(t))
}

/// A value as mongod's messages print it (`{ a: "x" }`, `1.5`).
pub(super) fn shell(v: &Bson) -> String {
    match v {
        Bson::String(s) => format!("\"{s}\""),
        Bson::Binary(b) => super::bindata::shown(b),
        Bson::Document(d) => {
            let fields: Vec<String> = d
                .iter()
                .map(|(k, v)| format!("{k}: {}", shell(v)))
                .collect();
            if fields.is_empty() {
                "{}".to_owned()
            } else {
                format!("{{ {} }}", fields.join(", "))
            }
        }
        Bson::Array(items) => {
            let items: Vec<String> = items.iter().map(shell).collect();
            format!("[ {} ]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// An error of a `timezone` argument, prefixed as `$dateDiff`/`$dateTrunc`
/// prefix it.
fn context(e: CommandError, op: &str) -> CommandError {
    CommandError::new(
        e.code,
        format!(
            "{op} parameter 'timezone' value parsing failed :: caused by :: {}",
            e.message
        ),
    )
}

// ---------------------------------------------------------------------------
// Time zones

/// A time zone: UTC, a fixed offset (seconds east of UTC) or an Olson zone.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Zone {
    Utc,
    Fixed(i32),
    Named(chrono_tz::Tz),
}

impl Zone {
    /// The evaluated `timezone` argument: UTC when absent, `None` when null.
    fn from_arg(v: Option<Option<Bson>>) -> Result<Option<Zone>> {
        match v {
            None => Ok(Some(Zone::Utc)),
            Some(v) => match v.filter(|v| !nullish(v)) {
                None => Ok(None),
                Some(Bson::String(s)) => Zone::parse(&s).map(Some),
                Some(other) => Err(err(
                    ErrorCode::Location40517,
                    format!(
                        "timezone must evaluate to a string, found {}",
                        type_name(&other)
                    ),
                )),
            },
        }
    }

    fn parse(s: &str) -> Result<Zone> {
        if s == "UTC" {
            return Ok(Zone::Utc);
        }
        if let Ok(tz) = chrono_tz::Tz::from_str(s) {
            return Ok(Zone::Named(tz));
        }
        match parse_utc_offset(s) {
            Some(0) => Ok(Zone::Utc),
            Some(secs) => Ok(Zone::Fixed(secs)),
            None => Err(err(
                ErrorCode::Location40485,
                format!("unrecognized time zone identifier: \"{s}\""),
            )),
        }
    }

    /// UTC itself or a zero offset (mongod's `isUtcZone`).
    fn is_utc(self) -> bool {
        self == Zone::Utc
    }

    /// Seconds east of UTC at the instant `t` (milliseconds).
    fn offset_at(self, t: i64) -> i32 {
        match self {
            Zone::Utc => 0,
            Zone::Fixed(secs) => secs,
            Zone::Named(tz) => {
                // chrono holds years up to ±262,000; past them the offset
                // is that of the nearest instant it holds (the zone's
                // last rule), as no zone has rules out there.
                const LIMIT: i64 = 8_000_000_000_000_000;
                let t = t.clamp(-LIMIT, LIMIT);
                match chrono::DateTime::from_timestamp_millis(t) {
                    Some(dt) => tz
                        .offset_from_utc_datetime(&dt.naive_utc())
                        .fix()
                        .local_minus_utc(),
                    None => 0,
                }
            }
        }
    }

    fn offset_at_wide(self, t: i128) -> i128 {
        let t = i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX });
        i128::from(self.offset_at(t)) * 1000
    }

    /// The wall-clock time of `t` in this zone.
    fn local(self, t: i64) -> Local {
        let offset = self.offset_at(t);
        Local::from_wall(i128::from(t) + i128::from(offset) * 1000, offset)
    }

    /// The instant (milliseconds) a wall-clock time names in this zone.
    fn to_utc(self, local: i128) -> i128 {
        match self {
            Zone::Utc => local,
            Zone::Fixed(secs) => local - i128::from(secs) * 1000,
            Zone::Named(_) => {
                let day = i128::from(DAY_MS);
                let before = self.offset_at_wide(local - day);
                let after = self.offset_at_wide(local + day);
                let fits = |offset: i128| self.offset_at_wide(local - offset) == offset;
                match (fits(before), fits(after)) {
                    // An overlap: both readings exist; the earlier instant.
                    (true, true) => (local - before).min(local - after),
                    (true, false) => local - before,
                    (false, true) => local - after,
                    // A gap: the offset in force before it.
                    (false, false) => local - before,
                }
            }
        }
    }
}

/// `±HH`, `±HHMM` or `±HH:MM` as seconds east of UTC.
fn parse_utc_offset(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = |r: &[u8]| -> Option<i32> {
        r.iter()
            .all(u8::is_ascii_digit)
            .then(|| r.iter().fold(0i32, |acc, d| acc * 10 + i32::from(d - b'0')))
    };
    let (h, m) = match b.len() {
        3 => (digits(&b[1..3])?, 0),
        5 => (digits(&b[1..3])?, digits(&b[3..5])?),
        6 if b[3] == b':' => (digits(&b[1..3])?, digits(&b[4..6])?),
        _ => return None,
    };
    Some(sign * (h * 3600 + m * 60))
}

// ---------------------------------------------------------------------------
// Calendar

/// A wall-clock time, broken into its parts.
#[derive(Debug, Clone, Copy)]
struct Local {
    /// Days since 1970-01-01 on this wall clock.
    days: i64,
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    milli: i64,
    /// Seconds east of UTC in force.
    offset: i32,
}

impl Local {
    fn from_wall(wall: i128, offset: i32) -> Local {
        let day = i128::from(DAY_MS);
        // |wall| < 2^64, so the day count fits i64.
        let days = wall.div_euclid(day) as i64;
        let in_day = wall.rem_euclid(day) as i64;
        let (year, month, d) = civil_from_days(days);
        Local {
            days,
            year,
            month,
            day: d,
            hour: in_day / 3_600_000,
            minute: in_day / 60_000 % 60,
            second: in_day / 1000 % 60,
            milli: in_day % 1000,
            offset,
        }
    }

    /// 1 (Sunday) to 7 (Saturday).
    fn day_of_week(&self) -> i64 {
        (self.days + 4).rem_euclid(7) + 1
    }

    /// 1 (Monday) to 7 (Sunday).
    fn iso_day_of_week(&self) -> i64 {
        (self.days + 3).rem_euclid(7) + 1
    }

    fn day_of_year(&self) -> i64 {
        self.days - days_from_civil(self.year, 1, 1) + 1
    }

    /// Weeks starting on Sunday, 0 for the days before the year's first
    /// Sunday (`%U`).
    fn week(&self) -> i64 {
        (self.day_of_year() - self.day_of_week() + 7) / 7
    }

    /// (ISO week-numbering year, ISO week 1-53).
    fn iso_week(&self) -> (i64, i64) {
        let thursday = self.days - (self.iso_day_of_week() - 1) + 3;
        let (year, _, _) = civil_from_days(thursday);
        (year, (thursday - days_from_civil(year, 1, 1)) / 7 + 1)
    }
}

/// The day (since the epoch) of the Monday starting ISO week 1 of `year`.
fn iso_week_start(year: i64) -> i64 {
    let jan4 = days_from_civil(year, 1, 4);
    jan4 - (jan4 + 3).rem_euclid(7)
}

/// (year, month) `months` after (year, month).
fn add_months(year: i64, month: i64, months: i64) -> (i64, i64) {
    let total = year * 12 + month - 1 + months;
    (total.div_euclid(12), total.rem_euclid(12) + 1)
}

// ---------------------------------------------------------------------------
// $dateToString

const TO_STRING_SPECIFIERS: &[u8] = b"bBdGHjLmMSwuUVYzZ%";
const FROM_STRING_SPECIFIERS: &[u8] = b"bBdGHjLmMSuVYzZ%";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The evaluated `format` of `$dateToString` / `$dateFromString`: `None`
/// when the field is absent, `Some(None)` when it is null or missing (the
/// result is then null), else a string whose specifiers are all in
/// `allowed`; any other type is `not_string` naming `op`.
fn checked_format(
    format: Option<Option<Bson>>,
    op: &str,
    allowed: &[u8],
    not_string: ErrorCode,
) -> Result<Option<Option<String>>> {
    let Some(format) = format else {
        return Ok(None);
    };
    match format.filter(|v| !nullish(v)) {
        None => Ok(Some(None)),
        Some(Bson::String(s)) => {
            check_format(&s, allowed)?;
            Ok(Some(Some(s)))
        }
        Some(other) => Err(err(
            not_string,
            format!(
                "{op} requires that 'format' be a string, found: {} with value {}",
                type_name(&other),
                shell(&other)
            ),
        )),
    }
}

/// Every `%` followed by a specifier of `allowed` (18535, 18536).
fn check_format(format: &str, allowed: &[u8]) -> Result<()> {
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        match chars.next() {
            None => {
                return Err(err(
                    ErrorCode::Location18535,
                    "Unmatched '%' at end of format string",
                ));
            }
            Some(s) if s.is_ascii() && allowed.contains(&(s as u8)) => {}
            Some(s) => {
                return Err(err(
                    ErrorCode::Location18536,
                    format!("Invalid format character '%{s}' in format string"),
                ));
            }
        }
    }
    Ok(())
}

fn format_date(format: &str, t: i64, zone: Zone) -> Result<String> {
    let local = zone.local(t);
    let mut budget = Budget::value("$dateToString");
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        let before = out.len();
        if c != '%' {
            out.push(c);
        } else {
            // Checked by `check_format`: a specifier follows.
            let spec = chars.next().unwrap_or('%');
            match spec {
                '%' => out.push('%'),
                'Y' => padded(&mut out, local.year, 4)?,
                'm' => padded(&mut out, local.month, 2)?,
                'd' => padded(&mut out, local.day, 2)?,
                'H' => padded(&mut out, local.hour, 2)?,
                'M' => padded(&mut out, local.minute, 2)?,
                'S' => padded(&mut out, local.second, 2)?,
                'L' => padded(&mut out, local.milli, 3)?,
                'j' => padded(&mut out, local.day_of_year(), 3)?,
                'w' => padded(&mut out, local.day_of_week(), 1)?,
                'U' => padded(&mut out, local.week(), 2)?,
                'G' => padded(&mut out, local.iso_week().0, 4)?,
                'V' => padded(&mut out, local.iso_week().1, 2)?,
                'u' => padded(&mut out, local.iso_day_of_week(), 1)?,
                'b' | 'B' => {
                    let name = MONTHS[(local.month - 1).clamp(0, 11) as usize];
                    out.push_str(if spec == 'b' { &name[..3] } else { name });
                }
                'z' => {
                    let offset = local.offset;
                    out.push(if offset < 0 { '-' } else { '+' });
                    padded(&mut out, i64::from((offset / 3600).abs()), 2)?;
                    padded(&mut out, i64::from((offset / 60).abs() % 60), 2)?;
                }
                'Z' => {
                    let _ = write!(out, "{}", local.offset / 60);
                }
                _ => {}
            }
        }
        budget.charge(out.len() - before)?;
    }
    Ok(out)
}

/// `n` zero-padded to `width`; mongod formats only 0 to 9999 (18537).
fn padded(out: &mut String, n: i64, width: usize) -> Result<()> {
    if !(0..=9999).contains(&n) {
        return Err(err(
            ErrorCode::Location18537,
            format!(
                "Could not convert date to string: date component was outside the supported range of 0-9999: {n}"
            ),
        ));
    }
    let _ = write!(out, "{n:0width$}");
    Ok(())
}

// ---------------------------------------------------------------------------
// $dateFromString

/// A zone written in the date string itself.
#[derive(Debug, Clone, PartialEq)]
enum StringZone {
    /// `+05:30`: seconds east of UTC.
    Offset(i32),
    /// `Z`, `UTC`, `GMT`: an abbreviation (all UTC).
    Abbr(String),
}

/// What a date string gave; `None` for what it left out.
#[derive(Debug, Default)]
struct Fields {
    year: Option<i64>,
    month: Option<i64>,
    day: Option<i64>,
    hour: Option<i64>,
    minute: Option<i64>,
    second: Option<i64>,
    micro: Option<i64>,
    day_of_year: Option<i64>,
    iso_year: Option<i64>,
    iso_week: Option<i64>,
    iso_day: Option<i64>,
    zone: Option<StringZone>,
}

/// A parse error: where, and timelib's words for it.
struct ParseError {
    at: usize,
    message: &'static str,
}

fn from_string(s: &str, format: Option<&str>, zone: Zone) -> Result<i64> {
    let fields = match format {
        Some(f) => parse_with_format(s, f),
        None => parse_free(s),
    };
    let conversion = |m: String| err(ErrorCode::ConversionFailure, m);
    let parse_error = |e: ParseError| {
        // `at` may fall inside a multi-byte character: then none is named.
        let c = s
            .get(e.at..)
            .and_then(|r| r.chars().next())
            .map(String::from)
            .unwrap_or_default();
        conversion(format!(
            "Error parsing date string '{s}'; {}: {} '{c}'",
            e.at, e.message
        ))
    };
    let mut f = fields.map_err(parse_error)?;
    if let (Some(y), Some(w)) = (f.iso_year, f.iso_week) {
        let (year, month, day) =
            civil_from_days(iso_week_start(y) + (w - 1) * 7 + f.iso_day.unwrap_or(1) - 1);
        (f.year, f.month, f.day) = (Some(year), Some(month), Some(day));
    }
    if let (Some(y), Some(doy)) = (f.year, f.day_of_year) {
        let (year, month, day) = civil_from_days(days_from_civil(y, 1, 1) + doy - 1);
        (f.year, f.month, f.day) = (Some(year), Some(month), Some(day));
    }
    let any_time =
        f.hour.is_some() || f.minute.is_some() || f.second.is_some() || f.micro.is_some();
    if any_time {
        f.hour.get_or_insert(0);
        f.minute.get_or_insert(0);
        f.second.get_or_insert(0);
    } else {
        (f.hour, f.minute, f.second) = (Some(0), Some(0), Some(0));
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (f.year, f.month, f.day, f.hour, f.minute, f.second)
    else {
        return Err(conversion(format!(
            "an incomplete date/time string has been found, with elements missing: \"{s}\""
        )));
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(parse_error(ParseError {
            at: s.len(),
            message: "The parsed date was invalid",
        }));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(parse_error(ParseError {
            at: s.len(),
            message: "The parsed time was invalid",
        }));
    }
    if !zone.is_utc() {
        match &f.zone {
            None => {}
            Some(StringZone::Offset(_)) => {
                return Err(conversion(
                    "you cannot pass in a date/time string with GMT offset together with a timezone argument".to_owned(),
                ));
            }
            Some(StringZone::Abbr(a)) => {
                return Err(conversion(format!(
                    "you cannot pass in a date/time string with time zone information ('{a}') together with a timezone argument"
                )));
            }
        }
    }
    let local = i128::from(days_from_civil(year, month, day)) * i128::from(DAY_MS)
        + i128::from(hour * 3_600_000 + minute * 60_000 + second * 1000)
        + i128::from(f.micro.unwrap_or(0) / 1000);
    let t = match f.zone {
        Some(StringZone::Offset(secs)) => local - i128::from(secs) * 1000,
        Some(StringZone::Abbr(_)) => local,
        None => zone.to_utc(local),
    };
    i64::try_from(t).map_err(|_| {
        parse_error(ParseError {
            at: 0,
            message: "The parsed date was invalid",
        })
    })
}

/// A cursor over a date string.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|c| c == b' ' || c == b'\t') {
            self.at += 1;
        }
    }

    /// 1 to `max` digits; `None` (nothing read) when there is no digit.
    fn number(&mut self, max: usize) -> Option<i64> {
        let start = self.at;
        let mut n = 0i64;
        while self.at - start < max
            && let Some(c) = self.peek().filter(u8::is_ascii_digit)
        {
            n = n * 10 + i64::from(c - b'0');
            self.at += 1;
        }
        (self.at > start).then_some(n)
    }

    /// Exactly `len` digits, or nothing read.
    fn exact(&mut self, len: usize) -> Option<i64> {
        let start = self.at;
        match self.number(len) {
            Some(n) if self.at - start == len => Some(n),
            _ => {
                self.at = start;
                None
            }
        }
    }

    fn word(&mut self) -> &str {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.at += 1;
        }
        std::str::from_utf8(&self.s[start..self.at]).unwrap_or("")
    }

    fn fail(&self, message: &'static str) -> ParseError {
        ParseError {
            at: self.at,
            message,
        }
    }

    /// A month's name, full or its first three letters, any case.
    fn month_name(&mut self) -> Option<i64> {
        let start = self.at;
        let word = self.word().to_ascii_lowercase();
        let found = MONTHS.iter().position(|m| {
            let m = m.to_ascii_lowercase();
            word == m
                || (word.len() == 3 && m.starts_with(&word))
                || (word == "sept" && m == "september")
        });
        if found.is_none() {
            self.at = start;
        }
        found.map(|i| i as i64 + 1)
    }

    /// `Z`, `UTC`, `GMT`, `±HH`, `±HHMM`, `±HH:MM`.
    fn zone(&mut self) -> Result<Option<StringZone>, ParseError> {
        match self.peek() {
            Some(sign @ (b'+' | b'-')) => {
                self.at += 1;
                let Some(h) = self.exact(2).or_else(|| self.number(1)) else {
                    return Err(self.fail("The timezone could not be found in the database"));
                };
                let m = if self.eat(b':') {
                    self.exact(2).ok_or_else(|| {
                        self.fail("The timezone could not be found in the database")
                    })?
                } else {
                    self.exact(2).unwrap_or(0)
                };
                let secs = (h * 3600 + m * 60) as i32;
                Ok(Some(StringZone::Offset(if sign == b'-' {
                    -secs
                } else {
                    secs
                })))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.at;
                let word = self.word().to_ascii_uppercase();
                if self.peek() == Some(b'/') || self.peek() == Some(b'_') {
                    self.at = start;
                    return Err(self.fail(
                        "passing a time zone identifier as part of the string is not allowed",
                    ));
                }
                match word.as_str() {
                    "Z" | "UTC" | "GMT" => Ok(Some(StringZone::Abbr(word))),
                    _ => {
                        self.at = start;
                        Err(self.fail("The timezone could not be found in the database"))
                    }
                }
            }
            _ => Ok(None),
        }
    }

    /// `HH:MM[:SS[.fraction]]`.
    fn time(&mut self, f: &mut Fields) -> Result<(), ParseError> {
        let h = self
            .number(2)
            .ok_or_else(|| self.fail("Unexpected character"))?;
        if !self.eat(b':') {
            return Err(self.fail("Unexpected character"));
        }
        let m = self
            .exact(2)
            .ok_or_else(|| self.fail("Unexpected character"))?;
        (f.hour, f.minute, f.second) = (Some(h), Some(m), Some(0));
        if self.eat(b':') {
            f.second = Some(
                self.exact(2)
                    .ok_or_else(|| self.fail("Unexpected character"))?,
            );
            if self.eat(b'.') || self.eat(b',') {
                let start = self.at;
                let mut micro = 0i64;
                while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                    if self.at - start < 6 {
                        micro = micro * 10 + i64::from(c - b'0');
                    }
                    self.at += 1;
                }
                let digits = (self.at - start).min(6);
                if digits == 0 {
                    return Err(self.fail("Unexpected character"));
                }
                f.micro = Some(micro * 10i64.pow((6 - digits) as u32));
            }
        }
        Ok(())
    }
}

/// The forms of a date string read without a format (see the module doc).
fn parse_free(s: &str) -> Result<Fields, ParseError> {
    let mut c = Cursor {
        s: s.as_bytes(),
        at: 0,
    };
    let mut f = Fields::default();
    c.skip_spaces();
    let start = c.at;
    if let Some(month) = c.month_name() {
        // "July 4, 2017" / "Jul 4th 2017"
        c.skip_spaces();
        f.month = Some(month);
        f.day = Some(c.number(2).ok_or_else(|| c.fail("Unexpected character"))?);
        ordinal_suffix(&mut c);
        c.eat(b',');
        c.skip_spaces();
        f.year = Some(c.exact(4).ok_or_else(|| c.fail("Unexpected character"))?);
    } else if let Some(year) = c.exact(4) {
        // "2017-07-04", "2017/07/04", "2017-07"
        f.year = Some(year);
        let sep = c.peek().filter(|b| *b == b'-' || *b == b'/');
        let Some(sep) = sep else {
            return Err(c.fail("Unexpected character"));
        };
        c.at += 1;
        f.month = Some(match c.number(2) {
            Some(m) => m,
            None => c
                .month_name()
                .ok_or_else(|| c.fail("Unexpected character"))?,
        });
        f.day = Some(if c.eat(sep) {
            c.number(2).ok_or_else(|| c.fail("Unexpected character"))?
        } else {
            1
        });
    } else if let Some(first) = c.number(2) {
        c.skip_spaces();
        if let Some(month) = c.month_name() {
            // "4 July 2017"
            (f.day, f.month) = (Some(first), Some(month));
            c.skip_spaces();
            f.year = Some(c.exact(4).ok_or_else(|| c.fail("Unexpected character"))?);
        } else if c.eat(b'/') {
            // "07/04/2017" (month first, as timelib reads it)
            f.month = Some(first);
            f.day = Some(c.number(2).ok_or_else(|| c.fail("Unexpected character"))?);
            if !c.eat(b'/') {
                return Err(c.fail("Unexpected character"));
            }
            f.year = Some(c.exact(4).ok_or_else(|| c.fail("Unexpected character"))?);
        } else if c.peek() == Some(b':') {
            // A time alone: read, then refused as incomplete.
            c.at = start;
            c.time(&mut f)?;
        } else {
            c.at = start;
            return Err(c.fail("Unexpected character"));
        }
    } else if c.at < s.len() {
        if c.zone().is_err() {
            return Err(c.fail("The timezone could not be found in the database"));
        }
        return Err(c.fail("Unexpected character"));
    }
    // A time after `T` or spaces, then a zone.
    if c.eat(b'T') || c.eat(b't') {
        c.time(&mut f)?;
    } else {
        c.skip_spaces();
        if c.peek().is_some_and(|b| b.is_ascii_digit()) {
            c.time(&mut f)?;
        }
    }
    c.skip_spaces();
    f.zone = c.zone()?;
    c.skip_spaces();
    if c.at < s.len() {
        return Err(c.fail("Unexpected character"));
    }
    Ok(f)
}

fn ordinal_suffix(c: &mut Cursor) {
    let start = c.at;
    let word = c.word().to_ascii_lowercase();
    if !matches!(word.as_str(), "st" | "nd" | "rd" | "th") {
        c.at = start;
    }
}

/// A date string read by a `format` of `%` specifiers (checked already).
fn parse_with_format(s: &str, format: &str) -> Result<Fields, ParseError> {
    let mut c = Cursor {
        s: s.as_bytes(),
        at: 0,
    };
    let mut f = Fields::default();
    let mut spec = format.bytes();
    while let Some(b) = spec.next() {
        if c.at >= s.len() {
            return Err(c.fail("Not enough data available to satisfy format"));
        }
        if b != b'%' {
            if !c.eat(b) {
                return Err(c.fail("The format separator does not match"));
            }
            continue;
        }
        let Some(s) = spec.next() else {
            break;
        };
        let number = |c: &mut Cursor, max, message| c.number(max).ok_or_else(|| c.fail(message));
        match s {
            b'%' => {
                if !c.eat(b'%') {
                    return Err(c.fail("The escaped character could not be found"));
                }
            }
            b'Y' => f.year = Some(number(&mut c, 4, "A four digit year could not be found")?),
            b'm' => f.month = Some(number(&mut c, 2, "A two digit month could not be found")?),
            b'd' => f.day = Some(number(&mut c, 2, "A two digit day could not be found")?),
            b'H' => f.hour = Some(number(&mut c, 2, "A two digit hour could not be found")?),
            b'M' => f.minute = Some(number(&mut c, 2, "A two digit minute could not be found")?),
            b'S' => f.second = Some(number(&mut c, 2, "A two digit second could not be found")?),
            // Milliseconds as written: "4" is 4 ms, as timelib reads it.
            b'L' => {
                let n = number(&mut c, 3, "A three digit millisecond could not be found")?;
                f.micro = Some(n * 1000);
            }
            b'j' => {
                f.day_of_year = Some(number(
                    &mut c,
                    3,
                    "A three digit day-of-year could not be found",
                )?);
            }
            b'G' => {
                f.iso_year = Some(number(
                    &mut c,
                    4,
                    "A four digit ISO year could not be found",
                )?)
            }
            b'V' => {
                f.iso_week = Some(number(
                    &mut c,
                    2,
                    "A two digit ISO week could not be found",
                )?)
            }
            b'u' => {
                f.iso_day = Some(number(
                    &mut c,
                    1,
                    "A single digit day of week could not be found",
                )?);
            }
            b'b' | b'B' => {
                f.month = Some(
                    c.month_name()
                        .ok_or_else(|| c.fail("A textual month could not be found"))?,
                );
            }
            b'z' => {
                f.zone =
                    Some(c.zone()?.ok_or_else(|| {
                        c.fail("The timezone could not be found in the database")
                    })?);
            }
            b'Z' => {
                let sign = if c.eat(b'-') {
                    -1
                } else {
                    c.eat(b'+');
                    1
                };
                let minutes = number(&mut c, 4, "The timezone could not be found in the database")?;
                f.zone = Some(StringZone::Offset((sign * minutes * 60) as i32));
            }
            _ => return Err(c.fail("The format separator does not match")),
        }
    }
    if c.at < s.len() {
        return Err(c.fail("Trailing data"));
    }
    Ok(f)
}

// ---------------------------------------------------------------------------
// $dateAdd, $dateDiff, $dateTrunc

/// A time unit, as `aggregate::time_unit` parses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    /// `unit`: a string (5439013) naming a unit (FailedToParse).
    fn parse(v: &Bson, op: &str) -> Result<Unit> {
        if !matches!(v, Bson::String(_)) {
            return Err(err(
                ErrorCode::Location5439013,
                format!(
                    "{op} requires 'unit' to be a string, but got {}",
                    type_name(v)
                ),
            ));
        }
        let unit = TimeUnit::parse(v, "unit").map_err(|e| {
            CommandError::new(
                e.code,
                format!(
                    "{op} parameter 'unit' value parsing failed :: caused by :: {}",
                    e.message
                ),
            )
        })?;
        Ok(match unit {
            TimeUnit::Fixed(1) => Unit::Millisecond,
            TimeUnit::Fixed(1_000) => Unit::Second,
            TimeUnit::Fixed(60_000) => Unit::Minute,
            TimeUnit::Fixed(3_600_000) => Unit::Hour,
            TimeUnit::Fixed(86_400_000) => Unit::Day,
            TimeUnit::Fixed(_) => Unit::Week,
            TimeUnit::Months(1) => Unit::Month,
            TimeUnit::Months(3) => Unit::Quarter,
            TimeUnit::Months(_) => Unit::Year,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Millisecond => "millisecond",
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Quarter => "quarter",
            Unit::Year => "year",
        }
    }

    /// Milliseconds per unit, for the units of fixed length.
    fn fixed_ms(self) -> Option<i64> {
        Some(match self {
            Unit::Millisecond => 1,
            Unit::Second => 1_000,
            Unit::Minute => 60_000,
            Unit::Hour => 3_600_000,
            Unit::Day => DAY_MS,
            Unit::Week => 7 * DAY_MS,
            _ => return None,
        })
    }

    /// Months per unit, for the calendar units.
    fn months(self) -> Option<i64> {
        match self {
            Unit::Month => Some(1),
            Unit::Quarter => Some(3),
            Unit::Year => Some(12),
            _ => None,
        }
    }
}

/// `startOfWeek`, read only for unit week: Sunday (7) unless given; `None`
/// when it is null. Days are 1 (Monday) to 7 (Sunday).
fn week_start(
    unit: Unit,
    e: &Option<Expr>,
    op: &str,
    ev: &dyn Fn(&Expr) -> Result<Option<Bson>>,
) -> Result<Option<i64>> {
    let (Unit::Week, Some(e)) = (unit, e) else {
        return Ok(Some(7));
    };
    let Some(v) = ev(e)?.filter(|v| !nullish(v)) else {
        return Ok(None);
    };
    let Bson::String(s) = &v else {
        return Err(err(
            ErrorCode::Location5439015,
            format!(
                "{op} requires 'startOfWeek' to be a string, but got {}",
                type_name(&v)
            ),
        ));
    };
    const DAYS: [(&str, &str); 7] = [
        ("monday", "mon"),
        ("tuesday", "tue"),
        ("wednesday", "wed"),
        ("thursday", "thu"),
        ("friday", "fri"),
        ("saturday", "sat"),
        ("sunday", "sun"),
    ];
    let lower = s.to_lowercase();
    match DAYS
        .iter()
        .position(|(long, short)| lower == *long || lower == *short)
    {
        Some(i) => Ok(Some(i as i64 + 1)),
        None => Err(err(
            ErrorCode::Location5439016,
            format!(
                "{op} parameter 'startOfWeek' value cannot be recognized as a day of a week: {s}"
            ),
        )),
    }
}

/// `$dateTrunc`'s `binSize`: a whole number (5439017) above 0 (5439018).
fn bin_size_of(v: &Bson) -> Result<i64> {
    let n = integral64(v).ok_or_else(|| {
        err(
            ErrorCode::Location5439017,
            format!(
                "$dateTrunc requires 'binSize' to be a 64-bit integer, but got value '{}' of type {}",
                shell(v),
                type_name(v)
            ),
        )
    })?;
    if n <= 0 {
        return Err(err(
            ErrorCode::Location5439018,
            format!("$dateTrunc requires 'binSize' to be greater than 0, but got value {n}"),
        ));
    }
    Ok(n)
}

fn add_overflowed() -> CommandError {
    err(ErrorCode::Location5166406, "dateAdd overflowed")
}

/// `t` plus `amount` units in `zone`. Days and longer move the wall clock
/// (a day across a DST change keeps the hour); shorter units in an Olson
/// zone move the instant. A month added to the 29th-31st lands on the new
/// month's last day at most.
fn date_add(t: i64, unit: Unit, amount: i64, zone: Zone) -> Result<i64> {
    if unit == Unit::Millisecond {
        return t.checked_add(amount).ok_or_else(add_overflowed);
    }
    // mongod's bound: past it no date is reachable.
    let max_days = (u64::MAX / DAY_MS as u64) as i64 + 1;
    let max_years = max_days / 365 + 1;
    let max = match unit {
        Unit::Year => max_years,
        Unit::Quarter => max_years * 4,
        Unit::Month => max_years * 12,
        Unit::Week => max_days / 7,
        Unit::Day => max_days,
        Unit::Hour => max_days * 24,
        Unit::Minute => max_days * 24 * 60,
        _ => max_days * 24 * 60 * 60,
    };
    if amount <= -max || amount >= max {
        return Err(err(
            ErrorCode::Location5976500,
            format!(
                "invalid dateAdd 'amount' parameter value: {amount} {}",
                unit.name()
            ),
        ));
    }
    let local = zone.local(t);
    let (mut unit, mut amount) = (unit, amount);
    if let Some(per) = unit.months()
        && (local.day > 28 || local.offset != 0)
    {
        let (year, month) = add_months(local.year, local.month, amount * per);
        let day = local.day.min(days_in_month(year, month));
        (unit, amount) = (Unit::Day, days_from_civil(year, month, day) - local.days);
    }
    let wall_clock = !matches!(zone, Zone::Named(_))
        || (amount != 0
            && matches!(
                unit,
                Unit::Day | Unit::Week | Unit::Month | Unit::Quarter | Unit::Year
            ));
    let result = if wall_clock {
        let wall = i128::from(t) + i128::from(local.offset) * 1000;
        let moved = match (unit.months(), unit.fixed_ms()) {
            (Some(per), _) => {
                let (year, month) = add_months(local.year, local.month, amount * per);
                let days = days_from_civil(year, month, local.day);
                wall + (i128::from(days) - i128::from(local.days)) * i128::from(DAY_MS)
            }
            (None, Some(ms)) => wall + i128::from(amount) * i128::from(ms),
            (None, None) => wall,
        };
        zone.to_utc(moved)
    } else {
        i128::from(t) + i128::from(amount) * i128::from(unit.fixed_ms().unwrap_or(0))
    };
    i64::try_from(result).map_err(|_| add_overflowed())
}

/// Whole `unit` boundaries crossed from `start` to `end`, on `zone`'s wall
/// clock (weeks start on `week_start`, 1 = Monday).
fn date_diff(start: i64, end: i64, unit: Unit, zone: Zone, week_start: i64) -> Result<i64> {
    if unit == Unit::Millisecond {
        return end
            .checked_sub(start)
            .ok_or_else(|| err(ErrorCode::Location5166308, "dateDiff overflowed"));
    }
    let (a, b) = (zone.local(start), zone.local(end));
    Ok(calendar_diff(&a, &b, unit, week_start))
}

/// The unit counts between two wall-clock times, as mongod counts them
/// (hours and shorter corrected by the change of UTC offset between them).
fn calendar_diff(a: &Local, b: &Local, unit: Unit, week_start: i64) -> i64 {
    let days = b.days - a.days;
    let offset_change = i64::from(a.offset) - i64::from(b.offset);
    let hours = b.hour - a.hour + days * 24;
    let minutes = b.minute - a.minute + hours * 60;
    match unit {
        Unit::Year => b.year - a.year,
        Unit::Quarter => (b.month - 1) / 3 - (a.month - 1) / 3 + (b.year - a.year) * 4,
        Unit::Month => b.month - a.month + (b.year - a.year) * 12,
        Unit::Week => {
            let weekday = |t: &Local| (t.iso_day_of_week() - week_start + 7) % 7;
            (days + weekday(a) - weekday(b)) / 7
        }
        Unit::Day => days,
        Unit::Hour => hours + offset_change / 3600,
        Unit::Minute => minutes + offset_change / 60,
        _ => b.second - a.second + minutes * 60 + offset_change,
    }
}

/// The start of the `bin_size`-unit bin `t` falls in, bins counted from
/// 2000-01-01 on `zone`'s wall clock (from the first `week_start` day
/// after it for weeks).
fn date_trunc(t: i64, unit: Unit, bin_size: i64, zone: Zone, week_start: i64) -> Result<i64> {
    let overflowed = |code| err(code, "dateTrunc overflowed");
    let mut reference = TRUNC_REFERENCE_MS - i64::from(zone.offset_at(TRUNC_REFERENCE_MS)) * 1000;
    if let Some(ms) = unit
        .fixed_ms()
        .filter(|_| !matches!(unit, Unit::Day | Unit::Week))
    {
        let bin = bin_size
            .checked_mul(ms)
            .ok_or_else(|| overflowed(ErrorCode::Location5439002))?;
        let shifted = t
            .checked_sub(reference)
            .ok_or_else(|| overflowed(ErrorCode::Location5439000))?;
        return t
            .checked_sub(shifted.rem_euclid(bin))
            .ok_or_else(|| overflowed(ErrorCode::Location5439001));
    }
    if bin_size > 100_000_000_000 {
        return Err(err(
            ErrorCode::Location5439006,
            "dateTrunc unsupported binSize value",
        ));
    }
    let mut day_of_month = 1;
    if unit == Unit::Week {
        // 2000-01-01 was a Saturday (6).
        let shift = (7 - (6 - week_start + 7) % 7) % 7;
        reference += shift * DAY_MS;
        day_of_month += shift;
    }
    let reference_days = days_from_civil(2000, 1, day_of_month);
    let anchor = Local {
        days: reference_days,
        year: 2000,
        month: 1,
        day: day_of_month,
        hour: 0,
        minute: 0,
        second: 0,
        milli: 0,
        offset: 0,
    };
    let distance = calendar_diff(&anchor, &zone.local(t), unit, week_start);
    let lower = distance
        .checked_sub(distance.rem_euclid(bin_size))
        .ok_or_else(|| overflowed(ErrorCode::Location5439004))?;
    date_add(reference, unit, lower, zone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc};

    fn at(s: &str) -> Bson {
        Bson::DateTime(bson::DateTime::parse_rfc3339_str(s).unwrap())
    }

    fn ms(t: i64) -> Bson {
        Bson::DateTime(bson::DateTime::from_millis(t))
    }

    fn eval(e: Bson) -> Result<Option<Bson>> {
        Expr::parse(&e)?.eval(&doc! {})
    }

    fn ok(e: Bson) -> Bson {
        match eval(e.clone()) {
            Ok(Some(v)) => v,
            other => panic!("{e}: {other:?}"),
        }
    }

    fn code(e: Bson) -> i32 {
        match eval(e.clone()) {
            Err(err) => err.code.code(),
            Ok(v) => panic!("{e}: expected an error, got {v:?}"),
        }
    }

    /// (expression, expected value) rows.
    fn table(rows: Vec<(Bson, Bson)>) {
        for (e, want) in rows {
            assert_eq!(ok(e.clone()), want, "{e}");
        }
    }

    /// (expression, expected error code) rows.
    fn errors(rows: Vec<(Bson, i32)>) {
        for (e, want) in rows {
            assert_eq!(code(e.clone()), want, "{e}");
        }
    }

    #[test]
    fn parts_of_a_date() {
        // The manual's example date: a Wednesday.
        let d = at("2014-01-01T08:15:39.736Z");
        table(vec![
            (bson!({"$year": d.clone()}), bson!(2014)),
            (bson!({"$month": d.clone()}), bson!(1)),
            (bson!({"$dayOfMonth": d.clone()}), bson!(1)),
            (bson!({"$hour": d.clone()}), bson!(8)),
            (bson!({"$minute": d.clone()}), bson!(15)),
            (bson!({"$second": d.clone()}), bson!(39)),
            (bson!({"$millisecond": d.clone()}), bson!(736)),
            (bson!({"$dayOfYear": d.clone()}), bson!(1)),
            (bson!({"$dayOfWeek": d.clone()}), bson!(4)),
            (bson!({"$week": d.clone()}), bson!(0)),
            (bson!({"$isoDayOfWeek": d.clone()}), bson!(3)),
            (bson!({"$isoWeek": d.clone()}), bson!(1)),
            (bson!({"$isoWeekYear": d.clone()}), Bson::Int64(2014)),
            // [date] and {date, timezone} forms.
            (bson!({"$year": [d.clone()]}), bson!(2014)),
            (
                bson!({"$hour": {"date": d.clone(), "timezone": "America/New_York"}}),
                bson!(3),
            ),
            (
                bson!({"$hour": {"date": d.clone(), "timezone": "+04:45"}}),
                bson!(13),
            ),
            (
                bson!({"$minute": {"date": d.clone(), "timezone": "+0445"}}),
                bson!(0),
            ),
            (
                bson!({"$hour": {"date": d.clone(), "timezone": "-03"}}),
                bson!(5),
            ),
            (
                bson!({"$year": {"date": d.clone(), "timezone": "-09:00"}}),
                bson!(2013),
            ),
            // 2016-01-01 is in ISO week 53 of 2015.
            (bson!({"$isoWeek": at("2016-01-01T00:00:00Z")}), bson!(53)),
            (
                bson!({"$isoWeekYear": at("2016-01-01T00:00:00Z")}),
                Bson::Int64(2015),
            ),
            (
                bson!({"$isoDayOfWeek": at("2016-01-03T00:00:00Z")}),
                bson!(7),
            ),
            (bson!({"$week": at("2016-01-03T00:00:00Z")}), bson!(1)),
            (
                bson!({"$dayOfYear": at("2016-12-31T00:00:00Z")}),
                bson!(366),
            ),
            // Before the epoch: milliseconds count up within the second.
            (bson!({"$millisecond": ms(-1)}), bson!(999)),
            (bson!({"$second": ms(-1)}), bson!(59)),
            (bson!({"$year": ms(-1)}), bson!(1969)),
            // Timestamps and ObjectIds are dates too.
            (
                bson!({"$year": Bson::Timestamp(bson::Timestamp { time: 1_600_000_000, increment: 1 })}),
                bson!(2020),
            ),
            (
                bson!({"$year": Bson::ObjectId(bson::oid::ObjectId::parse_str("5f5e1000aaaaaaaaaaaaaaaa").unwrap())}),
                bson!(2020),
            ),
            // Null and missing answer null.
            (bson!({"$year": null}), Bson::Null),
            (bson!({"$year": "$missing"}), Bson::Null),
            (
                bson!({"$year": {"date": d.clone(), "timezone": null}}),
                Bson::Null,
            ),
            // The date's own expression: an object whose first key is an operator.
            (
                bson!({"$month": {"$dateFromParts": {"year": 2020, "month": 7}}}),
                bson!(7),
            ),
        ]);
        errors(vec![
            (bson!({"$year": "2014"}), 16006),
            (bson!({"$year": 2014}), 16006),
            (bson!({"$year": [d.clone(), d.clone()]}), 40536),
            (bson!({"$year": []}), 40536),
            (bson!({"$year": {"date": d.clone(), "zone": "UTC"}}), 40535),
            (bson!({"$year": {"timezone": "UTC"}}), 40539),
            (bson!({"$year": {}}), 40539),
            (bson!({"$year": {"date": d.clone(), "timezone": 5}}), 40517),
            (
                bson!({"$year": {"date": d.clone(), "timezone": "Mars/Olympus"}}),
                40485,
            ),
            (
                bson!({"$year": {"date": d.clone(), "timezone": "+4:00"}}),
                40485,
            ),
            (
                bson!({"$year": {"date": d.clone(), "timezone": "america/new_york"}}),
                40485,
            ),
        ]);
        let e = eval(bson!({"$year": {"timezone": "UTC"}})).unwrap_err();
        assert_eq!(
            e.message,
            "missing 'date' argument to $year, provided: $year: { timezone: \"UTC\" }"
        );
    }

    #[test]
    fn parts_at_the_ends_of_time() {
        for t in [i64::MIN, i64::MAX, i64::MIN + 1, 0] {
            for tz in [
                "UTC",
                "America/New_York",
                "+14:00",
                "-12:00",
                "Asia/Kathmandu",
            ] {
                for op in ["$year", "$isoWeekYear", "$week", "$dayOfYear", "$isoWeek"] {
                    let e = bson!({op: {"date": ms(t), "timezone": tz}});
                    assert!(matches!(eval(e.clone()), Ok(Some(_))), "{e}");
                }
                let e = bson!({"$dateToParts": {"date": ms(t), "timezone": tz, "iso8601": true}});
                assert!(matches!(eval(e.clone()), Ok(Some(_))), "{e}");
            }
        }
        assert_eq!(ok(bson!({"$year": ms(i64::MAX)})), bson!(292_278_994));
        assert_eq!(ok(bson!({"$year": ms(i64::MIN)})), bson!(-292_275_055));
    }

    #[test]
    fn date_to_string() {
        let d = at("2014-01-01T08:15:39.736Z");
        let ny = "America/New_York";
        table(vec![
            (
                bson!({"$dateToString": {"format": "%Y-%m-%d", "date": d.clone()}}),
                bson!("2014-01-01"),
            ),
            (
                bson!({"$dateToString": {"format": "%H:%M:%S:%L%z", "date": d.clone(), "timezone": ny}}),
                bson!("03:15:39:736-0500"),
            ),
            (
                bson!({"$dateToString": {"format": "%Z", "date": d.clone(), "timezone": ny}}),
                bson!("-300"),
            ),
            (
                bson!({"$dateToString": {"format": "%Z", "date": d.clone(), "timezone": "+05:30"}}),
                bson!("330"),
            ),
            (
                bson!({"$dateToString": {"format": "%z", "date": d.clone(), "timezone": "+05:30"}}),
                bson!("+0530"),
            ),
            (
                bson!({"$dateToString": {"format": "%z", "date": d.clone()}}),
                bson!("+0000"),
            ),
            (
                bson!({"$dateToString": {"format": "%j %w %u %U %V %G", "date": d.clone()}}),
                bson!("001 4 3 00 01 2014"),
            ),
            (
                bson!({"$dateToString": {"format": "%b %B %%", "date": d.clone()}}),
                bson!("Jan January %"),
            ),
            (
                bson!({"$dateToString": {"format": "%G-W%V", "date": at("2016-01-01T00:00:00Z")}}),
                bson!("2015-W53"),
            ),
            // The default format: with a Z in UTC only.
            (
                bson!({"$dateToString": {"date": d.clone()}}),
                bson!("2014-01-01T08:15:39.736Z"),
            ),
            (
                bson!({"$dateToString": {"date": d.clone(), "timezone": "+04:30"}}),
                bson!("2014-01-01T12:45:39.736"),
            ),
            (
                bson!({"$dateToString": {"date": d.clone(), "timezone": "+00:00"}}),
                bson!("2014-01-01T08:15:39.736Z"),
            ),
            (
                bson!({"$dateToString": {"date": d.clone(), "timezone": ny}}),
                bson!("2014-01-01T03:15:39.736"),
            ),
            // Summer time in New York.
            (
                bson!({"$dateToString": {"format": "%H%z", "date": at("2014-07-01T12:00:00Z"), "timezone": ny}}),
                bson!("08-0400"),
            ),
            // Before 1883 New York kept its local mean time (-4:56:02).
            (
                bson!({"$dateToString": {"format": "%H:%M:%S%z", "date": at("1850-01-01T12:00:00Z"), "timezone": ny}}),
                bson!("07:03:58-0456"),
            ),
            // onNull, and null elsewhere.
            (
                bson!({"$dateToString": {"date": null, "onNull": "none"}}),
                bson!("none"),
            ),
            (
                bson!({"$dateToString": {"date": "$missing", "onNull": "none"}}),
                bson!("none"),
            ),
            (bson!({"$dateToString": {"date": "$missing"}}), Bson::Null),
            (
                bson!({"$dateToString": {"date": d.clone(), "format": null}}),
                Bson::Null,
            ),
            (
                bson!({"$dateToString": {"date": d.clone(), "timezone": null}}),
                Bson::Null,
            ),
            (
                bson!({"$dateToString": {"format": "%Y", "date": ms(-62_135_596_800_000)}}),
                bson!("0001"),
            ),
        ]);
        // onNull evaluating to missing leaves the value missing.
        assert_eq!(
            eval(bson!({"$dateToString": {"date": null, "onNull": "$missing"}})).unwrap(),
            None
        );
        errors(vec![
            (bson!({"$dateToString": "x"}), 18629),
            (
                bson!({"$dateToString": {"date": d.clone(), "fmt": "%Y"}}),
                18534,
            ),
            (bson!({"$dateToString": {"format": "%Y"}}), 18628),
            (
                bson!({"$dateToString": {"date": d.clone(), "format": 1}}),
                18533,
            ),
            (
                bson!({"$dateToString": {"date": d.clone(), "format": "%Y%"}}),
                18535,
            ),
            (
                bson!({"$dateToString": {"date": d.clone(), "format": "%q"}}),
                18536,
            ),
            // The format is checked even when the date is null.
            (
                bson!({"$dateToString": {"date": null, "format": "%q"}}),
                18536,
            ),
            (
                bson!({"$dateToString": {"date": d.clone(), "timezone": "Nowhere"}}),
                40485,
            ),
            (bson!({"$dateToString": {"date": "x"}}), 16006),
            // Years past 9999 or before 0 do not format.
            (bson!({"$dateToString": {"date": ms(i64::MAX)}}), 18537),
            (bson!({"$dateToString": {"date": ms(i64::MIN)}}), 18537),
            (
                bson!({"$dateToString": {"date": ms(253_402_300_800_000)}}),
                18537,
            ),
        ]);
    }

    #[test]
    fn date_to_string_is_held_to_the_built_value_limit() {
        let d = at("2014-01-01T08:15:39.736Z");
        // A 1 MB format of literals builds 1 MB: fine.
        let mega = "x".repeat(1 << 20);
        let Bson::String(s) = ok(bson!({"$dateToString": {"format": mega, "date": d.clone()}}))
        else {
            panic!()
        };
        assert_eq!(s.len(), 1 << 20);
        // 100,000 %Y build 400 KB.
        let Bson::String(s) =
            ok(bson!({"$dateToString": {"format": "%Y".repeat(100_000), "date": d.clone()}}))
        else {
            panic!()
        };
        assert_eq!(s.len(), 400_000);
        // 2,500,000 %B would build 17.5 MB of "January": refused.
        let e = eval(bson!({"$dateToString": {"format": "%B".repeat(2_500_000), "date": d}}))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
    }

    #[test]
    fn date_from_string() {
        let ny = "America/New_York";
        table(vec![
            (
                bson!({"$dateFromString": {"dateString": "2017-02-08T12:10:40.787", "timezone": ny}}),
                at("2017-02-08T17:10:40.787Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-08T12:10:40.787Z"}}),
                at("2017-02-08T12:10:40.787Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-08"}}),
                at("2017-02-08T00:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-08 12:10"}}),
                at("2017-02-08T12:10:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-08T12:10:40+05:30"}}),
                at("2017-02-08T06:40:40Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-08T12:10:40 -0500"}}),
                at("2017-02-08T17:10:40Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-08T12:10:40.123456"}}),
                at("2017-02-08T12:10:40.123Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017/02/08"}}),
                at("2017-02-08T00:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "02/08/2017"}}),
                at("2017-02-08T00:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "July 4th, 2017"}}),
                at("2017-07-04T00:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "4 Jul 2017 10:00 UTC"}}),
                at("2017-07-04T10:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-07-04T10:00:00Z", "timezone": "UTC"}}),
                at("2017-07-04T10:00:00Z"),
            ),
            // With a format.
            (
                bson!({"$dateFromString": {"dateString": "15-06-2018", "format": "%d-%m-%Y"}}),
                at("2018-06-15T00:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "06-15-2018", "format": "%m-%d-%Y", "timezone": ny}}),
                at("2018-06-15T04:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2018-06-15 10:20:30.400", "format": "%Y-%m-%d %H:%M:%S.%L"}}),
                at("2018-06-15T10:20:30.400Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2018-06-15T10 +0200", "format": "%Y-%m-%dT%H %z"}}),
                at("2018-06-15T08:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2018-06-15 -120", "format": "%Y-%m-%d %Z"}}),
                at("2018-06-15T02:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2018 Jun 15", "format": "%Y %b %d"}}),
                at("2018-06-15T00:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2018 June 15 100%", "format": "%Y %B %d 100%%"}}),
                at("2018-06-15T00:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2018-166", "format": "%Y-%j"}}),
                at("2018-06-15T00:00:00Z"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2015-53-5", "format": "%G-%V-%u"}}),
                at("2016-01-01T00:00:00Z"),
            ),
            // A wall-clock time New York skips is read with the offset before the gap.
            (
                bson!({"$dateFromString": {"dateString": "2021-03-14T02:30:00", "timezone": ny}}),
                at("2021-03-14T07:30:00Z"),
            ),
            // onNull and onError.
            (
                bson!({"$dateFromString": {"dateString": null, "onNull": 0}}),
                bson!(0),
            ),
            (
                bson!({"$dateFromString": {"dateString": "$missing"}}),
                Bson::Null,
            ),
            (
                bson!({"$dateFromString": {"dateString": "20177-02-09T03:35:02.055", "onError": "bad"}}),
                bson!("bad"),
            ),
            (
                bson!({"$dateFromString": {"dateString": 5, "onError": "bad"}}),
                bson!("bad"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-30", "onError": "bad"}}),
                bson!("bad"),
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-08", "format": null}}),
                Bson::Null,
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-08", "timezone": null}}),
                Bson::Null,
            ),
        ]);
        errors(vec![
            (bson!({"$dateFromString": "2017"}), 40540),
            (
                bson!({"$dateFromString": {"dateString": "2017-01-01", "locale": "fr"}}),
                40541,
            ),
            (bson!({"$dateFromString": {"format": "%Y"}}), 40542),
            (bson!({"$dateFromString": {"dateString": 5}}), 241),
            (
                bson!({"$dateFromString": {"dateString": "2017-01-01", "format": 5}}),
                40684,
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-01-01", "format": "%w"}}),
                18536,
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-01-01", "timezone": "Nowhere"}}),
                40485,
            ),
            (
                bson!({"$dateFromString": {"dateString": "not a date"}}),
                241,
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-30"}}),
                241,
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-02-08T25:00:00"}}),
                241,
            ),
            (bson!({"$dateFromString": {"dateString": "10:00:00"}}), 241),
            (bson!({"$dateFromString": {"dateString": ""}}), 241),
            (
                bson!({"$dateFromString": {"dateString": "2017-07-04 America/New_York"}}),
                241,
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-07-04T10:00:00Z", "timezone": ny}}),
                241,
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-07-04T10:00:00+01:00", "timezone": ny}}),
                241,
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-07", "format": "%Y-%m-%d"}}),
                241,
            ),
            (
                bson!({"$dateFromString": {"dateString": "2017-07-04x", "format": "%Y-%m-%d"}}),
                241,
            ),
            (
                bson!({"$dateFromString": {"dateString": "10:20", "format": "%H:%M"}}),
                241,
            ),
            // Multi-byte characters where a digit belongs: an error, never a bad slice.
            (
                bson!({"$dateFromString": {"dateString": "2017-é7-04", "format": "%Y-%m-%d"}}),
                241,
            ),
            (bson!({"$dateFromString": {"dateString": "é2017"}}), 241),
            (
                bson!({"$dateFromString": {"dateString": "9".repeat(1 << 20)}}),
                241,
            ),
        ]);
        let e = eval(
            bson!({"$dateFromString": {"dateString": "2017-07-04T10:00:00Z", "timezone": ny}}),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "you cannot pass in a date/time string with time zone information ('Z') together with a timezone argument"
        );
        let e = eval(bson!({"$dateFromString": {"dateString": "10:00"}})).unwrap_err();
        assert_eq!(
            e.message,
            "an incomplete date/time string has been found, with elements missing: \"10:00\""
        );
    }

    #[test]
    fn date_from_parts() {
        let ny = "America/New_York";
        table(vec![
            (
                bson!({"$dateFromParts": {"year": 2017, "month": 2, "day": 8, "hour": 12}}),
                at("2017-02-08T12:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"isoWeekYear": 2017, "isoWeek": 6, "isoDayOfWeek": 3, "hour": 12}}),
                at("2017-02-08T12:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2016, "month": 12, "day": 31, "hour": 23, "minute": 46, "second": 12, "timezone": ny}}),
                at("2017-01-01T04:46:12Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2017}}),
                at("2017-01-01T00:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"isoWeekYear": 2017}}),
                at("2017-01-02T00:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2017.0, "month": Bson::Int64(2), "millisecond": 5.0}}),
                at("2017-02-01T00:00:00.005Z"),
            ),
            // Out-of-range parts carry into the next larger one.
            (
                bson!({"$dateFromParts": {"year": 2017, "month": 14, "day": 1}}),
                at("2018-02-01T00:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "month": 0, "day": 1}}),
                at("2016-12-01T00:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "month": 3, "day": 0}}),
                at("2017-02-28T00:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "month": 1, "day": 1, "hour": -1}}),
                at("2016-12-31T23:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "minute": 1500}}),
                at("2017-01-02T01:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "second": 86_400 * 365}}),
                at("2018-01-01T00:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "millisecond": -1}}),
                at("2016-12-31T23:59:59.999Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 1, "month": -32768, "day": -32768}}),
                ms(-151_141_075_200_000),
            ),
            // New York's gap (spring forward) and overlap (fall back).
            (
                bson!({"$dateFromParts": {"year": 2021, "month": 3, "day": 14, "hour": 2, "minute": 30, "timezone": ny}}),
                at("2021-03-14T07:30:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2021, "month": 11, "day": 7, "hour": 1, "minute": 30, "timezone": ny}}),
                at("2021-11-07T05:30:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2021, "month": 11, "day": 7, "hour": 2, "timezone": ny}}),
                at("2021-11-07T07:00:00Z"),
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "timezone": "+05:30"}}),
                at("2016-12-31T18:30:00Z"),
            ),
            // Null parts answer null.
            (bson!({"$dateFromParts": {"year": null}}), Bson::Null),
            (
                bson!({"$dateFromParts": {"year": 2017, "hour": "$missing"}}),
                Bson::Null,
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "timezone": null}}),
                Bson::Null,
            ),
        ]);
        errors(vec![
            (bson!({"$dateFromParts": 2017}), 40519),
            (
                bson!({"$dateFromParts": {"year": 2017, "months": 1}}),
                40518,
            ),
            (bson!({"$dateFromParts": {"month": 1}}), 40516),
            (
                bson!({"$dateFromParts": {"year": 2017, "isoWeek": 1}}),
                40489,
            ),
            (
                bson!({"$dateFromParts": {"isoWeekYear": 2017, "month": 1}}),
                40525,
            ),
            (bson!({"$dateFromParts": {"year": "2017"}}), 40515),
            (bson!({"$dateFromParts": {"year": 2017.5}}), 40515),
            (
                bson!({"$dateFromParts": {"year": 2017, "second": f64::NAN}}),
                40515,
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "second": f64::INFINITY}}),
                40515,
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "second": 1e300}}),
                40515,
            ),
            (bson!({"$dateFromParts": {"year": 0}}), 40523),
            (bson!({"$dateFromParts": {"year": 10000}}), 40523),
            (bson!({"$dateFromParts": {"isoWeekYear": 10000}}), 31095),
            (
                bson!({"$dateFromParts": {"year": 2017, "month": 32768}}),
                31034,
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "hour": -32769}}),
                31034,
            ),
            (
                bson!({"$dateFromParts": {"isoWeekYear": 2017, "isoWeek": 40000}}),
                31034,
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "timezone": 1}}),
                40517,
            ),
            (
                bson!({"$dateFromParts": {"year": 2017, "timezone": "Nowhere"}}),
                40485,
            ),
            // Seconds and milliseconds are unbounded: past a date's range is
            // an error, never an overflow.
            (
                bson!({"$dateFromParts": {"year": 9999, "second": i64::MAX}}),
                2,
            ),
            (
                bson!({"$dateFromParts": {"year": 1, "millisecond": i64::MIN}}),
                2,
            ),
        ]);
        // In range but near the ends: no overflow either.
        assert!(matches!(
            ok(bson!({"$dateFromParts": {"year": 1970, "millisecond": i64::MAX}})),
            Bson::DateTime(_)
        ));
    }

    #[test]
    fn date_to_parts() {
        let d = at("2017-01-01T01:29:09.123Z");
        table(vec![
            (
                bson!({"$dateToParts": {"date": d.clone()}}),
                bson!({"year": 2017, "month": 1, "day": 1, "hour": 1, "minute": 29, "second": 9, "millisecond": 123}),
            ),
            (
                bson!({"$dateToParts": {"date": d.clone(), "iso8601": true}}),
                bson!({"isoWeekYear": 2016, "isoWeek": 52, "isoDayOfWeek": 7, "hour": 1, "minute": 29, "second": 9, "millisecond": 123}),
            ),
            (
                bson!({"$dateToParts": {"date": d.clone(), "timezone": "America/New_York"}}),
                bson!({"year": 2016, "month": 12, "day": 31, "hour": 20, "minute": 29, "second": 9, "millisecond": 123}),
            ),
            (bson!({"$dateToParts": {"date": null}}), Bson::Null),
            (
                bson!({"$dateToParts": {"date": d.clone(), "iso8601": null}}),
                Bson::Null,
            ),
            (
                bson!({"$dateToParts": {"date": d.clone(), "timezone": null}}),
                Bson::Null,
            ),
        ]);
        errors(vec![
            (bson!({"$dateToParts": d.clone()}), 40524),
            (
                bson!({"$dateToParts": {"date": d.clone(), "iso": true}}),
                40520,
            ),
            (bson!({"$dateToParts": {"timezone": "UTC"}}), 40522),
            (
                bson!({"$dateToParts": {"date": d.clone(), "iso8601": 1}}),
                40521,
            ),
            (bson!({"$dateToParts": {"date": "x"}}), 16006),
            // The iso8601 flag is checked before the date.
            (
                bson!({"$dateToParts": {"date": null, "iso8601": "yes"}}),
                40521,
            ),
        ]);
    }

    #[test]
    fn date_add_and_subtract() {
        let ny = "America/New_York";
        table(vec![
            (
                bson!({"$dateAdd": {"startDate": at("2020-10-31T12:10:05Z"), "unit": "month", "amount": 1}}),
                at("2020-11-30T12:10:05Z"),
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2020-01-31T00:00:00Z"), "unit": "quarter", "amount": 1}}),
                at("2020-04-30T00:00:00Z"),
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2020-02-29T00:00:00Z"), "unit": "year", "amount": 1}}),
                at("2021-02-28T00:00:00Z"),
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2020-01-15T00:00:00Z"), "unit": "month", "amount": -13}}),
                at("2018-12-15T00:00:00Z"),
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2020-01-15T00:00:00Z"), "unit": "week", "amount": 2}}),
                at("2020-01-29T00:00:00Z"),
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2020-01-15T00:00:00Z"), "unit": "millisecond", "amount": 1.0}}),
                at("2020-01-15T00:00:00.001Z"),
            ),
            (
                bson!({"$dateSubtract": {"startDate": at("2021-03-31T00:00:00Z"), "unit": "month", "amount": 1}}),
                at("2021-02-28T00:00:00Z"),
            ),
            (
                bson!({"$dateSubtract": {"startDate": at("2021-03-31T00:00:00Z"), "unit": "hour", "amount": Bson::Int64(25)}}),
                at("2021-03-29T23:00:00Z"),
            ),
            // A day across New York's spring-forward keeps the wall-clock hour,
            // an hour is an hour.
            (
                bson!({"$dateAdd": {"startDate": at("2021-03-13T12:00:00Z"), "unit": "day", "amount": 1, "timezone": ny}}),
                at("2021-03-14T11:00:00Z"),
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-03-13T12:00:00Z"), "unit": "day", "amount": 1}}),
                at("2021-03-14T12:00:00Z"),
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2020-11-01T05:50:02Z"), "unit": "hour", "amount": 1, "timezone": ny}}),
                at("2020-11-01T06:50:02Z"),
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-02-14T12:00:00Z"), "unit": "month", "amount": 1, "timezone": ny}}),
                at("2021-03-14T11:00:00Z"),
            ),
            // Into the gap: 02:30 is read as 03:30 daylight time.
            (
                bson!({"$dateAdd": {"startDate": at("2021-03-13T07:30:00Z"), "unit": "day", "amount": 1, "timezone": ny}}),
                at("2021-03-14T07:30:00Z"),
            ),
            // The month is the zone's: Jan 31 evening in New York is Feb 1 in UTC.
            (
                bson!({"$dateAdd": {"startDate": at("2021-02-01T03:00:00Z"), "unit": "month", "amount": 1, "timezone": ny}}),
                at("2021-03-01T03:00:00Z"),
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-02-01T03:00:00Z"), "unit": "month", "amount": 1, "timezone": "-05:00"}}),
                at("2021-03-01T03:00:00Z"),
            ),
            (
                bson!({"$dateAdd": {"startDate": null, "unit": "day", "amount": 1}}),
                Bson::Null,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": null, "amount": 1}}),
                Bson::Null,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "day", "amount": "$missing"}}),
                Bson::Null,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "day", "amount": 1, "timezone": null}}),
                Bson::Null,
            ),
            (
                bson!({"$dateAdd": {"startDate": Bson::Timestamp(bson::Timestamp { time: 0, increment: 0 }), "unit": "second", "amount": 1}}),
                ms(1000),
            ),
        ]);
        errors(vec![
            (bson!({"$dateAdd": 1}), 5166400),
            (
                bson!({"$dateAdd": {"startDate": 1, "unit": "day", "amount": 1, "tz": "UTC"}}),
                5166401,
            ),
            (
                bson!({"$dateAdd": {"startDate": 1, "unit": "day"}}),
                5166402,
            ),
            (
                bson!({"$dateAdd": {"startDate": "x", "unit": "day", "amount": 1}}),
                5166403,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "day", "amount": 1.5}}),
                5166405,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "day", "amount": true}}),
                5166405,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": 1, "amount": 1}}),
                5439013,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "century", "amount": 1}}),
                9,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "day", "amount": 1, "timezone": "Nowhere"}}),
                40485,
            ),
            // Huge amounts: refused by mongod's bound, or overflow, never a panic.
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "year", "amount": i64::MAX}}),
                5976500,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "second", "amount": i64::MIN}}),
                5976500,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "day", "amount": 213_503_982_335i64}}),
                5976500,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "day", "amount": 213_503_982_334i64}}),
                5166406,
            ),
            (
                bson!({"$dateAdd": {"startDate": at("2021-01-01T00:00:00Z"), "unit": "month", "amount": 7_019_308_000i64, "timezone": ny}}),
                5166406,
            ),
            (
                bson!({"$dateAdd": {"startDate": ms(i64::MAX), "unit": "millisecond", "amount": 1}}),
                5166406,
            ),
            (
                bson!({"$dateAdd": {"startDate": ms(i64::MAX), "unit": "day", "amount": 1, "timezone": ny}}),
                5166406,
            ),
            (
                bson!({"$dateAdd": {"startDate": ms(i64::MIN), "unit": "hour", "amount": -1, "timezone": ny}}),
                5166406,
            ),
            (
                bson!({"$dateSubtract": {"startDate": ms(0), "unit": "millisecond", "amount": i64::MIN}}),
                6045000,
            ),
        ]);
        let e = eval(bson!({"$dateAdd": {"startDate": ms(0), "unit": "century", "amount": 1}}))
            .unwrap_err();
        assert_eq!(
            e.message,
            "$dateAdd parameter 'unit' value parsing failed :: caused by :: unknown time unit value: century"
        );
    }

    #[test]
    fn date_diff() {
        let ny = "America/New_York";
        let diff = |a: &str, b: &str, unit: &str| bson!({"$dateDiff": {"startDate": at(a), "endDate": at(b), "unit": unit}});
        table(vec![
            (
                diff("2018-01-01T00:00:00Z", "2019-12-31T00:00:00Z", "year"),
                Bson::Int64(1),
            ),
            (
                diff("2019-12-31T23:59:59Z", "2020-01-01T00:00:00Z", "year"),
                Bson::Int64(1),
            ),
            (
                diff("2020-03-31T00:00:00Z", "2020-04-01T00:00:00Z", "quarter"),
                Bson::Int64(1),
            ),
            (
                diff("2021-01-31T00:00:00Z", "2021-02-01T00:00:00Z", "month"),
                Bson::Int64(1),
            ),
            (
                diff("2021-02-01T00:00:00Z", "2021-01-31T00:00:00Z", "month"),
                Bson::Int64(-1),
            ),
            (
                diff("2021-01-01T23:00:00Z", "2021-01-02T01:00:00Z", "day"),
                Bson::Int64(1),
            ),
            (
                diff("2021-01-01T00:59:59Z", "2021-01-01T01:00:00Z", "hour"),
                Bson::Int64(1),
            ),
            (
                diff("2021-01-01T00:00:59.999Z", "2021-01-01T00:01:00Z", "minute"),
                Bson::Int64(1),
            ),
            (
                diff("2021-01-01T00:00:00.999Z", "2021-01-01T00:00:01Z", "second"),
                Bson::Int64(1),
            ),
            (
                diff(
                    "2021-01-01T00:00:00Z",
                    "2021-01-01T00:00:01.5Z",
                    "millisecond",
                ),
                Bson::Int64(1500),
            ),
            // 2021-01-01 is a Friday; Sunday the 3rd starts a week.
            (
                diff("2021-01-01T00:00:00Z", "2021-01-04T00:00:00Z", "week"),
                Bson::Int64(1),
            ),
            (
                diff("2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z", "week"),
                Bson::Int64(0),
            ),
            (
                bson!({"$dateDiff": {"startDate": at("2021-01-01T00:00:00Z"), "endDate": at("2021-01-04T00:00:00Z"), "unit": "week", "startOfWeek": "FRI"}}),
                Bson::Int64(0),
            ),
            (
                bson!({"$dateDiff": {"startDate": at("2021-01-01T00:00:00Z"), "endDate": at("2021-01-02T00:00:00Z"), "unit": "week", "startOfWeek": "Saturday"}}),
                Bson::Int64(1),
            ),
            // startOfWeek is read for weeks only.
            (
                bson!({"$dateDiff": {"startDate": at("2021-01-01T00:00:00Z"), "endDate": at("2021-01-02T00:00:00Z"), "unit": "day", "startOfWeek": 5}}),
                Bson::Int64(1),
            ),
            // Days on New York's wall clock; real hours across its spring-forward.
            (
                bson!({"$dateDiff": {"startDate": at("2021-01-01T03:00:00Z"), "endDate": at("2021-01-01T06:00:00Z"), "unit": "day", "timezone": ny}}),
                Bson::Int64(1),
            ),
            (
                bson!({"$dateDiff": {"startDate": at("2021-03-14T06:00:00Z"), "endDate": at("2021-03-14T08:00:00Z"), "unit": "hour", "timezone": ny}}),
                Bson::Int64(2),
            ),
            (
                bson!({"$dateDiff": {"startDate": Bson::Timestamp(bson::Timestamp { time: 1_604_255_016, increment: 0 }), "endDate": Bson::Timestamp(bson::Timestamp { time: 1_604_260_800, increment: 0 }), "unit": "minute"}}),
                Bson::Int64(97),
            ),
            (
                bson!({"$dateDiff": {"startDate": null, "endDate": at("2021-01-01T00:00:00Z"), "unit": "day"}}),
                Bson::Null,
            ),
            (
                bson!({"$dateDiff": {"startDate": at("2021-01-01T00:00:00Z"), "endDate": at("2021-01-01T00:00:00Z"), "unit": "week", "startOfWeek": null}}),
                Bson::Null,
            ),
            // The ends of time: counts, no overflow.
            (
                bson!({"$dateDiff": {"startDate": ms(i64::MIN), "endDate": ms(i64::MAX), "unit": "year", "timezone": ny}}),
                Bson::Int64(584_554_049),
            ),
        ]);
        errors(vec![
            (bson!({"$dateDiff": []}), 5166301),
            (
                bson!({"$dateDiff": {"startDate": 1, "endDate": 1, "unit": "day", "x": 1}}),
                5166302,
            ),
            (bson!({"$dateDiff": {"endDate": 1, "unit": "day"}}), 5166303),
            (
                bson!({"$dateDiff": {"startDate": 1, "unit": "day"}}),
                5166304,
            ),
            (
                bson!({"$dateDiff": {"startDate": 1, "endDate": 1}}),
                5166305,
            ),
            (
                bson!({"$dateDiff": {"startDate": "x", "endDate": at("2021-01-01T00:00:00Z"), "unit": "day"}}),
                5166307,
            ),
            (
                bson!({"$dateDiff": {"startDate": at("2021-01-01T00:00:00Z"), "endDate": 1, "unit": "day"}}),
                5166307,
            ),
            (
                bson!({"$dateDiff": {"startDate": at("2021-01-01T00:00:00Z"), "endDate": at("2021-01-01T00:00:00Z"), "unit": 2}}),
                5439013,
            ),
            (
                bson!({"$dateDiff": {"startDate": at("2021-01-01T00:00:00Z"), "endDate": at("2021-01-01T00:00:00Z"), "unit": "week", "startOfWeek": 1}}),
                5439015,
            ),
            (
                bson!({"$dateDiff": {"startDate": at("2021-01-01T00:00:00Z"), "endDate": at("2021-01-01T00:00:00Z"), "unit": "week", "startOfWeek": "someday"}}),
                5439016,
            ),
            (
                bson!({"$dateDiff": {"startDate": ms(i64::MIN), "endDate": ms(i64::MAX), "unit": "millisecond"}}),
                5166308,
            ),
        ]);
        let e = eval(bson!({"$dateDiff": {"startDate": ms(0), "endDate": ms(0), "unit": "hour", "timezone": "INVALID"}})).unwrap_err();
        assert_eq!(e.code.code(), 40485);
        assert_eq!(
            e.message,
            "$dateDiff parameter 'timezone' value parsing failed :: caused by :: unrecognized time zone identifier: \"INVALID\""
        );
    }

    #[test]
    fn date_trunc() {
        let d = at("2021-03-20T11:30:05Z");
        let trunc = |unit: &str, bin: i64| bson!({"$dateTrunc": {"date": d.clone(), "unit": unit, "binSize": bin}});
        table(vec![
            (trunc("year", 1), at("2021-01-01T00:00:00Z")),
            (trunc("quarter", 1), at("2021-01-01T00:00:00Z")),
            (trunc("month", 1), at("2021-03-01T00:00:00Z")),
            (trunc("month", 6), at("2021-01-01T00:00:00Z")),
            (trunc("week", 1), at("2021-03-14T00:00:00Z")),
            (trunc("day", 1), at("2021-03-20T00:00:00Z")),
            (trunc("hour", 2), at("2021-03-20T10:00:00Z")),
            (trunc("minute", 15), at("2021-03-20T11:30:00Z")),
            (trunc("second", 1), at("2021-03-20T11:30:05Z")),
            (trunc("millisecond", 1000), at("2021-03-20T11:30:05Z")),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "week", "startOfWeek": "monday"}}),
                at("2021-03-15T00:00:00Z"),
            ),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "day", "timezone": "America/New_York"}}),
                at("2021-03-20T04:00:00Z"),
            ),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "hour", "timezone": "+05:30"}}),
                at("2021-03-20T11:30:00Z"),
            ),
            (
                bson!({"$dateTrunc": {"date": at("2020-05-18T14:10:30Z"), "unit": "month", "binSize": 6}}),
                at("2020-01-01T00:00:00Z"),
            ),
            // Before the reference point.
            (
                bson!({"$dateTrunc": {"date": at("1999-12-31T23:00:00Z"), "unit": "day", "binSize": 7}}),
                at("1999-12-25T00:00:00Z"),
            ),
            (
                bson!({"$dateTrunc": {"date": null, "unit": "day"}}),
                Bson::Null,
            ),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "day", "binSize": null}}),
                Bson::Null,
            ),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "day", "binSize": 2.0}}),
                at("2021-03-19T00:00:00Z"),
            ),
        ]);
        errors(vec![
            (bson!({"$dateTrunc": 1}), 5439007),
            (
                bson!({"$dateTrunc": {"date": 1, "unit": "day", "weekStartDay": 1}}),
                5439008,
            ),
            (bson!({"$dateTrunc": {"unit": "day"}}), 5439009),
            (bson!({"$dateTrunc": {"date": 1}}), 5439010),
            (bson!({"$dateTrunc": {"date": "x", "unit": "day"}}), 5439012),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "day", "binSize": 1.5}}),
                5439017,
            ),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "day", "binSize": "2"}}),
                5439017,
            ),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "day", "binSize": 0}}),
                5439018,
            ),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "day", "binSize": -1}}),
                5439018,
            ),
            // Huge bins: refused or overflowed, never a panic.
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "hour", "binSize": i64::MAX}}),
                5439002,
            ),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "year", "binSize": i64::MAX}}),
                5439006,
            ),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "day", "binSize": 100_000_000_001i64}}),
                5439006,
            ),
            (
                bson!({"$dateTrunc": {"date": ms(i64::MIN), "unit": "second"}}),
                5439000,
            ),
            (
                bson!({"$dateTrunc": {"date": ms(i64::MIN), "unit": "year"}}),
                5166406,
            ),
            (
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "day", "timezone": 3}}),
                40517,
            ),
        ]);
        // The largest bin mongod takes for days: one bin from 2000 on.
        assert_eq!(
            ok(
                bson!({"$dateTrunc": {"date": d.clone(), "unit": "day", "binSize": 100_000_000_000i64}})
            ),
            at("2000-01-01T00:00:00Z")
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        crate::limits::with_worker_stack(|| {
            let mut e = bson!("$d");
            for _ in 0..150 {
                e = bson!({"$dateToString": {"date": {"$dateAdd": {"startDate": e, "unit": "day", "amount": 1}}}});
            }
            assert_eq!(Expr::parse(&e).unwrap_err().code, ErrorCode::Overflow);
        });
    }

    #[test]
    fn constant_folding_sees_through_the_arguments() {
        let c = Expr::parse(&bson!({"$year": {"date": ms(0), "timezone": "UTC"}})).unwrap();
        assert!(c.is_constant());
        let f = Expr::parse(&bson!({"$dateAdd": {"startDate": "$d", "unit": "day", "amount": 1}}))
            .unwrap();
        assert!(!f.is_constant());
    }
}
