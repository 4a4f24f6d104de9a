//! `GET /v1/indicators` and `GET /v1/indicators/series`: tables as JSON, CSV or XLSX.

use crate::auth::Caller;
use crate::errors::{ApiError, Error};
use crate::schemas::Problem;
use crate::State;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use app::indicators::Query;
use domain::{AgencyCode, KnownAt, Period, Role};
use projections::indicators::render::{self, Format, Lang};
use projections::indicators::Group;
use serde::Deserialize;

pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::extract::resource;
    cfg.service(resource("/v1/indicators", "GET").route(web::get().to(indicators)))
        .service(resource("/v1/indicators/series", "GET").route(web::get().to(series)))
        .service(resource("/v1/indicators/profiles", "GET").route(web::get().to(profiles)))
        .service(resource("/v1/indicators/form", "GET").route(web::get().to(form)))
        .service(resource("/v1/indicators/check", "POST").route(web::post().to(check)));
}

/// The parameters of a table and of a series: each its own (so that `/openapi.json` documents exactly what each
/// operation reads, and marks what it requires), with the same shared ones.
macro_rules! indicator_params {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident,)* }) => {
        $(#[$meta])*
        #[derive(Deserialize, utoipa::IntoParams)]
        #[into_params(parameter_in = Query)]
        pub(crate) struct $name {
            $($(#[$field_meta])* #[param(required = true, value_type = domain::Period)] $field: Option<String>,)*
            /// `agency` (default), `subtree`, `level` or `province`.
            #[param(value_type = Option<crate::schemas::GroupParam>)]
            group: Option<String>,
            /// Only this agency and what is registered below it.
            #[param(value_type = Option<domain::AgencyCode>)]
            agency: Option<String>,
            /// Count only events up to this log position.
            #[serde(default, deserialize_with = "crate::extract::int64")]
            as_of: Option<u64>,
            /// Count only events recorded by this instant (RFC 3339 with offset), or during or before this day
            /// (`2019-04-05`, Vietnam time: everything recorded before the next day began).
            #[param(value_type = Option<domain::KnownAt>)]
            known_at: Option<String>,
            /// `json` (default), `csv`, `xlsx`, or `text` (the main columns, aligned, for terminals).
            #[param(value_type = Option<crate::schemas::FormatParam>)]
            format: Option<String>,
            /// Column headers of CSV and XLSX: `vi` (default) or `en`.
            #[param(value_type = Option<crate::schemas::LangParam>)]
            lang: Option<String>,
            /// A report profile's id (see `/v1/indicators/profiles`): the definitions of the rates, the form's
            /// classes, the rounding and the period cut. `national` by default.
            #[param(value_type = Option<crate::schemas::ProfileParam>)]
            profile: Option<String>,
        }

        impl From<$name> for IndicatorParams {
            fn from(p: $name) -> IndicatorParams {
                let mut periods = [None, None, None];
                for (slot, value) in periods.iter_mut().zip([$(p.$field),*]) {
                    *slot = value;
                }
                let [first, last, _] = periods;
                IndicatorParams { first, last, group: p.group, agency: p.agency, as_of: p.as_of,
                                  known_at: p.known_at, format: p.format, lang: p.lang, profile: p.profile }
            }
        }
    };
}

indicator_params!(TableParams {
    /// `2019-03`, `2019-Q1` or `2019`.
    period,
});

indicator_params!(SeriesParams {
    /// The first period: `2019-03`, `2019-Q1` or `2019`.
    from,
    /// The last period, of the same kind as `from`.
    to,
});

/// What either operation was asked: `first` is the period (a table) or `from` (a series), `last` is `to`.
struct IndicatorParams {
    first: Option<String>,
    last: Option<String>,
    group: Option<String>,
    agency: Option<String>,
    as_of: Option<u64>,
    known_at: Option<String>,
    format: Option<String>,
    lang: Option<String>,
    profile: Option<String>,
}

fn bad(name: &'static str, detail: impl Into<String>) -> ApiError {
    Error::bad_parameter(name, detail).into()
}

fn period(name: &'static str, value: Option<&str>) -> Result<Period, ApiError> {
    value
        .ok_or_else(|| {
            bad(
                name,
                format!("{name} is required (e.g. 2019-Q1, 2019-03 or 2019)"),
            )
        })?
        .parse()
        .map_err(|e: String| bad(name, e))
}

async fn answer(
    caller: Caller,
    state: web::Data<State>,
    p: IndicatorParams,
    series: bool,
) -> Result<HttpResponse, ApiError> {
    if !state.settings.public_indicators {
        caller.require(&[Role::Analyst, Role::Auditor, Role::Admin])?;
    }
    let (query, format, lang) = p.parse(series)?;
    let (group, scope) = (query.group, query.scope.clone());
    // A table from the live engine takes milliseconds; one from history replays events: off the async threads.
    let answer = crate::off_workers(&state, move |s| s.answer_indicators(&query)).await?;
    let card = &state.indicators.card;
    respond(&answer, (format, lang), group, scope.as_ref(), card)
}

/// The answer rendered in `format` (with headers in `lang`), as a download when it is a file.
fn respond(
    answer: &app::indicators::Answer,
    (format, lang): (Format, Lang),
    group: Group,
    scope: Option<&AgencyCode>,
    card: &projections::indicators::scorecard::Scorecard,
) -> Result<HttpResponse, ApiError> {
    let body = render::render(
        format,
        &answer.stamp,
        group,
        scope,
        &answer.tables,
        card,
        lang,
    );
    let mut response = HttpResponse::Ok();
    response.content_type(content_type(format));
    if matches!(format, Format::Csv | Format::Xlsx) {
        let disposition = format!(
            "attachment; filename=\"{}.{}\"",
            file_name(answer, group),
            format.extension()
        );
        response.insert_header((header::CONTENT_DISPOSITION, disposition));
    }
    Ok(response.body(body.map_err(Error::Internal)?))
}

/// `casetrail-<first period>-<group>-<position>`: what a downloaded table is called.
fn file_name(answer: &app::indicators::Answer, group: Group) -> String {
    let period = answer
        .tables
        .first()
        .map_or(String::new(), |t| t.period.to_string());
    format!("casetrail-{period}-{group}-{}", answer.stamp.position)
}

/// A parameter with a default, parsed; its error names it.
fn parsed<T: std::str::FromStr<Err = String>>(
    name: &'static str,
    value: Option<&str>,
    default: &str,
) -> Result<T, ApiError> {
    value
        .unwrap_or(default)
        .parse()
        .map_err(|e: String| bad(name, e))
}

impl IndicatorParams {
    /// The question, the format and the header language; a parameter out of its domain is named, in the order
    /// the parameters are read (periods, group, agency, known_at, format, lang).
    fn parse(self, series: bool) -> Result<(Query, Format, Lang), ApiError> {
        let periods = if series {
            let from = period("from", self.first.as_deref())?;
            let to = period("to", self.last.as_deref())?;
            app::indicators::series(from, to).map_err(|e| bad("to", e))?
        } else {
            vec![period("period", self.first.as_deref())?]
        };
        let group: Group = parsed("group", self.group.as_deref(), "agency")?;
        let scope = self.agency.as_deref().map(AgencyCode::parse).transpose();
        let scope = scope.map_err(|e| bad("agency", e))?;
        let known_at = self
            .known_at
            .as_deref()
            .map(str::parse::<KnownAt>)
            .transpose();
        let known_at = known_at.map_err(|e| bad("known_at", e))?;
        let format: Format = parsed("format", self.format.as_deref(), "json")?;
        let lang: Lang = parsed("lang", self.lang.as_deref(), "vi")?;
        let query = Query {
            periods,
            group,
            scope,
            as_of: self.as_of,
            known_at,
            profile: self.profile,
        };
        Ok((query, format, lang))
    }
}

/// The indicator table for one period (`indicators.md`): one row per agency, subtree, level or the province,
/// with targets, verdicts, procedure coverage, scores, and the stamp of what it was computed from.
#[utoipa::path(get, path = "/v1/indicators", tag = "indicators",
    params(TableParams),
    responses(
        (status = 200, description = "The table: JSON (`rows` and `stamp`), CSV or XLSX", body = Object),
        (status = 400, description = "A parameter is out of its domain", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "A token is required (public_indicators is off) or the one sent is unknown", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not read indicators", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log could not be read", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("bearer" = [])))]
pub(crate) async fn indicators(
    caller: Caller,
    state: web::Data<State>,
    params: crate::extract::Query<TableParams>,
) -> Result<HttpResponse, ApiError> {
    answer(caller, state, params.into_inner().into(), false).await
}

/// The same columns period by period, from `from` to `to`, for trends.
#[utoipa::path(get, path = "/v1/indicators/series", tag = "indicators",
    params(SeriesParams),
    responses(
        (status = 200, description = "The series: JSON (`periods`, each with its `rows`, and one `stamp`), CSV or XLSX", body = Object),
        (status = 400, description = "A parameter is out of its domain", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "A token is required (public_indicators is off) or the one sent is unknown", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not read indicators", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log could not be read", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("bearer" = [])))]
