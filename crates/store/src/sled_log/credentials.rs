//! Credentials (configuration, not events) and the signed checkpoints issued over the log.

use super::SledLog;
use sled::Transactional;

use crate::{last_admin, Checkpoints, Credentials, EventLog, Revoked, StoreError};
use chrono::{DateTime, Utc};
use domain::Credential;
use serde::Serialize;
use std::sync::Mutex;

/// Revocations one at a time within the process, so that two admins revoking each other cannot both pass the
/// last-admin check (sled's directory lock keeps every other process out).
static REVOCATIONS: Mutex<()> = Mutex::new(());

impl Credentials for SledLog {
    fn add_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        credential.check().map_err(StoreError::Format)?;
        let credential = credential.clone();
        self.write_outside("a credential", move |t, dir| {
            let value = serde_json::to_vec(&credential).expect("credentials serialize");
            (&t.credentials, &t.credential_hashes)
                .transaction(|(names, hashes)| {
                    if names.get(credential.name.as_bytes())?.is_some() {
                        return sled::transaction::abort(());
                    }
                    names.insert(credential.name.as_bytes(), value.as_slice())?;
                    hashes.insert(
                        credential.token_sha256.as_bytes(),
                        credential.name.as_bytes(),
                    )?;
                    Ok(())
                })
                .map_err(|e: sled::transaction::TransactionError<()>| match e {
                    sled::transaction::TransactionError::Abort(()) => {
                        StoreError::CredentialExists(credential.name.clone())
                    }
                    sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
                })?;
            super::sync(t, dir)
        })
    }

    fn credentials(&self) -> Result<Vec<Credential>, StoreError> {
        self.trees
            .credentials
            .iter()
            .values()
            .map(|v| {
                serde_json::from_slice(&v?)
                    .map_err(|e| StoreError::Format(format!("a stored credential: {e}")))
            })
            .collect()
    }

    fn revoke_credential(&self, name: &str, at: DateTime<Utc>) -> Result<Revoked, StoreError> {
        let _one_at_a_time = REVOCATIONS.lock().unwrap_or_else(|e| e.into_inner());
        let live: Vec<Credential> = self
            .credentials()?
            .into_iter()
            .filter(|c| c.revoked_at.is_none())
            .collect();
        if last_admin(&live, name) {
            return Ok(Revoked::LastAdmin);
        }
        let name = name.to_owned();
        self.write_outside("a revocation", move |t, dir| {
            let Some(bytes) = t.credentials.get(name.as_bytes())? else {
                return Ok(Revoked::NoLiveCredential);
            };
            let mut credential: Credential =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Format(e.to_string()))?;
            if credential.revoked_at.is_some() {
                return Ok(Revoked::NoLiveCredential);
            }
            credential.revoked_at = Some(at);
            t.credentials.insert(
                name.as_bytes(),
                serde_json::to_vec(&credential).expect("credentials serialize"),
            )?;
            t.credential_hashes
                .remove(credential.token_sha256.as_bytes())?;
            super::sync(t, dir)?;
            Ok(Revoked::Revoked)
        })
    }

    fn credential_by_token_sha256(
        &self,
        token_sha256: &str,
    ) -> Result<Option<Credential>, StoreError> {
        let Some(name) = self.trees.credential_hashes.get(token_sha256.as_bytes())? else {
            return Ok(None);
        };
        let Some(bytes) = self.trees.credentials.get(&name)? else {
            return Ok(None);
        };
        let credential: Credential =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Format(e.to_string()))?;
        Ok(credential.revoked_at.is_none().then_some(credential))
    }
}

impl Checkpoints for SledLog {
    fn add_checkpoint(
        &self,
        checkpoint: &StoredCheckpoint,
    ) -> Result<StoredCheckpoint, StoreError> {
        let size = self.head().size;
        if checkpoint.size > size {
            return Err(StoreError::OutOfRange(format!(
                "a checkpoint of size {} is past the log's size {size}",
                checkpoint.size
            )));
        }
        if let Some(stored) = self.checkpoint(checkpoint.size)? {
            return Ok(stored);
        }
        let checkpoint = checkpoint.clone();
        self.write_outside("a checkpoint", move |t, dir| {
            let value = serde_json::to_vec(&checkpoint).expect("checkpoints serialize");
            let key = checkpoint.size.to_be_bytes();
            match t
                .checkpoints
                .compare_and_swap(key, None as Option<&[u8]>, Some(value))?
            {
                Ok(()) => {
                    super::sync(t, dir)?;
                    Ok(checkpoint)
                }
                Err(existing) => decode_checkpoint(
                    existing
                        .current
                        .as_deref()
                        .expect("a failed swap from None found a value"),
                ),
            }
        })
    }

    fn checkpoint(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.trees
            .checkpoints
            .get(size.to_be_bytes())?
            .map(|v| decode_checkpoint(&v))
            .transpose()
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.trees
            .checkpoints
            .last()?
            .map(|(_, v)| decode_checkpoint(&v))
            .transpose()
    }

    fn checkpoints(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let from = match after {
            None => 0u64,
            Some(a) => match a.checked_add(1) {
                Some(f) => f,
                None => return Ok(Vec::new()),
            },
        };
        self.trees
            .checkpoints
            .range(from.to_be_bytes()..)
            .take(limit)
            .map(|item| decode_checkpoint(&item?.1))
            .collect()
    }
}

/// A signed checkpoint as a store keeps it: the size it signs, when, and the signed note.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub issued_at: DateTime<Utc>,
    pub note: String,
}

fn decode_checkpoint(bytes: &[u8]) -> Result<StoredCheckpoint, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Format(format!("a stored checkpoint: {e}")))
}
