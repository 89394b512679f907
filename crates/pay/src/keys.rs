//! The payments service's signing key: ES256, generated on first start and
//! kept in the pay database with the private part encrypted (AES-256-GCM,
//! a random nonce, the kid as associated data) under the service secret
//! (`PayConfig::secret_key`, else `<data_dir>/pay-secret.key`). It signs
//! contracts, payment proofs and merchant notifications (compact JWS with
//! `kid`); the public half is served at `/.well-known/jwks.json`.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gatehouse_core::{Secret, Timestamp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::store::{PayStore, PayStoreError, StoredPayKey};

/// The file in the data directory that holds the secret when the
/// configuration does not.
pub const SECRET_FILE: &str = "pay-secret.key";

const SIGNING_KEY_PURPOSE: &str = "gatehouse pay signing key v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the payments secret key must be the hex of 32 bytes")]
    BadSecret,
    #[error("payments secret key file {path}: {source}")]
    SecretFile { path: String, source: std::io::Error },
    #[error("signing key: {0}")]
    Store(#[from] PayStoreError),
    #[error("cannot decrypt the payments signing key {0}: the secret key is not the one it was encrypted with")]
    Decrypt(String),
    #[error("the payments signing key is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// 32 secret bytes: the key that encrypts the signing key, and the root of
/// the CSRF key.
#[derive(Clone, Debug)]
pub struct PaySecret(Secret<[u8; 32]>);

impl PaySecret {
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| KeyError::BadSecret)?);
        let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::BadSecret)?;
        Ok(Self(Secret::new(array)))
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(Secret::new(bytes))
    }

    /// The configured secret, else the one in `data_dir/pay-secret.key`
    /// (created, mode 0600, if missing).
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Self, KeyError> {
        if let Some(hex) = configured {
            return Self::from_hex(hex);
        }
        let path = data_dir.join(SECRET_FILE);
        let file_error = |source| KeyError::SecretFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => return Self::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(e)),
        }
        std::fs::create_dir_all(data_dir).map_err(file_error)?;
        let secret = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                use std::io::Write;
                let text = Zeroizing::new(format!("{}\n", hex::encode(secret.0.expose())));
                file.write_all(text.as_bytes()).map_err(file_error)?;
                Ok(secret)
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::from_hex(&std::fs::read_to_string(&path).map_err(file_error)?)
            }
            Err(e) => Err(file_error(e)),
        }
    }

    /// A key for one purpose, derived from the secret.
    pub fn derive(&self, purpose: &str) -> Secret<[u8; 32]> {
        let mut hash = Sha256::new();
        hash.update(purpose.as_bytes());
        hash.update([0u8]);
        hash.update(self.0.expose());
        Secret::new(hash.finalize().into())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.derive(SIGNING_KEY_PURPOSE).expose().into())
    }
}

fn encrypt(secret: &PaySecret, kid: &str, plaintext: &[u8]) -> Result<String, KeyError> {
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = secret
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: kid.as_bytes(),
            },
        )
        .map_err(|_| KeyError::Corrupt("encryption failed".into()))?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&ciphertext);
    Ok(STANDARD.encode(blob))
}

fn decrypt(secret: &PaySecret, kid: &str, blob: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let blob = STANDARD
        .decode(blob.trim())
        .map_err(|_| KeyError::Corrupt("private key is not base64".into()))?;
    if blob.len() < 12 + 16 {
        return Err(KeyError::Corrupt("private key is too short".into()));
    }
    let (nonce, ciphertext) = blob.split_at(12);
    secret
        .cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: kid.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Decrypt(kid.to_owned()))
}

/// The public JWK and the RFC 7638 thumbprint (the kid) of a P-256 key.
fn public_jwk(key: &p256::ecdsa::SigningKey) -> Result<(Value, String), KeyError> {
    let point = key.verifying_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(KeyError::Corrupt("the public point is the identity".into()));
    };
    let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let jwk = json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig" });
    Ok((jwk, kid))
}

/// The signing key in memory.
#[derive(Clone)]
pub struct PayKeys {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl std::fmt::Debug for PayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl PayKeys {
    /// Loads the stored key, generating and storing one on first start (if
    /// two instances race, both end up with the oldest stored key).
    pub async fn load_or_create(store: &dyn PayStore, secret: &PaySecret) -> Result<Self, KeyError> {
        if store.signing_key().await?.is_none() {
            let key = p256::ecdsa::SigningKey::random(&mut OsRng);
            let der = key.to_pkcs8_der().map_err(|e| KeyError::Corrupt(e.to_string()))?;
            let (jwk, kid) = public_jwk(&key)?;
            let stored = StoredPayKey {
                private_encrypted: encrypt(secret, &kid, der.as_bytes())?,
                public_jwk: jwk.to_string(),
                kid,
                created_at: Timestamp::now(),
            };
            store.insert_signing_key(&stored).await?;
        }
        let stored = store
            .signing_key()
            .await?
            .ok_or_else(|| KeyError::Corrupt("no signing key after creating one".into()))?;
        let der = decrypt(secret, &stored.kid, &stored.private_encrypted)?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der).map_err(|e| KeyError::Corrupt(e.to_string()))?;
        let (jwk, kid) = public_jwk(&key)?;
        if kid != stored.kid {
            return Err(KeyError::Corrupt("the kid does not match the key".into()));
        }
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ec_der(&der),
            jwk,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS of `claims` with this `typ` and the kid.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// `{"keys": [...]}`: public fields only.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_round_trip_and_wrong_secret() {
        let secret = PaySecret::generate();
        let blob = encrypt(&secret, "kid", b"private").expect("encrypt");
        assert_eq!(decrypt(&secret, "kid", &blob).expect("decrypt").as_slice(), b"private");
        assert!(matches!(
            decrypt(&PaySecret::generate(), "kid", &blob),
            Err(KeyError::Decrypt(_))
        ));
        assert!(matches!(decrypt(&secret, "other", &blob), Err(KeyError::Decrypt(_))));
    }

    #[test]
    fn secrets_are_hex_of_32_bytes() {
        assert!(PaySecret::from_hex(&"ab".repeat(32)).is_ok());
        assert!(PaySecret::from_hex("abcd").is_err());
        assert!(PaySecret::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn secret_file_is_created_once() {
        let dir = tempfile::tempdir().expect("dir");
        let a = PaySecret::load(None, dir.path()).expect("create");
        let b = PaySecret::load(None, dir.path()).expect("read");
        assert_eq!(a.0.expose(), b.0.expose());
    }

    #[test]
    fn signatures_verify_with_the_published_key() {
        let key = p256::ecdsa::SigningKey::random(&mut OsRng);
        let der = key.to_pkcs8_der().expect("der");
        let (jwk, kid) = public_jwk(&key).expect("jwk");
        let keys = PayKeys {
            kid,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk,
        };
        let token = keys.sign("payment-proof+jwt", &json!({"a": 1})).expect("sign");
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(keys.kid()));
        assert_eq!(header.typ.as_deref(), Some("payment-proof+jwt"));
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys.jwks()["keys"][0].clone()).expect("jwk");
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &validation).expect("verifies");
        assert_eq!(data.claims["a"], 1);
    }
}
