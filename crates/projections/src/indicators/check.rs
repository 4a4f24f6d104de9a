//! A check of a published table: does each row add up, does each printed percentage equal its counts under some
//! definition (which, and rounded or truncated), and, when the log covers the period, are the counts casetrail's?
//!
//! The table is CSV as a province published it: a header row, then rows of counts and printed percentages. Columns
//! are recognised by the official form's numbers (`(3)`, `(4) Trực tuyến`…), by casetrail's keys (`received`,
//! `online`, `carried_over`, `online_rate`…) or by their Vietnamese names; numbers may carry thousands separators
//! (`56,039`, `56.039`) and percentages a decimal comma or a `%` (`22,33 %`). Columns it does not know are named in
//! the answer, never guessed at.

use super::profile::{Form, OnTime as OnTimeRule, Profile, RateBase, RoundMode, Rounding};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A count a published row may give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Received in the period (new dossiers only).
    Received,
    /// (3) new + carried over.
    ReceivedTotal,
    /// (4)
    Online,
    /// (5)
    DirectAndPostal,
    /// (6)
    CarriedOver,
    /// (7)
    Resolved,
    /// (8)
    Early,
    /// (9)
    OnTime,
    /// (10)
    Late,
    /// (11)
    InProgress,
    /// (12)
    InTime,
    /// (13)
    Overdue,
    /// Dossiers through the post, either direction.
    Postal,
    /// Dossiers falling due in the period, and those of them resolved by then.
    DueTotal,
    DueMet,
    /// (14), (15), (16): the classes a profile keeps apart.
    Withdrawn,
    Unresolved,
    Waiting,
}

impl Quantity {
    /// Its name in the answer (`received_total`, `on_time`…), as JSON spells it.
    pub fn key(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A percentage a published row may print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    OnlineRate,
    PostalRate,
    OnTimeRate,
}

const FORM_NUMBERS: [(u8, Quantity); 14] = [
    (3, Quantity::ReceivedTotal),
    (4, Quantity::Online),
    (5, Quantity::DirectAndPostal),
    (6, Quantity::CarriedOver),
    (7, Quantity::Resolved),
    (8, Quantity::Early),
    (9, Quantity::OnTime),
    (10, Quantity::Late),
    (11, Quantity::InProgress),
    (12, Quantity::InTime),
    (13, Quantity::Overdue),
    (14, Quantity::Withdrawn),
    (15, Quantity::Unresolved),
    (16, Quantity::Waiting),
];

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ColumnKind {
    Name,
    Agency,
    Level,
    Count(Quantity),
    Printed(Rate),
    /// What a line is (`agency`, `level`, `total`): casetrail's own form CSV says so.
    LineKind,
    /// How many agencies a row sums (casetrail's indicator tables): more than one is a subtree.
    Agencies,
    /// The profile a table names (casetrail's own CSVs end with it).
    Profile,
    /// The period of a row.
    Period,
    /// Other columns of casetrail's own CSVs (period, position…): known, not checked.
    Ignored,
}

fn normalise(header: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    header
        .trim()
        .trim_start_matches('\u{feff}')
        .nfc()
        .collect::<String>()
        .to_lowercase()
        .replace(['_', '-'], " ")
        .replace("(%)", "")
        .replace('%', "")
        .trim()
        .to_owned()
}

fn column_kind(header: &str) -> Option<ColumnKind> {
    use ColumnKind::*;
    use Quantity::*;
    let h = normalise(header);
    // A form column number first: "(4) Trực tuyến", "(4)".
    if let Some(rest) = h.strip_prefix('(') {
        if let Some((n, _)) = rest.split_once(')') {
            if let Ok(n) = n.trim().parse::<u8>() {
                return match n {
                    1 => Some(Ignored),
                    2 => Some(Name),
                    _ => FORM_NUMBERS
                        .iter()
                        .find(|(k, _)| *k == n)
                        .map(|(_, q)| Count(*q)),
                };
            }
        }
    }
    Some(match h.as_str() {
        "name" | "unit" | "đơn vị" | "tên" | "tên đơn vị" | "cơ quan" => Name,
        "agency" | "agency code" | "mã cơ quan" | "mã đơn vị" => Agency,
        "level" | "cấp" => Level,
        "received"
        | "new"
        | "tiếp nhận"
        | "mới tiếp nhận"
        | "số mới tiếp nhận"
        | "tiếp nhận mới" => Count(Received),
        "received total"
        | "total"
        | "tổng số"
        | "tổng số hồ sơ"
        | "tổng số hồ sơ nhận giải quyết" => Count(ReceivedTotal),
        "online" | "received online" | "trực tuyến" | "tiếp nhận trực tuyến" => {
            Count(Online)
        }
        "direct and postal"
        | "counter and postal"
        | "trực tiếp, dịch vụ bưu chính công ích"
        | "trực tiếp và bưu chính" => Count(DirectAndPostal),
        "carried over" | "từ kỳ trước" | "kỳ trước chuyển sang" => Count(CarriedOver),
        "resolved" | "đã giải quyết" | "tổng số đã giải quyết" => Count(Resolved),
        "early" | "resolved early" | "trước hạn" | "giải quyết trước hạn" => {
            Count(Early)
        }
        "on time" | "resolved on time" | "đúng hạn" | "giải quyết đúng hạn" => {
            Count(OnTime)
        }
        "late" | "resolved late" | "quá hạn" | "giải quyết quá hạn" => Count(Late),
        "in progress" | "đang giải quyết" | "tổng số đang giải quyết" => {
            Count(InProgress)
        }
        "in time"
        | "open in time"
        | "open, in time"
        | "trong hạn"
        | "chưa đến hạn"
        | "đang giải quyết trong hạn" => Count(InTime),
        "overdue" | "open late" | "open, late" | "đang giải quyết quá hạn" => {
            Count(Overdue)
        }
        "postal"
        | "postal dossiers"
        | "bưu chính"
        | "bcci"
        | "bcci: hồ sơ (cả hai chiều)"
        | "postal: dossiers, either direction" => Count(Postal),
        "withdrawn" | "rút hồ sơ" => Count(Withdrawn),
        "due total"
        | "falling due"
        | "falling due in the period"
        | "đến hạn"
        | "hồ sơ đến hạn"
        | "đến hạn trong kỳ" => Count(DueTotal),
        "due met"
        | "falling due: resolved on time"
        | "đến hạn đã giải quyết đúng hạn"
        | "đến hạn: giải quyết đúng hạn" => Count(DueMet),
        "agencies summed" | "số cơ quan cộng gộp" => Agencies,
        "online rate" | "tỷ lệ trực tuyến" => Printed(Rate::OnlineRate),
        "postal rate" | "tỷ lệ bcci" | "tỷ lệ bưu chính" => Printed(Rate::PostalRate),
        "on time rate" | "tỷ lệ đúng hạn" => Printed(Rate::OnTimeRate),
        "loại dòng" | "line" => LineKind,
        "cách tính" | "profile" => Profile,
        "kỳ báo cáo" | "period" => Period,
        "vị trí nhật ký" | "log position" | "stt" | "no." => Ignored,
        _ => return None,
    })
}

/// One row as published.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublishedRow {
    /// The CSV line (the header is line 1).
    pub line: usize,
    pub name: String,
    pub agency: Option<String>,
    pub level: Option<String>,
    pub counts: BTreeMap<Quantity, i64>,
    /// Each percentage as printed, normalised to a decimal point ("22,33 %" → "22.33").
    pub printed: BTreeMap<Rate, String>,
    /// What the line is, when the table says so (`agency`, `level`, `total`: casetrail's own form CSV).
    pub kind: Option<String>,
    /// How many agencies the row sums, when the table says so (casetrail's indicator tables).
    pub agencies: Option<i64>,
    /// The period the row is of, when the table says so (a series; casetrail's CSVs).
    pub period: Option<String>,
}

