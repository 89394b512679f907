//! Every SQL statement the payments store runs, and the row types. Both
//! backends run the same text (`$1` parameters, `ON CONFLICT`, `RETURNING`).

use gatehouse_core::Timestamp;
use gatehouse_core::pay::{ContractTerms, Fee, FeePayer, FeeRule, PurchaseState};

use super::{Contract, Merchant, OutboxRow, PayAuditRecord, PayStoreError, Purchase};

// --- keys

pub const SIGNING_KEY: &str = "\
    SELECT kid, private_encrypted, public_jwk, created_at FROM pay_keys ORDER BY created_at, kid LIMIT 1";

pub const INSERT_SIGNING_KEY: &str = "\
    INSERT INTO pay_keys (kid, private_encrypted, public_jwk, created_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (kid) DO NOTHING";

#[derive(sqlx::FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub private_encrypted: String,
    pub public_jwk: String,
    pub created_at: i64,
}

// --- merchants

pub const UPSERT_MERCHANT: &str = "\
    INSERT INTO merchants (client_id, name, origins, notify_uri, created_at, fee_fixed, fee_basis_points, fee_payer) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, origins = excluded.origins, \
                                          notify_uri = excluded.notify_uri, fee_fixed = excluded.fee_fixed, \
                                          fee_basis_points = excluded.fee_basis_points, fee_payer = excluded.fee_payer";

pub const MERCHANT: &str = "SELECT client_id, name, origins, notify_uri, fee_fixed, fee_basis_points, fee_payer FROM merchants WHERE client_id = $1";
pub const MERCHANTS: &str = "SELECT client_id, name, origins, notify_uri, fee_fixed, fee_basis_points, fee_payer FROM merchants ORDER BY client_id";

#[derive(sqlx::FromRow)]
pub struct MerchantRow {
    pub client_id: String,
    pub name: String,
    pub origins: String,
    pub notify_uri: Option<String>,
    pub fee_fixed: i64,
    pub fee_basis_points: i64,
    pub fee_payer: String,
}

impl TryFrom<MerchantRow> for Merchant {
    type Error = PayStoreError;
    fn try_from(r: MerchantRow) -> Result<Self, PayStoreError> {
        let origins: Vec<String> = serde_json::from_str(&r.origins)
            .map_err(|e| PayStoreError::Corrupt(format!("merchant {} origins: {e}", r.client_id)))?;
        let payer = FeePayer::parse(&r.fee_payer)
            .ok_or_else(|| PayStoreError::Corrupt(format!("merchant {} fee payer", r.client_id)))?;
        let fee = FeeRule::new(r.fee_fixed, r.fee_basis_points, payer)
            .map_err(|e| PayStoreError::Corrupt(format!("merchant {} fee rule: {e}", r.client_id)))?;
        Ok(Merchant {
            client_id: r.client_id,
            name: r.name,
            origins,
            notify_uri: r.notify_uri,
            fee,
        })
    }
}

// --- buyers

pub const BUYER: &str = "\
    SELECT sub, terms_version, privacy_version, agreed_at, pin_hash FROM buyers WHERE sub = $1";

#[derive(sqlx::FromRow)]
pub struct BuyerRow {
    pub sub: String,
    pub terms_version: Option<String>,
    pub privacy_version: Option<String>,
    pub agreed_at: Option<i64>,
    pub pin_hash: Option<String>,
}

pub const AGREE: &str = "\
    INSERT INTO buyers (sub, terms_version, privacy_version, agreed_at, created_at) VALUES ($1, $2, $3, $4, $4) \
    ON CONFLICT (sub) DO UPDATE SET terms_version = $2, privacy_version = $3, agreed_at = $4";

pub const SET_PIN: &str = "\
    INSERT INTO buyers (sub, pin_hash, pin_set_at, created_at) VALUES ($1, $2, $3, $3) \
    ON CONFLICT (sub) DO UPDATE SET pin_hash = $2, pin_set_at = $3";

