//! Verifying a JWT access token (RFC 9068 §4) locally, against the issuer's
//! JWKS: the [`Verifier`], what it yields ([`VerifiedToken`]) and why it
//! refuses ([`RejectReason`]).
//!
//! The JWKS is fetched on first use and kept. A token whose `kid` is not in
//! it makes the verifier fetch the set again (the issuer rotated its keys),
//! but fetches start at least [`VerifierBuilder::jwks_refetch_interval`]
//! apart, so tokens with made-up kids cannot turn into a flood of requests
//! to the issuer: a request that finds its kid unknown just after a fetch
//! waits for the next one instead of failing. A set older than
//! [`VerifierBuilder::jwks_max_age`] is refreshed in the background, so a
//! key the issuer withdrew stops verifying; if the issuer cannot be reached
//! the keys already known keep working.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use serde_json::Value;
use tokio::time::Instant;

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::Scopes;
use gatehouse_core::oauth::claims::AccessTokenClaims;
use gatehouse_core::protocol::{ACCESS_TOKEN_MEDIA_TYPE, ACCESS_TOKEN_TYP};

use crate::dpop::ReplayCache;
use crate::introspect::Introspector;
use crate::issuer::get_json;
use crate::jwks::{self, Keys, PublicKey};
use crate::{Error, Issuer};

/// The signature algorithms we accept, as the issuer signs (and as a
/// `WWW-Authenticate: DPoP algs=...` lists them).
pub const ACCEPTED_ALGS: [&str; 3] = ["ES256", "EdDSA", "RS256"];

/// Longer tokens are refused unread (ours are well under 2 KiB).
pub const MAX_TOKEN_LEN: usize = 8192;

/// Default tolerance for clocks, in seconds, on `exp`, `iat` and `nbf`.
pub const DEFAULT_LEEWAY: i64 = 30;

/// Default shortest time between two fetches of the JWKS.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// Default age after which the JWKS is fetched again (the issuer serves it
/// with `max-age=300`).
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// Why a token was refused. Each becomes `error="invalid_token"` with its
/// [`description`](RejectReason::description) in the challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not a JWS, too long, a header or claims we cannot read, a claim
    /// missing (RFC 9068 §2.2), or a critical header we do not know.
    #[error("the access token is malformed")]
    Malformed,
    /// The header's `typ` is not `at+jwt` (RFC 9068 §4): e.g. an ID token.
    #[error("not an access token (typ must be at+jwt)")]
    NotAnAccessToken,
    /// An algorithm other than ES256, EdDSA and RS256 (`none`, HMAC...), or
    /// not the algorithm of the key the `kid` names.
    #[error("the signature algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// The `kid` is not in the issuer's JWKS, even fetched again.
    #[error("signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("issued by another issuer")]
    WrongIssuer,
    /// `aud` does not name this resource.
    #[error("the access token is not meant for this resource")]
    WrongAudience,
    #[error("the access token has expired")]
    Expired,
    /// `iat` or `nbf` in the future (beyond the leeway).
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// Introspection says the token is not active: revoked, its grant
    /// revoked, or its user gone.
    #[error("the access token is not active")]
    Inactive,
    /// Bound to a DPoP key (`cnf.jkt`) but presented as a bearer token
    /// (RFC 9449 §7.2).
    #[error("the access token is bound to a DPoP key: use the DPoP scheme with a proof")]
    DpopBound,
    /// Presented with the DPoP scheme but not bound to a key.
    #[error("the access token is not bound to a DPoP key: use the Bearer scheme")]
    NotDpopBound,
    /// The proof is signed by another key than the one the token is bound to
    /// (RFC 9449 §7.1).
    #[error("the DPoP proof is not signed by the key the access token is bound to")]
    DpopKeyMismatch,
    /// A confirmation (`cnf`) we cannot check, e.g. a certificate binding
    /// (RFC 8705): accepting it as a bearer token would drop the binding.
    #[error("the access token is bound in a way this resource cannot check")]
    UnsupportedBinding,
}

impl RejectReason {
    /// Text for `error_description`: short, and only characters RFC 6750
    /// §3 allows there.
    pub fn description(self) -> String {
        self.to_string()
    }
}

/// Why [`Verifier::verify`] gave no token.
#[derive(Clone, Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token is not acceptable: answer 401 `invalid_token`.
    #[error("token rejected: {0}")]
    Rejected(#[from] RejectReason),
    /// The issuer's keys (or its introspection endpoint) could not be had:
    /// not the token's fault, answer 503.
    #[error("cannot check the token now: {0}")]
    Unavailable(Error),
}

