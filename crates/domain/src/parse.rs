//! Parse, don't validate: a submission (one envelope or an array of them) becomes typed [`Event`]s, or a list of
//! precise errors naming the event's index and id and the field, never a panic.
//!
//! The parser reads a `serde_json::Value` field by field so that it can report every bad field of every event at
//! once; the stored form is decoded by serde derive instead (see `StoredEvent::decode`), and a property test keeps
//! the two in agreement.

use crate::codes::{AgencyCode, DossierCode, ProcedureCode, Text};
use crate::event::*;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The most events one submission (one request, one import batch) may carry.
pub const BATCH_EVENTS_MAX: usize = 1_000;

/// One field of one event that could not be accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    /// The event's index in its submission (0 for a single object).
    pub index: usize,
    /// The event's `id` as sent, when it had one that was a string.
    pub id: Option<String>,
    /// A JSON path into the event, `data.channel`; empty for the event as a whole.
    pub field: String,
    pub message: String,
}

/// Stored fields given with an event, as in the log's own export: an import that keeps them restores a log
/// with identical bytes and audit root.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFields {
    pub position: u64,
    pub version: u64,
    pub recorded_at: DateTime<Utc>,
    pub source: String,
}

/// A parsed envelope: the event, its optional concurrency check, and (in exports) its stored fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    pub event: Event,
    pub expected_version: Option<u64>,
    pub stored: Option<StoredFields>,
    /// This event's own source, where it says more than its batch's (an adapter's event dated on the request's
    /// arrival). Not on the wire: a sender's batch has one source. `None`: the batch's.
    pub source: Option<String>,
}

impl From<StoredEvent> for Submitted {
    /// A restore: the event with the stored fields it had in the log it came from.
    fn from(e: StoredEvent) -> Submitted {
        Submitted {
            stored: Some(StoredFields {
                position: e.position,
                version: e.version,
                recorded_at: e.recorded_at,
                source: e.source,
            }),
            event: e.event,
            expected_version: None,
            source: None,
        }
    }
}

impl From<Event> for Submitted {
    /// A plain submission: no concurrency check, no stored fields.
    fn from(event: Event) -> Submitted {
        Submitted {
            event,
            expected_version: None,
            stored: None,
            source: None,
        }
    }
}

/// Whether envelopes may carry the stored fields of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// What a sender posts: no `position`, `version`, `recorded_at` or `source`.
    Submitted,
    /// What `export` writes; every stored field must then be present. Plain envelopes are accepted too.
    Exported,
}

/// Why a submission as a whole was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmissionError {
    /// Neither an object nor an array of objects.
    NotAnEvent(String),
    /// An array with no events.
    Empty,
    /// More than [`BATCH_EVENTS_MAX`] events.
    TooMany(usize),
    /// Events that failed to parse, every failing field of each.
    Invalid(Vec<ValidationError>),
}

