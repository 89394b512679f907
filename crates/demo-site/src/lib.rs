//! The demo sites of `gatehouse demo`: a shop selling digital goods and a
//! forum, two example applications built on the relier library.
//!
//! Each site is a relying party of the Gatehouse IdP
//! ([`gatehouse_relier::RelyingParty`]: the code flow with PKCE), keeps
//! its own sessions in memory, and hears from the IdP when those sessions
//! must end: back-channel logout tokens at `/backchannel-logout`
//! ([`gatehouse_relier::LogoutToken`]) and Security Event Tokens at
//! `/events` ([`gatehouse_relier::SetToken`]: an account disabled or
//! purged, a session revoked). A credential change (a password reset or
//! change) ends nothing: the person's sessions are marked and, before the
//! next page, sent to the IdP again (`prompt=none`, then a login if the
//! IdP asks for the password) and back to the same place. The forum tries a silent login
//! (`prompt=none`) on a visitor's first visit, so a person signed in at
//! the IdP arrives signed in. The shop sells through the payments service
//! (docs/payments.md, "The merchant side"): `/offer/{product}` answers
//! 402 Payment Required with a contract made for the signed-in user (their
//! token narrowed to `payments`), `/fulfill` shows the goods to whoever
//! proves the contract paid.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use gatehouse_demo_site::{Kind, Site, SiteConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8083").await?;
//! let forum = Site::start(
//!     SiteConfig {
//!         kind: Kind::Forum,
//!         name: "Gatehouse Forum".into(),
//!         public_url: "http://127.0.0.1:8083".parse()?,
//!         issuer: "http://127.0.0.1:8080".into(),
//!         client_id: "forum".into(),
//!         client_secret: "...".into(),
//!         pay_url: None,
//!     },
//!     listener,
//! )
//! .await?;
//! // ...
//! forum.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod catalog;
mod checkout;
mod fulfill;
mod html;
mod pay;
mod recheck;
mod session;
mod shop;
#[cfg(test)]
mod testkit;
mod web;

use anyhow::Context;
use gatehouse_relier::{Issuer, Receiver, RelyingParty, Verifier};

use crate::fulfill::FulfillmentKey;
use crate::web::router;

/// Which site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Sells digital goods through the payments service.
    Shop,
    /// A few threads; nothing to buy.
    Forum,
}

impl Kind {
    /// The session cookie's name: every demo service shares the host
    /// 127.0.0.1, and browsers do not separate cookies by port.
    pub fn cookie_name(self) -> &'static str {
        match self {
            Kind::Shop => "shop_session",
            Kind::Forum => "forum_session",
        }
    }

    /// What the site asks the IdP for.
    fn scope(self) -> &'static str {
        match self {
            Kind::Shop => "openid email profile offline_access payments",
            Kind::Forum => "openid email profile",
        }
    }
}

/// How to run one site.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    pub kind: Kind,
    /// "Gatehouse Shop", "Gatehouse Forum".
    pub name: String,
    /// Where browsers reach the site, e.g. `http://127.0.0.1:8082`.
    pub public_url: url::Url,
    /// The IdP's issuer identifier.
    pub issuer: String,
    /// The site's registration at the IdP (redirect `{public_url}/callback`).
    pub client_id: String,
    pub client_secret: String,
    /// The payments service (the shop only); its audience is this URL
    /// without a trailing slash.
    pub pay_url: Option<url::Url>,
}

/// A running site.
pub struct Site {
    url: url::Url,
    state: web::AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Site {
    /// Discovers the IdP, then serves the site on `listener` until
    /// [`Site::shutdown`].
    pub async fn start(config: SiteConfig, listener: tokio::net::TcpListener) -> anyhow::Result<Site> {
        let state = web::AppState::new(build(&config).await?);
        let app = router(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let name = config.name.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(site = %name, error = %e, "the demo site stopped");
            }
        });
        Ok(Site {
            url: config.public_url,
            state,
            stop,
            task,
        })
    }

    /// Where browsers reach the site (its public URL).
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The users signed in at the site now (by `sub`).
    pub fn signed_in_users(&self) -> std::collections::HashSet<String> {
        self.state.sessions.signed_in_users()
    }

    /// Stops serving, finishing requests in flight.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Everything a site needs, from its configuration and the IdP's metadata.
async fn build(config: &SiteConfig) -> anyhow::Result<web::Inner> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("HTTP client")?;
    let issuer = Issuer::discover(&config.issuer, http.clone())
        .await
        .with_context(|| format!("discovering the IdP at {}", config.issuer))?;
    let base = config.public_url.as_str().trim_end_matches('/').to_owned();
    let redirect_uri: url::Url = format!("{base}/callback").parse().context("the redirect URI")?;
    // The site receives no access tokens; the verifier is here for the
    // IdP's keys (ID tokens, logout tokens, security events).
    let verifier = Verifier::new(issuer, config.client_id.clone());
    let rp = RelyingParty::new(
        &verifier,
        config.client_id.clone(),
        Some(config.client_secret.clone()),
        redirect_uri,
    );
    let receiver = Receiver::new(&verifier, config.client_id.clone());
    let pay = match (config.kind, &config.pay_url) {
        (Kind::Shop, Some(url)) => Some(pay::PayClient::new(url.as_str(), rp.clone(), http.clone())),
        (Kind::Shop, None) => anyhow::bail!("the shop needs the payments service's URL"),
        (Kind::Forum, _) => None,
    };
    let fulfillment_key =
        FulfillmentKey::derive(&config.client_secret).map_err(|e| anyhow::anyhow!("fulfillment key: {e}"))?;
    Ok(web::Inner {
        kind: config.kind,
        name: config.name.clone(),
        base,
        secure_cookies: config.public_url.scheme() == "https",
        rp,
        receiver,
        pay,
        fulfillment_key,
        sessions: session::Sessions::default(),
        notifications: std::sync::Mutex::new(std::collections::VecDeque::new()),
    })
}
