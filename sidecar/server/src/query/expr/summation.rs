//! `$sum` and `$avg` as mongod's accumulators compute them, for the
//! `$group` and window accumulators and the `$sum`/`$avg` expressions: the
//! widest numeric type seen decides the result's type (int, long, double,
//! decimal); integers are summed exactly (an int result that no longer
//! fits becomes a long, a long that no longer fits a double); doubles
//! with compensation (mongod keeps a double-double sum); decimals in
//! Decimal128. Non-numbers are skipped. These are not `$add`'s rules
//! (`expr::math`): `$add` of two longs past the range is a double at
//! once, a sum's running total may leave the range and come back.

use bson::{Bson, Decimal128};

use super::{decimal, number};

/// The widest numeric type a sum has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Widest {
    #[default]
    Int,
    Long,
    Double,
    Decimal,
}

/// A running sum (and count, for `$avg`) of the numbers offered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summation {
    widest: Widest,
    /// The int and long operands, exactly (2^64 of the largest longs fit).
    integers: i128,
    /// The double operands, with Neumaier's compensation.
    doubles: f64,
    compensation: f64,
    /// The decimal operands.
    decimals: Option<Decimal128>,
    /// How many numbers were offered.
    count: i64,
}

impl Summation {
    /// Offers `v`: a number is added, anything else is skipped.
    pub fn add(&mut self, v: &Bson) {
        let widest = match v {
            Bson::Int32(i) => {
                self.integers += i128::from(*i);
                Widest::Int
            }
            Bson::Int64(i) => {
                self.integers += i128::from(*i);
                Widest::Long
            }
            Bson::Double(x) => {
                self.add_double(*x);
                Widest::Double
            }
            Bson::Decimal128(d) => {
                self.add_decimal(d);
                Widest::Decimal
            }
            _ => return,
        };
        self.widest = self.widest.max(widest);
        self.count += 1;
    }

    fn add_decimal(&mut self, d: &Decimal128) {
        self.decimals = Some(match &self.decimals {
            Some(sum) => decimal::add(sum, d),
            None => *d,
        });
    }

    fn add_double(&mut self, x: f64) {
        let sum = self.doubles + x;
        if sum.is_finite() {
            // Neumaier: keep what the rounding of `sum` dropped.
            self.compensation += if self.doubles.abs() >= x.abs() {
                (self.doubles - sum) + x
            } else {
                (x - sum) + self.doubles
            };
        }
        self.doubles = sum;
    }

    /// Both sums together (as if every number had been offered to one).
    pub fn merge(&mut self, other: &Summation) {
        self.widest = self.widest.max(other.widest);
        self.integers += other.integers;
        self.add_double(other.doubles);
        self.compensation += other.compensation;
        if let Some(d) = &other.decimals {
            self.add_decimal(d);
        }
        self.count += other.count;
    }

    /// The sum of everything but the decimals, as a double (the integers
    /// rounded once, then the doubles).
    fn non_decimal_f64(&self) -> f64 {
        self.integers as f64 + (self.doubles + self.compensation)
    }

    fn non_decimal_decimal(&self) -> Decimal128 {
        let integers = match i64::try_from(self.integers) {
            Ok(i) => number::decimal_from_i64(i),
            Err(_) => self
                .integers
                .to_string()
                .parse()
                .unwrap_or_else(|_| number::decimal_from_f64(self.integers as f64)),
        };
        if self.widest >= Widest::Double {
            let doubles = number::decimal_from_f64(self.doubles + self.compensation);
            decimal::add(&integers, &doubles)
        } else {
            integers
        }
    }

    /// `$sum`'s answer: 0 (an int) when nothing was offered.
    pub fn sum(&self) -> Bson {
        match self.widest {
            Widest::Decimal => {
                let decimals = self.decimals.unwrap_or_else(|| number::decimal_from_i64(0));
                Bson::Decimal128(decimal::add(&decimals, &self.non_decimal_decimal()))
            }
            Widest::Double => Bson::Double(self.non_decimal_f64()),
            Widest::Long => {
                i64::try_from(self.integers).map_or(Bson::Double(self.integers as f64), Bson::Int64)
            }
            Widest::Int => match i32::try_from(self.integers) {
                Ok(i) => Bson::Int32(i),
                Err(_) => i64::try_from(self.integers)
                    .map_or(Bson::Double(self.integers as f64), Bson::Int64),
            },
        }
    }

    /// `$avg`'s answer: null when no number was offered; a decimal when a
    /// decimal was, else a double.
    pub fn average(&self) -> Bson {
        if self.count == 0 {
            return Bson::Null;
        }
        match self.widest {
            Widest::Decimal => {
                let Bson::Decimal128(total) = self.sum() else {
                    return Bson::Null;
                };
                Bson::Decimal128(decimal::divide(
                    &total,
                    &number::decimal_from_i64(self.count),
                ))
            }
            _ => Bson::Double(self.non_decimal_f64() / self.count as f64),
        }
    }

