//! Delivering an `OAuthError`: the RFC 6749 §5.2 JSON body (token,
//! introspection, revocation), a redirect to the client with the error in
//! the query (authorization endpoint, once the redirect URI is trusted), an
//! error page (when it cannot be trusted), or a `WWW-Authenticate` challenge
//! (RFC 6750 §3 and RFC 9449 §7.1, protected resources).

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use gatehouse_core::oauth::{ErrorCode, OAuthError};

use crate::pages::render::error_page;

fn log(e: &OAuthError) {
    match (&e.code, &e.cause) {
        (ErrorCode::ServerError, cause) => tracing::error!(error = %e, cause = ?cause, "oauth request failed"),
        (_, Some(cause)) => tracing::debug!(error = %e, cause, "oauth request refused"),
        _ => tracing::debug!(error = %e, "oauth request refused"),
    }
}

/// An internal failure as an OAuth error: `server_error` to the client,
/// the cause to the log.
pub fn internal(cause: impl std::fmt::Display) -> OAuthError {
    OAuthError::server_error().with_cause(cause)
}

/// Headers every token-endpoint-like response carries (RFC 6749 §5.1).
pub fn no_store(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The JSON error body with the status RFC 6749 §5.2 gives it. An
/// `invalid_client` is a 401 with a `Basic` challenge for a client that
/// sent the `Authorization` header (or no credentials at all: the challenge
/// says how to send them); one that authenticated in the body
/// (`client_secret_post`, or a public client's `client_id`) gets a 400, as
/// the header is for clients that tried it.
pub fn json_error_to(headers: &HeaderMap, body: &[u8], e: &OAuthError) -> Response {
    let challenge = e.code == ErrorCode::InvalidClient && !super::client_auth::authenticated_in_body(headers, body);
    let mut response = json_error(e);
    if challenge {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gatehouse\""),
        );
    }
    response
}

/// The JSON error body with the status RFC 6749 §5.2 gives it (see
/// [`json_error_to`] for `invalid_client` at the endpoints clients
/// authenticate to).
pub fn json_error(e: &OAuthError) -> Response {
    log(e);
    let status = match e.code {
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let response = (
        status,
        Json(json!({ "error": e.code.as_str(), "error_description": e.description })),
    )
        .into_response();
    no_store(response)
}

/// A redirect to `redirect_uri` with `params` added to its query.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            no_store(Redirect::to(url.as_str()).into_response())
        }
        Err(_) => error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in request cannot be completed",
            "The site's address is malformed.",
        ),
    }
}

/// RFC 6749 §4.1.2.1 plus RFC 9207's `iss`.
pub fn redirect_error(redirect_uri: &str, state: Option<&str>, issuer: &str, e: &OAuthError) -> Response {
    log(e);
    let mut params = vec![
        ("error", e.code.as_str()),
        ("error_description", e.description.as_str()),
    ];
    if let Some(state) = state {
        params.push(("state", state));
    }
    params.push(("iss", issuer));
    redirect_with(redirect_uri, &params)
}

/// The page shown when the client or redirect URI cannot be trusted.
pub fn page_error(e: &OAuthError) -> Response {
    log(e);
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-in request cannot be completed",
        &format!(
            "The site that sent you here made a request we cannot accept ({}: {}). Go back to the site and try again.",
            e.code, e.description
        ),
    )
}

/// The authentication scheme of a protected resource's challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// RFC 6750 §3: `Bearer realm="gatehouse"`.
    Bearer,
    /// RFC 9449 §7.1: `DPoP algs="ES256 EdDSA Ed25519 RS256"`.
    Dpop,
}

impl Scheme {
    fn challenge(self) -> String {
        match self {
            Scheme::Bearer => "Bearer realm=\"gatehouse\"".to_owned(),
            Scheme::Dpop => format!("DPoP algs=\"{}\"", super::dpop::algs()),
        }
    }
}

/// RFC 6750 §3: a 401 (or 403 for `insufficient_scope`) with the challenge.
/// A request with no token at all gets the challenge without an error code.
pub fn bearer_challenge(e: Option<&OAuthError>) -> Response {
    challenge(Scheme::Bearer, e)
}

/// A `WWW-Authenticate` challenge in `scheme` (RFC 6750 §3, RFC 9449 §7.1):
/// 401, or 403 for `insufficient_scope`, 400 for `invalid_request`, 500 for
/// `server_error`. Without an error (no token at all) the challenge has no
/// error code.
pub fn challenge(scheme: Scheme, e: Option<&OAuthError>) -> Response {
    let (status, value) = match e {
        None => (StatusCode::UNAUTHORIZED, scheme.challenge()),
        Some(e) => {
            log(e);
            let status = match e.code {
                ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
                ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
                ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNAUTHORIZED,
            };
            let description = e.description.replace(['"', '\\'], "'");
            (
                status,
                format!(
                    "{}, error=\"{}\", error_description=\"{description}\"",
                    scheme.challenge(),
                    e.code
                ),
            )
        }
    };
    let mut response = status.into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    no_store(response)
}

/// A request to a resource that takes both schemes, without a token: one
/// challenge for each (RFC 9449 §7.2).
pub fn both_challenges() -> Response {
    let mut response = challenge(Scheme::Bearer, None);
    if let Ok(v) = HeaderValue::from_str(&Scheme::Dpop.challenge()) {
        response.headers_mut().append(header::WWW_AUTHENTICATE, v);
    }
    response
}
