//! The purchase state machine: a contract is created (offered to one
//! buyer), then paid once, then possibly refunded once. Nothing else moves.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseState {
    /// The contract exists; nothing was charged.
    Created,
    /// The buyer paid; the merchant was credited.
    Paid,
    /// An admin gave the money back to the buyer.
    Refunded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the purchase is already paid")]
    AlreadyPaid,
    #[error("the purchase is not paid")]
    NotPaid,
    #[error("the purchase is already refunded")]
    AlreadyRefunded,
}

impl PurchaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseState::Created => "created",
            PurchaseState::Paid => "paid",
            PurchaseState::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "created" => Some(PurchaseState::Created),
            "paid" => Some(PurchaseState::Paid),
            "refunded" => Some(PurchaseState::Refunded),
            _ => None,
        }
    }

    /// Paying: only a created purchase can be paid.
    pub fn pay(self) -> Result<Self, TransitionError> {
        match self {
            PurchaseState::Created => Ok(PurchaseState::Paid),
            PurchaseState::Paid => Err(TransitionError::AlreadyPaid),
            PurchaseState::Refunded => Err(TransitionError::AlreadyRefunded),
        }
    }

    /// Refunding: only a paid purchase can be refunded, once.
    pub fn refund(self) -> Result<Self, TransitionError> {
        match self {
            PurchaseState::Paid => Ok(PurchaseState::Refunded),
            PurchaseState::Created => Err(TransitionError::NotPaid),
            PurchaseState::Refunded => Err(TransitionError::AlreadyRefunded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PurchaseState::*;
    use super::*;

    #[test]
    fn created_then_paid_then_refunded() {
        assert_eq!(Created.pay(), Ok(Paid));
        assert_eq!(Paid.refund(), Ok(Refunded));
    }

    #[test]
    fn no_other_moves() {
        assert_eq!(Paid.pay(), Err(TransitionError::AlreadyPaid));
        assert_eq!(Refunded.pay(), Err(TransitionError::AlreadyRefunded));
        assert_eq!(Created.refund(), Err(TransitionError::NotPaid));
        assert_eq!(Refunded.refund(), Err(TransitionError::AlreadyRefunded));
    }

    #[test]
    fn names_round_trip() {
        for s in [Created, Paid, Refunded] {
            assert_eq!(PurchaseState::parse(s.as_str()), Some(s));
        }
        assert_eq!(PurchaseState::parse("lost"), None);
    }
}
