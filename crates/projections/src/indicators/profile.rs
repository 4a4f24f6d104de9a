//! Report profiles: the definitions a province files its figures by, as data (TOML, like the scorecards).
//!
//! The counts of a table never depend on a profile's rounding, and only its period cut changes which dossiers a
//! period holds. A profile decides:
//! - the denominator of the online and postal rates: new dossiers, or new plus carried over;
//! - the on-time rate: Decision 766's, over resolved dossiers only, over the dossiers falling due in the period,
//!   or 100 % minus the late share of new plus carried over;
//! - whether withdrawn, returned-unresolved and supplement-waiting dossiers are folded into the official form's
//!   classes (on time, in time) or kept apart in their own columns;
//! - how a percentage is printed (half-up, truncated, or ties to even as casetrail always printed; decimals);
//! - the period cut (calendar; periods starting on day N of the month before), or the server's own.
//!
//! The built-in `national` profile is `shared/spec/indicators.md` exactly: every table under it is the table
//! casetrail gave before profiles existed.

use super::table::{ratio, Counts};
use domain::calendar::Cut;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The built-in profiles, each a TOML file under `crates/projections/profiles/`. The first is the default.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("national", include_str!("../../profiles/national.toml")),
    ("kon-tum", include_str!("../../profiles/kon-tum.toml")),
    ("vinh-phuc", include_str!("../../profiles/vinh-phuc.toml")),
    (
        "over-resolved",
        include_str!("../../profiles/over-resolved.toml"),
    ),
    (
        "form-folded",
        include_str!("../../profiles/form-folded.toml"),
    ),
];

/// The default profile's id.
pub const DEFAULT_PROFILE: &str = "national";

/// What the online and postal rates are taken over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateBase {
    /// Dossiers received in the period (indicators.md §2).
    #[default]
    Received,
    /// Received in the period plus carried over from the one before (Kon Tum's published rates).
    ReceivedAndCarried,
}

/// How the on-time rate is defined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnTime {
    /// (early + on time + open in time) / (resolved + open): Decision 766, criterion 2.1.
    #[default]
    #[serde(rename = "decision-766")]
    Decision766,
    /// (early + on time) / resolved.
    OverResolved,
    /// Met / (met + missed) of the dossiers whose due date falls in the period (Vĩnh Phúc, 2021).
    FallingDue,
    /// 100 % − (resolved late + open late) / (received + carried over).
    ComplementOfLate,
}

/// Where withdrawn dossiers go on the form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WithdrawnClass {
    /// Their own column, in the period their processing ended.
    #[default]
    Apart,
    /// Resolved on time.
    OnTime,
}

/// Where dossiers returned without a resolution go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnresolvedClass {
    /// Judged by their dates like a resolution (the return ends processing; indicators.md §1).
    #[default]
    ByDate,
    /// Resolved on time.
    OnTime,
    /// Their own column.
    Apart,
}

/// Where open dossiers waiting for documents go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitingClass {
    /// In time or late by the clock (which stands while documents are awaited).
    #[default]
    ByClock,
    /// In time.
    InTime,
    /// Their own column.
    Apart,
}

/// How a percentage is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundMode {
    /// To the nearest, an exact half to the even digit: what casetrail always printed (3.125 % → "3.12").
    #[default]
    HalfEven,
    /// To the nearest, an exact half up (3.125 % → "3.13").
    HalfUp,
    /// Cut off (13.058 % → "13.05").
    Truncate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rounding {
    pub mode: RoundMode,
    /// Decimals of the percentage (0 to 4).
    pub decimals: u8,
}

impl Default for Rounding {
    fn default() -> Rounding {
        Rounding {
            mode: RoundMode::HalfEven,
            decimals: 2,
        }
    }
}

impl Rounding {
    /// `num / den` as a percentage printed under this rounding; `None` when `den` is 0. Exact (integer arithmetic)
    /// for half-up and truncation; ties to even rounds the binary fraction, as casetrail's answers always did.
    pub fn percent(&self, num: i64, den: i64) -> Option<String> {
        if den == 0 {
            return None;
        }
        let d = self.decimals as usize;
        if self.mode == RoundMode::HalfEven {
            return Some(format!("{:.*}", d, num as f64 / den as f64 * 100.0));
        }
        let scale = 10i128.pow(d as u32);
        let (mut n, mut q) = (num as i128 * 100 * scale, den as i128);
        if q < 0 {
            (n, q) = (-n, -q);
        }
        let units = match self.mode {
            RoundMode::Truncate => n / q,
            _ => (2 * n + q).div_euclid(2 * q),
        };
        let sign = if units < 0 { "-" } else { "" };
        let units = units.abs();
        Some(match d {
            0 => format!("{sign}{units}"),
            _ => format!("{sign}{}.{:0d$}", units / scale, units % scale, d = d),
        })
    }
}

