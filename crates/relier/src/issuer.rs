//! The issuer: where its keys and its introspection endpoint are, learnt by
//! discovery (OpenID Connect Discovery 1.0 §4, RFC 8414 §3), and the small
//! HTTP helpers the rest of the crate shares (timeouts, size limits).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::Error;

/// How long one request to the issuer may take.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer we read from the issuer: metadata, a JWKS and an
/// introspection answer are a few KiB.
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// The issuer this relier trusts: its identifier, its JWKS, its
/// introspection endpoint, and the HTTP client to reach them. Cheap to
/// clone.
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<IssuerInner>,
}

struct IssuerInner {
    issuer: String,
    jwks_uri: Url,
    introspection_endpoint: Option<Url>,
    login: LoginEndpoints,
    http: reqwest::Client,
}

/// Where a relying party sends people and redeems codes (learnt by
/// discovery; empty for an issuer made with [`Issuer::new`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct LoginEndpoints {
    pub(crate) authorization: Option<Url>,
    pub(crate) token: Option<Url>,
    pub(crate) end_session: Option<Url>,
    /// RFC 9207 §3: the issuer promises `iss` in every authorization response.
    pub(crate) iss_parameter: bool,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.inner.issuer)
            .field("jwks_uri", &self.inner.jwks_uri.as_str())
            .field(
                "introspection_endpoint",
                &self.inner.introspection_endpoint.as_ref().map(Url::as_str),
            )
            .finish()
    }
}

/// The part of the metadata we use.
#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    introspection_endpoint: Option<String>,
    #[serde(default)]
    authorization_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint: Option<String>,
    #[serde(default)]
    end_session_endpoint: Option<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

impl Issuer {
    /// Reads `<issuer>/.well-known/openid-configuration` and checks that it
    /// names `issuer` exactly (OpenID Connect Discovery §4.3): pass the
    /// issuer as the IdP spells it (`GATEHOUSE_ISSUER`, or the `iss` of its
    /// tokens). The issuer and its endpoints must be https, or plain http
    /// on loopback.
    pub async fn discover(issuer: &str, http: reqwest::Client) -> Result<Self, Error> {
        let base = endpoint("issuer", issuer)?;
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Error::InvalidUrl {
                what: "issuer",
                url: issuer.to_owned(),
                reason: "an issuer has no query or fragment".into(),
            });
        }
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let metadata: Metadata = get_json(&http, &url).await?;
        if metadata.issuer != issuer {
            return Err(Error::IssuerMismatch {
                expected: issuer.to_owned(),
                found: metadata.issuer,
            });
        }
        let optional = |what, url: &Option<String>| url.as_deref().map(|u| endpoint(what, u)).transpose();
        let login = LoginEndpoints {
            authorization: optional("authorization_endpoint", &metadata.authorization_endpoint)?,
            token: optional("token_endpoint", &metadata.token_endpoint)?,
            end_session: optional("end_session_endpoint", &metadata.end_session_endpoint)?,
            iss_parameter: metadata.authorization_response_iss_parameter_supported,
        };
        Self::build(
            issuer,
            &metadata.jwks_uri,
            metadata.introspection_endpoint.as_deref(),
            login,
            http,
        )
    }

    /// Without discovery: the issuer identifier and its endpoints as
    /// configured. The same rules apply (https, or http on loopback).
    pub fn new(
        issuer: &str,
        jwks_uri: &str,
        introspection_endpoint: Option<&str>,
        http: reqwest::Client,
    ) -> Result<Self, Error> {
        Self::build(
            issuer,
            jwks_uri,
            introspection_endpoint,
            LoginEndpoints::default(),
            http,
        )
    }

    fn build(
        issuer: &str,
        jwks_uri: &str,
        introspection_endpoint: Option<&str>,
        login: LoginEndpoints,
        http: reqwest::Client,
    ) -> Result<Self, Error> {
        endpoint("issuer", issuer)?;
        let jwks_uri = endpoint("jwks_uri", jwks_uri)?;
        let introspection_endpoint = introspection_endpoint
            .map(|u| endpoint("introspection_endpoint", u))
            .transpose()?;
        Ok(Issuer {
            inner: Arc::new(IssuerInner {
                issuer: issuer.to_owned(),
                jwks_uri,
                introspection_endpoint,
                login,
                http,
            }),
        })
    }

    /// The issuer identifier: what `iss` must equal.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn jwks_uri(&self) -> &Url {
        &self.inner.jwks_uri
    }

    pub fn introspection_endpoint(&self) -> Option<&Url> {
        self.inner.introspection_endpoint.as_ref()
    }

    pub(crate) fn login_endpoints(&self) -> &LoginEndpoints {
        &self.inner.login
    }

    /// The client every request to the issuer goes through.
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }
}

