//! The relying-party side: send a person to the issuer to log in and take
//! them back (OpenID Connect Core 1.0 §3.1, the code flow with PKCE S256
//! and the RFC 9207 `iss` response parameter), and the token requests a
//! site makes for itself: narrowing a token (RFC 8693), client credentials,
//! refresh. The ID token is checked per OpenID Connect Core §3.1.3.7 with
//! the [`Verifier`]'s cached keys.

use std::fmt;
use std::sync::Arc;

use gatehouse_core::oauth::claims::at_hash;
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::pkce;
use gatehouse_core::protocol::ACCESS_TOKEN_TYPE;
use gatehouse_core::token::OpaqueToken;
use gatehouse_core::{Secret, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::introspect::basic_authorization;
use crate::issuer::{HTTP_TIMEOUT, read_body};
use crate::receiver::issuer_signed;
use crate::verifier::raw_header;
use crate::{Error, ReceiveError, Verifier};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// A site registered at the issuer as a client, logging people in and
/// asking for tokens. Cheap to clone.
#[derive(Clone)]
pub struct RelyingParty {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: Verifier,
    client_id: String,
    /// `client_secret_basic`; `None` for a public client.
    authorization: Option<Secret<String>>,
    redirect_uri: Url,
}

impl fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelyingParty")
            .field("client_id", &self.inner.client_id)
            .field("redirect_uri", &self.inner.redirect_uri.as_str())
            .finish_non_exhaustive()
    }
}

/// What to ask the issuer for when a person is sent there.
#[derive(Clone, Debug, Default)]
pub struct LoginRequest {
    /// Space-separated; `openid` is added if missing.
    pub scope: String,
    /// `none`, `login`, `consent` or `create`.
    pub prompt: Option<String>,
    /// Seconds since the person last typed their password; `0` asks again.
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
    /// RFC 8707 resource indicators.
    pub resources: Vec<String>,
}

/// What a site keeps between sending the person away and their return
/// (in its session, or in a short-lived cookie it protects). The values
/// are secrets of this one login attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    pub max_age: Option<u64>,
    /// When the person was sent (seconds since the epoch).
    pub started_at: i64,
}

/// A person who came back logged in.
#[derive(Clone, Debug)]
pub struct Login {
    /// The user's stable id (`sub`).
    pub subject: String,
    /// The issuer's session (`sid`): back-channel logout names it.
    pub sid: Option<String>,
    /// When the person last typed their password (`auth_time`).
    pub auth_time: Option<i64>,
    pub email: Option<String>,
    /// For `id_token_hint` at logout.
    pub id_token: String,
    pub tokens: Tokens,
}

/// A token endpoint's answer.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds since the epoch.
    pub expires_at: i64,
    pub scope: Option<String>,
}

/// Why a login or a token request failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The response does not answer the login this browser started (a
    /// different or missing `state`): start again.
    #[error("the response does not belong to this login")]
    State,
    /// The issuer answered the authorization request with an error
    /// (`login_required`, `access_denied`, ...).
    #[error("the issuer answered {error}{}", describe(.description))]
    Denied { error: String, description: Option<String> },
    /// The `iss` response parameter names another issuer, or is missing
    /// although the issuer promised it (RFC 9207 §2.4).
    #[error("the response does not come from the issuer")]
    WrongIssuer,
    /// The token endpoint refused the request.
    #[error("the token endpoint answered {error}{}", describe(.description))]
    Token { error: String, description: Option<String> },
    /// The ID token does not pass the checks.
    #[error("the ID token is refused: {0}")]
    IdToken(String),
    /// The issuer does not publish an endpoint we need.
    #[error("the issuer publishes no {0}")]
    NotSupported(&'static str),
    /// Talking to the issuer failed.
    #[error(transparent)]
    Issuer(#[from] Error),
}

/// Whose doing a failed login is, for the page a site shows: the browser's
/// callback (a 4xx: start again), a refusal by the issuer or the person
/// (a 4xx), or the issuer side (a 5xx: nothing the browser can fix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginFault {
    /// The callback does not complete the login this browser began:
    /// another `state`, an `iss` that is not the issuer's (RFC 9207), no
    /// code, or a code the issuer refused as `invalid_grant` (RFC 6749
    /// §5.2: used already, expired, issued for another redirect URI, or a
    /// PKCE verifier that does not match its challenge). 400.
    Callback,
    /// The issuer answered the authorization request with an error
    /// (`access_denied`, `login_required`, ...). 403.
    Denied,
    /// The issuer could not be reached, answered with an error status or
    /// with something unexpected (an ID token that fails its checks, no
    /// access token), does not offer an endpoint we need, or refused this
    /// client itself (`invalid_client`, `unauthorized_client`, ...). 502.
    Upstream,
}

