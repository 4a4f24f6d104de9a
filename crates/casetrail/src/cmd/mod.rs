//! The subcommands, a file each (or a few of a kind), and what they share: the data directory, opening the log,
//! progress bars, and how an error is printed.

pub mod audit;
pub mod check;
mod demo;
mod import;
mod log;
mod migrate;
pub mod report;
pub mod serve;
mod sync;

pub use demo::{demo, generate};
pub use import::import;
pub use log::{append_loop, export, rebuild, stats, upgrade, verify};
pub use migrate::migrate;
pub use sync::import_dvcqg;

use chrono::TimeZone;
use domain::parse::{check_batch_ids, parse_envelope, Form, BATCH_EVENTS_MAX};
use domain::{Submitted, ValidationError};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use store::{AppendError, AppendRequest, Config, EventLog, SledLog, Store};

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

/// Where the command line's log is (`--data`: a directory, or a PostgreSQL database with `--state` the node's own
/// directory), and sled's cache (`--cache-mb`). It dereferences to its local directory.
pub struct DataDir {
    /// The sled data directory, or with the log on PostgreSQL the node's state directory.
    pub path: std::path::PathBuf,
    /// The log's database, when it is on PostgreSQL.
    pub database: Option<String>,
    /// Whether `--data` (or `CASETRAIL_DATA`) named it, rather than the default.
    pub given: bool,
    /// `--cache-mb` (or `CASETRAIL_CACHE_MB`), if given.
    pub cache_mb_given: Option<u64>,
}

impl DataDir {
    pub fn new(
        path: Option<std::path::PathBuf>,
        state: Option<std::path::PathBuf>,
        cache_mb: Option<u64>,
    ) -> DataDir {
        let mut settings =
            app::Settings::new(path.clone().unwrap_or_else(|| app::DEFAULT_DATA.into()));
        settings.place(state);
        DataDir {
            given: path.is_some(),
            path: settings.data,
            database: settings.database,
            cache_mb_given: cache_mb,
        }
    }

    /// The service's settings for this log, every other one at its default.
    pub fn settings(&self) -> app::Settings {
        self.settings_at(&self.path)
    }

    /// The same settings for another directory (one a command builds beside this one).
    pub fn settings_at(&self, path: &Path) -> app::Settings {
        let mut settings = app::Settings::new(path);
        settings.database = self.database.clone();
        if let Some(mb) = self.cache_mb_given {
            settings.cache_mb = mb;
        }
        settings
    }

    /// What the log is, for messages: the directory, or the database without its password.
    pub fn describe(&self) -> String {
        match &self.database {
            Some(url) => pglog::redact(url),
            None => self.path.display().to_string(),
        }
    }

