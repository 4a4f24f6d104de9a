//! A site's mapping: how the codes its one-stop software sends read in casetrail's terms. Data, in TOML, like the
//! report profiles; the built-in one is the portal's own coding (`mappings/portal.toml`). Every table is total
//! over what it lists: a code it does not list is refused by name, never guessed (agencies and procedures may be
//! taken as they are when the site says so).

use domain::event::{Applicant, Channel, OnlineLevel};
use domain::names::nfc;
use domain::{AgencyCode, ProcedureCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The built-in mapping: the portal's own codes.
pub const PORTAL: &str = include_str!("../mappings/portal.toml");

/// What a status code means, whichever code a site gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meaning {
    /// Sent online, not yet accepted (portal 1): nothing to record yet.
    Submitted,
    /// Accepted (2).
    Accepted,
    /// Refused at intake (3): never a dossier of casetrail's.
    Refused,
    /// Being processed (4).
    Processing,
    /// Documents asked for (5).
    SupplementRequested,
    /// Fees asked for (6): processing goes on; casetrail has no event for it.
    FeesRequested,
    /// Withdrawn at the applicant's request (7).
    Withdrawn,
    /// Stopped as ineligible (8): a resolution, rejected.
    Stopped,
    /// Decided, the result ready (9): a resolution, approved.
    Decided,
    /// The result handed over (10).
    Returned,
}

impl Meaning {
    pub fn as_str(&self) -> &'static str {
        match self {
            Meaning::Submitted => "submitted",
            Meaning::Accepted => "accepted",
            Meaning::Refused => "refused",
            Meaning::Processing => "processing",
            Meaning::SupplementRequested => "supplement_requested",
            Meaning::FeesRequested => "fees_requested",
            Meaning::Withdrawn => "withdrawn",
            Meaning::Stopped => "stopped",
            Meaning::Decided => "decided",
            Meaning::Returned => "returned",
        }
    }
}

/// Whether a code a table does not list is taken as it is or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
pub enum Unlisted {
    #[serde(rename = "as-is")]
    AsIs,
    #[default]
    #[serde(rename = "refuse")]
    Refuse,
}

/// Which agency received a dossier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
pub enum Receiving {
    /// The request's `madonvi`: a system that syncs each agency under its own code.
    #[default]
    #[serde(rename = "madonvi")]
    Sender,
    /// The agency part of `MaHoSo` (`000.00.12.H27-190312-0001`), mapped: a province-wide system that syncs
    /// every agency's dossiers under the province's `madonvi`.
    #[serde(rename = "dossier-code")]
    DossierCode,
}

/// What a processing unit (`DonViXuLy`, `PhongBanXuLy`) that the mapping does not list stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
pub enum UnlistedUnit {
    /// Refused by name.
    #[default]
    #[serde(rename = "refuse")]
    Refuse,
    /// A unit inside the agency holding the dossier: no transfer.
    #[serde(rename = "internal")]
    Internal,
    /// The agency of that code when the catalogue has it registered; any other unit is internal.
    #[serde(rename = "agency-if-registered")]
    AgencyIfRegistered,
    /// The agency of that code, registered or not (a site whose units are all agency codes); not a code: refused.
    #[serde(rename = "as-is")]
    AsIs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgencyTable {
    #[serde(default)]
    unlisted: Unlisted,
    #[serde(default)]
    units_unlisted: UnlistedUnit,
    #[serde(default)]
    internal: Vec<String>,
    #[serde(default)]
    codes: BTreeMap<String, String>,
}

/// What a site's system does to `NgayHenTra` when a dossier resumes after a round of supplements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
pub enum DueOnResume {
    /// Keeps it (or says how it moved it in the round's `NgayHenTraTruoc`/`NgayHenTraMoi`): a later one is an
    /// apology's new date.
    #[default]
    #[serde(rename = "kept")]
    Kept,
    /// Recomputes it itself, saying nothing in the round (OpenCPS): a later one within the rounds' pause is the
    /// system's own move, which casetrail makes itself by stopping the clock.
    #[serde(rename = "recomputed")]
    Recomputed,
}

/// What a site's feed leaves out, and what to take instead.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Defaults {
    /// The intake channel of a dossier sent without `KenhThucHien`.
    #[serde(default)]
    channel: Option<Channel>,
    /// The same, per procedure (the site's procedure code, or the national one).
    #[serde(default)]
    procedures: BTreeMap<String, Channel>,
    #[serde(default)]
    due_on_resume: DueOnResume,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcedureTable {
    #[serde(default)]
    unlisted: Unlisted,
    #[serde(default)]
    codes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    id: String,
    title: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default = "default_success")]
    success_code: String,
    #[serde(default)]
    receiving_agency: Receiving,
    statuses: BTreeMap<String, Meaning>,
    channels: BTreeMap<String, Channel>,
    result_channels: BTreeMap<String, Channel>,
    #[serde(default)]
    online_levels: BTreeMap<String, OnlineLevel>,
    #[serde(default)]
    applicants: BTreeMap<String, Applicant>,
    #[serde(default)]
    defaults: Defaults,
    agencies: AgencyTable,
    procedures: ProcedureTable,
}

