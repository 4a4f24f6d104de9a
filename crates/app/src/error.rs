//! Every refusal casetrail answers with, whoever asked: one enum, [`Error`], and one table, [`CODES`], that names
//! each stable code once with its HTTP status and what it means. `Error::status_and_code` picks a variant's code
//! and takes its status from the table; the OpenAPI document's description of `code` is generated from the table;
//! a test holds `docs/api.md` to it. The HTTP service renders these as problem documents; the command line prints
//! their messages.

use domain::ValidationError;
use store::{AppendError, EventRefusal};

/// One stable code: what the API answers with in `code`, its HTTP status, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    pub status: u16,
    pub description: &'static str,
}

macro_rules! codes {
    ($($name:ident: $status:literal, $description:literal;)*) => {
        /// The stable codes, each once.
        #[allow(non_upper_case_globals)]
        pub mod code {
            $(pub const $name: &str = stringify!($name);)*
        }

        /// Every stable code with its status and meaning, in the order `docs/api.md` lists them.
        pub const CODES: &[Code] = &[
            $(Code { code: stringify!($name), status: $status, description: $description },)*
        ];
    };
}

codes! {
    malformed_json: 400, "the body is not JSON, not an event or an array of events, or an empty array";
    bad_parameter: 400, "a query, path or header parameter is out of its domain or cannot be read (`parameter` names it)";
    bad_request: 400, "the request cannot be read as HTTP/1.1";
    unauthorized: 401, "no token where one is needed, or an unknown or revoked token";
    forbidden: 403, "the role, or an ingest token's scope, does not cover the request";
    route_not_found: 404, "no route has this path";
    token_not_found: 404, "no live token of that name";
    dossier_not_found: 404, "no such dossier, or a batch whose every refused event is a first event that is not dossier.received";
    method_not_allowed: 405, "the path exists, but not with this method (`Allow` lists the methods it has)";
    request_timeout: 408, "the request head or body did not arrive in time";
    invalid_transition: 409, "an event breaks a rule of its dossier; the message says which";
    agency_cycle: 409, "an agency registered under itself or one of its own descendants";
    dossier_exists: 409, "a second dossier.received";
    version_conflict: 409, "expected_version does not match (`current_version` is given)";
    id_reused: 409, "an id already stored with different content (`position` is given)";
    sync_conflict: 409, "a sync request contradicts the log where the events contract allows no correction (every one is listed)";
    sync_out_of_order: 409, "a sync request says something new of a dossier dated before the log's last event of it, which cannot be put in before it (every one is listed)";
    stored_fields_mismatch: 409, "an imported event's stored fields disagree with where it would land (import only)";
    last_admin: 409, "revoking the last live admin token";
    credential_exists: 409, "a token name already used";
    length_required: 411, "a body without a declared length where one is needed";
    payload_too_large: 413, "a body over the limit, or more than 1,000 events";
    uri_too_long: 414, "a URI over the limit";
    unsupported_media_type: 415, "a body of a type this operation does not read";
    expectation_failed: 417, "an Expect header the server does not meet";
    validation_failed: 422, "a field missing, unknown, or out of its domain (every one is listed)";
    headers_too_large: 431, "a request head over 128 KiB, or with more than 96 header fields";
    internal: 500, "a bug; the details are in the server log";
    too_many_subscribers: 503, "the live stream serves as many subscribers as it may (`Retry-After` is given)";
    unavailable: 503, "the log cannot serve this now (a disk that failed or stopped answering); send the same events again when it can";
    outcome_unknown: 503, "the database stopped answering while a batch was being committed and stayed unreachable past the deadline: the events may be in the log or not; send the same events again (their ids make that safe)";
    http_error: 0, "any other status the HTTP layer answered with by itself, with that status";
}

