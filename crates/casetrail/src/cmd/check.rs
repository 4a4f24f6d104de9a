//! `casetrail check-report`: a published table checked row by row (sums, printed percentages), and against the
//! log when `--period` names the period it covers. Offline from a data directory, or from a server with `--url`.

use crate::cmd::serve::IndicatorArgs;
use crate::cmd::Result;
use app::check::CheckQuestion;
use app::indicators::Indicators;
use clap::{Args, ValueEnum};
use domain::{AgencyCode, Period};
use projections::indicators::check::{
    CheckReport, Format, ReportWriter, RowCheck, Source, Summary, Table,
};
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

/// A table from stdin, copied to an unnamed file in TMPDIR: the check reads its table twice.
fn spooled_stdin() -> Result<std::fs::File> {
    let mut file =
        tempfile::tempfile().map_err(|e| format!("a file in TMPDIR for stdin's table: {e}"))?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file).map_err(|e| {
        let room = if e.raw_os_error() == Some(28) {
            " (TMPDIR is full: set TMPDIR to a directory with room for the table, or give the file's path)"
        } else {
            ""
        };
        format!("copying stdin's table to TMPDIR: {e}{room}")
    })?;
    Ok(file)
}

/// Checks the table, writing each row's answer as it is checked (`--format json` writes the JSON a server
/// answers, row by row): the table is read twice from its file (stdin copied to one first), never held whole.
pub fn check_report(data: &crate::cmd::DataDir, args: CheckArgs) -> Result<ExitCode> {
    let format = match args.format {
        CheckFormat::Text => Format::Text,
        CheckFormat::Json => Format::Json,
    };
    let mut writer = ReportWriter::new(std::io::BufWriter::new(std::io::stdout().lock()), format);
    let stdin = args.file.as_os_str() == "-";
    let spooled = if stdin { Some(spooled_stdin()?) } else { None };
    let summary = match (&args.url, &spooled) {
        (Some(url), _) => {
            let body = match &spooled {
                Some(file) => {
                    let mut file = file
                        .try_clone()
                        .map_err(|e| format!("stdin's table: {e}"))?;
                    std::io::Seek::rewind(&mut file).map_err(|e| format!("stdin's table: {e}"))?;
                    file
                }
                None => std::fs::File::open(&args.file)
                    .map_err(|e| format!("{}: {e}", args.file.display()))?,
            };
            remote(url, &args, body, &mut writer)?
        }
        (None, Some(file)) => local(data, &args, Table::open(file)?, &mut writer)?,
        (None, None) => local(data, &args, Table::open(args.file.as_path())?, &mut writer)?,
    };
    match writer.finish(&summary) {
        Ok(_) => {}
        // A closed pipe (`| head`) ends the output quietly; the exit code is still the whole table's.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(format!("writing the answer: {e}").into()),
    }
    Ok(if summary.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DOES_NOT_HOLD)
    })
}

type Writer<'a> = ReportWriter<std::io::BufWriter<std::io::StdoutLock<'a>>>;

fn local<S: Source>(
    data: &crate::cmd::DataDir,
    args: &CheckArgs,
    table: Table<S>,
    writer: &mut Writer,
) -> Result<Summary> {
    let settings = args.indicators.settings(data)?;
    let question = CheckQuestion {
        period: args.period,
        profile: args.profile.clone(),
        scope: args.agency.clone(),
    };
    let emit = |row: RowCheck| writer.row(&row);
    if args.period.is_none() {
        // The table alone: no log, and no data directory opened.
        let profiles = app::indicators::profiles(settings.profiles.as_deref())?;
        return Ok(app::check::stream_alone(
            &profiles, &table, &question, emit,
        )?);
    }
    if data.database.is_none() && !data.join("db").exists() {
        return Err(format!("{} holds no casetrail log to compare with", data.display()).into());
    }
    let log = crate::cmd::open_to_read(data, false)?;
    let service = Indicators::open_for(&*log, &settings)?;
    Ok(app::check::stream_published(
        &service, &*log, &table, &question, emit,
    )?)
}

/// The server checks the table (sent as it is read from the file; the server holds it, within its body limit);
/// its answer is written row by row as an offline check writes it.
fn remote(
    url: &str,
    args: &CheckArgs,
    table: std::fs::File,
    writer: &mut Writer,
) -> Result<Summary> {
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
    let report: CheckReport = serde_json::from_slice(&bytes).map_err(|e| format!("{base}: {e}"))?;
    for row in &report.rows {
        writer.row(row);
    }
    Ok(report.summary)
}
