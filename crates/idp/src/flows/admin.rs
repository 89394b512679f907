//! What an administrator does to the IdP itself, from the admin API or the
//! command line: clients created, changed and deleted, signing keys
//! rotated, an undelivered outbox message sent again. `by` names who acts
//! (`admin:<client id>` for the admin API, `cli` for the command line), in
//! the audit event each change commits with.

use gatehouse_core::OpaqueToken;
use gatehouse_core::Timestamp;
use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::oauth::client::{Client, ClientError, ClientSettings, SigningAlg};
use gatehouse_core::oauth::{ClientId, GrantType};
use gatehouse_store::{Store, StoreError};

use super::{Deps, Error};
use crate::keys::{self, InstanceSecret, KeyError, Rotated, Rotation};

/// Why a client change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientChangeError {
    /// No client has that id.
    #[error("no client with the id {0}")]
    NotFound(String),
    /// The settings break a client rule (the reason).
    #[error(transparent)]
    Invalid(#[from] ClientError),
    /// A new client's id is taken (the store's `Conflict`).
    #[error("a client with the id {id} already exists")]
    Taken { id: ClientId, cause: StoreError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Registers a client: `grants` as parsed by the caller (each caller words
/// an unknown grant type its own way), then the rest of `settings`.
/// Returns the client and, for a confidential one, its secret, shown once.
pub async fn create_client(
    store: &dyn Store,
    name: &str,
    public: bool,
    grants: Vec<GrantType>,
    settings: &ClientSettings,
    by: &str,
) -> Result<(Client, Option<OpaqueToken>), ClientChangeError> {
    let redirects = settings.redirect_uris.clone().unwrap_or_default();
    let (mut client, secret) = Client::new(name, public, redirects, grants, Timestamp::now())?;
    client.apply(settings)?;
    let audit = AuditEvent::client_changed(AuditKind::ClientCreated, &client.id, by, client.created_at);
    match store.create_client(&client, &audit).await {
        Ok(()) => Ok((client, secret)),
        Err(cause @ StoreError::Conflict(_)) => Err(ClientChangeError::Taken { id: client.id, cause }),
        Err(e) => Err(e.into()),
    }
}

/// Changes a client: every setting given replaces that setting.
pub async fn update_client(
    store: &dyn Store,
    id: &str,
    settings: &ClientSettings,
    by: &str,
) -> Result<Client, ClientChangeError> {
    let not_found = || ClientChangeError::NotFound(id.to_owned());
    let mut client = store.client(&ClientId(id.to_owned())).await?.ok_or_else(not_found)?;
    client.apply(settings)?;
    let audit = AuditEvent::client_changed(AuditKind::ClientUpdated, &client.id, by, Timestamp::now());
    if !store.update_client(&client, &audit).await? {
        return Err(not_found());
    }
    Ok(client)
}

/// Deletes a client and everything issued to it.
pub async fn delete_client(store: &dyn Store, id: &str, by: &str) -> Result<(), ClientChangeError> {
    let client = ClientId(id.to_owned());
    let audit = AuditEvent::client_changed(AuditKind::ClientDeleted, &client, by, Timestamp::now());
    if store.delete_client(&client, &audit).await? {
        Ok(())
    } else {
        Err(ClientChangeError::NotFound(id.to_owned()))
    }
}

/// Adds a signing key of `alg` (see [`keys::rotate`]).
pub async fn rotate_keys(
    store: &dyn Store,
    secret: &InstanceSecret,
    alg: SigningAlg,
    how: Rotation,
    by: &str,
) -> Result<Rotated, KeyError> {
    keys::rotate(store, secret, alg, Timestamp::now(), how, by).await
}

/// No undelivered message has that id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSuchMessage;

/// Sends an undelivered (pending, failing or dead) outbox message again,
/// now: signed again first (receivers refuse old tokens), and the worker
/// woken.
pub async fn redeliver(deps: &Deps, id: &str, by: &str, now: Timestamp) -> Result<Result<(), NoSuchMessage>, Error> {
    let message = match deps.store.outbox_message(id).await? {
        Some(m) if m.delivered_at.is_none() => m,
        _ => return Ok(Err(NoSuchMessage)),
    };
    let payload = deps.signer().resign(&message, now).await?;
    let audit = AuditEvent::new(AuditKind::OutboxRedelivered, None, &Actor::default(), now)
        .by(by)
        .for_client(&message.client_id)
        .with_detail(serde_json::json!({ "message_id": id }));
    if deps.store.outbox_redeliver(id, now, &payload, &audit).await? {
        deps.waker.notify_one();
        Ok(Ok(()))
    } else {
        Ok(Err(NoSuchMessage))
    }
}
