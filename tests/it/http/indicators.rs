//! Indicator tables through real HTTP, on a generated province imported into a real data directory.

use super::{spawn, token};
use crate::casetrail;
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;

/// A data directory holding a generated province (2018-Q4 to 2019-Q2) and an admin token.
fn province(dir: &Path, dossiers: u32) -> (std::path::PathBuf, String) {
    let file = dir.join("province.ndjson");
    let out = std::process::Command::new(crate::BIN)
        .args([
            "generate",
            "--seed",
            "11",
            "--dossiers",
            &dossiers.to_string(),
            "--from",
            "2018-Q4",
            "--to",
            "2019-Q2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&file, &out.stdout).unwrap();
    let data = dir.join("data");
    let imported = casetrail(&data, &["import", file.to_str().unwrap()]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let admin = token(&data, "admin", "admin", None);
    (data, admin)
}

fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Vec<u8>, String) {
    let client = reqwest::blocking::Client::new();
    let mut req = client.get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, resp.bytes().unwrap().to_vec(), content_type)
}

fn get_json(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let (status, body, _) = get(base, path, token);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The answer without the one field that may differ between two computations of the same table.
fn without_computed_at(mut v: Value) -> Value {
    v["stamp"]["computed_at"] = Value::Null;
    v
}

fn stop(child: &mut std::process::Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn tables_follow_the_log_and_history_answers_exactly_what_was_said() {
    let dir = tempfile::tempdir().unwrap();
    let (data, admin) = province(dir.path(), 2_000);
    let (mut child, base) = spawn(&data, &["--snapshot-every", "3000"]);
    let (status, before) = get_json(&base, "/v1/indicators?period=2019-Q1&group=province", None);
    assert_eq!(status, 200, "indicators are public by default: {before}");
    let position = before["stamp"]["position"].as_u64().unwrap();
    let row = &before["rows"][0];
    let (received, online) = (
        row["received"].as_i64().unwrap(),
        row["received_online"].as_i64().unwrap(),
    );
    assert!(received > 500 && online > 0, "{row}");
    assert_eq!(
        row["online_rate"].as_f64().unwrap(),
        online as f64 / received as f64
    );
    assert_eq!(before["stamp"]["settings"]["cut"], "calendar");
    assert_eq!(before["stamp"]["root"].as_str().unwrap().len(), 44);

    // A new online dossier for a department in Q1 2019 shows up at once in the live table.
    let event = json!({ "id": super::id(), "type": "dossier.received", "dossier": "HT-NEW-1", "agency": "000.00.03.H27",
        "occurred_at": "2019-03-12T08:30:00+07:00",
        "data": { "procedure": "1.000150", "channel": "online", "online_level": "level4" } });
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(&admin)
        .json(&event)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let mut now = Value::Null;
    for _ in 0..100 {
        now = get_json(&base, "/v1/indicators?period=2019-Q1&group=province", None).1;
        if now["stamp"]["position"].as_u64() == Some(position + 1) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        now["stamp"]["position"].as_u64(),
        Some(position + 1),
        "the live table did not follow"
    );
    assert_eq!(now["rows"][0]["received"].as_i64(), Some(received + 1));
    assert_eq!(now["rows"][0]["received_online"].as_i64(), Some(online + 1));

    // As of the earlier position: the same table, byte for byte, but for when it was computed.
    let path = format!("/v1/indicators?period=2019-Q1&group=province&as_of={position}");
    let (_, then) = get_json(&base, &path, None);
    let mut expected = without_computed_at(before.clone());
    expected["stamp"]["as_of"] = json!(position);
    assert_eq!(without_computed_at(then), expected);

    // As known on 31 March 2019: fewer events, and Q1 dossiers resolved in March but entered in April missing.
    let (_, known) = get_json(
        &base,
        "/v1/indicators?period=2019-Q1&group=province&known_at=2019-03-31",
        None,
    );
    assert!(known["stamp"]["position"].as_u64().unwrap() < position);
    // The stamp names the day as asked (the whole of it counts); open dossiers are judged at its last second.
    assert_eq!(known["stamp"]["known_at"], "2019-03-31");
    assert_eq!(known["stamp"]["judged_at"], "2019-03-31T16:59:59Z");
    assert!(known["rows"][0]["received"].as_i64().unwrap() <= received);

    // Every agency's row adds up to the province; subtrees of the province hold everything registered.
    let (_, agencies) = get_json(&base, "/v1/indicators?period=2019-Q1", None);
    let sum: i64 = agencies["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["received"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, received + 1);
    let (_, subtree) = get_json(
        &base,
        "/v1/indicators?period=2019-Q1&group=subtree&agency=000.00.21.H27",
        None,
    );
    let rows = subtree["rows"].as_array().unwrap();
    assert_eq!(rows[0]["agency"], "000.00.21.H27");
    assert_eq!(
        rows[0]["agencies"].as_u64().unwrap() as usize,
        rows.len(),
        "a district and its communes"
    );
    let district_total: i64 = rows[1..]
        .iter()
        .map(|r| r["received"].as_i64().unwrap())
        .sum::<i64>()
        + get_json(
            &base,
            "/v1/indicators?period=2019-Q1&agency=000.00.21.H27",
            None,
        )
        .1["rows"][0]["received"]
            .as_i64()
            .unwrap();
    assert_eq!(rows[0]["received"].as_i64().unwrap(), district_total);

    // A series: one entry per quarter, each with the same rows.
    let (_, series) = get_json(
        &base,
        "/v1/indicators/series?from=2018-Q4&to=2019-Q2&group=province",
        None,
    );
    let periods = series["periods"].as_array().unwrap();
    assert_eq!(
        periods
            .iter()
            .map(|p| p["period"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["2018-Q4", "2019-Q1", "2019-Q2"]
    );
    assert_eq!(
        periods[1]["rows"][0]["received"].as_i64(),
        Some(received + 1)
    );

    // CSV says what JSON says, with Vietnamese headers by default and English ones on request.
    let (status, csv, content_type) = get(
        &base,
        "/v1/indicators?period=2019-Q1&group=province&format=csv",
        None,
    );
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/csv; charset=utf-8")
    );
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "Kỳ báo cáo");
    let record = reader.records().next().unwrap().unwrap();
    let column = |name: &str| record[headers.iter().position(|h| h == name).unwrap()].to_owned();
    assert_eq!(column("Tiếp nhận"), (received + 1).to_string());
    assert_eq!(
        column("Tỷ lệ trực tuyến (%)"),
        format!("{:.2}", (online + 1) as f64 * 100.0 / (received + 1) as f64)
    );
    let (_, csv_en, _) = get(
        &base,
        "/v1/indicators?period=2019-Q1&group=province&format=csv&lang=en",
        None,
    );
    assert!(String::from_utf8(csv_en)
        .unwrap()
        .starts_with("Period,Agency code,"));

    // XLSX: a real workbook with a header row, percentages formatted as such, and the stamp.
    let (status, xlsx, content_type) = get(
        &base,
        "/v1/indicators?period=2019-Q1&group=province&format=xlsx&lang=en",
        None,
    );
    assert_eq!(status, 200);
    assert!(content_type.contains("spreadsheetml"));
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(xlsx.clone())).unwrap();
    use calamine::Reader;
    assert_eq!(book.sheet_names(), ["Indicators", "Computed from"]);
    let sheet = book.worksheet_range("Indicators").unwrap();
    let header: Vec<String> = sheet
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let data_row: Vec<calamine::Data> = sheet.rows().nth(1).unwrap().to_vec();
    assert_eq!(
        data_row[at("Received")],
        calamine::Data::Float((received + 1) as f64)
    );
    assert_eq!(
        data_row[at("Online rate (%)")],
        calamine::Data::Float((online + 1) as f64 / (received + 1) as f64)
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(xlsx)).unwrap();
    let mut styles = String::new();
    zip.by_name("xl/styles.xml")
        .unwrap()
        .read_to_string(&mut styles)
        .unwrap();
    assert!(styles.contains("0.00%"), "{styles}");
    let mut custom = String::new();
    zip.by_name("docProps/custom.xml")
        .unwrap()
        .read_to_string(&mut custom)
        .unwrap();
    assert!(
        custom.contains(&format!("<vt:lpwstr>{}</vt:lpwstr>", position + 1)),
        "{custom}"
    );

    // A restart answers the same from its snapshot and the events after it.
    stop(&mut child);
    let snapshots = std::fs::read_dir(data.join("indicator-snapshots").join("calendar"))
        .unwrap()
        .count();
    assert!(snapshots >= 1, "a snapshot was written");
    let (mut child, base) = spawn(&data, &["--snapshot-every", "3000"]);
    let (_, after_restart) = get_json(&base, "/v1/indicators?period=2019-Q1&group=province", None);
    assert_eq!(without_computed_at(after_restart), without_computed_at(now));
    stop(&mut child);
}

#[test]
fn indicator_parameters_and_access() {
    let dir = tempfile::tempdir().unwrap();
    let (data, admin) = province(dir.path(), 200);
    let analyst = token(&data, "analyst", "analyst", None);
    let ingest = token(&data, "vendor", "ingest", Some("000.00.03.H27"));
    {
        let (mut child, base) = spawn(&data, &[]);
        for (query, name) in [
            ("period=2019-Q5", "period"),
            ("", "period"),
            ("period=2019-Q1&group=district", "group"),
            ("period=2019-Q1&format=pdf", "format"),
            ("period=2019-Q1&lang=fr", "lang"),
            ("period=2019-Q1&agency=a/b", "agency"),
            ("period=2019-Q1&known_at=yesterday", "known_at"),
            ("period=2019-Q1&as_of=999999999", "as_of"),
        ] {
            let (status, body) = get_json(&base, &format!("/v1/indicators?{query}"), None);
            assert_eq!(status, 400, "{query}: {body}");
            assert_eq!(body["code"], "bad_parameter", "{query}: {body}");
            assert_eq!(body["parameter"], name, "{query}: {body}");
        }
        let (status, body) = get_json(&base, "/v1/indicators/series?from=2019-Q2&to=2019-Q1", None);
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("bad_parameter"))
        );
        let (status, _) = get_json(&base, "/v1/indicators/series?from=2019-01&to=2019-Q2", None);
        assert_eq!(status, 400);
        let (status, _) = get_json(
            &base,
            "/v1/indicators?period=2019-Q1",
            Some("ct_not-a-token"),
        );
        assert_eq!(
            status, 401,
            "a token that is sent must be valid, even on a public route"
        );
        let (status, _) = get_json(&base, "/v1/indicators?period=2019-Q1", Some(&admin));
        assert_eq!(status, 200);
        stop(&mut child);
    }
    let (mut child, base) = spawn(&data, &["--public-indicators", "false"]);
    assert_eq!(
        get_json(&base, "/v1/indicators?period=2019-Q1", None).0,
        401
    );
    assert_eq!(
        get_json(&base, "/v1/indicators?period=2019-Q1", Some(&ingest)).0,
        403
    );
    assert_eq!(
        get_json(&base, "/v1/indicators?period=2019-Q1", Some(&analyst)).0,
        200
    );
    stop(&mut child);
}

#[test]
fn the_report_command_offline_and_against_a_server_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = province(dir.path(), 300);
    let offline = casetrail(
        &data,
        &[
            "report", "--period", "2019-Q1", "--group", "level", "--format", "csv",
        ],
    );
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let lines = String::from_utf8(offline.stdout.clone()).unwrap();
    assert!(
        lines.lines().count() >= 4,
        "a header and a row per level:\n{lines}"
    );
    let xlsx = dir.path().join("q1.xlsx");
    let written = casetrail(
        &data,
        &[
            "report",
            "--period",
            "2019-Q1",
            "--format",
            "xlsx",
            "--output",
            xlsx.to_str().unwrap(),
        ],
    );
    assert!(written.status.success());
    assert!(std::fs::read(&xlsx).unwrap().starts_with(b"PK\x03\x04"));
    let (mut child, base) = spawn(&data, &[]);
    let remote = std::process::Command::new(crate::BIN)
        .args([
            "report", "--period", "2019-Q1", "--group", "level", "--format", "csv", "--url", &base,
        ])
        .output()
        .unwrap();
    assert!(
        remote.status.success(),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    assert_eq!(remote.stdout, offline.stdout);
    let bad = std::process::Command::new(crate::BIN)
        .args([
            "report", "--period", "2019-Q1", "--as-of", "99999999", "--url", &base,
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("400") && said.contains("beyond"), "{said}");
    stop(&mut child);
}

/// The last second of an "as known on" day belongs to the day, with its fraction: a dossier recorded at
/// 23:59:59.4 on 5 April (Vietnam time) was known on 5 April; one recorded at 00:00:00 on 6 April was not. Offline
/// (`casetrail report --known-at`), over HTTP (`known_at=`), and as the stamp says it.
#[test]
fn known_on_a_day_counts_the_last_second_of_that_day() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut lines = String::new();
    for (i, (dossier, recorded)) in [
        ("D-LAST-SECOND", "2019-04-05T16:59:59.400000Z"),
        ("D-NEXT-DAY", "2019-04-05T17:00:00Z"),
    ]
    .into_iter()
    .enumerate()
    {
        let e = json!({ "position": i + 1, "version": 1, "recorded_at": recorded, "source": "vendor",
            "id": format!("01935c3e-0000-7000-8000-00000000000{i}"), "type": "dossier.received",
            "dossier": dossier, "agency": "000.00.12.H27", "occurred_at": "2019-03-30T09:00:00+07:00",
            "data": { "procedure": "1.001234", "channel": "online", "online_level": "level3" } });
        lines.push_str(&format!("{e}\n"));
    }
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, lines).unwrap();
    let imported = casetrail(&data, &["import", file.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", crate::stderr(&imported));
    let received = |answer: &Value| -> i64 {
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["received"].as_i64().unwrap())
            .sum()
    };
    let offline = |known_at: &str| -> Value {
        let out = casetrail(
            &data,
            &[
                "report",
                "--period",
                "2019-Q1",
                "--format",
                "json",
                "--known-at",
                known_at,
            ],
        );
        assert!(out.status.success(), "{}", crate::stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let day = offline("2019-04-05");
    assert_eq!(received(&day), 1, "{day}");
    assert_eq!(day["stamp"]["known_at"], "2019-04-05");
    assert_eq!(day["stamp"]["position"], 1);
    assert_eq!(received(&offline("2019-04-06")), 2);
    assert_eq!(received(&offline("2019-04-04")), 0);
    assert_eq!(received(&offline("2019-04-05T23:59:59.4+07:00")), 1);
    assert_eq!(received(&offline("2019-04-05T23:59:59.399999+07:00")), 0);

    let (mut child, base) = spawn(&data, &[]);
    let (status, http) = get_json(
        &base,
        "/v1/indicators?period=2019-Q1&known_at=2019-04-05",
        None,
    );
    assert_eq!(status, 200, "{http}");
    assert_eq!(without_computed_at(http), without_computed_at(day));
    let (_, next) = get_json(
        &base,
        "/v1/indicators?period=2019-Q1&known_at=2019-04-06",
        None,
    );
    assert_eq!(received(&next), 2);
    stop(&mut child);
}

/// Names are untrusted text: in CSV and XLSX no cell becomes a formula and no control character lands in the file,
/// whatever an agency's name starts with; JSON still shows every name in full.
#[test]
fn names_never_become_formulas_in_spreadsheets() {
    let s = super::Server::start(&[]);
    let names = [
        "=HYPERLINK(\"http://x.invalid\",\"click\")",
        "+SUM(1,2)",
        "-2+3",
        "@SUM(A1)",
        "\t=1+1",
        "\r=1+1",
        "＝1+1",
        "Sở \u{1b}[31mđỏ\u{7}",
    ];
    for (i, name) in names.iter().enumerate() {
        let code = format!("000.00.{:02}.H27", 60 + i);
        let (status, body) = s.put(
            &format!("/v1/agencies/{code}"),
            Some(&s.admin),
            &json!({ "name": name, "level": "department", "parent": super::DEPT }),
        );
        assert_eq!(status, 201, "{body}");
        s.receive(&format!("D-NAME-{i}"), &code);
    }
    let shown = |name: &str| -> String {
        name.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    // JSON: the names as registered.
    let (_, answer) = s.get("/v1/indicators?period=2019-Q1", None);
    for name in names {
        assert!(
            answer["rows"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == name),
            "{name:?}"
        );
    }
    // CSV: every field that a spreadsheet would take for a formula is quoted with an apostrophe.
    let (status, csv) = s.get_bytes("/v1/indicators?period=2019-Q1&format=csv&lang=en", None);
    assert_eq!(status, 200);
    assert!(
        !csv.iter().any(|b| *b < 0x20 && !matches!(b, b'\n' | b'\r')) && !csv.contains(&0x7f),
        "a control character in the CSV"
    );
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let mut seen = 0;
    for record in reader.records() {
        for field in record.unwrap().iter() {
            // Numbers (a negative one starts with '-') are numbers; any other field must not start a formula.
            assert!(
                field.parse::<f64>().is_ok()
                    || !field.starts_with(['=', '+', '-', '@', '\t', '\r', '＝']),
                "a formula in the CSV: {field:?}"
            );
            if names.iter().any(|n| {
                format!("'{}", shown(n).trim_start_matches(' ')) == field || shown(n) == field
            }) {
                seen += 1;
            }
        }
    }
    assert_eq!(seen, names.len(), "every name is in the CSV");
    // XLSX: no formula anywhere, every name shown (control characters as spaces).
    let (status, xlsx) = s.get_bytes("/v1/indicators?period=2019-Q1&format=xlsx&lang=en", None);
    assert_eq!(status, 200);
    use calamine::Reader;
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(xlsx)).unwrap();
    for sheet in book.sheet_names() {
        let formulas = book.worksheet_formula(&sheet).unwrap();
        assert!(
            formulas.used_cells().all(|(_, _, f)| f.is_empty()),
            "a formula in {sheet}"
        );
    }
    let table = book.worksheet_range("Indicators").unwrap();
    let texts: Vec<String> = table.used_cells().map(|(_, _, d)| d.to_string()).collect();
    for name in names {
        assert!(
            texts.contains(&shown(name)),
            "{name:?} is not shown in the workbook"
        );
    }
}
