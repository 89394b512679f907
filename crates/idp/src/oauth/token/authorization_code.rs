//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5, OpenID
//! Connect Core §3.1.3): reads the code with its account and bans, asks
//! core's `oauth::redeem` (a code works once, for the client it was issued
//! to, with the same redirect URI and the PKCE verifier, and with a proof by
//! the key a `dpop_jkt` named), revokes the family of a replayed code, and
//! writes and mints what it allows. With a DPoP proof the access token is
//! bound to its key, and so are the refresh tokens (RFC 9449 §5 requires it
//! of public clients; we ask it of all).

use gatehouse_core::oauth::dpop::VerifiedProof;
use gatehouse_core::oauth::grant::Redemption;
use gatehouse_core::oauth::redeem::{self, Redeem, Redeemed};
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
    let code = params
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let Some(code) = OpaqueToken::parse(code) else {
        return Err(redeem::invalid("malformed code"));
    };
    // One read: the code, its account and the account's bans.
    let Some((record, holder)) = state
        .store
        .auth_code_with_account(&code.digest())
        .await
        .map_err(internal)?
    else {
        return Err(redeem::invalid("unknown code"));
    };
    let asked = Redeem {
        client,
        code: &record,
        redirect_uri,
        code_verifier: params.get("code_verifier").map(String::as_str),
        proof_jkt: proof.map(|p| p.jkt.as_str()),
        holder: holder.as_ref().map(|h| (&h.account, h.bans.as_slice())),
        now,
    };
    let Redeemed { grant, account } = match redeem::redeem(&asked) {
        Ok(redeemed) => redeemed,
        Err(refusal) => {
            if refusal.revokes_family {
                let (account, reason) = (Some(&record.account_id), "code_replayed");
                flows::tokens::revoke_family(&state.flows, &record.grant_id, account, &client.id, reason, now)
                    .await
                    .map_err(internal)?;
            }
            return Err(refusal.error);
        }
    };
    let refresh = tokens::wants_refresh(client, &record.scopes).then(|| tokens::refresh_token(&grant.id, now));
    match state
        .store
        .redeem_auth_code(&record.digest, &grant, refresh.as_ref().map(|(_, r)| r), now)
        .await
        .map_err(internal)?
    {
        Redemption::Issued => {}
        Redemption::Replayed | Redemption::Unknown => return Err(redeem::invalid("code used concurrently")),
    }
    let resources = tokens::resources_for(&grant.resources, params.all("resource"))?;
    let g = UserGrant {
        account,
        grant: &grant,
        scopes: &grant.scopes,
        resources: &resources,
        nonce: record.nonce.clone(),
        refresh_token: refresh.map(|(t, _)| t),
        jkt: proof.map(|p| p.jkt.clone()),
    };
    tokens::for_user_grant(state, client, g, now).await
}