/// An access token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`: the user; for client credentials, the relier itself.
    pub subject: String,
    /// `client_id`: the relier the token was issued to.
    pub client_id: String,
    pub scopes: Scopes,
    /// `aud`, as a list.
    pub audience: Vec<String>,
    pub expires_at: Timestamp,
    /// `cnf.jkt`: the thumbprint of the DPoP key the token is bound to.
    pub jkt: Option<String>,
    /// Everything the token says.
    pub claims: AccessTokenClaims,
}

impl VerifiedToken {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// Checks that `token` carries `scope`; the error names the scope, for a
/// 403 `insufficient_scope` answer (RFC 6750 §3.1).
pub fn require_scope(token: &VerifiedToken, scope: &str) -> Result<(), MissingScope> {
    if token.has_scope(scope) {
        Ok(())
    } else {
        Err(MissingScope(scope.to_owned()))
    }
}

/// The scope a token lacks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the access token lacks the scope {0}")]
pub struct MissingScope(pub String);

/// Verifies access tokens for one resource (audience) of one issuer.
/// Cheap to clone: clones share the cached keys. Put one in your axum
/// state and [`Authenticated`](crate::Authenticated) finds it there.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) issuer: Issuer,
    pub(crate) audience: String,
    pub(crate) leeway: i64,
    refetch_interval: Duration,
    max_age: Duration,
    pub(crate) realm: Option<String>,
    pub(crate) public_url: Option<url::Url>,
    introspector: Option<Introspector>,
    pub(crate) replay: ReplayCache,
    cache: RwLock<Arc<Cache>>,
    fetch: tokio::sync::Mutex<FetchState>,
    background: AtomicBool,
}

/// The keys as last fetched.
#[derive(Default)]
struct Cache {
    keys: Keys,
    fetched_at: Option<Instant>,
}

/// The fetches so far: one at a time, and how the last one went.
#[derive(Default)]
struct FetchState {
    last_started: Option<Instant>,
    last_result: Option<Result<(), Error>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer.issuer())
            .field("audience", &self.inner.audience)
            .field("cached_kids", &self.cached_kids())
            .finish_non_exhaustive()
    }
}

/// Settings of a [`Verifier`]; [`Verifier::builder`] makes one.
#[derive(Debug)]
#[must_use]
pub struct VerifierBuilder {
    issuer: Issuer,
    audience: String,
    leeway: i64,
    refetch_interval: Duration,
    max_age: Duration,
    realm: Option<String>,
    public_url: Option<url::Url>,
    introspector: Option<Introspector>,
    replay_capacity: usize,
}

impl VerifierBuilder {
    /// Tolerance for clocks on `exp`, `iat` and `nbf`, in seconds (default
    /// [`DEFAULT_LEEWAY`]).
    pub fn leeway(mut self, seconds: u32) -> Self {
        self.leeway = i64::from(seconds);
        self
    }

    /// The shortest time between two fetches of the JWKS (default
    /// [`DEFAULT_JWKS_REFETCH_INTERVAL`]).
    pub fn jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// How old the cached JWKS may grow before it is fetched again in the
    /// background (default [`DEFAULT_JWKS_MAX_AGE`]).
    pub fn jwks_max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// The `realm` of the `WWW-Authenticate` challenges (RFC 6750 §3).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The public URL of this resource server, as clients call it (behind a
    /// proxy: the proxy's), e.g. `https://api.example.com/payments`. The
    /// request's path is appended to it to check a DPoP proof's `htu`
    /// (RFC 9449 §4.3): it is never guessed from the `Host` header. Setting
    /// it turns DPoP on; without it, DPoP-bound tokens are refused. A query
    /// or fragment is dropped.
    pub fn public_url(mut self, mut url: url::Url) -> Self {
        url.set_query(None);
        url.set_fragment(None);
        self.public_url = Some(url);
        self
    }

    /// Also ask the issuer's introspection endpoint about every token that
    /// verifies locally, so that a revocation takes effect at once (local
    /// verification cannot see one). Costs a request to the issuer per
    /// request served.
    pub fn introspection(mut self, introspector: Introspector) -> Self {
        self.introspector = Some(introspector);
        self
    }

    /// How many DPoP proofs the replay cache remembers at most (default
    /// [`crate::dpop::DEFAULT_REPLAY_CAPACITY`]); when it is full of proofs
    /// not yet expired, new ones are refused with 503.
    pub fn dpop_replay_capacity(mut self, capacity: usize) -> Self {
        self.replay_capacity = capacity;
        self
    }

