//! Report profiles against published tables: Kon Tum's first quarter of 2023 rebuilt as events, the seed letter,
//! other period cuts, and the official form's identities on generated provinces under every built-in profile.

use super::{append, loader, open_log, periods, replayed};
use chrono::{DateTime, FixedOffset};
use domain::calendar::Cut;
use domain::event::*;
use domain::{Period, StoredEvent, Text};
use projections::indicators::profile::{Profile, Profiles};
use projections::indicators::{Engine, Group, Row};
use proptest::prelude::*;
use std::collections::HashMap;
use store::EventLog;

const DEPARTMENT: &str = "000.00.10.H34";

fn t(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

/// Stored in a real log, and an engine of `cut` replayed from it.
fn engine_of(events: &[StoredEvent], cut: Cut) -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    for chunk in events.chunks(1_000) {
        append(&log, chunk);
    }
    replayed(&log, cut, events.len() as u64)
}

fn profile(id: &str) -> Profile {
    Profiles::built_in().get(id).unwrap().clone()
}

/// A rate of a row printed under its profile.
fn printed(row: &Row, rate: &str) -> String {
    let f = row.fraction(rate).unwrap();
    row.defs.rounding.percent(f.num, f.den).unwrap()
}

/// The generated lives with the resolution of every `every`-th returned dossier left out, so that it is returned
/// without a resolution (the generator never does that), positions and versions numbered again.
fn returned_unresolved(events: Vec<StoredEvent>, every: usize) -> Vec<StoredEvent> {
    let mut returned: Vec<String> = events
        .iter()
        .filter(|e| matches!(e.event.data, EventData::Returned(_)))
        .filter_map(|e| e.event.dossier.as_ref().map(|d| d.to_string()))
        .collect();
    returned.sort();
    let chosen: std::collections::HashSet<String> = returned.into_iter().step_by(every).collect();
    let mut versions: HashMap<String, u64> = HashMap::new();
    events
        .into_iter()
        .filter(|e| {
            !(matches!(e.event.data, EventData::Resolved(_))
                && e.event
                    .dossier
                    .as_ref()
                    .is_some_and(|d| chosen.contains(d.as_str())))
        })
        .enumerate()
        .map(|(i, mut e)| {
            e.position = i as u64 + 1;
            let version = versions.entry(e.event.stream().key()).or_default();
            *version += 1;
            e.version = *version;
            e
        })
        .collect()
}

/// Kon Tum, first quarter of 2023, "from 15/12/2022 to 14/3/2023", rebuilt as events so that the published counts
/// hold (`generator::published`): 56,039 dossiers = 12,516 online + 38,613 at the counter or by post + 4,910
/// carried over; by level (new + carried) 23,233 departments (6,596 online), 6,776 districts (2,521), 26,030
/// communes (3,399).
#[test]
fn kon_tum_first_quarter_of_2023_as_published() {
    let events = generator::published::kon_tum_2023_q1();
    let q1 = Period::Quarter {
        year: 2023,
        quarter: 1,
    };
    let engine = engine_of(&events, Cut::Decree09);

    // The counts are the published ones.
    let province = &engine.table(q1, Group::Province, None)[0];
    let c = province.counts;
    assert_eq!(
        (
            c.received,
            c.received_online,
            c.received_counter + c.received_postal,
            c.carried_over
        ),
        (51_129, 12_516, 38_613, 4_910)
    );
    assert_eq!(province.form().received_total, 56_039);
    let levels = engine.table(q1, Group::Level, None);
    let by_level: Vec<(i64, i64)> = levels
        .iter()
        .map(|r| {
            (
                r.counts.received + r.counts.carried_over,
                r.counts.received_online,
            )
        })
        .collect();
    assert_eq!(
        by_level,
        vec![(23_233, 6_596), (6_776, 2_521), (26_030, 3_399)]
    );

    // The national definitions: over new dossiers only.
    assert_eq!(printed(province, "online_rate"), "24.48");

    // Kon Tum's: over new + carried over, truncated to two decimals.
    let kon_tum = profile("kon-tum");
    assert_eq!(kon_tum.cut, Some(Cut::Decree09));
    let province = &engine.table_under(q1, Group::Province, None, kon_tum.defs)[0];
    assert_eq!(printed(province, "online_rate"), "22.33");
    let levels = engine.table_under(q1, Group::Level, None, kon_tum.defs);
    let shown: Vec<String> = levels.iter().map(|r| printed(r, "online_rate")).collect();
    // The district's published 37.76 % is a slip: its counts give 37.20 %.
    assert_eq!(shown, vec!["28.39", "37.20", "13.05"]);
    // Rounded half up, the commune row would have read 13.06: the published 13.05 was truncated.
    let half_up = profile("over-resolved").defs.rounding;
    assert_eq!(half_up.percent(3_399, 26_030).as_deref(), Some("13.06"));

    // Under the calendar cut the same dossiers fall otherwise: the quarter holds no carried-over dossier.
    let calendar = engine_of(&events, Cut::Calendar);
    let other = &calendar.table(q1, Group::Province, None)[0];
    assert_ne!(other.counts.carried_over, 4_910);
}

