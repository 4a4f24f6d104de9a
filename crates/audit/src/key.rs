//! The log's signing key: an Ed25519 key in the C2SP signed-note encoding (`PRIVATE+KEY+<name>+<id>+<key>`), kept
//! in a file only its owner may read, and the verifier key (`<name>+<id>+<key>`) that auditors check against.

use base64::Engine;
use signed_note::{Note, StandardSigner, StandardVerifier};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use tlog_tiles::{Checkpoint, Hash};

/// Why a key could not be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A checkpoint origin (and key name) must be a non-empty name without spaces or `+`, as signed notes require;
/// by convention it is `host/path` naming the log.
pub(crate) fn check_origin(origin: &str) -> Result<(), KeyError> {
    if origin.len() > 200 || !signed_note::is_key_name_valid(origin) {
        return Err(KeyError::Invalid(format!(
            "the audit origin {origin:?} must be 1 to 200 characters without spaces or '+' (for example motcua.hatinh.gov.vn/casetrail)"
        )));
    }
    Ok(())
}

/// An origin for a log whose operator named none: unique, and plainly not a real host.
pub(crate) fn default_origin() -> String {
    format!("casetrail.invalid/log-{:08x}", rand::random::<u32>())
}

/// The log's signing key. Its name is the log's origin: the first line of every checkpoint it signs.
pub struct SigningKey {
    signer: StandardSigner,
    origin: String,
    verifier_key: String,
    node_secret: String,
}

impl SigningKey {
    /// A new random key for `origin`, and its encoding (the secret to keep).
    pub fn generate(origin: &str) -> Result<(SigningKey, String), KeyError> {
        check_origin(origin)?;
        let (secret, _) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
        let key = SigningKey::parse(&secret)?;
        Ok((key, secret))
    }

    /// Reads an encoded signer key and derives its verifier key.
    pub fn parse(secret: &str) -> Result<SigningKey, KeyError> {
        let secret = secret.trim();
        let invalid = |why: &str| KeyError::Invalid(format!("not an Ed25519 signer key: {why}"));
        let signer = StandardSigner::new(secret).map_err(|e| invalid(&e.to_string()))?;
        let parts: Vec<&str> = secret.splitn(5, '+').collect();
        let [_, _, name, _, key] = parts[..] else {
            return Err(invalid("expected PRIVATE+KEY+<name>+<id>+<key>"));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| invalid("the key is not base64"))?;
        let seed: [u8; 32] = match bytes.as_slice() {
            [1, seed @ ..] => seed.try_into().map_err(|_| invalid("not 32 bytes"))?,
            _ => return Err(invalid("not algorithm 1 (Ed25519)")),
        };
        let private = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = private.verifying_key();
        check_origin(name)?;
        // Ed25519 signatures are deterministic: the same on every node that holds this key, and made by no one
        // who does not. Never published (no checkpoint signs this text).
        use ed25519_dalek::Signer;
        let node_secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            private
                .sign(b"casetrail: a batch forwarded between nodes of one log\n")
                .to_bytes(),
        );
        Ok(SigningKey {
            signer,
            origin: name.to_owned(),
            verifier_key: signed_note::new_ed25519_verifier_key(name, &public),
            node_secret,
        })
    }

    /// Reads the key at `path`, or, when there is no file there, makes one for `origin` (mode 0600, written
    /// durably before it is used). Returns the key and whether it was made now. A key file that other users may
    /// read is refused: whoever reads it can sign checkpoints in the log's name.
    pub fn load_or_create(
        path: &Path,
        origin: Option<&str>,
    ) -> Result<(SigningKey, bool), KeyError> {
        match std::fs::metadata(path) {
            Ok(_) => Ok((SigningKey::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let origin = origin.map(str::to_owned).unwrap_or_else(default_origin);
                let (key, secret) = SigningKey::generate(&origin)?;
                write_secret(path, &secret)?;
                Ok((key, true))
            }
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Reads the key at `path`, refusing one that others may read.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let meta = std::fs::metadata(path).map_err(io(path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Invalid(format!(
                "{} may be read or written by other users (mode {mode:04o}); `chmod 600` it",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        SigningKey::parse(&text).map_err(|e| KeyError::Invalid(format!("{}: {e}", path.display())))
    }

    /// What the nodes of one log (which hold this one key) prove it with when one hands another a batch to write.
    pub fn node_secret(&self) -> &str {
        &self.node_secret
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key, `<origin>+<key id>+<public key>`: what auditors are given to check signatures with.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The 32-bit key id, as it appears in every signature.
    pub fn key_id(&self) -> u32 {
        signed_note::Signer::key_id(&self.signer)
    }

    /// A signed checkpoint (C2SP tlog-checkpoint, three lines: origin, size, root) of a tree.
    pub fn sign_checkpoint(&self, size: u64, root: Hash) -> String {
        let checkpoint = Checkpoint::new(&self.origin, size, root, "")
            .expect("a valid origin makes a checkpoint");
        self.sign_text(std::str::from_utf8(&checkpoint.to_bytes()).expect("checkpoints are UTF-8"))
    }

    /// A signed note of `text` (which ends in a newline and has no other control characters).
    pub(crate) fn sign_text(&self, text: &str) -> String {
        let mut note = Note::new(text.as_bytes(), &[]).expect("a valid note text");
        note.add_sigs(&[&self.signer])
            .expect("Ed25519 signing does not fail");
        String::from_utf8(note.to_bytes()).expect("notes are UTF-8")
    }
}

/// A verifier key, parsed.
#[derive(Clone)]
pub struct VerifierKey {
    pub(crate) verifier: StandardVerifier,
    pub(crate) name: String,
}

impl VerifierKey {
    /// Parses `<name>+<id>+<key>`.
    pub fn parse(text: &str) -> Result<VerifierKey, KeyError> {
        let text = text.trim();
        let verifier = StandardVerifier::new(text).map_err(|e| {
            KeyError::Invalid(format!("not a verifier key (<name>+<id>+<key>): {e}"))
        })?;
        let name = text.split('+').next().unwrap_or_default().to_owned();
        Ok(VerifierKey { verifier, name })
    }

    /// A verifier key given as its text, or as the path of a file holding it.
    pub fn from_arg(arg: &str) -> Result<VerifierKey, KeyError> {
        let path = Path::new(arg);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            VerifierKey::parse(&text)
        } else {
            VerifierKey::parse(arg)
        }
    }

    /// The origin this key signs for.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Writes a secret to a new file that only its owner may read, durably: a temporary file, fsynced, renamed into
/// place, and the directory fsynced.
fn write_secret(path: &Path, secret: &str) -> Result<(), KeyError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}
