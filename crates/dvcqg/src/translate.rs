//! A request compared with the log: what the log knows of a dossier ([`Known`], folded from its events), and the
//! events a sync request says happened that the log does not have yet ([`upsert`], [`step`]), in their order.
//!
//! The rules, each in one place here:
//! - **Content ids.** Every event gets a UUIDv5 of its dossier, type, time and data, so the same fact always has
//!   the same id: two copies of one request racing each other write it once.
//! - **What is already known writes nothing.** A fact the log has (the same time, to the second, the sync's
//!   precision) is skipped; so is a value the log has held before (an intake fact, a due date, a unit the dossier
//!   has been at): the sync repeats what it sent, and a sync log replayed from its start sends old states after
//!   new ones. Going back to a value held before takes a native `dossier.corrected`.
//! - **New intake facts are corrections** (procedure, channel and level, received time, an earlier due date); a
//!   later due date on an open dossier is the apology's `dossier.due_extended`.
//! - **What the contract cannot correct is refused** with the field, the log's value and the payload's: the end
//!   of processing, the return, a withdrawal, the rounds of supplements, the receiving agency.
//! - **Nothing is inserted before the log's last event** of the dossier: a new fact dated earlier is refused.

use crate::mapping::{DueOnResume, Meaning, Unit};
use crate::wire::{Problem, ProblemKind, Step, Upsert};
use domain::event::*;
use domain::{AgencyCode, DossierCode, Event, EventData, Instant, ProcedureCode, Text};
use uuid::Uuid;

/// The namespace of the adapter's content ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_2c4e_9b7d_4e21_8f30_c5d6_e7f8_0912);

/// What the log knows of one dossier.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// The stream's last version (0 when the dossier is not in the log).
    pub version: u64,
    pub life: Option<Life>,
}

/// A dossier as its events tell it, with every intake value it has held.
#[derive(Clone, Debug)]
pub struct Life {
    pub agency: AgencyCode,
    pub holder: AgencyCode,
    /// Every agency it has been at, the receiving one first.
    pub agencies: Vec<AgencyCode>,
    pub transfers: Vec<(Instant, AgencyCode)>,
    pub procedure: ProcedureCode,
    pub procedures_held: Vec<ProcedureCode>,
    pub channel: Channel,
    pub level: Option<OnlineLevel>,
    pub channels_held: Vec<(Channel, Option<OnlineLevel>)>,
    pub received_at: Instant,
    pub received_held: Vec<Instant>,
    pub due: Option<Instant>,
    pub dues_held: Vec<Instant>,
    pub result_by_post: bool,
    pub result_by_post_held: Vec<bool>,
    /// Supplement rounds: asked for, and received.
    pub rounds: Vec<(Instant, Option<Instant>)>,
    pub resolved: Option<(Instant, Outcome)>,
    pub returned: Option<(Instant, Channel)>,
    pub withdrawn: Option<Instant>,
    /// The latest business time of its events: nothing new may come before it.
    pub last_at: Instant,
}

fn same(a: &Instant, b: &Instant) -> bool {
    a.timestamp() == b.timestamp()
}

fn held<T: PartialEq>(list: &mut Vec<T>, v: T) {
    if !list.contains(&v) {
        list.push(v);
    }
}

impl Life {
    pub fn is_closed(&self) -> bool {
        self.returned.is_some() || self.withdrawn.is_some()
    }

    fn pending(&self) -> Option<Instant> {
        self.rounds.last().filter(|r| r.1.is_none()).map(|r| r.0)
    }

    /// The dossier's state in the portal's meanings.
    pub fn meaning(&self) -> Meaning {
        if self.withdrawn.is_some() {
            Meaning::Withdrawn
        } else if self.returned.is_some() {
            Meaning::Returned
        } else if let Some((_, outcome)) = self.resolved {
            match outcome {
                Outcome::Approved => Meaning::Decided,
                Outcome::Rejected => Meaning::Stopped,
            }
        } else if self.pending().is_some() {
            Meaning::SupplementRequested
        } else if self.transfers.is_empty() {
            Meaning::Accepted
        } else {
            Meaning::Processing
        }
    }
}

