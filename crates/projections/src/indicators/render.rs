//! Answers as JSON, CSV and XLSX, from one list of columns with their Vietnamese and English headers.

use super::scorecard::Scorecard;
use super::table::{level_name, Group, Row};
use chrono::{DateTime, Utc};
use domain::calendar::Cut;
use domain::{AgencyCode, Period};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// What an answer was computed from (indicators.md §5).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stamp {
    /// The last log position counted.
    pub position: u64,
    /// The audit tree's root at that position (base64, as in `/v1/events` and checkpoints).
    pub root: String,
    /// When that position was recorded.
    pub recorded_at: Option<DateTime<Utc>>,
    /// The instant open dossiers are judged at when a period had not ended by then.
    pub judged_at: Option<DateTime<Utc>>,
    pub as_of: Option<u64>,
    /// As asked: an instant, or a whole day in Vietnam time.
    pub known_at: Option<domain::KnownAt>,
    pub computed_at: DateTime<Utc>,
    pub settings: Settings,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Settings {
    pub cut: Cut,
    pub scorecard: ScorecardName,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScorecardName {
    pub name: String,
    pub sha256: String,
}

/// One period's rows.
#[derive(Clone, Debug)]
pub struct Table {
    pub period: Period,
    pub rows: Vec<Row>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Vi,
    En,
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Lang, String> {
        match s {
            "vi" => Ok(Lang::Vi),
            "en" => Ok(Lang::En),
            _ => Err(format!("unknown language {s:?}: expected vi or en")),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Text(Option<String>),
    Int(i64),
    Ratio(Option<f64>),
    Verdict(Option<bool>),
}

struct Column {
    /// The JSON path: one name, or `parent/child` for a nested object.
    key: &'static str,
    en: &'static str,
    vi: &'static str,
    get: fn(&Row) -> Cell,
}

macro_rules! col {
    ($key:literal, $en:literal, $vi:literal, |$r:ident| $get:expr) => {
        Column {
            key: $key,
            en: $en,
            vi: $vi,
            get: |$r: &Row| $get,
        }
    };
}

const COLUMNS: &[Column] = &[
    col!("agency", "Agency code", "Mã cơ quan", |r| Cell::Text(
        r.key.agency.as_ref().map(|a| a.to_string())
    )),
    col!("name", "Name", "Tên", |r| Cell::Text(Some(
        r.key.name.clone()
    ))),
    col!("level", "Level", "Cấp", |r| Cell::Text(
        r.key.level.map(|l| level_name(l).to_owned())
    )),
    col!("parent", "Parent agency", "Cơ quan cấp trên", |r| {
        Cell::Text(r.key.parent.as_ref().map(|a| a.to_string()))
    }),
    col!(
        "agencies",
        "Agencies summed",
        "Số cơ quan cộng gộp",
        |r| Cell::Int(r.key.agencies as i64)
    ),
    col!("received", "Received", "Tiếp nhận", |r| Cell::Int(
        r.counts.received
    )),
    col!(
        "received_counter",
        "Received at the counter",
        "Tiếp nhận trực tiếp",
        |r| Cell::Int(r.counts.received_counter)
    ),
    col!(
        "received_online",
        "Received online",
        "Tiếp nhận trực tuyến",
        |r| Cell::Int(r.counts.received_online)
    ),
    col!(
        "received_postal",
        "Received by post",
        "Tiếp nhận qua bưu chính",
        |r| Cell::Int(r.counts.received_postal)
    ),
    col!(
        "received_online_by_level/level3",
        "Online, level 3",
        "Trực tuyến mức độ 3",
        |r| Cell::Int(r.counts.level3)
    ),
    col!(
        "received_online_by_level/level4",
        "Online, level 4",
        "Trực tuyến mức độ 4",
        |r| Cell::Int(r.counts.level4)
    ),
    col!(
        "received_online_by_level/partial",
        "Online, partial",
        "Trực tuyến một phần",
        |r| Cell::Int(r.counts.partial)
    ),
    col!(
        "received_online_by_level/full",
        "Online, full",
        "Trực tuyến toàn trình",
        |r| Cell::Int(r.counts.full)
    ),
    col!(
        "online_rate",
        "Online rate",
        "Tỷ lệ trực tuyến",
        |r| Cell::Ratio(r.online_rate())
    ),
    col!(
        "online_target",
        "Online target",
        "Chỉ tiêu trực tuyến",
        |r| Cell::Ratio(Some(r.online_target))
    ),
    col!(
        "online_met",
        "Online target met",
        "Đạt chỉ tiêu trực tuyến",
        |r| Cell::Verdict(r.online_met())
    ),
    col!(
        "postal_received",
        "Postal: received by post",
        "BCCI: tiếp nhận qua bưu chính",
        |r| Cell::Int(r.counts.postal_received)
    ),
    col!(
        "postal_returned",
        "Postal: results returned by post",
        "BCCI: trả kết quả qua bưu chính",
        |r| Cell::Int(r.counts.postal_returned)
    ),
    col!(
        "postal_dossiers",
        "Postal: dossiers, either direction",
        "BCCI: hồ sơ (cả hai chiều)",
        |r| Cell::Int(r.counts.postal_dossiers)
    ),
    col!("postal_rate", "Postal rate", "Tỷ lệ BCCI", |r| {
        Cell::Ratio(r.postal_rate())
    }),
    col!(
        "postal_receive_rate",
        "Postal receipt rate",
        "Tỷ lệ tiếp nhận qua BCCI",
        |r| Cell::Ratio(r.postal_receive_rate())
    ),
    col!(
        "postal_return_rate",
        "Postal return rate",
        "Tỷ lệ trả kết quả qua BCCI",
        |r| Cell::Ratio(r.postal_return_rate())
    ),
    col!("postal_target", "Postal target", "Chỉ tiêu BCCI", |r| {
        Cell::Ratio(Some(r.postal_target))
    }),
    col!(
        "postal_met",
        "Postal target met",
        "Đạt chỉ tiêu BCCI",
        |r| Cell::Verdict(r.postal_met())
    ),
    col!(
        "returned",
        "Results returned",
        "Đã trả kết quả",
        |r| Cell::Int(r.counts.returned)
    ),
    col!(
        "returned_by_channel/counter",
        "Returned at the counter",
        "Trả trực tiếp",
        |r| Cell::Int(r.counts.returned_counter)
    ),
    col!(
        "returned_by_channel/online",
        "Returned online",
        "Trả trực tuyến",
        |r| Cell::Int(r.counts.returned_online)
    ),
    col!(
        "returned_by_channel/postal",
        "Returned by post",
        "Trả qua bưu chính",
        |r| Cell::Int(r.counts.returned_postal)
    ),
    col!(
        "carried_over",
        "Carried over",
        "Kỳ trước chuyển sang",
        |r| Cell::Int(r.counts.carried_over)
    ),
    col!(
        "resolved_early",
        "Resolved early",
        "Giải quyết trước hạn",
        |r| Cell::Int(r.counts.resolved_early)
    ),
    col!(
        "resolved_on_time",
        "Resolved on time",
        "Giải quyết đúng hạn",
        |r| Cell::Int(r.counts.resolved_on_time)
    ),
    col!(
        "resolved_late",
        "Resolved late",
        "Giải quyết quá hạn",
        |r| Cell::Int(r.counts.resolved_late)
    ),
    col!(
        "open_in_time",
        "Open, in time",
        "Đang giải quyết trong hạn",
        |r| Cell::Int(r.counts.open_in_time)
    ),
    col!(
        "open_late",
        "Open, late",
        "Đang giải quyết quá hạn",
        |r| Cell::Int(r.counts.open_late)
    ),
    col!(
        "on_time_rate",
        "On-time rate",
        "Tỷ lệ đúng hạn",
        |r| Cell::Ratio(r.on_time_rate())
    ),
    col!("withdrawn", "Withdrawn", "Rút hồ sơ", |r| Cell::Int(
        r.counts.withdrawn
    )),
    col!(
        "transferred_in",
        "Transferred in",
        "Nhận liên thông",
        |r| Cell::Int(r.counts.transferred_in)
    ),
    col!(
        "transferred_out",
        "Transferred out",
        "Chuyển liên thông",
        |r| Cell::Int(r.counts.transferred_out)
    ),
    col!(
        "procedures_offered",
        "Procedures offered",
        "Số TTHC",
        |r| Cell::Int(r.counts.procedures_offered)
    ),
    col!(
        "procedures_online",
        "Procedures online",
        "TTHC trực tuyến",
        |r| Cell::Int(r.counts.procedures_online)
    ),
    col!(
        "procedures_online_used",
        "Online procedures with an online dossier",
        "TTHC trực tuyến có phát sinh hồ sơ",
        |r| Cell::Int(r.counts.procedures_online_used)
    ),
    col!(
        "procedures_postal_receive",
        "Procedures with postal receipt",
        "TTHC tiếp nhận qua BCCI",
        |r| Cell::Int(r.counts.procedures_postal_receive)
    ),
    col!(
        "procedures_postal_receive_used",
        "… with a dossier received by post",
        "… có phát sinh hồ sơ qua BCCI",
        |r| Cell::Int(r.counts.procedures_postal_receive_used)
    ),
    col!(
        "procedures_postal_return",
        "Procedures with postal return",
        "TTHC trả kết quả qua BCCI",
        |r| Cell::Int(r.counts.procedures_postal_return)
    ),
    col!(
        "procedures_postal_return_used",
        "… with a result returned by post",
        "… có phát sinh trả kết quả qua BCCI",
        |r| Cell::Int(r.counts.procedures_postal_return_used)
    ),
];

fn header(c: &Column, lang: Lang) -> String {
    let text = match lang {
        Lang::Vi => c.vi,
        Lang::En => c.en,
    };
    match (c.get)(&dummy_row()) {
        Cell::Ratio(_) => format!("{text} (%)"),
        _ => text.to_owned(),
    }
}

fn dummy_row() -> Row {
    Row {
        key: super::table::RowKey {
            agency: None,
            name: String::new(),
            level: None,
            parent: None,
            agencies: 0,
        },
        counts: Default::default(),
        online_target: 0.0,
        postal_target: 0.0,
    }
}

fn verdict(v: bool, lang: Lang) -> &'static str {
    match (v, lang) {
        (true, Lang::Vi) => "Đạt",
        (false, Lang::Vi) => "Không đạt",
        (true, Lang::En) => "met",
        (false, Lang::En) => "not met",
    }
}

fn cell_json(cell: Cell) -> Value {
    match cell {
        Cell::Text(t) => t.map_or(Value::Null, Value::String),
        Cell::Int(n) => json!(n),
        Cell::Ratio(r) => r.map_or(Value::Null, |r| json!(r)),
        Cell::Verdict(v) => v.map_or(Value::Null, Value::Bool),
    }
}

fn row_json(row: &Row, card: &Scorecard) -> Value {
    let mut out = Map::new();
    for c in COLUMNS {
        let value = cell_json((c.get)(row));
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

fn score_headers(card: &Scorecard, lang: Lang) -> Vec<String> {
    let mut h: Vec<String> = card
        .criteria
        .iter()
        .map(|c| match lang {
            Lang::Vi => format!("Điểm {}", c.id),
            Lang::En => format!("Score {}", c.id),
        })
        .collect();
    h.push(match lang {
        Lang::Vi => "Tổng điểm".into(),
        Lang::En => "Score total".into(),
    });
    h
}

fn period_header(lang: Lang) -> String {
    match lang {
        Lang::Vi => "Kỳ báo cáo".into(),
        Lang::En => "Period".into(),
    }
}

/// Whether a spreadsheet would take a cell starting so for a formula (OWASP's CSV injection guidance: `=`, `+`, `-`,
/// `@`, and their full-width forms; a leading tab or carriage return is made a space first).
fn starts_a_formula(s: &str) -> bool {
    matches!(
        s.chars().next(),
        Some('=' | '+' | '-' | '@' | '＝' | '＋' | '－' | '＠')
    )
}

/// Untrusted text (names, codes, a scorecard's titles) as a spreadsheet cell: control characters become spaces.
/// JSON answers keep the text as it is.
fn cell_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Text for a CSV field, which a spreadsheet opening the file interprets: control characters become spaces, and
/// a field that would start a formula is prefixed with `'`, so that it is shown as text.
pub fn csv_text(s: &str) -> String {
    let clean = cell_text(s);
    if starts_a_formula(&clean) {
        format!("'{clean}")
    } else {
        clean
    }
}

/// Writes untrusted text into a workbook cell: control characters become spaces, and a text that would start a
/// formula is marked as text with Excel's own quote prefix (shown without the apostrophe, never evaluated).
fn xlsx_text(
    sheet: &mut rust_xlsxwriter::Worksheet,
    row: u32,
    col: u16,
    s: &str,
) -> Result<(), rust_xlsxwriter::XlsxError> {
    let clean = cell_text(s);
    if starts_a_formula(&clean) {
        let text = rust_xlsxwriter::Format::new().set_quote_prefix();
        sheet.write_string_with_format(row, col, clean, &text)?;
    } else {
        sheet.write_string(row, col, clean)?;
    }
    Ok(())
}

/// CSV: a header row, then one line per row of every period. Ratios are percentages with two decimals; an
/// undefined ratio or verdict is an empty field.
pub fn csv(tables: &[Table], card: &Scorecard, lang: Lang) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec![period_header(lang)];
    head.extend(COLUMNS.iter().map(|c| header(c, lang)));
    head.extend(score_headers(card, lang));
    w.write_record(&head).map_err(|e| e.to_string())?;
    for t in tables {
        for row in &t.rows {
            let mut record = vec![t.period.to_string()];
            for c in COLUMNS {
                record.push(match (c.get)(row) {
                    Cell::Text(t) => csv_text(&t.unwrap_or_default()),
                    Cell::Int(n) => n.to_string(),
                    Cell::Ratio(r) => r.map_or_else(String::new, |r| format!("{:.2}", r * 100.0)),
                    Cell::Verdict(v) => v.map_or("", |v| verdict(v, lang)).to_owned(),
                });
            }
            let scores = card.scores(row);
            let total: f64 = scores.iter().filter_map(|(_, s)| *s).sum();
            record.extend(
                scores
                    .iter()
                    // `+ 0.0` turns a negative zero into zero: "-0.000" is no score.
                    .map(|(_, s)| s.map_or_else(String::new, |s| format!("{:.3}", s + 0.0))),
            );
            record.push(format!("{:.3}", total + 0.0));
            w.write_record(&record).map_err(|e| e.to_string())?;
        }
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// A workbook: the table on the first sheet (header row, percentages formatted as such), the stamp on the second
/// and in the document's custom properties.
pub fn xlsx(
    stamp: &Stamp,
    group: Group,
    tables: &[Table],
    card: &Scorecard,
    lang: Lang,
) -> Result<Vec<u8>, String> {
    use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook};
    let err = |e: rust_xlsxwriter::XlsxError| e.to_string();
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let percent = Format::new().set_num_format("0.00%");
    let score_format = Format::new().set_num_format("0.000");
    let (table_name, stamp_name) = match lang {
        Lang::Vi => ("Chỉ tiêu", "Thông tin tính toán"),
        Lang::En => ("Indicators", "Computed from"),
    };
    {
        let sheet = book.add_worksheet().set_name(table_name).map_err(err)?;
        let mut head = vec![period_header(lang)];
        head.extend(COLUMNS.iter().map(|c| header(c, lang)));
        head.extend(score_headers(card, lang));
        for (i, h) in head.iter().enumerate() {
            sheet
                .write_string_with_format(0, i as u16, h, &bold)
                .map_err(err)?;
        }
        let mut r = 1u32;
        for t in tables {
            for row in &t.rows {
                sheet
                    .write_string(r, 0, t.period.to_string())
                    .map_err(err)?;
                for (i, c) in COLUMNS.iter().enumerate() {
                    let col = i as u16 + 1;
                    match (c.get)(row) {
                        Cell::Text(Some(s)) => xlsx_text(sheet, r, col, &s).map_err(err)?,
                        Cell::Int(n) => {
                            sheet.write_number(r, col, n as f64).map_err(err)?;
                        }
                        Cell::Ratio(Some(x)) => {
                            sheet
                                .write_number_with_format(r, col, x, &percent)
                                .map_err(err)?;
                        }
                        Cell::Verdict(Some(v)) => {
                            sheet.write_string(r, col, verdict(v, lang)).map_err(err)?;
                        }
                        Cell::Text(None) | Cell::Ratio(None) | Cell::Verdict(None) => {}
                    }
                }
                let mut col = COLUMNS.len() as u16 + 1;
                let mut total = 0.0;
                for (_, s) in card.scores(row) {
                    if let Some(s) = s {
                        sheet
                            .write_number_with_format(r, col, s, &score_format)
                            .map_err(err)?;
                        total += s;
                    }
                    col += 1;
                }
                sheet
                    .write_number_with_format(r, col, total, &score_format)
                    .map_err(err)?;
                r += 1;
            }
        }
        sheet.set_freeze_panes(1, 3).map_err(err)?;
        sheet.autofit();
    }
    let facts = stamp_facts(stamp, group, tables);
    {
        let sheet = book.add_worksheet().set_name(stamp_name).map_err(err)?;
        for (i, (k, v)) in facts.iter().enumerate() {
            sheet
                .write_string_with_format(i as u32, 0, *k, &bold)
                .map_err(err)?;
            xlsx_text(sheet, i as u32, 1, v).map_err(err)?;
        }
        let base = facts.len() as u32 + 1;
        for (i, c) in card.criteria.iter().enumerate() {
            let r = base + i as u32;
            let title = match lang {
                Lang::Vi => &c.title_vi,
                Lang::En => &c.title_en,
            };
            xlsx_text(sheet, r, 0, &c.id).map_err(err)?;
            let line = format!(
                "{title}: {} ≥ {} → {} ({}; {})",
                c.column, c.threshold, c.points, c.source, c.confidence
            );
            xlsx_text(sheet, r, 1, &line).map_err(err)?;
        }
        sheet.autofit();
    }
    let mut props = DocProperties::new().set_title(format!("casetrail indicators {}", facts[1].1));
    for (k, v) in &facts {
        props = props.set_custom_property(*k, v.as_str());
    }
    // The workbook's own dates are the stamp's, so that the same answer gives the same file.
    if let Some(at) = stamp.recorded_at {
        let when = ExcelDateTime::from_timestamp(at.timestamp()).map_err(err)?;
        props = props.set_creation_datetime(&when);
    }
    book.set_properties(&props);
    book.save_to_buffer().map_err(err)
}

fn stamp_facts(stamp: &Stamp, group: Group, tables: &[Table]) -> Vec<(&'static str, String)> {
    let periods = match tables {
        [one] => one.period.to_string(),
        _ => format!(
            "{}…{}",
            tables
                .first()
                .map_or(String::new(), |t| t.period.to_string()),
            tables
                .last()
                .map_or(String::new(), |t| t.period.to_string())
        ),
    };
    let opt = |t: Option<DateTime<Utc>>| t.map_or_else(String::new, |t| t.to_rfc3339());
    vec![
        ("casetrail", "indicator table".to_owned()),
        ("period", periods),
        ("group", group.to_string()),
        ("position", stamp.position.to_string()),
        ("root", stamp.root.clone()),
        ("recorded_at", opt(stamp.recorded_at)),
        ("judged_at", opt(stamp.judged_at)),
        (
            "as_of",
            stamp.as_of.map_or_else(String::new, |p| p.to_string()),
        ),
        (
            "known_at",
            stamp.known_at.map_or_else(String::new, |k| k.to_string()),
        ),
        ("computed_at", stamp.computed_at.to_rfc3339()),
        ("cut", stamp.settings.cut.to_string()),
        ("scorecard", stamp.settings.scorecard.name.clone()),
        ("scorecard_sha256", stamp.settings.scorecard.sha256.clone()),
    ]
}

/// A plain-text table for terminals: the main columns only.
pub fn text(tables: &[Table], lang: Lang) -> String {
    let keys = [
        "agency",
        "name",
        "received",
        "received_online",
        "online_rate",
        "online_met",
        "postal_dossiers",
        "postal_rate",
        "postal_met",
        "on_time_rate",
    ];
    let cols: Vec<&Column> = keys
        .iter()
        .map(|k| {
            COLUMNS
                .iter()
                .find(|c| c.key == *k)
                .expect("a known column")
        })
        .collect();
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut head = vec![period_header(lang)];
    head.extend(cols.iter().map(|c| header(c, lang)));
    lines.push(head);
    for t in tables {
        for row in &t.rows {
            let mut line = vec![t.period.to_string()];
            for c in &cols {
                line.push(match (c.get)(row) {
                    Cell::Text(t) => cell_text(&t.unwrap_or_default()),
                    Cell::Int(n) => n.to_string(),
                    Cell::Ratio(r) => {
                        r.map_or_else(|| "—".to_owned(), |r| format!("{:.2}", r * 100.0))
                    }
                    Cell::Verdict(v) => v.map_or("—", |v| verdict(v, lang)).to_owned(),
                });
            }
            lines.push(line);
        }
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count().min(40))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(s, w)| {
                let s: String = s.chars().take(40).collect();
                format!("{s:<w$}", w = *w)
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The formats an answer comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Xlsx,
    /// The main columns, aligned, with the stamp on the last line: for terminals.
    Text,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "xlsx" => Ok(Format::Xlsx),
            "text" | "table" => Ok(Format::Text),
            _ => Err(format!(
                "unknown format {s:?}: expected json, csv, xlsx or text"
            )),
        }
    }
}

impl Format {
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Text => "text/plain; charset=utf-8",
        }
    }

    pub fn extension(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Text => "txt",
        }
    }
}

/// An answer in any format.
pub fn render(
    format: Format,
    stamp: &Stamp,
    group: Group,
    scope: Option<&AgencyCode>,
    tables: &[Table],
    card: &Scorecard,
    lang: Lang,
) -> Result<Vec<u8>, String> {
    Ok(match format {
        Format::Json => {
            let mut bytes = serde_json::to_vec(&json(stamp, group, scope, tables, card))
                .map_err(|e| e.to_string())?;
            bytes.push(b'\n');
            bytes
        }
        Format::Csv => csv(tables, card, lang)?,
        Format::Xlsx => xlsx(stamp, group, tables, card, lang)?,
        Format::Text => format!(
            "{}position {} · root {} · cut {} · computed {}\n",
            text(tables, lang),
            stamp.position,
            stamp.root,
            stamp.settings.cut,
            stamp.computed_at.to_rfc3339()
        )
        .into_bytes(),
    })
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
            Cell::Ratio(_) => {
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
                "required": ["cut", "scorecard"],
                "properties": {
                    "cut": { "type": "string", "enum": ["calendar", "decree-09"] },
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
