-- Housekeeping deletes throttle windows that have ended (Store::purge_expired:
-- every key a login, a reset or a sign-up counted stays a row until then).
CREATE INDEX throttle_by_window ON throttle (window_started_at);
