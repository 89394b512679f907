//! The relier library against a fake issuer on loopback: an axum server
//! that publishes metadata and a JWKS we control (and counts the fetches),
//! signs tokens with keys made here, and answers introspection. What the
//! real IdP cannot easily be made to do (expired or future tokens, odd
//! headers, a JWKS that fails or drops a key, made-up kids, DPoP-bound
//! tokens) is tested here; `crates/gatehouse/tests/it/relier.rs` runs the
//! library against the real server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};

use gatehouse_core::oauth::dpop::{access_token_hash, thumbprint};
use gatehouse_relier::{
    AuthError, Authenticated, Error, EventKind, Introspector, Issuer, LogoutEvent, LogoutToken, ReceiveError, Receiver,
    RejectReason, SetToken, Timestamp, Verifier, VerifyError,
};

const AUDIENCE: &str = "https://api.example.com";

// --- keys --------------------------------------------------------------------

struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    /// The public JWK, without kid.
    jwk: Value,
}

fn es256(kid: &str) -> Key {
    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let point = key.verifying_key().to_encoded_point(false);
    let der = key.to_pkcs8_der().unwrap();
    Key {
        kid: kid.into(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        jwk: json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        }),
    }
}

fn ed25519(kid: &str) -> Key {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).unwrap();
    Key {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
        }),
    }
}

impl Key {
    fn alg_name(&self) -> &'static str {
        match self.alg {
            Algorithm::EdDSA => "EdDSA",
            _ => "ES256",
        }
    }

    fn published(&self) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg_name());
        jwk["use"] = json!("sig");
        jwk
    }

    fn header(&self) -> Value {
        json!({ "alg": self.alg_name(), "typ": "at+jwt", "kid": self.kid })
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWS with exactly this header and these claims, signed by `key`.
fn sign(key: &Key, header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding, key.alg).unwrap();
    format!("{message}.{signature}")
}

// --- the fake issuer ------------------------------------------------------------

#[derive(Default)]
struct Fake {
    issuer: Mutex<String>,
    /// What the metadata says the issuer is (normally the same).
    claimed_issuer: Mutex<Option<String>>,
    jwks: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
    jwks_down: AtomicBool,
    revoked: Mutex<HashSet<String>>,
    introspections: AtomicUsize,
}

#[derive(Clone)]
struct FakeIssuer {
    base: String,
    state: Arc<Fake>,
    key: Arc<Key>,
}

async fn metadata(State(fake): State<Arc<Fake>>) -> Json<Value> {
    let base = fake.issuer.lock().unwrap().clone();
    let issuer = fake.claimed_issuer.lock().unwrap().clone().unwrap_or(base.clone());
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}/jwks.json"),
        "introspection_endpoint": format!("{base}/introspect"),
    }))
}

async fn jwks(State(fake): State<Arc<Fake>>) -> Result<Json<Value>, StatusCode> {
    fake.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if fake.jwks_down.load(Ordering::SeqCst) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    Ok(Json(json!({ "keys": fake.jwks.lock().unwrap().clone() })))
}

async fn introspect(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, StatusCode> {
    fake.introspections.fetch_add(1, Ordering::SeqCst);
    // client_secret_basic, form-urlencoded first: "rs:1" / "pa ss".
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("rs%3A1:pa+ss")
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let token = form
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(form.contains(&("token_type_hint".into(), "access_token".into())));
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .and_then(|c| serde_json::from_slice(&c).ok())
        .unwrap_or_default();
    let jti = claims["jti"].as_str().unwrap_or_default();
    if jti.is_empty() || fake.revoked.lock().unwrap().contains(jti) {
        return Ok(Json(json!({ "active": false })));
    }
    let mut answer = claims.clone();
    answer["active"] = json!(true);
    Ok(Json(answer))
}

async fn fake_issuer() -> FakeIssuer {
    let state = Arc::new(Fake::default());
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/jwks.json", get(jwks))
        .route("/introspect", post(introspect))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    *state.issuer.lock().unwrap() = base.clone();
    let key = Arc::new(es256("key-1"));
    state.jwks.lock().unwrap().push(key.published());
    FakeIssuer { base, state, key }
}

impl FakeIssuer {
    async fn issuer(&self) -> Issuer {
        Issuer::discover(&self.base, reqwest::Client::new()).await.unwrap()
    }

    async fn verifier(&self) -> Verifier {
        Verifier::new(self.issuer().await, AUDIENCE)
    }

    fn publish(&self, key: &Key) {
        self.state.jwks.lock().unwrap().push(key.published());
    }

    fn fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    fn claims(&self) -> Value {
        let now = Timestamp::now().0;
        json!({
            "iss": self.base, "sub": "user-1", "aud": [AUDIENCE, "other"], "client_id": "shop",
            "scope": "reports:read payments", "iat": now, "exp": now + 300,
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>()),
        })
    }

    /// A token from the current key with `change` applied to the claims.
    fn token_with(&self, change: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims();
        change(&mut claims);
        sign(&self.key, &self.key.header(), &claims)
    }

    fn token(&self) -> String {
        self.token_with(|_| {})
    }
}

