-- Fees (issue 15): a merchant's fee rule, each purchase's fee, and the fee
-- account (ledger kind 'fee', one per currency, never below zero).

ALTER TABLE merchants ADD COLUMN fee_fixed BIGINT NOT NULL DEFAULT 0 CHECK (fee_fixed >= 0);
-- The percentage, in basis points (250 = 2.5 %).
ALTER TABLE merchants ADD COLUMN fee_basis_points BIGINT NOT NULL DEFAULT 0
    CHECK (fee_basis_points BETWEEN 0 AND 10000);
ALTER TABLE merchants ADD COLUMN fee_payer TEXT NOT NULL DEFAULT 'buyer'
    CHECK (fee_payer IN ('buyer', 'merchant'));

-- The fee the contract stated (0: none), and who paid it.
ALTER TABLE purchases ADD COLUMN fee BIGINT NOT NULL DEFAULT 0 CHECK (fee >= 0);
ALTER TABLE purchases ADD COLUMN fee_payer TEXT CHECK (fee_payer IN ('buyer', 'merchant'));

ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_check
    CHECK (kind IN ('user', 'merchant', 'funding', 'fee'));