/// The status of a code in the table.
fn status_of(code: &str) -> u16 {
    CODES
        .iter()
        .find(|c| c.code == code)
        .map_or(500, |c| c.status)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON, or not the shape of an event or a request.
    #[error("{0}")]
    MalformedJson(String),
    /// A query, path or header parameter is out of its domain, or could not be read at all.
    #[error("{detail}")]
    BadParameter {
        name: std::borrow::Cow<'static, str>,
        detail: String,
    },
    /// No route has this path.
    #[error("no route {0}; /openapi.json lists every route")]
    RouteNotFound(String),
    /// The path exists, but not with this method; `Allow` lists the methods it has.
    #[error("{method} is not a method of {path}; it has {allow}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    /// An error the HTTP layer raised before (or instead of) a handler, made into a problem like every other.
    #[error("{detail}")]
    Http { status: u16, detail: String },
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// A resource that does not exist: its stable code and a message.
    #[error("{1}")]
    NotFound(&'static str, String),
    #[error("{} field(s) failed validation", .0.len())]
    Validation(Vec<ValidationError>),
    /// Events refused by the log's rules; every one named.
    #[error("{} event(s) refused", .0.len())]
    Refused(Vec<EventRefusal>),
    /// A sync request (the DVCQG adapter) that cannot be taken: `code` is `validation_failed`, `dossier_not_found`
    /// (a step before its dossier), `sync_conflict` or `sync_out_of_order`; every problem is listed.
    #[error("{}", describe_sync(.problems))]
    Sync {
        code: &'static str,
        problems: Vec<ValidationError>,
    },
    #[error("a credential named {0:?} exists already")]
    CredentialExists(String),
    /// Revoking this token would leave no live admin token: nobody could administer the server over HTTP.
    #[error("{0:?} is the last live admin token; create another admin token first (or, with the server stopped, `casetrail token create --role admin`)")]
    LastAdmin(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// The database did not say whether a commit landed, and could not be asked within the deadline.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// The live stream has as many subscribers as it serves.
    #[error("{0} live subscribers are connected, the most this server serves; try again shortly")]
    TooManySubscribers(usize),
    #[error("internal error")]
    Internal(String),
}

impl Error {
    /// A variant's HTTP status and stable code: the code is the variant's, the status the table's (an error the
    /// HTTP layer raised keeps its own status).
    pub fn status_and_code(&self) -> (u16, &'static str) {
        let code = match self {
            Error::Http { status, .. } => return (*status, http_code(*status)),
            Error::MalformedJson(_) => code::malformed_json,
            Error::BadParameter { .. } => code::bad_parameter,
            Error::RouteNotFound(_) => code::route_not_found,
            Error::MethodNotAllowed { .. } => code::method_not_allowed,
            Error::Unauthorized => code::unauthorized,
            Error::Forbidden(_) => code::forbidden,
            Error::NotFound(code, _) => code,
            Error::Validation(_) => code::validation_failed,
            // A batch answers 404 only when every refusal is a missing dossier; otherwise the first other
            // refusal names the conflict.
            Error::Refused(r) => r
                .iter()
                .map(|r| r.refusal.code())
                .find(|c| *c != code::dossier_not_found)
                .unwrap_or(code::dossier_not_found),
            Error::Sync { code, .. } => code,
            Error::CredentialExists(_) => code::credential_exists,
            Error::LastAdmin(_) => code::last_admin,
            Error::PayloadTooLarge(_) => code::payload_too_large,
            Error::Unavailable(_) => code::unavailable,
            Error::OutcomeUnknown(_) => code::outcome_unknown,
            Error::TooManySubscribers(_) => code::too_many_subscribers,
            Error::Internal(_) => code::internal,
        };
        (status_of(code), code)
    }

    pub fn bad_parameter(
        name: impl Into<std::borrow::Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Error {
        Error::BadParameter {
            name: name.into(),
            detail: detail.into(),
        }
    }

    /// One field of a request body failed validation.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Validation(vec![ValidationError {
            index: 0,
            id: None,
            field: field.into(),
            message: message.into(),
        }])
    }
}

/// A sync refusal's message: its first problem, and how many more.
fn describe_sync(problems: &[ValidationError]) -> String {
    let Some(first) = problems.first() else {
        return "the sync request was refused".into();
    };
    let more = match problems.len() - 1 {
        0 => String::new(),
        n => format!(" (and {n} more)"),
    };
    format!(
        "request {}: {}: {}{more}",
        first.index, first.field, first.message
    )
}