/// Parses a request body: one envelope (object) or a batch (array of 1 to [`BATCH_EVENTS_MAX`]).
pub fn parse_submission(body: &Value) -> Result<Vec<Submitted>, SubmissionError> {
    let items: Vec<&Value> = match body {
        Value::Object(_) => vec![body],
        Value::Array(items) if items.is_empty() => return Err(SubmissionError::Empty),
        Value::Array(items) if items.len() > BATCH_EVENTS_MAX => {
            return Err(SubmissionError::TooMany(items.len()))
        }
        Value::Array(items) => items.iter().collect(),
        _ => {
            return Err(SubmissionError::NotAnEvent(
                "expected an event object or an array of events".into(),
            ))
        }
    };
    let mut errors = Vec::new();
    let mut parsed = Vec::with_capacity(items.len());
    let mut ids = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match parse_envelope(item, index, Form::Submitted) {
            Ok(s) => {
                ids.push((index, s.event.id));
                parsed.push(s);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    check_batch_ids(&ids, &mut errors);
    errors.sort_by_key(|e| e.index);
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(SubmissionError::Invalid(errors))
    }
}

/// Reports ids used twice within one batch: a batch is written at once, so a repeat is a sender's bug.
/// `ids` are (index in the batch, id) of the events that parsed.
pub fn check_batch_ids(ids: &[(usize, Uuid)], errors: &mut Vec<ValidationError>) {
    let mut seen = std::collections::HashMap::with_capacity(ids.len());
    for &(index, id) in ids {
        if let Some(first) = seen.insert(id, index) {
            errors.push(ValidationError {
                index,
                id: Some(id.to_string()),
                field: "id".into(),
                message: format!("the same id as event {first} of this batch"),
            });
        }
    }
}

/// Parses one envelope; `index` is its place in the submission, for error messages.
pub fn parse_envelope(
    value: &Value,
    index: usize,
    form: Form,
) -> Result<Submitted, Vec<ValidationError>> {
    let id_as_sent = value.get("id").and_then(Value::as_str).map(str::to_owned);
    let mut errors = Vec::new();
    let result = match value {
        Value::Object(map) => {
            let mut r = Reader {
                map,
                prefix: "",
                used: Vec::new(),
                errors: &mut errors,
            };
            let parsed = envelope(&mut r, form);
            r.finish();
            // The rules of the event alone, judged once every field could be read (the writer judges them again).
            if let Some(s) = parsed.as_ref().filter(|_| errors.is_empty()) {
                errors.extend(s.event.problems().into_iter().map(|p| FieldError {
                    field: p.field,
                    message: p.message,
                }));
            }
            parsed
        }
        _ => {
            errors.push(FieldError {
                field: String::new(),
                message: "an event must be a JSON object".into(),
            });
            None
        }
    };
    match result {
        Some(s) if errors.is_empty() => Ok(s),
        _ => {
            debug_assert!(
                !errors.is_empty(),
                "a parse that produced nothing must say why"
            );
            Err(errors
                .into_iter()
                .map(|e| ValidationError {
                    index,
                    id: id_as_sent.clone(),
                    field: e.field,
                    message: e.message,
                })
                .collect())
        }
    }
}

struct FieldError {
    field: String,
    message: String,
}

/// Reads the fields of one JSON object, remembering which were read so that the rest can be refused as unknown.
struct Reader<'a, 'e> {
    map: &'a Map<String, Value>,
    prefix: &'static str,
    used: Vec<&'static str>,
    errors: &'e mut Vec<FieldError>,
}

impl<'a> Reader<'a, '_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: format!("{}{key}", self.prefix),
            message: message.into(),
        });
    }

    /// The field's value, if present and not null.
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// An optional field converted by `f`; `Some(None)` when absent, `None` when present and bad.
    fn opt<T>(
        &mut self,
        key: &'static str,
        f: impl FnOnce(&'a Value) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.get(key) {
            None => Some(None),
            Some(v) => match f(v) {
                Ok(t) => Some(Some(t)),
                Err(m) => {
                    self.error(key, m);
                    None
                }
            },
        }
    }

    /// A required field converted by `f`.
    fn req<T>(
        &mut self,
        key: &'static str,
        f: impl FnOnce(&'a Value) -> Result<T, String>,
    ) -> Option<T> {
        match self.opt(key, f) {
            Some(Some(t)) => Some(t),
            Some(None) => {
                self.error(key, "is required");
                None
            }
            None => None,
        }
    }

    /// A field that must not be there for this event.
    fn forbid(&mut self, key: &'static str, why: &str) {
        if self.get(key).is_some() {
            self.error(key, why);
        }
    }

    /// Reports every field that was not read.
    fn finish(self) {
        let mut unknown: Vec<&String> = self
            .map
            .keys()
            .filter(|k| !self.used.contains(&k.as_str()))
            .collect();
        unknown.sort();
        for k in unknown {
            self.errors.push(FieldError {
                field: format!("{}{k}", self.prefix),
                message: "is not a known field".into(),
            });
        }
    }
}

fn string(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("must be a string, got {}", kind(v)))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn instant(v: &Value) -> Result<Instant, String> {
    parse_instant(string(v)?)
}

/// An RFC 3339 time with its offset, as every reader of a business time takes it: the leap seconds and years
/// that `crate::rules` refuses are refused here too.
pub fn parse_instant(s: &str) -> Result<Instant, String> {
    let t = DateTime::parse_from_rfc3339(s).map_err(|_| {
        format!(
            "{s:?} is not an RFC 3339 time with an explicit offset, like 2019-03-12T08:30:00+07:00"
        )
    })?;
    crate::rules::checked_time(t).map_err(|why| format!("{s:?} {why}"))
}

fn utc_instant(v: &Value) -> Result<DateTime<Utc>, String> {
    let t = instant(v)?;
    if t.offset().local_minus_utc() != 0 {
        return Err("must be in UTC (ending in Z)".into());
    }
    Ok(t.with_timezone(&Utc))
}

fn date(v: &Value) -> Result<NaiveDate, String> {
    let s = string(v)?;
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date like 2019-04-01"))
}

fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("must be true or false, got {}", kind(v)))
}

fn count(v: &Value) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| format!("must be a whole number of 0 or more, got {v}"))
}

