//! Token introspection (RFC 7662), for authenticated confidential clients
//! (resource servers). An access token is active while its signature, expiry,
//! revocation, grant and user all hold, and only to the client it was issued
//! to or a client its audience names (by client id or one of its
//! `resource_uris`; RFC 7662 §4: a resource server learns nothing about
//! tokens that are not for it); a refresh token only answers the client it
//! was issued to, with no `token_type` (RFC 7662 §2.2 takes those of
//! RFC 6749 §7.1, which name access tokens). Anything else is
//! `{"active": false}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use gatehouse_core::oauth::{Client, OAuthError};
use gatehouse_core::{OpaqueToken, Timestamp};

use super::bearer::active_access_token;
use super::client_auth;
use super::error::{internal, json_error_to, no_store};
use super::token::parse_form;
use crate::AppState;

pub async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(body) => no_store(Json(body).into_response()),
        Err(e) => json_error_to(&headers, &body, &e),
    }
}

fn inactive() -> Value {
    json!({ "active": false })
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let params = parse_form(body)?;
    let client = client_auth::authenticate_confidential(state, headers, &params).await?;
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let hint = params.get("token_type_hint").map(String::as_str);
    let looks_like_jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
    if looks_like_jwt && hint != Some("refresh_token") || hint == Some("access_token") {
        if let Ok(c) = active_access_token(state, token).await {
            if !c.introspectable_by(&client) {
                return Ok(inactive());
            }
            served(state, &client, &c).await;
            let mut body = json!({
                "active": true,
                "iss": c.iss,
                "sub": c.sub,
                "client_id": c.client_id,
                "scope": c.scope,
                "aud": c.aud,
                "exp": c.exp,
                "iat": c.iat,
                "jti": c.jti,
                "token_type": if c.cnf.is_some() { "DPoP" } else { "Bearer" },
            });
            for (key, value) in [
                ("auth_time", c.auth_time.map(Value::from)),
                ("sid", c.sid.map(Value::from)),
                ("cnf", c.cnf),
                ("act", c.act),
            ] {
                if let Some(v) = value {
                    body[key] = v;
                }
            }
            return Ok(body);
        }
        if hint == Some("access_token") || looks_like_jwt {
            return Ok(inactive());
        }
    }
    refresh_token_state(state, &client, token).await
}

/// A resource server that hears logouts or security events and accepted a
/// person's token issued to another client (a narrowed token: the payments
/// service) was served by that token's IdP session: remember it, so the
/// session's logout and the account's events reach it too. A failure is
/// logged; the answer stands.
async fn served(state: &AppState, client: &Client, claims: &gatehouse_core::oauth::claims::AccessTokenClaims) {
    let listens = client.backchannel_logout_uri.is_some() || client.events_uri.is_some();
    let Some(gid) = claims.gid.as_deref() else {
        return;
    };
    if !listens || claims.client_id == client.id.as_str() {
        return;
    }
    if let Err(e) = state.store.resource_served(gid, &client.id, Timestamp::now()).await {
        tracing::warn!(error = %e, client = %client.id, "cannot record the session's resource server");
    }
}

async fn refresh_token_state(state: &AppState, client: &Client, token: &str) -> Result<Value, OAuthError> {
    let Some(token) = OpaqueToken::parse(token) else {
        return Ok(inactive());
    };
    let Some(record) = state.store.refresh_token(&token.digest()).await.map_err(internal)? else {
        return Ok(inactive());
    };
    let Some(grant) = state.store.grant(&record.grant_id).await.map_err(internal)? else {
        return Ok(inactive());
    };
    let now = Timestamp::now();
    if grant.client_id != client.id
        || record.used_at.is_some()
        || record.expires_at <= now
        || state.store.grant_revoked(&grant.id).await.map_err(internal)?
    {
        return Ok(inactive());
    }
    let sub = grant
        .account_id
        .as_ref()
        .map_or(grant.client_id.to_string(), |a| a.to_string());
    Ok(json!({
        "active": true,
        "iss": state.settings.issuer_str(),
        "sub": sub,
        "client_id": grant.client_id,
        "scope": grant.scopes.to_string(),
        "exp": record.expires_at.0,
        "iat": record.created_at.0,
    }))
}
