//! Key material: sealing private keys under the instance secret, public
//! JWKs and their thumbprints, keys parsed and ready to sign or verify.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::rngs::OsRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::StoredKey;
use gatehouse_kit::seal::{SealError, Sealer};

use super::*;

/// Sealing a private key under the instance secret, for this purpose.
pub(super) fn sealer(secret: &InstanceSecret) -> Sealer {
    Sealer::new(secret, SIGNING_KEYS_PURPOSE)
}

/// AES-256-GCM with a random nonce and the kid as associated data:
/// base64(nonce || ciphertext).
pub(super) fn encrypt(secret: &InstanceSecret, kid: &str, plaintext: &[u8]) -> Result<String, KeyError> {
    sealer(secret).seal(kid, plaintext).map_err(|e| unsealed(kid, e))
}

pub(super) fn decrypt(secret: &InstanceSecret, kid: &str, blob: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    sealer(secret).open(kid, blob).map_err(|e| unsealed(kid, e))
}

pub(super) fn unsealed(kid: &str, e: SealError) -> KeyError {
    match e {
        SealError::WrongKey => KeyError::Decrypt { kid: kid.to_owned() },
        SealError::Corrupt(why) => corrupt(kid, why),
    }
}

// --- key material -------------------------------------------------------------

/// A public JWK as we store and publish it. Only public members exist here,
/// so whatever a stored row holds, the JWKS never shows a private part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PublicJwk {
    pub(super) kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) e: Option<String>,
    #[serde(default)]
    pub(super) kid: String,
    #[serde(default)]
    pub(super) alg: String,
    #[serde(default, rename = "use")]
    pub(super) use_: String,
}

impl PublicJwk {
    pub(super) fn ec(x: &[u8], y: &[u8]) -> Self {
        Self::bare("EC", Some("P-256"), Some(x), Some(y), None, None)
    }

    pub(super) fn okp(x: &[u8]) -> Self {
        Self::bare("OKP", Some("Ed25519"), Some(x), None, None, None)
    }

    pub(super) fn rsa(n: &[u8], e: &[u8]) -> Self {
        Self::bare("RSA", None, None, None, Some(n), Some(e))
    }

    pub(super) fn bare(
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
    pub(super) fn thumbprint(&self) -> Option<String> {
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

    pub(super) fn to_json(&self) -> Value {
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

    pub(super) fn decoding_key(&self) -> Result<DecodingKey, String> {
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
pub(super) struct KeyMaterial {
    pub(super) pkcs8: Zeroizing<Vec<u8>>,
    pub(super) signer: Signer,
    pub(super) public: PublicJwk,
}

/// A private key ready to sign. ES256 and EdDSA keep the parsed key:
/// `jsonwebtoken::encode` parses the PKCS#8 DER and derives the public key
/// again on every call, which for ES256 costs twice the signature itself
/// (see BENCHMARKS.md). ES256 signs with ring, whose P-256 arithmetic is
/// several times faster than the portable p256 crate's (signing was most of
/// the token endpoint's CPU); its signatures are randomized, which ECDSA
/// allows. The header and claims are serialized as jsonwebtoken does.
pub(super) enum Signer {
    Es256(Box<ring::signature::EcdsaKeyPair>),
    EdDsa(Box<ed25519_dalek::SigningKey>),
    /// RSA goes through jsonwebtoken (PKCS#1 DER).
    Rs256(EncodingKey),
}

impl Signer {
    /// A compact JWS of `claims` under `header`.
    pub(super) fn sign(&self, header: &Header, claims: &impl Serialize) -> Result<String, jsonwebtoken::errors::Error> {
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
    pub(super) fn generate(alg: SigningAlg) -> Result<Self, KeyError> {
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
    pub(super) fn from_pkcs8(alg: SigningAlg, der: &[u8]) -> Result<Self, String> {
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
pub(super) fn new_key(
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

pub(super) async fn new_key_blocking(
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
pub(super) fn open_key(stored: &StoredKey, secret: &InstanceSecret) -> Result<SigningKey, KeyError> {
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

pub(super) fn parse_public(stored: &StoredKey) -> Result<PublishedKey, KeyError> {
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
pub(super) fn es256_verifier(jwk: &PublicJwk) -> Option<ring::signature::UnparsedPublicKey<Vec<u8>>> {
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
pub(super) fn verify_es256(key: &ring::signature::UnparsedPublicKey<Vec<u8>>, token: &str) -> Result<Value, Rejection> {
    let (signed, signature) = token.rsplit_once('.').ok_or(Rejection::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Rejection::Malformed)?;
    key.verify(signed.as_bytes(), &signature)
        .map_err(|_| Rejection::BadSignature)?;
    let (_, payload) = signed.split_once('.').ok_or(Rejection::Malformed)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Rejection::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| Rejection::Malformed)
}

pub(super) fn jwt_alg(alg: SigningAlg) -> Algorithm {
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

/// A key that signs (the current one of its algorithm).
pub(super) struct SigningKey {
    pub(super) kid: String,
    pub(super) signer: Signer,
}

/// A key in the JWKS, that verifies.
pub(super) struct PublishedKey {
    pub(super) kid: String,
    pub(super) alg: SigningAlg,
    pub(super) jwk: PublicJwk,
    pub(super) decoding: DecodingKey,
    /// ES256 keys also verify with ring.
    pub(super) es256: Option<ring::signature::UnparsedPublicKey<Vec<u8>>>,
}
