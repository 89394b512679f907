//! Checking an access token we issued: signature and expiry by the key
//! ring, then what can have changed since it was signed: the token revoked,
//! its grant (family) revoked, its user gone or not ready. Used by
//! UserInfo, introspection and the admin API.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use gatehouse_core::oauth::claims::AccessTokenClaims;
use gatehouse_core::oauth::{ErrorCode, OAuthError};
use gatehouse_core::{AccountId, Timestamp};

use crate::AppState;

/// The token from `Authorization: Bearer ...`, if any.
pub fn from_header(headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(OAuthError::invalid_request("use the Bearer scheme")),
    }
}

fn invalid(why: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, "the access token is not active").with_cause(why)
}

/// The claims of an active access token, or `invalid_token`.
pub async fn active_access_token(state: &AppState, token: &str) -> Result<AccessTokenClaims, OAuthError> {
    if token.len() > 8192 || token.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err(invalid("not a JWT"));
    }
    let (header, value) = state
        .keys
        .verify(token, state.settings.issuer_str())
        .await
        .map_err(|e| invalid(&e.to_string()))?;
    if header.typ.as_deref() != Some(gatehouse_core::oauth::claims::ACCESS_TOKEN_TYP) {
        return Err(invalid("not an access token"));
    }
    let claims: AccessTokenClaims = serde_json::from_value(value).map_err(|e| invalid(&e.to_string()))?;
    if claims.iss != state.settings.issuer_str() {
        return Err(invalid("another issuer"));
    }
    if claims.exp <= Timestamp::now().0 {
        return Err(invalid("expired"));
    }
    let store_err = |e: gatehouse_store::StoreError| OAuthError::server_error().with_cause(e);
    // Revoking a token also ends every token narrowed from it.
    for jti in std::iter::once(&claims.jti).chain(&claims.parent_jtis) {
        if state.store.jti_revoked(jti).await.map_err(store_err)? {
            return Err(invalid("revoked"));
        }
    }
    if let Some(gid) = &claims.gid {
        if state.store.grant_revoked(gid).await.map_err(store_err)? {
            return Err(invalid("grant revoked"));
        }
        // A token for a person: the person must still be there and ready.
        let account = state
            .store
            .account_by_id(&AccountId(claims.sub.clone()))
            .await
            .map_err(store_err)?;
        if !account.is_some_and(|a| a.is_ready()) {
            return Err(invalid("account gone"));
        }
    }
    Ok(claims)
}
