//! The DVCQG adapter against a real log: the same generated lives sent as native events into one log and as a
//! one-stop system's sync (through `App::dvcqg_*`, the path `POST /v1/adapters/dvcqg` takes) into another give the
//! same indicator tables; the sync log replayed writes nothing; steps before their upsert are refused until it
//! comes; a contradiction is refused naming the field and the log's value.

use app::adapter::Written;
use app::indicators::{Indicators, Query};
use app::{App, Error, Settings};
use domain::{Credential, Period, Role, Submitted};
use dvcqg::emulate::sync_requests;
use projections::indicators::Group;
use serde_json::{json, Value};
use std::sync::Arc;
use store::{AppendRequest, EventLog, SledLog};

fn credential(role: Role, agency: Option<&str>) -> Credential {
    Credential {
        name: "vendor-igate".into(),
        role,
        agency: agency.map(|a| domain::AgencyCode::parse(a).unwrap()),
        token_sha256: "0".repeat(64),
        created_at: chrono::Utc::now(),
        revoked_at: None,
    }
}

fn app_at(dir: &std::path::Path) -> App {
    let mapping = dir.join("site.toml");
    std::fs::write(&mapping, dvcqg::emulate::lives_mapping("test-site")).unwrap();
    let mut settings = Settings::new(dir.join("data"));
    settings.dvcqg_mapping = Some(mapping);
    let log = Arc::new(SledLog::open(settings.store_config()).unwrap());
    App::open(settings, log).unwrap()
}

/// One body through the adapter, as the route does: read, plan, write (planning again if raced).
fn send(
    rt: &tokio::runtime::Runtime,
    app: &App,
    who: &Credential,
    body: &Value,
) -> Result<Value, Error> {
    let requests = app.dvcqg_requests(who, body)?;
    loop {
        let planned = app.dvcqg_plan(who, requests.clone())?;
        if let Written::Answer(v) = rt.block_on(app.dvcqg_write(who, planned))? {
            return Ok(v);
        }
    }
}

fn tables(log: &dyn store::Store, dir: &std::path::Path) -> Vec<String> {
    let service = Indicators::open_for(log, &Settings::new(dir)).unwrap();
    let mut periods: Vec<Period> = (1..=4)
        .map(|quarter| Period::Quarter {
            year: 2019,
            quarter,
        })
        .collect();
    periods.push(Period::Year { year: 2019 });
    periods.push(Period::Year { year: 2020 });
    let mut out = Vec::new();
    for group in [Group::Agency, Group::Province] {
        let answer = service
            .answer(
                log,
                &Query {
                    periods: periods.clone(),
                    group,
                    scope: None,
                    as_of: None,
                    known_at: None,
                    profile: None,
                },
            )
            .unwrap();
        for t in &answer.tables {
            for r in &t.rows {
                out.push(format!("{} {:?} {:?}", t.period, r.key.agency, r.counts));
            }
        }
    }
    out
}

#[test]
fn the_same_lives_synced_and_sent_natively_give_the_same_tables() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let native_dir = tempfile::tempdir().unwrap();
    let synced_dir = tempfile::tempdir().unwrap();
    let native = SledLog::open(store::Config::new(native_dir.path().join("db"))).unwrap();
    let app = app_at(synced_dir.path());
    let admin = credential(Role::Admin, None);
    let mut lives = generator::lives::LifeGenerator::for_2019(20261130);
    let mut sync_log = Vec::new();
    for _ in 0..300 {
        let life = lives.dossier();
        native
            .append_blocking(AppendRequest {
                events: life
                    .iter()
                    .cloned()
                    .map(|event| Submitted {
                        event,
                        expected_version: None,
                        stored: None,
                        source: None,
                    })
                    .collect(),
                source: "native".into(),
            })
            .unwrap();
        sync_log.extend(sync_requests(&life, &app.dvcqg));
    }
    // The sync log, a handful of requests per body, as a client batches them.
    for body in sync_log.chunks(5) {
        send(&rt, &app, &admin, &Value::Array(body.to_vec())).unwrap();
    }
    let size = app.log.head().size;
    let intakes = |log: &dyn store::Store| {
        log.read_after(0, 100_000)
            .unwrap()
            .iter()
            .filter(|e| e.event.event_type() == domain::EventType::DossierReceived)
            .count()
    };
    assert_eq!(intakes(&*app.log), 300);
    assert_eq!(intakes(&native), 300);
    let (a, b) = (
        tables(&native, native_dir.path()),
        tables(&*app.log, synced_dir.path()),
    );
    assert!(a.len() > 20);
    assert_eq!(a, b);

    // The whole sync log again, one request at a time and in reverse: nothing new.
    for body in sync_log.iter().rev() {
        let answer = send(&rt, &app, &admin, body).unwrap();
        assert_eq!(answer["casetrail"]["written"], 0, "{body}\n{answer:#}");
    }
    assert_eq!(app.log.head().size, size);

    // Every event names the mapping it was read with.
    let events = app.log.read_after(0, 10_000).unwrap();
    let tag = format!("vendor-igate@{}", app.dvcqg.tag());
    assert!(events.iter().all(|e| e.source == tag), "{tag}");
}

