//! The DVCQG sync adapter (`POST /v1/adapters/dvcqg`, `casetrail import-dvcqg`): a body of sync requests read
//! under the site's mapping, each compared with its dossier in the log, and what the log is missing written in
//! one all-or-nothing append. The reading and the comparison are the `dvcqg` crate's; this module reads the log,
//! checks the caller's scope, writes, and answers in the portal's envelope with casetrail's receipts alongside.

use crate::{App, Error, Receipt};
use domain::event::OfferLevel;
use domain::{Credential, DossierCode, Role, Submitted, ValidationError};
use dvcqg::{Item, Known, Mapping, Problem, ProblemKind, Request, Service};
use projections::Catalogue;
use serde_json::{json, Value};
use std::collections::HashMap;
use store::{AppendRequest, Refusal};

pub use dvcqg::wire::{in_portal_form, parse_flag, service_named, Gateway, SERVICE_NAMES};

/// How many times a body is planned again when another writer changed its dossiers first.
pub const ATTEMPTS: usize = 3;

/// What one item of a request came to.
struct ItemPlan {
    request: usize,
    item: usize,
    dossier: DossierCode,
    /// Indexes of its events in the batch.
    events: std::ops::Range<usize>,
    notes: Vec<String>,
    /// For a lookup: the dossier in the portal's terms, when the caller may see it.
    found: Option<Value>,
}

/// A body planned against the log: the batch to append and what each item adds to it.
pub struct Planned {
    pub events: Vec<Submitted>,
    items: Vec<ItemPlan>,
    requests: Vec<Request>,
    /// Its events that the payload did not date, dated by the request's arrival.
    dated_on_arrival: std::collections::HashSet<uuid::Uuid>,
}

impl Planned {
    /// How many events the plan would write.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Which dossiers and agencies a caller may touch.
pub trait Scope {
    /// Whether the caller may write events of `agency`.
    fn covers(&self, agency: &domain::AgencyCode) -> bool;
}

/// Everything: an admin, or the offline import.
pub struct Everything;

impl Scope for Everything {
    fn covers(&self, _: &domain::AgencyCode) -> bool {
        true
    }
}

struct CredentialScope<'a> {
    app: &'a App,
    credential: &'a Credential,
}

impl Scope for CredentialScope<'_> {
    fn covers(&self, agency: &domain::AgencyCode) -> bool {
        self.app.covers(self.credential, agency)
    }
}

fn problems_error(problems: Vec<(usize, Problem)>) -> Error {
    let all = |k: ProblemKind| problems.iter().all(|(_, p)| p.kind == k);
    let kind = if problems.iter().any(|(_, p)| p.kind == ProblemKind::Invalid) {
        ProblemKind::Invalid
    } else if all(ProblemKind::NotFound) {
        ProblemKind::NotFound
    } else if all(ProblemKind::OutOfOrder) {
        ProblemKind::OutOfOrder
    } else {
        ProblemKind::Conflict
    };
    // Every problem is listed, whichever kind names the answer.
    let errors: Vec<ValidationError> = problems
        .into_iter()
        .map(|(index, p)| ValidationError {
            index,
            id: None,
            field: p.field,
            message: p.message,
        })
        .collect();
    let code = match kind {
        ProblemKind::Invalid => return Error::Validation(errors),
        ProblemKind::NotFound => crate::error::code::dossier_not_found,
        ProblemKind::OutOfOrder => crate::error::code::sync_out_of_order,
        ProblemKind::Conflict => crate::error::code::sync_conflict,
    };
    Error::Sync {
        code,
        problems: errors,
    }
}

/// The catalogue as the adapter asks it.
struct Offers<'a>(&'a Catalogue);

impl dvcqg::Catalogue for Offers<'_> {
    fn offered(
        &self,
        agency: &domain::AgencyCode,
        procedure: &domain::ProcedureCode,
        day: chrono::NaiveDate,
    ) -> Option<domain::event::OnlineLevel> {
        use domain::event::OnlineLevel;
        let offer = self
            .0
            .offers_on(day, Some(agency))
            .into_iter()
            .find(|o| &o.procedure == procedure)?;
        match offer.online_level {
            OfferLevel::None => None,
            OfferLevel::Level3 => Some(OnlineLevel::Level3),
            OfferLevel::Level4 => Some(OnlineLevel::Level4),
            OfferLevel::Partial => Some(OnlineLevel::Partial),
            OfferLevel::Full => Some(OnlineLevel::Full),
        }
    }

    fn registered(&self, agency: &domain::AgencyCode) -> bool {
        self.0.agency(agency).is_some()
    }
}

