//! casetrail on PostgreSQL through the real binary: a cluster the test starts, two `serve` nodes on one database,
//! every write and read served by either, tokens shared, and the rules that keep nodes alike.

use super::Proc;
use pglog::cluster::{Cluster, Options};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROVINCE: &str = "000.00.00.H27";
const DEPT: &str = "000.00.12.H27";

fn casetrail(url: &str, state: &Path, args: &[&str]) -> Output {
    Command::new(super::BIN)
        .args(["--data", url, "--state"])
        .arg(state)
        .args(args)
        .output()
        .expect("casetrail runs")
}

fn token(url: &str, state: &Path, name: &str, role: &str, agency: Option<&str>) -> String {
    let args = super::common::token_args(name, role, agency);
    super::common::created_token(casetrail(url, state, &args))
}

/// Why a node that should not start did not, or a panic if it started.
fn refused(started: Result<(Proc, String), String>) -> String {
    match started {
        Ok((_, base)) => panic!("the node started at {base}"),
        Err(why) => why,
    }
}

/// A `serve` node on `url`; its stderr when it refuses to start.
fn node(url: &str, state: &Path, extra: &[&str]) -> Result<(Proc, String), String> {
    let mut child = Proc::spawn(
        Command::new(super::BIN)
            .args(["--data", url, "--state"])
            .arg(state)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.split_whitespace().find(|w| w.starts_with("http://")) {
        Some(base) => Ok((child, base.to_owned())),
        None => {
            let _ = child.wait();
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            Err(err)
        }
    }
}

fn call(method: &str, url: String, token: &str, body: Option<&Value>) -> (u16, Value) {
    let client = reqwest::blocking::Client::new();
    let mut req = client
        .request(method.parse().unwrap(), url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Registers the province and the department the ingest token writes for, on the node at `base`.
fn register(base: &str, admin: &str) {
    for (code, name, level, parent) in [
        (PROVINCE, "UBND tỉnh Hà Tĩnh", "province", None),
        (DEPT, "Sở Tư pháp", "department", Some(PROVINCE)),
    ] {
        let body = json!({ "name": name, "level": level, "parent": parent });
        let (status, body) = call(
            "PUT",
            format!("{base}/v1/agencies/{code}"),
            admin,
            Some(&body),
        );
        assert_eq!(status, 201, "{body}");
    }
}

fn received(n: usize) -> Value {
    json!({ "id": format!("01935c3e-0000-7000-8000-{n:012}"), "type": "dossier.received",
            "dossier": format!("PG-{n}"), "agency": DEPT, "occurred_at": "2019-03-12T08:30:00+07:00",
            "data": { "procedure": "1.001234", "channel": "online", "online_level": "level4" } })
}

#[test]
fn two_nodes_on_one_database_serve_every_write_and_read_and_share_tokens() {
    let cluster = Cluster::start(&Options::default()).expect("a PostgreSQL cluster starts");
    let url = cluster.create_database("casetrail").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let key_arg = key.to_str().unwrap();
    let (state_a, state_b) = (dir.path().join("a"), dir.path().join("b"));

    // No key is made at start on PostgreSQL.
    let why = refused(node(&url, &state_a, &["--audit-key", key_arg]));
    assert!(why.contains("casetrail audit key"), "{why}");
    assert!(!key.exists());
    let made = casetrail(&url, &state_a, &["audit", "key", "--audit-key", key_arg]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let admin = token(&url, &state_a, "admin", "admin", None);
    let ingest = token(&url, &state_a, "vendor", "ingest", Some(DEPT));
    let (_a, a) = node(&url, &state_a, &["--audit-key", key_arg]).unwrap();
    let (_b, b) = node(&url, &state_b, &["--audit-key", key_arg]).unwrap();

    // Reference data registered on A is in force on B at once.
    register(&a, &admin);

    // Writes on either node, in turn: one gapless order; each acknowledged position answered by the other node.
    let mut positions = Vec::new();
    for n in 1..=30 {
        let (here, there) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (status, body) = call(
            "POST",
            format!("{here}/v1/events"),
            &ingest,
            Some(&received(n)),
        );
        assert_eq!(status, 201, "{body}");
        let position = body[0]["position"]
            .as_u64()
            .unwrap_or_else(|| panic!("{body}"));
        positions.push(position);
        let (status, proof) = call(
            "GET",
            format!("{there}/v1/audit/proof?position={position}&size={position}"),
            &admin,
            None,
        );
        assert_eq!(
            status, 200,
            "node {there} did not answer for position {position}: {proof}"
        );
    }
    assert_eq!(positions, (3..=32).collect::<Vec<u64>>());
    let (_, page) = call("GET", format!("{b}/v1/events?limit=100"), &admin, None);
    assert_eq!(page["events"].as_array().unwrap().len(), 32, "{page}");
    let (status, trail) = call("GET", format!("{a}/v1/dossiers/PG-1/events"), &admin, None);
    assert_eq!(status, 200, "{trail}");

    // A replay on B of what A acknowledged: the same receipt, nothing written.
    let (status, again) = call(
        "POST",
        format!("{b}/v1/events"),
        &ingest,
        Some(&received(2)),
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again[0]["position"], 4);

    // A token revoked on A is refused by B within a bound.
    let (status, body) = call("DELETE", format!("{a}/v1/tokens/vendor"), &admin, None);
    assert_eq!(status, 204, "{body}");
    let since = Instant::now();
    loop {
        let (status, _) = call(
            "POST",
            format!("{b}/v1/events"),
            &ingest,
            Some(&received(99)),
        );
        if status == 401 {
            break;
        }
        assert_eq!(status, 201);
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "B still takes a token revoked on A"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The last admin is kept, from the command line too.
    let out = casetrail(&url, &state_a, &["token", "revoke", "admin"]);
    assert!(!out.status.success());

    // A node whose settings would accept otherwise refuses to start, naming the difference.
    let why = refused(node(
        &url,
        &dir.path().join("c"),
        &["--audit-key", key_arg, "--clock-skew-secs", "60"],
    ));
    assert!(why.contains("clock_skew_secs = 60"), "{why}");
    // And so does one with another key.
    let other = dir.path().join("other.key");
    assert!(casetrail(
        &url,
        &state_a,
        &["audit", "key", "--audit-key", other.to_str().unwrap()]
    )
    .status
    .success());
    let why = refused(node(
        &url,
        &dir.path().join("d"),
        &["--audit-key", other.to_str().unwrap()],
    ));
    assert!(why.contains("signing key is not the log's"), "{why}");

    // Both nodes agree on the head, and the log verifies.
    let (_, head_a) = call("GET", format!("{a}/v1/audit/head"), &admin, None);
    let (_, head_b) = call("GET", format!("{b}/v1/audit/head"), &admin, None);
    assert_eq!(head_a["size"], head_b["size"]);
    let out = casetrail(&url, &state_a, &["verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn migrate_moves_a_log_to_postgres_and_back_with_the_same_bytes_root_tokens_and_checkpoints() {
    let cluster = Cluster::start(&Options::default()).expect("a PostgreSQL cluster starts");
    let url = cluster.create_database("moved").unwrap();
    let other = cluster.create_database("other").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sled = super::cli::generated_log(dir.path(), 11, 1_500);
    let sled_str = sled.to_str().unwrap();
    let admin = super::common::token(&sled, "admin", "admin", None);
    super::common::token(&sled, "gone", "analyst", None);
    assert!(super::casetrail(&sled, &["token", "revoke", "gone"])
        .status
        .success());
    let signed = super::casetrail(&sled, &["audit", "checkpoint"]);
    assert!(signed.status.success(), "{}", super::stderr(&signed));
    let exported = super::stdout(&super::casetrail(&sled, &["export"]));
    let lines: Vec<&str> = exported.lines().collect();
    assert!(lines.len() > 4_000);
    let state = dir.path().join("state");

    // A destination that holds other events is refused, and left as it was.
    let first = dir.path().join("first.ndjson");
    std::fs::write(&first, format!("{}\n", lines[1])).unwrap();
    let foreign = casetrail(&other, &state, &["import", first.to_str().unwrap()]);
    assert!(
        !foreign.status.success(),
        "an event at position 2 imported at 1"
    );
    let mut mixed: Value = serde_json::from_str(lines[0]).unwrap();
    mixed["source"] = json!("someone-else");
    std::fs::write(&first, format!("{mixed}\n")).unwrap();
    assert!(
        casetrail(&other, &state, &["import", first.to_str().unwrap()])
            .status
            .success()
    );
    let refused = casetrail(
        &url,
        &state,
        &["migrate", "--from", sled_str, "--to", &other],
    );
    assert!(!refused.status.success());
    assert!(
        super::stderr(&refused).contains("another log"),
        "{}",
        super::stderr(&refused)
    );

    // Interrupted half way (its first 1,000 events there already): the migration resumes after them.
    let half = dir.path().join("half.ndjson");
    std::fs::write(&half, lines[..1_000].join("\n") + "\n").unwrap();
    assert!(casetrail(&url, &state, &["import", half.to_str().unwrap()])
        .status
        .success());
    let moved = casetrail(&url, &state, &["migrate", "--from", sled_str, "--to", &url]);
    assert!(moved.status.success(), "{}", super::stderr(&moved));
    assert!(
        super::stdout(&moved).contains("resuming after them"),
        "{}",
        super::stdout(&moved)
    );

    let on_postgres = String::from_utf8(casetrail(&url, &state, &["export"]).stdout).unwrap();
    assert_eq!(
        on_postgres, exported,
        "the export from PostgreSQL differs from sled's"
    );
    let tokens = |out: Output| -> Vec<String> {
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
                    + if l.contains("revoked") {
                        " revoked"
                    } else {
                        ""
                    }
            })
            .collect()
    };
    assert_eq!(
        tokens(casetrail(&url, &state, &["token", "list"])),
        tokens(super::casetrail(&sled, &["token", "list"]))
    );
    let verified = casetrail(&url, &state, &["verify"]);
    assert!(verified.status.success(), "{}", super::stdout(&verified));
    assert!(
        super::stdout(&verified).contains("1 stored checkpoint"),
        "{}",
        super::stdout(&verified)
    );

    // And back to a new directory: the same bytes again.
    let back = dir.path().join("back");
    let returned = super::casetrail(
        &back,
        &["migrate", "--from", &url, "--to", back.to_str().unwrap()],
    );
    assert!(returned.status.success(), "{}", super::stderr(&returned));
    assert_eq!(
        super::stdout(&super::casetrail(&back, &["export"])),
        exported
    );
    let verified = super::casetrail(&back, &["verify"]);
    assert!(verified.status.success(), "{}", super::stdout(&verified));
    let _ = admin;
}

/// Posts single events to `base` until a request fails; returns the ids acknowledged.
fn write_until_killed(
    base: String,
    ingest: String,
    from: usize,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut acknowledged = Vec::new();
    for n in from.. {
        let event = received(n);
        let sent = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(&ingest)
            .header("content-type", "application/json")
            .body(event.to_string())
            .send();
        match sent {
            Ok(r) if r.status().as_u16() == 201 || r.status().as_u16() == 200 => {
                acknowledged.push(event["id"].as_str().unwrap().to_owned());
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            // A refusal while the database restarts is an answer, not an acknowledgement: go on.
            Ok(r) if r.status().as_u16() == 503 => std::thread::sleep(Duration::from_millis(50)),
            Ok(r) => panic!("unexpected answer {}", r.status()),
            Err(_) => break,
        }
    }
    acknowledged
}

/// The log at `url` as `casetrail export` gives it, one JSON value per event.
fn exported(url: &str, state: &Path) -> Vec<Value> {
    let out = casetrail(url, state, &["export"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The ids of the events exported from `url`, in log order.
fn exported_ids(url: &str, state: &Path) -> Vec<String> {
    exported(url, state)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The log at `url` holds every acknowledged id exactly once, at gapless positions, and verifies.
fn holds_each_once(url: &str, state: &Path, acknowledged: &[String]) {
    assert!(
        acknowledged.len() > 100,
        "only {} events were acknowledged",
        acknowledged.len()
    );
    let exported = exported(url, state);
    let positions: Vec<u64> = exported
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(
        positions,
        (1..=exported.len() as u64).collect::<Vec<_>>(),
        "the log has a gap"
    );
    let mut stored = std::collections::HashMap::new();
    for e in &exported {
        *stored
            .entry(e["id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    for id in acknowledged {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "acknowledged {id} is stored {:?} times",
            stored.get(id)
        );
    }
    let verified = casetrail(url, state, &["verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

/// Makes the log's signing key file and an admin and an ingest token: (admin, ingest).
fn signing_key_and_tokens(url: &str, state: &Path, key: &str) -> (String, String) {
    let made = casetrail(url, state, &["audit", "key", "--audit-key", key]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (
        token(url, state, "admin", "admin", None),
        token(url, state, "vendor", "ingest", Some(DEPT)),
    )
}

/// Four clients writing to `base` until it dies, their ids offset by `offset`, and how many were acknowledged.
type Writers = (
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    Vec<std::thread::JoinHandle<Vec<String>>>,
);

fn writers(base: &str, ingest: &str, offset: usize) -> Writers {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles = (0..4)
        .map(|w| {
            let (base, ingest, count) = (base.to_owned(), ingest.to_owned(), count.clone());
            std::thread::spawn(move || {
                write_until_killed(base, ingest, (offset + w) * 1_000_000, count)
            })
        })
        .collect();
    (count, handles)
}

/// SIGKILLs a node's process group, and collects what its writers had acknowledged.
fn kill_node(
    mut node: Proc,
    writers: Vec<std::thread::JoinHandle<Vec<String>>>,
    into: &mut Vec<String>,
) {
    // SAFETY: signalling the node's own process group.
    unsafe { libc::kill(-(node.id() as i32), libc::SIGKILL) };
    let _ = node.wait();
    for w in writers {
        into.extend(w.join().unwrap());
    }
}

#[test]
fn killed_nodes_and_a_killed_postmaster_lose_nothing_acknowledged() {
    let mut cluster = Cluster::start(&Options::default()).expect("a PostgreSQL cluster starts");
    let url = cluster.create_database("crash").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let key_arg = key.to_str().unwrap().to_owned();
    let state = dir.path().join("state");
    let (admin, ingest) = signing_key_and_tokens(&url, &state, &key_arg);
    let mut acknowledged = Vec::new();
    for round in 0..12 {
        let (proc, base) = node(&url, &state, &["--audit-key", &key_arg]).unwrap();
        if round == 0 {
            register(&base, &admin);
        }
        let (count, writers) = writers(&base, &ingest, round * 4);
        std::thread::sleep(Duration::from_millis(300));
        if round % 4 == 3 {
            // The database machine lost mid-write, then back (crash recovery); the node carries on against it.
            cluster.kill();
            std::thread::sleep(Duration::from_millis(200));
            cluster.restart().unwrap();
            assert!(
                url.contains(&format!(":{}/", cluster.port())),
                "the cluster came back on another port"
            );
            // The same node writes again once the database is back.
            let before = count.load(std::sync::atomic::Ordering::SeqCst);
            let since = Instant::now();
            while count.load(std::sync::atomic::Ordering::SeqCst) < before + 20 {
                assert!(
                    since.elapsed() < Duration::from_secs(15),
                    "the node did not write again after the database came back"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        kill_node(proc, writers, &mut acknowledged);
    }
    holds_each_once(&url, &state, &acknowledged);
}

/// A primary with a database `casetrail` and a standby streaming from it (asynchronous until made synchronous),
/// with a directory for the key file and the node's state.
struct Pair {
    dir: tempfile::TempDir,
    key_arg: String,
    state: std::path::PathBuf,
    primary: Cluster,
    standby: Cluster,
}

fn primary_and_standby(name: &str) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let key_arg = dir.path().join("audit.key").to_str().unwrap().to_owned();
    let state = dir.path().join("state");
    let primary = Cluster::start(&Options::default()).expect("a PostgreSQL cluster starts");
    primary.create_database("casetrail").unwrap();
    let standby = primary.standby(name).unwrap();
    Pair {
        dir,
        key_arg,
        state,
        primary,
        standby,
    }
}

/// A connection string naming both servers, `a` first: a node connects to whichever takes writes.
fn two_hosts(a: &Cluster, b: &Cluster) -> String {
    format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/casetrail?target_session_attrs=read-write",
        a.port(),
        b.port()
    )
}

#[test]
fn failover_to_a_synchronous_standby_loses_nothing_acknowledged() {
    let Pair {
        dir: _dir,
        key_arg,
        state,
        mut primary,
        mut standby,
    } = primary_and_standby("s0");
    primary.make_synchronous("s0").unwrap();
    let url = two_hosts;
    let first = url(&primary, &standby);
    let (admin, ingest) = signing_key_and_tokens(&first, &state, &key_arg);
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let both = url(&primary, &standby);
        let (node_proc, base) = node(&both, &state, &["--audit-key", &key_arg]).unwrap();
        if round == 0 {
            register(&base, &admin);
        }
        let (count, writers) = writers(&base, &ingest, round * 4 + 100);
        std::thread::sleep(Duration::from_millis(500));
        // An auditor's checkpoint from before the failover.
        let (status, checkpoint) =
            call("POST", format!("{base}/v1/audit/checkpoints"), &admin, None);
        assert!(status == 201 || status == 200, "{checkpoint}");
        let (_, before) = call("GET", format!("{base}/v1/audit/head"), &admin, None);
        let (signed_size, signed_root) =
            (checkpoint["size"].as_u64().unwrap(), before["root"].clone());
        let _ = signed_root;

        // The primary's machine is lost mid-write; the synchronous standby is promoted.
        primary.kill();
        let lost = Instant::now();
        standby.promote().unwrap();
        let before_failover = count.load(std::sync::atomic::Ordering::SeqCst);
        while count.load(std::sync::atomic::Ordering::SeqCst) < before_failover + 20 {
            assert!(
                lost.elapsed() < Duration::from_secs(30),
                "writes did not resume after the promotion"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "round {round}: writes accepted again {:?} after the primary was lost",
            lost.elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));

        // The checkpoint from before is consistent with the head after.
        let (_, after) = call("GET", format!("{base}/v1/audit/head"), &admin, None);
        let to = after["size"].as_u64().unwrap();
        let (status, proof) = call(
            "GET",
            format!("{base}/v1/audit/consistency?from={signed_size}&to={to}"),
            &admin,
            None,
        );
        assert_eq!(status, 200, "{proof}");
        let (_, signed) = call(
            "GET",
            format!(
                "{base}/v1/audit/checkpoints?after={}&limit=1",
                signed_size - 1
            ),
            &admin,
            None,
        );
        assert!(
            signed
                .to_string()
                .contains(proof["from_root"].as_str().unwrap()),
            "the root at the checkpoint's size changed: {signed} vs {proof}"
        );

        kill_node(node_proc, writers, &mut acknowledged);
        // The old primary is never started again; the promoted one gets a new synchronous standby.
        drop(std::mem::replace(&mut primary, standby));
        standby = primary.standby(&format!("s{}", round + 1)).unwrap();
        primary
            .make_synchronous(&format!("s{}", round + 1))
            .unwrap();
    }
    let last = url(&primary, &standby);
    holds_each_once(&last, &state, &acknowledged);
}

/// The control run of the failover test: an asynchronous standby promoted while the primary still takes writes (a
/// bad failover), then the primary lost. The acknowledged events written after the promotion are not on the new
/// primary, and the check the failover test relies on sees it; the node, finding the log shorter than the head it
/// had seen, answers not ready and refuses writes, naming why, instead of writing over the gap.
#[test]
fn a_failover_onto_a_standby_that_lacks_commits_is_seen_and_stops_the_node_writing() {
    let Pair {
        dir: _dir,
        key_arg,
        state,
        mut primary,
        standby,
    } = primary_and_standby("async");
    let both = two_hosts(&primary, &standby);
    let (admin, ingest) = signing_key_and_tokens(&both, &state, &key_arg);
    let (node_proc, base) = node(&both, &state, &["--audit-key", &key_arg]).unwrap();
    register(&base, &admin);
    let (count, writers) = writers(&base, &ingest, 300);
    let wait_for = |n: usize| {
        let since = Instant::now();
        while count.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "the node stopped writing"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(200);
    // The standby is promoted while the primary goes on acknowledging writes; then the primary is lost.
    standby.promote().unwrap();
    let at_promotion = count.load(std::sync::atomic::Ordering::SeqCst);
    wait_for(at_promotion + 200);
    let (_, seen) = call("GET", format!("{base}/v1/audit/head"), &admin, None);
    primary.kill();

    // The node reaches the promoted standby (the other host of its connection string), finds fewer events there
    // than it has seen, and stops writing: not ready, and writes refused, each naming why.
    let since = Instant::now();
    let (status, ready) = loop {
        let (status, ready) = call("GET", format!("{base}/readyz"), &admin, None);
        if status == 503 && ready.to_string().contains("backwards") {
            break (status, ready);
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "the node did not see the log go backwards: {status} {ready}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, 503, "{ready}");
    let (status, refused) = call(
        "POST",
        format!("{base}/v1/events"),
        &ingest,
        Some(&received(9_999_999)),
    );
    assert_eq!(
        status, 503,
        "a write after the log went backwards: {refused}"
    );
    assert!(refused.to_string().contains("backwards"), "{refused}");

    let mut acknowledged = Vec::new();
    kill_node(node_proc, writers, &mut acknowledged);
    // The check the failover test makes sees the loss: acknowledged ids that the new primary does not hold, and
    // a log shorter than the head the node had seen. Nothing was written past the gap.
    let only = format!("postgres://postgres@127.0.0.1:{}/casetrail", standby.port());
    let stored: std::collections::HashSet<String> =
        exported_ids(&only, &state).into_iter().collect();
    let lost = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .count();
    assert!(
        lost > 0,
        "no acknowledged event was lost: the control run shows nothing"
    );
    assert!(
        (stored.len() as u64) < seen["size"].as_u64().unwrap(),
        "the new primary holds {} events, the node had seen {}",
        stored.len(),
        seen["size"]
    );
    eprintln!(
        "{lost} of {} acknowledged events are not on the promoted standby",
        acknowledged.len()
    );
    let verified = casetrail(&only, &state, &["verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

/// Reads a node's live stream until it has delivered position `until` (once known), and returns the positions in
/// the order they came, up to `until`. The stream may deliver `until` before the writer has stored it here, so the
/// writer posts one more event after storing it: the line after wakes the reader (a stream with nothing new sends
/// only a keep-alive comment every 15 s, and each one resets the client's read timeout, so waiting for the next line
/// with nothing coming would never end).
fn live_positions(
    base: String,
    token: String,
    until: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Vec<u64> {
    use std::io::BufRead;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let resp = client
        .get(format!("{base}/v1/events/live?after=0"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(resp).lines() {
        let Ok(line) = line else { break };
        if let Some(id) = line.strip_prefix("id: ") {
            seen.push(id.trim().parse::<u64>().unwrap());
        }
        let until = until.load(std::sync::atomic::Ordering::SeqCst);
        if until > 0 && seen.last() >= Some(&until) {
            seen.retain(|p| *p <= until);
            break;
        }
    }
    seen
}

#[test]
fn three_nodes_writing_at_once_give_one_gapless_log_that_every_live_stream_follows_in_order() {
    let cluster = Cluster::start(&Options::default()).expect("a PostgreSQL cluster starts");
    let url = cluster.create_database("three").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let key_arg = key.to_str().unwrap().to_owned();
    let (admin, ingest) = signing_key_and_tokens(&url, &dir.path().join("s"), &key_arg);
    let analyst = token(&url, &dir.path().join("s"), "reader", "analyst", None);
    let nodes: Vec<(Proc, String)> = (0..3)
        .map(|n| {
            node(
                &url,
                &dir.path().join(format!("n{n}")),
                &["--audit-key", &key_arg],
            )
            .unwrap()
        })
        .collect();
    register(&nodes[0].1, &admin);
    let until = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let readers: Vec<_> = nodes
        .iter()
        .map(|(_, base)| {
            let (base, token, until) = (base.clone(), analyst.clone(), until.clone());
            std::thread::spawn(move || live_positions(base, token, until))
        })
        .collect();
    // Three clients per node, all at once, for two seconds.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..9)
        .map(|w| {
            let (base, ingest, stop) = (nodes[w % 3].1.clone(), ingest.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for n in (w + 1) * 1_000_000.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let (status, body) = call(
                        "POST",
                        format!("{base}/v1/events"),
                        &ingest,
                        Some(&received(n)),
                    );
                    assert_eq!(status, 201, "{body}");
                    acknowledged.push((
                        body[0]["id"].as_str().unwrap().to_owned(),
                        body[0]["position"].as_u64().unwrap(),
                    ));
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acknowledged: Vec<(String, u64)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() > 100,
        "only {} acknowledged",
        acknowledged.len()
    );
    // One last event marks the end for the streams.
    let (status, last) = call(
        "POST",
        format!("{}/v1/events", nodes[1].1),
        &ingest,
        Some(&received(1)),
    );
    assert_eq!(status, 201, "{last}");
    let end = last[0]["position"].as_u64().unwrap();
    until.store(end, std::sync::atomic::Ordering::SeqCst);
    // ...and one after it wakes a stream that delivered `end` before it knew it was the end.
    let (status, after) = call(
        "POST",
        format!("{}/v1/events", nodes[2].1),
        &ingest,
        Some(&received(2)),
    );
    assert_eq!(status, 201, "{after}");
    let end_after = after[0]["position"].as_u64().unwrap();
    assert_eq!(end_after, end + 1);
    let everything: Vec<u64> = (1..=end).collect();
    for (n, r) in readers.into_iter().enumerate() {
        assert_eq!(r.join().unwrap(), everything, "node {n}'s live stream");
    }
    // The log: gapless, every acknowledged event once, at the position its receipt named.
    let exported = exported(&url, &dir.path().join("s"));
    assert_eq!(exported.len() as u64, end_after);
    let at: std::collections::HashMap<String, u64> = exported
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["position"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(at.len() as u64, end_after, "an id stored twice");
    for (id, position) in &acknowledged {
        assert_eq!(
            at.get(id),
            Some(position),
            "{id} acknowledged at {position}"
        );
    }
}

/// The node that holds the writer's role, as `log_writer` records it while its session holds the lock: its
/// address, or an empty string.
fn elected(cluster: &Cluster, db: &str) -> String {
    cluster
        .psql(
            db,
            "SELECT coalesce((SELECT w.address FROM log_writer w JOIN pg_locks l ON l.pid = w.pid \
             AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.classid::int8 = 7238402921 >> 32 AND l.objid::int8 = 7238402921 & 4294967295), '')",
        )
        .unwrap()
}

/// The last group was committed by the elected writer's node (`log_head.writer` names the node whose listener
/// session holds the writer's lock).
fn last_group_by_the_elected_writer(cluster: &Cluster) {
    let listener = cluster
        .psql(
            "elected",
            "SELECT application_name FROM pg_stat_activity WHERE pid = (SELECT pid FROM log_writer)",
        )
        .unwrap();
    let recorded = cluster
        .psql("elected", "SELECT writer FROM log_head")
        .unwrap();
    assert!(
        listener.starts_with(&format!("casetrail-{recorded}-")),
        "the last group was written by {recorded}, not by the elected writer (listener session {listener})"
    );
}

/// Posts events `ns` to `base`, one request each, and reads each back from `base` at once (read your writes on the
/// node that took it, wherever it was written).
fn post_each(
    base: &str,
    ingest: &str,
    reader: &str,
    ns: std::ops::Range<usize>,
    acknowledged: &mut Vec<String>,
) {
    for n in ns {
        let (status, body) = call(
            "POST",
            format!("{base}/v1/events"),
            ingest,
            Some(&received(7_000_000 + n)),
        );
        assert_eq!(status, 201, "{body}");
        let id = body[0]["id"].as_str().unwrap().to_owned();
        let position = body[0]["position"].as_u64().unwrap();
        let (status, page) = call(
            "GET",
            format!("{base}/v1/events?after={}&limit=1", position - 1),
            reader,
            None,
        );
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            page["events"][0]["id"].as_str(),
            Some(id.as_str()),
            "{page}"
        );
        acknowledged.push(id);
    }
}

#[test]
fn one_elected_writer_takes_every_node_s_batches_and_another_takes_over_when_it_dies() {
    let cluster = Cluster::start(&Options::default()).expect("a PostgreSQL cluster starts");
    let url = cluster.create_database("elected").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let key_arg = key.to_str().unwrap().to_owned();
    let (admin, ingest) = signing_key_and_tokens(&url, &dir.path().join("s"), &key_arg);
    let mut nodes: Vec<Option<(Proc, String)>> = (0..2)
        .map(|n| {
            Some(
                node(
                    &url,
                    &dir.path().join(format!("n{n}")),
                    &["--audit-key", &key_arg],
                )
                .unwrap(),
            )
        })
        .collect();
    let base = |nodes: &[Option<(Proc, String)>], n: usize| nodes[n].as_ref().unwrap().1.clone();
    let wait_for = |what: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(std::time::Instant::now() < deadline, "not within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&|| !elected(&cluster, "elected").is_empty());
    let writer = elected(&cluster, "elected");
    let w = (0..2)
        .find(|&n| base(&nodes, n) == writer)
        .expect("a node's address");
    let other = 1 - w;
    // The other node learns who writes within a poll; then its batches are written by the writer's session.
    std::thread::sleep(Duration::from_millis(600));
    let mut acknowledged = Vec::new();
    post_each(
        &base(&nodes, other),
        &ingest,
        &admin,
        0..20,
        &mut acknowledged,
    );
    last_group_by_the_elected_writer(&cluster);

    // The internal route takes nothing without the nodes' secret, not even with a client's token.
    let size = cluster
        .psql("elected", "SELECT size FROM log_head")
        .unwrap();
    let (status, _) = call(
        "POST",
        format!("{writer}/internal/v1/append"),
        &admin,
        Some(&serde_json::json!({ "source": "intruder", "events": [received(7_900_000)] })),
    );
    assert_eq!(status, 401);
    assert_eq!(
        cluster
            .psql("elected", "SELECT size FROM log_head")
            .unwrap(),
        size
    );

    // With the nodes' secret: one batch alone is answered by its answer alone; a hand-over with a batch that does
    // not parse is refused whole, nothing of it written.
    let secret = audit::SigningKey::load(&key)
        .unwrap()
        .node_secret()
        .to_owned();
    let (status, one) = call(
        "POST",
        format!("{writer}/internal/v1/append"),
        &secret,
        Some(&json!({ "source": "vendor", "events": [received(7_900_001)] })),
    );
    assert_eq!(status, 200, "{one}");
    let id = one["outcome"]["receipts"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    acknowledged.push(id);
    let (status, refused) = call(
        "POST",
        format!("{writer}/internal/v1/append"),
        &secret,
        Some(&json!({ "requests": [
            { "source": "vendor", "events": [received(7_900_002)] },
            { "source": "vendor", "events": [{ "type": "dossier.received" }] },
        ] })),
    );
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        cluster
            .psql(
                "elected",
                "SELECT count(*) FROM events WHERE id = '01935c3e-0000-7000-8000-000007900002'"
            )
            .unwrap(),
        "0"
    );

    // Batches posted at once to the other node are handed on together, each still all or nothing and answered on
    // its own: every other one carries an event with a stale expected version and is refused whole.
    let answers: Vec<(usize, u16, Value)> = std::thread::scope(|s| {
        let from = base(&nodes, other);
        let threads: Vec<_> = (0..16usize)
            .map(|i| {
                let (from, ingest) = (from.clone(), ingest.clone());
                s.spawn(move || {
                    let mut second = received(7_200_000 + i);
                    if i % 2 == 1 {
                        second["expected_version"] = json!(3);
                    }
                    let (status, body) = call(
                        "POST",
                        format!("{from}/v1/events"),
                        &ingest,
                        Some(&json!([received(7_100_000 + i), second])),
                    );
                    (i, status, body)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    // Landed in whatever order they were taken: acknowledged in the order of their positions.
    let mut landed = Vec::new();
    for (i, status, body) in &answers {
        if i % 2 == 0 {
            assert_eq!(*status, 201, "batch {i}: {body}");
            for e in body.as_array().unwrap() {
                landed.push((
                    e["position"].as_u64().unwrap(),
                    e["id"].as_str().unwrap().to_owned(),
                ));
            }
        } else {
            assert_eq!(*status, 409, "batch {i}: {body}");
        }
        let stored = cluster
            .psql(
                "elected",
                &format!(
                    "SELECT count(*) FROM events WHERE id = '01935c3e-0000-7000-8000-{:012}'",
                    7_100_000 + i
                ),
            )
            .unwrap();
        assert_eq!(stored, if i % 2 == 0 { "1" } else { "0" }, "batch {i}");
    }
    landed.sort();
    acknowledged.extend(landed.into_iter().map(|(_, id)| id));
    last_group_by_the_elected_writer(&cluster);

    // A writer that takes no batch (frozen: its sessions stay, so it stays elected) does not stop the others: the
    // other node writes the batch itself once the hand-over has had no answer.
    let frozen = nodes[w].as_ref().unwrap().0.id() as i32;
    // SAFETY: signalling the node's own process group.
    unsafe { libc::kill(-frozen, libc::SIGSTOP) };
    let started = std::time::Instant::now();
    post_each(
        &base(&nodes, other),
        &ingest,
        &admin,
        60..61,
        &mut acknowledged,
    );
    let waited = started.elapsed();
    unsafe { libc::kill(-frozen, libc::SIGCONT) };
    assert!(
        waited < Duration::from_secs(15),
        "answered after {waited:?}"
    );
    let (by, elected_node) = (
        cluster
            .psql("elected", "SELECT writer FROM log_head")
            .unwrap(),
        cluster
            .psql("elected", "SELECT node FROM log_writer")
            .unwrap(),
    );
    assert_ne!(by, elected_node, "the frozen writer cannot have written it");

    // The writer dies: the other node takes the role and carries on writing.
    let (mut dead, _) = nodes[w].take().unwrap();
    // SAFETY: signalling the node's own process group.
    unsafe { libc::kill(-(dead.id() as i32), libc::SIGKILL) };
    let _ = dead.wait();
    let survivor = base(&nodes, other);
    wait_for(&|| elected(&cluster, "elected") == survivor);
    post_each(&survivor, &ingest, &admin, 20..40, &mut acknowledged);
    // A node started now hands its batches to the new writer.
    nodes[w] = Some(node(&url, &dir.path().join("n2"), &["--audit-key", &key_arg]).unwrap());
    std::thread::sleep(Duration::from_millis(600));
    post_each(&base(&nodes, w), &ingest, &admin, 40..60, &mut acknowledged);
    assert_eq!(elected(&cluster, "elected"), survivor);
    last_group_by_the_elected_writer(&cluster);
    let ids = exported_ids(&url, &dir.path().join("s"));
    assert_eq!(ids, acknowledged, "every acknowledged event once, in order");
}
