//! The audit log: appended with the change it describes, read by
//! filters.

use crate::sql::corrupt;
use crate::{AuditQuery, StoreError};
use async_trait::async_trait;
use gatehouse_core::audit::{AuditEvent, AuditKind, AuditRecord, Outcome};
use gatehouse_core::oauth::ClientId;
use gatehouse_core::{AccountId, Timestamp};

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an event that has no other change to go with (a failed login).
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// The log's read, oldest first: the events `query` selects. No
    /// endpoint calls it yet; it is the read fraud review will be served
    /// from (its own issue), and the tests read the log with it.
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Implements [`AuditStore`] for `$store`, inside `impl_store!` (`backend.rs`),
/// whose helpers and imports it uses.
macro_rules! impl_audit_store {
    ($store:ty) => {
        #[async_trait]
        impl $crate::AuditStore for $store {
            async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
                let mut conn = self.writer.acquire().await?;
                insert_audit(&mut conn, event).await
            }

            async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
                let select = $crate::audit::audit_select(query);
                let mut q = sqlx::query_as::<_, AuditRow>(select.sql);
                if let Some(account_id) = select.account_id {
                    q = q.bind(account_id);
                }
                if let Some(kind) = select.kind {
                    q = q.bind(kind);
                }
                let rows = q
                    .bind(select.after_seq)
                    .bind(select.limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(AuditRecord::try_from).collect()
            }
        }
    };
}

// --- SQL and rows ----------------------------------------------------------

pub const INSERT_AUDIT: &str = "\
    INSERT INTO audit_events (at, kind, account_id, ip, user_agent, outcome, detail, by_whom, client_id) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

// One statement per combination of filters (rather than `$1 IS NULL OR ...`)
// so each can use its index. Parameters: the filters present, in the order
// account then kind, then `after_seq`, then the limit.
const AUDIT_ALL: &str = "\
    SELECT seq, at, kind, account_id, ip, user_agent, outcome, detail, by_whom, client_id FROM audit_events \
    WHERE seq > $1 \
    ORDER BY seq LIMIT $2";
const AUDIT_BY_ACCOUNT: &str = "\
    SELECT seq, at, kind, account_id, ip, user_agent, outcome, detail, by_whom, client_id FROM audit_events \
    WHERE account_id = $1 AND seq > $2 \
    ORDER BY seq LIMIT $3";
const AUDIT_BY_KIND: &str = "\
    SELECT seq, at, kind, account_id, ip, user_agent, outcome, detail, by_whom, client_id FROM audit_events \
    WHERE kind = $1 AND seq > $2 \
    ORDER BY seq LIMIT $3";
const AUDIT_BY_ACCOUNT_AND_KIND: &str = "\
    SELECT seq, at, kind, account_id, ip, user_agent, outcome, detail, by_whom, client_id FROM audit_events \
    WHERE account_id = $1 AND kind = $2 AND seq > $3 \
    ORDER BY seq LIMIT $4";

/// The default and the largest number of events one read returns.
pub const AUDIT_DEFAULT_LIMIT: u32 = 100;
pub const AUDIT_MAX_LIMIT: u32 = 1000;

/// An [`AuditQuery`] turned into a statement and its parameters.
pub struct AuditSelect<'q> {
    pub sql: &'static str,
    pub account_id: Option<&'q str>,
    pub kind: Option<&'static str>,
    pub after_seq: i64,
    pub limit: i64,
}

pub fn audit_select(query: &AuditQuery) -> AuditSelect<'_> {
    let account_id = query.account_id.as_ref().map(AccountId::as_str);
    let kind = query.kind.map(AuditKind::as_str);
    let sql = match (account_id.is_some(), kind.is_some()) {
        (false, false) => AUDIT_ALL,
        (true, false) => AUDIT_BY_ACCOUNT,
        (false, true) => AUDIT_BY_KIND,
        (true, true) => AUDIT_BY_ACCOUNT_AND_KIND,
    };
    let limit = match query.limit {
        0 => AUDIT_DEFAULT_LIMIT,
        n => n.min(AUDIT_MAX_LIMIT),
    };
    AuditSelect {
        sql,
        account_id,
        kind,
        after_seq: query.after_seq.unwrap_or(i64::MIN),
        limit: i64::from(limit),
    }
}

#[derive(sqlx::FromRow)]
pub struct AuditRow {
    seq: i64,
    at: i64,
    kind: String,
    account_id: Option<String>,
    ip: String,
    user_agent: String,
    outcome: String,
    detail: String,
    by_whom: Option<String>,
    client_id: Option<String>,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        let seq = row.seq.to_string();
        let kind = AuditKind::parse(&row.kind)
            .ok_or_else(|| corrupt("audit_events", &seq, format!("unknown kind {:?}", row.kind)))?;
        let outcome = Outcome::parse(&row.outcome)
            .ok_or_else(|| corrupt("audit_events", &seq, format!("unknown outcome {:?}", row.outcome)))?;
        let detail = serde_json::from_str(&row.detail)
            .map_err(|e| corrupt("audit_events", &seq, format!("detail is not JSON: {e}")))?;
        Ok(AuditRecord {
            seq: row.seq,
            event: AuditEvent {
                at: Timestamp(row.at),
                kind,
                account_id: row.account_id.map(AccountId),
                ip: row.ip,
                user_agent: row.user_agent,
                outcome,
                detail,
                by: row.by_whom,
                client_id: row.client_id.map(ClientId),
            },
        })
    }
}
