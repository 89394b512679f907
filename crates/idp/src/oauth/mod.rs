//! The OAuth 2.0 authorization server and OpenID provider. One module per
//! endpoint or grant:
//!
//! | endpoint | module |
//! |---|---|
//! | `/.well-known/openid-configuration`, `/.well-known/oauth-authorization-server`, `/jwks.json` | [`discovery`] |
//! | `/authorize`, `/authorize/resume`, `/authorize/consent`, `/authorize/select` | [`authorize`] |
//! | `/token` | [`token`] (and its grant modules) |
//! | `/userinfo` | [`userinfo`] |
//! | `/introspect` | [`introspect`] |
//! | `/revoke` | [`revoke`] |
//!
//! Shared: [`client_auth`] (who is calling), [`bearer`] (is this access
//! token active, and sent the way its binding demands), [`dpop`] (DPoP
//! proofs: nonces, replay), [`tokens`] (minting), [`error`] (delivering
//! errors), [`cors`] (which browsers may call what cross-origin).

pub mod authorize;
pub mod bearer;
pub mod client_auth;
pub mod cors;
pub mod discovery;
pub mod dpop;
pub mod end_session;
pub mod error;
pub mod introspect;
pub mod revoke;
pub mod token;
pub mod tokens;
pub mod userinfo;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};

use crate::AppState;

/// Routes that browsers visit (they get CSRF tokens like the pages).
pub fn browser_routes() -> Router<AppState> {
    Router::new()
        .route("/authorize", get(authorize::authorize).post(authorize::authorize_post))
        .route("/authorize/resume", get(authorize::resume))
        .route("/authorize/consent", post(authorize::consent))
        .route("/authorize/select", post(authorize::select_account))
        .route(
            "/end_session",
            get(end_session::end_session).post(end_session::end_session_post),
        )
}

/// Routes that clients and resource servers call, with the CORS each
/// allows (see [`cors`]).
pub fn api_routes(state: &AppState) -> Router<AppState> {
    let public_clients = |methods: &[Method]| cors::public_clients(state.store.clone(), methods);
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::configuration).layer(cors::any_origin()),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::configuration).layer(cors::any_origin()),
        )
        .route("/jwks.json", get(discovery::jwks).layer(cors::any_origin()))
        .route("/token", post(token::token).layer(public_clients(&[Method::POST])))
        .route(
            "/userinfo",
            get(userinfo::userinfo)
                .post(userinfo::userinfo)
                .layer(public_clients(&[Method::GET, Method::POST])),
        )
        .route("/introspect", post(introspect::introspect))
        .route("/revoke", post(revoke::revoke).layer(public_clients(&[Method::POST])))
}
