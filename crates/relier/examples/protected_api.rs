//! A small API protected by Gatehouse access tokens.
//!
//! ```sh
//! # An IdP, and a relier allowed client credentials with the scope reports:read:
//! gatehouse serve &
//! gatehouse client create --name Reports --grant-type client_credentials --scope reports:read --json
//! # This API (its audience defaults to its public URL, http://127.0.0.1:3000):
//! ISSUER=http://127.0.0.1:8080 cargo run -p gatehouse-relier --example protected_api
//! # A token for this API (RFC 8707 `resource`), then a call:
//! TOKEN=$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials -d scope=reports:read \
//!     -d resource=http://127.0.0.1:3000 http://127.0.0.1:8080/token | jq -r .access_token)
//! curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/reports
//! ```
//!
//! Settings, from the environment: `ISSUER` (required), `AUDIENCE`
//! (default `PUBLIC_URL`), `PUBLIC_URL` (how clients reach this API, for
//! DPoP; default `http://<LISTEN>`), `LISTEN` (default `127.0.0.1:3000`).

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use gatehouse_relier::{AuthError, Authenticated, Issuer, Verifier};

/// The application's state; the extractor finds the verifier in it.
#[derive(Clone)]
struct AppState {
    verifier: Verifier,
    greeting: &'static str,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Verifier {
        state.verifier.clone()
    }
}

/// Any valid token: who is calling.
async fn me(State(state): State<AppState>, auth: Authenticated) -> Json<Value> {
    Json(json!({
        "greeting": state.greeting,
        "user": auth.user,
        "relier": auth.relier,
        "scopes": auth.scopes.iter().collect::<Vec<_>>(),
        "expires_at": auth.token.expires_at.0,
        "dpop": auth.token.jkt.is_some(),
    }))
}

/// Needs the `reports:read` scope: 403 `insufficient_scope` otherwise.
async fn reports(auth: Authenticated) -> Result<Json<Value>, AuthError> {
    auth.require_scope("reports:read")?;
    Ok(Json(json!({ "for": auth.user, "reports": ["q1", "q2"] })))
}

/// Open to all, with more for a caller with a token. A bad token is still
/// refused.
async fn status(auth: Option<Authenticated>) -> Json<Value> {
    Json(json!({ "ok": true, "caller": auth.map(|a| a.relier) }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer_url = std::env::var("ISSUER").map_err(|_| "set ISSUER to the IdP's issuer URL")?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let public_url = std::env::var("PUBLIC_URL").unwrap_or_else(|_| format!("http://{listen}"));
    let audience = std::env::var("AUDIENCE").unwrap_or_else(|_| public_url.clone());

    let issuer = Issuer::discover(&issuer_url, reqwest::Client::new()).await?;
    let verifier = Verifier::builder(issuer, audience)
        .realm("protected-api")
        .public_url(public_url.parse()?)
        .build();
    // Fail now rather than at the first request if the keys cannot be had.
    verifier.prefetch_keys().await?;

    let state = AppState {
        verifier,
        greeting: "hello",
    };
    let app = Router::new()
        .route("/me", get(me))
        .route("/reports", get(reports))
        .route("/status", get(status))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{listen}");
    axum::serve(listener, app).await?;
    Ok(())
}
