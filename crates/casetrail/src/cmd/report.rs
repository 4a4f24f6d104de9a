//! `casetrail report`: an indicator table, offline from a data directory or from a running server.

use crate::cmd::serve::IndicatorArgs;
use crate::cmd::Result;
use app::indicators::{Indicators, Query};
use clap::Args;
use domain::{AgencyCode, Period};
use projections::indicators::form::{render_form, FormBy};
use projections::indicators::render::{self, Format, Lang};
use projections::indicators::Group;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct ReportArgs {
    /// The period: 2019-03, 2019-Q1 or 2019. With --to, the first of a series.
    #[arg(long)]
    period: Period,
    /// The last period of a series (same kind as --period).
    #[arg(long)]
    to: Option<Period>,
    /// agency, subtree, level or province.
    #[arg(long, default_value = "agency")]
    group: Group,
    /// Only this agency and what is registered below it.
    #[arg(long, value_parser = |s: &str| AgencyCode::parse(s))]
    agency: Option<AgencyCode>,
    /// table (aligned text), csv, xlsx or json [default: from --output's extension (.xlsx, .csv, .json), else
    /// table; the form has no text form and comes as csv then].
    #[arg(long)]
    format: Option<Format>,
    /// Column headers: vi or en.
    #[arg(long, default_value = "vi")]
    lang: Lang,
    /// Count only events up to this log position.
    #[arg(long)]
    as_of: Option<u64>,
    /// Count only events recorded by this instant (RFC 3339) or by the end of this day (YYYY-MM-DD, Vietnam time).
    #[arg(long)]
    known_at: Option<String>,
    /// A report profile's id (national, kon-tum, vinh-phuc, over-resolved, form-folded, or one of --profiles):
    /// the definitions of the rates, the form's classes, the rounding and the period cut [default: national].
    #[arg(long)]
    profile: Option<String>,
    /// The official dossier-count form (Circular 01/2020/TT-VPCP) instead of the indicator table: xlsx (the form
    /// with its merged headers), csv or json; its identities are checked before it is written.
    #[arg(long)]
    form: bool,
    /// The form's rows: agency (one per agency, a subtotal per level), level, or field (one per procedure field
    /// within each level, a subtotal per level).
    #[arg(long, default_value = "agency", requires = "form")]
    by: FormBy,
    /// Ask a running server instead of reading the data directory.
    #[arg(long)]
    url: Option<String>,
    /// Bearer token for --url (or CASETRAIL_TOKEN), when the server's indicators are not public.
    #[arg(long, env = "CASETRAIL_TOKEN")]
    token: Option<String>,
    /// Write here instead of stdout (an XLSX workbook is never written to a terminal).
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    indicators: IndicatorArgs,
}

fn write_out(bytes: &[u8], output: Option<&Path>, format: Format) -> Result<ExitCode> {
    use std::io::IsTerminal;
    match output {
        Some(path) => {
            std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None if format == Format::Xlsx && std::io::stdout().is_terminal() => {
            return Err("an XLSX workbook is binary: give --output FILE or redirect stdout".into())
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes).and_then(|_| out.flush());
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl ReportArgs {
    /// The format asked for, or the one `--output`'s extension names, or text.
    fn format(&self) -> Format {
        let by_extension = || {
            let extension = self
                .output
                .as_ref()?
                .extension()?
                .to_str()?
                .to_ascii_lowercase();
            extension.parse::<Format>().ok()
        };
        self.format.or_else(by_extension).unwrap_or(Format::Text)
    }
}

pub fn report(data: &crate::cmd::DataDir, args: ReportArgs) -> Result<ExitCode> {
    if let Some(to) = args.to {
        if to.kind() != args.period.kind() || to < args.period {
            return Err(format!(
                "--to {to} must be of the same kind as --period {}, and not before it",
                args.period
            )
            .into());
        }
    }
    match &args.url {
        Some(url) => remote(url, &args),
        None => local(data, &args),
    }
}

fn remote(url: &str, args: &ReportArgs) -> Result<ExitCode> {
    let base = url.trim_end_matches('/');
    let (path, mut params) = match (args.form, args.to) {
        (true, to) => {
            let mut p = vec![
                ("period", args.period.to_string()),
                ("by", args.by.to_string()),
            ];
            p.extend(to.map(|to| ("to", to.to_string())));
            ("/v1/indicators/form", p)
        }
        (false, Some(to)) => (
            "/v1/indicators/series",
            vec![("from", args.period.to_string()), ("to", to.to_string())],
        ),
        (false, None) => ("/v1/indicators", vec![("period", args.period.to_string())]),
    };
    if !args.form {
        params.push(("group", args.group.to_string()));
    }
    params.push(("format", args.format().extension().replace("txt", "text")));
    params.push((
        "lang",
        match args.lang {
            Lang::Vi => "vi".into(),
            Lang::En => "en".into(),
        },
    ));
    if let Some(a) = &args.agency {
        params.push(("agency", a.to_string()));
    }
    if let Some(p) = args.as_of {
        params.push(("as_of", p.to_string()));
    }
    if let Some(t) = &args.known_at {
        params.push(("known_at", t.clone()));
    }
    if let Some(p) = &args.profile {
        params.push(("profile", p.clone()));
    }
    let client = reqwest::blocking::Client::new();
    let mut request = client.get(format!("{base}{path}")).query(&params);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let bytes = crate::cmd::answered(base, request)?;
    write_out(&bytes, args.output.as_deref(), args.format())
}

fn local(data: &crate::cmd::DataDir, args: &ReportArgs) -> Result<ExitCode> {
    let log = crate::cmd::open_to_read(data, false)?;
    let settings = args.indicators.settings(data)?;
    let indicators = Indicators::open_for(&*log, &settings)?;
    let periods = match args.to {
        None => vec![args.period],
        Some(to) => app::indicators::series(args.period, to).map_err(|e| format!("--to {e}"))?,
    };
    let known_at = args
        .known_at
        .as_deref()
        .map(str::parse::<domain::KnownAt>)
        .transpose()?;
    let group = match (args.form, args.by) {
        (false, _) => args.group,
        (true, FormBy::Agency | FormBy::Field) => Group::Agency,
        (true, FormBy::Level) => Group::Level,
    };
    let query = Query {
        periods,
        group,
        scope: args.agency.clone(),
        as_of: args.as_of,
        known_at,
        profile: args.profile.clone(),
    };
    let answer = if args.form {
        indicators.form_answer(&*log, &query, args.by)
    } else {
        indicators.answer(&*log, &query)
    }
    .map_err(|e| e.to_string())?;
    if args.form {
        let forms = app::indicators::forms(&answer, args.by, args.lang)?;
        let bytes = render_form(args.format(), &answer.stamp, &forms, args.lang)?;
        return write_out(&bytes, args.output.as_deref(), args.format());
    }
    let bytes = render::render(
        args.format(),
        &answer.stamp,
        args.group,
        args.agency.as_ref(),
        &answer.tables,
        &indicators.card,
        args.lang,
    )?;
    write_out(&bytes, args.output.as_deref(), args.format())
}
