//! The whole story on one machine: the IdP, the payments service and two
//! demo sites (a shop and a forum), each on its own port, wired together
//! as an operator would: the sites and the payments service registered as
//! clients of the IdP, the shop as a merchant of the payments service.
//! `gatehouse demo` runs it on fixed ports; the tests run it on port 0.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use url::Url;

use gatehouse_core::audit::{AuditEvent, AuditKind, BY_CLI};
use gatehouse_core::oauth::Scopes;
use gatehouse_core::oauth::client::{Client, ClientId, GrantType};
use gatehouse_core::{Email, Timestamp};
use gatehouse_demo_site::{Kind, Site, SiteConfig};
use gatehouse_pay::{Merchant, PayConfig, PayService, PayStore};
use gatehouse_store::Store;

use crate::config::Config;
use crate::server::{self, Running};

/// The demo's account.
pub const DEMO_EMAIL: &str = "demo@example.com";
pub const DEMO_PASSWORD: &str = "gatehouse-demo-password";
/// Test money the demo account starts with, in cents.
pub const DEMO_FUNDS: i64 = 10_000;
pub const DEMO_CURRENCY: &str = "EUR";

/// Where each part listens, and where the state lives.
pub struct StackOptions {
    /// The IdP's configuration (its `listen`, database, mail, data dir).
    pub idp: Config,
    pub pay_listen: SocketAddr,
    /// Default: `sqlite://<data_dir>/pay.db`.
    pub pay_database_url: Option<String>,
    pub shop_listen: SocketAddr,
    pub forum_listen: SocketAddr,
    /// Create the demo account and fund its wallet.
    pub demo_account: bool,
}

/// Everything running: the IdP and the services around it.
pub struct Stack {
    pub idp: Running,
    pub services: Services,
}

/// The payments service and the two demo sites, registered at an IdP.
pub struct Services {
    pub pay: PayService,
    pub shop: Site,
    pub forum: Site,
    pub pay_store: Arc<dyn PayStore>,
}

/// What [`Services::start`] needs besides the IdP's store.
pub struct ServiceOptions {
    /// The IdP's issuer URL.
    pub issuer: String,
    /// Where `demo-clients.json` (and by default `pay.db`) live.
    pub data_dir: std::path::PathBuf,
    pub pay_listen: SocketAddr,
    pub pay_database_url: Option<String>,
    pub shop_listen: SocketAddr,
    /// The host name in the shop's public URL (default: the address it
    /// listens on), e.g. `localhost` beside a payments service on
    /// `127.0.0.1`: two sites, so its framed checkout is cross-site.
    pub shop_host: Option<String>,
    pub forum_listen: SocketAddr,
    pub demo_account: bool,
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let idp = server::start(&options.idp).await?;
        let services = Services::start(
            idp.store.as_ref(),
            ServiceOptions {
                issuer: idp.issuer.as_str().trim_end_matches('/').to_owned(),
                data_dir: options.idp.data_dir.clone(),
                pay_listen: options.pay_listen,
                pay_database_url: options.pay_database_url,
                shop_listen: options.shop_listen,
                shop_host: None,
                forum_listen: options.forum_listen,
                demo_account: options.demo_account,
            },
        )
        .await?;
        Ok(Stack { idp, services })
    }

    /// Stops the services, then the IdP.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.services.shutdown().await;
        self.idp.shutdown().await
    }
}

