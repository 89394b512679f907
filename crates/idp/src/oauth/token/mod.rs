//! The token endpoint (`POST /token`, RFC 6749 §3.2): parses the form,
//! authenticates the client, and hands the request to the module of its
//! grant type. Each grant module is the whole story of its grant.

mod authorization_code;
mod client_credentials;
mod refresh_token;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

use gatehouse_core::oauth::{ErrorCode, GrantType, OAuthError};

use super::client_auth;
use super::error::json_error;
use crate::AppState;

/// A form body as a map; a repeated parameter is `invalid_request`
/// (RFC 6749 §3.2).
pub fn parse_form(body: &[u8]) -> Result<BTreeMap<String, String>, OAuthError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| OAuthError::invalid_request("malformed form body"))?;
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), v).is_some() {
            return Err(OAuthError::invalid_request(format!("parameter {k} is repeated")));
        }
    }
    Ok(map)
}

pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(response) => response,
        Err(e) => json_error(&e),
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, OAuthError> {
    let params = parse_form(body)?;
    let client = client_auth::authenticate(state, headers, &params).await?;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let grant = GrantType::parse(grant_type)
        .filter(|g| *g != GrantType::TokenExchange)
        .ok_or_else(|| OAuthError::new(ErrorCode::UnsupportedGrantType, "unsupported grant_type"))?;
    if !client.allows(grant) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client may not use this grant type",
        ));
    }
    let response = match grant {
        GrantType::AuthorizationCode => authorization_code::exchange(state, &client, &params).await?,
        GrantType::RefreshToken => refresh_token::exchange(state, &client, &params).await?,
        GrantType::ClientCredentials => client_credentials::exchange(state, &client, &params).await?,
        GrantType::TokenExchange => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "unsupported grant_type",
            ));
        }
    };
    Ok(response.into_response())
}
