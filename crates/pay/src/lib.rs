//! Gatehouse's payments service: its own HTTP service, origin and database,
//! reaching the IdP only over HTTP as a registered client (discovery, JWKS,
//! introspection, the code flow), through the relier library. The wire
//! contract is `docs/payments.md`.
//!
//! - `api.rs`: `POST /api/contracts` (merchant token + narrowed user token
//!   → a signed contract and a single-use purchase link);
//! - `pages/`: the purchase link and page, paying with the PIN, proofs,
//!   the payments page, the PIN reset with a fresh login, the login
//!   callback;
//! - `admin.rs`: purchases and refunds for IdP admins;
//! - `outbox.rs`: signed merchant notifications, retried with backoff;
//! - `standing.rs`: back-channel logouts and security events from the IdP,
//!   and the buyer's standing checked before money moves;
//! - `keys.rs`: the ES256 signing key, encrypted at rest, and the JWKS;
//! - `metrics.rs`: its Prometheus metrics; `/health/*` and `/metrics` are
//!   the kit's (`gatehouse_kit::ops`), as the IdP's;
//! - `store/`: the pay database (SQLite or PostgreSQL): ledger, purchases,
//!   contracts, sessions, audit, outbox;
//! - the rules (contract canonical form and hash, ledger movements,
//!   purchase states, PIN policy) are in `gatehouse_core::pay`.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use gatehouse_relier::{Introspector, Issuer, Receiver, RelyingParty, Verifier};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tower_http::limit::RequestBodyLimitLayer;

pub mod admin;
pub mod api;
pub mod funding;
pub mod keys;
pub mod metrics;
pub mod outbox;
pub mod pages;
pub mod standing;
pub mod store;
pub mod web;

pub use funding::{FundingSource, TestFunding};
pub use store::{Merchant, PayStore, PayStoreError, Purchase};
pub use web::PayState;

/// What the payments service needs to run.
#[derive(Clone, Debug)]
pub struct PayConfig {
    /// Where browsers and merchants reach it, e.g. `http://127.0.0.1:8081`;
    /// without the trailing slash it is the payments audience.
    pub public_url: url::Url,
    /// `sqlite://path?mode=rwc` or `postgres://...`: its own database.
    pub database_url: String,
    /// The IdP's issuer URL.
    pub issuer: String,
    /// Its registration at the IdP (confidential; redirect
    /// `{public_url}/login/callback`).
    pub client_id: String,
    pub client_secret: String,
    /// Where a generated secret may live.
    pub data_dir: std::path::PathBuf,
    /// Hex or base64 of 32 bytes that encrypts the signing key at rest;
    /// else `data_dir/pay-secret.key`.
    pub secret_key: Option<String>,
    /// Slow clients and the connection cap on its port.
    pub limits: gatehouse_serve::Limits,
    /// How long the IdP's word on a buyer (a login, a narrowed token
    /// introspected, an account-enabled event) holds: after that, money
    /// moves only once the IdP has been asked again (see `standing.rs`).
    pub standing_max_age: std::time::Duration,
}

/// The default of [`PayConfig::standing_max_age`].
pub const DEFAULT_STANDING_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens the payments database and migrates it.
pub async fn open_store(database_url: &str) -> anyhow::Result<Arc<dyn PayStore>> {
    let store = store::connect(database_url)
        .await
        .context("cannot open the payments database")?;
    store.migrate().await.context("cannot migrate the payments database")?;
    Ok(store)
}

/// Cookies are `Secure` unless the service is plain http on loopback; plain
/// http anywhere else is refused.
fn secure_cookies(url: &url::Url) -> anyhow::Result<bool> {
    match url.scheme() {
        "https" => Ok(true),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                None => false,
            };
            anyhow::ensure!(
                loopback,
                "the payments service's public URL must be https (http only on loopback)"
            );
            Ok(false)
        }
        other => anyhow::bail!("the payments service's public URL has the scheme {other}"),
    }
}

