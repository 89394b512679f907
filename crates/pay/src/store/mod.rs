//! The payments service's storage: one trait, [`PayStore`], and two
//! backends on sqlx (SQLite, PostgreSQL), chosen by the URL scheme in
//! [`connect`]. All SQL is in `sql.rs`, written once; `store_impl.rs` holds
//! the one implementation as a macro expanded for [`SqlitePayStore`] and
//! [`PgPayStore`] (its ledger writes in `ledger_impl.rs`, the standing in
//! `standing.rs`).
//!
//! Money moves only in [`PayStore::pay`], [`PayStore::refund`] and
//! [`PayStore::credit_wallet`], each one transaction that writes a balanced
//! pair of ledger entries, the balances, the audit event and (for
//! purchases and refunds) the merchant's notification in the outbox. A
//! debit is a conditional `UPDATE ... WHERE balance >= amount` whose row
//! count is checked, and the schema's `CHECK (balance >= 0)` refuses a
//! negative wallet whatever the code does.

use async_trait::async_trait;
use std::sync::Arc;

use gatehouse_core::Timestamp;
use gatehouse_core::pay::ledger::TEST_FUNDING_SOURCE;
use gatehouse_core::pay::notification::NotificationClaims;
use gatehouse_core::pay::{ContractTerms, Fee, FeeRule, PurchaseState};
use gatehouse_core::throttle::{Policy, Window};
use serde::Serialize;

#[macro_use]
mod ledger_impl;
#[macro_use]
mod store_impl;
#[macro_use]
mod standing;
mod postgres;
mod sql;
mod sqlite;

pub use postgres::PgPayStore;
pub use sqlite::SqlitePayStore;
pub use standing::{SessionsOf, Standing, StandingStore};

#[derive(Debug, thiserror::Error)]
pub enum PayStoreError {
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A debit would take a wallet or merchant account below zero.
    #[error("insufficient funds")]
    InsufficientFunds,
    /// No such purchase (or merchant, contract...).
    #[error("not found")]
    NotFound,
    /// The purchase is not in a state that allows this.
    #[error("{0}")]
    State(#[from] gatehouse_core::pay::TransitionError),
    /// A movement the ledger rules refuse.
    #[error("{0}")]
    Movement(#[from] gatehouse_core::pay::ledger::MovementError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A merchant: a client of the IdP the payments service accepts contracts
/// from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Merchant {
    pub client_id: String,
    pub name: String,
    /// Origins allowed to frame the purchase pages.
    pub origins: Vec<String>,
    /// Where notifications go.
    pub notify_uri: Option<String>,
    /// Its fee rule (the default: no fee).
    pub fee: FeeRule,
}

/// A buyer's agreement and PIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buyer {
    pub sub: String,
    pub terms_version: Option<String>,
    pub privacy_version: Option<String>,
    pub agreed_at: Option<Timestamp>,
    /// Argon2id PHC string.
    pub pin_hash: Option<String>,
}

/// A contract as stored: its terms, for one buyer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contract {
    pub hash: String,
    pub sub: String,
    pub terms: ContractTerms,
    pub created_at: Timestamp,
}

/// A single-use link to a contract's purchase page (digest only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurchaseLink {
    pub digest: String,
    pub contract_hash: String,
    pub sub: String,
    pub expires_at: Timestamp,
}

/// What [`PayStore::create_contract`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContractCreated {
    /// A new contract (and its link).
    New,
    /// The same buyer and merchant posted the same terms before; a new link
    /// was written.
    Existing,
    /// Another buyer holds a contract with this hash: nothing was written.
    Taken,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Purchase {
    pub id: String,
    pub contract_hash: String,
    pub sub: String,
    pub merchant: String,
    pub amount: i64,
    pub currency: String,
    pub state: PurchaseState,
    pub paid_at: i64,
    pub refunded_at: Option<i64>,
    /// The fee the contract stated, if any (a refund returns it).
    pub fee: Option<Fee>,
}

/// What [`PayStore::pay`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Paid {
    /// Charged now.
    New(Purchase),
    /// Paid before: nothing charged.
    Already(Purchase),
}

impl Paid {
    pub fn purchase(&self) -> &Purchase {
        match self {
            Paid::New(p) | Paid::Already(p) => p,
        }
    }
}

/// The payments service's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaySession {
    pub sub: String,
    pub expires_at: Timestamp,
    /// Until when the PIN may be changed (after a fresh login).
    pub pin_reset_until: Option<Timestamp>,
    /// When the IdP last vouched for the buyer (login, or the narrowed
    /// token of the purchase link).
    pub vouched_at: Timestamp,
}

/// A login at the IdP in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRow {
    /// `PendingLogin` as JSON.
    pub pending: String,
    /// `login` or `pin_reset`.
    pub purpose: String,
    /// A local path.
    pub return_to: String,
    pub created_at: Timestamp,
}

