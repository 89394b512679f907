-- Gatehouse schema, PostgreSQL flavour. Keep it in step with
-- ../sqlite/0001_init.sql: the queries in src/sql.rs run unchanged on both.
-- All times are Unix seconds (BIGINT).

CREATE TABLE accounts (
    id             TEXT    PRIMARY KEY,
    email          TEXT    NOT NULL UNIQUE,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash  TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the cookie value; the cookie itself is never stored.
    id_digest    TEXT    PRIMARY KEY,
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
    id          TEXT    PRIMARY KEY,
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
    key               TEXT    PRIMARY KEY,
    window_started_at BIGINT  NOT NULL,
    failures          INTEGER NOT NULL
);

CREATE TABLE audit_events (
    seq        BIGSERIAL PRIMARY KEY,
    at         BIGINT    NOT NULL,
    kind       TEXT      NOT NULL,
    -- No foreign key: events outlive the account they describe.
    account_id TEXT,
    ip         TEXT      NOT NULL,
    user_agent TEXT      NOT NULL,
    outcome    TEXT      NOT NULL,
    -- JSON object, as text (the same column type as on SQLite).
    detail     TEXT      NOT NULL
);

CREATE INDEX audit_events_by_account ON audit_events (account_id, seq);
CREATE INDEX audit_events_by_kind ON audit_events (kind, seq);

-- The audit log is append-only, whatever the application does.
CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;

CREATE TRIGGER audit_events_no_update_or_delete
BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

-- Row triggers do not see TRUNCATE; refuse it too.
CREATE TRIGGER audit_events_no_truncate
BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