    /// Refuses a command that only sled has (an upgrade of sled's formats, the crash test's loop).
    pub fn sled_only(&self, command: &str) -> Result<()> {
        match &self.database {
            Some(_) => Err(format!(
                "`{command}` works on a sled data directory, not on a PostgreSQL log"
            )
            .into()),
            None => Ok(()),
        }
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

/// Opens the log the command line names, to read and write.
pub fn open(data: &DataDir) -> Result<Arc<dyn Store>> {
    open_settings(&data.settings(), false)
}

/// Opens the log `settings` name: the sled directory, or the PostgreSQL database (`inspection`: to look only).
pub fn open_settings(settings: &app::Settings, inspection: bool) -> Result<Arc<dyn Store>> {
    Ok(match &settings.database {
        Some(url) => Arc::new(pglog::PgLog::open(pg_config(settings, url, inspection))?),
        None => {
            let mut config = settings.store_config();
            config.inspection = inspection;
            Arc::new(SledLog::open(config)?)
        }
    })
}

/// The PostgreSQL log's settings from the service's.
pub fn pg_config(settings: &app::Settings, url: &str, inspection: bool) -> pglog::Config {
    let mut config = pglog::Config::new(url);
    config.clock_skew = chrono::Duration::seconds(settings.clock_skew_secs);
    config.stall = std::time::Duration::from_secs(settings.stall_secs.max(1));
    config.inspection = inspection;
    config
}

/// A log opened only to be read (export, verify, stats, an offline report): opened as it is, or, when the data
/// directory cannot be written (a read-only copy given to an auditor, a read-only mount), from a private copy of
/// it. sled 0.34 has no read-only mode: it opens its file for writing, locks it, and its recovery may truncate a
/// torn tail and write a snapshot, so a directory nobody may write cannot be opened in place. The copy is made in
/// the temporary directory (`TMPDIR`) and removed when the command ends; the original is never written.
pub struct Reading {
    log: Arc<dyn Store>,
    _copy: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Reading {
    type Target = dyn Store;
    fn deref(&self) -> &dyn Store {
        &*self.log
    }
}

/// Opens `data` to read it; `inspection` opens it as `verify` does (no check or catch-up of the indexes written).
pub(crate) fn open_to_read(data: &DataDir, inspection: bool) -> Result<Reading> {
    if data.database.is_some() {
        // Nothing is written through a reading command: the log opens to look only (and is not made).
        return Ok(Reading {
            log: open_settings(&data.settings(), true)?,
            _copy: None,
        });
    }
    holds_a_log(data)?;
    let mut config = config(data);
    config.inspection = inspection;
    let Some(why) = cannot_write(&data.path) else {
        return Ok(Reading {
            log: Arc::new(SledLog::open(config)?),
            _copy: None,
        });
    };
    let copy = private_copy(data, &why)?;
    config.path = copy.path().to_path_buf();
    // What the open says of the copy, said of the directory the user named.
    let log = SledLog::open(config).map_err(|e| {
        e.to_string().replace(
            &copy.path().display().to_string(),
            &data.display().to_string(),
        )
    })?;
    Ok(Reading {
        log: Arc::new(log),
        _copy: Some(copy),
    })
}

/// Opens `data` in place for `rebuild-indexes`, which writes what it rebuilds there (never into a copy).
fn open_for_inspection(data: &DataDir) -> Result<Arc<dyn Store>> {
    if data.database.is_some() {
        return open_settings(&data.settings(), true);
    }
    holds_a_log(data)?;
    let mut config = config(data);
    config.inspection = true;
    Ok(Arc::new(SledLog::open(config)?))
}

/// The commands that only look at a log refuse a directory without one, rather than make an empty log there; an
/// upgrade stopped between its renames is named, as an open names it.
fn holds_a_log(data: &DataDir) -> Result<()> {
    if data.join("db").exists() {
        return Ok(());
    }
    Err(match store::upgrade_stopped_halfway(&data.path) {
        Some(halfway) => halfway.into(),
        None => format!("{} holds no casetrail log", data.display()).into(),
    })
}

/// Why the data directory or its database file cannot be written by this process, if so: a read-only file system,
/// no permission, or (for root, whom permissions do not stop) a mode that allows nobody to write.
fn cannot_write(data: &Path) -> Option<std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    [data.to_path_buf(), data.join("db")]
        .iter()
        .find_map(|path| {
            let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
            // SAFETY: a valid NUL-terminated path; faccessat only reads it.
            let status = unsafe {
                libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS)
            };
            if status != 0 {
                return Some(std::io::Error::last_os_error());
            }
            let mode = std::fs::metadata(path).ok()?.permissions().mode();
            (mode & 0o222 == 0).then(|| {
                std::io::Error::other(format!("{} is mode {:o}", path.display(), mode & 0o777))
            })
        })
}

/// A copy of sled's files of `data` (`db`, `conf`, `snap.*`, `blobs/`; not the signing key or anything else) in
/// `TMPDIR`, made under a shared lock on the database file so that a process writing it (which holds sled's
/// exclusive lock) is refused rather than copied half way. The copy is writable by its owner, as sled needs.
fn private_copy(data: &DataDir, why: &std::io::Error) -> Result<tempfile::TempDir> {
    let original = std::fs::File::open(data.join("db"))
        .map_err(|e| format!("{}: {e}", data.join("db").display()))?;
    // SAFETY: a valid open descriptor; flock takes no pointer.
    if unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&original),
            libc::LOCK_SH | libc::LOCK_NB,
        )
    } != 0
    {
        return Err(store::StoreError::Locked(data.path.clone()).into());
    }
    let copy = tempfile::Builder::new()
        .prefix("casetrail-read-")
        .tempdir()
        .map_err(|e| {
            format!(
                "{} cannot be written ({why}), and a private copy cannot be made: {e}",
                data.display()
            )
        })?;
    let sleds = |name: &str| matches!(name, "db" | "conf" | "blobs") || name.starts_with("snap.");
    let bytes = copy_tree(&data.path, copy.path(), &sleds).map_err(|e| {
        let room = match e.raw_os_error() {
            Some(libc::ENOSPC) => "; set TMPDIR to a directory with room for it",
            _ => "",
        };
        format!(
            "{} cannot be written ({why}), and copying it to {} to read it failed: {e}{room}",
            data.display(),
            copy.path().display()
        )
    })?;
    eprintln!(
        "casetrail: {} cannot be written ({why}); sled opens its files for writing, so this reads a private copy \
         ({} MB in {}, removed when the command ends)",
        data.display(),
        bytes.div_ceil(1 << 20),
        copy.path().display()
    );
    Ok(copy)
}

/// Copies the entries of `from` that `take` names (and, below them, everything) into `to`: directories and regular
/// files, each file made writable by its owner. Returns the bytes copied.
fn copy_tree(from: &Path, to: &Path, take: &dyn Fn(&str) -> bool) -> std::io::Result<u64> {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if !take(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let (kind, target) = (entry.file_type()?, to.join(entry.file_name()));
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            bytes += copy_tree(&entry.path(), &target, &|_| true)?;
        } else if kind.is_file() {
            bytes += std::fs::copy(entry.path(), &target)?;
            let mut mode = std::fs::metadata(&target)?.permissions();
            mode.set_mode(mode.mode() | 0o600);
            std::fs::set_permissions(&target, mode)?;
        }
    }
    Ok(bytes)
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

/// Sends a request to a casetrail server and returns the body of a 2xx answer; any other answer is an error
/// carrying the problem's `detail` (or the body as it came).
pub fn answered(base: &str, request: reqwest::blocking::RequestBuilder) -> Result<Vec<u8>> {
    let response = request.send().map_err(|e| format!("{base}: {e}"))?;
    let status = response.status();
    let bytes = response.bytes().map_err(|e| format!("{base}: {e}"))?;
    if !status.is_success() {
        let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(format!("{base} answered {status}: {detail}").into());
    }
    Ok(bytes.to_vec())
}
