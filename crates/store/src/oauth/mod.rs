//! OAuth's records: clients (cached, `cache.rs`), interactions,
//! authorization codes, consents, grants with their refresh tokens,
//! revoked access token ids and DPoP proof ids. The SQL and rows are in
//! `sql.rs`, the writes shared by several methods in `write.rs`.

use crate::{AccountBans, StoreError};
use async_trait::async_trait;
use gatehouse_core::audit::AuditEvent;
use gatehouse_core::oauth::grant::{AuthCode, Consent, Grant, Interaction, Redemption, RefreshToken};
use gatehouse_core::oauth::{Client, ClientId};
use gatehouse_core::{AccountId, Timestamp, TokenDigest};

pub(crate) mod sql;
#[macro_use]
mod write;

/// OAuth: clients, interactions, authorization codes, consents, grants
/// and refresh tokens, revoked token ids, DPoP proof ids.
#[async_trait]
pub trait OAuthStore: Send + Sync {
    /// `Conflict("client")` if the id exists (nothing written).
    async fn create_client(&self, client: &Client, audit: &AuditEvent) -> Result<(), StoreError>;

    async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError>;

    /// Ordered by creation time.
    async fn clients(&self) -> Result<Vec<Client>, StoreError>;

    /// Whether `origin` (as a browser sends it in `Origin`) is the origin of
    /// one of a public client's http(s) redirect URIs: the browsers that may
    /// call the token endpoint, UserInfo and revocation cross-origin. One
    /// cached set, kept as fresh as the client records.
    async fn is_public_client_origin(&self, origin: &str) -> Result<bool, StoreError>;

    /// Replaces every field but `id` and `created_at`; false if no such
    /// client (nothing written, not even `audit`).
    async fn update_client(&self, client: &Client, audit: &AuditEvent) -> Result<bool, StoreError>;

    /// Deletes the client and everything issued to it (codes, grants,
    /// refresh tokens, consents); false if no such client (nothing
    /// written, not even `audit`).
    async fn delete_client(&self, id: &ClientId, audit: &AuditEvent) -> Result<bool, StoreError>;

    /// Inserts or replaces the interaction (also to record the account chosen).
    async fn put_interaction(&self, interaction: &Interaction) -> Result<(), StoreError>;

    async fn interaction(&self, digest: &TokenDigest) -> Result<Option<Interaction>, StoreError>;

    async fn delete_interaction(&self, digest: &TokenDigest) -> Result<(), StoreError>;

    /// Stores the code and records that its session served its client
    /// (idempotently), in one transaction. The session must exist.
    async fn insert_auth_code(&self, code: &AuthCode) -> Result<(), StoreError>;

