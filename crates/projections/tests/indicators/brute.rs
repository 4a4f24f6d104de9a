//! An independent recount of the indicator tables, written from `indicators.md` without the engine's machinery
//! (no period indices, no differences, no timers, no eviction): for one period, look at every dossier's events
//! and ask each column's question directly. Slow and plain on purpose.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::calendar::{vietnam_date, Cut};
use domain::event::{AgencyLevel, Channel, EventData, OfferLevel, OnlineLevel, TargetScope};
use domain::{Period, StoredEvent};
use projections::indicators::Counts;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Default, Clone)]
struct Dossier {
    agency: String,
    holder: String,
    procedure: String,
    channel: Option<Channel>,
    level: Option<OnlineLevel>,
    received: Option<DateTime<Utc>>,
    due: Option<DateTime<Utc>>,
    requests: Vec<DateTime<Utc>>,
    answers: Vec<DateTime<Utc>>,
    transfers: Vec<(DateTime<Utc>, String, String)>,
    resolved: Option<DateTime<Utc>>,
    returned: Option<(DateTime<Utc>, Channel)>,
    withdrawn: Option<DateTime<Utc>>,
}

impl Dossier {
    fn end(&self) -> Option<DateTime<Utc>> {
        self.resolved
            .or(self.returned.map(|r| r.0))
            .or(self.withdrawn)
    }

    /// The pauses: each request with the answer that followed it, if any.
    fn pauses(&self) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
        self.requests
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, self.answers.get(i).copied()))
            .collect()
    }

    fn late_when_open_at(&self, t: DateTime<Utc>) -> bool {
        if self.requests.len() > 1 && self.requests[1] <= t {
            return true;
        }
        let Some(due) = self.due else { return false };
        let pauses = self.pauses();
        let mut judged = t;
        for (since, until) in &pauses {
            if *since <= t && until.is_none_or(|u| u > t) {
                judged = *since;
            }
        }
        let paused: i64 = pauses
            .iter()
            .filter_map(|(s, u)| u.filter(|u| *u <= judged).map(|u| (u - *s).num_seconds()))
            .sum();
        vietnam_date(&judged) > vietnam_date(&(due + Duration::seconds(paused)))
    }

    fn open_at(&self, t: DateTime<Utc>) -> bool {
        self.received.is_some_and(|r| r <= t) && self.end().is_none_or(|e| e > t)
    }
}

/// (effective_from, position, level, postal receipt, postal return)
type OfferFact = (NaiveDate, u64, OfferLevel, bool, bool);

pub struct World {
    dossiers: BTreeMap<String, Dossier>,
    agencies: BTreeMap<String, (AgencyLevel, Option<String>)>,
    /// (agency, procedure) → (effective_from, position, level, receive, return)
    offers: BTreeMap<(String, String), Vec<OfferFact>>,
    targets: Vec<(TargetScope, Period, u64, f64, f64)>,
    horizon: DateTime<Utc>,
}

