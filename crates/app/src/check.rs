//! `check-report` and `POST /v1/indicators/check`: a published table checked row by row, and against the log when
//! a period is named (`projections::indicators::check` does the checking; this matches rows to the log's).

use crate::indicators::{IndicatorError, Indicators, Query};
use domain::event::AgencyLevel;
use domain::{AgencyCode, Period};
use projections::indicators::check::{
    check, quantities_of, CheckReport, Published, PublishedRow, Quantity,
};
use projections::indicators::{Group, Row};
use std::collections::BTreeMap;
use store::SledLog;

/// What the check is asked.
#[derive(Clone, Debug, Default)]
pub struct CheckQuestion {
    /// The period the table covers: when given, its counts are compared with the log's.
    pub period: Option<Period>,
    /// The profile to compare counts under; by default the one most consistent with the printed percentages, or
    /// the default profile.
    pub profile: Option<String>,
    /// Only this agency and what is registered below it (for an agency's own table).
    pub scope: Option<AgencyCode>,
}

/// The level a published row names: its `level` cell, or words of its name ("Cấp huyện", "UBND cấp xã",
/// "Sở, ban, ngành", "district"…).
fn level_named(row: &PublishedRow) -> Option<AgencyLevel> {
    let text = row.level.as_deref().unwrap_or(&row.name).to_lowercase();
    let has = |w: &str| text.contains(w);
    if has("department") || has("sở") || has("ban, ngành") || has("ban ngành") {
        Some(AgencyLevel::Department)
    } else if has("district") || has("huyện") {
        Some(AgencyLevel::District)
    } else if has("commune") || has("xã") {
        Some(AgencyLevel::Commune)
    } else if has("province") || has("tỉnh") {
        Some(AgencyLevel::Province)
    } else {
        None
    }
}

/// Checks a published table (CSV bytes). The log's counts are read only when a period is named.
pub fn check_published(
    service: &Indicators,
    log: &SledLog,
    csv: &[u8],
    question: &CheckQuestion,
) -> Result<CheckReport, IndicatorError> {
    // The profile first: a question naming one that does not exist is refused for that, whatever the table.
    if let Some(id) = &question.profile {
        service.profile(Some(id))?;
    }
    let published = Published::parse(csv).map_err(IndicatorError::Invalid)?;
    let profiles = service.profiles.all();
    let first = check(&published, profiles, |_| None);
    let Some(period) = question.period else {
        return Ok(first);
    };
    let profile = match &question.profile {
        Some(p) => Some(p.clone()),
        None => first.profile.clone(),
    };
    let ask = |group: Group| -> Result<Vec<Row>, IndicatorError> {
        let q = Query {
            periods: vec![period],
            group,
            scope: question.scope.clone(),
            as_of: None,
            known_at: None,
            profile: profile.clone(),
        };
        let answer = service.answer(log, &q)?;
        Ok(answer
            .tables
            .into_iter()
            .next()
            .map(|t| t.rows)
            .unwrap_or_default())
    };
    let agencies = ask(Group::Agency)?;
    let levels = ask(Group::Level)?;
    let province = ask(Group::Province)?;
    let of = |r: &Row| quantities_of(&r.form(), &r.counts);
    // A row is matched by its agency code; else as the total; else, unless the table marks it a level line, by an
    // agency's registered name; else by the level its level cell or its name names.
    let matched = |row: &PublishedRow| -> Option<BTreeMap<Quantity, i64>> {
        if let Some(code) = &row.agency {
            return agencies
                .iter()
                .find(|r| r.key.agency.as_ref().is_some_and(|a| a.as_str() == code))
                .map(of);
        }
        if row.is_total() {
            return province.first().map(of);
        }
        if row.kind.as_deref() != Some("level") {
            let named = agencies
                .iter()
                .find(|r| r.key.name.trim() == row.name.trim());
            if named.is_some() || row.kind.as_deref() == Some("agency") {
                return named.map(of);
            }
        }
        let level = level_named(row)?;
        levels.iter().find(|r| r.key.level == Some(level)).map(of)
    };
    Ok(check(&published, profiles, matched))
}
