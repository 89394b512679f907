//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5, OpenID
//! Connect Core §3.1.3): a code works once, for the client it was issued
//! to, with the same redirect URI and the PKCE verifier; a second use
//! revokes everything the first use issued. With a DPoP proof the access
//! token is bound to its key, and so are the refresh tokens (RFC 9449 §5
//! requires it of public clients; we ask it of all). A code asked for with `dpop_jkt` (RFC 9449 §10) is
//! redeemed only with a proof by that key.

use gatehouse_core::oauth::dpop::VerifiedProof;
use gatehouse_core::oauth::grant::{Grant, Redemption};
use gatehouse_core::oauth::{Client, OAuthError, pkce};
use gatehouse_core::{OpaqueToken, Timestamp};
use gatehouse_store::AccountBans;

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
    let code = params
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let invalid = |why: &str| OAuthError::invalid_grant("the code is invalid, expired or already used").with_cause(why);
    let Some(code) = OpaqueToken::parse(code) else {
        return Err(invalid("malformed code"));
    };
    // One read: the code, its account and the account's bans.
    let Some((record, holder)) = state
        .store
        .auth_code_with_account(&code.digest())
        .await
        .map_err(internal)?
    else {
        return Err(invalid("unknown code"));
    };
    if record.client_id != client.id {
        return Err(invalid("code of another client"));
    }
    // RFC 9449 §10. Before the replay check: without the key, a stolen
    // code can do nothing, not even revoke what its first use issued.
    if let Some(bound) = &record.dpop_jkt
        && proof.is_none_or(|p| &p.jkt != bound)
    {
        return Err(OAuthError::invalid_grant(
            "the code is bound to a DPoP key (dpop_jkt): send a DPoP proof made with it",
        ));
    }
    if record.used_at.is_some() {
        // A replay: revoke what the first use issued (RFC 6749 §4.1.2).
        let audit = gatehouse_core::audit::AuditEvent::revoked_by_client(
            gatehouse_core::audit::AuditKind::GrantRevoked,
            Some(&record.account_id),
            &client.id,
            now,
        )
        .with_detail(serde_json::json!({ "grant_id": record.grant_id, "reason": "code_replayed" }));
        state
            .store
            .revoke_grant(&record.grant_id, now, &audit)
            .await
            .map_err(internal)?;
        return Err(invalid("code replayed"));
    }
    if record.expires_at <= now {
        return Err(invalid("code expired"));
    }
    if &record.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&record.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if pkce::verify(verifier, challenge) => {}
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required")),
        // RFC 9700 §4.8.2: a verifier without a challenge is a downgrade attempt.
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier sent but no code_challenge was",
            ));
        }
        (None, None) => {}
    }
    let Some(AccountBans { account, bans }) = holder.filter(|h| h.account.is_ready()) else {
        return Err(invalid("account gone"));
    };
    tokens::refuse_banned(&bans, client, now)?;

    let mut grant = Grant::from_code(&record, now);
    // RFC 9449 §5 lets a confidential client's refresh token go unbound
    // (client authentication constrains it); we bind it too, so that a
    // token redeemed with a proof is never refreshed into a bearer token
    // (DESIGN.md: a sender-constrained token never becomes less constrained).
    grant.dpop_jkt = proof.map(|p| p.jkt.clone());
    let refresh = tokens::wants_refresh(client, &record.scopes).then(|| tokens::refresh_token(&grant.id, now));
    match state
        .store
        .redeem_auth_code(&record.digest, &grant, refresh.as_ref().map(|(_, r)| r), now)
        .await
        .map_err(internal)?
    {
        Redemption::Issued => {}
        Redemption::Replayed | Redemption::Unknown => return Err(invalid("code used concurrently")),
    }
    let resources = tokens::resources_for(&grant.resources, params.all("resource"))?;
    let g = UserGrant {
        account: &account,
        grant: &grant,
        scopes: &grant.scopes,
        resources: &resources,
        nonce: record.nonce.clone(),
        refresh_token: refresh.map(|(t, _)| t),
        jkt: proof.map(|p| p.jkt.clone()),
    };
    tokens::for_user_grant(state, client, g, now).await
}
