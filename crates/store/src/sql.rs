//! Every SQL statement the store runs, and the mapping from rows back to core
//! types. Both backends run the same text: SQLite accepts PostgreSQL's `$1`
//! parameters, `ON CONFLICT ... DO UPDATE`, `RETURNING` and `WITH RECURSIVE`
//! (also before `UPDATE`), and both schemas (`migrations/*/`) use the same
//! column types.
//!
//! The Rust that runs these statements is in `store_impl.rs`.

use gatehouse_core::audit::{AuditEvent, AuditKind, AuditRecord, Outcome};
use gatehouse_core::ban::Ban;
use gatehouse_core::code::{CodePurpose, OneTimeCode};
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::{AuthCode, Consent, Grant, Interaction, RefreshToken, StoredKey};
use gatehouse_core::oauth::{Client, ClientId, GrantType, Scopes};
use gatehouse_core::session::{Session, SessionSelector};
use gatehouse_core::throttle::Window;
use gatehouse_core::{Account, AccountId, Email, Profile, Secret, Timestamp, TokenDigest};

use crate::{AuditQuery, StoreError};

// --- accounts ---------------------------------------------------------------

pub const INSERT_ACCOUNT: &str = "\
    INSERT INTO accounts (id, email, email_verified, password_hash, created_at, updated_at, \
                          name, given_name, family_name, preferred_username, locale, zoneinfo, \
                          profile_updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// The columns of [`AccountRow`] (one literal, so that `concat!` can use it).
macro_rules! account_columns {
    () => {
        "id, email, email_verified, password_hash, created_at, updated_at, \
         name, given_name, family_name, preferred_username, locale, zoneinfo, profile_updated_at "
    };
}

pub const ACCOUNT_BY_ID: &str = concat!("SELECT ", account_columns!(), "FROM accounts WHERE id = $1");

pub const ACCOUNT_BY_EMAIL: &str = concat!("SELECT ", account_columns!(), "FROM accounts WHERE email = $1");

/// Replaces the profile. `$1` account, `$2`..`$7` name, given_name,
/// family_name, preferred_username, locale, zoneinfo, `$8` now (also its
/// `updated_at`).
pub const SET_PROFILE: &str = "\
    UPDATE accounts SET name = $2, given_name = $3, family_name = $4, preferred_username = $5, \
        locale = $6, zoneinfo = $7, profile_updated_at = $8, updated_at = $8 WHERE id = $1";

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
const DELETE_SESSIONS_EXCEPT: &str = "DELETE FROM sessions WHERE account_id = $1 AND id_digest <> $2";

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

/// `$1` code, `$2` the guesses a code allows.
pub const RESERVE_CODE_ATTEMPT: &str = "\
    UPDATE one_time_codes SET attempts = attempts + 1 \
    WHERE id = $1 AND used_at IS NULL AND attempts < $2";

/// Affects no row if someone used the code first. `$1` code, `$2` now.
pub const USE_CODE: &str = "\
    UPDATE one_time_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL";

pub const DELETE_CODES_OF: &str = "DELETE FROM one_time_codes WHERE account_id = $1";

// --- throttling -------------------------------------------------------------

pub const THROTTLE_WINDOW: &str = "\
    SELECT window_started_at, failures FROM throttle WHERE key = $1";

/// Reserves an attempt in one atomic statement. `$1` key, `$2` now, `$3`
/// now - window length, `$4` the attempts a window allows: a window that
/// began at or before `$3` is over and a new one starts at `$2`; otherwise
/// one more is counted only while fewer than `$4` are. A full window is not
/// updated, so `RETURNING` gives no row: refused. The right-hand sides of
/// `SET` and the `WHERE` see the row as it was, on both databases, and the
/// row is locked from the conflict to the commit, so concurrent
/// reservations queue and each sees the count the one before left.
pub const THROTTLE_RESERVE: &str = "\
    INSERT INTO throttle (key, window_started_at, failures) VALUES ($1, $2, 1) \
    ON CONFLICT (key) DO UPDATE SET \
        failures = CASE WHEN throttle.window_started_at <= $3 \
                        THEN 1 ELSE throttle.failures + 1 END, \
        window_started_at = CASE WHEN throttle.window_started_at <= $3 \
                                 THEN $2 ELSE throttle.window_started_at END \
    WHERE throttle.window_started_at <= $3 OR throttle.failures < $4 \
    RETURNING window_started_at, failures";

/// Gives a reservation back (a success). `$1` key, `$2` the start of the
/// window it was reserved in.
pub const THROTTLE_RELEASE: &str = "\
    UPDATE throttle SET failures = failures - 1 \
    WHERE key = $1 AND window_started_at = $2 AND failures > 0";

pub const THROTTLE_CLEAR: &str = "DELETE FROM throttle WHERE key = $1";

// --- audit log --------------------------------------------------------------

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

// --- OAuth clients ----------------------------------------------------------

