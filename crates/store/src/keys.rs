//! The IdP's signing keys, stored encrypted (`signing_keys`).

use crate::StoreError;
use crate::sql::parse_alg;
use async_trait::async_trait;
use gatehouse_core::Timestamp;
use gatehouse_core::audit::AuditEvent;
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::StoredKey;

/// Signing keys (the key ring in `gatehouse-idp` keeps them in memory).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every key, newest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Adds a key; every other key of the same algorithm still signing at
    /// `key.signs_from` is retired then (it signs until the new key takes
    /// over), in the same transaction. `Conflict("signing key")` if the kid
    /// exists (nothing is retired then, nor audited).
    async fn add_signing_key(&self, key: &StoredKey, audit: &AuditEvent) -> Result<(), StoreError>;

    /// Deletes every key of `alg` but `keep` (a compromised key leaves the
    /// JWKS at once), with its audit event; how many went.
    async fn withdraw_signing_keys(&self, alg: SigningAlg, keep: &str, audit: &AuditEvent) -> Result<u64, StoreError>;

    /// Deletes keys retired before `before` (they signed nothing still valid).
    async fn purge_signing_keys(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// Implements [`KeyStore`] for `$store`, inside `impl_store!` (`backend.rs`),
/// whose helpers and imports it uses.
macro_rules! impl_key_store {
    ($store:ty) => {
        #[async_trait]
        impl $crate::KeyStore for $store {
            async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
                sqlx::query_as::<_, KeyRow>($crate::keys::SIGNING_KEYS)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(StoredKey::try_from)
                    .collect()
            }

            async fn add_signing_key(&self, key: &StoredKey, audit: &AuditEvent) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query($crate::keys::RETIRE_SIGNING_KEYS)
                    .bind(key.alg.as_str())
                    .bind(key.signs_from.0)
                    .execute(&mut *tx)
                    .await?;
                let inserted = sqlx::query($crate::keys::INSERT_SIGNING_KEY)
                    .bind(key.kid.as_str())
                    .bind(key.alg.as_str())
                    .bind(key.public_jwk.as_str())
                    .bind(key.private_encrypted.as_str())
                    .bind(key.created_at.0)
                    .bind(key.signs_from.0)
                    .bind(key.retired_at.map(|t| t.0))
                    .execute(&mut *tx)
                    .await;
                match inserted {
                    Err(e) if $crate::sql::is_unique_violation(&e) => {
                        // Nothing retired either.
                        return Err(StoreError::Conflict("signing key"));
                    }
                    other => other?,
                };
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn withdraw_signing_keys(
                &self,
                alg: SigningAlg,
                keep: &str,
                audit: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut tx = self.writer.begin().await?;
                let withdrawn = sqlx::query($crate::keys::WITHDRAW_SIGNING_KEYS)
                    .bind(alg.as_str())
                    .bind(keep)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(withdrawn)
            }

            async fn purge_signing_keys(&self, before: Timestamp) -> Result<u64, StoreError> {
                let purged = sqlx::query($crate::keys::PURGE_SIGNING_KEYS)
                    .bind(before.0)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                Ok(purged)
            }
        }
    };
}

// --- SQL and rows ----------------------------------------------------------

/// Newest first; the kid breaks ties.
pub const SIGNING_KEYS: &str = "\
    SELECT kid, alg, public_jwk, private_encrypted, created_at, signs_from, retired_at \
    FROM signing_keys ORDER BY created_at DESC, kid DESC";

/// `$1` alg, `$2` when the new key starts signing: the older keys of the
/// algorithm stop then (or earlier, if they already were to).
pub const RETIRE_SIGNING_KEYS: &str = "\
    UPDATE signing_keys SET retired_at = $2 WHERE alg = $1 AND (retired_at IS NULL OR retired_at > $2)";

pub const INSERT_SIGNING_KEY: &str = "\
    INSERT INTO signing_keys (kid, alg, public_jwk, private_encrypted, created_at, signs_from, retired_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// `$1` alg, `$2` the kid to keep.
pub const WITHDRAW_SIGNING_KEYS: &str = "\
    DELETE FROM signing_keys WHERE alg = $1 AND kid <> $2";

/// `$1` before. Unretired keys are never purged.
pub const PURGE_SIGNING_KEYS: &str = "\
    DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1";

#[derive(sqlx::FromRow)]
pub struct KeyRow {
    kid: String,
    alg: String,
    public_jwk: String,
    private_encrypted: String,
    created_at: i64,
    /// `NULL` only if written by an older version: it signed at once.
    signs_from: Option<i64>,
    retired_at: Option<i64>,
}

impl TryFrom<KeyRow> for StoredKey {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        Ok(StoredKey {
            alg: parse_alg(&row.alg, "signing_keys", &row.kid)?,
            kid: row.kid,
            public_jwk: row.public_jwk,
            private_encrypted: row.private_encrypted,
            created_at: Timestamp(row.created_at),
            signs_from: Timestamp(row.signs_from.unwrap_or(row.created_at)),
            retired_at: row.retired_at.map(Timestamp),
        })
    }
}
