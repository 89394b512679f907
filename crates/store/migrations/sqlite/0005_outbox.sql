-- The durable outbox: messages to reliers (back-channel logout tokens,
-- security events), written in the same transaction as the change that
-- causes them and delivered by a background worker. Times are Unix seconds.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    target_uri TEXT NOT NULL,
    payload TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at BIGINT,
    dead_at BIGINT,
    locked_until BIGINT
);

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_client ON outbox (client_id, created_at);
