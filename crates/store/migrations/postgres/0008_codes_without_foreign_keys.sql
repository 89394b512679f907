-- An authorization code lives a minute and is purged an hour after it
-- expires (`housekeeping.rs`). Its foreign keys to its client and account
-- needed an index each for their `ON DELETE CASCADE`, and every single
-- sign-on wrote a page of both. Now deleting a client or an account
-- deletes its codes itself (`sql::DELETE_AUTH_CODES_OF_CLIENT`,
-- `sql::DELETE_AUTH_CODES_OF_ACCOUNT`: a scan of the table, which holds
-- about an hour of codes, on a rare write), and a code is only ever
-- redeemed with its account read alongside (a deleted account's code is
-- `invalid_grant`).
ALTER TABLE auth_codes
    DROP CONSTRAINT auth_codes_client_id_fkey,
    DROP CONSTRAINT auth_codes_account_id_fkey;
DROP INDEX auth_codes_by_client;
DROP INDEX auth_codes_by_account;