/// Plans `requests` against the log: every item compared with its dossier as the log has it (and as the items
/// before it in the body leave it). Nothing is written. Every problem of every item is reported at once.
pub fn plan(
    log: &dyn store::Store,
    catalogue: &Catalogue,
    mapping: &Mapping,
    requests: Vec<Request>,
    scope: &dyn Scope,
) -> Result<Planned, Error> {
    let mut known: HashMap<DossierCode, Known> = HashMap::new();
    let mut events: Vec<Submitted> = Vec::new();
    let mut items = Vec::new();
    let mut problems: Vec<(usize, Problem)> = Vec::new();
    let mut forbidden: Vec<String> = Vec::new();
    let mut dated_on_arrival = std::collections::HashSet::new();
    let offers = Offers(catalogue);
    for (r, request) in requests.iter().enumerate() {
        for (i, item) in request.items.iter().enumerate() {
            let path = format!("data[{i}]");
            let dossier = item.dossier().clone();
            if !known.contains_key(&dossier) {
                let stored = log.stream(dossier.as_str())?;
                let k = Known::of(stored.iter().map(|e| &e.event));
                known.insert(dossier.clone(), k);
            }
            let k = known.get_mut(&dossier).expect("just read");
            let visible = k
                .life
                .as_ref()
                .is_some_and(|l| l.agencies.iter().any(|a| scope.covers(a)));
            let planned = match item {
                Item::Lookup(_) => {
                    let found = k
                        .life
                        .as_ref()
                        .filter(|_| visible)
                        .map(|l| dvcqg::lookup_answer(&dossier, l, mapping));
                    items.push(ItemPlan {
                        request: r,
                        item: i,
                        dossier,
                        events: events.len()..events.len(),
                        notes: Vec::new(),
                        found,
                    });
                    continue;
                }
                Item::Upsert(u) => {
                    if let Some(a) = u.agency.as_ref().filter(|a| !scope.covers(a)) {
                        forbidden.push(format!(
                            "request {r} {path}: agency {a} is outside this credential's scope"
                        ));
                        continue;
                    }
                    if k.life.is_some() && !visible {
                        forbidden.push(format!("request {r} {path}: dossier {dossier} is not visible to this credential"));
                        continue;
                    }
                    dvcqg::upsert(u, k, &offers, &path)
                }
                // A dossier the caller may not see answers as one that does not exist, so that the answer does not
                // tell which.
                Item::Step(s) if k.life.is_some() && !visible => {
                    dvcqg::step(s, &Known::default(), &offers, &path)
                }
                Item::Step(s) => dvcqg::step(s, k, &offers, &path),
            };
            match planned {
                Err(ps) => problems.extend(ps.into_iter().map(|p| (r, p))),
                Ok(plan) => {
                    dated_on_arrival.extend(plan.dated_on_arrival);
                    let start = events.len();
                    for e in plan.events {
                        if let Some(a) = e.agency.as_ref().filter(|a| !scope.covers(a)) {
                            forbidden.push(format!("request {r} {path}: the {} it implies happens at agency {a}, outside this credential's scope", e.event_type()));
                        }
                        // Each event carries the version it was planned on, so that a concurrent writer makes this
                        // append fail (and be planned again) instead of interleaving with it.
                        let expected = Some(k.version);
                        k.apply(&e);
                        events.push(Submitted {
                            event: e,
                            expected_version: expected,
                            stored: None,
                            source: None,
                        });
                    }
                    items.push(ItemPlan {
                        request: r,
                        item: i,
                        dossier,
                        events: start..events.len(),
                        notes: plan.notes,
                        found: None,
                    });
                }
            }
        }
    }
    if !forbidden.is_empty() {
        return Err(Error::Forbidden(forbidden.join("; ")));
    }
    if !problems.is_empty() {
        return Err(problems_error(problems));
    }
    Ok(Planned {
        events,
        items,
        requests,
        dated_on_arrival,
    })
}

impl Planned {
    /// The log's refusals of this plan's events, said of the items that implied them.
    pub fn refused(&self, refusals: &[store::EventRefusal]) -> Error {
        refusals_error(self, refusals)
    }