fn rejected(result: Result<gatehouse_relier::VerifiedToken, VerifyError>) -> RejectReason {
    match result {
        Err(VerifyError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

// --- discovery -------------------------------------------------------------------

#[tokio::test]
async fn discovery_checks_the_issuer() {
    let fake = fake_issuer().await;
    let issuer = fake.issuer().await;
    assert_eq!(issuer.issuer(), fake.base);
    assert_eq!(issuer.jwks_uri().as_str(), format!("{}/jwks.json", fake.base));

    // Another spelling of the issuer is not the issuer.
    let slash = format!("{}/", fake.base);
    assert!(matches!(
        Issuer::discover(&slash, reqwest::Client::new()).await,
        Err(Error::IssuerMismatch { .. })
    ));
    // Metadata that names someone else.
    *fake.state.claimed_issuer.lock().unwrap() = Some("https://evil.example".into());
    let err = Issuer::discover(&fake.base, reqwest::Client::new()).await.unwrap_err();
    assert!(matches!(err, Error::IssuerMismatch { .. }), "{err}");
    // Plain http away from loopback is refused before any request.
    assert!(matches!(
        Issuer::discover("http://id.example.com", reqwest::Client::new()).await,
        Err(Error::Insecure { .. })
    ));
    // Nothing listening: an HTTP error naming the URL.
    let err = Issuer::discover("http://127.0.0.1:9", reqwest::Client::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Http { .. }) && err.to_string().contains("127.0.0.1:9"),
        "{err}"
    );
    // https with a reqwest built without TLS (as in this workspace): the
    // error says what to do.
    let err = Issuer::discover("https://127.0.0.1:9", reqwest::Client::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err}");
    if err.to_string().contains("scheme is not http") {
        assert!(err.to_string().contains("TLS feature"), "{err}");
    }
}

// --- verification ---------------------------------------------------------------------

#[tokio::test]
async fn a_good_token_verifies_with_either_algorithm() {
    let fake = fake_issuer().await;
    let ed = ed25519("key-ed");
    fake.publish(&ed);
    let verifier = fake.verifier().await;

    let token = verifier.verify(&fake.token()).await.unwrap();
    assert_eq!(token.subject, "user-1");
    assert_eq!(token.client_id, "shop");
    assert!(token.has_scope("reports:read") && token.has_scope("payments") && !token.has_scope("admin"));
    assert_eq!(token.audience, [AUDIENCE, "other"]);
    assert!(token.jkt.is_none());
    assert!(gatehouse_relier::require_scope(&token, "payments").is_ok());
    assert_eq!(gatehouse_relier::require_scope(&token, "admin").unwrap_err().0, "admin");

    let claims = fake.claims();
    let ed_token = sign(&ed, &ed.header(), &claims);
    let token = verifier.verify(&ed_token).await.unwrap();
    assert_eq!(token.expires_at, Timestamp(claims["exp"].as_i64().unwrap()));
    // A single audience as a string is fine too; `application/at+jwt` too.
    let mut header = fake.key.header();
    header["typ"] = json!("application/at+jwt");
    let one = sign(&fake.key, &header, &{
        let mut c = fake.claims();
        c["aud"] = json!(AUDIENCE);
        c
    });
    assert_eq!(verifier.verify(&one).await.unwrap().audience, [AUDIENCE]);
    // Both keys came from the one fetch.
    assert_eq!(fake.fetches(), 1);
    assert_eq!(verifier.cached_kids(), ["key-1", "key-ed"]);
}

/// A change to a token's claims.
type Change = Box<dyn FnOnce(&mut Value)>;

#[tokio::test]
async fn claims_are_checked() {
    let fake = fake_issuer().await;
    let verifier = fake.verifier().await;
    let now = Timestamp::now().0;
    let cases: Vec<(&str, Change, RejectReason)> = vec![
        (
            "another issuer",
            Box::new(|c| c["iss"] = json!("https://evil.example")),
            RejectReason::WrongIssuer,
        ),
        (
            "another audience",
            Box::new(|c| c["aud"] = json!(["https://other.example"])),
            RejectReason::WrongAudience,
        ),
        (
            "expired",
            Box::new(move |c| c["exp"] = json!(now - 31)),
            RejectReason::Expired,
        ),
        (
            "issued in the future",
            Box::new(move |c| c["iat"] = json!(now + 120)),
            RejectReason::NotYetValid,
        ),
        (
            "not before later",
            Box::new(move |c| c["nbf"] = json!(now + 120)),
            RejectReason::NotYetValid,
        ),
        (
            "no jti",
            Box::new(|c| drop(c.as_object_mut().unwrap().remove("jti"))),
            RejectReason::Malformed,
        ),
        (
            "no client_id",
            Box::new(|c| drop(c.as_object_mut().unwrap().remove("client_id"))),
            RejectReason::Malformed,
        ),
        (
            "a bad scope",
            Box::new(|c| c["scope"] = json!("a \"b")),
            RejectReason::Malformed,
        ),
        (
            "a certificate binding",
            Box::new(|c| c["cnf"] = json!({"x5t#S256": "abc"})),
            RejectReason::UnsupportedBinding,
        ),
    ];
    for (what, change, reason) in cases {
        let token = fake.token_with(change);
        assert_eq!(rejected(verifier.verify(&token).await), reason, "{what}");
    }
    // Within the leeway (30 s) a just-expired token still passes...
    let token = fake.token_with(|c| c["exp"] = json!(now - 5));
    assert!(verifier.verify(&token).await.is_ok());
    // ...and `verify_at` checks at another time.
    let token = fake.token();
    assert_eq!(
        rejected(verifier.verify_at(&token, Timestamp(now + 400)).await),
        RejectReason::Expired
    );
}

#[tokio::test]
async fn headers_and_signatures_are_checked() {
    let fake = fake_issuer().await;
    let ed = ed25519("key-ed");
    fake.publish(&ed);
    let verifier = fake.verifier().await;
    let claims = fake.claims();
    let key = &fake.key;

    // typ: an ID token is not an access token.
    let mut h = key.header();
    h["typ"] = json!("JWT");
    assert_eq!(
        rejected(verifier.verify(&sign(key, &h, &claims)).await),
        RejectReason::NotAnAccessToken
    );
    h.as_object_mut().unwrap().remove("typ");
    assert_eq!(
        rejected(verifier.verify(&sign(key, &h, &claims)).await),
        RejectReason::NotAnAccessToken
    );
    // alg none, HMAC: refused whatever the rest says.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": "key-1"})),
        b64(&claims)
    );
    assert_eq!(
        rejected(verifier.verify(&none).await),
        RejectReason::UnsupportedAlgorithm
    );
    let hs = Key {
        kid: "key-1".into(),
        alg: Algorithm::HS256,
        encoding: EncodingKey::from_secret(b"secret"),
        jwk: json!({}),
    };
    let hs_token = sign(&hs, &json!({"alg": "HS256", "typ": "at+jwt", "kid": "key-1"}), &claims);
    assert_eq!(
        rejected(verifier.verify(&hs_token).await),
        RejectReason::UnsupportedAlgorithm
    );
    // The alg of another key than the kid's.
    let mixed = sign(&ed, &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "key-1"}), &claims);
    assert_eq!(
        rejected(verifier.verify(&mixed).await),
        RejectReason::UnsupportedAlgorithm
    );
    // Signed by a key the JWKS does not have, under a kid it has.
    let impostor = es256("key-1");
    assert_eq!(
        rejected(verifier.verify(&sign(&impostor, &key.header(), &claims)).await),
        RejectReason::BadSignature
    );
    // Claims changed after signing.
    let token = fake.token();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut changed = claims.clone();
    changed["scope"] = json!("reports:read payments admin");
    parts[1] = b64(&changed);
    assert_eq!(
        rejected(verifier.verify(&parts.join(".")).await),
        RejectReason::BadSignature
    );
    // crit, no kid, junk, too long.
    let mut h = key.header();
    h["crit"] = json!(["exp"]);
    assert_eq!(
        rejected(verifier.verify(&sign(key, &h, &claims)).await),
        RejectReason::Malformed
    );
    let mut h = key.header();
    h.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        rejected(verifier.verify(&sign(key, &h, &claims)).await),
        RejectReason::Malformed
    );
    for junk in ["", "abc", "a.b.c", "a.b.c.d", &"a".repeat(9000)] {
        assert_eq!(
            rejected(verifier.verify(junk).await),
            RejectReason::Malformed,
            "{junk:.20}"
        );
    }
}

