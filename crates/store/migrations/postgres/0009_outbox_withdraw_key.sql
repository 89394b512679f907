-- A suspension writes its account-enabled message when it is imposed, due
-- when it lifts. Lifted early or replaced by another ban, that message is
-- no longer true (a replacing ban may be for good): the message carries a
-- key naming the ban it ends (`gatehouse_store::suspension_end_key`), and
-- lifting or replacing that ban deletes it while it is not yet due.
ALTER TABLE outbox ADD COLUMN withdraw_key TEXT;
CREATE INDEX outbox_withdrawable ON outbox (withdraw_key) WHERE withdraw_key IS NOT NULL;
