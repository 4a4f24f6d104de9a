//! The typed events of the v1 contract, and the stored envelope with its canonical bytes.
//!
//! Canonical bytes are what the audit tree hashes, so their form is fixed here and nowhere else: JSON with the
//! envelope's fields in the order of [`StoredEvent`]'s serializer, each `data` struct's fields in declaration
//! order, absent options left out, times in RFC 3339 (business times keep the offset they were sent with,
//! `recorded_at` is UTC with microseconds).

use crate::calendar::Period;
use crate::codes::{AgencyCode, DossierCode, ProcedureCode, Text};
use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, Utc};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// A business time with the offset it was given in.
pub type Instant = DateTime<FixedOffset>;

/// Strict RFC 3339 for stored times, the same grammar the sender's parser accepts (chrono's own serde impl goes
/// through its relaxed general-purpose parser, which is both looser and several times slower).
mod rfc3339 {
    use super::Instant;
    use serde::{Deserialize, Deserializer};
    use std::borrow::Cow;

    pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        Instant::parse_from_rfc3339(&s).map_err(serde::de::Error::custom)
    }

    pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        Option::<Cow<'de, str>>::deserialize(d)?
            .map(|s| Instant::parse_from_rfc3339(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:tt),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// The variant named `s`, or a message listing the names allowed.
            pub fn from_name(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "{s:?} is not one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Every event type of the v1 contract.
    EventType {
        DossierReceived = "dossier.received",
        DossierTransferred = "dossier.transferred",
        DossierSupplementRequested = "dossier.supplement_requested",
        DossierSupplementReceived = "dossier.supplement_received",
        DossierDueExtended = "dossier.due_extended",
        DossierResolved = "dossier.resolved",
        DossierReturned = "dossier.returned",
        DossierWithdrawn = "dossier.withdrawn",
        DossierCorrected = "dossier.corrected",
        AgencyRegistered = "agency.registered",
        ProcedureOffered = "procedure.offered",
        TargetSet = "target.set",
    }
);

impl EventType {
    /// Dossier events belong to a dossier's stream and carry the envelope's `dossier` field.
    pub fn is_dossier_event(&self) -> bool {
        self.as_str().starts_with("dossier.")
    }
}

string_enum!(
    /// How a dossier came in, or how its result went out (KenhThucHien: 1, 2, 3).
    Channel { Counter = "counter", Online = "online", Postal = "postal" }
);
string_enum!(
    /// The online service level a dossier was submitted at: Decree 43/2011's levels 3 and 4, or Decree 42/2022's
    /// partial (một phần) and full (toàn trình).
    OnlineLevel { Level3 = "level3", Level4 = "level4", Partial = "partial", Full = "full" }
);
string_enum!(
    /// The online level at which an agency offers a procedure; `none` when it is not offered online.
    OfferLevel { None = "none", Level3 = "level3", Level4 = "level4", Partial = "partial", Full = "full" }
);
string_enum!(
    /// Who applied (LoaiDoiTuong).
    Applicant { Citizen = "citizen", Business = "business", StateAgency = "state_agency", Organisation = "organisation" }
);
string_enum!(
    /// The decision a resolved dossier carries.
    Outcome { Approved = "approved", Rejected = "rejected" }
);
string_enum!(
    /// The tier an agency sits at.
    AgencyLevel { Province = "province", Department = "department", District = "district", Commune = "commune" }
);

/// Which agencies a target applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetScope {
    /// `*`: every agency without a target of its own.
    All,
    Agency(AgencyCode),
}

impl Serialize for TargetScope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TargetScope::All => s.serialize_str("*"),
            TargetScope::Agency(code) => code.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for TargetScope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TargetScope::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for TargetScope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::codes::string_schema(
            Some(concat!("^(\\*|", crate::codes::agency_code!(), ")$")),
            1,
            32,
            "* for every agency, or an agency code",
        )
    }
}
#[cfg(feature = "openapi")]
impl utoipa::ToSchema for TargetScope {}

