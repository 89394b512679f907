//! Bans and suspensions, as an administrator asks for them from the admin
//! API or the command line. A ban everywhere ends the account's sessions
//! (their clients get back-channel logout tokens); every ban revokes the
//! account's tokens (everywhere, or of the one client) and tells the
//! account's clients (or the one client) account-disabled, and a suspension
//! also account-enabled, due when it lifts. All of it is written with the ban
//! and its audit event in one store call.

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::ban::{Ban, MAX_REASON_LEN};
use gatehouse_core::oauth::ClientId;
use gatehouse_core::{AccountId, Timestamp};
use gatehouse_store::{OutboxMessage, StoreError};
use serde_json::json;

use super::{Deps, Error};
use crate::events::SecurityEvent;
use crate::outbox::Signer;

/// A ban as an administrator asks for it, from the CLI or the API.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// Only at this client; absent for everywhere.
    pub client_id: Option<String>,
    /// A suspension: Unix seconds when it lifts by itself.
    pub until: Option<i64>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BanError {
    #[error("no account with the id {0}")]
    NoAccount(String),
    #[error("no client with the id {0}")]
    NoClient(String),
    #[error("the suspension must end in the future")]
    PastUntil,
    #[error("the reason is too long (at most 500 characters)")]
    LongReason,
    #[error("no such ban")]
    NoBan,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The messages to the clients could not be built.
    #[error(transparent)]
    Failed(Error),
}

impl From<Error> for BanError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => BanError::Store(e),
            other => BanError::Failed(other),
        }
    }
}

/// Who banned: `admin:<client id>` for the admin API, `cli` for the command
/// line. Recorded in the ban and as its audit event's actor.
fn actor(by: &str) -> Actor {
    Actor {
        ip: String::new(),
        user_agent: by.to_owned(),
    }
}

/// The request's own rules: a suspension ends in the future, the reason
/// is not too long.
pub fn check_request(req: &BanRequest, now: Timestamp) -> Result<(), BanError> {
    if req.until.is_some_and(|u| u <= now.0) {
        return Err(BanError::PastUntil);
    }
    if req.reason.chars().count() > MAX_REASON_LEN {
        return Err(BanError::LongReason);
    }
    Ok(())
}

/// Bans (or suspends) an account: sessions and tokens are revoked in the
/// same transaction as the ban and its audit event. `by` says who did it.
pub async fn ban(deps: &Deps, uid: &str, req: &BanRequest, by: &str, now: Timestamp) -> Result<Ban, BanError> {
    let account_id = AccountId(uid.to_owned());
    if deps.store.account_by_id(&account_id).await?.is_none() {
        return Err(BanError::NoAccount(uid.to_owned()));
    }
    let client_id = match &req.client_id {
        Some(id) => {
            let id = ClientId(id.clone());
            if deps.store.client(&id).await?.is_none() {
                return Err(BanError::NoClient(id.to_string()));
            }
            Some(id)
        }
        None => None,
    };
    check_request(req, now)?;
    let ban = Ban {
        account_id: account_id.clone(),
        client_id,
        until: req.until.map(Timestamp),
        reason: req.reason.clone(),
        by: by.to_owned(),
        created_at: now,
    };
    let audit = AuditEvent::new(AuditKind::AccountBanned, Some(&account_id), &actor(by), now)
        .with_detail(json!({ "client_id": ban.client_id, "until": req.until, "reason": ban.reason, "by": by }))
        .by(by);
    let audit = match &ban.client_id {
        Some(client) => audit.for_client(client),
        None => audit,
    };
    // Back-channel logout tokens only go with a ban everywhere (the one
    // that ends sessions); security events go with every ban.
    let signer = deps.signer();
    let mut outbox = if ban.client_id.is_none() {
        signer.account(&account_id, None, now).await.map_err(Error::from)?
    } else {
        Vec::new()
    };
    outbox.extend(ban_events(&signer, &ban, now).await?);
    deps.store.ban(&ban, now, &audit, &outbox).await?;
    deps.wake(&outbox);
    Ok(ban)
}

/// The security events a ban sends: account-disabled to the account's
/// clients (only to the one client for a ban there), and for a suspension
/// also account-enabled, due when it lifts. Lifted early (the unban sends
/// its own account-enabled at once) or replaced by another ban, the store
/// deletes that scheduled message: it carries the ban's
/// [`gatehouse_store::suspension_end_key`].
async fn ban_events(signer: &Signer<'_>, ban: &Ban, now: Timestamp) -> Result<Vec<OutboxMessage>, Error> {
    let account = &ban.account_id;
    let client = ban.client_id.as_ref();
    let disabled = [SecurityEvent::AccountDisabled {
        reason: ban.reason.clone(),
    }];
    let mut out = signer.security_events(account, client, &disabled, now, now).await?;
    if let Some(until) = ban.until.filter(|u| u.0 > now.0) {
        let key = gatehouse_store::suspension_end_key(account, client);
        let enabled = signer
            .security_events(account, client, &[SecurityEvent::AccountEnabled], now, until)
            .await?;
        out.extend(enabled.into_iter().map(|m| OutboxMessage {
            withdraw_key: Some(key.clone()),
            ..m
        }));
    }
    Ok(out)
}

/// Lifts a ban everywhere (`client_id` None) or at one client, telling the
/// account's clients (only the one client for a ban there)
/// account-enabled.
pub async fn unban(deps: &Deps, uid: &str, client_id: Option<&str>, by: &str, now: Timestamp) -> Result<(), BanError> {
    let account_id = AccountId(uid.to_owned());
    let client = client_id.map(|c| ClientId(c.to_owned()));
    let outbox = deps
        .signer()
        .security_events(&account_id, client.as_ref(), &[SecurityEvent::AccountEnabled], now, now)
        .await
        .map_err(Error::from)?;
    let audit = AuditEvent::new(AuditKind::AccountUnbanned, Some(&account_id), &actor(by), now)
        .with_detail(json!({ "client_id": client, "by": by }))
        .by(by);
    let audit = match &client {
        Some(client) => audit.for_client(client),
        None => audit,
    };
    if deps.store.unban(&account_id, client.as_ref(), &audit, &outbox).await? {
        deps.wake(&outbox);
        Ok(())
    } else {
        Err(BanError::NoBan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspension_ends_in_the_future_and_a_reason_is_short() {
        let now = Timestamp(1_000);
        let req = |until: Option<i64>, reason: &str| BanRequest {
            client_id: None,
            until,
            reason: reason.to_owned(),
        };
        assert!(check_request(&req(None, ""), now).is_ok());
        assert!(check_request(&req(Some(1_001), "spam"), now).is_ok());
        assert!(matches!(
            check_request(&req(Some(1_000), ""), now),
            Err(BanError::PastUntil)
        ));
        assert!(matches!(
            check_request(&req(Some(10), ""), now),
            Err(BanError::PastUntil)
        ));
        let long = "x".repeat(MAX_REASON_LEN + 1);
        assert!(matches!(
            check_request(&req(None, &long), now),
            Err(BanError::LongReason)
        ));
        assert!(check_request(&req(None, &"x".repeat(MAX_REASON_LEN)), now).is_ok());
    }
}
