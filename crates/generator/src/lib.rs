//! A deterministic province shaped like Hà Tĩnh in 2018–2019, and the life of every dossier in it.
//!
//! The province: the provincial People's Committee, 20 departments, 13 districts and about 200 communes
//! registered under them; procedures offered at each level (some online at level 3 or 4, some with postal receipt
//! or return, a few upgraded during the range); targets (the letter's 20 % / 10 % for everyone, a stricter one
//! for the Department of Information and Communications from 2019).
//!
//! The dossiers: receipts in working hours, more each quarter; a channel mix whose online and postal shares grow
//! quarter by quarter; transfers between agencies; supplement requests (now and then two); due extensions;
//! early, on-time and late resolutions; results returned at the counter, online or by post; withdrawals;
//! corrections (channel, receipt time, procedure, due date); and events recorded days after they occurred.
//!
//! The output is a sequence of stored events (position, version, `recorded_at`, source) in the order a log would
//! hold them, so that `casetrail import` reproduces the recording times and `known_at` questions mean something.
//! The same configuration always yields the same bytes.

pub mod lives;
pub mod published;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc, Weekday};
use domain::calendar::{vietnam, Cut, PeriodKind};
use domain::event::*;
use domain::{AgencyCode, DossierCode, Event, Period, ProcedureCode, StoredEvent, Text};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub const SOURCE: &str = "generator";

/// What to generate.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Dossiers received over the whole range.
    pub dossiers: u64,
    /// First and last quarter (or any period) of receipts.
    pub from: Period,
    pub to: Period,
}

