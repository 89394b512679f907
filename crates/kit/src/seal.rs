//! Private keys sealed at rest: AES-256-GCM under a key derived from the
//! [`InstanceSecret`] for one purpose, with a random 96-bit nonce and the
//! key's kid as associated data (a sealed key moved to another kid's row
//! does not open). The stored text is base64(nonce || ciphertext), the
//! format both services have always written.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::secret::InstanceSecret;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a sealed key did not open.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The text is not a sealed key.
    #[error("{0}")]
    Corrupt(&'static str),
    /// It does not open with this secret and kid: another secret sealed it,
    /// or it belongs to another kid, or it was altered.
    #[error("does not open with this secret")]
    WrongKey,
}

/// Seals keys for one purpose (e.g. `"gatehouse signing keys v1"`).
#[derive(Clone)]
pub struct Sealer(Aes256Gcm);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    pub fn new(secret: &InstanceSecret, purpose: &str) -> Self {
        Self(Aes256Gcm::new(secret.derive_key(purpose).expose().into()))
    }

    /// base64(nonce || ciphertext) of `plaintext`, bound to `kid`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt("encryption failed"))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        Ok(STANDARD.encode(blob))
    }

    /// The plaintext [`Sealer::seal`] sealed under `kid`.
    pub fn open(&self, kid: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let blob = STANDARD
            .decode(sealed.trim())
            .map_err(|_| SealError::Corrupt("private key is not base64"))?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Corrupt("private key is too short"));
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: kid.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDP: &str = "gatehouse signing keys v1";
    const PAY: &str = "gatehouse pay signing key v1";

    #[test]
    fn round_trip_and_what_does_not_open() {
        let secret = InstanceSecret::generate();
        let sealer = Sealer::new(&secret, IDP);
        let blob = sealer.seal("kid-1", b"private").expect("seal");
        assert_eq!(sealer.open("kid-1", &blob).expect("open").as_slice(), b"private");
        // Random nonce: the same plaintext seals differently.
        assert_ne!(sealer.seal("kid-1", b"private").expect("seal"), blob);
        // Another secret, purpose or kid fails cleanly.
        let other = Sealer::new(&InstanceSecret::generate(), IDP);
        assert_eq!(other.open("kid-1", &blob), Err(SealError::WrongKey));
        assert_eq!(Sealer::new(&secret, PAY).open("kid-1", &blob), Err(SealError::WrongKey));
        assert_eq!(sealer.open("kid-2", &blob), Err(SealError::WrongKey));
        assert!(matches!(sealer.open("kid-1", "!!"), Err(SealError::Corrupt(_))));
        assert!(matches!(sealer.open("kid-1", "AAAA"), Err(SealError::Corrupt(_))));
    }

    /// Sealed the way the IdP's and the payments service's `keys.rs` did
    /// before the kit (derived key, AES-256-GCM, the nonce in front,
    /// base64), made apart from this code (Python's `cryptography`) with
    /// the secret `[7; 32]` and fixed nonces: rows in existing databases
    /// look like these and must keep opening.
    #[test]
    fn keys_sealed_before_the_kit_still_open() {
        let secret = InstanceSecret::from_bytes([7; 32]);
        let idp = "AAECAwQFBgcICQoL++JebM/e8+O0LGnDYfH+lssP+VbV9NvT+Yv2akr69DJx/A==";
        let pay = "DAsKCQgHBgUEAwIBaSyTZczHxMej9L9mmfT05Fj8rAODvmroaCze8ISgigPM";
        assert_eq!(
            Sealer::new(&secret, IDP).open("kid-idp", idp).expect("idp").as_slice(),
            b"an idp private key"
        );
        assert_eq!(
            Sealer::new(&secret, PAY).open("kid-pay", pay).expect("pay").as_slice(),
            b"a pay private key"
        );
    }
}