// --- throttle

pub const THROTTLE_WINDOW: &str = "SELECT window_started_at, failures FROM throttle WHERE key = $1";

/// Reserves a PIN attempt in one atomic statement (as the IdP's
/// `THROTTLE_RESERVE`). `$1` key, `$2` now, `$3` now - window length, `$4`
/// the attempts a window allows; a full window is not updated and returns
/// no row.
pub const RESERVE_ATTEMPT: &str = "\
    INSERT INTO throttle (key, window_started_at, failures) VALUES ($1, $2, 1) \
    ON CONFLICT (key) DO UPDATE SET \
        failures = CASE WHEN throttle.window_started_at <= $3 THEN 1 ELSE throttle.failures + 1 END, \
        window_started_at = CASE WHEN throttle.window_started_at <= $3 THEN $2 ELSE throttle.window_started_at END \
    WHERE throttle.window_started_at <= $3 OR throttle.failures < $4 \
    RETURNING window_started_at, failures";

pub const CLEAR_THROTTLE: &str = "DELETE FROM throttle WHERE key = $1";

#[derive(sqlx::FromRow)]
pub struct WindowRow {
    pub window_started_at: i64,
    pub failures: i64,
}

// --- contracts

pub const INSERT_CONTRACT: &str = "\
    INSERT INTO contracts (hash, merchant, sub, terms, amount, currency, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO NOTHING";

pub const CONTRACT: &str = "SELECT hash, sub, terms, created_at FROM contracts WHERE hash = $1";

#[derive(sqlx::FromRow)]
pub struct ContractRow {
    pub hash: String,
    pub sub: String,
    pub terms: String,
    pub created_at: i64,
}

impl TryFrom<ContractRow> for Contract {
    type Error = PayStoreError;
    fn try_from(r: ContractRow) -> Result<Self, PayStoreError> {
        let terms = ContractTerms::from_canonical(&r.terms)
            .map_err(|e| PayStoreError::Corrupt(format!("contract {}: {e}", r.hash)))?;
        Ok(Contract {
            hash: r.hash,
            sub: r.sub,
            terms,
            created_at: Timestamp(r.created_at),
        })
    }
}

pub const INSERT_LINK: &str = "\
    INSERT INTO purchase_links (digest, contract_hash, sub, expires_at) VALUES ($1, $2, $3, $4)";

/// Burns the link if unused and unexpired. `$1` digest, `$2` now.
pub const USE_LINK: &str = "\
    UPDATE purchase_links SET used_at = $2 WHERE digest = $1 AND used_at IS NULL AND expires_at > $2 \
    RETURNING contract_hash, sub";

// --- purchases

pub const INSERT_PURCHASE: &str = "\
    INSERT INTO purchases (id, contract_hash, sub, merchant, amount, currency, state, paid_at, fee, fee_payer) \
    VALUES ($1, $2, $3, $4, $5, $6, 'paid', $7, $8, $9) ON CONFLICT (contract_hash) DO NOTHING";

pub const PURCHASE_BY_ID: &str = "\
    SELECT id, contract_hash, sub, merchant, amount, currency, state, paid_at, refunded_at, fee, fee_payer \
    FROM purchases WHERE id = $1";

pub const PURCHASE_BY_CONTRACT: &str = "\
    SELECT id, contract_hash, sub, merchant, amount, currency, state, paid_at, refunded_at, fee, fee_payer \
    FROM purchases WHERE contract_hash = $1";

pub const PURCHASES: &str = "\
    SELECT id, contract_hash, sub, merchant, amount, currency, state, paid_at, refunded_at, fee, fee_payer \
    FROM purchases WHERE ($1 IS NULL OR sub = $1) ORDER BY paid_at DESC, id LIMIT $2";

/// `$1` id, `$2` now.
pub const MARK_REFUNDED: &str = "\
    UPDATE purchases SET state = 'refunded', refunded_at = $2 WHERE id = $1 AND state = 'paid' \
    RETURNING id, contract_hash, sub, merchant, amount, currency, state, paid_at, refunded_at, fee, fee_payer";