impl LoginFault {
    /// The HTTP status a site answers the browser with.
    pub fn status(self) -> axum::http::StatusCode {
        match self {
            LoginFault::Callback => axum::http::StatusCode::BAD_REQUEST,
            LoginFault::Denied => axum::http::StatusCode::FORBIDDEN,
            LoginFault::Upstream => axum::http::StatusCode::BAD_GATEWAY,
        }
    }
}

impl LoginError {
    /// Whose doing this failure is (see [`LoginFault`]).
    pub fn fault(&self) -> LoginFault {
        match self {
            LoginError::State | LoginError::WrongIssuer => LoginFault::Callback,
            LoginError::Denied { error, .. } if error == "invalid_request" => LoginFault::Callback,
            LoginError::Denied { .. } => LoginFault::Denied,
            LoginError::Token { error, .. } if error == "invalid_grant" => LoginFault::Callback,
            LoginError::Token { .. } | LoginError::IdToken(_) | LoginError::NotSupported(_) | LoginError::Issuer(_) => {
                LoginFault::Upstream
            }
        }
    }
}

fn describe(description: &Option<String>) -> String {
    description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
}

impl RelyingParty {
    /// `verifier` is the issuer's (its audience does not matter here);
    /// `client_secret` is `None` for a public client.
    pub fn new(
        verifier: &Verifier,
        client_id: impl Into<String>,
        client_secret: Option<String>,
        redirect_uri: Url,
    ) -> Self {
        let client_id = client_id.into();
        let authorization = client_secret.map(|s| Secret::new(basic_authorization(&client_id, &s)));
        RelyingParty {
            inner: Arc::new(Inner {
                verifier: verifier.clone(),
                client_id,
                authorization,
                redirect_uri,
            }),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    pub fn redirect_uri(&self) -> &Url {
        &self.inner.redirect_uri
    }

    /// The URL to send the browser to, and what to keep until it returns.
    pub fn start(&self, request: &LoginRequest) -> Result<(Url, PendingLogin), LoginError> {
        let endpoint = self
            .inner
            .verifier
            .issuer()
            .login_endpoints()
            .authorization
            .clone()
            .ok_or(LoginError::NotSupported("authorization endpoint"))?;
        let pending = PendingLogin {
            state: OpaqueToken::generate().expose().to_owned(),
            nonce: OpaqueToken::generate().expose().to_owned(),
            code_verifier: OpaqueToken::generate().expose().to_owned(),
            max_age: request.max_age,
            started_at: Timestamp::now().0,
        };
        let mut scope: Vec<&str> = request.scope.split_whitespace().collect();
        if !scope.contains(&"openid") {
            scope.insert(0, "openid");
        }
        let mut url = endpoint;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.inner.client_id)
                .append_pair("redirect_uri", self.inner.redirect_uri.as_str())
                .append_pair("scope", &scope.join(" "))
                .append_pair("state", &pending.state)
                .append_pair("nonce", &pending.nonce)
                .append_pair("code_challenge", &pkce::s256(&pending.code_verifier))
                .append_pair("code_challenge_method", "S256");
            if let Some(prompt) = &request.prompt {
                query.append_pair("prompt", prompt);
            }
            if let Some(max_age) = request.max_age {
                query.append_pair("max_age", &max_age.to_string());
            }
            if let Some(hint) = &request.login_hint {
                query.append_pair("login_hint", hint);
            }
            for resource in &request.resources {
                query.append_pair("resource", resource);
            }
        }
        Ok((url, pending))
    }

