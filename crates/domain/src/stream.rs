//! The rules a stream obeys (`events.md` §4), as one pure decision over (the stream's head, the event, now), and
//! the fold that applies an accepted event to the head. Deciding may refuse; applying cannot fail.

use crate::codes::{AgencyCode, DossierCode, ProcedureCode};
use crate::event::*;
use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a decision needs besides the head and the event: the server's clock and how far ahead of it a business
/// time may be.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub now: DateTime<Utc>,
    pub clock_skew: Duration,
}

/// The default tolerance for business times ahead of the server clock.
pub const DEFAULT_CLOCK_SKEW_SECS: i64 = 5 * 60;

/// Why an event may not be written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Rejection {
    /// The dossier's first event is not `dossier.received` (rule 1).
    DossierNotFound,
    /// A second `dossier.received` (rule 1).
    DossierExists,
    /// `expected_version` does not match the stream's last version.
    VersionConflict { expected: u64, current: u64 },
    /// The event breaks a stream rule; the message says which.
    InvalidTransition(String),
    /// An agency registered under a parent that is itself, or one of its own descendants: the path of the cycle.
    AgencyCycle(Vec<AgencyCode>),
    /// The event breaks a rule of its own, whatever the stream (`crate::rules`): every such field.
    Invalid(Vec<crate::rules::FieldProblem>),
}

impl Rejection {
    /// The stable code of `api.md`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::DossierNotFound => "dossier_not_found",
            Rejection::DossierExists => "dossier_exists",
            Rejection::VersionConflict { .. } => "version_conflict",
            Rejection::InvalidTransition(_) => "invalid_transition",
            Rejection::AgencyCycle(_) => "agency_cycle",
            Rejection::Invalid(_) => "validation_failed",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::DossierNotFound => {
                f.write_str("the dossier does not exist: its first event must be dossier.received")
            }
            Rejection::DossierExists => f.write_str("the dossier was already received"),
            Rejection::VersionConflict { expected, current } => {
                write!(
                    f,
                    "expected version {expected}, but the stream is at version {current}"
                )
            }
            Rejection::InvalidTransition(why) => f.write_str(why),
            Rejection::Invalid(problems) => {
                let each: Vec<String> = problems
                    .iter()
                    .map(|p| format!("{} {}", p.field, p.message))
                    .collect();
                f.write_str(&each.join("; "))
            }
            Rejection::AgencyCycle(path) => {
                let path: Vec<&str> = path.iter().map(|a| a.as_str()).collect();
                write!(
                    f,
                    "registering {} under {} would make a cycle in the agency tree: {}",
                    path[0],
                    path[1],
                    path.join(" → ")
                )
            }
        }
    }
}

/// Where a dossier stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted at the one-stop desk (DVCQG 2).
    Received,
    /// Handed to another agency or unit (DVCQG 4).
    Processing,
    /// Waiting for the applicant's documents (DVCQG 5).
    SupplementRequested,
    /// Decided, result ready (DVCQG 9).
    Resolved,
    /// Result handed over (DVCQG 10): closed.
    Returned,
    /// Withdrawn by the applicant (DVCQG 7): closed.
    Withdrawn,
}

/// Whether a dossier was, or is, on time (`indicators.md` §2; Decision 766 criterion 2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Timeliness {
    /// Finished on a date before the due date.
    Early,
    /// Finished on the due date.
    OnTime,
    /// Finished after the due date, or asked for documents more than once.
    Late,
    /// Still open, and its due date has not passed.
    OpenInTime,
    /// Still open past its due date (or asked for documents more than once).
    OpenLate,
}

