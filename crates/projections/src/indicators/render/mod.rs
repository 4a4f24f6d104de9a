//! Answers as JSON, CSV, XLSX and text, from one list of columns with their Vietnamese and English headers: the
//! columns and what every format shares here, one file per format (`json`, `csv`, `xlsx`, `text`). How an answer
//! travels (HTTP content types) is the server's business.

use super::profile::{Fraction, Rounding};
use super::scorecard::Scorecard;
use super::table::{level_name, Group, Row};
use chrono::{DateTime, Utc};
use domain::calendar::Cut;
use domain::{AgencyCode, Period};
use serde::Serialize;
use serde_json::{json, Map, Value};

mod csv;
mod json;
mod text;
mod xlsx;

pub use csv::{csv, csv_text};
pub use json::{json, json_schemas};
pub use text::text;
pub(crate) use xlsx::stamp_pairs;
pub use xlsx::xlsx;

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
    pub settings: StampSettings,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
/// What a table was computed with: the reporting cut, the scorecard and the report profile.
pub struct StampSettings {
    pub cut: Cut,
    pub scorecard: ScorecardName,
    pub profile: ProfileName,
}

/// The profile a table follows, as its stamp names it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProfileName {
    pub id: String,
    /// Its English title, and its Vietnamese one.
    pub title: String,
    pub title_vi: String,
    pub sha256: String,
}

impl ProfileName {
    pub fn of(p: &super::profile::Profile) -> ProfileName {
        ProfileName {
            id: p.id.clone(),
            title: p.title_en.clone(),
            title_vi: p.title_vi.clone(),
            sha256: p.sha256.clone(),
        }
    }
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
    /// A fraction given as such (a target).
    Ratio(Option<f64>),
    /// A rate: its two sides, printed under the row's profile's rounding.
    Rate(Fraction, Rounding),
    Verdict(Option<bool>),
}

impl Cell {
    /// The value as a fraction (`None` when undefined).
    fn fraction(&self) -> Option<f64> {
        match self {
            Cell::Ratio(r) => *r,
            Cell::Rate(f, _) => f.value(),
            _ => None,
        }
    }

    /// A ratio printed as a percentage (no sign): a rate under its profile's rounding, a target with two decimals.
    fn percent(&self) -> Option<String> {
        match self {
            Cell::Ratio(r) => r.map(|r| format!("{:.2}", r * 100.0)),
            Cell::Rate(f, rounding) => rounding.percent(f.num, f.den),
            _ => None,
        }
    }
}

/// A rate column's cell.
fn rate(r: &Row, name: &str) -> Cell {
    Cell::Rate(
        r.fraction(name).expect("a known ratio column"),
        r.defs.rounding,
    )
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

/// The columns every format renders. The classes of resolved and open dossiers are the row's profile's (its folds
/// applied: under the national profile, the engine's counts as they are), so that each rate can be recomputed from
/// the columns beside it.
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
        |r| rate(r, "online_rate")
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
        rate(r, "postal_rate")
    }),
    col!(
        "postal_receive_rate",
        "Postal receipt rate",
        "Tỷ lệ tiếp nhận qua BCCI",
        |r| rate(r, "postal_receive_rate")
    ),
    col!(
        "postal_return_rate",
        "Postal return rate",
        "Tỷ lệ trả kết quả qua BCCI",
        |r| rate(r, "postal_return_rate")
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
        |r| Cell::Int(r.form().early)
    ),
    col!(
        "resolved_on_time",
        "Resolved on time",
        "Giải quyết đúng hạn",
        |r| Cell::Int(r.form().on_time)
    ),
    col!(
        "resolved_late",
        "Resolved late",
        "Giải quyết quá hạn",
        |r| Cell::Int(r.form().late)
    ),
    col!(
        "open_in_time",
        "Open, in time",
        "Đang giải quyết trong hạn",
        |r| Cell::Int(r.form().in_time)
    ),
    col!(
        "open_late",
        "Open, late",
        "Đang giải quyết quá hạn",
        |r| Cell::Int(r.form().overdue)
    ),
    col!(
        "on_time_rate",
        "On-time rate",
        "Tỷ lệ đúng hạn",
        |r| rate(r, "on_time_rate")
    ),
    col!(
        "due_total",
        "Falling due in the period",
        "Đến hạn trong kỳ",
        |r| Cell::Int(r.counts.due_met + r.counts.due_missed)
    ),
    col!(
        "due_met",
        "Falling due: resolved on time",
        "Đến hạn: giải quyết đúng hạn",
        |r| Cell::Int(r.counts.due_met)
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
        Cell::Ratio(_) | Cell::Rate(..) => format!("{text} (%)"),
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
        defs: Default::default(),
    }
}

/// The header of the column naming the profile, the last of every CSV and XLSX table.
fn profile_header(lang: Lang) -> String {
    match lang {
        Lang::Vi => "Cách tính".into(),
        Lang::En => "Profile".into(),
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
pub(crate) fn cell_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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
        Format::Csv => csv(stamp, tables, card, lang)?,
        Format::Xlsx => xlsx(stamp, group, tables, card, lang)?,
        Format::Text => format!(
            "{}: {} ({})\n{}position {} · root {} · cut {} · profile {} · computed {}\n",
            profile_header(lang),
            stamp.settings.profile.id,
            match lang {
                Lang::Vi => &stamp.settings.profile.title_vi,
                Lang::En => &stamp.settings.profile.title,
            },
            text(tables, lang),
            stamp.position,
            stamp.root,
            stamp.settings.cut,
            stamp.settings.profile.id,
            stamp.computed_at.to_rfc3339()
        )
        .into_bytes(),
    })
}
