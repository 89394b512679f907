-- Gatehouse schema, SQLite flavour. Keep it in step with
-- ../postgres/0001_init.sql: the queries in src/sql.rs run unchanged on both.
-- All times are Unix seconds (BIGINT). Booleans are stored as 0/1.

CREATE TABLE accounts (
    id             TEXT    PRIMARY KEY NOT NULL,
    email          TEXT    NOT NULL UNIQUE,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash  TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the cookie value; the cookie itself is never stored.
    id_digest    TEXT    PRIMARY KEY NOT NULL,
    handle       TEXT    NOT NULL UNIQUE,
    account_id   TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at   BIGINT  NOT NULL,
    auth_time    BIGINT  NOT NULL,
    -- Space-separated RFC 8176 values ("pwd otp").
    amr          TEXT    NOT NULL,
    last_seen_at BIGINT  NOT NULL,
    user_agent   TEXT    NOT NULL,
    ip           TEXT    NOT NULL,
    needs_reauth BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX sessions_by_account ON sessions (account_id, created_at);

CREATE TABLE one_time_codes (
    id          TEXT    PRIMARY KEY NOT NULL,
    purpose     TEXT    NOT NULL,
    account_id  TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The address the code was sent to (the new one for an email change).
    email       TEXT    NOT NULL,
    code_digest TEXT    NOT NULL,
    link_digest TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT,
    attempts    INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX one_time_codes_by_account ON one_time_codes (account_id, purpose, created_at);

CREATE TABLE throttle (
    key               TEXT    PRIMARY KEY NOT NULL,
    window_started_at BIGINT  NOT NULL,
    failures          INTEGER NOT NULL
);

CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT  NOT NULL,
    kind       TEXT    NOT NULL,
    -- No foreign key: events outlive the account they describe.
    account_id TEXT,
    ip         TEXT    NOT NULL,
    user_agent TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    -- JSON object.
    detail     TEXT    NOT NULL
);

CREATE INDEX audit_events_by_account ON audit_events (account_id, seq);
CREATE INDEX audit_events_by_kind ON audit_events (kind, seq);

-- The audit log is append-only, whatever the application does.
CREATE TRIGGER audit_events_no_update
BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete
BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
