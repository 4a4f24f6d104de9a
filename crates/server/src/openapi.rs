//! The OpenAPI 3 document served at `/openapi.json`, generated from the handlers' `#[utoipa::path]` annotations and
//! from the event types themselves (`domain`'s `openapi` feature), so vendors generate clients from what the code
//! does.

use crate::schemas::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// `data` is one of the twelve shapes, chosen by the envelope's `type`. Several shapes accept `{}` (every field
/// optional), so the untagged union must be `anyOf`: with `oneOf`, which utoipa writes for untagged enums, a valid
/// `dossier.supplement_received` would match three shapes and be refused by a generated client.
struct DataIsAnyOf;

impl Modify for DataIsAnyOf {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        if let Some(schema) = components.schemas.get_mut("EventData") {
            let mut json = serde_json::to_value(&*schema).expect("schemas serialize");
            if let Some(one_of) = json.as_object_mut().and_then(|o| o.remove("oneOf")) {
                json["anyOf"] = one_of;
                *schema = serde_json::from_value(json).expect("an anyOf schema deserializes");
            }
        }
    }
}

/// The description of a problem's `code`: every stable code with its status and meaning, from the one table.
struct ProblemCodes;

impl Modify for ProblemCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let Some(problem) = components.schemas.get_mut("Problem") else {
            return;
        };
        let mut lines = vec!["A stable snake_case code, one of:".to_string()];
        for c in app::CODES {
            let status = match c.status {
                0 => "its own status".to_string(),
                n => n.to_string(),
            };
            lines.push(format!("- `{}` ({status}): {}", c.code, c.description));
        }
        let mut json = serde_json::to_value(&*problem).expect("schemas serialize");
        json["properties"]["code"]["description"] = serde_json::Value::String(lines.join("\n"));
        *problem = serde_json::from_value(json).expect("the problem schema deserializes");
    }
}

/// The indicator answers: their schemas come from the same column list that renders them
/// (`projections::indicators::render::json_schemas`), and their 200 answers are JSON, CSV, XLSX or text.
struct IndicatorAnswers;

impl Modify for IndicatorAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, schema) in projections::indicators::render::json_schemas() {
            components.schemas.insert(
                name.to_owned(),
                serde_json::from_value(schema).expect("indicator schemas deserialize"),
            );
        }
        for path in [
            "/v1/indicators",
            "/v1/indicators/series",
            "/v1/indicators/form",
        ] {
            let Some(item) = openapi.paths.paths.get_mut(path) else {
                continue;
            };
            let Some(get) = item.get.as_mut() else {
                continue;
            };
            let Some(ok) = get.responses.responses.get_mut("200") else {
                continue;
            };
            let mut json = serde_json::to_value(&*ok).expect("responses serialize");
            let answer = match path {
                "/v1/indicators/form" => serde_json::json!({ "type": "object" }),
                _ => serde_json::json!({ "$ref": "#/components/schemas/IndicatorAnswer" }),
            };
            json["content"] = serde_json::json!({
                "application/json": { "schema": answer },
                "text/csv": { "schema": { "type": "string" } },
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": { "schema": { "type": "string", "format": "binary" } },
                "text/plain": { "schema": { "type": "string" } }
            });
            *ok = serde_json::from_value(json).expect("a response deserializes");
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "casetrail", description = "Event-sourced case tracking for Vietnam's one-stop-shop administrative services. See docs/api.md."),
    paths(
        crate::routes::ops::healthz,
        crate::routes::ops::readyz,
        crate::routes::ops::metrics,
        crate::routes::ops::openapi_json,
        crate::routes::events::append,
        crate::routes::events::events,
        crate::routes::events::live,
        crate::routes::dossiers::dossier,
        crate::routes::dossiers::trail,
        crate::routes::reference::put_agency,
        crate::routes::reference::put_procedure,
        crate::routes::reference::put_target,
        crate::routes::reference::catalogue,
        crate::routes::indicators::indicators,
        crate::routes::indicators::series,
        crate::routes::indicators::profiles,
        crate::routes::indicators::form,
        crate::routes::indicators::check,
        crate::routes::tokens::create_token,
        crate::routes::tokens::list_tokens,
        crate::routes::tokens::revoke_token,
        crate::routes::audit::key,
        crate::routes::audit::head,
        crate::routes::audit::checkpoints,
        crate::routes::audit::issue,
        crate::routes::audit::proof,
        crate::routes::audit::consistency,
        crate::routes::audit::bundle,
        crate::routes::adapters::dvcqg,
        crate::routes::adapters::dvcqg_service,
    ),
    // The indicator parameters' schemas (`IntoParams` names them without collecting them).
    components(schemas(GroupParam, FormatParam, LangParam, FormByParam, ProfileParam, domain::KnownAt, GatewayService, SyncFlag)),
    modifiers(&BearerAuth, &DataIsAnyOf, &IndicatorAnswers, &ProblemCodes),
    tags(
        (name = "events", description = "Writing and reading the log"),
        (name = "dossiers", description = "A dossier's state and trail"),
        (name = "reference", description = "Agencies, procedures offered, targets, and the public catalogue"),
        (name = "indicators", description = "Indicator tables: per agency, subtree, level or province, any period, any point in history"),
        (name = "audit", description = "Signed checkpoints, inclusion and consistency proofs, dossier bundles (auditor, admin)"),
        (name = "tokens", description = "Credentials (admin)"),
        (name = "adapters", description = "Protocols one-stop software already speaks: the National Public Service Portal's sync"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;
