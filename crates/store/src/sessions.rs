//! Sessions at the IdP: the cookie's record (by its digest), its
//! account, its re-authentication; ending them.

use crate::accounts::sql::{AccountPart, account_and_ban_columns};
use crate::bans::BanPart;
use crate::{AccountBans, OutboxMessage, StoreError};
use async_trait::async_trait;
use gatehouse_core::audit::AuditEvent;
use gatehouse_core::session::{AuthMethod, Session, SessionSelector};
use gatehouse_core::{AccountId, Timestamp, TokenDigest};

/// Sessions at the IdP.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &Session, audit: &AuditEvent) -> Result<(), StoreError>;

    /// The session with its account and the account's bans, in one read
    /// (the only read of a session by its cookie's digest); `None` if either
    /// is missing.
    async fn session_with_account(&self, id: &TokenDigest) -> Result<Option<(Session, AccountBans)>, StoreError>;

    /// Newest first.
    async fn sessions_of(&self, account: &AccountId) -> Result<Vec<Session>, StoreError>;

    async fn touch_session(&self, id: &TokenDigest, now: Timestamp) -> Result<(), StoreError>;

    /// The password was entered again: clears `needs_reauth`, sets
    /// `auth_time` and `amr`, keeps the same session.
    async fn reauthenticate_session(
        &self,
        id: &TokenDigest,
        now: Timestamp,
        amr: &[AuthMethod],
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Deletes the selected sessions of the account and writes `outbox`
    /// (the back-channel logout tokens for the sessions' clients) in the
    /// same transaction; returns how many sessions went.
    async fn end_sessions(
        &self,
        account: &AccountId,
        which: &SessionSelector,
        audit: &AuditEvent,
        outbox: &[OutboxMessage],
    ) -> Result<u64, StoreError>;
}

/// Implements [`SessionStore`] for `$store`, inside `impl_store!` (`backend.rs`),
/// whose helpers and imports it uses.
macro_rules! impl_session_store {
    ($store:ty) => {
        #[async_trait]
        impl $crate::SessionStore for $store {
            async fn create_session(&self, session: &Session, audit: &AuditEvent) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query($crate::sessions::INSERT_SESSION)
                    .bind(session.id_digest.as_str())
                    .bind(session.handle.as_str())
                    .bind(session.account_id.as_str())
                    .bind(session.created_at.0)
                    .bind(session.auth_time.0)
                    .bind(session.amr_string())
                    .bind(session.last_seen_at.0)
                    .bind(session.user_agent.as_str())
                    .bind(session.ip.as_str())
                    .bind(session.needs_reauth)
                    .execute(&mut *tx)
                    .await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn session_with_account(
                &self,
                id: &TokenDigest,
            ) -> Result<Option<(Session, $crate::AccountBans)>, StoreError> {
                let mut rows =
                    sqlx::query_as::<_, $crate::sessions::SessionAccountRow>($crate::sessions::SESSION_WITH_ACCOUNT)
                        .bind(id.as_str())
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter();
                let Some(first) = rows.next() else {
                    return Ok(None);
                };
                let session = Session::from(first.session);
                let holder = $crate::accounts::sql::account_bans(
                    &session.account_id,
                    first.account,
                    rows.map(|r| r.ban),
                    first.ban,
                )?;
                Ok(holder.map(|h| (session, h)))
            }

            async fn sessions_of(&self, account: &AccountId) -> Result<Vec<Session>, StoreError> {
                let rows = sqlx::query_as::<_, SessionRow>($crate::sessions::SESSIONS_OF)
                    .bind(account.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Session::from).collect())
            }

            async fn touch_session(&self, id: &TokenDigest, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query($crate::sessions::TOUCH_SESSION)
                    .bind(id.as_str())
                    .bind(now.0)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn reauthenticate_session(
                &self,
                id: &TokenDigest,
                now: Timestamp,
                amr: &[AuthMethod],
                audit: &AuditEvent,
            ) -> Result<(), StoreError> {
                let amr = amr.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" ");
                let mut tx = self.writer.begin().await?;
                sqlx::query($crate::sessions::REAUTHENTICATE_SESSION)
                    .bind(id.as_str())
                    .bind(now.0)
                    .bind(amr)
                    .execute(&mut *tx)
                    .await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn end_sessions(
                &self,
                account: &AccountId,
                which: &SessionSelector,
                audit: &AuditEvent,
                outbox: &[OutboxMessage],
            ) -> Result<u64, StoreError> {
                let (statement, selected) = $crate::sessions::end_sessions(which);
                let mut query = sqlx::query(statement).bind(account.as_str());
                if let Some(selected) = selected {
                    query = query.bind(selected);
                }
                let mut tx = self.writer.begin().await?;
                let ended = query.execute(&mut *tx).await?.rows_affected();
                insert_outbox(&mut tx, outbox).await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(ended)
            }
        }
    };
}

