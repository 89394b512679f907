//! Every SQL statement the store runs, and the mapping from rows back to core
//! types. Both backends run the same text: SQLite accepts PostgreSQL's `$1`
//! parameters, `ON CONFLICT ... DO UPDATE` and `RETURNING`, and both schemas
//! (`migrations/*/0001_init.sql`) use the same column types.
//!
//! The Rust that runs these statements is in `store_impl.rs`.

use gatehouse_core::audit::{AuditEvent, AuditKind, AuditRecord, Outcome};
use gatehouse_core::code::{CodePurpose, OneTimeCode};
use gatehouse_core::session::{Session, SessionSelector};
use gatehouse_core::throttle::Window;
use gatehouse_core::{Account, AccountId, Email, Secret, Timestamp, TokenDigest};

use crate::{AuditQuery, StoreError};

// --- accounts ---------------------------------------------------------------

pub const INSERT_ACCOUNT: &str = "\
    INSERT INTO accounts (id, email, email_verified, password_hash, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6)";

pub const ACCOUNT_BY_ID: &str = "\
    SELECT id, email, email_verified, password_hash, created_at, updated_at \
    FROM accounts WHERE id = $1";

pub const ACCOUNT_BY_EMAIL: &str = "\
    SELECT id, email, email_verified, password_hash, created_at, updated_at \
    FROM accounts WHERE email = $1";

/// `$1` account, `$2` hash, `$3` now.
pub const SET_PASSWORD: &str = "\
    UPDATE accounts SET password_hash = $2, updated_at = $3 WHERE id = $1";

/// Verifies the address only if it is still the account's address (the code
/// may have been sent to an address changed since). `$1` account, `$2` the
/// code's address, `$3` now.
pub const VERIFY_EMAIL: &str = "\
    UPDATE accounts SET email_verified = TRUE, updated_at = $3 WHERE id = $1 AND email = $2";

/// `$1` account, `$2` new address, `$3` now. May break `accounts.email`'s
/// uniqueness: the caller maps that to "taken".
pub const CHANGE_EMAIL: &str = "\
    UPDATE accounts SET email = $2, email_verified = TRUE, updated_at = $3 WHERE id = $1";

pub const DELETE_ACCOUNT: &str = "DELETE FROM accounts WHERE id = $1";

// --- sessions ---------------------------------------------------------------

pub const INSERT_SESSION: &str = "\
    INSERT INTO sessions (id_digest, handle, account_id, created_at, auth_time, amr, \
                          last_seen_at, user_agent, ip, needs_reauth) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

pub const SESSION_BY_ID: &str = "\
    SELECT id_digest, handle, account_id, created_at, auth_time, amr, \
           last_seen_at, user_agent, ip, needs_reauth \
    FROM sessions WHERE id_digest = $1";

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
const DELETE_SESSIONS_EXCEPT: &str =
    "DELETE FROM sessions WHERE account_id = $1 AND id_digest <> $2";

/// The statement for [`crate::Store::end_sessions`] and its second argument
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

// --- one-time codes ---------------------------------------------------------

pub const INSERT_CODE: &str = "\
    INSERT INTO one_time_codes (id, purpose, account_id, email, code_digest, link_digest, \
                                created_at, expires_at, used_at, attempts) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Earlier codes stop working when a new one is sent. `$1` account,
/// `$2` purpose, `$3` the new code's creation time.
pub const RETIRE_CODES: &str = "\
    UPDATE one_time_codes SET used_at = $3 \
    WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL";

/// Used or not: the caller applies the core rules.
pub const CODE_BY_LINK: &str = "\
    SELECT id, purpose, account_id, email, code_digest, link_digest, \
           created_at, expires_at, used_at, attempts \
    FROM one_time_codes WHERE link_digest = $1 AND purpose = $2";

/// Newest unused; the id breaks ties so the answer is stable.
pub const LATEST_CODE: &str = "\
    SELECT id, purpose, account_id, email, code_digest, link_digest, \
           created_at, expires_at, used_at, attempts \
    FROM one_time_codes WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL \
    ORDER BY created_at DESC, id DESC LIMIT 1";

pub const COUNT_CODE_ATTEMPT: &str = "\
    UPDATE one_time_codes SET attempts = attempts + 1 WHERE id = $1";

/// Affects no row if someone used the code first. `$1` code, `$2` now.
pub const USE_CODE: &str = "\
    UPDATE one_time_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL";

pub const DELETE_CODES_OF: &str = "DELETE FROM one_time_codes WHERE account_id = $1";

// --- throttling -------------------------------------------------------------

pub const THROTTLE_WINDOW: &str = "\
    SELECT window_started_at, failures FROM throttle WHERE key = $1";