impl TargetScope {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            Ok(TargetScope::All)
        } else {
            AgencyCode::parse(s)
                .map(TargetScope::Agency)
                .map_err(|e| format!("must be * or an agency code: {e}"))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Received {
    pub procedure: ProcedureCode,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_level: Option<OnlineLevel>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "rfc3339::de_opt"
    )]
    pub due_at: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_by_post: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicant: Option<Applicant>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Transferred {
    pub to_agency: AgencyCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SupplementRequested {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SupplementReceived {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DueExtended {
    #[serde(deserialize_with = "rfc3339::de")]
    pub new_due_at: DateTime<FixedOffset>,
    pub reason: Text,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Resolved {
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Returned {
    pub channel: Channel,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Withdrawn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Corrected {
    pub reason: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedure: Option<ProcedureCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_level: Option<OnlineLevel>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "rfc3339::de_opt"
    )]
    pub received_at: Option<DateTime<FixedOffset>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "rfc3339::de_opt"
    )]
    pub due_at: Option<DateTime<FixedOffset>>,
    /// Whether the applicant asks for the result by post: a choice made (or taken back) after intake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_by_post: Option<bool>,
}

impl Corrected {
    /// The channel and online level once this correction applies: a channel other than online drops the level;
    /// a level given replaces it.
    pub fn channel_and_level(
        &self,
        channel: Channel,
        level: Option<OnlineLevel>,
    ) -> (Channel, Option<OnlineLevel>) {
        let channel = self.channel.unwrap_or(channel);
        let level = match (self.online_level, self.channel) {
            (Some(given), _) => Some(given),
            (None, Some(c)) if c != Channel::Online => None,
            (None, _) => level,
        };
        (channel, level)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgencyRegistered {
    pub name: Text,
    pub level: AgencyLevel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<AgencyCode>,
}

/// `procedure` is not in the v1 table of `events.md` §3, where the code lives only in the stream name; it is
/// carried in the data so that every envelope names its own stream (see docs/architecture.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProcedureOffered {
    pub procedure: ProcedureCode,
    pub name: Text,
    pub online_level: OfferLevel,
    pub postal_receive: bool,
    pub postal_return: bool,
    pub effective_from: NaiveDate,
    /// The procedure's field (lĩnh vực: DVCQG's MaLinhVuc), with a procedure code's rules. Optional, and not in
    /// v1's table: the official form's rows by field read it (absent from older events, which stay byte-identical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<ProcedureCode>,
    /// The field's name (TenLinhVuc), for the form's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_name: Option<Text>,
}

/// Targets are stored with both rates spelled out: a default filled in at intake is stored as given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TargetSet {
    pub agency: TargetScope,
    pub from_period: Period,
    /// Stored always; when written, optional (or null): 0.20 by default.
    #[cfg_attr(
        feature = "openapi",
        schema(required = false, nullable, minimum = 0, maximum = 1)
    )]
    pub online_rate_min: f64,
    /// Stored always; when written, optional (or null): 0.10 by default.
    #[cfg_attr(
        feature = "openapi",
        schema(required = false, nullable, minimum = 0, maximum = 1)
    )]
    pub postal_rate_min: f64,
}

pub const DEFAULT_ONLINE_RATE_MIN: f64 = 0.20;
pub const DEFAULT_POSTAL_RATE_MIN: f64 = 0.10;

/// The type-specific part of an event. It serializes as the bare fields of its type (untagged: the envelope's
/// `type` says which); decoding goes through `EventData::from_json`, which knows the type.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum EventData {
    Received(Received),
    Transferred(Transferred),
    SupplementRequested(SupplementRequested),
    SupplementReceived(SupplementReceived),
    DueExtended(DueExtended),
    Resolved(Resolved),
    Returned(Returned),
    Withdrawn(Withdrawn),
    Corrected(Corrected),
    AgencyRegistered(AgencyRegistered),
    ProcedureOffered(ProcedureOffered),
    TargetSet(TargetSet),
}

impl EventData {
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::Received(_) => EventType::DossierReceived,
            EventData::Transferred(_) => EventType::DossierTransferred,
            EventData::SupplementRequested(_) => EventType::DossierSupplementRequested,
            EventData::SupplementReceived(_) => EventType::DossierSupplementReceived,
            EventData::DueExtended(_) => EventType::DossierDueExtended,
            EventData::Resolved(_) => EventType::DossierResolved,
            EventData::Returned(_) => EventType::DossierReturned,
            EventData::Withdrawn(_) => EventType::DossierWithdrawn,
            EventData::Corrected(_) => EventType::DossierCorrected,
            EventData::AgencyRegistered(_) => EventType::AgencyRegistered,
            EventData::ProcedureOffered(_) => EventType::ProcedureOffered,
            EventData::TargetSet(_) => EventType::TargetSet,
        }
    }

    /// Decodes a `data` object of a known type; unknown fields are refused.
    pub fn from_json(ty: EventType, data: &str) -> serde_json::Result<EventData> {
        use serde_json::from_str;
        Ok(match ty {
            EventType::DossierReceived => EventData::Received(from_str(data)?),
            EventType::DossierTransferred => EventData::Transferred(from_str(data)?),
            EventType::DossierSupplementRequested => {
                EventData::SupplementRequested(from_str(data)?)
            }
            EventType::DossierSupplementReceived => EventData::SupplementReceived(from_str(data)?),
            EventType::DossierDueExtended => EventData::DueExtended(from_str(data)?),
            EventType::DossierResolved => EventData::Resolved(from_str(data)?),
            EventType::DossierReturned => EventData::Returned(from_str(data)?),
            EventType::DossierWithdrawn => EventData::Withdrawn(from_str(data)?),
            EventType::DossierCorrected => EventData::Corrected(from_str(data)?),
            EventType::AgencyRegistered => EventData::AgencyRegistered(from_str(data)?),
            EventType::ProcedureOffered => EventData::ProcedureOffered(from_str(data)?),
            EventType::TargetSet => EventData::TargetSet(from_str(data)?),
        })
    }
}

