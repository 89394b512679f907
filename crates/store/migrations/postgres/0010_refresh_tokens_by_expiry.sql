-- Expired refresh tokens are purged an hour after they expire
-- (`Store::purge_expired`, `housekeeping.rs`); before, every sign-on left a
-- row here for good. This index finds them; refresh tokens are issued in
-- time order with one lifetime, so it is only ever appended to.
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