impl Known {
    /// Folds the dossier's events, in order.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Known {
        let mut k = Known::default();
        for e in events {
            k.apply(e);
        }
        k
    }

    /// Folds one more event (an accepted one: the log's rules hold).
    pub fn apply(&mut self, e: &Event) {
        self.version += 1;
        let at = e.occurred_at;
        if let EventData::Received(r) = &e.data {
            let agency = e.agency.clone().expect("a dossier event names its agency");
            self.life = Some(Life {
                holder: agency.clone(),
                agencies: vec![agency.clone()],
                agency,
                transfers: Vec::new(),
                procedure: r.procedure.clone(),
                procedures_held: vec![r.procedure.clone()],
                channel: r.channel,
                level: r.online_level,
                channels_held: vec![(r.channel, r.online_level)],
                received_at: at,
                received_held: vec![at],
                due: r.due_at,
                dues_held: r.due_at.into_iter().collect(),
                result_by_post: r.result_by_post.unwrap_or(false),
                result_by_post_held: vec![r.result_by_post.unwrap_or(false)],
                rounds: Vec::new(),
                resolved: None,
                returned: None,
                withdrawn: None,
                last_at: at,
            });
            return;
        }
        let Some(l) = self.life.as_mut() else { return };
        l.last_at = l.last_at.max(at);
        match &e.data {
            EventData::Transferred(t) => {
                l.transfers.push((at, t.to_agency.clone()));
                l.holder = t.to_agency.clone();
                held(&mut l.agencies, t.to_agency.clone());
            }
            EventData::SupplementRequested(_) => l.rounds.push((at, None)),
            EventData::SupplementReceived(_) => {
                if let Some(r) = l.rounds.last_mut() {
                    r.1 = Some(at);
                }
            }
            EventData::DueExtended(d) => {
                l.due = Some(d.new_due_at);
                held(&mut l.dues_held, d.new_due_at);
            }
            EventData::Resolved(r) => l.resolved = Some((at, r.outcome)),
            EventData::Returned(r) => l.returned = Some((at, r.channel)),
            EventData::Withdrawn(_) => l.withdrawn = Some(at),
            EventData::Corrected(c) => {
                if let Some(p) = &c.procedure {
                    l.procedure = p.clone();
                    held(&mut l.procedures_held, p.clone());
                }
                (l.channel, l.level) = c.channel_and_level(l.channel, l.level);
                held(&mut l.channels_held, (l.channel, l.level));
                if let Some(r) = c.received_at {
                    l.received_at = r;
                    held(&mut l.received_held, r);
                }
                if let Some(d) = c.due_at {
                    l.due = Some(d);
                    held(&mut l.dues_held, d);
                }
                if let Some(b) = c.result_by_post {
                    l.result_by_post = b;
                    held(&mut l.result_by_post_held, b);
                }
            }
            _ => {}
        }
    }
}

/// The events a request adds, in order, and what the answer should say about it.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub events: Vec<Event>,
    pub notes: Vec<String>,
    /// The ids of its events that the payload did not date, dated by the request's arrival.
    pub dated_on_arrival: Vec<Uuid>,
}

/// The order of events at one instant.
fn rank(d: &EventData) -> u8 {
    match d {
        EventData::Received(_) => 0,
        EventData::Transferred(_) => 1,
        EventData::DueExtended(_) => 2,
        EventData::Corrected(_) => 3,
        EventData::SupplementRequested(_) => 4,
        EventData::SupplementReceived(_) => 5,
        EventData::Resolved(_) => 6,
        EventData::Returned(_) => 7,
        _ => 8,
    }
}

/// The event's content id: the same fact of the same dossier always has the same id.
pub fn content_id(dossier: &DossierCode, at: &Instant, data: &EventData) -> Uuid {
    let json = serde_json::to_string(data).expect("event data serializes");
    let name = format!(
        "{dossier}\n{}\n{}\n{json}",
        data.event_type(),
        at.timestamp()
    );
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// One new fact of a plan, and the field of the payload it comes from.
struct Fact {
    at: Instant,
    agency: AgencyCode,
    data: EventData,
    field: String,
    /// Dated by the request's arrival, the payload giving no date.
    on_arrival: bool,
}

/// Builds the plan's events: sorted by time (then by [`rank`]), given content ids, and checked to come no
/// earlier than the log's last event.
struct Builder<'a> {
    dossier: &'a DossierCode,
    facts: Vec<Fact>,
    problems: Vec<Problem>,
    notes: Vec<String>,
}