/// The stream an event belongs to. One dossier is one stream; reference data has one stream per agency, per
/// offered procedure, and one for all targets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Dossier(DossierCode),
    Agency(AgencyCode),
    Procedure(AgencyCode, ProcedureCode),
    Targets,
}

impl Stream {
    /// The stream's key: the dossier code itself, or `agency/<code>`, `procedure/<agency>/<procedure>`,
    /// `targets/all`. Dossier codes contain no `/` and every reference key does, so the two never collide.
    pub fn key(&self) -> String {
        match self {
            Stream::Dossier(d) => d.to_string(),
            Stream::Agency(a) => format!("agency/{a}"),
            Stream::Procedure(a, p) => format!("procedure/{a}/{p}"),
            Stream::Targets => "targets/all".to_string(),
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// An event as a sender submits it, after parsing: every field typed and valid on its own.
///
/// Invariants (checked by [`Event::check`]): `dossier` is present exactly for dossier events; `agency` is
/// present for every type but `target.set`, where it is optional.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: Uuid,
    pub dossier: Option<DossierCode>,
    pub agency: Option<AgencyCode>,
    pub occurred_at: DateTime<FixedOffset>,
    pub data: EventData,
}

impl Event {
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    /// The stream the event belongs to.
    pub fn stream(&self) -> Stream {
        match (&self.data, &self.dossier, &self.agency) {
            (EventData::AgencyRegistered(_), _, Some(agency)) => Stream::Agency(agency.clone()),
            (EventData::ProcedureOffered(p), _, Some(agency)) => {
                Stream::Procedure(agency.clone(), p.procedure.clone())
            }
            (EventData::TargetSet(_), _, _) => Stream::Targets,
            (_, Some(dossier), _) => Stream::Dossier(dossier.clone()),
            _ => panic!(
                "event {} breaks the envelope invariants: {:?}",
                self.id,
                self.check()
            ),
        }
    }

    /// The stream's key, borrowed for dossier events (the hot path of replays).
    pub fn stream_key(&self) -> std::borrow::Cow<'_, str> {
        match (&self.data, &self.dossier) {
            (data, Some(dossier)) if data.event_type().is_dossier_event() => {
                std::borrow::Cow::Borrowed(dossier.as_str())
            }
            _ => std::borrow::Cow::Owned(self.stream().key()),
        }
    }

    /// The envelope's structural invariants; `Err` names the first broken one.
    pub fn check(&self) -> Result<(), String> {
        let ty = self.event_type();
        if ty.is_dossier_event() != self.dossier.is_some() {
            return Err(format!(
                "{ty} must {}carry a dossier",
                if ty.is_dossier_event() { "" } else { "not " }
            ));
        }
        if self.agency.is_none() && ty != EventType::TargetSet {
            return Err(format!("{ty} must carry an agency"));
        }
        if self.id.is_nil() {
            return Err("the nil UUID is not an event id".into());
        }
        Ok(())
    }

    /// The JSON a sender would post for this event (no stored fields).
    pub fn to_json(&self, expected_version: Option<u64>) -> String {
        serde_json::to_string(&Envelope {
            event: self,
            stored: None,
            expected_version,
        })
        .expect("events always serialize")
    }
}

/// The type and agency of an event, read from its canonical bytes without decoding the rest: what a filter or a
/// live stream's `event:` line needs of bytes that are sent on as they are stored.
#[derive(Debug, Deserialize)]
pub struct Peek<'a> {
    #[serde(rename = "type", borrow)]
    pub ty: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub agency: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Peek<'a> {
    pub fn of(bytes: &'a [u8]) -> Result<Peek<'a>, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a stored event: {e}"))
    }
}

