//! Signing keys and JWTs: the keys that sign ID tokens and access tokens,
//! kept in the store so that every instance signs with the same ones, their
//! private parts encrypted at rest with the [`InstanceSecret`].
//!
//! A key is published before it signs, so that a relier that honours the
//! JWKS's `Cache-Control` never meets a kid it has not seen:
//!
//! - On a store's first start [`KeyRing::load`] makes a key of every
//!   algorithm (ES256, the default; EdDSA; RS256), all signing at once: no
//!   JWKS has ever been served from that store. An algorithm missing later
//!   (a store from before this rule) gets its key pre-published, like a
//!   rotation; until it signs, asking for that algorithm is
//!   [`KeyError::NotSigningYet`].
//! - [`rotate`] (`gatehouse keys rotate`) adds a new key of an algorithm that
//!   is published at once and signs only after [`publication_delay`] (the
//!   JWKS's max-age, plus the reload interval and a margin): every cached
//!   JWKS has been fetched again by then. The older key signs until then,
//!   and stays published for [`RETIRED_KEY_GRACE`] after, until everything
//!   it signed has expired; after that it is left out, and the next rotation
//!   deletes it. [`Rotation::Now`] (`keys rotate --now`, for a compromised
//!   key) signs at once and withdraws the older keys of the algorithm from
//!   the JWKS at once.
//! - [`KeyRing::spawn_refresher`] reloads the keys every few seconds, so a key
//!   added by the command line is published, and signs when its time comes,
//!   on every running server within seconds.
//!
//! At rest a private key is its PKCS#8 DER, encrypted with AES-256-GCM under
//! a key derived from the instance secret, with a random 96-bit nonce and the
//! kid as associated data: `private_encrypted` is base64(nonce || ciphertext).
//! The kid is the key's RFC 7638 JWK thumbprint (SHA-256).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::RngCore;
use rand::rngs::OsRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind, BY_CLI};
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::{ACCESS_TOKEN_LIFETIME, ID_TOKEN_LIFETIME, StoredKey};
use gatehouse_core::time::MINUTE;
use gatehouse_core::{Secret, Timestamp};
use gatehouse_store::{Store, StoreError};

/// How long a retired key stays published: the longest token lifetime, plus
/// a margin for the seconds a running instance may still sign with it before
/// it notices the rotation, and for clock skew.
pub const RETIRED_KEY_GRACE: i64 = max(ACCESS_TOKEN_LIFETIME, ID_TOKEN_LIFETIME) + 5 * MINUTE;

/// How often a running server reloads the keys (see [`KeyRing::spawn_refresher`]).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Tolerance for `exp`, in seconds, for clocks that differ between instances.
pub const VERIFY_LEEWAY: i64 = 30;

/// How long reliers may cache the JWKS (its `Cache-Control: max-age`) unless
/// configured (`GATEHOUSE_JWKS_MAX_AGE`).
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// Seconds, beyond the JWKS's max-age and the reload interval, before a new
/// key signs: whole-second timestamps, and clocks a little apart.
const PUBLICATION_MARGIN: i64 = 2;

/// How long after it is stored a new key may sign, in seconds: every
/// instance serves it in the JWKS within [`REFRESH_INTERVAL`], and a JWKS
/// fetched just before that is cached for at most `jwks_max_age`.
pub fn publication_delay(jwks_max_age: Duration) -> i64 {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
    secs(jwks_max_age)
        .saturating_add(secs(REFRESH_INTERVAL))
        .saturating_add(PUBLICATION_MARGIN)
}

/// A token naming an unknown kid reloads the keys at most this often (it may
/// be signed by a key another instance generated a moment ago).
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(1);

/// How many verified tokens [`KeyRing::verify`] remembers (see
/// [`VerifiedTokens`]): a few MiB at most.
const VERIFIED_CAPACITY: usize = 4096;

/// RSA keys we generate.
const RSA_BITS: usize = 2048;

/// What the AES key is derived for, so the instance secret can serve other
/// purposes later without reusing a key.
const SIGNING_KEYS_PURPOSE: &str = "gatehouse signing keys v1";

const fn max(a: i64, b: i64) -> i64 {
    if a > b { a } else { b }
}

// --- errors ---------------------------------------------------------------

/// Why a token was refused. The caller answers these with 401 (or the OAuth
/// error its endpoint defines); every other [`KeyError`] is our fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed token")]
    Malformed,
    #[error("signed by a key we do not publish")]
    UnknownKid,
    #[error("the algorithm does not match the key")]
    WrongAlg,
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("wrong issuer")]
    WrongIssuer,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The token is not one we accept.
    #[error("token rejected: {0}")]
    Rejected(#[from] Rejection),
    #[error("signing keys: {0}")]
    Store(#[from] StoreError),
    /// The stored private key does not open with our secret: the instance
    /// secret is not the one the key was encrypted with, or the row is
    /// damaged.
    #[error(
        "cannot decrypt signing key {kid}: this instance's secret key (GATEHOUSE_SECRET_KEY, \
         else <data_dir>/secret.key) is not the one it was encrypted with; every instance on \
         one database needs the same GATEHOUSE_SECRET_KEY"
    )]
    Decrypt { kid: String },
    #[error("signing key {kid} is corrupt: {reason}")]
    Corrupt { kid: String, reason: String },
    /// The instance secret is malformed. The message never shows the value.
    #[error("secret key: {0}")]
    BadSecret(String),
    #[error("secret key file {}: {source}", path.display())]
    SecretFile { path: PathBuf, source: std::io::Error },
    #[error("cannot generate a {alg} key: {reason}")]
    Generate { alg: &'static str, reason: String },
    #[error("cannot sign: {0}")]
    Sign(jsonwebtoken::errors::Error),
    /// The algorithm's key is published but may not sign yet (reliers'
    /// cached JWKS may not have it).
    #[error("the {alg} signing key is published but signs only from {}", gatehouse_core::time::format_utc(*signs_from))]
    NotSigningYet { alg: &'static str, signs_from: Timestamp },
}

fn corrupt(kid: &str, reason: impl fmt::Display) -> KeyError {
    KeyError::Corrupt {
        kid: kid.to_owned(),
        reason: reason.to_string(),
    }
}

// --- the instance secret ----------------------------------------------------

/// The 32-byte secret that encrypts the private keys at rest. From the
/// configuration (`GATEHOUSE_SECRET_KEY`, base64 of 32 bytes), else from the
/// file `<data_dir>/secret.key`, created on first start.
///
/// Every instance that shares a database must have the same secret: with
/// several instances on one PostgreSQL database, give them all the same
/// `GATEHOUSE_SECRET_KEY` (e.g. `openssl rand -base64 32`), or copy one
/// instance's `secret.key`, which holds the same base64 text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSecret(Secret<[u8; 32]>);

/// Standard or URL-safe base64, padded or not.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl InstanceSecret {
    /// The file in the data directory that holds it when the configuration
    /// does not.
    pub const FILE_NAME: &'static str = "secret.key";

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Secret::new(bytes))
    }

    /// 32 random bytes.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Parses base64 (standard or URL-safe, padding optional) of exactly 32
    /// bytes. The error never includes the value.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            LENIENT_STANDARD
                .decode(text)
                .or_else(|_| LENIENT_URL_SAFE.decode(text))
                .map_err(|_| {
                    KeyError::BadSecret("is not base64 (generate one with `openssl rand -base64 32`)".into())
                })?,
        );
        let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            KeyError::BadSecret(format!(
                "must be the base64 of 32 bytes, not {} (generate one with `openssl rand -base64 32`)",
                bytes.len()
            ))
        })?;
        Ok(Self::from_bytes(array))
    }

    /// Standard base64, as the file and `GATEHOUSE_SECRET_KEY` hold it.
    pub fn to_base64(&self) -> Secret<String> {
        Secret::new(STANDARD.encode(self.0.expose()))
    }

    /// Reads the secret from `path`, or creates the file with a new random
    /// secret (mode 0600 on unix) if there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let file_error = |source| KeyError::SecretFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::read(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(e)),
        }
        let secret = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                let text = Zeroizing::new(format!("{}\n", secret.to_base64().expose()));
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(file_error)?;
                tracing::info!(path = %path.display(), "created a new instance secret key");
                Ok(secret)
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(file_error)?;
                Self::read(path, &text)
            }
            Err(e) => Err(file_error(e)),
        }
    }

    fn read(path: &Path, text: &str) -> Result<Self, KeyError> {
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the secret key file is readable by others; chmod 600 it");
            }
        }
        Self::from_base64(text).map_err(|e| match e {
            KeyError::BadSecret(message) => KeyError::BadSecret(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// A key for one purpose, derived from the secret: SHA-256 of the purpose,
    /// a zero byte and the secret.
    pub fn derive_key(&self, purpose: &str) -> Secret<[u8; 32]> {
        let mut hash = Sha256::new();
        hash.update(purpose.as_bytes());
        hash.update([0u8]);
        hash.update(self.0.expose());
        Secret::new(hash.finalize().into())
    }

    fn cipher(&self) -> Aes256Gcm {
        let key = self.derive_key(SIGNING_KEYS_PURPOSE);
        Aes256Gcm::new(key.expose().into())
    }
}

/// AES-256-GCM with a random nonce and the kid as associated data:
/// base64(nonce || ciphertext).
fn encrypt(secret: &InstanceSecret, kid: &str, plaintext: &[u8]) -> Result<String, KeyError> {
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
        .map_err(|_| corrupt(kid, "encryption failed"))?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&ciphertext);
    Ok(STANDARD.encode(blob))
}

fn decrypt(secret: &InstanceSecret, kid: &str, blob: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let blob = STANDARD
        .decode(blob.trim())
        .map_err(|_| corrupt(kid, "private key is not base64"))?;
    if blob.len() < 12 + 16 {
        return Err(corrupt(kid, "private key is too short"));
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
        .map_err(|_| KeyError::Decrypt { kid: kid.to_owned() })
}

// --- key material -------------------------------------------------------------

/// A public JWK as we store and publish it. Only public members exist here,
/// so whatever a stored row holds, the JWKS never shows a private part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PublicJwk {
    kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(default)]
    kid: String,
    #[serde(default)]
    alg: String,
    #[serde(default, rename = "use")]
    use_: String,
}