/// The choices of a profile that change what a row says (rates and the form's classes), small enough to travel
/// with every row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Definitions {
    pub rate_base: RateBase,
    pub on_time: OnTime,
    pub withdrawn: WithdrawnClass,
    pub returned_unresolved: UnresolvedClass,
    pub supplement_waiting: WaitingClass,
    pub rounding: Rounding,
}

/// A profile as its file states it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    id: String,
    title_en: String,
    title_vi: String,
    source: String,
    confidence: String,
    #[serde(default)]
    cut: Option<Cut>,
    rates: RatesFile,
    classes: ClassesFile,
    rounding: Rounding,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesFile {
    denominator: RateBase,
    on_time: OnTime,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassesFile {
    withdrawn: WithdrawnClass,
    returned_unresolved: UnresolvedClass,
    supplement_waiting: WaitingClass,
}

/// A report profile: named definitions with their source.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Profile {
    pub id: String,
    pub title_en: String,
    pub title_vi: String,
    pub source: String,
    /// How sure the source is: C, S, R or I (see `shared/domain/reference.md`).
    pub confidence: String,
    /// The period cut it files by; `None` takes the server's.
    pub cut: Option<Cut>,
    pub defs: Definitions,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
}

/// Why a profile file is not a profile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("profile: {0}")]
    Toml(String),
    #[error("profile {0:?}: an id is 1 to 40 characters of a-z, 0-9 and '-'")]
    Id(String),
    #[error("profile {0:?}: confidence must be C, S, R or I")]
    Confidence(String),
    #[error("profile {0:?}: rounding decimals must be 0 to 4")]
    Decimals(String),
    #[error("two profiles share the id {0:?}")]
    Duplicate(String),
}

impl Profile {
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        let f: ProfileFile = toml::from_str(text).map_err(|e| ProfileError::Toml(e.to_string()))?;
        let id_ok = !f.id.is_empty()
            && f.id.len() <= 40
            && f.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(ProfileError::Id(f.id));
        }
        if !["C", "S", "R", "I"].contains(&f.confidence.as_str()) {
            return Err(ProfileError::Confidence(f.id));
        }
        if f.rounding.decimals > 4 {
            return Err(ProfileError::Decimals(f.id));
        }
        Ok(Profile {
            sha256: super::scorecard::hex(&Sha256::digest(text.as_bytes())),
            id: f.id,
            title_en: f.title_en,
            title_vi: f.title_vi,
            source: f.source,
            confidence: f.confidence,
            cut: f.cut,
            defs: Definitions {
                rate_base: f.rates.denominator,
                on_time: f.rates.on_time,
                withdrawn: f.classes.withdrawn,
                returned_unresolved: f.classes.returned_unresolved,
                supplement_waiting: f.classes.supplement_waiting,
                rounding: f.rounding,
            },
        })
    }

    /// The built-in default, `national`.
    pub fn national() -> Profile {
        Profile::parse(BUILT_IN[0].1).expect("the built-in profiles parse")
    }

    /// The cut the profile's tables are computed under, given the server's.
    pub fn cut_or(&self, server: Cut) -> Cut {
        self.cut.unwrap_or(server)
    }
}

/// The profiles a service offers: the built-in ones, then any read from files (which may not reuse an id).
#[derive(Clone, Debug)]
pub struct Profiles(Vec<Profile>);

impl Profiles {
    pub fn built_in() -> Profiles {
        Profiles(
            BUILT_IN
                .iter()
                .map(|(_, text)| Profile::parse(text).expect("the built-in profiles parse"))
                .collect(),
        )
    }