/// The seed letter's 2,668 of 34,996 prints 7.62 % under every built-in rounding (its 7.68 % is a slip).
#[test]
fn the_seed_letter_under_every_rounding() {
    for p in Profiles::built_in().all() {
        assert_eq!(
            p.defs.rounding.percent(2_668, 34_996).as_deref(),
            Some("7.62"),
            "{}",
            p.id
        );
    }
}

/// Period cuts: a dossier received at 00:30 on the 15th (Vietnam time) falls in the next quarter under the
/// 15th cut, the same instant a day earlier at 23:30 on the 14th in this one; months under the 21st cut likewise.
#[test]
fn period_cuts_put_a_dossier_on_either_side_of_midnight() {
    let mut h = generator::published::History::default();
    h.register(DEPARTMENT, "Sở", AgencyLevel::Department);
    h.receive(
        "CUT-1",
        DEPARTMENT,
        t("2023-03-14T23:30:00+07:00"),
        Channel::Counter,
    );
    h.receive(
        "CUT-2",
        DEPARTMENT,
        t("2023-03-15T00:30:00+07:00"),
        Channel::Online,
    );
    h.receive(
        "CUT-3",
        DEPARTMENT,
        t("2023-03-20T23:30:00+07:00"),
        Channel::Counter,
    );
    h.receive(
        "CUT-4",
        DEPARTMENT,
        t("2023-03-21T00:30:00+07:00"),
        Channel::Online,
    );
    let received = |engine: &Engine, p: &str| {
        engine.table(p.parse().unwrap(), Group::Province, None)[0]
            .counts
            .received
    };
    let decree = engine_of(&h.events, Cut::Decree09);
    assert_eq!(
        (received(&decree, "2023-Q1"), received(&decree, "2023-Q2")),
        (1, 3)
    );
    let day21 = engine_of(&h.events, profile("vinh-phuc").cut.unwrap());
    assert_eq!(
        (received(&day21, "2023-03"), received(&day21, "2023-04")),
        (3, 1)
    );
    let calendar = engine_of(&h.events, Cut::Calendar);
    assert_eq!(received(&calendar, "2023-03"), 4);
}

