//! Time units of `$setWindowFields` range windows, `$derivative`/
//! `$integral` and `$densify` steps: the fixed ones (millisecond to week)
//! and the calendar ones (month, quarter, year), added to a date in UTC
//! as MongoDB's `$dateAdd` adds them (a day past the end of the new month
//! is clamped to its last day: Jan 31 + 1 month is Feb 28 or 29). The
//! unit parser and the civil-calendar helpers are shared with the date
//! expressions (`expr::date`).

use bson::Bson;

use super::super::expr::type_name;
use crate::error::{CommandError, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TimeUnit {
    /// Milliseconds per unit.
    Fixed(i64),
    /// Months per unit.
    Months(i64),
}

impl TimeUnit {
    /// `unit: "hour"` etc. (`what` names the field in errors).
    pub(crate) fn parse(v: &Bson, what: &str) -> Result<TimeUnit> {
        let Bson::String(s) = v else {
            return Err(CommandError::type_mismatch(format!(
                "BSON field '{what}' is the wrong type '{}', expected type 'string'",
                type_name(v)
            )));
        };
        Ok(match s.as_str() {
            "millisecond" => TimeUnit::Fixed(1),
            "second" => TimeUnit::Fixed(1_000),
            "minute" => TimeUnit::Fixed(60_000),
            "hour" => TimeUnit::Fixed(3_600_000),
            "day" => TimeUnit::Fixed(86_400_000),
            "week" => TimeUnit::Fixed(604_800_000),
            "month" => TimeUnit::Months(1),
            "quarter" => TimeUnit::Months(3),
            "year" => TimeUnit::Months(12),
            other => {
                return Err(CommandError::failed_to_parse(format!(
                    "unknown time unit value: {other}"
                )));
            }
        })
    }

    /// Milliseconds per unit, for the fixed units only.
    pub(super) fn fixed_ms(self) -> Option<i64> {
        match self {
            TimeUnit::Fixed(ms) => Some(ms),
            TimeUnit::Months(_) => None,
        }
    }

    /// `t` (milliseconds since the epoch) plus `amount` units; `None` past
    /// what a date holds.
    pub(super) fn add(self, t: i64, amount: i64) -> Option<i64> {
        match self {
            TimeUnit::Fixed(ms) => amount.checked_mul(ms)?.checked_add(t),
            TimeUnit::Months(per) => add_months(t, amount.checked_mul(per)?),
        }
    }
}

const DAY_MS: i64 = 86_400_000;

fn add_months(t: i64, months: i64) -> Option<i64> {
    let (days, in_day) = (t.div_euclid(DAY_MS), t.rem_euclid(DAY_MS));
    let (y, m, d) = civil_from_days(days);
    let total = y.checked_mul(12)?.checked_add(m - 1)?.checked_add(months)?;
    let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let nd = d.min(days_in_month(ny, nm));
    days_from_civil(ny, nm, nd)
        .checked_mul(DAY_MS)?
        .checked_add(in_day)
}

pub(crate) fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `civil_from_days`: (year, month 1-12, day 1-31).
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Howard Hinnant's `days_from_civil`.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        bson::DateTime::parse_rfc3339_str(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn calendar_units_clamp_to_the_month_end() {
        let month = TimeUnit::Months(1);
        assert_eq!(
            month.add(ms("2024-01-31T10:00:00Z"), 1),
            Some(ms("2024-02-29T10:00:00Z"))
        );
        assert_eq!(
            month.add(ms("2023-01-31T00:00:00Z"), 1),
            Some(ms("2023-02-28T00:00:00Z"))
        );
        assert_eq!(
            month.add(ms("2024-03-15T00:00:00Z"), -3),
            Some(ms("2023-12-15T00:00:00Z"))
        );
        assert_eq!(
            TimeUnit::Months(12).add(ms("1969-12-31T23:59:59Z"), 1),
            Some(ms("1970-12-31T23:59:59Z"))
        );
        assert_eq!(
            TimeUnit::Months(3).add(ms("2020-11-30T00:00:00Z"), 1),
            Some(ms("2021-02-28T00:00:00Z"))
        );
        // Past what a date holds: none, never a panic.
        assert_eq!(month.add(i64::MAX, 1), None);
        assert_eq!(month.add(0, i64::MAX), None);
        assert_eq!(TimeUnit::Fixed(604_800_000).add(0, i64::MAX), None);
    }
}
