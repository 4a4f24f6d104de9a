//! Indicator snapshots on a real log: history answered from them equals history replayed from position 1, and a
//! snapshot that is not this log's (another log's, a damaged file) is never used.

use app::indicators::{replay, Indicators, Query, Snapshots};
use domain::calendar::Cut;
use domain::{Period, Submitted};
use projections::indicators::scorecard::Scorecard;
use projections::indicators::{Engine, Group};
use store::{AppendRequest, EventLog, SledLog};

fn province(dir: &std::path::Path, seed: u64) -> SledLog {
    let log = SledLog::open(store::Config::new(dir)).unwrap();
    let events = generator::generate(&generator::Config::new(
        seed,
        1_500,
        Period::Quarter {
            year: 2019,
            quarter: 1,
        },
        Period::Quarter {
            year: 2019,
            quarter: 2,
        },
    ));
    for chunk in events.chunks(1_000) {
        log.append_blocking(AppendRequest {
            events: chunk.iter().cloned().map(Submitted::from).collect(),
            source: "test".into(),
        })
        .unwrap();
    }
    log
}

fn q1(as_of: Option<u64>) -> Query {
    Query {
        periods: vec![
            Period::Quarter {
                year: 2019,
                quarter: 1,
            },
            Period::Month {
                year: 2019,
                month: 5,
            },
        ],
        group: Group::Agency,
        scope: None,
        as_of,
        known_at: None,
        profile: None,
    }
}

/// The rows asked for, from an engine replayed from position 1 with no snapshot.
fn from_scratch(log: &SledLog, as_of: u64, q: &Query) -> Vec<Vec<projections::indicators::Row>> {
    let mut engine = Engine::new(Cut::Calendar);
    replay(&mut engine, log, as_of).unwrap();
    q.periods
        .iter()
        .map(|p| engine.table(*p, q.group, None))
        .collect()
}

fn rows(answer: app::indicators::Answer) -> Vec<Vec<projections::indicators::Row>> {
    answer.tables.into_iter().map(|t| t.rows).collect()
}

#[test]
fn history_from_snapshots_equals_history_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = province(&dir.path().join("a"), 1);
    let size = log.head().size;
    let snapshots = Snapshots::new(dir.path(), Cut::Calendar, 1_000);
    // Snapshots every 1,000 events, as a server following the log from the start writes them.
    let mut engine = Engine::new(Cut::Calendar);
    let mut at = 1_000;
    while at < size {
        replay(&mut engine, &log, at).unwrap();
        snapshots.save(&log, &engine).unwrap();
        at += 1_000;
    }
    let indicators =
        Indicators::open(&log, Cut::Calendar, Scorecard::default_card(), snapshots).unwrap();
    assert!(indicators.snapshots.positions().len() >= 3);
    for as_of in [1, 999, 1_000, 1_001, 2_500, size - 1, size] {
        let answer = indicators.answer(&log, &q1(Some(as_of))).unwrap();
        assert_eq!(answer.stamp.position, as_of);
        assert_eq!(
            rows(answer),
            from_scratch(&log, as_of, &q1(None)),
            "as of {as_of}"
        );
    }
}