impl PublishedRow {
    fn get(&self, q: Quantity) -> Option<i64> {
        self.counts.get(&q).copied()
    }

    /// New dossiers: given, or (3) − (6), or (4) + (5).
    fn new_dossiers(&self) -> Option<i64> {
        use Quantity::*;
        self.get(Received)
            .or_else(|| Some(self.get(ReceivedTotal)? - self.get(CarriedOver)?))
            .or_else(|| Some(self.get(Online)? + self.get(DirectAndPostal)?))
    }

    /// New + carried over: (3), or new + (6).
    fn total(&self) -> Option<i64> {
        use Quantity::*;
        self.get(ReceivedTotal)
            .or_else(|| Some(self.new_dossiers()? + self.get(CarriedOver)?))
    }

    /// The dossiers in the columns a profile keeps apart, (14) to (16), as far as the row gives them.
    fn apart(&self) -> i64 {
        use Quantity::*;
        [Withdrawn, Unresolved, Waiting]
            .iter()
            .filter_map(|q| self.get(*q))
            .sum()
    }

    /// A total line: the table says so, or its name does ("Tổng cộng", "Tổng số", "Cộng", "Toàn tỉnh", "Total",
    /// "Province total").
    pub fn is_total(&self) -> bool {
        if let Some(kind) = &self.kind {
            return kind == "total";
        }
        let n = self.name.trim().to_lowercase();
        n.starts_with("tổng")
            // casetrail's own province row (the level grouping's province-level row names its level)
            || (n == "province" && self.level.is_none())
            || n.starts_with("total")
            || n.ends_with(" total")
            || n == "cộng"
            || n == "toàn tỉnh"
    }
}

/// A published table, read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Published {
    pub rows: Vec<PublishedRow>,
    /// Headers not read, each with why (not recognised, or a second column of a name already read).
    pub unread: Vec<String>,
    /// The profile the table names (a `Cách tính` / `Profile` column), if any.
    pub profile: Option<String>,
    /// How the file was read, when not as UTF-8 with commas (a Windows code page, semicolons…).
    pub notes: Vec<String>,
}

/// Cells that say "no figure here".
fn missing(t: &str) -> bool {
    matches!(
        t.to_lowercase().as_str(),
        "" | "-" | "—" | "–" | "x" | "n/a" | "na" | "không"
    )
}

/// A whole count, with or without thousands separators ("56,039", "56.039", "56 039"). A separator must be
/// followed by exactly three digits, so "12.5" is refused rather than read as 125.
fn count(s: &str) -> Result<Option<i64>, String> {
    let t: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}'))
        .collect();
    if missing(&t) {
        return Ok(None);
    }
    let groups: Vec<&str> = t.split(['.', ',']).collect();
    let grouped = groups.len() == 1 || groups[1..].iter().all(|g| g.len() == 3);
    let digits = groups.concat();
    match (grouped, digits.parse::<i64>()) {
        (true, Ok(n)) if n >= 0 => Ok(Some(n)),
        _ => Err(format!("{s:?} is not a whole count")),
    }
}

fn percent(s: &str) -> Result<Option<String>, String> {
    let t: String = s
        .chars()
        .filter(|c| !matches!(c, '%' | ' ' | '\u{a0}'))
        .collect();
    if missing(&t) {
        return Ok(None);
    }
    let t = t.replace(',', ".");
    let ok = t.split('.').count() <= 2
        && !t.starts_with('.')
        && t.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !ok {
        return Err(format!("{s:?} is not a percentage"));
    }
    Ok(Some(t))
}