pub const INSERT_CLIENT: &str = "\
    INSERT INTO clients (id, name, secret_digest, redirect_uris, post_logout_redirect_uris, \
                         audiences, grant_types, scopes, first_party, backchannel_logout_uri, \
                         events_uri, id_token_alg, resource_uris, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// Every field but `id` and `created_at`. The parameters are those of
/// [`INSERT_CLIENT`] without `$14`.
pub const UPDATE_CLIENT: &str = "\
    UPDATE clients SET name = $2, secret_digest = $3, redirect_uris = $4, \
                       post_logout_redirect_uris = $5, audiences = $6, grant_types = $7, \
                       scopes = $8, first_party = $9, backchannel_logout_uri = $10, \
                       events_uri = $11, id_token_alg = $12, resource_uris = $13 \
    WHERE id = $1";

/// The columns of [`ClientRow`] (one literal, so that `concat!` can use it).
macro_rules! client_columns {
    () => {
        "id, name, secret_digest, redirect_uris, post_logout_redirect_uris, audiences, \
         grant_types, scopes, first_party, backchannel_logout_uri, events_uri, id_token_alg, \
         resource_uris, created_at "
    };
}

pub const CLIENT_BY_ID: &str = concat!("SELECT ", client_columns!(), "FROM clients WHERE id = $1");

/// Oldest first; the id breaks ties so the order is stable.
pub const CLIENTS: &str = concat!("SELECT ", client_columns!(), "FROM clients ORDER BY created_at, id");

/// Every public client (the CORS origins of their redirect URIs:
/// `Client::cors_origins`).
pub const PUBLIC_CLIENTS: &str = concat!("SELECT ", client_columns!(), "FROM clients WHERE secret_digest IS NULL");

/// Its codes, grants (with their refresh tokens), consents and session links
/// go with it (`ON DELETE CASCADE`).
pub const DELETE_CLIENT: &str = "DELETE FROM clients WHERE id = $1";

/// Authorization codes have no foreign keys (migration 0008): deleting a
/// client or an account deletes its codes with these.
pub const DELETE_AUTH_CODES_OF_CLIENT: &str = "DELETE FROM auth_codes WHERE client_id = $1";
pub const DELETE_AUTH_CODES_OF_ACCOUNT: &str = "DELETE FROM auth_codes WHERE account_id = $1";

/// `$1` the row (`cache.rs`): in the transaction of every write to its table.
pub const BUMP_GENERATION: &str = "UPDATE generations SET value = value + 1 WHERE name = $1";
pub const GENERATION: &str = "SELECT value FROM generations WHERE name = $1";

// --- signing keys -----------------------------------------------------------

/// Newest first; the kid breaks ties.
pub const SIGNING_KEYS: &str = "\
    SELECT kid, alg, public_jwk, private_encrypted, created_at, signs_from, retired_at \
    FROM signing_keys ORDER BY created_at DESC, kid DESC";

/// `$1` alg, `$2` when the new key starts signing: the older keys of the
/// algorithm stop then (or earlier, if they already were to).
pub const RETIRE_SIGNING_KEYS: &str = "\
    UPDATE signing_keys SET retired_at = $2 WHERE alg = $1 AND (retired_at IS NULL OR retired_at > $2)";

pub const INSERT_SIGNING_KEY: &str = "\
    INSERT INTO signing_keys (kid, alg, public_jwk, private_encrypted, created_at, signs_from, retired_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// `$1` alg, `$2` the kid to keep.
pub const WITHDRAW_SIGNING_KEYS: &str = "\
    DELETE FROM signing_keys WHERE alg = $1 AND kid <> $2";

/// `$1` before. Unretired keys are never purged.
pub const PURGE_SIGNING_KEYS: &str = "\
    DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1";

// --- interactions -----------------------------------------------------------

pub const PUT_INTERACTION: &str = "\
    INSERT INTO interactions (digest, query, created_at, expires_at, chosen_account) \
    VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (digest) DO UPDATE SET \
        query = excluded.query, created_at = excluded.created_at, expires_at = excluded.expires_at, \
        chosen_account = excluded.chosen_account";

pub const INTERACTION: &str = "\
    SELECT digest, query, created_at, expires_at, chosen_account FROM interactions WHERE digest = $1";

pub const DELETE_INTERACTION: &str = "DELETE FROM interactions WHERE digest = $1";

/// At most this many rows per purge statement, so that a purge never holds
/// the writer long; the purge repeats until a statement deletes fewer.
pub const PURGE_CHUNK: i64 = 1_000;

/// Interactions that expired before `$1`, at most `$2`.
pub const PURGE_INTERACTIONS: &str = "\
    DELETE FROM interactions WHERE digest IN \
        (SELECT digest FROM interactions WHERE expires_at < $1 LIMIT $2)";

/// Authorization codes that expired before `$1`, at most `$2` (uses the
/// expiry index).
pub const PURGE_AUTH_CODES: &str = "\
    DELETE FROM auth_codes WHERE digest IN \
        (SELECT digest FROM auth_codes WHERE expires_at < $1 LIMIT $2)";