    /// The browser came back to the redirect URI with `query`: checks it
    /// answers `pending`, redeems the code and verifies the ID token.
    pub async fn finish(&self, pending: &PendingLogin, query: &str) -> Result<Login, LoginError> {
        self.finish_at(pending, query, Timestamp::now()).await
    }

    /// [`RelyingParty::finish`] as of `now`.
    pub async fn finish_at(&self, pending: &PendingLogin, query: &str, now: Timestamp) -> Result<Login, LoginError> {
        let params = Params::parse(query);
        // RFC 6749 §10.12: the state binds the response to this browser.
        if params.one("state") != Some(pending.state.as_str()) {
            return Err(LoginError::State);
        }
        // RFC 9207 §2.4: before anything else, the response is the issuer's.
        let issuer = self.inner.verifier.issuer();
        match params.one("iss") {
            Some(iss) if iss != issuer.issuer() => return Err(LoginError::WrongIssuer),
            None if issuer.login_endpoints().iss_parameter => return Err(LoginError::WrongIssuer),
            _ => {}
        }
        if let Some(error) = params.one("error") {
            return Err(LoginError::Denied {
                error: error.to_owned(),
                description: params.one("error_description").map(str::to_owned),
            });
        }
        let code = params
            .one("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| LoginError::Denied {
                error: "invalid_request".into(),
                description: Some("the response has no code".into()),
            })?;
        let answer = self
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.inner.redirect_uri.as_str()),
                ("code_verifier", &pending.code_verifier),
            ])
            .await?;
        let id_token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| LoginError::IdToken("the token response has no id_token".into()))?
            .to_owned();
        let claims = self.verify_id_token(&id_token, pending, now).await?;
        let tokens = tokens(&answer, now)?;
        check_at_hash(&id_token, &claims, &tokens.access_token)?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        Ok(Login {
            subject: text("sub").unwrap_or_default(),
            sid: text("sid").filter(|s| !s.is_empty()),
            auth_time: claims.get("auth_time").and_then(Value::as_i64),
            email: text("email"),
            id_token,
            tokens,
        })
    }

    /// OpenID Connect Core §3.1.3.7 (and §2 for `auth_time`).
    async fn verify_id_token(
        &self,
        token: &str,
        pending: &PendingLogin,
        now: Timestamp,
    ) -> Result<Map<String, Value>, LoginError> {
        let verifier = &self.inner.verifier;
        let claims = issuer_signed(verifier, token, &["JWT"], false)
            .await
            .map_err(|e| match e {
                ReceiveError::Unavailable(e) => LoginError::Issuer(e),
                other => LoginError::IdToken(other.to_string()),
            })?;
        let refuse = |why: &str| Err(LoginError::IdToken(why.to_owned()));
        let client_id = self.inner.client_id.as_str();
        let audience: Vec<&str> = match claims.get("aud") {
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => return refuse("no aud"),
        };
        if !audience.contains(&client_id) {
            return refuse("not meant for this client");
        }
        let azp = claims.get("azp").and_then(Value::as_str);
        if (audience.len() > 1 || azp.is_some()) && azp != Some(client_id) {
            return refuse("azp is not this client");
        }
        let leeway = verifier.inner().leeway;
        let time = |name: &str| claims.get(name).and_then(Value::as_i64);
        match time("exp") {
            Some(exp) if now.0 <= exp.saturating_add(leeway) => {}
            Some(_) => return refuse("expired"),
            None => return refuse("no exp"),
        }
        match time("iat") {
            Some(iat) if iat <= now.0.saturating_add(leeway) => {}
            Some(_) => return refuse("issued in the future"),
            None => return refuse("no iat"),
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(pending.nonce.as_str()) {
            return refuse("the nonce is not this login's");
        }
        if claims.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
            return refuse("no sub");
        }
        // max_age asked: the password was typed within max_age seconds of
        // the request (max_age=0: after it was made).
        if let Some(max_age) = pending.max_age {
            let Some(auth_time) = time("auth_time") else {
                return refuse("no auth_time although max_age was asked");
            };
            let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
            let oldest = pending.started_at.saturating_sub(max_age).saturating_sub(leeway);
            if auth_time < oldest {
                return refuse("the authentication is older than max_age");
            }
        }
        Ok(claims)
    }

    /// RFC 8693: a new token for `audience` carrying `scope` (space-separated),
    /// made from `access_token`, which this client was issued.
    pub async fn narrow(&self, access_token: &str, scope: &str, audience: &str) -> Result<Tokens, LoginError> {
        let answer = self
            .token_request(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", access_token),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("requested_token_type", ACCESS_TOKEN_TYPE),
                ("scope", scope),
                ("audience", audience),
            ])
            .await?;
        tokens(&answer, Timestamp::now())
    }

    /// RFC 6749 §4.4: a token about this client itself.
    pub async fn client_credentials(&self, scope: Option<&str>, resource: Option<&str>) -> Result<Tokens, LoginError> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        let answer = self.token_request(&form).await?;
        tokens(&answer, Timestamp::now())
    }

    /// RFC 6749 §6: new tokens for a refresh token (which rotates: keep the
    /// new one).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, LoginError> {
        let answer = self
            .token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .await?;
        tokens(&answer, Timestamp::now())
    }

    /// OpenID Connect RP-Initiated Logout 1.0 §2: where to send the browser
    /// to log out at the issuer; `None` if the issuer offers no such endpoint.
    pub fn end_session_url(
        &self,
        id_token_hint: &str,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Option<Url> {
        let mut url = self.inner.verifier.issuer().login_endpoints().end_session.clone()?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("id_token_hint", id_token_hint)
                .append_pair("client_id", &self.inner.client_id);
            if let Some(uri) = post_logout_redirect_uri {
                query.append_pair("post_logout_redirect_uri", uri);
            }
            if let Some(state) = state {
                query.append_pair("state", state);
            }
        }
        Some(url)
    }

    /// POSTs a form to the token endpoint with this client's authentication;
    /// an RFC 6749 §5.2 error becomes [`LoginError::Token`].
    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Map<String, Value>, LoginError> {
        let endpoint = self
            .inner
            .verifier
            .issuer()
            .login_endpoints()
            .token
            .clone()
            .ok_or(LoginError::NotSupported("token endpoint"))?;
        let url = endpoint.as_str();
        let mut request = self
            .inner
            .verifier
            .issuer()
            .http()
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(HTTP_TIMEOUT);
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        match &self.inner.authorization {
            Some(basic) => request = request.header(reqwest::header::AUTHORIZATION, basic.expose()),
            None => fields.push(("client_id", &self.inner.client_id)),
        }
        let response = request.form(&fields).send().await.map_err(|e| Error::http(url, e))?;
        let status = response.status();
        let body = read_body(url, response).await?;
        let parsed: Option<Map<String, Value>> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return parsed.ok_or_else(|| Error::bad_response(url, "not a JSON object").into());
        }
        match parsed.as_ref().and_then(|b| b.get("error")).and_then(Value::as_str) {
            Some(error) => Err(LoginError::Token {
                error: error.to_owned(),
                description: parsed
                    .as_ref()
                    .and_then(|b| b.get("error_description"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }),
            None => Err(Error::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            }
            .into()),
        }
    }
}