impl Published {
    /// Reads a published table from CSV: UTF-8 (a byte-order mark is skipped), else Windows-1258, the Vietnamese
    /// code page spreadsheets on Windows save in; fields separated by commas, or by semicolons or tabs when the
    /// header row has more of those (a spreadsheet with a decimal comma saves so). A cell that is not a number where
    /// a number belongs is an error naming its line and column; so is a table with no row, or with no column this
    /// check knows.
    pub fn parse(bytes: &[u8]) -> Result<Published, String> {
        use unicode_normalization::UnicodeNormalization;
        let mut notes = Vec::new();
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        let text: String = match std::str::from_utf8(bytes) {
            Ok(t) => t.nfc().collect(),
            Err(_) => {
                // `decode` follows a byte-order mark (UTF-16 as Excel's "Unicode text" saves it) before the
                // code page: the note names the encoding actually read.
                let (t, read_as, _) = encoding_rs::WINDOWS_1258.decode(bytes);
                let name = match read_as.name() {
                    "windows-1258" => "Windows-1258",
                    other => other,
                };
                notes.push(format!("read as {name} (the file is not UTF-8)"));
                t.nfc().collect()
            }
        };
        let first = text.lines().next().unwrap_or_default();
        let delimiter = [b';', b'\t']
            .into_iter()
            .filter(|d| first.matches(*d as char).count() > first.matches(',').count())
            .max_by_key(|d| first.matches(*d as char).count())
            .unwrap_or(b',');
        if delimiter != b',' {
            notes.push(format!("fields separated by {:?}", delimiter as char));
        }
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| format!("the header row: {e}"))?
            .clone();
        let mut kinds: Vec<Option<ColumnKind>> = headers.iter().map(column_kind).collect();
        let mut unread = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            let earlier = kinds[..i].iter().any(|k| k == &kinds[i]);
            match kinds[i] {
                None => unread.push(format!("{h} (not a column this check knows)")),
                Some(ColumnKind::Count(_) | ColumnKind::Printed(_) | ColumnKind::Name)
                    if earlier =>
                {
                    unread.push(format!(
                        "{h} (a second column read as the same thing: give the form's columns their numbers, \"(N) {h}\", to tell them apart)"
                    ));
                    kinds[i] = None;
                }
                _ => {}
            }
        }
        let useful = kinds
            .iter()
            .any(|k| matches!(k, Some(ColumnKind::Count(_) | ColumnKind::Printed(_))));
        if !useful {
            return Err(format!(
                "no column of counts or percentages was recognised (headers: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            ));
        }
        let mut rows = Vec::new();
        let mut profile = None;
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record.map_err(|e| format!("line {line}: {e}"))?;
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            // A row that does not line up with the header is not read by guesswork: more cells is most often an
            // unquoted decimal comma (37,76), which would shift every cell after it.
            if record.len() > headers.len() {
                return Err(format!(
                    "line {line}: {} cells, but the header has {}; a number with a decimal comma (37,76) must be quoted, or the file saved with semicolons",
                    record.len(),
                    headers.len()
                ));
            }
            if record.len() < headers.len() {
                notes.push(format!(
                    "line {line}: {} cells of the header's {}; the missing ones at its end read as empty",
                    record.len(),
                    headers.len()
                ));
            }
            let mut row = PublishedRow {
                line,
                name: String::new(),
                agency: None,
                level: None,
                counts: BTreeMap::new(),
                printed: BTreeMap::new(),
                kind: None,
                agencies: None,
                period: None,
            };
            for (j, field) in record.iter().enumerate() {
                let at = |e: String| {
                    format!(
                        "line {line}, column {:?}: {e}",
                        &headers[j.min(headers.len() - 1)]
                    )
                };
                let text = || Some(field.trim().to_owned()).filter(|s| !s.is_empty());
                match kinds.get(j).copied().flatten() {
                    Some(ColumnKind::Name) => row.name = field.trim().to_owned(),
                    Some(ColumnKind::Agency) => row.agency = text(),
                    Some(ColumnKind::Level) => row.level = text(),
                    Some(ColumnKind::LineKind) => row.kind = text().map(|k| k.to_lowercase()),
                    Some(ColumnKind::Profile) => profile = profile.or_else(text),
                    Some(ColumnKind::Period) => row.period = text(),
                    Some(ColumnKind::Agencies) => row.agencies = count(field).map_err(at)?,
                    Some(ColumnKind::Count(q)) => {
                        if let Some(n) = count(field).map_err(at)? {
                            row.counts.insert(q, n);
                        }
                    }
                    Some(ColumnKind::Printed(r)) => {
                        if let Some(p) = percent(field).map_err(at)? {
                            row.printed.insert(r, p);
                        }
                    }
                    Some(ColumnKind::Ignored) | None => {}
                }
            }
            if row.name.is_empty() {
                row.name = row
                    .agency
                    .clone()
                    .or(row.level.clone())
                    .unwrap_or_else(|| format!("line {line}"));
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Err("the table has a header row but no rows".into());
        }
        Ok(Published {
            rows,
            unread,
            profile,
            notes,
        })
    }
}

/// A way to compute a printed rate: its numerator and denominator from a row, in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Definition {
    rate: Rate,
    /// The online/postal denominator, or the on-time rule.
    base: Option<RateBase>,
    on_time: Option<OnTimeRule>,
}

impl Definition {
    fn all(rate: Rate) -> Vec<Definition> {
        match rate {
            Rate::OnTimeRate => [
                OnTimeRule::Decision766,
                OnTimeRule::OverResolved,
                OnTimeRule::FallingDue,
                OnTimeRule::ComplementOfLate,
            ]
            .into_iter()
            .map(|o| Definition {
                rate,
                base: None,
                on_time: Some(o),
            })
            .collect(),
            _ => [RateBase::Received, RateBase::ReceivedAndCarried]
                .into_iter()
                .map(|b| Definition {
                    rate,
                    base: Some(b),
                    on_time: None,
                })
                .collect(),
        }
    }

    fn of(profile: &Profile, rate: Rate) -> Definition {
        match rate {
            Rate::OnTimeRate => Definition {
                rate,
                base: None,
                on_time: Some(profile.defs.on_time),
            },
            _ => Definition {
                rate,
                base: Some(profile.defs.rate_base),
                on_time: None,
            },
        }
    }

