//! Scorecards (indicators.md §4): criteria are data in a TOML file, each reading one ratio column.

use super::table::{Row, RATIO_NAMES};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const DEFAULT_TOML: &str = include_str!("../../scorecards/default.toml");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    pub id: String,
    pub title_en: String,
    pub title_vi: String,
    /// A ratio column of the table (`online_rate`, `on_time_rate`, …).
    pub column: String,
    pub threshold: f64,
    pub points: f64,
    /// Where the criterion comes from.
    pub source: String,
    /// How sure that source is: C, S, R or I (see `shared/domain/reference.md`).
    pub confidence: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scorecard {
    pub name: String,
    pub criteria: Vec<Criterion>,
    /// SHA-256 of the file's bytes, hex: names the exact scorecard in every answer's stamp.
    #[serde(skip_deserializing)]
    pub sha256: String,
}

impl Scorecard {
    pub fn parse(text: &str) -> Result<Scorecard, String> {
        let mut card: Scorecard = toml::from_str(text).map_err(|e| format!("scorecard: {e}"))?;
        for c in &card.criteria {
            if !RATIO_NAMES.contains(&c.column.as_str()) {
                return Err(format!(
                    "scorecard criterion {:?}: no ratio column {:?} (there are: {})",
                    c.id,
                    c.column,
                    RATIO_NAMES.join(", ")
                ));
            }
            let threshold_ok = c.threshold > 0.0 && c.threshold <= 1.0;
            let points_ok = c.points >= 0.0 && c.points.is_finite();
            if !threshold_ok || !points_ok {
                return Err(format!(
                    "scorecard criterion {:?}: the threshold must be in (0, 1] and the points at least 0",
                    c.id
                ));
            }
            if !["C", "S", "R", "I"].contains(&c.confidence.as_str()) {
                return Err(format!(
                    "scorecard criterion {:?}: confidence must be C, S, R or I",
                    c.id
                ));
            }
        }
        let mut ids: Vec<&str> = card.criteria.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("scorecard: two criteria share an id".into());
        }
        card.sha256 = hex(&Sha256::digest(text.as_bytes()));
        Ok(card)
    }

    pub fn default_card() -> Scorecard {
        Scorecard::parse(DEFAULT_TOML).expect("the default scorecard parses")
    }

    /// Each criterion's score for a row: `points × min(1, ratio / threshold)`, `None` when the ratio is.
    pub fn scores(&self, row: &Row) -> Vec<(&Criterion, Option<f64>)> {
        self.criteria
            .iter()
            .map(|c| {
                let ratio = row
                    .ratio_named(&c.column)
                    .expect("columns are checked on parse");
                (c, ratio.map(|r| c.points * (r / c.threshold).min(1.0)))
            })
            .collect()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
