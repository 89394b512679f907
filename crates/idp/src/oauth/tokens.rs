//! Minting what the token endpoint hands out: JWT access tokens (RFC 9068),
//! ID tokens (OpenID Connect Core §2), refresh tokens, and the JSON response
//! (RFC 6749 §5.1).

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use gatehouse_core::oauth::claims::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, Audience, IdTokenClaims, ProfileClaims, at_hash,
};
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::{self, ACR_PASSWORD, Grant, RefreshToken};
use gatehouse_core::oauth::{Client, OAuthError, Scopes};
use gatehouse_core::{Account, OpaqueToken, Timestamp};

use super::error::internal;
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

/// What an access token is about.
pub struct AccessTokenFor<'a> {
    pub client: &'a Client,
    /// The user's id, or the client's own for client credentials.
    pub subject: &'a str,
    pub scopes: &'a Scopes,
    pub audience: Vec<String>,
    pub context: Context,
    pub lifetime: i64,
    /// RFC 9449: the thumbprint of the DPoP key it is bound to.
    pub jkt: Option<String>,
}

/// Where a user's token comes from: its family, session and authentication.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub gid: Option<String>,
    pub sid: Option<String>,
    pub auth_time: Option<i64>,
    pub amr: Option<Vec<String>>,
    pub act: Option<serde_json::Value>,
    pub parent_jtis: Vec<String>,
}

impl Context {
    pub fn of_grant(g: &Grant) -> Self {
        Context {
            gid: Some(g.id.clone()),
            sid: g.sid.clone(),
            auth_time: g.auth_time.map(|t| t.0),
            amr: (!g.amr.is_empty()).then(|| g.amr.iter().map(|m| m.as_str().to_owned()).collect()),
            act: None,
            parent_jtis: Vec::new(),
        }
    }

    /// The same family and authentication as an access token we issued.
    pub fn of_token(c: &AccessTokenClaims) -> Self {
        Context {
            gid: c.gid.clone(),
            sid: c.sid.clone(),
            auth_time: c.auth_time,
            amr: c.amr.clone(),
            act: c.act.clone(),
            parent_jtis: c.parent_jtis.clone(),
        }
    }
}

/// Signs an access token; returns it with its claims.
pub async fn access_token(
    state: &AppState,
    t: AccessTokenFor<'_>,
    now: Timestamp,
) -> Result<(String, AccessTokenClaims), OAuthError> {
    let c = t.context;
    let claims = AccessTokenClaims {
        iss: state.settings.issuer_str().to_owned(),
        sub: t.subject.to_owned(),
        aud: Audience::from_list(t.audience),
        exp: now.0 + t.lifetime,
        iat: now.0,
        jti: OpaqueToken::generate().expose().chars().take(22).collect(),
        client_id: t.client.id.to_string(),
        scope: t.scopes.to_string(),
        acr: c.auth_time.map(|_| ACR_PASSWORD.to_owned()),
        auth_time: c.auth_time,
        amr: c.amr,
        sid: c.sid,
        gid: c.gid,
        cnf: t.jkt.map(|jkt| serde_json::json!({ "jkt": jkt })),
        act: c.act,
        may_act: None,
        parent_jtis: c.parent_jtis,
    };
    let token = state
        .keys
        .sign(SigningAlg::ES256, ACCESS_TOKEN_TYP, &claims)
        .await
        .map_err(internal)?;
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
        // Also from UserInfo (§5.4); here too, as `email` is, for reliers
        // that read only the ID token (§2 allows other claims).
        profile: ProfileClaims::of(&account.profile, &grant.scopes),
    };
    state.keys.sign(alg, "JWT", &claims).await.map_err(internal)
}

/// A new refresh token for `grant`; returns the value to hand out and the
/// record to store.
pub fn refresh_token(grant_id: &str, now: Timestamp) -> (OpaqueToken, RefreshToken) {
    let token = OpaqueToken::generate_ordered(std::time::SystemTime::now());
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

/// The audience of a user's access token: the resources asked for; else the
/// client itself and, when `openid` is granted, the UserInfo endpoint (the
/// token is then also for the IdP's UserInfo, which takes no other).
pub fn user_audience(state: &AppState, client: &Client, scopes: &Scopes, resources: &[String]) -> Vec<String> {
    let mut audience = audience_for(client, resources);
    if resources.is_empty() && gatehouse_core::oauth::authorize::is_openid(scopes) {
        audience.push(super::userinfo::url(state));
    }
    audience
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
    /// The grant's resources, or fewer (RFC 8707 at the token endpoint).
    pub resources: &'a [String],
    pub nonce: Option<String>,
    /// The refresh token already stored for the grant, if any.
    pub refresh_token: Option<OpaqueToken>,
    /// The DPoP key (thumbprint) the access token is bound to, if any.
    pub jkt: Option<String>,
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
        resources,
        nonce,
        refresh_token,
        jkt,
    } = g;
    let token_type = token_type(jkt.as_deref());
    let (access_token, _) = access_token(
        state,
        AccessTokenFor {
            client,
            subject: account.id.as_str(),
            scopes,
            audience: user_audience(state, client, scopes, resources),
            context: Context::of_grant(grant),
            jkt,
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
        token_type,
        expires_in: grant::ACCESS_TOKEN_LIFETIME,
        scope: scopes.to_string(),
        refresh_token: refresh_token.map(|t| t.expose().to_owned()),
        id_token,
        issued_token_type: None,
    })
}

/// `token_type` of a response (RFC 6749 §7.1, RFC 9449 §5): `DPoP` for a
/// token bound to a DPoP key, else `Bearer`.
pub fn token_type(jkt: Option<&str>) -> &'static str {
    if jkt.is_some() { "DPoP" } else { "Bearer" }
}

/// RFC 8707 §2.2: `resource` at the token endpoint picks among what was
/// granted; nothing named means everything granted.
pub fn resources_for(granted: &[String], asked: &[String]) -> Result<Vec<String>, OAuthError> {
    if asked.is_empty() {
        return Ok(granted.to_vec());
    }
    match asked.iter().find(|r| !granted.contains(r)) {
        Some(r) => Err(OAuthError::new(
            gatehouse_core::oauth::ErrorCode::InvalidTarget,
            format!("the resource {r} was not granted"),
        )),
        None => Ok(asked.to_vec()),
    }
}