/// One row of the audit table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PayAuditRecord {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub sub: Option<String>,
    pub detail: serde_json::Value,
}

/// What the audit table records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayAuditKind {
    TermsAgreed,
    PinSet,
    PinResetOk,
    PinResetRefused,
    PinFailed,
    ContractCreated,
    PurchasePaid,
    Refund,
    WalletFunded,
    /// The IdP said the buyer may not move money (account disabled or
    /// purged), or may again (account enabled).
    StandingChanged,
    /// A back-channel logout or a security event ended payments sessions.
    SessionsEnded,
    /// Paying, funding or opening a purchase link was refused: the buyer's
    /// standing at the IdP.
    MoneyRefused,
}

impl PayAuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PayAuditKind::TermsAgreed => "terms_agreed",
            PayAuditKind::PinSet => "pin_set",
            PayAuditKind::PinResetOk => "pin_reset_ok",
            PayAuditKind::PinResetRefused => "pin_reset_refused",
            PayAuditKind::PinFailed => "pin_failed",
            PayAuditKind::ContractCreated => "contract_created",
            PayAuditKind::PurchasePaid => "purchase_paid",
            PayAuditKind::Refund => "refund",
            PayAuditKind::WalletFunded => "wallet_funded",
            PayAuditKind::StandingChanged => "standing_changed",
            PayAuditKind::SessionsEnded => "sessions_ended",
            PayAuditKind::MoneyRefused => "money_refused",
        }
    }
}

/// A merchant notification in the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    pub id: String,
    pub merchant: String,
    pub target_uri: String,
    /// The claims as JSON ([`NotificationClaims`]).
    pub payload: String,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub dead_at: Option<i64>,
}

impl OutboxRow {
    pub fn claims(&self) -> Result<NotificationClaims, PayStoreError> {
        serde_json::from_str(&self.payload).map_err(|e| PayStoreError::Corrupt(format!("outbox {}: {e}", self.id)))
    }
}