fn default_success() -> String {
    "0".into()
}

/// Where a unit the site names sends a dossier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unit {
    /// An agency of casetrail's.
    Agency(AgencyCode),
    /// A unit inside the agency that holds the dossier: no transfer.
    Internal,
    /// This agency if the catalogue has it registered, else a unit inside the holder (`agency-if-registered`).
    IfRegistered(AgencyCode),
}

/// A site's mapping, read and checked.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub id: String,
    pub title: String,
    pub source: Option<String>,
    pub success_code: String,
    /// Which agency received a dossier.
    pub receiving: Receiving,
    /// Hex SHA-256 of the file's bytes: which version of the mapping was in force.
    pub sha256: String,
    statuses: BTreeMap<String, Meaning>,
    channels: BTreeMap<String, Channel>,
    result_channels: BTreeMap<String, Channel>,
    online_levels: BTreeMap<String, OnlineLevel>,
    applicants: BTreeMap<String, Applicant>,
    agencies_unlisted: Unlisted,
    units_unlisted: UnlistedUnit,
    internal: Vec<String>,
    agencies: BTreeMap<String, AgencyCode>,
    procedures_unlisted: Unlisted,
    procedures: BTreeMap<String, ProcedureCode>,
    default_channel: Option<Channel>,
    procedure_channels: BTreeMap<ProcedureCode, Channel>,
    /// What the site's system does to the due date when a dossier resumes after a round.
    pub due_on_resume: DueOnResume,
}

impl Mapping {
    /// The built-in mapping: the portal's own codes.
    pub fn portal() -> Mapping {
        Mapping::parse(PORTAL).expect("the built-in mapping reads")
    }

