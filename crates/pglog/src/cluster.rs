//! A private PostgreSQL cluster, for tests and benchmarks: made with the Debian binaries in a temporary
//! directory, on a loopback port of its own, and stopped by its postmaster's PID when dropped. Never a server
//! that happens to be running.
//!
//! `initdb` refuses to run as root, so as root the cluster belongs to the `postgres` user (its binaries are run
//! under that user's ids); as anyone else it belongs to that user. The postmaster runs in a process group of its
//! own, so that [`Cluster::kill`] is the loss of the machine (every backend at once), not of one process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts PostgreSQL 15's server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// How a cluster is made.
#[derive(Clone, Debug)]
pub struct Options {
    /// `fsync` and `full_page_writes` off: only for tests that never lose the machine (conformance, simulation).
    pub fast_unsafe: bool,
    /// `shared_buffers`, in MiB.
    pub shared_buffers_mb: u32,
    pub max_connections: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            fast_unsafe: false,
            shared_buffers_mb: 128,
            max_connections: 200,
        }
    }
}

/// A running cluster.
pub struct Cluster {
    /// Holds the data directory (and the socket directory) while the cluster lives.
    dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    postmaster: Option<Child>,
    owner: Owner,
}

/// Whose ids the cluster's processes run under.
#[derive(Clone, Copy)]
struct Owner {
    uid: Option<(u32, u32)>,
}

impl Owner {
    fn find() -> std::io::Result<Owner> {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            return Ok(Owner { uid: None });
        }
        let name = std::ffi::CString::new("postgres").expect("no NUL");
        // SAFETY: a valid NUL-terminated name; the record is read at once, before any other call.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            return Err(std::io::Error::other(
                "running as root, and there is no `postgres` user to own a cluster (install postgresql-15)",
            ));
        }
        // SAFETY: getpwnam returned a valid record.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        Ok(Owner {
            uid: Some((uid, gid)),
        })
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(program);
        if let Some((uid, gid)) = self.uid {
            c.uid(uid).gid(gid);
            c.env("HOME", "/var/lib/postgresql");
        }
        c.env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST");
        c
    }

    fn own(&self, path: &Path) -> std::io::Result<()> {
        if let Some((uid, gid)) = self.uid {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        Ok(())
    }
}

/// Installs PostgreSQL 15 from Debian's packages when its binaries are missing (`scripts/install-postgres`).
pub fn ensure_installed() -> std::io::Result<()> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        if Path::new(PG_BIN).join("postgres").exists() {
            return Ok(());
        }
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/install-postgres"
        );
        let status = Command::new("bash")
            .arg(script)
            .status()
            .map_err(|e| format!("{script}: {e}"))?;
        if status.success() && Path::new(PG_BIN).join("postgres").exists() {
            Ok(())
        } else {
            Err(format!(
                "PostgreSQL 15 is missing and {script} could not install it"
            ))
        }
    })
    .clone()
    .map_err(std::io::Error::other)
}

/// A free loopback port (free when asked; the cluster takes it a moment later).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn run(mut c: Command, what: &str) -> std::io::Result<()> {
    let out = c.stdin(Stdio::null()).output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

impl Cluster {
    /// Makes and starts a new cluster.
    pub fn start(options: &Options) -> std::io::Result<Cluster> {
        ensure_installed()?;
        let owner = Owner::find()?;
        let dir = tempfile::Builder::new().prefix("casetrail-pg").tempdir()?;
        owner.own(dir.path())?;
        let data = dir.path().join("data");
        let mut initdb = owner.command(Path::new(PG_BIN).join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "-U",
                "postgres",
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb")?;
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nshared_buffers = {}MB\n\
             max_connections = {}\nmax_wal_senders = 10\nwal_level = replica\nhot_standby = on\n\
             wal_keep_size = 256MB\nmax_wal_size = 2GB\nlogging_collector = off\n",
            dir.path().display(),
            options.shared_buffers_mb,
            options.max_connections,
        );
        if options.fast_unsafe {
            conf.push_str("fsync = off\nfull_page_writes = off\n");
        }
        append(&data.join("postgresql.conf"), &conf)?;
        // Replication from loopback, for standbys made with pg_basebackup.
        append(
            &data.join("pg_hba.conf"),
            "\nhost replication all 127.0.0.1/32 trust\n",
        )?;
        let mut cluster = Cluster {
            dir,
            data,
            port: 0,
            postmaster: None,
            owner,
        };
        cluster.launch(None)?;
        Ok(cluster)
    }

