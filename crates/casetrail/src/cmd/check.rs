//! `casetrail check-report`: a published table checked row by row (sums, printed percentages), and against the
//! log when `--period` names the period it covers. Offline from a data directory, or from a server with `--url`.

use crate::cmd::serve::IndicatorArgs;
use crate::cmd::Result;
use app::check::CheckQuestion;
use app::indicators::Indicators;
use clap::{Args, ValueEnum};
use domain::{AgencyCode, Period};
use projections::indicators::check::{self, CheckReport};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// What `check-report` exits with when it read the table and something in it does not hold.
pub const EXIT_DOES_NOT_HOLD: u8 = 3;

#[derive(Clone, Copy, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The published table as CSV (`-` for stdin): a header row, then rows of counts and printed percentages
    /// (docs/reports.md lists the columns it reads).
    file: PathBuf,
    /// The period the table covers (2023-Q1, 2021-03, 2019): its counts are then compared with the log's.
    #[arg(long)]
    period: Option<Period>,
    /// The profile to compare counts under [default: the one the printed percentages follow, else national].
    #[arg(long)]
    profile: Option<String>,
    /// Only this agency and what is registered below it (an agency's own table).
    #[arg(long, value_parser = |s: &str| AgencyCode::parse(s))]
    agency: Option<AgencyCode>,
    /// text (row by row, for a person) or json.
    #[arg(long, default_value = "text")]
    format: CheckFormat,
    /// Ask a running server instead of reading the data directory.
    #[arg(long)]
    url: Option<String>,
    /// Bearer token for --url (or CASETRAIL_TOKEN), when the server's indicators are not public.
    #[arg(long, env = "CASETRAIL_TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    indicators: IndicatorArgs,
}

fn read_table(file: &PathBuf) -> Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("stdin: {e}"))?;
        return Ok(bytes);
    }
    Ok(std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?)
}

pub fn check_report(data: &crate::cmd::DataDir, args: CheckArgs) -> Result<ExitCode> {
    let table = read_table(&args.file)?;
    let report: CheckReport = match &args.url {
        Some(url) => remote(url, &args, table)?,
        None => local(data, &args, &table)?,
    };
    let out = match args.format {
        CheckFormat::Text => check::text(&report),
        CheckFormat::Json => {
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n"
        }
    };
    // A closed pipe (`| head`) ends the output quietly.
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, out.as_bytes())
        .and_then(|_| std::io::Write::flush(&mut stdout));
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DOES_NOT_HOLD)
    })
}

fn local(data: &crate::cmd::DataDir, args: &CheckArgs, table: &[u8]) -> Result<CheckReport> {
    let settings = args.indicators.settings(data)?;
    let question = CheckQuestion {
        period: args.period,
        profile: args.profile.clone(),
        scope: args.agency.clone(),
    };
    if args.period.is_none() {
        // The table alone: no log, and no data directory opened.
        let profiles = app::indicators::profiles(settings.profiles.as_deref())?;
        return Ok(app::check::check_alone(&profiles, table, &question)?.1);
    }
    if !data.join("db").exists() {
        return Err(format!("{} holds no casetrail log to compare with", data.display()).into());
    }
    let log = crate::cmd::open_to_read(data, false)?;
    let service = Indicators::open_for(&log, &settings)?;
    Ok(app::check::check_published(
        &service, &log, table, &question,
    )?)
}

fn remote(url: &str, args: &CheckArgs, table: Vec<u8>) -> Result<CheckReport> {
    let base = url.trim_end_matches('/');
    let mut params = Vec::new();
    if let Some(p) = args.period {
        params.push(("period", p.to_string()));
    }
    if let Some(p) = &args.profile {
        params.push(("profile", p.clone()));
    }
    if let Some(a) = &args.agency {
        params.push(("agency", a.to_string()));
    }
    let client = reqwest::blocking::Client::new();
    let mut request = client
        .post(format!("{base}/v1/indicators/check"))
        .query(&params)
        .header("content-type", "text/csv")
        .body(table);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let bytes = crate::cmd::answered(base, request)?;
    Ok(serde_json::from_slice(&bytes).map_err(|e| format!("{base}: {e}"))?)
}
