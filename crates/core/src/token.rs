//! Opaque random tokens (session ids, link tokens, CSRF tokens) and their
//! SHA-256 digests. The store only ever sees the digest: a database dump does
//! not reveal a usable token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Secret;

/// A random bearer value handed to a browser or mailed to a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpaqueToken(Secret<String>);

impl OpaqueToken {
    /// 256 bits from the operating system's CSPRNG, base64url without padding.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(Secret::new(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a value that came back from a client. Anything longer than a
    /// token we issue is refused (`None`), so junk never reaches the store.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= 128
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(Secret::new(value.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(self.expose())
    }

    /// Constant-time comparison, for double-submit checks.
    pub fn ct_eq(&self, other: &str) -> bool {
        self.expose().as_bytes().ct_eq(other.as_bytes()).into()
    }
}

/// The SHA-256 of a token, lowercase hex: what the store keeps.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenDigest(pub String);

impl TokenDigest {
    pub fn of(value: &str) -> Self {
        Self(hex::encode(Sha256::digest(value.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_parse_back() {
        let a = OpaqueToken::generate();
        let b = OpaqueToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        let parsed = OpaqueToken::parse(a.expose()).expect("own token parses");
        assert_eq!(parsed.digest(), a.digest());
    }

    #[test]
    fn junk_is_refused() {
        assert!(OpaqueToken::parse("").is_none());
        assert!(OpaqueToken::parse("a b").is_none());
        assert!(OpaqueToken::parse(&"a".repeat(129)).is_none());
        assert!(OpaqueToken::parse("x'; drop table").is_none());
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            TokenDigest::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