    /// The requests planned, in order.
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// The append of this plan under `source`: an event the payload did not date, dated by the request's arrival,
    /// has a source of its own that says so (`…:arrival`).
    pub fn append_request(&self, name: &str, mapping: &Mapping) -> AppendRequest {
        let marked = source_marked(name, mapping, ":arrival");
        let events = self
            .events
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if self.dated_on_arrival.contains(&s.event.id) {
                    s.source = Some(marked.clone());
                }
                s
            })
            .collect();
        AppendRequest {
            events,
            source: source_of(name, mapping),
        }
    }
}

/// A refusal of the log's, said of the item whose event it refused.
fn refusals_error(planned: &Planned, refusals: &[store::EventRefusal]) -> Error {
    let problems: Vec<ValidationError> = refusals
        .iter()
        .map(|x| {
            let item = planned.items.iter().find(|it| it.events.contains(&x.index));
            let e = &planned.events[x.index].event;
            let (request, field) = item.map_or((0, String::new()), |it| {
                (it.request, format!("data[{}]", it.item))
            });
            ValidationError {
                index: request,
                id: None,
                field,
                message: format!(
                    "the log refuses {} of dossier {} at {}: {}: {}",
                    e.event_type(),
                    e.dossier.as_ref().map_or("", |d| d.as_str()),
                    e.occurred_at,
                    x.refusal.code(),
                    x.refusal
                ),
            }
        })
        .collect();
    // The log's own code when every refusal has the same one (as `POST /v1/events` answers), else a conflict.
    let mut codes = refusals.iter().map(|x| x.refusal.code());
    let first = codes.next().unwrap_or(crate::error::code::sync_conflict);
    let code = if codes.all(|c| c == first) {
        first
    } else {
        crate::error::code::sync_conflict
    };
    Error::Sync { code, problems }
}

/// The source written on the adapter's events: the credential's name and the mapping's tag, cut to fit.
pub fn source_of(name: &str, mapping: &Mapping) -> String {
    source_marked(name, mapping, "")
}

/// [`source_of`] with `mark` after the tag, the name cut to make room for it.
fn source_marked(name: &str, mapping: &Mapping, mark: &str) -> String {
    let tag = mapping.tag();
    let room = 64 - tag.len() - 1 - mark.len();
    let name: String = name.chars().take(room).collect();
    format!("{name}@{tag}{mark}")
}

/// The answer: the portal's envelope, `result` for lookups, and casetrail's account alongside.
fn answer(
    mapping: &Mapping,
    source: &str,
    planned: &Planned,
    receipts: &[store::Receipt],
) -> Value {
    let mut requests: Vec<Value> = planned
        .requests
        .iter()
        .map(|r| {
            json!({
                "service": r.service.name(),
                "items": [],
                "dropped": r.dropped,
            })
        })
        .collect();
    let mut found = Vec::new();
    let (mut written, mut replayed) = (0, 0);
    for it in &planned.items {
        let mine: Vec<Receipt> = receipts
            .get(it.events.clone())
            .unwrap_or_default()
            .iter()
            .map(Receipt::from)
            .collect();
        written += mine.iter().filter(|r| !r.replayed).count();
        replayed += mine.iter().filter(|r| r.replayed).count();
        let types: Vec<String> = planned.events[it.events.clone()]
            .iter()
            .map(|s| s.event.event_type().to_string())
            .collect();
        let mut entry = json!({
            "MaHoSo": it.dossier,
            "events": types,
            "receipts": mine,
            "notes": it.notes,
        });
        let request = &planned.requests[it.request];
        if request.service == Service::Lookup {
            entry["found"] = json!(it.found.is_some());
            if let Some(f) = &it.found {
                found.push(f.clone());
            }
        } else if let Some(said) = request.is_updating {
            // What the client said; the adapter compared the dossier with the log whatever it said.
            entry["isUpdating"] = json!(said);
        }
        requests[it.request]["items"]
            .as_array_mut()
            .expect("an array")
            .push(entry);
    }
    let message = if written + replayed == 0 {
        "Thành công: không có gì mới (nothing new)".to_string()
    } else {
        format!("Thành công: {written} sự kiện mới (events written: {written}, already stored: {replayed})")
    };
    let mut body = json!({
        "error_code": mapping.success_code,
        "message": message,
    });
    if planned
        .requests
        .iter()
        .any(|r| r.service == Service::Lookup)
    {
        body["result"] = Value::Array(found);
    }
    body["casetrail"] = json!({
        "mapping": {"id": mapping.id, "title": mapping.title, "sha256": mapping.sha256},
        "source": source,
        "written": written,
        "replayed": replayed,
        "requests": requests,
    });
    body
}