/// The state of one dossier, folded from its events: what the decision reads and what a dossier query shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DossierState {
    pub dossier: DossierCode,
    /// The agency that received the dossier; intake and return facts count there.
    pub agency: AgencyCode,
    /// The agency holding it now.
    pub holder: AgencyCode,
    /// The receiving agency and every agency it was transferred to, in order of first arrival.
    pub agencies: Vec<AgencyCode>,
    pub procedure: ProcedureCode,
    pub channel: Channel,
    pub online_level: Option<OnlineLevel>,
    pub applicant: Option<Applicant>,
    pub result_by_post: bool,
    pub received_at: DateTime<FixedOffset>,
    pub due_at: Option<DateTime<FixedOffset>>,
    /// The latest `occurred_at` of any of its events: rule 2 keeps later events at or after it.
    pub last_occurred_at: DateTime<FixedOffset>,
    /// The `occurred_at` of its first event after the receipt: a corrected receipt time may not pass it.
    pub first_later_at: Option<DateTime<FixedOffset>>,
    pub supplement_requests: u32,
    pub supplement_pending_since: Option<DateTime<FixedOffset>>,
    /// Total length of finished supplement pauses.
    pub supplement_paused_secs: i64,
    pub transfers: u32,
    pub corrections: u32,
    pub resolved_at: Option<DateTime<FixedOffset>>,
    pub outcome: Option<Outcome>,
    pub returned_at: Option<DateTime<FixedOffset>>,
    pub return_channel: Option<Channel>,
    pub withdrawn_at: Option<DateTime<FixedOffset>>,
}

impl DossierState {
    pub fn is_closed(&self) -> bool {
        self.returned_at.is_some() || self.withdrawn_at.is_some()
    }

    pub fn status(&self) -> Status {
        if self.withdrawn_at.is_some() {
            Status::Withdrawn
        } else if self.returned_at.is_some() {
            Status::Returned
        } else if self.resolved_at.is_some() {
            Status::Resolved
        } else if self.supplement_pending_since.is_some() {
            Status::SupplementRequested
        } else if self.transfers > 0 {
            Status::Processing
        } else {
            Status::Received
        }
    }

    /// The end of processing: resolution, else return, else withdrawal.
    pub fn ended_at(&self) -> Option<Instant> {
        self.resolved_at.or(self.returned_at).or(self.withdrawn_at)
    }

    /// The on-time clock as it stands after the dossier's last event (`crate::deadline`).
    pub fn clock(&self) -> crate::deadline::Clock {
        crate::deadline::Clock {
            due: self.due_at.map(|d| d.timestamp()),
            paused: self.supplement_paused_secs,
            pending_since: self.supplement_pending_since.map(|s| s.timestamp()),
            repeated: self.supplement_requests > 1,
        }
    }

    /// On time or not, judged at `at` (at or after the dossier's last event) by the one rule of
    /// `crate::deadline`, the rule the indicators count by. A dossier whose processing ended by `at` is judged at
    /// its end. `None` when nothing was promised and nothing made it late: no due time and at most one supplement
    /// request (the indicators count such a dossier as on time, or open in time).
    pub fn timeliness(&self, at: DateTime<Utc>) -> Option<Timeliness> {
        let clock = self.clock();
        if clock.due.is_none() && !clock.repeated {
            return None;
        }
        Some(
            match self.ended_at().filter(|end| end.with_timezone(&Utc) <= at) {
                Some(end) => clock.at_end(end.timestamp()),
                None => clock.open_at(at.timestamp()),
            },
        )
    }
}

/// The head of a stream: its last version, and for a dossier its folded state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamHead {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dossier: Option<DossierState>,
}

fn refuse<T>(why: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::InvalidTransition(why.into()))
}

/// Decides whether `event` may be appended to the stream whose head is `head`, and if so returns the new head.
pub fn decide(
    head: &StreamHead,
    event: &Event,
    expected_version: Option<u64>,
    ctx: &Context,
) -> Result<StreamHead, Rejection> {
    if let Some(expected) = expected_version {
        if expected != head.version {
            return Err(Rejection::VersionConflict {
                expected,
                current: head.version,
            });
        }
    }
    let problems = event.problems();
    if !problems.is_empty() {
        return Err(Rejection::Invalid(problems));
    }
    let latest = ctx.now + ctx.clock_skew;
    if event.occurred_at > latest {
        return refuse(format!(
            "occurred_at {} is later than the server clock plus the allowed skew ({})",
            event.occurred_at,
            latest.to_rfc3339()
        ));
    }
    match (&head.dossier, &event.data) {
        (None, EventData::Received(_)) => {}
        (None, data) if data.event_type().is_dossier_event() => {
            return Err(Rejection::DossierNotFound)
        }
        (None, EventData::AgencyRegistered(a)) => check_parent(event, a)?,
        (None, _) => {}
        (Some(_), EventData::Received(_)) => return Err(Rejection::DossierExists),
        (Some(state), _) => check_dossier_event(state, event, ctx)?,
    }
    if let (Some(_), EventData::AgencyRegistered(a)) = (&head.dossier, &event.data) {
        check_parent(event, a)?;
    }
    Ok(apply(head, event))
}

