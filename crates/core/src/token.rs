//! Opaque random tokens (session ids, link tokens, CSRF tokens) and their
//! SHA-256 digests. The store only ever sees the digest: a database dump does
//! not reveal a usable token.
//!
//! Authorization codes and refresh tokens are *ordered*: their issue time
//! comes first, and their digest keeps it in front of the hash. Every
//! single sign-on writes one of each; with random digests each went into a
//! random page of its table's index (one more page written per write),
//! with ordered ones they are appended, and the writes of a batch share
//! the index's last page (BENCHMARKS.md, session 5).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use std::time::{SystemTime, UNIX_EPOCH};

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

    /// Like [`generate`](Self::generate), after the issue time `now`: 12
    /// lowercase hex digits of milliseconds since 1970, so that tokens
    /// issued later sort later, and so do their digests
    /// ([`TokenDigest::of`]). The time is no secret; the 256 random bits
    /// after it are.
    pub fn generate_ordered(now: SystemTime) -> Self {
        let millis = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let random = Self::generate();
        Self(Secret::new(format!(
            "{:0width$x}{}",
            millis & 0xffff_ffff_ffff,
            random.expose(),
            width = ORDERED_PREFIX
        )))
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

/// Hex digits of the issue time in front of an ordered token.
const ORDERED_PREFIX: usize = 12;
/// The length of an ordered token: the time, then 43 base64url characters.
const ORDERED_LEN: usize = ORDERED_PREFIX + 43;

impl TokenDigest {
    /// The SHA-256 of `value`, lowercase hex; for a value shaped like an
    /// ordered token ([`OpaqueToken::generate_ordered`]: 55 characters,
    /// the first 12 lowercase hex digits), those 12 digits, then the hash.
    /// The same value always gives the same digest, whoever presents it.
    pub fn of(value: &str) -> Self {
        let hash = hex::encode(Sha256::digest(value.as_bytes()));
        match ordered_prefix(value) {
            Some(time) => Self(format!("{time}{hash}")),
            None => Self(hash),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The issue time in front of an ordered token, if `value` is shaped like one.
fn ordered_prefix(value: &str) -> Option<&str> {
    if value.len() != ORDERED_LEN {
        return None;
    }
    value
        .get(..ORDERED_PREFIX)
        .filter(|time| time.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
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

    #[test]
    fn ordered_tokens_and_their_digests_sort_by_issue_time() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_796_000_000_123);
        let first = OpaqueToken::generate_ordered(at);
        let second = OpaqueToken::generate_ordered(at + std::time::Duration::from_millis(1));
        assert_eq!(&first.expose()[..12], "01a229f1287b");
        assert_eq!(first.expose().len(), 55);
        assert!(first.expose() < second.expose());
        assert!(first.digest().as_str() < second.digest().as_str());
        let parsed = OpaqueToken::parse(second.expose()).expect("own token parses");
        assert_eq!(parsed.digest(), second.digest());
        // The time in front, then the whole token's hash.
        let digest = second.digest();
        assert_eq!(&digest.as_str()[..12], &second.expose()[..12]);
        assert_eq!(
            &digest.as_str()[12..],
            hex::encode(Sha256::digest(second.expose().as_bytes()))
        );
    }

    #[test]
    fn only_the_ordered_shape_keeps_a_prefix() {
        // 55 characters, but not hex in front: a plain hash.
        let odd = format!("{}{}", "g".repeat(12), "a".repeat(43));
        assert_eq!(TokenDigest::of(&odd).as_str().len(), 64);
        // Multi-byte characters across the twelfth byte do not panic.
        let wide = format!("{}é{}", "0".repeat(11), "a".repeat(42));
        assert_eq!(wide.len(), 55);
        assert_eq!(TokenDigest::of(&wide).as_str().len(), 64);
        assert_eq!(OpaqueToken::generate().digest().as_str().len(), 64);
    }
}