#[derive(sqlx::FromRow)]
pub struct PurchaseRow {
    pub id: String,
    pub contract_hash: String,
    pub sub: String,
    pub merchant: String,
    pub amount: i64,
    pub currency: String,
    pub state: String,
    pub paid_at: i64,
    pub refunded_at: Option<i64>,
    pub fee: i64,
    pub fee_payer: Option<String>,
}

impl TryFrom<PurchaseRow> for Purchase {
    type Error = PayStoreError;
    fn try_from(r: PurchaseRow) -> Result<Self, PayStoreError> {
        let state = PurchaseState::parse(&r.state)
            .ok_or_else(|| PayStoreError::Corrupt(format!("purchase {} state {}", r.id, r.state)))?;
        let fee = match (r.fee, r.fee_payer.as_deref()) {
            (0, None) => None,
            (amount, Some(payer)) if amount > 0 => Some(Fee {
                amount,
                payer: FeePayer::parse(payer)
                    .ok_or_else(|| PayStoreError::Corrupt(format!("purchase {} fee payer", r.id)))?,
            }),
            _ => return Err(PayStoreError::Corrupt(format!("purchase {} fee", r.id))),
        };
        Ok(Purchase {
            id: r.id,
            contract_hash: r.contract_hash,
            sub: r.sub,
            merchant: r.merchant,
            amount: r.amount,
            currency: r.currency,
            state,
            paid_at: r.paid_at,
            refunded_at: r.refunded_at,
            fee,
        })
    }
}

// --- ledger

pub const ENSURE_ACCOUNT: &str = "\
    INSERT INTO ledger_accounts (id, kind, owner, currency, balance) VALUES ($1, $2, $3, $4, 0) \
    ON CONFLICT (id) DO NOTHING";

/// A debit that cannot take the balance below zero: `$1` amount, `$2` id.
/// No row updated means not enough money.
pub const DEBIT_COVERED: &str = "\
    UPDATE ledger_accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1";

/// A funding source's debit (its balance mirrors the money it brought in).
/// Locks an account's row (PostgreSQL) without changing it.
pub const LOCK_ACCOUNT: &str = "UPDATE ledger_accounts SET balance = balance WHERE id = $1";

pub const DEBIT_ANY: &str = "UPDATE ledger_accounts SET balance = balance - $1 WHERE id = $2";

pub const CREDIT: &str = "\
    UPDATE ledger_accounts SET balance = balance + $1 WHERE id = $2 RETURNING balance";

pub const INSERT_MOVEMENT: &str = "\
    INSERT INTO ledger_movements (id, kind, purchase_id, created_at) VALUES ($1, $2, $3, $4)";

pub const INSERT_ENTRY: &str = "\
    INSERT INTO ledger_entries (movement_id, account_id, amount, created_at) VALUES ($1, $2, $3, $4)";

pub const BALANCE: &str = "SELECT balance FROM ledger_accounts WHERE id = $1";

pub const BALANCES: &str = "\
    SELECT currency, balance FROM ledger_accounts WHERE kind = 'user' AND owner = $1 ORDER BY currency";

pub const LEDGER_SUM: &str = "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_entries";
pub const BALANCES_SUM: &str = "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM ledger_accounts";

// --- sessions

pub const INSERT_SESSION: &str = "\
    INSERT INTO sessions (digest, sub, created_at, expires_at, sid, vouched_at) VALUES ($1, $2, $3, $4, $5, $6)";

pub const SESSION: &str = "\
    SELECT sub, expires_at, pin_reset_until, vouched_at FROM sessions WHERE digest = $1 AND expires_at > $2";

#[derive(sqlx::FromRow)]
pub struct SessionRow {
    pub sub: String,
    pub expires_at: i64,
    pub pin_reset_until: Option<i64>,
    pub vouched_at: i64,
}

