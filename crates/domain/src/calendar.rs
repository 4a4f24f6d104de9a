//! Calendar questions in Vietnam civil time (UTC+07:00, no daylight saving): which day, month, quarter or year an
//! instant falls in, and where a period starts and ends.
//!
//! Periods are calendar months, quarters and years by default. The optional `decree-09` cut follows Decree
//! 09/2019/NĐ-CP on periodic reporting: a month runs from the 15th of the month before to the 14th of the month
//! itself, a quarter from the 15th of the month before it to the 14th of its last month, a year from 15 December of
//! the year before to 14 December.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// UTC+07:00, the civil time of all of Vietnam.
pub fn vietnam() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).expect("7 hours is a valid offset")
}

/// The civil date in Vietnam of an instant.
pub fn vietnam_date<Tz: TimeZone>(t: &DateTime<Tz>) -> NaiveDate {
    t.with_timezone(&vietnam()).date_naive()
}

const VIETNAM_OFFSET_SECS: i64 = 7 * 3_600;
const DAY_SECS: i64 = 86_400;

/// The day number (days since 1970-01-01) of an instant's date in Vietnam civil time; the instant in Unix seconds.
pub fn vietnam_day(t: i64) -> i64 {
    (t + VIETNAM_OFFSET_SECS).div_euclid(DAY_SECS)
}

/// The first instant (Unix seconds) of a Vietnam day number.
pub fn vietnam_day_start(day: i64) -> i64 {
    day * DAY_SECS - VIETNAM_OFFSET_SECS
}

/// The first instant of a Vietnam civil day. A day is the half-open interval `[day_start(d), day_start(d + 1))`:
/// every instant of the day, to the last microsecond, lies before the next day's start.
pub fn day_start(date: NaiveDate) -> DateTime<Utc> {
    vietnam()
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc)
}

/// "As known on": what the log held at an instant, or on a whole day.
///
/// An instant counts what was recorded at or before it. A day counts what was recorded before the next day began
/// in Vietnam time, so the last second of the day, with whatever fraction of it, belongs to the day (a date is
/// never turned into its 23:59:59.000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownAt {
    Instant(DateTime<Utc>),
    Day(NaiveDate),
}

impl KnownAt {
    /// Whether an event recorded at `recorded_at` was known then.
    pub fn counts(&self, recorded_at: &DateTime<Utc>) -> bool {
        match self {
            KnownAt::Instant(t) => recorded_at <= t,
            KnownAt::Day(d) => *recorded_at < day_start(next_day(*d)),
        }
    }

    /// The latest whole second (Unix seconds) that was known: the instant's own second, or the day's last second.
    /// Open dossiers are judged there (the indicators compare instants to the second).
    pub fn last_second(&self) -> i64 {
        match self {
            KnownAt::Instant(t) => t.timestamp(),
            KnownAt::Day(d) => day_start(next_day(*d)).timestamp() - 1,
        }
    }
}

fn next_day(d: NaiveDate) -> NaiveDate {
    d.succ_opt().expect("a date before the end of time")
}

impl FromStr for KnownAt {
    type Err = String;
    /// An RFC 3339 instant with its offset, or a date (`2019-04-05`, the whole day in Vietnam time).
    fn from_str(s: &str) -> Result<KnownAt, String> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            let t = crate::rules::checked_time(t).map_err(|why| format!("{s:?} {why}"))?;
            return Ok(KnownAt::Instant(t.with_timezone(&Utc)));
        }
        let bad = || {
            format!("{s:?} is neither an RFC 3339 instant with an offset nor a date (YYYY-MM-DD)")
        };
        let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?;
        if !(YEAR_MIN..=YEAR_MAX).contains(&day.year()) {
            return Err(format!(
                "year {} is out of range {YEAR_MIN}–{YEAR_MAX}",
                day.year()
            ));
        }
        Ok(KnownAt::Day(day))
    }
}

impl fmt::Display for KnownAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnownAt::Instant(t) => {
                f.write_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
            KnownAt::Day(d) => write!(f, "{}", d.format("%Y-%m-%d")),
        }
    }
}

impl Serialize for KnownAt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How periods are cut.
///
/// `Calendar` is the default. The other cuts start the period named after a month on a day of the month before:
/// `Decree09` on the 15th (Decree 09/2019/NĐ-CP's reporting cut), `Day(n)` on the `n`th (1 to 28; the 21st is
/// Vĩnh Phúc's month, the 1st "the month before"). `Day(15)` is never built: [`Cut::starting_on`] gives `Decree09`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cut {
    /// Calendar months, quarters and years.
    #[default]
    Calendar,
    /// Decree 09/2019's reporting cut: periods end on the 14th.
    Decree09,
    /// Periods start on this day of the month before the one they are named after (1 to 28, never 15).
    Day(u8),
}

