//! The official form by procedure field (lĩnh vực): a generated province whose procedures are offered with
//! their fields, on a real log. The form by field only regroups the form by agency: for every built-in profile
//! (each with its own cut), every quarter and the year, the whole province and a district's subtree, its level
//! subtotals and its total equal those by agency, column by column; its lines are the fields, named.

use app::indicators::{forms, Indicators, Query};
use domain::{Period, Submitted};
use projections::indicators::form::{FormBy, FormTable, LineKind};
use projections::indicators::render::Lang;
use projections::indicators::{Group, Profiles};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use store::{AppendRequest, EventLog, SledLog};

/// The fields the procedures are given: eleven, by their code's last two digits, with one in twelve left without
/// (more than nine, so that the lines' order is by the fields' codes, not by how their numbers spell).
fn field_of(procedure: &str) -> Option<(String, String)> {
    let digits: u32 = procedure
        .chars()
        .rev()
        .take(2)
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| d * 10u32.pow(i as u32))
        .sum();
    match digits % 12 {
        0 => None,
        n => Some((format!("L{n:02}"), format!("Lĩnh vực {n}"))),
    }
}

/// A province of 2019 on a real log, then an offer naming its field for every procedure its dossiers use.
fn province(dir: &std::path::Path, seed: u64) -> (SledLog, Vec<domain::StoredEvent>) {
    let generated = generator::generate(&generator::Config::new(
        seed,
        4_000,
        Period::Quarter {
            year: 2019,
            quarter: 1,
        },
        Period::Quarter {
            year: 2019,
            quarter: 4,
        },
    ));
    let log = SledLog::open(store::Config::new(dir.join("db"))).unwrap();
    for chunk in generated.chunks(1_000) {
        log.append_blocking(AppendRequest {
            events: chunk.iter().cloned().map(Submitted::from).collect(),
            source: "test".into(),
        })
        .unwrap();
    }
    let mut used = BTreeSet::new();
    for e in &generated {
        if let domain::EventData::Received(r) = &e.event.data {
            used.insert((e.event.agency.clone().unwrap(), r.procedure.clone()));
        }
    }
    let mut offers = Vec::new();
    let mut named = BTreeSet::new();
    for (agency, procedure) in used {
        let Some((code, name)) = field_of(procedure.as_str()) else {
            continue;
        };
        if !named.insert(procedure.clone()) {
            continue;
        }
        offers.push(json!({"id": uuid::Uuid::new_v4(), "type": "procedure.offered", "agency": agency,
            "occurred_at": "2020-01-02T08:00:00+07:00",
            "data": {"procedure": procedure, "name": format!("Thủ tục {procedure}"), "online_level": "level3",
                     "postal_receive": true, "postal_return": true, "effective_from": "2018-01-01",
                     "field": code, "field_name": name}}));
    }
    for chunk in offers.chunks(500) {
        let events = domain::parse_submission(&json!(chunk)).unwrap();
        log.append_blocking(AppendRequest {
            events,
            source: "admin".into(),
        })
        .unwrap();
    }
    (log, generated)
}

/// An independent count: dossiers received in `period` under `cut`, by (field, level of the receiving agency),
/// from the generated events themselves (procedure and receipt time as corrected).
fn received_by_field(
    events: &[domain::StoredEvent],
    period: Period,
    cut: domain::Cut,
) -> BTreeMap<(Option<String>, Option<String>), i64> {
    let mut level = BTreeMap::new();
    let mut dossiers: BTreeMap<String, (domain::AgencyCode, String, domain::Instant)> =
        BTreeMap::new();
    for e in events {
        match &e.event.data {
            domain::EventData::AgencyRegistered(a) => {
                level.insert(e.event.agency.clone().unwrap(), a.level.as_str().to_owned());
            }
            domain::EventData::Received(r) => {
                dossiers.insert(
                    e.event.dossier.as_ref().unwrap().to_string(),
                    (
                        e.event.agency.clone().unwrap(),
                        r.procedure.to_string(),
                        e.event.occurred_at,
                    ),
                );
            }
            domain::EventData::Corrected(c) => {
                let d = dossiers
                    .get_mut(e.event.dossier.as_ref().unwrap().as_str())
                    .unwrap();
                if let Some(p) = &c.procedure {
                    d.1 = p.to_string();
                }
                if let Some(r) = c.received_at {
                    d.2 = r;
                }
            }
            _ => {}
        }
    }
    let mut counts = BTreeMap::new();
    for (agency, procedure, at) in dossiers.values() {
        if period.contains(at, cut) {
            let field = field_of(procedure).map(|(code, _)| code);
            *counts
                .entry((field, level.get(agency).cloned()))
                .or_default() += 1;
        }
    }
    counts
}

/// The level subtotals and the total of a form, by line name, with their columns.
fn sums(form: &FormTable) -> Vec<(String, String)> {
    form.lines
        .iter()
        .filter(|l| matches!(l.kind, LineKind::Level | LineKind::Total))
        .map(|l| (l.name.clone(), format!("{:?}", l.form)))
        .collect()
}

