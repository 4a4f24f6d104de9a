//! `check-report`'s reading of a published table, which streams: the table is read in passes from its source and
//! no pass holds more than a row. Whatever the table's encoding, delimiter, normal form and the sizes its reads
//! come in, the answer is the same; its totals and subtotals, summed as the rows go by, are those the rule gives
//! over the whole table; and the answer written row by row is the whole answer's JSON, byte for byte.

use projections::indicators::check::{
    check, written, CheckReport, Format, Published, PublishedRow, Quantity, RateVerdict, Source,
    Table,
};
use projections::indicators::Profiles;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io::Read;
use unicode_normalization::UnicodeNormalization;

/// A table in memory whose reads return at most `chunk` bytes: a character cut between two reads, as a pipe or a
/// slow disk may cut it.
struct Chunked<'a> {
    bytes: &'a [u8],
    chunk: usize,
}

struct ChunkReader<'a> {
    rest: &'a [u8],
    chunk: usize,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

impl Source for Chunked<'_> {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(ChunkReader {
            rest: self.bytes,
            chunk: self.chunk,
        }))
    }
}

/// The columns a generated table may have.
const COUNTS: [&str; 11] = [
    "(3)", "(4)", "(5)", "(6)", "(7)", "(8)", "(9)", "(10)", "(11)", "(12)", "(13)",
];
const NAMES: [&str; 8] = [
    "Sở Tư pháp",
    "UBND huyện Thạch Hà",
    "Xã Kỳ Anh",
    "Cấp huyện",
    "Sở Xây dựng",
    "Tổng cộng",
    "Phường Nguyễn Du",
    "Huyện Đức Thọ",
];
const KINDS: [&str; 5] = ["level", "agency", "field", "total", ""];

#[derive(Debug, Clone)]
struct Generated {
    period_column: bool,
    kind_column: bool,
    counts: Vec<usize>,
    rows: Vec<(
        usize,
        usize,
        usize,
        Vec<Option<u16>>,
        Option<u16>,
        Option<usize>,
    )>,
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::sample::subsequence((0..COUNTS.len()).collect::<Vec<_>>(), 2..COUNTS.len()),
        proptest::collection::vec(
            (
                0usize..2,
                0usize..KINDS.len(),
                0usize..NAMES.len(),
                proptest::collection::vec(proptest::option::weighted(0.9, 0u16..60), COUNTS.len()),
                proptest::option::of(0u16..10_000),
                proptest::option::weighted(0.1, 1usize..4),
            ),
            1..40,
        ),
    )
        .prop_map(|(period_column, kind_column, counts, rows)| Generated {
            period_column,
            kind_column,
            counts,
            rows,
        })
}

/// The table's text: a header, then its rows (a short one drops its last cells), with `delimiter`, names
/// decomposed when `nfd`, a decimal comma with semicolons.
fn text(g: &Generated, delimiter: u8, nfd: bool) -> String {
    let mut header = Vec::new();
    if g.period_column {
        header.push("Kỳ báo cáo".to_owned());
    }
    if g.kind_column {
        header.push("Loại dòng".to_owned());
    }
    header.push("Tên đơn vị".to_owned());
    header.extend(g.counts.iter().map(|c| COUNTS[*c].to_owned()));
    header.push("Tỷ lệ trực tuyến (%)".to_owned());
    let mut out = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_writer(Vec::new());
    out.write_record(&header).unwrap();
    for (period, kind, name, counts, rate, short) in &g.rows {
        let mut cells = Vec::new();
        if g.period_column {
            cells.push(["2023-Q1", "2023-Q2"][*period].to_owned());
        }
        if g.kind_column {
            cells.push(KINDS[*kind].to_owned());
        }
        let name = if nfd {
            NAMES[*name].nfd().collect()
        } else {
            NAMES[*name].to_owned()
        };
        cells.push(name);
        for c in &g.counts {
            cells.push(counts[*c].map_or("-".to_owned(), |n| n.to_string()));
        }
        let rate = rate.map_or(String::new(), |r| format!("{}.{:02}", r / 100, r % 100));
        cells.push(if delimiter == b';' {
            rate.replace('.', ",")
        } else {
            rate
        });
        let keep = cells.len() - short.unwrap_or(0).min(cells.len() - 1);
        out.write_record(&cells[..keep]).unwrap();
    }
    String::from_utf8(out.into_inner().unwrap()).unwrap()
}