/// Refresh tokens that expired before `$1`, at most `$2` (uses the expiry
/// index).
pub const PURGE_REFRESH_TOKENS: &str = "\
    DELETE FROM refresh_tokens WHERE digest IN \
        (SELECT digest FROM refresh_tokens WHERE expires_at < $1 LIMIT $2)";

/// Throttle windows that began before `$1`, at most `$2` (uses
/// `throttle_by_window`, migration 0016).
pub const PURGE_THROTTLE: &str = "\
    DELETE FROM throttle WHERE key IN \
        (SELECT key FROM throttle WHERE window_started_at < $1 LIMIT $2)";

// --- authorization codes ----------------------------------------------------

/// The columns of an authorization code, `$1` to `$18` in this order
/// (`code_query` in `store_impl.rs` binds them).
macro_rules! insert_auth_code {
    () => {
        "INSERT INTO auth_codes (digest, client_id, account_id, session_digest, sid, redirect_uri, \
                                 scopes, nonce, code_challenge, auth_time, amr, acr_values, \
                                 resources, created_at, expires_at, used_at, grant_id, dpop_jkt) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
    };
}

/// The grant a redeemed code becomes, `$1` to `$13` as in [`INSERT_GRANT`],
/// inserted only from the rows of `$source`.
macro_rules! insert_grant_from {
    ($source:literal) => {
        concat!(
            "INSERT INTO grants (id, client_id, account_id, scopes, sid, session_digest, auth_time, amr, \
                                 resources, parent_id, created_at, revoked_at, dpop_jkt) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 ",
            $source
        )
    };
}

/// An authorization code and, the first time, that its session served its
/// client, as one query: one round trip, and on either backend atomic (a
/// code for a session that does not exist is refused, and not stored).
/// SQLite runs it in a batch (`batch.rs`), two statements in the batch's
/// transaction; PostgreSQL as one statement, its own transaction.
pub const INSERT_AUTH_CODE_SQLITE: &str = concat!(
    insert_auth_code!(),
    "; INSERT INTO session_clients (session_digest, client_id, first_at) VALUES ($4, $2, $14) \
     ON CONFLICT (session_digest, client_id) DO NOTHING"
);
pub const INSERT_AUTH_CODE_POSTGRES: &str = concat!(
    "WITH code AS (",
    insert_auth_code!(),
    " RETURNING session_digest, client_id, created_at) \
     INSERT INTO session_clients (session_digest, client_id, first_at) \
     SELECT session_digest, client_id, created_at FROM code \
     ON CONFLICT (session_digest, client_id) DO NOTHING"
);

/// A code's redemption as one query. Marks the code used (`$14` now, `$15`
/// its digest); only if that changed a row, inserts the grant (`$1` to
/// `$13` as [`INSERT_GRANT`]), which answers with its id, and then, if
/// there is one, the refresh token (`$16` digest, `$17` created, `$18`
/// expires, `$19` used). No row back: the code was used before, or never
/// issued. SQLite runs it in a batch (`batch.rs`); PostgreSQL as one
/// statement, its own transaction (one round trip, one commit).
pub const REDEEM_AUTH_CODE_SQLITE: &str = concat!(
    "UPDATE auth_codes SET used_at = $14 WHERE digest = $15 AND used_at IS NULL; ",
    insert_grant_from!("WHERE changes() = 1 RETURNING id; "),
    "INSERT INTO refresh_tokens (digest, grant_id, created_at, expires_at, used_at) \
     SELECT $16, $1, $17, $18, $19 WHERE changes() = 1 AND $16 IS NOT NULL"
);
pub const REDEEM_AUTH_CODE_POSTGRES: &str = concat!(
    "WITH used AS (UPDATE auth_codes SET used_at = $14 WHERE digest = $15 AND used_at IS NULL \
                   RETURNING digest), \
          issued AS (",
    insert_grant_from!("FROM used RETURNING id"),
    "), \
          refresh AS (INSERT INTO refresh_tokens (digest, grant_id, created_at, expires_at, used_at) \
                      SELECT $16, id, $17, $18, $19 FROM issued WHERE $16 IS NOT NULL) \
     SELECT id FROM issued"
);

pub const AUTH_CODE: &str = "\
    SELECT digest, client_id, account_id, session_digest, sid, redirect_uri, scopes, nonce, \
           code_challenge, auth_time, amr, acr_values, resources, created_at, expires_at, \
           used_at, grant_id, dpop_jkt \
    FROM auth_codes WHERE digest = $1";

pub const AUTH_CODE_GRANT: &str = "SELECT grant_id FROM auth_codes WHERE digest = $1";

/// Sorted by the caller (byte order, whatever the database's collation).
pub const SESSION_CLIENTS: &str = "\
    SELECT client_id FROM session_clients WHERE session_digest = $1";

/// `$1` account. Sorted by the caller.
pub const CLIENTS_USED_BY: &str = "\
    SELECT client_id FROM grants WHERE account_id = $1 \
    UNION SELECT client_id FROM consents WHERE account_id = $1 \
    UNION SELECT sc.client_id FROM session_clients sc \
        JOIN sessions s ON s.id_digest = sc.session_digest WHERE s.account_id = $1";