    fn words(&self) -> &'static str {
        match (self.base, self.on_time) {
            (Some(RateBase::Received), _) => "over new dossiers",
            (Some(RateBase::ReceivedAndCarried), _) => "over new + carried over",
            (_, Some(OnTimeRule::Decision766)) => {
                "(early + on time + in time) / (resolved + in progress), Decision 766"
            }
            (_, Some(OnTimeRule::OverResolved)) => "(early + on time) / resolved",
            (_, Some(OnTimeRule::FallingDue)) => "met / falling due in the period",
            (_, Some(OnTimeRule::ComplementOfLate)) => {
                "100 % − (late + overdue) / (new + carried over)"
            }
            _ => "",
        }
    }

    /// The two sides from a published row, when it gives what they need.
    fn fraction(&self, r: &PublishedRow) -> Option<(i64, i64)> {
        use Quantity::*;
        let numerator = |q| r.get(q);
        match (self.rate, self.base, self.on_time) {
            (Rate::OnlineRate | Rate::PostalRate, Some(base), _) => {
                let num = numerator(if self.rate == Rate::OnlineRate {
                    Online
                } else {
                    Postal
                })?;
                let den = match base {
                    RateBase::Received => r.new_dossiers()?,
                    RateBase::ReceivedAndCarried => r.total()?,
                };
                Some((num, den))
            }
            (_, _, Some(OnTimeRule::FallingDue)) => Some((r.get(DueMet)?, r.get(DueTotal)?)),
            (_, _, Some(rule)) => {
                let (early, on_time) = (r.get(Early)?, r.get(OnTime)?);
                let resolved = || {
                    r.get(Resolved)
                        .or_else(|| Some(early + on_time + r.get(Late)?))
                };
                let in_progress = || {
                    r.get(InProgress)
                        .or_else(|| Some(r.get(InTime)? + r.get(Overdue)?))
                };
                match rule {
                    OnTimeRule::Decision766 => Some((
                        early + on_time + r.get(InTime)?,
                        resolved()? + in_progress()?,
                    )),
                    OnTimeRule::OverResolved => Some((early + on_time, resolved()?)),
                    OnTimeRule::FallingDue => unreachable!("answered above"),
                    OnTimeRule::ComplementOfLate => {
                        let total = r.total()? - r.apart();
                        Some((total - r.get(Late)? - r.get(Overdue)?, total))
                    }
                }
            }
            _ => None,
        }
    }
}

fn mode_words(mode: RoundMode) -> &'static str {
    match mode {
        RoundMode::HalfUp => "rounded half up",
        RoundMode::HalfEven => "rounded, a half to even",
        RoundMode::Truncate => "truncated",
    }
}

/// One way a printed percentage was reproduced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub definition: String,
    pub numerator: i64,
    pub denominator: i64,
    /// How it was printed: "rounded half up", "truncated", …
    pub rounding: String,
    /// The profiles that print it so.
    pub profiles: Vec<String>,
}

/// The verdict on one printed percentage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum RateVerdict {
    /// The counts give it under these readings.
    Reproduced {
        printed: String,
        readings: Vec<Reading>,
    },
    /// No reading gives it: a slip, with the value the counts give under the table's own definition.
    Slip {
        printed: String,
        correct: String,
        under: Reading,
    },
    /// The row lacks the counts to check it.
    Unchecked { printed: String, missing: String },
}

/// A sum of a row that should hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SumCheck {
    pub rule: String,
    pub left: i64,
    pub right: i64,
    pub holds: bool,
}

/// A count against casetrail's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountCheck {
    pub quantity: Quantity,
    pub published: i64,
    pub casetrail: i64,
    pub equal: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowCheck {
    pub line: usize,
    pub name: String,
    pub sums: Vec<SumCheck>,
    pub rates: BTreeMap<Rate, RateVerdict>,
    /// What the row was matched to in the log ("agency 000.00.21.H27", "level district", "the province"…), or why
    /// it could not be ("2 agencies are named so").
    pub matched: Option<String>,
    /// Against the log, when it covers the period and the row was matched to one agency, subtree or level.
    pub against_log: Option<Vec<CountCheck>>,
}

/// The whole answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub rows: Vec<RowCheck>,
    /// The profile the counts were compared with the log under (with a period).
    pub compared_under: Option<String>,
    /// Each rate's definition most rows were printed by, used to give the correct value of a slip.
    pub table_definitions: BTreeMap<Rate, String>,
    /// The profile most consistent with the printed percentages, if any reproduces them.
    pub profile: Option<String>,
    pub unread_columns: Vec<String>,
    /// How the file was read, when not plainly (a Windows code page, semicolons).
    pub notes: Vec<String>,
    pub sums_failed: usize,
    pub slips: usize,
    pub counts_differing: usize,
}

impl CheckReport {
    /// Whether everything checked holds.
    pub fn clean(&self) -> bool {
        self.sums_failed == 0 && self.slips == 0 && self.counts_differing == 0
    }
}

/// The decimals a printed percentage has.
fn decimals_of(printed: &str) -> u8 {
    printed
        .split_once('.')
        .map_or(0, |(_, d)| d.len().min(4) as u8)
}

/// A reading of a printed percentage: its definition and rounding, and the answer's words for them.
#[derive(Clone)]
struct Found {
    def: Definition,
    mode: RoundMode,
    reading: Reading,
}