fn upsert(dossier: &str, status: &str, extra: Value) -> Value {
    let mut d = json!({"MaHoSo": dossier, "MaTTHC": "1.001234", "NgayTiepNhan": "20190312083000",
        "NgayHenTra": "20190319170000", "TrangThaiHoSo": status, "KenhThucHien": "1", "ChuHoSo": "Trần Thị Bí Mật"});
    for (k, v) in extra.as_object().unwrap() {
        d[k] = v.clone();
    }
    json!({"madonvi": "000.00.12.H27", "service": "DongBoHoSoMC", "isUpdating": "True", "data": [d]})
}

fn step(dossier: &str, status: &str, at: &str, unit: Option<&str>) -> Value {
    let mut d = json!({"MaHoSo": dossier, "ThoiDiemXuLy": at, "TrangThai": status, "NguoiXuLy": "Lê Văn Kín"});
    if let Some(u) = unit {
        d["PhongBanXuLy"] = json!(u);
    }
    json!({"service": "CapNhatTienDoHoSoMC", "data": [d]})
}

/// Reference events written straight to the log and folded into the catalogue (no follower runs here).
fn reference(app: &App, body: Value) {
    let events = domain::parse_submission(&body).unwrap();
    let outcome = app
        .log
        .append_blocking(AppendRequest {
            events,
            source: "admin".into(),
        })
        .unwrap();
    let first = outcome.receipts[0].position - 1;
    app.fold_reference(&app.log.read_after(first, 100).unwrap());
}

fn problem_fields(e: &Error) -> Vec<String> {
    match e {
        Error::Validation(p) | Error::Sync { problems: p, .. } => {
            p.iter().map(|p| p.field.clone()).collect()
        }
        other => vec![other.to_string()],
    }
}

