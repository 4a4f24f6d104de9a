//! What casetrail does, whoever asks: the HTTP service (`server`) and the command line (`casetrail`) both call
//! this crate, and this crate names no HTTP type.
//!
//! [`App`] is the running service's state: the log, the catalogue of reference data, the live indicator tables,
//! the checkpoint notary and the live credentials. Its methods are the use cases: submit events for a caller,
//! register reference data, issue and revoke tokens, read dossiers, answer indicator queries and audit questions.
//! [`follow`] keeps the catalogue and the indicator tables current with the log, and signs checkpoints on a
//! schedule. Every refusal is an [`Error`], whose table gives each its stable code and HTTP status.
//!
//! Methods that read or write the store block (a sled read may wait on the disk, a write waits for its fsync);
//! async callers run them on a blocking pool. [`App::submit`] is the exception: it queues the append on the
//! store's single writer and awaits its answer.

pub mod catalogue;
pub mod error;
pub mod follow;
pub mod indicators;
pub mod proofs;
pub mod reading;
mod settings;
pub mod tokens;

pub use error::{Code, Error, CODES};
pub use settings::{Layer, LogFormat, Settings, AUDIT_KEY_FILE, DEFAULT_DATA};

use chrono::Utc;
use domain::event::{EventData, EventType};
use domain::{AgencyCode, Credential, DossierCode, ProcedureCode, Role, StoredEvent, Submitted};
use projections::Catalogue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use store::{AppendOutcome, AppendRequest, EventLog, SledLog};
use uuid::Uuid;

/// The running service: what every request, command and follower shares.
pub struct App {
    pub log: Arc<SledLog>,
    /// Reference data (agencies, procedures, targets) folded from the log.
    catalogue: RwLock<Catalogue>,
    /// The indicator tables, kept current by the follower.
    pub indicators: indicators::Indicators,
    pub settings: Settings,
    /// Signs checkpoints with the log's key and builds bundles.
    pub notary: audit::Notary,
    /// Turns true when a stop begins: followers and live streams end.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Live credentials by their token's SHA-256: every request is authenticated from memory, not from the store.
    /// Tokens change only through this service while it runs (the command line cannot open a log in use).
    credentials: RwLock<HashMap<String, Credential>>,
    /// Token revocations, one at a time (the last admin token is never revoked).
    revocations: Mutex<()>,
}

/// What a registration did: nothing, because the log says so already, or an append.
pub enum Registered {
    Unchanged,
    Written(AppendOutcome),
}

impl App {
    /// Builds the catalogue from the log's reference streams, the indicator tables from their nearest snapshot, and
    /// loads (or makes, on first start) the checkpoint signing key.
    pub fn open(settings: Settings, log: Arc<SledLog>) -> Result<App, String> {
        let mut catalogue = Catalogue::default();
        for prefix in ["agency/", "procedure/", "targets"] {
            for key in log.stream_keys(prefix).map_err(|e| e.to_string())? {
                for e in log.stream(&key).map_err(|e| e.to_string())? {
                    catalogue.apply(&e);
                }
            }
        }
        let indicators = indicators::Indicators::open_for(&log, &settings)?;
        let (key, made) = audit::SigningKey::load_or_create(
            &settings.audit_key_path(),
            settings.audit_origin.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        if made {
            tracing::info!(path = %settings.audit_key_path().display(), verifier_key = key.verifier_key(), "made a new checkpoint signing key; back it up with the data");
        }
        let credentials = log
            .credentials()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|c| c.revoked_at.is_none())
            .map(|c| (c.token_sha256.clone(), c))
            .collect();
        Ok(App {
            notary: audit::Notary::new(key),
            log,
            catalogue: RwLock::new(catalogue),
            indicators,
            settings,
            stopping: tokio::sync::watch::channel(false).0,
            credentials: RwLock::new(credentials),
            revocations: Mutex::new(()),
        })
    }