fn readings(row: &PublishedRow, rate: Rate, printed: &str, profiles: &[Profile]) -> Vec<Found> {
    let decimals = decimals_of(printed);
    let mut out: Vec<Found> = Vec::new();
    for def in Definition::all(rate) {
        let Some((num, den)) = def.fraction(row) else {
            continue;
        };
        let mut mine: Vec<Found> = Vec::new();
        for mode in [RoundMode::HalfUp, RoundMode::Truncate, RoundMode::HalfEven] {
            let r = Rounding { mode, decimals };
            if r.percent(num, den).as_deref() != Some(printed) {
                continue;
            }
            let names: Vec<String> = profiles
                .iter()
                .filter(|p| Definition::of(p, rate) == def && p.defs.rounding == r)
                .map(|p| p.id.clone())
                .collect();
            // Half up and a half to even print alike but on exact ties: one reading, both rules' profiles.
            match mine
                .iter_mut()
                .find(|x| mode == RoundMode::HalfEven && x.mode == RoundMode::HalfUp)
            {
                Some(x) => x.reading.profiles.extend(names),
                None => mine.push(Found {
                    def,
                    mode,
                    reading: Reading {
                        definition: def.words().to_owned(),
                        numerator: num,
                        denominator: den,
                        rounding: mode_words(mode).to_owned(),
                        profiles: names,
                    },
                }),
            }
        }
        out.extend(mine);
    }
    out
}

fn sums(row: &PublishedRow) -> Vec<SumCheck> {
    use Quantity::*;
    let g = |q| row.get(q);
    let rules: [(&str, Option<i64>, Option<i64>); 4] = [
        (
            "(3) = (4) + (5) + (6)",
            g(ReceivedTotal),
            (|| Some(g(Online)? + g(DirectAndPostal)? + g(CarriedOver)?))(),
        ),
        (
            "(7) = (8) + (9) + (10)",
            g(Resolved),
            (|| Some(g(Early)? + g(OnTime)? + g(Late)?))(),
        ),
        (
            "(11) = (12) + (13)",
            g(InProgress),
            (|| Some(g(InTime)? + g(Overdue)?))(),
        ),
        (
            "",
            g(ReceivedTotal),
            (|| Some(g(Resolved)? + g(InProgress)? + row.apart()))(),
        ),
    ];
    // (3) = (7) + (11), with the kept-apart columns the row gives.
    let apart: Vec<String> = [(14, Withdrawn), (15, Unresolved), (16, Waiting)]
        .iter()
        .filter(|(_, q)| g(*q).is_some())
        .map(|(n, _)| format!(" + ({n})"))
        .collect();
    let last = format!("(3) = (7) + (11){}", apart.concat());
    rules
        .into_iter()
        .map(|(rule, l, r)| (if rule.is_empty() { last.as_str() } else { rule }, l, r))
        .filter_map(|(rule, left, right)| {
            let (left, right) = (left?, right?);
            Some(SumCheck {
                rule: rule.to_owned(),
                left,
                right,
                holds: left == right,
            })
        })
        .collect()
}

/// The form's counts of a casetrail row, as the quantities a published row may give.
pub fn quantities_of(form: &Form, counts: &super::table::Counts) -> BTreeMap<Quantity, i64> {
    use Quantity::*;
    BTreeMap::from([
        (Received, form.online + form.direct_and_postal),
        (ReceivedTotal, form.received_total),
        (Online, form.online),
        (DirectAndPostal, form.direct_and_postal),
        (CarriedOver, form.carried_over),
        (Resolved, form.resolved),
        (Early, form.early),
        (OnTime, form.on_time),
        (Late, form.late),
        (InProgress, form.in_progress),
        (InTime, form.in_time),
        (Overdue, form.overdue),
        (Postal, counts.postal_dossiers),
        (DueTotal, counts.due_met + counts.due_missed),
        (DueMet, counts.due_met),
    ])
}

