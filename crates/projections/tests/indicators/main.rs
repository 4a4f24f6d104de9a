//! The indicator engine against a real sled log and an independent recount.

mod brute;
mod cases;
mod profiles;
mod published;
mod verdicts;

use brute::World;
use chrono::{DateTime, Utc};
use domain::calendar::{Cut, PeriodKind};
use domain::{Period, StoredEvent, Submitted};
use projections::indicators::{Engine, Group};
use proptest::prelude::*;
use store::{AppendRequest, EventLog, SledLog};

pub fn open_log(dir: &std::path::Path) -> SledLog {
    let mut config = store::Config::new(dir);
    config.cache_capacity_bytes = 16 << 20;
    SledLog::open(config).unwrap()
}

/// Reads a dossier's earlier events back from the log, as the server's engine does.
pub fn loader(log: &SledLog) -> impl FnMut(&str, u64) -> Result<Vec<StoredEvent>, String> + '_ {
    move |code, before| log.stream_before(code, before).map_err(|e| e.to_string())
}

/// A fresh engine over the log's events up to `position`.
pub fn replayed(log: &SledLog, cut: Cut, position: u64) -> Engine {
    let mut engine = Engine::new(cut);
    let events: Vec<StoredEvent> = log
        .scan(0)
        .map(|e| e.unwrap())
        .take_while(|e| e.position <= position)
        .collect();
    engine.fold_all(events, &mut loader(log)).unwrap();
    engine
}

/// Every period of every kind that touches the range, one on each side included.
pub fn periods(from: Period, to: Period) -> Vec<Period> {
    let mut out = Vec::new();
    for kind in [PeriodKind::Month, PeriodKind::Quarter, PeriodKind::Year] {
        let first = Period::containing(&from.start(Cut::Calendar), kind, Cut::Calendar);
        let last = Period::containing(&to.start(Cut::Calendar), kind, Cut::Calendar);
        let mut p = previous(first);
        while p <= last.next() {
            out.push(p);
            p = p.next();
        }
    }
    out
}

fn previous(p: Period) -> Period {
    match p {
        Period::Month { year, month: 1 } => Period::Month {
            year: year - 1,
            month: 12,
        },
        Period::Month { year, month } => Period::Month {
            year,
            month: month - 1,
        },
        Period::Quarter { year, quarter: 1 } => Period::Quarter {
            year: year - 1,
            quarter: 4,
        },
        Period::Quarter { year, quarter } => Period::Quarter {
            year,
            quarter: quarter - 1,
        },
        Period::Year { year } => Period::Year { year: year - 1 },
    }
}

pub type Comparable = Vec<(String, projections::indicators::Counts, f64, f64)>;

/// The engine's rows in the recount's shape.
pub fn engine_rows(engine: &Engine, group: Group, period: Period) -> Comparable {
    engine
        .table(period, group, None)
        .into_iter()
        .map(|r| {
            let name = match (group, &r.key.agency) {
                (Group::Agency | Group::Subtree, Some(a)) => a.to_string(),
                _ => r.key.name.clone(),
            };
            (name, r.counts, r.online_target, r.postal_target)
        })
        .collect()
}

pub const GROUPS: [(Group, &str); 4] = [
    (Group::Agency, "agency"),
    (Group::Subtree, "subtree"),
    (Group::Level, "level"),
    (Group::Province, "province"),
];

/// Every grouping of every period: the engine's rows equal the recount's.
pub fn assert_same(engine: &Engine, world: &World, periods: &[Period], what: &str) {
    for &period in periods {
        for (group, name) in GROUPS {
            let ours = engine_rows(engine, group, period);
            let theirs = world.rows(name, period, engine.cut());
            if ours != theirs {
                let diff: Vec<_> = ours
                    .iter()
                    .zip(theirs.iter())
                    .filter(|(a, b)| a != b)
                    .take(2)
                    .collect();
                panic!(
                    "{what}: {period} by {name} differs from the recount ({} rows vs {}):\n{diff:#?}",
                    ours.len(),
                    theirs.len()
                );
            }
        }
    }
}

fn append(log: &SledLog, events: &[StoredEvent]) {
    log.append_blocking(AppendRequest {
        events: events.iter().cloned().map(Submitted::from).collect(),
        source: "test".into(),
    })
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// For generated provinces: the engine fed as events commit (reading dropped dossiers back from the log),
    /// an engine rebuilt from scratch, and the recount agree on every row of every grouping, every month,
    /// quarter and year, at several log positions and as known at a random instant.
    #[test]
    fn live_rebuilt_and_recounted_tables_agree(
        seed in any::<u64>(),
        dossiers in 150u64..400,
        decree in any::<bool>(),
        batch in 1usize..200,
        known_at_share in 0.0f64..1.0,
        other_cut in 0u8..4,
    ) {
        // Calendar and decree-09 as before; now and then a cut of a report profile (Vĩnh Phúc's 21st, the month
        // before) instead.
        let cut = match (other_cut, decree) {
            (2, _) => Cut::Day(21),
            (3, _) => Cut::Day(1),
            (_, true) => Cut::Decree09,
            (_, false) => Cut::Calendar,
        };
        let (from, to) = (Period::Quarter { year: 2018, quarter: 4 }, Period::Quarter { year: 2019, quarter: 2 });
        let events = generator::generate(&generator::Config::new(seed, dossiers, from, to));
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        // The live engine drops settled dossiers often (every 7 positions, a day after their end), so that reading
        // them back from the log is exercised; the rebuilt one keeps the defaults.
        let mut live = Engine::new(cut).with_eviction(7, 86_400);
        let all_periods = periods(from, to);
        let checks = [events.len() / 3, 2 * events.len() / 3];
        for chunk in events.chunks(batch) {
            append(&log, chunk);
            let after = live.position();
            for e in log.read_after(after, usize::MAX).unwrap() {
                live.apply(&e, &mut loader(&log)).unwrap();
            }
            let position = live.position() as usize;
            if checks.iter().any(|c| position - chunk.len() < *c && *c <= position) {
                let world = World::new(&events, position as u64, None);
                assert_same(&live, &world, &all_periods, &format!("live at {position}"));
            }
        }
        prop_assert_eq!(live.position(), events.len() as u64);
        prop_assert!(live.reloads > 0, "settled dossiers were read back");
        let world = World::new(&events, events.len() as u64, None);
        assert_same(&live, &world, &all_periods, "live at the end");
        let rebuilt = replayed(&log, cut, events.len() as u64);
        assert_same(&rebuilt, &world, &all_periods, "rebuilt");

        // As known at an instant: the events recorded by then, open dossiers judged then.
        let first: DateTime<Utc> = events[0].recorded_at;
        let last: DateTime<Utc> = events.last().unwrap().recorded_at;
        let known_at = first + (last - first) * ((known_at_share * 1000.0) as i32) / 1000;
        let position = events.iter().take_while(|e| e.recorded_at <= known_at).count() as u64;
        let mut then = replayed(&log, cut, position);
        then.advance(known_at.timestamp());
        let world = World::new(&events, position, Some(known_at));
        assert_same(&then, &world, &all_periods, &format!("known at {known_at}"));
    }
}