/// A source name: the name of the credential that wrote an event (or of the tool that imported it).
pub fn check_source(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if !(1..=64).contains(&n) {
        return Err(format!("must be 1 to 64 characters long, got {n}"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':')))
    {
        return Err(format!(
            "contains {c:?}; allowed characters are A-Z a-z 0-9 . _ - @ :"
        ));
    }
    Ok(())
}

/// An event as the log holds it.
///
/// Invariants (checked by [`StoredEvent::check`], before a write and after a read): the event's own invariants;
/// `position >= 1` and `version >= 1`; `source` is a valid source name; `recorded_at` has whole microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub position: u64,
    pub version: u64,
    pub recorded_at: DateTime<Utc>,
    pub source: String,
    pub event: Event,
}

impl StoredEvent {
    pub fn check(&self) -> Result<(), String> {
        self.event.check()?;
        if self.position == 0 || self.version == 0 {
            return Err(format!(
                "position {} and version {} must both be at least 1",
                self.position, self.version
            ));
        }
        check_source(&self.source).map_err(|e| format!("source {e}"))?;
        if !self
            .recorded_at
            .timestamp_subsec_nanos()
            .is_multiple_of(1_000)
        {
            return Err("recorded_at must have whole microseconds".into());
        }
        Ok(())
    }

    /// The canonical bytes: the audit tree's leaf and the log's stored value.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            event: &self.event,
            stored: Some(self),
            expected_version: None,
        })
        .expect("stored events always serialize")
    }

    /// Decodes canonical bytes, then checks that they are canonical: re-encoding gives the same bytes.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<StoredEvent, String> {
        let stored = StoredEvent::decode(bytes)?;
        if stored.canonical_bytes() != bytes {
            return Err("the bytes decode but are not in canonical form".into());
        }
        Ok(stored)
    }

    /// Decodes stored bytes without the canonical-form check (the hot path of replays; `verify` does the check).
    pub fn decode(bytes: &[u8]) -> Result<StoredEvent, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw<'a> {
            position: u64,
            version: u64,
            id: Uuid,
            #[serde(rename = "type")]
            ty: EventType,
            #[serde(default)]
            dossier: Option<DossierCode>,
            #[serde(default)]
            agency: Option<AgencyCode>,
            #[serde(deserialize_with = "rfc3339::de")]
            occurred_at: Instant,
            #[serde(deserialize_with = "rfc3339::de")]
            recorded_at: Instant,
            #[serde(borrow)]
            source: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            data: &'a serde_json::value::RawValue,
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let data =
            EventData::from_json(raw.ty, raw.data.get()).map_err(|e| format!("data: {e}"))?;
        let stored = StoredEvent {
            position: raw.position,
            version: raw.version,
            recorded_at: raw.recorded_at.with_timezone(&Utc),
            source: raw.source.into_owned(),
            event: Event {
                id: raw.id,
                dossier: raw.dossier,
                agency: raw.agency,
                occurred_at: raw.occurred_at,
                data,
            },
        };
        stored.check()?;
        Ok(stored)
    }

    /// Truncates an instant to whole microseconds, the precision `recorded_at` is stored with.
    pub fn truncate_recorded_at(t: DateTime<Utc>) -> DateTime<Utc> {
        let micros = t.timestamp_micros();
        DateTime::from_timestamp_micros(micros).expect("a truncated instant is valid")
    }
}

impl Serialize for StoredEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Envelope {
            event: &self.event,
            stored: Some(self),
            expected_version: None,
        }
        .serialize(s)
    }
}

/// The one serializer of envelopes, so that stored and submitted forms cannot drift apart.
struct Envelope<'a> {
    event: &'a Event,
    stored: Option<&'a StoredEvent>,
    expected_version: Option<u64>,
}

impl Serialize for Envelope<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let mut st = s.serialize_struct("Envelope", 11)?;
        if let Some(stored) = self.stored {
            st.serialize_field("position", &stored.position)?;
            st.serialize_field("version", &stored.version)?;
        }
        st.serialize_field("id", &e.id)?;
        st.serialize_field("type", &e.event_type())?;
        if let Some(dossier) = &e.dossier {
            st.serialize_field("dossier", dossier)?;
        }
        if let Some(agency) = &e.agency {
            st.serialize_field("agency", agency)?;
        }
        st.serialize_field("occurred_at", &e.occurred_at)?;
        if let Some(stored) = self.stored {
            st.serialize_field(
                "recorded_at",
                &stored
                    .recorded_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            )?;
            st.serialize_field("source", &stored.source)?;
        }
        st.serialize_field("data", &e.data)?;
        if let Some(v) = self.expected_version {
            st.serialize_field("expected_version", &v)?;
        }
        st.end()
    }
}