/// What writing a plan came to.
pub enum Written {
    /// The answer, in the portal's envelope.
    Answer(Value),
    /// Another writer changed one of the dossiers between the plan and the append: plan again.
    Raced,
}

impl App {
    /// Reads a body of DVCQG sync requests under the site's mapping, and checks the role: upserts and steps need
    /// the ingest or admin role (ingest within its agency's subtree); lookups are open to every role (an ingest
    /// credential sees only the dossiers it covers; others answer as not found).
    pub fn dvcqg_requests(
        &self,
        credential: &Credential,
        body: &Value,
    ) -> Result<Vec<Request>, Error> {
        let mut requests = read(body, &self.dvcqg)?;
        // Now, to the second (the sync's precision), in Vietnam time: what dates an end the payload leaves undated.
        let now = chrono::Utc::now().with_timezone(&domain::calendar::vietnam());
        let arrived = now - chrono::Duration::nanoseconds(now.timestamp_subsec_nanos() as i64);
        for r in &mut requests {
            for item in &mut r.items {
                if let Item::Upsert(u) = item {
                    u.arrived_at = Some(arrived);
                }
            }
        }
        let writes = requests.iter().any(|r| r.service != Service::Lookup);
        if writes && !matches!(credential.role, Role::Ingest | Role::Admin) {
            return Err(Error::Forbidden(format!(
                "the {} role may not write; DongBoHoSoMC and CapNhatTienDoHoSoMC need an ingest or admin token",
                credential.role
            )));
        }
        Ok(requests)
    }

    /// Plans requests against the log for `credential` (reads the store: blocking).
    pub fn dvcqg_plan(
        &self,
        credential: &Credential,
        requests: Vec<Request>,
    ) -> Result<Planned, Error> {
        let scope = CredentialScope {
            app: self,
            credential,
        };
        let scope: &dyn Scope = if credential.role == Role::Ingest {
            &scope
        } else {
            &Everything
        };
        let catalogue = self.catalogue();
        plan(&*self.log, &catalogue, &self.dvcqg, requests, scope)
    }

    /// Writes a plan in one append (nothing when it adds nothing) and answers. The events' source is the
    /// credential's name and the mapping's tag.
    pub async fn dvcqg_write(
        &self,
        credential: &Credential,
        planned: Planned,
    ) -> Result<Written, Error> {
        let source = source_of(&credential.name, &self.dvcqg);
        if planned.is_empty() {
            return Ok(Written::Answer(answer(&self.dvcqg, &source, &planned, &[])));
        }
        let appended = self
            .log
            .append(planned.append_request(&credential.name, &self.dvcqg))
            .await;
        match appended {
            Ok(outcome) => Ok(Written::Answer(answer(
                &self.dvcqg,
                &source,
                &planned,
                &outcome.receipts,
            ))),
            // Any version conflict means another writer changed a dossier since the plan: the other refusals may be
            // only its consequence, so the body is planned again.
            Err(store::AppendError::Refused(r))
                if r.iter().any(|x| {
                    matches!(
                        x.refusal,
                        Refusal::Rule(domain::Rejection::VersionConflict { .. })
                    )
                }) =>
            {
                Ok(Written::Raced)
            }
            Err(store::AppendError::Refused(r)) => Err(refusals_error(&planned, &r)),
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads a body of sync requests under `mapping`, every problem said as the API says it.
pub fn read(body: &Value, mapping: &Mapping) -> Result<Vec<Request>, Error> {
    dvcqg::read_body(body, mapping).map_err(problems_error)
}

/// The requests a refusal is about: for each problem, its request's index (empty for other errors).
pub fn refused_requests(e: &Error) -> Vec<usize> {
    match e {
        Error::Validation(p) | Error::Sync { problems: p, .. } => {
            p.iter().map(|p| p.index).collect()
        }
        _ => Vec::new(),
    }
}

/// Whether a refusal is only of steps whose dossier the log does not have yet (an import defers them).
pub fn is_step_before_upsert(e: &Error) -> bool {
    matches!(e, Error::Sync { code, .. } if *code == crate::error::code::dossier_not_found)
}
