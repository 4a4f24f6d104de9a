//! The data-directory subcommands: import, export, verify, stats, rebuild-indexes, generate, demo.

use chrono::TimeZone;
use domain::parse::{check_batch_ids, parse_envelope, Form, BATCH_EVENTS_MAX};
use domain::{Submitted, ValidationError};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use store::{AppendError, AppendRequest, Config, EventLog, SledLog};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// An app refusal as one line for the terminal: validation errors say what each field lacks.
pub fn explain(e: app::Error) -> String {
    match e {
        app::Error::Validation(errors) => errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// The data directory the command line names (`--data`), and sled's cache for it (`--cache-mb`). It dereferences
/// to its path.
pub struct DataDir {
    pub path: std::path::PathBuf,
    /// Whether `--data` (or `CASETRAIL_DATA`) named it, rather than the default.
    pub given: bool,
    /// `--cache-mb` (or `CASETRAIL_CACHE_MB`), if given.
    pub cache_mb_given: Option<u64>,
}

impl DataDir {
    pub fn new(path: Option<std::path::PathBuf>, cache_mb: Option<u64>) -> DataDir {
        DataDir {
            given: path.is_some(),
            path: path.unwrap_or_else(|| app::DEFAULT_DATA.into()),
            cache_mb_given: cache_mb,
        }
    }

    /// The service's settings for this directory, every other one at its default.
    pub fn settings(&self) -> app::Settings {
        self.settings_at(&self.path)
    }

    /// The same settings for another directory (one a command builds beside this one).
    pub fn settings_at(&self, path: &Path) -> app::Settings {
        let mut settings = app::Settings::new(path);
        if let Some(mb) = self.cache_mb_given {
            settings.cache_mb = mb;
        }
        settings
    }
}

impl AsRef<Path> for DataDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for DataDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl std::ops::Deref for DataDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

pub fn config(data: &DataDir) -> Config {
    data.settings().store_config()
}

/// The store settings for a scratch directory a command makes for itself (benchmarks), with the default cache.
pub fn scratch_config(path: &Path) -> Config {
    app::Settings::new(path).store_config()
}

pub fn open(data: &DataDir) -> Result<SledLog> {
    Ok(SledLog::open(config(data))?)
}

fn open_for_inspection(data: &DataDir) -> Result<SledLog> {
    if !data.join("db").exists() {
        return Err(format!("{} holds no casetrail log", data.display()).into());
    }
    let mut config = config(data);
    config.inspection = true;
    Ok(SledLog::open(config)?)
}

fn bar(len: Option<u64>, what: &str) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_message(what.to_owned());
    bar
}

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
fn parse_batches(
    mut reader: impl BufRead,
    tx: std::sync::mpsc::SyncSender<std::io::Result<Parsed>>,
) {
    let mut batch: Vec<Line> = Vec::with_capacity(BATCH_EVENTS_MAX);
    let mut bad: Vec<String> = Vec::new();
    let mut first_line = 1;
    let mut text = String::new();
    let mut number = 0;
    loop {
        text.clear();
        let more = match reader.read_line(&mut text) {
            Ok(n) => n > 0,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        if more {
            number += 1;
            let trimmed = text.trim();
            if !trimmed.is_empty() {
                match serde_json::from_str::<serde_json::Value>(trimmed) {
                    Err(e) => bad.push(format!("line {number}: not JSON: {e}")),
                    Ok(value) => match parse_envelope(&value, batch.len(), Form::Exported) {
                        Ok(submitted) => batch.push(Line { number, submitted }),
                        Err(errors) => bad.extend(errors.iter().map(|e| describe(number, e))),
                    },
                }
            }
        }
        let lines_in_batch = number + 1 - first_line;
        if !(more && lines_in_batch < BATCH_EVENTS_MAX) && (lines_in_batch > 0 || !batch.is_empty())
        {
            let range = if first_line == number {
                format!("line {number}")
            } else {
                format!("lines {first_line}–{number}")
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
                submitted: batch.drain(..).map(|l| l.submitted).collect(),
                bad: std::mem::take(&mut bad),
            };
            if tx.send(Ok(parsed)).is_err() {
                return;
            }
            first_line = number + 1;
        }
        if !more {
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

pub fn export(data: &DataDir, after: u64, output: Option<&Path>) -> Result<ExitCode> {
    let log = open(data)?;
    let out: Box<dyn Write> = match output {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let size = log.head().size;
    for item in log.scan_raw(after) {
        let (position, bytes) = item?;
        if position > size {
            break;
        }
        let wrote = out.write_all(&bytes).and_then(|_| out.write_all(b"\n"));
        if let Err(e) = wrote {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub fn verify(data: &DataDir) -> Result<ExitCode> {
    let log = open_for_inspection(data)?;
    let progress = bar(None, "verifying");
    let report = log.verify(|n| progress.set_message(format!("verifying: {n} events")))?;
    progress.finish_and_clear();
    if report.problems.is_empty() {
        // The signed checkpoints the log keeps: each must commit to this log's root at its size.
        let key_file = data.join(app::AUDIT_KEY_FILE);
        let key = match audit::SigningKey::load(&key_file) {
            Ok(k) => Some(audit::VerifierKey::parse(k.verifier_key())?),
            Err(_) => None,
        };
        let (checked, problems) = audit::check_stored_checkpoints(&log, key.as_ref())?;
        if let Some((_, what)) = problems.first() {
            println!("bad: {what}");
            for (_, w) in problems.iter().skip(1).take(20) {
                println!("  also: {w}");
            }
            return Ok(ExitCode::FAILURE);
        }
        let signed = if key.is_some() {
            "signed with the data directory's key and "
        } else {
            ""
        };
        let plural = if checked == 1 { "" } else { "s" };
        let lag = match report.size - report.indexed_through {
            0 => String::new(),
            n => format!(" (the indexes on disk lag {n} events behind the log: the next open catches them up)"),
        };
        println!(
            "ok: {} events in {} streams; every hash, index and stream rule checks; {checked} stored checkpoint{plural} {signed}matching the log; root {}{lag}",
            report.size,
            report.streams,
            report.root.as_deref().unwrap_or("")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (position, what) = &report.problems[0];
    println!("bad: first bad position {position}: {what}");
    for (p, w) in report.problems.iter().skip(1).take(20) {
        println!("  also at {p}: {w}");
    }
    if report.problems.len() > 21 {
        println!("  and {} more", report.problems.len() - 21);
    }
    Ok(ExitCode::FAILURE)
}

pub fn stats(data: &DataDir) -> Result<ExitCode> {
    let log = open(data)?;
    let s = log.stats()?;
    println!("events          {}", s.size);
    println!("audit root      {}", s.root);
    println!("streams         {} ({} dossiers)", s.streams, s.dossiers);
    println!("event bytes     {}", s.event_bytes);
    println!("block bytes     {} (compressed)", s.block_bytes);
    println!("index bytes     {}", s.index_bytes);
    println!("disk bytes      {}", s.disk_bytes);
    if let (Some(first), Some(last)) = (s.first_recorded_at, s.last_recorded_at) {
        println!("recorded        {first} … {last}");
    }
    for (ty, n) in &s.events_by_type {
        println!("  {ty:<30} {n}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rebuild(data: &DataDir) -> Result<ExitCode> {
    let log = open_for_inspection(data)?;
    let before = log.head();
    let progress = bar(None, "rebuilding");
    let head = log.rebuild_indexes(|n| progress.set_message(format!("rebuilding: {n} events")))?;
    progress.finish_and_clear();
    println!(
        "rebuilt every index from {} events; root {} (was {})",
        head.size, head.root, before.root
    );
    Ok(ExitCode::SUCCESS)
}

pub fn generate(config: &generator::Config, form: crate::GeneratedForm) -> Result<ExitCode> {
    if config.from > config.to || config.from.kind() != config.to.kind() {
        return Err(format!(
            "--from {} must be a period of the same kind as --to {}, and not after it",
            config.from, config.to
        )
        .into());
    }
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    for e in generator::Generator::new(config) {
        let line = match form {
            crate::GeneratedForm::Stored => e.canonical_bytes(),
            crate::GeneratedForm::Submitted => e.event.to_json(None).into_bytes(),
        };
        if out
            .write_all(&line)
            .and_then(|_| out.write_all(b"\n"))
            .is_err()
        {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

/// Dossiers in the demo's generated province.
const DEMO_DOSSIERS: u64 = 60_000;

pub fn demo(data: &DataDir, listen: std::net::SocketAddr) -> Result<ExitCode> {
    let log = open(data)?;
    if log.head().size == 0 {
        let config =
            generator::Config::new(2019, DEMO_DOSSIERS, "2018-Q1".parse()?, "2019-Q4".parse()?);
        println!(
            "casetrail demo: filling {} with a generated province ({} dossiers, 2018-Q1 to 2019-Q4)…",
            data.display(),
            config.dossiers
        );
        let started = std::time::Instant::now();
        let mut batch = Vec::with_capacity(BATCH_EVENTS_MAX);
        let mut appended = 0;
        for e in generator::Generator::new(&config) {
            batch.push(Submitted::from(e));
            if batch.len() == BATCH_EVENTS_MAX {
                appended += batch.len();
                log.append_blocking(AppendRequest {
                    events: std::mem::take(&mut batch),
                    source: "demo".into(),
                })?;
            }
        }
        appended += batch.len();
        if !batch.is_empty() {
            log.append_blocking(AppendRequest {
                events: batch,
                source: "demo".into(),
            })?;
        }
        println!(
            "appended {appended} events durably in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("casetrail demo: reusing the log in {}", data.display());
    }
    let tokens = demo_tokens(&log, data)?;
    let head = log.head();
    drop(log);
    stats(data)?;
    let code = verify(data)?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    println!("\nlog size {}, audit root {}", head.size, head.root);
    println!("\nQ1 2019 by level (casetrail report --period 2019-Q1 --group level):\n");
    let report = std::process::Command::new(std::env::current_exe()?)
        .arg("--data")
        .arg(data)
        .args(["report", "--period", "2019-Q1", "--group", "level"])
        .status()?;
    if !report.success() {
        return Err("the demo report failed".into());
    }
    let mut settings = data.settings();
    settings.listen = listen;
    crate::serve::run_until_stopped(settings, |running, _| {
        println!(
            "\ncasetrail demo: the dashboard is at http://{}/dashboard/",
            running.addr
        );
        println!(
            "tokens, one per role (kept in {}):",
            data.join(DEMO_TOKENS).display()
        );
        for (role, token) in &tokens {
            println!("  {role:<8} {token}");
        }
        println!("the API: docs/api.md; stop with Ctrl-C");
    })
}

/// Where the demo keeps the tokens it made, so that a second run can show them again. A demo convenience: real
/// deployments keep tokens only as hashes.
const DEMO_TOKENS: &str = "demo-tokens.txt";

/// The agency the demo's ingest token may write for: a department of the generated province.
const DEMO_INGEST_AGENCY: &str = "000.00.03.H27";

/// The demo's tokens, one per role: read back from `DEMO_TOKENS`, or made (and written there, mode 0600).
fn demo_tokens(log: &SledLog, data: &Path) -> Result<Vec<(String, String)>> {
    let path = data.join(DEMO_TOKENS);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let tokens: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(r, t)| (r.to_owned(), t.trim().to_owned()))
            .collect();
        if tokens.len() == 4 {
            return Ok(tokens);
        }
    }
    let mut tokens = Vec::new();
    for role in [
        domain::Role::Admin,
        domain::Role::Analyst,
        domain::Role::Auditor,
        domain::Role::Ingest,
    ] {
        let agency = (role == domain::Role::Ingest)
            .then(|| domain::AgencyCode::parse(DEMO_INGEST_AGENCY))
            .transpose()?;
        let name = format!("demo-{role}-{}", chrono::Utc::now().timestamp_micros());
        let issued = app::tokens::issue(log, name, role, agency, chrono::Utc::now())
            .map_err(crate::commands::explain)?;
        tokens.push((role.to_string(), issued.token));
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    for (role, token) in &tokens {
        writeln!(file, "{role} {token}")?;
    }
    file.sync_all()?;
    Ok(tokens)
}

pub fn append_loop(
    data: &DataDir,
    seed: u64,
    prefix: &str,
    events: usize,
    threads: usize,
    index_flush_ms: Option<u64>,
) -> Result<ExitCode> {
    use rand::{Rng, SeedableRng};
    let mut config = config(data);
    if let Some(ms) = index_flush_ms {
        config.index_flush_after = std::time::Duration::from_millis(ms);
    }
    let log = std::sync::Arc::new(SledLog::open(config)?);
    let per_thread = events.div_ceil(threads.max(1));
    let workers: Vec<_> = (0..threads.max(1))
        .map(|t| {
            let log = log.clone();
            let prefix = format!("{prefix}{t}");
            std::thread::spawn(move || -> std::result::Result<(), String> {
                let start = crate::gen::vn()
                    .with_ymd_and_hms(2019, 1, 2, 8, 0, 0)
                    .single()
                    .expect("valid");
                let mut g = crate::gen::Generator::new(seed * 1000 + t as u64, &prefix, start, 360);
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ t as u64);
                let mut done = 0;
                while done < per_thread {
                    let dossier = g.dossier();
                    for chunk in dossier.chunks(rng.gen_range(1..=dossier.len())) {
                        let events = chunk.iter().cloned().map(Submitted::from).collect();
                        let outcome = log
                            .append_blocking(AppendRequest {
                                events,
                                source: "crash-test".into(),
                            })
                            .map_err(|e| e.to_string())?;
                        let mut out = std::io::stdout().lock();
                        for r in outcome.receipts {
                            writeln!(out, "ack {} {}", r.id, r.position)
                                .map_err(|e| e.to_string())?;
                        }
                        out.flush().map_err(|e| e.to_string())?;
                        done += chunk.len();
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a writer thread panicked")??;
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies a file or a directory tree, fsyncing each copy, keeping permissions (the signing key is 0600).
fn copy_durably(from: &Path, to: &Path) -> Result<()> {
    let kind = std::fs::symlink_metadata(from)?.file_type();
    if !kind.is_dir() && !kind.is_file() {
        // A link, a pipe, a socket: not casetrail's; left where it is, in the old directory.
        eprintln!(
            "casetrail: {} is not a plain file or directory; not copied",
            from.display()
        );
        return Ok(());
    }
    if kind.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_durably(&entry.path(), &to.join(entry.file_name()))?;
        }
        std::fs::File::open(to)?.sync_all()?;
    } else {
        std::fs::copy(from, to)?;
        std::fs::File::open(to)?.sync_all()?;
    }
    Ok(())
}

/// fsyncs the directory holding `path`, so that a rename into it survives a power cut.
fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()?;
    Ok(())
}

/// `casetrail upgrade`: rewrites a format-1 data directory in format 2. The new log is built beside the old one
/// (`<data>.upgrading`) by appending every event with its stored fields, so that each lands at its position with
/// its version, recorded time and source, and the same canonical bytes; then credentials and signed checkpoints are
/// copied as they are, the roots of both are compared, and only then are the directories swapped. The old one is
/// kept as `<data>.format1` until the user removes it.
pub fn upgrade(data: &DataDir) -> Result<ExitCode> {
    let name = data
        .file_name()
        .ok_or("the data directory has no name")?
        .to_string_lossy()
        .into_owned();
    let beside = |suffix: &str| data.with_file_name(format!("{name}.{suffix}"));
    let (building, kept) = (beside("upgrading"), beside("format1"));
    if !data.join("db").exists() {
        // An upgrade stopped between its two renames: the old log is kept, the new one complete. Finish it.
        if kept.join("db").exists() && building.join("db").exists() && !data.exists() {
            std::fs::rename(&building, data)?;
            sync_parent(data)?;
            println!(
                "finished the upgrade of {} that stopped before its last step; format 1 is kept in {}",
                data.display(),
                kept.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        return Err(format!("{} holds no casetrail log", data.display()).into());
    }
    // Format 2's first layout is converted in place: the same blocks and indexes, sparser audit hashes.
    let converting = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("converting the audit hashes [{bar:40}] {pos} events")
            .expect("valid template")
            .progress_chars("=> "),
    );
    if let Some(head) = SledLog::convert_dense(&config(data), |n| converting.set_position(n))? {
        converting.finish_and_clear();
        println!(
            "converted {} from format 2's first layout: {} events, root {} (unchanged)",
            data.display(),
            head.size,
            head.root
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(old) = store::format1::Format1::open(data)? else {
        println!("{} is already in format 2: nothing to do", data.display());
        return Ok(ExitCode::SUCCESS);
    };
    let size = old.size()?;
    let old_root = old.root(size)?;
    if kept.exists() {
        return Err(format!(
            "{} exists already (an earlier upgrade's copy of format 1?); move it away first",
            kept.display()
        )
        .into());
    }
    if building.exists() {
        // What an interrupted upgrade left: never served, rebuilt from the start.
        std::fs::remove_dir_all(&building)?;
    }
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("upgrading to format 2 [{bar:40}] {pos}/{len} events ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let new = SledLog::open(data.settings_at(&building).store_config())?;
    let mut batch: Vec<Submitted> = Vec::with_capacity(BATCH_EVENTS_MAX);
    let mut events = old.events();
    loop {
        let next = events.next().transpose()?;
        if let Some((position, bytes)) = &next {
            let stored = domain::StoredEvent::from_canonical_bytes(bytes).map_err(|e| {
                format!("format 1, position {position}: {e}; run `casetrail verify` on it")
            })?;
            batch.push(Submitted::from(stored));
        }
        if batch.len() == BATCH_EVENTS_MAX || (next.is_none() && !batch.is_empty()) {
            let n = batch.len() as u64;
            new.append_blocking(AppendRequest {
                events: std::mem::take(&mut batch),
                source: "casetrail-upgrade".into(),
            })
            .map_err(|e| format!("format 1 holds events format 2 refuses: {e}"))?;
            progress.inc(n);
        }
        if next.is_none() {
            break;
        }
    }
    new.adopt(&old)?;
    let new_head = new.head();
    new.close();
    drop(new);
    drop(events);
    drop(old);
    progress.finish_and_clear();
    if new_head.size != size || new_head.root != old_root {
        return Err(format!(
            "the rewritten log ({} events, root {}) differs from format 1 ({size} events, root {old_root}); {} is left as it was",
            new_head.size,
            new_head.root,
            data.display()
        )
        .into());
    }
    // Everything that is not sled's own files (the signing key, indicator snapshots) is copied into the new
    // directory, so that the old one stays whole until the swap (the snapshots name positions and roots, which are
    // the same, so they stay valid).
    for entry in std::fs::read_dir(data)? {
        let entry = entry?;
        let file = entry.file_name();
        let f = file.to_string_lossy();
        if f == "db" || f == "conf" || f == "blobs" || f.starts_with("snap.") {
            continue;
        }
        copy_durably(&entry.path(), &building.join(&file))?;
    }
    std::fs::File::open(&building)?.sync_all()?;
    // sled's flusher lets go of the old directory's lock a moment after its last handle is dropped.
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::fs::rename(data, &kept)?;
    std::fs::rename(&building, data)?;
    sync_parent(data)?;
    println!(
        "upgraded {} to format 2: {size} events, root {old_root} (unchanged); format 1 is kept in {} until you remove it",
        data.display(),
        kept.display()
    );
    Ok(ExitCode::SUCCESS)
}
