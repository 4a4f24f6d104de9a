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
use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::io::{BufRead, Read, Write};

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

/// Where a published table is read from. It is opened afresh for each pass over it: once to learn its encoding,
/// once for its header, then once for the table's own readings and totals (which need every row) and once more to
/// check each row and answer it, so that no pass holds more of the table than a row.
pub trait Source {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>>;
}

impl Source for &[u8] {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(*self))
    }
}

impl Source for &std::path::Path {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        let named =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", self.display()));
        let file = std::fs::File::open(self).map_err(named)?;
        Ok(Box::new(Named { file, path: self }))
    }
}

/// A file whose read errors name it (a directory given as the table fails at its first read, not its open).
struct Named<'p> {
    file: std::fs::File,
    path: &'p std::path::Path,
}

impl Read for Named<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file
            .read(buf)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

/// A file read from its start at every pass (a table `check-report` spooled from stdin).
impl Source for &std::fs::File {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        use std::io::Seek;
        let mut file: &std::fs::File = self;
        file.seek(std::io::SeekFrom::Start(0))?;
        Ok(Box::new(file))
    }
}

/// The bytes a pass read, to tell a table that changed between passes from one read twice.
#[derive(Default)]
struct Digest {
    hasher: std::hash::DefaultHasher,
    bytes: u64,
}

impl Digest {
    fn value(&self) -> (u64, u64) {
        (self.bytes, self.hasher.finish())
    }
}

/// Reads through, adding every byte to a digest.
struct Digested<'d, R> {
    inner: R,
    digest: &'d mut Digest,
}

impl<R: Read> Read for Digested<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.hasher.write(&buf[..n]);
        self.digest.bytes += n as u64;
        Ok(n)
    }
}

/// How a table's bytes are decoded: a byte-order mark skipped, and the encoding when the file is not UTF-8.
#[derive(Clone, Copy, Debug)]
struct Decoding {
    skip: u64,
    encoding: Option<&'static encoding_rs::Encoding>,
}

