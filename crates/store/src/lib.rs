//! Storage: one trait, [`Store`], and two backends on sqlx: SQLite (the
//! embedded default, one file, WAL mode) and PostgreSQL (several instances
//! on one database). The backend is chosen by the URL scheme in [`connect`].
//!
//! Every mutation that has an audit event takes it as an argument and writes
//! it in the same transaction as the change, so the log never misses a change
//! and never records one that did not happen.

use async_trait::async_trait;
use std::sync::Arc;

use gatehouse_core::audit::{AuditEvent, AuditKind, AuditRecord};
use gatehouse_core::code::{CodeEffect, CodePurpose, OneTimeCode};
use gatehouse_core::session::{AuthMethod, Session, SessionSelector};
use gatehouse_core::throttle::Window;
use gatehouse_core::{Account, AccountId, Email, Timestamp, TokenDigest};

#[macro_use]
mod store_impl;
mod postgres;
mod sql;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. the email is taken).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database URL is not one we know.
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back (a bug or a hand-edited row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The outcome of [`Store::redeem_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// The code was unused; it is now used and its effect applied.
    Done,
    /// Someone used it first (a second click, a race): nothing changed.
    AlreadyUsed,
    /// An email change whose new address was taken meanwhile: nothing
    /// changed, the code stays unused.
    EmailTaken,
}

/// Which audit events to read.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub account_id: Option<AccountId>,
    pub kind: Option<AuditKind>,
    /// Only events with `seq` greater than this (for paging forward).
    pub after_seq: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Applies this backend's migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;
    /// A cheap round trip, for `/health/ready`.
    async fn ping(&self) -> Result<(), StoreError>;

    // --- accounts ---------------------------------------------------------
    /// Inserts the account. `Conflict` if the email is taken (nothing written).
    async fn create_account(&self, account: &Account, audit: &AuditEvent)
    -> Result<(), StoreError>;
    async fn account_by_id(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;
    async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError>;
    /// Replaces the password hash; every session of the account except `keep`
    /// is marked as needing re-authentication.
    async fn change_password(
        &self,
        id: &AccountId,
        new_hash: &str,
        keep: Option<&TokenDigest>,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Deletes the account, its sessions and its codes. Audit events stay.
    async fn delete_account(&self, id: &AccountId, audit: &AuditEvent) -> Result<(), StoreError>;

    // --- one-time codes ---------------------------------------------------
    /// Stores a new code; earlier unused codes of the same account and purpose
    /// stop working (they are marked used).
    async fn insert_code(
        &self,
        code: &OneTimeCode,
        audit: Option<&AuditEvent>,
    ) -> Result<(), StoreError>;
    async fn code_by_link(
        &self,
        purpose: CodePurpose,
        link: &TokenDigest,
    ) -> Result<Option<OneTimeCode>, StoreError>;
    /// The newest unused code of this purpose for this account.
    async fn latest_code(
        &self,
        account: &AccountId,
        purpose: CodePurpose,
    ) -> Result<Option<OneTimeCode>, StoreError>;
    /// Counts one wrong guess of the short code.
    async fn count_code_attempt(&self, code_id: &str) -> Result<(), StoreError>;
    /// Marks the code used (only if still unused) and applies `effect` to
    /// the code's account, in one transaction with `audit`.
    async fn redeem_code(
        &self,
        code: &OneTimeCode,
        effect: &CodeEffect,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<Redeemed, StoreError>;

    // --- sessions ---------------------------------------------------------
    async fn create_session(&self, session: &Session, audit: &AuditEvent)
    -> Result<(), StoreError>;
    async fn session(&self, id: &TokenDigest) -> Result<Option<Session>, StoreError>;
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
    /// Deletes the selected sessions of the account; returns how many.
    async fn end_sessions(
        &self,
        account: &AccountId,
        which: &SessionSelector,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;

    // --- throttling -------------------------------------------------------
    async fn throttle_window(&self, key: &str) -> Result<Option<Window>, StoreError>;
    /// Counts a failure atomically: starts a new window at `now` if the stored
    /// one began `window_secs` or more ago, else adds one.
    async fn throttle_fail(
        &self,
        key: &str,
        now: Timestamp,
        window_secs: i64,
    ) -> Result<Window, StoreError>;
    async fn throttle_clear(&self, key: &str) -> Result<(), StoreError>;

    // --- audit log --------------------------------------------------------
    /// Appends an event that has no other change to go with (a failed login).
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// Oldest first.
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Opens the store named by `url`: `sqlite://path` (created if missing) or
/// `postgres://...` / `postgresql://...`. Does not migrate.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(
            url.split(':').next().unwrap_or_default().to_string(),
        ))
    }
}
