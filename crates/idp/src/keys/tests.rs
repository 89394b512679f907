//! The key ring's tests, on a real SQLite store in a temporary folder.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::StoredKey;
use gatehouse_store::Store;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use super::keyring::Snapshot;
use super::material::{KeyMaterial, PublicJwk, decrypt, encrypt, jwt_alg, new_key};
use super::*;

const ISS: &str = "https://id.example.com";

/// A fresh SQLite store in a temporary folder, removed with it.
struct TestStore {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
}

impl TestStore {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
        let store = gatehouse_store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        Self { _dir: dir, store }
    }

    fn arc(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The stored keys, newest first.
    async fn rows(&self) -> Vec<StoredKey> {
        self.store.signing_keys().await.expect("rows")
    }
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &dyn Store {
        self.store.as_ref()
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

async fn ring() -> (TestStore, InstanceSecret, KeyRing) {
    let store = TestStore::new().await;
    let secret = InstanceSecret::generate();
    let ring = KeyRing::load_from(store.arc(), &secret, DELAY).await.expect("load");
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
    let rows = store.rows().await;
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
    let again = KeyRing::load_from(store.arc(), &secret, DELAY).await.expect("load");
    for alg in SigningAlg::ALL {
        assert_eq!(again.current_kid(alg), ring.current_kid(alg));
    }
    assert_eq!(store.rows().await.len(), 3);
}

#[tokio::test]
async fn a_missing_algorithm_is_published_before_it_signs() {
    // A store from before every algorithm had a key: only ES256.
    let store = TestStore::new().await;
    let secret = InstanceSecret::generate();
    let then = Timestamp::now().minus(1000);
    let key = new_key(SigningAlg::ES256, &secret, then, then).expect("key");
    store.add_signing_key(&key, &key_added(&key)).await.expect("add");
    let ring = KeyRing::load_from(store.arc(), &secret, DELAY).await.expect("load");
    let rows = store.rows().await;
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
    let mut algs: Vec<&str> = store.rows().await.iter().map(|k| k.alg.as_str()).collect();
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
    store.add_signing_key(&newer, &key_added(&newer)).await.expect("add");
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
        let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
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
    let store = TestStore::new().await;
    let secret = InstanceSecret::generate();
    let a = KeyRing::load_from(store.arc(), &secret, DELAY).await.expect("load");
    let b = KeyRing::load_from(store.arc(), &secret, DELAY).await.expect("load");
    // A new EdDSA key, signing at once; B reloads, A has not.
    let rotated = rotate(
        &*store,
        &secret,
        SigningAlg::EdDSA,
        Timestamp::now(),
        Rotation::Now,
        "cli",
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
    let err = KeyRing::load_from(store.arc(), &wrong, DELAY)
        .await
        .expect_err("wrong secret");
    let KeyError::Decrypt { kid } = &err else {
        panic!("{err:?}")
    };
    assert!(store.rows().await.iter().any(|k| k.kid == *kid), "{err:?}");
    assert!(
        err.to_string().contains(kid.as_str()) && err.to_string().contains("GATEHOUSE_SECRET_KEY"),
        "{err}"
    );
    let err = rotate(&*store, &wrong, SigningAlg::ES256, Timestamp::now(), SOON, "cli")
        .await
        .expect_err("wrong secret");
    assert!(matches!(err, KeyError::Decrypt { .. }));
    assert_eq!(store.rows().await.len(), 3, "nothing added");
}

#[tokio::test]
async fn a_corrupt_row_is_an_error_not_a_panic() {
    // The newest ES256 key (it signs) holds another key's private part.
    let (store, secret, _) = ring().await;
    let (later, now) = (Timestamp::now().plus(1), Timestamp::now());
    let mut row = new_key(SigningAlg::ES256, &secret, later, now).expect("key");
    let other = new_key(SigningAlg::ES256, &secret, later, now).expect("key");
    let der = decrypt(&secret, &other.kid, &other.private_encrypted).expect("decrypt");
    row.private_encrypted = encrypt(&secret, &row.kid, &der).expect("encrypt");
    store.add_signing_key(&row, &key_added(&row)).await.expect("add");
    assert!(matches!(
        KeyRing::load_from(store.arc(), &secret, DELAY).await,
        Err(KeyError::Corrupt { .. })
    ));
    // A public JWK that is not JSON.
    let (store, secret, _) = ring().await;
    let mut row = new_key(SigningAlg::EdDSA, &secret, later, later).expect("key");
    row.public_jwk = "{".into();
    store.add_signing_key(&row, &key_added(&row)).await.expect("add");
    assert!(matches!(
        KeyRing::load_from(store.arc(), &secret, DELAY).await,
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

    // A second after the first keys, so that it is the newest (the store
    // orders keys made in the same second by kid).
    let now = Timestamp::now().plus(1);
    let rotated = rotate(&*store, &secret, SigningAlg::ES256, now, SOON, "cli")
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
    assert_eq!(store.rows().await.iter().filter(|k| k.retired_at.is_none()).count(), 3);
    KeyRing::load_from(store.arc(), &secret, DELAY).await.expect("load");
}

#[tokio::test]
async fn rotation_now_signs_at_once_and_withdraws_the_old_key() {
    let (store, secret, ring) = ring().await;
    let old_token = ring
        .sign(SigningAlg::ES256, "at+jwt", &claims(300))
        .await
        .expect("sign");
    let rotated = rotate(
        &*store,
        &secret,
        SigningAlg::ES256,
        Timestamp::now(),
        Rotation::Now,
        "cli",
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
    assert_eq!(store.rows().await.len(), 3, "the other algorithms' keys stay");
}
#[tokio::test]
async fn a_rotation_on_a_store_without_keys_signs_at_once() {
    let store = TestStore::new().await;
    let secret = InstanceSecret::generate();
    let now = Timestamp::now();
    let first = rotate(&*store, &secret, SigningAlg::ES256, now, SOON, "cli")
        .await
        .expect("rotate");
    assert_eq!(first.signs_from, now, "no JWKS was ever served from this store");
    let ring = KeyRing::load_from(store.arc(), &secret, DELAY).await.expect("load");
    assert_eq!(ring.current_kid(SigningAlg::ES256).as_deref(), Some(first.kid.as_str()));
}

#[tokio::test]
async fn keys_retired_long_ago_leave_the_jwks_and_are_purged() {
    let store = TestStore::new().await;
    let secret = InstanceSecret::generate();
    let now = Timestamp::now();
    let long_ago = now.minus(RETIRED_KEY_GRACE + 120);
    // Oldest: retired long ago; then one retired a minute ago; then current.
    let first = rotate(&*store, &secret, SigningAlg::ES256, long_ago.minus(60), SOON, "cli")
        .await
        .expect("rotate");
    let second = rotate(&*store, &secret, SigningAlg::ES256, long_ago, SOON, "cli")
        .await
        .expect("rotate");
    assert_eq!(
        second.purged, 0,
        "the first retired just now (at the second's creation)"
    );
    let third = rotate(&*store, &secret, SigningAlg::ES256, now.minus(60), SOON, "cli")
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
    let rotated = rotate(
        &*store,
        &secret,
        SigningAlg::ES256,
        Timestamp::now(),
        Rotation::Now,
        "cli",
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

/// The ring on the real store, across a rotation and a restart.
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

    let rotated = rotate(
        store.as_ref(),
        &secret,
        SigningAlg::ES256,
        Timestamp::now(),
        SOON,
        "cli",
    )
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
