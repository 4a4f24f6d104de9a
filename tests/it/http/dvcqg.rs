//! `POST /v1/adapters/dvcqg` through the real binary, with a site mapping (`--dvcqg-mapping`): payloads written by
//! us in the portal's shape carry whole lives for every channel and level, every status code, supplement rounds,
//! an apology with a new date and an inter-agency transfer; a step before its upsert waits for it; repeats and a
//! replayed sync log write nothing; bad input is refused by name; and the personal values sent are nowhere in the
//! data directory afterwards.

use super::*;

const SITE: &str = r#"
id = "ha-tinh-test"
title = "A test site: iGate-style agency codes, Decree 43 levels beside Decree 42's"
success_code = "00"
receiving_agency = "madonvi"

[statuses]
"1" = "submitted"
"2" = "accepted"
"3" = "refused"
"4" = "processing"
"5" = "supplement_requested"
"6" = "fees_requested"
"7" = "withdrawn"
"8" = "stopped"
"9" = "decided"
"10" = "returned"

[channels]
"1" = "counter"
"2" = "online"
"3" = "postal"

[result_channels]
"0" = "counter"
"1" = "postal"
"2" = "online"

[online_levels]
"3" = "partial"
"4" = "full"
"43-3" = "level3"
"43-4" = "level4"

[applicants]
"1" = "citizen"
"2" = "business"

[agencies]
unlisted = "refuse"
internal = ["Bộ phận một cửa"]

[agencies.codes]
"H27.12" = "000.00.12.H27"
"H27.12.01" = "000.12.01.H27"
"H27.13" = "000.00.13.H27"

[procedures]
unlisted = "as-is"
"#;

/// The personal values of dossier `code`: each unique, so that finding one anywhere is unambiguous.
fn personal(code: &str) -> [String; 5] {
    [
        format!("Phạm Thị Riêng {code}"),
        format!("0987{:06}", code.bytes().map(u64::from).sum::<u64>()),
        format!("{}@bimat.vn", code.to_lowercase()),
        format!(
            "0401{:08}",
            code.bytes().map(u64::from).product::<u64>() % 100_000_000
        ),
        format!("Số {} ngõ Kín", code.len() * 7),
    ]
}

/// A DongBoHoSoMC for `code` at status `status`, with `fields` over a counter dossier received 12/3/2019 08:30.
fn upsert(code: &str, status: &str, fields: Value) -> Value {
    let [name, phone, email, id_number, address] = personal(code);
    let mut d = json!({
        "MaHoSo": code, "MaTTHC": "1.001234", "TenTTHC": "Chứng thực bản sao", "MaLinhVuc": "G09-CT",
        "NgayTiepNhan": "20190312083000", "NgayHenTra": "20190319170000", "TrangThaiHoSo": status,
        "KenhThucHien": "1", "HinhThuc": "0", "LoaiDoiTuong": "1", "DonViXuLy": "Bộ phận một cửa",
        "ChuHoSo": name, "SoDienThoai": phone, "Email": email, "SoDinhDanh": id_number, "DiaChiThuongTru": address,
        "TrichYeuHoSo": format!("Hồ sơ của {name}"), "DanhSachHoSoBoSung": []
    });
    for (k, v) in fields.as_object().unwrap() {
        d[k] = v.clone();
    }
    json!({"madonvi": "H27.12", "service": "DongBoHoSoMC", "isUpdating": "True", "data": [d]})
}

fn step(code: &str, status: &str, at: &str, unit: &str) -> Value {
    let [name, ..] = personal(code);
    json!({"madonvi": "H27.12", "service": "CapNhatTienDoHoSoMC", "data": [{
        "MaHoSo": code, "NguoiXuLy": name, "ChucDanh": "Chuyên viên", "ThoiDiemXuLy": at, "PhongBanXuLy": unit,
        "NoiDungXuLy": "Chuyển liên thông", "TrangThai": status, "NgayBatDau": at, "NgayKetThucTheoQuyDinh": ""}]})
}

/// A supplement round: asked for at `asked`, documents back at `back` (if they came).
fn round(code: &str, asked: &str, back: Option<&str>) -> Value {
    let [name, ..] = personal(code);
    let mut r = json!({"HoSoBoSungId": format!("{code}-bs"), "NguoiYeuCauBoSung": name, "NoiDungBoSung": "Thiếu bản sao CCCD",
        "NgayBoSung": asked, "TrangThaiBoSung": "1"});
    if let Some(b) = back {
        r["NgayTiepNhanBoSung"] = json!(b);
    }
    r
}

