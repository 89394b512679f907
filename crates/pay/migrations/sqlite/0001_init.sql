-- The payments service's own database. Times are Unix seconds; amounts are
-- integers in minor units.

-- The service's signing key(s): the private part encrypted (AES-256-GCM).
CREATE TABLE pay_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    private_encrypted TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE merchants (
    client_id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    -- JSON array of origins allowed to frame the purchase pages.
    origins TEXT NOT NULL,
    notify_uri TEXT,
    created_at BIGINT NOT NULL
);

-- A buyer: agreement to the documents (with their versions and time) and
-- the purchase PIN (Argon2id PHC string).
CREATE TABLE buyers (
    sub TEXT PRIMARY KEY NOT NULL,
    terms_version TEXT,
    privacy_version TEXT,
    agreed_at BIGINT,
    pin_hash TEXT,
    pin_set_at BIGINT,
    created_at BIGINT NOT NULL
);

-- Failed PIN counters (fixed windows).
CREATE TABLE throttle (
    key TEXT PRIMARY KEY NOT NULL,
    window_started_at BIGINT NOT NULL,
    failures BIGINT NOT NULL
);

CREATE TABLE contracts (
    hash TEXT PRIMARY KEY NOT NULL,
    merchant TEXT NOT NULL REFERENCES merchants (client_id),
    sub TEXT NOT NULL,
    -- The canonical JSON of the terms.
    terms TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Single-use links to the purchase page (digest of the link token only).
CREATE TABLE purchase_links (
    digest TEXT PRIMARY KEY NOT NULL,
    contract_hash TEXT NOT NULL REFERENCES contracts (hash),
    sub TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- One purchase per contract, at most: paying twice charges once.
CREATE TABLE purchases (
    id TEXT PRIMARY KEY NOT NULL,
    contract_hash TEXT NOT NULL UNIQUE REFERENCES contracts (hash),
    sub TEXT NOT NULL,
    merchant TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('paid', 'refunded')),
    paid_at BIGINT NOT NULL,
    refunded_at BIGINT
);
CREATE INDEX purchases_by_sub ON purchases (sub, paid_at);

-- The ledger. A buyer's or merchant's balance never goes below zero.
CREATE TABLE ledger_accounts (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'merchant', 'funding')),
    owner TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance BIGINT NOT NULL DEFAULT 0,
    CHECK (kind = 'funding' OR balance >= 0)
);
CREATE INDEX ledger_accounts_by_owner ON ledger_accounts (kind, owner);

-- Every movement is two entries that sum to zero.
CREATE TABLE ledger_movements (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    purchase_id TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE ledger_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    movement_id TEXT NOT NULL REFERENCES ledger_movements (id),
    account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
    amount BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account_id);

-- The payments service's sessions (digest of the cookie only).
CREATE TABLE sessions (
    digest TEXT PRIMARY KEY NOT NULL,
    sub TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Until when the PIN may be changed (after a fresh login).
    pin_reset_until BIGINT
);

-- Logins in progress at the IdP (digest of the browser's login cookie).
CREATE TABLE pending_logins (
    digest TEXT PRIMARY KEY NOT NULL,
    pending TEXT NOT NULL,
    purpose TEXT NOT NULL,
    return_to TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Merchant notifications waiting for delivery.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    merchant TEXT NOT NULL,
    target_uri TEXT NOT NULL,
    -- The claims (JSON); the worker signs them.
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at BIGINT,
    dead_at BIGINT,
    locked_until BIGINT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;

CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    sub TEXT,
    -- JSON object, as text.
    detail TEXT NOT NULL
);
CREATE INDEX audit_events_by_sub ON audit_events (sub, seq);

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