impl<'a> Builder<'a> {
    fn new(dossier: &'a DossierCode) -> Builder<'a> {
        Builder {
            dossier,
            facts: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A new fact, from `field` of the payload.
    fn add(&mut self, at: Instant, agency: &AgencyCode, data: EventData, field: impl Into<String>) {
        self.facts.push(Fact {
            at,
            agency: agency.clone(),
            data,
            field: field.into(),
            on_arrival: false,
        });
    }

    /// A new fact the payload ends without dating (`field`, missing), dated by the request's arrival; without an
    /// arrival (an offline import) it cannot be dated, and `field` is the problem.
    fn add_on_arrival(
        &mut self,
        arrived_at: Option<Instant>,
        agency: &AgencyCode,
        data: EventData,
        field: &str,
        path: &str,
        what: &str,
    ) {
        let Some(at) = arrived_at else {
            self.problems.push(Problem::invalid(
                format!("{path}.{field}"),
                format!("missing: {what} needs its time, and an import has no arrival time to date it by"),
            ));
            return;
        };
        self.notes.push(format!(
            "{field} missing: {} dated by this request's arrival, {at} (its source ends in :arrival)",
            data.event_type()
        ));
        self.add(at, agency, data, field);
        self.facts.last_mut().expect("just added").on_arrival = true;
    }

    fn conflict(&mut self, field: impl Into<String>, message: String) {
        self.problems.push(Problem::conflict(field, message));
    }

    fn finish(mut self, path: &str, known: &Known) -> Result<Plan, Vec<Problem>> {
        // What the log's rules compare: nothing before the dossier's latest event (the log's, or for a new
        // dossier its acceptance). The sync dates to the second; a fact in the very second of a later event (a
        // native one may carry a fraction) is taken as at that event.
        let floor = match &known.life {
            Some(l) => Some((l.last_at, "the log's last event of this dossier")),
            None => self
                .facts
                .iter()
                .find(|f| matches!(f.data, EventData::Received(_)))
                .map(|f| (f.at, "its acceptance (NgayTiepNhan)")),
        };
        if let Some((floor, what)) = floor {
            for f in &mut self.facts {
                if f.at.timestamp() == floor.timestamp() && f.at < floor {
                    f.at = floor;
                }
                if f.at < floor {
                    let message = format!(
                        "{} at {} would come before {what}, at {floor}; the log cannot insert before it",
                        f.data.event_type(),
                        f.at,
                    );
                    // Within one payload that is bad input; against the log it came too late.
                    self.problems.push(if known.life.is_some() {
                        Problem::out_of_order(format!("{path}.{}", f.field), message)
                    } else {
                        Problem::invalid(format!("{path}.{}", f.field), message)
                    });
                }
            }
        }
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        self.facts
            .sort_by(|a, b| (a.at, rank(&a.data)).cmp(&(b.at, rank(&b.data))));
        let mut dated_on_arrival = Vec::new();
        let events = self
            .facts
            .into_iter()
            .map(|f| {
                let id = content_id(self.dossier, &f.at, &f.data);
                if f.on_arrival {
                    dated_on_arrival.push(id);
                }
                Event {
                    id,
                    dossier: Some(self.dossier.clone()),
                    agency: Some(f.agency),
                    occurred_at: f.at,
                    data: f.data,
                }
            })
            .collect();
        Ok(Plan {
            events,
            notes: self.notes,
            dated_on_arrival,
        })
    }
}

fn text(s: &str) -> Text {
    Text::parse(s).expect("the adapter's own texts are valid")
}

/// The due date the payload means in casetrail's terms: `NgayHenTra`, less the shift the portal's own supplement
/// rounds gave it (`NgayHenTraMoi` of the last round − `NgayHenTraTruoc` of the first), since casetrail stops the
/// clock for each round itself.
fn payload_due(u: &Upsert) -> Option<Instant> {
    let due = u.due_at?;
    let shift = match (
        u.rounds.first().and_then(|r| r.due_before),
        u.rounds.iter().rev().find_map(|r| r.due_after),
    ) {
        (Some(before), Some(after)) if after > before => after - before,
        _ => chrono::Duration::zero(),
    };
    Some(due - shift)
}

/// How long the dossier has waited for documents in its finished rounds (the payload's, else the log's).
fn paused(u: &Upsert, life: Option<&Life>) -> chrono::Duration {
    let rounds: Vec<(Instant, Option<Instant>)> = if u.rounds.is_empty() {
        life.map_or_else(Vec::new, |l| l.rounds.clone())
    } else {
        u.rounds
            .iter()
            .map(|r| (r.requested_at, r.received_at))
            .collect()
    };
    rounds
        .iter()
        .filter_map(|(asked, got)| got.map(|g| g - *asked))
        .fold(chrono::Duration::zero(), |a, b| a + b)
}

/// What the adapter asks of the catalogue.
pub trait Catalogue {
    /// The online level at which `agency` offers `procedure` on `day`.
    fn offered(
        &self,
        agency: &AgencyCode,
        procedure: &ProcedureCode,
        day: chrono::NaiveDate,
    ) -> Option<OnlineLevel>;
    /// Whether `agency` is registered.
    fn registered(&self, agency: &AgencyCode) -> bool;
}

/// A unit as an agency: a listed one, or an unlisted one the catalogue has registered (`agency-if-registered`).
fn unit_agency(unit: Option<&Unit>, catalogue: &dyn Catalogue) -> Option<AgencyCode> {
    match unit? {
        Unit::Agency(a) => Some(a.clone()),
        Unit::IfRegistered(a) if catalogue.registered(a) => Some(a.clone()),
        _ => None,
    }
}

fn corrected(reason: &str) -> Corrected {
    Corrected {
        reason: text(reason),
        procedure: None,
        channel: None,
        online_level: None,
        received_at: None,
        due_at: None,
        result_by_post: None,
    }
}

/// The events a `DongBoHoSoMC` dossier adds to what the log knows. `path` is the item's JSON path (`data[0]`),
/// for problems. A field the payload leaves out of an update leaves the log's value as it is.
pub fn upsert(
    u: &Upsert,
    known: &Known,
    catalogue: &dyn Catalogue,
    path: &str,
) -> Result<Plan, Vec<Problem>> {
    let mut b = Builder::new(&u.dossier);
    b.notes.extend(u.notes.iter().cloned());
    let field = |name: &str| format!("{path}.{name}");
    let status = format!("TrangThaiHoSo {} ({})", u.status_code, u.status.as_str());
    match (u.status, &known.life) {
        (Meaning::Submitted, None) => {
            b.notes.push(format!(
                "{status}: not accepted yet; nothing to record until it is"
            ));
            return b.finish(path, known);
        }
        (Meaning::Submitted, Some(l)) => {
            b.notes.push(format!(
                "{status} is behind the log (which has it accepted at {}): an earlier state, nothing new",
                l.received_at
            ));
            return b.finish(path, known);
        }
        (Meaning::Refused, None) => {
            b.notes.push(format!("{status}: refused at intake, so never a dossier the indicators count; nothing recorded"));
            return b.finish(path, known);
        }
        (Meaning::Refused, Some(l)) => {
            return Err(vec![Problem::conflict(
                field("TrangThaiHoSo"),
                format!("{status}, but the log has this dossier accepted at {}; the events contract cannot take back an intake (a withdrawal, status 7, can end it)", l.received_at),
            )]);
        }
        _ => {}
    }
    let Some(agency) = u.agency.clone() else {
        return Err(vec![Problem::invalid(
            "madonvi",
            "missing: which agency received the dossier?",
        )]);
    };
    let life = known.life.as_ref();
    // An update may leave out what has not changed; a new dossier must say it.
    let received_at = u.received_at.or(life.map(|l| l.received_at));
    let procedure = u.procedure.clone().or(life.map(|l| l.procedure.clone()));
    let mut missing = Vec::new();
    if received_at.is_none() {
        missing.push(Problem::invalid(
            field("NgayTiepNhan"),
            format!("missing: {status} needs the acceptance time"),
        ));
    }
    if procedure.is_none() {
        missing.push(Problem::invalid(
            field("MaTTHC"),
            "missing: which procedure?",
        ));
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    let (received_at, procedure) = (received_at.expect("checked"), procedure.expect("checked"));
    // The channel: the payload's, the log's, the site's default for the procedure; else the counter, as the
    // portal counts a dossier that names none.
    let said = u.channel.or(life.map(|l| l.channel));
    let mut channel = said.or(u.default_channel).unwrap_or(Channel::Counter);
    if said.is_none() && u.default_channel.is_none() {
        b.notes.push(format!("KenhThucHien missing and the site's mapping gives procedure {procedure} no default channel: counted as received at the counter"));
    }
    let level = match channel {
        Channel::Online => {
            let kept = life
                .filter(|l| l.channel == Channel::Online)
                .and_then(|l| l.level);
            let day = domain::calendar::vietnam_date(&received_at);
            match u.level.or(kept).or_else(|| catalogue.offered(&agency, &procedure, day)) {
                Some(l) => Some(l),
                None if said.is_none() => {
                    // Online only by the site's default, at no level anyone knows: the counter, said.
                    b.notes.push(format!("KenhThucHien missing: the site's default is online, but neither MucDo nor the catalogue gives procedure {procedure} an online level at agency {agency}; counted as received at the counter (register the agency's online offer of it)"));
                    channel = Channel::Counter;
                    None
                }
                None => {
                    return Err(vec![Problem::invalid(
                        field("MucDo"),
                        format!("missing: a dossier received online needs its online level, and the catalogue has no online offer of procedure {procedure} at agency {agency}"),
                    )])
                }
            }
        }
        _ => None,
    };
    let due = payload_due(u);

    // The intake: new, or compared with the log's.
    // The correction of intake facts, written once the due date is known (it may carry it too).
    let mut intake: Option<(Corrected, Vec<String>)> = None;
    let (mut holder, mut agencies, base_at, closed, resolved_before, current_due, dues_held) =
        match life {
            None => {
                let original = u.rounds.first().and_then(|r| r.due_before).or(due);
                b.add(
                    received_at,
                    &agency,
                    EventData::Received(Received {
                        procedure: procedure.clone(),
                        channel,
                        online_level: level,
                        due_at: original,
                        result_by_post: Some(u.result_by_post.unwrap_or(false)),
                        applicant: u.applicant,
                    }),
                    "NgayTiepNhan",
                );
                let held: Vec<Instant> = original.into_iter().collect();
                (
                    agency.clone(),
                    vec![agency.clone()],
                    received_at,
                    false,
                    false,
                    original,
                    held,
                )
            }
            Some(l) => {
                if l.agency != agency {
                    b.conflict(
                    "madonvi",
                    format!("the log has dossier {} received by agency {}, not {agency}; the receiving agency cannot be corrected", u.dossier, l.agency),
                );
                }
                let mut c = corrected("DVCQG sync");
                let mut changed = Vec::new();
                if !l.procedures_held.contains(&procedure) {
                    c.procedure = Some(procedure.clone());
                    changed.push(format!("MaTTHC {} → {procedure}", l.procedure));
                }
                if !l.channels_held.contains(&(channel, level)) {
                    c.channel = Some(channel);
                    c.online_level = level;
                    changed.push(format!("channel {} → {channel}", l.channel));
                }
                // The applicant choosing (or no longer choosing) the postal return after intake; a closed dossier's
                // return says how the result went.
                if let Some(b) = u.result_by_post {
                    if !l.result_by_post_held.contains(&b) && !l.is_closed() {
                        c.result_by_post = Some(b);
                        let said = if b { "by post" } else { "not by post" };
                        changed.push(format!("HinhThuc: the result {said}"));
                    }
                }
                if !l.received_held.iter().any(|r| same(r, &received_at)) {
                    c.received_at = Some(received_at);
                    changed.push(format!("NgayTiepNhan {} → {received_at}", l.received_at));
                }
                // A later acceptance time is corrected no earlier than itself (the log's rule 6), and what this
                // payload adds without a date of its own comes with it, not before it.
                let at = l.last_at.max(c.received_at.unwrap_or(l.last_at));
                if !changed.is_empty() {
                    intake = Some((c, changed));
                }
                (
                    l.holder.clone(),
                    l.agencies.clone(),
                    at,
                    l.is_closed(),
                    l.resolved.is_some(),
                    l.due,
                    l.dues_held.clone(),
                )
            }
        };

    // The unit processing it now. A unit the dossier has been at before is an earlier payload's (a return to
    // it takes a step, which is dated).
    if let Some(unit) = unit_agency(u.unit.as_ref(), catalogue) {
        if !agencies.contains(&unit) && !closed {
            b.add(
                base_at,
                &holder,
                EventData::Transferred(Transferred {
                    to_agency: unit.clone(),
                    note: None,
                }),
                "DonViXuLy",
            );
            agencies.push(unit.clone());
            holder = unit;
        }
    }

    // The due date: an apology's new date on a dossier still in processing, else a corrected one. When the
    // acceptance time is corrected too, the due date moves with it: one correction of both.
    let moved_intake = intake
        .as_ref()
        .is_some_and(|(c, _)| c.received_at.is_some());
    if let Some(d) = due {
        if !dues_held.iter().any(|h| same(h, &d)) {
            let rounds_unexplained =
                !u.rounds.is_empty() || life.is_some_and(|l| !l.rounds.is_empty());
            let explained = u.rounds.first().and_then(|r| r.due_before).is_some()
                && u.rounds.iter().any(|r| r.due_after.is_some());
            match (current_due, &mut intake) {
                (_, Some((c, changed))) if moved_intake => {
                    c.due_at = Some(d);
                    changed.push(format!("NgayHenTra → {d}"));
                }
                (Some(cur), _)
                    if d > cur
                        && !closed
                        && !resolved_before
                        && rounds_unexplained
                        && !explained
                        && u.due_on_resume == DueOnResume::Recomputed =>
                {
                    // The site's system moves NgayHenTra itself when a dossier resumes; casetrail stops the clock
                    // for each round itself, so a move within the rounds' pause (and the weekends and holidays the
                    // system skips, three days) is already counted. A move beyond it is an apology, less the pause.
                    let pause = paused(u, life);
                    if d - cur <= pause + chrono::Duration::days(3) {
                        b.notes.push(format!("NgayHenTra {d} is the due date recomputed by the site's system after its supplement rounds (due_on_resume = \"recomputed\"); casetrail stops the clock for the rounds itself, so the due date stays {cur}"));
                    } else {
                        let new_due_at = d - pause;
                        b.notes.push(format!("NgayHenTra {d} is later than the due date recomputed for the rounds' pause: an apology's new date, {new_due_at} without the pause"));
                        b.add(
                            base_at,
                            &holder,
                            EventData::DueExtended(DueExtended {
                                new_due_at,
                                reason: text(
                                    "DVCQG sync: NgayHenTra moved later (phiếu xin lỗi và hẹn lại)",
                                ),
                            }),
                            "NgayHenTra",
                        )
                    }
                }
                (Some(cur), _) if d > cur && !closed && !resolved_before => {
                    if rounds_unexplained && !explained {
                        b.notes.push("NgayHenTra moved later on a dossier with supplement rounds, and the rounds do not say by how much the portal moved it (NgayHenTraTruoc, NgayHenTraMoi): taken as an apology's new date; casetrail stops the clock for each round itself, so a site that also moves NgayHenTra for them should send both".into());
                    }
                    b.add(
                        base_at,
                        &holder,
                        EventData::DueExtended(DueExtended {
                            new_due_at: d,
                            reason: text(
                                "DVCQG sync: NgayHenTra moved later (phiếu xin lỗi và hẹn lại)",
                            ),
                        }),
                        "NgayHenTra",
                    )
                }
                _ => {
                    let mut c = corrected("DVCQG sync: NgayHenTra corrected");
                    c.due_at = Some(d);
                    b.add(base_at, &agency, EventData::Corrected(c), "NgayHenTra");
                }
            }
        }
    }
    if let Some((mut c, changed)) = intake {
        c.reason = text(&format!("DVCQG sync: {}", changed.join("; ")));
        let by = life.map_or(&agency, |l| &l.agency);
        b.add(base_at, by, EventData::Corrected(c), "NgayTiepNhan");
    }

    // Supplement rounds, matched in order with the log's.
    let log_rounds: &[(Instant, Option<Instant>)] = life.map_or(&[], |l| &l.rounds);
    for (i, r) in u.rounds.iter().enumerate() {
        let rf = |name: &str| format!("DanhSachHoSoBoSung[{}].{name}", r.index);
        match log_rounds.get(i) {
            Some((asked, got)) => {
                if !same(asked, &r.requested_at) {
                    b.conflict(
                        field(&rf("NgayBoSung")),
                        format!("round {} of documents was asked for at {asked} in the log, at {} here; rounds cannot be corrected", i + 1, r.requested_at),
                    );
                }
                match (got, r.received_at) {
                    (Some(g), Some(p)) if !same(g, &p) => b.conflict(
                        field(&rf("NgayTiepNhanBoSung")),
                        format!("round {} of documents arrived at {g} in the log, at {p} here; rounds cannot be corrected", i + 1),
                    ),
                    (None, Some(p)) => b.add(p, &holder, EventData::SupplementReceived(SupplementReceived {}), rf("NgayTiepNhanBoSung")),
                    _ => {}
                }
            }
            None => {
                b.add(
                    r.requested_at,
                    &holder,
                    EventData::SupplementRequested(SupplementRequested { note: None }),
                    rf("NgayBoSung"),
                );
                if let Some(p) = r.received_at {
                    b.add(
                        p,
                        &holder,
                        EventData::SupplementReceived(SupplementReceived {}),
                        rf("NgayTiepNhanBoSung"),
                    );
                }
            }
        }
    }
    if u.status == Meaning::SupplementRequested && u.rounds.is_empty() && log_rounds.is_empty() {
        b.notes.push(format!("{status} without DanhSachHoSoBoSung: no round of documents to record (its dates are in DanhSachHoSoBoSung, or in a CapNhatTienDoHoSoMC step)"));
    }

    // The end: a resolution, a return, a withdrawal.
    let (resolved, returned, withdrawn) = life.map_or((None, None, None), |l| {
        (l.resolved, l.returned, l.withdrawn)
    });
    let resolution = match u.status {
        Meaning::Decided | Meaning::Returned => Some(Outcome::Approved),
        Meaning::Stopped => Some(Outcome::Rejected),
        _ => None,
    };
    if let Some(outcome) = resolution {
        match (u.ended_at, resolved) {
            // A return without the end of processing: its time is also the end (the events contract, rule 3).
            (None, _) if u.status == Meaning::Returned => {}
            (None, Some((at, was))) => {
                if was != outcome {
                    b.conflict(
                        field("TrangThaiHoSo"),
                        format!("{status}, but the log has the dossier resolved {} at {at}; an outcome cannot be corrected", was.as_str()),
                    );
                }
            }
            (None, None) => b.add_on_arrival(
                u.arrived_at,
                &holder,
                EventData::Resolved(Resolved { outcome }),
                "NgayKetThucXuLy",
                path,
                &format!("{status} ends processing, so it"),
            ),
            (Some(end), None) => b.add(
                end,
                &holder,
                EventData::Resolved(Resolved { outcome }),
                "NgayKetThucXuLy",
            ),
            (Some(end), Some((at, was))) => {
                if !same(&at, &end) {
                    b.conflict(
                        field("NgayKetThucXuLy"),
                        format!("the log has processing ended at {at}, this says {end}; the end of processing cannot be corrected"),
                    );
                } else if was != outcome && u.status != Meaning::Returned {
                    b.conflict(
                        field("TrangThaiHoSo"),
                        format!("{status}, but the log has the dossier resolved {} at {at}; an outcome cannot be corrected", was.as_str()),
                    );
                }
            }
        }
    }
    if u.status == Meaning::Returned {
        // Not said: by post when the applicant asked for it, else at the counter.
        let by_post = u
            .result_by_post
            .or(life.map(|l| l.result_by_post))
            .unwrap_or(false);
        let channel = u.return_channel.unwrap_or(if by_post {
            Channel::Postal
        } else {
            Channel::Counter
        });
        let returning = EventData::Returned(Returned { channel });
        match (u.returned_at, returned) {
            (None, None) => b.add_on_arrival(
                u.arrived_at,
                &agency,
                returning,
                "NgayTra",
                path,
                &format!("{status}: the hand-over of the result"),
            ),
            (None, Some((was_at, was))) => {
                if u.return_channel.is_some_and(|c| c != was) {
                    b.conflict(
                        field("HinhThucTra"),
                        format!("the log has the result returned at {was_at} ({was}), this says {channel}; a return cannot be corrected"),
                    );
                }
            }
            (Some(at), None) => b.add(at, &agency, returning, "NgayTra"),
            (Some(at), Some((was_at, was))) => {
                if !same(&at, &was_at) || u.return_channel.is_some_and(|c| c != was) {
                    let said = u
                        .return_channel
                        .map_or(String::new(), |c| format!(" ({c})"));
                    b.conflict(
                        field("NgayTra"),
                        format!("the log has the result returned at {was_at} ({was}), this says {at}{said}; a return cannot be corrected"),
                    );
                }
            }
        }
    }
    if u.status == Meaning::Withdrawn {
        match (u.ended_at.or(u.returned_at), withdrawn) {
            (None, None) => b.add_on_arrival(
                u.arrived_at,
                &holder,
                EventData::Withdrawn(Withdrawn { reason: None }),
                "NgayKetThucXuLy",
                path,
                &format!("{status}: the withdrawal"),
            ),
            (None, Some(_)) => {}
            (Some(at), None) => b.add(at, &holder, EventData::Withdrawn(Withdrawn { reason: None }), "NgayKetThucXuLy"),
            (Some(at), Some(was)) if !same(&at, &was) => b.conflict(
                field("NgayKetThucXuLy"),
                format!("the log has the dossier withdrawn at {was}, this says {at}; a withdrawal cannot be corrected"),
            ),
            _ => {}
        }
    }
    if let (Some(l), true) = (life, b.facts.is_empty() && b.problems.is_empty()) {
        if u.status < l.meaning() && !matches!(u.status, Meaning::FeesRequested) {
            b.notes.push(format!(
                "{status} is behind the log (which has it {}): an earlier state, nothing new",
                l.meaning().as_str()
            ));
        }
    }
    if u.status == Meaning::FeesRequested {
        b.notes.push(format!(
            "{status}: casetrail has no event for fees; processing goes on"
        ));
    }
    b.finish(path, known)
}

/// Who held the dossier at `t`: the receiving agency, or the last agency it was transferred to by then.
fn holder_at(l: &Life, t: &Instant) -> AgencyCode {
    l.transfers
        .iter()
        .filter(|(at, _)| at.timestamp() <= t.timestamp())
        .next_back()
        .map_or_else(|| l.agency.clone(), |(_, to)| to.clone())
}

/// The events a `CapNhatTienDoHoSoMC` step adds: a transfer to the unit it names, documents asked for or back.
/// A step asserts no end (a resolution, a return, a withdrawal): its status is a progress entry, noted, and the
/// end is taken from the next `DongBoHoSoMC`, whose dossier state it is. A step dated before the log's last event of the dossier is an earlier one: it writes nothing
/// when the log has what it says (and the note says what the log has), and is refused when it says something the
/// log does not have, which cannot be put in before its last event (`OutOfOrder`), or cannot take any more.
pub fn step(
    s: &Step,
    known: &Known,
    catalogue: &dyn Catalogue,
    path: &str,
) -> Result<Plan, Vec<Problem>> {
    let Some(l) = &known.life else {
        return Err(vec![Problem {
            field: format!("{path}.MaHoSo"),
            message: format!("the log has no dossier {} visible to this credential yet; send its DongBoHoSoMC first, then this step again", s.dossier),
            kind: ProblemKind::NotFound,
        }]);
    };
    let mut b = Builder::new(&s.dossier);
    let status = format!("TrangThai {} ({})", s.status_code, s.status.as_str());
    let earlier = s.at < l.last_at && !same(&s.at, &l.last_at);
    // What the log has of what this step says, for the note of an earlier step that writes nothing.
    let mut had: Vec<String> = Vec::new();
    let mut holder = l.holder.clone();
    if let Some(unit) = unit_agency(s.unit.as_ref(), catalogue) {
        if holder_at(l, &s.at) == unit {
            had.push(format!("{unit} held the dossier then"));
        } else if earlier && l.agencies.contains(&unit) {
            // A unit a payload's DonViXuLy moved it to, dated by the payload, not by this step.
            had.push(format!("the dossier has been at {unit}"));
        } else if unit != holder {
            b.add(
                s.at,
                &holder,
                EventData::Transferred(Transferred {
                    to_agency: unit.clone(),
                    note: None,
                }),
                "PhongBanXuLy",
            );
            holder = unit;
        }
    }
    match s.status {
        Meaning::SupplementRequested => {
            // The round this step is of: one asked for at its time, or one that was waiting for documents then
            // (a later step of the same round, or an earlier one sent again).
            let waiting = l.rounds.iter().find(|(asked, got)| {
                asked.timestamp() <= s.at.timestamp()
                    && got.is_none_or(|g| g.timestamp() >= s.at.timestamp())
            });
            match waiting {
                Some((asked, _)) => had.push(format!("documents were asked for at {asked}")),
                None => b.add(s.at, &holder, EventData::SupplementRequested(SupplementRequested { note: None }), "ThoiDiemXuLy"),
            }
        }
        Meaning::Processing | Meaning::Accepted | Meaning::FeesRequested => {
            // Back in processing after the documents were asked for: they arrived (an earlier step, before the
            // request, says nothing of them).
            if l.pending()
                .is_some_and(|since| s.at.timestamp() >= since.timestamp()) {
                b.add(s.at, &holder, EventData::SupplementReceived(SupplementReceived {}), "ThoiDiemXuLy");
            }
        }
        // A step's status is an entry of the progress log, not the dossier's state: systems send "9" when the
        // applicant registers for a postal return, or as a placeholder at intake. Only the upsert's
        // TrangThaiHoSo ends a dossier.
        Meaning::Decided | Meaning::Stopped | Meaning::Withdrawn => b.notes.push(format!(
            "{status}: a step's status is a progress entry; the end is recorded from DongBoHoSoMC (TrangThaiHoSo, NgayKetThucXuLy)"
        )),
        Meaning::Returned => b.notes.push(format!(
            "{status}: the return is recorded from DongBoHoSoMC (NgayTra, HinhThuc), which says by which channel"
        )),
        Meaning::Submitted | Meaning::Refused => b.notes.push(format!("{status}: nothing to record for a dossier the log has accepted")),
    }
    if earlier && b.facts.is_empty() && b.problems.is_empty() {
        let what = if had.is_empty() {
            format!("{status} records nothing by itself")
        } else {
            format!("the log has what it says: {}", had.join("; "))
        };
        b.notes.push(format!(
            "the step at {} is earlier than the log's last event of this dossier, at {}; {what}",
            s.at, l.last_at
        ));
    }
    b.finish(path, known)
}