fn check_parent(event: &Event, a: &AgencyRegistered) -> Result<(), Rejection> {
    match (&event.agency, &a.parent) {
        (Some(agency), Some(parent)) if agency == parent => {
            Err(Rejection::AgencyCycle(vec![agency.clone(), parent.clone()]))
        }
        _ => Ok(()),
    }
}

/// The agency tree stays a tree: registering `agency` under `parent` must not make `agency` its own ancestor, at
/// any distance. `parent_of` gives each agency's current parent (the registrations decided so far included). On
/// a cycle, the refusal names its path, `agency → parent → … → agency`. A check of the whole tree, not of one
/// stream, so it runs where every agency can be looked up: the log's writer and `verify`.
pub fn check_agency_tree<E>(
    agency: &AgencyCode,
    parent: &AgencyCode,
    mut parent_of: impl FnMut(&AgencyCode) -> Result<Option<AgencyCode>, E>,
) -> Result<Result<(), Rejection>, E> {
    let mut path = vec![agency.clone(), parent.clone()];
    let mut at = parent.clone();
    loop {
        if at == *agency {
            return Ok(Err(Rejection::AgencyCycle(path)));
        }
        // A chain longer than the agencies it could hold would already be a cycle elsewhere: stop walking.
        if path.len() > 10_000 {
            return Ok(Ok(()));
        }
        match parent_of(&at)? {
            Some(p) => {
                path.push(p.clone());
                at = p;
            }
            None => return Ok(Ok(())),
        }
    }
}

