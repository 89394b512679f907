//! A JWK Set (RFC 7517 §5) as the verifier uses it: each usable signing key
//! by its `kid`, with the one algorithm it may verify. Keys we cannot use
//! (another type or curve, an encryption key, a short RSA modulus, an `alg`
//! that contradicts the key) are left out one by one: a single odd key does
//! not make the whole set unusable.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The smallest RSA modulus we accept, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// A key that verifies, and the algorithm it verifies with.
pub(crate) struct PublicKey {
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

/// The usable keys of a JWK Set, by kid.
pub(crate) type Keys = HashMap<String, Arc<PublicKey>>;

/// Parses a JWK Set document. Fails only if it is not one (no `keys`
/// array); unusable keys are skipped. A kid that appears twice is left out:
/// we could not tell which key it names.
pub(crate) fn parse(document: &Value) -> Result<Keys, &'static str> {
    let list = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWK Set (no \"keys\" array)")?;
    let mut keys = Keys::new();
    let mut duplicates = Vec::new();
    for value in list {
        let Some((kid, key)) = parse_key(value) else { continue };
        if keys.insert(kid.clone(), Arc::new(key)).is_some() {
            duplicates.push(kid);
        }
    }
    for kid in duplicates {
        keys.remove(&kid);
    }
    Ok(keys)
}

/// One JWK, if it is a signing key of ES256 (P-256), EdDSA (Ed25519) or
/// RS256 (2048 bits or more) with a kid.
fn parse_key(value: &Value) -> Option<(String, PublicKey)> {
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let (alg, named) = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
        }
        AlgorithmParameters::RSA(p) if rsa_modulus_len(&p.n)? >= MIN_RSA_BYTES => {
            (Algorithm::RS256, KeyAlgorithm::RS256)
        }
        _ => return None,
    };
    // RFC 7517 §4.4: `alg` is optional; when present it must be the one
    // algorithm this key type verifies here.
    if jwk.common.key_algorithm.is_some_and(|a| a != named) {
        return None;
    }
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some((kid, PublicKey { alg, decoding }))
}

/// The modulus length in bytes, without leading zeros.
fn rsa_modulus_len(n: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(n).ok()?;
    Some(bytes.iter().skip_while(|b| **b == 0).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EC: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    const ED: &str = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

    fn with(base: &str, extra: Value) -> Value {
        let mut v: Value = serde_json::from_str(base).expect("json");
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        v
    }

    fn rsa(bytes: usize) -> Value {
        json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(vec![0xc5u8; bytes]), "e": "AQAB"})
    }

    #[test]
    fn usable_keys_are_kept_with_their_algorithm() {
        let set = json!({"keys": [
            with(EC, json!({"kid": "ec", "alg": "ES256", "use": "sig"})),
            with(ED, json!({"kid": "ed", "alg": "EdDSA"})),
            with(&rsa(256).to_string(), json!({"kid": "rsa", "alg": "RS256"})),
            // No alg: the key type decides.
            with(EC, json!({"kid": "ec-no-alg"})),
        ]});
        let keys = parse(&set).expect("set");
        assert_eq!(keys.len(), 4);
        assert_eq!(keys["ec"].alg, Algorithm::ES256);
        assert_eq!(keys["ed"].alg, Algorithm::EdDSA);
        assert_eq!(keys["rsa"].alg, Algorithm::RS256);
        assert_eq!(keys["ec-no-alg"].alg, Algorithm::ES256);
    }

    #[test]
    fn unusable_keys_are_skipped_one_by_one() {
        let set = json!({"keys": [
            with(EC, json!({"kid": "good", "alg": "ES256"})),
            with(EC, json!({"alg": "ES256"})),
            with(EC, json!({"kid": "enc", "use": "enc"})),
            with(EC, json!({"kid": "ops", "key_ops": ["encrypt"]})),
            with(EC, json!({"kid": "wrong-alg", "alg": "RS256"})),
            with(EC, json!({"kid": "es384", "alg": "ES384"})),
            with(&rsa(128).to_string(), json!({"kid": "short-rsa"})),
            with(&rsa(256).to_string(), json!({"kid": "ps256", "alg": "PS256"})),
            json!({"kid": "hmac", "kty": "oct", "k": "c2VjcmV0"}),
            json!({"kid": "strange", "kty": "XYZ"}),
            json!("not an object"),
            with(ED, json!({"kid": "dup"})),
            with(EC, json!({"kid": "dup"})),
        ]});
        let keys = parse(&set).expect("set");
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
        assert!(parse(&json!({"no": "keys"})).is_err());
        assert!(parse(&json!({"keys": []})).expect("empty set").is_empty());
    }

    #[test]
    fn leading_zeros_do_not_count_in_the_modulus() {
        let mut n = vec![0u8; 10];
        n.extend(vec![0xffu8; 250]);
        assert_eq!(rsa_modulus_len(&URL_SAFE_NO_PAD.encode(n)), Some(250));
        assert_eq!(rsa_modulus_len("!!"), None);
    }
}
