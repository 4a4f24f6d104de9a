//! The JSON answer, and the JSON Schemas of its rows that the API description publishes.

use super::*;

fn cell_json(cell: Cell) -> Value {
    match cell {
        Cell::Text(t) => t.map_or(Value::Null, Value::String),
        Cell::Int(n) => json!(n),
        cell @ (Cell::Ratio(_) | Cell::Rate(..)) => {
            cell.fraction().map_or(Value::Null, |r| json!(r))
        }
        Cell::Verdict(v) => v.map_or(Value::Null, Value::Bool),
    }
}

fn row_json(row: &Row, card: &Scorecard) -> Value {
    let mut out = Map::new();
    // Each rate as the row's profile prints it, for whoever shows it (the dashboard).
    let mut printed = Map::new();
    for c in COLUMNS {
        let cell = (c.get)(row);
        if let Cell::Rate(..) = cell {
            printed.insert(
                c.key.to_owned(),
                cell.percent().map_or(Value::Null, Value::String),
            );
        }
        let value = cell_json(cell);
        match c.key.split_once('/') {
            Some((parent, child)) => {
                let nested = out
                    .entry(parent)
                    .or_insert_with(|| Value::Object(Map::new()));
                nested
                    .as_object_mut()
                    .expect("nested columns are objects")
                    .insert(child.to_owned(), value);
            }
            None => {
                out.insert(c.key.to_owned(), value);
            }
        }
    }
    let mut scores = Map::new();
    let mut total = 0.0;
    for (criterion, score) in card.scores(row) {
        total += score.unwrap_or(0.0);
        scores.insert(
            criterion.id.clone(),
            score.map_or(Value::Null, |s| json!(s)),
        );
    }
    out.insert("scores".into(), Value::Object(scores));
    out.insert("score_total".into(), json!(total));
    out.insert("printed".into(), Value::Object(printed));
    Value::Object(out)
}

