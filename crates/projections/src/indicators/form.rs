//! The official dossier-count form: "tình hình, kết quả giải quyết thủ tục hành chính", the table of the Government
//! Office's periodic-report circulars (01/2020/TT-VPCP and its successor), filled from an indicator table under a
//! report profile. Rows by agency with level subtotals, or by level; the form's columns by their numbers; its
//! identities checked before anything is written. As JSON, CSV and XLSX (with the form's merged headers).

use super::profile::{Form, Identity};
use super::render::{cell_text, csv_text, Lang, Stamp, Table};
use super::table::{level_name, Counts, Row};
use domain::event::AgencyLevel;
use serde::Serialize;
use serde_json::{json, Value};

/// How the form's rows are formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FormBy {
    /// One row per agency, a subtotal per level, and the total.
    Agency,
    /// One row per level, and the total.
    Level,
    /// One row per procedure field (lĩnh vực) within each level, a subtotal per level, and the total. A line's name
    /// is the field's name with its code.
    Field,
}

impl std::str::FromStr for FormBy {
    type Err = String;
    fn from_str(s: &str) -> Result<FormBy, String> {
        match s {
            "agency" => Ok(FormBy::Agency),
            "level" => Ok(FormBy::Level),
            "field" => Ok(FormBy::Field),
            _ => Err(format!(
                "unknown form rows {s:?}: expected agency, level or field"
            )),
        }
    }
}

impl std::fmt::Display for FormBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FormBy::Agency => "agency",
            FormBy::Level => "level",
            FormBy::Field => "field",
        })
    }
}

/// What a line of the form stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    Agency,
    /// One procedure field within a level (by field).
    Field,
    /// The sum of one level's agencies (by agency), or one level (by level).
    Level,
    Total,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    pub kind: LineKind,
    /// The row's number on the form (column 1): agencies 1, 2, 3…; levels I, II, III…; the total none.
    pub number: String,
    pub name: String,
    pub agency: Option<String>,
    /// The field's code (by field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub level: Option<String>,
    pub form: Form,
}

/// The form for one period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FormTable {
    pub period: domain::Period,
    pub by: FormBy,
    pub lines: Vec<Line>,
    /// The columns of the classes the profile keeps apart: 14 (withdrawn), 15 (returned unresolved), 16 (waiting
    /// for documents). A class it folds is inside columns 8 to 13 and gets no column.
    pub apart: Vec<u8>,
}

/// An identity that does not hold: the form is not written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the form's identities do not hold, so it was not written: {}", .0.join("; "))]
pub struct FormError(pub Vec<String>);

const LEVELS: [Option<AgencyLevel>; 5] = [
    Some(AgencyLevel::Province),
    Some(AgencyLevel::Department),
    Some(AgencyLevel::District),
    Some(AgencyLevel::Commune),
    None,
];

fn roman(n: usize) -> String {
    ["I", "II", "III", "IV", "V", "VI"]
        .get(n)
        .map_or_else(|| (n + 1).to_string(), |s| (*s).to_owned())
}

fn level_label(level: Option<AgencyLevel>, lang: Lang) -> String {
    match (level, lang) {
        (Some(AgencyLevel::Province), Lang::Vi) => "Cấp tỉnh".into(),
        (Some(AgencyLevel::Department), Lang::Vi) => "Sở, ban, ngành".into(),
        (Some(AgencyLevel::District), Lang::Vi) => "Cấp huyện".into(),
        (Some(AgencyLevel::Commune), Lang::Vi) => "Cấp xã".into(),
        (None, Lang::Vi) => "Chưa đăng ký".into(),
        (Some(l), Lang::En) => format!("{} level", level_name(l)),
        (None, Lang::En) => "unregistered".into(),
    }
}