/// OpenID Connect Core §3.1.3.8: an ID token's `at_hash`, when it has one,
/// is the left half of the hash (the one its signature algorithm uses) of
/// the access token that came with it; a token response whose access
/// token was swapped is refused.
fn check_at_hash(id_token: &str, claims: &Map<String, Value>, access_token: &str) -> Result<(), LoginError> {
    let Some(expected) = claims.get("at_hash") else {
        return Ok(());
    };
    let alg = raw_header(id_token).and_then(|h| h.get("alg").and_then(Value::as_str).and_then(SigningAlg::parse));
    match (expected.as_str(), alg) {
        (Some(expected), Some(alg)) if at_hash(access_token, alg) == expected => Ok(()),
        _ => Err(LoginError::IdToken("at_hash does not match the access token".into())),
    }
}

/// The tokens of a successful token response.
fn tokens(answer: &Map<String, Value>, now: Timestamp) -> Result<Tokens, LoginError> {
    let access_token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| LoginError::Token {
            error: "invalid_response".into(),
            description: Some("no access_token".into()),
        })?;
    let expires_in = answer.get("expires_in").and_then(Value::as_i64).unwrap_or(0);
    Ok(Tokens {
        access_token: access_token.to_owned(),
        refresh_token: answer.get("refresh_token").and_then(Value::as_str).map(str::to_owned),
        expires_at: now.0.saturating_add(expires_in),
        scope: answer.get("scope").and_then(Value::as_str).map(str::to_owned),
    })
}

