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

pub mod adapter;
pub mod catalogue;
pub mod check;
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
use domain::names::{nfc, same_text};
use domain::{AgencyCode, Credential, DossierCode, ProcedureCode, Role, StoredEvent, Submitted};
use projections::Catalogue;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use store::{AppendOutcome, AppendRequest, Store};
use uuid::Uuid;

/// The running service: what every request, command and follower shares.
pub struct App {
    pub log: Arc<dyn Store>,
    /// Reference data (agencies, procedures, targets) folded from the log.
    catalogue: RwLock<Catalogue>,
    /// The log position the catalogue has folded to: published by the follower, awaited by reference writes.
    catalogue_at: tokio::sync::watch::Sender<u64>,
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
    /// How many revocations have taken effect: what a stream or a long request authorised by a token waits on
    /// (`App::revoked`), so that a revocation ends it at once.
    revoked: tokio::sync::watch::Sender<u64>,
    /// The DVCQG sync adapter's mapping of the site's codes.
    pub dvcqg: dvcqg::Mapping,
}

/// What the log says of one accepted event.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    pub id: Uuid,
    pub position: u64,
    pub version: u64,
    /// The event was already stored with the same content; this is its original receipt.
    pub replayed: bool,
}

impl From<&store::Receipt> for Receipt {
    fn from(r: &store::Receipt) -> Receipt {
        Receipt {
            id: r.id,
            position: r.position,
            version: r.version,
            replayed: r.replayed,
        }
    }
}

/// A PUT that would change nothing writes nothing.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unchanged {
    pub unchanged: bool,
}

/// A dossier's current state.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DossierView {
    #[serde(flatten)]
    pub state: domain::DossierState,
    pub status: domain::Status,
    /// On time or not, as of now (null without a due time).
    pub on_time: Option<domain::Timeliness>,
    /// The dossier stream's last version.
    pub version: u64,
}

/// A dossier's trail: its stored events, in order.
pub struct Trail {
    pub dossier: DossierCode,
    pub events: Vec<store::RawEvent>,
}

impl Trail {
    /// `{"dossier": …, "events": [...]}`, each event its stored bytes with its leaf hash added as the last field:
    /// the bytes are copied, never decoded and encoded again.
    pub fn to_json(&self) -> Vec<u8> {
        let size: usize = self.events.iter().map(|e| e.bytes.len() + 64).sum();
        let mut out = Vec::with_capacity(size + 64);
        out.extend_from_slice(b"{\"dossier\":");
        out.extend_from_slice(&serde_json::to_vec(&self.dossier).expect("codes serialize"));
        out.extend_from_slice(b",\"events\":[");
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let object = e
                .bytes
                .strip_suffix(b"}")
                .expect("a stored event is a JSON object");
            out.extend_from_slice(object);
            let leaf = store::record_hash(&e.bytes).to_string();
            out.extend_from_slice(format!(",\"leaf_hash\":\"{leaf}\"}}").as_bytes());
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// How long a reference write waits for the follower to fold it into the catalogue.
const CATALOGUE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a registration did: nothing, because the log says so already, or an append.
pub enum Registered {
    Unchanged,
    Written(AppendOutcome),
}

/// An indicator question's failure, as the API answers it.
fn indicator_error(e: indicators::IndicatorError) -> Error {
    match e {
        indicators::IndicatorError::Invalid(detail) => Error::bad_parameter("as_of", detail),
        indicators::IndicatorError::UnknownProfile(detail) => {
            Error::bad_parameter("profile", detail)
        }
        other => Error::Unavailable(other.to_string()),
    }
}

/// The catalogue of reference data, folded from the log's reference streams.
pub fn catalogue_of(log: &dyn Store) -> Result<Catalogue, String> {
    let mut catalogue = Catalogue::default();
    for prefix in ["agency/", "procedure/", "targets"] {
        for key in log.stream_keys(prefix).map_err(|e| e.to_string())? {
            for e in log.stream(&key).map_err(|e| e.to_string())? {
                catalogue.apply(&e);
            }
        }
    }
    Ok(catalogue)
}

impl App {
    /// Builds the catalogue from the log's reference streams, the indicator tables from their nearest snapshot, and
    /// loads (or makes, on first start) the checkpoint signing key.
    pub fn open(settings: Settings, log: Arc<dyn Store>) -> Result<App, String> {
        let catalogue = catalogue_of(&*log)?;
        let dvcqg = settings.dvcqg_mapping()?;
        let indicators =
            indicators::Indicators::open_for(&*log, &settings).map_err(|e| e.to_string())?;
        let key_path = settings.audit_key_path();
        let (key, made) = if settings.database.is_some() {
            // Several nodes sign one log: the key is the operator's to make once and give every node, never made
            // here (a node that made its own would sign the log under a second key and origin).
            let key = audit::SigningKey::load(&key_path).map_err(|e| {
                format!(
                    "{}: {e}; with the log on PostgreSQL the signing key is not made at start: make it once with `casetrail audit key --audit-key {}` and give every node that file",
                    key_path.display(),
                    key_path.display()
                )
            })?;
            (key, false)
        } else {
            audit::SigningKey::load_or_create(&key_path, settings.audit_origin.as_deref())
                .map_err(|e| e.to_string())?
        };
        log.pin(key.verifier_key(), &settings.decision_rules()?)
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
            catalogue_at: tokio::sync::watch::channel(log.head().size).0,
            log,
            catalogue: RwLock::new(catalogue),
            indicators,
            settings,
            stopping: tokio::sync::watch::channel(false).0,
            credentials: RwLock::new(credentials),
            revoked: tokio::sync::watch::channel(0).0,
            dvcqg,
        })
    }

