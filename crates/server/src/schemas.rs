//! The types the API description names: the app's answer types (re-exported), and description types for what is
//! not a Rust value on the wire (request bodies, events sent as stored bytes, problems). Routes import these;
//! `openapi.rs` assembles the document from the routes and these, so nothing here depends on a route.

pub use app::catalogue::CatalogueView;
pub use app::proofs::{
    AuditHead, AuditKey, CheckpointList, CheckpointView, ConsistencyAnswer, InclusionAnswer,
};
pub use app::tokens::{TokenCreated, TokenList};
pub use app::{DossierView, Receipt, Unchanged};
use domain::event::*;
use domain::{AgencyCode, DossierCode, Role};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// An event as a sender posts it (`events.md` §1). Unknown fields are refused.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Envelope {
    /// Chosen by the sender (UUIDv7 recommended); the idempotency key, for ever.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub ty: EventType,
    /// The dossier code: for dossier events only.
    pub dossier: Option<DossierCode>,
    /// Where the event happened; optional only for `target.set`.
    pub agency: Option<AgencyCode>,
    /// Business time, RFC 3339 with an explicit offset.
    pub occurred_at: chrono::DateTime<chrono::FixedOffset>,
    pub data: EventData,
    /// 0: the stream must not exist yet; n: its last version must be n.
    pub expected_version: Option<u64>,
}

/// One event, or a batch of 1 to 1,000 (all or nothing).
#[derive(Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Submission {
    One(Envelope),
    Batch(Vec<Envelope>),
}

impl utoipa::PartialSchema for Submission {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Ref};
        let envelope = Ref::from_schema_name("Envelope");
        OneOfBuilder::new()
            .item(envelope.clone())
            .item(
                ArrayBuilder::new()
                    .items(envelope)
                    .min_items(Some(1))
                    .max_items(Some(domain::parse::BATCH_EVENTS_MAX)),
            )
            .description(Some("One event, or a batch of 1 to 1,000 (all or nothing)"))
            .into()
    }
}

impl ToSchema for Submission {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "Envelope".into(),
            <Envelope as utoipa::PartialSchema>::schema(),
        ));
        <Envelope as ToSchema>::schemas(schemas);
    }
}

/// A token's name (recorded as `source` on every event it writes): 1 to 64 of A-Z a-z 0-9 . _ - @ :
#[derive(Serialize)]
#[allow(dead_code)]
pub struct CredentialName(String);

impl utoipa::PartialSchema for CredentialName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(64))
            .pattern(Some("^[A-Za-z0-9._@:-]{1,64}$"))
            .description(Some("1 to 64 of A-Z a-z 0-9 . _ - @ :"))
            .into()
    }
}

impl ToSchema for CredentialName {}

/// How an indicator table groups its rows.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum GroupParam {
    Agency,
    Subtree,
    Level,
    Province,
}

/// How an indicator answer is rendered (`table` is another name for `text`).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum FormatParam {
    Json,
    Csv,
    Xlsx,
    Text,
    Table,
}

/// A report profile's id: the built-in ones (a server started with `--profiles` offers more; see
/// `GET /v1/indicators/profiles`).
#[derive(ToSchema)]
#[schema(rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum ProfileParam {
    National,
    KonTum,
    VinhPhuc,
    OverResolved,
    FormFolded,
}

/// The rows of the official form: one per agency with level subtotals, one per level, or one per procedure field
/// within each level with level subtotals.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum FormByParam {
    Agency,
    Level,
    Field,
}

/// The language of CSV and XLSX column headers.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum LangParam {
    Vi,
    En,
}

/// An event as the log stores it: the envelope and the stored fields.
#[derive(ToSchema, Serialize)]
#[allow(dead_code)]
pub struct StoredEnvelope {
    /// Global, gapless, from 1.
    pub position: u64,
    /// Per stream, gapless, from 1.
    pub version: u64,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub ty: EventType,
    pub dossier: Option<DossierCode>,
    pub agency: Option<AgencyCode>,
    pub occurred_at: chrono::DateTime<chrono::FixedOffset>,
    /// Server clock, UTC; never decreasing along positions.
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// The name of the token that wrote it.
    pub source: String,
    pub data: EventData,
}

/// A stored event in a dossier's trail, with its leaf hash in the audit tree.
#[derive(ToSchema, Serialize)]
#[allow(dead_code)]
pub struct TrailEvent {
    #[serde(flatten)]
    pub event: StoredEnvelope,
    /// Base64 of SHA-256(0x00 ‖ the canonical bytes), RFC 6962's leaf hash.
    pub leaf_hash: String,
}

#[derive(ToSchema, Serialize)]
#[allow(dead_code)]
pub struct Trail {
    pub dossier: DossierCode,
    pub events: Vec<TrailEvent>,
}

/// A page of the global log.
#[derive(ToSchema, Serialize)]
#[allow(dead_code)]
pub struct EventsPage {
    pub events: Vec<StoredEnvelope>,
    /// The cursor for the next page (`after=`); null at the head.
    pub next_after: Option<u64>,
    pub log_size: u64,
}