impl Config {
    pub fn new(seed: u64, dossiers: u64, from: Period, to: Period) -> Config {
        Config {
            seed,
            dossiers,
            from,
            to,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AgencySpec {
    pub code: AgencyCode,
    pub name: String,
    pub level: AgencyLevel,
    pub parent: Option<AgencyCode>,
}

#[derive(Clone, Debug)]
pub struct OfferSpec {
    pub agency: usize,
    pub procedure: ProcedureCode,
    pub name: String,
    pub level: OfferLevel,
    pub postal_receive: bool,
    pub postal_return: bool,
    pub effective_from: NaiveDate,
}

/// The reference data of the generated province.
#[derive(Clone, Debug)]
pub struct Province {
    pub agencies: Vec<AgencySpec>,
    /// Every offer, oldest first; an agency's later offer of the same procedure supersedes the earlier one.
    pub offers: Vec<OfferSpec>,
    pub targets: Vec<TargetSet>,
}

const DEPARTMENTS: [&str; 20] = [
    "Văn phòng UBND tỉnh",
    "Sở Nội vụ",
    "Sở Tư pháp",
    "Sở Kế hoạch và Đầu tư",
    "Sở Tài chính",
    "Sở Công Thương",
    "Sở Nông nghiệp và Phát triển nông thôn",
    "Sở Giao thông vận tải",
    "Sở Xây dựng",
    "Sở Tài nguyên và Môi trường",
    "Sở Thông tin và Truyền thông",
    "Sở Lao động - Thương binh và Xã hội",
    "Sở Văn hóa, Thể thao và Du lịch",
    "Sở Khoa học và Công nghệ",
    "Sở Giáo dục và Đào tạo",
    "Sở Y tế",
    "Sở Ngoại vụ",
    "Thanh tra tỉnh",
    "Ban Dân tộc",
    "Ban Quản lý Khu kinh tế tỉnh",
];

const DISTRICTS: [&str; 13] = [
    "Thành phố Hà Tĩnh",
    "Thị xã Hồng Lĩnh",
    "Thị xã Kỳ Anh",
    "Huyện Nghi Xuân",
    "Huyện Đức Thọ",
    "Huyện Hương Sơn",
    "Huyện Hương Khê",
    "Huyện Vũ Quang",
    "Huyện Can Lộc",
    "Huyện Lộc Hà",
    "Huyện Thạch Hà",
    "Huyện Cẩm Xuyên",
    "Huyện Kỳ Anh",
];

/// Communes per district (about 200 in all).
const COMMUNES: [usize; 13] = [16, 6, 12, 17, 16, 21, 18, 10, 19, 13, 22, 23, 20];

const SYLLABLES_A: [&str; 16] = [
    "Cẩm",
    "Thạch",
    "Kỳ",
    "Đức",
    "Sơn",
    "Hương",
    "Xuân",
    "Tùng",
    "Trường",
    "Phú",
    "Quang",
    "Yên",
    "Thịnh",
    "Hòa",
    "Vĩnh",
    "Tân",
];
const SYLLABLES_B: [&str; 16] = [
    "Bình", "Hà", "Long", "Lạc", "Hưng", "Thủy", "Phong", "Trung", "Lâm", "Hải", "An", "Mỹ",
    "Tiến", "Đồng", "Châu", "Lộc",
];

/// The code of the Department of Information and Communications, which gets a stricter target from 2019.
pub const DEPARTMENT_ICT: &str = "000.00.11.H27";
pub const PROVINCE: &str = "000.00.00.H27";

fn code(s: &str) -> AgencyCode {
    AgencyCode::parse(s).expect("generated agency codes are valid")
}

fn text(s: &str) -> Text {
    Text::parse(s).expect("generated texts are valid")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

impl Province {
    /// The province for a seed. Its shape (codes, tree) is fixed; offers vary with the seed.
    pub fn new(rng: &mut StdRng, from: Period) -> Province {
        let mut agencies = vec![AgencySpec {
            code: code(PROVINCE),
            name: "UBND tỉnh Hà Tĩnh".into(),
            level: AgencyLevel::Province,
            parent: None,
        }];
        for (i, name) in DEPARTMENTS.iter().enumerate() {
            agencies.push(AgencySpec {
                code: code(&format!("000.00.{:02}.H27", i + 1)),
                name: (*name).into(),
                level: AgencyLevel::Department,
                parent: Some(code(PROVINCE)),
            });
        }
        for (d, name) in DISTRICTS.iter().enumerate() {
            let district = code(&format!("000.00.{:02}.H27", d + 21));
            agencies.push(AgencySpec {
                code: district.clone(),
                name: format!("UBND {name}"),
                level: AgencyLevel::District,
                parent: Some(code(PROVINCE)),
            });
            for c in 0..COMMUNES[d] {
                let n = d * 31 + c * 7;
                let prefix = if d < 3 && c % 2 == 0 {
                    "Phường"
                } else {
                    "Xã"
                };
                agencies.push(AgencySpec {
                    code: code(&format!("000.{:02}.{:02}.H27", d + 21, c + 1)),
                    name: format!(
                        "UBND {prefix} {} {}",
                        SYLLABLES_A[n % 16],
                        SYLLABLES_B[(n / 16 + c) % 16]
                    ),
                    level: AgencyLevel::Commune,
                    parent: Some(district.clone()),
                });
            }
        }
        let first_day = from
            .start(Cut::Calendar)
            .with_timezone(&vietnam())
            .date_naive();
        let opened = first_day - Duration::days(400);
        let upgrade = date(first_day.year() + 1, 1, 1);
        let mut offers = Vec::new();
        for (index, agency) in agencies.iter().enumerate() {
            let (count, family, online_share) = match agency.level {
                AgencyLevel::Province => (5, 3, 0.4),
                AgencyLevel::Department => (rng.gen_range(15..35), 1, 0.65),
                AgencyLevel::District => (25, 2, 0.5),
                AgencyLevel::Commune => (12, 2, 0.3),
            };
            for p in 0..count {
                // District and commune procedures share codes across the province, as real ones do.
                let number = match agency.level {
                    AgencyLevel::Department => 1_000 + index * 50 + p,
                    AgencyLevel::District => 5_000 + p,
                    AgencyLevel::Commune => 6_000 + p,
                    AgencyLevel::Province => 7_000 + p,
                };
                let procedure = ProcedureCode::parse(&format!("{family}.{number:06}"))
                    .expect("valid procedure");
                let level = if rng.gen_bool(online_share) {
                    if rng.gen_bool(0.3) {
                        OfferLevel::Level4
                    } else {
                        OfferLevel::Level3
                    }
                } else {
                    OfferLevel::None
                };
                let offer = OfferSpec {
                    agency: index,
                    procedure,
                    name: format!("Thủ tục {family}.{number:06}"),
                    level,
                    postal_receive: rng.gen_bool(0.7),
                    postal_return: rng.gen_bool(0.8),
                    effective_from: opened + Duration::days(rng.gen_range(0..200)),
                };
                // A sixth of the procedures move up a level at the start of the second year.
                let upgraded = rng.gen_bool(1.0 / 6.0).then(|| OfferSpec {
                    level: match offer.level {
                        OfferLevel::None => OfferLevel::Level3,
                        _ => OfferLevel::Level4,
                    },
                    postal_receive: true,
                    effective_from: upgrade,
                    ..offer.clone()
                });
                offers.push(offer);
                offers.extend(upgraded);
            }
        }
        let first_quarter = Period::containing(
            &from.start(Cut::Calendar),
            PeriodKind::Quarter,
            Cut::Calendar,
        );
        let targets = vec![
            TargetSet {
                agency: TargetScope::All,
                from_period: first_quarter,
                online_rate_min: DEFAULT_ONLINE_RATE_MIN,
                postal_rate_min: DEFAULT_POSTAL_RATE_MIN,
            },
            TargetSet {
                agency: TargetScope::Agency(code(DEPARTMENT_ICT)),
                from_period: Period::Quarter {
                    year: first_day.year() + 1,
                    quarter: 1,
                },
                online_rate_min: 0.30,
                postal_rate_min: 0.15,
            },
        ];
        Province {
            agencies,
            offers,
            targets,
        }
    }

    /// The reference events, in the order they are recorded, with their stream versions.
    pub fn events(
        &self,
        rng: &mut StdRng,
        recorded_from: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, u64, Event)> {
        // What each reference event says, then one recording second each, in this order.
        let agencies = self.agencies.iter().map(|a| {
            let data = EventData::AgencyRegistered(AgencyRegistered {
                name: text(&a.name),
                level: a.level,
                parent: a.parent.clone(),
            });
            (Some(a.code.clone()), data)
        });
        let offers = self.offers.iter().map(|o| {
            let data = EventData::ProcedureOffered(ProcedureOffered {
                procedure: o.procedure.clone(),
                name: text(&o.name),
                online_level: o.level,
                postal_receive: o.postal_receive,
                postal_return: o.postal_return,
                effective_from: o.effective_from,
                field: None,
                field_name: None,
            });
            (Some(self.agencies[o.agency].code.clone()), data)
        });
        let targets = self.targets.iter().map(|t| {
            let agency = match &t.agency {
                TargetScope::Agency(a) => Some(a.clone()),
                TargetScope::All => None,
            };
            (agency, EventData::TargetSet(t.clone()))
        });
        let mut at = recorded_from;
        let out: Vec<(DateTime<Utc>, Event)> = agencies
            .chain(offers)
            .chain(targets)
            .map(|(agency, data)| {
                at += Duration::seconds(1);
                let id = uuid::Builder::from_unix_timestamp_millis(
                    at.timestamp_millis() as u64,
                    &rng.gen(),
                );
                let event = Event {
                    id: id.into_uuid(),
                    dossier: None,
                    agency,
                    occurred_at: at.with_timezone(&vietnam()),
                    data,
                };
                (at, event)
            })
            .collect();
        let mut versions = std::collections::HashMap::new();
        out.into_iter()
            .map(|(recorded, event)| {
                let version = versions.entry(event.stream().key()).or_insert(0u64);
                *version += 1;
                (recorded, *version, event)
            })
            .collect()
    }

    /// The offers of an agency in force on a day.
    fn offers_on(&self, agency: usize, day: NaiveDate) -> Vec<&OfferSpec> {
        let mut latest: Vec<&OfferSpec> = Vec::new();
        for o in self
            .offers
            .iter()
            .filter(|o| o.agency == agency && o.effective_from <= day)
        {
            match latest.iter_mut().find(|l| l.procedure == o.procedure) {
                Some(l) if l.effective_from <= o.effective_from => *l = o,
                Some(_) => {}
                None => latest.push(o),
            }
        }
        latest
    }
}

/// An event waiting in the generator's queue until everything recorded before it has been handed out.
struct Pending {
    recorded_at: DateTime<Utc>,
    sequence: u64,
    version: u64,
    event: Event,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.recorded_at, self.sequence) == (other.recorded_at, other.sequence)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.recorded_at, self.sequence).cmp(&(other.recorded_at, other.sequence))
    }
}

/// The generated log, event by event, in position order.
pub struct Generator {
    rng: StdRng,
    pub province: Province,
    /// Receipt times still to come, latest first (popped from the end).
    receipts: Vec<i64>,
    queue: BinaryHeap<Reverse<Pending>>,
    sequence: u64,
    position: u64,
    dossiers: u64,
    first: Period,
    /// Nothing after this instant happens: dossiers still open then stay open.
    now: DateTime<FixedOffset>,
    /// Agencies by level, for choosing where a dossier goes.
    by_level: [Vec<usize>; 4],
}

impl Generator {
    pub fn new(config: &Config) -> Generator {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let province = Province::new(&mut rng, config.from);
        let start = config.from.start(Cut::Calendar);
        let end = config.to.end(Cut::Calendar);
        let now = end.with_timezone(&vietnam());
        // Receipts per quarter grow by 4 % a quarter.
        let mut quarters = Vec::new();
        let mut q = Period::containing(&start, PeriodKind::Quarter, Cut::Calendar);
        while q.start(Cut::Calendar) < end {
            quarters.push(q);
            q = q.next();
        }
        let weights: Vec<f64> = (0..quarters.len()).map(|i| 1.0 + 0.04 * i as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut receipts = Vec::with_capacity(config.dossiers as usize);
        let mut left = config.dossiers;
        for (i, q) in quarters.iter().enumerate() {
            let n = if i + 1 == quarters.len() {
                left
            } else {
                ((config.dossiers as f64 * weights[i] / total).round() as u64).min(left)
            };
            left -= n;
            let (from, to) = (
                q.start(Cut::Calendar).max(start),
                q.end(Cut::Calendar).min(end),
            );
            for _ in 0..n {
                receipts.push(working_instant(&mut rng, from, to));
            }
        }
        receipts.sort_unstable_by(|a, b| b.cmp(a));
        let mut by_level: [Vec<usize>; 4] = Default::default();
        for (i, a) in province.agencies.iter().enumerate() {
            let slot = match a.level {
                AgencyLevel::Province => 0,
                AgencyLevel::Department => 1,
                AgencyLevel::District => 2,
                AgencyLevel::Commune => 3,
            };
            by_level[slot].push(i);
        }
        let mut generator = Generator {
            rng,
            province,
            receipts,
            queue: BinaryHeap::new(),
            sequence: 0,
            position: 0,
            dossiers: 0,
            first: Period::containing(&start, PeriodKind::Quarter, Cut::Calendar),
            now,
            by_level,
        };
        let reference = generator
            .province
            .events(&mut generator.rng, start - Duration::days(30));
        for (recorded_at, version, event) in reference {
            generator.push(recorded_at, version, event);
        }
        generator
    }

    fn push(&mut self, recorded_at: DateTime<Utc>, version: u64, event: Event) {
        self.sequence += 1;
        self.queue.push(Reverse(Pending {
            recorded_at,
            sequence: self.sequence,
            version,
            event,
        }));
    }

    /// Quarters since the first: the channel mix improves with it.
    fn quarter_number(&self, t: &DateTime<FixedOffset>) -> f64 {
        let q = Period::containing(t, PeriodKind::Quarter, Cut::Calendar);
        let mut n = 0;
        let mut p = self.first;
        while p < q && n < 1_000 {
            p = p.next();
            n += 1;
        }
        n as f64
    }

    /// Generates one dossier received at `t0` and queues its events.
    fn dossier(&mut self, t0: i64) {
        self.dossiers += 1;
        let received_at = DateTime::from_timestamp(t0, 0)
            .expect("valid instant")
            .with_timezone(&vietnam());
        let quarter = self.quarter_number(&received_at);
        let r = &mut self.rng;
        let level_slot = match r.gen_range(0..100) {
            0..=2 => 0,
            3..=34 => 1,
            35..=64 => 2,
            _ => 3,
        };
        let agencies = &self.by_level[level_slot];
        let agency = agencies[r.gen_range(0..agencies.len())];
        let offers = self.province.offers_on(agency, received_at.date_naive());
        let Some(offer) = offers
            .get(r.gen_range(0..offers.len().max(1)))
            .map(|o| (*o).clone())
        else {
            self.dossiers -= 1;
            return;
        };
        let agency_code = self.province.agencies[agency].code.clone();
        let dossier = DossierCode::parse(&format!(
            "{}-{}-{:07}",
            agency_code,
            received_at.format("%y%m%d"),
            self.dossiers
        ))
        .expect("valid dossier code");
        // The channel mix: online and postal shares grow every quarter, where the procedure allows them.
        let online_share = (0.04 + 0.03 * quarter).min(0.6);
        let postal_share = (0.002 + 0.012 * quarter).min(0.2);
        let channel = if offer.level != OfferLevel::None && r.gen_bool(online_share) {
            Channel::Online
        } else if offer.postal_receive && r.gen_bool(postal_share) {
            Channel::Postal
        } else {
            Channel::Counter
        };
        let online_level = (channel == Channel::Online).then_some(match offer.level {
            OfferLevel::Level4 => OnlineLevel::Level4,
            OfferLevel::Full => OnlineLevel::Full,
            OfferLevel::Partial => OnlineLevel::Partial,
            _ => OnlineLevel::Level3,
        });
        let result_by_post = offer.postal_return && r.gen_bool((0.004 + 0.015 * quarter).min(0.25));
        let days = [1, 3, 5, 7, 10, 15, 20][r.gen_range(0..7)];
        let due = (!r.gen_bool(0.04)).then(|| working_days_after(received_at, days));
        let mut steps: Vec<(AgencyCode, DateTime<FixedOffset>, EventData)> = vec![(
            agency_code.clone(),
            received_at,
            EventData::Received(Received {
                procedure: offer.procedure.clone(),
                channel,
                online_level,
                due_at: due,
                result_by_post: Some(result_by_post),
                applicant: Some(if r.gen_bool(0.85) {
                    Applicant::Citizen
                } else {
                    Applicant::Business
                }),
            }),
        )];
        let mut at = received_at;
        let mut holder = agency_code.clone();
        let step = |r: &mut StdRng, at: &mut DateTime<FixedOffset>, min: i64, max: i64| {
            *at += Duration::seconds(r.gen_range(min..max));
        };
        // Inter-agency procedures: a commune sends to its district, a district or department to a department.
        if r.gen_bool(0.08) {
            step(r, &mut at, 3_600, 2 * 86_400);
            let to = match self.province.agencies[agency].level {
                AgencyLevel::Commune => self.province.agencies[agency].parent.clone(),
                _ => {
                    let d = &self.by_level[1];
                    Some(
                        self.province.agencies[d[r.gen_range(0..d.len())]]
                            .code
                            .clone(),
                    )
                }
            }
            .filter(|to| *to != holder);
            if let Some(to) = to {
                steps.push((
                    holder.clone(),
                    at,
                    EventData::Transferred(Transferred {
                        to_agency: to.clone(),
                        note: Some(text("liên thông")),
                    }),
                ));
                holder = to;
                if r.gen_bool(0.3) {
                    step(r, &mut at, 86_400, 5 * 86_400);
                    steps.push((
                        holder.clone(),
                        at,
                        EventData::Transferred(Transferred {
                            to_agency: agency_code.clone(),
                            note: Some(text("trả kết quả liên thông")),
                        }),
                    ));
                    holder = agency_code.clone();
                }
            }
        }
        let mut due_now = due;
        if r.gen_bool(0.01) {
            step(r, &mut at, 3_600, 3 * 86_400);
            steps.push((
                holder.clone(),
                at,
                EventData::Withdrawn(Withdrawn {
                    reason: Some(text("công dân rút hồ sơ")),
                }),
            ));
        } else {
            let requests = match r.gen_range(0..1000) {
                0..=14 => 2,
                15..=129 => 1,
                _ => 0,
            };
            let mut paused = 0;
            for _ in 0..requests {
                step(r, &mut at, 3_600, 3 * 86_400);
                steps.push((
                    holder.clone(),
                    at,
                    EventData::SupplementRequested(SupplementRequested {
                        note: Some(text("bổ sung bản sao giấy tờ")),
                    }),
                ));
                let pause = r.gen_range(3_600..10 * 86_400);
                at += Duration::seconds(pause);
                paused += pause;
                steps.push((
                    holder.clone(),
                    at,
                    EventData::SupplementReceived(SupplementReceived {}),
                ));
            }
            if let (Some(d), true) = (due_now, r.gen_bool(0.03)) {
                step(r, &mut at, 600, 86_400);
                let later = d.max(at) + Duration::days(5);
                steps.push((
                    holder.clone(),
                    at,
                    EventData::DueExtended(DueExtended {
                        new_due_at: later,
                        reason: text("phiếu xin lỗi và hẹn lại"),
                    }),
                ));
                due_now = Some(later);
            }
            // Early, on the day, or late; lateness grows rarer as the province improves.
            let late_share = (0.16 - 0.01 * quarter).max(0.04);
            let target = match due_now {
                Some(d) => {
                    let d = d + Duration::seconds(paused);
                    let roll: f64 = r.gen();
                    if roll < late_share {
                        d + Duration::seconds(r.gen_range(86_400..15 * 86_400))
                    } else if roll < late_share + 0.35 {
                        d.date_naive()
                            .and_hms_opt(8, 0, 0)
                            .expect("valid")
                            .and_local_timezone(vietnam())
                            .single()
                            .expect("fixed offset")
                            + Duration::seconds(r.gen_range(0..8 * 3_600))
                    } else {
                        let span = (d - at).num_seconds().max(2);
                        at + Duration::seconds(r.gen_range(1..span))
                    }
                }
                None => at + Duration::seconds(r.gen_range(600..3 * 86_400)),
            };
            at = target.max(at + Duration::seconds(60));
            steps.push((
                holder.clone(),
                at,
                EventData::Resolved(Resolved {
                    outcome: if r.gen_bool(0.97) {
                        Outcome::Approved
                    } else {
                        Outcome::Rejected
                    },
                }),
            ));
            if r.gen_bool(0.97) {
                step(r, &mut at, 0, 7 * 86_400);
                let channel = if result_by_post {
                    Channel::Postal
                } else if channel == Channel::Online && r.gen_bool(0.4) {
                    Channel::Online
                } else {
                    Channel::Counter
                };
                steps.push((
                    agency_code.clone(),
                    at,
                    EventData::Returned(Returned { channel }),
                ));
            }
        }
        // Corrections: an intake fact entered wrongly, put right later.
        if r.gen_bool(0.015) {
            step(r, &mut at, 600, 5 * 86_400);
            let mut c = Corrected {
                reason: text("nhập sai thông tin tiếp nhận"),
                procedure: None,
                channel: None,
                online_level: None,
                received_at: None,
                due_at: None,
                result_by_post: None,
            };
            match r.gen_range(0..4) {
                0 if channel == Channel::Counter && offer.level != OfferLevel::None => {
                    c.channel = Some(Channel::Online);
                    c.online_level = Some(OnlineLevel::Level3);
                }
                0 => c.channel = Some(Channel::Counter),
                1 => {
                    c.received_at =
                        Some(received_at - Duration::seconds(r.gen_range(3_600..4 * 86_400)))
                }
                2 => {
                    let others = self.province.offers_on(agency, received_at.date_naive());
                    c.procedure = Some(others[r.gen_range(0..others.len())].procedure.clone());
                }
                _ => c.due_at = Some(working_days_after(received_at, days + 2)),
            }
            steps.push((agency_code.clone(), at, EventData::Corrected(c)));
        }
        // Recording: most within minutes, some days late; never before the dossier's previous event was recorded.
        let mut recorded = received_at.with_timezone(&Utc);
        for (version, (agency, occurred_at, data)) in steps.into_iter().enumerate() {
            if occurred_at > self.now {
                break;
            }
            let lag = if r.gen_bool(0.03) {
                r.gen_range(86_400..9 * 86_400)
            } else {
                r.gen_range(5..1_800)
            };
            recorded = recorded.max(occurred_at.with_timezone(&Utc) + Duration::seconds(lag));
            if recorded > self.now {
                break;
            }
            let id = uuid::Builder::from_unix_timestamp_millis(
                occurred_at.timestamp_millis().max(0) as u64,
                &r.gen(),
            )
            .into_uuid();
            let event = Event {
                id,
                dossier: Some(dossier.clone()),
                agency: Some(agency),
                occurred_at,
                data,
            };
            self.sequence += 1;
            self.queue.push(Reverse(Pending {
                recorded_at: recorded,
                sequence: self.sequence,
                version: version as u64 + 1,
                event,
            }));
        }
    }
}

impl Iterator for Generator {
    type Item = StoredEvent;