impl Services {
    /// Registers the payments service and the sites at the IdP (through its
    /// store, as `gatehouse client create` would), the shop as a merchant,
    /// and starts them.
    pub async fn start(store: &dyn Store, options: ServiceOptions) -> anyhow::Result<Services> {
        let pay_listener = bind(options.pay_listen).await?;
        let shop_listener = bind(options.shop_listen).await?;
        let forum_listener = bind(options.forum_listen).await?;
        let pay_url = local_url(&pay_listener)?;
        let mut shop_url = local_url(&shop_listener)?;
        if let Some(host) = &options.shop_host {
            shop_url
                .set_host(Some(host))
                .with_context(|| format!("the shop's host name {host}"))?;
        }
        let forum_url = local_url(&forum_listener)?;
        // The payments audience: its URL without the trailing slash.
        let pay_audience = pay_url.as_str().trim_end_matches('/').to_owned();
        let issuer = options.issuer;
        let data_dir = options.data_dir;
        let file = data_dir.join("demo-clients.json");
        let mut saved: Registrations = read_registrations(&file);
        let pay_client = register(store, saved.pay.as_ref(), "Payments", |c| {
            c.redirect_uris = vec![join(&pay_url, "login/callback")];
            c.scopes = scopes("openid email");
            c.first_party = true;
            // It introspects the tokens addressed to it.
            c.resource_uris = vec![pay_audience.clone()];
            // It hears logouts and security events: money obeys the IdP.
            c.backchannel_logout_uri = Some(join(&pay_url, "backchannel-logout"));
            c.events_uri = Some(join(&pay_url, "events"));
        })
        .await?;
        let shop_client = register(store, saved.shop.as_ref(), "Gatehouse Shop", |c| {
            site_client(c, &shop_url);
            c.scopes = scopes("openid email profile offline_access payments");
            c.audiences = vec![pay_audience.clone()];
            c.grant_types
                .extend([GrantType::ClientCredentials, GrantType::TokenExchange]);
        })
        .await?;
        let forum_client = register(store, saved.forum.as_ref(), "Gatehouse Forum", |c| {
            site_client(c, &forum_url);
            c.scopes = scopes("openid email profile offline_access");
        })
        .await?;
        saved.pay = Some(pay_client.clone());
        saved.shop = Some(shop_client.clone());
        saved.forum = Some(forum_client.clone());
        write_registrations(&file, &saved)?;

        let pay_database_url = options
            .pay_database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("pay.db").display()));
        let pay_store = gatehouse_pay::open_store(&pay_database_url).await?;
        pay_store
            .add_merchant(Merchant {
                client_id: shop_client.client_id.clone(),
                name: "Gatehouse Shop".to_owned(),
                origins: vec![origin(&shop_url)],
                notify_uri: Some(join(&shop_url, "notify")),
                fee: Default::default(),
            })
            .await
            .context("cannot register the shop as a merchant")?;

        if options.demo_account {
            demo_account(store, pay_store.as_ref()).await?;
        }

        let pay = PayService::start(
            PayConfig {
                public_url: pay_url.clone(),
                database_url: pay_database_url,
                issuer: issuer.clone(),
                client_id: pay_client.client_id.clone(),
                client_secret: pay_client.client_secret.clone(),
                data_dir: data_dir.clone(),
                secret_key: None,
                limits: gatehouse_serve::DEFAULT_LIMITS,
                standing_max_age: gatehouse_pay::DEFAULT_STANDING_MAX_AGE,
            },
            pay_listener,
        )
        .await
        .context("cannot start the payments service")?;
        let shop = Site::start(
            SiteConfig {
                kind: Kind::Shop,
                name: "Gatehouse Shop".to_owned(),
                public_url: shop_url,
                issuer: issuer.clone(),
                client_id: shop_client.client_id,
                client_secret: shop_client.client_secret,
                pay_url: Some(pay_url),
            },
            shop_listener,
        )
        .await
        .context("cannot start the shop")?;
        let forum = Site::start(
            SiteConfig {
                kind: Kind::Forum,
                name: "Gatehouse Forum".to_owned(),
                public_url: forum_url,
                issuer,
                client_id: forum_client.client_id,
                client_secret: forum_client.client_secret,
                pay_url: None,
            },
            forum_listener,
        )
        .await
        .context("cannot start the forum")?;
        Ok(Services {
            pay,
            shop,
            forum,
            pay_store,
        })
    }

    /// Stops the sites, then the payments service.
    pub async fn shutdown(self) {
        self.shop.shutdown().await;
        self.forum.shutdown().await;
        self.pay.shutdown().await;
    }
}