/// Vĩnh Phúc's on-time rate is over the dossiers falling due in the period: one resolved by its due date, one
/// after it, one open past it; one open and not yet due as the log knows, and a withdrawn one, are not counted.
#[test]
fn on_time_over_the_dossiers_falling_due() {
    let mut h = generator::published::History::default();
    h.register(DEPARTMENT, "Sở", AgencyLevel::Department);
    let at = t("2021-01-05T08:00:00+07:00"); // due 90 days later: 5 April
    for d in ["D-1", "D-2", "D-3", "D-5"] {
        h.receive(d, DEPARTMENT, at, Channel::Counter);
    }
    let resolve = EventData::Resolved(Resolved {
        outcome: Outcome::Approved,
    });
    h.push(
        Some("D-1"),
        DEPARTMENT,
        t("2021-04-05T16:00:00+07:00"),
        resolve.clone(),
    );
    h.push(
        Some("D-2"),
        DEPARTMENT,
        t("2021-04-07T16:00:00+07:00"),
        resolve,
    );
    h.push(
        Some("D-5"),
        DEPARTMENT,
        t("2021-02-01T16:00:00+07:00"),
        EventData::Withdrawn(Withdrawn { reason: None }),
    );
    h.receive(
        "D-6",
        DEPARTMENT,
        t("2021-03-01T08:00:00+07:00"),
        Channel::Counter,
    ); // due 30 May
       // The log's time moves to 25 April.
    h.push(
        None,
        "000.00.20.H34",
        t("2021-04-25T08:00:00+07:00"),
        EventData::AgencyRegistered(AgencyRegistered {
            name: Text::parse("Huyện").unwrap(),
            level: AgencyLevel::District,
            parent: None,
        }),
    );
    let vinh_phuc = profile("vinh-phuc");
    let engine = engine_of(&h.events, vinh_phuc.cut.unwrap());
    // Under the 21st cut, 5 April falls in "2021-04" (21 March to 20 April).
    let row = &engine.table_under(
        "2021-04".parse().unwrap(),
        Group::Agency,
        None,
        vinh_phuc.defs,
    )[0];
    assert_eq!(
        (row.counts.due_met, row.counts.due_missed),
        (1, 2),
        "D-1 met; D-2 and D-3 missed"
    );
    assert_eq!(printed(row, "on_time_rate"), "33.33");
    let may = &engine.table_under(
        "2021-06".parse().unwrap(),
        Group::Agency,
        None,
        vinh_phuc.defs,
    )[0];
    assert_eq!(
        may.fraction("on_time_rate").unwrap().den,
        0,
        "D-6 is not due yet as the log knows"
    );
}

/// `check-report`'s reading of Kon Tum's published table: every row adds up, the department, commune and total
/// rates are reproduced over new + carried over truncated (the kon-tum profile), and the district's 37.76 % is
/// named a slip with 37.20 %.
#[test]
fn kon_tum_published_table_checked() {
    use projections::indicators::check::{check, Rate, RateVerdict, Table};
    let table = Table::open(generator::published::KON_TUM_2023_Q1_CSV.as_bytes()).unwrap();
    let profiles = Profiles::built_in();
    let report = check(&table, profiles.all(), |_| None).unwrap();
    assert_eq!(report.summary.profile.as_deref(), Some("kon-tum"));
    assert_eq!(
        (report.summary.sums_failed, report.summary.slips),
        (0, 1),
        "{report:#?}"
    );
    let verdicts: Vec<&RateVerdict> = report
        .rows
        .iter()
        .map(|r| &r.rates[&Rate::OnlineRate])
        .collect();
    match verdicts[1] {
        RateVerdict::Slip {
            printed,
            correct,
            under,
        } => {
            assert_eq!((printed.as_str(), correct.as_str()), ("37.76", "37.20"));
            assert_eq!((under.numerator, under.denominator), (2_521, 6_776));
            assert!(under.profiles.contains(&"kon-tum".to_owned()));
        }
        other => panic!("the district row: {other:?}"),
    }
    for i in [0, 2, 3] {
        let RateVerdict::Reproduced { readings, .. } = verdicts[i] else {
            panic!("row {i}: {:?}", verdicts[i])
        };
        assert!(readings
            .iter()
            .any(|r| r.profiles.contains(&"kon-tum".to_owned()) && r.rounding == "truncated"));
    }
    // The commune row is reproduced only truncated: half up would print 13.06.
    let RateVerdict::Reproduced { readings, .. } = verdicts[2] else {
        unreachable!()
    };
    assert!(
        readings.iter().all(|r| r.rounding == "truncated"),
        "{readings:?}"
    );
    // The total row's counts are the sums of the level rows'.
    let total = report.rows.last().unwrap();
    assert!(total
        .sums
        .iter()
        .any(|s| s.rule.starts_with("total received_total") && s.holds));
}

