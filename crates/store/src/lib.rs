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
use gatehouse_core::ban::Ban;
use gatehouse_core::code::{CodeEffect, CodePurpose, OneTimeCode};
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::{AuthCode, Consent, Grant, Interaction, Redemption, RefreshToken, StoredKey};
use gatehouse_core::oauth::{Client, ClientId};
use gatehouse_core::session::{AuthMethod, Session, SessionSelector};
use gatehouse_core::throttle::{Policy, Window};
use gatehouse_core::{Account, AccountId, Email, Profile, Timestamp, TokenDigest};

mod batch;
mod cache;
#[macro_use]
mod store_impl;
pub mod pools;
mod postgres;
mod sql;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

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

/// What [`Store::purge_expired`] deletes: rows that expired before these
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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Applies this backend's migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;
    /// A cheap round trip, for `/health/ready`.
    async fn ping(&self) -> Result<(), StoreError>;

    // --- accounts ---------------------------------------------------------
    /// Inserts the account. `Conflict` if the email is taken (nothing written).
    async fn create_account(&self, account: &Account, audit: &AuditEvent) -> Result<(), StoreError>;
    async fn account_by_id(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;
    async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError>;
    /// Replaces the profile (its `updated_at` becomes `now`, as does the
    /// account's), with its audit event; false if there is no such account
    /// (nothing written).
    async fn set_profile(
        &self,
        id: &AccountId,
        profile: &Profile,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Replaces the password hash; every session of the account except `keep`
    /// is marked as needing re-authentication. Writes `outbox` (security
    /// events to the account's clients) in the same transaction.
    async fn change_password(
        &self,
        id: &AccountId,
        new_hash: &str,
        keep: Option<&TokenDigest>,
        now: Timestamp,
        audit: &AuditEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError>;
    /// Deletes the account, its sessions and its codes, and writes `outbox`
    /// in the same transaction. Audit events stay.
    async fn delete_account(
        &self,
        id: &AccountId,
        audit: &AuditEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError>;

    // --- one-time codes ---------------------------------------------------
    /// Stores a new code; earlier unused codes of the same account and purpose
    /// stop working (they are marked used).
    async fn insert_code(&self, code: &OneTimeCode, audit: Option<&AuditEvent>) -> Result<(), StoreError>;
    async fn code_by_link(&self, purpose: CodePurpose, link: &TokenDigest) -> Result<Option<OneTimeCode>, StoreError>;
    /// The newest unused code of this purpose for this account.
    async fn latest_code(&self, account: &AccountId, purpose: CodePurpose) -> Result<Option<OneTimeCode>, StoreError>;
    /// Reserves one guess of the short code before it is checked, in one
    /// atomic statement: counted only while the code is unused and fewer
    /// than `code::MAX_ATTEMPTS` are counted, so however many guesses arrive
    /// at once, at most that many are checked. Whether it was counted
    /// (`false` for an unknown id too: the same statement runs either way).
    async fn reserve_code_attempt(&self, code_id: &str) -> Result<bool, StoreError>;
    /// Marks the code used (only if still unused) and applies `effect` to
    /// the code's account, in one transaction with `audit` and, only if the
    /// effect was applied ([`Redeemed::Done`]), `outbox`.
    async fn redeem_code(
        &self,
        code: &OneTimeCode,
        effect: &CodeEffect,
        now: Timestamp,
        audit: &AuditEvent,
        outbox: &[OutboxMessage],
    ) -> Result<Redeemed, StoreError>;

    // --- sessions ---------------------------------------------------------
    async fn create_session(&self, session: &Session, audit: &AuditEvent) -> Result<(), StoreError>;
    async fn session(&self, id: &TokenDigest) -> Result<Option<Session>, StoreError>;
    /// The session with its account and the account's bans, in one read;
    /// `None` if either is missing.
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

    // --- throttling -------------------------------------------------------
    async fn throttle_window(&self, key: &str) -> Result<Option<Window>, StoreError>;
    /// Reserves one attempt, in one atomic statement: starts a new window at
    /// `now` if the stored one began `policy.window_secs` or more ago, else
    /// counts one more if fewer than `policy.max_failures` are counted.
    /// Returns the window with the attempt counted, or `None` (nothing
    /// changed) if the window is full.
    async fn throttle_reserve(&self, key: &str, now: Timestamp, policy: Policy) -> Result<Option<Window>, StoreError>;
    /// Gives back an attempt reserved in the window that began at
    /// `started_at`; nothing if that window has ended or been cleared since.
    async fn throttle_release(&self, key: &str, started_at: Timestamp) -> Result<(), StoreError>;
    async fn throttle_clear(&self, key: &str) -> Result<(), StoreError>;

    // --- audit log --------------------------------------------------------
    /// Appends an event that has no other change to go with (a failed login).
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// Oldest first.
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    // --- OAuth clients ----------------------------------------------------
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

    // --- signing keys -----------------------------------------------------
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

    // --- authorization: interactions, codes, consents ---------------------
    /// Inserts or replaces the interaction (also to record the account chosen).
    async fn put_interaction(&self, interaction: &Interaction) -> Result<(), StoreError>;
    async fn interaction(&self, digest: &TokenDigest) -> Result<Option<Interaction>, StoreError>;
    async fn delete_interaction(&self, digest: &TokenDigest) -> Result<(), StoreError>;
    /// Deletes the interactions, authorization codes and refresh tokens
    /// that expired before the times in `before`, in chunks. Returns how
    /// many rows went.
    async fn purge_expired(&self, before: &PurgeBefore) -> Result<u64, StoreError>;
    /// Stores the code and records that its session served its client
    /// (idempotently), in one transaction. The session must exist.
    async fn insert_auth_code(&self, code: &AuthCode) -> Result<(), StoreError>;
    async fn auth_code(&self, digest: &TokenDigest) -> Result<Option<AuthCode>, StoreError>;
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

    // --- bans ---------------------------------------------------------------
    /// Records the ban (replacing one for the same account and client) and,
    /// in the same transaction: for a ban everywhere, ends every session of
    /// the account and revokes every grant; for a ban at one client, revokes
    /// the grants of that client; and deletes the replaced ban's
    /// account-enabled messages not yet due ([`suspension_end_key`]). With
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
    /// ([`suspension_end_key`]); false if there was none. With its audit
    /// event and, only if there was a ban to lift, `outbox`.
    async fn unban(
        &self,
        account: &AccountId,
        client: Option<&ClientId>,
        audit: &AuditEvent,
        outbox: &[OutboxMessage],
    ) -> Result<bool, StoreError>;
    /// Every ban of the account, lifted by time or not.
    async fn bans_of(&self, account: &AccountId) -> Result<Vec<Ban>, StoreError>;

    // --- grants and tokens --------------------------------------------------
    /// Writes a grant on its own (client credentials, token exchange) with an
    /// optional refresh token.
    async fn insert_grant(&self, grant: &Grant, refresh: Option<&RefreshToken>) -> Result<(), StoreError>;
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

    // --- DPoP ---------------------------------------------------------------
    /// Remembers the DPoP proof `jti` of the key with thumbprint `jkt` until
    /// `expires_at`, atomically: true if it was remembered already (a
    /// replay), false if this is its first use. A remembered proof past its
    /// `expires_at` counts as unseen; such rows are purged now and then.
    async fn dpop_jti_seen(&self, jkt: &str, jti: &str, expires_at: Timestamp) -> Result<bool, StoreError>;

    // --- the outbox -----------------------------------------------------------
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
