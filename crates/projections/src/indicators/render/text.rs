//! The plain-text answer: aligned columns, for a terminal.

use super::*;

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
                    cell @ (Cell::Ratio(_) | Cell::Rate(..)) => {
                        cell.percent().unwrap_or_else(|| "—".to_owned())
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