// --- the JWKS cache ----------------------------------------------------------------------

#[tokio::test]
async fn a_new_key_is_fetched_and_made_up_kids_are_rate_limited() {
    let fake = fake_issuer().await;
    let interval = Duration::from_millis(400);
    let verifier = Verifier::builder(fake.issuer().await, AUDIENCE)
        .jwks_refetch_interval(interval)
        .build();
    for _ in 0..5 {
        verifier.verify(&fake.token()).await.unwrap();
    }
    assert_eq!(fake.fetches(), 1, "the JWKS is cached");

    // The issuer rotates: a token signed by the new key makes the verifier
    // fetch the set again; the old key's tokens keep verifying.
    let old_token = fake.token();
    let new_key = es256("key-2");
    fake.publish(&new_key);
    let new_token = sign(&new_key, &new_key.header(), &fake.claims());
    verifier.verify(&new_token).await.unwrap();
    verifier.verify(&old_token).await.unwrap();
    assert_eq!(fake.fetches(), 2);
    assert_eq!(verifier.cached_kids(), ["key-1", "key-2"]);

    // Made-up kids, many at once: they wait for one shared fetch at most
    // every interval, and are refused.
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let verifier = verifier.clone();
        let junk = sign(
            &fake.key,
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("junk-{i}")}),
            &fake.claims(),
        );
        tasks.push(tokio::spawn(async move { verifier.verify(&junk).await }));
    }
    for task in tasks {
        assert_eq!(rejected(task.await.unwrap()), RejectReason::UnknownKey);
    }
    let fetches = fake.fetches() - 2;
    assert!(
        (1..=2).contains(&fetches),
        "30 made-up kids cost {fetches} fetches in {:?}",
        started.elapsed()
    );
    // Known keys never wait for that.
    verifier.verify(&fake.token()).await.unwrap();
}

