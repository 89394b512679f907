//! The identity provider's HTTP side, on axum: the account pages (sign-up,
//! verification, login, reset, settings), health and metrics.
//!
//! [`router`] builds the whole application from an [`AppState`]; the binary
//! and the tests both serve what it returns. Handlers stay thin: they parse
//! the request, ask `gatehouse_core` for the decision, and call the store.

pub mod admin;
pub mod error;
pub mod events;
pub mod housekeeping;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod oauth;
pub mod ops;
pub mod outbox;
pub mod pages;
pub mod throttle;
pub mod web;

mod state;

pub use state::{AppState, Settings};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// Request bodies larger than this are refused before a handler runs: every
/// form we serve fits in far less.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The strictest policy the pages work under: no scripts at all, styles and
/// images from our origin only, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The whole IdP.
pub fn router(state: AppState) -> Router {
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    // Pages and the authorization endpoint: browsers, forms, CSRF tokens.
    let browser = Router::new()
        .merge(pages::routes())
        .merge(oauth::browser_routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::csrf::ensure_token,
        ));
    // What clients, resource servers and operators call.
    let api = Router::new()
        .merge(oauth::api_routes(&state))
        .merge(admin::routes(&state))
        .merge(ops::routes());
    Router::new()
        .merge(browser)
        .merge(api)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
        .layer(header(header::CACHE_CONTROL, "no-store"))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
