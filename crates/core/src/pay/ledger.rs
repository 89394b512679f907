//! The double-entry ledger's rules. Money moves only as a [`Movement`]: one
//! account is debited and another credited by the same amount in the same
//! currency, so the sum of all entries is always zero. Buyers' wallets and
//! merchants' accounts never go below zero (the store enforces it with a
//! conditional update and a CHECK constraint); a funding source's account
//! is the mirror of the money it brought in, so it is negative.

use serde::{Deserialize, Serialize};

use super::fee::{Fee, FeePayer};

/// The built-in funding source that credits test money.
pub const TEST_FUNDING_SOURCE: &str = "test";

/// The most test money one funding may bring in, in minor units.
pub const MAX_FUNDING: i64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A buyer's wallet (owner: the user's `sub`).
    User,
    /// A merchant's account (owner: its client id).
    Merchant,
    /// Where money comes from (owner: the funding source's name).
    Funding,
    /// Where fees go (owner: [`FEE_ACCOUNT_OWNER`]).
    Fee,
}

/// The owner of the fee account (one per currency).
pub const FEE_ACCOUNT_OWNER: &str = "fees";

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::User => "user",
            AccountKind::Merchant => "merchant",
            AccountKind::Funding => "funding",
            AccountKind::Fee => "fee",
        }
    }

    /// Whether the balance may be negative: only a funding source's.
    pub fn may_go_negative(self) -> bool {
        matches!(self, AccountKind::Funding)
    }
}

/// One account of the ledger: one owner, one currency.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LedgerAccount {
    pub kind: AccountKind,
    pub owner: String,
    pub currency: String,
}

impl LedgerAccount {
    pub fn user(sub: &str, currency: &str) -> Self {
        Self::new(AccountKind::User, sub, currency)
    }

    pub fn merchant(client_id: &str, currency: &str) -> Self {
        Self::new(AccountKind::Merchant, client_id, currency)
    }

    pub fn funding(source: &str, currency: &str) -> Self {
        Self::new(AccountKind::Funding, source, currency)
    }

    /// The fee account of `currency`.
    pub fn fees(currency: &str) -> Self {
        Self::new(AccountKind::Fee, FEE_ACCOUNT_OWNER, currency)
    }

    fn new(kind: AccountKind, owner: &str, currency: &str) -> Self {
        Self {
            kind,
            owner: owner.to_owned(),
            currency: currency.to_owned(),
        }
    }

    /// The account's key in the store: `kind:currency:owner` (kind and
    /// currency have no colon, so the key is unambiguous).
    pub fn id(&self) -> String {
        format!("{}:{}:{}", self.kind.as_str(), self.currency, self.owner)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// A funding source credits a wallet.
    Fund,
    /// A wallet pays a merchant.
    Purchase,
    /// A merchant gives a purchase's money back.
    Refund,
    /// A purchase's fee reaches the fee account (from whoever pays it).
    Fee,
    /// The fee account gives a refunded purchase's fee back.
    FeeRefund,
}

impl MovementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Fund => "fund",
            MovementKind::Purchase => "purchase",
            MovementKind::Refund => "refund",
            MovementKind::Fee => "fee",
            MovementKind::FeeRefund => "fee_refund",
        }
    }
}

/// A balanced pair of entries: `amount` leaves `from` and reaches `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Movement {
    pub kind: MovementKind,
    pub from: LedgerAccount,
    pub to: LedgerAccount,
    pub amount: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MovementError {
    #[error("the amount must be positive")]
    Amount,
    #[error("the amount is more than one funding may bring in")]
    TooMuch,
    #[error("the currency must be three capital letters")]
    Currency,
}

fn check_currency(currency: &str) -> Result<(), MovementError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(MovementError::Currency)
    }
}

fn fee_payer(fee: Fee, sub: &str, merchant: &str, currency: &str) -> LedgerAccount {
    match fee.payer {
        FeePayer::Buyer => LedgerAccount::user(sub, currency),
        FeePayer::Merchant => LedgerAccount::merchant(merchant, currency),
    }
}

/// The accounts `movements` touch, each once, in the order of their ids:
/// the order a transaction locks them in.
pub fn lock_order<'a>(movements: &[&'a Movement]) -> Vec<&'a LedgerAccount> {
    let mut accounts: Vec<&LedgerAccount> = movements.iter().flat_map(|m| [&m.from, &m.to]).collect();
    accounts.sort_by_key(|a| a.id());
    accounts.dedup_by_key(|a| a.id());
    accounts
}

impl Movement {
    fn new(kind: MovementKind, from: LedgerAccount, to: LedgerAccount, amount: i64) -> Result<Self, MovementError> {
        if amount <= 0 {
            return Err(MovementError::Amount);
        }
        check_currency(&from.currency)?;
        Ok(Self { kind, from, to, amount })
    }

    /// `source` credits `sub`'s wallet with `amount` (at most [`MAX_FUNDING`]).
    pub fn fund(source: &str, sub: &str, amount: i64, currency: &str) -> Result<Self, MovementError> {
        if amount > MAX_FUNDING {
            return Err(MovementError::TooMuch);
        }
        Self::new(
            MovementKind::Fund,
            LedgerAccount::funding(source, currency),
            LedgerAccount::user(sub, currency),
            amount,
        )
    }

    /// `sub` pays `merchant`.
    pub fn purchase(sub: &str, merchant: &str, amount: i64, currency: &str) -> Result<Self, MovementError> {
        Self::new(
            MovementKind::Purchase,
            LedgerAccount::user(sub, currency),
            LedgerAccount::merchant(merchant, currency),
            amount,
        )
    }

