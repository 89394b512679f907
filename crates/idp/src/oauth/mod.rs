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
//! errors).

pub mod authorize;
pub mod bearer;
pub mod client_auth;
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

/// Routes that clients and resource servers call.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery::configuration))
        .route("/.well-known/oauth-authorization-server", get(discovery::configuration))
        .route("/jwks.json", get(discovery::jwks))
        .route("/token", post(token::token))
        .route("/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .route("/introspect", post(introspect::introspect))
        .route("/revoke", post(revoke::revoke))
}