    /// Reads a mapping file; every problem is named (an unknown key, a meaning that is not one, an agency or
    /// procedure code casetrail would refuse, a status code listed for no meaning).
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let f: MappingFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let id_ok = (1..=24).contains(&f.id.len())
            && f.id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !id_ok {
            return Err(format!(
                "id {:?}: 1 to 24 characters of a-z 0-9 -, since it is named in every event's source",
                f.id
            ));
        }
        if f.success_code.is_empty() {
            return Err("success_code is empty".into());
        }
        // The site's codes and unit names are keys as read (NFC): a unit typed decomposed is the same unit.
        let mut agencies = BTreeMap::new();
        for (site, ours) in f.agencies.codes {
            let code = AgencyCode::parse(&ours)
                .map_err(|e| format!("agencies.codes.{site:?} = {ours:?}: {e}"))?;
            if agencies.insert(nfc(&site).into_owned(), code).is_some() {
                return Err(format!("agencies.codes: {site:?} is listed twice (typed once composed, once decomposed)"));
            }
        }
        let mut procedures = BTreeMap::new();
        for (site, ours) in f.procedures.codes {
            let code = ProcedureCode::parse(&ours)
                .map_err(|e| format!("procedures.codes.{site:?} = {ours:?}: {e}"))?;
            if procedures.insert(nfc(&site).into_owned(), code).is_some() {
                return Err(format!("procedures.codes: {site:?} is listed twice (typed once composed, once decomposed)"));
            }
        }
        let internal: Vec<String> = f
            .agencies
            .internal
            .iter()
            .map(|u| nfc(u).into_owned())
            .collect();
        if let Some(both) = internal.iter().find(|u| agencies.contains_key(*u)) {
            return Err(format!(
                "agencies: {both:?} is both an internal unit and mapped to an agency"
            ));
        }
        let mut procedure_channels = BTreeMap::new();
        for (site, channel) in &f.defaults.procedures {
            let key = nfc(site);
            let code = match procedures.get(key.as_ref()) {
                Some(p) => p.clone(),
                None => ProcedureCode::parse(&key).map_err(|e| {
                    format!("defaults.procedures.{site:?}: not a procedure the mapping lists, nor a procedure code: {e}")
                })?,
            };
            if procedure_channels.insert(code, *channel).is_some() {
                return Err(format!(
                    "defaults.procedures: {site:?} names a procedure listed already"
                ));
            }
        }
        Ok(Mapping {
            sha256: format!("{:x}", Sha256::digest(text.as_bytes())),
            default_channel: f.defaults.channel,
            procedure_channels,
            due_on_resume: f.defaults.due_on_resume,
            id: f.id,
            title: f.title,
            source: f.source,
            success_code: f.success_code,
            receiving: f.receiving_agency,
            statuses: f.statuses,
            channels: f.channels,
            result_channels: f.result_channels,
            online_levels: f.online_levels,
            applicants: f.applicants,
            agencies_unlisted: f.agencies.unlisted,
            units_unlisted: f.agencies.units_unlisted,
            internal,
            agencies,
            procedures_unlisted: f.procedures.unlisted,
            procedures,
        })
    }

    /// What is written in every event's `source` after the credential's name: `dvcqg:<id>:<first 8 hex of the
    /// file's SHA-256>`, so that each event names the mapping (and its version) it was read with.
    pub fn tag(&self) -> String {
        format!("dvcqg:{}:{}", self.id, &self.sha256[..8])
    }

    pub fn status(&self, code: &str) -> Result<Meaning, String> {
        lookup(&self.statuses, code, "status")
    }

    /// The site's code for a meaning, for answers in the portal's terms (the smallest code when several mean it).
    pub fn status_code(&self, meaning: Meaning) -> Option<&str> {
        reverse(&self.statuses, meaning)
    }

    /// The site's code for an intake channel (the smallest when several mean it).
    pub fn channel_code(&self, channel: Channel) -> Option<&str> {
        reverse(&self.channels, channel)
    }

    /// The site's code for a result channel.
    pub fn result_channel_code(&self, channel: Channel) -> Option<&str> {
        reverse(&self.result_channels, channel)
    }

    /// The site's code for an online level.
    pub fn online_level_code(&self, level: OnlineLevel) -> Option<&str> {
        reverse(&self.online_levels, level)
    }

    /// The site's code for who applied.
    pub fn applicant_code(&self, applicant: Applicant) -> Option<&str> {
        reverse(&self.applicants, applicant)
    }

    /// The intake channel the site says a dossier of `procedure` sent without `KenhThucHien` came by: the
    /// procedure's default, else the site's, else none (the caller takes the counter, as the portal counts it).
    pub fn default_channel(&self, procedure: &ProcedureCode) -> Option<Channel> {
        self.procedure_channels
            .get(procedure)
            .copied()
            .or(self.default_channel)
    }

    pub fn channel(&self, code: &str) -> Result<Channel, String> {
        lookup(&self.channels, code, "channel")
    }

    pub fn result_channel(&self, code: &str) -> Result<Channel, String> {
        lookup(&self.result_channels, code, "result channel")
    }

    pub fn online_level(&self, code: &str) -> Result<OnlineLevel, String> {
        lookup(&self.online_levels, code, "online level")
    }

    pub fn applicant(&self, code: &str) -> Result<Applicant, String> {
        lookup(&self.applicants, code, "applicant type")
    }

    /// The agency a site's agency code stands for.
    pub fn agency(&self, code: &str) -> Result<AgencyCode, String> {
        if let Some(ours) = self.agencies.get(nfc(code).as_ref()) {
            return Ok(ours.clone());
        }
        match self.agencies_unlisted {
            Unlisted::AsIs => AgencyCode::parse(code).map_err(|e| {
                format!("agency {code:?} is not in the mapping, and not an agency code: {e}")
            }),
            Unlisted::Refuse => Err(format!("agency {code:?} is not in mapping {:?}", self.id)),
        }
    }

    /// Where a processing unit the site names (DonViXuLy, PhongBanXuLy) sends a dossier: a listed code's agency,
    /// an internal unit, or what `units_unlisted` says of any other.
    pub fn unit(&self, name: &str) -> Result<Unit, String> {
        let key = nfc(name);
        if self.internal.iter().any(|u| *u == key) {
            return Ok(Unit::Internal);
        }
        if let Some(ours) = self.agencies.get(key.as_ref()) {
            return Ok(Unit::Agency(ours.clone()));
        }
        match self.units_unlisted {
            UnlistedUnit::Internal => Ok(Unit::Internal),
            UnlistedUnit::AgencyIfRegistered => Ok(AgencyCode::parse(name)
                .map(Unit::IfRegistered)
                .unwrap_or(Unit::Internal)),
            UnlistedUnit::AsIs => AgencyCode::parse(name).map(Unit::Agency).map_err(|e| {
                format!("unit {name:?} is not in mapping {:?}, and not an agency code: {e}", self.id)
            }),
            UnlistedUnit::Refuse => Err(format!(
                "unit {name:?} is not in mapping {:?}; list it under [agencies.codes], or under agencies.internal if it is a unit inside its agency",
                self.id
            )),
        }
    }

    /// The site's code for one of casetrail's agencies (the first listed), or casetrail's own.
    pub fn site_agency(&self, ours: &AgencyCode) -> String {
        self.agencies
            .iter()
            .find(|(_, a)| *a == ours)
            .map_or_else(|| ours.to_string(), |(site, _)| site.clone())
    }

    /// The site's code for a national procedure code (the first listed), or the national one.
    pub fn site_procedure(&self, ours: &ProcedureCode) -> String {
        self.procedures
            .iter()
            .find(|(_, p)| *p == ours)
            .map_or_else(|| ours.to_string(), |(site, _)| site.clone())
    }

    /// The national procedure code a site's procedure code stands for.
    pub fn procedure(&self, code: &str) -> Result<ProcedureCode, String> {
        if let Some(ours) = self.procedures.get(nfc(code).as_ref()) {
            return Ok(ours.clone());
        }
        match self.procedures_unlisted {
            Unlisted::AsIs => ProcedureCode::parse(code).map_err(|e| {
                format!("procedure {code:?} is not in the mapping, and not a procedure code: {e}")
            }),
            Unlisted::Refuse => Err(format!(
                "procedure {code:?} is not in mapping {:?}",
                self.id
            )),
        }
    }
}

