//! Security Event Tokens to reliers (RFC 8417, delivered by push per
//! RFC 8935): RISC account events and CAEP credential and session events,
//! built before the store call that makes the change, which writes them to
//! the outbox in the same transaction.
//!
//! Each SET carries one event. The subject is the RFC 9493 `iss_sub`
//! identifier in the top-level `sub_id` claim (as the Shared Signals
//! Framework 1.0 does), so the event objects hold only the event's own
//! fields. Only clients the account has used (a grant, a consent, or a
//! session that served them; see `Store::clients_used_by`) and that
//! registered an `events_uri` are told.

use gatehouse_core::oauth::ClientId;
use gatehouse_core::{AccountId, Timestamp};
use gatehouse_store::{OutboxKind, OutboxMessage};
use serde::Serialize;

use crate::error::AppError;
use crate::outbox::Signer;

/// The SET's `typ`, content type and event type URIs: one definition,
/// shared with the relier library that checks them.
pub use gatehouse_core::protocol::{
    ACCOUNT_DISABLED, ACCOUNT_ENABLED, ACCOUNT_PURGED, CREDENTIAL_CHANGE, IDENTIFIER_CHANGED, SESSION_REVOKED,
    SET_CONTENT_TYPE, SET_TYP,
};

/// One security event about an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecurityEvent {
    /// Banned or suspended; `reason` as the administrator gave it.
    AccountDisabled { reason: String },
    /// The ban was lifted (or the suspension ended).
    AccountEnabled,
    /// The account was deleted.
    AccountPurged,
    /// The email address changed to `new_email`.
    IdentifierChanged { new_email: String },
    /// The password was changed or reset.
    CredentialChange,
    /// Sessions were revoked (a password change asks every other session
    /// for the password again).
    SessionRevoked,
}

impl SecurityEvent {
    /// The event type URI.
    pub fn uri(&self) -> &'static str {
        match self {
            SecurityEvent::AccountDisabled { .. } => ACCOUNT_DISABLED,
            SecurityEvent::AccountEnabled => ACCOUNT_ENABLED,
            SecurityEvent::AccountPurged => ACCOUNT_PURGED,
            SecurityEvent::IdentifierChanged { .. } => IDENTIFIER_CHANGED,
            SecurityEvent::CredentialChange => CREDENTIAL_CHANGE,
            SecurityEvent::SessionRevoked => SESSION_REVOKED,
        }
    }

    /// The `events` claim: the type URI mapped to the event's fields.
    pub fn events_claim(&self, at: Timestamp) -> serde_json::Value {
        let body = match self {
            SecurityEvent::AccountDisabled { reason } if !reason.is_empty() => {
                serde_json::json!({ "reason": reason })
            }
            SecurityEvent::IdentifierChanged { new_email } => serde_json::json!({ "new-value": new_email }),
            SecurityEvent::CredentialChange => serde_json::json!({
                "credential_type": "password",
                "change_type": "update",
                "event_timestamp": at.0,
            }),
            SecurityEvent::SessionRevoked => serde_json::json!({ "event_timestamp": at.0 }),
            _ => serde_json::json!({}),
        };
        let mut events = serde_json::Map::new();
        events.insert(self.uri().to_owned(), body);
        serde_json::Value::Object(events)
    }
}

#[derive(Serialize)]
struct SubId<'a> {
    format: &'static str,
    iss: &'a str,
    sub: &'a str,
}

#[derive(Serialize)]
struct SetClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    jti: String,
    sub_id: SubId<'a>,
    events: serde_json::Value,
}

fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Signer<'_> {
    /// The outbox messages telling each client the account has used (only
    /// `only`, if given) that registered an `events_uri` about each of
    /// `events`, one SET per event, due at `due` (`now` unless the event
    /// lies in the future: a suspension's end). Call before the store call
    /// that makes the change (the account's clients may go with it).
    pub async fn security_events(
        &self,
        account: &AccountId,
        only: Option<&ClientId>,
        events: &[SecurityEvent],
        now: Timestamp,
        due: Timestamp,
    ) -> Result<Vec<OutboxMessage>, AppError> {
        let mut out = Vec::new();
        if events.is_empty() {
            return Ok(out);
        }
        for client_id in self.store.clients_used_by(account).await? {
            if only.is_some_and(|c| c != &client_id) {
                continue;
            }
            let Some(client) = self.store.client(&client_id).await? else {
                continue;
            };
            let Some(uri) = client.events_uri.as_deref() else {
                continue;
            };
            for event in events {
                let claims = SetClaims {
                    iss: self.issuer,
                    aud: client.id.as_str(),
                    iat: due.0,
                    jti: random_id(),
                    sub_id: SubId {
                        format: "iss_sub",
                        iss: self.issuer,
                        sub: account.as_str(),
                    },
                    events: event.events_claim(due),
                };
                let token = self
                    .keys
                    .sign(client.id_token_alg, SET_TYP, &claims)
                    .await
                    .map_err(|e| AppError::Internal(e.to_string()))?;
                // Written now, due at `due`; its retries are counted from
                // then (`outbox_max_age` after `created_at`), so a
                // suspension's end is not given up at its first failure.
                out.push(OutboxMessage::new(
                    random_id(),
                    client.id.clone(),
                    OutboxKind::SecurityEvent,
                    uri.to_owned(),
                    token,
                    SET_CONTENT_TYPE.to_owned(),
                    due.max(now),
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_claim_names_the_type_and_its_fields() {
        let at = Timestamp(1_700_000_000);
        let claim = SecurityEvent::AccountDisabled { reason: "spam".into() }.events_claim(at);
        assert_eq!(claim[ACCOUNT_DISABLED]["reason"], "spam");
        let claim = SecurityEvent::IdentifierChanged {
            new_email: "b@example.com".into(),
        }
        .events_claim(at);
        assert_eq!(claim[IDENTIFIER_CHANGED]["new-value"], "b@example.com");
        let claim = SecurityEvent::CredentialChange.events_claim(at);
        assert_eq!(claim[CREDENTIAL_CHANGE]["credential_type"], "password");
        assert_eq!(
            SecurityEvent::AccountPurged.events_claim(at)[ACCOUNT_PURGED],
            serde_json::json!({})
        );
    }
}
