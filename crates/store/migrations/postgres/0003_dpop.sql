-- DPoP (RFC 9449), PostgreSQL flavour. Keep it in step with
-- ../sqlite/0003_dpop.sql: the queries in src/sql.rs run unchanged on both.

-- Proofs seen, by key thumbprint and jti, until their iat is too old for
-- the proof to be accepted anyway: a proof used twice is a replay.
CREATE TABLE dpop_jtis (
    jkt        TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (jkt, jti)
);

CREATE INDEX dpop_jtis_by_expiry ON dpop_jtis (expires_at);

-- The thumbprint of the DPoP key a public client's refresh tokens are bound
-- to (RFC 9449 §5); NULL when they are not bound.
ALTER TABLE grants ADD COLUMN dpop_jkt TEXT;
