//! Token revocation (RFC 7009). Revoking a refresh token revokes its whole
//! family (grant); revoking an access token revokes that token (its `jti`)
//! until it would have expired anyway. An unknown or malformed token is
//! answered 200, as §2.2 requires; another client's token is refused.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use gatehouse_core::audit::{AuditEvent, AuditKind};
use gatehouse_core::oauth::claims::AccessTokenClaims;
use gatehouse_core::oauth::{ErrorCode, OAuthError};
use gatehouse_core::{OpaqueToken, Timestamp};

use super::client_auth;
use super::error::{internal, json_error_to, no_store};
use super::token::parse_form;
use crate::AppState;

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
    let now = Timestamp::now();
    if token.bytes().filter(|b| *b == b'.').count() == 2 {
        // Only a token we signed, not yet expired, is worth remembering.
        let Ok((_, value)) = state.keys.verify(token, state.settings.issuer_str()).await else {
            return Ok(());
        };
        let Ok(claims) = serde_json::from_value::<AccessTokenClaims>(value) else {
            return Ok(());
        };
        if claims.client_id != client.id.as_str() {
            return Err(not_yours());
        }
        let audit = AuditEvent::revoked_by_client(AuditKind::TokenRevoked, None, &client.id, now)
            .with_detail(serde_json::json!({ "jti": claims.jti }));
        state
            .store
            .revoke_jti(&claims.jti, Timestamp(claims.exp), &audit)
            .await
            .map_err(internal)?;
        return Ok(());
    }
    let Some(token) = OpaqueToken::parse(token) else {
        return Ok(());
    };
    let Some(record) = state.store.refresh_token(&token.digest()).await.map_err(internal)? else {
        return Ok(());
    };
    let Some(grant) = state.store.grant(&record.grant_id).await.map_err(internal)? else {
        return Ok(());
    };
    if grant.client_id != client.id {
        return Err(not_yours());
    }
    let audit = AuditEvent::revoked_by_client(AuditKind::GrantRevoked, grant.account_id.as_ref(), &client.id, now)
        .with_detail(serde_json::json!({ "grant_id": grant.id, "reason": "revoked" }));
    state.store.revoke_grant(&grant.id, now, &audit).await.map_err(internal)
}