// --- consents ---------------------------------------------------------------

pub const PUT_CONSENT: &str = "\
    INSERT INTO consents (account_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (account_id, client_id) DO UPDATE SET \
        scopes = excluded.scopes, granted_at = excluded.granted_at";

pub const CONSENT: &str = "\
    SELECT account_id, client_id, scopes, granted_at FROM consents \
    WHERE account_id = $1 AND client_id = $2";

/// Newest first; the client id breaks ties.
pub const CONSENTS_OF: &str = "\
    SELECT account_id, client_id, scopes, granted_at FROM consents \
    WHERE account_id = $1 ORDER BY granted_at DESC, client_id DESC";

pub const DELETE_CONSENT: &str = "\
    DELETE FROM consents WHERE account_id = $1 AND client_id = $2";

// --- grants and tokens ------------------------------------------------------

pub const INSERT_GRANT: &str = "\
    INSERT INTO grants (id, client_id, account_id, scopes, sid, session_digest, auth_time, amr, \
                        resources, parent_id, created_at, revoked_at, dpop_jkt) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

pub const GRANT: &str = "\
    SELECT id, client_id, account_id, scopes, sid, session_digest, auth_time, amr, resources, \
           parent_id, created_at, revoked_at, dpop_jkt \
    FROM grants WHERE id = $1";

/// The grant `$1` and its ancestors (the `parent_id` chain), as far as they
/// exist. `UNION` (not `UNION ALL`) ends the walk on a cycle.
pub const GRANT_CHAIN: &str = "\
    WITH RECURSIVE chain (id, parent_id, revoked_at) AS ( \
        SELECT id, parent_id, revoked_at FROM grants WHERE id = $1 \
        UNION \
        SELECT g.id, g.parent_id, g.revoked_at FROM grants g JOIN chain c ON g.id = c.parent_id \
    ) \
    SELECT id, parent_id, revoked_at FROM chain";

/// Revokes the grant `$1` and every grant descending from it at `$2`; a
/// grant revoked before keeps its time.
pub const REVOKE_GRANT_FAMILY: &str = "\
    WITH RECURSIVE family (id) AS ( \
        SELECT id FROM grants WHERE id = $1 \
        UNION \
        SELECT g.id FROM grants g JOIN family f ON g.parent_id = f.id \
    ) \
    UPDATE grants SET revoked_at = COALESCE(revoked_at, $2) \
    WHERE id IN (SELECT id FROM family)";

/// Revokes every grant of account `$1` and client `$2`, and their
/// descendants, at `$3`.
pub const REVOKE_GRANTS_OF: &str = "\
    WITH RECURSIVE family (id) AS ( \
        SELECT id FROM grants WHERE account_id = $1 AND client_id = $2 \
        UNION \
        SELECT g.id FROM grants g JOIN family f ON g.parent_id = f.id \
    ) \
    UPDATE grants SET revoked_at = COALESCE(revoked_at, $3) \
    WHERE id IN (SELECT id FROM family)";

/// Revokes every grant of account `$1` (any client), and their descendants,
/// at `$2`.
pub const REVOKE_GRANTS_OF_ACCOUNT: &str = "\
    WITH RECURSIVE family (id) AS ( \
        SELECT id FROM grants WHERE account_id = $1 \
        UNION \
        SELECT g.id FROM grants g JOIN family f ON g.parent_id = f.id \
    ) \
    UPDATE grants SET revoked_at = COALESCE(revoked_at, $2) \
    WHERE id IN (SELECT id FROM family)";

// --- bans ------------------------------------------------------------------

/// Inserts or replaces the ban of account `$1` at client `$2` ('' for everywhere).
pub const UPSERT_BAN: &str = "\
    INSERT INTO bans (account_id, client_id, until, reason, by_whom, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (account_id, client_id) DO UPDATE SET \
        until = excluded.until, reason = excluded.reason, by_whom = excluded.by_whom, created_at = excluded.created_at";

pub const DELETE_BAN: &str = "DELETE FROM bans WHERE account_id = $1 AND client_id = $2";

pub const BANS_OF: &str = "\
    SELECT account_id, client_id, until, reason, by_whom, created_at \
    FROM bans WHERE account_id = $1 ORDER BY client_id";

