//! Published tables rebuilt as events: the dossiers placed so that a province's published counts hold, for tests
//! and for trying `check-report` and the report profiles on a real table.
//!
//! - Kon Tum, first quarter of 2023, "from 15/12/2022 to 14/3/2023": 56,039 dossiers = 12,516 online + 38,613 at
//!   the counter or by post + 4,910 carried over; by level (new + carried over) 23,233 province departments
//!   (6,596 online), 6,776 districts (2,521), 26,030 communes (3,399). The report gives only the total carried
//!   over; it is split 2,000 / 910 / 2,000 here. Carried-over dossiers are received on 1 December 2022 and
//!   resolved on 10 January 2023; new ones spread over the quarter, due 90 days after receipt.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use domain::event::*;
use domain::{AgencyCode, DossierCode, Event, ProcedureCode, StoredEvent, Text};
use std::collections::HashMap;

pub const KON_TUM_DEPARTMENTS: &str = "000.00.10.H34";
pub const KON_TUM_DISTRICTS: &str = "000.00.20.H34";
pub const KON_TUM_COMMUNES: &str = "000.00.30.H34";

/// Kon Tum's Q1 2023 table as published (the district rate's 37.76 % is the published slip; its counts give
/// 37.20 %), with the form's Vietnamese headers and Vietnamese number formatting.
pub const KON_TUM_2023_Q1_CSV: &str = "\
Đơn vị,Tổng số,Trực tuyến,\"Trực tiếp, dịch vụ bưu chính công ích\",Từ kỳ trước,Tỷ lệ trực tuyến (%)
\"Cấp tỉnh (sở, ban, ngành)\",23.233,6.596,,,\"28,39\"
Cấp huyện,6.776,2.521,,,\"37,76\"
Cấp xã,26.030,3.399,,,\"13,05\"
Tổng cộng,56.039,12.516,38.613,4.910,\"22,33\"
";

/// The seed letter's figures as it printed them (7.68 % for 2,668 of 34,996, which is 7.62 %).
pub const SEED_LETTER_CSV: &str = "\
name,received,online,online_rate
Hà Tĩnh Q1 2019,34996,2668,7.68
";

fn t(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).expect("a valid instant")
}

/// Events in log order, each recorded when it occurred (never before the one before it), with ids from a counter
/// so that the same history is the same log.
#[derive(Default)]
pub struct History {
    pub events: Vec<StoredEvent>,
    versions: HashMap<String, u64>,
}

impl History {
    pub fn push(
        &mut self,
        dossier: Option<&str>,
        agency: &str,
        at: DateTime<FixedOffset>,
        data: EventData,
    ) {
        let event = Event {
            id: uuid::Uuid::from_u128(
                0x5ca1_ab1e_0000_0000_0000_0000_0000_0000 + self.events.len() as u128,
            ),
            dossier: dossier.map(|d| DossierCode::parse(d).expect("a valid dossier code")),
            agency: Some(AgencyCode::parse(agency).expect("a valid agency code")),
            occurred_at: at,
            data,
        };
        let version = self.versions.entry(event.stream().key()).or_default();
        *version += 1;
        let at = at.with_timezone(&Utc);
        let recorded_at = self.events.last().map_or(at, |e| e.recorded_at.max(at));
        self.events.push(StoredEvent {
            position: self.events.len() as u64 + 1,
            version: *version,
            recorded_at,
            source: "published".into(),
            event,
        });
    }

    /// Registers an agency (on 1 January 2018, before anything else).
    pub fn register(&mut self, code: &str, name: &str, level: AgencyLevel) {
        self.push(
            None,
            code,
            t("2018-01-01T08:00:00+07:00"),
            EventData::AgencyRegistered(AgencyRegistered {
                name: Text::parse(name).expect("a valid name"),
                level,
                parent: None,
            }),
        );
    }

    /// Receives a dossier, due 90 days later.
    pub fn receive(
        &mut self,
        dossier: &str,
        agency: &str,
        at: DateTime<FixedOffset>,
        channel: Channel,
    ) {
        self.push(
            Some(dossier),
            agency,
            at,
            EventData::Received(Received {
                procedure: ProcedureCode::parse("1.000001").expect("a valid procedure code"),
                channel,
                online_level: (channel == Channel::Online).then_some(OnlineLevel::Level4),
                due_at: Some(at + Duration::days(90)),
                result_by_post: None,
                applicant: None,
            }),
        );
    }
}

/// Kon Tum's first quarter of 2023 (see the module's notes), as events.
pub fn kon_tum_2023_q1() -> Vec<StoredEvent> {
    let mut h = History::default();
    h.register(
        KON_TUM_DEPARTMENTS,
        "Sở, ban, ngành",
        AgencyLevel::Department,
    );
    h.register(KON_TUM_DISTRICTS, "UBND cấp huyện", AgencyLevel::District);
    h.register(KON_TUM_COMMUNES, "UBND cấp xã", AgencyLevel::Commune);
    // (agency, carried over, new, of which online)
    let levels = [
        (KON_TUM_DEPARTMENTS, 2_000, 21_233, 6_596),
        (KON_TUM_DISTRICTS, 910, 5_866, 2_521),
        (KON_TUM_COMMUNES, 2_000, 24_030, 3_399),
    ];
    let mut carried = Vec::new();
    let mut n = 0;
    for (agency, old, new, online) in levels {
        for i in 0..old {
            n += 1;
            let code = format!("KT-{n:06}");
            h.receive(
                &code,
                agency,
                t("2022-12-01T08:00:00+07:00") + Duration::seconds(i),
                Channel::Counter,
            );
            carried.push((code, agency));
        }
        for i in 0..new {
            n += 1;
            // Spread over the quarter's 89 days from 15 December, 07:30 on.
            let at = t("2022-12-15T07:30:00+07:00") + Duration::seconds(i * (89 * 86_400 / new));
            let channel = match i {
                _ if i < online => Channel::Online,
                _ if i % 7 == 0 => Channel::Postal,
                _ => Channel::Counter,
            };
            h.receive(&format!("KT-{n:06}"), agency, at, channel);
        }
    }
    for (code, agency) in carried {
        h.push(
            Some(&code),
            agency,
            t("2023-01-10T09:00:00+07:00"),
            EventData::Resolved(Resolved {
                outcome: Outcome::Approved,
            }),
        );
    }
    h.events
}
