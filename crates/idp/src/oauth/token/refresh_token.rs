//! `grant_type=refresh_token` (RFC 6749 §6, RFC 9700 §4.14.2): every use
//! rotates the token; using a rotated token again revokes the whole family.
//! The scope may be narrowed, never widened.

use std::collections::BTreeMap;

use gatehouse_core::oauth::grant::{ACCESS_TOKEN_LIFETIME, Redemption};
use gatehouse_core::oauth::{Client, ErrorCode, OAuthError, Scopes, authorize};
use gatehouse_core::{OpaqueToken, Timestamp};

use crate::AppState;
use crate::oauth::tokens::{self, AccessTokenFor, TokenResponse};

pub async fn exchange(
    state: &AppState,
    client: &Client,
    params: &BTreeMap<String, String>,
) -> Result<TokenResponse, OAuthError> {
    let now = Timestamp::now();
    let store_err = |e: gatehouse_store::StoreError| OAuthError::server_error().with_cause(e);
    let invalid =
        |why: &str| OAuthError::invalid_grant("the refresh token is invalid, expired or revoked").with_cause(why);
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let Some(presented) = OpaqueToken::parse(presented) else {
        return Err(invalid("malformed"));
    };
    let Some(record) = state
        .store
        .refresh_token(&presented.digest())
        .await
        .map_err(store_err)?
    else {
        return Err(invalid("unknown"));
    };
    let Some(grant) = state.store.grant(&record.grant_id).await.map_err(store_err)? else {
        return Err(invalid("no grant"));
    };
    if grant.client_id != client.id {
        return Err(invalid("token of another client"));
    }
    if record.used_at.is_some() {
        state.store.revoke_grant(&grant.id, now).await.map_err(store_err)?;
        return Err(invalid("rotated token reused: family revoked"));
    }
    if record.expires_at <= now || state.store.grant_revoked(&grant.id).await.map_err(store_err)? {
        return Err(invalid("expired or revoked"));
    }
    let scopes = match params.get("scope") {
        Some(s) => {
            let asked = Scopes::parse(s).map_err(|_| OAuthError::new(ErrorCode::InvalidScope, "malformed scope"))?;
            if !asked.is_subset(&grant.scopes) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "the scope exceeds what was granted",
                ));
            }
            asked
        }
        None => grant.scopes.clone(),
    };
    let account = match &grant.account_id {
        Some(id) => Some(
            state
                .store
                .account_by_id(id)
                .await
                .map_err(store_err)?
                .filter(|a| a.is_ready())
                .ok_or_else(|| invalid("account gone"))?,
        ),
        None => None,
    };
    let (new_token, new_record) = tokens::refresh_token(&grant.id, now);
    match state
        .store
        .rotate_refresh_token(&record.digest, &new_record, now)
        .await
        .map_err(store_err)?
    {
        Redemption::Issued => {}
        Redemption::Replayed | Redemption::Unknown => return Err(invalid("rotated concurrently: family revoked")),
    }
    let subject = account.as_ref().map_or(client.id.to_string(), |a| a.id.to_string());
    let (access_token, _) = tokens::access_token(
        state,
        AccessTokenFor {
            client,
            subject: &subject,
            scopes: &scopes,
            audience: tokens::audience_for(client, &grant.resources),
            grant: Some(&grant),
            lifetime: ACCESS_TOKEN_LIFETIME,
        },
        now,
    )
    .await?;
    let id_token = match &account {
        Some(account) if authorize::is_openid(&scopes) => {
            Some(tokens::id_token(state, client, account, &grant, None, &access_token, now).await?)
        }
        _ => None,
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_LIFETIME,
        scope: scopes.to_string(),
        refresh_token: Some(new_token.expose().to_owned()),
        id_token,
        issued_token_type: None,
    })
}
