//! Token revocation (RFC 7009). Revoking a refresh token revokes its whole
//! family (grant); revoking an access token revokes that token (its `jti`)
//! until it would have expired anyway. An unknown or malformed token is
//! answered 200, as §2.2 requires; another client's token is refused.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::{ErrorCode, OAuthError};

use super::client_auth;
use super::error::{internal, json_error_to, no_store};
use super::token::parse_form;
use crate::AppState;
use crate::flows;
use crate::flows::tokens::NotYours;

pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => json_error_to(&headers, &body, &e),
    }
}

fn not_yours() -> OAuthError {
    OAuthError::new(ErrorCode::UnauthorizedClient, "the token was not issued to this client")
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    let params = parse_form(body)?;
    let client = client_auth::authenticate(state, headers, &params).await?;
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    match flows::tokens::revoke(&state.flows, &client.id, token, Timestamp::now()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(NotYours)) => Err(not_yours()),
        Err(e) => Err(internal(e)),
    }
}
