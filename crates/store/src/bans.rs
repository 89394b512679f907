//! Bans and suspensions, everywhere or at one client.

use crate::{OutboxMessage, StoreError};
use async_trait::async_trait;
use gatehouse_core::audit::AuditEvent;
use gatehouse_core::ban::Ban;
use gatehouse_core::oauth::ClientId;
use gatehouse_core::{AccountId, Timestamp};

/// Bans and suspensions.
#[async_trait]
pub trait BanStore: Send + Sync {
    /// Records the ban (replacing one for the same account and client) and,
    /// in the same transaction: for a ban everywhere, ends every session of
    /// the account and revokes every grant; for a ban at one client, revokes
    /// the grants of that client; and deletes the replaced ban's
    /// account-enabled messages not yet due ([`crate::suspension_end_key`]). With
    /// its audit event and `outbox`.
    async fn ban(
        &self,
        ban: &Ban,
        now: Timestamp,
        audit: &AuditEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError>;

    /// Lifts the ban of the account everywhere (`None`) or at one client,
    /// deleting its account-enabled messages not yet due
    /// ([`crate::suspension_end_key`]), with its audit event and `outbox`;
    /// false if there was none, and then nothing is written.
    async fn unban(
        &self,
        account: &AccountId,
        client: Option<&ClientId>,
        audit: &AuditEvent,
        outbox: &[OutboxMessage],
    ) -> Result<bool, StoreError>;

    /// Every ban of the account, lifted by time or not.
    async fn bans_of(&self, account: &AccountId) -> Result<Vec<Ban>, StoreError>;
}

/// Implements [`BanStore`] for `$store`, inside `impl_store!` (`backend.rs`),
/// whose helpers and imports it uses.
macro_rules! impl_ban_store {
    ($store:ty) => {
        /// Deletes the account-enabled messages, not yet due, that
        /// announce the end of the account's ban in `client`'s scope.
        async fn withdraw_suspension_end(
            conn: &mut Conn,
            account: &AccountId,
            client: Option<&ClientId>,
            now: Timestamp,
        ) -> Result<(), StoreError> {
            sqlx::query($crate::outbox::WITHDRAW_OUTBOX)
                .bind($crate::suspension_end_key(account, client))
                .bind(now.0)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        #[async_trait]
        impl $crate::BanStore for $store {
            async fn ban(
                &self,
                ban: &Ban,
                now: Timestamp,
                audit: &AuditEvent,
                outbox: &[OutboxMessage],
            ) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                let client = ban.client_id.as_ref().map_or("", ClientId::as_str);
                sqlx::query($crate::bans::UPSERT_BAN)
                    .bind(ban.account_id.as_str())
                    .bind(client)
                    .bind(ban.until.map(|t| t.0))
                    .bind(ban.reason.as_str())
                    .bind(ban.by.as_str())
                    .bind(ban.created_at.0)
                    .execute(&mut *tx)
                    .await?;
                match &ban.client_id {
                    None => {
                        sqlx::query($crate::sessions::DELETE_SESSIONS_OF)
                            .bind(ban.account_id.as_str())
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query($crate::oauth::sql::REVOKE_GRANTS_OF_ACCOUNT)
                            .bind(ban.account_id.as_str())
                            .bind(now.0)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Some(client) => {
                        sqlx::query($crate::oauth::sql::REVOKE_GRANTS_OF)
                            .bind(ban.account_id.as_str())
                            .bind(client.as_str())
                            .bind(now.0)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                withdraw_suspension_end(&mut tx, &ban.account_id, ban.client_id.as_ref(), now).await?;
                insert_outbox(&mut tx, outbox).await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn unban(
                &self,
                account: &AccountId,
                client: Option<&ClientId>,
                audit: &AuditEvent,
                outbox: &[OutboxMessage],
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let deleted = sqlx::query($crate::bans::DELETE_BAN)
                    .bind(account.as_str())
                    .bind(client.map_or("", ClientId::as_str))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted > 0 {
                    // The unban happens at its audit event's time.
                    withdraw_suspension_end(&mut tx, account, client, audit.at).await?;
                    insert_outbox(&mut tx, outbox).await?;
                    insert_audit(&mut tx, audit).await?;
                }
                // No ban to lift: nothing changed, nothing is recorded.
                tx.commit().await?;
                Ok(deleted > 0)
            }

            async fn bans_of(&self, account: &AccountId) -> Result<Vec<Ban>, StoreError> {
                let rows = sqlx::query_as::<_, $crate::bans::BanRow>($crate::bans::BANS_OF)
                    .bind(account.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Ban::from).collect())
            }
        }
    };
}

// --- SQL and rows ----------------------------------------------------------

/// Inserts or replaces the ban of account `$1` at client `$2` ('' for everywhere).
pub const UPSERT_BAN: &str = "\
    INSERT INTO bans (account_id, client_id, until, reason, by_whom, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (account_id, client_id) DO UPDATE SET \
        until = excluded.until, reason = excluded.reason, by_whom = excluded.by_whom, created_at = excluded.created_at";

pub const DELETE_BAN: &str = "DELETE FROM bans WHERE account_id = $1 AND client_id = $2";

pub const BANS_OF: &str = "\
    SELECT account_id, client_id, until, reason, by_whom, created_at \
    FROM bans WHERE account_id = $1 ORDER BY client_id";

#[derive(sqlx::FromRow)]
pub struct BanRow {
    account_id: String,
    client_id: String,
    until: Option<i64>,
    reason: String,
    by_whom: String,
    created_at: i64,
}

impl From<BanRow> for Ban {
    fn from(row: BanRow) -> Self {
        Ban {
            account_id: AccountId(row.account_id),
            client_id: (!row.client_id.is_empty()).then_some(ClientId(row.client_id)),
            until: row.until.map(Timestamp),
            reason: row.reason,
            by: row.by_whom,
            created_at: Timestamp(row.created_at),
        }
    }
}

/// The ban columns of a joined read (`ban_*`), NULL when the account has no
/// ban.
#[derive(sqlx::FromRow)]
pub struct BanPart {
    ban_client_id: Option<String>,
    ban_until: Option<i64>,
    ban_reason: Option<String>,
    ban_by_whom: Option<String>,
    ban_created_at: Option<i64>,
}

impl BanPart {
    pub fn into_ban(self, account: &AccountId) -> Option<Ban> {
        let (Some(client_id), Some(reason), Some(by_whom), Some(created_at)) = (
            self.ban_client_id,
            self.ban_reason,
            self.ban_by_whom,
            self.ban_created_at,
        ) else {
            return None;
        };
        Some(Ban::from(BanRow {
            account_id: account.as_str().to_owned(),
            client_id,
            until: self.ban_until,
            reason,
            by_whom,
            created_at,
        }))
    }
}