#[test]
fn steps_wait_for_their_dossier_and_contradictions_are_refused_by_name() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path());
    let ingest = credential(Role::Ingest, Some("000.00.12.H27"));
    reference(
        &app,
        json!([
            {"id": uuid::Uuid::new_v4(), "type": "agency.registered", "agency": "000.00.12.H27", "occurred_at": "2019-01-01T00:00:00+07:00",
             "data": {"name": "Sở Tư pháp", "level": "department"}},
            {"id": uuid::Uuid::new_v4(), "type": "agency.registered", "agency": "000.12.01.H27", "occurred_at": "2019-01-01T00:00:00+07:00",
             "data": {"name": "Phòng Hộ tịch", "level": "commune", "parent": "000.00.12.H27"}}
        ]),
    );
    let at_start = app.log.head().size;

    // A step before its upsert: 404 dossier_not_found, nothing written.
    let early = step("D-1", "4", "20190312090000", Some("000.12.01.H27"));
    let e = send(&rt, &app, &ingest, &early).unwrap_err();
    assert_eq!(e.status_and_code(), (404, "dossier_not_found"), "{e}");
    assert_eq!(app.log.head().size, at_start);
    // The upsert, then the step again: received, then transferred.
    send(&rt, &app, &ingest, &upsert("D-1", "2", json!({}))).unwrap();
    let a = send(&rt, &app, &ingest, &early).unwrap();
    assert_eq!(
        a["casetrail"]["requests"][0]["items"][0]["events"],
        json!(["dossier.transferred"])
    );
    assert_eq!(app.log.head().size, at_start + 2);

    // Back to the department at 10:00; then a 09:30 hand-over to a unit the log never had arrives: refused as out
    // of order (a dossier's events stay in time order), naming both times; nothing written.
    send(
        &rt,
        &app,
        &ingest,
        &step("D-1", "4", "20190312100000", Some("000.00.12.H27")),
    )
    .unwrap();
    let size = app.log.head().size;
    let e = send(
        &rt,
        &app,
        &ingest,
        &step("D-1", "4", "20190312093000", Some("000.12.03.H27")),
    )
    .unwrap_err();
    assert_eq!(e.status_and_code(), (409, "sync_out_of_order"), "{e}");
    assert_eq!(problem_fields(&e), ["data[0].PhongBanXuLy"]);
    assert!(
        e.to_string().contains("09:30:00") && e.to_string().contains("10:00:00"),
        "{e}"
    );
    assert_eq!(app.log.head().size, size);

    // The end of processing, then a payload that says another end: refused naming the field and both times.
    send(
        &rt,
        &app,
        &ingest,
        &upsert("D-1", "9", json!({"NgayKetThucXuLy": "20190315100000"})),
    )
    .unwrap();
    let e = send(
        &rt,
        &app,
        &ingest,
        &upsert("D-1", "9", json!({"NgayKetThucXuLy": "20190316100000"})),
    )
    .unwrap_err();
    assert_eq!(e.status_and_code(), (409, "sync_conflict"));
    assert_eq!(problem_fields(&e), ["data[0].NgayKetThucXuLy"]);
    assert!(e.to_string().contains("2019-03-15 10:00:00 +07:00"), "{e}");

    // A new intake fact is a correction; going back to the old one is taken as an earlier payload.
    let a = send(
        &rt,
        &app,
        &ingest,
        &upsert(
            "D-1",
            "9",
            json!({"NgayKetThucXuLy": "20190315100000", "KenhThucHien": "3"}),
        ),
    )
    .unwrap();
    assert_eq!(
        a["casetrail"]["requests"][0]["items"][0]["events"],
        json!(["dossier.corrected"])
    );
    let a = send(&rt, &app, &ingest, &upsert("D-1", "2", json!({}))).unwrap();
    assert_eq!(a["casetrail"]["written"], 0);
    assert!(
        a["casetrail"]["requests"][0]["items"][0]["notes"][0]
            .as_str()
            .unwrap()
            .contains("behind the log"),
        "{a}"
    );

    // Another agency's dossier: forbidden, nothing written.
    let before = app.log.head().size;
    let mut theirs = upsert("D-2", "2", json!({}));
    theirs["madonvi"] = json!("000.00.13.H27");
    assert!(matches!(
        send(&rt, &app, &ingest, &theirs).unwrap_err(),
        Error::Forbidden(_)
    ));
    // Bad input: every problem named, nothing written.
    let bad = upsert(
        "D-3",
        "42",
        json!({"NgayTiepNhan": "2019-03-12 08:30", "KenhThucHien": "7"}),
    );
    let e = send(&rt, &app, &ingest, &bad).unwrap_err();
    assert_eq!(e.status_and_code().0, 422);
    assert_eq!(
        problem_fields(&e),
        [
            "data[0].TrangThaiHoSo",
            "data[0].NgayTiepNhan",
            "data[0].KenhThucHien"
        ]
    );
    assert_eq!(app.log.head().size, before);

    // A dossier received online without MucDo takes the level the catalogue has its agency offer.
    let e = send(
        &rt,
        &app,
        &ingest,
        &upsert("D-4", "2", json!({"KenhThucHien": "2"})),
    )
    .unwrap_err();
    assert_eq!(problem_fields(&e), ["data[0].MucDo"]);
    reference(
        &app,
        json!({"id": uuid::Uuid::new_v4(), "type": "procedure.offered", "agency": "000.00.12.H27", "occurred_at": "2019-01-01T00:00:00+07:00",
        "data": {"procedure": "1.001234", "name": "Cấp bản sao", "online_level": "level4", "postal_receive": true, "postal_return": true, "effective_from": "2019-01-01"}}),
    );
    send(
        &rt,
        &app,
        &ingest,
        &upsert("D-4", "2", json!({"KenhThucHien": "2"})),
    )
    .unwrap();
    let (d, _) = app
        .visible_dossier(&ingest, &domain::DossierCode::parse("D-4").unwrap())
        .unwrap();
    assert_eq!(d.online_level, Some(domain::event::OnlineLevel::Level4));

    // An update that leaves out the channel, the level, the procedure and the acceptance time changes none of them.
    let mut bare = upsert("D-4", "4", json!({}));
    for f in ["KenhThucHien", "MaTTHC", "NgayTiepNhan"] {
        bare["data"][0].as_object_mut().unwrap().remove(f);
    }
    let a = send(&rt, &app, &ingest, &bare).unwrap();
    assert_eq!(a["casetrail"]["written"], 0, "{a:#}");

    // A later acceptance time on a dossier with nothing after it: corrected at that time (the log's rule 6).
    send(&rt, &app, &ingest, &upsert("D-5", "2", json!({}))).unwrap();
    let a = send(
        &rt,
        &app,
        &ingest,
        &upsert("D-5", "2", json!({"NgayTiepNhan": "20190312093000"})),
    )
    .unwrap();
    assert_eq!(
        a["casetrail"]["requests"][0]["items"][0]["events"],
        json!(["dossier.corrected"])
    );
    // Resolved, then a later NgayHenTra (the apology slip came late): a corrected due date, not an extension the
    // log would refuse after the resolution.
    send(
        &rt,
        &app,
        &ingest,
        &upsert(
            "D-5",
            "9",
            json!({"NgayTiepNhan": "20190312093000", "NgayKetThucXuLy": "20190320100000"}),
        ),
    )
    .unwrap();
    let a = send(
        &rt,
        &app,
        &ingest,
        &upsert("D-5", "9", json!({"NgayTiepNhan": "20190312093000", "NgayKetThucXuLy": "20190320100000", "NgayHenTra": "20190322170000"})),
    )
    .unwrap();
    assert_eq!(
        a["casetrail"]["requests"][0]["items"][0]["events"],
        json!(["dossier.corrected"])
    );
    let (d, _) = app
        .visible_dossier(&ingest, &domain::DossierCode::parse("D-5").unwrap())
        .unwrap();
    assert_eq!(d.due_at.unwrap().to_rfc3339(), "2019-03-22T17:00:00+07:00");

    // A step for a dossier of another agency answers as one that does not exist.
    reference(
        &app,
        json!({"id": uuid::Uuid::new_v4(), "type": "agency.registered", "agency": "000.00.13.H27", "occurred_at": "2019-01-01T00:00:00+07:00",
        "data": {"name": "Sở Xây dựng", "level": "department"}}),
    );
    let other = credential(Role::Ingest, Some("000.00.13.H27"));
    let mut theirs = upsert("D-6", "2", json!({}));
    theirs["madonvi"] = json!("000.00.13.H27");
    send(&rt, &app, &other, &theirs).unwrap();
    let hidden = send(
        &rt,
        &app,
        &ingest,
        &step("D-6", "4", "20190313090000", None),
    )
    .unwrap_err();
    let absent = send(
        &rt,
        &app,
        &ingest,
        &step("D-7", "4", "20190313090000", None),
    )
    .unwrap_err();
    assert_eq!(hidden.status_and_code(), absent.status_and_code());
    assert_eq!(
        hidden.to_string().replace("D-6", "D-?"),
        absent.to_string().replace("D-7", "D-?")
    );

    // The lookup answers from the log, in the portal's codes; another agency's dossier is not found.
    let a = send(
        &rt,
        &app,
        &ingest,
        &json!({"service": "TraCuuHoSo", "mahoso": "D-1"}),
    )
    .unwrap();
    assert_eq!(a["result"][0]["TrangThaiHoSo"], "9");
    assert_eq!(a["result"][0]["KenhThucHien"], "3");
    assert_eq!(a["result"][0]["NgayKetThucXuLy"], "20190315100000");
}
