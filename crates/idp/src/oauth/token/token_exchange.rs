//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693)
//! for narrowing: the rules are `gatehouse_core::oauth::exchange::narrow`;
//! this module reads the request, checks both tokens are active, issues the
//! narrowed token in the subject's family, and audits the exchange. No
//! refresh token is issued. With a DPoP proof the narrowed token is bound to
//! the proof's key: for an unbound subject token, the request may carry a
//! proof made with the key of the service that will use the token (the
//! receiving service), so the narrowed token is useless to anyone else, the
//! caller included. A DPoP-bound subject (or actor) token needs a proof by
//! its own key, and the narrowed token stays bound to it (`narrow`, check 3).

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::dpop::VerifiedProof;
use gatehouse_core::oauth::exchange::{self, ACCESS_TOKEN_TYPE, JWT_TYPE};
use gatehouse_core::oauth::grant::ACCESS_TOKEN_LIFETIME;
use gatehouse_core::oauth::{Client, OAuthError};

use super::Form;
use crate::AppState;
use crate::oauth::bearer::active_access_token;
use crate::oauth::error::internal;
use crate::oauth::tokens::{self, AccessTokenFor, Context, TokenResponse};

fn token_param<'a>(params: &'a Form, name: &str) -> Result<Option<&'a String>, OAuthError> {
    let token = params.get(name);
    let kind = params.get(&format!("{name}_type"));
    match (token, kind) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(OAuthError::invalid_request(format!("{name}_type is required"))),
        (None, Some(_)) => Err(OAuthError::invalid_request(format!("{name}_type without {name}"))),
        (Some(t), Some(k)) if k == ACCESS_TOKEN_TYPE || k == JWT_TYPE => Ok(Some(t)),
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(format!(
            "{name}_type must be an access token type"
        ))),
    }
}

pub async fn exchange(
    state: &AppState,
    client: &Client,
    params: &Form,
    proof: Option<&VerifiedProof>,
) -> Result<TokenResponse, OAuthError> {
    let now = Timestamp::now();
    let subject_token = token_param(params, "subject_token")?
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    let subject = active_access_token(state, subject_token)
        .await
        // RFC 8693 §2.2.2: an unacceptable subject token is invalid_request.
        .map_err(|e| OAuthError::invalid_request("the subject token is not active").with_cause(e))?;
    let actor = match token_param(params, "actor_token")? {
        Some(t) => Some(
            active_access_token(state, t)
                .await
                // RFC 8693 §2.2.2: an unacceptable actor token is invalid_request.
                .map_err(|e| OAuthError::invalid_request("the actor token is not active").with_cause(e))?,
        ),
        None => None,
    };
    let request = exchange::Request {
        caller: client,
        subject: &subject,
        actor: actor.as_ref(),
        scope: params.get("scope").map(String::as_str),
        audiences: params.all("audience"),
        resources: params.all("resource"),
        requested_token_type: params.get("requested_token_type").map(String::as_str),
        proof_jkt: proof.map(|p| p.jkt.as_str()),
    };
    let narrowed = exchange::narrow(&request, ACCESS_TOKEN_LIFETIME, now)?;
    let mut context = Context::of_token(&subject);
    context.act = narrowed.act.clone().or(context.act);
    context.parent_jtis = narrowed.parent_jtis.clone();
    let jkt = narrowed.jkt.clone();
    let token_type = tokens::token_type(jkt.as_deref());
    let (access_token, claims) = tokens::access_token(
        state,
        AccessTokenFor {
            client,
            subject: &subject.sub,
            scopes: &narrowed.scopes,
            audience: narrowed.audience.clone(),
            context,
            lifetime: narrowed.lifetime,
            jkt,
        },
        now,
    )
    .await?;
    // Who, for which audience, which scopes.
    crate::flows::tokens::record_exchange(&state.flows, &client.id, &subject, &narrowed, &claims, now)
        .await
        .map_err(internal)?;
    Ok(TokenResponse {
        access_token,
        token_type,
        expires_in: narrowed.lifetime,
        scope: narrowed.scopes.to_string(),
        refresh_token: None,
        id_token: None,
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
    })
}
