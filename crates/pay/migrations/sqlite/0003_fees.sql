-- no-transaction
-- Fees (issue 15): a merchant's fee rule, each purchase's fee, and the fee
-- account (ledger kind 'fee', one per currency, never below zero).
--
-- SQLite cannot change a CHECK constraint: ledger_accounts is built again.
-- ledger_entries refers to it, so foreign keys are off while the table is
-- swapped (they cannot be switched inside a transaction, hence
-- `no-transaction` and the explicit BEGIN/COMMIT), and checked before the
-- commit.
PRAGMA foreign_keys = OFF;

BEGIN;

ALTER TABLE merchants ADD COLUMN fee_fixed BIGINT NOT NULL DEFAULT 0 CHECK (fee_fixed >= 0);
-- The percentage, in basis points (250 = 2.5 %).
ALTER TABLE merchants ADD COLUMN fee_basis_points BIGINT NOT NULL DEFAULT 0
    CHECK (fee_basis_points BETWEEN 0 AND 10000);
ALTER TABLE merchants ADD COLUMN fee_payer TEXT NOT NULL DEFAULT 'buyer'
    CHECK (fee_payer IN ('buyer', 'merchant'));

-- The fee the contract stated (0: none), and who paid it.
ALTER TABLE purchases ADD COLUMN fee BIGINT NOT NULL DEFAULT 0 CHECK (fee >= 0);
ALTER TABLE purchases ADD COLUMN fee_payer TEXT CHECK (fee_payer IN ('buyer', 'merchant'));

CREATE TABLE ledger_accounts_new (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'merchant', 'funding', 'fee')),
    owner TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance BIGINT NOT NULL DEFAULT 0,
    CHECK (kind = 'funding' OR balance >= 0)
);
INSERT INTO ledger_accounts_new (id, kind, owner, currency, balance)
    SELECT id, kind, owner, currency, balance FROM ledger_accounts;
DROP TABLE ledger_accounts;
ALTER TABLE ledger_accounts_new RENAME TO ledger_accounts;
CREATE INDEX ledger_accounts_by_owner ON ledger_accounts (kind, owner);

COMMIT;

PRAGMA foreign_keys = ON;