/// A callback's query. A parameter given twice counts as absent (RFC 6749
/// §3.1: parameters must not be repeated).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Self {
        Params(url::form_urlencoded::parse(query.as_bytes()).into_owned().collect())
    }

    fn one(&self, name: &str) -> Option<&str> {
        let mut found = self.0.iter().filter(|(k, _)| k == name);
        match (found.next(), found.next()) {
            (Some((_, v)), None) => Some(v.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Issuer;

    fn rp() -> RelyingParty {
        let issuer = Issuer::new(
            "https://id.example.com",
            "https://id.example.com/jwks.json",
            None,
            reqwest::Client::new(),
        )
        .expect("issuer");
        let verifier = Verifier::new(issuer, "x");
        RelyingParty::new(
            &verifier,
            "shop",
            Some("s3cret".into()),
            "https://shop.example/cb".parse().expect("url"),
        )
    }

    #[test]
    fn repeated_parameters_count_as_absent() {
        let p = Params::parse("state=a&state=b&code=c");
        assert_eq!(p.one("state"), None);
        assert_eq!(p.one("code"), Some("c"));
    }

    #[test]
    fn an_issuer_without_discovery_cannot_start_a_login() {
        assert!(matches!(
            rp().start(&LoginRequest::default()),
            Err(LoginError::NotSupported("authorization endpoint"))
        ));
        assert!(rp().end_session_url("t", None, None).is_none());
    }

    #[tokio::test]
    async fn a_response_to_another_login_is_refused_before_any_request() {
        let pending = PendingLogin {
            state: "mine".into(),
            nonce: "n".into(),
            code_verifier: "v".into(),
            max_age: None,
            started_at: 0,
        };
        let rp = rp();
        assert!(matches!(
            rp.finish(&pending, "state=theirs&code=c").await,
            Err(LoginError::State)
        ));
        assert!(matches!(
            rp.finish(&pending, "state=mine&code=c&iss=https%3A%2F%2Fevil.example")
                .await,
            Err(LoginError::WrongIssuer)
        ));
        assert!(matches!(
            rp.finish(&pending, "state=mine&error=login_required&iss=https%3A%2F%2Fid.example.com")
                .await,
            Err(LoginError::Denied { error, .. }) if error == "login_required"
        ));
    }

    /// An unsigned stand-in for an ID token: only its header is read here
    /// (the signature was checked before).
    fn id_token_with_alg(alg: &str) -> String {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
        format!("{header}.e30.sig")
    }

    #[test]
    fn at_hash_must_match_the_access_token_when_present() {
        let claims = |at_hash: Option<String>| {
            let mut map = Map::new();
            if let Some(h) = at_hash {
                map.insert("at_hash".into(), Value::String(h));
            }
            map
        };
        for (name, alg) in [
            ("ES256", SigningAlg::ES256),
            ("EdDSA", SigningAlg::EdDSA),
            ("RS256", SigningAlg::RS256),
        ] {
            let id_token = id_token_with_alg(name);
            let good = claims(Some(at_hash("the access token", alg)));
            assert!(check_at_hash(&id_token, &good, "the access token").is_ok(), "{name}");
            assert!(
                matches!(
                    check_at_hash(&id_token, &good, "another token"),
                    Err(LoginError::IdToken(_))
                ),
                "{name}"
            );
        }
        // Hashed with the wrong algorithm's hash, or no readable algorithm.
        let es = claims(Some(at_hash("t", SigningAlg::ES256)));
        assert!(check_at_hash(&id_token_with_alg("EdDSA"), &es, "t").is_err());
        assert!(check_at_hash("garbage", &es, "t").is_err());
        // None at all: nothing to check (it is optional in the code flow).
        assert!(check_at_hash(&id_token_with_alg("ES256"), &claims(None), "t").is_ok());
    }

    #[test]
    fn failures_are_the_callbacks_the_refusals_or_the_issuers() {
        let token = |error: &str| LoginError::Token {
            error: error.into(),
            description: None,
        };
        let denied = |error: &str| LoginError::Denied {
            error: error.into(),
            description: None,
        };
        for (error, fault) in [
            (LoginError::State, LoginFault::Callback),
            (LoginError::WrongIssuer, LoginFault::Callback),
            (token("invalid_grant"), LoginFault::Callback),
            (denied("invalid_request"), LoginFault::Callback),
            (denied("access_denied"), LoginFault::Denied),
            (denied("login_required"), LoginFault::Denied),
            (token("invalid_client"), LoginFault::Upstream),
            (token("unauthorized_client"), LoginFault::Upstream),
            (LoginError::IdToken("expired".into()), LoginFault::Upstream),
            (LoginError::NotSupported("token endpoint"), LoginFault::Upstream),
            (
                LoginError::Issuer(Error::Status {
                    url: "https://id.example.com/token".into(),
                    status: 500,
                }),
                LoginFault::Upstream,
            ),
        ] {
            assert_eq!(error.fault(), fault, "{error:?}");
        }
        assert_eq!(LoginFault::Callback.status().as_u16(), 400);
        assert_eq!(LoginFault::Denied.status().as_u16(), 403);
        assert_eq!(LoginFault::Upstream.status().as_u16(), 502);
    }

    #[tokio::test]
    async fn an_issuer_without_a_token_endpoint_is_not_the_callbacks_fault() {
        let issuer = Issuer::new(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/jwks.json",
            None,
            reqwest::Client::new(),
        )
        .expect("issuer");
        let rp = RelyingParty::new(
            &Verifier::new(issuer, "x"),
            "shop",
            None,
            "https://shop.example/cb".parse().expect("url"),
        );
        let pending = PendingLogin {
            state: "s".into(),
            nonce: "n".into(),
            code_verifier: "v".into(),
            max_age: None,
            started_at: 0,
        };
        // No token endpoint known (no discovery): the issuer side.
        let error = rp
            .finish(&pending, "state=s&code=c")
            .await
            .expect_err("no token endpoint");
        assert_eq!(error.fault(), LoginFault::Upstream, "{error:?}");
    }

    #[test]
    fn the_secret_stays_out_of_debug() {
        assert!(!format!("{:?}", rp()).contains("s3cret"));
    }
}
