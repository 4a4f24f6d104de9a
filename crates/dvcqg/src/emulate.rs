//! The other side of the sync: the requests a one-stop system would have sent the portal over a dossier's life,
//! made from casetrail's own events. Tests and demonstrations use it to put the same lives through the adapter
//! and through the native API; nothing in the service does.
//!
//! After each event the system sends `DongBoHoSoMC` with the dossier as it then stands, after a
//! `CapNhatTienDoHoSoMC` step for it (naming the unit that holds the dossier then, with the step's status). A
//! dossier received online is first sent at status 1, before it is accepted. Every request also carries personal fields
//! (a name, a phone number, an email, an identity number, an address), as real ones do, so that a test can look
//! for them where they must not be.

use crate::mapping::{Mapping, Meaning};
use crate::wire::format_time;
use domain::event::*;
use domain::{Event, EventData};
use serde_json::{json, Map, Value};

/// A mapping's text for generated lives (`generator::lives`): the portal's codes, plus codes for Decree 43's levels
/// 3 and 4 (which the generator also uses), and their agencies taken as they are (no catalogue registers them).
pub fn lives_mapping(id: &str) -> String {
    crate::mapping::PORTAL
        .replace("id = \"portal\"", &format!("id = {id:?}"))
        .replace(
            "[online_levels]\n",
            "[online_levels]\n\"L3\" = \"level3\"\n\"L4\" = \"level4\"\n",
        )
        .replace(
            "units_unlisted = \"agency-if-registered\"",
            "units_unlisted = \"as-is\"",
        )
}

/// The personal values every emulated request carries, derived from the dossier code so each is unique.
pub fn personal_values(dossier: &str) -> [String; 5] {
    let n: u64 = dossier
        .bytes()
        .fold(7, |h, b| h.wrapping_mul(131).wrapping_add(b as u64));
    [
        format!("Nguyễn Thị Riêng {}", n % 100_000),
        format!("09{:08}", n % 100_000_000),
        format!("rieng{}@thu.vn", n % 1_000_000),
        format!("0{:011}", n % 100_000_000_000),
        format!("{} Đường Kín, phường Một", n % 1000),
    ]
}

/// The life with a second hand-over after each transfer, halfway to its next event (or an hour after it), to a
/// unit it has not been at (`000.99.00.H27`): two hand-overs in a row, as a liên thông procedure goes.
pub fn handed_on(life: Vec<Event>) -> Vec<Event> {
    let mut out = Vec::with_capacity(life.len() + 2);
    for (k, e) in life.iter().enumerate() {
        out.push(e.clone());
        if let EventData::Transferred(t) = &e.data {
            let at = match life.get(k + 1) {
                Some(next) => e.occurred_at + (next.occurred_at - e.occurred_at) / 2,
                None => e.occurred_at + chrono::Duration::hours(1),
            };
            let to = domain::AgencyCode::parse("000.99.00.H27").unwrap();
            let mut second = e.clone();
            second.id = uuid::Uuid::new_v5(&e.id, b"handed on");
            second.agency = Some(t.to_agency.clone());
            second.occurred_at = at;
            second.data = EventData::Transferred(Transferred {
                to_agency: to,
                note: None,
            });
            out.push(second);
        }
    }
    out
}

