//! Storage: [`Store`], the sum of one trait per role ([`AccountStore`],
//! [`SessionStore`], [`OAuthStore`], ...; import [`prelude`] for their
//! methods), and two backends on sqlx: SQLite (the
//! embedded default, one file, WAL mode) and PostgreSQL (several instances
//! on one database). The backend is chosen by the URL scheme in [`connect`].
//!
//! Every mutation that has an audit event takes it as an argument and writes
//! it in the same transaction as the change, so the log never misses a change
//! and never records one that did not happen.

use async_trait::async_trait;
use std::sync::Arc;

use gatehouse_core::audit::AuditKind;
use gatehouse_core::ban::Ban;
use gatehouse_core::oauth::ClientId;
use gatehouse_core::{Account, AccountId, Timestamp};

// The areas, each with its role trait, its SQL and rows, and the macro
// that implements the trait (`backend.rs` expands them all per backend).
#[macro_use]
mod accounts;
#[macro_use]
mod audit;
#[macro_use]
mod backend;
#[macro_use]
mod bans;
#[macro_use]
mod batch;
mod cache;
#[macro_use]
mod keys;
#[macro_use]
mod oauth;
#[macro_use]
mod outbox;
/// The pools' settings live in the service kit, shared with the payments service.
pub use gatehouse_kit::pools;
#[macro_use]
mod sessions;
mod sql;
#[macro_use]
mod throttle;

// The backends, after the macros they expand.
mod postgres;
mod sqlite;

pub use accounts::AccountStore;
pub use audit::AuditStore;
pub use bans::BanStore;
pub use keys::KeyStore;
pub use oauth::OAuthStore;
pub use outbox::OutboxStore;
pub use postgres::PgStore;
pub use sessions::SessionStore;
pub use sqlite::SqliteStore;
pub use throttle::ThrottleStore;

/// An account with every ban on it (lifted by time or not), read together.
#[derive(Clone, Debug)]
pub struct AccountBans {
    pub account: Account,
    pub bans: Vec<Ban>,
}

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

/// Which database an `impl_store!` expansion is for (`backend.rs`): where
/// a backend runs a write another way, the code matches on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The outcome of [`AccountStore::redeem_code`].
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

/// What an outbox message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxKind {
    /// An OpenID Connect Back-Channel Logout token.
    BackchannelLogout,
    /// A security event token (RFC 8417 / RFC 8935).
    SecurityEvent,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::BackchannelLogout => "backchannel_logout",
            OutboxKind::SecurityEvent => "security_event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "backchannel_logout" => Some(OutboxKind::BackchannelLogout),
            "security_event" => Some(OutboxKind::SecurityEvent),
            _ => None,
        }
    }
}

/// One message to a relier in the durable outbox. The payload (a signed JWT)
/// is fixed when the message is written: every attempt sends the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: String,
    pub client_id: ClientId,
    pub kind: OutboxKind,
    pub target_uri: String,
    pub payload: String,
    pub content_type: String,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub dead_at: Option<Timestamp>,
    pub locked_until: Option<Timestamp>,
    /// Set on a message due later that a later change withdraws while it is
    /// not yet due: a suspension's account-enabled carries
    /// [`suspension_end_key`], and lifting or replacing that ban deletes it.
    pub withdraw_key: Option<String>,
}

/// What [`MaintenanceStore::purge_expired`] deletes: rows that expired before these
/// times. Codes and refresh tokens are kept a while past their expiry, so
/// that a replay still finds them used and revokes what their first use
/// issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeBefore {
    pub interactions: Timestamp,
    pub auth_codes: Timestamp,
    pub refresh_tokens: Timestamp,
    /// Throttle windows that began before this have ended (for every
    /// policy: `gatehouse_core::throttle::LONGEST_WINDOW_SECS` ago).
    pub throttle_windows: Timestamp,
}

/// The [`OutboxMessage::withdraw_key`] of the account-enabled messages that
/// announce the end of the account's ban everywhere (`client` None) or at
/// one client.
pub fn suspension_end_key(account: &AccountId, client: Option<&ClientId>) -> String {
    format!(
        "suspension-end {} {}",
        account.as_str(),
        client.map_or("*", ClientId::as_str)
    )
}

impl OutboxMessage {
    /// A new message, due at once.
    pub fn new(
        id: String,
        client_id: ClientId,
        kind: OutboxKind,
        target_uri: String,
        payload: String,
        content_type: String,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            client_id,
            kind,
            target_uri,
            payload,
            content_type,
            created_at: now,
            next_attempt_at: now,
            attempts: 0,
            last_error: None,
            delivered_at: None,
            dead_at: None,
            locked_until: None,
            withdraw_key: None,
        }
    }

    /// `pending`, `failed` (tried, will try again), `delivered` or `dead`.
    pub fn status(&self) -> &'static str {
        if self.delivered_at.is_some() {
            "delivered"
        } else if self.dead_at.is_some() {
            "dead"
        } else if self.attempts > 0 {
            "failed"
        } else {
            "pending"
        }
    }
}

/// Counts of outbox messages by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxSummary {
    /// Never tried yet.
    pub pending: i64,
    /// Tried and failed, to be tried again.
    pub failed: i64,
    pub delivered: i64,
    /// Given up on (too old).
    pub dead: i64,
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

/// The database itself: migrations, a health check, housekeeping.
#[async_trait]
pub trait MaintenanceStore: Send + Sync {
    /// Applies this backend's migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;

    /// A cheap round trip, for `/health/ready`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Deletes the interactions, authorization codes and refresh tokens
    /// that expired before the times in `before`, in chunks. Returns how
    /// many rows went.
    async fn purge_expired(&self, before: &PurgeBefore) -> Result<u64, StoreError>;
}

/// The whole store: every role. `Arc<dyn Store>` is what the services
/// hold; on it, every role's methods are callable without an import (a
/// trait object's supertraits count as its own). Code that is generic over
/// a store, or holds a concrete one, imports [`prelude`].
pub trait Store:
    MaintenanceStore
    + AccountStore
    + BanStore
    + SessionStore
    + ThrottleStore
    + AuditStore
    + OAuthStore
    + KeyStore
    + OutboxStore
    + 'static
{
}

impl<T> Store for T where
    T: MaintenanceStore
        + AccountStore
        + BanStore
        + SessionStore
        + ThrottleStore
        + AuditStore
        + OAuthStore
        + KeyStore
        + OutboxStore
        + 'static
{
}

/// The role traits, for one import: `use gatehouse_store::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AccountStore, AuditStore, BanStore, KeyStore, MaintenanceStore, OAuthStore, OutboxStore, SessionStore, Store,
        ThrottleStore,
    };
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
