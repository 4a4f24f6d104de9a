//! `casetrail generate` and `casetrail demo`.

use super::*;

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
        let mut appended = 0;
        let events = generator::Generator::new(&config).map(Submitted::from);
        for batch in crate::batches::batches(events, BATCH_EVENTS_MAX) {
            appended += batch.len();
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
    let tokens = demo_tokens(&*log, data)?;
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
    crate::cmd::serve::run_until_stopped(settings, |running, _| {
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
fn demo_tokens(log: &dyn Store, data: &Path) -> Result<Vec<(String, String)>> {
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
            .map_err(crate::cmd::explain)?;
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
