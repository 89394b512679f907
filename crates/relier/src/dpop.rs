//! DPoP at a resource server (RFC 9449 §7): the proof that comes with a
//! DPoP-bound access token is checked by
//! [`gatehouse_core::oauth::dpop::verify_proof`] against this request
//! (method, public URL, `ath`, time), must be signed by the key the token
//! is bound to (`cnf.jkt`), and must not have been seen before: its `jti`
//! is remembered, in memory, until the proof would be too old anyway.
//!
//! The replay cache belongs to one process. Behind a load balancer a proof
//! replayed to another instance is not caught by it; it still has to be
//! replayed within [`MAX_PROOF_AGE`] seconds, to the same URL and method,
//! with the same access token.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::dpop::verify_proof;
pub use gatehouse_core::oauth::dpop::{ALGS, DpopError, MAX_PROOF_AGE, ProofCheck, VerifiedProof};

/// How many proofs the replay cache remembers by default: a minute's worth
/// at well over a thousand DPoP requests a second.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// What the replay cache says about a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First time: now remembered.
    New,
    /// Used before.
    Replayed,
    /// The cache is full of proofs not yet expired: it cannot tell.
    Full,
}

/// The proofs seen, by SHA-256 of (key thumbprint, jti) so an entry has a
/// fixed size, each until its expiry.
pub(crate) struct ReplayCache {
    capacity: usize,
    state: Mutex<ReplayState>,
}

#[derive(Default)]
struct ReplayState {
    seen: HashSet<[u8; 32]>,
    /// The same entries, soonest expiry first.
    by_expiry: BTreeSet<(i64, [u8; 32])>,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity,
            state: Mutex::new(ReplayState::default()),
        }
    }

    /// Remembers the proof `jti` of key `jkt` until `expires_at`, unless it
    /// was seen before. Entries that expired by `now` are forgotten first.
    pub(crate) fn check(&self, jkt: &str, jti: &str, expires_at: Timestamp, now: Timestamp) -> Seen {
        let mut hash = Sha256::new();
        hash.update(jkt.as_bytes());
        hash.update([0u8]);
        hash.update(jti.as_bytes());
        let id: [u8; 32] = hash.finalize().into();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(first) = state.by_expiry.first().copied() {
            if first.0 > now.0 {
                break;
            }
            state.by_expiry.remove(&first);
            state.seen.remove(&first.1);
        }
        if state.seen.contains(&id) {
            return Seen::Replayed;
        }
        if state.seen.len() >= self.capacity {
            return Seen::Full;
        }
        state.seen.insert(id);
        state.by_expiry.insert((expires_at.0, id));
        Seen::New
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).seen.len()
    }
}

/// Why a DPoP request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProofFailure {
    /// `invalid_dpop_proof`, with this description.
    Invalid(String),
    /// Signed by another key than the token's: `invalid_token`.
    KeyMismatch,
    /// The replay cache is full: 503.
    Full,
}

/// Checks the proof of a request that presents `access_token`, bound to
/// `jkt`, as `method` on `url` (the public URL, no query).
pub(crate) fn check_request(
    replay: &ReplayCache,
    proof: &str,
    method: &str,
    url: &str,
    access_token: &str,
    jkt: &str,
    now: Timestamp,
) -> Result<VerifiedProof, ProofFailure> {
    let check = ProofCheck {
        method,
        url,
        now,
        access_token: Some(access_token),
        nonce: None,
    };
    let verified = verify_proof(proof, &check).map_err(|e| ProofFailure::Invalid(e.to_string()))?;
    if verified.jkt != jkt {
        return Err(ProofFailure::KeyMismatch);
    }
    match replay.check(&verified.jkt, &verified.jti, verified.replay_expires_at(), now) {
        Seen::New => Ok(verified),
        Seen::Replayed => Err(ProofFailure::Invalid("the DPoP proof was used before".into())),
        Seen::Full => Err(ProofFailure::Full),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_accepted_once_until_it_expires() {
        let cache = ReplayCache::new(10);
        let now = Timestamp(1_000);
        assert_eq!(cache.check("k", "j1", Timestamp(1_061), now), Seen::New);
        assert_eq!(cache.check("k", "j1", Timestamp(1_061), now.plus(30)), Seen::Replayed);
        // The same jti from another key is another proof.
        assert_eq!(cache.check("k2", "j1", Timestamp(1_061), now), Seen::New);
        // Once expired it is forgotten (verify_proof refuses it by then).
        assert_eq!(cache.check("k", "j2", Timestamp(1_100), now.plus(61)), Seen::New);
        assert_eq!(cache.len(), 1);
    }

    /// A proof by a new Ed25519 key with `alg` in its header, for GET `url`
    /// presenting `token`: the proof and the key's thumbprint.
    fn ed25519_proof(alg: &str, url: &str, token: &str, now: Timestamp) -> (String, String) {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use serde_json::json;
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).expect("pkcs8");
        let jwk = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
        });
        let header = json!({ "typ": "dpop+jwt", "alg": alg, "jwk": jwk });
        let claims = json!({
            "jti": format!("{alg}-1"), "htm": "GET", "htu": url, "iat": now.0,
            "ath": gatehouse_core::oauth::dpop::access_token_hash(token),
        });
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let encoding = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &encoding, jsonwebtoken::Algorithm::EdDSA).expect("sign");
        let jkt = gatehouse_core::oauth::dpop::thumbprint(&jwk).expect("thumbprint");
        (format!("{message}.{signature}"), jkt)
    }

    #[test]
    fn an_ed25519_key_may_sign_as_eddsa_or_ed25519() {
        // RFC 9864's `Ed25519` is what oauth4webapi (openid-client) writes.
        let cache = ReplayCache::new(10);
        let now = Timestamp(1_700_000_000);
        let url = "https://api.example.com/whoami";
        for alg in ["EdDSA", "Ed25519"] {
            let (proof, jkt) = ed25519_proof(alg, url, "the token", now);
            let verified = check_request(&cache, &proof, "GET", url, "the token", &jkt, now).expect(alg);
            assert_eq!(verified.jkt, jkt);
            assert_eq!(
                check_request(&cache, &proof, "GET", url, "the token", &jkt, now),
                Err(ProofFailure::Invalid("the DPoP proof was used before".into())),
                "{alg}"
            );
            assert!(ALGS.contains(&alg), "{alg} is advertised");
        }
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let cache = ReplayCache::new(2);
        let now = Timestamp(1_000);
        assert_eq!(cache.check("k", "a", Timestamp(1_050), now), Seen::New);
        assert_eq!(cache.check("k", "b", Timestamp(1_060), now), Seen::New);
        assert_eq!(cache.check("k", "c", Timestamp(1_060), now), Seen::Full);
        assert_eq!(cache.check("k", "a", Timestamp(1_050), now), Seen::Replayed);
        // Room again once the first expires.
        assert_eq!(cache.check("k", "c", Timestamp(1_070), Timestamp(1_050)), Seen::New);
        assert_eq!(
            cache.check("k", "b", Timestamp(1_060), Timestamp(1_050)),
            Seen::Replayed
        );
    }
}
