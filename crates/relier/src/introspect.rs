//! Token introspection (RFC 7662): asking the issuer whether a token is
//! active. Local verification cannot see a revocation (of the token, of its
//! grant, or the user's account going away) until the token expires; a
//! resource server for which that matters asks the issuer, at the price of
//! a request per call. The resource server authenticates as a confidential
//! client with `client_secret_basic` (RFC 6749 §2.3.1).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use url::form_urlencoded::byte_serialize;

use gatehouse_core::oauth::Scopes;
use gatehouse_core::{Secret, Timestamp};

use crate::issuer::{HTTP_TIMEOUT, read_json};
use crate::{Error, Issuer};

/// Asks the issuer's introspection endpoint about tokens. Cheap to clone.
#[derive(Clone)]
pub struct Introspector {
    issuer: Issuer,
    endpoint: String,
    client_id: String,
    /// The `Authorization: Basic` value, made once.
    authorization: Secret<String>,
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspector")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What the issuer says about an active token (RFC 7662 §2.2). Every
/// member but `active` is optional in the RFC; Gatehouse sends them all for
/// an access token.
#[derive(Clone, Debug, PartialEq)]
pub struct Introspected {
    /// `sub`: the user, or the relier itself for client credentials.
    pub subject: Option<String>,
    /// `client_id`: the relier the token was issued to.
    pub client_id: Option<String>,
    pub scopes: Scopes,
    /// `aud`, as a list.
    pub audience: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub issued_at: Option<Timestamp>,
    pub jti: Option<String>,
    /// `Bearer` or `DPoP` for an access token (RFC 7662 §2.2); none for a
    /// refresh token.
    pub token_type: Option<String>,
    /// `cnf.jkt`, for a DPoP-bound token.
    pub jkt: Option<String>,
    /// The whole answer.
    pub raw: Map<String, Value>,
}

impl Introspector {
    /// An introspector for `issuer`, authenticating as the confidential
    /// client `client_id`. Fails if the issuer publishes no introspection
    /// endpoint.
    pub fn new(issuer: &Issuer, client_id: impl Into<String>, client_secret: impl Into<String>) -> Result<Self, Error> {
        let endpoint = issuer
            .introspection_endpoint()
            .ok_or(Error::NoIntrospectionEndpoint)?
            .to_string();
        let client_id = client_id.into();
        let client_secret = Secret::new(client_secret.into());
        Ok(Introspector {
            issuer: issuer.clone(),
            endpoint,
            authorization: Secret::new(basic_authorization(&client_id, client_secret.expose())),
            client_id,
        })
    }

    /// Asks about an access token: `Some` if it is active, `None` if not
    /// (revoked, expired, unknown, or not the issuer's). An error is ours or
    /// the issuer's (unreachable, our client refused), never the token's.
    pub async fn introspect(&self, token: &str) -> Result<Option<Introspected>, Error> {
        self.introspect_at(token, Timestamp::now()).await
    }

