//! Published tables against a real log: Kon Tum's first quarter of 2023 rebuilt as events, its published table
//! checked against it, and the official form filled from it (the XLSX read back equals the JSON).

use app::check::{check_published, CheckQuestion};
use app::indicators::{forms, Indicators, Query};
use calamine::{DataType, Reader};
use domain::{Period, Submitted};
use projections::indicators::check::Quantity;
use projections::indicators::form::{form_csv, form_json, form_xlsx, FormBy};
use projections::indicators::render::Lang;
use projections::indicators::Group;
use store::{AppendRequest, EventLog, SledLog};

/// A real log in `dir/db` holding `events`.
fn stored(dir: &std::path::Path, events: &[domain::StoredEvent]) -> SledLog {
    let log = SledLog::open(store::Config::new(dir.join("db"))).unwrap();
    for chunk in events.chunks(1_000) {
        log.append_blocking(AppendRequest {
            events: chunk.iter().cloned().map(Submitted::from).collect(),
            source: "test".into(),
        })
        .unwrap();
    }
    log
}

fn kon_tum(dir: &std::path::Path) -> SledLog {
    stored(dir, &generator::published::kon_tum_2023_q1())
}

const Q1: Period = Period::Quarter {
    year: 2023,
    quarter: 1,
};

/// The server runs on the calendar cut; Kon Tum's profile names the 15th, so its questions are answered by an
/// engine of that cut, made on first use.
#[test]
fn kon_tums_published_table_against_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = kon_tum(dir.path());
    let service = Indicators::open_for(&log, &app::Settings::new(dir.path())).unwrap();
    let question = CheckQuestion {
        period: Some(Q1),
        ..CheckQuestion::default()
    };
    let csv = generator::published::KON_TUM_2023_Q1_CSV;
    let report = check_published(&service, &log, csv.as_bytes(), &question).unwrap();
    assert_eq!(report.summary.profile.as_deref(), Some("kon-tum"));
    assert_eq!(
        (
            report.summary.slips,
            report.summary.sums_failed,
            report.summary.counts_differing
        ),
        (1, 0, 0),
        "{report:#?}"
    );
    let compared: usize = report
        .rows
        .iter()
        .map(|r| r.against_log.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        compared, 10,
        "two counts on each level row, four on the total row"
    );

    // One published count changed: named, with casetrail's, and the total no longer adds up.
    let changed = csv.replace("Cấp huyện,6.776", "Cấp huyện,6.777");
    let report = check_published(&service, &log, changed.as_bytes(), &question).unwrap();
    let district = &report.rows[1];
    let differing: Vec<_> = district
        .against_log
        .as_ref()
        .unwrap()
        .iter()
        .filter(|c| !c.equal)
        .collect();
    assert_eq!(differing.len(), 1);
    assert_eq!(
        (
            differing[0].quantity,
            differing[0].published,
            differing[0].casetrail
        ),
        (Quantity::ReceivedTotal, 6_777, 6_776)
    );
    assert_eq!(
        report.summary.sums_failed, 1,
        "the total is no longer the sum of the rows"
    );

    // Under the calendar cut (the national profile at this server), the same quarter holds other dossiers.
    let national = CheckQuestion {
        period: Some(Q1),
        profile: Some("national".into()),
        ..CheckQuestion::default()
    };
    let report = check_published(&service, &log, csv.as_bytes(), &national).unwrap();
    assert!(report.summary.counts_differing > 0);
    // An unknown profile is refused by name.
    let unknown = CheckQuestion {
        period: Some(Q1),
        profile: Some("hà-giang".into()),
        ..CheckQuestion::default()
    };
    assert!(check_published(&service, &log, csv.as_bytes(), &unknown)
        .unwrap_err()
        .to_string()
        .contains("kon-tum"));
}

