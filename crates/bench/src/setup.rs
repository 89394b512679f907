//! What the scenarios need, made before the clock starts: a verified user,
//! three clients registered through the store (as `gatehouse client create`
//! would), one signed-in session per connection, and a pool of access
//! tokens to introspect.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderValue;

use gatehouse_core::Timestamp;
use gatehouse_core::audit::{AuditEvent, AuditKind, BY_CLI};
use gatehouse_core::oauth::{Client, GrantType, Scopes};

use crate::http::{self, Conn};
use crate::server::{self, Database};

pub const EMAIL: &str = "bench@example.com";
pub const PASSWORD: &str = "a long benchmark passphrase";

/// The second relier's redirect URI (never contacted: the bench reads the
/// code from the `Location` header).
pub const RELIER_REDIRECT: &str = "http://127.0.0.1:9/relier-b/cb";

/// The resource server's identifier: the audience of the service's tokens.
pub const RESOURCE_URI: &str = "https://reports.bench.example";

/// Everything the workers share.
pub struct Fixture {
    pub addr: SocketAddr,
    /// `POST /token` for client credentials: its `Authorization` and body.
    pub service_auth: HeaderValue,
    pub service_body: Bytes,
    /// The resource server that introspects.
    pub resource_auth: HeaderValue,
    /// `token=...` bodies for `POST /introspect`.
    pub introspect_bodies: Vec<Bytes>,
    /// The second relier (client B).
    pub relier_auth: HeaderValue,
    pub relier_id: String,
    /// `Cookie:` headers of signed-in sessions, one per connection.
    pub sessions: Vec<HeaderValue>,
}

pub fn register(
    name: &str,
    redirect_uris: Vec<String>,
    grants: Vec<GrantType>,
    scopes: Option<&str>,
) -> anyhow::Result<(Client, String)> {
    let (mut client, secret) =
        Client::new(name, false, redirect_uris, grants, Timestamp::now()).map_err(|e| anyhow::anyhow!("{e}"))?;
    client.first_party = true;
    if let Some(scopes) = scopes {
        client.scopes = Scopes::parse(scopes).map_err(|e| anyhow::anyhow!("scopes: {e:?}"))?;
    }
    let secret = secret.context("a confidential client has a secret")?;
    Ok((client, secret.expose().to_owned()))
}

/// Creates the user and the clients; signs in `sessions` times; fills the
/// token pool.
pub async fn prepare(
    gatehouse: &Path,
    db: &Database,
    addr: SocketAddr,
    sessions: usize,
    tokens: usize,
) -> anyhow::Result<Fixture> {
    let cmd = server::command(gatehouse, db);
    tokio::task::spawn_blocking(move || server::create_user(cmd, EMAIL, PASSWORD)).await??;

    // Clients, straight into the store the server reads them from on each
    // request.
    let store = gatehouse_store::connect(&db.url).await.context("opening the store")?;
    // The service's tokens are for the resource server (RFC 8707: issued
    // with `resource`, which names it), as introspection answers only the
    // token's client and its audience.
    let (mut service, service_secret) = register(
        "Bench Service",
        vec![],
        vec![GrantType::ClientCredentials],
        Some("reports"),
    )?;
    let (mut resource, resource_secret) = register(
        "Bench Resource Server",
        vec![],
        vec![GrantType::ClientCredentials],
        Some("reports"),
    )?;
    service.audiences = vec![RESOURCE_URI.to_owned()];
    resource.resource_uris = vec![RESOURCE_URI.to_owned()];
    // Defaults, as a first-party web app has them: code and refresh grants,
    // openid profile email offline_access; first party, so no consent page.
    let (relier, relier_secret) = register("Bench Relier B", vec![RELIER_REDIRECT.to_owned()], vec![], None)?;
    for client in [&service, &resource, &relier] {
        let audit = AuditEvent::client_changed(AuditKind::ClientCreated, &client.id, BY_CLI, client.created_at);
        store
            .create_client(client, &audit)
            .await
            .context("registering a client")?;
    }
    drop(store);

    let mut conn = Conn::open(addr).await?;
    let service_auth = http::basic(service.id.as_str(), &service_secret)?;
    let service_body = http::form(&[
        ("grant_type", "client_credentials"),
        ("scope", "reports"),
        ("resource", RESOURCE_URI),
    ]);

    // Sign in once per connection (Argon2: seconds in all, so never timed).
    let mut cookies = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        cookies.push(login(&mut conn).await?);
    }

    // The tokens to introspect, issued over a few connections at once.
    const ISSUERS: usize = 8;
    let mut tasks = Vec::with_capacity(ISSUERS);
    for i in 0..ISSUERS {
        let count = tokens / ISSUERS + usize::from(i < tokens % ISSUERS);
        let (auth, body) = (service_auth.clone(), service_body.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut bodies = Vec::with_capacity(count);
            for _ in 0..count {
                let reply = conn.post_form("/token", Some(&auth), None, body.clone()).await?;
                ensure!(
                    reply.status == StatusCode::OK,
                    "client credentials: {} {}",
                    reply.status,
                    reply.text()
                );
                let json: serde_json::Value = serde_json::from_slice(&reply.body)?;
                let token = json["access_token"].as_str().context("no access_token")?;
                bodies.push(http::form(&[("token", token), ("token_type_hint", "access_token")]));
            }
            anyhow::Ok(bodies)
        }));
    }
    let mut introspect_bodies = Vec::with_capacity(tokens);
    for task in tasks {
        introspect_bodies.extend(task.await??);
    }
    ensure!(!introspect_bodies.is_empty(), "--tokens must be at least 1");

    Ok(Fixture {
        addr,
        service_auth,
        service_body,
        resource_auth: http::basic(resource.id.as_str(), &resource_secret)?,
        introspect_bodies,
        relier_auth: http::basic(relier.id.as_str(), &relier_secret)?,
        relier_id: relier.id.to_string(),
        sessions: cookies,
    })
}

/// `POST /login` with the CSRF cookie and field, as the login page's form
/// does; returns the `Cookie` header a browser would then send (session and
/// CSRF token).
pub async fn login(conn: &mut Conn) -> anyhow::Result<HeaderValue> {
    let page = conn.get("/login", None).await?;
    ensure!(page.status == StatusCode::OK, "GET /login: {}", page.status);
    let csrf_cookie = page.set_cookie("gh_csrf").context("no CSRF cookie on /login")?;
    let csrf = csrf_cookie.split_once('=').map(|(_, v)| v).unwrap_or_default();
    let body = http::form(&[("csrf", csrf), ("email", EMAIL), ("password", PASSWORD)]);
    let cookie = HeaderValue::from_str(&csrf_cookie)?;
    let reply = conn.post_form("/login", None, Some(&cookie), body).await?;
    if !reply.status.is_redirection() {
        bail!("login failed: {} {}", reply.status, reply.text());
    }
    let session = reply
        .set_cookie("gh_session")
        .context("no session cookie after login")?;
    Ok(HeaderValue::from_str(&format!("{session}; {csrf_cookie}"))?)
}