    fn next(&mut self) -> Option<StoredEvent> {
        // Every event still to be made is recorded at or after the next receipt: hand out what comes before it.
        loop {
            let next_receipt = self.receipts.last().copied();
            match (self.queue.peek(), next_receipt) {
                (Some(Reverse(p)), Some(t)) if p.recorded_at.timestamp() > t => {
                    self.receipts.pop();
                    self.dossier(t);
                }
                (None, Some(t)) => {
                    self.receipts.pop();
                    self.dossier(t);
                }
                (None, None) => return None,
                _ => break,
            }
        }
        let Reverse(p) = self.queue.pop()?;
        self.position += 1;
        Some(StoredEvent {
            position: self.position,
            version: p.version,
            recorded_at: p.recorded_at,
            source: SOURCE.into(),
            event: p.event,
        })
    }
}

/// A random instant in working hours (Monday to Friday, 07:30–17:00 Vietnam time) between `from` and `to`.
fn working_instant(rng: &mut StdRng, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let (from, to) = (from.timestamp(), to.timestamp());
    for _ in 0..64 {
        let day_start = from + rng.gen_range(0..(to - from).max(1)) / 86_400 * 86_400;
        let t = day_start + rng.gen_range(27_000..61_200); // `from` is midnight, Vietnam time
        let local = DateTime::from_timestamp(t, 0)
            .expect("valid")
            .with_timezone(&vietnam());
        if t < to && !matches!(local.weekday(), Weekday::Sat | Weekday::Sun) {
            return t;
        }
    }
    from
}

/// 17:00 on the `days`-th working day after `t` (Vietnam time, weekends skipped; no holiday calendar).
fn working_days_after(t: DateTime<FixedOffset>, days: u32) -> DateTime<FixedOffset> {
    let mut day = t.date_naive();
    let mut left = days;
    while left > 0 {
        day = day.succ_opt().expect("valid date");
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    vietnam()
        .from_local_datetime(&day.and_hms_opt(17, 0, 0).expect("valid"))
        .single()
        .expect("a fixed offset has no gaps")
}

/// The whole generated log in memory (for tests and small runs).
pub fn generate(config: &Config) -> Vec<StoredEvent> {
    Generator::new(config).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> Vec<StoredEvent> {
        generate(&Config::new(
            seed,
            2_000,
            Period::Quarter {
                year: 2018,
                quarter: 4,
            },
            Period::Quarter {
                year: 2019,
                quarter: 1,
            },
        ))
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
        let bytes = |events: &[StoredEvent]| -> Vec<Vec<u8>> {
            events.iter().map(|e| e.canonical_bytes()).collect()
        };
        assert_eq!(bytes(&small(5)), bytes(&small(5)));
        assert_ne!(bytes(&small(5)), bytes(&small(6)));
    }

    #[test]
    fn the_log_is_in_order_and_the_province_has_its_shape() {
        let events = small(9);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.position, i as u64 + 1);
            e.check().unwrap();
        }
        assert!(events
            .windows(2)
            .all(|w| w[0].recorded_at <= w[1].recorded_at));
        let count = |level: AgencyLevel| {
            events
                .iter()
                .filter(
                    |e| matches!(&e.event.data, EventData::AgencyRegistered(a) if a.level == level),
                )
                .count()
        };
        assert_eq!(count(AgencyLevel::Department), 20);
        assert_eq!(count(AgencyLevel::District), 13);
        assert!((190..=220).contains(&count(AgencyLevel::Commune)));
        let received = events
            .iter()
            .filter(|e| matches!(e.event.data, EventData::Received(_)))
            .count();
        assert!((1_900..=2_000).contains(&received), "{received}");
        // Every kind of dossier event appears, and some are recorded a day or more after they occurred.
        for kind in [
            "dossier.transferred",
            "dossier.supplement_requested",
            "dossier.due_extended",
            "dossier.resolved",
            "dossier.returned",
            "dossier.withdrawn",
            "dossier.corrected",
        ] {
            assert!(
                events.iter().any(|e| e.event.event_type().as_str() == kind),
                "no {kind}"
            );
        }
        let late = events
            .iter()
            .filter(|e| e.recorded_at - e.event.occurred_at.with_timezone(&Utc) > Duration::days(1))
            .count();
        assert!(late > 0);
    }
}