impl PublicJwk {
    fn ec(x: &[u8], y: &[u8]) -> Self {
        Self::bare("EC", Some("P-256"), Some(x), Some(y), None, None)
    }

    fn okp(x: &[u8]) -> Self {
        Self::bare("OKP", Some("Ed25519"), Some(x), None, None, None)
    }

    fn rsa(n: &[u8], e: &[u8]) -> Self {
        Self::bare("RSA", None, None, None, Some(n), Some(e))
    }

    fn bare(
        kty: &str,
        crv: Option<&str>,
        x: Option<&[u8]>,
        y: Option<&[u8]>,
        n: Option<&[u8]>,
        e: Option<&[u8]>,
    ) -> Self {
        let b64 = |v: Option<&[u8]>| v.map(|v| URL_SAFE_NO_PAD.encode(v));
        Self {
            kty: kty.to_owned(),
            crv: crv.map(str::to_owned),
            x: b64(x),
            y: b64(y),
            n: b64(n),
            e: b64(e),
            kid: String::new(),
            alg: String::new(),
            use_: String::new(),
        }
    }

    /// The RFC 7638 thumbprint: SHA-256 of the required members, in
    /// lexicographic order, without whitespace; base64url.
    fn thumbprint(&self) -> Option<String> {
        let s = |v: &Option<String>| v.as_deref().map(|v| Value::String(v.to_owned()).to_string());
        let canonical = match self.kty.as_str() {
            "EC" => format!(
                r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                s(&self.crv)?,
                s(&self.x)?,
                s(&self.y)?
            ),
            "OKP" => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, s(&self.crv)?, s(&self.x)?),
            "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, s(&self.e)?, s(&self.n)?),
            _ => return None,
        };
        Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                map.insert(k.to_owned(), Value::String(v.clone()));
            }
        };
        put("kty", &Some(self.kty.clone()));
        put("crv", &self.crv);
        put("x", &self.x);
        put("y", &self.y);
        put("n", &self.n);
        put("e", &self.e);
        put("kid", &Some(self.kid.clone()));
        put("alg", &Some(self.alg.clone()));
        put("use", &Some(self.use_.clone()));
        Value::Object(map)
    }

    fn decoding_key(&self) -> Result<DecodingKey, String> {
        let need = |v: &Option<String>, name: &str| v.clone().ok_or_else(|| format!("public key has no {name}"));
        let key = match self.kty.as_str() {
            "EC" => DecodingKey::from_ec_components(&need(&self.x, "x")?, &need(&self.y, "y")?),
            "OKP" => DecodingKey::from_ed_components(&need(&self.x, "x")?),
            "RSA" => DecodingKey::from_rsa_components(&need(&self.n, "n")?, &need(&self.e, "e")?),
            other => return Err(format!("unknown key type {other:?}")),
        };
        key.map_err(|e| e.to_string())
    }
}

/// A private key, opened: what signs, and its public half.
struct KeyMaterial {
    pkcs8: Zeroizing<Vec<u8>>,
    signer: Signer,
    public: PublicJwk,
}

/// A private key ready to sign. ES256 and EdDSA keep the parsed key:
/// `jsonwebtoken::encode` parses the PKCS#8 DER and derives the public key
/// again on every call, which for ES256 costs twice the signature itself
/// (see BENCHMARKS.md). ES256 signs with ring, whose P-256 arithmetic is
/// several times faster than the portable p256 crate's (signing was most of
/// the token endpoint's CPU); its signatures are randomized, which ECDSA
/// allows. The header and claims are serialized as jsonwebtoken does.
enum Signer {
    Es256(Box<ring::signature::EcdsaKeyPair>),
    EdDsa(Box<ed25519_dalek::SigningKey>),
    /// RSA goes through jsonwebtoken (PKCS#1 DER).
    Rs256(EncodingKey),
}

impl Signer {
    /// A compact JWS of `claims` under `header`.
    fn sign(&self, header: &Header, claims: &impl Serialize) -> Result<String, jsonwebtoken::errors::Error> {
        use ed25519_dalek::Signer as _;
        let key = match self {
            Signer::Rs256(key) => return jsonwebtoken::encode(header, claims, key),
            other => other,
        };
        let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));
        let signature = match key {
            // ECDSA_P256_SHA256_FIXED_SIGNING: r || s, as JWS wants (RFC 7518 §3.4).
            Signer::Es256(key) => {
                let signature = key
                    .sign(&ring::rand::SystemRandom::new(), token.as_bytes())
                    .map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey)?;
                URL_SAFE_NO_PAD.encode(signature.as_ref())
            }
            Signer::EdDsa(key) => URL_SAFE_NO_PAD.encode(key.try_sign(token.as_bytes())?.to_bytes()),
            Signer::Rs256(_) => return Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
        };
        token.push('.');
        token.push_str(&signature);
        Ok(token)
    }
}

impl KeyMaterial {
    /// A new random key. RSA takes a while: call it off the async threads.
    fn generate(alg: SigningAlg) -> Result<Self, KeyError> {
        let failed = |e: &dyn fmt::Display| KeyError::Generate {
            alg: alg.as_str(),
            reason: e.to_string(),
        };
        let der = match alg {
            SigningAlg::ES256 => p256::ecdsa::SigningKey::random(&mut OsRng).to_pkcs8_der(),
            SigningAlg::EdDSA => ed25519_dalek::SigningKey::generate(&mut OsRng).to_pkcs8_der(),
            SigningAlg::RS256 => rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)
                .map_err(|e| failed(&e))?
                .to_pkcs8_der(),
        }
        .map_err(|e| failed(&e))?;
        Self::from_pkcs8(alg, der.as_bytes()).map_err(|e| failed(&e))
    }

    /// Parses PKCS#8 DER of `alg`'s key type.
    fn from_pkcs8(alg: SigningAlg, der: &[u8]) -> Result<Self, String> {
        let (signer, public) = match alg {
            SigningAlg::ES256 => {
                let key = p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|e| e.to_string())?;
                let point = key.verifying_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err("the public point is the identity".to_owned());
                };
                let public = PublicJwk::ec(x, y);
                let ring_key = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &Zeroizing::new(key.to_bytes().to_vec()),
                    point.as_bytes(),
                    &ring::rand::SystemRandom::new(),
                )
                .map_err(|e| e.to_string())?;
                (Signer::Es256(Box::new(ring_key)), public)
            }
            SigningAlg::EdDSA => {
                let key = ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|e| e.to_string())?;
                let public = PublicJwk::okp(&key.verifying_key().to_bytes());
                (Signer::EdDsa(Box::new(key)), public)
            }
            SigningAlg::RS256 => {
                let key = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| e.to_string())?;
                // jsonwebtoken signs RSA with PKCS#1 DER.
                let pkcs1 = key.to_pkcs1_der().map_err(|e| e.to_string())?;
                let public = PublicJwk::rsa(&key.n().to_bytes_be(), &key.e().to_bytes_be());
                (Signer::Rs256(EncodingKey::from_rsa_der(pkcs1.as_bytes())), public)
            }
        };
        Ok(Self {
            pkcs8: Zeroizing::new(der.to_vec()),
            signer,
            public,
        })
    }
}

/// A new key of `alg`, ready to store, created at `now`, signing from
/// `signs_from`. Generating RSA takes a while: call it off the async threads.
fn new_key(
    alg: SigningAlg,
    secret: &InstanceSecret,
    now: Timestamp,
    signs_from: Timestamp,
) -> Result<StoredKey, KeyError> {
    let material = KeyMaterial::generate(alg)?;
    let kid = material.public.thumbprint().ok_or_else(|| KeyError::Generate {
        alg: alg.as_str(),
        reason: "no thumbprint".into(),
    })?;
    let mut jwk = material.public.clone();
    jwk.kid = kid.clone();
    jwk.alg = alg.as_str().to_owned();
    jwk.use_ = "sig".to_owned();
    Ok(StoredKey {
        private_encrypted: encrypt(secret, &kid, &material.pkcs8)?,
        kid,
        alg,
        public_jwk: jwk.to_json().to_string(),
        created_at: now,
        signs_from,
        retired_at: None,
    })
}

async fn new_key_blocking(
    alg: SigningAlg,
    secret: &InstanceSecret,
    now: Timestamp,
    signs_from: Timestamp,
) -> Result<StoredKey, KeyError> {
    let secret = secret.clone();
    tokio::task::spawn_blocking(move || new_key(alg, &secret, now, signs_from))
        .await
        .map_err(|e| KeyError::Generate {
            alg: alg.as_str(),
            reason: e.to_string(),
        })?
}

