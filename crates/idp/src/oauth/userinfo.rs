//! UserInfo (OpenID Connect Core §5.3): the signed-in user's claims for an
//! active access token that carries `openid`. The token comes in the
//! `Authorization: Bearer` header (RFC 6750 §2.1) or, on POST, in the form
//! body (§2.2); errors are `WWW-Authenticate` challenges (§3).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use gatehouse_core::AccountId;
use gatehouse_core::oauth::scope::OPENID;
use gatehouse_core::oauth::{ErrorCode, OAuthError, Scopes};

use super::bearer::{active_access_token, from_header};
use super::error::{bearer_challenge, no_store};
use super::token::parse_form;
use crate::AppState;

pub async fn userinfo(State(state): State<AppState>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let header_token = match from_header(&headers) {
        Ok(t) => t,
        Err(e) => return bearer_challenge(Some(&e)),
    };
    let body_token = if method == Method::POST && !body.is_empty() {
        match parse_form(&body) {
            Ok(mut form) => form.remove("access_token"),
            Err(e) => return bearer_challenge(Some(&e)),
        }
    } else {
        None
    };
    let token = match (header_token, body_token) {
        (Some(_), Some(_)) => {
            return bearer_challenge(Some(&OAuthError::invalid_request("send the token one way only")));
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return bearer_challenge(None),
    };
    let claims = match active_access_token(&state, &token).await {
        Ok(c) => c,
        Err(e) => return bearer_challenge(Some(&e)),
    };
    let scopes = Scopes::parse(&claims.scope).unwrap_or_default();
    if !scopes.contains(OPENID) || claims.gid.is_none() {
        return bearer_challenge(Some(&OAuthError::new(
            ErrorCode::InsufficientScope,
            "the token lacks the openid scope",
        )));
    }
    let account = match state.store.account_by_id(&AccountId(claims.sub.clone())).await {
        Ok(Some(a)) => a,
        Ok(None) => return bearer_challenge(Some(&OAuthError::new(ErrorCode::InvalidToken, "the user is gone"))),
        Err(e) => return super::error::json_error(&OAuthError::server_error().with_cause(e)),
    };
    let mut body = json!({ "sub": account.id });
    if scopes.contains("email") {
        body["email"] = json!(account.email);
        body["email_verified"] = json!(account.email_verified);
    }
    no_store(Json(body).into_response())
}
