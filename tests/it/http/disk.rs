//! A real full disk: the server runs in its own user and mount namespaces (`unshare -rm`) on a 6 MB tmpfs, which
//! disappears with it, and is fed until the disk is full.

use super::*;
use std::time::{Duration, Instant};

/// A server in a mount namespace of its own, whose data directory is a file system mounted there (it disappears
/// with the namespace). The test's files (the token, the server's stderr) live outside it.
struct Confined {
    child: Proc,
    base: String,
    token: String,
    data: std::path::PathBuf,
    /// What the server wrote on stderr.
    stderr: std::path::PathBuf,
    client: reqwest::blocking::Client,
    dir: tempfile::TempDir,
}

impl Confined {
    /// Runs `unshare {namespaces} sh -c "{mount} && token create && exec serve {extra}"`, where `mount(dir, data)`
    /// mounts the data directory.
    fn start(
        namespaces: &str,
        mount: impl FnOnce(&Path, &Path) -> String,
        extra: &[&str],
    ) -> Confined {
        let dir = tempfile::tempdir().unwrap();
        let (data, out) = (dir.path().join("data"), dir.path().join("token"));
        let stderr = dir.path().join("stderr");
        std::fs::create_dir_all(&data).unwrap();
        let script = format!(
            "{m} && {b} --data {d} token create --name admin --role admin | tail -1 > {o} && exec {b} --data {d} serve --listen 127.0.0.1:0 {x}",
            m = mount(dir.path(), &data),
            d = data.display(),
            b = BIN,
            o = out.display(),
            x = extra.join(" ")
        );
        let mut child = Proc::spawn(
            Command::new("unshare")
                .args([namespaces, "sh", "-c", &script])
                .stdout(std::process::Stdio::piped())
                .stderr(std::fs::File::create(&stderr).unwrap()),
        );
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(
            line.contains("listening"),
            "the server did not start in its namespace: {line:?}; it said: {}",
            std::fs::read_to_string(&stderr).unwrap()
        );
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .to_owned();
        let token = std::fs::read_to_string(&out).unwrap().trim().to_owned();
        Confined {
            child,
            base,
            token,
            data,
            stderr,
            // Every request has a deadline: one that never answers fails the test instead of hanging it.
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            dir,
        }
    }

