//! CORS (the Fetch standard's CORS protocol) for what a browser-only client
//! (a single-page app) calls. Discovery and the JWKS are public documents:
//! any origin may read them (`*`). The token endpoint, UserInfo and
//! revocation answer only the origins of public clients' registered
//! redirect URIs (`Store::is_public_client_origin`, cached like the client
//! records), echoed with `Vary: Origin`. Introspection is for confidential
//! clients (resource servers), which are no browsers: no CORS there, nor on
//! the admin API or the pages. Credentials (cookies) are never allowed
//! cross-origin: a browser client proves itself with PKCE, its tokens and
//! DPoP proofs, never with the IdP's session cookie.
//!
//! Preflights (`OPTIONS`) are answered by the layer itself with the methods
//! of the endpoint and the request headers a client needs
//! (`Authorization`, `Content-Type`, `DPoP`); responses expose
//! `WWW-Authenticate` and `DPoP-Nonce`, which a client must read to retry
//! with a nonce (RFC 9449 §8, §9) or to learn why a token was refused.

use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, header};
use gatehouse_store::Store;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::dpop::{DPOP, DPOP_NONCE};

/// How long a browser may keep a preflight's answer. The actual response is
/// checked again every time, so a client deleted meanwhile loses access at
/// once all the same.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// What a client sends beyond the CORS-safelisted headers.
const REQUEST_HEADERS: [HeaderName; 3] = [header::AUTHORIZATION, header::CONTENT_TYPE, DPOP];

/// What a client must be able to read from our answers.
const EXPOSED_HEADERS: [HeaderName; 2] = [header::WWW_AUTHENTICATE, DPOP_NONCE];

/// Discovery and the JWKS: readable from any origin, the same answer for
/// every one (so no `Vary`, and shared caches keep one copy).
pub fn any_origin() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::HEAD])
        .vary(Vec::<HeaderName>::new())
        .max_age(PREFLIGHT_MAX_AGE)
}

/// The token endpoint, UserInfo and revocation (`methods`): for the origins
/// of public clients only.
pub fn public_clients(store: Arc<dyn Store>, methods: &[Method]) -> CorsLayer {
    let allowed = move |origin: HeaderValue, _: &Parts| {
        let store = store.clone();
        async move {
            let Ok(origin) = origin.to_str() else {
                return false;
            };
            match store.is_public_client_origin(origin).await {
                Ok(allowed) => allowed,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the public clients' origins; CORS refused");
                    false
                }
            }
        }
    };
    CorsLayer::new()
        .allow_origin(AllowOrigin::async_predicate(allowed))
        .allow_methods(methods.to_vec())
        .allow_headers(REQUEST_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .vary([
            header::ORIGIN,
            header::ACCESS_CONTROL_REQUEST_METHOD,
            header::ACCESS_CONTROL_REQUEST_HEADERS,
        ])
        .max_age(PREFLIGHT_MAX_AGE)
}