/// Posts with the token in `session`, as a portal client does; insists on 200 and the site's success code.
fn sync(s: &Server, token: &str, body: &Value) -> Value {
    let mut body = body.clone();
    match &mut body {
        Value::Array(requests) => requests
            .iter_mut()
            .for_each(|r| r["session"] = json!(token)),
        one => one["session"] = json!(token),
    }
    let (status, answer) = s.post("/v1/adapters/dvcqg", None, &body);
    assert_eq!(status, 200, "{body}\n{answer:#}");
    assert_eq!(answer["error_code"], "00", "{answer:#}");
    answer
}

fn written(answer: &Value) -> u64 {
    answer["casetrail"]["written"].as_u64().unwrap()
}

fn state(s: &Server, code: &str) -> Value {
    let (status, body) = s.get(&format!("/v1/dossiers/{code}"), Some(&s.admin));
    assert_eq!(status, 200, "{code}: {body}");
    body
}

#[test]
fn a_one_stop_systems_sync_becomes_the_log_and_leaves_no_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("site.toml");
    std::fs::write(&mapping, SITE).unwrap();
    let s = Server::start(&["--dvcqg-mapping", mapping.to_str().unwrap()]);
    let mut sent: Vec<Value> = Vec::new();
    let mut send = |s: &Server, body: Value| -> Value {
        let a = sync(s, &s.ingest, &body);
        sent.push(body);
        a
    };

    // A counter dossier's whole life: a liên thông transfer, two supplement rounds, an apology with a new date,
    // the decision, the result handed over at the counter.
    let a = "H27.12-190312-0001";
    let first = send(&s, upsert(a, "2", json!({})));
    assert_eq!(
        first["casetrail"]["requests"][0]["items"][0]["events"],
        json!(["dossier.received"])
    );
    let dropped = &first["casetrail"]["requests"][0]["dropped"];
    for f in [
        "ChuHoSo",
        "SoDienThoai",
        "Email",
        "SoDinhDanh",
        "DiaChiThuongTru",
        "TrichYeuHoSo",
    ] {
        assert!(
            dropped["personal"].as_array().unwrap().contains(&json!(f)),
            "{f}: {dropped}"
        );
    }
    assert!(
        dropped["other"]
            .as_array()
            .unwrap()
            .contains(&json!("MaLinhVuc")),
        "{dropped}"
    );
    send(&s, step(a, "4", "20190312100000", "H27.12.01"));
    send(
        &s,
        upsert(
            a,
            "5",
            json!({"DonViXuLy": "H27.12.01", "DanhSachHoSoBoSung": [round(a, "20190313090000", None)]}),
        ),
    );
    send(
        &s,
        upsert(
            a,
            "4",
            json!({"DonViXuLy": "H27.12.01", "DanhSachHoSoBoSung": [round(a, "20190313090000", Some("20190314090000"))]}),
        ),
    );
    let rounds = json!([
        round(a, "20190313090000", Some("20190314090000")),
        round(a, "20190315090000", Some("20190315150000"))
    ]);
    send(
        &s,
        upsert(
            a,
            "4",
            json!({"DonViXuLy": "H27.12.01", "DanhSachHoSoBoSung": rounds}),
        ),
    );
    let apology = send(
        &s,
        upsert(
            a,
            "4",
            json!({"DonViXuLy": "H27.12.01", "NgayHenTra": "20190326170000", "DanhSachHoSoBoSung": rounds}),
        ),
    );
    assert_eq!(
        apology["casetrail"]["requests"][0]["items"][0]["events"],
        json!(["dossier.due_extended"])
    );
    send(
        &s,
        upsert(
            a,
            "9",
            json!({"DonViXuLy": "H27.12.01", "NgayHenTra": "20190326170000", "DanhSachHoSoBoSung": rounds, "NgayKetThucXuLy": "20190320160000"}),
        ),
    );
    send(
        &s,
        upsert(
            a,
            "10",
            json!({"DonViXuLy": "H27.12.01", "NgayHenTra": "20190326170000", "DanhSachHoSoBoSung": rounds, "NgayKetThucXuLy": "20190320160000", "NgayTra": "20190321090000"}),
        ),
    );
    let d = state(&s, a);
    assert_eq!(d["holder"], COMMUNE);
    assert_eq!(d["supplement_requests"], 2);
    assert_eq!(d["due_at"], "2019-03-26T17:00:00+07:00");
    assert_eq!(
        (d["status"].as_str(), d["return_channel"].as_str()),
        (Some("returned"), Some("counter"))
    );
    assert_eq!(
        d["on_time"], "late",
        "two rounds of documents make it late: {d}"
    );

    // Online at each level (Decree 43's 3 and 4, Decree 42's partial and full), the result returned online.
    for (i, (code, level)) in [
        ("43-3", "level3"),
        ("43-4", "level4"),
        ("3", "partial"),
        ("4", "full"),
    ]
    .into_iter()
    .enumerate()
    {
        let dossier = format!("H27.12-190312-01{i:02}");
        send(
            &s,
            upsert(&dossier, "2", json!({"KenhThucHien": "2", "MucDo": code})),
        );
        send(
            &s,
            upsert(
                &dossier,
                "10",
                json!({"KenhThucHien": "2", "MucDo": code, "HinhThucTra": "2", "NgayKetThucXuLy": "20190313100000", "NgayTra": "20190313110000"}),
            ),
        );
        let d = state(&s, &dossier);
        assert_eq!(
            (d["channel"].as_str(), d["online_level"].as_str()),
            (Some("online"), Some(level))
        );
        assert_eq!(d["return_channel"], "online");
    }

    // By post both ways: received by post, the result asked for and sent by post.
    let c = "H27.12-190312-0201";
    send(
        &s,
        upsert(c, "2", json!({"KenhThucHien": "3", "HinhThuc": "1"})),
    );
    send(
        &s,
        upsert(
            c,
            "10",
            json!({"KenhThucHien": "3", "HinhThuc": "1", "NgayKetThucXuLy": "20190314100000", "NgayTra": "20190315080000"}),
        ),
    );
    let d = state(&s, c);
    assert_eq!(
        (
            d["channel"].as_str(),
            d["result_by_post"].as_bool(),
            d["return_channel"].as_str()
        ),
        (Some("postal"), Some(true), Some("postal"))
    );

    // Every status code: 1 and 3 record nothing (never accepted); 6 is processing; 7 a withdrawal; 8 a rejection.
    let before = s.log_size();
    for code in ["1", "3"] {
        let a = send(
            &s,
            upsert(&format!("H27.12-190312-03{code:0>2}"), code, json!({})),
        );
        assert_eq!(written(&a), 0);
        assert!(
            a["casetrail"]["requests"][0]["items"][0]["notes"][0]
                .as_str()
                .unwrap()
                .contains("TrangThaiHoSo"),
            "{a}"
        );
    }
    assert_eq!(s.log_size(), before);
    assert_eq!(
        s.get("/v1/dossiers/H27.12-190312-0301", Some(&s.admin)).0,
        404
    );
    let fees = send(&s, upsert("H27.12-190312-0306", "6", json!({})));
    assert_eq!(
        fees["casetrail"]["requests"][0]["items"][0]["events"],
        json!(["dossier.received"])
    );
    send(
        &s,
        upsert(
            "H27.12-190312-0307",
            "7",
            json!({"NgayKetThucXuLy": "20190313080000"}),
        ),
    );
    assert_eq!(state(&s, "H27.12-190312-0307")["status"], "withdrawn");
    send(
        &s,
        upsert(
            "H27.12-190312-0308",
            "8",
            json!({"NgayKetThucXuLy": "20190313080000"}),
        ),
    );
    assert_eq!(state(&s, "H27.12-190312-0308")["outcome"], "rejected");

    // A step before its dossier's upsert: 404 with the portal's keys; taken once the upsert has come.
    let late = "H27.12-190312-0401";
    let early = step(late, "4", "20190312100000", "H27.12.01");
    let mut with_session = early.clone();
    with_session["session"] = json!(s.ingest);
    let (status, refused) = s.post("/v1/adapters/dvcqg", None, &with_session);
    assert_eq!(
        (status, refused["error_code"].as_str()),
        (404, Some("dossier_not_found")),
        "{refused}"
    );
    send(&s, upsert(late, "2", json!({})));
    send(&s, early);
    assert_eq!(state(&s, late)["holder"], COMMUNE);

    // The same request twice, then the whole sync log again: nothing new.
    let size = s.log_size();
    let last = sent.last().unwrap().clone();
    assert_eq!(written(&sync(&s, &s.ingest, &last)), 0);
    let all: Vec<Value> = sent.clone();
    for chunk in all.chunks(7) {
        let answer = sync(&s, &s.ingest, &Value::Array(chunk.to_vec()));
        assert_eq!(written(&answer), 0, "{answer:#}");
    }
    assert_eq!(s.log_size(), size);

    // Refusals: every problem named, nothing written, the portal's keys beside the problem's.
    let refusals = [
        (
            upsert(
                "H27.12-190312-0501",
                "2",
                json!({"NgayTiepNhan": "12/03/2019 08:30"}),
            ),
            422,
            "data[0].NgayTiepNhan",
        ),
        (
            upsert("H27.12-190312-0502", "11", json!({})),
            422,
            "data[0].TrangThaiHoSo",
        ),
        (
            upsert("H27.12-190312-0503", "2", json!({"KenhThucHien": "9"})),
            422,
            "data[0].KenhThucHien",
        ),
        (
            json!({"madonvi": "H27.99", "service": "DongBoHoSoMC", "data": [{"MaHoSo": "X-1", "TrangThaiHoSo": "2"}]}),
            422,
            "madonvi",
        ),
        (
            upsert(
                a,
                "10",
                json!({"DonViXuLy": "H27.12.01", "NgayHenTra": "20190326170000", "DanhSachHoSoBoSung": rounds, "NgayKetThucXuLy": "20190320160000", "NgayTra": "20190322090000"}),
            ),
            409,
            "data[0].NgayTra",
        ),
    ];
    for (body, want, field) in refusals {
        let mut body = body;
        body["session"] = json!(s.ingest);
        let (status, p) = s.post("/v1/adapters/dvcqg", None, &body);
        assert_eq!(status, want, "{body}\n{p:#}");
        assert_eq!(p["error_code"], p["code"]);
        assert!(
            p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{field}: {p:#}"
        );
    }
    // Another agency's dossier: 403.
    let mut theirs = upsert("H27.13-190312-0001", "2", json!({}));
    theirs["madonvi"] = json!("H27.13");
    theirs["session"] = json!(s.ingest);
    assert_eq!(s.post("/v1/adapters/dvcqg", None, &theirs).0, 403);
    // No token, or a session that is none: 401.
    assert_eq!(
        s.post(
            "/v1/adapters/dvcqg",
            None,
            &upsert("H27.12-190312-0601", "2", json!({}))
        )
        .0,
        401
    );
    let mut wrong = upsert("H27.12-190312-0601", "2", json!({}));
    wrong["session"] = json!("not-a-token");
    assert_eq!(s.post("/v1/adapters/dvcqg", None, &wrong).0, 401);
    assert_eq!(s.log_size(), size);

    // The lookup answers from the log in the site's codes.
    let found = sync(
        &s,
        &s.ingest,
        &json!({"service": "TraCuuHoSo", "mahoso": a}),
    );
    assert_eq!(found["result"][0]["TrangThaiHoSo"], "10");
    assert_eq!(found["result"][0]["NgayKetThucXuLy"], "20190320160000");
    let none = sync(
        &s,
        &s.ingest,
        &json!({"service": "TraCuuHoSo", "mahoso": "H27.12-190312-9999"}),
    );
    assert_eq!(none["result"], json!([]));

    // Every event the adapter wrote names the credential and the mapping.
    let (_, trail) = s.get(&format!("/v1/dossiers/{a}/events"), Some(&s.admin));
    let sha = found["casetrail"]["mapping"]["sha256"].as_str().unwrap();
    for e in trail["events"].as_array().unwrap() {
        assert_eq!(
            e["source"],
            format!("vendor-dept12@dvcqg:ha-tinh-test:{}", &sha[..8])
        );
    }

    // Stopped, the data directory holds no personal value sent, anywhere; it does hold the dossier codes (the
    // search can see what is stored).
    let data = s.data();
    let stopped = s.child.id();
    unsafe { libc::kill(stopped as i32, libc::SIGTERM) };
    let mut s = s;
    s.child.wait().unwrap();
    let mut files = Vec::new();
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(std::fs::read(&p).unwrap());
            }
        }
    }
    let contains = |needle: &str| {
        files
            .iter()
            .any(|f| f.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    assert!(contains(a), "the search finds a stored dossier code");
    let mut codes: Vec<String> = sent
        .iter()
        .flat_map(|r| {
            r["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["MaHoSo"].as_str().unwrap().to_owned())
        })
        .collect();
    // Those refused too.
    for refused in [
        "H27.12-190312-0501",
        "H27.12-190312-0502",
        "H27.12-190312-0503",
        "H27.13-190312-0001",
        "H27.12-190312-0601",
    ] {
        codes.push(refused.into());
    }
    for code in codes {
        for value in personal(&code) {
            assert!(!contains(&value), "{value:?} is in the data directory");
        }
    }
    // And the log as exported (every event decoded) names none of them either.
    let exported = crate::stdout(&crate::casetrail(&data, &["export"]));
    assert!(exported.contains(a));
    assert!(!exported.contains("Phạm Thị Riêng") && !exported.contains("@bimat.vn"));
}