pub(crate) async fn series(
    caller: Caller,
    state: web::Data<State>,
    params: crate::extract::Query<SeriesParams>,
) -> Result<HttpResponse, ApiError> {
    answer(caller, state, params.into_inner().into(), true).await
}

/// The parameters of the official form.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FormParams {
    /// `2019-03`, `2019-Q1` or `2019`.
    #[param(required = true, value_type = domain::Period)]
    period: Option<String>,
    /// The last period of a series (same kind as `period`): a sheet per period.
    #[param(value_type = Option<domain::Period>)]
    to: Option<String>,
    /// `agency` (default: one row per agency, with a subtotal per level), `level` (one row per level), or `field`
    /// (one row per procedure field within each level, with a subtotal per level).
    #[param(value_type = Option<crate::schemas::FormByParam>)]
    by: Option<String>,
    /// Only this agency and what is registered below it.
    #[param(value_type = Option<domain::AgencyCode>)]
    agency: Option<String>,
    /// Count only events up to this log position.
    #[serde(default, deserialize_with = "crate::extract::int64")]
    as_of: Option<u64>,
    /// Count only events recorded by this instant, or during or before this day (Vietnam time).
    #[param(value_type = Option<domain::KnownAt>)]
    known_at: Option<String>,
    /// `xlsx` (the form with its merged headers), `csv`, `json`; `text` gives the CSV.
    #[param(value_type = Option<crate::schemas::FormatParam>)]
    format: Option<String>,
    /// Headers: `vi` (default, as on the form) or `en`.
    #[param(value_type = Option<crate::schemas::LangParam>)]
    lang: Option<String>,
    /// A report profile's id; `national` by default.
    #[param(value_type = Option<crate::schemas::ProfileParam>)]
    profile: Option<String>,
}