/// A problem answer written once and named in each operation's answers: a status, its description, and a
/// problem document as the body.
macro_rules! problem_answer {
    ($(#[$doc:meta])* $name:ident, $status:literal, $description:literal) => {
        $(#[$doc])*
        #[derive(utoipa::IntoResponses)]
        #[response(status = $status, description = $description, content_type = "application/problem+json")]
        #[allow(dead_code)]
        pub struct $name(Problem);
    };
}

problem_answer!(
    /// 401 for an operation that needs a token.
    Unauthenticated, 401, "No token, or an unknown or revoked one"
);
problem_answer!(
    /// 403 for an operation some roles (or an ingest token's scope) may not use.
    NotCovered, 403, "The role or scope does not cover this"
);
problem_answer!(
    /// 403 for an audit operation (auditor and admin tokens only).
    NotAnAuditor, 403, "Not an auditor or admin token"
);

/// An error (RFC 9457).
#[derive(ToSchema, Serialize)]
#[allow(dead_code)]
pub struct Problem {
    #[serde(rename = "type")]
    pub ty: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// A stable snake_case code; the list is generated from `app::error::CODES` (`ProblemCodes`).
    pub code: String,
    /// Validation failures `{index, id, field, message}`, or refused events `{index, id, code, message,
    /// current_version?, position?}`.
    pub errors: Option<Vec<serde_json::Value>>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AgencyBody {
    pub name: domain::Text,
    pub level: AgencyLevel,
    pub parent: Option<AgencyCode>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ProcedureBody {
    pub name: domain::Text,
    pub online_level: OfferLevel,
    pub postal_receive: bool,
    pub postal_return: bool,
    pub effective_from: chrono::NaiveDate,
    /// The procedure's field (lĩnh vực, DVCQG's MaLinhVuc), with a procedure code's rules: the official form's
    /// rows by field read it.
    pub field: Option<domain::ProcedureCode>,
    /// The field's name (TenLinhVuc); only with `field`.
    pub field_name: Option<domain::Text>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TargetBody {
    pub agency: TargetScope,
    pub from_period: domain::Period,
    /// Default 0.20.
    #[schema(minimum = 0, maximum = 1)]
    pub online_rate_min: Option<f64>,
    /// Default 0.10.
    #[schema(minimum = 0, maximum = 1)]
    pub postal_rate_min: Option<f64>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TokenRequest {
    pub name: CredentialName,
    pub role: Role,
    /// Required for ingest tokens, refused for the others.
    pub agency: Option<AgencyCode>,
}

/// One event of a bundle.
#[derive(ToSchema, Serialize)]
#[schema(as = BundleEvent)]
#[allow(dead_code)]
pub struct BundleEventSchema {
    pub position: u64,
    /// SHA-256(0x00 ‖ canonical), base64.
    pub leaf_hash: String,
    /// The stored envelope's canonical bytes, exactly as hashed, as a string.
    pub canonical: String,
    /// The audit path from the leaf to the checkpoint's root, base64 hashes.
    pub proof: Vec<String>,
}

/// A dossier bundle (`casetrail-bundle-v1`): the dossier's events, versions 1..n in log order, each with its
/// inclusion proof against the signed checkpoint it carries. Unknown fields are refused by the verifier.
#[derive(ToSchema, Serialize)]
#[schema(as = Bundle)]
#[allow(dead_code)]
pub struct BundleSchema {
    /// `casetrail-bundle-v1`.
    pub format: String,
    pub dossier: String,
    /// The signed checkpoint (C2SP signed note).
    pub checkpoint: String,
    pub events: Vec<BundleEventSchema>,
}

/// One sync request as a one-stop system sends the portal (docs/integration.md). Fields the adapter does not read
/// are dropped before anything is written, and named in the answer.
#[derive(ToSchema, Serialize)]
#[allow(dead_code)]
pub struct SyncRequest {
    /// The client's session: a casetrail token, when it is not in Authorization.
    pub session: Option<String>,
    /// The sending unit's code; the receiving agency under a mapping that says so.
    pub madonvi: Option<String>,
    pub service: SyncService,
    /// "True" or "False": whether the client believes the portal has the dossier (the adapter asks the log).
    #[serde(rename = "isUpdating")]
    pub is_updating: Option<String>,
    /// The dossiers (DongBoHoSoMC), steps (CapNhatTienDoHoSoMC) or `{MaHoSo}` lookups, as objects of the
    /// portal's fields.
    pub data: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    /// The dossier a TraCuuHoSo looks up.
    pub mahoso: Option<String>,
}

#[derive(ToSchema, Serialize)]
#[allow(dead_code)]
pub enum SyncService {
    DongBoHoSoMC,
    CapNhatTienDoHoSoMC,
    TraCuuHoSo,
}

/// A service as a provincial gateway's URL or query names it: the portal's three, or the gateway's `ThemMoi` (a
/// new dossier), `CapNhat` (an update), `DongBoTienTrinh` (a step).
#[derive(ToSchema, Serialize)]
#[allow(dead_code)]
pub enum GatewayService {
    DongBoHoSoMC,
    CapNhatTienDoHoSoMC,
    TraCuuHoSo,
    ThemMoi,
    CapNhat,
    DongBoTienTrinh,
}

/// `isUpdating` as gateways write it.
#[derive(ToSchema, Serialize)]
#[allow(dead_code)]
pub enum SyncFlag {
    True,
    False,
    #[serde(rename = "true")]
    LowerTrue,
    #[serde(rename = "false")]
    LowerFalse,
    #[serde(rename = "1")]
    One,
    #[serde(rename = "0")]
    Zero,
}

/// A sync body: one request or an array of them.
#[derive(ToSchema, Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SyncBody {
    One(SyncRequest),
    Many(Vec<SyncRequest>),
}

/// The portal's envelope, with casetrail's account alongside.
#[derive(ToSchema, Serialize)]
#[allow(dead_code)]
pub struct SyncAnswer {
    /// The mapping's success code ("0" unless the site's mapping says otherwise).
    pub error_code: String,
    pub message: String,
    /// For TraCuuHoSo: the dossiers found, in the portal's fields and the site's codes (empty when none).
    pub result: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    /// The mapping in force, the events' source, counts, and per request its items (events written with their
    /// receipts, notes) and the fields dropped (`personal`, `other`).
    pub casetrail: serde_json::Map<String, serde_json::Value>,
}
