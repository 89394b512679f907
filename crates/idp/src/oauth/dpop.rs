//! DPoP (RFC 9449) on the server side: the `DPoP` header, server-provided
//! nonces, and replay. The proof's own checks are
//! `gatehouse_core::oauth::dpop::verify_proof`; this module adds what needs
//! the instance secret, the clock and the store.
//!
//! Nonces (RFC 9449 §8, §9) are stateless, so every instance accepts every
//! other's: the nonce of a time window of [`NONCE_WINDOW`] seconds is
//! HMAC-SHA256, under a key derived from the instance secret, of the
//! window's number. The current and the previous window's nonces are
//! accepted, so a nonce lives between one and two windows. The token
//! endpoint requires one ([`NoncePolicy::Required`]); UserInfo does not, but
//! a nonce a proof does carry must be one of ours ([`NoncePolicy::IfPresent`]).
//!
//! Replay: a verified proof's `jti` is remembered per key thumbprint until
//! its `iat` is too old to be accepted; a second use is `invalid_dpop_proof`.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use jsonwebtoken::{Algorithm, EncodingKey};

use gatehouse_core::oauth::dpop::{self, DpopError, ProofCheck, VerifiedProof};
use gatehouse_core::oauth::{ErrorCode, OAuthError};
use gatehouse_core::time::MINUTE;
use gatehouse_core::{Secret, Timestamp};

use super::error::internal;
use crate::AppState;

/// The request header that carries a proof.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The response header that carries a fresh nonce.
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");
/// The length of a nonce window, in seconds.
pub const NONCE_WINDOW: i64 = 5 * MINUTE;
/// What the nonce key is derived for.
const NONCE_PURPOSE: &str = "gatehouse dpop nonces v1";

/// Whether a proof must carry one of our nonces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoncePolicy {
    /// A proof without one of our current nonces is `use_dpop_nonce`.
    Required,
    /// A proof may carry no nonce; one it carries must be ours and current.
    IfPresent,
}

/// The proof in the request's `DPoP` header: `None` without one;
/// `invalid_dpop_proof` if the header appears more than once or is not text
/// (RFC 9449 §4.3: exactly one header, one JWT).
pub fn proof_header(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut values = headers.get_all(DPOP).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid_proof("send one DPoP header"));
    }
    let proof = value
        .to_str()
        .map_err(|_| invalid_proof("the DPoP header is not a JWT"))?
        .trim();
    Ok(Some(proof))
}

fn invalid_proof(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidDpopProof, description)
}

/// Makes and checks nonces with a key derived from the instance secret.
pub struct Nonces {
    key: Secret<[u8; 32]>,
}

impl Nonces {
    pub fn new(key: Secret<[u8; 32]>) -> Self {
        Self { key }
    }

    /// The nonces of this instance (and of every instance sharing its secret).
    pub fn of(state: &AppState) -> Self {
        Self::new(state.keys.derive_key(NONCE_PURPOSE))
    }

    fn of_window(&self, window: i64) -> Result<String, OAuthError> {
        let mac = jsonwebtoken::crypto::sign(
            format!("dpop-nonce:{window}").as_bytes(),
            &EncodingKey::from_secret(self.key.expose()),
            Algorithm::HS256,
        )
        .map_err(internal)?;
        // base64url already: 32 characters (192 bits) are plenty.
        Ok(mac.chars().take(32).collect())
    }

    /// The nonce to hand out at `now` (in a `DPoP-Nonce` header).
    pub fn current(&self, now: Timestamp) -> Result<String, OAuthError> {
        self.of_window(window_of(now))
    }

    /// Whether `nonce` is accepted at `now`: the current or the previous
    /// window's.
    pub fn accepted(&self, nonce: &str, now: Timestamp) -> Result<bool, OAuthError> {
        let window = window_of(now);
        Ok(nonce == self.of_window(window)? || nonce == self.of_window(window - 1)?)
    }
}

fn window_of(now: Timestamp) -> i64 {
    now.0.div_euclid(NONCE_WINDOW)
}

