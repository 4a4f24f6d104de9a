//! `casetrail import-dvcqg`: a one-stop system's sync log (NDJSON of DVCQG sync requests) through the same adapter
//! as `POST /v1/adapters/dvcqg`, offline, for a province backfilling years of history. Lines are planned and
//! appended a group at a time (all or nothing each); a line with a step that comes before its dossier's upsert is
//! held back and tried again, in line order, once a group has sent that dossier; importing the same file twice
//! writes nothing the second time.

use super::*;
use app::adapter::{self, Everything};
use std::collections::{BTreeMap, BTreeSet};

/// Lines planned and appended together.
const GROUP_LINES: usize = 100;

/// One line of the file, read.
struct Line {
    number: usize,
    requests: Vec<dvcqg::Request>,
}

impl Line {
    /// The dossiers its steps name.
    fn steps(&self) -> impl Iterator<Item = &domain::DossierCode> {
        self.requests
            .iter()
            .flat_map(|r| r.items.iter())
            .filter(|i| matches!(i, dvcqg::Item::Step(_)))
            .map(|i| i.dossier())
    }
}

pub fn import_dvcqg(
    data: &DataDir,
    file: &Path,
    mapping: Option<&Path>,
    name: &str,
) -> Result<ExitCode> {
    domain::event::check_source(name).map_err(|e| format!("--source {e}"))?;
    let mapping = app::Settings {
        dvcqg_mapping: mapping.map(Path::to_path_buf),
        ..data.settings()
    }
    .dvcqg_mapping()?;
    let source = adapter::source_of(name, &mapping);
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let progress = bar(Some(f.metadata()?.len()), "importing the sync log");
    let reader = BufReader::with_capacity(1 << 20, progress.wrap_read(f));
    let log = open(data)?;
    let catalogue = app::catalogue_of(&log)?;
    let mut tally = Tally::default();
    let mut deferred: Vec<Line> = Vec::new();
    let mut group: Vec<Line> = Vec::new();
    for (i, text) in reader.lines().enumerate() {
        let number = i + 1;
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        let body: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                progress.abandon();
                return stop(&tally, &format!("line {number}: not JSON: {e}"));
            }
        };
        match adapter::read(&body, &mapping) {
            Ok(requests) => group.push(Line { number, requests }),
            Err(e) => {
                progress.abandon();
                return stop(&tally, &format!("line {number}: {}", problems(&e)));
            }
        }
        if group.len() == GROUP_LINES {
            let lines = std::mem::take(&mut group);
            if let Err(why) = write_and_retry(
                &log,
                &catalogue,
                &mapping,
                &source,
                lines,
                &mut deferred,
                &mut tally,
            ) {
                progress.abandon();
                return stop(&tally, &why);
            }
        }
    }
    if let Err(why) = write_and_retry(
        &log,
        &catalogue,
        &mapping,
        &source,
        group,
        &mut deferred,
        &mut tally,
    ) {
        progress.abandon();
        return stop(&tally, &why);
    }
    let still = deferred;
    progress.finish_and_clear();
    let head = log.head();
    println!(
        "imported {} lines: {} new events ({} already in the log); the log has {} events, root {}",
        tally.lines, tally.written, tally.replayed, head.size, head.root
    );
    if tally.held_back > 0 {
        println!(
            "{} lines came before their dossier's DongBoHoSoMC and were taken after it",
            tally.held_back - still.len()
        );
    }
    println!(
        "events' source: {source} (mapping {:?}, sha256 {})",
        mapping.title, mapping.sha256
    );
    let dropped: Vec<String> = tally
        .personal
        .iter()
        .map(|(f, n)| format!("{f} ({n})"))
        .collect();
    if !dropped.is_empty() {
        println!(
            "personal fields dropped, never stored: {}",
            dropped.join(", ")
        );
    }
    if !still.is_empty() {
        let lines: Vec<String> = still.iter().map(|l| l.number.to_string()).collect();
        eprintln!(
            "casetrail: lines {} could not be taken: their steps name dossiers the file never sent (no DongBoHoSoMC), so nothing of those lines was written",
            lines.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct Tally {
    lines: usize,
    /// Lines held back at least once because a step came before its dossier.
    held_back: usize,
    written: u64,
    replayed: u64,
    personal: BTreeMap<String, usize>,
}

/// Writes a group of lines, then tries again, in line order, the lines held back so far (their dossiers may have
/// come in this group).
fn write_and_retry(
    log: &SledLog,
    catalogue: &projections::Catalogue,
    mapping: &dvcqg::Mapping,
    source: &str,
    lines: Vec<Line>,
    deferred: &mut Vec<Line>,
    tally: &mut Tally,
) -> std::result::Result<(), String> {
    // The dossiers this group sends: only lines waiting for one of them can be taken now.
    let sent: BTreeSet<&domain::DossierCode> = lines
        .iter()
        .flat_map(|l| l.requests.iter().flat_map(|r| r.items.iter()))
        .filter(|i| matches!(i, dvcqg::Item::Upsert(_)))
        .map(|i| i.dossier())
        .collect();
    let sent: BTreeSet<domain::DossierCode> = sent.into_iter().cloned().collect();
    let before = deferred.len();
    write(log, catalogue, mapping, source, lines, deferred, tally)?;
    tally.held_back += deferred.len() - before;
    let (mut ready, waiting): (Vec<Line>, Vec<Line>) = std::mem::take(deferred)
        .into_iter()
        .partition(|l| l.steps().any(|d| sent.contains(d)));
    *deferred = waiting;
    ready.sort_by_key(|l| l.number);
    for line in ready {
        let number = line.number;
        write(log, catalogue, mapping, source, vec![line], deferred, tally)
            .map_err(|why| format!("{why}\n(line {number} had been held back until its dossier came; the lines before it are written)"))?;
    }
    Ok(())
}

/// Plans `lines` together and appends what they add. Lines whose steps come before their dossier are moved to
/// `deferred` and the rest planned again; any other refusal stops the import with the lines it names.
fn write(
    log: &SledLog,
    catalogue: &projections::Catalogue,
    mapping: &dvcqg::Mapping,
    source: &str,
    mut lines: Vec<Line>,
    deferred: &mut Vec<Line>,
    tally: &mut Tally,
) -> std::result::Result<(), String> {
    loop {
        if lines.is_empty() {
            return Ok(());
        }
        // Each request remembers its line.
        let owners: Vec<usize> = lines
            .iter()
            .enumerate()
            .flat_map(|(i, l)| std::iter::repeat_n(i, l.requests.len()))
            .collect();
        let requests: Vec<dvcqg::Request> = lines.iter().flat_map(|l| l.requests.clone()).collect();
        let named = |e: &app::Error| -> String {
            let mut numbers: Vec<usize> = adapter::refused_requests(e)
                .into_iter()
                .map(|r| lines[owners[r]].number)
                .collect();
            numbers.sort_unstable();
            numbers.dedup();
            let numbers: Vec<String> = numbers.iter().map(|n| n.to_string()).collect();
            format!("line {}: {}", numbers.join(", "), problems(e))
        };
        let planned = match adapter::plan(log, catalogue, mapping, requests, &Everything) {
            Ok(p) => p,
            Err(e) if adapter::is_step_before_upsert(&e) => {
                let mut late: Vec<usize> = adapter::refused_requests(&e)
                    .into_iter()
                    .map(|r| owners[r])
                    .collect();
                late.sort_unstable();
                late.dedup();
                let mut held: Vec<Line> = late.into_iter().rev().map(|i| lines.remove(i)).collect();
                held.reverse();
                deferred.extend(held);
                continue;
            }
            Err(e) => return Err(named(&e)),
        };
        if planned.len() > BATCH_EVENTS_MAX && lines.len() > 1 {
            // Too many events for one append: the lines one by one.
            for line in lines {
                write(log, catalogue, mapping, source, vec![line], deferred, tally)?;
            }
            return Ok(());
        }
        if !planned.is_empty() {
            match log.append_blocking(AppendRequest {
                events: planned.events.clone(),
                source: source.to_owned(),
            }) {
                Ok(outcome) => {
                    for r in &outcome.receipts {
                        if r.replayed {
                            tally.replayed += 1
                        } else {
                            tally.written += 1
                        }
                    }
                }
                Err(AppendError::Refused(r)) => return Err(named(&planned.refused(&r))),
                Err(e) => return Err(e.to_string()),
            }
        }
        tally.lines += lines.len();
        for r in planned.requests() {
            for f in &r.dropped.personal {
                *tally.personal.entry(f.clone()).or_default() += 1;
            }
        }
        return Ok(());
    }
}

/// A refusal's problems, each on its own.
fn problems(e: &app::Error) -> String {
    match e {
        app::Error::Validation(p) | app::Error::Sync { problems: p, .. } => p
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn stop(tally: &Tally, why: &str) -> Result<ExitCode> {
    eprintln!("{why}");
    eprintln!(
        "casetrail: import stopped: nothing of the lines named was written; before them, {} lines gave {} new events ({} already in the log)",
        tally.lines, tally.written, tally.replayed
    );
    Ok(ExitCode::FAILURE)
}
