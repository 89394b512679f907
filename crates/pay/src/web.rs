//! The plumbing the handlers share: the state, the payments session cookie
//! and CSRF tokens, security headers, and errors turned into JSON or pages.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::{OpaqueToken, Secret, Timestamp, TokenDigest};
use gatehouse_relier::{Introspector, Receiver, RelyingParty, Verifier};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::funding::FundingSource;
use crate::keys::{KeyError, PayKeys};
use crate::pages::render::error_page;
use crate::store::{PaySession, PayStore, PayStoreError};

/// The payments session cookie.
pub const SESSION_COOKIE: &str = "gatehouse_pay_session";
/// The cookie that binds a login at the IdP to this browser.
pub const LOGIN_COOKIE: &str = "gatehouse_pay_login";
/// How long a payments session lasts.
pub const SESSION_LIFETIME: i64 = 12 * 60 * 60;
/// How long a login at the IdP may take.
pub const LOGIN_LIFETIME: i64 = 10 * 60;
/// The largest request body.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct PayState(pub Arc<Inner>);

pub struct Inner {
    /// The public URL without a trailing slash: also the payments audience
    /// and the `iss` of what this service signs.
    pub audience: String,
    pub store: Arc<dyn PayStore>,
    pub keys: PayKeys,
    pub csrf_key: Secret<[u8; 32]>,
    /// Access tokens for the payments audience, introspected.
    pub verifier: Verifier,
    /// For admin tokens (any audience).
    pub introspector: Introspector,
    /// Back-channel logout tokens and security events from the IdP.
    pub receiver: Receiver,
    pub rp: RelyingParty,
    pub secure_cookies: bool,
    /// Seconds the IdP's word on a buyer holds ([`crate::PayConfig::standing_max_age`]).
    pub standing_max_age: i64,
    pub outbox_wake: Notify,
    pub funding: Arc<dyn FundingSource>,
    pub metrics: crate::metrics::PayMetrics,
}

impl std::ops::Deref for PayState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl PayState {
    /// An absolute URL of this service.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.audience, path)
    }

    /// The CSRF token of a session: HMAC-SHA256 of its digest under a key
    /// derived from the service secret.
    pub fn csrf_token(&self, session: &TokenDigest) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.csrf_key.expose()) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(session.as_str().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    pub fn csrf_ok(&self, session: &TokenDigest, submitted: &str) -> bool {
        let expected = self.csrf_token(session);
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
    }

    /// A `Set-Cookie` value with our flags.
    pub fn cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
    }

    /// The payments session cookie: sent in a merchant's frame too
    /// ([`session_cookie_attributes`]).
    pub fn session_cookie(&self, value: &str, max_age: i64) -> String {
        let attributes = session_cookie_attributes(self.secure_cookies);
        format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; Max-Age={max_age}{attributes}")
    }

    /// The payments session the request carries, if any.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Option<(TokenDigest, PaySession)>, PageError> {
        let Some(token) = cookie_value(headers, SESSION_COOKIE).and_then(|v| OpaqueToken::parse(&v)) else {
            return Ok(None);
        };
        let digest = token.digest();
        Ok(self
            .store
            .session(digest.as_str(), Timestamp::now())
            .await?
            .map(|s| (digest, s)))
    }

    /// Starts a payments session for `sub` (from the IdP session `sid`, when
    /// a login made it): the cookie to set.
    pub async fn start_session(
        &self,
        sub: &str,
        sid: Option<&str>,
        vouched_at: Timestamp,
    ) -> Result<(TokenDigest, String), PageError> {
        let token = OpaqueToken::generate();
        let now = Timestamp::now();
        self.store
            .create_session(
                token.digest().as_str(),
                sub,
                sid,
                vouched_at,
                now,
                now.plus(SESSION_LIFETIME),
            )
            .await?;
        Ok((token.digest(), self.session_cookie(token.expose(), SESSION_LIFETIME)))
    }
}

/// The payments session cookie's attributes beyond `Path`, `HttpOnly` and
/// `Max-Age`. A purchase page framed on a merchant's site is a third-party
/// context, where only a `SameSite=None` cookie is sent, and browsers take
/// `SameSite=None` only with `Secure`. On https the cookie is also
/// `Partitioned` (CHIPS): a browser that blocks third-party cookies keeps
/// it for the frame, keyed to the merchant's site. On plain-http loopback
/// (the demo, the tests) it is `SameSite=None; Secure` without
/// `Partitioned`: Chromium treats `http://localhost` and `http://127.0.0.1`
/// as secure contexts and keeps `Secure` cookies from them, and sends the
/// cookie in a frame while third-party cookies are allowed (its default);
/// when they are blocked the frame has no session and the page offers the
/// popup or full-page fallback (README, "Checkout in the merchant's page").
pub fn session_cookie_attributes(https: bool) -> &'static str {
    if https {
        "; SameSite=None; Secure; Partitioned"
    } else {
        "; SameSite=None; Secure"
    }
}

