-- The profile claims a person may give (OpenID Connect Core §5.1), each
-- NULL until given: `locale` a BCP 47 tag, `zoneinfo` an IANA time zone
-- name (checked in gatehouse-core before they are written), and when they
-- last changed (the `updated_at` claim; `accounts.updated_at` also moves
-- with the password and the email).
ALTER TABLE accounts ADD COLUMN name TEXT;
ALTER TABLE accounts ADD COLUMN given_name TEXT;
ALTER TABLE accounts ADD COLUMN family_name TEXT;
ALTER TABLE accounts ADD COLUMN preferred_username TEXT;
ALTER TABLE accounts ADD COLUMN locale TEXT;
ALTER TABLE accounts ADD COLUMN zoneinfo TEXT;
ALTER TABLE accounts ADD COLUMN profile_updated_at BIGINT;
-- prompt=select_account: the account the person chose to continue with for
-- this waiting authorization request ("Continue as ...").
ALTER TABLE interactions ADD COLUMN chosen_account TEXT;
