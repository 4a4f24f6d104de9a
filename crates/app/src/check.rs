//! `check-report` and `POST /v1/indicators/check`: a published table checked row by row, and against the log when
//! a period is named (`projections::indicators::check` does the checking; this matches rows to the log's).

use crate::indicators::{IndicatorError, Indicators, Query};
use domain::event::AgencyLevel;
use domain::{AgencyCode, Period};
use projections::indicators::check::{
    check_rows, quantities_of, CheckReport, Matched, Overview, PublishedRow, RowCheck, Source,
    Summary, Table,
};
use projections::indicators::{Group, Profiles, Row};
use std::collections::{HashMap, HashSet};
use store::Store;

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

/// What a line may say to name a whole level (compared by `domain::names::name_key`): the form's own level
/// lines, the English level names, and the phrases provinces print. A name that merely contains a level's word
/// ("Sở Tư pháp", "UBND xã Thạch Hà") names an agency, not its level.
const LEVEL_NAMES: &[(AgencyLevel, &[&str])] = &[
    (
        AgencyLevel::Province,
        &[
            "cấp tỉnh",
            "tỉnh",
            "province",
            "provinces",
            "province level",
        ],
    ),
    (
        AgencyLevel::Department,
        &[
            "sở, ban, ngành",
            "sở ban ngành",
            "sở, ngành",
            "các sở, ban, ngành",
            "cấp sở",
            "department",
            "departments",
            "department level",
        ],
    ),
    (
        AgencyLevel::District,
        &[
            "cấp huyện",
            "ubnd cấp huyện",
            "các huyện",
            "huyện, thị xã, thành phố",
            "district",
            "districts",
            "district level",
        ],
    ),
    (
        AgencyLevel::Commune,
        &[
            "cấp xã",
            "ubnd cấp xã",
            "các xã",
            "xã, phường, thị trấn",
            "commune",
            "communes",
            "commune level",
        ],
    ),
];

fn level_of_phrase(text: &str) -> Option<AgencyLevel> {
    let key = domain::names::name_key(text);
    LEVEL_NAMES
        .iter()
        .find(|(_, names)| names.contains(&key.as_str()))
        .map(|(level, _)| *level)
}

/// The level a published row names: its `level` cell, or its whole name ("Cấp huyện", "UBND cấp xã",
/// "Sở, ban, ngành", "district"…); a name with a level in brackets names the bracketed one ("Cấp tỉnh (sở, ban,
/// ngành)" is the departments).
fn level_named(row: &PublishedRow) -> Option<AgencyLevel> {
    let text = row.level.as_deref().unwrap_or(&row.name).trim();
    if let Some((outer, inner)) = text.strip_suffix(')').and_then(|t| t.split_once('(')) {
        if let (Some(_), Some(inner)) = (level_of_phrase(outer), level_of_phrase(inner)) {
            return Some(inner);
        }
    }
    level_of_phrase(text)
}

/// A question's own parameters, refused before its table is read: the profile it names must exist, whatever
/// the table.
fn asked(profiles: &Profiles, question: &CheckQuestion) -> Result<(), IndicatorError> {
    profiles
        .require(question.profile.as_deref())
        .map(|_| ())
        .map_err(IndicatorError::UnknownProfile)
}

/// A published table checked alone (sums and printed percentages), with nothing from the log: what
/// `check-report` answers without a period, where no data directory need be opened. The profile a question names
/// must exist, whatever the table. Each row is handed to `emit` as it is checked; the summary is returned.
pub fn stream_alone<S: Source>(
    profiles: &Profiles,
    table: &Table<S>,
    question: &CheckQuestion,
    emit: impl FnMut(RowCheck),
) -> Result<Summary, IndicatorError> {
    asked(profiles, question)?;
    let overview = Overview::of(table, profiles.all(), |_| {}).map_err(IndicatorError::Invalid)?;
    check_rows(table, overview, profiles.all(), |_| None, emit).map_err(IndicatorError::Invalid)
}

