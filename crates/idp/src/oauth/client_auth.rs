//! Client authentication at the token, introspection and revocation
//! endpoints (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`,
//! or a public client naming itself (`none`). Using two methods at once is
//! an error (RFC 6749 §2.3).

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use gatehouse_core::oauth::{Client, ClientId, ErrorCode, OAuthError};

use super::error::internal;
use super::token::Form;
use crate::AppState;

/// How the client presented itself.
#[derive(Debug, PartialEq, Eq)]
enum Presented {
    Basic { id: String, secret: String },
    Post { id: String, secret: String },
    Public { id: String },
}

fn decode_basic(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::new(ErrorCode::InvalidClient, "malformed Basic credentials");
    let value = value.to_str().map_err(|_| bad())?;
    let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
        return Ok(None);
    };
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded first.
    let unescape = |s: &str| -> Result<String, OAuthError> {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .ok_or_else(bad)
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

fn presented(headers: &HeaderMap, params: &Form) -> Result<Presented, OAuthError> {
    let basic = decode_basic(headers)?;
    let body_id = params.get("client_id").cloned();
    let body_secret = params.get("client_secret").cloned();
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method, not two",
        )),
        (Some((id, secret)), body_id, None) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the Basic credentials",
                ));
            }
            Ok(Presented::Basic { id, secret })
        }
        (None, Some(id), Some(secret)) => Ok(Presented::Post { id, secret }),
        (None, Some(id), None) => Ok(Presented::Public { id }),
        (None, None, _) => Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "client authentication is required",
        )),
    }
}

/// Whether the client authenticated in the form body (`client_secret_post`,
/// or a public client's `client_id`) rather than with the `Authorization`
/// header: its `invalid_client` then carries no `Basic` challenge
/// (RFC 6749 §5.2).
pub fn authenticated_in_body(headers: &HeaderMap, body: &[u8]) -> bool {
    !headers.contains_key(AUTHORIZATION)
        && super::token::parse_form(body).is_ok_and(|form| form.get("client_id").is_some())
}

/// Authenticates the calling client.
pub async fn authenticate(state: &AppState, headers: &HeaderMap, params: &Form) -> Result<Client, OAuthError> {
    let presented = presented(headers, params)?;
    let (id, secret) = match &presented {
        Presented::Basic { id, secret } | Presented::Post { id, secret } => (id, Some(secret)),
        Presented::Public { id } => (id, None),
    };
    if id.is_empty() || id.len() > 128 {
        return Err(OAuthError::invalid_client());
    }
    let client = state
        .store
        .client(&ClientId(id.clone()))
        .await
        .map_err(internal)?
        .ok_or_else(|| OAuthError::invalid_client().with_cause("unknown client"))?;
    match (client.is_public(), secret) {
        (true, None) => Ok(client),
        (false, Some(secret)) if client.secret_matches(secret) => Ok(client),
        (true, Some(_)) => Err(OAuthError::invalid_client().with_cause("a public client sent a secret")),
        (false, _) => Err(OAuthError::invalid_client().with_cause("wrong or missing secret")),
    }
}

/// Like [`authenticate`], but a public client is refused: for endpoints that
/// only confidential clients (resource servers) may call.
pub async fn authenticate_confidential(
    state: &AppState,
    headers: &HeaderMap,
    params: &Form,
) -> Result<Client, OAuthError> {
    let client = authenticate(state, headers, params).await?;
    if client.is_public() {
        return Err(OAuthError::invalid_client().with_cause("public clients cannot use this endpoint"));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn params(pairs: &[(&str, &str)]) -> Form {
        let body = serde_urlencoded::to_string(pairs).expect("encodes");
        crate::oauth::token::parse_form(body.as_bytes()).expect("parses")
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
        h.insert(AUTHORIZATION, HeaderValue::from_str(&v).expect("header"));
        h
    }

    #[test]
    fn one_method_at_a_time() {
        let p = presented(&basic("a", "s"), &params(&[]));
        assert_eq!(
            p,
            Ok(Presented::Basic {
                id: "a".into(),
                secret: "s".into()
            })
        );
        let p = presented(&basic("a%3Ab", "s%20t"), &params(&[]));
        assert_eq!(
            p,
            Ok(Presented::Basic {
                id: "a:b".into(),
                secret: "s t".into()
            })
        );
        let p = presented(
            &HeaderMap::new(),
            &params(&[("client_id", "a"), ("client_secret", "s")]),
        );
        assert_eq!(
            p,
            Ok(Presented::Post {
                id: "a".into(),
                secret: "s".into()
            })
        );
        let p = presented(&HeaderMap::new(), &params(&[("client_id", "a")]));
        assert_eq!(p, Ok(Presented::Public { id: "a".into() }));
        let both = presented(&basic("a", "s"), &params(&[("client_secret", "s")]));
        assert_eq!(both.map_err(|e| e.code), Err(ErrorCode::InvalidRequest));
        let none = presented(&HeaderMap::new(), &params(&[]));
        assert_eq!(none.map_err(|e| e.code), Err(ErrorCode::InvalidClient));
        let mismatch = presented(&basic("a", "s"), &params(&[("client_id", "b")]));
        assert_eq!(mismatch.map_err(|e| e.code), Err(ErrorCode::InvalidRequest));
        let mut junk = HeaderMap::new();
        junk.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(
            presented(&junk, &params(&[])).map_err(|e| e.code),
            Err(ErrorCode::InvalidClient)
        );
    }
}
