-- An authorization code lives a minute and is purged an hour after it
-- expires (`housekeeping.rs`). Its foreign keys to its client and account
-- needed an index each for their `ON DELETE CASCADE`, and every single
-- sign-on wrote a page of both. Now deleting a client or an account
-- deletes its codes itself (`sql::DELETE_AUTH_CODES_OF_CLIENT`,
-- `sql::DELETE_AUTH_CODES_OF_ACCOUNT`: a scan of the table, which holds
-- about an hour of codes, on a rare write), and a code is only ever
-- redeemed with its account read alongside (a deleted account's code is
-- `invalid_grant`).
--
-- SQLite cannot drop a foreign key: the table is built again. No table
-- refers to auth_codes, so it can be dropped with foreign keys on.
CREATE TABLE auth_codes_new (
    digest         TEXT    PRIMARY KEY NOT NULL,
    client_id      TEXT    NOT NULL,
    account_id     TEXT    NOT NULL,
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

INSERT INTO auth_codes_new
    (digest, client_id, account_id, session_digest, sid, redirect_uri, scopes, nonce,
     code_challenge, auth_time, amr, acr_values, resources, created_at, expires_at,
     used_at, grant_id)
SELECT digest, client_id, account_id, session_digest, sid, redirect_uri, scopes, nonce,
       code_challenge, auth_time, amr, acr_values, resources, created_at, expires_at,
       used_at, grant_id
FROM auth_codes;

DROP TABLE auth_codes;
ALTER TABLE auth_codes_new RENAME TO auth_codes;
CREATE INDEX auth_codes_by_expiry ON auth_codes (expires_at);