#[tokio::test]
async fn a_stale_set_is_refreshed_and_a_withdrawn_key_stops_verifying() {
    let fake = fake_issuer().await;
    let verifier = Verifier::builder(fake.issuer().await, AUDIENCE)
        .jwks_refetch_interval(Duration::from_millis(50))
        .jwks_max_age(Duration::from_millis(200))
        .build();
    verifier.verify(&fake.token()).await.unwrap();
    // The issuer withdraws its key (say it leaked) and publishes another.
    let next = es256("key-2");
    *fake.state.jwks.lock().unwrap() = vec![next.published()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if verifier.verify(&fake.token()).await.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the withdrawn key still verifies"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rejected(verifier.verify(&fake.token()).await), RejectReason::UnknownKey);
    verifier
        .verify(&sign(&next, &next.header(), &fake.claims()))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_jwks_is_unavailable_not_a_rejection() {
    let fake = fake_issuer().await;
    let verifier = Verifier::builder(fake.issuer().await, AUDIENCE)
        .jwks_refetch_interval(Duration::from_millis(50))
        .build();
    fake.state.jwks_down.store(true, Ordering::SeqCst);
    match verifier.verify(&fake.token()).await {
        Err(VerifyError::Unavailable(Error::Status { status: 500, .. })) => {}
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(verifier.prefetch_keys().await.is_err());
    fake.state.jwks_down.store(false, Ordering::SeqCst);
    verifier.prefetch_keys().await.unwrap();
    verifier.verify(&fake.token()).await.unwrap();
    // Once known, keys keep working while the issuer is down.
    fake.state.jwks_down.store(true, Ordering::SeqCst);
    verifier.verify(&fake.token()).await.unwrap();
}

// --- introspection ------------------------------------------------------------------------

#[tokio::test]
async fn introspection_sees_a_revocation() {
    let fake = fake_issuer().await;
    let issuer = fake.issuer().await;
    let introspector = Introspector::new(&issuer, "rs:1", "pa ss").unwrap();
    let token = fake.token();
    let active = introspector.introspect(&token).await.unwrap().expect("active");
    assert_eq!(active.subject.as_deref(), Some("user-1"));
    assert_eq!(active.client_id.as_deref(), Some("shop"));
    assert!(active.scopes.contains("payments"));

    let plain = Verifier::new(issuer.clone(), AUDIENCE);
    let strict = Verifier::builder(issuer.clone(), AUDIENCE)
        .introspection(introspector.clone())
        .build();
    strict.verify(&token).await.unwrap();
    let jti = token
        .split('.')
        .nth(1)
        .map(|c| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap())
        .unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.state.revoked.lock().unwrap().insert(jti);
    assert!(introspector.introspect(&token).await.unwrap().is_none());
    // Local verification cannot know; the verifier that asks does.
    plain.verify(&token).await.unwrap();
    assert_eq!(rejected(strict.verify(&token).await), RejectReason::Inactive);

    // Wrong credentials are our error, not the token's.
    let wrong = Introspector::new(&issuer, "rs:1", "nope").unwrap();
    assert!(matches!(
        wrong.introspect(&token).await,
        Err(Error::Status { status: 401, .. })
    ));
    let before = fake.state.introspections.load(Ordering::SeqCst);
    // A token that fails locally is not sent to the issuer.
    let _ = strict.verify(&fake.token_with(|c| c["aud"] = json!("x"))).await;
    assert_eq!(fake.state.introspections.load(Ordering::SeqCst), before);
}

// --- the axum extractor ------------------------------------------------------------------------

async fn whoami(auth: Authenticated) -> Result<Json<Value>, AuthError> {
    auth.require_scope("reports:read")?;
    Ok(Json(json!({
        "user": auth.user,
        "relier": auth.relier,
        "scopes": auth.scopes.iter().collect::<Vec<_>>(),
        "dpop": auth.token.jkt.is_some(),
    })))
}

async fn maybe(auth: Option<Authenticated>) -> String {
    auth.map_or("anonymous".into(), |a| a.user)
}

/// A resource server on loopback that says it is `public_url`.
async fn resource_server(verifier: Verifier) -> String {
    let app = Router::new()
        .route("/whoami", get(whoami).post(whoami))
        .route("/maybe", get(maybe))
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn json_body(r: reqwest::Response) -> Value {
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

fn challenges(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// A DPoP proof by `key` for `method` on `htu` presenting `token`.
fn proof(key: &Key, method: &str, htu: &str, token: &str) -> String {
    sign(
        key,
        &json!({"typ": "dpop+jwt", "alg": key.alg_name(), "jwk": key.jwk}),
        &json!({
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>()),
            "htm": method, "htu": htu, "iat": Timestamp::now().0,
            "ath": access_token_hash(token),
        }),
    )
}

#[tokio::test]
async fn the_extractor_answers_per_rfc_6750() {
    let fake = fake_issuer().await;
    let verifier = Verifier::builder(fake.issuer().await, AUDIENCE).realm("test").build();
    let base = resource_server(verifier).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/whoami");

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        challenges(&r),
        [r#"Bearer realm="test""#],
        "no DPoP without a public URL"
    );

    let r = http.get(&url).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let c = challenges(&r);
    assert!(
        c[0].starts_with(r#"Bearer realm="test", error="invalid_token", error_description=""#),
        "{c:?}"
    );
    let body = json_body(r).await;
    assert_eq!(body["error"], "invalid_token");

    let r = http.get(&url).header("authorization", "Bearer").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(challenges(&r)[0].contains(r#"error="invalid_request""#));

    let narrow = fake.token_with(|c| c["scope"] = json!("payments"));
    let r = http.get(&url).bearer_auth(&narrow).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let c = challenges(&r);
    assert!(
        c[0].contains(r#"error="insufficient_scope""#) && c[0].contains(r#"scope="reports:read""#),
        "{c:?}"
    );

    let r = http.get(&url).bearer_auth(fake.token()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = json_body(r).await;
    assert_eq!(body["user"], "user-1");
    assert_eq!(body["relier"], "shop");
    assert_eq!(body["scopes"], json!(["payments", "reports:read"]));

    // Optional authentication: none is fine, a bad one is not.
    let r = http.get(format!("{base}/maybe")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "anonymous");
    let r = http
        .get(format!("{base}/maybe"))
        .bearer_auth(fake.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "user-1");
    let r = http
        .get(format!("{base}/maybe"))
        .bearer_auth("x.y.z")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The issuer unreachable before any key is known: 503, not 401.
    let fake2 = fake_issuer().await;
    let verifier2 = fake2.verifier().await;
    fake2.state.jwks_down.store(true, Ordering::SeqCst);
    let base2 = resource_server(verifier2).await;
    let r = http
        .get(format!("{base2}/whoami"))
        .bearer_auth(fake2.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(challenges(&r).is_empty());
}

#[tokio::test]
async fn dpop_bound_tokens_need_a_fresh_proof_by_their_key() {
    let fake = fake_issuer().await;
    // Behind a proxy: clients call https://api.example.com/pay/whoami, the
    // proxy forwards /whoami to us on loopback.
    let public = "https://api.example.com/pay/whoami";
    let verifier = Verifier::builder(fake.issuer().await, AUDIENCE)
        .realm("test")
        .public_url("https://api.example.com/pay/".parse().unwrap())
        .build();
    let base = resource_server(verifier).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/whoami");
    let client_key = es256("client");
    let jkt = thumbprint(&client_key.jwk).unwrap();
    let bound = fake.token_with(|c| c["cnf"] = json!({ "jkt": jkt }));
    let dpop = |token: &str, proof: &str| {
        http.get(&url)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof.to_owned())
    };

    // No token: both challenges.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(
        challenges(&r),
        [
            r#"Bearer realm="test""#,
            r#"DPoP realm="test", algs="ES256 EdDSA Ed25519 RS256""#
        ]
    );

    // A good proof.
    let good = proof(&client_key, "GET", public, &bound);
    let r = dpop(&bound, &good).send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", challenges(&r));
    assert_eq!(json_body(r).await["dpop"], true);

    // The same proof again: a replay.
    let r = dpop(&bound, &good).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let c = challenges(&r);
    assert!(
        c[0].starts_with("DPoP ") && c[0].contains(r#"error="invalid_dpop_proof""#),
        "{c:?}"
    );
    assert!(c[0].contains("used before"), "{c:?}");

    // The URL the proxy saw is not the one the client signed.
    let wrong_url = proof(&client_key, "GET", &url, &bound);
    let r = dpop(&bound, &wrong_url).send().await.unwrap();
    assert!(challenges(&r)[0].contains("htu"), "{:?}", challenges(&r));
    // Another method.
    let r = dpop(&bound, &proof(&client_key, "POST", public, &bound))
        .send()
        .await
        .unwrap();
    assert!(challenges(&r)[0].contains("htm"), "{:?}", challenges(&r));
    // No proof.
    let r = http
        .get(&url)
        .header("authorization", format!("DPoP {bound}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenges(&r)[0].contains(r#"error="invalid_dpop_proof""#));
    // A proof by another key: the token is not theirs.
    let thief = es256("thief");
    let r = dpop(&bound, &proof(&thief, "GET", public, &bound))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        challenges(&r)[0].starts_with(r#"DPoP realm="test", error="invalid_token""#),
        "{:?}",
        challenges(&r)
    );
    // A proof for another token.
    let other = fake.token_with(|c| c["cnf"] = json!({ "jkt": jkt }));
    let r = dpop(&bound, &proof(&client_key, "GET", public, &other))
        .send()
        .await
        .unwrap();
    assert!(challenges(&r)[0].contains("ath"), "{:?}", challenges(&r));
    // The bound token as a bearer token: refused, pointed at DPoP.
    let r = http.get(&url).bearer_auth(&bound).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let c = challenges(&r);
    assert!(
        c[0].starts_with("DPoP ") && c[0].contains(r#"error="invalid_token""#),
        "{c:?}"
    );
    // An unbound token with the DPoP scheme.
    let plain = fake.token();
    let r = dpop(&plain, &proof(&client_key, "GET", public, &plain))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenges(&r)[0].contains("not bound"), "{:?}", challenges(&r));
    // An Ed25519 client key works the same.
    let ed_key = ed25519("client-ed");
    let ed_bound = fake.token_with(|c| c["cnf"] = json!({ "jkt": thumbprint(&ed_key.jwk).unwrap() }));
    let r = dpop(&ed_bound, &proof(&ed_key, "GET", public, &ed_bound))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // And under RFC 9864's name for it, `Ed25519`, as oauth4webapi
    // (openid-client) writes it.
    let ed_proof = sign(
        &ed_key,
        &json!({"typ": "dpop+jwt", "alg": "Ed25519", "jwk": ed_key.jwk}),
        &json!({
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>()),
            "htm": "GET", "htu": public, "iat": Timestamp::now().0,
            "ath": access_token_hash(&ed_bound),
        }),
    );
    let r = dpop(&ed_bound, &ed_proof).send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", challenges(&r));
    assert_eq!(json_body(r).await["dpop"], true);
}

// --- receivers: logout tokens and security event tokens -------------------------

const CLIENT: &str = "shop";
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";

fn jti() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>())
}

impl FakeIssuer {
    fn pushed(&self, typ: Option<&str>, change: impl FnOnce(&mut Value)) -> String {
        let mut header = json!({ "alg": self.key.alg_name(), "kid": self.key.kid });
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        let now = Timestamp::now().0;
        let mut claims = json!({ "iss": self.base, "aud": CLIENT, "iat": now, "jti": jti() });
        change(&mut claims);
        sign(&self.key, &header, &claims)
    }

    fn logout_token(&self, change: impl FnOnce(&mut Value)) -> String {
        self.pushed(Some("logout+jwt"), |c| {
            c["exp"] = json!(Timestamp::now().0 + 120);
            c["sub"] = json!("user-1");
            c["sid"] = json!("sid-1");
            c["events"] = json!({ LOGOUT_EVENT: {} });
            change(c);
        })
    }

    fn set(&self, change: impl FnOnce(&mut Value)) -> String {
        let base = self.base.clone();
        self.pushed(Some("secevent+jwt"), |c| {
            c["sub_id"] = json!({ "format": "iss_sub", "iss": base, "sub": "user-1" });
            c["events"] = json!({ DISABLED: { "reason": "spam" } });
            change(c);
        })
    }
}

fn refused<T: std::fmt::Debug>(result: Result<T, ReceiveError>) -> &'static str {
    result.expect_err("refused").err()
}

#[tokio::test]
async fn logout_tokens_are_checked_per_back_channel_logout() {
    let fake = fake_issuer().await;
    let receiver = Receiver::new(&fake.verifier().await, CLIENT);
    let event = receiver.verify_logout_token(&fake.logout_token(|_| {})).await.unwrap();
    assert_eq!(
        event,
        LogoutEvent {
            sub: Some("user-1".into()),
            sid: Some("sid-1".into())
        }
    );
    // Replayed.
    let token = fake.logout_token(|_| {});
    receiver.verify_logout_token(&token).await.unwrap();
    assert_eq!(refused(receiver.verify_logout_token(&token).await), "invalid_request");
    // typ may be absent, but not another.
    let untyped = fake.pushed(None, |c| {
        c["sid"] = json!("s");
        c["events"] = json!({ LOGOUT_EVENT: {} });
    });
    receiver.verify_logout_token(&untyped).await.unwrap();
    let id_token = fake.pushed(Some("JWT"), |c| {
        c["sid"] = json!("s");
        c["events"] = json!({ LOGOUT_EVENT: {} });
    });
    assert_eq!(
        refused(receiver.verify_logout_token(&id_token).await),
        "invalid_request"
    );
    type Change = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|c| c["aud"] = json!("other")), "invalid_audience"),
        (Box::new(|c| c["iss"] = json!("https://evil.example")), "invalid_issuer"),
        (Box::new(|c| c["nonce"] = json!("n")), "invalid_request"),
        (Box::new(|c| c["events"] = json!({})), "invalid_request"),
        (
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("sub");
                c.as_object_mut().unwrap().remove("sid");
            }),
            "invalid_request",
        ),
        (
            Box::new(|c| c["iat"] = json!(Timestamp::now().0 - 7200)),
            "invalid_request",
        ),
        (
            Box::new(|c| c["iat"] = json!(Timestamp::now().0 + 600)),
            "invalid_request",
        ),
        (
            Box::new(|c| c["exp"] = json!(Timestamp::now().0 - 600)),
            "invalid_request",
        ),
        (Box::new(|c| c["jti"] = json!("")), "invalid_request"),
    ];
    for (change, err) in cases {
        assert_eq!(
            refused(receiver.verify_logout_token(&fake.logout_token(change)).await),
            err
        );
    }
    // A key the issuer does not publish.
    let stranger = es256("stranger");
    let token = fake.logout_token(|_| {});
    let (signed, _) = token.rsplit_once('.').unwrap();
    let header = json!({ "alg": "ES256", "kid": "key-1", "typ": "logout+jwt" });
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(signed.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let forged = sign(&stranger, &header, &claims);
    assert_eq!(refused(receiver.verify_logout_token(&forged).await), "invalid_key");
}

#[tokio::test]
async fn security_event_tokens_are_typed() {
    let fake = fake_issuer().await;
    let receiver = Receiver::new(&fake.verifier().await, CLIENT);
    let event = receiver.verify_set(&fake.set(|_| {})).await.unwrap();
    assert_eq!(event.subject, "user-1");
    assert_eq!(
        event.event,
        EventKind::AccountDisabled {
            reason: Some("spam".into())
        }
    );
    let other = receiver
        .verify_set(&fake.set(|c| c["events"] = json!({ "urn:example:x": {} })))
        .await
        .unwrap();
    assert_eq!(other.event, EventKind::Other("urn:example:x".into()));
    let changed = receiver
        .verify_set(&fake.set(|c| {
            c["events"] = json!({
                "https://schemas.openid.net/secevent/risc/event-type/identifier-changed": { "new-value": "b@example.com" }
            })
        }))
        .await
        .unwrap();
    assert_eq!(
        changed.event,
        EventKind::IdentifierChanged {
            new_value: Some("b@example.com".into())
        }
    );
    // The same SET again (a retransmission, RFC 8935 §2): recognised by
    // its jti, to acknowledge without handling it twice.
    let token = fake.set(|_| {});
    receiver.verify_set(&token).await.unwrap();
    assert!(matches!(
        receiver.verify_set(&token).await,
        Err(ReceiveError::AlreadyReceived)
    ));
    // Retransmitted for as long as the issuer retries (a day): a SET two
    // hours old is accepted, one older than the window is not.
    let two_hours = fake.set(|c| c["iat"] = json!(Timestamp::now().0 - 7200));
    receiver.verify_set(&two_hours).await.unwrap();
    let day = i64::try_from(gatehouse_relier::DEFAULT_RECEIVER_SET_MAX_AGE.as_secs()).unwrap();
    let too_old = fake.set(|c| c["iat"] = json!(Timestamp::now().0 - day - 120));
    assert_eq!(refused(receiver.verify_set(&too_old).await), "invalid_request");
    let short = Receiver::new(&fake.verifier().await, CLIENT).with_set_max_age(Duration::from_secs(3600));
    let two_hours = fake.set(|c| c["iat"] = json!(Timestamp::now().0 - 7200));
    assert_eq!(refused(short.verify_set(&two_hours).await), "invalid_request");
    assert_eq!(
        refused(receiver.verify_set(&fake.set(|c| c["aud"] = json!("other"))).await),
        "invalid_audience"
    );
    let untyped = fake.pushed(None, |c| {
        c["sub"] = json!("u");
        c["events"] = json!({ DISABLED: {} });
    });
    assert_eq!(refused(receiver.verify_set(&untyped).await), "invalid_request");
    let two = fake.set(|c| c["events"] = json!({ DISABLED: {}, "urn:x": {} }));
    assert_eq!(refused(receiver.verify_set(&two).await), "invalid_request");
    // A logout token is not a SET, nor the other way round.
    assert_eq!(
        refused(receiver.verify_set(&fake.logout_token(|_| {})).await),
        "invalid_request"
    );
    assert_eq!(
        refused(receiver.verify_logout_token(&fake.set(|_| {})).await),
        "invalid_request"
    );
}

async fn on_logout(LogoutToken(event): LogoutToken) -> (StatusCode, String) {
    (StatusCode::OK, event.sid.unwrap_or_default())
}

async fn on_event(SetToken(event): SetToken) -> (StatusCode, String) {
    (StatusCode::ACCEPTED, event.subject)
}

#[tokio::test]
async fn the_receiver_extractors_answer_per_the_specifications() {
    let fake = fake_issuer().await;
    let receiver = Receiver::new(&fake.verifier().await, CLIENT);
    let app = Router::new()
        .route("/logout", post(on_logout))
        .route("/events", post(on_event))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    let token = fake.logout_token(|_| {});
    let post_logout = |token: String| {
        http.post(format!("{base}/logout"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("logout_token={token}"))
            .send()
    };
    let ok = post_logout(token.clone()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "sid-1");
    let again = post_logout(token).await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(again).await["error"], "invalid_request");

    let post_set = |token: String, content_type: &'static str| {
        http.post(format!("{base}/events"))
            .header("content-type", content_type)
            .body(token)
            .send()
    };
    let set = fake.set(|_| {});
    let ok = post_set(set.clone(), "application/secevent+jwt").await.unwrap();
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    assert_eq!(ok.text().await.unwrap(), "user-1");
    // Retransmitted: 202 as the first time (RFC 8935 §2), but the handler
    // (which answers with the subject) does not see it again.
    let again = post_set(set, "application/secevent+jwt").await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.text().await.unwrap(), "");
    let foreign = post_set(fake.set(|c| c["aud"] = json!("other")), "application/secevent+jwt")
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::BAD_REQUEST);
    let body = json_body(foreign).await;
    assert_eq!(body["err"], "invalid_audience");
    assert!(body["description"].is_string());
    let wrong_type = post_set(fake.set(|_| {}), "text/plain").await.unwrap();
    assert_eq!(wrong_type.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(wrong_type).await["err"], "invalid_request");
}
