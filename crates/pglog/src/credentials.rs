//! Credentials and signed checkpoints on PostgreSQL: shared by every node of the log. A revocation decides the
//! last-admin rule in its own transaction, with the live credentials locked, and notifies `casetrail_credentials`.

use crate::{db, PgLog};
use domain::Credential;
use store::{
    last_admin, Checkpoints, Credentials, EventLog, Revoked, StoreError, StoredCheckpoint,
};

fn credential_of(text: &str) -> Result<Credential, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Format(format!("a stored credential: {e}")))
}

fn checkpoint_of(row: &tokio_postgres::Row) -> StoredCheckpoint {
    StoredCheckpoint {
        size: row.get::<_, i64>(0) as u64,
        issued_at: row.get(1),
        note: row.get(2),
    }
}

impl Credentials for PgLog {
    fn add_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        credential.check().map_err(StoreError::Format)?;
        let c = credential.clone();
        let text = serde_json::to_string(&c).expect("credentials serialize");
        self.read(move |client| async move {
            let inserted = client
                .execute(
                    "INSERT INTO credentials (name, token_sha256, role, revoked_at, credential) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                    &[
                        &c.name,
                        &c.token_sha256,
                        &c.role.to_string(),
                        &c.revoked_at,
                        &text,
                    ],
                )
                .await
                .map_err(db)?;
            if inserted == 0 {
                return Err(StoreError::CredentialExists(c.name));
            }
            client
                .execute("SELECT pg_notify('casetrail_credentials', $1)", &[&c.name])
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn credentials(&self) -> Result<Vec<Credential>, StoreError> {
        let texts: Vec<String> = self.read(|c| async move {
            let rows = c
                .query("SELECT credential FROM credentials ORDER BY name", &[])
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        texts.iter().map(|t| credential_of(t)).collect()
    }

    fn revoke_credential(
        &self,
        name: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Revoked, StoreError> {
        if let Some(why) = self.shared.failed() {
            return Err(StoreError::Unavailable(why.to_owned()));
        }
        let name = name.to_owned();
        self.read(move |mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            // Every live credential locked: a second revocation (on any node) waits here, then sees this one.
            let rows = tx
                .query(
                    "SELECT credential FROM credentials WHERE revoked_at IS NULL ORDER BY name FOR UPDATE",
                    &[],
                )
                .await
                .map_err(db)?;
            let live = rows
                .iter()
                .map(|r| credential_of(r.get(0)))
                .collect::<Result<Vec<_>, _>>()?;
            let Some(mut credential) = live.iter().find(|c| c.name == name).cloned() else {
                return Ok(Revoked::NoLiveCredential);
            };
            if last_admin(&live, &name) {
                return Ok(Revoked::LastAdmin);
            }
            credential.revoked_at = Some(at);
            let text = serde_json::to_string(&credential).expect("credentials serialize");
            tx.execute(
                "UPDATE credentials SET revoked_at = $2, credential = $3 WHERE name = $1",
                &[&name, &at, &text],
            )
            .await
            .map_err(db)?;
            tx.execute("SELECT pg_notify('casetrail_credentials', $1)", &[&name])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(Revoked::Revoked)
        })
    }

    fn credential_by_token_sha256(
        &self,
        token_sha256: &str,
    ) -> Result<Option<Credential>, StoreError> {
        let hash = token_sha256.to_owned();
        let text: Option<String> = self.read(move |c| async move {
            let row = c
                .query_opt(
                    "SELECT credential FROM credentials WHERE token_sha256 = $1 AND revoked_at IS NULL",
                    &[&hash],
                )
                .await
                .map_err(db)?;
            Ok(row.map(|r| r.get(0)))
        })?;
        text.map(|t| credential_of(&t)).transpose()
    }

    fn credentials_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.credentials.subscribe()
    }
}

impl Checkpoints for PgLog {
    fn periodic_signer(&self) -> bool {
        self.shared.signer.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn add_checkpoint(
        &self,
        checkpoint: &StoredCheckpoint,
    ) -> Result<StoredCheckpoint, StoreError> {
        let checkpoint = checkpoint.clone();
        let known = self.head().size;
        self.read(move |c| async move {
            // The size is checked against the database's committed head, in the same (synchronous) transaction
            // that stores the checkpoint: once it commits, the standby has every event the checkpoint signs.
            let row = c
                .query_one(
                    "WITH head AS (SELECT size FROM log_head WHERE id = 1), \
                     added AS (INSERT INTO checkpoints (size, issued_at, note) \
                               SELECT $1, $2, $3 FROM head WHERE head.size >= $1 \
                               ON CONFLICT (size) DO NOTHING RETURNING size) \
                     SELECT (SELECT size FROM head), (SELECT count(*) FROM added)",
                    &[
                        &(checkpoint.size as i64),
                        &checkpoint.issued_at,
                        &checkpoint.note,
                    ],
                )
                .await
                .map_err(db)?;
            let (size, added): (i64, i64) = (row.get(0), row.get(1));
            if (size as u64) < checkpoint.size {
                return Err(StoreError::OutOfRange(format!(
                    "a checkpoint of size {} is past the log's size {}",
                    checkpoint.size,
                    (size as u64).max(known)
                )));
            }
            if added == 1 {
                return Ok(checkpoint);
            }
            let row = c
                .query_one(
                    "SELECT size, issued_at, note FROM checkpoints WHERE size = $1",
                    &[&(checkpoint.size as i64)],
                )
                .await
                .map_err(db)?;
            Ok(checkpoint_of(&row))
        })
    }

    fn checkpoint(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(move |c| async move {
            let row = c
                .query_opt(
                    "SELECT size, issued_at, note FROM checkpoints WHERE size = $1",
                    &[&(size as i64)],
                )
                .await
                .map_err(db)?;
            Ok(row.as_ref().map(checkpoint_of))
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(|c| async move {
            let row = c
                .query_opt(
                    "SELECT size, issued_at, note FROM checkpoints ORDER BY size DESC LIMIT 1",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok(row.as_ref().map(checkpoint_of))
        })
    }

    fn checkpoints(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let after = after.map_or(-1, |a| a.min(i64::MAX as u64) as i64);
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(move |c| async move {
            let rows = c
                .query(
                    "SELECT size, issued_at, note FROM checkpoints WHERE size > $1 ORDER BY size LIMIT $2",
                    &[&after, &limit],
                )
                .await
                .map_err(db)?;
            Ok(rows.iter().map(checkpoint_of).collect())
        })
    }
}