    /// Adds a profile read from a file; its id must be new.
    pub fn add(&mut self, p: Profile) -> Result<(), ProfileError> {
        if self.get(&p.id).is_some() {
            return Err(ProfileError::Duplicate(p.id));
        }
        self.0.push(p);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Profile> {
        self.0.iter().find(|p| p.id == id)
    }

    /// The profile `id` names, or the default when `None`; an unknown id is refused naming those offered.
    pub fn require(&self, id: Option<&str>) -> Result<&Profile, String> {
        match id {
            None => Ok(self.default_profile()),
            Some(id) => self.get(id).ok_or_else(|| {
                format!(
                    "no report profile {id:?}; there are: {}",
                    self.ids().join(", ")
                )
            }),
        }
    }

    pub fn default_profile(&self) -> &Profile {
        &self.0[0]
    }

    pub fn all(&self) -> &[Profile] {
        &self.0
    }

    pub fn ids(&self) -> Vec<&str> {
        self.0.iter().map(|p| p.id.as_str()).collect()
    }
}

/// One row of the official dossier-count form ("tình hình, kết quả giải quyết TTHC", Circular 01/2020/TT-VPCP),
/// its columns numbered as on the form, under a profile's classes. Columns 14 to 16 are the classes a profile keeps
/// apart (0 when it folds them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Form {
    /// (3) received in total: (4) + (5) + (6).
    pub received_total: i64,
    /// (4) received online in the period.
    pub online: i64,
    /// (5) received at the counter or by post in the period.
    pub direct_and_postal: i64,
    /// (6) carried over from the period before.
    pub carried_over: i64,
    /// (7) resolved: (8) + (9) + (10).
    pub resolved: i64,
    /// (8) resolved before the due date.
    pub early: i64,
    /// (9) resolved on the due date (and what the profile folds into it).
    pub on_time: i64,
    /// (10) resolved after the due date.
    pub late: i64,
    /// (11) in progress at the end of the period: (12) + (13).
    pub in_progress: i64,
    /// (12) in progress, in time.
    pub in_time: i64,
    /// (13) in progress, late.
    pub overdue: i64,
    /// (14) withdrawn, kept apart.
    pub withdrawn: i64,
    /// (15) returned without a resolution, kept apart.
    pub unresolved: i64,
    /// (16) waiting for documents, kept apart.
    pub waiting: i64,
}

/// A sum the form must satisfy: `(lhs) = (rhs…)`, by column numbers, with both sides' values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub rule: String,
    pub left: i64,
    pub right: i64,
}

impl Identity {
    pub fn holds(&self) -> bool {
        self.left == self.right
    }
}

impl Form {
    /// The form's row for a table row's counts, under a profile's definitions.
    pub fn of(c: &Counts, d: &Definitions) -> Form {
        let (mut early, mut on_time, mut late) =
            (c.resolved_early, c.resolved_on_time, c.resolved_late);
        let mut f = Form {
            online: c.received_online,
            direct_and_postal: c.received_counter + c.received_postal,
            carried_over: c.carried_over,
            ..Form::default()
        };
        let unresolved = c.unresolved_early + c.unresolved_on_time + c.unresolved_late;
        if d.returned_unresolved != UnresolvedClass::ByDate {
            early -= c.unresolved_early;
            on_time -= c.unresolved_on_time;
            late -= c.unresolved_late;
        }
        match d.returned_unresolved {
            UnresolvedClass::OnTime => on_time += unresolved,
            UnresolvedClass::Apart => f.unresolved = unresolved,
            UnresolvedClass::ByDate => {}
        }
        match d.withdrawn {
            WithdrawnClass::OnTime => on_time += c.withdrawn_at_end,
            WithdrawnClass::Apart => f.withdrawn = c.withdrawn_at_end,
        }
        let (mut in_time, mut overdue) = (c.open_in_time, c.open_late);
        let waiting = c.waiting_in_time + c.waiting_late;
        match d.supplement_waiting {
            WaitingClass::ByClock => {}
            WaitingClass::InTime => {
                overdue -= c.waiting_late;
                in_time += c.waiting_late;
            }
            WaitingClass::Apart => {
                in_time -= c.waiting_in_time;
                overdue -= c.waiting_late;
                f.waiting = waiting;
            }
        }
        f.received_total = f.online + f.direct_and_postal + f.carried_over;
        (f.early, f.on_time, f.late) = (early, on_time, late);
        f.resolved = early + on_time + late;
        (f.in_time, f.overdue) = (in_time, overdue);
        f.in_progress = in_time + overdue;
        f
    }

