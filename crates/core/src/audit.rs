//! The audit log's events: typed, append-only, written in the same
//! transaction as the change they describe. Fraud review reads them.

use serde::{Deserialize, Serialize};

use crate::oauth::ClientId;
use crate::{AccountId, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    SignUp,
    EmailVerified,
    LoginSucceeded,
    LoginFailed,
    Reauthenticated,
    Logout,
    SessionRevoked,
    PasswordChanged,
    PasswordResetRequested,
    PasswordResetCompleted,
    EmailChangeRequested,
    EmailChanged,
    AccountDeleted,
    ConsentGranted,
    ConsentRevoked,
    TokenExchanged,
    AccountBanned,
    AccountUnbanned,
    ProfileChanged,
    ClientCreated,
    ClientUpdated,
    ClientDeleted,
    SigningKeyAdded,
    SigningKeysWithdrawn,
    TokenRevoked,
    GrantRevoked,
    OutboxRedelivered,
}

impl AuditKind {
    pub const ALL: [AuditKind; 27] = [
        Self::SignUp,
        Self::EmailVerified,
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::Reauthenticated,
        Self::Logout,
        Self::SessionRevoked,
        Self::PasswordChanged,
        Self::PasswordResetRequested,
        Self::PasswordResetCompleted,
        Self::EmailChangeRequested,
        Self::EmailChanged,
        Self::AccountDeleted,
        Self::ConsentGranted,
        Self::ConsentRevoked,
        Self::TokenExchanged,
        Self::AccountBanned,
        Self::AccountUnbanned,
        Self::ProfileChanged,
        Self::ClientCreated,
        Self::ClientUpdated,
        Self::ClientDeleted,
        Self::SigningKeyAdded,
        Self::SigningKeysWithdrawn,
        Self::TokenRevoked,
        Self::GrantRevoked,
        Self::OutboxRedelivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignUp => "sign_up",
            Self::EmailVerified => "email_verified",
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::Reauthenticated => "reauthenticated",
            Self::Logout => "logout",
            Self::SessionRevoked => "session_revoked",
            Self::PasswordChanged => "password_changed",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordResetCompleted => "password_reset_completed",
            Self::EmailChangeRequested => "email_change_requested",
            Self::EmailChanged => "email_changed",
            Self::AccountDeleted => "account_deleted",
            Self::ConsentGranted => "consent_granted",
            Self::ConsentRevoked => "consent_revoked",
            Self::TokenExchanged => "token_exchanged",
            Self::AccountBanned => "account_banned",
            Self::AccountUnbanned => "account_unbanned",
            Self::ProfileChanged => "profile_changed",
            Self::ClientCreated => "client_created",
            Self::ClientUpdated => "client_updated",
            Self::ClientDeleted => "client_deleted",
            Self::SigningKeyAdded => "signing_key_added",
            Self::SigningKeysWithdrawn => "signing_keys_withdrawn",
            Self::TokenRevoked => "token_revoked",
            Self::GrantRevoked => "grant_revoked",
            Self::OutboxRedelivered => "outbox_redelivered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            _ => None,
        }
    }
}

/// Who did it and from where: the request's side of an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub ip: String,
    pub user_agent: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: Timestamp,
    pub kind: AuditKind,
    pub account_id: Option<AccountId>,
    pub ip: String,
    pub user_agent: String,
    pub outcome: Outcome,
    /// Event-specific facts, e.g. `{"reason": "bad_password"}`. Never a
    /// secret.
    pub detail: serde_json::Value,
    /// Who acted, when it is not the account's holder at `ip`:
    /// [`BY_CLI`], an admin API client (`admin:<client_id>`, see
    /// [`by_admin`]) or a client acting for itself (`client:<client_id>`,
    /// see [`by_client`]). `None` for a person's own action and for what
    /// the IdP does by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The client the event concerns (a client changed or deleted, a
    /// token or grant of that client revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
}

/// [`AuditEvent::by`] for the command line.
pub const BY_CLI: &str = "cli";

/// [`AuditEvent::by`] for a call to the admin API with a token of `client`
/// (the form bans record in their own `by` too).
pub fn by_admin(client: &str) -> String {
    format!("admin:{client}")
}

/// [`AuditEvent::by`] for a client acting for itself (revoking its own
/// token, reusing a refresh token, replaying a code).
pub fn by_client(client: &ClientId) -> String {
    format!("client:{client}")
}

impl AuditEvent {
    pub fn new(kind: AuditKind, account_id: Option<&AccountId>, actor: &Actor, now: Timestamp) -> Self {
        Self {
            at: now,
            kind,
            account_id: account_id.cloned(),
            ip: actor.ip.clone(),
            user_agent: actor.user_agent.clone(),
            outcome: Outcome::Success,
            detail: serde_json::Value::Object(Default::default()),
            by: None,
            client_id: None,
        }
    }

    /// A change to `client` ([`AuditKind::ClientCreated`],
    /// [`AuditKind::ClientUpdated`] or [`AuditKind::ClientDeleted`]) made
    /// by `by` (see [`AuditEvent::by`]).
    pub fn client_changed(kind: AuditKind, client: &ClientId, by: impl Into<String>, now: Timestamp) -> Self {
        Self::new(kind, None, &Actor::default(), now).by(by).for_client(client)
    }

    /// A revocation `client` caused for itself ([`AuditKind::TokenRevoked`]
    /// or [`AuditKind::GrantRevoked`]: `/revoke`, a reused refresh token, a
    /// replayed code), made by the client and about it.
    pub fn revoked_by_client(
        kind: AuditKind,
        account_id: Option<&AccountId>,
        client: &ClientId,
        now: Timestamp,
    ) -> Self {
        Self::new(kind, account_id, &Actor::default(), now)
            .by(by_client(client))
            .for_client(client)
    }

    pub fn failed(mut self, reason: &str) -> Self {
        self.outcome = Outcome::Failure;
        self.detail = serde_json::json!({ "reason": reason });
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// Records who acted (see [`AuditEvent::by`]).
    pub fn by(mut self, who: impl Into<String>) -> Self {
        self.by = Some(who.into());
        self
    }

    /// Records the client the event concerns.
    pub fn for_client(mut self, client: &ClientId) -> Self {
        self.client_id = Some(client.clone());
        self
    }
}

/// A stored event, with its position in the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in AuditKind::ALL {
            assert_eq!(AuditKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).ok(), Some(serde_json::json!(k.as_str())));
        }
    }

    #[test]
    fn failure_carries_reason() {
        let e = AuditEvent::new(AuditKind::LoginFailed, None, &Actor::default(), Timestamp(1)).failed("bad_password");
        assert_eq!(e.outcome, Outcome::Failure);
        assert_eq!(e.detail["reason"], "bad_password");
    }

    #[test]
    fn acting_party_and_client_are_optional_in_json() {
        let plain = AuditEvent::new(AuditKind::Logout, None, &Actor::default(), Timestamp(1));
        let json = serde_json::to_value(&plain).expect("json");
        assert!(json.get("by").is_none() && json.get("client_id").is_none());
        let client = ClientId("shop".into());
        let e = plain.by(by_admin("ops")).for_client(&client);
        assert_eq!(e.by.as_deref(), Some("admin:ops"));
        assert_eq!(e.client_id, Some(client.clone()));
        assert_eq!(by_client(&client), "client:shop");
        let back: AuditEvent = serde_json::from_value(serde_json::to_value(&e).expect("json")).expect("back");
        assert_eq!(back, e);
    }
}
