-- Change counters for what servers keep in memory. A write bumps its
-- counter in the same transaction; a server compares the counter with the
-- one its cache was filled under and drops the cache when they differ, so
-- a change made by another process (the command line, another instance)
-- reaches every server within moments.
CREATE TABLE generations (
    name TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);

INSERT INTO generations (name, value) VALUES ('clients', 0), ('revoked_jtis', 0);