impl FormTable {
    /// The form from a table's rows: agency rows (`by` agency) or level rows (`by` level), under a profile's
    /// definitions. Every identity of every line is checked. A subtotal and the total are the form of the summed
    /// counts, so they are the sums of the lines they stand for by construction (`Form::of` is linear).
    pub fn build(
        table: &Table,
        by: FormBy,
        lang: Lang,
        defs: super::profile::Definitions,
    ) -> Result<FormTable, FormError> {
        let apart = defs.apart_columns();
        let line = |kind, number: String, name: String, row: Option<&Row>, counts: &Counts| Line {
            kind,
            number,
            name,
            agency: row.and_then(|r| r.key.agency.as_ref().map(|a| a.to_string())),
            field: None,
            level: row.and_then(|r| r.key.level.map(|l| level_name(l).to_owned())),
            form: Form::of(counts, &defs),
        };
        let mut lines = Vec::new();
        let mut problems = Vec::new();
        let mut total = Counts::default();
        let mut group = 0;
        for level in LEVELS {
            let members: Vec<&Row> = table.rows.iter().filter(|r| r.key.level == level).collect();
            if members.is_empty() {
                continue;
            }
            let mut sum = Counts::default();
            members.iter().for_each(|r| sum.add(&r.counts));
            total.add(&sum);
            let label = level_label(level, lang);
            match by {
                FormBy::Level => {
                    lines.push(line(
                        LineKind::Level,
                        roman(group),
                        label,
                        members.first().copied(),
                        &sum,
                    ));
                }
                FormBy::Agency | FormBy::Field => {
                    let mut subtotal = line(LineKind::Level, roman(group), label, None, &sum);
                    subtotal.level = level.map(|l| level_name(l).to_owned());
                    let rows: Vec<Line> = members
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            let name = if r.key.name.is_empty() {
                                r.key
                                    .agency
                                    .as_ref()
                                    .map_or_else(String::new, |a| a.to_string())
                            } else {
                                r.key.name.clone()
                            };
                            let kind = if by == FormBy::Field {
                                LineKind::Field
                            } else {
                                LineKind::Agency
                            };
                            line(kind, (i + 1).to_string(), name, Some(r), &r.counts)
                        })
                        .collect();
                    lines.push(subtotal);
                    lines.extend(rows);
                }
            }
            group += 1;
        }
        let total_line = line(
            LineKind::Total,
            String::new(),
            match lang {
                Lang::Vi => "Tổng cộng".into(),
                Lang::En => "Total".into(),
            },
            None,
            &total,
        );
        lines.push(total_line);
        for l in &lines {
            for identity in l.form.identities(&apart) {
                if !identity.holds() {
                    problems.push(format!(
                        "{} {}: {} gives {} and {}",
                        l.number, l.name, identity.rule, identity.left, identity.right
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(FormError(problems));
        }
        Ok(FormTable {
            period: table.period,
            by,
            lines,
            apart,
        })
    }

    /// The identities of every line, each with its values (all hold: `build` refuses otherwise).
    pub fn identities(&self) -> Vec<(String, Identity)> {
        self.lines
            .iter()
            .flat_map(|l| {
                l.form
                    .identities(&self.apart)
                    .into_iter()
                    .map(move |i| (format!("{} {}", l.number, l.name), i))
            })
            .collect()
    }

    /// The form's numbered columns printed, (3) onwards: (3) to (13), then those kept apart.
    fn columns(&self) -> Vec<FormColumn> {
        COLUMNS
            .iter()
            .filter(|c| c.number <= 13 || self.apart.contains(&c.number))
            .copied()
            .collect()
    }
}

/// A numbered column of the form: its number, its headers (Vietnamese as on the form, and English), its value.
#[derive(Clone, Copy)]
struct FormColumn {
    number: u8,
    key: &'static str,
    vi: &'static str,
    en: &'static str,
    get: fn(&Form) -> i64,
}

macro_rules! form_col {
    ($n:literal, $key:ident, $vi:literal, $en:literal) => {
        FormColumn {
            number: $n,
            key: stringify!($key),
            vi: $vi,
            en: $en,
            get: |f: &Form| f.$key,
        }
    };
}

const COLUMNS: [FormColumn; 14] = [
    form_col!(
        3,
        received_total,
        "Tổng số hồ sơ nhận giải quyết",
        "Received in total"
    ),
    form_col!(4, online, "Trực tuyến", "Online"),
    form_col!(
        5,
        direct_and_postal,
        "Trực tiếp, dịch vụ bưu chính công ích",
        "At the counter or by post"
    ),
    form_col!(6, carried_over, "Từ kỳ trước", "Carried over"),
    form_col!(7, resolved, "Tổng số đã giải quyết", "Resolved in total"),
    form_col!(8, early, "Trước hạn", "Early"),
    form_col!(9, on_time, "Đúng hạn", "On time"),
    form_col!(10, late, "Quá hạn", "Late"),
    form_col!(
        11,
        in_progress,
        "Tổng số đang giải quyết",
        "In progress in total"
    ),
    form_col!(12, in_time, "Trong hạn", "In time"),
    form_col!(13, overdue, "Quá hạn", "Overdue"),
    form_col!(14, withdrawn, "Rút hồ sơ (tính riêng)", "Withdrawn (apart)"),
    form_col!(
        15,
        unresolved,
        "Trả lại không giải quyết (tính riêng)",
        "Returned unresolved (apart)"
    ),
    form_col!(
        16,
        waiting,
        "Chờ bổ sung hồ sơ (tính riêng)",
        "Waiting for documents (apart)"
    ),
];

fn header(c: &FormColumn, lang: Lang) -> String {
    let text = match lang {
        Lang::Vi => c.vi,
        Lang::En => c.en,
    };
    format!("({}) {text}", c.number)
}

fn words(lang: Lang) -> [&'static str; 8] {
    match lang {
        Lang::Vi => [
            "(1) STT",
            "(2) Đơn vị",
            "Loại dòng",
            "Mã cơ quan",
            "Cấp",
            "Kỳ báo cáo",
            "Cách tính",
            "Vị trí nhật ký",
        ],
        Lang::En => [
            "(1) No.",
            "(2) Unit",
            "Line",
            "Agency code",
            "Level",
            "Period",
            "Profile",
            "Log position",
        ],
    }
}

fn kind_word(kind: LineKind) -> &'static str {
    match kind {
        LineKind::Agency => "agency",
        LineKind::Field => "field",
        LineKind::Level => "level",
        LineKind::Total => "total",
    }
}

/// The form as JSON: the lines with their numbered columns, the identities checked, and the stamp.
pub fn form_json(stamp: &Stamp, forms: &[FormTable]) -> Value {
    let tables: Vec<Value> = forms
        .iter()
        .map(|f| {
            let lines: Vec<Value> = f
                .lines
                .iter()
                .map(|l| {
                    let mut columns = serde_json::Map::new();
                    for c in f.columns() {
                        columns.insert(c.number.to_string(), json!((c.get)(&l.form)));
                    }
                    let mut line = json!({ "kind": l.kind, "number": l.number, "name": l.name,
                                           "agency": l.agency, "level": l.level, "columns": columns });
                    if let Some(f) = &l.field {
                        line["field"] = json!(f);
                    }
                    line
                })
                .collect();
            let identities: Vec<String> =
                f.identities().iter().map(|(_, i)| i.rule.clone()).collect();
            let mut rules: Vec<String> = identities.clone();
            rules.sort();
            rules.dedup();
            json!({ "period": f.period.to_string(), "by": f.by, "lines": lines,
                    "identities": { "rules": rules, "checked": identities.len(), "hold": true } })
        })
        .collect();
    let columns: Vec<Value> = forms
        .first()
        .map(FormTable::columns)
        .unwrap_or_default()
        .iter()
        .map(|c| json!({ "number": c.number, "key": c.key, "vi": c.vi, "en": c.en }))
        .collect();
    json!({ "form": "tình hình, kết quả giải quyết TTHC (Circular 01/2020/TT-VPCP)", "columns": columns,
            "tables": tables, "stamp": stamp })
}

/// The form as CSV: one header row (the numbered columns, then the line's kind, agency code, level, the period,
/// the profile and the log position), one line per form line of every period.
pub fn form_csv(stamp: &Stamp, forms: &[FormTable], lang: Lang) -> Result<Vec<u8>, String> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let columns = forms.first().map(FormTable::columns).unwrap_or_default();
    let [number, unit, kind, code, level, period, profile, position] = words(lang);
    let mut head = vec![number.to_owned(), unit.to_owned()];
    head.extend(columns.iter().map(|c| header(c, lang)));
    head.extend([kind, code, level, period, profile, position].map(str::to_owned));
    w.write_record(&head).map_err(|e| e.to_string())?;
    for f in forms {
        for l in &f.lines {
            let mut record = vec![l.number.clone(), csv_text(&l.name)];
            record.extend(columns.iter().map(|c| (c.get)(&l.form).to_string()));
            record.extend([
                kind_word(l.kind).to_owned(),
                csv_text(
                    l.agency
                        .as_deref()
                        .or(l.field.as_deref())
                        .unwrap_or_default(),
                ),
                l.level.clone().unwrap_or_default(),
                f.period.to_string(),
                csv_text(&stamp.settings.profile.id),
                stamp.position.to_string(),
            ]);
            w.write_record(&record).map_err(|e| e.to_string())?;
        }
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// The form as an XLSX workbook: a sheet per period with the form's title, its three rows of merged headers and
/// the row of column numbers, then the lines (subtotals and the total in bold); the stamp on a last sheet.
pub fn form_xlsx(stamp: &Stamp, forms: &[FormTable], lang: Lang) -> Result<Vec<u8>, String> {
    use rust_xlsxwriter::{Format, FormatAlign, FormatBorder, Workbook};
    let err = |e: rust_xlsxwriter::XlsxError| e.to_string();
    let mut book = Workbook::new();
    let head = Format::new()
        .set_bold()
        .set_text_wrap()
        .set_align(FormatAlign::Center)
        .set_align(FormatAlign::VerticalCenter)
        .set_border(FormatBorder::Thin);
    let plain = Format::new().set_border(FormatBorder::Thin);
    let strong = Format::new().set_bold().set_border(FormatBorder::Thin);
    let title = Format::new().set_bold().set_font_size(13);
    for f in forms {
        let sheet = book
            .add_worksheet()
            .set_name(sheet_name(f, lang))
            .map_err(err)?;
        let columns = f.columns();
        let last = columns.len() as u16 + 1; // the last column's index
        let (heading, period_word, profile_word) = match lang {
            Lang::Vi => (
                "TÌNH HÌNH, KẾT QUẢ GIẢI QUYẾT THỦ TỤC HÀNH CHÍNH",
                "Kỳ báo cáo",
                "Cách tính",
            ),
            Lang::En => (
                "ADMINISTRATIVE PROCEDURES: DOSSIERS RECEIVED AND RESOLVED",
                "Period",
                "Profile",
            ),
        };
        sheet
            .merge_range(0, 0, 0, last, heading, &title)
            .map_err(err)?;
        let bounds = format!(
            "{period_word}: {} ({} – {}, {})",
            f.period,
            stamp_day(f.period.start(stamp.settings.cut)),
            stamp_day(f.period.end(stamp.settings.cut) - chrono::Duration::seconds(1)),
            stamp.settings.cut
        );
        sheet
            .merge_range(1, 0, 1, last, &cell_text(&bounds), &Format::new())
            .map_err(err)?;
        let title = match lang {
            Lang::Vi => &stamp.settings.profile.title_vi,
            Lang::En => &stamp.settings.profile.title,
        };
        let profile = format!("{profile_word}: {} — {title}", stamp.settings.profile.id);
        sheet
            .merge_range(2, 0, 2, last, &cell_text(&profile), &Format::new())
            .map_err(err)?;
        // Headers: rows 4 to 6, the column numbers on row 7.
        let (top, mid, low, numbers) = (4u32, 5u32, 6u32, 7u32);
        let [number, unit, ..] = words(lang);
        let strip = |s: &str| {
            s.split_once(") ")
                .map_or(s.to_owned(), |(_, t)| t.to_owned())
        };
        sheet
            .merge_range(top, 0, low, 0, &strip(number), &head)
            .map_err(err)?;
        sheet
            .merge_range(top, 1, low, 1, &strip(unit), &head)
            .map_err(err)?;
        let vi = lang == Lang::Vi;
        let pick = |v: &'static str, e: &'static str| if vi { v } else { e };
        sheet
            .merge_range(
                top,
                2,
                top,
                5,
                pick("Số hồ sơ nhận giải quyết", "Dossiers to resolve"),
                &head,
            )
            .map_err(err)?;
        sheet
            .merge_range(mid, 2, low, 2, pick("Tổng số", "Total"), &head)
            .map_err(err)?;
        sheet
            .merge_range(mid, 3, mid, 5, pick("Trong đó", "Of which"), &head)
            .map_err(err)?;
        sheet
            .merge_range(
                top,
                6,
                top,
                12,
                pick("Kết quả giải quyết", "Results"),
                &head,
            )
            .map_err(err)?;
        sheet
            .merge_range(
                mid,
                6,
                mid,
                9,
                pick("Số hồ sơ đã giải quyết", "Resolved"),
                &head,
            )
            .map_err(err)?;
        sheet
            .merge_range(
                mid,
                10,
                mid,
                12,
                pick("Số hồ sơ đang giải quyết", "In progress"),
                &head,
            )
            .map_err(err)?;
        let low_words = [
            (3, pick("Trực tuyến", "Online")),
            (
                4,
                pick(
                    "Trực tiếp, dịch vụ bưu chính công ích",
                    "At the counter or by post",
                ),
            ),
            (5, pick("Từ kỳ trước", "Carried over")),
            (6, pick("Tổng số", "Total")),
            (7, pick("Trước hạn", "Early")),
            (8, pick("Đúng hạn", "On time")),
            (9, pick("Quá hạn", "Late")),
            (10, pick("Tổng số", "Total")),
            (11, pick("Trong hạn", "In time")),
            (12, pick("Quá hạn", "Overdue")),
        ];
        for (col, text) in low_words {
            sheet
                .write_string_with_format(low, col, text, &head)
                .map_err(err)?;
        }
        let kept = &columns[11..];
        if !kept.is_empty() {
            let apart_words = pick("Tính riêng (theo cách tính)", "Kept apart (by the profile)");
            let end = 12 + kept.len() as u16;
            sheet
                .merge_range(top, 13, mid, end, apart_words, &head)
                .map_err(err)?;
            for (col, c) in (13u16..).zip(kept) {
                let text = if vi { c.vi } else { c.en };
                sheet
                    .write_string_with_format(low, col, text, &head)
                    .map_err(err)?;
            }
        }
        // The column numbers: (1) and (2), then each printed column's own number (a kept-apart class keeps its
        // number on the form, as in the CSV and JSON).
        let labels = (1..=2).chain(columns.iter().map(|c| c.number));
        for (col, n) in (0u16..).zip(labels) {
            sheet
                .write_string_with_format(numbers, col, format!("({n})"), &head)
                .map_err(err)?;
        }
        let mut r = numbers + 1;
        for l in &f.lines {
            let format = if matches!(l.kind, LineKind::Agency | LineKind::Field) {
                &plain
            } else {
                &strong
            };
            sheet
                .write_string_with_format(r, 0, &l.number, format)
                .map_err(err)?;
            sheet
                .write_string_with_format(r, 1, &cell_text(&l.name), format)
                .map_err(err)?;
            for (i, c) in columns.iter().enumerate() {
                sheet
                    .write_number_with_format(r, i as u16 + 2, (c.get)(&l.form) as f64, format)
                    .map_err(err)?;
            }
            r += 1;
        }
        sheet.set_column_width(1, 36).map_err(err)?;
        for col in 2..=last {
            sheet.set_column_width(col, 13).map_err(err)?;
        }
        sheet.set_row_height(low, 48).map_err(err)?;
    }
    {
        let sheet = book
            .add_worksheet()
            .set_name(match lang {
                Lang::Vi => "Thông tin tính toán",
                Lang::En => "Computed from",
            })
            .map_err(err)?;
        let facts = super::render::stamp_pairs(stamp);
        for (i, (k, v)) in facts.iter().enumerate() {
            sheet.write_string(i as u32, 0, *k).map_err(err)?;
            sheet.write_string(i as u32, 1, cell_text(v)).map_err(err)?;
        }
        sheet.autofit();
    }
    let mut props = rust_xlsxwriter::DocProperties::new()
        .set_title("casetrail: tình hình, kết quả giải quyết TTHC");
    for (k, v) in super::render::stamp_pairs(stamp) {
        props = props.set_custom_property(k, v.as_str());
    }
    if let Some(at) = stamp.recorded_at {
        let when = rust_xlsxwriter::ExcelDateTime::from_timestamp(at.timestamp()).map_err(err)?;
        props = props.set_creation_datetime(&when);
    }
    book.set_properties(&props);
    book.save_to_buffer().map_err(err)
}

fn sheet_name(f: &FormTable, lang: Lang) -> String {
    match lang {
        Lang::Vi => format!("Biểu {}", f.period),
        Lang::En => format!("Form {}", f.period),
    }
}

fn stamp_day(t: chrono::DateTime<chrono::Utc>) -> String {
    domain::calendar::vietnam_date(&t)
        .format("%d/%m/%Y")
        .to_string()
}

/// The form in a format: JSON, CSV or XLSX (text is not offered for the form).
pub fn render_form(
    format: super::render::Format,
    stamp: &Stamp,
    forms: &[FormTable],
    lang: Lang,
) -> Result<Vec<u8>, String> {
    use super::render::Format;
    match format {
        Format::Json => {
            let mut bytes =
                serde_json::to_vec(&form_json(stamp, forms)).map_err(|e| e.to_string())?;
            bytes.push(b'\n');
            Ok(bytes)
        }
        Format::Csv => form_csv(stamp, forms, lang),
        Format::Xlsx => form_xlsx(stamp, forms, lang),
        Format::Text => form_csv(stamp, forms, lang),
    }
}
