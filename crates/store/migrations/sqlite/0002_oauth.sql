-- OAuth and OpenID Connect records, SQLite flavour. Keep it in step with
-- ../postgres/0002_oauth.sql: the queries in src/sql.rs run unchanged on both.
-- All times are Unix seconds (BIGINT). Bearer values (codes, refresh tokens,
-- interaction ids) are stored only as SHA-256 digests.

CREATE TABLE clients (
    id                        TEXT    PRIMARY KEY NOT NULL,
    name                      TEXT    NOT NULL,
    -- SHA-256 of the secret; NULL for a public client.
    secret_digest             TEXT,
    -- JSON arrays of strings.
    redirect_uris             TEXT    NOT NULL,
    post_logout_redirect_uris TEXT    NOT NULL,
    audiences                 TEXT    NOT NULL,
    -- JSON array of grant type names ("authorization_code", ...).
    grant_types               TEXT    NOT NULL,
    -- Space-separated scope tokens.
    scopes                    TEXT    NOT NULL,
    first_party               BOOLEAN NOT NULL DEFAULT FALSE,
    backchannel_logout_uri    TEXT,
    events_uri                TEXT,
    id_token_alg              TEXT    NOT NULL,
    created_at                BIGINT  NOT NULL
);

CREATE INDEX clients_by_creation ON clients (created_at, id);

CREATE TABLE signing_keys (
    kid               TEXT    PRIMARY KEY NOT NULL,
    alg               TEXT    NOT NULL,
    -- The public JWK, JSON.
    public_jwk        TEXT    NOT NULL,
    -- base64(nonce || AES-256-GCM ciphertext of the PKCS#8 DER).
    private_encrypted TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    retired_at        BIGINT
);

CREATE TABLE interactions (
    digest     TEXT    PRIMARY KEY NOT NULL,
    -- The authorization request's original query string.
    query      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);

CREATE TABLE auth_codes (
    digest         TEXT    PRIMARY KEY NOT NULL,
    client_id      TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    account_id     TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The IdP session that authorized it. No foreign key: a code lives a
    -- minute, and ending its session leaves it to expire.
    session_digest TEXT    NOT NULL,
    sid            TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time      BIGINT  NOT NULL,
    -- Space-separated RFC 8176 values.
    amr            TEXT    NOT NULL,
    acr_values     TEXT,
    -- JSON array of resource indicators.
    resources      TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    used_at        BIGINT,
    -- The grant the code becomes (written when it is redeemed).
    grant_id       TEXT    NOT NULL
);

CREATE INDEX auth_codes_by_grant ON auth_codes (grant_id);
CREATE INDEX auth_codes_by_client ON auth_codes (client_id);
CREATE INDEX auth_codes_by_account ON auth_codes (account_id);

-- The clients each IdP session has served, for logout.
CREATE TABLE session_clients (
    session_digest TEXT    NOT NULL REFERENCES sessions (id_digest) ON DELETE CASCADE,
    client_id      TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    first_at       BIGINT  NOT NULL,
    PRIMARY KEY (session_digest, client_id)
);

CREATE INDEX session_clients_by_client ON session_clients (client_id);

CREATE TABLE consents (
    account_id TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    client_id  TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scopes     TEXT    NOT NULL,
    granted_at BIGINT  NOT NULL,
    PRIMARY KEY (account_id, client_id)
);

CREATE INDEX consents_by_client ON consents (client_id);

-- Token families.
CREATE TABLE grants (
    id             TEXT    PRIMARY KEY NOT NULL,
    client_id      TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    -- NULL for client credentials.
    account_id     TEXT    REFERENCES accounts (id) ON DELETE CASCADE,
    scopes         TEXT    NOT NULL,
    sid            TEXT,
    -- No foreign key: sessions end, their grants are revoked separately.
    session_digest TEXT,
    auth_time      BIGINT,
    amr            TEXT    NOT NULL,
    -- JSON array of resource indicators.
    resources      TEXT    NOT NULL,
    -- The family a narrowed (token exchange) grant came from. No foreign
    -- key: a missing ancestor reads as revoked.
    parent_id      TEXT,
    created_at     BIGINT  NOT NULL,
    revoked_at     BIGINT
);

CREATE INDEX grants_by_parent ON grants (parent_id);
CREATE INDEX grants_by_account_and_client ON grants (account_id, client_id);
CREATE INDEX grants_by_client ON grants (client_id);

CREATE TABLE refresh_tokens (
    digest     TEXT    PRIMARY KEY NOT NULL,
    grant_id   TEXT    NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT
);

CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_id);

-- Revoked access token ids, until the tokens would have expired anyway.
CREATE TABLE revoked_jtis (
    jti        TEXT    PRIMARY KEY NOT NULL,
    expires_at BIGINT  NOT NULL
);
