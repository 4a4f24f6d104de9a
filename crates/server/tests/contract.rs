//! The published contract says exactly what the server accepts: for every string type `/openapi.json` describes
//! with a pattern or an enumeration (codes, names, periods, days, the indicator options), a string is valid against its schema if and only if the server's own
//! parser accepts it. Strings are drawn to hit the edges: `.` and `..`, `/`, every kind of whitespace and control
//! character, digits and dashes in period shapes, lengths around the bounds.

use proptest::prelude::*;
use serde_json::{json, Value};
use utoipa::OpenApi;

/// The served document.
static DOC: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| serde_json::to_value(server::openapi::ApiDoc::openapi()).unwrap());

/// Validators, built once each.
static VALIDATORS: std::sync::LazyLock<
    std::collections::HashMap<&'static str, jsonschema::Validator>,
> = std::sync::LazyLock::new(|| {
    let mut all: std::collections::HashMap<_, _> = [
        "AgencyCode",
        "DossierCode",
        "ProcedureCode",
        "Text",
        "TargetScope",
        "Period",
    ]
    .into_iter()
    .map(|name| (name, component(name)))
    .collect();
    all.insert("token name", parameter("/v1/tokens/{name}", "name"));
    all.insert("known_at", parameter("/v1/indicators", "known_at"));
    for name in ["group", "format", "lang", "profile"] {
        all.insert(name, parameter("/v1/indicators", name));
    }
    all.insert("by", parameter("/v1/indicators/form", "by"));
    all
});

/// A component schema of the served document, with the components it may refer to.
fn component(name: &str) -> jsonschema::Validator {
    let doc = &*DOC;
    let schema = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The schema of one parameter of one operation.
fn parameter(path: &str, name: &str) -> jsonschema::Validator {
    let doc = &*DOC;
    let (_, operation) = doc["paths"][path]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let p = operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{path} has no parameter {name}"));
    let schema = json!({ "allOf": [p["schema"]], "components": doc["components"] });
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// Characters near every rule: separators, dots, digits, the letters of periods, whitespace and controls of every
/// kind, and anything at all.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec!['.', '/', '-', '_', '@', ':', '*', 'Q', 'q', 'T', 'Z', '+', 'a', 'Đ', 'ế']),
        4 => prop::char::range('0', '9'),
        2 => prop::sample::select(vec![
            ' ', '\t', '\n', '\r', '\u{0}', '\u{1}', '\u{1c}', '\u{1f}', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}',
            '\u{a0}', '\u{a1}', '\u{1680}', '\u{2000}', '\u{200a}', '\u{200b}', '\u{2028}', '\u{2029}', '\u{202f}',
            '\u{205f}', '\u{3000}', '\u{feff}',
        ]),
        1 => any::<char>(),
    ]
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(tricky_char(), 0..6),
        prop::collection::vec(tricky_char(), 28..70),
        prop::collection::vec(prop::char::range('a', 'z'), 0..70),
    ]
    .prop_map(|v| v.into_iter().collect())
}

/// Period-like and day-like strings: years around the bounds, months and quarters in and out of range.
fn period_like() -> impl Strategy<Value = String> {
    let year = prop_oneof![1890u32..1910, 1990u32..2030, 9990u32..10005, 0u32..10];
    let tail = prop_oneof![
        Just(String::new()),
        (0u32..14).prop_map(|m| format!("-{m:02}")),
        (0u32..14).prop_map(|m| format!("-{m}")),
        (0u32..6).prop_map(|q| format!("-Q{q}")),
        (0u32..6).prop_map(|q| format!("-q{q}")),
        (0u32..14, 0u32..33).prop_map(|(m, d)| format!("-{m:02}-{d:02}")),
    ];
    (year, tail).prop_map(|(y, t)| format!("{y:04}{t}"))
}

fn agree(what: &str, s: &str, parsed: Result<(), String>) {
    let valid = VALIDATORS[what].is_valid(&Value::String(s.to_owned()));
    assert_eq!(
        valid,
        parsed.is_ok(),
        "{what} {s:?}: the schema says {}, the server says {parsed:?}",
        if valid { "valid" } else { "invalid" }
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn code_and_name_schemas_accept_what_the_server_accepts(s in tricky_string()) {
        agree("AgencyCode", &s, domain::AgencyCode::parse(&s).map(drop));
        agree("DossierCode", &s, domain::DossierCode::parse(&s).map(drop));
        agree("ProcedureCode", &s, domain::ProcedureCode::parse(&s).map(drop));
        agree("Text", &s, domain::Text::parse(&s).map(drop));
        agree("TargetScope", &s, domain::event::TargetScope::parse(&s).map(drop));
        agree("token name", &s, domain::event::check_source(&s));
    }

    #[test]
    fn period_and_day_schemas_accept_what_the_server_accepts(s in prop_oneof![period_like(), tricky_string()]) {
        agree("Period", &s, s.parse::<domain::Period>().map(drop));
        agree("known_at", &s, s.parse::<domain::KnownAt>().map(drop));
    }

    #[test]
    fn enumerated_parameters_list_what_the_server_accepts(
        s in prop_oneof![
            prop::sample::select(vec![
                "agency", "subtree", "level", "province", "json", "csv", "xlsx", "text", "table", "vi", "en",
                "national", "kon-tum", "vinh-phuc", "over-resolved", "form-folded", "field", "Kon-Tum",
                "Agency", "JSON", "tables", "xls", "vn", "", " csv",
            ]).prop_map(str::to_owned),
            tricky_string(),
        ]
    ) {
        use projections::indicators::render::{Format, Lang};
        agree("group", &s, s.parse::<projections::indicators::Group>().map(drop));
        agree("format", &s, s.parse::<Format>().map(drop));
        agree("lang", &s, s.parse::<Lang>().map(drop));
        agree("by", &s, s.parse::<projections::indicators::form::FormBy>().map(drop));
        // The documented profiles are the built-in ones, each accepted, and nothing else.
        let built_in = projections::indicators::Profiles::built_in();
        agree("profile", &s, built_in.get(&s).map(drop).ok_or_else(|| "no such profile".to_owned()));
    }
}