/// The seed letter's 7.68 % is named a slip, with 7.62 % under the national definition.
#[test]
fn the_seed_letters_slip_is_named() {
    use projections::indicators::check::{check, Published, Rate, RateVerdict, Table};
    let table = Table::open(generator::published::SEED_LETTER_CSV.as_bytes()).unwrap();
    let report = check(&table, Profiles::built_in().all(), |_| None).unwrap();
    match &report.rows[0].rates[&Rate::OnlineRate] {
        RateVerdict::Slip {
            printed,
            correct,
            under,
        } => {
            assert_eq!((printed.as_str(), correct.as_str()), ("7.68", "7.62"));
            assert!(under.profiles.contains(&"national".to_owned()), "{under:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!report.clean());
    // A table whose sums do not add up is named too, and one with no column it knows is refused.
    let bad = "Đơn vị,(3),(4),(5),(6)\nSở,10,3,5,1\n";
    let report = check(
        &Table::open(bad.as_bytes()).unwrap(),
        Profiles::built_in().all(),
        |_| None,
    )
    .unwrap();
    assert_eq!(report.summary.sums_failed, 1);
    assert!(Published::parse(b"a,b\n1,2\n").is_err());
    assert!(Published::parse("Đơn vị,Trực tuyến\nSở,abc\n".as_bytes())
        .unwrap_err()
        .contains("line 2"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// On a generated province, every identity of the official form holds for every agency, subtree, level and
    /// the province, in every month, quarter and year, under every built-in profile (with each profile's cut).
    #[test]
    fn the_forms_identities_hold_under_every_profile(seed in any::<u64>(), dossiers in 150u64..350, every in 2usize..6) {
        let (from, to) = (Period::Quarter { year: 2018, quarter: 4 }, Period::Quarter { year: 2019, quarter: 2 });
        let events = returned_unresolved(generator::generate(&generator::Config::new(seed, dossiers, from, to)), every);
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        for chunk in events.chunks(1_000) {
            append(&log, chunk);
        }
        let mut engines: HashMap<Cut, Engine> = HashMap::new();
        let (mut apart, mut unresolved) = (0, 0);
        for p in Profiles::built_in().all() {
            let cut = p.cut_or(Cut::Calendar);
            let engine = engines.entry(cut).or_insert_with(|| {
                let mut e = Engine::new(cut);
                let all: Vec<StoredEvent> = log.read_after(0, usize::MAX).unwrap();
                e.fold_all(all, &mut loader(&log)).unwrap();
                e
            });
            for period in periods(from, to) {
                for group in [Group::Agency, Group::Subtree, Group::Level, Group::Province] {
                    for row in engine.table_under(period, group, None, p.defs) {
                        let form = row.form();
                        apart += form.withdrawn + form.unresolved + form.waiting;
                        let c = &row.counts;
                        unresolved += c.unresolved_early + c.unresolved_on_time + c.unresolved_late;
                        for identity in form.identities(&p.defs.apart_columns()) {
                            prop_assert!(identity.holds(), "{} {period} {group} {:?}: {} is {} = {}",
                                p.id, row.key.name, identity.rule, identity.left, identity.right);
                        }
                        prop_assert!(form.received_total >= 0 && form.in_progress >= 0 && form.resolved >= 0);
                    }
                }
            }
        }
        // The national profile keeps withdrawn dossiers apart: a withdrawal shows in that column somewhere.
        let withdrawals = events.iter().any(|e| matches!(e.event.data, EventData::Withdrawn(_)));
        prop_assert_eq!(apart > 0, withdrawals, "withdrawn dossiers kept apart");
        let with = |f: fn(&EventData) -> bool| -> std::collections::HashSet<String> {
            events.iter().filter(|e| f(&e.event.data)).filter_map(|e| e.event.dossier.as_ref().map(|d| d.to_string())).collect()
        };
        let returned = with(|d| matches!(d, EventData::Returned(_)));
        let resolved = with(|d| matches!(d, EventData::Resolved(_)));
        prop_assert_eq!(unresolved > 0, returned.difference(&resolved).next().is_some(), "returned without a resolution");
    }
}