fn reverse<T: PartialEq>(table: &BTreeMap<String, T>, value: T) -> Option<&str> {
    table
        .iter()
        .filter(|(_, v)| **v == value)
        .map(|(c, _)| c.as_str())
        .min_by_key(|c| (c.len(), *c))
}

fn lookup<T: Copy>(table: &BTreeMap<String, T>, code: &str, what: &str) -> Result<T, String> {
    table.get(code).copied().ok_or_else(|| {
        let known: Vec<&str> = table.keys().map(String::as_str).collect();
        format!(
            "{what} code {code:?} is not in the mapping (it knows {})",
            known.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 25, point 5: a unit named in the mapping or in a request, typed composed or decomposed, is one unit.
    #[test]
    fn a_unit_is_found_however_its_name_was_typed() {
        use unicode_normalization::UnicodeNormalization;
        for (file_form, request_form) in
            [(false, true), (true, false), (true, true), (false, false)]
        {
            let form = |s: &str, nfd: bool| {
                if nfd {
                    s.nfd().collect::<String>()
                } else {
                    s.nfc().collect()
                }
            };
            let toml = PORTAL
                .replace(
                    "internal = []",
                    &format!("internal = [\"{}\"]", form("Bộ phận một cửa", file_form)),
                )
                .replace(
                    "[agencies.codes]",
                    &format!(
                        "[agencies.codes]\n\"{}\" = \"000.00.13.H27\"",
                        form("Phòng Tư pháp huyện Thạch Hà", file_form)
                    ),
                );
            let m = Mapping::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
            assert_eq!(
                m.unit(&form("Phòng Tư pháp huyện Thạch Hà", request_form)),
                Ok(Unit::Agency(AgencyCode::parse("000.00.13.H27").unwrap()))
            );
            assert_eq!(
                m.unit(&form("Bộ phận một cửa", request_form)),
                Ok(Unit::Internal)
            );
        }
    }

    /// A name listed twice, once composed and once decomposed, is one key: refused, not one silently kept.
    #[test]
    fn a_name_listed_in_two_forms_is_refused() {
        use unicode_normalization::UnicodeNormalization;
        let name = "Phòng Tư pháp";
        let toml = PORTAL.replace(
            "[agencies.codes]",
            &format!(
                "[agencies.codes]\n\"{}\" = \"000.00.13.H27\"\n\"{}\" = \"000.00.14.H27\"",
                name.nfc().collect::<String>(),
                name.nfd().collect::<String>()
            ),
        );
        let e = Mapping::parse(&toml).unwrap_err();
        assert!(
            e.contains("agencies.codes") && e.contains("listed twice"),
            "{e}"
        );
    }

    #[test]
    fn the_portal_mapping_reads_every_portal_status() {
        let m = Mapping::portal();
        let meanings: Vec<Meaning> = (1..=10)
            .map(|c| m.status(&c.to_string()).unwrap())
            .collect();
        assert_eq!(meanings.len(), 10);
        let mut distinct = meanings.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 10, "ten codes, ten meanings");
        assert_eq!(m.status_code(Meaning::Returned), Some("10"));
        assert!(m.status("11").unwrap_err().contains("\"11\""));
        assert_eq!(m.tag().len(), "dvcqg:portal:".len() + 8);
    }

    #[test]
    fn a_site_mapping_maps_and_refuses_by_name() {
        let text = PORTAL
            .replace("id = \"portal\"", "id = \"ha-tinh-igate\"")
            .replace(
                "[agencies.codes]",
                "[agencies.codes]\n\"H27.01\" = \"000.01.00.H27\"",
            )
            .replace(
                "[agencies]\nunlisted = \"as-is\"",
                "[agencies]\nunlisted = \"refuse\"",
            )
            .replace("internal = []", "internal = [\"Phòng Một cửa\"]")
            .replace(
                "units_unlisted = \"agency-if-registered\"",
                "units_unlisted = \"refuse\"",
            )
            .replace(
                "[procedures.codes]",
                "[procedures.codes]\n\"HT-001\" = \"1.001234\"",
            );
        let m = Mapping::parse(&text).unwrap();
        assert_eq!(m.agency("H27.01").unwrap().as_str(), "000.01.00.H27");
        assert!(m
            .agency("000.02.00.H27")
            .unwrap_err()
            .contains("not in mapping"));
        assert_eq!(m.unit("Phòng Một cửa").unwrap(), Unit::Internal);
        assert!(m
            .unit("Phòng Tư pháp")
            .unwrap_err()
            .contains("Phòng Tư pháp"));
        assert_eq!(m.site_agency(&m.agency("H27.01").unwrap()), "H27.01");
        let portal = Mapping::portal();
        assert_eq!(portal.unit("Phòng Tư pháp").unwrap(), Unit::Internal);
        assert!(matches!(
            portal.unit("000.00.12.H27").unwrap(),
            Unit::IfRegistered(_)
        ));
        assert_eq!(m.procedure("HT-001").unwrap().as_str(), "1.001234");
        assert_eq!(m.procedure("1.000001").unwrap().as_str(), "1.000001");
        assert_ne!(m.sha256, Mapping::portal().sha256);
    }

    #[test]
    fn defaults_name_a_channel_per_procedure_or_per_site() {
        let text = PORTAL
            .replace(
                "[procedures.codes]",
                "[procedures.codes]\n\"HT-001\" = \"1.001234\"",
            )
            .replace(
                "# [defaults]",
                "[defaults]\nchannel = \"counter\"\ndue_on_resume = \"recomputed\"\n[defaults.procedures]\n\"HT-001\" = \"online\"\n\"2.000001\" = \"postal\"\n",
            );
        let m = Mapping::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let p = |c: &str| ProcedureCode::parse(c).unwrap();
        assert_eq!(m.default_channel(&p("1.001234")), Some(Channel::Online));
        assert_eq!(m.default_channel(&p("2.000001")), Some(Channel::Postal));
        assert_eq!(m.default_channel(&p("3.000001")), Some(Channel::Counter));
        assert_eq!(m.due_on_resume, DueOnResume::Recomputed);
        let portal = Mapping::portal();
        assert_eq!(portal.default_channel(&p("1.001234")), None);
        assert_eq!(portal.due_on_resume, DueOnResume::Kept);
        let bad = text.replace("\"2.000001\" = \"postal\"", "\"not a code!\" = \"postal\"");
        assert!(Mapping::parse(&bad)
            .unwrap_err()
            .contains("defaults.procedures"));
    }

    #[test]
    fn a_broken_mapping_is_refused_naming_what() {
        let bad_meaning = PORTAL.replace("\"8\" = \"stopped\"", "\"8\" = \"halted\"");
        assert!(Mapping::parse(&bad_meaning).unwrap_err().contains("halted"));
        let bad_key = PORTAL.replace("success_code", "sucess_code");
        assert!(Mapping::parse(&bad_key)
            .unwrap_err()
            .contains("sucess_code"));
        let bad_code = PORTAL.replace(
            "[agencies.codes]",
            "[agencies.codes]\n\"x\" = \"not/a code\"",
        );
        assert!(Mapping::parse(&bad_code)
            .unwrap_err()
            .contains("agencies.codes"));
        let bad_id = PORTAL.replace("id = \"portal\"", "id = \"Portal Site\"");
        assert!(Mapping::parse(&bad_id).unwrap_err().contains("Portal Site"));
    }
}