// --- SQL and rows ----------------------------------------------------------

pub const INSERT_SESSION: &str = "\
    INSERT INTO sessions (id_digest, handle, account_id, created_at, auth_time, amr, \
                          last_seen_at, user_agent, ip, needs_reauth) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Newest first; the digest breaks ties so the order is stable.
pub const SESSIONS_OF: &str = "\
    SELECT id_digest, handle, account_id, created_at, auth_time, amr, \
           last_seen_at, user_agent, ip, needs_reauth \
    FROM sessions WHERE account_id = $1 \
    ORDER BY created_at DESC, id_digest DESC";

pub const TOUCH_SESSION: &str = "UPDATE sessions SET last_seen_at = $2 WHERE id_digest = $1";

/// `$1` session, `$2` now, `$3` amr.
pub const REAUTHENTICATE_SESSION: &str = "\
    UPDATE sessions SET needs_reauth = FALSE, auth_time = $2, last_seen_at = $2, amr = $3 \
    WHERE id_digest = $1";

/// Every session of account `$1` except `$2` (when `$2` is not NULL) must
/// enter the password again.
pub const MARK_SESSIONS_REAUTH: &str = "\
    UPDATE sessions SET needs_reauth = TRUE \
    WHERE account_id = $1 AND ($2 IS NULL OR id_digest <> $2)";

pub const DELETE_SESSIONS_OF: &str = "DELETE FROM sessions WHERE account_id = $1";
const DELETE_SESSION_BY_ID: &str = "DELETE FROM sessions WHERE account_id = $1 AND id_digest = $2";
const DELETE_SESSION_BY_HANDLE: &str = "DELETE FROM sessions WHERE account_id = $1 AND handle = $2";
const DELETE_SESSIONS_EXCEPT: &str = "DELETE FROM sessions WHERE account_id = $1 AND id_digest <> $2";

/// The statement for [`SessionStore::end_sessions`] and its second argument
/// (the first is always the account: a session of another account is never
/// touched, whatever the selector names).
pub fn end_sessions(which: &SessionSelector) -> (&'static str, Option<&str>) {
    match which {
        SessionSelector::ById(id) => (DELETE_SESSION_BY_ID, Some(id.as_str())),
        SessionSelector::ByHandle(handle) => (DELETE_SESSION_BY_HANDLE, Some(handle.as_str())),
        SessionSelector::AllExcept(id) => (DELETE_SESSIONS_EXCEPT, Some(id.as_str())),
        SessionSelector::All => (DELETE_SESSIONS_OF, None),
    }
}

/// A session, its account and the account's bans, in one read: one row per
/// ban, or one row with NULL ban columns.
pub const SESSION_WITH_ACCOUNT: &str = concat!(
    "SELECT s.id_digest, s.handle, s.account_id, s.created_at, s.auth_time, s.amr, \
            s.last_seen_at, s.user_agent, s.ip, s.needs_reauth, ",
    account_and_ban_columns!(),
    "FROM sessions s \
     JOIN accounts a ON a.id = s.account_id \
     LEFT JOIN bans b ON b.account_id = s.account_id \
     WHERE s.id_digest = $1 ORDER BY b.client_id"
);

#[derive(sqlx::FromRow)]
pub struct SessionRow {
    id_digest: String,
    handle: String,
    account_id: String,
    created_at: i64,
    auth_time: i64,
    amr: String,
    last_seen_at: i64,
    user_agent: String,
    ip: String,
    needs_reauth: bool,
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Session {
            id_digest: TokenDigest(row.id_digest),
            handle: row.handle,
            account_id: AccountId(row.account_id),
            created_at: Timestamp(row.created_at),
            auth_time: Timestamp(row.auth_time),
            // Unknown methods are dropped, never guessed.
            amr: Session::parse_amr(&row.amr),
            last_seen_at: Timestamp(row.last_seen_at),
            user_agent: row.user_agent,
            ip: row.ip,
            needs_reauth: row.needs_reauth,
        }
    }
}

/// A row of [`SESSION_WITH_ACCOUNT`].
#[derive(sqlx::FromRow)]
pub struct SessionAccountRow {
    #[sqlx(flatten)]
    pub session: SessionRow,
    #[sqlx(flatten)]
    pub account: AccountPart,
    #[sqlx(flatten)]
    pub ban: BanPart,
}
