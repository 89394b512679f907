//! Fees: a merchant's fee rule and what it makes of one purchase.
//!
//! A rule is a fixed part (minor units) plus a percentage given in basis
//! points (1/100 of a percent: 250 is 2.5 %), and who pays: the buyer (on
//! top of the price) or the merchant (out of the price).
//!
//! **Rounding**, per transaction, in integer minor units: the percentage
//! part is `amount * basis_points / 10_000` rounded half up (a half minor
//! unit goes up, anything less goes down); the fixed part is added after
//! rounding. A fee the merchant pays is capped at the price, so the
//! merchant never receives less than nothing. A zero fee is no fee.

use serde::{Deserialize, Serialize};

/// The largest fixed part, in minor units.
pub const MAX_FIXED: i64 = 1_000_000;
/// The largest percentage, in basis points (100 %).
pub const MAX_BASIS_POINTS: i64 = 10_000;

/// Who pays the fee.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeePayer {
    /// The buyer pays the price plus the fee.
    #[default]
    Buyer,
    /// The merchant receives the price less the fee.
    Merchant,
}

impl FeePayer {
    pub fn as_str(self) -> &'static str {
        match self {
            FeePayer::Buyer => "buyer",
            FeePayer::Merchant => "merchant",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "buyer" => Some(FeePayer::Buyer),
            "merchant" => Some(FeePayer::Merchant),
            _ => None,
        }
    }
}

/// A merchant's fee rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRule {
    /// The fixed part, in minor units.
    pub fixed: i64,
    /// The percentage, in basis points.
    pub basis_points: i64,
    pub payer: FeePayer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeeRuleError {
    #[error("the fixed fee must be 0 to {MAX_FIXED} minor units")]
    Fixed,
    #[error("the fee percentage must be 0 to {MAX_BASIS_POINTS} basis points")]
    BasisPoints,
}

/// The fee of one contract, as its terms state it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fee {
    /// In minor units, positive.
    pub amount: i64,
    pub payer: FeePayer,
}

impl FeeRule {
    /// A rule, checked.
    pub fn new(fixed: i64, basis_points: i64, payer: FeePayer) -> Result<Self, FeeRuleError> {
        if !(0..=MAX_FIXED).contains(&fixed) {
            return Err(FeeRuleError::Fixed);
        }
        if !(0..=MAX_BASIS_POINTS).contains(&basis_points) {
            return Err(FeeRuleError::BasisPoints);
        }
        Ok(Self {
            fixed,
            basis_points,
            payer,
        })
    }

    /// The fee on a price of `amount` minor units (positive), or `None`
    /// when it comes to zero. See the module's rounding rule.
    pub fn fee(&self, amount: i64) -> Option<Fee> {
        let amount = i128::from(amount.max(0));
        let percent = (amount * i128::from(self.basis_points) + 5_000) / 10_000;
        let mut fee = percent + i128::from(self.fixed);
        if self.payer == FeePayer::Merchant {
            fee = fee.min(amount);
        }
        let fee = i64::try_from(fee).unwrap_or(i64::MAX);
        (fee > 0).then_some(Fee {
            amount: fee,
            payer: self.payer,
        })
    }
}

/// What one purchase moves: the buyer's total, the merchant's share and
/// the fee account's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub buyer_pays: i64,
    pub merchant_gets: i64,
    pub fee: i64,
}

/// The split of a price `amount` with an optional fee. The buyer's total
/// equals the merchant's share plus the fee.
pub fn split(amount: i64, fee: Option<Fee>) -> Split {
    match fee {
        None => Split {
            buyer_pays: amount,
            merchant_gets: amount,
            fee: 0,
        },
        Some(Fee {
            amount: f,
            payer: FeePayer::Buyer,
        }) => Split {
            buyer_pays: amount.saturating_add(f),
            merchant_gets: amount,
            fee: f,
        },
        Some(Fee {
            amount: f,
            payer: FeePayer::Merchant,
        }) => Split {
            buyer_pays: amount,
            merchant_gets: amount.saturating_sub(f),
            fee: f,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(fixed: i64, bp: i64, payer: FeePayer) -> FeeRule {
        FeeRule::new(fixed, bp, payer).expect("valid rule")
    }

    #[test]
    fn percent_rounds_half_up_per_transaction() {
        // 2.5 % of 499 = 12.475 -> 12; of 500 = 12.5 -> 13; of 501 = 12.525 -> 13.
        let r = rule(0, 250, FeePayer::Buyer);
        assert_eq!(r.fee(499).map(|f| f.amount), Some(12));
        assert_eq!(r.fee(500).map(|f| f.amount), Some(13));
        assert_eq!(r.fee(501).map(|f| f.amount), Some(13));
        // 1 % of 49 = 0.49 -> 0: no fee at all; of 50 = 0.5 -> 1.
        let r = rule(0, 100, FeePayer::Buyer);
        assert_eq!(r.fee(49), None);
        assert_eq!(r.fee(50).map(|f| f.amount), Some(1));
    }

    #[test]
    fn fixed_is_added_after_rounding() {
        let r = rule(30, 290, FeePayer::Buyer);
        // 2.9 % of 1000 = 29, plus 30.
        assert_eq!(
            r.fee(1000),
            Some(Fee {
                amount: 59,
                payer: FeePayer::Buyer
            })
        );
        assert_eq!(rule(25, 0, FeePayer::Merchant).fee(1).map(|f| f.amount), Some(1));
    }

    #[test]
    fn no_rule_no_fee() {
        assert_eq!(FeeRule::default().fee(10_000), None);
    }

    #[test]
    fn a_merchant_paid_fee_is_capped_at_the_price() {
        let r = rule(500, 0, FeePayer::Merchant);
        assert_eq!(r.fee(300).map(|f| f.amount), Some(300));
        let r = rule(500, 0, FeePayer::Buyer);
        assert_eq!(r.fee(300).map(|f| f.amount), Some(500));
    }

    #[test]
    fn largest_values_do_not_overflow() {
        let r = rule(MAX_FIXED, MAX_BASIS_POINTS, FeePayer::Buyer);
        assert_eq!(r.fee(i64::MAX).map(|f| f.amount), Some(i64::MAX));
        assert_eq!(r.fee(100_000_000).map(|f| f.amount), Some(101_000_000));
    }

    #[test]
    fn bad_rules_are_refused() {
        assert_eq!(FeeRule::new(-1, 0, FeePayer::Buyer), Err(FeeRuleError::Fixed));
        assert_eq!(
            FeeRule::new(MAX_FIXED + 1, 0, FeePayer::Buyer),
            Err(FeeRuleError::Fixed)
        );
        assert_eq!(FeeRule::new(0, -1, FeePayer::Buyer), Err(FeeRuleError::BasisPoints));
        assert_eq!(FeeRule::new(0, 10_001, FeePayer::Buyer), Err(FeeRuleError::BasisPoints));
    }

    #[test]
    fn splits_sum_up() {
        let buyer = split(
            1000,
            Some(Fee {
                amount: 59,
                payer: FeePayer::Buyer,
            }),
        );
        assert_eq!((buyer.buyer_pays, buyer.merchant_gets, buyer.fee), (1059, 1000, 59));
        let merchant = split(
            1000,
            Some(Fee {
                amount: 59,
                payer: FeePayer::Merchant,
            }),
        );
        assert_eq!(
            (merchant.buyer_pays, merchant.merchant_gets, merchant.fee),
            (1000, 941, 59)
        );
        for s in [buyer, merchant, split(1000, None)] {
            assert_eq!(s.buyer_pays, s.merchant_gets + s.fee);
        }
    }
}
