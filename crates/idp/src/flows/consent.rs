//! Consent: what a person allows a client (the consent screen of the
//! authorization endpoint), and disconnecting a site from the settings
//! page, which forgets the consent and revokes what the client was issued.

use gatehouse_core::AccountId;
use gatehouse_core::Timestamp;
use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::oauth::grant::Consent;
use gatehouse_core::oauth::{ClientId, Scopes};

use super::{Deps, Error};

/// Records that the account allows the client `scopes`, on top of what it
/// allowed before; returns the consent as it now stands.
pub async fn grant(
    deps: &Deps,
    account: &AccountId,
    client: &ClientId,
    scopes: &Scopes,
    actor: &Actor,
    now: Timestamp,
) -> Result<Consent, Error> {
    let previous = deps.store.consent(account, client).await?;
    let scopes = match previous {
        Some(p) => p.scopes.union(scopes),
        None => scopes.clone(),
    };
    let record = Consent {
        account_id: account.clone(),
        client_id: client.clone(),
        scopes,
        granted_at: now,
    };
    let audit = AuditEvent::new(AuditKind::ConsentGranted, Some(account), actor, now)
        .with_detail(serde_json::json!({ "client_id": client, "scope": record.scopes.to_string() }));
    deps.store.put_consent(&record, &audit).await?;
    Ok(record)
}

/// Why a site could not be disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRevoked {
    /// No client id, or one too long to be one.
    NotChosen,
    /// The account has no consent for that client.
    NotConnected,
}

/// The longest client id a form may name.
const MAX_CLIENT_ID_LEN: usize = 128;

/// Disconnects a site: forgets the account's consent for the client and
/// revokes what it was issued.
pub async fn revoke(
    deps: &Deps,
    account: &AccountId,
    client_id: &str,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<(), NotRevoked>, Error> {
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_LEN {
        return Ok(Err(NotRevoked::NotChosen));
    }
    let client_id = ClientId(client_id.to_owned());
    let audit = AuditEvent::new(AuditKind::ConsentRevoked, Some(account), actor, now)
        .with_detail(serde_json::json!({ "client_id": client_id }));
    Ok(if deps.store.revoke_consent(account, &client_id, now, &audit).await? {
        Ok(())
    } else {
        Err(NotRevoked::NotConnected)
    })
}