/// The columns of [`AccountPart`] and [`BanPart`] for a read that joins
/// `accounts a` and `bans b` (one literal, so that `concat!` can use it).
macro_rules! account_and_ban_columns {
    () => {
        "a.email AS account_email, a.email_verified AS account_email_verified, \
         a.password_hash AS account_password_hash, a.created_at AS account_created_at, \
         a.updated_at AS account_updated_at, \
         a.name AS account_name, a.given_name AS account_given_name, \
         a.family_name AS account_family_name, a.preferred_username AS account_preferred_username, \
         a.locale AS account_locale, a.zoneinfo AS account_zoneinfo, \
         a.profile_updated_at AS account_profile_updated_at, \
         b.client_id AS ban_client_id, b.until AS ban_until, b.reason AS ban_reason, \
         b.by_whom AS ban_by_whom, b.created_at AS ban_created_at "
    };
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

/// A code, its account (NULL columns if it is gone) and the account's bans,
/// in one read, shaped as [`SESSION_WITH_ACCOUNT`].
pub const AUTH_CODE_WITH_ACCOUNT: &str = concat!(
    "SELECT c.digest, c.client_id, c.account_id, c.session_digest, c.sid, c.redirect_uri, \
            c.scopes, c.nonce, c.code_challenge, c.auth_time, c.amr, c.acr_values, c.resources, \
            c.created_at, c.expires_at, c.used_at, c.grant_id, c.dpop_jkt, ",
    account_and_ban_columns!(),
    "FROM auth_codes c \
     LEFT JOIN accounts a ON a.id = c.account_id \
     LEFT JOIN bans b ON b.account_id = c.account_id \
     WHERE c.digest = $1 ORDER BY b.client_id"
);

pub const INSERT_REFRESH_TOKEN: &str = "\
    INSERT INTO refresh_tokens (digest, grant_id, created_at, expires_at, used_at) \
    VALUES ($1, $2, $3, $4, $5)";

pub const REFRESH_TOKEN: &str = "\
    SELECT digest, grant_id, created_at, expires_at, used_at \
    FROM refresh_tokens WHERE digest = $1";

/// Affects no row if the token was used before. `$1` digest, `$2` now.
pub const USE_REFRESH_TOKEN: &str = "\
    UPDATE refresh_tokens SET used_at = $2 WHERE digest = $1 AND used_at IS NULL";

pub const REFRESH_TOKEN_GRANT: &str = "SELECT grant_id FROM refresh_tokens WHERE digest = $1";

/// Revoking again keeps the later expiry.
pub const REVOKE_JTI: &str = "\
    INSERT INTO revoked_jtis (jti, expires_at) VALUES ($1, $2) \
    ON CONFLICT (jti) DO UPDATE SET expires_at = \
        CASE WHEN excluded.expires_at > revoked_jtis.expires_at \
             THEN excluded.expires_at ELSE revoked_jtis.expires_at END";

pub const JTI_REVOKED: &str = "SELECT jti FROM revoked_jtis WHERE jti = $1";

// --- DPoP proofs ------------------------------------------------------------

/// Remembers proof `$2` of key `$1` until `$3`; a row for the same proof
/// that expired before `$4` (now) is taken over. Affects no row if the proof
/// is remembered: a replay. One statement, so two instances racing with the
/// same proof see one insert and one conflict.
pub const DPOP_JTI_SEEN: &str = "\
    INSERT INTO dpop_jtis (jkt, jti, expires_at) VALUES ($1, $2, $3) \
    ON CONFLICT (jkt, jti) DO UPDATE SET expires_at = excluded.expires_at \
    WHERE dpop_jtis.expires_at < $4";

/// Forgets proofs that expired before `$1` (uses the expiry index).
pub const PURGE_DPOP_JTIS: &str = "DELETE FROM dpop_jtis WHERE expires_at < $1";

/// Expired proofs are purged on one in this many inserts (and the first).
pub const DPOP_PURGE_EVERY: u64 = 64;

// --- rows -------------------------------------------------------------------

#[derive(sqlx::FromRow)]
pub struct AccountRow {
    id: String,
    email: String,
    email_verified: bool,
    password_hash: String,
    created_at: i64,
    updated_at: i64,
    #[sqlx(flatten)]
    profile: ProfileColumns,
}

/// The profile columns of `accounts`.
#[derive(sqlx::FromRow)]
pub struct ProfileColumns {
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    preferred_username: Option<String>,
    locale: Option<String>,
    zoneinfo: Option<String>,
    profile_updated_at: Option<i64>,
}

impl From<ProfileColumns> for Profile {
    fn from(c: ProfileColumns) -> Self {
        Profile {
            name: c.name,
            given_name: c.given_name,
            family_name: c.family_name,
            preferred_username: c.preferred_username,
            locale: c.locale,
            zoneinfo: c.zoneinfo,
            updated_at: c.profile_updated_at.map(Timestamp),
        }
    }
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
            profile: row.profile.into(),
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
        let purpose = CodePurpose::parse(&row.purpose)
            .ok_or_else(|| corrupt("one_time_codes", &row.id, format!("unknown purpose {:?}", row.purpose)))?;
        let attempts = u32::try_from(row.attempts)
            .map_err(|_| corrupt("one_time_codes", &row.id, format!("negative attempts {}", row.attempts)))?;
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
        let failures = u32::try_from(row.failures)
            .map_err(|_| StoreError::Corrupt(format!("throttle: negative failures {}", row.failures)))?;
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

#[derive(sqlx::FromRow)]
pub struct ClientRow {
    id: String,
    name: String,
    secret_digest: Option<String>,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    audiences: String,
    grant_types: String,
    scopes: String,
    first_party: bool,
    backchannel_logout_uri: Option<String>,
    events_uri: Option<String>,
    id_token_alg: String,
    resource_uris: String,
    created_at: i64,
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;

    fn try_from(row: ClientRow) -> Result<Self, StoreError> {
        const TABLE: &str = "clients";
        let key = row.id.as_str();
        let grant_types = parse_list(&row.grant_types, TABLE, key, "grant_types")?
            .into_iter()
            .map(|name| {
                GrantType::parse(&name).ok_or_else(|| corrupt(TABLE, key, format!("unknown grant type {name:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let id_token_alg = parse_alg(&row.id_token_alg, TABLE, key)?;
        Ok(Client {
            redirect_uris: parse_list(&row.redirect_uris, TABLE, key, "redirect_uris")?,
            post_logout_redirect_uris: parse_list(
                &row.post_logout_redirect_uris,
                TABLE,
                key,
                "post_logout_redirect_uris",
            )?,
            audiences: parse_list(&row.audiences, TABLE, key, "audiences")?,
            resource_uris: parse_list(&row.resource_uris, TABLE, key, "resource_uris")?,
            scopes: parse_scopes(&row.scopes, TABLE, key)?,
            grant_types,
            id_token_alg,
            id: ClientId(row.id),
            name: row.name,
            secret_digest: row.secret_digest.map(TokenDigest),
            first_party: row.first_party,
            backchannel_logout_uri: row.backchannel_logout_uri,
            events_uri: row.events_uri,
            created_at: Timestamp(row.created_at),
        })
    }
}

/// A client's encoded columns: its lists as JSON arrays (grant types by
/// name) and its scopes space-separated.
pub struct ClientColumns {
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    pub audiences: String,
    pub resource_uris: String,
    pub grant_types: String,
    pub scopes: String,
}

impl ClientColumns {
    pub fn of(client: &Client) -> Self {
        let grant_types: Vec<&str> = client.grant_types.iter().map(|g| g.as_str()).collect();
        Self {
            redirect_uris: json_list(&client.redirect_uris),
            post_logout_redirect_uris: json_list(&client.post_logout_redirect_uris),
            audiences: json_list(&client.audiences),
            resource_uris: json_list(&client.resource_uris),
            grant_types: json_list(&grant_types),
            scopes: client.scopes.to_string(),
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct KeyRow {
    kid: String,
    alg: String,
    public_jwk: String,
    private_encrypted: String,
    created_at: i64,
    /// `NULL` only if written by an older version: it signed at once.
    signs_from: Option<i64>,
    retired_at: Option<i64>,
}

impl TryFrom<KeyRow> for StoredKey {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        Ok(StoredKey {
            alg: parse_alg(&row.alg, "signing_keys", &row.kid)?,
            kid: row.kid,
            public_jwk: row.public_jwk,
            private_encrypted: row.private_encrypted,
            created_at: Timestamp(row.created_at),
            signs_from: Timestamp(row.signs_from.unwrap_or(row.created_at)),
            retired_at: row.retired_at.map(Timestamp),
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct InteractionRow {
    digest: String,
    query: String,
    created_at: i64,
    expires_at: i64,
    chosen_account: Option<String>,
}

impl From<InteractionRow> for Interaction {
    fn from(row: InteractionRow) -> Self {
        Interaction {
            digest: TokenDigest(row.digest),
            query: row.query,
            created_at: Timestamp(row.created_at),
            expires_at: Timestamp(row.expires_at),
            chosen_account: row.chosen_account.map(AccountId),
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct AuthCodeRow {
    digest: String,
    client_id: String,
    account_id: String,
    session_digest: String,
    sid: String,
    redirect_uri: String,
    scopes: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
    auth_time: i64,
    amr: String,
    acr_values: Option<String>,
    resources: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    grant_id: String,
    dpop_jkt: Option<String>,
}

impl TryFrom<AuthCodeRow> for AuthCode {
    type Error = StoreError;

    fn try_from(row: AuthCodeRow) -> Result<Self, StoreError> {
        const TABLE: &str = "auth_codes";
        Ok(AuthCode {
            scopes: parse_scopes(&row.scopes, TABLE, &row.digest)?,
            resources: parse_list(&row.resources, TABLE, &row.digest, "resources")?,
            digest: TokenDigest(row.digest),
            client_id: ClientId(row.client_id),
            account_id: AccountId(row.account_id),
            session_digest: TokenDigest(row.session_digest),
            sid: row.sid,
            redirect_uri: row.redirect_uri,
            nonce: row.nonce,
            code_challenge: row.code_challenge,
            auth_time: Timestamp(row.auth_time),
            // Unknown methods are dropped, never guessed (as for sessions).
            amr: Session::parse_amr(&row.amr),
            acr_values: row.acr_values,
            created_at: Timestamp(row.created_at),
            expires_at: Timestamp(row.expires_at),
            used_at: row.used_at.map(Timestamp),
            grant_id: row.grant_id,
            dpop_jkt: row.dpop_jkt,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct GrantRow {
    id: String,
    client_id: String,
    account_id: Option<String>,
    scopes: String,
    sid: Option<String>,
    session_digest: Option<String>,
    auth_time: Option<i64>,
    amr: String,
    resources: String,
    parent_id: Option<String>,
    created_at: i64,
    revoked_at: Option<i64>,
    dpop_jkt: Option<String>,
}

impl TryFrom<GrantRow> for Grant {
    type Error = StoreError;

    fn try_from(row: GrantRow) -> Result<Self, StoreError> {
        const TABLE: &str = "grants";
        Ok(Grant {
            scopes: parse_scopes(&row.scopes, TABLE, &row.id)?,
            resources: parse_list(&row.resources, TABLE, &row.id, "resources")?,
            id: row.id,
            client_id: ClientId(row.client_id),
            account_id: row.account_id.map(AccountId),
            sid: row.sid,
            session_digest: row.session_digest.map(TokenDigest),
            auth_time: row.auth_time.map(Timestamp),
            amr: Session::parse_amr(&row.amr),
            parent_id: row.parent_id,
            dpop_jkt: row.dpop_jkt,
            created_at: Timestamp(row.created_at),
            revoked_at: row.revoked_at.map(Timestamp),
        })
    }
}

/// One link of [`GRANT_CHAIN`].
#[derive(sqlx::FromRow)]
pub struct ChainRow {
    pub id: String,
    pub parent_id: Option<String>,
    pub revoked_at: Option<i64>,
}

/// Whether a grant whose chain (the grant, then its ancestors) is `chain`
/// counts as revoked: if it is unknown, if any link is revoked, or if an
/// ancestor is missing (deleted with its client or account).
pub fn chain_revoked(chain: &[ChainRow]) -> bool {
    chain.is_empty()
        || chain.iter().any(|link| {
            link.revoked_at.is_some()
                || link
                    .parent_id
                    .as_ref()
                    .is_some_and(|parent| !chain.iter().any(|l| &l.id == parent))
        })
}

#[derive(sqlx::FromRow)]
pub struct RefreshRow {
    digest: String,
    grant_id: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl From<RefreshRow> for RefreshToken {
    fn from(row: RefreshRow) -> Self {
        RefreshToken {
            digest: TokenDigest(row.digest),
            grant_id: row.grant_id,
            created_at: Timestamp(row.created_at),
            expires_at: Timestamp(row.expires_at),
            used_at: row.used_at.map(Timestamp),
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct ConsentRow {
    account_id: String,
    client_id: String,
    scopes: String,
    granted_at: i64,
}

impl TryFrom<ConsentRow> for Consent {
    type Error = StoreError;

    fn try_from(row: ConsentRow) -> Result<Self, StoreError> {
        let key = format!("{}/{}", row.account_id, row.client_id);
        Ok(Consent {
            scopes: parse_scopes(&row.scopes, "consents", &key)?,
            account_id: AccountId(row.account_id),
            client_id: ClientId(row.client_id),
            granted_at: Timestamp(row.granted_at),
        })
    }
}

// --- helpers ----------------------------------------------------------------

/// Whether the statement broke a UNIQUE constraint (or primary key).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

pub fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_foreign_key_violation())
}

fn corrupt(table: &str, key: &str, what: String) -> StoreError {
    StoreError::Corrupt(format!("{table} {key}: {what}"))
}

fn parse_email(stored: &str, table: &str, key: &str) -> Result<Email, StoreError> {
    Email::parse(stored).map_err(|e| corrupt(table, key, format!("bad email {stored:?}: {e}")))
}

/// A list of strings as stored: a JSON array.
pub fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    serde_json::Value::from(
        items
            .iter()
            .map(|s| serde_json::Value::from(s.as_ref()))
            .collect::<Vec<_>>(),
    )
    .to_string()
}

fn parse_list(stored: &str, table: &str, key: &str, column: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(stored)
        .map_err(|e| corrupt(table, key, format!("{column} is not a JSON array of strings: {e}")))
}

fn parse_scopes(stored: &str, table: &str, key: &str) -> Result<Scopes, StoreError> {
    Scopes::parse(stored).map_err(|e| corrupt(table, key, format!("bad scopes {stored:?}: {e}")))
}

fn parse_alg(stored: &str, table: &str, key: &str) -> Result<SigningAlg, StoreError> {
    SigningAlg::parse(stored).ok_or_else(|| corrupt(table, key, format!("unknown algorithm {stored:?}")))
}

#[derive(sqlx::FromRow)]
pub struct BanRow {
    account_id: String,
    client_id: String,
    until: Option<i64>,
    reason: String,
    by_whom: String,
    created_at: i64,
}

impl From<BanRow> for Ban {
    fn from(row: BanRow) -> Self {
        Ban {
            account_id: AccountId(row.account_id),
            client_id: (!row.client_id.is_empty()).then_some(ClientId(row.client_id)),
            until: row.until.map(Timestamp),
            reason: row.reason,
            by: row.by_whom,
            created_at: Timestamp(row.created_at),
        }
    }
}

/// The account columns of a joined read (`account_*`), NULL when a LEFT
/// JOIN found no account.
#[derive(sqlx::FromRow)]
pub struct AccountPart {
    account_email: Option<String>,
    account_email_verified: Option<bool>,
    account_password_hash: Option<String>,
    account_created_at: Option<i64>,
    account_updated_at: Option<i64>,
    account_name: Option<String>,
    account_given_name: Option<String>,
    account_family_name: Option<String>,
    account_preferred_username: Option<String>,
    account_locale: Option<String>,
    account_zoneinfo: Option<String>,
    account_profile_updated_at: Option<i64>,
}

impl AccountPart {
    pub fn into_account(self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let (Some(email), Some(email_verified), Some(hash), Some(created_at), Some(updated_at)) = (
            self.account_email,
            self.account_email_verified,
            self.account_password_hash,
            self.account_created_at,
            self.account_updated_at,
        ) else {
            return Ok(None);
        };
        AccountRow {
            id: id.as_str().to_owned(),
            email,
            email_verified,
            password_hash: hash,
            created_at,
            updated_at,
            profile: ProfileColumns {
                name: self.account_name,
                given_name: self.account_given_name,
                family_name: self.account_family_name,
                preferred_username: self.account_preferred_username,
                locale: self.account_locale,
                zoneinfo: self.account_zoneinfo,
                profile_updated_at: self.account_profile_updated_at,
            },
        }
        .try_into()
        .map(Some)
    }
}

/// The ban columns of a joined read (`ban_*`), NULL when the account has no
/// ban.
#[derive(sqlx::FromRow)]
pub struct BanPart {
    ban_client_id: Option<String>,
    ban_until: Option<i64>,
    ban_reason: Option<String>,
    ban_by_whom: Option<String>,
    ban_created_at: Option<i64>,
}

impl BanPart {
    pub fn into_ban(self, account: &AccountId) -> Option<Ban> {
        let (Some(client_id), Some(reason), Some(by_whom), Some(created_at)) = (
            self.ban_client_id,
            self.ban_reason,
            self.ban_by_whom,
            self.ban_created_at,
        ) else {
            return None;
        };
        Some(Ban::from(BanRow {
            account_id: account.as_str().to_owned(),
            client_id,
            until: self.ban_until,
            reason,
            by_whom,
            created_at,
        }))
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

/// A row of [`AUTH_CODE_WITH_ACCOUNT`].
#[derive(sqlx::FromRow)]
pub struct AuthCodeAccountRow {
    #[sqlx(flatten)]
    pub code: AuthCodeRow,
    #[sqlx(flatten)]
    pub account: AccountPart,
    #[sqlx(flatten)]
    pub ban: BanPart,
}

// --- the outbox ---------------------------------------------------------------

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
macro_rules! claim_outbox {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET locked_until = $3 \
             WHERE id IN (SELECT id FROM outbox \
                          WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $1 \
                            AND (locked_until IS NULL OR locked_until <= $1) \
                          ORDER BY next_attempt_at, created_at LIMIT $2",
            $lock,
            ") RETURNING ",
            outbox_columns!()
        )
    };
}

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

/// SQLite: one UPDATE ... RETURNING (SQLite has one writer at a time, so
/// the statement is atomic).
pub const CLAIM_OUTBOX_SQLITE: &str = claim_outbox!("");

/// PostgreSQL: the due rows are locked with `FOR UPDATE SKIP LOCKED`, so
/// concurrent workers take disjoint sets, and leased in the same statement.
pub const CLAIM_OUTBOX_POSTGRES: &str = claim_outbox!(" FOR UPDATE SKIP LOCKED");

pub const OUTBOX_DELIVERED: &str = "\
    UPDATE outbox SET delivered_at = $2, attempts = attempts + 1, locked_until = NULL, last_error = NULL \
    WHERE id = $1";

/// `$1` id, `$2` now, `$3` next attempt, `$4` error, `$5` dead.
pub const OUTBOX_FAILED: &str = "\
    UPDATE outbox SET attempts = attempts + 1, last_error = $4, next_attempt_at = $3, locked_until = NULL, \
                      dead_at = CASE WHEN $5 THEN $2 ELSE NULL END \
    WHERE id = $1 AND delivered_at IS NULL";

/// `$1` id, `$2` now, `$3` the payload signed again.
pub const OUTBOX_REDELIVER: &str = "\
    UPDATE outbox SET dead_at = NULL, locked_until = NULL, next_attempt_at = $2, created_at = $2, \
                      payload = $3 \
    WHERE id = $1 AND delivered_at IS NULL";

/// `$1` the client, or NULL for all.
pub const OUTBOX_SUMMARY: &str = "\
    SELECT \
      COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL AND attempts = 0 THEN 1 ELSE 0 END), 0) AS pending, \
      COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL AND attempts > 0 THEN 1 ELSE 0 END), 0) AS failed, \
      COALESCE(SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS delivered, \
      COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS dead \
    FROM outbox WHERE ($1 IS NULL OR client_id = $1)";

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
pub struct OutboxSummaryRow {
    pub pending: i64,
    pub failed: i64,
    pub delivered: i64,
    pub dead: i64,
}

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