/// Rules 2–6 for an event on an existing dossier.
fn check_dossier_event(s: &DossierState, event: &Event, ctx: &Context) -> Result<(), Rejection> {
    let at = event.occurred_at;
    if at < s.last_occurred_at {
        return refuse(format!(
            "occurred_at {at} is before the dossier's latest event, at {}",
            s.last_occurred_at
        ));
    }
    let agency = event
        .agency
        .as_ref()
        .expect("dossier events carry an agency");
    if !s.agencies.contains(agency) {
        return refuse(format!(
            "agency {agency} neither received the dossier nor had it transferred to it (it involves {})",
            s.agencies.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    let ty = event.event_type();
    if s.is_closed() && ty != EventType::DossierCorrected {
        let how = if s.returned_at.is_some() {
            "its result was returned"
        } else {
            "it was withdrawn"
        };
        return refuse(format!(
            "the dossier is closed ({how}): only dossier.corrected is accepted, not {ty}"
        ));
    }
    if s.resolved_at.is_some()
        && matches!(
            ty,
            EventType::DossierResolved
                | EventType::DossierSupplementRequested
                | EventType::DossierSupplementReceived
                | EventType::DossierDueExtended
                | EventType::DossierWithdrawn
        )
    {
        return refuse(format!(
            "the dossier is already resolved: {ty} is not accepted after resolution"
        ));
    }
    match &event.data {
        EventData::Transferred(t) if t.to_agency == s.holder => {
            refuse(format!("the dossier is already held by {}", t.to_agency))
        }
        EventData::SupplementRequested(_) if s.supplement_pending_since.is_some() => {
            refuse("a supplement request is already pending")
        }
        EventData::SupplementReceived(_) if s.supplement_pending_since.is_none() => {
            refuse("no supplement request is pending")
        }
        EventData::DueExtended(d) => match s.due_at {
            Some(due) if d.new_due_at <= due => refuse(format!(
                "new_due_at must be later than the current due time {due}"
            )),
            _ if d.new_due_at < s.received_at => {
                refuse("new_due_at must not be before the receipt time")
            }
            _ => Ok(()),
        },
        EventData::Corrected(c) => check_correction(s, c, at, ctx),
        _ => Ok(()),
    }
}

fn check_correction(
    s: &DossierState,
    c: &Corrected,
    at: Instant,
    ctx: &Context,
) -> Result<(), Rejection> {
    let channel = c.channel.unwrap_or(s.channel);
    let level = match c.channel {
        Some(ch) if ch != Channel::Online => None,
        _ => c.online_level.or(s.online_level),
    };
    if channel != Channel::Online && c.online_level.is_some() {
        return refuse(format!(
            "online_level is only for the online channel, and the dossier's channel is {channel}"
        ));
    }
    if channel == Channel::Online && level.is_none() {
        return refuse("a dossier corrected to the online channel needs an online_level");
    }
    let received_at = c.received_at.unwrap_or(s.received_at);
    if let Some(r) = c.received_at {
        let bound = s.first_later_at.unwrap_or(at).min(at);
        if r > bound {
            return refuse(format!(
                "received_at {r} would be later than the dossier's other events (from {bound})"
            ));
        }
        if r > ctx.now + ctx.clock_skew {
            return refuse("received_at is later than the server clock");
        }
    }
    if let Some(due) = c.due_at.or(s.due_at) {
        if due < received_at {
            return refuse(format!(
                "the due time {due} would be before the receipt time {received_at}"
            ));
        }
    }
    Ok(())
}

/// Applies an accepted event to a head. An event that happened, happened: this never fails. It is called only
/// with events that [`decide`] accepted (or that the log holds, which were).
pub fn apply(head: &StreamHead, event: &Event) -> StreamHead {
    let mut next = head.clone();
    apply_in_place(&mut next, event);
    next
}

/// [`apply`] without the copy: folds `event` into `head` where it stands (replays fold millions of events).
pub fn apply_in_place(next: &mut StreamHead, event: &Event) {
    next.version += 1;
    let at = event.occurred_at;
    if let EventData::Received(r) = &event.data {
        let agency = event
            .agency
            .clone()
            .expect("dossier events carry an agency");
        next.dossier = Some(DossierState {
            dossier: event
                .dossier
                .clone()
                .expect("dossier events carry a dossier"),
            holder: agency.clone(),
            agencies: vec![agency.clone()],
            agency,
            procedure: r.procedure.clone(),
            channel: r.channel,
            online_level: r.online_level,
            applicant: r.applicant,
            result_by_post: r.result_by_post.unwrap_or(false),
            received_at: at,
            due_at: r.due_at,
            last_occurred_at: at,
            first_later_at: None,
            supplement_requests: 0,
            supplement_pending_since: None,
            supplement_paused_secs: 0,
            transfers: 0,
            corrections: 0,
            resolved_at: None,
            outcome: None,
            returned_at: None,
            return_channel: None,
            withdrawn_at: None,
        });
        return;
    }
    let Some(s) = next.dossier.as_mut() else {
        return;
    };
    s.last_occurred_at = s.last_occurred_at.max(at);
    s.first_later_at.get_or_insert(at);
    match &event.data {
        EventData::Transferred(t) => {
            s.holder = t.to_agency.clone();
            if !s.agencies.contains(&t.to_agency) {
                s.agencies.push(t.to_agency.clone());
            }
            s.transfers += 1;
        }
        EventData::SupplementRequested(_) => {
            s.supplement_requests += 1;
            s.supplement_pending_since = Some(at);
        }
        EventData::SupplementReceived(_) => {
            if let Some(since) = s.supplement_pending_since.take() {
                s.supplement_paused_secs += (at - since).num_seconds().max(0);
            }
        }
        EventData::DueExtended(d) => s.due_at = Some(d.new_due_at),
        EventData::Resolved(r) => {
            s.resolved_at = Some(at);
            s.outcome = Some(r.outcome);
        }
        EventData::Returned(r) => {
            s.returned_at = Some(at);
            s.return_channel = Some(r.channel);
        }
        EventData::Withdrawn(_) => s.withdrawn_at = Some(at),
        EventData::Corrected(c) => {
            s.corrections += 1;
            if let Some(p) = &c.procedure {
                s.procedure = p.clone();
            }
            (s.channel, s.online_level) = c.channel_and_level(s.channel, s.online_level);
            if let Some(r) = c.received_at {
                s.received_at = r;
            }
            if let Some(d) = c.due_at {
                s.due_at = Some(d);
            }
            if let Some(b) = c.result_by_post {
                s.result_by_post = b;
            }
        }
        EventData::Received(_)
        | EventData::AgencyRegistered(_)
        | EventData::ProcedureOffered(_)
        | EventData::TargetSet(_) => {}
    }
}