/// One atomic statement. `$1` key, `$2` now, `$3` now - window length: a
/// window that began at or before `$3` is over and a new one starts at `$2`.
/// The right-hand sides of `SET` see the row as it was, on both databases.
pub const THROTTLE_FAIL: &str = "\
    INSERT INTO throttle (key, window_started_at, failures) VALUES ($1, $2, 1) \
    ON CONFLICT (key) DO UPDATE SET \
        failures = CASE WHEN throttle.window_started_at <= $3 \
                        THEN 1 ELSE throttle.failures + 1 END, \
        window_started_at = CASE WHEN throttle.window_started_at <= $3 \
                                 THEN $2 ELSE throttle.window_started_at END \
    RETURNING window_started_at, failures";

pub const THROTTLE_CLEAR: &str = "DELETE FROM throttle WHERE key = $1";

// --- audit log --------------------------------------------------------------

pub const INSERT_AUDIT: &str = "\
    INSERT INTO audit_events (at, kind, account_id, ip, user_agent, outcome, detail) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

// One statement per combination of filters (rather than `$1 IS NULL OR ...`)
// so each can use its index. Parameters: the filters present, in the order
// account then kind, then `after_seq`, then the limit.
const AUDIT_ALL: &str = "\
    SELECT seq, at, kind, account_id, ip, user_agent, outcome, detail FROM audit_events \
    WHERE seq > $1 \
    ORDER BY seq LIMIT $2";
const AUDIT_BY_ACCOUNT: &str = "\
    SELECT seq, at, kind, account_id, ip, user_agent, outcome, detail FROM audit_events \
    WHERE account_id = $1 AND seq > $2 \
    ORDER BY seq LIMIT $3";
const AUDIT_BY_KIND: &str = "\
    SELECT seq, at, kind, account_id, ip, user_agent, outcome, detail FROM audit_events \
    WHERE kind = $1 AND seq > $2 \
    ORDER BY seq LIMIT $3";
const AUDIT_BY_ACCOUNT_AND_KIND: &str = "\
    SELECT seq, at, kind, account_id, ip, user_agent, outcome, detail FROM audit_events \
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

// --- rows -------------------------------------------------------------------

#[derive(sqlx::FromRow)]
pub struct AccountRow {
    id: String,
    email: String,
    email_verified: bool,
    password_hash: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRow) -> Result<Self, StoreError> {
        Ok(Account {
            email: parse_email(&row.email, "account", &row.id)?,
            id: AccountId(row.id),
            email_verified: row.email_verified,
            password_hash: Secret::new(row.password_hash),
            created_at: Timestamp(row.created_at),
            updated_at: Timestamp(row.updated_at),
        })
    }
}

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

#[derive(sqlx::FromRow)]
pub struct CodeRow {
    id: String,
    purpose: String,
    account_id: String,
    email: String,
    code_digest: String,
    link_digest: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    attempts: i32,
}

impl TryFrom<CodeRow> for OneTimeCode {
    type Error = StoreError;

    fn try_from(row: CodeRow) -> Result<Self, StoreError> {
        let purpose = CodePurpose::parse(&row.purpose).ok_or_else(|| {
            corrupt(
                "one_time_codes",
                &row.id,
                format!("unknown purpose {:?}", row.purpose),
            )
        })?;
        let attempts = u32::try_from(row.attempts).map_err(|_| {
            corrupt(
                "one_time_codes",
                &row.id,
                format!("negative attempts {}", row.attempts),
            )
        })?;
        Ok(OneTimeCode {
            email: parse_email(&row.email, "one_time_codes", &row.id)?,
            id: row.id,
            purpose,
            account_id: AccountId(row.account_id),
            code_digest: TokenDigest(row.code_digest),
            link_digest: TokenDigest(row.link_digest),
            created_at: Timestamp(row.created_at),
            expires_at: Timestamp(row.expires_at),
            used_at: row.used_at.map(Timestamp),
            attempts,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct WindowRow {
    window_started_at: i64,
    failures: i32,
}

impl TryFrom<WindowRow> for Window {
    type Error = StoreError;

    fn try_from(row: WindowRow) -> Result<Self, StoreError> {
        let failures = u32::try_from(row.failures).map_err(|_| {
            StoreError::Corrupt(format!("throttle: negative failures {}", row.failures))
        })?;
        Ok(Window {
            started_at: Timestamp(row.window_started_at),
            failures,
        })
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
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        let seq = row.seq.to_string();
        let kind = AuditKind::parse(&row.kind)
            .ok_or_else(|| corrupt("audit_events", &seq, format!("unknown kind {:?}", row.kind)))?;
        let outcome = Outcome::parse(&row.outcome).ok_or_else(|| {
            corrupt(
                "audit_events",
                &seq,
                format!("unknown outcome {:?}", row.outcome),
            )
        })?;
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
            },
        })
    }
}

// --- helpers ----------------------------------------------------------------

/// Whether the statement broke a UNIQUE constraint (or primary key).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

fn corrupt(table: &str, key: &str, what: String) -> StoreError {
    StoreError::Corrupt(format!("{table} {key}: {what}"))
}

fn parse_email(stored: &str, table: &str, key: &str) -> Result<Email, StoreError> {
    Email::parse(stored).map_err(|e| corrupt(table, key, format!("bad email {stored:?}: {e}")))
}