/// The first pass: whether the whole file is UTF-8 (checked as it streams by, a character cut between two reads
/// carried to the next), and its digest.
fn sniff(source: &impl Source) -> Result<(Decoding, (u64, u64)), String> {
    let mut digest = Digest::default();
    let mut raw = Digested {
        inner: source.open().map_err(|e| e.to_string())?,
        digest: &mut digest,
    };
    let mut buf = vec![0u8; 1 << 16];
    let (mut head, mut pending, mut utf8) = (Vec::new(), 0, true);
    loop {
        let n = match raw.read(&mut buf[pending..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        let read = &buf[pending..pending + n];
        head.extend(read.iter().take(3usize.saturating_sub(head.len())));
        if !utf8 {
            continue;
        }
        let end = pending + n;
        pending = match std::str::from_utf8(&buf[..end]) {
            Ok(_) => 0,
            Err(e) if e.error_len().is_none() => {
                let valid = e.valid_up_to();
                buf.copy_within(valid..end, 0);
                end - valid
            }
            Err(_) => {
                utf8 = false;
                0
            }
        };
    }
    utf8 &= pending == 0;
    let bom8 = head.starts_with(b"\xef\xbb\xbf");
    let decoding = match (utf8, head.get(..2)) {
        (true, _) => Decoding {
            skip: if bom8 { 3 } else { 0 },
            encoding: None,
        },
        (false, Some(b"\xff\xfe")) => Decoding {
            skip: 2,
            encoding: Some(encoding_rs::UTF_16LE),
        },
        (false, Some(b"\xfe\xff")) => Decoding {
            skip: 2,
            encoding: Some(encoding_rs::UTF_16BE),
        },
        (false, _) => Decoding {
            skip: if bom8 { 3 } else { 0 },
            encoding: Some(encoding_rs::WINDOWS_1258),
        },
    };
    drop(raw);
    Ok((decoding, digest.value()))
}

/// How many lines with fewer cells than the header are named one by one; past that, a count.
const SHORT_LINES_NAMED: usize = 20;

/// A published table opened for reading: its encoding, delimiter and header, read once; its rows read afresh by
/// each [`Table::scan`], one at a time.
pub struct Table<S> {
    source: S,
    decoding: Decoding,
    delimiter: u8,
    headers: Vec<String>,
    kinds: Vec<Option<ColumnKind>>,
    /// Headers not read, each with why (not recognised, or a second column of a name already read).
    pub unread: Vec<String>,
    /// How the file was read, when not as UTF-8 with commas (a Windows code page, semicolons…).
    pub notes: Vec<String>,
    digest: (u64, u64),
}

/// What a pass over a table's rows found besides the rows.
pub struct Scanned {
    pub rows: usize,
    /// The profile the table names (a `Cách tính` / `Profile` column): its first such cell.
    pub profile: Option<String>,
    /// Lines with fewer cells than the header.
    pub notes: Vec<String>,
}

impl<S: Source> Table<S> {
    /// Opens a published table in CSV: UTF-8 (a byte-order mark is skipped), else UTF-16 after its byte-order mark,
    /// else Windows-1258, the Vietnamese code page spreadsheets on Windows save in; fields separated by commas, or
    /// by semicolons or tabs when the header row has more of those (a spreadsheet with a decimal comma saves so).
    /// A table with no column this check knows is refused here; its rows are read by `scan`.
    pub fn open(source: S) -> Result<Table<S>, String> {
        let (decoding, digest) = sniff(&source)?;
        let mut table = Table {
            source,
            decoding,
            delimiter: b',',
            headers: Vec::new(),
            kinds: Vec::new(),
            unread: Vec::new(),
            notes: Vec::new(),
            digest,
        };
        if let Some(encoding) = decoding.encoding {
            let name = match encoding.name() {
                "windows-1258" => "Windows-1258",
                other => other,
            };
            table
                .notes
                .push(format!("read as {name} (the file is not UTF-8)"));
        }
        // The delimiter the first line has most of (a first line past a mebibyte is judged by its start).
        let mut first = Vec::new();
        let mut ignored = Digest::default();
        std::io::BufReader::new(table.decoded(&mut ignored)?)
            .take(1 << 20)
            .read_until(b'\n', &mut first)
            .map_err(|e| e.to_string())?;
        let first = String::from_utf8_lossy(&first);
        table.delimiter = [b';', b'\t']
            .into_iter()
            .filter(|d| first.matches(*d as char).count() > first.matches(',').count())
            .max_by_key(|d| first.matches(*d as char).count())
            .unwrap_or(b',');
        if table.delimiter != b',' {
            table
                .notes
                .push(format!("fields separated by {:?}", table.delimiter as char));
        }
        let headers: Vec<String> = table
            .reader(table.decoded(&mut ignored)?)
            .headers()
            .map_err(|e| format!("the header row: {e}"))?
            .iter()
            .map(|h| domain::names::nfc(h).into_owned())
            .collect();
        table.headers = headers;
        let headers = &table.headers;
        let mut kinds: Vec<Option<ColumnKind>> = headers.iter().map(|h| column_kind(h)).collect();
        for (i, h) in headers.iter().enumerate() {
            let earlier = kinds[..i].iter().any(|k| k == &kinds[i]);
            match kinds[i] {
                None => table
                    .unread
                    .push(format!("{h} (not a column this check knows)")),
                Some(ColumnKind::Count(_) | ColumnKind::Printed(_) | ColumnKind::Name)
                    if earlier =>
                {
                    table.unread.push(format!(
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
                headers.join(", ")
            ));
        }
        table.kinds = kinds;
        Ok(table)
    }

    /// The source's text from its start, as UTF-8, its bytes added to `digest`.
    fn decoded<'a>(&'a self, digest: &'a mut Digest) -> Result<Box<dyn Read + 'a>, String> {
        let mut raw = Digested {
            inner: self.source.open().map_err(|e| e.to_string())?,
            digest,
        };
        std::io::copy(
            &mut (&mut raw).take(self.decoding.skip),
            &mut std::io::sink(),
        )
        .map_err(|e| e.to_string())?;
        Ok(match self.decoding.encoding {
            None => Box::new(raw),
            Some(encoding) => Box::new(
                encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding))
                    .bom_sniffing(false)
                    .build(raw),
            ),
        })
    }

    fn reader<'a>(&self, text: Box<dyn Read + 'a>) -> csv::Reader<Box<dyn Read + 'a>> {
        csv::ReaderBuilder::new()
            .flexible(true)
            .delimiter(self.delimiter)
            .from_reader(text)
    }

    /// Reads the rows, handing each to `each` as it is read. A cell that is not a number where a number belongs is
    /// an error naming its line and column; so is a row with more cells than the header (most often an unquoted
    /// decimal comma, which would shift every cell after it), a table with no row, and a table whose bytes are not
    /// those it had when opened.
    pub fn scan(&self, mut each: impl FnMut(PublishedRow)) -> Result<Scanned, String> {
        let mut scanned = Scanned {
            rows: 0,
            profile: None,
            notes: Vec::new(),
        };
        let mut digest = Digest::default();
        let mut short = 0;
        {
            let mut reader = self.reader(self.decoded(&mut digest)?);
            let mut record = csv::StringRecord::new();
            for line in 2.. {
                match reader.read_record(&mut record) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return Err(format!("line {line}: {e}")),
                }
                if record.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                let n = self.headers.len();
                if record.len() > n {
                    return Err(format!(
                        "line {line}: {} cells, but the header has {n}; a number with a decimal comma (37,76) must be quoted, or the file saved with semicolons",
                        record.len(),
                    ));
                }
                if record.len() < n {
                    if short < SHORT_LINES_NAMED {
                        scanned.notes.push(format!(
                            "line {line}: {} cells of the header's {n}; the missing ones at its end read as empty",
                            record.len(),
                        ));
                    }
                    short += 1;
                }
                each(self.row(line, &record, &mut scanned.profile)?);
                scanned.rows += 1;
            }
        }
        if short > SHORT_LINES_NAMED {
            scanned.notes.push(format!(
                "{} more lines have fewer cells than the header; the missing ones at their end read as empty",
                short - SHORT_LINES_NAMED
            ));
        }
        if digest.value() != self.digest {
            return Err(
                "the table changed while it was being read: check it again once it is written"
                    .into(),
            );
        }
        if scanned.rows == 0 {
            return Err("the table has a header row but no rows".into());
        }
        Ok(scanned)
    }

    fn row(
        &self,
        line: usize,
        record: &csv::StringRecord,
        profile: &mut Option<String>,
    ) -> Result<PublishedRow, String> {
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
            let at = |e: String| format!("line {line}, column {:?}: {e}", &self.headers[j]);
            let text =
                || Some(domain::names::nfc(field.trim()).into_owned()).filter(|s| !s.is_empty());
            match self.kinds.get(j).copied().flatten() {
                Some(ColumnKind::Name) => row.name = text().unwrap_or_default(),
                Some(ColumnKind::Agency) => row.agency = text(),
                Some(ColumnKind::Level) => row.level = text(),
                Some(ColumnKind::LineKind) => row.kind = text().map(|k| k.to_lowercase()),
                Some(ColumnKind::Profile) => {
                    if profile.is_none() {
                        *profile = text();
                    }
                }
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
        Ok(row)
    }
}

