//! The CSV answer: one header row, formulas defused.

use super::*;

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

/// CSV: a header row, then one line per row of every period, the profile's id in the last column. Rates are
/// percentages printed under the profile's rounding; an undefined ratio or verdict is an empty field.
pub fn csv(
    stamp: &Stamp,
    tables: &[Table],
    card: &Scorecard,
    lang: Lang,
) -> Result<Vec<u8>, String> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let mut head = vec![period_header(lang)];
    head.extend(COLUMNS.iter().map(|c| header(c, lang)));
    head.extend(score_headers(card, lang));
    head.push(profile_header(lang));
    w.write_record(&head).map_err(|e| e.to_string())?;
    for t in tables {
        for row in &t.rows {
            let mut record = vec![t.period.to_string()];
            for c in COLUMNS {
                record.push(match (c.get)(row) {
                    Cell::Text(t) => csv_text(&t.unwrap_or_default()),
                    Cell::Int(n) => n.to_string(),
                    cell @ (Cell::Ratio(_) | Cell::Rate(..)) => cell.percent().unwrap_or_default(),
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
            record.push(csv_text(&stamp.settings.profile.id));
            w.write_record(&record).map_err(|e| e.to_string())?;
        }
    }
    w.into_inner().map_err(|e| e.to_string())
}
