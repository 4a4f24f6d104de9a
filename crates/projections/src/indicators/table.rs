//! The answer's shape: counts per row (numerators and denominators only), rows per grouping, and the ratios and
//! targets derived from them when the answer is rendered.

use super::profile::{Definitions, Form, Fraction};
use crate::catalogue::Catalogue;
use domain::calendar::Cut;
use domain::event::{AgencyLevel, TargetScope};
use domain::{AgencyCode, Period};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

macro_rules! counts {
    ($($field:ident),* $(,)?) => {
        /// The integer columns of one row. Rows of a grouping are sums of these, never of ratios.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Counts {
            $(pub $field: i64,)*
        }

        impl Counts {
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            pub fn add(&mut self, other: &Counts) {
                $(self.$field += other.$field;)*
            }

            /// Every column with its name, in the order of the answer.
            pub fn fields(&self) -> Vec<(&'static str, i64)> {
                vec![$((stringify!($field), self.$field)),*]
            }
        }
    };
}

counts!(
    received,
    received_counter,
    received_online,
    received_postal,
    level3,
    level4,
    partial,
    full,
    postal_received,
    postal_returned,
    postal_dossiers,
    returned,
    returned_counter,
    returned_online,
    returned_postal,
    carried_over,
    resolved_early,
    resolved_on_time,
    resolved_late,
    open_in_time,
    open_late,
    withdrawn,
    transferred_in,
    transferred_out,
    procedures_offered,
    procedures_online,
    procedures_online_used,
    procedures_postal_receive,
    procedures_postal_receive_used,
    procedures_postal_return,
    procedures_postal_return_used,
    withdrawn_at_end,
    unresolved_early,
    unresolved_on_time,
    unresolved_late,
    waiting_in_time,
    waiting_late,
    due_met,
    due_missed,
);

impl Counts {
    pub fn resolved(&self) -> i64 {
        self.resolved_early + self.resolved_on_time + self.resolved_late
    }

    pub fn open(&self) -> i64 {
        self.open_in_time + self.open_late
    }
}

/// How rows are formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// One row per agency, alone.
    Agency,
    /// One row per agency, with everything registered below it.
    Subtree,
    /// One row per level (all departments, all districts, all communes…).
    Level,
    /// One row: everything.
    Province,
}

impl FromStr for Group {
    type Err = String;
    fn from_str(s: &str) -> Result<Group, String> {
        match s {
            "agency" => Ok(Group::Agency),
            "subtree" => Ok(Group::Subtree),
            "level" => Ok(Group::Level),
            "province" => Ok(Group::Province),
            _ => Err(format!(
                "unknown group {s:?}: expected agency, subtree, level or province"
            )),
        }
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Group::Agency => "agency",
            Group::Subtree => "subtree",
            Group::Level => "level",
            Group::Province => "province",
        })
    }
}

/// What a row stands for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RowKey {
    /// The agency (agency and subtree rows); `None` for level and province rows.
    pub agency: Option<AgencyCode>,
    /// The agency's registered name, the level's name, or "province".
    pub name: String,
    /// The agency's level, the row's level; `None` for an agency never registered, and for the province row.
    pub level: Option<AgencyLevel>,
    pub parent: Option<AgencyCode>,
    /// How many agencies the row sums.
    pub agencies: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub key: RowKey,
    pub counts: Counts,
    pub online_target: f64,
    pub postal_target: f64,
    /// The profile's definitions the row's rates and form follow.
    pub defs: Definitions,
}

/// A ratio: `None` when the denominator is zero.
pub fn ratio(num: i64, den: i64) -> Option<f64> {
    (den != 0).then(|| num as f64 / den as f64)
}

/// Whether `num / den >= target`, decided in integers (parts per million) so that 2/10 meets 0.20 exactly.
/// `None` when nothing was received.
pub fn meets(num: i64, den: i64, target: f64) -> Option<bool> {
    let target_ppm = (target * 1_000_000.0).round() as i128;
    (den != 0).then(|| num as i128 * 1_000_000 >= target_ppm * den as i128)
}