/// The text as a file saves it: UTF-8 with or without a byte-order mark, or UTF-16 after one.
fn encoded(text: &str, encoding: usize) -> Vec<u8> {
    match encoding {
        0 => text.as_bytes().to_vec(),
        1 => [&b"\xef\xbb\xbf"[..], text.as_bytes()].concat(),
        le => {
            let mut bytes = if le == 2 {
                vec![0xff, 0xfe]
            } else {
                vec![0xfe, 0xff]
            };
            for u in text.encode_utf16() {
                bytes.extend(if le == 2 {
                    u.to_le_bytes()
                } else {
                    u.to_be_bytes()
                });
            }
            bytes
        }
    }
}

fn checked(source: impl Source) -> CheckReport {
    let table = Table::open(source).unwrap();
    check(&table, Profiles::built_in().all(), |_| None).unwrap()
}

/// The answer without the notes that name how the file was read (its encoding and delimiter).
fn without_reading_notes(mut report: CheckReport) -> CheckReport {
    report
        .summary
        .notes
        .retain(|n| !n.starts_with("read as") && !n.starts_with("fields separated"));
    report
}

/// The rule for totals and subtotals, read over the whole table at once: per period, a level line against the
/// agency (or field) lines right after it; the first total line against the agency lines if any, else the level
/// lines, else every line but the totals.
fn totals_by_the_rule(rows: &[PublishedRow]) -> BTreeMap<usize, Vec<(String, i64, i64)>> {
    let mut out: BTreeMap<usize, Vec<(String, i64, i64)>> = BTreeMap::new();
    let mut periods: Vec<Option<&str>> = rows.iter().map(|r| r.period.as_deref()).collect();
    periods.sort();
    periods.dedup();
    let kind = |r: &PublishedRow| r.kind.clone().unwrap_or_default();
    let sum = |parts: &[&PublishedRow], q: &Quantity| -> Option<i64> {
        parts.iter().map(|r| r.counts.get(q).copied()).sum()
    };
    for period in periods {
        let of: Vec<&PublishedRow> = rows
            .iter()
            .filter(|r| r.period.as_deref() == period)
            .collect();
        for i in 0..of.len() {
            if kind(of[i]) != "level" {
                continue;
            }
            let mut under = Vec::new();
            let mut j = i + 1;
            while j < of.len() && ["agency", "field"].contains(&kind(of[j]).as_str()) {
                under.push(of[j]);
                j += 1;
            }
            if under.is_empty() {
                continue;
            }
            let words = if under.iter().all(|r| kind(r) == "field") {
                "fields"
            } else {
                "agencies"
            };
            for (q, n) in &of[i].counts {
                if let Some(s) = sum(&under, q) {
                    let rule = format!("subtotal {} = the sum of its {words}", q.key());
                    out.entry(of[i].line).or_default().push((rule, *n, s));
                }
            }
        }
        let Some(total) = of.iter().find(|r| r.is_total()) else {
            continue;
        };
        let marked = ["agency", "level"]
            .into_iter()
            .find(|k| of.iter().any(|r| kind(r) == *k));
        let parts: Vec<&PublishedRow> = of
            .iter()
            .filter(|r| !r.is_total() && marked.is_none_or(|k| kind(r) == k))
            .copied()
            .collect();
        if parts.is_empty() {
            continue;
        }
        for (q, n) in &total.counts {
            if let Some(s) = sum(&parts, q) {
                let rule = format!("total {} = the sum of the rows", q.key());
                out.entry(total.line).or_default().push((rule, *n, s));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_streamed_check_is_the_whole_table_s_check(
        g in generated(),
        delimiter in prop::sample::select(vec![b',', b';', b'\t']),
        encoding in 0usize..4,
        nfd in any::<bool>(),
        chunk in 1usize..8,
    ) {
        let plain = text(&g, b',', false);
        let reference = checked(plain.as_bytes());
        let bytes = encoded(&text(&g, delimiter, nfd), encoding);
        let streamed = checked(Chunked { bytes: &bytes, chunk });
        // The same answer, whatever the encoding, delimiter, normal form and read sizes (the reading notes aside).
        prop_assert_eq!(without_reading_notes(streamed.clone()), without_reading_notes(reference.clone()));
        prop_assert_eq!(
            streamed.summary.notes.iter().any(|n| n.starts_with("read as UTF-16")),
            encoding >= 2
        );

        // Totals and subtotals are those the rule gives over the whole table.
        let rows = Published::parse(plain.as_bytes()).unwrap().rows;
        let ours: BTreeMap<usize, Vec<(String, i64, i64)>> = reference
            .rows
            .iter()
            .map(|r| {
                let checks: Vec<(String, i64, i64)> = r
                    .sums
                    .iter()
                    .filter(|s| s.rule.starts_with("subtotal ") || s.rule.starts_with("total "))
                    .map(|s| (s.rule.clone(), s.left, s.right))
                    .collect();
                (r.line, checks)
            })
            .filter(|(_, c)| !c.is_empty())
            .collect();
        prop_assert_eq!(ours, totals_by_the_rule(&rows));

        // The summary's counts are the rows'.
        let failed: usize = reference.rows.iter().map(|r| r.sums.iter().filter(|s| !s.holds).count()).sum();
        let slips = reference
            .rows
            .iter()
            .flat_map(|r| r.rates.values())
            .filter(|v| matches!(v, RateVerdict::Slip { .. }))
            .count();
        prop_assert_eq!((reference.summary.sums_failed, reference.summary.slips), (failed, slips));

        // Written row by row, the JSON is the whole answer's; and it reads back as the answer.
        let json = written(&reference, Format::Json);
        prop_assert_eq!(&json, &(serde_json::to_string_pretty(&reference).unwrap() + "\n"));
        let back: CheckReport = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, reference);
    }
}

/// A table whose bytes change between passes (a file still being written) is refused, not checked half old.
#[test]
fn a_table_that_changes_between_passes_is_refused() {
    struct Changing(std::cell::Cell<usize>);
    impl Source for Changing {
        fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
            let n = self.0.get();
            self.0.set(n + 1);
            let table: &'static [u8] = if n < 3 {
                b"Don vi,(3),(4)\nA,10,3\n"
            } else {
                b"Don vi,(3),(4)\nA,10,4\n"
            };
            Ok(Box::new(table))
        }
    }
    let table = Table::open(Changing(std::cell::Cell::new(0))).unwrap();
    let e = check(&table, Profiles::built_in().all(), |_| None).unwrap_err();
    assert!(e.contains("changed while it was being read"), "{e}");
}

/// Lines with fewer cells than the header are named one by one up to a bound, then counted: the notes of a
/// table with a million short lines do not grow with it.
#[test]
fn short_lines_are_named_up_to_a_bound() {
    let mut table = String::from("Đơn vị,Tổng số,Trực tuyến\n");
    for i in 0..500 {
        table.push_str(&format!("Sở {i},100\n"));
    }
    let p = Published::parse(table.as_bytes()).unwrap();
    assert_eq!(p.rows.len(), 500);
    assert_eq!(p.notes.len(), 21, "{:?}", p.notes);
    assert!(
        p.notes[0].starts_with("line 2: 2 cells"),
        "{:?}",
        p.notes[0]
    );
    assert!(
        p.notes[20].starts_with("480 more lines have fewer cells"),
        "{:?}",
        p.notes[20]
    );
}
