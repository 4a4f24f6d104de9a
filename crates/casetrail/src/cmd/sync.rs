//! `casetrail import-dvcqg`: a one-stop system's sync log (NDJSON of DVCQG sync requests) through the same adapter
//! as `POST /v1/adapters/dvcqg`, offline, for a province backfilling years of history. Lines are planned and
//! appended a group at a time (all or nothing each); a line with a step that comes before its dossier's upsert is
//! held back and taken right after the first line that sends that dossier (before the lines after it, so that its
//! step is read against the dossier as it stood then); importing the same file twice writes nothing the second time.

use super::*;
use app::adapter::{self, Everything};
use std::collections::{BTreeMap, BTreeSet};

/// Lines planned and appended together.
const GROUP_LINES: usize = 100;

/// One line of the file, read.
struct Line {
    number: usize,
    requests: Vec<dvcqg::Request>,
    /// Held back at least once.
    held: bool,
}

impl Line {
    /// The dossiers its items of one kind name.
    fn dossiers(
        &self,
        kind: fn(&dvcqg::Item) -> bool,
    ) -> impl Iterator<Item = &domain::DossierCode> {
        self.requests
            .iter()
            .flat_map(|r| r.items.iter())
            .filter(move |i| kind(i))
            .map(|i| i.dossier())
    }

    /// The dossiers its upserts send.
    fn upserts(&self) -> impl Iterator<Item = &domain::DossierCode> {
        self.dossiers(|i| matches!(i, dvcqg::Item::Upsert(_)))
    }

    /// The dossiers its steps name.
    fn steps(&self) -> impl Iterator<Item = &domain::DossierCode> {
        self.dossiers(|i| matches!(i, dvcqg::Item::Step(_)))
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
    let catalogue = app::catalogue_of(&*log)?;
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
            Ok(requests) => group.push(Line {
                number,
                requests,
                held: false,
            }),
            Err(e) => {
                progress.abandon();
                return stop(&tally, &format!("line {number}: {}", problems(&e)));
            }
        }
        if group.len() == GROUP_LINES {
            let lines = std::mem::take(&mut group);
            if let Err(why) = write_and_retry(
                &*log,
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
        &*log,
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

/// Writes a group of lines with the lines held back so far whose dossier this group sends: [`write`] takes each
/// right after the first line that sends its dossier, so that a held step comes before the group's later steps of
/// the same dossier, as it did in time (taken after them, it would be earlier than the log's last event and refused
/// as out of order).
fn write_and_retry(
    log: &dyn Store,
    catalogue: &projections::Catalogue,
    mapping: &dvcqg::Mapping,
    source: &str,
    lines: Vec<Line>,
    deferred: &mut Vec<Line>,
    tally: &mut Tally,
) -> std::result::Result<(), String> {
    let sent: BTreeSet<&domain::DossierCode> = lines.iter().flat_map(Line::upserts).collect();
    let (mut ready, waiting): (Vec<Line>, Vec<Line>) = std::mem::take(deferred)
        .into_iter()
        .partition(|l| l.steps().any(|d| sent.contains(d)));
    *deferred = waiting;
    ready.sort_by_key(|l| l.number);
    ready.extend(lines);
    write(log, catalogue, mapping, source, ready, deferred, tally)
}

/// Plans `lines` together and appends what they add. A line whose steps come before their dossier is moved right
/// after the first line here that sends it, or to `deferred` when none does, and the lines planned again; any
/// other refusal stops the import with the lines it names.
fn write(
    log: &dyn Store,
    catalogue: &projections::Catalogue,
    mapping: &dvcqg::Mapping,
    source: &str,
    mut lines: Vec<Line>,
    deferred: &mut Vec<Line>,
    tally: &mut Tally,
) -> std::result::Result<(), String> {
    // Lines moved after an upsert of their dossier: the line each was moved after.
    let mut moved: BTreeMap<usize, usize> = BTreeMap::new();
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
            let held = lines
                .iter()
                .filter(|l| l.held && numbers.contains(&l.number))
                .map(|l| l.number.to_string())
                .collect::<Vec<_>>();
            let numbers: Vec<String> = numbers.iter().map(|n| n.to_string()).collect();
            let held = if held.is_empty() {
                String::new()
            } else {
                format!(
                    "\n(line {} had been held back until its dossier came, and was taken right after it)",
                    held.join(", ")
                )
            };
            format!("line {}: {}{held}", numbers.join(", "), problems(e))
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
                for mut l in held {
                    tally.held_back += usize::from(!l.held);
                    l.held = true;
                    // Right after the first line here that sends its dossier (the latest such line, for a line
                    // of several dossiers): planned there, its steps meet their dossier as it stood then, before
                    // the later steps. An upsert that does not accept it yet (one at status 1) moves it on to the
                    // next; with none left, it waits for a later group.
                    let since = moved.get(&l.number).copied().unwrap_or(0);
                    let after = l
                        .steps()
                        .filter_map(|d| {
                            lines
                                .iter()
                                .position(|o| o.number > since && o.upserts().any(|u| u == d))
                        })
                        .max();
                    match after {
                        Some(i) => {
                            moved.insert(l.number, lines[i].number);
                            lines.insert(i + 1, l);
                        }
                        None => deferred.push(l),
                    }
                }
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
