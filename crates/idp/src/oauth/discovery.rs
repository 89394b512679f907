//! Discovery: `/.well-known/openid-configuration` (OpenID Connect Discovery
//! 1.0) and `/.well-known/oauth-authorization-server` (RFC 8414) serve the
//! same metadata, listing every endpoint and capability we actually support;
//! `/jwks.json` publishes the signing keys.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use gatehouse_core::oauth::claims::PROFILE_CLAIMS;
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::ACR_PASSWORD;

use crate::AppState;

pub fn metadata(state: &AppState) -> Value {
    let s = &state.settings;
    let url = |p: &str| s.url(p);
    let claims_supported: Vec<&str> = [
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "sid",
        "azp",
        "at_hash",
        "email",
        "email_verified",
    ]
    .into_iter()
    .chain(PROFILE_CLAIMS)
    .collect();
    json!({
        "issuer": s.issuer_str(),
        "authorization_endpoint": url("/authorize"),
        "token_endpoint": url("/token"),
        "userinfo_endpoint": url("/userinfo"),
        "jwks_uri": url("/jwks.json"),
        "introspection_endpoint": url("/introspect"),
        "revocation_endpoint": url("/revoke"),
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": SigningAlg::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        // RFC 9449 §5.1.
        "dpop_signing_alg_values_supported": gatehouse_core::oauth::dpop::ALGS,
        "prompt_values_supported": ["none", "login", "consent", "select_account", "create"],
        "acr_values_supported": [ACR_PASSWORD],
        "claims_supported": claims_supported,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "authorization_response_iss_parameter_supported": true,
        // OpenID Connect Back-Channel Logout 1.0 §2.1.
        "backchannel_logout_supported": true,
        "end_session_endpoint": url("/end_session"),
        "backchannel_logout_session_supported": true,
        "ui_locales_supported": ["en"],
    })
}

fn cacheable(body: Value, max_age: std::time::Duration) -> Response {
    let mut response = Json(body).into_response();
    let value = format!("public, max-age={}", max_age.as_secs());
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

pub async fn configuration(State(state): State<AppState>) -> Response {
    cacheable(metadata(&state), std::time::Duration::from_secs(300))
}

/// Cached for `jwks_max_age`: a new key is in it that long (and more)
/// before it signs (see `keys.rs`).
pub async fn jwks(State(state): State<AppState>) -> Response {
    cacheable(state.keys.jwks(), state.settings.jwks_max_age)
}
