//! `grant_type=refresh_token` (RFC 6749 §6, RFC 9700 §4.14.2): every use
//! rotates the token; using a rotated token again revokes the whole family.
//! The scope may be narrowed, never widened. A family bound to a DPoP key
//! (a client that redeemed its code with a proof, RFC 9449 §5) needs a proof by
//! that key; a proof binds the new access token.

use gatehouse_core::oauth::dpop::VerifiedProof;
use gatehouse_core::oauth::grant::Redemption;
use gatehouse_core::oauth::{Client, ErrorCode, OAuthError, Scopes};
use gatehouse_core::{OpaqueToken, Timestamp};

use super::Form;
use crate::AppState;
use crate::oauth::error::internal;
use crate::oauth::tokens::{self, TokenResponse, UserGrant};

pub async fn exchange(
    state: &AppState,
    client: &Client,
    params: &Form,
    proof: Option<&VerifiedProof>,
) -> Result<TokenResponse, OAuthError> {
    let now = Timestamp::now();
    let invalid =
        |why: &str| OAuthError::invalid_grant("the refresh token is invalid, expired or revoked").with_cause(why);
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let Some(presented) = OpaqueToken::parse(presented) else {
        return Err(invalid("malformed"));
    };
    let Some(record) = state.store.refresh_token(&presented.digest()).await.map_err(internal)? else {
        return Err(invalid("unknown"));
    };
    let Some(grant) = state.store.grant(&record.grant_id).await.map_err(internal)? else {
        return Err(invalid("no grant"));
    };
    if grant.client_id != client.id {
        return Err(invalid("token of another client"));
    }
    // Before the replay check: without the key, a stolen token can do
    // nothing, not even revoke the family.
    if let Some(bound) = &grant.dpop_jkt
        && proof.is_none_or(|p| &p.jkt != bound)
    {
        return Err(OAuthError::invalid_grant(
            "the refresh token is bound to a DPoP key: send a DPoP proof made with it",
        ));
    }
    if record.used_at.is_some() {
        let audit = gatehouse_core::audit::AuditEvent::revoked_by_client(
            gatehouse_core::audit::AuditKind::GrantRevoked,
            grant.account_id.as_ref(),
            &client.id,
            now,
        )
        .with_detail(serde_json::json!({ "grant_id": grant.id, "reason": "refresh_token_reused" }));
        state
            .store
            .revoke_grant(&grant.id, now, &audit)
            .await
            .map_err(internal)?;
        return Err(invalid("rotated token reused: family revoked"));
    }
    if record.expires_at <= now || state.store.grant_revoked(&grant.id).await.map_err(internal)? {
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
    // Refresh tokens are only issued for a user's grant.
    let Some(account_id) = &grant.account_id else {
        return Err(invalid("grant without a user"));
    };
    let account = state
        .store
        .account_by_id(account_id)
        .await
        .map_err(internal)?
        .filter(|a| a.is_ready())
        .ok_or_else(|| invalid("account gone"))?;
    tokens::check_not_banned(state, &account, client, now).await?;
    let (new_token, new_record) = tokens::refresh_token(&grant.id, now);
    match state
        .store
        .rotate_refresh_token(&record.digest, &new_record, now)
        .await
        .map_err(internal)?
    {
        Redemption::Issued => {}
        Redemption::Replayed | Redemption::Unknown => return Err(invalid("rotated concurrently: family revoked")),
    }
    let resources = tokens::resources_for(&grant.resources, params.all("resource"))?;
    let g = UserGrant {
        account: &account,
        grant: &grant,
        scopes: &scopes,
        resources: &resources,
        nonce: None,
        refresh_token: Some(new_token),
        jkt: proof.map(|p| p.jkt.clone()),
    };
    tokens::for_user_grant(state, client, g, now).await
}
