-- Bans and suspensions. `client_id` is '' for a ban everywhere; `until`
-- NULL for a ban until lifted.
CREATE TABLE bans (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL DEFAULT '',
    until BIGINT,
    reason TEXT NOT NULL,
    by_whom TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, client_id)
);