/// Decrypts a stored key and checks it is the key its kid names.
fn open_key(stored: &StoredKey, secret: &InstanceSecret) -> Result<SigningKey, KeyError> {
    let der = decrypt(secret, &stored.kid, &stored.private_encrypted)?;
    let material = KeyMaterial::from_pkcs8(stored.alg, &der).map_err(|e| corrupt(&stored.kid, e))?;
    if material.public.thumbprint().as_deref() != Some(stored.kid.as_str()) {
        return Err(corrupt(&stored.kid, "the private key is not the one the kid names"));
    }
    Ok(SigningKey {
        kid: stored.kid.clone(),
        signer: material.signer,
    })
}

fn parse_public(stored: &StoredKey) -> Result<PublishedKey, KeyError> {
    let jwk: PublicJwk = serde_json::from_str(&stored.public_jwk).map_err(|e| corrupt(&stored.kid, e))?;
    if jwk.kid != stored.kid || jwk.alg != stored.alg.as_str() {
        return Err(corrupt(&stored.kid, "the public JWK names another kid or algorithm"));
    }
    let decoding = jwk.decoding_key().map_err(|e| corrupt(&stored.kid, e))?;
    let es256 = match stored.alg {
        SigningAlg::ES256 => Some(es256_verifier(&jwk).ok_or_else(|| corrupt(&stored.kid, "unreadable EC point"))?),
        _ => None,
    };
    Ok(PublishedKey {
        kid: stored.kid.clone(),
        alg: stored.alg,
        jwk,
        decoding,
        es256,
    })
}

/// ring's verifier for a P-256 JWK: the uncompressed point 04 || x || y.
fn es256_verifier(jwk: &PublicJwk) -> Option<ring::signature::UnparsedPublicKey<Vec<u8>>> {
    let x = URL_SAFE_NO_PAD.decode(jwk.x.as_deref()?).ok()?;
    let y = URL_SAFE_NO_PAD.decode(jwk.y.as_deref()?).ok()?;
    if x.len() != 32 || y.len() != 32 {
        return None;
    }
    let mut point = Vec::with_capacity(65);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Some(ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        point,
    ))
}

/// Checks an ES256 compact JWS with ring (several times faster than
/// jsonwebtoken's `p256`) and returns its claims.
fn verify_es256(key: &ring::signature::UnparsedPublicKey<Vec<u8>>, token: &str) -> Result<Value, Rejection> {
    let (signed, signature) = token.rsplit_once('.').ok_or(Rejection::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Rejection::Malformed)?;
    key.verify(signed.as_bytes(), &signature)
        .map_err(|_| Rejection::BadSignature)?;
    let (_, payload) = signed.split_once('.').ok_or(Rejection::Malformed)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Rejection::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| Rejection::Malformed)
}

fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::EdDSA => Algorithm::EdDSA,
        SigningAlg::RS256 => Algorithm::RS256,
    }
}

/// The algorithm a header names, if it is one we sign with (the inverse
/// of `jwt_alg`).
pub(crate) fn signing_alg(alg: Algorithm) -> Option<SigningAlg> {
    SigningAlg::ALL.into_iter().find(|a| jwt_alg(*a) == alg)
}

// --- the store -------------------------------------------------------------------

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the keys need of the [`Store`]: a seam, so the tests run on memory.
trait KeyStore: Send + Sync {
    fn signing_keys(&self) -> BoxFuture<'_, Result<Vec<StoredKey>, StoreError>>;
    fn add_signing_key<'a>(
        &'a self,
        key: &'a StoredKey,
        audit: &'a AuditEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn purge_signing_keys(&self, before: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>>;
    fn withdraw_signing_keys<'a>(
        &'a self,
        alg: SigningAlg,
        keep: &'a str,
        audit: &'a AuditEvent,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
}

impl KeyStore for dyn Store {
    fn signing_keys(&self) -> BoxFuture<'_, Result<Vec<StoredKey>, StoreError>> {
        gatehouse_store::KeyStore::signing_keys(self)
    }
    fn add_signing_key<'a>(
        &'a self,
        key: &'a StoredKey,
        audit: &'a AuditEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        gatehouse_store::KeyStore::add_signing_key(self, key, audit)
    }
    fn purge_signing_keys(&self, before: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        gatehouse_store::KeyStore::purge_signing_keys(self, before)
    }
    fn withdraw_signing_keys<'a>(
        &'a self,
        alg: SigningAlg,
        keep: &'a str,
        audit: &'a AuditEvent,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        gatehouse_store::KeyStore::withdraw_signing_keys(self, alg, keep, audit)
    }
}

impl<S: KeyStore + ?Sized> KeyStore for Arc<S> {
    fn signing_keys(&self) -> BoxFuture<'_, Result<Vec<StoredKey>, StoreError>> {
        (**self).signing_keys()
    }
    fn add_signing_key<'a>(
        &'a self,
        key: &'a StoredKey,
        audit: &'a AuditEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).add_signing_key(key, audit)
    }
    fn purge_signing_keys(&self, before: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        (**self).purge_signing_keys(before)
    }
    fn withdraw_signing_keys<'a>(
        &'a self,
        alg: SigningAlg,
        keep: &'a str,
        audit: &'a AuditEvent,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        (**self).withdraw_signing_keys(alg, keep, audit)
    }
}

/// The audit event of `key`'s addition (by the IdP itself unless `by`
/// says who: the command line).
fn key_added(key: &StoredKey, by: Option<&str>) -> AuditEvent {
    let event = AuditEvent::new(AuditKind::SigningKeyAdded, None, &Actor::default(), key.created_at)
        .with_detail(serde_json::json!({ "kid": key.kid, "alg": key.alg.as_str(), "signs_from": key.signs_from.0 }));
    match by {
        Some(by) => event.by(by),
        None => event,
    }
}

// --- the key ring ---------------------------------------------------------------

/// A key that signs (the current one of its algorithm).
struct SigningKey {
    kid: String,
    signer: Signer,
}

/// A key in the JWKS, that verifies.
struct PublishedKey {
    kid: String,
    alg: SigningAlg,
    jwk: PublicJwk,
    decoding: DecodingKey,
    /// ES256 keys also verify with ring.
    es256: Option<ring::signature::UnparsedPublicKey<Vec<u8>>>,
}

/// The keys as last loaded.
#[derive(Default)]
struct Snapshot {
    /// The newest key of each algorithm whose time to sign has come and
    /// not passed.
    signing: HashMap<SigningAlg, Arc<SigningKey>>,
    /// Newest first: unretired keys (those still waiting to sign too), and
    /// keys retired less than [`RETIRED_KEY_GRACE`] ago.
    published: Vec<Arc<PublishedKey>>,
    /// When the newest published key of each algorithm that does not sign
    /// yet will.
    waiting: HashMap<SigningAlg, Timestamp>,
}

impl Snapshot {
    /// From the store's rows (newest first) at `now`. Only the signing keys
    /// are decrypted; those already open in `previous` are reused.
    fn build(
        rows: &[StoredKey],
        now: Timestamp,
        secret: &InstanceSecret,
        previous: &Snapshot,
    ) -> Result<Self, KeyError> {
        let mut next = Snapshot::default();
        for row in rows {
            let published = row
                .retired_at
                .is_none_or(|retired| now.0 - retired.0 < RETIRED_KEY_GRACE);
            if !published {
                continue;
            }
            next.published.push(Arc::new(parse_public(row)?));
            if row.signs_from > now {
                next.waiting.entry(row.alg).or_insert(row.signs_from);
                continue;
            }
            let signs_now = row.retired_at.is_none_or(|retired| retired > now);
            if signs_now && !next.signing.contains_key(&row.alg) {
                let key = match previous.signing.get(&row.alg) {
                    Some(key) if key.kid == row.kid => key.clone(),
                    _ => Arc::new(open_key(row, secret)?),
                };
                next.signing.insert(row.alg, key);
            }
        }
        Ok(next)
    }

    fn published(&self, kid: &str) -> Option<Arc<PublishedKey>> {
        self.published.iter().find(|k| k.kid == kid).cloned()
    }
}

struct Inner {
    store: Arc<dyn KeyStore>,
    secret: InstanceSecret,
    /// [`publication_delay`] of the JWKS's max-age.
    publication_delay: i64,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One reload at a time, so an older read never replaces a newer one.
    reload: tokio::sync::Mutex<()>,
    /// One key generation at a time in this process.
    generate: tokio::sync::Mutex<()>,
    /// When an unknown kid last made us reload.
    kid_refresh: Mutex<Option<Instant>>,
    verified: VerifiedTokens,
}

/// Tokens whose signature [`KeyRing::verify`] checked, by the SHA-256 of the
/// whole token, with what they decoded to. A resource server introspects the
/// same access token on every call it serves, and an ES256 verification is
/// most of an introspection's CPU time (see BENCHMARKS.md); a signature over
/// the same bytes under the same kid does not stop being valid, so only that
/// step is skipped: the kid must still be published with the same algorithm,
/// and `exp` and `iss` are checked on every call, as are (by the callers)
/// revocation and the account. Only tokens that passed every check are
/// kept, until they expire; when full, expired entries go, then all.
#[derive(Default)]
struct VerifiedTokens(Mutex<HashMap<[u8; 32], Arc<Verified>>>);