/// A cookie's value from the request.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The CSP of the purchase pages: framed only by the merchants' origins.
pub fn csp_for_merchants(origins: &[String]) -> String {
    let allowed: Vec<&str> = origins.iter().map(String::as_str).filter(|o| is_origin(o)).collect();
    let ancestors = if allowed.is_empty() {
        "'none'".to_owned()
    } else {
        allowed.join(" ")
    };
    gatehouse_kit::headers::csp_framed_by(&ancestors)
}

/// `http(s)://host[:port]` and nothing else (no path, no quotes, no
/// spaces), so an origin cannot add a directive to the header.
pub fn is_origin(s: &str) -> bool {
    match url::Url::parse(s) {
        Ok(u) => {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && s.trim_end_matches('/') == u.origin().ascii_serialization()
        }
        Err(_) => false,
    }
}

/// A 303 to `location`.
pub fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => PageError::Internal("a redirect to an unusable URL".into()).into_response(),
    }
}

/// A new id for a log line a 500 page shows.
fn correlation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A page's failure.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// A page with this status, heading and text.
    #[error("{heading}")]
    Page {
        status: StatusCode,
        heading: &'static str,
        text: String,
    },
    #[error("internal: {0}")]
    Internal(String),
}

impl PageError {
    pub fn page(status: StatusCode, heading: &'static str, text: impl Into<String>) -> Self {
        PageError::Page {
            status,
            heading,
            text: text.into(),
        }
    }

    pub fn not_found() -> Self {
        Self::page(StatusCode::NOT_FOUND, "Not found", "There is no such purchase.")
    }

    pub fn csrf() -> Self {
        Self::page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form is out of date. Go back, reload the page and try again.",
        )
    }
}

impl From<PayStoreError> for PageError {
    fn from(e: PayStoreError) -> Self {
        PageError::Internal(e.to_string())
    }
}

impl From<KeyError> for PageError {
    fn from(e: KeyError) -> Self {
        PageError::Internal(e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Page { status, heading, text } => error_page(status, heading, &text),
            PageError::Internal(cause) => {
                let id = correlation_id();
                tracing::error!(correlation_id = %id, %cause, "payments: server error");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    &format!("Please try again later. (Error id {id}.)"),
                )
            }
        }
    }
}

/// A JSON API failure: `{"error", "error_description"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    /// `WWW-Authenticate: Bearer ...` (401 for the caller's own token).
    pub challenge: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            challenge: false,
        }
    }

    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self {
            challenge: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the identity provider cannot be reached; try again",
        )
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let id = correlation_id();
        tracing::error!(correlation_id = %id, %cause, "payments API: server error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("internal error (id {id})"),
        )
    }
}

impl From<PayStoreError> for ApiError {
    fn from(e: PayStoreError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "error_description": self.description });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.challenge {
            let description = self.description.replace(['"', '\\'], "'");
            let value = format!(r#"Bearer error="{}", error_description="{description}""#, self.code);
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        response
    }
}

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_cannot_inject_directives() {
        assert!(is_origin("http://127.0.0.1:8082"));
        assert!(is_origin("https://shop.example"));
        assert!(!is_origin("https://shop.example/path"));
        assert!(!is_origin("https://shop.example; script-src *"));
        assert!(!is_origin("'self'"));
        assert_eq!(
            csp_for_merchants(&["http://a.example".into(), "junk; x".into()]),
            "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors http://a.example"
        );
        assert!(csp_for_merchants(&[]).ends_with("frame-ancestors 'none'"));
    }

    #[test]
    fn the_session_cookie_works_in_a_merchants_frame() {
        assert_eq!(session_cookie_attributes(true), "; SameSite=None; Secure; Partitioned");
        assert_eq!(session_cookie_attributes(false), "; SameSite=None; Secure");
    }

    #[test]
    fn cookies_are_found() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; gatehouse_pay_session=xyz; b=2"),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie_value(&h, "c"), None);
    }
}