    /// What the nodes of this log prove themselves with when one hands another a batch (from the signing key).
    pub fn node_secret(&self) -> &str {
        self.notary.key().node_secret()
    }

    /// The catalogue as it stands, to read.
    pub fn catalogue(&self) -> std::sync::RwLockReadGuard<'_, Catalogue> {
        self.catalogue.read().expect("catalogue lock")
    }

    /// Publishes that the catalogue has folded every event up to `position` (it never goes back).
    pub fn catalogue_folded(&self, position: u64) {
        self.catalogue_at.send_if_modified(|at| {
            let moved = position > *at;
            if moved {
                *at = position;
            }
            moved
        });
    }

    /// Waits until the follower has folded the catalogue up to `position`, for at most `CATALOGUE_WAIT`; after
    /// that the write answers anyway (it is durable; the catalogue follows as soon as the follower does).
    async fn catalogue_reaches(&self, position: u64) {
        let mut at = self.catalogue_at.subscribe();
        let reached = tokio::time::timeout(CATALOGUE_WAIT, at.wait_for(|at| *at >= position)).await;
        if !matches!(reached, Ok(Ok(_))) {
            tracing::warn!(
                position,
                "the follower has not folded a reference write into the catalogue yet"
            );
        }
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

    /// The log's size to answer a question that names position or size `asked`: the head this node knows, or,
    /// when the question names more, the head the store holds now: on a log several nodes write, a position that
    /// another node acknowledged is answered here at once, not refused as past the log.
    pub fn head_for(&self, asked: Option<u64>) -> Result<u64, Error> {
        let head = self.log.head().size;
        match asked {
            Some(p) if p > head => Ok(self.log.fresh_head()?.size),
            _ => Ok(head),
        }
    }

    /// Brings the catalogue up to the store's head (another node may have registered an agency a moment ago):
    /// what a refusal for want of reference data waits for first.
    async fn catalogue_current(&self) {
        let log = self.log.clone();
        if let Ok(Ok(head)) = tokio::task::spawn_blocking(move || log.fresh_head()).await {
            self.catalogue_reaches(head.size).await;
        }
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
                if !self.covers(credential, agency) && {
                    self.catalogue_current().await;
                    !self.covers(credential, agency)
                } {
                    return Err(Error::Forbidden(format!(
                        "event {index}: agency {agency} is outside this credential's scope"
                    )));
                }
            }
        }
        self.write(events, &credential.name).await
    }

    /// Appends and, when reference events were written, answers once the follower has folded them into the
    /// catalogue, so that the caller's next request sees them.
    async fn write(&self, events: Vec<Submitted>, source: &str) -> Result<AppendOutcome, Error> {
        // Only reference events change the catalogue; a batch of dossier events (the hot path) waits for nothing.
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
            if let Some(last) = outcome.receipts.iter().map(|r| r.position).max() {
                self.catalogue_reaches(last).await;
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
            same_text(&known.name, a.name.as_str())
                && known.level == a.level
                && known.parent == a.parent
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
        if !self.covers(credential, code) && {
            self.catalogue_current().await;
            !self.covers(credential, code)
        } {
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
                same_text(&o.name, offer.name.as_str())
                    && o.online_level == offer.online_level
                    && o.postal_receive == offer.postal_receive
                    && o.postal_return == offer.postal_return
                    && o.effective_from == offer.effective_from
                    && o.field == offer.field
                    && o.field_name.as_deref().map(nfc)
                        == offer.field_name.as_ref().map(|n| nfc(n.as_str()))
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
        let issued = tokens::issue(&*self.log, name, role, agency, Utc::now())?;
        self.credentials.write().expect("credentials lock").insert(
            issued.credential.token_sha256.clone(),
            issued.credential.clone(),
        );
        Ok(issued)
    }

    /// Replaces the live credentials with those of `all` that are live; if any live one is gone, every stream and
    /// long request waiting on a revocation looks again.
    pub fn reload_credentials(&self, all: Vec<Credential>) {
        let live: HashMap<String, Credential> = all
            .into_iter()
            .filter(|c| c.revoked_at.is_none())
            .map(|c| (c.token_sha256.clone(), c))
            .collect();
        let mut credentials = self.credentials.write().expect("credentials lock");
        let revoked = credentials.keys().any(|k| !live.contains_key(k));
        *credentials = live;
        drop(credentials);
        if revoked {
            self.revoked.send_modify(|n| *n += 1);
        }
    }

    /// Revokes the live token `name`, unless it is the last live admin token.
    pub fn revoke_token(&self, name: &str) -> Result<(), Error> {
        // The store decides the last-admin rule in the same step as the revocation (one transaction on
        // PostgreSQL), so that two admins revoking each other, on two nodes too, cannot both pass it.
        match self.log.revoke_credential(name, Utc::now())? {
            store::Revoked::Revoked => {}
            store::Revoked::LastAdmin => return Err(Error::LastAdmin(name.to_owned())),
            store::Revoked::NoLiveCredential => {
                return Err(Error::NotFound(
                    "token_not_found",
                    format!("no live token named {name:?}"),
                ))
            }
        }
        self.credentials
            .write()
            .expect("credentials lock")
            .retain(|_, c| c.name != name);
        // After the credential is gone from memory, so that whoever wakes finds it gone.
        self.revoked.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Resolves once the token that hashes to `sha256` is no longer live (at once if it is not live now): a
    /// stream or a long request authorised by it selects on this and ends. It wakes on every revocation, before
    /// `revoke_token` returns, so nothing is produced for a revoked token after its revocation is answered.
    pub fn revoked(
        self: &Arc<Self>,
        sha256: String,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let app = self.clone();
        let mut revocations = self.revoked.subscribe();
        async move {
            loop {
                // Marked seen before the look-up, so that a revocation between the two still wakes the wait.
                revocations.borrow_and_update();
                if app.credential(&sha256).is_none() {
                    return;
                }
                if revocations.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
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

    /// The dossier's current state, if `credential` may see it, judged at `now` (or at its latest event if that
    /// is later: a business time may run a few minutes ahead of the server clock, and the indicators' judging
    /// instant is likewise never before an event's time).
    pub fn dossier_view(
        &self,
        credential: &Credential,
        code: &DossierCode,
        now: chrono::DateTime<Utc>,
    ) -> Result<DossierView, Error> {
        let (d, version) = self.visible_dossier(credential, code)?;
        Ok(DossierView {
            status: d.status(),
            on_time: d.timeliness(now.max(d.last_occurred_at.with_timezone(&Utc))),
            state: d,
            version,
        })
    }

    /// Every token, never its secret.
    pub fn token_list(&self) -> Result<tokens::TokenList, Error> {
        let tokens = self
            .log
            .credentials()?
            .into_iter()
            .map(Into::into)
            .collect();
        Ok(tokens::TokenList { tokens })
    }

    /// A dossier's stored events, in order, as stored, if `credential` may see it.
    pub fn trail(&self, credential: &Credential, code: &DossierCode) -> Result<Trail, Error> {
        let (d, _) = self.visible_dossier(credential, code)?;
        let events = self.log.stream_raw(d.dossier.as_str())?;
        Ok(Trail {
            dossier: d.dossier,
            events,
        })
    }

    /// An indicator answer (a table or a series), from the live engine or replayed from history.
    pub fn answer_indicators(
        &self,
        query: &indicators::Query,
    ) -> Result<indicators::Answer, Error> {
        self.indicators
            .answer(&*self.log, query)
            .map_err(indicator_error)
    }

    /// The answer the official form `by` reads (`Indicators::form_answer`).
    pub fn answer_form(
        &self,
        query: &indicators::Query,
        by: projections::indicators::form::FormBy,
    ) -> Result<indicators::Answer, Error> {
        self.indicators
            .form_answer(&*self.log, query, by)
            .map_err(indicator_error)
    }

    /// A published table checked: its sums, its printed percentages, and its counts against the log when a
    /// period is named.
    pub fn check_report(
        &self,
        csv: &[u8],
        question: &check::CheckQuestion,
    ) -> Result<projections::indicators::check::CheckReport, Error> {
        check::check_published(&self.indicators, &*self.log, csv, question).map_err(|e| match e {
            indicators::IndicatorError::Invalid(detail) => Error::bad_parameter("table", detail),
            indicators::IndicatorError::UnknownProfile(detail) => {
                Error::bad_parameter("profile", detail)
            }
            other => Error::Unavailable(other.to_string()),
        })
    }

    /// What a graceful stop leaves behind: a snapshot of the live indicator tables (so that the next start need
    /// not replay what this one folded) and a last signed checkpoint of the head; neither once the log refuses
    /// writes. Failures are reported, not fatal.
    pub fn at_stop(&self) -> Vec<String> {
        if let Some(why) = self.log.write_failure() {
            // Both would wait for a disk that failed, or stopped answering.
            return vec![format!(
                "wrote no indicator snapshot and signed no checkpoint at stop: {why}"
            )];
        }
        let mut failures = Vec::new();
        if let Err(why) = self.indicators.save_if_newer(&*self.log) {
            failures.push(format!(
                "could not write an indicator snapshot at stop: {why}"
            ));
        }
        // The last checkpoint is the periodic signer's to sign (on a log several nodes serve, one node).
        if !self.log.periodic_signer() {
            return failures;
        }
        if let Err(why) = self.notary.checkpoint_head(&*self.log, Utc::now()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The trail as it was built before it was spliced from stored bytes: each event decoded to a JSON value, its
    /// leaf hash added, and the whole encoded again.
    fn trail_by_values(dossier: &DossierCode, events: &[StoredEvent]) -> Vec<u8> {
        let with_leaves: Vec<Value> = events
            .iter()
            .map(|e| {
                let bytes = e.canonical_bytes();
                let mut v: Value = serde_json::from_slice(&bytes).unwrap();
                v["leaf_hash"] = json!(store::record_hash(&bytes).to_string());
                v
            })
            .collect();
        serde_json::to_vec(&json!({ "dossier": dossier, "events": with_leaves })).unwrap()
    }

    #[test]
    fn a_trail_spliced_from_stored_bytes_is_byte_identical_to_one_encoded_again() {
        let period = domain::Period::Quarter {
            year: 2019,
            quarter: 1,
        };
        let events: Vec<StoredEvent> =
            generator::generate(&generator::Config::new(3, 300, period, period));
        let mut by_dossier: HashMap<DossierCode, Vec<StoredEvent>> = HashMap::new();
        for e in events {
            if let Some(d) = e.event.dossier.clone() {
                by_dossier.entry(d).or_default().push(e);
            }
        }
        assert!(by_dossier.len() > 100);
        for (dossier, events) in by_dossier {
            let trail = Trail {
                dossier: dossier.clone(),
                events: events.iter().map(store::RawEvent::of).collect(),
            };
            assert_eq!(
                String::from_utf8(trail.to_json()).unwrap(),
                String::from_utf8(trail_by_values(&dossier, &events)).unwrap()
            );
        }
        let empty = Trail {
            dossier: DossierCode::parse("D-1").unwrap(),
            events: vec![],
        };
        assert_eq!(empty.to_json(), trail_by_values(&empty.dossier, &[]));
    }
}