/// The sync requests of one dossier's life (its events in order), under `mapping`'s codes. Panics if the mapping
/// has no code for something the events say (a test's mapping must cover its lives).
pub fn sync_requests(events: &[Event], mapping: &Mapping) -> Vec<Value> {
    let mut out = Vec::new();
    let Some(first) = events.first() else {
        return out;
    };
    let dossier = first.dossier.clone().expect("a dossier event");
    let agency = first.agency.clone().expect("an agency");
    let EventData::Received(r) = &first.data else {
        panic!("a life begins with dossier.received")
    };
    let [name, phone, email, id_number, address] = personal_values(dossier.as_str());
    let code = |c: Option<&str>, what: &str| -> String {
        c.unwrap_or_else(|| panic!("mapping {} has no code for {what}", mapping.id))
            .to_owned()
    };
    let mut d = Map::new();
    d.insert("MaHoSo".into(), json!(dossier));
    d.insert("MaTTHC".into(), json!(r.procedure));
    d.insert("TenTTHC".into(), json!("Thủ tục mô phỏng"));
    d.insert("ChuHoSo".into(), json!(name));
    d.insert("SoDienThoai".into(), json!(phone));
    d.insert("Email".into(), json!(email));
    d.insert("SoDinhDanh".into(), json!(id_number));
    d.insert("DiaChiThuongTru".into(), json!(address));
    d.insert("TrichYeuHoSo".into(), json!(format!("Hồ sơ của {name}")));
    let mut channel = r.channel;
    let mut level = r.online_level;
    let mut procedure = r.procedure.clone();
    let mut received_at = first.occurred_at;
    let mut due = r.due_at;
    let mut holder = agency.clone();
    let mut rounds: Vec<Value> = Vec::new();
    let mut status = Meaning::Accepted;
    let mut ended = None;
    let mut returned: Option<(domain::Instant, Channel)> = None;
    let by_post = if r.result_by_post.unwrap_or(false) {
        Channel::Postal
    } else {
        Channel::Counter
    };
    let step = |at: &domain::Instant, unit: &domain::AgencyCode, status: Meaning| {
        json!({
            "session": "phiên-mô-phỏng",
            "service": "CapNhatTienDoHoSoMC",
            "data": [{
                "MaHoSo": dossier,
                "NguoiXuLy": name,
                "ChucDanh": "Chuyên viên",
                "ThoiDiemXuLy": format_time(at),
                "PhongBanXuLy": unit,
                "NoiDungXuLy": format!("Xử lý, liên hệ {phone}"),
                "TrangThai": code(mapping.status_code(status), status.as_str()),
                "NgayBatDau": format_time(at),
                "NgayKetThucTheoQuyDinh": "",
            }]
        })
    };
    if r.channel == Channel::Online {
        // Sent online: the portal hears of it before the desk accepts it.
        let mut submitted = d.clone();
        submitted.insert(
            "TrangThaiHoSo".into(),
            json!(code(mapping.status_code(Meaning::Submitted), "submitted")),
        );
        submitted.insert(
            "KenhThucHien".into(),
            json!(code(mapping.channel_code(Channel::Online), "online")),
        );
        out.push(json!({
            "session": "phiên-mô-phỏng",
            "madonvi": agency,
            "service": "DongBoHoSoMC",
            "isUpdating": "False",
            "data": [Value::Object(submitted)],
        }));
    }
    for e in events {
        let at = e.occurred_at;
        match &e.data {
            EventData::Received(_) => {}
            EventData::Transferred(t) => {
                holder = t.to_agency.clone();
                status = Meaning::Processing;
            }
            EventData::SupplementRequested(_) => {
                rounds.push(json!({"NgayBoSung": format_time(&at), "NguoiYeuCauBoSung": name, "NoiDungBoSung": "Bổ sung bản sao"}));
                status = Meaning::SupplementRequested;
            }
            EventData::SupplementReceived(_) => {
                if let Some(Value::Object(last)) = rounds.last_mut() {
                    last.insert("NgayTiepNhanBoSung".into(), json!(format_time(&at)));
                }
                status = Meaning::Processing;
            }
            EventData::DueExtended(x) => due = Some(x.new_due_at),
            EventData::Resolved(x) => {
                ended = Some(at);
                status = match x.outcome {
                    Outcome::Approved => Meaning::Decided,
                    Outcome::Rejected => Meaning::Stopped,
                };
            }
            EventData::Returned(x) => {
                returned = Some((at, x.channel));
                status = Meaning::Returned;
            }
            EventData::Withdrawn(_) => {
                ended = Some(at);
                status = Meaning::Withdrawn;
            }
            EventData::Corrected(c) => {
                if let Some(p) = &c.procedure {
                    procedure = p.clone();
                }
                (channel, level) = c.channel_and_level(channel, level);
                if let Some(r) = c.received_at {
                    received_at = r;
                }
                if let Some(x) = c.due_at {
                    due = Some(x);
                }
            }
            _ => panic!("not a dossier event"),
        }
        // A step naming the unit that holds the dossier then: before the upsert, so that the step dates the
        // change (a transfer, a round, the end), except at intake, where the dossier must be sent first.
        let stepped = !matches!(
            e.data,
            EventData::DueExtended(_) | EventData::Corrected(_) | EventData::Returned(_)
        );
        let intake = matches!(e.data, EventData::Received(_));
        if stepped && !intake {
            out.push(step(&at, &holder, status));
        }
        d.insert("MaTTHC".into(), json!(procedure));
        d.insert("NgayTiepNhan".into(), json!(format_time(&received_at)));
        d.insert(
            "NgayHenTra".into(),
            json!(due.map(|t| format_time(&t)).unwrap_or_default()),
        );
        d.insert(
            "TrangThaiHoSo".into(),
            json!(code(mapping.status_code(status), status.as_str())),
        );
        d.insert(
            "KenhThucHien".into(),
            json!(code(mapping.channel_code(channel), channel.as_str())),
        );
        match level {
            Some(l) => d.insert(
                "MucDo".into(),
                json!(code(mapping.online_level_code(l), l.as_str())),
            ),
            None => d.remove("MucDo"),
        };
        d.insert(
            "HinhThuc".into(),
            json!(code(mapping.result_channel_code(by_post), by_post.as_str())),
        );
        if let Some(a) = r.applicant {
            d.insert(
                "LoaiDoiTuong".into(),
                json!(code(mapping.applicant_code(a), a.as_str())),
            );
        }
        d.insert("DonViXuLy".into(), json!(holder));
        d.insert("DanhSachHoSoBoSung".into(), Value::Array(rounds.clone()));
        d.insert(
            "NgayKetThucXuLy".into(),
            json!(ended.map(|t| format_time(&t)).unwrap_or_default()),
        );
        d.insert(
            "NgayTra".into(),
            json!(returned.map(|r| format_time(&r.0)).unwrap_or_default()),
        );
        if let Some((_, c)) = returned {
            d.insert(
                "HinhThucTra".into(),
                json!(code(mapping.result_channel_code(c), c.as_str())),
            );
        }
        out.push(json!({
            "session": "phiên-mô-phỏng",
            "madonvi": agency,
            "service": "DongBoHoSoMC",
            "isUpdating": if intake { "False" } else { "True" },
            "data": [Value::Object(d.clone())],
        }));
        if intake {
            out.push(step(&at, &holder, status));
        }
    }
    out
}
