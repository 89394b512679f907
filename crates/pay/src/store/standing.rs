//! The buyer's standing as the IdP last told it, and ending payments
//! sessions when the IdP says so (issue 15): [`StandingStore`], its SQL,
//! and the macro that implements it for each backend.
//!
//! Security events write the standing when they arrive, in one transaction
//! with the sessions they end and the audit event; an event older (by its
//! `iat`) than the one that set the standing changes nothing, so a late
//! account-disabled cannot undo a newer account-enabled, or the reverse.

use async_trait::async_trait;
use gatehouse_core::Timestamp;

use super::PayStoreError;

/// What the IdP last said about a buyer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    /// `None`: in good standing; else why money may not move.
    pub refused: Option<String>,
    /// The `iat` of the event that set it.
    pub event_at: Timestamp,
    /// When the service last heard about the buyer from the IdP.
    pub heard_at: Timestamp,
}

/// Which payments sessions a back-channel logout or an event ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionsOf<'a> {
    /// Every session of the buyer.
    Buyer(&'a str),
    /// The sessions that came from this IdP session, and the buyer's
    /// sessions whose IdP session is not known (opened by a purchase link).
    IdpSession { sid: &'a str, sub: Option<&'a str> },
}

#[async_trait]
pub trait StandingStore: Send + Sync + 'static {
    /// The buyer's standing, if the IdP ever said anything.
    async fn standing(&self, sub: &str) -> Result<Option<Standing>, PayStoreError>;
    /// Records what the IdP said (`refused`: `None` for good standing) as
    /// of `event_at`, unless a newer event set it already; a refusal also
    /// ends every payments session of the buyer. One transaction with the
    /// `standing_changed` audit event. Answers whether it was recorded.
    async fn record_standing(
        &self,
        sub: &str,
        refused: Option<&str>,
        event_at: Timestamp,
        detail: &serde_json::Value,
        now: Timestamp,
    ) -> Result<bool, PayStoreError>;
    /// Ends sessions, with the `sessions_ended` audit event (when any
    /// ended). Answers how many ended.
    async fn end_sessions(
        &self,
        which: SessionsOf<'_>,
        detail: &serde_json::Value,
        now: Timestamp,
    ) -> Result<u64, PayStoreError>;
}

pub(crate) const STANDING: &str = "SELECT refused, event_at, heard_at FROM standing WHERE sub = $1";

/// An upsert that leaves a row set by a newer event alone (then no row
/// comes back).
pub(crate) const RECORD_STANDING: &str = "\
    INSERT INTO standing (sub, refused, event_at, heard_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (sub) DO UPDATE SET refused = excluded.refused, event_at = excluded.event_at, \
    heard_at = excluded.heard_at WHERE standing.event_at <= excluded.event_at \
    RETURNING sub";

pub(crate) const END_BUYER_SESSIONS: &str = "DELETE FROM sessions WHERE sub = $1";

pub(crate) const END_IDP_SESSION: &str = "\
    DELETE FROM sessions WHERE sid = $1 OR (sid IS NULL AND sub = $2)";

#[derive(sqlx::FromRow)]
pub(crate) struct StandingRow {
    pub refused: Option<String>,
    pub event_at: i64,
    pub heard_at: i64,
}

/// Implements [`StandingStore`] for `$store`, a struct with a
/// `pool: sqlx::Pool<$db>` field.
macro_rules! impl_standing_store {
    (store: $store:ty, db: $db:ty $(,)?) => {
        const _: () = {
            use async_trait::async_trait;
            use gatehouse_core::Timestamp;

            use $crate::store::standing::{self as sql, SessionsOf, Standing, StandingStore};
            use $crate::store::{PayAuditKind, PayStoreError};

            type Conn = <$db as sqlx::Database>::Connection;

            // The payments audit log's write (`ledger_impl.rs`).
            pay_audit_write!();

            #[async_trait]
            impl StandingStore for $store {
                async fn standing(&self, sub: &str) -> Result<Option<Standing>, PayStoreError> {
                    let row = sqlx::query_as::<_, sql::StandingRow>(sql::STANDING)
                        .bind(sub)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(|r| Standing {
                        refused: r.refused,
                        event_at: Timestamp(r.event_at),
                        heard_at: Timestamp(r.heard_at),
                    }))
                }

                async fn record_standing(
                    &self,
                    sub: &str,
                    refused: Option<&str>,
                    event_at: Timestamp,
                    detail: &serde_json::Value,
                    now: Timestamp,
                ) -> Result<bool, PayStoreError> {
                    let mut tx = self.pool.begin().await?;
                    let recorded: Option<String> = sqlx::query_scalar(sql::RECORD_STANDING)
                        .bind(sub)
                        .bind(refused)
                        .bind(event_at.0)
                        .bind(now.0)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if recorded.is_none() {
                        return Ok(false);
                    }
                    if refused.is_some() {
                        sqlx::query(sql::END_BUYER_SESSIONS)
                            .bind(sub)
                            .execute(&mut *tx)
                            .await?;
                    }
                    insert_audit(&mut tx, PayAuditKind::StandingChanged, Some(sub), detail, now).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn end_sessions(
                    &self,
                    which: SessionsOf<'_>,
                    detail: &serde_json::Value,
                    now: Timestamp,
                ) -> Result<u64, PayStoreError> {
                    let mut tx = self.pool.begin().await?;
                    let (query, sub) = match which {
                        SessionsOf::Buyer(sub) => (sqlx::query(sql::END_BUYER_SESSIONS).bind(sub), Some(sub)),
                        SessionsOf::IdpSession { sid, sub } => {
                            (sqlx::query(sql::END_IDP_SESSION).bind(sid).bind(sub), sub)
                        }
                    };
                    let ended = query.execute(&mut *tx).await?.rows_affected();
                    if ended > 0 {
                        let mut detail = detail.clone();
                        detail["ended"] = serde_json::Value::from(ended);
                        insert_audit(&mut tx, PayAuditKind::SessionsEnded, sub, &detail, now).await?;
                    }
                    tx.commit().await?;
                    Ok(ended)
                }
            }
        };
    };
}