/// The service's signing key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPayKey {
    pub kid: String,
    /// base64(nonce || AES-256-GCM ciphertext of the PKCS#8 DER).
    pub private_encrypted: String,
    pub public_jwk: String,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait PayStore: StandingStore + Send + Sync + 'static {
    fn backend(&self) -> Backend;
    async fn migrate(&self) -> Result<(), PayStoreError>;

    // --- keys
    /// The oldest signing key.
    async fn signing_key(&self) -> Result<Option<StoredPayKey>, PayStoreError>;
    async fn insert_signing_key(&self, key: &StoredPayKey) -> Result<(), PayStoreError>;

    // --- merchants
    /// Adds or updates a merchant.
    async fn add_merchant(&self, merchant: Merchant) -> Result<(), PayStoreError>;
    async fn merchant(&self, client_id: &str) -> Result<Option<Merchant>, PayStoreError>;
    async fn merchants(&self) -> Result<Vec<Merchant>, PayStoreError>;

    // --- buyers
    async fn buyer(&self, sub: &str) -> Result<Option<Buyer>, PayStoreError>;
    /// Records agreement to these versions (with its audit event).
    async fn agree(&self, sub: &str, terms: &str, privacy: &str, now: Timestamp) -> Result<(), PayStoreError>;
    /// Sets the PIN hash (with its audit event, `reset` says which).
    async fn set_pin(&self, sub: &str, pin_hash: &str, reset: bool, now: Timestamp) -> Result<(), PayStoreError>;

    // --- throttle
    async fn throttle_window(&self, key: &str) -> Result<Option<Window>, PayStoreError>;
    /// Reserves an attempt before the secret is checked, atomically: counts
    /// it in the current window (a new window if the last one is over) if
    /// fewer than `policy.max_failures` are counted, and returns the window;
    /// `None` (nothing changed) if the window is full.
    async fn reserve_attempt(&self, key: &str, now: Timestamp, policy: Policy)
    -> Result<Option<Window>, PayStoreError>;
    async fn clear_throttle(&self, key: &str) -> Result<(), PayStoreError>;

    // --- contracts
    /// Writes the contract and its link (see [`ContractCreated`]).
    async fn create_contract(&self, contract: &Contract, link: &PurchaseLink)
    -> Result<ContractCreated, PayStoreError>;
    async fn contract(&self, hash: &str) -> Result<Option<Contract>, PayStoreError>;
    /// Burns a link: its contract hash and buyer, if it was unused and
    /// unexpired.
    async fn use_link(&self, digest: &str, now: Timestamp) -> Result<Option<(String, String)>, PayStoreError>;

    // --- purchases and the ledger
    /// Pays the contract once: charges the buyer, credits the merchant,
    /// writes the notification and the audit event. Paying a paid contract
    /// charges nothing.
    async fn pay(&self, contract: &Contract, purchase_id: &str, now: Timestamp) -> Result<Paid, PayStoreError>;
    /// Gives a paid purchase's money back (from the merchant's account);
    /// `by` names who did it, for the audit table.
    async fn refund_as(&self, purchase_id: &str, by: &str, now: Timestamp) -> Result<Purchase, PayStoreError>;
    /// [`PayStore::refund_as`] by the operator (the command line), now.
    async fn refund(&self, purchase_id: &str) -> Result<Purchase, PayStoreError> {
        self.refund_as(purchase_id, "operator", Timestamp::now()).await
    }
    async fn purchase(&self, id: &str) -> Result<Option<Purchase>, PayStoreError>;
    async fn purchase_by_contract(&self, hash: &str) -> Result<Option<Purchase>, PayStoreError>;
    /// Newest first; all buyers when `sub` is `None`.
    async fn purchases(&self, sub: Option<&str>, limit: i64) -> Result<Vec<Purchase>, PayStoreError>;
    /// `source` credits the wallet; returns the new balance.
    async fn credit_wallet(
        &self,
        source: &str,
        sub: &str,
        amount: i64,
        currency: &str,
        now: Timestamp,
    ) -> Result<i64, PayStoreError>;
    /// The built-in `test` funding source credits test money.
    async fn fund(&self, sub: &str, amount: i64, currency: &str) -> Result<i64, PayStoreError> {
        self.credit_wallet(TEST_FUNDING_SOURCE, sub, amount, currency, Timestamp::now())
            .await
    }
    async fn balance(&self, sub: &str, currency: &str) -> Result<i64, PayStoreError>;
    /// A buyer's balances by currency.
    async fn balances(&self, sub: &str) -> Result<Vec<(String, i64)>, PayStoreError>;
    /// The sum of every ledger entry: always 0.
    async fn ledger_sum(&self) -> Result<i64, PayStoreError>;
    /// Deletes expired sessions, pending logins and purchase links.
    async fn purge_expired(&self, now: Timestamp) -> Result<(), PayStoreError>;
    /// The sum of every account's balance: always 0, and equal to the
    /// entries' sums per account.
    async fn balances_sum(&self) -> Result<i64, PayStoreError>;

    // --- sessions and logins
    /// `sid`: the IdP session of the login it came from, if known;
    /// `vouched_at`: when the IdP last vouched for the buyer.
    async fn create_session(
        &self,
        digest: &str,
        sub: &str,
        sid: Option<&str>,
        vouched_at: Timestamp,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), PayStoreError>;
    async fn session(&self, digest: &str, now: Timestamp) -> Result<Option<PaySession>, PayStoreError>;
    async fn delete_session(&self, digest: &str) -> Result<(), PayStoreError>;
    /// After a fresh login of the same buyer: the PIN may be changed until
    /// `until` (with the `pin_reset_ok` audit event).
    async fn allow_pin_reset(
        &self,
        digest: &str,
        sub: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), PayStoreError>;
    async fn put_pending_login(&self, digest: &str, row: &PendingRow) -> Result<(), PayStoreError>;
    /// Reads and deletes a pending login.
    async fn take_pending_login(&self, digest: &str) -> Result<Option<PendingRow>, PayStoreError>;

    // --- audit
    async fn audit(
        &self,
        kind: PayAuditKind,
        sub: Option<&str>,
        detail: serde_json::Value,
        now: Timestamp,
    ) -> Result<(), PayStoreError>;
    async fn audit_events(&self, sub: Option<&str>, limit: i64) -> Result<Vec<PayAuditRecord>, PayStoreError>;

    // --- outbox
    async fn claim_outbox(&self, now: Timestamp, limit: i64, lease_secs: i64) -> Result<Vec<OutboxRow>, PayStoreError>;
    async fn outbox_delivered(&self, id: &str, now: Timestamp) -> Result<(), PayStoreError>;
    async fn outbox_failed(
        &self,
        id: &str,
        now: Timestamp,
        next_attempt_at: Timestamp,
        error: &str,
        dead: bool,
    ) -> Result<(), PayStoreError>;
    /// Newest first.
    async fn outbox(&self, merchant: Option<&str>, limit: i64) -> Result<Vec<OutboxRow>, PayStoreError>;
    /// How many notifications are pending, failed (will retry), delivered
    /// and dead.
    async fn outbox_summary(&self) -> Result<gatehouse_kit::outbox_sql::SummaryRow, PayStoreError>;

    // --- operations
    /// The database answers (readiness).
    async fn ping(&self) -> Result<(), PayStoreError>;
}

/// Opens the database the URL names (`sqlite://...` or `postgres://...`).
/// Does not migrate.
pub async fn connect(url: &str) -> Result<Arc<dyn PayStore>, PayStoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqlitePayStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgPayStore::connect(url).await?))
    } else {
        Err(PayStoreError::UnsupportedUrl(url.to_owned()))
    }
}
