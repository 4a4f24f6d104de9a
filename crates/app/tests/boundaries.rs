//! Every calendar date or period that becomes bounds of instants is a half-open interval `[start of the day, start
//! of the next day)`: events placed at random microseconds around each such boundary (a period's start under each
//! cut, the end of an "as known on" day, a due date) land on the right side of it, through the indicator service
//! on a real log.

use app::indicators::{Indicators, Query, Snapshots};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::calendar::{day_start, vietnam, Cut, PeriodKind};
use domain::{AgencyCode, KnownAt, Period, Submitted};
use projections::indicators::scorecard::Scorecard;
use projections::indicators::{Counts, Group};
use proptest::prelude::*;
use serde_json::json;
use store::{AppendRequest, EventLog, SledLog};

const PERIOD_AGENCY: &str = "000.00.01.H27";
const KNOWN_AGENCY: &str = "000.00.02.H27";
const DUE_AGENCY: &str = "000.00.03.H27";

/// A microsecond offset around a boundary: often exactly on it or one microsecond off, else within two seconds.
fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![Just(-1i64), Just(0), Just(1), -2_000_000i64..2_000_000]
}

fn micros(t: DateTime<Utc>, by: i64) -> DateTime<Utc> {
    t + Duration::microseconds(by)
}

/// A dossier event in export form (it keeps its recording time), position and version filled in later.
fn event(
    dossier: &str,
    agency: &str,
    ty: &str,
    at: DateTime<Utc>,
    recorded: DateTime<Utc>,
    data: serde_json::Value,
) -> serde_json::Value {
    json!({ "id": uuid::Uuid::new_v4(), "type": ty, "dossier": dossier, "agency": agency,
            "occurred_at": at.with_timezone(&vietnam()).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "recorded_at": recorded.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "source": "boundaries", "data": data })
}

fn store(log: &SledLog, mut events: Vec<serde_json::Value>) {
    events
        .sort_by_key(|e| DateTime::parse_from_rfc3339(e["recorded_at"].as_str().unwrap()).unwrap());
    let mut versions = std::collections::HashMap::new();
    let submitted: Vec<Submitted> = events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            let version = versions
                .entry(e["dossier"].as_str().unwrap().to_owned())
                .or_insert(0u64);
            *version += 1;
            e["position"] = json!(i as u64 + 1);
            e["version"] = json!(*version);
            let parsed = domain::parse_envelope(&e, i, domain::Form::Exported).unwrap();
            assert!(parsed.stored.is_some());
            parsed
        })
        .collect();
    log.append_blocking(AppendRequest {
        events: submitted,
        source: "boundaries".into(),
    })
    .unwrap();
}

fn counts(
    indicators: &Indicators,
    log: &SledLog,
    period: Period,
    known_at: Option<KnownAt>,
    agency: &str,
) -> Counts {
    let answer = indicators
        .answer(
            log,
            &Query {
                periods: vec![period],
                group: Group::Agency,
                scope: None,
                as_of: None,
                known_at,
                profile: None,
            },
        )
        .unwrap();
    answer.tables[0]
        .rows
        .iter()
        .find(|r| r.key.agency.as_ref().map(AgencyCode::as_str) == Some(agency))
        .map_or_else(Counts::default, |r| r.counts.clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn every_date_bound_is_half_open(
        day in 0i64..700,
        decree in any::<bool>(),
        kind in prop_oneof![Just(PeriodKind::Month), Just(PeriodKind::Quarter), Just(PeriodKind::Year)],
        at_period in offset(),
        at_day_end in offset(),
        at_due in offset(),
        due_secs in 0i64..86_400,
    ) {
        let cut = if decree { Cut::Decree09 } else { Cut::Calendar };
        let date = NaiveDate::from_ymd_opt(2019, 1, 1).unwrap() + chrono::Days::new(day as u64);
        let noon = day_start(date) + Duration::hours(12);
        // 1. A period's start under the cut: a receipt just before it belongs to the period before.
        let period = Period::containing(&noon, kind, cut);
        let start = period.start(cut);
        let received = micros(start, at_period);
        // 2. The end of an "as known on" day: a receipt recorded just before the next day began was known that day.
        let next_day = day_start(date + chrono::Days::new(1));
        let recorded = micros(next_day, at_day_end);
        // 3. A due date: resolved just before the next day began is on time, just after it late.
        let due = day_start(date) + Duration::seconds(due_secs);
        let resolved = micros(next_day, at_due);

        let mut events = vec![];
        let receipt = |due: Option<DateTime<Utc>>| {
            let mut d = json!({ "procedure": "1.000001", "channel": "counter" });
            if let Some(due) = due { d["due_at"] = json!(due.with_timezone(&vietnam()).to_rfc3339()); }
            d
        };
        events.push(event("D-PERIOD", PERIOD_AGENCY, "dossier.received", received, received, receipt(None)));
        let long_ago = day_start(date) - Duration::days(3);
        events.push(event("D-KNOWN", KNOWN_AGENCY, "dossier.received", long_ago, recorded, receipt(None)));
        let taken = day_start(date) - Duration::days(2);
        events.push(event("D-DUE", DUE_AGENCY, "dossier.received", taken, taken, receipt(Some(due))));
        events.push(event("D-DUE", DUE_AGENCY, "dossier.resolved", resolved, resolved, json!({ "outcome": "approved" })));

        let dir = tempfile::tempdir().unwrap();
        let log = SledLog::open(store::Config::new(dir.path().join("log"))).unwrap();
        store(&log, events);
        let indicators = Indicators::open(&log, cut, Scorecard::default_card(), Snapshots::new(dir.path(), cut, 1_000)).unwrap();

        // 1. In exactly the period that contains it, to the microsecond.
        let expected = Period::containing(&received, kind, cut);
        prop_assert_eq!(expected == period, at_period >= 0);
        for p in [period, Period::containing(&micros(start, -1), kind, cut)] {
            let n = counts(&indicators, &log, p, None, PERIOD_AGENCY).received;
            prop_assert_eq!(n, i64::from(p == expected), "{} under {} received at {}", p, cut, received);
        }
        // 2. Known on the day iff recorded before the next day began; an instant counts what was recorded by it.
        let k_period = Period::containing(&long_ago, kind, cut);
        let known = |k: KnownAt| counts(&indicators, &log, k_period, Some(k), KNOWN_AGENCY).received;
        prop_assert_eq!(known(KnownAt::Day(date)), i64::from(recorded < next_day), "known on {} recorded at {}", date, recorded);
        prop_assert_eq!(known(KnownAt::Instant(recorded)), 1);
        prop_assert_eq!(known(KnownAt::Instant(micros(recorded, -1))), 0);
        let through_text: KnownAt = date.format("%Y-%m-%d").to_string().parse().unwrap();
        prop_assert_eq!(through_text, KnownAt::Day(date));
        // 3. On time iff resolved before the day after the due date began.
        let c = counts(&indicators, &log, Period::containing(&resolved, kind, cut), None, DUE_AGENCY);
        let on_time = resolved < next_day;
        prop_assert_eq!((c.resolved_on_time, c.resolved_late), (i64::from(on_time), i64::from(!on_time)),
            "due {} resolved {}", due, resolved);
    }
}