#[test]
fn a_snapshot_of_another_log_or_a_damaged_one_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let a = province(&dir.path().join("a"), 1);
    let b = province(&dir.path().join("b"), 2);
    let position = a.head().size.min(b.head().size) - 10;
    // A snapshot of log A at `position`, put where log B's snapshots live.
    let mut engine = Engine::new(Cut::Calendar);
    replay(&mut engine, &a, position).unwrap();
    let a_snapshots = Snapshots::new(&dir.path().join("a-snapshots"), Cut::Calendar, 1_000_000);
    a_snapshots.save(&a, &engine).unwrap();
    let b_dir = dir.path().join("b-snapshots");
    let b_snapshots = Snapshots::new(&b_dir, Cut::Calendar, 1_000_000);
    let file = format!("{position:020}.bin");
    let from = dir
        .path()
        .join("a-snapshots/indicator-snapshots/calendar")
        .join(&file);
    let to_dir = b_dir.join("indicator-snapshots/calendar");
    std::fs::create_dir_all(&to_dir).unwrap();
    std::fs::copy(&from, to_dir.join(&file)).unwrap();
    assert!(
        b_snapshots
            .nearest(&b, Cut::Calendar, b.head().size)
            .is_none(),
        "A's snapshot was taken for B's"
    );
    let indicators =
        Indicators::open(&b, Cut::Calendar, Scorecard::default_card(), b_snapshots).unwrap();
    let size = b.head().size;
    assert_eq!(
        rows(indicators.answer(&b, &q1(None)).unwrap()),
        from_scratch(&b, size, &q1(None))
    );

    // A damaged snapshot of A itself: skipped, and the answer is still right.
    let own = a_snapshots.nearest(&a, Cut::Calendar, position);
    assert!(own.is_some(), "A's own snapshot is usable");
    let bytes = std::fs::read(&from).unwrap();
    std::fs::write(&from, &bytes[..bytes.len() / 2]).unwrap();
    assert!(a_snapshots.nearest(&a, Cut::Calendar, position).is_none());
    let indicators =
        Indicators::open(&a, Cut::Calendar, Scorecard::default_card(), a_snapshots).unwrap();
    assert_eq!(
        rows(indicators.answer(&a, &q1(Some(position))).unwrap()),
        from_scratch(&a, position, &q1(None))
    );
    // And a snapshot of the other cut is never taken for this one.
    assert!(
        Snapshots::new(&dir.path().join("a-snapshots"), Cut::Decree09, 1)
            .nearest(&a, Cut::Decree09, position)
            .is_none()
    );
}

/// The next of a small deterministic sequence (xorshift64).
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Questions asked while the log grows and a follower folds it in pages of its own (as `follow` does, late):
/// every table `as_of` the position just written, or an earlier one, or live, is the table of exactly the position
/// its stamp names, whichever of the question and the follower moved the live engine first.
#[test]
fn questions_racing_the_follower_are_answered_for_exactly_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let all = province(&source, 3);
    let events: Vec<_> = all.read_after(0, usize::MAX).unwrap();
    drop(all);
    let log = std::sync::Arc::new(SledLog::open(store::Config::new(dir.path().join("b"))).unwrap());
    let mut chunks = events.chunks(40);
    log.append_blocking(AppendRequest {
        events: chunks
            .next()
            .unwrap()
            .iter()
            .cloned()
            .map(Submitted::from)
            .collect(),
        source: "test".into(),
    })
    .unwrap();
    // No snapshot to fall back on: a question the engine has passed replays from position 1.
    let snapshots = Snapshots::new(dir.path(), Cut::Calendar, u64::MAX);
    let indicators = std::sync::Arc::new(
        Indicators::open(&*log, Cut::Calendar, Scorecard::default_card(), snapshots).unwrap(),
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = {
        let (log, indicators, done) = (log.clone(), indicators.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut folded = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let seed = xorshift(&mut seed);
                let page = log
                    .read_after(indicators.position(), 1 + (seed % 120) as usize)
                    .unwrap();
                if !page.is_empty() {
                    indicators.fold(&*log, &page).unwrap();
                    folded += page.len();
                }
                std::thread::sleep(std::time::Duration::from_micros(seed % 1_500));
            }
            folded
        })
    };
    let mut seed = 7u64;
    let mut asked = 0;
    for chunk in chunks {
        let written = log
            .append_blocking(AppendRequest {
                events: chunk.iter().cloned().map(Submitted::from).collect(),
                source: "test".into(),
            })
            .unwrap();
        let last = written.receipts.last().unwrap().position;
        let earlier = 1 + xorshift(&mut seed) % last;
        for as_of in [Some(last), Some(earlier), None] {
            let answer = indicators.answer(&*log, &q1(as_of)).unwrap();
            let at = answer.stamp.position;
            match as_of {
                Some(p) => assert_eq!(at, p),
                None => assert!(
                    at >= last,
                    "a live question answered at {at}, before {last}"
                ),
            }
            assert_eq!(
                rows(answer),
                from_scratch(&log, at, &q1(None)),
                "as of {at}"
            );
            asked += 1;
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let folded = follower.join().unwrap();
    assert!(asked > 300, "{asked} questions");
    assert!(
        folded > 0,
        "the follower folded nothing: the race was not run"
    );
    assert_eq!(indicators.position(), log.head().size);
}