/// The official dossier-count form ("tình hình, kết quả giải quyết TTHC", Circular 01/2020/TT-VPCP): received
/// (3)–(6), resolved (7)–(10), in progress (11)–(13), and the classes a profile keeps apart (14)–(16), under a
/// report profile. Its identities are checked before it is answered.
#[utoipa::path(get, path = "/v1/indicators/form", tag = "indicators",
    params(FormParams),
    responses(
        (status = 200, description = "The form: XLSX (merged headers, column numbers), CSV or JSON (lines, identities, stamp)", body = Object),
        (status = 400, description = "A parameter is out of its domain", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "A token is required (public_indicators is off) or the one sent is unknown", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not read indicators", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The log could not be read", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("bearer" = [])))]
pub(crate) async fn form(
    caller: Caller,
    state: web::Data<State>,
    params: crate::extract::Query<FormParams>,
) -> Result<HttpResponse, ApiError> {
    use projections::indicators::form::{render_form, FormBy};
    if !state.settings.public_indicators {
        caller.require(&[Role::Analyst, Role::Auditor, Role::Admin])?;
    }
    let p = params.into_inner();
    let series = p.to.is_some();
    let by: FormBy = parsed("by", p.by.as_deref(), "agency")?;
    let group = match by {
        FormBy::Agency | FormBy::Field => "agency",
        FormBy::Level => "level",
    };
    let (query, format, lang) = IndicatorParams {
        first: p.period,
        last: p.to,
        group: Some(group.into()),
        agency: p.agency,
        as_of: p.as_of,
        known_at: p.known_at,
        format: Some(p.format.unwrap_or_else(|| "xlsx".into())),
        lang: p.lang,
        profile: p.profile,
    }
    .parse(series)?;
    let answer = crate::off_workers(&state, move |s| s.answer_form(&query, by)).await?;
    let forms =
        app::indicators::forms(&answer, by, lang).map_err(|e| Error::Internal(e.to_string()))?;
    let body = render_form(format, &answer.stamp, &forms, lang).map_err(Error::Internal)?;
    let mut response = HttpResponse::Ok();
    response.content_type(content_type(if format == Format::Text {
        Format::Csv
    } else {
        format
    }));
    if matches!(format, Format::Csv | Format::Xlsx) {
        let disposition = format!(
            "attachment; filename=\"{}.{}\"",
            app::indicators::form_file_name(&answer, by),
            format.extension()
        );
        response.insert_header((header::CONTENT_DISPOSITION, disposition));
    }
    Ok(response.body(body))
}

