-- The buyer's standing as the IdP last told it (issue 15): security events
-- write it when they arrive; paying, funding and opening a purchase link
-- read it first.
CREATE TABLE standing (
    sub TEXT PRIMARY KEY NOT NULL,
    -- NULL: in good standing; else why money may not move
    -- (`account_disabled`, `account_purged`).
    refused TEXT,
    -- The `iat` of the event that set it: an older event changes nothing.
    event_at BIGINT NOT NULL,
    -- When this service last heard from the IdP about the buyer.
    heard_at BIGINT NOT NULL
);

-- The IdP session a payments session came from (its login's `sid`), so a
-- back-channel logout of that session ends it. NULL for a session opened
-- by a purchase link: any logout of its buyer ends it.
ALTER TABLE sessions ADD COLUMN sid TEXT;
-- When the IdP last vouched for the buyer of this session: its login, or
-- the introspection of the narrowed token its purchase link was made
-- from. Sessions from before have 0: stale, the IdP is asked again.
ALTER TABLE sessions ADD COLUMN vouched_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sessions_by_sub ON sessions (sub);
CREATE INDEX sessions_by_sid ON sessions (sid);