pub const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at <= $1";
/// Pending logins live ten minutes.
pub const PURGE_PENDING: &str = "DELETE FROM pending_logins WHERE created_at <= $1 - 600";
/// Used or expired links, a day after they expired.
pub const PURGE_LINKS: &str = "DELETE FROM purchase_links WHERE expires_at <= $1 - 86400";

pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE digest = $1";

pub const ALLOW_PIN_RESET: &str = "UPDATE sessions SET pin_reset_until = $3 WHERE digest = $1 AND sub = $2";
pub const END_PIN_RESET: &str = "UPDATE sessions SET pin_reset_until = NULL WHERE sub = $1";

pub const INSERT_PENDING: &str = "\
    INSERT INTO pending_logins (digest, pending, purpose, return_to, created_at) VALUES ($1, $2, $3, $4, $5)";

pub const TAKE_PENDING: &str = "\
    DELETE FROM pending_logins WHERE digest = $1 RETURNING pending, purpose, return_to, created_at";

#[derive(sqlx::FromRow)]
pub struct PendingDbRow {
    pub pending: String,
    pub purpose: String,
    pub return_to: String,
    pub created_at: i64,
}

// --- audit

pub const INSERT_AUDIT: &str = "INSERT INTO audit_events (at, kind, sub, detail) VALUES ($1, $2, $3, $4)";

pub const AUDIT_EVENTS: &str = "\
    SELECT seq, at, kind, sub, detail FROM audit_events WHERE ($1 IS NULL OR sub = $1) ORDER BY seq DESC LIMIT $2";

#[derive(sqlx::FromRow)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub sub: Option<String>,
    pub detail: String,
}

impl From<AuditRow> for PayAuditRecord {
    fn from(r: AuditRow) -> Self {
        PayAuditRecord {
            seq: r.seq,
            at: r.at,
            kind: r.kind,
            sub: r.sub,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
        }
    }
}

// --- outbox

pub const INSERT_OUTBOX: &str = "\
    INSERT INTO outbox (id, merchant, target_uri, payload, created_at, next_attempt_at) \
    VALUES ($1, $2, $3, $4, $5, $5)";

/// The columns a claimed message comes back with.
macro_rules! outbox_claimed_columns {
    () => {
        "id, merchant, target_uri, payload, created_at, next_attempt_at, attempts, last_error, delivered_at, dead_at"
    };
}

/// The claim of due messages (the kit's, as the IdP's store's).
pub const CLAIM_OUTBOX_SQLITE: &str = gatehouse_kit::claim_statement!(sqlite, outbox_claimed_columns!());
/// The same on PostgreSQL (`FOR UPDATE SKIP LOCKED`).
pub const CLAIM_OUTBOX_POSTGRES: &str = gatehouse_kit::claim_statement!(postgres, outbox_claimed_columns!());

/// The notifications by delivery state (the kit's statement, as the IdP's).
pub const OUTBOX_SUMMARY: &str = gatehouse_kit::summary_statement!("");

pub const OUTBOX_LIST: &str = "\
    SELECT id, merchant, target_uri, payload, created_at, next_attempt_at, attempts, last_error, delivered_at, \
           dead_at \
    FROM outbox WHERE ($1 IS NULL OR merchant = $1) ORDER BY created_at DESC, id LIMIT $2";

#[derive(sqlx::FromRow)]
pub struct OutboxDbRow {
    pub id: String,
    pub merchant: String,
    pub target_uri: String,
    pub payload: String,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub dead_at: Option<i64>,
}

impl From<OutboxDbRow> for OutboxRow {
    fn from(r: OutboxDbRow) -> Self {
        OutboxRow {
            id: r.id,
            merchant: r.merchant,
            target_uri: r.target_uri,
            payload: r.payload,
            created_at: r.created_at,
            next_attempt_at: r.next_attempt_at,
            attempts: r.attempts,
            last_error: r.last_error,
            delivered_at: r.delivered_at,
            dead_at: r.dead_at,
        }
    }
}