    /// The form's identities, each with both sides, for a profile keeping the columns `apart` (of 14, 15, 16)
    /// apart: (3) = (7) + (11) holds as such under a profile that folds every class; otherwise the kept-apart
    /// columns join its right-hand side.
    pub fn identities(&self, apart: &[u8]) -> Vec<Identity> {
        let id = |rule: String, left: i64, right: i64| Identity { rule, left, right };
        let kept: String = apart.iter().map(|n| format!(" + ({n})")).collect();
        vec![
            id(
                "(3) = (4) + (5) + (6)".into(),
                self.received_total,
                self.online + self.direct_and_postal + self.carried_over,
            ),
            id(
                "(7) = (8) + (9) + (10)".into(),
                self.resolved,
                self.early + self.on_time + self.late,
            ),
            id(
                "(11) = (12) + (13)".into(),
                self.in_progress,
                self.in_time + self.overdue,
            ),
            id(
                format!("(3) = (7) + (11){kept}"),
                self.received_total,
                self.resolved + self.in_progress + self.withdrawn + self.unresolved + self.waiting,
            ),
        ]
    }
}

/// A ratio's two sides under a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fraction {
    pub num: i64,
    pub den: i64,
}

impl Fraction {
    pub fn value(&self) -> Option<f64> {
        ratio(self.num, self.den)
    }
}

impl Definitions {
    /// The form's columns of the classes kept apart: 14 (withdrawn), 15 (returned unresolved), 16 (waiting).
    pub fn apart_columns(&self) -> Vec<u8> {
        [
            (14, self.withdrawn == WithdrawnClass::Apart),
            (15, self.returned_unresolved == UnresolvedClass::Apart),
            (16, self.supplement_waiting == WaitingClass::Apart),
        ]
        .into_iter()
        .filter_map(|(n, kept)| kept.then_some(n))
        .collect()
    }

    /// The denominator of the online and postal rates.
    pub fn rate_base(&self, c: &Counts) -> i64 {
        match self.rate_base {
            RateBase::Received => c.received,
            RateBase::ReceivedAndCarried => c.received + c.carried_over,
        }
    }

