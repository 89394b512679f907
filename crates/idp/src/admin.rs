//! The admin JSON API (`/admin/...`), described by `/openapi.json`.
//!
//! Callers authenticate with an access token that carries the
//! `gatehouse:admin` scope: a confidential client allowed the client
//! credentials grant and that scope gets one from `/token`. Every admin
//! action is audited with the calling client.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::claims::AccessTokenClaims;
use gatehouse_core::oauth::client::{Client, ClientSettings};
use gatehouse_core::oauth::{ClientId, ErrorCode, OAuthError, Scopes};
use gatehouse_store::StoreError;

use crate::AppState;
use crate::oauth::bearer::{active_access_token, from_header};
use crate::oauth::error::{bearer_challenge, json_error};

/// The scope an admin token must carry.
pub const ADMIN_SCOPE: &str = "gatehouse:admin";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/clients", get(list_clients).post(create_client))
        .route(
            "/admin/clients/{id}",
            get(show_client).patch(update_client).delete(delete_client),
        )
        .route("/openapi.json", get(openapi))
}

/// The admin API's errors: a JSON body with a code and a message.
fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "error_description": message }))).into_response()
}

fn store_error(e: StoreError) -> Response {
    json_error(&OAuthError::server_error().with_cause(e))
}

async fn admin(state: &AppState, headers: &HeaderMap) -> Result<AccessTokenClaims, Response> {
    let token = match from_header(headers) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(bearer_challenge(None)),
        Err(e) => return Err(bearer_challenge(Some(&e))),
    };
    let claims = active_access_token(state, &token)
        .await
        .map_err(|e| bearer_challenge(Some(&e)))?;
    if !Scopes::parse(&claims.scope).unwrap_or_default().contains(ADMIN_SCOPE) {
        return Err(bearer_challenge(Some(&OAuthError::new(
            ErrorCode::InsufficientScope,
            "the token lacks gatehouse:admin",
        ))));
    }
    Ok(claims)
}

async fn list_clients(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&state, &headers).await {
        return r;
    }
    match state.store.clients().await {
        Ok(clients) => {
            Json(json!({ "clients": clients.iter().map(Client::to_json).collect::<Vec<_>>() })).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn show_client(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = admin(&state, &headers).await {
        return r;
    }
    match state.store.client(&ClientId(id)).await {
        Ok(Some(c)) => Json(c.to_json()).into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, "not_found", "no such client"),
        Err(e) => store_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateClient {
    name: String,
    #[serde(default)]
    public: bool,
    #[serde(flatten)]
    settings: ClientSettings,
}

fn malformed(e: serde_json::Error) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("malformed JSON body: {e}"),
    )
}

async fn create_client(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = admin(&state, &headers).await {
        return r;
    }
    let input: CreateClient = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return malformed(e),
    };
    let mut grants = Vec::new();
    for g in input.settings.grant_types.iter().flatten() {
        match gatehouse_core::oauth::GrantType::parse(g) {
            Some(g) => grants.push(g),
            None => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_client_metadata",
                    &format!("unknown grant type: {g}"),
                );
            }
        }
    }
    let redirects = input.settings.redirect_uris.clone().unwrap_or_default();
    let made = Client::new(&input.name, input.public, redirects, grants, Timestamp::now());
    let (mut client, secret) = match made {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "invalid_client_metadata", &e.to_string()),
    };
    if let Err(e) = client.apply(&input.settings) {
        return problem(StatusCode::BAD_REQUEST, "invalid_client_metadata", &e.to_string());
    }
    if let Err(e) = state.store.create_client(&client).await {
        return store_error(e);
    }
    let mut body = client.to_json();
    body["client_secret"] = json!(secret.as_ref().map(|s| s.expose()));
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/clients/{}", client.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

async fn update_client(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = admin(&state, &headers).await {
        return r;
    }
    let settings: ClientSettings = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return malformed(e),
    };
    let mut client = match state.store.client(&ClientId(id)).await {
        Ok(Some(c)) => c,
        Ok(None) => return problem(StatusCode::NOT_FOUND, "not_found", "no such client"),
        Err(e) => return store_error(e),
    };
    if let Err(e) = client.apply(&settings) {
        return problem(StatusCode::BAD_REQUEST, "invalid_client_metadata", &e.to_string());
    }
    match state.store.update_client(&client).await {
        Ok(true) => Json(client.to_json()).into_response(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "not_found", "no such client"),
        Err(e) => store_error(e),
    }
}

async fn delete_client(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = admin(&state, &headers).await {
        return r;
    }
    match state.store.delete_client(&ClientId(id)).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "not_found", "no such client"),
        Err(e) => store_error(e),
    }
}

async fn openapi(State(state): State<AppState>) -> Response {
    let mut doc: serde_json::Value = match serde_json::from_str(include_str!("../openapi.json")) {
        Ok(v) => v,
        Err(e) => return json_error(&OAuthError::server_error().with_cause(e)),
    };
    doc["servers"] = json!([{ "url": state.settings.issuer_str() }]);
    Json(doc).into_response()
}
