-- A key is published (in the JWKS) from its creation, and signs only from
-- signs_from: a rotation pre-publishes the new key until every cache of the
-- JWKS has seen it. Keys made before this migration signed at once.
ALTER TABLE signing_keys ADD COLUMN signs_from BIGINT;
UPDATE signing_keys SET signs_from = created_at;