/// A client the demo registered, kept in `<data_dir>/demo-clients.json` so
/// that a restarted demo keeps its clients (and their sessions and grants).
/// The secrets are in the clear there: it is a demo's folder.
#[derive(Clone, Serialize, Deserialize)]
struct Registered {
    client_id: String,
    client_secret: String,
}

#[derive(Default, Serialize, Deserialize)]
struct Registrations {
    pay: Option<Registered>,
    shop: Option<Registered>,
    forum: Option<Registered>,
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

fn local_url(listener: &TcpListener) -> anyhow::Result<Url> {
    let addr = listener.local_addr()?;
    Url::parse(&format!("http://{addr}/")).context("a URL from the bound address")
}

/// `base` (ending in `/`) joined with a relative path, as a string.
fn join(base: &Url, path: &str) -> String {
    format!("{}{path}", base.as_str())
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

fn scopes(text: &str) -> Scopes {
    Scopes::parse(text).unwrap_or_default()
}

/// What both demo sites register: their callback, logout URIs and events.
fn site_client(c: &mut Client, base: &Url) {
    c.redirect_uris = vec![join(base, "callback")];
    c.post_logout_redirect_uris = vec![base.as_str().to_owned()];
    c.backchannel_logout_uri = Some(join(base, "backchannel-logout"));
    c.events_uri = Some(join(base, "events"));
    c.first_party = true;
}

/// The client saved from an earlier run, brought up to date; or a new one.
async fn register(
    store: &dyn Store,
    saved: Option<&Registered>,
    name: &str,
    settings: impl Fn(&mut Client),
) -> anyhow::Result<Registered> {
    if let Some(saved) = saved
        && let Some(mut client) = store.client(&ClientId(saved.client_id.clone())).await?
    {
        settings(&mut client);
        let audit = AuditEvent::client_changed(AuditKind::ClientUpdated, &client.id, BY_CLI, Timestamp::now());
        store.update_client(&client, &audit).await?;
        return Ok(saved.clone());
    }
    let (mut client, secret) = Client::new(
        name,
        false,
        vec!["http://127.0.0.1/".to_owned()],
        Vec::new(),
        Timestamp::now(),
    )?;
    settings(&mut client);
    let audit = AuditEvent::client_changed(AuditKind::ClientCreated, &client.id, BY_CLI, client.created_at);
    store.create_client(&client, &audit).await?;
    Ok(Registered {
        client_id: client.id.to_string(),
        client_secret: secret.map(|s| s.expose().to_owned()).unwrap_or_default(),
    })
}

fn read_registrations(file: &Path) -> Registrations {
    std::fs::read(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn write_registrations(file: &Path, saved: &Registrations) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(saved)?;
    std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))
}

/// The demo account, with test money in its wallet the first time.
async fn demo_account(store: &dyn Store, pay: &dyn PayStore) -> anyhow::Result<()> {
    let email = Email::parse(DEMO_EMAIL).map_err(|e| anyhow::anyhow!("{e}"))?;
    let uid = match store.account_by_email(&email).await? {
        Some(account) => account.id,
        None => crate::cli::create_user(store, DEMO_EMAIL, Some(DEMO_PASSWORD.to_owned()), true, "demo").await?,
    };
    if pay.balance(uid.as_str(), DEMO_CURRENCY).await? == 0 {
        pay.fund(uid.as_str(), DEMO_FUNDS, DEMO_CURRENCY).await?;
    }
    Ok(())
}

/// The demo's ports: the three after the IdP's (8081, 8082, 8083 by
/// default); all chosen by the system when the IdP's port is 0.
pub fn default_options(idp: Config) -> StackOptions {
    let host = idp.listen.ip();
    let port = idp.listen.port();
    let next = |n: u16| SocketAddr::new(host, if port == 0 { 0 } else { port.saturating_add(n) });
    StackOptions {
        pay_listen: next(1),
        shop_listen: next(2),
        forum_listen: next(3),
        pay_database_url: None,
        demo_account: true,
        idp,
    }
}