/// The JSON answer: one period (`tables` of length 1) or a series.
pub fn json(
    stamp: &Stamp,
    group: Group,
    scope: Option<&AgencyCode>,
    tables: &[Table],
    card: &Scorecard,
) -> Value {
    let periods: Vec<Value> = tables
        .iter()
        .map(|t| {
            json!({
                "period": t.period.to_string(),
                "rows": t.rows.iter().map(|r| row_json(r, card)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut out = Map::new();
    match periods.as_slice() {
        [one] => {
            out.insert("period".into(), one["period"].clone());
        }
        _ => {
            out.insert(
                "from".into(),
                json!(tables.first().map(|t| t.period.to_string())),
            );
            out.insert(
                "to".into(),
                json!(tables.last().map(|t| t.period.to_string())),
            );
        }
    }
    out.insert("group".into(), json!(group.to_string()));
    out.insert("agency".into(), json!(scope.map(|a| a.to_string())));
    out.insert(
        "stamp".into(),
        serde_json::to_value(stamp).expect("stamps serialize"),
    );
    out.insert(
        "criteria".into(),
        serde_json::to_value(&card.criteria).expect("criteria serialize"),
    );
    match periods.len() {
        1 => {
            let rows = periods.into_iter().next().expect("one")["rows"].take();
            out.insert("rows".into(), rows);
        }
        _ => {
            out.insert("periods".into(), Value::Array(periods));
        }
    }
    Value::Object(out)
}

/// JSON Schemas of the JSON answer, made from the same column list as the answers themselves: `IndicatorRow`,
/// `IndicatorStamp` and `IndicatorAnswer` (a table, or a series with `periods`). References point into
/// `#/components/schemas/`, for the OpenAPI document.
pub fn json_schemas() -> Vec<(&'static str, Value)> {
    let row = dummy_row();
    let mut properties = Map::new();
    let mut required: Vec<String> = Vec::new();
    for c in COLUMNS {
        let schema = match (c.get)(&row) {
            Cell::Text(_) => json!({ "type": ["string", "null"], "description": c.en }),
            Cell::Int(_) => json!({ "type": "integer", "minimum": 0, "description": c.en }),
            Cell::Ratio(_) | Cell::Rate(..) => {
                json!({ "type": ["number", "null"], "description": format!("{} (a fraction; null when its denominator is 0)", c.en) })
            }
            Cell::Verdict(_) => {
                json!({ "type": ["boolean", "null"], "description": format!("{} (null when nothing was received)", c.en) })
            }
        };
        match c.key.split_once('/') {
            Some((parent, child)) => {
                let nested = properties.entry(parent).or_insert_with(
                    || json!({ "type": "object", "properties": {}, "required": [] }),
                );
                nested["properties"][child] = schema;
                nested["required"]
                    .as_array_mut()
                    .expect("required is an array")
                    .push(json!(child));
            }
            None => {
                properties.insert(c.key.to_owned(), schema);
            }
        }
        let top = c.key.split('/').next().expect("a key").to_owned();
        if !required.contains(&top) {
            required.push(top);
        }
    }
    properties.insert(
        "scores".into(),
        json!({ "type": "object", "additionalProperties": { "type": ["number", "null"] },
                "description": "Each scorecard criterion's score, by id (null when its ratio is)" }),
    );
    properties.insert("score_total".into(), json!({ "type": "number" }));
    properties.insert(
        "printed".into(),
        json!({ "type": "object", "additionalProperties": { "type": ["string", "null"] },
                "description": "Each rate as a percentage printed under the profile's rounding (null when undefined)" }),
    );
    required.extend(["scores".to_owned(), "score_total".to_owned()]);
    let row_schema = json!({ "type": "object", "properties": properties, "required": required });
    let instant = json!({ "type": ["string", "null"], "format": "date-time" });
    let stamp = json!({
        "type": "object",
        "description": "What the answer was computed from (docs/indicators.md §5)",
        "required": ["position", "root", "recorded_at", "judged_at", "as_of", "known_at", "computed_at", "settings"],
        "properties": {
            "position": { "type": "integer", "minimum": 0 },
            "root": { "type": "string", "description": "The audit root at `position`, base64" },
            "recorded_at": instant,
            "judged_at": instant,
            "as_of": { "type": ["integer", "null"] },
            "known_at": { "anyOf": [{ "type": "string", "format": "date-time" }, { "type": "string", "format": "date" }, { "type": "null" }],
                          "description": "As asked: an instant (events recorded at or before it), or a day in Vietnam time (events recorded before the next day began)" },
            "computed_at": { "type": "string", "format": "date-time" },
            "settings": {
                "type": "object",
                "required": ["cut", "scorecard", "profile"],
                "properties": {
                    "profile": { "type": "object", "required": ["id", "title", "title_vi", "sha256"],
                                 "properties": { "id": { "type": "string" }, "title": { "type": "string" }, "title_vi": { "type": "string" }, "sha256": { "type": "string" } } },
                    "cut": { "type": "string", "pattern": "^(calendar|decree-09|month-before|day-([1-9]|1[0-9]|2[0-8]))$" },
                    "scorecard": { "type": "object", "required": ["name", "sha256"],
                                   "properties": { "name": { "type": "string" }, "sha256": { "type": "string" } } }
                }
            }
        }
    });
    let rows = json!({ "type": "array", "items": { "$ref": "#/components/schemas/IndicatorRow" } });
    let answer = json!({
        "type": "object",
        "description": "One period (`period` and `rows`) or a series (`from`, `to` and `periods`)",
        "required": ["group", "agency", "stamp", "criteria"],
        "properties": {
            "period": { "type": "string" },
            "from": { "type": "string" },
            "to": { "type": "string" },
            "group": { "type": "string", "enum": ["agency", "subtree", "level", "province"] },
            "agency": { "type": ["string", "null"] },
            "stamp": { "$ref": "#/components/schemas/IndicatorStamp" },
            "criteria": { "type": "array", "items": { "type": "object", "required": ["id", "column", "threshold", "points", "source", "confidence"] } },
            "rows": rows,
            "periods": { "type": "array", "items": { "type": "object", "required": ["period", "rows"],
                         "properties": { "period": { "type": "string" }, "rows": rows } } }
        }
    });
    vec![
        ("IndicatorRow", row_schema),
        ("IndicatorStamp", stamp),
        ("IndicatorAnswer", answer),
    ]
}