    /// The on-time rate's two sides.
    pub fn on_time(&self, c: &Counts) -> Fraction {
        let f = Form::of(c, self);
        let (num, den) = match self.on_time {
            OnTime::Decision766 => (f.early + f.on_time + f.in_time, f.resolved + f.in_progress),
            OnTime::OverResolved => (f.early + f.on_time, f.resolved),
            OnTime::FallingDue => (c.due_met, c.due_met + c.due_missed),
            // The kept-apart classes are in neither side (as under the other rules), not counted on time.
            OnTime::ComplementOfLate => {
                let all = c.received + c.carried_over - f.withdrawn - f.unresolved - f.waiting;
                (all - f.late - f.overdue, all)
            }
        };
        Fraction { num, den }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_built_in_profiles_parse_and_national_is_the_spec() {
        let all = Profiles::built_in();
        assert_eq!(all.default_profile().id, DEFAULT_PROFILE);
        assert_eq!(all.default_profile().defs, Definitions::default());
        assert_eq!(all.default_profile().cut, None);
        for (id, _) in BUILT_IN {
            assert_eq!(all.get(id).map(|p| p.id.as_str()), Some(*id));
        }
    }

    #[test]
    fn bad_profiles_are_refused_by_name() {
        let good = BUILT_IN[1].1;
        let bad_decimals = good.replace("decimals = 2", "decimals = 7");
        assert!(matches!(
            Profile::parse(&bad_decimals),
            Err(ProfileError::Decimals(_))
        ));
        let bad_mode = good.replace("\"truncate\"", "\"banker\"");
        assert!(matches!(
            Profile::parse(&bad_mode),
            Err(ProfileError::Toml(_))
        ));
        let bad_id = good.replace("id = \"kon-tum\"", "id = \"Kon Tum\"");
        assert!(matches!(Profile::parse(&bad_id), Err(ProfileError::Id(_))));
        let extra = format!("{good}\nsurprise = 1\n");
        assert!(matches!(Profile::parse(&extra), Err(ProfileError::Toml(_))));
        let mut all = Profiles::built_in();
        assert!(matches!(
            all.add(Profile::parse(good).unwrap()),
            Err(ProfileError::Duplicate(_))
        ));
    }

    #[test]
    fn rounding_as_published() {
        let r = |mode, decimals| Rounding { mode, decimals };
        let trunc = r(RoundMode::Truncate, 2);
        let up = r(RoundMode::HalfUp, 2);
        // Kon Tum's commune row: 3,399 / 26,030 = 13.058 %, printed truncated.
        assert_eq!(trunc.percent(3_399, 26_030).as_deref(), Some("13.05"));
        assert_eq!(up.percent(3_399, 26_030).as_deref(), Some("13.06"));
        // An exact half: 1/32 = 3.125 %.
        assert_eq!(up.percent(1, 32).as_deref(), Some("3.13"));
        assert_eq!(
            r(RoundMode::HalfEven, 2).percent(1, 32).as_deref(),
            Some("3.12")
        );
        assert_eq!(trunc.percent(1, 32).as_deref(), Some("3.12"));
        assert_eq!(r(RoundMode::HalfUp, 0).percent(1, 2).as_deref(), Some("50"));
        assert_eq!(up.percent(0, 5).as_deref(), Some("0.00"));
        assert_eq!(up.percent(5, 0), None);
        assert_eq!(
            r(RoundMode::Truncate, 1).percent(-1, 3).as_deref(),
            Some("-33.3")
        );
    }

    proptest! {
        /// Half-up and truncation bracket the exact value, one unit of the last decimal apart at most; ties to
        /// even agrees with `{:.N}`, which casetrail always printed.
        #[test]
        fn roundings_bracket_the_exact_value(num in 0i64..10_000_000, den in 1i64..10_000_000, decimals in 0u8..=4) {
            let value = num as f64 / den as f64 * 100.0;
            let unit = 10f64.powi(-(decimals as i32));
            let get = |mode| Rounding { mode, decimals }.percent(num, den).unwrap().parse::<f64>().unwrap();
            let (t, u) = (get(RoundMode::Truncate), get(RoundMode::HalfUp));
            prop_assert!(t <= value + 1e-9 && value - t < unit + 1e-9);
            prop_assert!((u - value).abs() <= unit / 2.0 + 1e-9);
            prop_assert_eq!(Rounding { mode: RoundMode::HalfEven, decimals }.percent(num, den).unwrap(),
                format!("{:.*}", decimals as usize, value));
        }

        /// Whatever a profile folds or keeps apart, the form's counts come from the same dossiers: each class
        /// moves whole between columns, and the totals stay the sums of the engine's columns.
        #[test]
        fn folding_moves_dossiers_between_columns_and_loses_none(
            early in 0i64..50, on_time in 0i64..50, late in 0i64..50,
            ue in 0i64..5, uo in 0i64..5, ul in 0i64..5,
            in_time in 0i64..50, open_late in 0i64..50, wi in 0i64..5, wl in 0i64..5, withdrawn in 0i64..9,
            w in 0usize..2, u in 0usize..3, x in 0usize..3,
        ) {
            let c = Counts {
                resolved_early: early + ue, resolved_on_time: on_time + uo, resolved_late: late + ul,
                unresolved_early: ue, unresolved_on_time: uo, unresolved_late: ul,
                open_in_time: in_time + wi, open_late: open_late + wl, waiting_in_time: wi, waiting_late: wl,
                withdrawn_at_end: withdrawn, ..Counts::default()
            };
            let d = Definitions {
                withdrawn: [WithdrawnClass::Apart, WithdrawnClass::OnTime][w],
                returned_unresolved: [UnresolvedClass::ByDate, UnresolvedClass::OnTime, UnresolvedClass::Apart][u],
                supplement_waiting: [WaitingClass::ByClock, WaitingClass::InTime, WaitingClass::Apart][x],
                ..Definitions::default()
            };
            let f = Form::of(&c, &d);
            prop_assert!([f.early, f.on_time, f.late, f.in_time, f.overdue].iter().all(|v| *v >= 0));
            prop_assert_eq!(f.resolved + f.withdrawn + f.unresolved,
                c.resolved_early + c.resolved_on_time + c.resolved_late + withdrawn);
            prop_assert_eq!(f.in_progress + f.waiting, c.open_in_time + c.open_late);
            // The default keeps today's classes exactly.
            if (w, u, x) == (0, 0, 0) {
                prop_assert_eq!((f.early, f.on_time, f.late, f.in_time, f.overdue),
                    (c.resolved_early, c.resolved_on_time, c.resolved_late, c.open_in_time, c.open_late));
            }
        }
    }
}
