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

/// Why a scorecard file is not a scorecard.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScorecardError {
    /// Not TOML, or not the shape of a scorecard.
    #[error("scorecard: {0}")]
    Toml(String),
    #[error("scorecard criterion {id:?}: no ratio column {column:?} (there are: {})", RATIO_NAMES.join(", "))]
    UnknownColumn { id: String, column: String },
    #[error(
        "scorecard criterion {0:?}: the threshold must be in (0, 1] and the points at least 0"
    )]
    OutOfBounds(String),
    #[error("scorecard criterion {0:?}: confidence must be C, S, R or I")]
    Confidence(String),
    #[error("scorecard: two criteria share an id")]
    DuplicateId,
}

impl Scorecard {
    pub fn parse(text: &str) -> Result<Scorecard, ScorecardError> {
        let mut card: Scorecard =
            toml::from_str(text).map_err(|e| ScorecardError::Toml(e.to_string()))?;
        for c in &card.criteria {
            if !RATIO_NAMES.contains(&c.column.as_str()) {
                return Err(ScorecardError::UnknownColumn {
                    id: c.id.clone(),
                    column: c.column.clone(),
                });
            }
            let threshold_ok = c.threshold > 0.0 && c.threshold <= 1.0;
            let points_ok = c.points >= 0.0 && c.points.is_finite();
            if !threshold_ok || !points_ok {
                return Err(ScorecardError::OutOfBounds(c.id.clone()));
            }
            if !["C", "S", "R", "I"].contains(&c.confidence.as_str()) {
                return Err(ScorecardError::Confidence(c.id.clone()));
            }
        }
        let mut ids: Vec<&str> = card.criteria.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(ScorecardError::DuplicateId);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The default card with one line of its first criterion replaced.
    fn default_with(line: &str, by: &str) -> String {
        let text = DEFAULT_TOML.to_string();
        let start = text
            .find(line)
            .unwrap_or_else(|| panic!("the default card has no {line:?}"));
        let end = start + text[start..].find('\n').unwrap();
        format!("{}{by}{}", &text[..start], &text[end..])
    }

    #[test]
    fn each_kind_of_bad_card_is_refused_by_name() {
        assert!(Scorecard::parse(DEFAULT_TOML).is_ok());
        assert!(matches!(
            Scorecard::parse("criteria = 3"),
            Err(ScorecardError::Toml(_))
        ));
        let bad_column = default_with("column =", "column = \"no_such_ratio\"");
        assert!(matches!(
            Scorecard::parse(&bad_column),
            Err(ScorecardError::UnknownColumn { column, .. }) if column == "no_such_ratio"
        ));
        let bad_threshold = default_with("threshold =", "threshold = 1.5");
        assert!(matches!(
            Scorecard::parse(&bad_threshold),
            Err(ScorecardError::OutOfBounds(_))
        ));
        let bad_confidence = default_with("confidence =", "confidence = \"X\"");
        assert!(matches!(
            Scorecard::parse(&bad_confidence),
            Err(ScorecardError::Confidence(_))
        ));
        let first = DEFAULT_TOML.find("[[criteria]]").unwrap();
        let twice = format!("{DEFAULT_TOML}\n{}", &DEFAULT_TOML[first..]);
        assert_eq!(
            Scorecard::parse(&twice).unwrap_err(),
            ScorecardError::DuplicateId
        );
    }
}
