-- RFC 9449 §10: a code asked for with `dpop_jkt` is bound to that DPoP
-- key (its JWK SHA-256 thumbprint); redeeming it needs a proof by the key,
-- which binds the tokens issued. NULL for a code without it.
ALTER TABLE auth_codes ADD COLUMN dpop_jkt TEXT;