    fn post(&self, events: &[String]) -> (u16, Value) {
        self.send(
            self.client
                .post(format!("{}/v1/events", self.base))
                .header("content-type", "application/json")
                .body(format!("[{}]", events.join(","))),
        )
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)))
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder) -> (u16, Value) {
        let r = request
            .bearer_auth(&self.token)
            .send()
            .unwrap_or_else(|e| panic!("no answer: {e}"));
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    }

    fn size(&self) -> u64 {
        self.get("/v1/events?limit=1").1["log_size"]
            .as_u64()
            .unwrap()
    }

    /// The status `/readyz` answers with.
    fn readiness(&self) -> u16 {
        self.send(self.client.get(format!("{}/readyz", self.base)))
            .0
    }

    /// `answer`, to a write sent at `started` on a disk that stopped answering, is 503 saying `says`, within the
    /// stall bound (2 s) and a little; from then on a write (`next`) is refused at once, and readiness says so.
    fn answered_stalled(
        &self,
        (status, body): (u16, Value),
        started: Instant,
        says: &str,
        next: &[String],
    ) {
        assert_eq!(
            (status, &body["code"]),
            (503, &json!("unavailable")),
            "{body}"
        );
        assert!(body["detail"].as_str().unwrap().contains(says), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(2 + 3),
            "{:?}",
            started.elapsed()
        );
        let started = Instant::now();
        let (status, body) = self.post(next);
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(self.readiness(), 503);
    }

    fn said(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    /// Each request that writes outside the event path (a checkpoint signed on demand, a proof or bundle that
    /// needs one, a token): it answers within `within`, with a success or 503 `unavailable`, never a 500.
    fn ask_writes(&self, size: u64, dossier: &str, within: Duration) {
        let asks = [
            ("POST", "/v1/audit/checkpoints".to_owned()),
            ("GET", format!("/v1/audit/proof?position={size}")),
            ("GET", "/v1/audit/consistency?from=1".to_owned()),
            ("GET", format!("/v1/dossiers/{dossier}/bundle")),
            ("POST", "/v1/tokens".to_owned()),
        ];
        for (method, path) in &asks {
            let url = format!("{}{path}", self.base);
            let request = match *method {
                "POST" if path == "/v1/tokens" => self
                    .client
                    .post(url)
                    .json(&json!({ "name": "late", "role": "analyst" })),
                "POST" => self.client.post(url),
                _ => self.client.get(url),
            };
            let started = Instant::now();
            let (status, body) = self.send(request);
            let took = started.elapsed();
            assert!(took < within, "{method} {path} took {took:?}");
            match status {
                // A checkpoint signed before the failure covers what was asked: nothing to write.
                200 | 201 => {}
                503 => assert_eq!(body["code"], "unavailable", "{method} {path}: {body}"),
                other => panic!(
                    "{method} {path} answered {other}: {body}; the server said: {}",
                    self.said()
                ),
            }
        }
    }

    /// SIGTERM, then the process's status once it ends, which must be within `bound`.
    fn stop_within(&mut self, bound: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < bound,
                "SIGTERM did not end the server within {bound:?}: {}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Events of generated dossiers, one per line, in the order they may be written.
fn generated(dossiers: &str) -> Vec<String> {
    let generated = Command::new(BIN)
        .args([
            "generate",
            "--seed",
            "4",
            "--dossiers",
            dossiers,
            "--form",
            "submitted",
        ])
        .output()
        .unwrap();
    std::str::from_utf8(&generated.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""type":"dossier."#))
        .map(str::to_owned)
        .collect()
}

/// A server whose data directory is a 6 MB tmpfs, fed 500-event batches until an append failed.
struct FullDisk {
    server: Confined,
    /// What it was fed (and more), one event per line.
    lines: Vec<String>,
    /// How many events were acknowledged before the first refusal.
    accepted: usize,
    /// The first refusal.
    problem: Value,
}

impl FullDisk {
    fn fill(extra: &[&str]) -> FullDisk {
        let server = Confined::start(
            "-rm",
            |_, data| format!("mount -t tmpfs -o size=6m tmpfs {}", data.display()),
            extra,
        );
        let lines = generated("18000");
        let mut accepted = 0;
        for batch in lines.chunks(500) {
            match server.post(batch) {
                (201, _) => accepted += batch.len(),
                (503, problem) => {
                    assert!(accepted > 0, "nothing fitted at all");
                    return FullDisk {
                        server,
                        lines,
                        accepted,
                        problem,
                    };
                }
                (status, body) => panic!("unexpected {status}: {body}"),
            }
        }
        panic!("6 MB filled up before 60,000 events");
    }
}

/// Appends go on until the disk is full; then every append answers 503 `unavailable` and writes nothing more,
/// readiness says so, and reads are served or answer 503, never 500.
#[test]
fn a_full_disk_answers_503_and_writes_nothing_more() {
    let FullDisk {
        server: disk,
        lines,
        accepted,
        problem,
    } = FullDisk::fill(&[]);
    assert_eq!(problem["code"], "unavailable");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{problem}"
    );
    let at_failure = disk.size();
    assert_eq!(
        at_failure, accepted as u64,
        "the log holds exactly what was acknowledged"
    );
    // From now on nothing is written, and readiness says why.
    let (status, body) = disk.post(&lines[lines.len() - 10..]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(disk.size(), at_failure);
    assert_eq!(disk.readiness(), 503);
    // Reads go on: the first dossier's state is there.
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    let (status, body) = disk.get(&format!(
        "/v1/dossiers/{}",
        first["dossier"].as_str().unwrap()
    ));
    // Reads are served while sled can serve them (usually from its cache); once sled itself repeats the IO error,
    // they answer 503 `unavailable`, never a 500.
    match status {
        200 => assert_eq!(body["dossier"], first["dossier"]),
        503 => assert_eq!(body["code"], "unavailable", "{body}"),
        other => panic!("a read after the failure answered {other}: {body}"),
    }
}

/// After the disk filled up, every request that would write (a checkpoint signed on demand, a proof or bundle that
/// needs one, a token) answers within the stall bound, 503 `unavailable` when it cannot write, never a 500; and
/// SIGTERM ends the process within its documented bound, saying on stderr what it did not write.
#[test]
fn after_a_full_disk_every_request_answers_and_a_stop_ends_within_its_bound() {
    let FullDisk {
        server: mut disk,
        lines,
        accepted,
        ..
    } = FullDisk::fill(&["--stall-secs", "2", "--shutdown-timeout-secs", "2"]);
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    disk.ask_writes(
        accepted as u64,
        first["dossier"].as_str().unwrap(),
        Duration::from_secs(2 + 3),
    );
    let status = disk.stop_within(Duration::from_secs(2 + 2 + 3));
    let said = disk.said();
    assert!(
        said.contains("signed no checkpoint at stop")
            || said.contains("could not sign a checkpoint at stop"),
        "{status:?}: {said}"
    );
}

/// A disk that stops answering: ext4 in a file, on a loop device mounted in the server's own mount namespace
/// (`unshare -m`, as root), frozen (`FIFREEZE`, as `fsfreeze -f` does) so that every write waits, as on a hung network disk, until it
/// is thawed. A checkpoint asked for then answers 503 once the stall bound passed, and so does every write after
/// it, at once; readiness says so; SIGTERM ends the server within `shutdown_timeout_secs + stall_secs` though its
/// writer still waits (the process is gone once the kernel lets the waiting thread go, at the thaw); and what was
/// acknowledged before is all there at the next start, which verifies.
#[test]
fn a_disk_that_stops_answering_is_answered_503_and_a_stop_ends_within_its_bound() {
    let mut frozen = Frozen::start();
    let Frozen {
        disk,
        image,
        fs,
        lines,
        acknowledged,
        ..
    } = &mut frozen;
    // The first write that waits on the disk: a checkpoint signed on demand (none covers the 20 events yet).
    let started = Instant::now();
    let answer = disk.send(
        disk.client
            .post(format!("{}/v1/audit/checkpoints", disk.base)),
    );
    disk.answered_stalled(answer, started, "did not finish within 2 s", &lines[20..]);
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    disk.ask_writes(
        20,
        first["dossier"].as_str().unwrap(),
        Duration::from_secs(2 + 3),
    );
    // A read is answered too, within twice the stall bound: served if sled lets it pass, or 503 once it waited a
    // stall bound on a store whose disk stopped answering (sled holds reads behind a write waiting for its lock).
    let started = Instant::now();
    let (status, body) = disk.get("/v1/events?limit=1");
    assert!(
        started.elapsed() < Duration::from_secs(2 * 2 + 2),
        "{:?}",
        started.elapsed()
    );
    match status {
        200 => assert_eq!(body["log_size"], 20),
        503 => assert_eq!(body["code"], "unavailable", "{body}"),
        other => panic!("a read on the frozen disk answered {other}: {body}"),
    }
    // The stop: reaped only after the thaw, so the bound is seen on stderr.
    unsafe { libc::kill(disk.child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let bound = Duration::from_secs(2 + 2);
    while !disk.said().contains("the stop did not finish within 4 s") {
        assert!(
            started.elapsed() < bound + Duration::from_secs(3),
            "the stop did not end within its bound: {}",
            disk.said()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        disk.said().contains("signed no checkpoint at stop"),
        "{}",
        disk.said()
    );
    fs.thaw();
    let status = disk.stop_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", disk.said());
    // The next start on the same disk has every acknowledged event, and the log verifies.
    let out = disk.dir.path().join("export");
    let reread = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -o loop {i} {d} && {b} --data {d} verify && {b} --data {d} export -o {o}",
            i = image.display(),
            d = disk.data.display(),
            b = BIN,
            o = out.display()
        ))
        .output()
        .unwrap();
    assert!(reread.status.success(), "{reread:?}");
    let exported = std::fs::read_to_string(&out).unwrap();
    for id in acknowledged {
        assert!(
            exported.contains(id.as_str()),
            "acknowledged event {id} lost"
        );
    }
}

/// A server on a disk that stops answering: ext4 in a file, on a loop device mounted in the server's own mount
/// namespace, with 20 events acknowledged, then frozen. Its fields drop in order: the thaw first, so that the
/// server can be reaped.
struct Frozen {
    _thaw: Thaw,
    disk: Confined,
    /// The directory the file system is frozen and thawed through.
    _mounted: std::fs::File,
    fs: Freezable,
    image: std::path::PathBuf,
    _image_dir: tempfile::TempDir,
    /// 40 events of generated dossiers; the first 20 were acknowledged.
    lines: Vec<String>,
    acknowledged: Vec<String>,
}

/// Thaws on drop: a process waiting on a frozen file system cannot end.
struct Thaw(Freezable);

impl Drop for Thaw {
    fn drop(&mut self) {
        self.0.thaw()
    }
}

impl Frozen {
    fn start() -> Frozen {
        let image_dir = tempfile::tempdir().unwrap();
        let image = image_dir.path().join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let made = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .output()
            .expect("mkfs.ext4 (e2fsprogs) runs");
        assert!(made.status.success(), "{made:?}");
        let mount =
            |_: &Path, data: &Path| format!("mount -o loop {} {}", image.display(), data.display());
        let disk = Confined::start(
            "-m",
            mount,
            &[
                "--stall-secs",
                "2",
                "--shutdown-timeout-secs",
                "2",
                "--checkpoint-every-secs",
                "0",
                "--checkpoint-every-events",
                "0",
            ],
        );
        let lines = generated("40");
        let (status, body) = disk.post(&lines[..20]);
        assert_eq!(status, 201, "{body}");
        let acknowledged: Vec<String> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        // The file system is frozen and thawed through a directory of it opened now, in the server's namespace: that
        // handle keeps working once the server's main thread has ended (a process whose other thread waits on the
        // frozen disk lingers, and its namespace can no longer be entered).
        let mounted = std::fs::File::open(format!(
            "/proc/{}/root{}",
            disk.child.id(),
            disk.data.display()
        ))
        .unwrap();
        let fs = Freezable(std::os::fd::AsRawFd::as_raw_fd(&mounted));
        fs.freeze();
        // Whatever happens from here, the disk is thawed before the server is reaped: a process waiting on a frozen
        // file system cannot end.
        Frozen {
            _thaw: Thaw(fs),
            disk,
            _mounted: mounted,
            fs,
            image,
            _image_dir: image_dir,
            lines,
            acknowledged,
        }
    }
}

/// An append waiting on a disk that stops answering is answered 503 once the stall bound passed (its writer is
/// still waiting), and so is every write after it, at once.
#[test]
fn an_append_waiting_on_a_frozen_disk_is_answered_503_after_the_stall_bound() {
    let frozen = Frozen::start();
    let (disk, lines) = (&frozen.disk, &frozen.lines);
    let started = Instant::now();
    let answer = disk.post(&lines[20..30]);
    disk.answered_stalled(answer, started, "did not finish within 2 s", &lines[30..]);
}

/// A mounted file system, by a descriptor of one of its directories: `FIFREEZE` makes every write to it wait (as
/// `fsfreeze -f` does) until `FITHAW`.
#[derive(Clone, Copy)]
struct Freezable(std::os::fd::RawFd);

impl Freezable {
    const FIFREEZE: libc::c_ulong = 0xC004_5877; // _IOWR('X', 119, int)
    const FITHAW: libc::c_ulong = 0xC004_5878; // _IOWR('X', 120, int)

    fn freeze(self) {
        let frozen = unsafe { libc::ioctl(self.0, Self::FIFREEZE as _, 0) };
        assert_eq!(frozen, 0, "FIFREEZE: {}", std::io::Error::last_os_error());
    }

    /// Thaws it; thawing one not frozen is no error here.
    fn thaw(self) {
        unsafe { libc::ioctl(self.0, Self::FITHAW as _, 0) };
    }
}
