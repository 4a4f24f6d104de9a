//! Periods as integers: a month, quarter or year under a reporting cut becomes an index that counts up by one per
//! period, so that "every period from receipt to the end of processing" is a range and "open at the end of every
//! period so far" a prefix sum.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use domain::calendar::{Cut, PeriodKind};
use domain::Period;

/// Seconds since the Unix epoch (UTC). Every instant the indicators compare is held this way.
pub type Secs = i64;

/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
const EPOCH_DAYS_FROM_CE: i64 = 719_163;

pub const KINDS: [PeriodKind; 3] = [PeriodKind::Month, PeriodKind::Quarter, PeriodKind::Year];

pub fn kind_slot(kind: PeriodKind) -> usize {
    match kind {
        PeriodKind::Month => 0,
        PeriodKind::Quarter => 1,
        PeriodKind::Year => 2,
    }
}

pub fn secs<Tz: chrono::TimeZone>(t: &DateTime<Tz>) -> Secs {
    t.timestamp()
}

pub use domain::calendar::{vietnam_day, vietnam_day_start};

/// Month, quarter or year under a cut, as integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme {
    pub kind: PeriodKind,
    pub cut: Cut,
}

impl Scheme {
    pub fn new(kind: PeriodKind, cut: Cut) -> Scheme {
        Scheme { kind, cut }
    }

    /// The index of the period containing the instant.
    pub fn index(&self, t: Secs) -> i32 {
        let date =
            NaiveDate::from_num_days_from_ce_opt((vietnam_day(t) + EPOCH_DAYS_FROM_CE) as i32)
                .expect("instants held by the log are valid dates");
        let mut months = date.year() * 12 + date.month0() as i32;
        if self.cut.start_day().is_some_and(|n| date.day() >= n) {
            months += 1;
        }
        self.index_of_months(months)
    }

    fn index_of_months(&self, months: i32) -> i32 {
        match self.kind {
            PeriodKind::Month => months,
            PeriodKind::Quarter => months.div_euclid(3),
            PeriodKind::Year => months.div_euclid(12),
        }
    }

    pub fn index_of(&self, p: Period) -> i32 {
        debug_assert_eq!(p.kind(), self.kind);
        match p {
            Period::Month { year, month } => year * 12 + month as i32 - 1,
            Period::Quarter { year, quarter } => year * 4 + quarter as i32 - 1,
            Period::Year { year } => year,
        }
    }

    pub fn period(&self, index: i32) -> Period {
        match self.kind {
            PeriodKind::Month => Period::Month {
                year: index.div_euclid(12),
                month: index.rem_euclid(12) as u32 + 1,
            },
            PeriodKind::Quarter => Period::Quarter {
                year: index.div_euclid(4),
                quarter: index.rem_euclid(4) as u32 + 1,
            },
            PeriodKind::Year => Period::Year { year: index },
        }
    }

    /// The first instant of the period.
    pub fn start(&self, index: i32) -> Secs {
        self.period(index).start(self.cut).timestamp()
    }

    /// The first instant after the period.
    pub fn end(&self, index: i32) -> Secs {
        self.period(index).end(self.cut).timestamp()
    }
}

pub fn to_utc(t: Secs) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).expect("instants held by the log are in range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The integer scheme agrees with the calendar's own periods, for every kind and cut.
        #[test]
        fn index_agrees_with_the_calendar(t in -2_000_000_000i64..8_000_000_000, kind in 0usize..3, decree in any::<bool>(), day in 0u8..=28) {
            let cut = match day { 0 if decree => Cut::Decree09, 0 => Cut::Calendar, n => Cut::starting_on(n).unwrap() };
            let scheme = Scheme::new(KINDS[kind], cut);
            let instant = to_utc(t);
            let period = Period::containing(&instant, KINDS[kind], cut);
            let i = scheme.index(t);
            prop_assert_eq!(scheme.period(i), period);
            prop_assert_eq!(scheme.index_of(period), i);
            prop_assert!(scheme.start(i) <= t && t < scheme.end(i));
            prop_assert_eq!(scheme.end(i), scheme.start(i + 1));
        }
    }
}
