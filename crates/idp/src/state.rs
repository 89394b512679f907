//! `AppState`: everything a handler needs, built once in `main` (or a test)
//! and passed in. No globals, so one process can run many servers.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_store::Store;
use url::Url;

use crate::keys::KeyRing;
use crate::mail::Mailer;
use crate::metrics::Metrics;

/// The IdP's settings, taken from the binary's configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The public base URL; links in mail and redirects are built on it.
    pub issuer: Url,
    /// `Secure` on cookies: true unless the issuer is plain http on loopback.
    pub secure_cookies: bool,
    /// An outbox message not delivered within this long after it was
    /// written is given up (dead-lettered).
    pub outbox_max_age: Duration,
    /// How long a back-channel logout token is valid (`exp` after `iat`);
    /// each delivery attempt sends one signed for it.
    pub logout_token_lifetime: Duration,
    /// How long reliers may cache the JWKS (`Cache-Control: max-age`); a
    /// rotated key signs only once every such cache has seen it.
    pub jwks_max_age: Duration,
}

impl Settings {
    pub fn new(issuer: Url) -> Self {
        let loopback_http = issuer.scheme() == "http"
            && match issuer.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
        Self {
            secure_cookies: !loopback_http,
            issuer,
            outbox_max_age: crate::outbox::DEFAULT_MAX_AGE,
            logout_token_lifetime: crate::outbox::DEFAULT_LOGOUT_TOKEN_LIFETIME,
            jwks_max_age: crate::keys::DEFAULT_JWKS_MAX_AGE,
        }
    }

    /// The issuer identifier as it appears in `iss` and discovery: the URL
    /// without a trailing slash.
    pub fn issuer_str(&self) -> &str {
        self.issuer.as_str().trim_end_matches('/')
    }

    /// An absolute URL on the issuer for `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer_str(), path)
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub mailer: Mailer,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    /// The signing keys (shared by every instance through the store).
    pub keys: KeyRing,
    /// Wakes the outbox worker when messages were written.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// What the use cases ([`crate::flows`]) need: the same store, keys,
    /// settings, metrics and wake-up as above.
    pub flows: crate::flows::Deps,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, mailer: Mailer, settings: Settings, keys: KeyRing) -> Self {
        let flows = crate::flows::Deps::new(store, keys, settings);
        Self {
            store: flows.store.clone(),
            mailer,
            settings: flows.settings.clone(),
            metrics: flows.metrics.clone(),
            keys: flows.keys.clone(),
            outbox_wake: flows.waker.clone(),
            flows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_cookies_except_plain_http_on_loopback() {
        let s = |u: &str| Settings::new(Url::parse(u).expect("url")).secure_cookies;
        assert!(!s("http://127.0.0.1:8080"));
        assert!(!s("http://localhost:8080"));
        assert!(!s("http://[::1]:8080"));
        assert!(s("https://127.0.0.1:8443"));
        assert!(s("https://id.example.com"));
        assert!(s("http://id.example.com"));
    }
}