/// A verified token's header and claims.
type Verified = (Header, Value);

impl VerifiedTokens {
    fn get(&self, digest: &[u8; 32]) -> Option<Arc<Verified>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .cloned()
    }

    fn insert(&self, digest: [u8; 32], header: &Header, claims: &Value, exp: i64, now: Timestamp) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= VERIFIED_CAPACITY {
            let live = |v: &Verified| {
                v.1.get("exp")
                    .and_then(Value::as_i64)
                    .is_some_and(|exp| now.0 <= exp.saturating_add(VERIFY_LEEWAY))
            };
            map.retain(|_, v| live(v));
            if map.len() >= VERIFIED_CAPACITY {
                map.clear();
            }
        }
        if now.0 <= exp.saturating_add(VERIFY_LEEWAY) {
            map.insert(digest, Arc::new((header.clone(), claims.clone())));
        }
    }
}

/// The signing keys, decrypted, shared by every request (cheap to clone).
///
/// [`KeyRing::verify`] checks the signature with the published key the
/// header's `kid` names, that the header's `alg` is that key's, `exp` (with
/// [`VERIFY_LEEWAY`]), and that `iss` equals the issuer the caller passes.
/// The issuer is an argument of `verify` rather than of the constructor: a
/// server learns it only once bound, and the caller then signs and checks
/// with the very same string. It checks neither `aud` nor `typ`: the caller
/// checks those for the token it expects (`at+jwt` for an access token, so
/// an ID token is never taken for one).
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        let kids: Vec<&str> = snapshot.published.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("KeyRing")
            .field("published", &kids)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// [`KeyRing::load_for`] with the default JWKS max-age.
    pub async fn load(store: Arc<dyn Store>, secret: &InstanceSecret) -> Result<Self, KeyError> {
        Self::load_for(store, secret, DEFAULT_JWKS_MAX_AGE).await
    }

    /// Loads the keys from the store. On a store without keys (its first
    /// start), makes a key of every algorithm, signing at once; on one that
    /// lacks an algorithm, pre-publishes a key of it (it signs after
    /// [`publication_delay`] of `jwks_max_age`). Two instances starting at
    /// once on one new database may both make keys: the newest sign, the
    /// others stay published until they expire. A key that does not decrypt
    /// with `secret` is an error ([`KeyError::Decrypt`]).
    pub async fn load_for(
        store: Arc<dyn Store>,
        secret: &InstanceSecret,
        jwks_max_age: Duration,
    ) -> Result<Self, KeyError> {
        Self::load_from(Arc::new(store), secret, publication_delay(jwks_max_age)).await
    }

    async fn load_from(
        store: Arc<dyn KeyStore>,
        secret: &InstanceSecret,
        publication_delay: i64,
    ) -> Result<Self, KeyError> {
        let ring = KeyRing {
            inner: Arc::new(Inner {
                store,
                secret: secret.clone(),
                publication_delay,
                snapshot: RwLock::new(Arc::new(Snapshot::default())),
                reload: tokio::sync::Mutex::new(()),
                generate: tokio::sync::Mutex::new(()),
                kid_refresh: Mutex::new(None),
                verified: VerifiedTokens::default(),
            }),
        };
        ring.refresh().await?;
        ring.make_missing_keys().await?;
        Ok(ring)
    }

    /// Makes a key of each algorithm the store has none of: signing at once
    /// if the store has no key at all (no JWKS was ever served from it),
    /// else pre-published.
    async fn make_missing_keys(&self) -> Result<(), KeyError> {
        let _one_at_a_time = self.inner.generate.lock().await;
        let rows = self.inner.store.signing_keys().await?;
        let missing: Vec<SigningAlg> = SigningAlg::ALL
            .into_iter()
            .filter(|alg| rows.iter().all(|row| row.alg != *alg))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now();
        let signs_from = if rows.is_empty() {
            now
        } else {
            now.plus(self.inner.publication_delay)
        };
        let secret = self.inner.secret.clone();
        let algs = missing.clone();
        // RSA takes a while: off the async threads, all in one go.
        let keys = tokio::task::spawn_blocking(move || {
            algs.into_iter()
                .map(|alg| new_key(alg, &secret, now, signs_from))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| KeyError::Generate {
            alg: "all",
            reason: e.to_string(),
        })??;
        for key in &keys {
            self.inner.store.add_signing_key(key, &key_added(key, None)).await?;
            tracing::info!(
                kid = %key.kid,
                alg = key.alg.as_str(),
                signs_from = key.signs_from.0,
                "generated a signing key"
            );
        }
        self.refresh().await
    }

    /// A key for one purpose derived from the instance secret (see
    /// [`InstanceSecret::derive_key`]): the same on every instance that
    /// shares the secret, e.g. to make and check stateless DPoP nonces.
    pub fn derive_key(&self, purpose: &str) -> Secret<[u8; 32]> {
        self.inner.secret.derive_key(purpose)
    }

    /// Reloads the keys from the store.
    pub async fn refresh(&self) -> Result<(), KeyError> {
        let _one_at_a_time = self.inner.reload.lock().await;
        let rows = self.inner.store.signing_keys().await?;
        let next = Snapshot::build(&rows, Timestamp::now(), &self.inner.secret, &self.snapshot())?;
        *self.inner.snapshot.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// Reloads the keys every `every` in a background task (see
    /// [`REFRESH_INTERVAL`]): a key `gatehouse keys rotate` added signs
    /// within that time, and a key retired long ago leaves the JWKS. A
    /// failed reload is logged and the keys already loaded stay. The task
    /// ends once every clone of the ring is dropped.
    pub fn spawn_refresher(&self, every: Duration) -> JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                if let Err(e) = (KeyRing { inner }).refresh().await {
                    tracing::warn!(error = %e, "cannot reload the signing keys; keeping those loaded");
                }
            }
        })
    }

    /// Signs `claims` as a JWT with the current key of `alg`; the header has
    /// `alg`, `kid` and `typ` (e.g. `at+jwt`, or `JWT` for an ID token).
    /// [`KeyError::NotSigningYet`] while the algorithm's only key waits to
    /// sign.
    pub async fn sign(&self, alg: SigningAlg, typ: &str, claims: &impl Serialize) -> Result<String, KeyError> {
        let key = self.signing_key(alg).await?;
        let mut header = Header::new(jwt_alg(alg));
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_owned());
        key.signer.sign(&header, claims).map_err(KeyError::Sign)
    }

    /// Verifies a token we signed, now; returns its header and claims. See
    /// [`KeyRing`] for what it checks. A token refused is
    /// [`KeyError::Rejected`]; any other error is ours.
    pub async fn verify(&self, token: &str, issuer: &str) -> Result<(Header, Value), KeyError> {
        self.verify_at(token, issuer, Timestamp::now()).await
    }

    /// [`KeyRing::verify`] at `now` (for `exp`).
    pub async fn verify_at(&self, token: &str, issuer: &str, now: Timestamp) -> Result<(Header, Value), KeyError> {
        self.verify_when(token, issuer, Some(now)).await
    }

    /// The signature and `iss` of a token we signed, at any time and with
    /// or without `exp` (a stored message to sign again: its claims are
    /// ours only if our key signed them).
    pub async fn verify_signed_by_us(&self, token: &str, issuer: &str) -> Result<(Header, Value), KeyError> {
        self.verify_when(token, issuer, None).await
    }

    async fn verify_when(
        &self,
        token: &str,
        issuer: &str,
        now: Option<Timestamp>,
    ) -> Result<(Header, Value), KeyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
        let kid = header.kid.as_deref().ok_or(Rejection::Malformed)?;
        let key = match self.snapshot().published(kid) {
            Some(key) => key,
            None => {
                if self.may_refresh_for_unknown_kid()
                    && let Err(e) = self.refresh().await
                {
                    tracing::warn!(error = %e, "cannot reload the signing keys");
                }
                self.snapshot().published(kid).ok_or(Rejection::UnknownKid)?
            }
        };
        if header.alg != jwt_alg(key.alg) {
            return Err(Rejection::WrongAlg.into());
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let (header, claims, seen) = match (self.inner.verified.get(&digest), &key.es256) {
            (Some(known), _) => (known.0.clone(), known.1.clone(), true),
            (None, Some(es256)) => (header, verify_es256(es256, token)?, false),
            (None, None) => {
                let mut validation = Validation::new(jwt_alg(key.alg));
                validation.required_spec_claims.clear();
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation.validate_aud = false;
                let data =
                    jsonwebtoken::decode::<Value>(token, &key.decoding, &validation).map_err(|e| match e.kind() {
                        JwtErrorKind::InvalidSignature => Rejection::BadSignature,
                        JwtErrorKind::InvalidAlgorithm => Rejection::WrongAlg,
                        _ => Rejection::Malformed,
                    })?;
                (data.header, data.claims, false)
            }
        };
        let timed = match now {
            Some(now) => {
                let exp = claims.get("exp").and_then(Value::as_i64).ok_or(Rejection::Malformed)?;
                if now.0 > exp.saturating_add(VERIFY_LEEWAY) {
                    return Err(Rejection::Expired.into());
                }
                Some((exp, now))
            }
            None => None,
        };
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(Rejection::WrongIssuer.into());
        }
        if let Some((exp, now)) = timed
            && !seen
        {
            self.inner.verified.insert(digest, &header, &claims, exp, now);
        }
        Ok((header, claims))
    }

    /// The published keys as a JWK Set (RFC 7517 §5), newest first: `kty`,
    /// `crv`/`x`/`y` or `n`/`e`, `kid`, `alg`, `use: "sig"`. Never a private
    /// member.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.snapshot().published.iter().map(|k| k.jwk.to_json()).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The kid that signs for `alg` now, if there is a key of it yet.
    pub fn current_kid(&self, alg: SigningAlg) -> Option<String> {
        self.snapshot().signing.get(&alg).map(|k| k.kid.clone())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn may_refresh_for_unknown_kid(&self) -> bool {
        let mut last = self.inner.kid_refresh.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < UNKNOWN_KID_REFRESH) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The current key of `alg`. If there is none, reload (its time may have
    /// come, or a key may have been added); if there still is none, make
    /// one (pre-published: it signs later), and refuse meanwhile.
    async fn signing_key(&self, alg: SigningAlg) -> Result<Arc<SigningKey>, KeyError> {
        if let Some(key) = self.snapshot().signing.get(&alg) {
            return Ok(key.clone());
        }
        self.refresh().await?;
        let snapshot = self.snapshot();
        if !snapshot.waiting.contains_key(&alg) && !snapshot.signing.contains_key(&alg) {
            // Its keys were deleted by hand.
            self.make_missing_keys().await?;
        }
        let snapshot = self.snapshot();
        if let Some(key) = snapshot.signing.get(&alg) {
            return Ok(key.clone());
        }
        Err(match snapshot.waiting.get(&alg) {
            Some(signs_from) => KeyError::NotSigningYet {
                alg: alg.as_str(),
                signs_from: *signs_from,
            },
            None => KeyError::Generate {
                alg: alg.as_str(),
                reason: "no key of it in the store".to_owned(),
            },
        })
    }
}

/// How a new key takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Published at once, signing after [`publication_delay`] of the JWKS's
    /// max-age; the older key signs until then and stays published for
    /// [`RETIRED_KEY_GRACE`] after.
    Prepublish { jwks_max_age: Duration },
    /// Signing at once, the older keys of the algorithm withdrawn from the
    /// JWKS at once: for a compromised key. Tokens they signed stop
    /// verifying, and a relier may meet the new kid before its cached JWKS
    /// has it (ours fetches the JWKS again for an unknown kid).
    Now,
}

