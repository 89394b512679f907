//! The identity provider's HTTP side, on axum: the account pages (sign-up,
//! verification, login, reset, settings), health and metrics.
//!
//! [`router`] builds the whole application from an [`AppState`]; the binary
//! and the tests both serve what it returns. Handlers stay thin: they parse
//! the request and call a use case in [`flows`], which decides with
//! `gatehouse_core`'s rules and writes the change through the store.

pub mod admin;
pub mod error;
pub mod events;
pub mod flows;
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

/// Request bodies larger than this are refused before a handler runs: every
/// form we serve fits in far less.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The whole IdP.
pub fn router(state: AppState) -> Router {
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
        // The strictest policy the pages work under (no scripts, no
        // framing), nosniff, no referrer, no caching: see the kit.
        .layer(axum::middleware::map_response(gatehouse_kit::headers::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.requests.clone(),
            gatehouse_kit::ops::track,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
