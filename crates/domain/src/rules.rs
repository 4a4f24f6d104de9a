//! The rules an event keeps on its own, whatever path brought it: the sender's parser, the DVCQG adapter, an
//! import of the log's own export, or any code that builds an [`Event`] by hand.
//!
//! They are written once, here, and judged twice: by the parser, which reports them as field errors beside
//! every other bad field, and by [`crate::decide`], which every write passes (the writer, and `verify` over a
//! log written before a rule existed). So whatever the log holds, its export parses again.

use crate::event::*;
use chrono::{Datelike, NaiveDate, Timelike};

/// One field of an event that breaks a rule of the event alone.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldProblem {
    /// A JSON path into the event, like `data.due_at`; `data` for the event's data as a whole.
    pub field: String,
    pub message: String,
}

/// The longest display name (an agency's, a procedure's, a field's), in characters.
pub const NAME_CHARS_MAX: usize = 500;

/// Why a business time cannot be stored, if it cannot: a leap second (`:60`, which chrono accepts but most clients
/// cannot read back, and which would give the same content id as `:59`), or a year that RFC 3339 cannot write in
/// the time's own offset.
pub fn time_problem(t: &Instant) -> Option<String> {
    if t.nanosecond() >= 1_000_000_000 {
        return Some(format!(
            "has second 60 at {:02}:{:02} (a leap second); times are kept to second 59, so send {:02}:{:02}:59 or the next minute",
            t.hour(),
            t.minute(),
            t.hour(),
            t.minute()
        ));
    }
    if !(0..=9999).contains(&t.year()) {
        return Some(format!(
            "is in the year {}, which RFC 3339 cannot write",
            t.year()
        ));
    }
    None
}

/// A time as every reader of times takes it: refused when [`time_problem`] finds one.
pub fn checked_time(t: Instant) -> Result<Instant, String> {
    match time_problem(&t) {
        Some(why) => Err(why),
        None => Ok(t),
    }
}

fn date_problem(d: &NaiveDate) -> Option<String> {
    (!(0..=9999).contains(&d.year())).then(|| {
        format!(
            "is in the year {}, which a date cannot be written in",
            d.year()
        )
    })
}

pub(crate) fn name_problem(t: &crate::Text) -> Option<String> {
    (t.as_str().chars().count() > NAME_CHARS_MAX)
        .then(|| format!("must be at most {NAME_CHARS_MAX} characters"))
}

pub(crate) fn rate_problem(r: f64) -> Option<String> {
    (!(0.0..=1.0).contains(&r))
        .then(|| format!("must be a fraction from 0 to 1 (0.2 for 20 %), got {r}"))
}

/// Collects the problems of one event.
struct Problems(Vec<FieldProblem>);

impl Problems {
    fn add(&mut self, field: &str, problem: Option<String>) {
        if let Some(message) = problem {
            self.0.push(FieldProblem {
                field: field.into(),
                message,
            });
        }
    }

    fn time(&mut self, field: &str, t: Option<&Instant>) {
        self.add(field, t.and_then(time_problem));
    }
}

impl Event {
    /// Every rule of the event alone that it breaks (none for an event that may be written). The stream's rules
    /// (`crate::stream`) come after these, and need its head.
    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut p = Problems(Vec::new());
        p.time("occurred_at", Some(&self.occurred_at));
        match &self.data {
            EventData::Received(r) => {
                p.time("data.due_at", r.due_at.as_ref());
                match (r.channel, r.online_level) {
                    (Channel::Online, None) => {
                        p.add("data.online_level", Some("is required".into()))
                    }
                    (c, Some(_)) if c != Channel::Online => p.add(
                        "data.online_level",
                        Some(format!("is only for the online channel, not {c}")),
                    ),
                    _ => {}
                }
                if r.due_at.is_some_and(|due| due < self.occurred_at) {
                    p.add(
                        "data.due_at",
                        Some(
                            "must not be before occurred_at, the time the dossier was received"
                                .into(),
                        ),
                    );
                }
            }
            EventData::DueExtended(d) => p.time("data.new_due_at", Some(&d.new_due_at)),
            EventData::Corrected(c) => {
                p.time("data.received_at", c.received_at.as_ref());
                p.time("data.due_at", c.due_at.as_ref());
                let corrects_nothing = c.procedure.is_none()
                    && c.channel.is_none()
                    && c.online_level.is_none()
                    && c.received_at.is_none()
                    && c.due_at.is_none()
                    && c.result_by_post.is_none();
                if corrects_nothing {
                    p.add("data", Some("a correction must give at least one of procedure, channel, online_level, received_at, due_at, result_by_post".into()));
                }
                if let (Some(ch), Some(_)) = (c.channel, c.online_level) {
                    if ch != Channel::Online {
                        p.add(
                            "data.online_level",
                            Some(format!("is only for the online channel, not {ch}")),
                        );
                    }
                }
            }
            EventData::AgencyRegistered(a) => p.add("data.name", name_problem(&a.name)),
            EventData::ProcedureOffered(o) => {
                p.add("data.name", name_problem(&o.name));
                p.add("data.effective_from", date_problem(&o.effective_from));
                if let Some(n) = &o.field_name {
                    p.add("data.field_name", name_problem(n));
                    if o.field.is_none() {
                        p.add(
                            "data.field_name",
                            Some("names a field, so it needs `field`, the field's code".into()),
                        );
                    }
                }
            }
            EventData::TargetSet(t) => {
                p.add("data.online_rate_min", rate_problem(t.online_rate_min));
                p.add("data.postal_rate_min", rate_problem(t.postal_rate_min));
            }
            EventData::Transferred(_)
            | EventData::SupplementRequested(_)
            | EventData::SupplementReceived(_)
            | EventData::Resolved(_)
            | EventData::Returned(_)
            | EventData::Withdrawn(_) => {}
        }
        p.0
    }
}