/// `stream_alone` on a table in memory, the whole answer returned.
pub fn check_alone(
    profiles: &Profiles,
    csv: &[u8],
    question: &CheckQuestion,
) -> Result<CheckReport, IndicatorError> {
    asked(profiles, question)?;
    collected(csv, |table, emit| {
        stream_alone(profiles, table, question, emit)
    })
}

/// `stream_published` on a table in memory (a request's body), the whole answer returned.
pub fn check_published(
    service: &Indicators,
    log: &dyn Store,
    csv: &[u8],
    question: &CheckQuestion,
) -> Result<CheckReport, IndicatorError> {
    asked(&service.profiles, question)?;
    collected(csv, |table, emit| {
        stream_published(service, log, table, question, emit)
    })
}

fn collected(
    csv: &[u8],
    stream: impl FnOnce(&Table<&[u8]>, &mut dyn FnMut(RowCheck)) -> Result<Summary, IndicatorError>,
) -> Result<CheckReport, IndicatorError> {
    let table = Table::open(csv).map_err(IndicatorError::Invalid)?;
    let mut rows = Vec::new();
    let summary = stream(&table, &mut |row| rows.push(row))?;
    Ok(CheckReport { rows, summary })
}

/// Checks a published table, each row handed to `emit` as it is checked (the table is read twice, never held).
/// The log's counts are read only when a period is named.
pub fn stream_published<S: Source>(
    service: &Indicators,
    log: &dyn Store,
    table: &Table<S>,
    question: &CheckQuestion,
    emit: impl FnMut(RowCheck),
) -> Result<Summary, IndicatorError> {
    let Some(period) = question.period else {
        return stream_alone(&service.profiles, table, question, emit);
    };
    asked(&service.profiles, question)?;
    let profiles = service.profiles.all();
    // Every period the rows are of (a series names each row's; otherwise the one asked), and each grouping's rows.
    let period_of = |row: &PublishedRow| {
        row.period
            .as_deref()
            .and_then(|p| p.parse::<Period>().ok())
            .unwrap_or(period)
    };
    // The groupings a row can be matched in (below), asked once per period.
    let groupings = |row: &PublishedRow| match (&row.agency, row.agencies) {
        (Some(_), Some(n)) if n > 1 => vec![Group::Subtree],
        (Some(_), _) => vec![Group::Agency],
        (None, _) if row.is_total() => vec![Group::Province],
        (None, _) => vec![Group::Agency, Group::Level],
    };
    let mut wanted: HashSet<(Period, Group)> = HashSet::new();
    let overview = Overview::of(table, profiles, |row| {
        wanted.extend(groupings(row).into_iter().map(|g| (period_of(row), g)))
    })
    .map_err(IndicatorError::Invalid)?;
    let profile = question
        .profile
        .clone()
        .or(overview.profile().map(str::to_owned))
        .unwrap_or_else(|| service.profiles.default_profile().id.clone());
    let mut tables: HashMap<(Period, Group), Vec<Row>> = HashMap::new();
    for (p, group) in wanted {
        let q = Query {
            periods: vec![p],
            group,
            scope: question.scope.clone(),
            as_of: None,
            known_at: None,
            profile: Some(profile.clone()),
        };
        let rows = service
            .answer(log, &q)?
            .tables
            .into_iter()
            .next()
            .map(|t| t.rows);
        tables.insert((p, group), rows.unwrap_or_default());
    }
    let of = |r: &Row| Some(quantities_of(&r.form(), &r.counts));
    // A row is matched by its agency code (to the agency's subtree when the row sums several agencies); else as
    // the total; else, unless the table marks it a level line, by an agency's registered name (one agency only);
    // else by the level its level cell or its name names.
    let matched = |row: &PublishedRow| -> Matched {
        // A line of the form by procedure field has no agency or level of its own to compare with; its level line
        // and the total are compared.
        if row.kind.as_deref() == Some("field") {
            return None;
        }
        let rows = |group| &tables[&(period_of(row), group)];
        if let Some(code) = &row.agency {
            let subtree = row.agencies.is_some_and(|n| n > 1);
            let group = if subtree {
                Group::Subtree
            } else {
                Group::Agency
            };
            let found = rows(group)
                .iter()
                .find(|r| r.key.agency.as_ref().is_some_and(|a| a.as_str() == code));
            let what = if subtree { "subtree of" } else { "agency" };
            return Some((format!("{what} {code}"), found.and_then(of)));
        }
        if row.is_total() {
            return Some((
                "the province".into(),
                rows(Group::Province).first().and_then(of),
            ));
        }
        if row.kind.as_deref() != Some("level") {
            let key = domain::names::name_key(&row.name);
            let named: Vec<&Row> = rows(Group::Agency)
                .iter()
                .filter(|r| domain::names::name_key(&r.key.name) == key)
                .collect();
            match named.as_slice() {
                [one] => {
                    let code = one
                        .key
                        .agency
                        .as_ref()
                        .map_or_else(String::new, |a| a.to_string());
                    return Some((format!("agency {code}, by its name"), of(one)));
                }
                [] if row.kind.as_deref() == Some("agency") => return None,
                [] => {}
                many => {
                    return Some((
                        format!("no agency: {} agencies are named so", many.len()),
                        None,
                    ))
                }
            }
        }
        let level = level_named(row)?;
        let found = rows(Group::Level)
            .iter()
            .find(|r| r.key.level == Some(level));
        Some((
            format!(
                "level {}",
                projections::indicators::table::level_name(level)
            ),
            found.and_then(of),
        ))
    };
    let mut summary =
        check_rows(table, overview, profiles, matched, emit).map_err(IndicatorError::Invalid)?;
    summary.compared_under = Some(profile);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use unicode_normalization::UnicodeNormalization;

    fn row(name: &str) -> PublishedRow {
        let mut r = projections::indicators::check::Published::parse(
            format!("Đơn vị,Trực tuyến\n\"{name}\",1\n").as_bytes(),
        )
        .unwrap()
        .rows
        .remove(0);
        r.name = name.to_owned();
        r
    }

    proptest! {
        /// Issue 25, points 5 and 6 (b): a line names a level only when its whole name is a level's name (however
        /// typed: case, spaces, composed or decomposed); an agency's name that holds a level's word names no level.
        #[test]
        fn a_line_names_a_level_only_by_the_level_s_own_name(
            level in 0usize..4, phrase in 0usize..5, upper in any::<bool>(), nfd in any::<bool>(),
            agency in prop::sample::select(vec!["Tư pháp", "Thạch Hà", "Kon Plông", "Xây dựng"]),
        ) {
            let (want, names) = LEVEL_NAMES[level];
            let name = names[phrase % names.len()];
            let typed = |s: &str| {
                let s = if upper { s.to_uppercase() } else { s.to_owned() };
                let s = format!("  {} ", s.replace(' ', "  "));
                if nfd { s.nfd().collect::<String>() } else { s }
            };
            prop_assert_eq!(level_named(&row(&typed(name))), Some(want));
            // A level's word followed by a name is an agency ("Sở Tư pháp", "Huyện Thạch Hà", "Xã Kon Plông").
            for word in ["sở", "huyện", "xã", "tỉnh", "UBND xã", "UBND huyện"] {
                let agency_name = typed(&format!("{word} {agency}"));
                prop_assert_eq!(level_named(&row(&agency_name)), None, "{}", agency_name);
            }
        }
    }

    #[test]
    fn a_level_in_brackets_is_the_one_named() {
        assert_eq!(
            level_named(&row("Cấp tỉnh (sở, ban, ngành)")),
            Some(AgencyLevel::Department)
        );
        assert_eq!(level_named(&row("Cấp huyện")), Some(AgencyLevel::District));
        assert_eq!(level_named(&row("Sở Tư pháp (Hà Tĩnh)")), None);
    }
}