/// The form by level under Kon Tum's profile: the published counts in its columns, its identities held, and the
/// workbook read back equal to the JSON, cell by cell.
#[test]
fn the_form_as_a_workbook_equals_its_json() {
    let dir = tempfile::tempdir().unwrap();
    let log = kon_tum(dir.path());
    let service = Indicators::open_for(&log, &app::Settings::new(dir.path())).unwrap();
    for (by, group) in [
        (FormBy::Level, Group::Level),
        (FormBy::Agency, Group::Agency),
    ] {
        let q = Query {
            periods: vec![Q1],
            group,
            scope: None,
            as_of: None,
            known_at: None,
            profile: Some("kon-tum".into()),
        };
        let answer = service.answer(&log, &q).unwrap();
        assert_eq!(answer.stamp.settings.cut.to_string(), "decree-09");
        let f = forms(&answer, by, Lang::Vi).unwrap();
        let json = form_json(&answer.stamp, &f);
        let lines = json["tables"][0]["lines"].as_array().unwrap();
        let total = lines.last().unwrap();
        assert_eq!(total["columns"]["3"], 56_039);
        assert_eq!(total["columns"]["4"], 12_516);
        assert_eq!(total["columns"]["5"], 38_613);
        assert_eq!(total["columns"]["6"], 4_910);
        assert_eq!(json["tables"][0]["identities"]["hold"], true);

        // casetrail's own form CSV, checked against the log: it adds up, and every count is the log's.
        let csv = form_csv(&answer.stamp, &f, Lang::Vi).unwrap();
        let question = CheckQuestion {
            period: Some(Q1),
            ..CheckQuestion::default()
        };
        let report = check_published(&service, &log, &csv, &question).unwrap();
        assert!(report.clean(), "{by:?}: {report:#?}");
        assert_eq!(
            report.summary.profile.as_deref(),
            Some("kon-tum"),
            "the profile the CSV names"
        );
        assert!(report
            .rows
            .iter()
            .all(|r| r.against_log.as_ref().is_some_and(|c| !c.is_empty())));

        let bytes = form_xlsx(&answer.stamp, &f, Lang::Vi).unwrap();
        let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
        let sheet = book.worksheet_range("Biểu 2023-Q1").unwrap();
        let columns: Vec<String> = json["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["number"].to_string())
            .collect();
        // Row 8 (0-based) is the first line; column 0 its number, 1 its name, then the numbered columns.
        for (i, line) in lines.iter().enumerate() {
            let r = 8 + i as u32;
            let cell = |c: u32| {
                sheet
                    .get_value((r, c))
                    .cloned()
                    .unwrap_or(calamine::Data::Empty)
            };
            assert_eq!(cell(1).to_string(), line["name"].as_str().unwrap());
            for (j, number) in columns.iter().enumerate() {
                let value = cell(2 + j as u32);
                assert_eq!(
                    value.as_f64(),
                    line["columns"][number].as_f64(),
                    "line {i} column ({number})"
                );
            }
        }
        // The column numbers under the merged headers: (1), (2), (3)…
        assert_eq!(sheet.get_value((7, 2)).unwrap().to_string(), "(3)");
        assert_eq!(
            sheet.get_value((4, 2)).unwrap().to_string(),
            "Số hồ sơ nhận giải quyết"
        );
        book.load_merged_regions().unwrap();
        let merged: Vec<((u32, u32), (u32, u32))> = book
            .merged_regions_by_sheet("Biểu 2023-Q1")
            .iter()
            .map(|(_, _, d)| (d.start, d.end))
            .collect();
        // "Received" over (3)–(6), "Results" over (7)–(13), "Resolved" over (7)–(10), "In progress" over (11)–(13).
        for region in [
            ((4, 2), (4, 5)),
            ((4, 6), (4, 12)),
            ((5, 6), (5, 9)),
            ((5, 10), (5, 12)),
            ((4, 0), (6, 0)),
        ] {
            assert!(merged.contains(&region), "{region:?} in {merged:?}");
        }
    }
}

/// casetrail's own indicator CSVs, under every built-in profile and grouping, a single quarter and a series of
/// months, checked against the log they came from: every sum adds up, every printed rate is reproduced from the
/// columns beside it, and every count is the log's (a generated province: withdrawals, supplements, transfers).
#[test]
fn every_table_casetrail_writes_checks_clean_against_its_log() {
    use projections::indicators::render::{csv, Lang};
    let dir = tempfile::tempdir().unwrap();
    let events = generator::generate(&generator::Config::new(
        5,
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
    let log = stored(dir.path(), &events);
    let service = Indicators::open_for(&log, &app::Settings::new(dir.path())).unwrap();
    let months: Vec<Period> = ["2019-04", "2019-05", "2019-06"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    for profile in service.profiles.ids() {
        for group in [Group::Agency, Group::Subtree, Group::Level, Group::Province] {
            for periods in [
                vec![Period::Quarter {
                    year: 2019,
                    quarter: 2,
                }],
                months.clone(),
            ] {
                let q = Query {
                    periods: periods.clone(),
                    group,
                    scope: None,
                    as_of: None,
                    known_at: None,
                    profile: Some(profile.into()),
                };
                let answer = service.answer(&log, &q).unwrap();
                let table = csv(&answer.stamp, &answer.tables, &service.card, Lang::Vi).unwrap();
                let question = CheckQuestion {
                    period: Some(periods[0]),
                    ..CheckQuestion::default()
                };
                let report = check_published(&service, &log, &table, &question).unwrap();
                let what = format!("{profile} {group} {} period(s)", periods.len());
                assert!(
                    report.clean(),
                    "{what}: {}",
                    projections::indicators::check::text(&report)
                );
                assert_eq!(
                    report.summary.compared_under.as_deref(),
                    Some(profile),
                    "{what}"
                );
                let compared: usize = report
                    .rows
                    .iter()
                    .map(|r| r.against_log.as_ref().map_or(0, Vec::len))
                    .sum();
                assert!(compared > 0, "{what}: nothing compared");
                assert!(
                    report.rows.iter().all(|r| r.matched.is_some()),
                    "{what}: a row not matched"
                );
            }
        }
    }
}

/// A province's own profiles come from a directory: a good file is offered beside the built-in ones; a file that is
/// no profile, or that takes an id already offered, stops the service naming the file and the reason.
#[test]
fn profiles_from_a_directory_are_offered_or_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let built_in = projections::indicators::profile::BUILT_IN[1].1;
    let mine = built_in.replace("id = \"kon-tum\"", "id = \"my-province\"");
    std::fs::write(dir.path().join("mine.toml"), &mine).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a profile, not read").unwrap();
    let offered = app::indicators::profiles(Some(dir.path())).unwrap();
    assert_eq!(offered.ids().last(), Some(&"my-province"));
    assert!(offered.require(Some("my-province")).is_ok());
    assert!(offered
        .require(Some("nowhere"))
        .unwrap_err()
        .contains("my-province"));

    std::fs::write(dir.path().join("twice.toml"), built_in).unwrap();
    let why = app::indicators::profiles(Some(dir.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        why.contains("twice.toml") && why.contains("kon-tum"),
        "{why}"
    );
    std::fs::remove_file(dir.path().join("twice.toml")).unwrap();
    std::fs::write(
        dir.path().join("broken.toml"),
        mine.replace("truncate", "sideways"),
    )
    .unwrap();
    let why = app::indicators::profiles(Some(dir.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(why.contains("broken.toml"), "{why}");
}