    pub fn build(self) -> Verifier {
        Verifier {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                audience: self.audience,
                leeway: self.leeway,
                refetch_interval: self.refetch_interval,
                max_age: self.max_age,
                realm: self.realm,
                public_url: self.public_url,
                introspector: self.introspector,
                replay: ReplayCache::new(self.replay_capacity),
                cache: RwLock::new(Arc::new(Cache::default())),
                fetch: tokio::sync::Mutex::new(FetchState::default()),
                background: AtomicBool::new(false),
            }),
        }
    }
}

impl Verifier {
    /// A verifier of `issuer`'s access tokens meant for `audience` (this
    /// resource's identifier: its URL as a resource indicator, or the
    /// client id tokens name in `aud`), with the default settings.
    pub fn new(issuer: Issuer, audience: impl Into<String>) -> Self {
        Self::builder(issuer, audience).build()
    }

    pub fn builder(issuer: Issuer, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer,
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            refetch_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
            max_age: DEFAULT_JWKS_MAX_AGE,
            realm: None,
            public_url: None,
            introspector: None,
            replay_capacity: crate::dpop::DEFAULT_REPLAY_CAPACITY,
        }
    }

    pub fn issuer(&self) -> &Issuer {
        &self.inner.issuer
    }

    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Fetches the JWKS now (e.g. at start-up, to fail early if the issuer
    /// cannot be reached). Subject to the refetch interval.
    pub async fn prefetch_keys(&self) -> Result<(), Error> {
        self.fetch_after(Instant::now(), None).await
    }

    /// The kids of the keys cached now, sorted.
    pub fn cached_kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.cache().keys.keys().cloned().collect();
        kids.sort();
        kids
    }

    /// Verifies an access token now. See [`Verifier::verify_at`].
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        self.verify_at(token, Timestamp::now()).await
    }

    /// Verifies an access token as of `now`: `typ` is `at+jwt`, the
    /// signature is by the issuer's key the `kid` names with that key's
    /// algorithm (ES256, EdDSA or RS256), `iss` is the issuer, `aud` names
    /// this resource, `exp` has not passed, `iat` and `nbf` have (all with
    /// the leeway), and, if introspection is on, the issuer says it is
    /// active. It does not look at DPoP: a token with `cnf.jkt` must come
    /// with a proof, which [`Verifier::authenticate`](crate::Verifier::authenticate)
    /// checks.
    pub async fn verify_at(&self, token: &str, now: Timestamp) -> Result<VerifiedToken, VerifyError> {
        let verified = self.verify_locally(token, now).await?;
        if let Some(introspector) = &self.inner.introspector {
            match introspector.introspect(token).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err(RejectReason::Inactive.into()),
                Err(e) => return Err(VerifyError::Unavailable(e)),
            }
        }
        Ok(verified)
    }

    async fn verify_locally(&self, token: &str, now: Timestamp) -> Result<VerifiedToken, VerifyError> {
        use RejectReason::*;
        if token.len() > MAX_TOKEN_LEN || token.split('.').count() != 3 {
            return Err(Malformed.into());
        }
        // Read `alg` ourselves first: jsonwebtoken cannot parse a header
        // naming an algorithm it does not know (`none`), and we would call
        // that malformed rather than what it is.
        let raw_alg = raw_header(token)
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
            .ok_or(Malformed)?;
        if !ACCEPTED_ALGS.contains(&raw_alg.as_str()) {
            return Err(UnsupportedAlgorithm.into());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Malformed)?;
        if header.crit.is_some() {
            return Err(Malformed.into());
        }
        let typ = header.typ.as_deref().unwrap_or_default();
        if !typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) && !typ.eq_ignore_ascii_case(ACCESS_TOKEN_MEDIA_TYPE) {
            return Err(NotAnAccessToken.into());
        }
        let kid = header.kid.as_deref().filter(|k| !k.is_empty()).ok_or(Malformed)?;
        let key = self.key(kid).await?;
        if header.alg != key.alg {
            return Err(UnsupportedAlgorithm.into());
        }
        let mut validation = Validation::new(key.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation).map_err(|e| match e.kind() {
            JwtErrorKind::InvalidSignature => BadSignature,
            JwtErrorKind::InvalidAlgorithm => UnsupportedAlgorithm,
            _ => Malformed,
        })?;
        let leeway = self.inner.leeway;
        if let Some(nbf) = data.claims.get("nbf") {
            let nbf = nbf.as_i64().ok_or(Malformed)?;
            if nbf > now.0.saturating_add(leeway) {
                return Err(NotYetValid.into());
            }
        }
        let claims: AccessTokenClaims = serde_json::from_value(data.claims).map_err(|_| Malformed)?;
        if claims.iss != self.inner.issuer.issuer() {
            return Err(WrongIssuer.into());
        }
        if !claims.aud.contains(&self.inner.audience) {
            return Err(WrongAudience.into());
        }
        if now.0 > claims.exp.saturating_add(leeway) {
            return Err(Expired.into());
        }
        if claims.iat > now.0.saturating_add(leeway) {
            return Err(NotYetValid.into());
        }
        let scopes = Scopes::parse(&claims.scope).map_err(|_| Malformed)?;
        let jkt = match &claims.cnf {
            None => None,
            Some(cnf) => match cnf.get("jkt").and_then(Value::as_str) {
                Some(jkt) if !jkt.is_empty() => Some(jkt.to_owned()),
                _ => return Err(UnsupportedBinding.into()),
            },
        };
        Ok(VerifiedToken {
            subject: claims.sub.clone(),
            client_id: claims.client_id.clone(),
            scopes,
            audience: claims.aud.to_vec(),
            expires_at: Timestamp(claims.exp),
            jkt,
            claims,
        })
    }

    fn cache(&self) -> Arc<Cache> {
        self.inner.cache.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The key `kid` names: from the cache, else from the JWKS fetched again.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<PublicKey>, VerifyError> {
        let cache = self.cache();
        if let Some(key) = cache.keys.get(kid) {
            if cache.fetched_at.is_none_or(|t| t.elapsed() >= self.inner.max_age) {
                self.refresh_in_background();
            }
            return Ok(key.clone());
        }
        let result = self.fetch_after(Instant::now(), Some(kid)).await;
        match (self.cache().keys.get(kid), result) {
            (Some(key), _) => Ok(key.clone()),
            (None, Ok(())) => Err(RejectReason::UnknownKey.into()),
            (None, Err(e)) => Err(VerifyError::Unavailable(e)),
        }
    }

    fn refresh_in_background(&self) {
        if self.inner.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let verifier = self.clone();
        tokio::spawn(async move {
            let _ = verifier.fetch_after(Instant::now(), None).await;
            verifier.inner.background.store(false, Ordering::Release);
        });
    }

    /// Makes sure a fetch of the JWKS has started at or after `since`, and
    /// returns how it went. One fetch at a time: callers that find a fetch
    /// in flight wait for it, and use it if it started after `since`
    /// (their unknown kid would be in it) or if it brought the `kid` they
    /// are looking for (tokens signed by a new key arriving together: the
    /// fetch the first one started serves them all). Fetches start at
    /// least the refetch interval apart: a caller that comes too soon waits.
    async fn fetch_after(&self, since: Instant, kid: Option<&str>) -> Result<(), Error> {
        let mut state = self.inner.fetch.lock().await;
        if kid.is_some_and(|kid| self.cache().keys.contains_key(kid)) {
            return Ok(());
        }
        if let (Some(started), Some(result)) = (state.last_started, &state.last_result)
            && started >= since
        {
            return result.clone();
        }
        if let Some(started) = state.last_started {
            tokio::time::sleep_until(started + self.inner.refetch_interval).await;
        }
        let started = Instant::now();
        state.last_started = Some(started);
        // Cleared until this fetch ends: if the caller gives up half-way (its
        // request is dropped), the next one fetches rather than trusting an
        // older outcome.
        state.last_result = None;
        let result = self.fetch().await;
        let outcome = match result {
            Ok(keys) => {
                let next = Arc::new(Cache {
                    keys,
                    fetched_at: Some(started),
                });
                *self.inner.cache.write().unwrap_or_else(PoisonError::into_inner) = next;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch the issuer's JWKS; keeping the keys already known");
                Err(e)
            }
        };
        state.last_result = Some(outcome.clone());
        outcome
    }

    async fn fetch(&self) -> Result<Keys, Error> {
        let url = self.inner.issuer.jwks_uri().as_str();
        let document: Value = get_json(self.inner.issuer.http(), url).await?;
        jwks::parse(&document).map_err(|reason| Error::bad_response(url, reason))
    }
}

/// The JOSE header as JSON, unverified.
pub(crate) fn raw_header(token: &str) -> Option<Value> {
    let encoded = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_allowed_in_a_challenge() {
        use RejectReason::*;
        for reason in [
            Malformed,
            NotAnAccessToken,
            UnsupportedAlgorithm,
            UnknownKey,
            BadSignature,
            WrongIssuer,
            WrongAudience,
            Expired,
            NotYetValid,
            Inactive,
            DpopBound,
            NotDpopBound,
            DpopKeyMismatch,
            UnsupportedBinding,
        ] {
            let text = reason.description();
            assert!(
                text.bytes()
                    .all(|b| b == 0x20 || b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)),
                "{text}"
            );
        }
    }
}