    /// Starts the postmaster (on `port` if given, else a new free port), and waits until it accepts connections.
    fn launch(&mut self, port: Option<u16>) -> std::io::Result<()> {
        use std::os::unix::process::CommandExt;
        let mut last = None;
        for attempt in 0..5 {
            let port = match port {
                Some(p) if attempt < 4 => p,
                _ => free_port()?,
            };
            let log =
                std::fs::File::create(self.dir.path().join(format!("postmaster-{port}.log")))?;
            let mut c = self.owner.command(Path::new(PG_BIN).join("postgres"));
            c.arg("-D")
                .arg(&self.data)
                .args(["-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0);
            let child = c.spawn()?;
            self.port = port;
            self.postmaster = Some(child);
            match self.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = Some(e);
                    self.kill();
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the postmaster did not start")))
    }

    fn wait_ready(&mut self, within: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let ready = Command::new(Path::new(PG_BIN).join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()?;
            if ready.success() {
                return Ok(());
            }
            if let Some(child) = self.postmaster.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(std::io::Error::other(format!(
                        "the postmaster exited ({status}): {}",
                        self.log_tail()
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "the postmaster did not accept connections within {within:?}: {}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of the postmaster's log, for messages.
    pub fn log_tail(&self) -> String {
        let path = self
            .dir
            .path()
            .join(format!("postmaster-{}.log", self.port));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// The connection string of a database of this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL through `psql` against a database, and returns what it printed (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> std::io::Result<String> {
        let out = Command::new(Path::new(PG_BIN).join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", database, "-c", sql])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "psql: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Makes a new, empty database.
    pub fn create_database(&self, name: &str) -> std::io::Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url(name))
    }

    /// Stops the postmaster at once, with every backend: SIGKILL to its process group (a lost machine). The data
    /// directory stays, for [`Cluster::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            // SAFETY: signalling a process group we made; a stale id only fails.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// Starts the postmaster again on the same data directory (crash recovery after [`Cluster::kill`]), on the
    /// same port (a new one only if that stays taken).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let _ = std::fs::remove_file(self.data.join("postmaster.pid"));
        let port = self.port;
        self.launch(Some(port))
    }

    /// A fast shutdown (SIGINT to the postmaster), waited for; SIGKILL after 30 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.postmaster = Some(child);
        self.kill();
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// A streaming standby of this cluster, made with `pg_basebackup` over loopback (a replication slot of its
    /// own), named `name` (its `application_name`), started and replicating. It is asynchronous until
    /// [`Cluster::make_synchronous`] names it on the primary.
    pub fn standby(&self, name: &str) -> std::io::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("casetrail-pg").tempdir()?;
        self.owner.own(dir.path())?;
        let data = dir.path().join("data");
        let mut backup = self.owner.command(Path::new(PG_BIN).join("pg_basebackup"));
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-c", "fast", "-X", "stream", "-C", "-S", name, "-R", "-D"])
            .arg(&data);
        run(backup, "pg_basebackup")?;
        // Its own socket directory, its own name towards the primary, and no synchronous standby of its own (a
        // copy of a primary that had one would, once promoted, wait on every commit for a standby that is not
        // there).
        append(
            &data.join("postgresql.auto.conf"),
            &format!(
                "\nunix_socket_directories = '{}'\nprimary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={name}'\nsynchronous_standby_names = ''\n",
                dir.path().display(),
                self.port
            ),
        )?;
        let mut standby = Cluster {
            dir,
            data,
            port: 0,
            postmaster: None,
            owner: self.owner,
        };
        standby.launch(None)?;
        Ok(standby)
    }

    /// Forgets the standby `name` on this primary once it is stopped: no synchronous standby any more, and its
    /// replication slot dropped (a slot left behind would keep every WAL segment from then on).
    pub fn forget_standby(&self, name: &str) -> std::io::Result<()> {
        self.psql("postgres", "ALTER SYSTEM RESET synchronous_standby_names")?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        // The walsender of a standby just stopped may hold the slot for a moment.
        loop {
            self.psql(
                "postgres",
                &format!(
                    "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots \
                     WHERE slot_name = '{name}' AND NOT active"
                ),
            )?;
            let left = self.psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{name}'"),
            )?;
            if left == "0" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "the replication slot {name} stayed active"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes the standby `name` this primary's synchronous standby, and waits (at most 30 s) until it is.
    pub fn make_synchronous(&self, name: &str) -> std::io::Result<()> {
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET synchronous_standby_names = '{name}'"),
        )?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.psql(
                "postgres",
                &format!(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{name}'"
                ),
            )?;
            if state == "sync" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "the standby {name} did not become synchronous (its state: {state:?})"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Promotes this standby to a primary, and waits until it accepts writes.
    pub fn promote(&self) -> std::io::Result<()> {
        let promoted = self.psql("postgres", "SELECT pg_promote(true, 60)")?;
        if promoted != "t" {
            return Err(std::io::Error::other(format!(
                "pg_promote answered {promoted:?}"
            )));
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}