/// The stable code of a status the HTTP layer answered with by itself (`Http`).
fn http_code(status: u16) -> &'static str {
    match status {
        400 => code::bad_request,
        404 => code::route_not_found,
        405 => code::method_not_allowed,
        408 => code::request_timeout,
        411 => code::length_required,
        413 => code::payload_too_large,
        414 => code::uri_too_long,
        415 => code::unsupported_media_type,
        417 => code::expectation_failed,
        431 => code::headers_too_large,
        503 => code::unavailable,
        500..=599 => code::internal,
        _ => code::http_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Rejection;
    use store::Refusal;

    /// Every variant, with every refusal and every status the HTTP layer may raise.
    fn every_error() -> Vec<Error> {
        let refused = |refusal: Refusal| {
            Error::Refused(vec![EventRefusal {
                index: 0,
                id: uuid::Uuid::nil(),
                refusal,
            }])
        };
        let mut all = vec![
            Error::MalformedJson(String::new()),
            Error::bad_parameter("p", ""),
            Error::RouteNotFound(String::new()),
            Error::MethodNotAllowed {
                method: String::new(),
                path: String::new(),
                allow: "GET",
            },
            Error::Unauthorized,
            Error::Forbidden(String::new()),
            Error::NotFound(code::dossier_not_found, String::new()),
            Error::NotFound(code::token_not_found, String::new()),
            Error::field("f", ""),
            Error::Sync {
                code: code::sync_conflict,
                problems: vec![],
            },
            Error::Sync {
                code: code::sync_out_of_order,
                problems: vec![],
            },
            Error::CredentialExists(String::new()),
            Error::LastAdmin(String::new()),
            Error::PayloadTooLarge(String::new()),
            Error::Unavailable(String::new()),
            Error::OutcomeUnknown(String::new()),
            Error::TooManySubscribers(1),
            Error::Internal(String::new()),
            refused(Refusal::Rule(Rejection::DossierNotFound)),
            refused(Refusal::Rule(Rejection::DossierExists)),
            refused(Refusal::Rule(Rejection::VersionConflict {
                expected: 1,
                current: 2,
            })),
            refused(Refusal::Rule(Rejection::InvalidTransition(String::new()))),
            refused(Refusal::Rule(Rejection::AgencyCycle(vec![]))),
            refused(Refusal::IdReused { position: 1 }),
            refused(Refusal::StoredFields(String::new())),
        ];
        all.extend((400..600).map(|status| Error::Http {
            status,
            detail: String::new(),
        }));
        all
    }

    #[test]
    fn every_code_an_error_answers_with_is_in_the_table_with_its_status() {
        for e in every_error() {
            let (status, code) = e.status_and_code();
            let row = CODES.iter().find(|c| c.code == code);
            let row = row.unwrap_or_else(|| panic!("{code} is not in the table"));
            match e {
                Error::Http { .. } if code == code::http_error || code == code::internal => {}
                Error::Http { .. } => assert_eq!(row.status, status, "{code}"),
                _ => assert_eq!(row.status, status, "{code}"),
            }
        }
    }

    #[test]
    fn each_code_is_in_the_table_once_and_every_row_is_reachable() {
        let reachable: std::collections::HashSet<&str> = every_error()
            .iter()
            .map(|e| e.status_and_code().1)
            .collect();
        for (i, row) in CODES.iter().enumerate() {
            assert!(
                !CODES[..i].iter().any(|c| c.code == row.code),
                "{} twice",
                row.code
            );
            assert!(
                reachable.contains(row.code),
                "{} is never answered",
                row.code
            );
        }
    }

    #[test]
    fn the_api_page_names_every_code() {
        let page = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md"),
        )
        .unwrap();
        for c in CODES {
            assert!(
                page.contains(&format!("`{}`", c.code)),
                "docs/api.md does not name {}",
                c.code
            );
        }
    }

    #[test]
    fn a_batch_is_404_only_when_every_refusal_is_a_missing_dossier() {
        let refusal = |index, refusal| EventRefusal {
            index,
            id: uuid::Uuid::nil(),
            refusal,
        };
        let missing = Refusal::Rule(Rejection::DossierNotFound);
        let exists = Refusal::Rule(Rejection::DossierExists);
        let both = Error::Refused(vec![refusal(0, missing.clone()), refusal(1, exists)]);
        assert_eq!(both.status_and_code(), (409, code::dossier_exists));
        let only = Error::Refused(vec![refusal(0, missing.clone()), refusal(1, missing)]);
        assert_eq!(only.status_and_code(), (404, code::dossier_not_found));
    }
}

impl From<AppendError> for Error {
    fn from(e: AppendError) -> Error {
        match e {
            AppendError::Refused(r) => Error::Refused(r),
            AppendError::BatchSize(n) => Error::PayloadTooLarge(format!(
                "a batch carries 1 to {} events, not {n}",
                domain::parse::BATCH_EVENTS_MAX
            )),
            AppendError::Unavailable(why) => Error::Unavailable(why),
            e @ AppendError::OutcomeUnknown(_) => Error::OutcomeUnknown(e.to_string()),
        }
    }
}

impl From<store::StoreError> for Error {
    fn from(e: store::StoreError) -> Error {
        match e {
            store::StoreError::CredentialExists(name) => Error::CredentialExists(name),
            store::StoreError::Unavailable(why) => Error::Unavailable(why),
            // The storage refusing (a full disk, an IO error that sled now repeats) is not a bug of ours: the
            // service is unavailable until an operator acts. Damage and mismatched indexes are bugs or tampering.
            e @ (store::StoreError::Sled(_)
            | store::StoreError::Database(_)
            | store::StoreError::Io(_)
            | store::StoreError::Locked(_)) => {
                Error::Unavailable(format!("the store cannot serve this now: {e}"))
            }
            other => Error::Internal(other.to_string()),
        }
    }
}
