//! The payments service's signing key: ES256, generated on first start and
//! kept in the pay database with the private part encrypted (AES-256-GCM,
//! a random nonce, the kid as associated data) under the service secret
//! (`PayConfig::secret_key`, else `<data_dir>/pay-secret.key`). It signs
//! contracts, payment proofs and merchant notifications (compact JWS with
//! `kid`); the public half is served at `/.well-known/jwks.json`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::Timestamp;
use gatehouse_kit::seal::{SealError, Sealer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::rngs::OsRng;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use gatehouse_kit::InstanceSecret;
pub use gatehouse_kit::secret::SecretError;

use crate::store::{PayStore, PayStoreError, StoredPayKey};

/// The file in the data directory that holds the secret when the
/// configuration does not. Files written before the service kit hold hex;
/// they are read as they are.
pub const SECRET_FILE: &str = "pay-secret.key";

/// What the signing key is sealed for (stored keys depend on it).
const SIGNING_KEY_PURPOSE: &str = "gatehouse pay signing key v1";

/// What the CSRF key is derived for.
pub const CSRF_PURPOSE: &str = "gatehouse pay csrf v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("payments secret key: {0}")]
    Secret(#[from] SecretError),
    #[error("signing key: {0}")]
    Store(#[from] PayStoreError),
    #[error("cannot decrypt the payments signing key {0}: the secret key is not the one it was encrypted with")]
    Decrypt(String),
    #[error("the payments signing key is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// The service secret (32 bytes: the key that seals the signing key, and
/// the root of the CSRF key): the configured value
/// (`PayConfig::secret_key`, hex or base64), else `<data_dir>/pay-secret.key`
/// (created, mode 0600, if missing).
pub fn load_secret(configured: Option<&str>, data_dir: &std::path::Path) -> Result<InstanceSecret, KeyError> {
    Ok(InstanceSecret::load(configured, data_dir, SECRET_FILE)?)
}

fn sealer(secret: &InstanceSecret) -> Sealer {
    Sealer::new(secret, SIGNING_KEY_PURPOSE)
}

fn unsealed(kid: &str, e: SealError) -> KeyError {
    match e {
        SealError::WrongKey => KeyError::Decrypt(kid.to_owned()),
        SealError::Corrupt(why) => KeyError::Corrupt(why.to_owned()),
    }
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
    pub async fn load_or_create(store: &dyn PayStore, secret: &InstanceSecret) -> Result<Self, KeyError> {
        if store.signing_key().await?.is_none() {
            let key = p256::ecdsa::SigningKey::random(&mut OsRng);
            let der = key.to_pkcs8_der().map_err(|e| KeyError::Corrupt(e.to_string()))?;
            let (jwk, kid) = public_jwk(&key)?;
            let stored = StoredPayKey {
                private_encrypted: sealer(secret)
                    .seal(&kid, der.as_bytes())
                    .map_err(|e| unsealed(&kid, e))?,
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
        let der = sealer(secret)
            .open(&stored.kid, &stored.private_encrypted)
            .map_err(|e| unsealed(&stored.kid, e))?;
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

    #[tokio::test]
    async fn a_key_sealed_by_another_secret_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("dir");
        let store = crate::store::connect(&format!("sqlite://{}", dir.path().join("pay.db").display()))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let secret = InstanceSecret::generate();
        let keys = PayKeys::load_or_create(store.as_ref(), &secret).await.expect("create");
        let again = PayKeys::load_or_create(store.as_ref(), &secret).await.expect("load");
        assert_eq!(again.kid(), keys.kid());
        let err = PayKeys::load_or_create(store.as_ref(), &InstanceSecret::generate())
            .await
            .expect_err("another secret");
        assert!(matches!(&err, KeyError::Decrypt(kid) if kid == keys.kid()), "{err:?}");
    }

    #[test]
    fn the_secret_file_is_created_once_and_old_hex_files_still_read() {
        let dir = tempfile::tempdir().expect("dir");
        let a = load_secret(None, dir.path()).expect("create");
        let b = load_secret(None, dir.path()).expect("read");
        assert_eq!(a, b);
        let old = tempfile::tempdir().expect("dir");
        std::fs::write(old.path().join(SECRET_FILE), format!("{}\n", "ab".repeat(32))).expect("write");
        assert_eq!(
            load_secret(None, old.path()).expect("hex"),
            InstanceSecret::from_bytes([0xab; 32])
        );
        assert_eq!(
            load_secret(Some(&"cd".repeat(32)), old.path()).expect("configured hex"),
            InstanceSecret::from_bytes([0xcd; 32])
        );
        assert!(load_secret(Some("abcd"), old.path()).is_err());
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
