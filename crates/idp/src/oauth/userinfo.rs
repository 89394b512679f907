//! UserInfo (OpenID Connect Core §5.3): the signed-in user's claims for an
//! active access token that carries `openid` and is meant for it: its `aud`
//! names this endpoint's URL, as the code flow's tokens do when no other
//! resource was asked for (`tokens::user_audience`). A token addressed only
//! elsewhere (a resource indicator, or narrowed by token exchange) is
//! `invalid_token` (RFC 6750 §3.1). The token comes in the
//! `Authorization: Bearer` header (RFC 6750 §2.1) or, on POST, in the form
//! body (§2.2); a DPoP-bound token with `Authorization: DPoP` and a proof
//! (RFC 9449 §7). Errors are `WWW-Authenticate` challenges (RFC 6750 §3,
//! RFC 9449 §7.1).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use gatehouse_core::AccountId;
use gatehouse_core::oauth::claims::ProfileClaims;
use gatehouse_core::oauth::scope::OPENID;
use gatehouse_core::oauth::{ErrorCode, OAuthError, Scopes};

use super::bearer::{Presented, Refusal, ResourceRequest, presented, protected_resource};
use super::error::{Scheme, challenge, no_store};
use super::token::parse_form;
use crate::AppState;

pub async fn userinfo(State(state): State<AppState>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let body_token = if method == Method::POST && !body.is_empty() {
        match parse_form(&body) {
            Ok(mut form) => form.remove("access_token"),
            Err(e) => return Refusal::bearer(e).into_response(),
        }
    } else {
        None
    };
    // Refusals after the token is accepted use the scheme it came with.
    let scheme = match presented(&headers) {
        Ok(Some(Presented::Dpop(_))) => Scheme::Dpop,
        _ => Scheme::Bearer,
    };
    let url = url(&state);
    let request = ResourceRequest {
        headers: &headers,
        method: method.as_str(),
        url: &url,
        body_token,
    };
    let claims = match protected_resource(&state, request).await {
        Ok(c) => c,
        Err(refusal) => return refusal.into_response(),
    };
    let scopes = Scopes::parse(&claims.scope).unwrap_or_default();
    if !scopes.contains(OPENID) || claims.gid.is_none() {
        return challenge(
            scheme,
            Some(&OAuthError::new(
                ErrorCode::InsufficientScope,
                "the token lacks the openid scope",
            )),
        );
    }
    if !claims.addressed_to(&url) {
        return challenge(
            scheme,
            Some(&OAuthError::new(
                ErrorCode::InvalidToken,
                "the access token is not meant for UserInfo",
            )),
        );
    }
    let account = match state.store.account_by_id(&AccountId(claims.sub.clone())).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return challenge(
                scheme,
                Some(&OAuthError::new(ErrorCode::InvalidToken, "the user is gone")),
            );
        }
        Err(e) => return super::error::json_error(&super::error::internal(e)),
    };
    let mut body = json!({ "sub": account.id });
    if scopes.contains("email") {
        body["email"] = json!(account.email);
        body["email_verified"] = json!(account.email_verified);
    }
    // §5.4: the profile scope's claims, each only when set.
    if let (Some(body), Ok(serde_json::Value::Object(profile))) = (
        body.as_object_mut(),
        serde_json::to_value(ProfileClaims::of(&account.profile, &scopes)),
    ) {
        body.extend(profile);
    }
    no_store(Json(body).into_response())
}

/// This endpoint's URL: where proofs are made for, and the audience that
/// says a token is meant for it.
pub fn url(state: &AppState) -> String {
    state.settings.url("/userinfo")
}
