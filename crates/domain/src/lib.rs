//! casetrail's domain: the events of the v1 contract, how a submission is parsed into them, the rules a stream
//! obeys, and the Vietnam civil calendar.
//!
//! This crate does no IO and never reads the clock: the time and ids it needs are passed in.

pub mod access;
pub mod calendar;
pub mod codes;
pub mod deadline;
pub mod event;
pub mod names;
pub mod parse;
pub mod rules;
pub mod stream;

pub use access::{Credential, Role};
pub use calendar::{Cut, KnownAt, Period, PeriodKind};
pub use codes::{AgencyCode, DossierCode, ProcedureCode, Text};
pub use event::{Event, EventData, EventType, Instant, StoredEvent, Stream};
pub use parse::{
    parse_envelope, parse_submission, Form, StoredFields, SubmissionError, Submitted,
    ValidationError,
};
pub use rules::FieldProblem;
pub use stream::{
    apply, apply_in_place, decide, Context, DossierState, Rejection, Status, StreamHead, Timeliness,
};