/// Adds a fresh `DPoP-Nonce` header to `response` (best effort: a nonce
/// that cannot be made is left out).
pub fn with_nonce(mut response: Response, state: &AppState, now: Timestamp) -> Response {
    if let Ok(nonce) = Nonces::of(state).current(now)
        && let Ok(value) = HeaderValue::from_str(&nonce)
    {
        response.headers_mut().insert(DPOP_NONCE, value);
    }
    response
}

/// The request a proof must match.
pub struct Request<'a> {
    pub method: &'a str,
    /// The absolute URL, on the issuer.
    pub url: &'a str,
    /// At a protected resource, the access token presented with the proof.
    pub access_token: Option<&'a str>,
    pub nonce: NoncePolicy,
}

/// Verifies `proof` for `request` (RFC 9449 §4.3) with our nonce policy,
/// then records its `jti`: a proof seen before is `invalid_dpop_proof`. A
/// missing or stale nonce is `use_dpop_nonce`.
pub async fn verify(
    state: &AppState,
    proof: &str,
    request: &Request<'_>,
    now: Timestamp,
) -> Result<VerifiedProof, OAuthError> {
    // Which nonce to expect: the one the proof carries if it is ours and
    // current; else the current one, which the proof then lacks.
    let nonces = Nonces::of(state);
    let carried = dpop::unverified_nonce(proof);
    let expected = match (&carried, request.nonce) {
        (None, NoncePolicy::IfPresent) => None,
        (Some(n), _) if nonces.accepted(n, now)? => Some(n.clone()),
        (_, _) => Some(nonces.current(now)?),
    };
    let check = ProofCheck {
        method: request.method,
        url: request.url,
        now,
        access_token: request.access_token,
        nonce: expected.as_deref(),
    };
    let verified = dpop::verify_proof(proof, &check).map_err(|e| {
        let description = match e {
            DpopError::UseNonce => "use the DPoP-Nonce the server provided".to_owned(),
            ref other => other.to_string(),
        };
        OAuthError::new(e.error_code(), description)
    })?;
    let seen = state
        .store
        .dpop_jti_seen(&verified.jkt, &verified.jti, verified.replay_expires_at())
        .await
        .map_err(internal)?;
    if seen {
        return Err(invalid_proof("the DPoP proof was used before"));
    }
    Ok(verified)
}

/// The `jkt` of a token's `cnf` claim (RFC 7800 §3.1, RFC 9449 §6.1).
pub fn bound_jkt(cnf: Option<&serde_json::Value>) -> Option<&str> {
    cnf?.get("jkt")?.as_str()
}

/// The `algs` of a `DPoP` challenge: the algorithms we accept.
pub fn algs() -> String {
    dpop::ALGS.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonces(byte: u8) -> Nonces {
        Nonces::new(Secret::new([byte; 32]))
    }

    #[test]
    fn windows_are_whole() {
        assert_eq!(window_of(Timestamp(0)), 0);
        assert_eq!(window_of(Timestamp(NONCE_WINDOW - 1)), 0);
        assert_eq!(window_of(Timestamp(NONCE_WINDOW)), 1);
        assert_eq!(window_of(Timestamp(-1)), -1);
    }

    #[test]
    fn a_nonce_lives_one_to_two_windows() {
        let n = nonces(7);
        let start = Timestamp(1_700_000_100 - 1_700_000_100 % NONCE_WINDOW);
        let nonce = n.current(start).expect("nonce");
        assert_eq!(nonce.len(), 32);
        assert_eq!(n.current(start.plus(NONCE_WINDOW - 1)).expect("nonce"), nonce);
        assert!(n.accepted(&nonce, start).expect("check"));
        assert!(n.accepted(&nonce, start.plus(2 * NONCE_WINDOW - 1)).expect("check"));
        assert!(!n.accepted(&nonce, start.plus(2 * NONCE_WINDOW)).expect("check"));
        assert!(!n.accepted(&nonce, start.minus(1)).expect("check"));
        assert_ne!(n.current(start.plus(NONCE_WINDOW)).expect("nonce"), nonce);
        // Another secret, other nonces.
        assert!(!nonces(8).accepted(&nonce, start).expect("check"));
        assert!(!n.accepted("", start).expect("check"));
    }
}