/// Parses an endpoint and checks its scheme: https, or http on loopback.
fn endpoint(what: &'static str, url: &str) -> Result<Url, Error> {
    let parsed = Url::parse(url).map_err(|e| Error::InvalidUrl {
        what,
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        "http" => Err(Error::Insecure {
            what,
            url: url.to_owned(),
        }),
        other => Err(Error::InvalidUrl {
            what,
            url: url.to_owned(),
            reason: format!("the scheme {other} is not http(s)"),
        }),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// GET a JSON document.
pub(crate) async fn get_json<T: DeserializeOwned>(http: &reqwest::Client, url: &str) -> Result<T, Error> {
    let response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(HTTP_TIMEOUT)
        .send()
        .await
        .map_err(|e| Error::http(url, e))?;
    read_json(url, response).await
}

/// A JSON answer: a success status, at most [`MAX_BODY`] bytes.
pub(crate) async fn read_json<T: DeserializeOwned>(url: &str, response: reqwest::Response) -> Result<T, Error> {
    let status = response.status();
    if !status.is_success() {
        return Err(Error::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let body = read_body(url, response).await?;
    serde_json::from_slice(&body).map_err(|e| Error::bad_response(url, e))
}

/// The body of an answer, whatever its status, at most [`MAX_BODY`] bytes.
pub(crate) async fn read_body(url: &str, mut response: reqwest::Response) -> Result<Vec<u8>, Error> {
    if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(Error::bad_response(url, "the answer is too large"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| Error::http(url, e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Error::bad_response(url, "the answer is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        assert!(endpoint("x", "https://id.example.com").is_ok());
        assert!(endpoint("x", "http://127.0.0.1:8080").is_ok());
        assert!(endpoint("x", "http://127.7.0.1/").is_ok());
        assert!(endpoint("x", "http://localhost:1/jwks.json").is_ok());
        assert!(endpoint("x", "http://[::1]:1").is_ok());
        assert!(matches!(
            endpoint("x", "http://id.example.com"),
            Err(Error::Insecure { .. })
        ));
        assert!(matches!(endpoint("x", "http://10.0.0.1"), Err(Error::Insecure { .. })));
        assert!(matches!(
            endpoint("x", "ftp://id.example.com"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(endpoint("x", "not a url"), Err(Error::InvalidUrl { .. })));
    }

    #[test]
    fn new_checks_every_endpoint() {
        let http = reqwest::Client::new();
        let issuer = Issuer::new(
            "https://id.example.com",
            "https://id.example.com/jwks.json",
            Some("https://id.example.com/introspect"),
            http.clone(),
        )
        .expect("issuer");
        assert_eq!(issuer.issuer(), "https://id.example.com");
        assert_eq!(issuer.jwks_uri().as_str(), "https://id.example.com/jwks.json");
        assert!(issuer.introspection_endpoint().is_some());
        assert!(format!("{issuer:?}").contains("jwks.json"));
        assert!(matches!(
            Issuer::new(
                "https://id.example.com",
                "http://keys.example.com/jwks.json",
                None,
                http
            ),
            Err(Error::Insecure { what: "jwks_uri", .. })
        ));
    }
}
