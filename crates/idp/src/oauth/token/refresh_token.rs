//! `grant_type=refresh_token` (RFC 6749 §6, RFC 9700 §4.14.2): reads the
//! token, its grant, the grant's account and bans, asks core's
//! `oauth::refresh` (the token used once, by its client, live; the scope
//! narrowed, never widened; a family bound to a DPoP key refreshed only
//! with a proof by that key), revokes the family of a reused token, and
//! rotates the token. A proof binds the new access token.

use gatehouse_core::oauth::dpop::VerifiedProof;
use gatehouse_core::oauth::grant::Redemption;
use gatehouse_core::oauth::refresh::{self, Refresh, Refreshed};
use gatehouse_core::oauth::{Client, OAuthError};
use gatehouse_core::{OpaqueToken, Timestamp};

use super::Form;
use crate::AppState;
use crate::flows;
use crate::oauth::error::internal;
use crate::oauth::tokens::{self, TokenResponse, UserGrant};

pub async fn exchange(
    state: &AppState,
    client: &Client,
    params: &Form,
    proof: Option<&VerifiedProof>,
) -> Result<TokenResponse, OAuthError> {
    let now = Timestamp::now();
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let Some(presented) = OpaqueToken::parse(presented) else {
        return Err(refresh::invalid("malformed"));
    };
    let Some(record) = state.store.refresh_token(&presented.digest()).await.map_err(internal)? else {
        return Err(refresh::invalid("unknown"));
    };
    let Some(grant) = state.store.grant(&record.grant_id).await.map_err(internal)? else {
        return Err(refresh::invalid("no grant"));
    };
    let grant_revoked = state.store.grant_revoked(&grant.id).await.map_err(internal)?;
    let account = match &grant.account_id {
        Some(id) => state.store.account_by_id(id).await.map_err(internal)?,
        None => None,
    };
    let bans = match &account {
        Some(a) => state.store.bans_of(&a.id).await.map_err(internal)?,
        None => Vec::new(),
    };
    let asked = Refresh {
        client,
        token: &record,
        grant: &grant,
        grant_revoked,
        scope: params.get("scope").map(String::as_str),
        proof_jkt: proof.map(|p| p.jkt.as_str()),
        holder: account.as_ref().map(|a| (a, bans.as_slice())),
        now,
    };
    let Refreshed { scopes, account } = match refresh::refresh(&asked) {
        Ok(refreshed) => refreshed,
        Err(refusal) => {
            if refusal.revokes_family {
                let (account, reason) = (grant.account_id.as_ref(), "refresh_token_reused");
                flows::tokens::revoke_family(&state.flows, &grant.id, account, &client.id, reason, now)
                    .await
                    .map_err(internal)?;
            }
            return Err(refusal.error);
        }
    };
    let (new_token, new_record) = tokens::refresh_token(&grant.id, now);
    match state
        .store
        .rotate_refresh_token(&record.digest, &new_record, now)
        .await
        .map_err(internal)?
    {
        Redemption::Issued => {}
        Redemption::Replayed | Redemption::Unknown => {
            return Err(refresh::invalid("rotated concurrently: family revoked"));
        }
    }
    let resources = tokens::resources_for(&grant.resources, params.all("resource"))?;
    let g = UserGrant {
        account,
        grant: &grant,
        scopes: &scopes,
        resources: &resources,
        nonce: None,
        refresh_token: Some(new_token),
        jkt: proof.map(|p| p.jkt.clone()),
    };
    tokens::for_user_grant(state, client, g, now).await
}
