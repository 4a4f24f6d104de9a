//! The XLSX answer: one sheet per table, and a sheet of what the answer was computed from.

use super::*;

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
        head.push(profile_header(lang));
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
                        Cell::Rate(f, rounding) => {
                            if let Some((value, format)) = rate_cell(f, rounding) {
                                sheet
                                    .write_number_with_format(r, col, value, &format)
                                    .map_err(err)?;
                            }
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
                xlsx_text(sheet, r, col + 1, &stamp.settings.profile.id).map_err(err)?;
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
    let mut facts = vec![
        ("casetrail", "indicator table".to_owned()),
        ("period", periods),
        ("group", group.to_string()),
    ];
    facts.extend(stamp_pairs(stamp));
    facts
}

/// What a stamp says, as (name, text) pairs: the facts sheet of a workbook and its document properties.
pub(crate) fn stamp_pairs(stamp: &Stamp) -> Vec<(&'static str, String)> {
    let opt = |t: Option<DateTime<Utc>>| t.map_or_else(String::new, |t| t.to_rfc3339());
    vec![
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
        ("profile", stamp.settings.profile.id.clone()),
        ("profile_title", stamp.settings.profile.title.clone()),
        ("profile_sha256", stamp.settings.profile.sha256.clone()),
    ]
}

/// A rate as a workbook cell: under ties to even (the national profile) the exact fraction shown with two decimals,
/// as before profiles; under half-up or truncation the printed value itself, so that the sheet shows exactly what
/// the profile prints (a spreadsheet's own display always rounds half up).
fn rate_cell(f: Fraction, rounding: Rounding) -> Option<(f64, rust_xlsxwriter::Format)> {
    let decimals = rounding.decimals as usize;
    let pattern = match decimals {
        0 => "0%".to_owned(),
        d => format!("0.{}%", "0".repeat(d)),
    };
    let format = rust_xlsxwriter::Format::new().set_num_format(pattern);
    let value = match rounding.mode {
        super::super::profile::RoundMode::HalfEven => f.value()?,
        _ => rounding.percent(f.num, f.den)?.parse::<f64>().ok()? / 100.0,
    };
    Some((value, format))
}
