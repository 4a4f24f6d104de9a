//! `casetrail import`: NDJSON of stored events into the log, a batch of 1,000 lines at a time, all or nothing each.

use super::*;

/// One line of an import and where it came from.
struct Line {
    number: usize,
    submitted: Submitted,
}

pub fn import(data: &DataDir, file: &Path, source: &str) -> Result<ExitCode> {
    domain::event::check_source(source).map_err(|e| format!("--source {e}"))?;
    let (input, len): (Box<dyn Read + Send>, Option<u64>) = if file == Path::new("-") {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let len = f.metadata()?.len();
        (Box::new(f), Some(len))
    };
    let log = open(data)?;
    let progress = bar(len, "importing");
    let reader = BufReader::with_capacity(1 << 20, progress.wrap_read(input));
    let (mut written, mut replayed) = (0u64, 0u64);
    // One thread reads and parses the next batch while this one waits for the log to write the last: at most one
    // batch in flight, so that the import stops at the first refused batch with nothing after it written. The
    // parser is not waited for when the import stops early: it may be blocked reading a pipe that never ends.
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Parsed>>(1);
    std::thread::Builder::new()
        .name("casetrail-import-parser".into())
        .spawn(move || parse_batches(reader, tx))?;
    for parsed in rx {
        let Parsed {
            range,
            numbers,
            submitted,
            bad,
        } = parsed?;
        if !bad.is_empty() {
            progress.abandon();
            return fail_import(&bad, &range, written, replayed);
        }
        if submitted.is_empty() {
            continue;
        }
        match log.append_blocking(AppendRequest {
            events: submitted,
            source: source.to_owned(),
        }) {
            Ok(outcome) => {
                for r in &outcome.receipts {
                    if r.replayed {
                        replayed += 1
                    } else {
                        written += 1
                    }
                }
            }
            Err(AppendError::Refused(refusals)) => {
                let lines: Vec<String> = refusals
                    .iter()
                    .map(|r| {
                        format!(
                            "line {} (id {}): {}: {}",
                            numbers[r.index],
                            r.id,
                            r.refusal.code(),
                            r.refusal
                        )
                    })
                    .collect();
                progress.abandon();
                return fail_import(&lines, &range, written, replayed);
            }
            Err(e) => return Err(e.into()),
        }
    }
    progress.finish_and_clear();
    let head = log.head();
    println!("imported {written} new events ({replayed} already in the log); the log has {} events, root {}", head.size, head.root);
    Ok(ExitCode::SUCCESS)
}

/// One batch of an import file, parsed: the events to append, or why some lines are bad.
struct Parsed {
    /// "line N" or "lines N–M".
    range: String,
    /// The line number of each submitted event.
    numbers: Vec<usize>,
    submitted: Vec<Submitted>,
    bad: Vec<String>,
}

/// Reads `reader` as NDJSON and sends it on in batches of up to `BATCH_EVENTS_MAX` lines, until the end, a read
/// error, or the receiver going away.
fn parse_batches(reader: impl BufRead, tx: std::sync::mpsc::SyncSender<std::io::Result<Parsed>>) {
    let numbered = reader.lines().enumerate().map(|(i, line)| (i + 1, line));
    for lines in crate::batches::batches(numbered, BATCH_EVENTS_MAX) {
        let (first, last) = (lines[0].0, lines[lines.len() - 1].0);
        let mut batch: Vec<Line> = Vec::with_capacity(lines.len());
        let mut bad: Vec<String> = Vec::new();
        for (number, text) in lines {
            let text = match text {
                Ok(text) => text,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let trimmed = text.trim();
            if trimmed.is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(trimmed) {
                Err(e) => bad.push(format!("line {number}: not JSON: {e}")),
                Ok(value) => match parse_envelope(&value, batch.len(), Form::Exported) {
                    Ok(submitted) => batch.push(Line { number, submitted }),
                    Err(errors) => bad.extend(errors.iter().map(|e| describe(number, e))),
                },
            }
        }
        let range = if first == last {
            format!("line {last}")
        } else {
            format!("lines {first}–{last}")
        };
        let mut dup = Vec::new();
        let numbers: Vec<usize> = batch.iter().map(|l| l.number).collect();
        let ids: Vec<(usize, uuid::Uuid)> = batch
            .iter()
            .enumerate()
            .map(|(i, l)| (i, l.submitted.event.id))
            .collect();
        check_batch_ids(&ids, &mut dup);
        bad.extend(dup.iter().map(|e| describe(numbers[e.index], e)));
        let parsed = Parsed {
            range,
            numbers,
            submitted: batch.into_iter().map(|l| l.submitted).collect(),
            bad,
        };
        if tx.send(Ok(parsed)).is_err() {
            return;
        }
    }
}

fn describe(line: usize, e: &ValidationError) -> String {
    let field = if e.field.is_empty() {
        String::new()
    } else {
        format!("{}: ", e.field)
    };
    format!("line {line}: {field}{}", e.message)
}

fn fail_import(lines: &[String], range: &str, written: u64, replayed: u64) -> Result<ExitCode> {
    for l in lines {
        eprintln!("{l}");
    }
    eprintln!(
        "casetrail: import stopped: nothing from {range} was written; before them, {written} new events were written and {replayed} were already in the log"
    );
    Ok(ExitCode::FAILURE)
}
