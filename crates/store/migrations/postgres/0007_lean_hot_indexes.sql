-- Every single sign-on hop writes an authorization code and a grant, and
-- each index on those tables is one more page written per commit (with
-- SQLite, one more 4 KiB frame in the WAL). Two of them did no work:
--
-- No query reads authorization codes by grant: a code's own row names the
-- grant it becomes.
DROP INDEX auth_codes_by_grant;
-- Only narrowed (token exchange) grants have a parent; every other grant
-- added a NULL entry. Index the narrowed ones alone (`parent_id = x`
-- implies `parent_id IS NOT NULL`, so the family queries still use it).
DROP INDEX grants_by_parent;
CREATE INDEX grants_by_parent ON grants (parent_id) WHERE parent_id IS NOT NULL;
-- Expired codes are purged now and then (`Store::purge_expired`); this
-- index finds them, and is only ever appended to.
CREATE INDEX auth_codes_by_expiry ON auth_codes (expires_at);