    /// [`Introspector::introspect`], taking `exp` as of `now`.
    pub async fn introspect_at(&self, token: &str, now: Timestamp) -> Result<Option<Introspected>, Error> {
        let response = self
            .issuer
            .http()
            .post(&self.endpoint)
            .header(reqwest::header::AUTHORIZATION, self.authorization.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .timeout(HTTP_TIMEOUT)
            .send()
            .await
            .map_err(|e| Error::http(&self.endpoint, e))?;
        let body: Map<String, Value> = read_json(&self.endpoint, response).await?;
        parse(&self.endpoint, self.issuer.issuer(), body, now)
    }
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined by `:`
/// and base64-encoded.
pub(crate) fn basic_authorization(id: &str, secret: &str) -> String {
    let encode = |s: &str| byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

/// Reads an introspection answer. Active means `"active": true` exactly; an
/// answer about another issuer's token is an error, an `exp` in the past
/// means inactive.
fn parse(url: &str, issuer: &str, raw: Map<String, Value>, now: Timestamp) -> Result<Option<Introspected>, Error> {
    match raw.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(None),
        _ => return Err(Error::bad_response(url, "no boolean \"active\"")),
    }
    let string = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_owned);
    let time = |key: &str| raw.get(key).and_then(Value::as_i64).map(Timestamp);
    if let Some(iss) = raw.get("iss")
        && iss.as_str() != Some(issuer)
    {
        return Err(Error::bad_response(url, "the answer is about another issuer's token"));
    }
    let expires_at = time("exp");
    if expires_at.is_some_and(|exp| exp.0 <= now.0) {
        return Ok(None);
    }
    let scopes = Scopes::parse(raw.get("scope").and_then(Value::as_str).unwrap_or_default())
        .map_err(|_| Error::bad_response(url, "malformed scope"))?;
    let audience = match raw.get("aud") {
        None => Vec::new(),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(_) => return Err(Error::bad_response(url, "malformed aud")),
    };
    Ok(Some(Introspected {
        subject: string("sub"),
        client_id: string("client_id"),
        scopes,
        audience,
        expires_at,
        issued_at: time("iat"),
        jti: string("jti"),
        token_type: string("token_type"),
        jkt: raw
            .get("cnf")
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        raw,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "https://id.example.com/introspect";
    const ISS: &str = "https://id.example.com";

    fn answer(v: Value) -> Result<Option<Introspected>, Error> {
        let Value::Object(map) = v else { panic!("object") };
        parse(URL, ISS, map, Timestamp(1_000))
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let value = basic_authorization("client:1", "s3cr3t/+ é");
        let decoded = STANDARD
            .decode(value.strip_prefix("Basic ").expect("Basic"))
            .expect("base64");
        assert_eq!(
            String::from_utf8(decoded).expect("utf-8"),
            "client%3A1:s3cr3t%2F%2B+%C3%A9"
        );
    }

    #[test]
    fn active_answers_are_read() {
        let got = answer(json!({
            "active": true, "iss": ISS, "sub": "u1", "client_id": "c1", "scope": "a b",
            "aud": ["r1", "r2"], "exp": 2_000, "iat": 900, "jti": "j", "token_type": "DPoP",
            "cnf": {"jkt": "thumb"}
        }))
        .expect("ok")
        .expect("active");
        assert_eq!(got.subject.as_deref(), Some("u1"));
        assert_eq!(got.client_id.as_deref(), Some("c1"));
        assert!(got.scopes.contains("a") && got.scopes.contains("b"));
        assert_eq!(got.audience, ["r1", "r2"]);
        assert_eq!(got.expires_at, Some(Timestamp(2_000)));
        assert_eq!(got.jkt.as_deref(), Some("thumb"));
        assert_eq!(got.token_type.as_deref(), Some("DPoP"));
        let one = answer(json!({"active": true, "aud": "r1"}))
            .expect("ok")
            .expect("active");
        assert_eq!(one.audience, ["r1"]);
    }

    #[test]
    fn inactive_expired_and_odd_answers() {
        assert!(answer(json!({"active": false})).expect("ok").is_none());
        assert!(answer(json!({"active": true, "exp": 1_000})).expect("ok").is_none());
        assert!(answer(json!({"active": "true"})).is_err());
        assert!(answer(json!({})).is_err());
        assert!(answer(json!({"active": true, "iss": "https://evil.example"})).is_err());
        assert!(answer(json!({"active": true, "aud": 7})).is_err());
    }

    #[test]
    fn the_secret_stays_out_of_debug() {
        let issuer = Issuer::new(
            ISS,
            "https://id.example.com/jwks.json",
            Some(URL),
            reqwest::Client::new(),
        )
        .expect("issuer");
        let i = Introspector::new(&issuer, "c1", "hunter2").expect("introspector");
        assert!(!format!("{i:?}").contains("hunter2"));
        let without =
            Issuer::new(ISS, "https://id.example.com/jwks.json", None, reqwest::Client::new()).expect("issuer");
        assert!(matches!(
            Introspector::new(&without, "c1", "x"),
            Err(Error::NoIntrospectionEndpoint)
        ));
    }
}