/// Checks a published table. `profiles` are those offered (their definitions name the readings); `ours` gives
/// casetrail's quantities for a published row when the log covers its period and the row could be matched.
pub fn check(
    published: &Published,
    profiles: &[Profile],
    mut ours: impl FnMut(&PublishedRow) -> Option<(String, Option<BTreeMap<Quantity, i64>>)>,
) -> CheckReport {
    let rates = [Rate::OnlineRate, Rate::PostalRate, Rate::OnTimeRate];
    // Each row's readings, then the definition most rows agree on, per rate.
    let all: Vec<BTreeMap<Rate, Vec<Found>>> = published
        .rows
        .iter()
        .map(|row| {
            row.printed
                .iter()
                .map(|(rate, printed)| (*rate, readings(row, *rate, printed, profiles)))
                .collect()
        })
        .collect();
    // The profile the table names (casetrail's own CSVs do), when it is one offered.
    let named = published
        .profile
        .as_ref()
        .and_then(|id| profiles.iter().find(|p| &p.id == id));
    let mut notes = published.notes.clone();
    if let (Some(id), None) = (&published.profile, named) {
        notes.push(format!(
            "the table names the profile {id:?}, which is not offered here: it is not used"
        ));
    }
    let national = profiles.first();
    // Ties go to the named profile's reading, then the national one's, then rounding half up (the common way),
    // then a half to even, then truncation: never to whichever sorts last.
    let preference = |def: Definition, mode: RoundMode| -> usize {
        let is = |p: Option<&Profile>| {
            p.is_some_and(|p| Definition::of(p, def.rate) == def && p.defs.rounding.mode == mode)
        };
        let order = [RoundMode::HalfUp, RoundMode::HalfEven, RoundMode::Truncate];
        match (is(named), is(national)) {
            (true, _) => 0,
            (_, true) => 1,
            _ => 2 + order.iter().position(|m| *m == mode).unwrap_or(3),
        }
    };
    // Per rate, the table's own reading: the (definition, rounding) most rows agree on; a tie by the preference,
    // then by the words (so that the pick never depends on the order rows came in).
    let mut table: BTreeMap<Rate, (Definition, RoundMode)> = BTreeMap::new();
    for rate in rates {
        let mut votes: Vec<((Definition, RoundMode), usize)> = Vec::new();
        for f in all.iter().filter_map(|m| m.get(&rate)).flatten() {
            match votes.iter_mut().find(|(k, _)| *k == (f.def, f.mode)) {
                Some((_, n)) => *n += 1,
                None => votes.push(((f.def, f.mode), 1)),
            }
        }
        let best = votes.into_iter().min_by_key(|((def, mode), n)| {
            let words = (def.words(), mode_words(*mode));
            (std::cmp::Reverse(*n), preference(*def, *mode), words)
        });
        if let Some((choice, _)) = best {
            table.insert(rate, choice);
        }
    }
    let table_definitions: BTreeMap<Rate, String> = table
        .iter()
        .map(|(rate, (def, _))| (*rate, def.words().to_owned()))
        .collect();
    // The profile reproducing the most printed percentages: the one the table names if it does, else the only one
    // with the most (a tie names none, so that counts are never compared under a profile picked by chance).
    let mut profile_votes: BTreeMap<String, usize> = BTreeMap::new();
    for found in all.iter().flat_map(|m| m.values()).flatten() {
        for p in &found.reading.profiles {
            *profile_votes.entry(p.clone()).or_default() += 1;
        }
    }
    let most = profile_votes.values().copied().max().unwrap_or(0);
    let leaders: Vec<&String> = profile_votes
        .iter()
        .filter(|(_, n)| **n == most)
        .map(|(p, _)| p)
        .collect();
    let profile = match (named, leaders.as_slice()) {
        (Some(p), _) => Some(p.id.clone()),
        (None, [one]) => Some((*one).clone()),
        _ => None,
    };
    let mut report = CheckReport {
        rows: Vec::new(),
        compared_under: None,
        table_definitions,
        profile,
        unread_columns: published.unread.clone(),
        notes,
        sums_failed: 0,
        slips: 0,
        counts_differing: 0,
    };
    for (row, found) in published.rows.iter().zip(all) {
        let sums = sums(row);
        report.sums_failed += sums.iter().filter(|s| !s.holds).count();
        let mut verdicts = BTreeMap::new();
        for (rate, printed) in &row.printed {
            let readings: Vec<Reading> = found
                .get(rate)
                .map(|f| f.iter().map(|f| f.reading.clone()).collect())
                .unwrap_or_default();
            let verdict = if !readings.is_empty() {
                RateVerdict::Reproduced {
                    printed: printed.clone(),
                    readings,
                }
            } else {
                // The table's own reading, else the national profile's.
                let (def, mode) = match (table.get(rate), national) {
                    (Some((def, mode)), _) => (Some(*def), *mode),
                    (None, Some(p)) => (Some(Definition::of(p, *rate)), p.defs.rounding.mode),
                    (None, None) => (None, RoundMode::HalfUp),
                };
                let rounding = Rounding {
                    mode,
                    decimals: decimals_of(printed),
                };
                match def.and_then(|d| Some((d, d.fraction(row)?))) {
                    Some((d, (num, den))) if den != 0 => {
                        report.slips += 1;
                        RateVerdict::Slip {
                            printed: printed.clone(),
                            correct: rounding.percent(num, den).unwrap_or_default(),
                            under: Reading {
                                definition: d.words().to_owned(),
                                numerator: num,
                                denominator: den,
                                rounding: mode_words(mode).to_owned(),
                                profiles: profiles
                                    .iter()
                                    .filter(|p| {
                                        Definition::of(p, *rate) == d && p.defs.rounding == rounding
                                    })
                                    .map(|p| p.id.clone())
                                    .collect(),
                            },
                        }
                    }
                    _ => RateVerdict::Unchecked {
                        printed: printed.clone(),
                        missing: "the row lacks the counts of every definition of this rate".into(),
                    },
                }
            };
            verdicts.insert(*rate, verdict);
        }
        let (matched, theirs) = ours(row).map_or((None, None), |(label, q)| (Some(label), q));
        let against_log = theirs.map(|theirs| {
            row.counts
                .iter()
                .filter_map(|(q, n)| {
                    let c = *theirs.get(q)?;
                    Some(CountCheck {
                        quantity: *q,
                        published: *n,
                        casetrail: c,
                        equal: c == *n,
                    })
                })
                .collect::<Vec<_>>()
        });
        if let Some(checks) = &against_log {
            report.counts_differing += checks.iter().filter(|c| !c.equal).count();
        }
        report.rows.push(RowCheck {
            line: row.line,
            name: row.name.clone(),
            matched,
            sums,
            rates: verdicts,
            against_log,
        });
    }
    // Totals and subtotals, period by period (a series holds several): a level line against the agency lines under
    // it, when the table marks its lines; a total against its agency lines when marked, else its level lines, else
    // every other row.
    let mut periods: Vec<Option<&str>> = Vec::new();
    for r in &published.rows {
        if !periods.contains(&r.period.as_deref()) {
            periods.push(r.period.as_deref());
        }
    }
    let mut add = |line: usize, rule: String, left: i64, right: i64| {
        let holds = left == right;
        report.sums_failed += usize::from(!holds);
        if let Some(r) = report.rows.iter_mut().find(|r| r.line == line) {
            r.sums.push(SumCheck {
                rule,
                left,
                right,
                holds,
            });
        }
    };
    let sum_of = |parts: &[&PublishedRow], q: Quantity| -> Option<i64> {
        parts.iter().map(|r| r.get(q)).sum()
    };
    for period in periods {
        let rows: Vec<&PublishedRow> = published
            .rows
            .iter()
            .filter(|r| r.period.as_deref() == period)
            .collect();
        let is = |r: &PublishedRow, kind: &str| r.kind.as_deref() == Some(kind);
        for (i, level) in rows.iter().enumerate().filter(|(_, r)| is(r, "level")) {
            let under: Vec<&PublishedRow> = rows[i + 1..]
                .iter()
                .take_while(|r| is(r, "agency") || is(r, "field"))
                .copied()
                .collect();
            if under.is_empty() {
                continue;
            }
            let lines = if under.iter().all(|r| is(r, "field")) {
                "fields"
            } else {
                "agencies"
            };
            for (q, n) in &level.counts {
                if let Some(sum) = sum_of(&under, *q) {
                    add(
                        level.line,
                        format!("subtotal {} = the sum of its {lines}", q.key()),
                        *n,
                        sum,
                    );
                }
            }
        }
        let Some(total) = rows.iter().find(|r| r.is_total()) else {
            continue;
        };
        let kind = ["agency", "level"]
            .into_iter()
            .find(|k| rows.iter().any(|r| is(r, k)));
        let parts: Vec<&PublishedRow> = rows
            .iter()
            .filter(|r| !r.is_total() && kind.is_none_or(|k| is(r, k)))
            .copied()
            .collect();
        if parts.is_empty() {
            continue;
        }
        for (q, n) in &total.counts {
            if let Some(sum) = sum_of(&parts, *q) {
                add(
                    total.line,
                    format!("total {} = the sum of the rows", q.key()),
                    *n,
                    sum,
                );
            }
        }
    }
    report
}