fn positive(v: &Value) -> Result<u64, String> {
    match v.as_u64() {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(format!("must be a whole number of 1 or more, got {v}")),
    }
}

fn rate(v: &Value) -> Result<f64, String> {
    let r = v
        .as_f64()
        .ok_or_else(|| format!("must be a fraction from 0 to 1 (0.2 for 20 %), got {v}"))?;
    match crate::rules::rate_problem(r) {
        Some(why) => Err(why),
        None => Ok(r),
    }
}

fn text(v: &Value) -> Result<Text, String> {
    Text::parse(string(v)?)
}

/// A display name: 1–500 characters.
fn name(v: &Value) -> Result<Text, String> {
    let t = text(v)?;
    match crate::rules::name_problem(&t) {
        Some(why) => Err(why),
        None => Ok(t),
    }
}

fn dossier_code(v: &Value) -> Result<DossierCode, String> {
    DossierCode::parse(string(v)?)
}
fn agency_code(v: &Value) -> Result<AgencyCode, String> {
    AgencyCode::parse(string(v)?)
}
fn procedure_code(v: &Value) -> Result<ProcedureCode, String> {
    ProcedureCode::parse(string(v)?)
}

fn one_of<T>(from_name: fn(&str) -> Result<T, String>) -> impl Fn(&Value) -> Result<T, String> {
    move |v| from_name(string(v)?)
}

fn envelope(r: &mut Reader, form: Form) -> Option<Submitted> {
    let id = r.req("id", |v| {
        let s = string(v)?;
        let id = Uuid::try_parse(s).map_err(|_| format!("{s:?} is not a UUID"))?;
        if id.is_nil() {
            return Err("the nil UUID is not an event id".into());
        }
        Ok(id)
    });
    let ty = r.req("type", one_of(EventType::from_name));
    let (dossier, agency) = match ty {
        Some(ty) if ty.is_dossier_event() => {
            (r.req("dossier", dossier_code), r.req("agency", agency_code))
        }
        Some(ty) => {
            r.forbid("dossier", &format!("is only for dossier events, not {ty}"));
            let agency = if ty == EventType::TargetSet {
                r.opt("agency", agency_code).flatten()
            } else {
                r.req("agency", agency_code)
            };
            (None, agency)
        }
        None => {
            // Without a type we cannot tell which fields belong; still check the ones that are there.
            r.opt("dossier", dossier_code);
            r.opt("agency", agency_code);
            (None, None)
        }
    };
    let occurred_at = r.req("occurred_at", instant);
    let expected_version = r.opt("expected_version", count);
    let stored = match form {
        Form::Submitted => {
            for key in ["position", "version", "recorded_at", "source"] {
                r.forbid(key, "is set by the log, not by a sender");
            }
            Some(None)
        }
        Form::Exported => stored_fields(r),
    };
    let data = match (ty, r.get("data")) {
        (None, _) => None,
        (Some(_), Some(v)) if !v.is_object() => {
            r.error("data", format!("must be an object, got {}", kind(v)));
            None
        }
        (Some(ty), v) => {
            let empty = Map::new();
            let map = v.and_then(Value::as_object).unwrap_or(&empty);
            let mut d = Reader {
                map,
                prefix: "data.",
                used: Vec::new(),
                errors: r.errors,
            };
            let data = event_data(&mut d, ty);
            d.finish();
            data
        }
    };
    let event = Event {
        id: id?,
        dossier: match ty? {
            t if t.is_dossier_event() => Some(dossier?),
            _ => None,
        },
        agency: if ty? == EventType::TargetSet {
            agency
        } else {
            Some(agency?)
        },
        occurred_at: occurred_at?,
        data: data?,
    };
    Some(Submitted {
        event,
        expected_version: expected_version?,
        stored: stored?,
        source: None,
    })
}

/// The stored fields of an exported envelope: all four, or none.
fn stored_fields(r: &mut Reader) -> Option<Option<StoredFields>> {
    let keys = ["position", "version", "recorded_at", "source"];
    if !keys.iter().any(|k| r.has(k)) {
        return Some(None);
    }
    let position = r.req("position", positive);
    let version = r.req("version", positive);
    let recorded_at = r.req("recorded_at", utc_instant);
    let source = r.req("source", |v| {
        let s = string(v)?;
        check_source(s)?;
        Ok(s.to_owned())
    });
    if r.has("expected_version") {
        r.error("expected_version", "does not go with stored fields");
        return None;
    }
    Some(Some(StoredFields {
        position: position?,
        version: version?,
        recorded_at: recorded_at?,
        source: source?,
    }))
}