impl Cut {
    /// The cut whose periods start on day `n` of the month before (1 to 28).
    pub fn starting_on(n: u8) -> Result<Cut, String> {
        match n {
            15 => Ok(Cut::Decree09),
            1..=28 => Ok(Cut::Day(n)),
            _ => Err(format!(
                "a period may start on day 1 to 28 of the month before, not {n}"
            )),
        }
    }

    /// The day of the month before on which periods start; `None` for calendar periods.
    pub fn start_day(self) -> Option<u32> {
        match self {
            Cut::Calendar => None,
            Cut::Decree09 => Some(15),
            Cut::Day(n) => Some(n as u32),
        }
    }
}

impl FromStr for Cut {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let day = |n: &str| n.parse::<u8>().ok().and_then(|n| Cut::starting_on(n).ok());
        match s {
            "calendar" => Ok(Cut::Calendar),
            "decree-09" => Ok(Cut::Decree09),
            "month-before" => Ok(Cut::Day(1)),
            _ => s.strip_prefix("day-").and_then(day).ok_or_else(|| {
                format!(
                    "unknown reporting cut {s:?}; expected calendar, decree-09 (= day-15), month-before (= day-1) \
                     or day-N with N from 1 to 28"
                )
            }),
        }
    }
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cut::Calendar => f.write_str("calendar"),
            Cut::Decree09 => f.write_str("decree-09"),
            Cut::Day(1) => f.write_str("month-before"),
            Cut::Day(n) => write!(f, "day-{n}"),
        }
    }
}

impl Serialize for Cut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cut {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The kind of a period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    Month,
    Quarter,
    Year,
}

/// A reporting period: `2019-03`, `2019-Q1` or `2019`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Month { year: i32, month: u32 },
    Quarter { year: i32, quarter: u32 },
    Year { year: i32 },
}

/// The earliest and latest years a period may name; far wider than any real report, narrow enough that every
/// bound is a valid instant.
const YEAR_MIN: i32 = 1900;
const YEAR_MAX: i32 = 9998;

impl Period {
    pub fn kind(&self) -> PeriodKind {
        match self {
            Period::Month { .. } => PeriodKind::Month,
            Period::Quarter { .. } => PeriodKind::Quarter,
            Period::Year { .. } => PeriodKind::Year,
        }
    }

    /// The period of `kind` that contains the instant `t`, under `cut`.
    pub fn containing<Tz: TimeZone>(t: &DateTime<Tz>, kind: PeriodKind, cut: Cut) -> Period {
        let date = vietnam_date(t);
        // Under a cut starting on day n, a date on or after the nth belongs to the next month's period.
        let (year, month) = match cut.start_day() {
            Some(n) if date.day() >= n => {
                if date.month() == 12 {
                    (date.year() + 1, 1)
                } else {
                    (date.year(), date.month() + 1)
                }
            }
            _ => (date.year(), date.month()),
        };
        match kind {
            PeriodKind::Month => Period::Month { year, month },
            PeriodKind::Quarter => Period::Quarter {
                year,
                quarter: (month - 1) / 3 + 1,
            },
            PeriodKind::Year => Period::Year { year },
        }
    }

    /// The first and one-past-last calendar month (year, month) of the period, before any cut.
    fn month_span(&self) -> ((i32, u32), (i32, u32)) {
        let (y, first, count) = match *self {
            Period::Month { year, month } => (year, month, 1),
            Period::Quarter { year, quarter } => (year, (quarter - 1) * 3 + 1, 3),
            Period::Year { year } => (year, 1, 12),
        };
        let end_index = first - 1 + count; // months after January of `y`
        (
            (y, first),
            (y + (end_index / 12) as i32, end_index % 12 + 1),
        )
    }

    /// The first instant of the period.
    pub fn start(&self, cut: Cut) -> DateTime<Utc> {
        let ((y, m), _) = self.month_span();
        boundary(y, m, cut)
    }

    /// The first instant after the period (its end, exclusive).
    pub fn end(&self, cut: Cut) -> DateTime<Utc> {
        let (_, (y, m)) = self.month_span();
        boundary(y, m, cut)
    }

    /// Whether the instant `t` lies in the period.
    pub fn contains<Tz: TimeZone>(&self, t: &DateTime<Tz>, cut: Cut) -> bool {
        Period::containing(t, self.kind(), cut) == *self
    }

