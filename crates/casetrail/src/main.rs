//! `casetrail`: the one binary. Each subcommand lives in its own module; `main` parses, runs, and turns an error
//! into one line on stderr and a non-zero exit.

/// sled 0.34 allocates and frees a node copy on every write; mimalloc measurably beats glibc malloc at that
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod batches;
mod bench;
mod cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "casetrail",
    version,
    about = "Event-sourced case tracking for Vietnam's one-stop-shop administrative services"
)]
struct Cli {
    /// The data directory (created if missing; only one process may have it open), or the log's PostgreSQL
    /// database, `postgres://user@host[,host2]/db?target_session_attrs=read-write`, which several nodes share
    /// (docs/scaling.md) [default: casetrail-data].
    #[arg(long, global = true, env = "CASETRAIL_DATA")]
    data: Option<PathBuf>,
    /// With the log on PostgreSQL: this node's own state directory (indicator snapshots; the signing key's file by
    /// default) [default: casetrail-state].
    #[arg(long, global = true, env = "CASETRAIL_STATE")]
    state: Option<PathBuf>,
    /// sled's page cache, in MiB [default: 512].
    #[arg(long, global = true, env = "CASETRAIL_CACHE_MB")]
    cache_mb: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum GeneratedForm {
    Stored,
    Submitted,
}

#[derive(Subcommand)]
enum Command {
    /// Append the events of an NDJSON file (or - for stdin), in batches of up to 1,000, all or nothing each.
    Import {
        file: PathBuf,
        /// The `source` recorded for events that do not carry their own (exported events keep theirs).
        #[arg(long, default_value = "import")]
        source: String,
    },
    /// Import a one-stop system's DVCQG sync log: NDJSON, one sync request (or an array of them) per line, as
    /// `POST /v1/adapters/dvcqg` takes them. Personal fields are dropped; importing the same file twice writes
    /// nothing the second time (docs/integration.md).
    ImportDvcqg {
        file: PathBuf,
        /// The site's mapping (TOML); the portal's own codes otherwise.
        #[arg(long, env = "CASETRAIL_DVCQG_MAPPING")]
        mapping: Option<PathBuf>,
        /// The name recorded in each event's source, before the mapping's tag.
        #[arg(long, default_value = "import-dvcqg")]
        source: String,
    },
    /// Write the whole log as NDJSON, stored fields included: importing it into an empty directory gives the
    /// same log, byte for byte, with the same audit root.
    Export {
        /// Only events after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Re-hash every event, recompute the audit root, check every index and stream rule; name the first bad
    /// position.
    Verify,
    /// Audit: the verifier key, signed checkpoints, dossier bundles, and the offline checks of bundles and
    /// checkpoints (docs/audit.md).
    Audit {
        #[command(subcommand)]
        what: cmd::audit::AuditCommand,
    },
    /// Counts, sizes and the audit root.
    Stats,
    /// Rebuild the index (ids, stream heads, positions) and the audit hashes from the stored events alone.
    RebuildIndexes,
    /// Rewrite a data directory of format 1 in format 2 (docs/storage.md): same events, roots, credentials and
    /// checkpoints; the old directory is kept beside it as `<data>.format1`.
    Upgrade,
    /// Move a whole log to another store, with its credentials and signed checkpoints: a sled directory to a
    /// PostgreSQL database or back (docs/scaling.md). The destination must be empty, or hold the source's first
    /// events (an interrupted migration resumes there); it ends with the same events, bytes and audit root.
    Migrate {
        /// The log to copy: a data directory or `postgres://…`.
        #[arg(long)]
        from: String,
        /// Where to: an empty (or partly migrated) data directory or `postgres://…` database.
        #[arg(long)]
        to: String,
    },
    /// Run the HTTP service (docs/api.md) on the data directory. SIGTERM or Ctrl-C stops it gracefully.
    Serve(cmd::serve::ServeArgs),
    /// Manage API tokens while no server runs (a running server offers the same under /v1/tokens).
    Token {
        #[command(subcommand)]
        what: cmd::serve::TokenCommand,
    },
    /// Ask a running server for a health endpoint; exit 0 when it answers 200 (for container health checks,
    /// where no curl is installed).
    Probe {
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Benchmarks; see docs/benchmarks.md.
    Bench {
        #[command(subcommand)]
        what: bench::What,
    },
    /// Write a generated province (agencies, procedures, targets, dossiers) as NDJSON to stdout, in log order.
    Generate {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Dossiers received over the whole range.
        #[arg(long, default_value_t = 10_000)]
        dossiers: u64,
        /// First period of receipts (e.g. 2018-Q1).
        #[arg(long, default_value = "2018-Q1")]
        from: domain::Period,
        /// Last period of receipts (e.g. 2019-Q4); nothing happens after it ends.
        #[arg(long, default_value = "2019-Q4")]
        to: domain::Period,
        /// `stored`: as `casetrail export` writes them (position, version, recorded_at, source), for `import`;
        /// `submitted`: the envelopes a one-stop-shop system would post, for `POST /v1/events`.
        #[arg(long, default_value = "stored")]
        form: GeneratedForm,
    },
    /// An indicator table (indicators.md), offline from the data directory or from a server with --url.
    Report(cmd::report::ReportArgs),
    /// Check a table as a province published it (CSV): whether each row adds up, whether each printed percentage
    /// equals its counts under some profile (naming which, rounded or truncated), and with --period whether the
    /// counts equal the log's. A slip is named with the correct value. Exits 3 when something does not hold.
    CheckReport(cmd::check::CheckArgs),
    /// The demo: fill the data directory (on first run) with a generated province (2018-Q1 to 2019-Q4), check and
    /// describe it, make a token per role, and serve the dashboard and the API until Ctrl-C.
    Demo {
        /// Address to serve on; port 0 picks a free port.
        #[arg(long, env = "CASETRAIL_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Test helper: append generated events from several threads, printing `ack <id> <position>` for each
    /// acknowledged event, until killed or done.
    #[command(hide = true)]
    AppendLoop {
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value = "C")]
        prefix: String,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// How long the indexer may let entries wait, in milliseconds (a long wait keeps the indexes behind the
        /// log when the test kills the process).
        #[arg(long)]
        index_flush_ms: Option<u64>,
    },
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let state = cli.state.clone();
    let data = cmd::DataDir::new(cli.data, cli.state, cli.cache_mb);
    let result = match cli.command {
        Command::Import { file, source } => cmd::import(&data, &file, &source),
        Command::ImportDvcqg {
            file,
            mapping,
            source,
        } => cmd::import_dvcqg(&data, &file, mapping.as_deref(), &source),
        Command::Export { after, output } => cmd::export(&data, after, output.as_deref()),
        Command::Verify => cmd::verify(&data),
        Command::Stats => cmd::stats(&data),
        Command::Audit { what } => cmd::audit::run(&data, what),
        Command::RebuildIndexes => cmd::rebuild(&data),
        Command::Upgrade => cmd::upgrade(&data),
        Command::Migrate { from, to } => cmd::migrate(&from, &to, state.as_deref()),
        Command::Serve(args) => cmd::serve::serve(&data, args),
        Command::Token { what } => cmd::serve::token(&data, what),
        Command::Probe { url } => cmd::serve::probe(&url),
        Command::Bench { what } => bench::run(what, &data),
        Command::Generate {
            seed,
            dossiers,
            from,
            to,
            form,
        } => cmd::generate(&generator::Config::new(seed, dossiers, from, to), form),
        Command::Demo { listen } => cmd::demo(&data, listen),
        Command::Report(args) => cmd::report::report(&data, args),
        Command::CheckReport(args) => cmd::check::check_report(&data, args),
        Command::AppendLoop {
            seed,
            prefix,
            events,
            threads,
            index_flush_ms,
        } => cmd::append_loop(&data, seed, &prefix, events, threads, index_flush_ms),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("casetrail: {e}");
            ExitCode::FAILURE
        }
    }
}
