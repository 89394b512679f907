//! The durable outbox of messages to reliers, and its worker's leases.

use crate::{OutboxMessage, OutboxSummary, StoreError};
use async_trait::async_trait;
use gatehouse_core::Timestamp;
use gatehouse_core::audit::AuditEvent;
use gatehouse_core::oauth::ClientId;

/// The outbox: written with the change that causes a message (by the
/// other roles' methods), claimed and settled by the worker.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Takes up to `limit` due messages (not delivered, not dead,
    /// `next_attempt_at <= now`, not leased) and leases them until
    /// `now + lease_secs`, atomically: two workers never take the same one.
    async fn claim_outbox(&self, now: Timestamp, limit: i64, lease_secs: i64)
    -> Result<Vec<OutboxMessage>, StoreError>;

    /// The message was accepted: delivered at `now`, lease released.
    async fn outbox_delivered(&self, id: &str, now: Timestamp) -> Result<(), StoreError>;

    /// An attempt failed: counts it, records `error`, and either schedules the
    /// next attempt or (`dead`) gives up at `now`. The lease is released.
    async fn outbox_failed(
        &self,
        id: &str,
        now: Timestamp,
        next_attempt_at: Timestamp,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError>;

    /// Counts by status, of one client or of all.
    async fn outbox_summary(&self, client: Option<&ClientId>) -> Result<OutboxSummary, StoreError>;

    /// When the oldest message still waiting for delivery was written.
    async fn outbox_oldest_waiting(&self) -> Result<Option<Timestamp>, StoreError>;

    /// The newest `limit` messages, of one client or of all.
    async fn outbox_messages(&self, client: Option<&ClientId>, limit: i64) -> Result<Vec<OutboxMessage>, StoreError>;

    /// One message, delivered or not.
    async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError>;

    /// Makes a failed or dead message due again at `now` (attempts kept, not
    /// dead, not leased), sending `payload` from then on (the message signed
    /// again), with its audit event; false if there is no such undelivered
    /// message (nothing written).
    async fn outbox_redeliver(
        &self,
        id: &str,
        now: Timestamp,
        payload: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
}

/// Implements [`OutboxStore`] for `$store`, inside `impl_store!` (`backend.rs`),
/// whose helpers and imports it uses.
macro_rules! impl_outbox_store {
    ($store:ty) => {
        #[async_trait]
        impl $crate::OutboxStore for $store {
            async fn claim_outbox(
                &self,
                now: Timestamp,
                limit: i64,
                lease_secs: i64,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                let statement = match BACKEND {
                    Backend::Sqlite => $crate::outbox::CLAIM_OUTBOX_SQLITE,
                    Backend::Postgres => $crate::outbox::CLAIM_OUTBOX_POSTGRES,
                };
                let lease_until = now.plus(lease_secs).0;
                let rows: Vec<$crate::outbox::OutboxRow> =
                    gatehouse_kit::outbox_sql::claim(&self.writer, statement, now.0, limit, lease_until).await?;
                rows.into_iter().map(OutboxMessage::try_from).collect()
            }

            async fn outbox_delivered(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
                Ok(gatehouse_kit::outbox_sql::delivered(&self.writer, id, now.0).await?)
            }

            async fn outbox_failed(
                &self,
                id: &str,
                now: Timestamp,
                next_attempt_at: Timestamp,
                error: &str,
                dead: bool,
            ) -> Result<(), StoreError> {
                let writer = &self.writer;
                Ok(gatehouse_kit::outbox_sql::failed(writer, id, now.0, next_attempt_at.0, error, dead).await?)
            }

            async fn outbox_summary(&self, client: Option<&ClientId>) -> Result<OutboxSummary, StoreError> {
                let row = sqlx::query_as::<_, gatehouse_kit::outbox_sql::SummaryRow>($crate::outbox::OUTBOX_SUMMARY)
                    .bind(client.map(ClientId::as_str))
                    .fetch_one(&self.pool)
                    .await?;
                Ok(OutboxSummary {
                    pending: row.pending,
                    failed: row.failed,
                    delivered: row.delivered,
                    dead: row.dead,
                })
            }

            async fn outbox_oldest_waiting(&self) -> Result<Option<Timestamp>, StoreError> {
                let oldest: Option<i64> = sqlx::query_scalar($crate::outbox::OUTBOX_OLDEST_WAITING)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(oldest.map(Timestamp))
            }

            async fn outbox_messages(
                &self,
                client: Option<&ClientId>,
                limit: i64,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                let rows = sqlx::query_as::<_, $crate::outbox::OutboxRow>($crate::outbox::OUTBOX_MESSAGES)
                    .bind(client.map(ClientId::as_str))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(OutboxMessage::try_from).collect()
            }

            async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
                sqlx::query_as::<_, $crate::outbox::OutboxRow>($crate::outbox::OUTBOX_MESSAGE)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(OutboxMessage::try_from)
                    .transpose()
            }

            async fn outbox_redeliver(
                &self,
                id: &str,
                now: Timestamp,
                payload: &str,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let changed = sqlx::query($crate::outbox::OUTBOX_REDELIVER)
                    .bind(id)
                    .bind(now.0)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if changed == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

// --- SQL and rows ----------------------------------------------------------

/// The columns of an outbox row, in the order of [`OutboxRow`] and of
/// `insert_outbox`'s binds.
macro_rules! outbox_columns {
    () => {
        "id, client_id, kind, target_uri, payload, content_type, created_at, \
         next_attempt_at, attempts, last_error, delivered_at, dead_at, locked_until, withdraw_key"
    };
}

/// Leases the due, unleased rows (`$1` now, `$2` limit, `$3` the lease's
/// end) and answers with them; `$lock` ends the inner select.
pub const INSERT_OUTBOX: &str = concat!(
    "INSERT INTO outbox (",
    outbox_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
);

/// Deletes the messages `$1` names ([`crate::suspension_end_key`]) that
/// are not due yet at `$2`: what they announce will not happen.
pub const WITHDRAW_OUTBOX: &str = "\
    DELETE FROM outbox WHERE withdraw_key = $1 AND next_attempt_at > $2 \
                         AND delivered_at IS NULL AND dead_at IS NULL";

/// The claim of due messages (the kit's, as the payments store's).
pub const CLAIM_OUTBOX_SQLITE: &str = gatehouse_kit::claim_statement!(sqlite, outbox_columns!());
/// The same on PostgreSQL (`FOR UPDATE SKIP LOCKED`).
pub const CLAIM_OUTBOX_POSTGRES: &str = gatehouse_kit::claim_statement!(postgres, outbox_columns!());

/// `$1` id, `$2` now, `$3` the payload signed again.
pub const OUTBOX_REDELIVER: &str = "\
    UPDATE outbox SET dead_at = NULL, locked_until = NULL, next_attempt_at = $2, created_at = $2, \
                      payload = $3 \
    WHERE id = $1 AND delivered_at IS NULL";

/// `$1` the client, or NULL for all.
pub const OUTBOX_SUMMARY: &str = gatehouse_kit::summary_statement!(" WHERE ($1 IS NULL OR client_id = $1)");

/// When the oldest message still waiting (not delivered, not dead) was written.
pub const OUTBOX_OLDEST_WAITING: &str =
    "SELECT MIN(created_at) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL";

pub const OUTBOX_MESSAGE: &str = concat!("SELECT ", outbox_columns!(), " FROM outbox WHERE id = $1");

pub const OUTBOX_MESSAGES: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox WHERE ($1 IS NULL OR client_id = $1) \
     ORDER BY created_at DESC, id DESC LIMIT $2"
);

#[derive(sqlx::FromRow)]
pub struct OutboxRow {
    id: String,
    client_id: String,
    kind: String,
    target_uri: String,
    payload: String,
    content_type: String,
    created_at: i64,
    next_attempt_at: i64,
    attempts: i64,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    dead_at: Option<i64>,
    locked_until: Option<i64>,
    withdraw_key: Option<String>,
}

impl TryFrom<OutboxRow> for crate::OutboxMessage {
    type Error = crate::StoreError;

    fn try_from(row: OutboxRow) -> Result<Self, Self::Error> {
        let kind = crate::OutboxKind::parse(&row.kind)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("outbox kind {}", row.kind)))?;
        Ok(crate::OutboxMessage {
            id: row.id,
            client_id: ClientId(row.client_id),
            kind,
            target_uri: row.target_uri,
            payload: row.payload,
            content_type: row.content_type,
            created_at: Timestamp(row.created_at),
            next_attempt_at: Timestamp(row.next_attempt_at),
            attempts: row.attempts,
            last_error: row.last_error,
            delivered_at: row.delivered_at.map(Timestamp),
            dead_at: row.dead_at.map(Timestamp),
            locked_until: row.locked_until.map(Timestamp),
            withdraw_key: row.withdraw_key,
        })
    }
}