    /// The period after this one, of the same kind.
    pub fn next(&self) -> Period {
        match *self {
            Period::Month { year, month: 12 } => Period::Month {
                year: year + 1,
                month: 1,
            },
            Period::Month { year, month } => Period::Month {
                year,
                month: month + 1,
            },
            Period::Quarter { year, quarter: 4 } => Period::Quarter {
                year: year + 1,
                quarter: 1,
            },
            Period::Quarter { year, quarter } => Period::Quarter {
                year,
                quarter: quarter + 1,
            },
            Period::Year { year } => Period::Year { year: year + 1 },
        }
    }
}

/// The first instant, Vietnam time, of the period that starts with calendar month (y, m) under `cut`.
fn boundary(y: i32, m: u32, cut: Cut) -> DateTime<Utc> {
    let date = match cut.start_day() {
        None => NaiveDate::from_ymd_opt(y, m, 1),
        // The period named after month m starts on day n of the month before.
        Some(n) if m == 1 => NaiveDate::from_ymd_opt(y - 1, 12, n),
        Some(n) => NaiveDate::from_ymd_opt(y, m - 1, n),
    }
    .expect("period bounds are valid dates");
    day_start(date)
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Month { year, month } => write!(f, "{year:04}-{month:02}"),
            Period::Quarter { year, quarter } => write!(f, "{year:04}-Q{quarter}"),
            Period::Year { year } => write!(f, "{year:04}"),
        }
    }
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?} is not a period; expected a month (2019-03), a quarter (2019-Q1) or a year (2019)")
        };
        let year_of = |y: &str| -> Result<i32, String> {
            if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let year: i32 = y.parse().map_err(|_| bad())?;
            if !(YEAR_MIN..=YEAR_MAX).contains(&year) {
                return Err(format!("year {year} is out of range {YEAR_MIN}–{YEAR_MAX}"));
            }
            Ok(year)
        };
        match s.split_once('-') {
            None => Ok(Period::Year { year: year_of(s)? }),
            Some((y, rest)) => {
                let year = year_of(y)?;
                if let Some(q) = rest.strip_prefix('Q') {
                    match q {
                        "1" | "2" | "3" | "4" => Ok(Period::Quarter {
                            year,
                            quarter: q.parse().map_err(|_| bad())?,
                        }),
                        _ => Err(bad()),
                    }
                } else if rest.len() == 2 && rest.bytes().all(|b| b.is_ascii_digit()) {
                    let month: u32 = rest.parse().map_err(|_| bad())?;
                    if (1..=12).contains(&month) {
                        Ok(Period::Month { year, month })
                    } else {
                        Err(bad())
                    }
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// A year from `YEAR_MIN` to `YEAR_MAX` (1900 to 9998), as a regular expression.
#[cfg(feature = "openapi")]
macro_rules! year_pattern {
    () => {
        "(19[0-9]{2}|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    };
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Period {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::codes::string_schema(
            Some(concat!(
                "^",
                year_pattern!(),
                "(-(0[1-9]|1[0-2])|-Q[1-4])?$"
            )),
            4,
            7,
            "a month (2019-03), a quarter (2019-Q1) or a year (2019)",
        )
    }
}
#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Period {}

/// As `FromStr` reads it: an RFC 3339 instant, or a day of a year from 1900 to 9998.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for KnownAt {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        use utoipa::openapi::{KnownFormat, SchemaFormat};
        let string = |format| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        OneOfBuilder::new()
            .item(string(KnownFormat::DateTime))
            .item(string(KnownFormat::Date).pattern(Some(concat!(
                "^",
                year_pattern!(),
                "-[0-9]{2}-[0-9]{2}$"
            ))))
            .description(Some(
                "An instant (RFC 3339 with its offset) or a day (YYYY-MM-DD, Vietnam time)",
            ))
            .into()
    }
}
#[cfg(feature = "openapi")]
impl utoipa::ToSchema for KnownAt {}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn p(s: &str) -> Period {
        s.parse().unwrap()
    }

    #[test]
    fn evening_of_31_march_utc_is_the_second_quarter_in_vietnam() {
        assert_eq!(
            Period::containing(
                &t("2019-03-31T17:30:00Z"),
                PeriodKind::Quarter,
                Cut::Calendar
            ),
            p("2019-Q2")
        );
        assert_eq!(
            Period::containing(
                &t("2019-03-31T16:59:59Z"),
                PeriodKind::Quarter,
                Cut::Calendar
            ),
            p("2019-Q1")
        );
        assert_eq!(
            Period::containing(&t("2019-03-31T17:00:00Z"), PeriodKind::Month, Cut::Calendar),
            p("2019-04")
        );
    }

    #[test]
    fn decree_09_quarters_run_from_the_15th_to_the_14th() {
        let q = |s: &str| Period::containing(&t(s), PeriodKind::Quarter, Cut::Decree09);
        assert_eq!(q("2018-12-14T23:59:59+07:00"), p("2018-Q4"));
        assert_eq!(q("2018-12-15T00:00:00+07:00"), p("2019-Q1"));
        assert_eq!(q("2019-03-14T23:59:59+07:00"), p("2019-Q1"));
        assert_eq!(q("2019-03-15T00:00:00+07:00"), p("2019-Q2"));
        assert_eq!(
            p("2019-Q1").start(Cut::Decree09),
            t("2018-12-15T00:00:00+07:00")
        );
        assert_eq!(
            p("2019-Q1").end(Cut::Decree09),
            t("2019-03-15T00:00:00+07:00")
        );
        assert_eq!(
            p("2019").start(Cut::Decree09),
            t("2018-12-15T00:00:00+07:00")
        );
    }

    /// Vĩnh Phúc's months run from the 21st to the 20th; "the month before" starts a period a whole month early.
    #[test]
    fn cuts_on_other_days() {
        let day21: Cut = "day-21".parse().unwrap();
        let m = |s: &str| Period::containing(&t(s), PeriodKind::Month, day21);
        assert_eq!(m("2021-03-20T23:30:00+07:00"), p("2021-03"));
        assert_eq!(m("2021-03-21T00:30:00+07:00"), p("2021-04"));
        assert_eq!(p("2021-01").start(day21), t("2020-12-21T00:00:00+07:00"));
        let before: Cut = "month-before".parse().unwrap();
        assert_eq!(p("2021-Q1").start(before), t("2020-12-01T00:00:00+07:00"));
        assert_eq!(p("2021-Q1").end(before), t("2021-03-01T00:00:00+07:00"));
        for (text, cut) in [
            ("decree-09", Cut::Decree09),
            ("day-15", Cut::Decree09),
            ("day-21", Cut::Day(21)),
            ("calendar", Cut::Calendar),
        ] {
            assert_eq!(text.parse::<Cut>().unwrap(), cut);
            assert_eq!(cut.to_string().parse::<Cut>().unwrap(), cut);
        }
        for bad in ["day-0", "day-29", "day-", "day-x", "decree", ""] {
            assert!(bad.parse::<Cut>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn periods_print_and_parse() {
        for s in ["2019-03", "2019-Q1", "2019", "2019-12", "2020-Q4"] {
            assert_eq!(p(s).to_string(), s);
        }
        for bad in [
            "2019-13",
            "2019-Q5",
            "19",
            "2019-3",
            "2019-00",
            "2019-Q",
            "abcd",
            "2019-03-01",
            "",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn bounds_are_vietnam_midnights() {
        assert_eq!(
            p("2019-Q1").start(Cut::Calendar),
            t("2019-01-01T00:00:00+07:00")
        );
        assert_eq!(
            p("2019-Q4").end(Cut::Calendar),
            t("2020-01-01T00:00:00+07:00")
        );
        assert_eq!(
            p("2019-12").end(Cut::Calendar),
            t("2020-01-01T00:00:00+07:00")
        );
        assert_eq!(p("2019").end(Cut::Calendar), t("2020-01-01T00:00:00+07:00"));
    }

    proptest::proptest! {
        /// Every instant lies in exactly the period that `containing` names, and inside that period's bounds;
        /// consecutive periods tile time with no gap or overlap.
        #[test]
        fn containing_agrees_with_bounds(secs in 0i64..4_000_000_000, kind in 0..3u8, decree in proptest::bool::ANY, day in 0u8..=28) {
            let instant = DateTime::from_timestamp(secs, 0).unwrap();
            let kind = [PeriodKind::Month, PeriodKind::Quarter, PeriodKind::Year][kind as usize];
            // Day 0 stands for the decree-09 flag as before; any other day is a cut starting on it.
            let cut = match day { 0 if decree => Cut::Decree09, 0 => Cut::Calendar, n => Cut::starting_on(n).unwrap() };
            let period = Period::containing(&instant, kind, cut);
            proptest::prop_assert!(period.start(cut) <= instant && instant < period.end(cut));
            proptest::prop_assert_eq!(period.end(cut), period.next().start(cut));
            proptest::prop_assert!(period.contains(&instant, cut));
        }
    }
}