impl Row {
    /// A ratio column's two sides under the row's profile, by the name a scorecard gives it.
    pub fn fraction(&self, name: &str) -> Result<Fraction, String> {
        let c = &self.counts;
        let base = self.defs.rate_base(c);
        let f = |num, den| Fraction { num, den };
        Ok(match name {
            "online_rate" => f(c.received_online, base),
            "postal_rate" => f(c.postal_dossiers, base),
            "postal_receive_rate" => f(c.postal_received, base),
            "postal_return_rate" => f(c.postal_returned, c.returned),
            "on_time_rate" => self.defs.on_time(c),
            "procedures_online_rate" => f(c.procedures_online, c.procedures_offered),
            "procedures_online_used_rate" => f(c.procedures_online_used, c.procedures_online),
            "procedures_postal_receive_used_rate" => f(
                c.procedures_postal_receive_used,
                c.procedures_postal_receive,
            ),
            "procedures_postal_return_used_rate" => {
                f(c.procedures_postal_return_used, c.procedures_postal_return)
            }
            _ => return Err(format!("no ratio column named {name:?}")),
        })
    }

    fn known(&self, name: &str) -> Fraction {
        self.fraction(name).expect("a known ratio column")
    }

    pub fn online_rate(&self) -> Option<f64> {
        self.known("online_rate").value()
    }
    pub fn postal_rate(&self) -> Option<f64> {
        self.known("postal_rate").value()
    }
    pub fn postal_receive_rate(&self) -> Option<f64> {
        self.known("postal_receive_rate").value()
    }
    pub fn postal_return_rate(&self) -> Option<f64> {
        self.known("postal_return_rate").value()
    }
    pub fn on_time_rate(&self) -> Option<f64> {
        self.known("on_time_rate").value()
    }
    pub fn online_met(&self) -> Option<bool> {
        let r = self.known("online_rate");
        meets(r.num, r.den, self.online_target)
    }
    pub fn postal_met(&self) -> Option<bool> {
        let r = self.known("postal_rate");
        meets(r.num, r.den, self.postal_target)
    }

    /// The row on the official form, under its profile's classes.
    pub fn form(&self) -> Form {
        Form::of(&self.counts, &self.defs)
    }

    /// A ratio by the name a scorecard gives it.
    pub fn ratio_named(&self, name: &str) -> Result<Option<f64>, String> {
        Ok(self.fraction(name)?.value())
    }
}

pub const RATIO_NAMES: &[&str] = &[
    "online_rate",
    "postal_rate",
    "postal_receive_rate",
    "postal_return_rate",
    "on_time_rate",
    "procedures_online_rate",
    "procedures_online_used_rate",
    "procedures_postal_receive_used_rate",
    "procedures_postal_return_used_rate",
];

/// The default targets of the letter: 20 % of dossiers online, 10 % through the post.
pub const DEFAULT_ONLINE_TARGET: f64 = 0.20;
pub const DEFAULT_POSTAL_TARGET: f64 = 0.10;

/// The targets in force for an agency (or, with `None`, for every agency) in a period: the agency's own latest
/// target that started by then, else the latest `*` target, else the defaults.
pub fn targets_for(
    catalogue: &Catalogue,
    agency: Option<&AgencyCode>,
    period: Period,
    cut: Cut,
) -> (f64, f64) {
    let start = period.start(cut);
    let latest = |own: bool| {
        catalogue
            .targets()
            .iter()
            .filter(|t| t.from_period.start(cut) <= start)
            .filter(|t| match (&t.agency, agency) {
                (TargetScope::All, _) => !own,
                (TargetScope::Agency(a), Some(want)) => own && a == want,
                (TargetScope::Agency(_), None) => false,
            })
            .max_by_key(|t| (t.from_period.start(cut), t.position))
    };
    latest(true)
        .or_else(|| latest(false))
        .map_or((DEFAULT_ONLINE_TARGET, DEFAULT_POSTAL_TARGET), |t| {
            (t.online_rate_min, t.postal_rate_min)
        })
}