/// What [`rotate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    /// The new key, published from now on.
    pub kid: String,
    pub alg: SigningAlg,
    /// When it starts signing (running servers pick it up at their next
    /// reload after that).
    pub signs_from: Timestamp,
    /// How many keys retired longer than [`RETIRED_KEY_GRACE`] ago were
    /// deleted.
    pub purged: u64,
    /// How many older keys of the algorithm were withdrawn ([`Rotation::Now`]).
    pub withdrawn: u64,
}

/// Adds a new key of `alg`, created at `now`, taking over as `how` says;
/// the store retires the older keys of `alg` when it starts signing. Keys
/// retired longer than [`RETIRED_KEY_GRACE`] ago are deleted. Refuses to
/// add a key if `secret` does not open the keys already stored, since no
/// server could then use the new key.
pub async fn rotate(
    store: &dyn Store,
    secret: &InstanceSecret,
    alg: SigningAlg,
    now: Timestamp,
    how: Rotation,
) -> Result<Rotated, KeyError> {
    rotate_in(store, secret, alg, now, how).await
}

async fn rotate_in<S: KeyStore + ?Sized>(
    store: &S,
    secret: &InstanceSecret,
    alg: SigningAlg,
    now: Timestamp,
    how: Rotation,
) -> Result<Rotated, KeyError> {
    let rows = store.signing_keys().await?;
    for row in rows.iter().filter(|k| k.retired_at.is_none()) {
        open_key(row, secret)?;
    }
    let signs_from = match how {
        // A store that holds no key has never served a JWKS (as on a first
        // start, `make_missing_keys`): nothing to wait for. Else a server
        // started meanwhile would have no key of `alg` that signs.
        Rotation::Prepublish { .. } if rows.is_empty() => now,
        Rotation::Prepublish { jwks_max_age } => now.plus(publication_delay(jwks_max_age)),
        Rotation::Now => now,
    };
    let stored = new_key_blocking(alg, secret, now, signs_from).await?;
    // `rotate` is the command line's (`gatehouse keys rotate`).
    store
        .add_signing_key(&stored, &key_added(&stored, Some(BY_CLI)))
        .await?;
    let withdrawn = match how {
        Rotation::Now => {
            let audit = AuditEvent::new(AuditKind::SigningKeysWithdrawn, None, &Actor::default(), now)
                .with_detail(serde_json::json!({ "alg": alg.as_str(), "kept": stored.kid }))
                .by(BY_CLI);
            store.withdraw_signing_keys(alg, &stored.kid, &audit).await?
        }
        Rotation::Prepublish { .. } => 0,
    };
    let purged = store.purge_signing_keys(now.minus(RETIRED_KEY_GRACE)).await?;
    tracing::info!(
        kid = %stored.kid,
        alg = alg.as_str(),
        signs_from = signs_from.0,
        purged,
        withdrawn,
        "rotated the signing key"
    );
    Ok(Rotated {
        kid: stored.kid,
        alg,
        signs_from,
        purged,
        withdrawn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://id.example.com";

    /// The store's signing-key methods, in memory, as the trait documents
    /// them.
    #[derive(Default)]
    struct FakeStore {
        keys: Mutex<Vec<StoredKey>>,
    }

    impl FakeStore {
        fn rows(&self) -> Vec<StoredKey> {
            self.keys.lock().expect("lock").clone()
        }
    }

    impl KeyStore for FakeStore {
        fn signing_keys(&self) -> BoxFuture<'_, Result<Vec<StoredKey>, StoreError>> {
            let mut keys = self.rows();
            keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
            Box::pin(async move { Ok(keys) })
        }
        fn add_signing_key<'a>(
            &'a self,
            key: &'a StoredKey,
            _audit: &'a AuditEvent,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            let mut keys = self.keys.lock().expect("lock");
            for old in keys
                .iter_mut()
                .filter(|k| k.alg == key.alg && k.retired_at.is_none_or(|r| r > key.signs_from))
            {
                old.retired_at = Some(key.signs_from);
            }
            // At the front, so that the (stable) sort puts it first on a tie.
            keys.insert(0, key.clone());
            Box::pin(async { Ok(()) })
        }
        fn purge_signing_keys(&self, before: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
            let mut keys = self.keys.lock().expect("lock");
            let len = keys.len();
            keys.retain(|k| k.retired_at.is_none_or(|r| r >= before));
            let purged = (len - keys.len()) as u64;
            Box::pin(async move { Ok(purged) })
        }
        fn withdraw_signing_keys<'a>(
            &'a self,
            alg: SigningAlg,
            keep: &'a str,
            _audit: &'a AuditEvent,
        ) -> BoxFuture<'a, Result<u64, StoreError>> {
            let mut keys = self.keys.lock().expect("lock");
            let len = keys.len();
            keys.retain(|k| k.alg != alg || k.kid == keep);
            let withdrawn = (len - keys.len()) as u64;
            Box::pin(async move { Ok(withdrawn) })
        }
    }

    /// The publication delay the tests' rings use, in seconds.
    const DELAY: i64 = 10;

    /// A rotation that signs [`publication_delay`] of nothing: 7 s later.
    const SOON: Rotation = Rotation::Prepublish {
        jwks_max_age: Duration::ZERO,
    };

    fn es256_kids(ring: &KeyRing) -> Vec<String> {
        ring.jwks()["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter(|k| k["alg"] == "ES256")
            .map(|k| k["kid"].as_str().expect("kid").to_owned())
            .collect()
    }

    fn claims(exp_in: i64) -> Value {
        let now = Timestamp::now().0;
        json!({ "iss": ISS, "sub": "a_1", "aud": "c_1", "iat": now, "exp": now + exp_in })
    }

    async fn ring() -> (Arc<FakeStore>, InstanceSecret, KeyRing) {
        let store = Arc::new(FakeStore::default());
        let secret = InstanceSecret::generate();
        let ring = KeyRing::load_from(store.clone(), &secret, DELAY).await.expect("load");
        (store, secret, ring)
    }

    fn rejection(result: Result<(Header, Value), KeyError>) -> Rejection {
        match result {
            Err(KeyError::Rejected(r)) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn first_start_makes_a_key_of_every_algorithm_signing_at_once() {
        let (store, secret, ring) = ring().await;
        let rows = store.rows();
        let mut algs: Vec<&str> = rows.iter().map(|k| k.alg.as_str()).collect();
        algs.sort_unstable();
        assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
        for row in &rows {
            assert_eq!(row.signs_from, row.created_at, "no JWKS was served before them");
            assert_eq!(ring.current_kid(row.alg).as_deref(), Some(row.kid.as_str()));
            // The private part is not in the clear.
            assert!(!row.private_encrypted.is_empty());
            assert!(!row.public_jwk.contains("\"d\""));
        }
        // A second start (or instance) signs with the same keys.
        let again = KeyRing::load_from(store.clone(), &secret, DELAY).await.expect("load");
        for alg in SigningAlg::ALL {
            assert_eq!(again.current_kid(alg), ring.current_kid(alg));
        }
        assert_eq!(store.rows().len(), 3);
    }

    #[tokio::test]
    async fn a_missing_algorithm_is_published_before_it_signs() {
        // A store from before every algorithm had a key: only ES256.
        let store = Arc::new(FakeStore::default());
        let secret = InstanceSecret::generate();
        let then = Timestamp::now().minus(1000);
        let key = new_key(SigningAlg::ES256, &secret, then, then).expect("key");
        store.add_signing_key(&key, &key_added(&key, None)).await.expect("add");
        let ring = KeyRing::load_from(store.clone(), &secret, DELAY).await.expect("load");
        let rows = store.rows();
        assert_eq!(rows.len(), 3);
        let ed = rows.iter().find(|k| k.alg == SigningAlg::EdDSA).expect("an EdDSA key");
        assert_eq!(ed.signs_from, ed.created_at.plus(DELAY));
        // Published at once, refused for signing until its time.
        assert!(
            ring.jwks()["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .any(|k| k["kid"] == ed.kid.as_str())
        );
        assert!(matches!(
            ring.sign(SigningAlg::EdDSA, "JWT", &claims(300)).await,
            Err(KeyError::NotSigningYet { alg: "EdDSA", .. })
        ));
        assert!(ring.sign(SigningAlg::ES256, "JWT", &claims(300)).await.is_ok());
        let later = Snapshot::build(&rows, ed.signs_from, &secret, &Snapshot::default()).expect("build");
        assert_eq!(
            later.signing.get(&SigningAlg::EdDSA).map(|k| k.kid.as_str()),
            Some(ed.kid.as_str())
        );
    }
    #[tokio::test]
    async fn sign_and_verify_every_algorithm() {
        let (store, _, ring) = ring().await;
        for alg in SigningAlg::ALL {
            let token = ring.sign(alg, "at+jwt", &claims(300)).await.expect("sign");
            let (header, body) = ring.verify(&token, ISS).await.expect("verify");
            assert_eq!(header.alg, jwt_alg(alg));
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid, ring.current_kid(alg));
            assert_eq!(body["sub"], "a_1");
        }
        // EdDSA and RS256 were generated on first use, and stored.
        let mut algs: Vec<&str> = store.rows().iter().map(|k| k.alg.as_str()).collect();
        algs.sort_unstable();
        assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
        // The ID token `typ`.
        let token = ring.sign(SigningAlg::ES256, "JWT", &claims(300)).await.expect("sign");
        assert_eq!(
            ring.verify(&token, ISS).await.expect("verify").0.typ.as_deref(),
            Some("JWT")
        );
    }

    #[test]
    fn prepared_signers_make_the_tokens_jsonwebtoken_makes() {
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA] {
            let material = KeyMaterial::generate(alg).expect("key");
            let encoding = match alg {
                SigningAlg::ES256 => EncodingKey::from_ec_der(&material.pkcs8),
                _ => EncodingKey::from_ed_der(&material.pkcs8),
            };
            let mut header = Header::new(jwt_alg(alg));
            header.kid = Some("k1".to_owned());
            header.typ = Some("at+jwt".to_owned());
            let ours = material.signer.sign(&header, &claims(300)).expect("sign");
            let theirs = jsonwebtoken::encode(&header, &claims(300), &encoding).expect("encode");
            // The same header and claims, byte for byte.
            let signed_part = |t: &str| t.rsplit_once('.').map(|(p, _)| p.to_owned());
            assert_eq!(signed_part(&ours), signed_part(&theirs), "{}", alg.as_str());
            if alg == SigningAlg::EdDSA {
                // Deterministic: the same signature too.
                assert_eq!(ours, theirs);
            }
            // ES256 signatures are randomized: jsonwebtoken verifies ours
            // with the public key.
            let public = material.public.decoding_key().expect("decoding key");
            let mut validation = Validation::new(jwt_alg(alg));
            validation.validate_aud = false;
            validation.set_issuer(&[ISS]);
            jsonwebtoken::decode::<serde_json::Value>(&ours, &public, &validation).expect("verifies");
        }
    }

    #[tokio::test]
    async fn a_token_verified_before_is_still_checked_in_full() {
        let (store, secret, ring) = ring().await;
        let token = ring
            .sign(SigningAlg::ES256, "at+jwt", &claims(300))
            .await
            .expect("sign");
        let first = ring.verify(&token, ISS).await.expect("verify");
        // Again: the same answer (from the verified tokens).
        let again = ring.verify(&token, ISS).await.expect("verify");
        assert_eq!(first, again);
        // Expiry and issuer are checked every time.
        let later = Timestamp(Timestamp::now().0 + 300 + VERIFY_LEEWAY + 1);
        assert_eq!(rejection(ring.verify_at(&token, ISS, later).await), Rejection::Expired);
        assert_eq!(
            rejection(ring.verify(&token, "https://other.example.com").await),
            Rejection::WrongIssuer
        );
        // A changed signature is not the token verified before.
        let parts: Vec<&str> = token.split('.').collect();
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        sig[7] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(rejection(ring.verify(&flipped, ISS).await), Rejection::BadSignature);
        // Once its key is no longer published, the token is refused.
        let long_ago = Timestamp(Timestamp::now().0 - RETIRED_KEY_GRACE - 10);
        let newer = new_key(SigningAlg::ES256, &secret, long_ago, long_ago).expect("key");
        store
            .add_signing_key(&newer, &key_added(&newer, None))
            .await
            .expect("add");
        ring.refresh().await.expect("refresh");
        assert_eq!(rejection(ring.verify(&token, ISS).await), Rejection::UnknownKid);
    }

    #[tokio::test]
    async fn tampered_tokens_are_refused() {
        let (_, _, ring) = ring().await;
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA] {
            let token = ring.sign(alg, "at+jwt", &claims(300)).await.expect("sign");
            let parts: Vec<&str> = token.split('.').collect();
            // Another payload under the same signature.
            let mut forged = claims(300);
            forged["sub"] = json!("a_2");
            let payload = URL_SAFE_NO_PAD.encode(forged.to_string());
            let swapped = format!("{}.{}.{}", parts[0], payload, parts[2]);
            assert_eq!(rejection(ring.verify(&swapped, ISS).await), Rejection::BadSignature);
            // A flipped bit in the signature.
            let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
            sig[5] ^= 1;
            let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
            assert_eq!(rejection(ring.verify(&flipped, ISS).await), Rejection::BadSignature);
            // The header says another algorithm.
            let mut header: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
            for other in ["HS256", "none", "RS256"] {
                header["alg"] = json!(other);
                let h = URL_SAFE_NO_PAD.encode(header.to_string());
                let confused = format!("{h}.{}.{}", parts[1], parts[2]);
                assert!(
                    matches!(ring.verify(&confused, ISS).await, Err(KeyError::Rejected(_))),
                    "{other}"
                );
            }
        }
        assert_eq!(rejection(ring.verify("not a token", ISS).await), Rejection::Malformed);
        assert_eq!(rejection(ring.verify("", ISS).await), Rejection::Malformed);
    }

    /// A stored message to sign again: ours whenever it was signed, with
    /// or without `exp`, and only if our key signed it for our issuer.
    #[tokio::test]
    async fn what_we_signed_long_ago_is_still_ours() {
        let (_, _, ring) = ring().await;
        let set = json!({ "iss": ISS, "iat": 1, "jti": "j" });
        let token = ring.sign(SigningAlg::EdDSA, "secevent+jwt", &set).await.expect("sign");
        let (header, claims) = ring.verify_signed_by_us(&token, ISS).await.expect("ours");
        assert_eq!((header.typ.as_deref(), claims), (Some("secevent+jwt"), set));
        // Not a token to accept now (no exp), nor for another issuer.
        assert_eq!(rejection(ring.verify(&token, ISS).await), Rejection::Malformed);
        assert_eq!(
            rejection(ring.verify_signed_by_us(&token, "https://evil.example.com").await),
            Rejection::WrongIssuer
        );
        let (_, _, stranger) = self::ring().await;
        let theirs = stranger
            .sign(SigningAlg::ES256, "secevent+jwt", &json!({ "iss": ISS }))
            .await
            .expect("sign");
        assert_eq!(
            rejection(ring.verify_signed_by_us(&theirs, ISS).await),
            Rejection::UnknownKid
        );
    }

    #[tokio::test]
    async fn unknown_kid_is_refused() {
        let (_, _, ring) = ring().await;
        let (_, _, stranger) = self::ring().await;
        let token = stranger
            .sign(SigningAlg::ES256, "at+jwt", &claims(300))
            .await
            .expect("sign");
        assert_eq!(rejection(ring.verify(&token, ISS).await), Rejection::UnknownKid);
        // No kid at all.
        let mut header = Header::new(Algorithm::ES256);
        header.kid = None;
        let parts: Vec<&str> = token.split('.').collect();
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_string(&header).expect("json"));
        assert_eq!(
            rejection(ring.verify(&format!("{h}.{}.{}", parts[1], parts[2]), ISS).await),
            Rejection::Malformed
        );
    }

    #[tokio::test]
    async fn a_key_another_instance_made_is_found_on_demand() {
        let store = Arc::new(FakeStore::default());
        let secret = InstanceSecret::generate();
        let a = KeyRing::load_from(store.clone(), &secret, DELAY).await.expect("load");
        let b = KeyRing::load_from(store.clone(), &secret, DELAY).await.expect("load");
        // A new EdDSA key, signing at once; B reloads, A has not.
        let rotated = rotate_in(
            store.as_ref(),
            &secret,
            SigningAlg::EdDSA,
            Timestamp::now(),
            Rotation::Now,
        )
        .await
        .expect("rotate");
        b.refresh().await.expect("refresh");
        let token = b.sign(SigningAlg::EdDSA, "JWT", &claims(300)).await.expect("sign");
        assert_ne!(a.current_kid(SigningAlg::EdDSA).as_deref(), Some(rotated.kid.as_str()));
        a.verify(&token, ISS).await.expect("A reloads for the unknown kid");
        assert_eq!(a.current_kid(SigningAlg::EdDSA).as_deref(), Some(rotated.kid.as_str()));
    }
    #[tokio::test]
    async fn expiry_and_issuer_are_checked() {
        let (_, _, ring) = ring().await;
        let now = Timestamp::now();
        let expired = ring
            .sign(SigningAlg::ES256, "at+jwt", &claims(-VERIFY_LEEWAY - 5))
            .await
            .expect("sign");
        assert_eq!(rejection(ring.verify(&expired, ISS).await), Rejection::Expired);
        let token = ring
            .sign(SigningAlg::ES256, "at+jwt", &claims(300))
            .await
            .expect("sign");
        assert!(ring.verify_at(&token, ISS, now.plus(300 + VERIFY_LEEWAY)).await.is_ok());
        assert_eq!(
            rejection(ring.verify_at(&token, ISS, now.plus(300 + VERIFY_LEEWAY + 2)).await),
            Rejection::Expired
        );
        let mut elsewhere = claims(300);
        elsewhere["iss"] = json!("https://evil.example.com");
        let elsewhere = ring.sign(SigningAlg::ES256, "at+jwt", &elsewhere).await.expect("sign");
        assert_eq!(rejection(ring.verify(&elsewhere, ISS).await), Rejection::WrongIssuer);
        let no_exp = ring
            .sign(SigningAlg::ES256, "at+jwt", &json!({ "iss": ISS }))
            .await
            .expect("sign");
        assert_eq!(rejection(ring.verify(&no_exp, ISS).await), Rejection::Malformed);
        let no_iss = ring
            .sign(SigningAlg::ES256, "at+jwt", &json!({ "exp": now.0 + 60 }))
            .await
            .expect("sign");
        assert_eq!(rejection(ring.verify(&no_iss, ISS).await), Rejection::WrongIssuer);
        let iss_list = ring
            .sign(SigningAlg::ES256, "at+jwt", &json!({ "iss": [ISS], "exp": now.0 + 60 }))
            .await
            .expect("sign");
        assert_eq!(rejection(ring.verify(&iss_list, ISS).await), Rejection::WrongIssuer);
    }

    #[tokio::test]
    async fn jwks_has_the_public_keys_and_nothing_private() {
        let (_, _, ring) = ring().await;
        for alg in SigningAlg::ALL {
            ring.sign(alg, "JWT", &claims(60)).await.expect("sign");
        }
        let jwks = ring.jwks();
        let keys = jwks["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 3);
        for key in keys {
            let alg = SigningAlg::parse(key["alg"].as_str().expect("alg")).expect("known alg");
            assert_eq!(key["kid"].as_str(), ring.current_kid(alg).as_deref());
            assert_eq!(key["use"], "sig");
            let members: Vec<&str> = key.as_object().expect("object").keys().map(String::as_str).collect();
            for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
                assert!(!members.contains(&private), "{private} in {key}");
            }
            match alg {
                SigningAlg::ES256 => {
                    assert_eq!((key["kty"].as_str(), key["crv"].as_str()), (Some("EC"), Some("P-256")));
                    assert_eq!(
                        URL_SAFE_NO_PAD
                            .decode(key["x"].as_str().expect("x"))
                            .expect("b64")
                            .len(),
                        32
                    );
                    assert_eq!(
                        URL_SAFE_NO_PAD
                            .decode(key["y"].as_str().expect("y"))
                            .expect("b64")
                            .len(),
                        32
                    );
                }
                SigningAlg::EdDSA => {
                    assert_eq!(
                        (key["kty"].as_str(), key["crv"].as_str()),
                        (Some("OKP"), Some("Ed25519"))
                    );
                    assert_eq!(
                        URL_SAFE_NO_PAD
                            .decode(key["x"].as_str().expect("x"))
                            .expect("b64")
                            .len(),
                        32
                    );
                }
                SigningAlg::RS256 => {
                    assert_eq!(key["kty"], "RSA");
                    assert_eq!(key["e"], "AQAB");
                    assert_eq!(
                        URL_SAFE_NO_PAD
                            .decode(key["n"].as_str().expect("n"))
                            .expect("b64")
                            .len(),
                        256
                    );
                }
            }
            // The kid is the key's thumbprint, and the key verifies through
            // jsonwebtoken's own JWK parsing (what a relier does).
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).expect("a JWK");
            let thumb = jwk
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .expect("thumbprint");
            assert_eq!(key["kid"].as_str(), Some(thumb.as_str()));
            let token = ring.sign(alg, "JWT", &claims(60)).await.expect("sign");
            let mut validation = Validation::new(jwt_alg(alg));
            validation.validate_aud = false;
            let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
            jsonwebtoken::decode::<Value>(&token, &decoding, &validation).expect("a relier verifies it");
        }
    }

    #[test]
    fn thumbprint_matches_rfc_7638() {
        // RFC 7638 §3.1.
        let mut jwk = PublicJwk::rsa(&[], &[]);
        jwk.n = Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into());
        jwk.e = Some("AQAB".into());
        assert_eq!(
            jwk.thumbprint().as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn encryption_round_trip_and_wrong_secret() {
        let secret = InstanceSecret::generate();
        let blob = encrypt(&secret, "kid-1", b"private").expect("encrypt");
        assert_eq!(
            decrypt(&secret, "kid-1", &blob).expect("decrypt").as_slice(),
            b"private"
        );
        // Random nonce: the same plaintext encrypts differently.
        assert_ne!(encrypt(&secret, "kid-1", b"private").expect("encrypt"), blob);
        // Another secret, or another kid (the associated data), fails cleanly.
        let other = InstanceSecret::generate();
        assert!(matches!(decrypt(&other, "kid-1", &blob), Err(KeyError::Decrypt { kid }) if kid == "kid-1"));
        assert!(matches!(
            decrypt(&secret, "kid-2", &blob),
            Err(KeyError::Decrypt { .. })
        ));
        assert!(matches!(decrypt(&secret, "kid-1", "!!"), Err(KeyError::Corrupt { .. })));
        assert!(matches!(
            decrypt(&secret, "kid-1", "AAAA"),
            Err(KeyError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn a_wrong_secret_is_a_clear_error_at_load_and_rotate() {
        let (store, _, _) = ring().await;
        let wrong = InstanceSecret::generate();
        let err = KeyRing::load_from(store.clone(), &wrong, DELAY)
            .await
            .expect_err("wrong secret");
        let KeyError::Decrypt { kid } = &err else {
            panic!("{err:?}")
        };
        assert!(store.rows().iter().any(|k| k.kid == *kid), "{err:?}");
        assert!(
            err.to_string().contains(kid.as_str()) && err.to_string().contains("GATEHOUSE_SECRET_KEY"),
            "{err}"
        );
        let err = rotate_in(store.as_ref(), &wrong, SigningAlg::ES256, Timestamp::now(), SOON)
            .await
            .expect_err("wrong secret");
        assert!(matches!(err, KeyError::Decrypt { .. }));
        assert_eq!(store.rows().len(), 3, "nothing added");
    }

    #[tokio::test]
    async fn a_corrupt_row_is_an_error_not_a_panic() {
        let (store, secret, ring) = ring().await;
        let kid = ring.current_kid(SigningAlg::ES256).expect("kid");
        // The public JWK of another key under this kid.
        let other = new_key(SigningAlg::ES256, &secret, Timestamp::now(), Timestamp::now()).expect("key");
        let row = store.rows().iter().position(|k| k.kid == kid).expect("row");
        store.keys.lock().expect("lock")[row].private_encrypted = encrypt(&secret, &kid, &{
            let der = decrypt(&secret, &other.kid, &other.private_encrypted).expect("decrypt");
            der.to_vec()
        })
        .expect("encrypt");
        assert!(matches!(
            KeyRing::load_from(store.clone(), &secret, DELAY).await,
            Err(KeyError::Corrupt { .. })
        ));
        store.keys.lock().expect("lock")[0].public_jwk = "{".into();
        assert!(matches!(
            KeyRing::load_from(store.clone(), &secret, DELAY).await,
            Err(KeyError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn rotation_publishes_the_new_key_before_it_signs() {
        let (store, secret, ring) = ring().await;
        let old_kid = ring.current_kid(SigningAlg::ES256).expect("kid");
        let old_token = ring
            .sign(SigningAlg::ES256, "at+jwt", &claims(300))
            .await
            .expect("sign");

        let now = Timestamp::now();
        let rotated = rotate_in(store.as_ref(), &secret, SigningAlg::ES256, now, SOON)
            .await
            .expect("rotate");
        assert_eq!(rotated.alg, SigningAlg::ES256);
        assert_ne!(rotated.kid, old_kid);
        assert_eq!(rotated.signs_from, now.plus(publication_delay(Duration::ZERO)));
        ring.refresh().await.expect("refresh");

        // Published at once, newest first; the old key still signs.
        assert_eq!(es256_kids(&ring), [rotated.kid.clone(), old_kid.clone()]);
        assert_eq!(ring.current_kid(SigningAlg::ES256).as_deref(), Some(old_kid.as_str()));
        let (header, _) = ring.verify(&old_token, ISS).await.expect("old verifies");
        assert_eq!(header.kid.as_deref(), Some(old_kid.as_str()));

        // From its time on, the new key signs, the old one stays published.
        let rows = store.signing_keys().await.expect("rows");
        let old = rows.iter().find(|k| k.kid == old_kid).expect("old row");
        assert_eq!(old.retired_at, Some(rotated.signs_from));
        let just_before =
            Snapshot::build(&rows, rotated.signs_from.minus(1), &secret, &Snapshot::default()).expect("build");
        assert_eq!(
            just_before.signing.get(&SigningAlg::ES256).map(|k| k.kid.as_str()),
            Some(old_kid.as_str())
        );
        let then = Snapshot::build(&rows, rotated.signs_from, &secret, &just_before).expect("build");
        assert_eq!(
            then.signing.get(&SigningAlg::ES256).map(|k| k.kid.as_str()),
            Some(rotated.kid.as_str())
        );
        assert!(then.published(&old_kid).is_some(), "the old key stays published");
        // The other algorithms are untouched; another instance with the same
        // secret opens the new key.
        assert_eq!(store.rows().iter().filter(|k| k.retired_at.is_none()).count(), 3);
        KeyRing::load_from(store.clone(), &secret, DELAY).await.expect("load");
    }

    #[tokio::test]
    async fn rotation_now_signs_at_once_and_withdraws_the_old_key() {
        let (store, secret, ring) = ring().await;
        let old_token = ring
            .sign(SigningAlg::ES256, "at+jwt", &claims(300))
            .await
            .expect("sign");
        let rotated = rotate_in(
            store.as_ref(),
            &secret,
            SigningAlg::ES256,
            Timestamp::now(),
            Rotation::Now,
        )
        .await
        .expect("rotate");
        assert_eq!(rotated.withdrawn, 1);
        ring.refresh().await.expect("refresh");
        assert_eq!(
            ring.current_kid(SigningAlg::ES256).as_deref(),
            Some(rotated.kid.as_str())
        );
        assert_eq!(es256_kids(&ring), std::slice::from_ref(&rotated.kid));
        assert_eq!(rejection(ring.verify(&old_token, ISS).await), Rejection::UnknownKid);
        let new_token = ring
            .sign(SigningAlg::ES256, "at+jwt", &claims(300))
            .await
            .expect("sign");
        let (header, _) = ring.verify(&new_token, ISS).await.expect("new verifies");
        assert_eq!(header.kid.as_deref(), Some(rotated.kid.as_str()));
        assert_eq!(store.rows().len(), 3, "the other algorithms' keys stay");
    }
    #[tokio::test]
    async fn a_rotation_on_a_store_without_keys_signs_at_once() {
        let store = FakeStore::default();
        let secret = InstanceSecret::generate();
        let now = Timestamp::now();
        let first = rotate_in(&store, &secret, SigningAlg::ES256, now, SOON)
            .await
            .expect("rotate");
        assert_eq!(first.signs_from, now, "no JWKS was ever served from this store");
        let ring = KeyRing::load_from(Arc::new(store), &secret, DELAY).await.expect("load");
        assert_eq!(ring.current_kid(SigningAlg::ES256).as_deref(), Some(first.kid.as_str()));
    }

    #[tokio::test]
    async fn keys_retired_long_ago_leave_the_jwks_and_are_purged() {
        let store = FakeStore::default();
        let secret = InstanceSecret::generate();
        let now = Timestamp::now();
        let long_ago = now.minus(RETIRED_KEY_GRACE + 120);
        // Oldest: retired long ago; then one retired a minute ago; then current.
        let first = rotate_in(&store, &secret, SigningAlg::ES256, long_ago.minus(60), SOON)
            .await
            .expect("rotate");
        let second = rotate_in(&store, &secret, SigningAlg::ES256, long_ago, SOON)
            .await
            .expect("rotate");
        assert_eq!(
            second.purged, 0,
            "the first retired just now (at the second's creation)"
        );
        let third = rotate_in(&store, &secret, SigningAlg::ES256, now.minus(60), SOON)
            .await
            .expect("rotate");
        assert_eq!(third.purged, 1, "the first, retired longer ago than the grace");
        let rows = store.signing_keys().await.expect("rows");
        assert_eq!(
            rows.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            [third.kid.as_str(), second.kid.as_str()]
        );
        assert!(rows.iter().all(|k| k.kid != first.kid));

        let snapshot = Snapshot::build(&rows, now, &secret, &Snapshot::default()).expect("build");
        assert_eq!(
            snapshot.published.len(),
            2,
            "the second retired a minute ago: still published"
        );
        let later = Snapshot::build(&rows, now.plus(RETIRED_KEY_GRACE), &secret, &snapshot).expect("build");
        assert_eq!(
            later.published.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            [third.kid.as_str()]
        );
        assert_eq!(
            later.signing.get(&SigningAlg::ES256).map(|k| k.kid.as_str()),
            Some(third.kid.as_str())
        );
        // A retired key never signs, whatever its age.
        assert!(later.signing.values().all(|k| k.kid == third.kid));
    }

    #[tokio::test]
    async fn the_refresher_picks_up_a_rotation() {
        let (store, secret, ring) = ring().await;
        let old = ring.current_kid(SigningAlg::ES256).expect("kid");
        let task = ring.spawn_refresher(Duration::from_millis(20));
        let rotated = rotate_in(
            store.as_ref(),
            &secret,
            SigningAlg::ES256,
            Timestamp::now(),
            Rotation::Now,
        )
        .await
        .expect("rotate");
        let mut seen = false;
        for _ in 0..200 {
            if ring.current_kid(SigningAlg::ES256).as_deref() == Some(rotated.kid.as_str()) {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(seen, "still signing with {old}");
        // The task ends once the ring is dropped.
        drop(ring);
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("refresher ends")
            .expect("no panic");
    }

    #[test]
    fn instance_secret_parsing_and_redaction() {
        let secret = InstanceSecret::generate();
        let text = secret.to_base64();
        assert_eq!(InstanceSecret::from_base64(text.expose()).expect("parse"), secret);
        assert_eq!(
            InstanceSecret::from_base64(&format!("  {}\n", text.expose())).expect("trimmed"),
            secret
        );
        let url_safe = URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert_eq!(
            InstanceSecret::from_base64(&url_safe).expect("url-safe"),
            InstanceSecret::from_bytes([0xfb; 32])
        );
        let short = STANDARD.encode([7u8; 16]);
        let err = InstanceSecret::from_base64(&short).expect_err("16 bytes");
        assert!(
            err.to_string().contains("32 bytes") && !err.to_string().contains(&short),
            "{err}"
        );
        assert!(InstanceSecret::from_base64("not base64!").is_err());
        assert_eq!(format!("{secret:?}"), "InstanceSecret([redacted])");
    }

    #[test]
    fn instance_secret_file_is_created_once() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(InstanceSecret::FILE_NAME);
        let first = InstanceSecret::load_or_create(&path).expect("create");
        let second = InstanceSecret::load_or_create(&path).expect("read");
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short").expect("write");
        let err = InstanceSecret::load_or_create(&path).expect_err("malformed");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    /// The real store.
    #[tokio::test]
    async fn with_the_sqlite_store() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
        let store = gatehouse_store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let secret = InstanceSecret::generate();
        let ring = KeyRing::load(store.clone(), &secret).await.expect("load");
        let old_kid = ring.current_kid(SigningAlg::ES256).expect("kid");
        let old_token = ring
            .sign(SigningAlg::ES256, "at+jwt", &claims(300))
            .await
            .expect("sign");
        let token = ring.sign(SigningAlg::EdDSA, "JWT", &claims(300)).await.expect("sign");
        ring.verify(&token, ISS).await.expect("verify");

        let rotated = rotate(store.as_ref(), &secret, SigningAlg::ES256, Timestamp::now(), SOON)
            .await
            .expect("rotate");
        ring.refresh().await.expect("refresh");
        assert_eq!(ring.current_kid(SigningAlg::ES256), Some(old_kid.clone()), "not yet");
        // Both published (created in the same second: in kid order).
        let mut both = vec![rotated.kid.clone(), old_kid.clone()];
        both.sort_unstable();
        let mut published = es256_kids(&ring);
        published.sort_unstable();
        assert_eq!(published, both);
        ring.verify(&old_token, ISS).await.expect("old still verifies");
        let rows = store.signing_keys().await.expect("rows");
        assert_eq!(rows.len(), 4);
        let old = rows.iter().find(|k| k.kid == old_kid).expect("old row");
        assert_eq!(
            old.retired_at,
            Some(rotated.signs_from),
            "it signs until the new one does"
        );
        let new = rows.iter().find(|k| k.kid == rotated.kid).expect("new row");
        assert_eq!(new.signs_from, rotated.signs_from);
        // A restart opens everything.
        let again = KeyRing::load(store.clone(), &secret).await.expect("load");
        assert_eq!(
            again.current_kid(SigningAlg::ES256),
            ring.current_kid(SigningAlg::ES256)
        );
        assert_eq!(again.jwks(), ring.jwks());
    }
}