impl Published {
    /// Reads a whole published table into memory, as [`Table`] reads it (for a table already in memory; a file
    /// is checked row by row from a `Table`).
    pub fn parse(bytes: &[u8]) -> Result<Published, String> {
        let table = Table::open(bytes)?;
        let mut rows = Vec::new();
        let scanned = table.scan(|row| rows.push(row))?;
        let mut notes = table.notes;
        notes.extend(scanned.notes);
        Ok(Published {
            rows,
            unread: table.unread,
            profile: scanned.profile,
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
    #[serde(flatten)]
    pub summary: Summary,
}

/// The answer besides its rows, known once every row is checked (and written after them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
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

impl Summary {
    /// Whether everything checked holds.
    pub fn clean(&self) -> bool {
        self.sums_failed == 0 && self.slips == 0 && self.counts_differing == 0
    }
}

impl CheckReport {
    /// Whether everything checked holds.
    pub fn clean(&self) -> bool {
        self.summary.clean()
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

/// Running sums of rows' counts: a quantity's sum is known while every row added gives it.
#[derive(Default)]
struct Sums {
    rows: usize,
    /// Per quantity, its sum and how many rows gave it.
    sums: BTreeMap<Quantity, (i64, usize)>,
}

impl Sums {
    fn add(&mut self, row: &PublishedRow) {
        self.rows += 1;
        for (q, n) in &row.counts {
            let (sum, rows) = self.sums.entry(*q).or_default();
            *sum += n;
            *rows += 1;
        }
    }

    fn of(&self, q: Quantity) -> Option<i64> {
        self.sums
            .get(&q)
            .filter(|(_, rows)| *rows == self.rows)
            .map(|(sum, _)| *sum)
    }
}

/// A level line, summing the agency (or procedure field) lines that follow it.
struct OpenLevel {
    line: usize,
    counts: BTreeMap<Quantity, i64>,
    under: Sums,
    fields_only: bool,
}

/// One period's running totals (a series holds several periods).
#[derive(Default)]
struct PeriodSums {
    open: Option<OpenLevel>,
    /// The period's first total line.
    total: Option<(usize, BTreeMap<Quantity, i64>)>,
    agencies: Sums,
    levels: Sums,
    /// Every line but a total.
    others: Sums,
}

/// Totals and subtotals, period by period: a level line against the agency lines under it, when the table marks
/// its lines; a total against its agency lines when marked, else its level lines, else every other row. They need
/// the rows after their own line, so they are summed as the first pass reads, each check kept for its line.
#[derive(Default)]
struct Totals {
    periods: HashMap<Option<String>, PeriodSums>,
    checks: HashMap<usize, Vec<Pending>>,
}

/// A total's or subtotal's check, kept for its line until the second pass (its words made then, so that a table of
/// many level lines keeps a few words per check, not a sentence).
struct Pending {
    quantity: Quantity,
    /// "agencies" or "fields" for a subtotal; none for a total.
    under: Option<&'static str>,
    left: i64,
    right: i64,
}

impl Pending {
    fn check(self) -> SumCheck {
        let q = self.quantity.key();
        SumCheck {
            rule: match self.under {
                Some(lines) => format!("subtotal {q} = the sum of its {lines}"),
                None => format!("total {q} = the sum of the rows"),
            },
            left: self.left,
            right: self.right,
            holds: self.left == self.right,
        }
    }
}

impl Totals {
    fn add(&mut self, row: &PublishedRow) {
        let period = self.periods.entry(row.period.clone()).or_default();
        let kind = row.kind.as_deref();
        match kind {
            Some("agency" | "field") => {
                if let Some(open) = &mut period.open {
                    open.under.add(row);
                    open.fields_only &= kind == Some("field");
                }
            }
            _ => {
                if let Some(level) = period.open.take() {
                    Self::close(level, &mut self.checks);
                }
                if kind == Some("level") {
                    period.open = Some(OpenLevel {
                        line: row.line,
                        counts: row.counts.clone(),
                        under: Sums::default(),
                        fields_only: true,
                    });
                }
            }
        }
        if row.is_total() {
            period
                .total
                .get_or_insert_with(|| (row.line, row.counts.clone()));
        } else {
            period.others.add(row);
            match kind {
                Some("agency") => period.agencies.add(row),
                Some("level") => period.levels.add(row),
                _ => {}
            }
        }
    }

    fn close(level: OpenLevel, checks: &mut HashMap<usize, Vec<Pending>>) {
        if level.under.rows == 0 {
            return;
        }
        let lines = if level.fields_only {
            "fields"
        } else {
            "agencies"
        };
        for (q, n) in &level.counts {
            if let Some(sum) = level.under.of(*q) {
                checks.entry(level.line).or_default().push(Pending {
                    quantity: *q,
                    under: Some(lines),
                    left: *n,
                    right: sum,
                });
            }
        }
    }

    /// Each line's checks, every row read.
    fn finish(mut self) -> HashMap<usize, Vec<Pending>> {
        for (_, period) in self.periods.drain() {
            if let Some(level) = period.open {
                Self::close(level, &mut self.checks);
            }
            let Some((line, counts)) = period.total else {
                continue;
            };
            let parts = [&period.agencies, &period.levels]
                .into_iter()
                .find(|s| s.rows > 0)
                .unwrap_or(&period.others);
            if parts.rows == 0 {
                continue;
            }
            for (q, n) in &counts {
                if let Some(sum) = parts.of(*q) {
                    self.checks.entry(line).or_default().push(Pending {
                        quantity: *q,
                        under: None,
                        left: *n,
                        right: sum,
                    });
                }
            }
        }
        self.checks
    }
}

/// What a first pass over the whole table finds, which checking any one row needs: each rate's reading most rows
/// agree on (to give a slip's correct value), the profile most consistent with the printed percentages, and the
/// totals and subtotals (a total line may come before the lines it sums).
pub struct Overview {
    reading: BTreeMap<Rate, (Definition, RoundMode)>,
    later: HashMap<usize, Vec<Pending>>,
    summary: Summary,
}

impl Overview {
    /// The first pass. `each` sees every row too (the log's tables a check needs are learnt so).
    pub fn of<S: Source>(
        table: &Table<S>,
        profiles: &[Profile],
        mut each: impl FnMut(&PublishedRow),
    ) -> Result<Overview, String> {
        let mut votes: BTreeMap<Rate, Vec<((Definition, RoundMode), usize)>> = BTreeMap::new();
        let mut profile_votes: BTreeMap<String, usize> = BTreeMap::new();
        let mut totals = Totals::default();
        let scanned = table.scan(|row| {
            for (rate, printed) in &row.printed {
                let votes = votes.entry(*rate).or_default();
                for found in readings(&row, *rate, printed, profiles) {
                    let key = (found.def, found.mode);
                    match votes.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, n)) => *n += 1,
                        None => votes.push((key, 1)),
                    }
                    for p in found.reading.profiles {
                        *profile_votes.entry(p).or_default() += 1;
                    }
                }
            }
            totals.add(&row);
            each(&row);
        })?;
        // The profile the table names (casetrail's own CSVs do), when it is one offered.
        let named = scanned
            .profile
            .as_ref()
            .and_then(|id| profiles.iter().find(|p| &p.id == id));
        let mut notes = table.notes.clone();
        notes.extend(scanned.notes);
        if let (Some(id), None) = (&scanned.profile, named) {
            notes.push(format!(
                "the table names the profile {id:?}, which is not offered here: it is not used"
            ));
        }
        let national = profiles.first();
        // Ties go to the named profile's reading, then the national one's, then rounding half up (the common
        // way), then a half to even, then truncation: never to whichever sorts last.
        let preference = |def: Definition, mode: RoundMode| -> usize {
            let is = |p: Option<&Profile>| {
                p.is_some_and(|p| {
                    Definition::of(p, def.rate) == def && p.defs.rounding.mode == mode
                })
            };
            let order = [RoundMode::HalfUp, RoundMode::HalfEven, RoundMode::Truncate];
            match (is(named), is(national)) {
                (true, _) => 0,
                (_, true) => 1,
                _ => 2 + order.iter().position(|m| *m == mode).unwrap_or(3),
            }
        };
        // Per rate, the table's own reading: the (definition, rounding) most rows agree on; a tie by the
        // preference, then by the words (so that the pick never depends on the order rows came in).
        let reading: BTreeMap<Rate, (Definition, RoundMode)> = votes
            .into_iter()
            .filter_map(|(rate, votes)| {
                let best = votes.into_iter().min_by_key(|((def, mode), n)| {
                    let words = (def.words(), mode_words(*mode));
                    (std::cmp::Reverse(*n), preference(*def, *mode), words)
                })?;
                Some((rate, best.0))
            })
            .collect();
        let table_definitions = reading
            .iter()
            .map(|(rate, (def, _))| (*rate, def.words().to_owned()))
            .collect();
        // The profile reproducing the most printed percentages: the one the table names if it does, else the
        // only one with the most (a tie names none, so that counts are never compared under a profile picked
        // by chance).
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
        Ok(Overview {
            reading,
            later: totals.finish(),
            summary: Summary {
                table_definitions,
                profile,
                unread_columns: table.unread.clone(),
                notes,
                ..Summary::default()
            },
        })
    }

    /// The profile most consistent with the printed percentages (the one the table names, if it is offered).
    pub fn profile(&self) -> Option<&str> {
        self.summary.profile.as_deref()
    }
}

/// What `ours` answers for a published row: what it was matched to in the log (or why it could not be), and the
/// log's quantities when it was.
pub type Matched = Option<(String, Option<BTreeMap<Quantity, i64>>)>;

/// The second pass: each row checked and handed to `emit` as it is read, then what is known once all are.
/// `profiles` are those offered (their definitions name the readings); `ours` gives casetrail's quantities for a
/// published row when the log covers its period and the row could be matched.
pub fn check_rows<S: Source>(
    table: &Table<S>,
    overview: Overview,
    profiles: &[Profile],
    mut ours: impl FnMut(&PublishedRow) -> Matched,
    mut emit: impl FnMut(RowCheck),
) -> Result<Summary, String> {
    let Overview {
        reading,
        mut later,
        mut summary,
    } = overview;
    let national = profiles.first();
    table.scan(|row| {
        let mut sums = sums(&row);
        sums.extend(
            later
                .remove(&row.line)
                .into_iter()
                .flatten()
                .map(Pending::check),
        );
        summary.sums_failed += sums.iter().filter(|s| !s.holds).count();
        let mut verdicts = BTreeMap::new();
        for (rate, printed) in &row.printed {
            let readings: Vec<Reading> = readings(&row, *rate, printed, profiles)
                .into_iter()
                .map(|f| f.reading)
                .collect();
            let verdict = if !readings.is_empty() {
                RateVerdict::Reproduced {
                    printed: printed.clone(),
                    readings,
                }
            } else {
                // The table's own reading, else the national profile's.
                let (def, mode) = match (reading.get(rate), national) {
                    (Some((def, mode)), _) => (Some(*def), *mode),
                    (None, Some(p)) => (Some(Definition::of(p, *rate)), p.defs.rounding.mode),
                    (None, None) => (None, RoundMode::HalfUp),
                };
                let rounding = Rounding {
                    mode,
                    decimals: decimals_of(printed),
                };
                match def.and_then(|d| Some((d, d.fraction(&row)?))) {
                    Some((d, (num, den))) if den != 0 => {
                        summary.slips += 1;
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
        let (matched, theirs) = ours(&row).map_or((None, None), |(label, q)| (Some(label), q));
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
            summary.counts_differing += checks.iter().filter(|c| !c.equal).count();
        }
        emit(RowCheck {
            line: row.line,
            name: row.name,
            matched,
            sums,
            rates: verdicts,
            against_log,
        });
    })?;
    Ok(summary)
}

/// Checks a published table, the whole answer in memory (both passes).
pub fn check<S: Source>(
    table: &Table<S>,
    profiles: &[Profile],
    ours: impl FnMut(&PublishedRow) -> Matched,
) -> Result<CheckReport, String> {
    let overview = Overview::of(table, profiles, |_| {})?;
    let mut rows = Vec::new();
    let summary = check_rows(table, overview, profiles, ours, |row| rows.push(row))?;
    Ok(CheckReport { rows, summary })
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

/// How an answer is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Row by row, for a person at a terminal.
    Text,
    /// As `serde_json::to_string_pretty` writes the whole [`CheckReport`], with a last newline.
    Json,
}

/// Writes an answer as its rows are checked, then its summary, holding no more than a row. The first write error
/// is kept and returned by `finish`; nothing more is written after it, though rows may still be handed in (so that
/// a reader gone away, `| head`, does not change what the check finds).
pub struct ReportWriter<W: Write> {
    out: W,
    format: Format,
    rows: usize,
    error: Option<std::io::Error>,
}

impl<W: Write> ReportWriter<W> {
    pub fn new(out: W, format: Format) -> Self {
        ReportWriter {
            out,
            format,
            rows: 0,
            error: None,
        }
    }

    pub fn row(&mut self, row: &RowCheck) {
        let first = self.rows == 0;
        self.rows += 1;
        if self.error.is_some() {
            return;
        }
        let written = match self.format {
            Format::Text => self.out.write_all(row_text(row).as_bytes()),
            Format::Json => serde_json::to_string_pretty(row)
                .map_err(std::io::Error::other)
                .and_then(|json| {
                    let opening = if first { "{\n  \"rows\": [\n" } else { ",\n" };
                    let mut out = String::from(opening);
                    for (i, line) in json.lines().enumerate() {
                        out.push_str(if i == 0 { "    " } else { "\n    " });
                        out.push_str(line);
                    }
                    self.out.write_all(out.as_bytes())
                }),
        };
        self.error = written.err();
    }

    /// Writes what follows the rows, and flushes.
    pub fn finish(mut self, summary: &Summary) -> std::io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let end = match self.format {
            Format::Text => summary_text(self.rows, summary),
            Format::Json => {
                let json = serde_json::to_string_pretty(summary).map_err(std::io::Error::other)?;
                let rest = json.strip_prefix("{\n").unwrap_or(&json);
                let head = if self.rows == 0 {
                    "{\n  \"rows\": [],\n"
                } else {
                    "\n  ],\n"
                };
                format!("{head}{rest}\n")
            }
        };
        self.out.write_all(end.as_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The whole answer written as `format` (what a `ReportWriter` writes, row by row).
pub fn written(report: &CheckReport, format: Format) -> String {
    let mut writer = ReportWriter::new(Vec::new(), format);
    for row in &report.rows {
        writer.row(row);
    }
    let bytes = writer
        .finish(&report.summary)
        .expect("writing to memory does not fail");
    String::from_utf8(bytes).expect("the answer is UTF-8")
}

/// The answer as text, row by row, for a terminal.
pub fn text(report: &CheckReport) -> String {
    written(report, Format::Text)
}

fn row_text(row: &RowCheck) -> String {
    let mut out = String::new();
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
    if let Some(checks) = &row.against_log {
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
    out
}

fn summary_text(rows: usize, summary: &Summary) -> String {
    let mut out = String::new();
    for note in &summary.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    for column in &summary.unread_columns {
        out.push_str(&format!("column not read: {column}\n"));
    }
    if let Some(p) = &summary.compared_under {
        out.push_str(&format!(
            "counts compared with the log under the profile {p}\n"
        ));
    }
    out.push_str(&format!(
        "{rows} rows: {} sums not adding up, {} slips, {} counts differing from the log; most consistent profile: {}\n",
        summary.sums_failed,
        summary.slips,
        summary.counts_differing,
        summary.profile.as_deref().unwrap_or("none")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::Profiles;

    fn checked(csv: &str) -> CheckReport {
        check(
            &Table::open(csv.as_bytes()).unwrap(),
            Profiles::built_in().all(),
            |_| None,
        )
        .unwrap()
    }

    #[test]
    fn spreadsheets_as_saved_in_vietnam_are_read() {
        // Semicolons and a decimal comma, as a spreadsheet with a Vietnamese locale saves CSV; "N/A" is no figure.
        let r = checked(
            "Đơn vị;Tổng số;Trực tuyến;Tỷ lệ trực tuyến (%)\nSở;100;23;23,00\nHuyện;N/A;5;\n",
        );
        assert_eq!(r.rows.len(), 2);
        assert!(
            r.summary.notes.iter().any(|n| n.contains(';')),
            "{:?}",
            r.summary.notes
        );
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
        assert_eq!(r.summary.profile, None);
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