    /// The code with its account (`None` if it is gone) and the account's
    /// bans, in one read.
    async fn auth_code_with_account(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(AuthCode, Option<AccountBans>)>, StoreError>;

    /// Marks the code used and writes `grant` and `refresh` (if any), in one
    /// transaction. If the code was used before, nothing is written and the
    /// grant the first use created (`code.grant_id`) and everything in its
    /// family is revoked at `now`: `Replayed`. No such code: `Unknown`.
    async fn redeem_auth_code(
        &self,
        digest: &TokenDigest,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
        now: Timestamp,
    ) -> Result<Redemption, StoreError>;

    /// A resource server (`client`) accepted a token of the grant
    /// `grant_id` (it introspected it): the grant's IdP session, if it is
    /// still there, has served that client too, so the client hears its
    /// logout and the account's security events. Idempotent.
    async fn resource_served(&self, grant_id: &str, client: &ClientId, now: Timestamp) -> Result<(), StoreError>;

    /// The clients an IdP session has served (for logout), sorted.
    async fn session_clients(&self, session: &TokenDigest) -> Result<Vec<ClientId>, StoreError>;

    /// The clients the account has used: those with a grant or a consent
    /// for it, or served by one of its sessions; sorted, each once.
    async fn clients_used_by(&self, account: &AccountId) -> Result<Vec<ClientId>, StoreError>;

    async fn consent(&self, account: &AccountId, client: &ClientId) -> Result<Option<Consent>, StoreError>;

    /// Inserts or replaces the consent, with its audit event.
    async fn put_consent(&self, consent: &Consent, audit: &AuditEvent) -> Result<(), StoreError>;

    /// Newest first.
    async fn consents_of(&self, account: &AccountId) -> Result<Vec<Consent>, StoreError>;

    /// Deletes the consent and revokes every grant of that account and
    /// client, with its audit event; false if there was no consent (the
    /// grants are revoked and the event written all the same).
    async fn revoke_consent(
        &self,
        account: &AccountId,
        client: &ClientId,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;

    /// Whether the grant or any ancestor (`parent_id` chain) is revoked.
    /// An unknown grant counts as revoked, and so does one whose ancestor is
    /// gone (deleted with its client or account).
    async fn grant_revoked(&self, id: &str) -> Result<bool, StoreError>;

    /// Revokes the grant and every grant descending from it (`parent_id`),
    /// with its audit event.
    async fn revoke_grant(&self, id: &str, now: Timestamp, audit: &AuditEvent) -> Result<(), StoreError>;

    async fn refresh_token(&self, digest: &TokenDigest) -> Result<Option<RefreshToken>, StoreError>;

    /// Marks `old` used and writes `new`, in one transaction, if `old` was
    /// unused. If `old` was used before, its grant's family is revoked at
    /// `now` and nothing is written: `Replayed`. No such token: `Unknown`.
    async fn rotate_refresh_token(
        &self,
        old: &TokenDigest,
        new: &RefreshToken,
        now: Timestamp,
    ) -> Result<Redemption, StoreError>;

    /// Remembers a revoked access token id until `expires_at`, with its
    /// audit event.
    async fn revoke_jti(&self, jti: &str, expires_at: Timestamp, audit: &AuditEvent) -> Result<(), StoreError>;

    async fn jti_revoked(&self, jti: &str) -> Result<bool, StoreError>;

    /// Remembers the DPoP proof `jti` of the key with thumbprint `jkt` until
    /// `expires_at`, atomically: true if it was remembered already (a
    /// replay), false if this is its first use. A remembered proof past its
    /// `expires_at` counts as unseen; such rows are purged now and then.
    async fn dpop_jti_seen(&self, jkt: &str, jti: &str, expires_at: Timestamp) -> Result<bool, StoreError>;
}

/// Implements [`OAuthStore`] for `$store`, inside `impl_store!` (`backend.rs`),
/// whose helpers and imports it uses.
/// With it come the write helpers (`write.rs`) and SQLite's batch
/// runner (`batch.rs`).
macro_rules! impl_oauth_store {
    ($store:ty) => {
        oauth_writes!();
        batch_runner!();

        #[async_trait]
        impl $crate::OAuthStore for $store {
            async fn create_client(&self, client: &Client, audit: &AuditEvent) -> Result<(), StoreError> {
                // A new id is in no cache (unknown ids are not remembered,
                // see `client`), but a public client's redirect URIs add
                // to the cached origins: then the counter moves.
                let mut tx = self.writer.begin().await?;
                let inserted = client_query($crate::oauth::sql::INSERT_CLIENT, client)
                    .bind(client.created_at.0)
                    .execute(&mut *tx)
                    .await;
                match inserted {
                    Err(e) if $crate::sql::is_unique_violation(&e) => return Err(StoreError::Conflict("client")),
                    other => other.map_err(StoreError::from)?,
                };
                insert_audit(&mut tx, audit).await?;
                if client.is_public() {
                    clients_changed(tx, &self.caches).await
                } else {
                    tx.commit().await.map_err(StoreError::from)
                }
            }

            async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
                let load = async {
                    sqlx::query_as::<_, ClientRow>($crate::oauth::sql::CLIENT_BY_ID)
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Client::try_from)
                        .transpose()
                };
                // Unknown ids are not remembered: they cannot fill the memory.
                cached(&self.pool, &self.caches.clients, id, load).await
            }

            async fn clients(&self) -> Result<Vec<Client>, StoreError> {
                sqlx::query_as::<_, ClientRow>($crate::oauth::sql::CLIENTS)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(Client::try_from)
                    .collect()
            }

            async fn is_public_client_origin(&self, origin: &str) -> Result<bool, StoreError> {
                let load = async {
                    let mut origins = std::collections::HashSet::new();
                    for row in sqlx::query_as::<_, ClientRow>($crate::oauth::sql::PUBLIC_CLIENTS)
                        .fetch_all(&self.pool)
                        .await?
                    {
                        origins.extend(Client::try_from(row)?.cors_origins());
                    }
                    Ok(Some(std::sync::Arc::new(origins)))
                };
                let origins = cached(&self.pool, &self.caches.public_origins, &(), load).await?;
                Ok(origins.is_some_and(|o| o.contains(origin)))
            }

            async fn update_client(&self, client: &Client, audit: &AuditEvent) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let updated = client_query($crate::oauth::sql::UPDATE_CLIENT, client)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if updated == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                insert_audit(&mut tx, audit).await?;
                clients_changed(tx, &self.caches).await?;
                Ok(true)
            }

            async fn delete_client(&self, id: &ClientId, audit: &AuditEvent) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query($crate::oauth::sql::DELETE_AUTH_CODES_OF_CLIENT)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                let deleted = sqlx::query($crate::oauth::sql::DELETE_CLIENT)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                insert_audit(&mut tx, audit).await?;
                clients_changed(tx, &self.caches).await?;
                Ok(true)
            }

