//! `grant_type=client_credentials` (RFC 6749 §4.4): a confidential client
//! allowed the grant gets an access token about itself (`sub` is its client
//! id, RFC 9068 §2.2), with none of the scopes about a user
//! (`scope::USER_SCOPES`). No refresh token, no grant record: these tokens are
//! revoked one by one (`jti`). With a DPoP proof the token is bound to its
//! key (RFC 9449 §5).

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::dpop::VerifiedProof;
use gatehouse_core::oauth::grant::ACCESS_TOKEN_LIFETIME;
use gatehouse_core::oauth::scope;
use gatehouse_core::oauth::{Client, ErrorCode, OAuthError, Scopes};

use super::Form;
use crate::AppState;
use crate::oauth::tokens::{self, AccessTokenFor, TokenResponse};

pub async fn exchange(
    state: &AppState,
    client: &Client,
    params: &Form,
    proof: Option<&VerifiedProof>,
) -> Result<TokenResponse, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "public clients cannot use client credentials",
        ));
    }
    // Acting for itself, the client gets no scope about a user (`openid`,
    // `profile`, `email`, `offline_access`, ...), whatever it is registered
    // for; of what it asks, the rest is granted (RFC 6749 §3.3: the response
    // says what).
    let allowed = client.scopes.without_user_scopes();
    let scopes = match params.get("scope") {
        Some(s) => {
            let asked = Scopes::parse(s).map_err(|_| OAuthError::new(ErrorCode::InvalidScope, "malformed scope"))?;
            scope::grant(&asked, &allowed).map_err(|_| {
                OAuthError::new(
                    ErrorCode::InvalidScope,
                    "none of the requested scopes is allowed for this client",
                )
            })?
        }
        // Default: everything the client may ask for that is not about a user.
        None => allowed,
    };
    // RFC 8707: only targets the client was registered for (`--audience`).
    let resources = params.all("resource").to_vec();
    if let Some(r) = resources.iter().find(|r| !client.audiences.contains(r)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            format!("the client may not ask for the resource {r}"),
        ));
    }
    let now = Timestamp::now();
    let jkt = proof.map(|p| p.jkt.clone());
    let token_type = tokens::token_type(jkt.as_deref());
    let (access_token, _) = tokens::access_token(
        state,
        AccessTokenFor {
            client,
            subject: client.id.as_str(),
            scopes: &scopes,
            audience: tokens::audience_for(client, &resources),
            context: Default::default(),
            jkt,
            lifetime: ACCESS_TOKEN_LIFETIME,
        },
        now,
    )
    .await?;
    Ok(TokenResponse {
        access_token,
        token_type,
        expires_in: ACCESS_TOKEN_LIFETIME,
        scope: scopes.to_string(),
        refresh_token: None,
        id_token: None,
        issued_token_type: None,
    })
}
