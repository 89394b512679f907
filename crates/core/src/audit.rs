//! The audit log's events: typed, append-only, written in the same
//! transaction as the change they describe. Fraud review reads them.

use serde::{Deserialize, Serialize};

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
}

impl AuditKind {
    pub const ALL: [AuditKind; 19] = [
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
        }
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
}