fn rate_name(rate: Rate) -> &'static str {
    match rate {
        Rate::OnlineRate => "online rate",
        Rate::PostalRate => "postal rate",
        Rate::OnTimeRate => "on-time rate",
    }
}

fn reading_words(r: &Reading) -> String {
    let profiles = match r.profiles.as_slice() {
        [] => "no built-in profile".to_owned(),
        p => format!("profile {}", p.join(", ")),
    };
    format!(
        "{} / {} {}, {} ({profiles})",
        r.numerator, r.denominator, r.definition, r.rounding
    )
}

/// The answer as text, row by row, for a terminal.
pub fn text(report: &CheckReport) -> String {
    let mut out = String::new();
    for row in &report.rows {
        out.push_str(&format!("line {} · {}\n", row.line, row.name));
        for s in &row.sums {
            let mark = if s.holds {
                "adds up"
            } else {
                "DOES NOT ADD UP"
            };
            out.push_str(&format!(
                "  {}: {} and {}: {mark}\n",
                s.rule, s.left, s.right
            ));
        }
        for (rate, verdict) in &row.rates {
            let name = rate_name(*rate);
            match verdict {
                RateVerdict::Reproduced { printed, readings } => {
                    let ways: Vec<String> = readings.iter().map(reading_words).collect();
                    out.push_str(&format!(
                        "  {name} {printed} %: reproduced as {}\n",
                        ways.join("; or ")
                    ));
                }
                RateVerdict::Slip {
                    printed,
                    correct,
                    under,
                } => out.push_str(&format!(
                    "  {name} {printed} %: A SLIP, the counts give {correct} % ({})\n",
                    reading_words(under)
                )),
                RateVerdict::Unchecked { printed, missing } => {
                    out.push_str(&format!("  {name} {printed} %: not checked: {missing}\n"))
                }
            }
        }
        if let Some(m) = &row.matched {
            out.push_str(&format!("  matched to {m}\n"));
        }
        match &row.against_log {
            Some(checks) => {
                let differing: Vec<String> = checks
                    .iter()
                    .filter(|c| !c.equal)
                    .map(|c| {
                        format!(
                            "{} {} where casetrail has {}",
                            c.quantity.key(),
                            c.published,
                            c.casetrail
                        )
                    })
                    .collect();
                if differing.is_empty() {
                    out.push_str(&format!(
                        "  against the log: the {} counts equal casetrail's\n",
                        checks.len()
                    ));
                } else {
                    out.push_str(&format!(
                        "  against the log: DIFFERENT: {}\n",
                        differing.join(", ")
                    ));
                }
            }
            None => {}
        }
    }
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    for column in &report.unread_columns {
        out.push_str(&format!("column not read: {column}\n"));
    }
    if let Some(p) = &report.compared_under {
        out.push_str(&format!(
            "counts compared with the log under the profile {p}\n"
        ));
    }
    out.push_str(&format!(
        "{} rows: {} sums not adding up, {} slips, {} counts differing from the log; most consistent profile: {}\n",
        report.rows.len(),
        report.sums_failed,
        report.slips,
        report.counts_differing,
        report.profile.as_deref().unwrap_or("none")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::Profiles;

    fn checked(csv: &str) -> CheckReport {
        check(
            &Published::parse(csv.as_bytes()).unwrap(),
            Profiles::built_in().all(),
            |_| None,
        )
    }

    #[test]
    fn spreadsheets_as_saved_in_vietnam_are_read() {
        // Semicolons and a decimal comma, as a spreadsheet with a Vietnamese locale saves CSV; "N/A" is no figure.
        let r = checked(
            "Đơn vị;Tổng số;Trực tuyến;Tỷ lệ trực tuyến (%)\nSở;100;23;23,00\nHuyện;N/A;5;\n",
        );
        assert_eq!(r.rows.len(), 2);
        assert!(r.notes.iter().any(|n| n.contains(';')), "{:?}", r.notes);
        assert!(matches!(
            r.rows[0].rates[&Rate::OnlineRate],
            RateVerdict::Reproduced { .. }
        ));
        // Windows-1258 (the tone marks as combining characters): read, and said so.
        // "Đơn vị,Trực tuyến\nSở,5\n" in Windows-1258: base letters with their hooks and horns, tones combining.
        let bytes = b"\xd0\xf5\x6e\x20\x76\x69\xf2\x2c\x54\x72\xfd\xf2\x63\x20\x74\x75\x79\xea\xec\x6e\x0a\x53\xf5\xd2\x2c\x35\x0a";
        let p = Published::parse(bytes).unwrap();
        assert_eq!(p.rows[0].counts[&Quantity::Online], 5);
        assert!(p.notes[0].contains("Windows-1258"));
    }

    /// Issue 25, points 6 (a) and 8: a row that does not line up with its header is refused (more cells) or named
    /// (fewer), never cut; a UTF-16 file says it was read as UTF-16.
    #[test]
    fn a_ragged_row_is_refused_or_named_and_the_encoding_read_is_said() {
        // The Kon Tum slip, saved unquoted: 37,76 is two cells in a comma-separated file.
        let slip = "Đơn vị,Tổng số,Trực tuyến,Tỷ lệ trực tuyến (%)\nSở A,100,23,23.00\nCấp huyện,6776,2521,37,76\n";
        let e = Published::parse(slip.as_bytes()).unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("5 cells") && e.contains("quoted"),
            "{e}"
        );
        let short = Published::parse("Đơn vị,Tổng số,Trực tuyến\nSở A,100\n".as_bytes()).unwrap();
        assert!(
            short
                .notes
                .iter()
                .any(|n| n.contains("line 2") && n.contains("2 cells")),
            "{:?}",
            short.notes
        );
        for (bom, le) in [(&b"\xff\xfe"[..], true), (&b"\xfe\xff"[..], false)] {
            let text = "Đơn vị,Trực tuyến\nSở,5\n";
            let mut bytes = bom.to_vec();
            for u in text.encode_utf16() {
                bytes.extend(if le { u.to_le_bytes() } else { u.to_be_bytes() });
            }
            let p = Published::parse(&bytes).unwrap();
            assert_eq!(p.rows[0].counts[&Quantity::Online], 5);
            let expected = if le { "UTF-16LE" } else { "UTF-16BE" };
            assert!(
                p.notes[0].contains(expected) && !p.notes[0].contains("1258"),
                "{:?}",
                p.notes
            );
        }
    }

    #[test]
    fn what_cannot_be_read_is_refused_or_named() {
        assert!(Published::parse("Đơn vị,Trực tuyến\n".as_bytes())
            .unwrap_err()
            .contains("no rows"));
        assert!(Published::parse("Đơn vị,Trực tuyến\nSở,12.5\n".as_bytes())
            .unwrap_err()
            .contains("whole count"));
        for (text, n) in [
            ("56.039", 56_039),
            ("56,039", 56_039),
            ("1 234", 1_234),
            ("7", 7),
        ] {
            assert_eq!(count(text), Ok(Some(n)), "{text}");
        }
        // The form's unnumbered headers repeat: the second "Tổng số" is not read over the first, and says why.
        let p =
            Published::parse("Đơn vị,Tổng số,Trực tuyến,Tổng số\nSở,10,3,99\n".as_bytes()).unwrap();
        assert_eq!(p.rows[0].counts[&Quantity::ReceivedTotal], 10);
        assert!(
            p.unread.iter().any(|u| u.contains("second column")),
            "{:?}",
            p.unread
        );
    }

    #[test]
    fn ties_go_to_rounding_half_up_not_to_the_alphabet() {
        // 10.00 % is reproduced every way; 7,629 of 100,000 printed 7.00 is a slip: 7.63 rounded half up.
        let r = checked("Đơn vị,Tiếp nhận,Trực tuyến,Tỷ lệ trực tuyến (%)\nA,100,10,10.00\nB,100000,7629,7.00\n");
        match &r.rows[1].rates[&Rate::OnlineRate] {
            RateVerdict::Slip { correct, .. } => assert_eq!(correct, "7.63"),
            other => panic!("{other:?}"),
        }
        // Several profiles reproduce it equally: none is named as the table's.
        assert_eq!(r.profile, None);
    }

    #[test]
    fn subtotals_totals_and_series_are_summed_as_marked() {
        // A level line against the agency lines under it; the total against the agency lines only; per period.
        let table = "Kỳ báo cáo,Loại dòng,Đơn vị,(3)\n\
                     2023-Q1,level,Cấp huyện,10\n2023-Q1,agency,Huyện A,4\n2023-Q1,agency,Huyện B,6\n2023-Q1,total,Tổng cộng,10\n\
                     2023-Q2,level,Cấp huyện,7\n2023-Q2,agency,Huyện A,3\n2023-Q2,agency,Huyện B,3\n2023-Q2,total,Tổng cộng,7\n";
        let r = checked(table);
        let failed: Vec<(usize, &str)> = r
            .rows
            .iter()
            .flat_map(|row| {
                row.sums
                    .iter()
                    .filter(|s| !s.holds)
                    .map(move |s| (row.line, s.rule.as_str()))
            })
            .collect();
        // Q2's subtotal (7) is not its agencies' 6, and its total (7) not their 6 either; Q1 adds up.
        assert_eq!(
            failed,
            vec![
                (6, "subtotal received_total = the sum of its agencies"),
                (9, "total received_total = the sum of the rows")
            ]
        );
    }

    #[test]
    fn the_falling_due_rate_needs_only_its_own_counts() {
        let r = checked(
            "name,due_total,due_met,on_time_rate\nVĩnh Phúc,14101,14064,99.74\nB,100,90,91.00\n",
        );
        assert!(
            matches!(
                r.rows[0].rates[&Rate::OnTimeRate],
                RateVerdict::Reproduced { .. }
            ),
            "{:?}",
            r.rows[0].rates
        );
        match &r.rows[1].rates[&Rate::OnTimeRate] {
            RateVerdict::Slip { correct, .. } => assert_eq!(correct, "90.00"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_kept_apart_columns_join_the_last_identity() {
        let r = checked("(2),(3),(4),(5),(6),(7),(8),(9),(10),(11),(12),(13),(14)\nSở,10,2,7,1,6,1,4,1,3,2,1,1\n");
        let last = r.rows[0]
            .sums
            .iter()
            .find(|s| s.rule.starts_with("(3) = (7)"))
            .unwrap();
        assert_eq!(
            (last.rule.as_str(), last.holds),
            ("(3) = (7) + (11) + (14)", true)
        );
    }
}
