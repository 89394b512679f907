//! Checking an access token we issued: signature and expiry by the key
//! ring, then what can have changed since it was signed: the token revoked,
//! its grant (family) revoked, its user gone or not ready. Used by
//! UserInfo, introspection and the admin API.
//!
//! At a protected resource ([`protected_resource`]) the token also comes
//! the way its binding demands (RFC 9449 §7): a DPoP-bound token (`cnf.jkt`)
//! only with the `DPoP` scheme and a proof by its key, for this request,
//! with its `ath`, not replayed; an unbound token only as a bearer token.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};

use gatehouse_core::oauth::claims::AccessTokenClaims;
use gatehouse_core::oauth::{ErrorCode, OAuthError};
use gatehouse_core::{AccountId, Timestamp};

use super::dpop::{self, NoncePolicy};
use super::error::{Scheme, both_challenges, challenge, internal};
use crate::AppState;

/// The token from `Authorization: Bearer ...`, if any.
pub fn from_header(headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(OAuthError::invalid_request("use the Bearer scheme")),
    }
}

/// How the `Authorization` header carries an access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presented {
    /// RFC 6750 §2.1.
    Bearer(String),
    /// RFC 9449 §7.1.
    Dpop(String),
}

/// The token from `Authorization: Bearer ...` or `Authorization: DPoP ...`,
/// if any; another scheme is `invalid_request`.
pub fn presented(headers: &HeaderMap) -> Result<Option<Presented>, OAuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if !token.trim().is_empty() => {
            let token = token.trim().to_owned();
            if scheme.eq_ignore_ascii_case("bearer") {
                Ok(Some(Presented::Bearer(token)))
            } else if scheme.eq_ignore_ascii_case("dpop") {
                Ok(Some(Presented::Dpop(token)))
            } else {
                Err(OAuthError::invalid_request("use the Bearer or DPoP scheme"))
            }
        }
        _ => Err(OAuthError::invalid_request("use the Bearer or DPoP scheme")),
    }
}

/// A protected resource's refusal: the challenge to answer with.
#[derive(Debug)]
pub struct Refusal {
    pub scheme: Scheme,
    /// `None`: no token at all (both challenges, no error code).
    pub error: Option<OAuthError>,
    /// A fresh nonce for `use_dpop_nonce`.
    pub nonce: Option<String>,
}

impl Refusal {
    pub fn bearer(error: OAuthError) -> Self {
        Self {
            scheme: Scheme::Bearer,
            error: Some(error),
            nonce: None,
        }
    }

    pub fn dpop(error: OAuthError) -> Self {
        Self {
            scheme: Scheme::Dpop,
            error: Some(error),
            nonce: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = match &self.error {
            None => both_challenges(),
            Some(e) => challenge(self.scheme, Some(e)),
        };
        if let Some(value) = self.nonce.and_then(|n| axum::http::HeaderValue::from_str(&n).ok()) {
            response.headers_mut().insert(dpop::DPOP_NONCE, value);
        }
        response
    }
}

/// A request to a protected resource on this server.
pub struct ResourceRequest<'a> {
    pub headers: &'a HeaderMap,
    pub method: &'a str,
    /// The resource's absolute URL, on the issuer (what `htu` must name).
    pub url: &'a str,
    /// The token sent in a form body (RFC 6750 §2.2), if any: a bearer token.
    pub body_token: Option<String>,
}

/// The claims of the active access token a protected resource was sent, in
/// the way its binding demands (see the module documentation); else the
/// challenge to answer with.
pub async fn protected_resource(state: &AppState, r: ResourceRequest<'_>) -> Result<AccessTokenClaims, Refusal> {
    let presented = presented(r.headers).map_err(Refusal::bearer)?;
    match (presented, r.body_token) {
        (Some(_), Some(_)) => Err(Refusal::bearer(OAuthError::invalid_request(
            "send the token one way only",
        ))),
        (None, None) => Err(Refusal {
            scheme: Scheme::Bearer,
            error: None,
            nonce: None,
        }),
        (Some(Presented::Bearer(token)), None) | (None, Some(token)) => {
            let claims = active_access_token(state, &token).await.map_err(Refusal::bearer)?;
            if dpop::bound_jkt(claims.cnf.as_ref()).is_some() {
                // RFC 9449 §7.2: no downgrade to a bearer token.
                return Err(Refusal::dpop(OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the token is DPoP-bound: send it with the DPoP scheme and a proof",
                )));
            }
            Ok(claims)
        }
        (Some(Presented::Dpop(token)), None) => {
            let now = Timestamp::now();
            let proof = dpop::proof_header(r.headers).map_err(Refusal::dpop)?.ok_or_else(|| {
                Refusal::dpop(OAuthError::new(
                    ErrorCode::InvalidDpopProof,
                    "the DPoP scheme needs a DPoP proof",
                ))
            })?;
            let claims = active_access_token(state, &token).await.map_err(Refusal::dpop)?;
            let Some(bound) = dpop::bound_jkt(claims.cnf.as_ref()) else {
                return Err(Refusal::dpop(OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the token is not DPoP-bound: send it with the Bearer scheme",
                )));
            };
            let request = dpop::Request {
                method: r.method,
                url: r.url,
                access_token: Some(&token),
                nonce: NoncePolicy::IfPresent,
            };
            let verified = match dpop::verify(state, proof, &request, now).await {
                Ok(v) => v,
                Err(e) if e.code == ErrorCode::UseDpopNonce => {
                    return Err(Refusal {
                        scheme: Scheme::Dpop,
                        error: Some(e),
                        nonce: dpop::Nonces::of(state).current(now).ok(),
                    });
                }
                Err(e) => return Err(Refusal::dpop(e)),
            };
            if verified.jkt != bound {
                return Err(Refusal::dpop(
                    OAuthError::new(ErrorCode::InvalidToken, "invalid DPoP key binding")
                        .with_cause("the proof's key is not the token's"),
                ));
            }
            Ok(claims)
        }
    }
}

fn invalid(why: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, "the access token is not active").with_cause(why)
}

/// The claims of an active access token, or `invalid_token`.
pub async fn active_access_token(state: &AppState, token: &str) -> Result<AccessTokenClaims, OAuthError> {
    if token.len() > 8192 || token.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err(invalid("not a JWT"));
    }
    let (header, value) = state
        .keys
        .verify(token, state.settings.issuer_str())
        .await
        .map_err(|e| invalid(&e.to_string()))?;
    if header.typ.as_deref() != Some(gatehouse_core::oauth::claims::ACCESS_TOKEN_TYP) {
        return Err(invalid("not an access token"));
    }
    let claims: AccessTokenClaims = serde_json::from_value(value).map_err(|e| invalid(&e.to_string()))?;
    if claims.iss != state.settings.issuer_str() {
        return Err(invalid("another issuer"));
    }
    if claims.exp <= Timestamp::now().0 {
        return Err(invalid("expired"));
    }
    // Revoking a token also ends every token narrowed from it.
    for jti in std::iter::once(&claims.jti).chain(&claims.parent_jtis) {
        if state.store.jti_revoked(jti).await.map_err(internal)? {
            return Err(invalid("revoked"));
        }
    }
    if let Some(gid) = &claims.gid {
        if state.store.grant_revoked(gid).await.map_err(internal)? {
            return Err(invalid("grant revoked"));
        }
        // A token for a person: the person must still be there and ready.
        let account = state
            .store
            .account_by_id(&AccountId(claims.sub.clone()))
            .await
            .map_err(internal)?;
        if !account.is_some_and(|a| a.is_ready()) {
            return Err(invalid("account gone"));
        }
    }
    Ok(claims)
}