#[test]
fn the_form_by_field_regroups_the_form_by_agency() {
    let dir = tempfile::tempdir().unwrap();
    let (log, events) = province(dir.path(), 5);
    let service = Indicators::open_for(&log, &app::Settings::new(dir.path())).unwrap();
    let mut periods: Vec<Period> = (1..=4)
        .map(|quarter| Period::Quarter {
            year: 2019,
            quarter,
        })
        .collect();
    periods.push(Period::Year { year: 2019 });
    let district = domain::AgencyCode::parse("000.00.21.H27").unwrap();
    let mut compared = 0;
    let profiles = Profiles::built_in();
    for profile in profiles.ids() {
        for scope in [None, Some(district.clone())] {
            let q = Query {
                periods: periods.clone(),
                group: Group::Agency,
                scope: scope.clone(),
                as_of: None,
                known_at: None,
                profile: Some(profile.to_string()),
            };
            let by_agency = forms(
                &service.form_answer(&log, &q, FormBy::Agency).unwrap(),
                FormBy::Agency,
                Lang::En,
            )
            .unwrap();
            let answer = service.form_answer(&log, &q, FormBy::Field).unwrap();
            let by_field = forms(&answer, FormBy::Field, Lang::En).unwrap();
            for (a, f) in by_agency.iter().zip(&by_field) {
                assert_eq!(a.period, f.period);
                assert_eq!(sums(a), sums(f), "{profile} {scope:?} {}", a.period);
                compared += 1;
                let fields: BTreeSet<(Option<String>, String)> = f
                    .lines
                    .iter()
                    .filter(|l| l.kind == LineKind::Field)
                    .map(|l| (l.field.clone(), l.name.clone()))
                    .collect();
                assert!(
                    fields.contains(&(Some("L01".into()), "Lĩnh vực 1 (L01)".into())),
                    "{fields:?}"
                );
                assert!(fields.len() > 10, "{fields:?}");
                // Within each level, the field lines in the order of their codes, "field not given" first.
                for level in f.lines.split(|l| l.kind != LineKind::Field) {
                    let codes: Vec<&Option<String>> = level.iter().map(|l| &l.field).collect();
                    let mut sorted = codes.clone();
                    sorted.sort();
                    assert_eq!(codes, sorted);
                }
                assert!(
                    fields.contains(&(None, "Field not given".into())),
                    "{fields:?}"
                );
                assert!(f.lines.iter().all(|l| l.agency.is_none()));
                // Each field line's dossiers received in the period, against a count of the events themselves.
                if scope.is_none() {
                    let lines: BTreeMap<(Option<String>, Option<String>), i64> = f
                        .lines
                        .iter()
                        .filter(|l| l.kind == LineKind::Field)
                        .map(|l| {
                            (
                                (l.field.clone(), l.level.clone()),
                                l.form.online + l.form.direct_and_postal,
                            )
                        })
                        .filter(|(_, n)| *n > 0)
                        .collect();
                    assert_eq!(
                        lines,
                        received_by_field(&events, f.period, answer.stamp.settings.cut),
                        "{profile} {}",
                        f.period
                    );
                }
            }
        }
    }
    assert_eq!(compared, profiles.ids().len() * 2 * 5);

    // The form by field as CSV checks clean against its own log: its sums hold, and its level lines and total
    // equal the log's (its field lines are not compared).
    let q1 = Period::Quarter {
        year: 2019,
        quarter: 1,
    };
    let question = Query {
        periods: vec![q1],
        group: Group::Agency,
        scope: None,
        as_of: None,
        known_at: None,
        profile: None,
    };
    let answer = service.form_answer(&log, &question, FormBy::Field).unwrap();
    let csv = projections::indicators::form::form_csv(
        &answer.stamp,
        &forms(&answer, FormBy::Field, Lang::Vi).unwrap(),
        Lang::Vi,
    )
    .unwrap();
    let report = app::check::check_published(
        &service,
        &log,
        &csv,
        &app::check::CheckQuestion {
            period: Some(q1),
            ..app::check::CheckQuestion::default()
        },
    )
    .unwrap();
    assert_eq!(
        (
            report.summary.slips,
            report.summary.sums_failed,
            report.summary.counts_differing
        ),
        (0, 0, 0),
        "{report:#?}"
    );
    let compared = report
        .rows
        .iter()
        .filter(|r| r.against_log.as_ref().is_some_and(|c| !c.is_empty()))
        .count();
    assert!(
        compared >= 4,
        "the level lines and the total are compared: {report:#?}"
    );

    // As of an earlier position, the same holds.
    let q = Query {
        periods: periods.clone(),
        group: Group::Agency,
        scope: None,
        as_of: Some(log.head().size / 2),
        known_at: None,
        profile: None,
    };
    let by_agency = forms(
        &service.form_answer(&log, &q, FormBy::Agency).unwrap(),
        FormBy::Agency,
        Lang::En,
    )
    .unwrap();
    let by_field = forms(
        &service.form_answer(&log, &q, FormBy::Field).unwrap(),
        FormBy::Field,
        Lang::En,
    )
    .unwrap();
    for (a, f) in by_agency.iter().zip(&by_field) {
        assert_eq!(
            sums(a),
            sums(f),
            "as of {} {}",
            log.head().size / 2,
            a.period
        );
    }
}