fn event_data(d: &mut Reader, ty: EventType) -> Option<EventData> {
    Some(match ty {
        EventType::DossierReceived => {
            let procedure = d.req("procedure", procedure_code);
            let channel = d.req("channel", one_of(Channel::from_name));
            let online_level = match channel {
                Some(Channel::Online) => d
                    .req("online_level", one_of(OnlineLevel::from_name))
                    .map(Some),
                Some(c) => {
                    d.forbid(
                        "online_level",
                        &format!("is only for the online channel, not {c}"),
                    );
                    Some(None)
                }
                None => d.opt("online_level", one_of(OnlineLevel::from_name)),
            };
            let due_at = d.opt("due_at", instant);
            let result_by_post = d.opt("result_by_post", boolean);
            let applicant = d.opt("applicant", one_of(Applicant::from_name));
            EventData::Received(Received {
                procedure: procedure?,
                channel: channel?,
                online_level: online_level?,
                due_at: due_at?,
                result_by_post: result_by_post?,
                applicant: applicant?,
            })
        }
        EventType::DossierTransferred => {
            let to_agency = d.req("to_agency", agency_code);
            let note = d.opt("note", text);
            EventData::Transferred(Transferred {
                to_agency: to_agency?,
                note: note?,
            })
        }
        EventType::DossierSupplementRequested => {
            EventData::SupplementRequested(SupplementRequested {
                note: d.opt("note", text)?,
            })
        }
        EventType::DossierSupplementReceived => {
            EventData::SupplementReceived(SupplementReceived {})
        }
        EventType::DossierDueExtended => {
            let new_due_at = d.req("new_due_at", instant);
            let reason = d.req("reason", text);
            EventData::DueExtended(DueExtended {
                new_due_at: new_due_at?,
                reason: reason?,
            })
        }
        EventType::DossierResolved => EventData::Resolved(Resolved {
            outcome: d.req("outcome", one_of(Outcome::from_name))?,
        }),
        EventType::DossierReturned => EventData::Returned(Returned {
            channel: d.req("channel", one_of(Channel::from_name))?,
        }),
        EventType::DossierWithdrawn => EventData::Withdrawn(Withdrawn {
            reason: d.opt("reason", text)?,
        }),
        EventType::DossierCorrected => {
            let reason = d.req("reason", text);
            let procedure = d.opt("procedure", procedure_code);
            let channel = d.opt("channel", one_of(Channel::from_name));
            let online_level = d.opt("online_level", one_of(OnlineLevel::from_name));
            let received_at = d.opt("received_at", instant);
            let due_at = d.opt("due_at", instant);
            let result_by_post = d.opt("result_by_post", boolean);
            EventData::Corrected(Corrected {
                reason: reason?,
                procedure: procedure?,
                channel: channel?,
                online_level: online_level?,
                received_at: received_at?,
                due_at: due_at?,
                result_by_post: result_by_post?,
            })
        }
        EventType::AgencyRegistered => {
            let name = d.req("name", name);
            let level = d.req("level", one_of(AgencyLevel::from_name));
            let parent = d.opt("parent", agency_code);
            EventData::AgencyRegistered(AgencyRegistered {
                name: name?,
                level: level?,
                parent: parent?,
            })
        }
        EventType::ProcedureOffered => {
            let procedure = d.req("procedure", procedure_code);
            let name = d.req("name", name);
            let online_level = d.req("online_level", one_of(OfferLevel::from_name));
            let postal_receive = d.req("postal_receive", boolean);
            let postal_return = d.req("postal_return", boolean);
            let effective_from = d.req("effective_from", date);
            let field = d.opt("field", procedure_code);
            let field_name = d.opt("field_name", self::name);
            EventData::ProcedureOffered(ProcedureOffered {
                procedure: procedure?,
                name: name?,
                online_level: online_level?,
                postal_receive: postal_receive?,
                postal_return: postal_return?,
                effective_from: effective_from?,
                field: field?,
                field_name: field_name?,
            })
        }
        EventType::TargetSet => {
            let agency = d.req("agency", |v| TargetScope::parse(string(v)?));
            let from_period = d.req("from_period", |v| string(v)?.parse());
            let online = d.opt("online_rate_min", rate);
            let postal = d.opt("postal_rate_min", rate);
            EventData::TargetSet(TargetSet {
                agency: agency?,
                from_period: from_period?,
                online_rate_min: online?.unwrap_or(DEFAULT_ONLINE_RATE_MIN),
                postal_rate_min: postal?.unwrap_or(DEFAULT_POSTAL_RATE_MIN),
            })
        }
    })
}
