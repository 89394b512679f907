//! Minting what the token endpoint hands out: JWT access tokens (RFC 9068),
//! ID tokens (OpenID Connect Core §2), refresh tokens, and the JSON response
//! (RFC 6749 §5.1).

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use gatehouse_core::oauth::claims::{ACCESS_TOKEN_TYP, AccessTokenClaims, Audience, IdTokenClaims, at_hash};
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::{self, ACR_PASSWORD, Grant, RefreshToken};
use gatehouse_core::oauth::{Client, OAuthError, Scopes};
use gatehouse_core::{Account, OpaqueToken, Timestamp};

use super::error::no_store;
use crate::AppState;

/// RFC 6749 §5.1.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// RFC 8693 §2.2.1, for token exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        no_store(Json(self).into_response())
    }
}

fn server_error(e: impl std::fmt::Display) -> OAuthError {
    OAuthError::server_error().with_cause(e)
}

/// What an access token is about.
pub struct AccessTokenFor<'a> {
    pub client: &'a Client,
    /// The user's id, or the client's own for client credentials.
    pub subject: &'a str,
    pub scopes: &'a Scopes,
    pub audience: Vec<String>,
    pub grant: Option<&'a Grant>,
    pub lifetime: i64,
}

/// Signs an access token; returns it with its claims.
pub async fn access_token(
    state: &AppState,
    t: AccessTokenFor<'_>,
    now: Timestamp,
) -> Result<(String, AccessTokenClaims), OAuthError> {
    let claims = AccessTokenClaims {
        iss: state.settings.issuer_str().to_owned(),
        sub: t.subject.to_owned(),
        aud: Audience::from_list(t.audience),
        exp: now.0 + t.lifetime,
        iat: now.0,
        jti: OpaqueToken::generate().expose().chars().take(22).collect(),
        client_id: t.client.id.to_string(),
        scope: t.scopes.to_string(),
        auth_time: t.grant.and_then(|g| g.auth_time).map(|a| a.0),
        acr: t
            .grant
            .filter(|g| g.auth_time.is_some())
            .map(|_| ACR_PASSWORD.to_owned()),
        amr: t
            .grant
            .filter(|g| !g.amr.is_empty())
            .map(|g| g.amr.iter().map(|m| m.as_str().to_owned()).collect()),
        sid: t.grant.and_then(|g| g.sid.clone()),
        gid: t.grant.map(|g| g.id.clone()),
        cnf: None,
        act: None,
    };
    let token = state
        .keys
        .sign(SigningAlg::ES256, ACCESS_TOKEN_TYP, &claims)
        .await
        .map_err(server_error)?;
    Ok((token, claims))
}

/// Signs an ID token for `account` from `grant`, bound to `access_token`.
pub async fn id_token(
    state: &AppState,
    client: &Client,
    account: &Account,
    grant: &Grant,
    nonce: Option<String>,
    access_token: &str,
    now: Timestamp,
) -> Result<String, OAuthError> {
    let alg = client.id_token_alg;
    let email = grant.scopes.contains("email");
    let claims = IdTokenClaims {
        iss: state.settings.issuer_str().to_owned(),
        sub: account.id.to_string(),
        aud: client.id.to_string(),
        exp: now.0 + grant::ID_TOKEN_LIFETIME,
        iat: now.0,
        auth_time: grant.auth_time.map_or(now.0, |t| t.0),
        nonce,
        acr: ACR_PASSWORD.to_owned(),
        amr: grant.amr.iter().map(|m| m.as_str().to_owned()).collect(),
        sid: grant.sid.clone().unwrap_or_default(),
        azp: client.id.to_string(),
        at_hash: Some(at_hash(access_token, alg)),
        email: email.then(|| account.email.to_string()),
        email_verified: email.then_some(account.email_verified),
    };
    state.keys.sign(alg, "JWT", &claims).await.map_err(server_error)
}

/// A new refresh token for `grant`; returns the value to hand out and the
/// record to store.
pub fn refresh_token(grant_id: &str, now: Timestamp) -> (OpaqueToken, RefreshToken) {
    let token = OpaqueToken::generate();
    let record = RefreshToken {
        digest: token.digest(),
        grant_id: grant_id.to_owned(),
        created_at: now,
        expires_at: now.plus(grant::REFRESH_TOKEN_LIFETIME),
        used_at: None,
    };
    (token, record)
}

/// The audience of a user's access token: the resources asked for, else the
/// client itself.
pub fn audience_for(client: &Client, resources: &[String]) -> Vec<String> {
    if resources.is_empty() {
        vec![client.id.to_string()]
    } else {
        resources.to_vec()
    }
}

/// Refresh tokens go to clients allowed the grant that asked for
/// `offline_access`, and to first-party clients.
pub fn wants_refresh(client: &Client, scopes: &Scopes) -> bool {
    client.allows(gatehouse_core::oauth::GrantType::RefreshToken)
        && (scopes.contains(gatehouse_core::oauth::scope::OFFLINE_ACCESS) || client.first_party)
}

/// What a user's token response is made of.
pub struct UserGrant<'a> {
    pub account: &'a Account,
    pub grant: &'a Grant,
    /// The grant's scopes, or fewer.
    pub scopes: &'a Scopes,
    pub nonce: Option<String>,
    /// The refresh token already stored for the grant, if any.
    pub refresh_token: Option<OpaqueToken>,
}

/// The response for a user's grant: an access token for `scopes` (the grant's
/// or fewer), an ID token when `openid` is among them, and the refresh token
/// already stored, if any.
pub async fn for_user_grant(
    state: &AppState,
    client: &Client,
    g: UserGrant<'_>,
    now: Timestamp,
) -> Result<TokenResponse, OAuthError> {
    let UserGrant {
        account,
        grant,
        scopes,
        nonce,
        refresh_token,
    } = g;
    let (access_token, _) = access_token(
        state,
        AccessTokenFor {
            client,
            subject: account.id.as_str(),
            scopes,
            audience: audience_for(client, &grant.resources),
            grant: Some(grant),
            lifetime: grant::ACCESS_TOKEN_LIFETIME,
        },
        now,
    )
    .await?;
    let id_token = if gatehouse_core::oauth::authorize::is_openid(scopes) {
        Some(id_token(state, client, account, grant, nonce, &access_token, now).await?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: grant::ACCESS_TOKEN_LIFETIME,
        scope: scopes.to_string(),
        refresh_token: refresh_token.map(|t| t.expose().to_owned()),
        id_token,
        issued_token_type: None,
    })
}
