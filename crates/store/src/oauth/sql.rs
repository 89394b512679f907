//! OAuth's SQL and rows. The redemption of a code and the insert of a
//! code differ by backend (a batch on SQLite, one statement on
//! PostgreSQL); everything else is one text for both.

use crate::StoreError;
use crate::accounts::sql::{AccountPart, account_and_ban_columns};
use crate::bans::BanPart;
use crate::sql::{corrupt, json_list, parse_alg, parse_list, parse_scopes};
use gatehouse_core::oauth::grant::{AuthCode, Consent, Grant, Interaction, RefreshToken};
use gatehouse_core::oauth::{Client, ClientId, GrantType};
use gatehouse_core::session::Session;
use gatehouse_core::{AccountId, Timestamp, TokenDigest};

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

pub const PUT_INTERACTION: &str = "\
    INSERT INTO interactions (digest, query, created_at, expires_at, chosen_account) \
    VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (digest) DO UPDATE SET \
        query = excluded.query, created_at = excluded.created_at, expires_at = excluded.expires_at, \
        chosen_account = excluded.chosen_account";

pub const INTERACTION: &str = "\
    SELECT digest, query, created_at, expires_at, chosen_account FROM interactions WHERE digest = $1";

pub const DELETE_INTERACTION: &str = "DELETE FROM interactions WHERE digest = $1";

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

/// The columns of an authorization code, `$1` to `$18` in this order
/// (`code_query` in `write.rs` binds them).
macro_rules! insert_auth_code {
    () => {
        "INSERT INTO auth_codes (digest, client_id, account_id, session_digest, sid, redirect_uri, \
                                 scopes, nonce, code_challenge, auth_time, amr, acr_values, \
                                 resources, created_at, expires_at, used_at, grant_id, dpop_jkt) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
    };
}

/// The grant a redeemed code becomes, `$1` to `$13` in this order
/// (`grant_query` in `write.rs` binds them), inserted only from the rows
/// of `$source`. A code's redemption is the only way a grant is written.
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
/// `$13` as in `insert_grant_from!`), which answers with its id, and then, if
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

pub const AUTH_CODE_GRANT: &str = "SELECT grant_id FROM auth_codes WHERE digest = $1";

/// `$1` grant id, `$2` the resource server's client id, `$3` now: the
/// grant's session (while it lives) served that client.
pub const RESOURCE_SERVED: &str = "\
    INSERT INTO session_clients (session_digest, client_id, first_at) \
    SELECT g.session_digest, $2, $3 FROM grants g JOIN sessions s ON s.id_digest = g.session_digest \
    WHERE g.id = $1 \
    ON CONFLICT (session_digest, client_id) DO NOTHING";

/// Sorted by the caller (byte order, whatever the database's collation).
pub const SESSION_CLIENTS: &str = "\
    SELECT client_id FROM session_clients WHERE session_digest = $1";

/// `$1` account. Sorted by the caller.
pub const CLIENTS_USED_BY: &str = "\
    SELECT client_id FROM grants WHERE account_id = $1 \
    UNION SELECT client_id FROM consents WHERE account_id = $1 \
    UNION SELECT sc.client_id FROM session_clients sc \
        JOIN sessions s ON s.id_digest = sc.session_digest WHERE s.account_id = $1";

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

/// A code, its account (NULL columns if it is gone) and the account's bans,
/// in one read, shaped as [`crate::sessions::SESSION_WITH_ACCOUNT`].
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