pub fn level_name(level: AgencyLevel) -> &'static str {
    match level {
        AgencyLevel::Province => "province",
        AgencyLevel::Department => "department",
        AgencyLevel::District => "district",
        AgencyLevel::Commune => "commune",
    }
}

/// Forms the rows of a grouping from per-agency counts. `per_agency` holds every agency with its counts (agencies
/// never registered included); `scope` keeps only an agency and what is registered below it.
pub fn group_rows(
    catalogue: &Catalogue,
    per_agency: &[(AgencyCode, Counts)],
    group: Group,
    scope: Option<&AgencyCode>,
    period: Period,
    cut: Cut,
    defs: Definitions,
) -> Vec<Row> {
    let in_scope: Vec<&(AgencyCode, Counts)> = per_agency
        .iter()
        .filter(|(a, _)| scope.is_none_or(|s| catalogue.in_scope(s, a)))
        .collect();
    let agency_key = |code: &AgencyCode, agencies: usize| {
        let registered = catalogue.agency(code);
        RowKey {
            agency: Some(code.clone()),
            name: registered.map_or_else(String::new, |a| a.name.clone()),
            level: registered.map(|a| a.level),
            parent: registered.and_then(|a| a.parent.clone()),
            agencies,
        }
    };
    let agency_row = |code: &AgencyCode, counts: Counts, agencies: usize| {
        let (online_target, postal_target) = targets_for(catalogue, Some(code), period, cut);
        Row {
            key: agency_key(code, agencies),
            counts,
            online_target,
            postal_target,
            defs,
        }
    };
    let general = targets_for(catalogue, None, period, cut);
    match group {
        Group::Agency => in_scope
            .iter()
            .map(|(code, counts)| agency_row(code, *counts, 1))
            .collect(),
        Group::Subtree => {
            // Each agency adds its counts to itself and to every ancestor that has a row.
            let mut sums: std::collections::HashMap<&AgencyCode, (Counts, usize)> = in_scope
                .iter()
                .map(|(code, _)| (code, (Counts::default(), 0)))
                .collect();
            for (code, counts) in &in_scope {
                for ancestor in catalogue.ancestors(code) {
                    if let Some((sum, n)) = sums.get_mut(ancestor) {
                        sum.add(counts);
                        *n += 1;
                    }
                }
            }
            in_scope
                .iter()
                .map(|(root, _)| {
                    let (sum, n) = sums[root];
                    agency_row(root, sum, n)
                })
                .collect()
        }
        Group::Level => {
            let levels = [
                Some(AgencyLevel::Province),
                Some(AgencyLevel::Department),
                Some(AgencyLevel::District),
                Some(AgencyLevel::Commune),
                None,
            ];
            levels
                .iter()
                .filter_map(|level| {
                    let members: Vec<_> = in_scope
                        .iter()
                        .filter(|(code, _)| catalogue.agency(code).map(|a| a.level) == *level)
                        .collect();
                    if members.is_empty() {
                        return None;
                    }
                    let mut sum = Counts::default();
                    members.iter().for_each(|(_, c)| sum.add(c));
                    Some(Row {
                        key: RowKey {
                            agency: None,
                            name: level.map_or("unregistered", level_name).to_owned(),
                            level: *level,
                            parent: None,
                            agencies: members.len(),
                        },
                        counts: sum,
                        online_target: general.0,
                        postal_target: general.1,
                        defs,
                    })
                })
                .collect()
        }
        Group::Province => {
            let mut sum = Counts::default();
            in_scope.iter().for_each(|(_, c)| sum.add(c));
            vec![Row {
                key: RowKey {
                    agency: scope.cloned(),
                    name: "province".to_owned(),
                    level: None,
                    parent: None,
                    agencies: in_scope.len(),
                },
                counts: sum,
                online_target: general.0,
                postal_target: general.1,
                defs,
            }]
        }
    }
}
