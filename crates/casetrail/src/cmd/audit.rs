//! `casetrail audit`: the verifier key, checkpoints and bundles from a data directory, and the offline checks an
//! auditor runs with nothing but files and a verifier key (docs/audit.md).

use crate::cmd::Result;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the checkpoint signing key is, and the origin a new one gets. Shared by `serve` and `audit`.
#[derive(Args, Clone)]
pub struct KeyArgs {
    /// The checkpoint signing key (C2SP signed-note Ed25519 key, mode 0600); default `<data>/audit-signing.key`,
    /// made on first use.
    #[arg(long, env = "CASETRAIL_AUDIT_KEY")]
    pub audit_key: Option<PathBuf>,
    /// The log's name in its checkpoints (host/path, e.g. motcua.hatinh.gov.vn/casetrail), used only when a new key
    /// is made; a random `casetrail.invalid/log-…` otherwise.
    #[arg(long, env = "CASETRAIL_AUDIT_ORIGIN")]
    pub audit_origin: Option<String>,
}

impl KeyArgs {
    pub fn path(&self, data: &Path) -> PathBuf {
        self.audit_key
            .clone()
            .unwrap_or_else(|| data.join(app::AUDIT_KEY_FILE))
    }

    fn load_or_create(&self, data: &Path) -> Result<audit::SigningKey> {
        let path = self.path(data);
        let (key, made) = audit::SigningKey::load_or_create(&path, self.audit_origin.as_deref())?;
        if made {
            eprintln!(
                "casetrail: made a new checkpoint signing key in {} (back it up with the data)",
                path.display()
            );
        }
        Ok(key)
    }
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Print the verifier key (`<origin>+<id>+<key>`) that checkpoints are signed with; makes the signing key if
    /// there is none yet. Reads only the key file, so it works while a server runs.
    Key {
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Sign a checkpoint of the log's head now and print it (while no server runs; a server signs its own).
    Checkpoint {
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Write a dossier's bundle (its events, an inclusion proof each, a signed checkpoint) from the data
    /// directory, as `GET /v1/dossiers/{dossier}/bundle` does.
    Bundle {
        dossier: String,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Check a bundle offline: the checkpoint's signature, every event against its leaf hash and its inclusion
    /// proof, and that the events are the dossier's versions 1..n. No data directory is read.
    VerifyBundle {
        file: PathBuf,
        /// The verifier key, or a file holding it (`casetrail audit key`, `GET /v1/audit/key`).
        #[arg(long)]
        key: String,
    },
    /// Check offline that the newer signed checkpoint extends the older one. Each file is a signed checkpoint, or
    /// a JSON answer carrying one (`/v1/audit/head`, a bundle, `/v1/audit/consistency`); the proof comes from NEW
    /// when it is a `/v1/audit/consistency?from=<old size>` answer, or from --proof.
    VerifyConsistency {
        old: PathBuf,
        new: PathBuf,
        #[arg(long)]
        key: String,
        /// A `/v1/audit/consistency` answer holding the proof from OLD's size to NEW's.
        #[arg(long)]
        proof: Option<PathBuf>,
    },
}

pub fn run(data: &crate::cmd::DataDir, what: AuditCommand) -> Result<ExitCode> {
    match what {
        AuditCommand::Key { key } => {
            println!("{}", key.load_or_create(data)?.verifier_key());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint { key } => {
            let key = key.load_or_create(data)?;
            let log = crate::cmd::open(data)?;
            let c = audit::Notary::new(key).checkpoint_head(&*log, chrono::Utc::now())?;
            print!("{}", c.note);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Bundle {
            dossier,
            output,
            key,
        } => {
            let code =
                domain::DossierCode::parse(&dossier).map_err(|e| format!("{dossier:?}: {e}"))?;
            let key = key.load_or_create(data)?;
            let log = crate::cmd::open(data)?;
            let bundle = audit::Notary::new(key)
                .bundle(&*log, code.as_str(), chrono::Utc::now())?
                .ok_or_else(|| format!("no dossier {code} in {}", data.describe()))?;
            let bytes = serde_json::to_vec(&bundle)?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?
                }
                None => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes)?;
                    out.write_all(b"\n")?;
                }
            }
            drop(log);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::VerifyBundle { file, key } => verify_bundle(&file, &key),
        AuditCommand::VerifyConsistency {
            old,
            new,
            key,
            proof,
        } => verify_consistency(&old, &new, &key, proof.as_deref()),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    Ok(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?)
}

fn verify_bundle(file: &Path, key: &str) -> Result<ExitCode> {
    let key = audit::VerifierKey::from_arg(key).map_err(|e| format!("--key: {e}"))?;
    let bytes = read(file)?;
    let verified = audit::verify_bundle(&bytes, &key)
        .map_err(|e| format!("{}: rejected: {e}", file.display()))?;
    let (first, last) = (
        verified
            .events
            .first()
            .expect("a verified bundle has events"),
        verified
            .events
            .last()
            .expect("a verified bundle has events"),
    );
    let mut lines = vec![format!(
        "ok: {} events of dossier {} (versions 1–{}, positions {}–{}) are in the log {} of {} events, root {}, as signed by {}",
        verified.events.len(),
        verified.dossier,
        last.version,
        first.position,
        last.position,
        verified.checkpoint.origin,
        verified.checkpoint.size,
        verified.checkpoint.root,
        key.name()
    )];
    for e in &verified.events {
        lines.push(format!(
            "  v{:<3} position {:<10} {:<28} occurred {}  recorded {}  by {}",
            e.version,
            e.position,
            e.event.event_type().as_str(),
            e.event.occurred_at.to_rfc3339(),
            e.recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            e.source
        ));
    }
    print_lines(&lines)?;
    Ok(ExitCode::SUCCESS)
}

fn verify_consistency(old: &Path, new: &Path, key: &str, proof: Option<&Path>) -> Result<ExitCode> {
    let key = audit::VerifierKey::from_arg(key).map_err(|e| format!("--key: {e}"))?;
    let open = |path: &Path| -> Result<(audit::SignedCheckpoint, Option<audit::ConsistencyProof>)> {
        let doc = audit::read_checkpoint_document(&read(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let checkpoint = audit::open_checkpoint(&doc.note, &key)
            .map_err(|e| format!("{}: rejected: {e}", path.display()))?;
        Ok((checkpoint, doc.proof))
    };
    let (old_checkpoint, _) = open(old)?;
    let (new_checkpoint, embedded) = open(new)?;
    let proof = match proof {
        Some(path) => Some(
            audit::read_checkpoint_document(&read(path)?)
                .ok()
                .and_then(|d| d.proof)
                .ok_or_else(|| format!("{}: holds no consistency proof", path.display()))?,
        ),
        None => embedded,
    };
    audit::verify_consistency(&old_checkpoint, &new_checkpoint, proof.as_ref())
        .map_err(|e| format!("rejected: {e}"))?;
    print_lines(&[format!(
        "ok: the log {} of {} events (root {}) extends the log of {} events (root {}) that the older checkpoint signed",
        new_checkpoint.origin, new_checkpoint.size, new_checkpoint.root, old_checkpoint.size, old_checkpoint.root
    )])?;
    Ok(ExitCode::SUCCESS)
}

/// Prints lines to stdout; a reader that stopped reading (`| head -1`) is not an error.
fn print_lines(lines: &[String]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines {
        match writeln!(out, "{line}") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    Ok(())
}
