//! `gatehouse client ...`: registering and managing reliers from the command
//! line. The same rules as the admin API (`Client::apply`), on the same
//! database, so a running server sees a change on its next request.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use gatehouse_core::Timestamp;
use gatehouse_core::audit::{AuditEvent, AuditKind, BY_CLI};
use gatehouse_core::oauth::client::{Client, ClientSettings};
use gatehouse_core::oauth::{ClientId, GrantType};
use gatehouse_store::{Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its id and (for a confidential client) its
    /// secret, which is shown only this once.
    Create {
        #[arg(long)]
        name: String,
        /// A public client (no secret; must use PKCE).
        #[arg(long)]
        public: bool,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// List every client.
    List,
    /// Show one client.
    Show { client_id: String },
    /// Change a client: every option given replaces that setting.
    Update {
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Delete a client and everything issued to it.
    Delete { client_id: String },
}

/// The settings `create` and `update` share. Repeat an option for several
/// values.
#[derive(Debug, Args)]
pub struct ClientOptions {
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Skip the consent screen.
    #[arg(long)]
    first_party: bool,
    /// A scope the client may ask for.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// An audience (client id or resource URI) it may narrow tokens to.
    #[arg(long = "audience", value_name = "ID")]
    audiences: Vec<String>,
    /// As a resource server: a resource URI by which tokens name it in
    /// `aud` (introspection answers it about tokens addressed to it).
    #[arg(long = "resource-uri", value_name = "URI")]
    resource_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// Where its security events go.
    #[arg(long, value_name = "URI")]
    events_uri: Option<String>,
    /// A grant type (default: authorization_code and refresh_token).
    #[arg(long = "grant-type", value_name = "TYPE")]
    grant_types: Vec<String>,
    /// ES256 (default), EdDSA or RS256.
    #[arg(long, value_name = "ALG")]
    id_token_alg: Option<String>,
}

impl ClientOptions {
    fn settings(&self, name: Option<String>) -> ClientSettings {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        ClientSettings {
            name,
            redirect_uris: list(&self.redirect_uris),
            post_logout_redirect_uris: list(&self.post_logout_redirect_uris),
            scopes: list(&self.scopes),
            audiences: list(&self.audiences),
            resource_uris: list(&self.resource_uris),
            grant_types: list(&self.grant_types),
            first_party: self.first_party.then_some(true),
            backchannel_logout_uri: self.backchannel_logout_uri.clone(),
            events_uri: self.events_uri.clone(),
            id_token_signed_response_alg: self.id_token_alg.clone(),
        }
    }
}

async fn find(store: &dyn Store, id: &str) -> anyhow::Result<Client> {
    store
        .client(&ClientId(id.to_owned()))
        .await?
        .with_context(|| format!("no client with the id {id}"))
}

fn describe(c: &Client) -> String {
    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
    format!(
        "{}  {}{}{}\n  redirect URIs: {}\n  scopes: {}\n  grant types: {}",
        c.id,
        c.name,
        if c.is_public() { " (public)" } else { "" },
        if c.first_party { " (first party)" } else { "" },
        c.redirect_uris.join(" "),
        c.scopes,
        grants.join(" ")
    )
}

/// Runs a client command; returns the JSON object and the text to print.
pub async fn run(store: &dyn Store, command: ClientCommand) -> anyhow::Result<(serde_json::Value, String)> {
    match command {
        ClientCommand::Create { name, public, options } => {
            let grants = options
                .grant_types
                .iter()
                .map(|g| GrantType::parse(g).with_context(|| format!("--grant-type: unknown grant type {g:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (mut client, secret) =
                Client::new(&name, public, options.redirect_uris.clone(), grants, Timestamp::now())?;
            client.apply(&options.settings(None))?;
            let audit = AuditEvent::client_changed(AuditKind::ClientCreated, &client.id, BY_CLI, client.created_at);
            match store.create_client(&client, &audit).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => bail!("a client with the id {} already exists", client.id),
                Err(e) => return Err(e.into()),
            }
            let secret = secret.map(|s| s.expose().to_owned());
            let text = match &secret {
                Some(s) => format!("Created client {}.\nClient secret (shown only now): {s}", client.id),
                None => format!("Created public client {}.", client.id),
            };
            Ok((json!({ "client_id": client.id, "client_secret": secret }), text))
        }
        ClientCommand::List => {
            let clients = store.clients().await?;
            let text = if clients.is_empty() {
                "No clients.".to_owned()
            } else {
                clients.iter().map(describe).collect::<Vec<_>>().join("\n")
            };
            Ok((
                json!({ "clients": clients.iter().map(Client::to_json).collect::<Vec<_>>() }),
                text,
            ))
        }
        ClientCommand::Show { client_id } => {
            let client = find(store, &client_id).await?;
            Ok((client.to_json(), describe(&client)))
        }
        ClientCommand::Update {
            client_id,
            name,
            options,
        } => {
            let mut client = find(store, &client_id).await?;
            client.apply(&options.settings(name))?;
            let audit = AuditEvent::client_changed(AuditKind::ClientUpdated, &client.id, BY_CLI, Timestamp::now());
            if !store.update_client(&client, &audit).await? {
                bail!("no client with the id {client_id}");
            }
            Ok((client.to_json(), format!("Updated.\n{}", describe(&client))))
        }
        ClientCommand::Delete { client_id } => {
            let id = ClientId(client_id.clone());
            let audit = AuditEvent::client_changed(AuditKind::ClientDeleted, &id, BY_CLI, Timestamp::now());
            if !store.delete_client(&id, &audit).await? {
                bail!("no client with the id {client_id}");
            }
            Ok((
                json!({ "deleted": client_id }),
                format!("Deleted client {client_id} and everything issued to it."),
            ))
        }
    }
}