            async fn put_interaction(&self, interaction: &Interaction) -> Result<(), StoreError> {
                sqlx::query($crate::oauth::sql::PUT_INTERACTION)
                    .bind(interaction.digest.as_str())
                    .bind(interaction.query.as_str())
                    .bind(interaction.created_at.0)
                    .bind(interaction.expires_at.0)
                    .bind(interaction.chosen_account.as_ref().map(AccountId::as_str))
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn interaction(&self, digest: &TokenDigest) -> Result<Option<Interaction>, StoreError> {
                let row = sqlx::query_as::<_, InteractionRow>($crate::oauth::sql::INTERACTION)
                    .bind(digest.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Interaction::from))
            }

            async fn delete_interaction(&self, digest: &TokenDigest) -> Result<(), StoreError> {
                sqlx::query($crate::oauth::sql::DELETE_INTERACTION)
                    .bind(digest.as_str())
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn insert_auth_code(&self, code: &AuthCode) -> Result<(), StoreError> {
                if BACKEND == Backend::Sqlite {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    let job = HotWrite::InsertCode {
                        code: code.clone(),
                        reply,
                    };
                    return hot_write(&self.batch, &self.writer, job, answer).await;
                }
                let mut conn = self.writer.acquire().await?;
                insert_code(&mut conn, $crate::oauth::sql::INSERT_AUTH_CODE_POSTGRES, code).await
            }

            async fn auth_code_with_account(
                &self,
                digest: &TokenDigest,
            ) -> Result<Option<(AuthCode, Option<$crate::AccountBans>)>, StoreError> {
                let mut rows = sqlx::query_as::<_, $crate::oauth::sql::AuthCodeAccountRow>(
                    $crate::oauth::sql::AUTH_CODE_WITH_ACCOUNT,
                )
                .bind(digest.as_str())
                .fetch_all(&self.pool)
                .await?
                .into_iter();
                let Some(first) = rows.next() else {
                    return Ok(None);
                };
                let code = AuthCode::try_from(first.code)?;
                let holder = $crate::accounts::sql::account_bans(
                    &code.account_id,
                    first.account,
                    rows.map(|r| r.ban),
                    first.ban,
                )?;
                Ok(Some((code, holder)))
            }

            async fn redeem_auth_code(
                &self,
                digest: &TokenDigest,
                grant: &Grant,
                refresh: Option<&RefreshToken>,
                now: Timestamp,
            ) -> Result<Redemption, StoreError> {
                if BACKEND == Backend::Sqlite {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    let job = HotWrite::Redeem {
                        digest: digest.clone(),
                        grant: grant.clone(),
                        refresh: refresh.cloned(),
                        now,
                        reply,
                    };
                    return hot_write(&self.batch, &self.writer, job, answer).await;
                }
                let mut conn = self.writer.acquire().await?;
                if redeem_code(
                    &mut conn,
                    $crate::oauth::sql::REDEEM_AUTH_CODE_POSTGRES,
                    digest,
                    grant,
                    refresh,
                    now,
                )
                .await?
                {
                    return Ok(Redemption::Issued);
                }
                drop(conn);
                // Used before: revoke what the first use issued.
                replayed(
                    self.writer.begin().await?,
                    $crate::oauth::sql::AUTH_CODE_GRANT,
                    digest,
                    now,
                )
                .await
            }

            async fn resource_served(
                &self,
                grant_id: &str,
                client: &ClientId,
                now: Timestamp,
            ) -> Result<(), StoreError> {
                sqlx::query($crate::oauth::sql::RESOURCE_SERVED)
                    .bind(grant_id)
                    .bind(client.as_str())
                    .bind(now.0)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn session_clients(&self, session: &TokenDigest) -> Result<Vec<ClientId>, StoreError> {
                let mut clients = sqlx::query_scalar::<_, String>($crate::oauth::sql::SESSION_CLIENTS)
                    .bind(session.as_str())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(ClientId)
                    .collect::<Vec<_>>();
                // Byte order on both databases, whatever their collation.
                clients.sort_unstable();
                Ok(clients)
            }

            async fn clients_used_by(&self, account: &AccountId) -> Result<Vec<ClientId>, StoreError> {
                let mut clients = sqlx::query_scalar::<_, String>($crate::oauth::sql::CLIENTS_USED_BY)
                    .bind(account.as_str())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(ClientId)
                    .collect::<Vec<_>>();
                clients.sort_unstable();
                clients.dedup();
                Ok(clients)
            }

            async fn consent(&self, account: &AccountId, client: &ClientId) -> Result<Option<Consent>, StoreError> {
                sqlx::query_as::<_, ConsentRow>($crate::oauth::sql::CONSENT)
                    .bind(account.as_str())
                    .bind(client.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(Consent::try_from)
                    .transpose()
            }

            async fn put_consent(&self, consent: &Consent, audit: &AuditEvent) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query($crate::oauth::sql::PUT_CONSENT)
                    .bind(consent.account_id.as_str())
                    .bind(consent.client_id.as_str())
                    .bind(consent.scopes.to_string())
                    .bind(consent.granted_at.0)
                    .execute(&mut *tx)
                    .await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn consents_of(&self, account: &AccountId) -> Result<Vec<Consent>, StoreError> {
                sqlx::query_as::<_, ConsentRow>($crate::oauth::sql::CONSENTS_OF)
                    .bind(account.as_str())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(Consent::try_from)
                    .collect()
            }

            async fn revoke_consent(
                &self,
                account: &AccountId,
                client: &ClientId,
                now: Timestamp,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let deleted = sqlx::query($crate::oauth::sql::DELETE_CONSENT)
                    .bind(account.as_str())
                    .bind(client.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // With or without a consent (first-party clients have
                // none), every grant of the pair goes.
                sqlx::query($crate::oauth::sql::REVOKE_GRANTS_OF)
                    .bind(account.as_str())
                    .bind(client.as_str())
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(deleted > 0)
            }

            async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
                sqlx::query_as::<_, GrantRow>($crate::oauth::sql::GRANT)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(Grant::try_from)
                    .transpose()
            }

            async fn grant_revoked(&self, id: &str) -> Result<bool, StoreError> {
                let chain = sqlx::query_as::<_, ChainRow>($crate::oauth::sql::GRANT_CHAIN)
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
                Ok($crate::oauth::sql::chain_revoked(&chain))
            }

            async fn revoke_grant(&self, id: &str, now: Timestamp, audit: &AuditEvent) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                revoke_family(&mut tx, id, now).await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn refresh_token(&self, digest: &TokenDigest) -> Result<Option<RefreshToken>, StoreError> {
                let row = sqlx::query_as::<_, RefreshRow>($crate::oauth::sql::REFRESH_TOKEN)
                    .bind(digest.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(RefreshToken::from))
            }

            async fn rotate_refresh_token(
                &self,
                old: &TokenDigest,
                new: &RefreshToken,
                now: Timestamp,
            ) -> Result<Redemption, StoreError> {
                let mut tx = self.writer.begin().await?;
                let used = sqlx::query($crate::oauth::sql::USE_REFRESH_TOKEN)
                    .bind(old.as_str())
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if used == 0 {
                    return replayed(tx, $crate::oauth::sql::REFRESH_TOKEN_GRANT, old, now).await;
                }
                write_refresh_token(&mut tx, new).await?;
                tx.commit().await?;
                Ok(Redemption::Issued)
            }

            async fn revoke_jti(&self, jti: &str, expires_at: Timestamp, audit: &AuditEvent) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query($crate::oauth::sql::REVOKE_JTI)
                    .bind(jti)
                    .bind(expires_at.0)
                    .execute(&mut *tx)
                    .await?;
                insert_audit(&mut tx, audit).await?;
                changed(tx, &self.caches.revoked_jtis, || ()).await
            }

            async fn jti_revoked(&self, jti: &str) -> Result<bool, StoreError> {
                let load = async {
                    let found = sqlx::query_scalar::<_, String>($crate::oauth::sql::JTI_REVOKED)
                        .bind(jti)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(Some(found.is_some()))
                };
                let revoked = cached(&self.pool, &self.caches.revoked_jtis, &jti.to_owned(), load).await?;
                Ok(revoked.unwrap_or(false))
            }

            async fn dpop_jti_seen(&self, jkt: &str, jti: &str, expires_at: Timestamp) -> Result<bool, StoreError> {
                // Per process and backend: the purge is housekeeping, any
                // instance doing it now and then is enough.
                static INSERTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let now = Timestamp::now();
                if INSERTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % $crate::oauth::sql::DPOP_PURGE_EVERY
                    == 0
                {
                    sqlx::query($crate::oauth::sql::PURGE_DPOP_JTIS)
                        .bind(now.0)
                        .execute(&self.writer)
                        .await?;
                }
                let inserted = sqlx::query($crate::oauth::sql::DPOP_JTI_SEEN)
                    .bind(jkt)
                    .bind(jti)
                    .bind(expires_at.0)
                    .bind(now.0)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                Ok(inserted == 0)
            }
        }
    };
}
