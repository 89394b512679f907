//! [`Error`]: what can go wrong talking to the issuer (discovery, the JWKS,
//! introspection) or setting the relier up. A token that is refused is not
//! an error of this kind but a [`RejectReason`](crate::RejectReason).

use std::sync::Arc;

/// Talking to the issuer, or the configuration, went wrong. Cheap to clone,
/// so one failed fetch can answer every request that waited for it.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A URL given to us or published by the issuer does not parse, or has
    /// a query or fragment where none is allowed.
    #[error("{what} {url:?} is not a usable URL: {reason}")]
    InvalidUrl {
        what: &'static str,
        url: String,
        reason: String,
    },
    /// Plain http is only allowed on loopback (as the IdP itself requires).
    #[error("{what} {url} must use https (plain http only on loopback)")]
    Insecure { what: &'static str, url: String },
    /// The request did not complete: connection, TLS or timeout.
    #[error("cannot reach {url}: {}{}", chain(.source), tls_hint(.url, .source))]
    Http {
        url: String,
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// The issuer answered with an unexpected status.
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The answer is not what the specification says it should be.
    #[error("{url} answered with something unexpected: {reason}")]
    BadResponse { url: String, reason: String },
    /// The metadata names another issuer (OpenID Connect Discovery §4.3,
    /// RFC 8414 §3.3): the issuer URL is not the one the IdP is configured
    /// with, or the answer is not from it.
    #[error("the issuer's metadata names the issuer {found:?}, not {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    /// Introspection was asked for but the issuer publishes no endpoint.
    #[error("the issuer publishes no introspection endpoint")]
    NoIntrospectionEndpoint,
}

impl Error {
    pub(crate) fn http(url: &str, source: reqwest::Error) -> Self {
        Error::Http {
            url: url.to_owned(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn bad_response(url: &str, reason: impl std::fmt::Display) -> Self {
        Error::BadResponse {
            url: url.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The error and its causes, `: `-separated (reqwest's own message alone
/// says little: "error sending request").
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An https URL with a reqwest built without TLS fails with a message that
/// does not say why; say it.
fn tls_hint(url: &str, error: &reqwest::Error) -> &'static str {
    if url.starts_with("https:") && chain(error).contains("scheme is not http") {
        " (this reqwest has no TLS support: give reqwest a TLS feature in your Cargo.toml, e.g. \
         reqwest = { version = \"0.12\", features = [\"rustls-tls\"] })"
    } else {
        ""
    }
}