    /// The state as a document (a `$group` spilling to disk), and back.
    pub fn encode(&self) -> bson::Document {
        let mut d = bson::doc! {
            "w": self.widest as i32,
            "ih": (self.integers >> 64) as i64,
            "il": self.integers as u64 as i64,
            "d": self.doubles,
            "k": self.compensation,
            "n": self.count,
        };
        if let Some(dec) = self.decimals {
            d.insert("x", dec);
        }
        d
    }

    pub fn decode(d: &bson::Document) -> Option<Summation> {
        let widest = match d.get_i32("w").ok()? {
            0 => Widest::Int,
            1 => Widest::Long,
            2 => Widest::Double,
            3 => Widest::Decimal,
            _ => return None,
        };
        let high = i128::from(d.get_i64("ih").ok()?);
        let low = i128::from(d.get_i64("il").ok()? as u64);
        Some(Summation {
            widest,
            integers: (high << 64) | low,
            doubles: d.get_f64("d").ok()?,
            compensation: d.get_f64("k").ok()?,
            decimals: match d.get("x") {
                Some(Bson::Decimal128(x)) => Some(*x),
                None => None,
                Some(_) => return None,
            },
            count: d.get_i64("n").ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(values: &[Bson]) -> Summation {
        let mut s = Summation::default();
        for v in values {
            s.add(v);
        }
        s
    }

    fn dec(s: &str) -> Bson {
        Bson::Decimal128(s.parse().expect("a decimal"))
    }

    #[test]
    fn the_widest_type_decides_and_integers_are_exact() {
        let two53 = 1i64 << 53;
        for (values, want) in [
            (vec![], Bson::Int32(0)),
            (vec![Bson::Int32(1), Bson::Int32(2)], Bson::Int32(3)),
            (
                vec![Bson::Int32(i32::MAX), Bson::Int32(1)],
                Bson::Int64(2_147_483_648),
            ),
            (
                vec![Bson::Int64(two53), Bson::Int64(1)],
                Bson::Int64(two53 + 1),
            ),
            // The running total leaves a long's range and comes back.
            (
                vec![Bson::Int64(i64::MAX), Bson::Int64(1), Bson::Int64(-2)],
                Bson::Int64(i64::MAX - 1),
            ),
            (
                vec![Bson::Int64(i64::MAX), Bson::Int64(i64::MAX)],
                Bson::Double(2.0 * i64::MAX as f64),
            ),
            (vec![Bson::Int32(1), Bson::Double(0.5)], Bson::Double(1.5)),
            (
                vec![Bson::String("x".into()), Bson::Null, Bson::Int32(4)],
                Bson::Int32(4),
            ),
            (vec![dec("0.1"), dec("0.2")], dec("0.3")),
            (
                vec![dec("0.1"), Bson::Int64(two53 + 1)],
                dec("9007199254740993.1"),
            ),
            (vec![dec("1"), Bson::Double(0.5)], dec("1.500000000000000")),
        ] {
            assert_eq!(sum_of(&values).sum(), want, "{values:?}");
        }
    }

    #[test]
    fn doubles_are_compensated() {
        // 0.1 ten times is 0.9999999999999999 added naively.
        let values = vec![Bson::Double(0.1); 10];
        assert_eq!(sum_of(&values).sum(), Bson::Double(1.0));
        let values = [Bson::Double(1e100), Bson::Double(1.0), Bson::Double(-1e100)];
        assert_eq!(sum_of(&values).sum(), Bson::Double(1.0));
        let inf = [Bson::Double(f64::INFINITY), Bson::Double(1.0)];
        assert_eq!(sum_of(&inf).sum(), Bson::Double(f64::INFINITY));
        let nan = sum_of(&[Bson::Double(f64::NAN), Bson::Int32(1)]).sum();
        assert!(matches!(nan, Bson::Double(x) if x.is_nan()));
    }

    #[test]
    fn averages() {
        assert_eq!(Summation::default().average(), Bson::Null);
        assert_eq!(
            sum_of(&[Bson::Int32(1), Bson::Int32(2)]).average(),
            Bson::Double(1.5)
        );
        assert_eq!(sum_of(&[dec("1"), dec("2")]).average(), dec("1.5"));
        let big = sum_of(&[Bson::Int64(i64::MAX), Bson::Int64(i64::MAX)]).average();
        assert_eq!(big, Bson::Double(i64::MAX as f64));
    }

    #[test]
    fn merged_and_spilled_sums_answer_as_one() {
        let values = [
            Bson::Int64(i64::MAX),
            Bson::Int32(7),
            Bson::Double(0.1),
            dec("2.5"),
            Bson::Int64(i64::MIN),
            Bson::Double(0.2),
        ];
        let whole = sum_of(&values);
        for split in 0..=values.len() {
            let mut a = sum_of(&values[..split]);
            let b = Summation::decode(&sum_of(&values[split..]).encode()).expect("decodes");
            a.merge(&b);
            assert_eq!(a.sum(), whole.sum(), "split at {split}");
            assert_eq!(a.average(), whole.average(), "split at {split}");
        }
        assert_eq!(Summation::decode(&bson::doc! {"w": 9}), None);
    }
}
