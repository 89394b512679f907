//! Merchant notifications: the claims of a `payment-notification+jwt`, built
//! when a purchase completes or is refunded and written to the outbox with
//! that change. The worker adds `iss` and signs them at delivery, the same
//! claims (so the same `jti` and `iat`) on every attempt.

use serde::{Deserialize, Serialize};

/// The JWS `typ` of a notification.
pub const NOTIFICATION_TYP: &str = "payment-notification+jwt";
/// The JWS `typ` of a payment proof.
pub const PROOF_TYP: &str = "payment-proof+jwt";
/// The JWS `typ` of a contract signature.
pub const CONTRACT_TYP: &str = "contract+jwt";
/// A payment proof's lifetime, in seconds.
pub const PROOF_LIFETIME: i64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PurchaseEvent {
    #[serde(rename = "purchase.completed")]
    Completed,
    #[serde(rename = "purchase.refunded")]
    Refunded,
}

/// What a notification says (without `iss`, which the signer adds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationClaims {
    /// The merchant's client id.
    pub aud: String,
    pub iat: i64,
    pub jti: String,
    pub event: PurchaseEvent,
    pub purchase_id: String,
    pub contract_hash: String,
    /// The buyer.
    pub sub: String,
    pub amount: i64,
    pub currency: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_their_wire_names() {
        assert_eq!(
            serde_json::to_string(&PurchaseEvent::Completed).expect("json"),
            "\"purchase.completed\""
        );
        assert_eq!(
            serde_json::to_string(&PurchaseEvent::Refunded).expect("json"),
            "\"purchase.refunded\""
        );
    }
}