    /// `merchant` gives `sub` a purchase's money back.
    pub fn refund(merchant: &str, sub: &str, amount: i64, currency: &str) -> Result<Self, MovementError> {
        Self::new(
            MovementKind::Refund,
            LedgerAccount::merchant(merchant, currency),
            LedgerAccount::user(sub, currency),
            amount,
        )
    }

    /// A purchase's fee leaves its payer's account (`sub`'s wallet or
    /// `merchant`'s account) for the fee account.
    pub fn fee(fee: Fee, sub: &str, merchant: &str, currency: &str) -> Result<Self, MovementError> {
        let payer = fee_payer(fee, sub, merchant, currency);
        Self::new(MovementKind::Fee, payer, LedgerAccount::fees(currency), fee.amount)
    }

    /// A refunded purchase's fee goes back to whoever paid it.
    pub fn fee_refund(fee: Fee, sub: &str, merchant: &str, currency: &str) -> Result<Self, MovementError> {
        let payer = fee_payer(fee, sub, merchant, currency);
        Self::new(
            MovementKind::FeeRefund,
            LedgerAccount::fees(currency),
            payer,
            fee.amount,
        )
    }

    /// The two entries: `(account, signed amount)`; they sum to zero.
    pub fn entries(&self) -> [(&LedgerAccount, i64); 2] {
        [(&self.from, -self.amount), (&self.to, self.amount)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_balance() {
        let m = Movement::purchase("u1", "shop", 300, "EUR").expect("valid");
        let [(a, x), (b, y)] = m.entries();
        assert_eq!(a.id(), "user:EUR:u1");
        assert_eq!(b.id(), "merchant:EUR:shop");
        assert_eq!(x + y, 0);
    }

    #[test]
    fn fees_move_between_their_payer_and_the_fee_account() {
        let fee = Fee {
            amount: 40,
            payer: FeePayer::Buyer,
        };
        let m = Movement::fee(fee, "u1", "shop", "EUR").expect("valid");
        assert_eq!((m.from.id(), m.to.id()), ("user:EUR:u1".into(), "fee:EUR:fees".into()));
        let merchant = Fee {
            payer: FeePayer::Merchant,
            ..fee
        };
        let back = Movement::fee_refund(merchant, "u1", "shop", "EUR").expect("valid");
        assert_eq!(
            (back.from.id(), back.to.id(), back.amount),
            ("fee:EUR:fees".into(), "merchant:EUR:shop".into(), 40)
        );
        assert!(!AccountKind::Fee.may_go_negative());
    }

    #[test]
    fn accounts_are_locked_once_each_in_id_order() {
        let price = Movement::purchase("u1", "shop", 400, "EUR").expect("valid");
        let fee = Movement::fee(
            Fee {
                amount: 40,
                payer: FeePayer::Buyer,
            },
            "u1",
            "shop",
            "EUR",
        )
        .expect("valid");
        let ids: Vec<String> = lock_order(&[&price, &fee]).iter().map(|a| a.id()).collect();
        assert_eq!(ids, ["fee:EUR:fees", "merchant:EUR:shop", "user:EUR:u1"]);
    }

    #[test]
    fn bad_movements_are_refused() {
        assert_eq!(Movement::fund("test", "u", 0, "EUR"), Err(MovementError::Amount));
        assert_eq!(Movement::purchase("u", "m", -1, "EUR"), Err(MovementError::Amount));
        assert_eq!(
            Movement::fund("test", "u", MAX_FUNDING + 1, "EUR"),
            Err(MovementError::TooMuch)
        );
        assert_eq!(Movement::refund("m", "u", 5, "eur"), Err(MovementError::Currency));
    }

    #[test]
    fn only_funding_goes_negative() {
        assert!(AccountKind::Funding.may_go_negative());
        assert!(!AccountKind::User.may_go_negative());
        assert!(!AccountKind::Merchant.may_go_negative());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn movement() -> impl Strategy<Value = Option<Movement>> {
        (0u8..3, 0u8..4, 0u8..3, -10i64..2_000_000, prop::bool::ANY).prop_map(|(kind, user, merchant, amount, eur)| {
            let user = format!("u{user}");
            let merchant = format!("m{merchant}");
            let currency = if eur { "EUR" } else { "USD" };
            match kind {
                0 => Movement::fund(TEST_FUNDING_SOURCE, &user, amount, currency),
                1 => Movement::purchase(&user, &merchant, amount, currency),
                _ => Movement::refund(&merchant, &user, amount, currency),
            }
            .ok()
        })
    }

    proptest! {
        /// Whatever movements are made, every currency's entries sum to zero
        /// and each movement stays in one currency.
        #[test]
        fn movements_always_balance(moves in prop::collection::vec(movement(), 0..64)) {
            let mut sums: HashMap<String, i64> = HashMap::new();
            for m in moves.into_iter().flatten() {
                prop_assert!(m.amount > 0);
                prop_assert_eq!(&m.from.currency, &m.to.currency);
                prop_assert_ne!(m.from.id(), m.to.id());
                let [(a, x), (b, y)] = m.entries();
                prop_assert_eq!(x + y, 0);
                *sums.entry(a.currency.clone()).or_default() += x;
                *sums.entry(b.currency.clone()).or_default() += y;
            }
            prop_assert!(sums.values().all(|s| *s == 0));
        }
    }
}