/// The payments service's routes.
pub fn router(state: PayState) -> Router {
    Router::new()
        .route("/", get(pages::home::home))
        .route("/fund", post(pages::home::fund))
        .route("/purchase/{link}", get(pages::purchase::link))
        .route("/contracts/{hash}", get(pages::purchase::contract))
        .route("/contracts/{hash}/setup", post(pages::purchase::setup))
        .route("/contracts/{hash}/pay", post(pages::purchase::pay))
        .route("/pin/reset", get(pages::pin::reset))
        .route("/pin/new", get(pages::pin::new_form).post(pages::pin::set_new))
        .route("/login/callback", get(pages::login::callback))
        .route("/backchannel-logout", post(standing::backchannel_logout))
        .route("/events", post(standing::events))
        .route("/api/contracts", post(api::create_contract))
        .merge(admin::routes(&state))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/static/style.css", get(style))
        .route("/static/checkout.js", get(pages::embed::script))
        .merge(gatehouse_kit::ops::routes())
        .layer(axum::middleware::map_response(gatehouse_kit::headers::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.requests.clone(),
            gatehouse_kit::ops::track,
        ))
        .layer(DefaultBodyLimit::max(web::BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(web::BODY_LIMIT))
        .with_state(state)
}

async fn jwks(axum::extract::State(state): axum::extract::State<PayState>) -> axum::response::Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(state.keys.jwks()),
    )
        .into_response()
}

async fn style() -> axum::response::Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::render::STYLE,
    )
        .into_response()
}

/// The running payments service.
pub struct PayService {
    url: url::Url,
    state: PayState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
}

impl PayService {
    /// Migrates the database, loads (or makes) the signing key, discovers
    /// the IdP, and serves on `listener`, with the notification worker.
    pub async fn start(config: PayConfig, listener: tokio::net::TcpListener) -> anyhow::Result<PayService> {
        let secure = secure_cookies(&config.public_url)?;
        let audience = config.public_url.as_str().trim_end_matches('/').to_owned();
        let store = open_store(&config.database_url).await?;
        let secret = keys::load_secret(config.secret_key.as_deref(), &config.data_dir)?;
        let pay_keys = keys::PayKeys::load_or_create(store.as_ref(), &secret).await?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?;
        let issuer = Issuer::discover(&config.issuer, http)
            .await
            .with_context(|| format!("cannot discover the issuer {}", config.issuer))?;
        let introspector = Introspector::new(&issuer, config.client_id.clone(), config.client_secret.clone())
            .context("the issuer offers no introspection")?;
        let verifier = Verifier::builder(issuer, audience.clone())
            .introspection(introspector.clone())
            .build();
        let redirect = url::Url::parse(&format!("{audience}/login/callback")).context("redirect URI")?;
        // Logout tokens and security events, checked with the IdP's keys.
        let receiver = Receiver::new(&verifier, config.client_id.clone());
        let rp = RelyingParty::new(
            &verifier,
            config.client_id.clone(),
            Some(config.client_secret.clone()),
            redirect,
        );
        let state = PayState(Arc::new(web::Inner {
            audience,
            store,
            keys: pay_keys,
            csrf_key: secret.derive_key(keys::CSRF_PURPOSE),
            verifier,
            introspector,
            receiver,
            rp,
            secure_cookies: secure,
            standing_max_age: i64::try_from(config.standing_max_age.as_secs()).unwrap_or(i64::MAX),
            outbox_wake: Notify::new(),
            funding: Arc::new(TestFunding),
            metrics: metrics::PayMetrics::new(),
        }));
        let app = router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let limits = config.limits;
        let server = tokio::spawn(async move {
            let serve = gatehouse_serve::serve(listener, app, limits, async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "payments service stopped");
            }
        });
        let worker = outbox::spawn_worker(state.clone());
        tracing::info!(url = %config.public_url, "payments service started");
        Ok(PayService {
            url: config.public_url,
            state,
            shutdown: Some(tx),
            server,
            worker,
        })
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The service's store (for the command line and tests).
    pub fn store(&self) -> &Arc<dyn PayStore> {
        &self.state.store
    }

    /// Stops serving (finishing requests in flight) and the worker.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        self.worker.abort();
        let _ = (&mut self.worker).await;
    }
}

#[cfg(test)]
mod tests {
    use super::secure_cookies;

    #[test]
    fn plain_http_only_on_loopback() {
        let url = |s: &str| url::Url::parse(s).expect("url");
        assert!(secure_cookies(&url("https://pay.example")).expect("https"));
        assert!(!secure_cookies(&url("http://127.0.0.1:8081")).expect("loopback"));
        assert!(!secure_cookies(&url("http://localhost:8081")).expect("localhost"));
        assert!(!secure_cookies(&url("http://[::1]:8081")).expect("v6 loopback"));
        assert!(secure_cookies(&url("http://pay.example")).is_err());
        assert!(secure_cookies(&url("ftp://127.0.0.1")).is_err());
    }
}