    /// The catalogue as it stands, to read.
    pub fn catalogue(&self) -> std::sync::RwLockReadGuard<'_, Catalogue> {
        self.catalogue.read().expect("catalogue lock")
    }

    /// Folds stored events into the catalogue (reference events only; applying one twice changes nothing).
    pub fn fold_reference(&self, events: &[StoredEvent]) {
        let mut catalogue = self.catalogue.write().expect("catalogue lock");
        for e in events {
            catalogue.apply(e);
        }
    }

    /// The live credential whose token hashes to `sha256`.
    pub fn credential(&self, sha256: &str) -> Option<Credential> {
        self.credentials
            .read()
            .expect("credentials lock")
            .get(sha256)
            .cloned()
    }

    /// Whether `credential` covers `agency`: every role but ingest covers all; an ingest credential covers its
    /// agency and what is registered below it.
    pub fn covers(&self, credential: &Credential, agency: &AgencyCode) -> bool {
        match (&credential.role, &credential.agency) {
            (Role::Ingest, Some(scope)) => self.catalogue().in_scope(scope, agency),
            (Role::Ingest, None) => false,
            _ => true,
        }
    }

    /// The caller's events, appended through the single writer. An ingest credential writes dossier events of
    /// agencies it covers, and nothing else; reference events are folded into the catalogue before this answers,
    /// so that the next request sees them.
    pub async fn submit(
        &self,
        credential: &Credential,
        events: Vec<Submitted>,
    ) -> Result<AppendOutcome, Error> {
        if credential.role == Role::Ingest {
            for (index, s) in events.iter().enumerate() {
                // The type first: a reference event (a `target.set` for every agency) may carry no agency at all.
                let (true, Some(agency)) = (
                    s.event.event_type().is_dossier_event(),
                    s.event.agency.as_ref(),
                ) else {
                    return Err(Error::Forbidden(format!("event {index}: ingest credentials write dossier events; reference data has its own endpoints")));
                };
                if !self.covers(credential, agency) {
                    return Err(Error::Forbidden(format!(
                        "event {index}: agency {agency} is outside this credential's scope"
                    )));
                }
            }
        }
        self.write(events, &credential.name).await
    }

    /// Appends and, when reference events were written, folds them into the catalogue before answering.
    async fn write(&self, events: Vec<Submitted>, source: &str) -> Result<AppendOutcome, Error> {
        // Only reference events change the catalogue; a batch of dossier events (the hot path) needs no read-back.
        let references = events
            .iter()
            .any(|s| !s.event.event_type().is_dossier_event());
        let outcome = self
            .log
            .append(AppendRequest {
                events,
                source: source.to_owned(),
            })
            .await?;
        if references {
            let written: Vec<u64> = outcome
                .receipts
                .iter()
                .filter(|r| !r.replayed)
                .map(|r| r.position)
                .collect();
            if let (Some(&first), Some(&last)) = (written.first(), written.last()) {
                // Read back off the async threads: a sled read may wait on the disk.
                let log = self.log.clone();
                let stored = tokio::task::spawn_blocking(move || {
                    log.read_after(first - 1, (last - first + 1) as usize)
                })
                .await;
                if let Ok(Ok(stored)) = stored {
                    self.fold_reference(&stored);
                }
            }
        }
        Ok(outcome)
    }

    /// Registers (or re-registers) agency `code` from a request body; nothing is written when the catalogue has
    /// it exactly so.
    pub async fn register_agency(
        &self,
        credential: &Credential,
        code: &AgencyCode,
        body: Value,
    ) -> Result<Registered, Error> {
        let event = reference_event(EventType::AgencyRegistered, Some(code), body)?;
        let EventData::AgencyRegistered(a) = &event.event.data else {
            unreachable!("parsed as its type")
        };
        let unchanged = self.catalogue().agency(code).is_some_and(|known| {
            known.name == a.name.as_str() && known.level == a.level && known.parent == a.parent
        });
        self.register(unchanged, event, credential).await
    }

    /// Offers `procedure` at agency `code` from a request body (whose `procedure`, if any, must be the same);
    /// nothing is written when the latest offer is exactly so.
    pub async fn offer_procedure(
        &self,
        credential: &Credential,
        code: &AgencyCode,
        procedure: &ProcedureCode,
        mut body: Value,
    ) -> Result<Registered, Error> {
        if !self.covers(credential, code) {
            return Err(Error::Forbidden(format!(
                "agency {code} is outside this credential's scope"
            )));
        }
        if let Some(map) = body.as_object_mut() {
            if map
                .get("procedure")
                .is_some_and(|p| p.as_str() != Some(procedure.as_str()))
            {
                return Err(Error::field(
                    "procedure",
                    format!("must be the procedure of the path, {procedure}, or left out"),
                ));
            }
            map.insert("procedure".into(), json!(procedure));
        }
        let event = reference_event(EventType::ProcedureOffered, Some(code), body)?;
        let EventData::ProcedureOffered(offer) = &event.event.data else {
            unreachable!("parsed as its type")
        };
        let unchanged = self
            .catalogue()
            .latest_offer(code, procedure)
            .is_some_and(|o| {
                o.name == offer.name.as_str()
                    && o.online_level == offer.online_level
                    && o.postal_receive == offer.postal_receive
                    && o.postal_return == offer.postal_return
                    && o.effective_from == offer.effective_from
            });
        self.register(unchanged, event, credential).await
    }

    /// Sets a target from a request body (always written: a target set again is a new decision).
    pub async fn set_target(
        &self,
        credential: &Credential,
        body: Value,
    ) -> Result<AppendOutcome, Error> {
        let event = reference_event(EventType::TargetSet, None, body)?;
        self.write(vec![event], &credential.name).await
    }

    async fn register(
        &self,
        unchanged: bool,
        event: Submitted,
        credential: &Credential,
    ) -> Result<Registered, Error> {
        if unchanged {
            return Ok(Registered::Unchanged);
        }
        Ok(Registered::Written(
            self.write(vec![event], &credential.name).await?,
        ))
    }

    /// Makes a token and makes it live at once.
    pub fn issue_token(
        &self,
        name: String,
        role: Role,
        agency: Option<AgencyCode>,
    ) -> Result<tokens::Issued, Error> {
        let issued = tokens::issue(&self.log, name, role, agency, Utc::now())?;
        self.credentials.write().expect("credentials lock").insert(
            issued.credential.token_sha256.clone(),
            issued.credential.clone(),
        );
        Ok(issued)
    }

    /// Revokes the live token `name`, unless it is the last live admin token.
    pub fn revoke_token(&self, name: &str) -> Result<(), Error> {
        // One revocation at a time, so that two admins revoking each other cannot both pass the check below.
        let _one_at_a_time = self.revocations.lock().expect("revocation lock");
        let all = self.log.credentials()?;
        let live: Vec<&Credential> = all.iter().filter(|c| c.revoked_at.is_none()).collect();
        let admins = live.iter().filter(|c| c.role == Role::Admin).count();
        if admins == 1 && live.iter().any(|c| c.name == name && c.role == Role::Admin) {
            return Err(Error::LastAdmin(name.to_owned()));
        }
        if !self.log.revoke_credential(name, Utc::now())? {
            return Err(Error::NotFound(
                "token_not_found",
                format!("no live token named {name:?}"),
            ));
        }
        self.credentials
            .write()
            .expect("credentials lock")
            .retain(|_, c| c.name != name);
        Ok(())
    }

    /// The dossier if `credential` may see it. For ingest credentials a dossier that does not exist and one
    /// outside the scope answer alike (forbidden), so that the answer does not tell which.
    pub fn visible_dossier(
        &self,
        credential: &Credential,
        code: &DossierCode,
    ) -> Result<(domain::DossierState, u64), Error> {
        let found = self
            .log
            .stream_head(code.as_str())?
            .and_then(|h| Some((h.dossier?, h.version)));
        match (credential.role, found) {
            (Role::Ingest, Some((d, v)))
                if d.agencies.iter().any(|a| self.covers(credential, a)) =>
            {
                Ok((d, v))
            }
            (Role::Ingest, _) => Err(Error::Forbidden(
                "this dossier is not visible to this credential".into(),
            )),
            (_, Some(found)) => Ok(found),
            (_, None) => Err(Error::NotFound(
                "dossier_not_found",
                format!("no dossier {code}"),
            )),
        }
    }

    /// A dossier's stored events, in order, if `credential` may see it.
    pub fn trail(
        &self,
        credential: &Credential,
        code: &DossierCode,
    ) -> Result<(domain::DossierState, Vec<StoredEvent>), Error> {
        let (d, _) = self.visible_dossier(credential, code)?;
        let events = self.log.stream(d.dossier.as_str())?;
        Ok((d, events))
    }

    /// An indicator answer (a table or a series), from the live engine or replayed from history.
    pub fn answer_indicators(
        &self,
        query: &indicators::Query,
    ) -> Result<indicators::Answer, Error> {
        self.indicators
            .answer(&self.log, query)
            .map_err(|e| match e {
                indicators::IndicatorError::Invalid(detail) => {
                    Error::bad_parameter("as_of", detail)
                }
                indicators::IndicatorError::Storage(detail) => Error::Unavailable(detail),
            })
    }

    /// What a graceful stop leaves behind: a snapshot of the live indicator tables (so that the next start need
    /// not replay what this one folded) and a last signed checkpoint of the head. Failures are reported, not fatal.
    pub fn at_stop(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if let Err(why) = self.indicators.save_if_newer(&self.log) {
            failures.push(format!(
                "could not write an indicator snapshot at stop: {why}"
            ));
        }
        if let Err(why) = self.notary.checkpoint_head(&self.log, Utc::now()) {
            failures.push(format!("could not sign a checkpoint at stop: {why}"));
        }
        failures
    }
}

/// A reference event made from a request body: a fresh UUIDv7 id, now as its business time, and the body as its
/// `data`, parsed by the very parser senders go through, so that both validate alike. Errors name the body's
/// fields (without the `data.` prefix).
fn reference_event(
    ty: EventType,
    agency: Option<&AgencyCode>,
    body: Value,
) -> Result<Submitted, Error> {
    if !body.is_object() {
        return Err(Error::MalformedJson(
            "the body must be a JSON object".into(),
        ));
    }
    let mut envelope = json!({ "id": Uuid::now_v7(), "type": ty.as_str(), "occurred_at": Utc::now().to_rfc3339(), "data": body });
    if let Some(a) = agency {
        envelope["agency"] = json!(a);
    }
    domain::parse_envelope(&envelope, 0, domain::Form::Submitted).map_err(|errors| {
        Error::Validation(
            errors
                .into_iter()
                .map(|e| domain::ValidationError {
                    field: e.field.strip_prefix("data.").unwrap_or(&e.field).to_owned(),
                    id: None,
                    ..e
                })
                .collect(),
        )
    })
}