impl World {
    /// Everything the events up to `position` say; open dossiers are judged no later than `horizon` (or the
    /// latest instant the events name).
    pub fn new(events: &[StoredEvent], position: u64, horizon: Option<DateTime<Utc>>) -> World {
        let mut w = World {
            dossiers: BTreeMap::new(),
            agencies: BTreeMap::new(),
            offers: BTreeMap::new(),
            targets: Vec::new(),
            horizon: DateTime::<Utc>::MIN_UTC,
        };
        for e in events.iter().filter(|e| e.position <= position) {
            let at = e.event.occurred_at.with_timezone(&Utc);
            w.horizon = w.horizon.max(at).max(e.recorded_at);
            let agency = e
                .event
                .agency
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let key = e
                .event
                .dossier
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default();
            match &e.event.data {
                EventData::AgencyRegistered(a) => {
                    w.agencies
                        .insert(agency, (a.level, a.parent.as_ref().map(|p| p.to_string())));
                }
                EventData::ProcedureOffered(p) => w
                    .offers
                    .entry((agency, p.procedure.to_string()))
                    .or_default()
                    .push((
                        p.effective_from,
                        e.position,
                        p.online_level,
                        p.postal_receive,
                        p.postal_return,
                    )),
                EventData::TargetSet(t) => w.targets.push((
                    t.agency.clone(),
                    t.from_period,
                    e.position,
                    t.online_rate_min,
                    t.postal_rate_min,
                )),
                EventData::Received(r) => {
                    w.dossiers.insert(
                        key,
                        Dossier {
                            holder: agency.clone(),
                            agency,
                            procedure: r.procedure.to_string(),
                            channel: Some(r.channel),
                            level: r.online_level,
                            received: Some(at),
                            due: r.due_at.map(|d| d.with_timezone(&Utc)),
                            ..Dossier::default()
                        },
                    );
                }
                data => {
                    let d = w
                        .dossiers
                        .get_mut(&key)
                        .expect("the log holds no event before its receipt");
                    match data {
                        EventData::Transferred(t) => {
                            d.transfers
                                .push((at, d.holder.clone(), t.to_agency.to_string()));
                            d.holder = t.to_agency.to_string();
                        }
                        EventData::SupplementRequested(_) => d.requests.push(at),
                        EventData::SupplementReceived(_) => d.answers.push(at),
                        EventData::DueExtended(x) => d.due = Some(x.new_due_at.with_timezone(&Utc)),
                        EventData::Resolved(_) => d.resolved = Some(at),
                        EventData::Returned(r) => d.returned = Some((at, r.channel)),
                        EventData::Withdrawn(_) => d.withdrawn = Some(at),
                        EventData::Corrected(c) => {
                            if let Some(p) = &c.procedure {
                                d.procedure = p.to_string();
                            }
                            if let Some(ch) = c.channel {
                                d.channel = Some(ch);
                                if ch != Channel::Online {
                                    d.level = None;
                                }
                            }
                            if c.online_level.is_some() {
                                d.level = c.online_level;
                            }
                            if let Some(r) = c.received_at {
                                d.received = Some(r.with_timezone(&Utc));
                            }
                            if let Some(x) = c.due_at {
                                d.due = Some(x.with_timezone(&Utc));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        if let Some(h) = horizon {
            w.horizon = w.horizon.max(h);
        }
        w
    }

    /// Every agency registered or named by a dossier event.
    pub fn agency_codes(&self) -> BTreeSet<String> {
        let mut all: BTreeSet<String> = self.agencies.keys().cloned().collect();
        for d in self.dossiers.values() {
            all.insert(d.agency.clone());
            for (_, from, to) in &d.transfers {
                all.insert(from.clone());
                all.insert(to.clone());
            }
        }
        all
    }

    pub fn counts(&self, agency: &str, period: Period, cut: Cut) -> Counts {
        let (start, end) = (period.start(cut), period.end(cut));
        let within = |t: DateTime<Utc>| start <= t && t < end;
        let last_second = end - Duration::seconds(1);
        let judged = last_second.min(self.horizon);
        let before_start = (start - Duration::seconds(1)).min(self.horizon);
        let mut c = Counts::default();
        let mut used: HashMap<(&str, u8), bool> = HashMap::new();
        for d in self.dossiers.values() {
            for (at, from, to) in &d.transfers {
                if within(*at) && from == agency {
                    c.transferred_out += 1;
                }
                if within(*at) && to == agency {
                    c.transferred_in += 1;
                }
            }
            if d.agency != agency {
                continue;
            }
            let received = d.received.expect("received");
            let by_post = matches!(d.returned, Some((_, Channel::Postal)));
            if within(received) {
                c.received += 1;
                match d.channel.expect("a channel") {
                    Channel::Counter => c.received_counter += 1,
                    Channel::Online => {
                        c.received_online += 1;
                        used.insert((&d.procedure, 0), true);
                    }
                    Channel::Postal => {
                        c.received_postal += 1;
                        c.postal_received += 1;
                        used.insert((&d.procedure, 1), true);
                    }
                }
                if d.channel == Some(Channel::Online) {
                    match d.level {
                        Some(OnlineLevel::Level3) => c.level3 += 1,
                        Some(OnlineLevel::Level4) => c.level4 += 1,
                        Some(OnlineLevel::Partial) => c.partial += 1,
                        Some(OnlineLevel::Full) => c.full += 1,
                        None => {}
                    }
                }
                if d.channel == Some(Channel::Postal) || by_post {
                    c.postal_dossiers += 1;
                }
            }
            if let Some((at, ch)) = d.returned.filter(|(at, _)| within(*at)) {
                let _ = at;
                c.returned += 1;
                match ch {
                    Channel::Counter => c.returned_counter += 1,
                    Channel::Online => c.returned_online += 1,
                    Channel::Postal => {
                        c.returned_postal += 1;
                        c.postal_returned += 1;
                        used.insert((&d.procedure, 2), true);
                    }
                }
            }
            match (d.withdrawn, d.end()) {
                (Some(w), end) => {
                    if within(w) {
                        c.withdrawn += 1;
                    }
                    // Counted apart in the period its processing ended: the resolution, if one came first.
                    if within(end.unwrap_or(w)) {
                        c.withdrawn_at_end += 1;
                    }
                }
                (None, Some(e)) => {
                    let paused: i64 = d
                        .pauses()
                        .iter()
                        .filter(|(s, _)| *s <= e)
                        .map(|(s, u)| (u.unwrap_or(e).min(e) - *s).num_seconds().max(0))
                        .sum();
                    // 0 early, 1 on time, 2 late.
                    let class = match d.due {
                        _ if d.requests.len() > 1 => 2,
                        None => 1,
                        Some(due) => {
                            let due = vietnam_date(&(due + Duration::seconds(paused)));
                            let day = vietnam_date(&e);
                            match day.cmp(&due) {
                                std::cmp::Ordering::Less => 0,
                                std::cmp::Ordering::Equal => 1,
                                std::cmp::Ordering::Greater => 2,
                            }
                        }
                    };
                    if within(e) {
                        *[
                            &mut c.resolved_early,
                            &mut c.resolved_on_time,
                            &mut c.resolved_late,
                        ][class] += 1;
                        if d.resolved.is_none() {
                            *[
                                &mut c.unresolved_early,
                                &mut c.unresolved_on_time,
                                &mut c.unresolved_late,
                            ][class] += 1;
                        }
                    }
                    // The due date, moved by the pauses up to the end, decides which period judges it.
                    if d.due
                        .is_some_and(|due| within(due + Duration::seconds(paused)))
                    {
                        if class == 2 {
                            c.due_missed += 1;
                        } else {
                            c.due_met += 1;
                        }
                    }
                }
                (None, None) => {
                    // Open: missed its due date once it is late as the log knows (the finished pauses move it).
                    let finished: i64 = d
                        .pauses()
                        .iter()
                        .filter_map(|(s, u)| u.map(|u| (u - *s).num_seconds()))
                        .sum();
                    if d.due
                        .is_some_and(|due| within(due + Duration::seconds(finished)))
                        && d.late_when_open_at(self.horizon)
                    {
                        c.due_missed += 1;
                    }
                }
            }
            if d.open_at(judged) {
                let late = d.late_when_open_at(judged);
                if late {
                    c.open_late += 1;
                } else {
                    c.open_in_time += 1;
                }
                let waiting = d
                    .pauses()
                    .iter()
                    .any(|(s, u)| *s <= judged && u.is_none_or(|u| u > judged));
                match (waiting, late) {
                    (true, true) => c.waiting_late += 1,
                    (true, false) => c.waiting_in_time += 1,
                    _ => {}
                }
            }
            if d.open_at(before_start) {
                c.carried_over += 1;
            }
        }
        // Coverage: the offers in force on the last day of the period.
        let last_day = vietnam_date(&last_second);
        for ((a, procedure), history) in &self.offers {
            if a != agency {
                continue;
            }
            let Some(&(_, _, level, receive, ret)) = history
                .iter()
                .filter(|o| o.0 <= last_day)
                .max_by_key(|o| (o.0, o.1))
            else {
                continue;
            };
            let was = |k: u8| used.get(&(procedure.as_str(), k)).copied().unwrap_or(false) as i64;
            c.procedures_offered += 1;
            if level != OfferLevel::None {
                c.procedures_online += 1;
                c.procedures_online_used += was(0);
            }
            if receive {
                c.procedures_postal_receive += 1;
                c.procedures_postal_receive_used += was(1);
            }
            if ret {
                c.procedures_postal_return += 1;
                c.procedures_postal_return_used += was(2);
            }
        }
        c
    }

    fn is_below(&self, root: &str, agency: &str) -> bool {
        let mut seen = Vec::new();
        let mut current = Some(agency.to_owned());
        while let Some(a) = current {
            if a == root {
                return true;
            }
            if seen.contains(&a) {
                return false;
            }
            seen.push(a.clone());
            current = self.agencies.get(&a).and_then(|(_, p)| p.clone());
        }
        false
    }

    fn target(&self, agency: Option<&str>, period: Period, cut: Cut) -> (f64, f64) {
        let start = period.start(cut);
        let pick = |own: bool| {
            self.targets
                .iter()
                .filter(|t| t.1.start(cut) <= start)
                .filter(|t| match (&t.0, agency) {
                    (TargetScope::All, _) => !own,
                    (TargetScope::Agency(a), Some(want)) => own && a.as_str() == want,
                    _ => false,
                })
                .max_by_key(|t| (t.1.start(cut), t.2))
                .map(|t| (t.3, t.4))
        };
        pick(true).or_else(|| pick(false)).unwrap_or((0.20, 0.10))
    }

    /// The rows of a grouping as (row name, counts, online target, postal target).
    pub fn rows(&self, group: &str, period: Period, cut: Cut) -> Vec<(String, Counts, f64, f64)> {
        let codes = self.agency_codes();
        let each: Vec<(String, Counts)> = codes
            .iter()
            .map(|a| (a.clone(), self.counts(a, period, cut)))
            .collect();
        let sum = |keep: &dyn Fn(&str) -> bool| {
            let mut total = Counts::default();
            for (a, c) in &each {
                if keep(a) {
                    total.add(c);
                }
            }
            total
        };
        let general = self.target(None, period, cut);
        match group {
            "agency" => each
                .iter()
                .map(|(a, c)| {
                    let t = self.target(Some(a), period, cut);
                    (a.clone(), *c, t.0, t.1)
                })
                .collect(),
            "subtree" => codes
                .iter()
                .map(|root| {
                    let t = self.target(Some(root), period, cut);
                    (root.clone(), sum(&|a| self.is_below(root, a)), t.0, t.1)
                })
                .collect(),
            "level" => {
                let level_of = |a: &str| self.agencies.get(a).map(|(l, _)| *l);
                [
                    Some(AgencyLevel::Province),
                    Some(AgencyLevel::Department),
                    Some(AgencyLevel::District),
                    Some(AgencyLevel::Commune),
                    None,
                ]
                .into_iter()
                .filter(|l| codes.iter().any(|a| level_of(a) == *l))
                .map(|l| {
                    let name = l.map_or("unregistered".to_owned(), |l| l.to_string());
                    (name, sum(&|a| level_of(a) == l), general.0, general.1)
                })
                .collect()
            }
            _ => vec![("province".to_owned(), sum(&|_| true), general.0, general.1)],
        }
    }
}