/// The parameters of a check of a published table.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CheckParams {
    /// The period the table covers: its counts are then compared with the log's.
    #[param(value_type = Option<domain::Period>)]
    period: Option<String>,
    /// The profile to compare counts under; by default the one the printed percentages follow.
    #[param(value_type = Option<crate::schemas::ProfileParam>)]
    profile: Option<String>,
    /// Only this agency and what is registered below it.
    #[param(value_type = Option<domain::AgencyCode>)]
    agency: Option<String>,
}

/// Checks a table as a province published it (the CSV body): whether each row adds up, whether each printed
/// percentage equals its counts under some definition (which, and whether rounded or truncated), and, with
/// `period`, whether the counts equal casetrail's. A slip is named with the value the counts give. Writes
/// nothing.
#[utoipa::path(post, path = "/v1/indicators/check", tag = "indicators",
    params(CheckParams),
    request_body(content = String, content_type = "text/csv", description = "The published table: a header row, then rows of counts and printed percentages"),
    responses(
        (status = 200, description = "Row by row: sums, printed percentages (reproduced, or a slip with the correct value), counts against the log", body = Object),
        (status = 400, description = "The table or a parameter is out of its domain", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "A token is required (public_indicators is off) or the one sent is unknown", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not read indicators", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The table is larger than the body limit", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("bearer" = [])))]
pub(crate) async fn check(
    req: actix_web::HttpRequest,
    caller: Caller,
    state: web::Data<State>,
    params: crate::extract::Query<CheckParams>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if !state.settings.public_indicators {
        caller.require(&[Role::Analyst, Role::Auditor, Role::Admin])?;
    }
    let p = params.into_inner();
    let question = app::check::CheckQuestion {
        period: p
            .period
            .as_deref()
            .map(|s| period("period", Some(s)))
            .transpose()?,
        profile: p.profile,
        scope: p
            .agency
            .as_deref()
            .map(AgencyCode::parse)
            .transpose()
            .map_err(|e| bad("agency", e))?,
    };
    let body = super::read_body(&req, payload, state.settings.body_limit_bytes).await?;
    let report = crate::off_workers(&state, move |s| s.check_report(&body, &question)).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The report profiles offered: each with its definitions, rounding, cut and source.
#[utoipa::path(get, path = "/v1/indicators/profiles", tag = "indicators",
    responses(
        (status = 200, description = "The profiles, the default first", body = Object),
        (status = 401, description = "A token is required (public_indicators is off) or the one sent is unknown", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not read indicators", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("bearer" = [])))]
pub(crate) async fn profiles(
    caller: Caller,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    if !state.settings.public_indicators {
        caller.require(&[Role::Analyst, Role::Auditor, Role::Admin])?;
    }
    let all = state.indicators.profiles.all();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "default": state.indicators.profiles.default_profile().id,
        "server_cut": state.indicators.cut,
        "profiles": all,
    })))
}

/// The HTTP content type of each format an indicator answer comes in.
fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Format::Text => "text/plain; charset=utf-8",
    }
}
