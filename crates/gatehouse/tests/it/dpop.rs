//! DPoP (RFC 9449), with real proofs signed by test keys: tokens bound at
//! the token endpoint (client credentials, code, refresh, token exchange),
//! the nonce dance, and UserInfo refusing every way a bound token can be
//! misused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use p256::pkcs8::EncodePrivateKey;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use serde_json::{Value, json};

use crate::both_backends;
use crate::oauth::{auth_url, authorize, http, jwt_claims, post_form};
use crate::support::{Backend, ClientSpec, TestApp, spawn_app};

const PASSWORD: &str = "a perfectly fine passphrase";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

both_backends!(
    client_credentials_bound_and_the_nonce_dance,
    userinfo_needs_a_proof_by_the_bound_key,
    public_client_refresh_tokens_are_bound,
    narrowed_token_bound_to_the_receiving_service,
    ed25519_keys_sign_as_ed25519_or_eddsa,
    a_bound_token_is_exchanged_only_with_its_key,
    a_code_asked_with_dpop_jkt_needs_that_key,
);

/// A client's DPoP key (ES256, or Ed25519 with [`DpopKey::ed25519`]).
#[derive(Clone)]
struct DpopKey {
    encoding: EncodingKey,
    jwk: Value,
    /// The `alg` its proofs name, and how they are signed.
    alg: &'static str,
    signing: Algorithm,
}

/// What a proof says besides its key.
struct Claims<'a> {
    method: &'a str,
    url: String,
    token: Option<&'a str>,
    nonce: Option<&'a str>,
    iat: i64,
    jti: String,
}

fn now() -> i64 {
    gatehouse_core::Timestamp::now().0
}

impl DpopKey {
    fn new() -> Self {
        let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        DpopKey {
            encoding: EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
            jwk: json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
            }),
            alg: "ES256",
            signing: Algorithm::ES256,
        }
    }

    /// An Ed25519 key whose proofs name `alg`: `EdDSA` (RFC 8037) or
    /// `Ed25519` (RFC 9864, as oauth4webapi writes it).
    fn ed25519(alg: &'static str) -> Self {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).unwrap();
        DpopKey {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            jwk: json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
            }),
            alg,
            signing: Algorithm::EdDSA,
        }
    }

    /// RFC 7638, computed here by hand: SHA-256 of the required members in
    /// order.
    fn jkt(&self) -> String {
        use sha2::Digest;
        let canonical = match self.jwk["kty"].as_str() {
            Some("OKP") => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                self.jwk["x"].as_str().unwrap()
            ),
            _ => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                self.jwk["x"].as_str().unwrap(),
                self.jwk["y"].as_str().unwrap()
            ),
        };
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.signing).unwrap();
        format!("{message}.{signature}")
    }

    fn proof_of(&self, c: Claims<'_>) -> String {
        let mut claims = json!({ "jti": c.jti, "htm": c.method, "htu": c.url, "iat": c.iat });
        if let Some(token) = c.token {
            claims["ath"] = json!(gatehouse_core::oauth::dpop::access_token_hash(token));
        }
        if let Some(nonce) = c.nonce {
            claims["nonce"] = json!(nonce);
        }
        self.sign(&json!({ "typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk }), &claims)
    }

    /// A fresh proof for `method` on `url` (absolute).
    fn proof(&self, method: &str, url: &str, token: Option<&str>, nonce: Option<&str>) -> String {
        self.proof_of(Claims {
            method,
            url: url.to_owned(),
            token,
            nonce,
            iat: now(),
            jti: uuid::Uuid::new_v4().to_string(),
        })
    }
}

/// A POST to `/token` with these DPoP header values: status, headers, body.
async fn token_with_proofs(
    app: &TestApp,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
    proofs: &[&str],
) -> (StatusCode, HeaderMap, Value) {
    let mut req = http().post(format!("{}/token", app.base)).form(form);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    for proof in proofs {
        req = req.header("DPoP", *proof);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.headers().clone(), r.json().await.unwrap_or(Value::Null))
}

fn nonce_of(headers: &HeaderMap) -> String {
    headers
        .get("dpop-nonce")
        .expect("a DPoP-Nonce header")
        .to_str()
        .unwrap()
        .to_owned()
}

/// A nonce from the token endpoint: a proof without one is refused with
/// `use_dpop_nonce` and the nonce to use.
async fn get_nonce(app: &TestApp, key: &DpopKey, auth: Option<(&str, &str)>, form: &[(&str, &str)]) -> String {
    let token_url = format!("{}/token", app.base);
    let (status, headers, body) =
        token_with_proofs(app, auth, form, &[&key.proof("POST", &token_url, None, None)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("use_dpop_nonce")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    nonce_of(&headers)
}

/// A token request with a proof by `key` carrying a nonce: status, body.
async fn token_with_key(
    app: &TestApp,
    key: &DpopKey,
    nonce: &str,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let token_url = format!("{}/token", app.base);
    let proof = key.proof("POST", &token_url, None, Some(nonce));
    let (status, headers, body) = token_with_proofs(app, auth, form, &[&proof]).await;
    assert!(headers.get("dpop-nonce").is_some(), "every DPoP answer carries a nonce");
    (status, body)
}

async fn introspect(app: &TestApp, caller: (&str, &str), token: &str) -> Value {
    post_form(app, "/introspect", Some(caller), &[("token", token)]).await.1
}

async fn client_credentials_bound_and_the_nonce_dance(backend: Backend) {
    let app = spawn_app(backend).await;
    let (c, secret) = app
        .register_client(ClientSpec {
            name: "Pay",
            grants: &["client_credentials"],
            scopes: Some("payments:admin"),
            ..Default::default()
        })
        .await;
    let secret = secret.unwrap();
    let auth = Some((c.id.as_str(), secret.as_str()));
    let form = [("grant_type", "client_credentials"), ("scope", "payments:admin")];
    let key = DpopKey::new();
    let token_url = format!("{}/token", app.base);

    // Discovery says which algorithms proofs may use.
    let meta: Value = http()
        .get(format!("{}/.well-known/openid-configuration", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "Ed25519", "RS256"])
    );

    // The nonce dance: no nonce, use_dpop_nonce with one; then it works.
    let nonce = get_nonce(&app, &key, auth, &form).await;
    let proof = key.proof("POST", &token_url, None, Some(&nonce));
    let (status, headers, body) = token_with_proofs(&app, auth, &form, &[&proof]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert!(!nonce_of(&headers).is_empty(), "a nonce for next time");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_claims(&token)["cnf"], json!({ "jkt": key.jkt() }));
    assert_eq!(
        key.jkt(),
        gatehouse_core::oauth::dpop::thumbprint(&key.jwk).unwrap(),
        "the core's thumbprint is RFC 7638's"
    );

    // Introspection reports the binding.
    let info = introspect(&app, (c.id.as_str(), &secret), &token).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["token_type"], "DPoP");
    assert_eq!(info["cnf"]["jkt"], key.jkt().as_str());

    // The same proof again is a replay.
    let (status, _, body) = token_with_proofs(&app, auth, &form, &[&proof]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
        "{body}"
    );

    // Refusals, each with nothing issued.
    let good = || key.proof("POST", &token_url, None, Some(&nonce));
    let userinfo_url = format!("{}/userinfo", app.base);
    let stale = key.proof_of(Claims {
        method: "POST",
        url: token_url.clone(),
        token: None,
        nonce: Some(&nonce),
        iat: now() - 300,
        jti: "stale".into(),
    });
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("malformed", vec!["not a jwt".into()], "invalid_dpop_proof"),
        ("two headers", vec![good(), good()], "invalid_dpop_proof"),
        (
            "another URL",
            vec![key.proof("POST", &userinfo_url, None, Some(&nonce))],
            "invalid_dpop_proof",
        ),
        (
            "another method",
            vec![key.proof("GET", &token_url, None, Some(&nonce))],
            "invalid_dpop_proof",
        ),
        ("stale", vec![stale], "invalid_dpop_proof"),
        (
            "a nonce not ours",
            vec![key.proof("POST", &token_url, None, Some("made-up"))],
            "use_dpop_nonce",
        ),
    ];
    for (name, proofs, error) in &cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let (status, headers, body) = token_with_proofs(&app, auth, &form, &proofs).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(*error)),
            "{name}: {body}"
        );
        assert!(body.get("access_token").is_none(), "{name}");
        assert!(headers.get("dpop-nonce").is_some(), "{name}");
    }

    // Without DPoP nothing changes: a bearer token.
    let (status, body) = app.client_credentials(c.id.as_str(), &secret, "payments:admin").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(jwt_claims(body["access_token"].as_str().unwrap()).get("cnf").is_none());
    app.finish().await;
}

/// A user's code-flow tokens for a first-party client, asked with a proof
/// by `key` when given: (client id, secret, token response).
async fn code_flow_tokens(app: &TestApp, email: &str, key: Option<&DpopKey>) -> (String, String, Value) {
    let b = app.ready_account(email, PASSWORD).await;
    let (c, secret) = app.register_client(ClientSpec::default()).await;
    let secret = secret.unwrap();
    let tokens = code_flow_for(app, &b, &c, Some(&secret), key).await;
    (c.id.to_string(), secret, tokens)
}

async fn code_flow_for(
    app: &TestApp,
    b: &crate::support::Browser,
    c: &gatehouse_core::oauth::Client,
    secret: Option<&str>,
    key: Option<&DpopKey>,
) -> Value {
    let (url, verifier) = auth_url(app, c.id.as_str(), &c.redirect_uris[0], &[]);
    let back = authorize(b, &url).await;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", back["code"].as_str()),
        ("redirect_uri", c.redirect_uris[0].as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    if secret.is_none() {
        form.push(("client_id", c.id.as_str()));
    }
    let auth = secret.map(|s| (c.id.as_str(), s));
    let (status, body) = match key {
        Some(key) => {
            // The refused first try does not use up the code.
            let nonce = get_nonce(app, key, auth, &form).await;
            token_with_key(app, key, &nonce, auth, &form).await
        }
        None => {
            let (status, _, body) = token_with_proofs(app, auth, &form, &[]).await;
            (status, body)
        }
    };
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// A UserInfo request: status, `WWW-Authenticate` values, headers, body.
async fn userinfo(
    app: &TestApp,
    method: reqwest::Method,
    authorization: Option<String>,
    proof: Option<&str>,
) -> (StatusCode, Vec<String>, HeaderMap, Value) {
    let mut req = http().request(method, format!("{}/userinfo", app.base));
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let challenges = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (status, challenges, headers, r.json().await.unwrap_or(Value::Null))
}

/// Asserts a 401 with exactly one `DPoP` challenge carrying `error`.
#[track_caller]
fn assert_dpop_refusal(got: &(StatusCode, Vec<String>, HeaderMap, Value), error: &str, name: &str) {
    let (status, challenges, _, _) = got;
    assert_eq!(*status, StatusCode::UNAUTHORIZED, "{name}: {challenges:?}");
    assert_eq!(challenges.len(), 1, "{name}: {challenges:?}");
    let c = &challenges[0];
    assert!(c.starts_with("DPoP "), "{name}: {c}");
    assert!(c.contains(&format!("error=\"{error}\"")), "{name}: {c}");
    assert!(c.contains("algs=\"ES256 EdDSA Ed25519 RS256\""), "{name}: {c}");
}

async fn userinfo_needs_a_proof_by_the_bound_key(backend: Backend) {
    use reqwest::Method;
    let app = spawn_app(backend).await;
    let key = DpopKey::new();
    let (client_id, secret, tokens) = code_flow_tokens(&app, "dora@example.com", Some(&key)).await;
    assert_eq!(tokens["token_type"], "DPoP");
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_claims(&token)["cnf"]["jkt"], key.jkt().as_str());
    // A confidential client's refresh token is bound too (DESIGN.md: a
    // sender-constrained token never becomes less constrained): refreshing
    // without a proof by the key, or with another key's, yields nothing, and
    // the key's own proof yields a token bound to it.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let auth = Some((client_id.as_str(), secret.as_str()));
    let (status, body) = post_form(&app, "/token", auth, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "without a proof: {body}"
    );
    let thief = DpopKey::new();
    let nonce = get_nonce(&app, &thief, auth, &form).await;
    let (status, body) = token_with_key(&app, &thief, &nonce, auth, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "another key's proof: {body}"
    );
    let (status, body) = token_with_key(&app, &key, &nonce, auth, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        jwt_claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt().as_str()
    );

    let url = format!("{}/userinfo", app.base);
    let dpop = || Some(format!("DPoP {token}"));

    // A good proof.
    let proof = key.proof("GET", &url, Some(&token), None);
    let (status, _, _, body) = userinfo(&app, Method::GET, dpop(), Some(&proof)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["sub"].as_str().is_some(), "{body}");
    assert_eq!(body["email"], "dora@example.com");
    // POST too, with a proof for POST.
    let post = key.proof("POST", &url, Some(&token), None);
    let (status, _, _, body) = userinfo(&app, Method::POST, dpop(), Some(&post)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The same proof again: a replay.
    let got = userinfo(&app, Method::GET, dpop(), Some(&proof)).await;
    assert_dpop_refusal(&got, "invalid_dpop_proof", "replayed jti");

    // Every other misuse.
    let other = DpopKey::new();
    let stale = key.proof_of(Claims {
        method: "GET",
        url: url.clone(),
        token: Some(&token),
        nonce: None,
        iat: now() - 120,
        jti: uuid::Uuid::new_v4().to_string(),
    });
    let future = key.proof_of(Claims {
        method: "GET",
        url: url.clone(),
        token: Some(&token),
        nonce: None,
        iat: now() + 120,
        jti: uuid::Uuid::new_v4().to_string(),
    });
    let token_url = format!("{}/token", app.base);
    let cases: Vec<(&str, Option<String>, Option<String>, &str)> = vec![
        ("no proof", dpop(), None, "invalid_dpop_proof"),
        (
            "as a bearer token",
            Some(format!("Bearer {token}")),
            None,
            "invalid_token",
        ),
        (
            "as a bearer token, with a proof",
            Some(format!("Bearer {token}")),
            Some(key.proof("GET", &url, Some(&token), None)),
            "invalid_token",
        ),
        (
            "another key",
            dpop(),
            Some(other.proof("GET", &url, Some(&token), None)),
            "invalid_token",
        ),
        (
            "another URL",
            dpop(),
            Some(key.proof("GET", &token_url, Some(&token), None)),
            "invalid_dpop_proof",
        ),
        (
            "another method",
            dpop(),
            Some(key.proof("POST", &url, Some(&token), None)),
            "invalid_dpop_proof",
        ),
        ("stale iat", dpop(), Some(stale), "invalid_dpop_proof"),
        ("future iat", dpop(), Some(future), "invalid_dpop_proof"),
        (
            "no ath",
            dpop(),
            Some(key.proof("GET", &url, None, None)),
            "invalid_dpop_proof",
        ),
        (
            "ath of another token",
            dpop(),
            Some(key.proof("GET", &url, Some("another.token.value"), None)),
            "invalid_dpop_proof",
        ),
        ("junk proof", dpop(), Some("junk".into()), "invalid_dpop_proof"),
    ];
    for (name, authorization, proof, error) in cases {
        let got = userinfo(&app, Method::GET, authorization, proof.as_deref()).await;
        assert_dpop_refusal(&got, error, name);
    }

    // Nonces: ours are accepted; one that is not ours asks for ours.
    let (_, headers, _) = token_with_proofs(
        &app,
        None,
        &[("grant_type", "client_credentials")],
        &[&key.proof("POST", &token_url, None, None)],
    )
    .await;
    let nonce = nonce_of(&headers);
    let with_nonce = key.proof("GET", &url, Some(&token), Some(&nonce));
    let (status, _, _, body) = userinfo(&app, Method::GET, dpop(), Some(&with_nonce)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = userinfo(
        &app,
        Method::GET,
        dpop(),
        Some(&key.proof("GET", &url, Some(&token), Some("not-ours"))),
    )
    .await;
    assert_dpop_refusal(&got, "use_dpop_nonce", "a nonce not ours");
    let fresh = got
        .2
        .get("dpop-nonce")
        .expect("a nonce to use")
        .to_str()
        .unwrap()
        .to_owned();
    let (status, _, _, body) = userinfo(
        &app,
        Method::GET,
        dpop(),
        Some(&key.proof("GET", &url, Some(&token), Some(&fresh))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // An unbound token is not taken with the DPoP scheme.
    let b = app.browser();
    b.login("dora@example.com", PASSWORD).await;
    let c = app
        .store()
        .client(&gatehouse_core::oauth::ClientId(client_id.clone()))
        .await
        .unwrap()
        .unwrap();
    let bearer = code_flow_for(&app, &b, &c, Some(&secret), None).await;
    assert_eq!(bearer["token_type"], "Bearer");
    let unbound = bearer["access_token"].as_str().unwrap().to_owned();
    let got = userinfo(
        &app,
        Method::GET,
        Some(format!("DPoP {unbound}")),
        Some(&key.proof("GET", &url, Some(&unbound), None)),
    )
    .await;
    assert_dpop_refusal(&got, "invalid_token", "an unbound token with the DPoP scheme");
    let (status, _, _, body) = userinfo(&app, Method::GET, Some(format!("Bearer {unbound}")), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // No token at all: a challenge for each scheme.
    let (status, challenges, _, _) = userinfo(&app, Method::GET, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges,
        vec![
            "Bearer realm=\"gatehouse\"".to_owned(),
            "DPoP algs=\"ES256 EdDSA Ed25519 RS256\"".to_owned()
        ]
    );

    // Introspection reports the binding.
    let info = introspect(&app, (&client_id, &secret), &token).await;
    assert_eq!(info["token_type"], "DPoP", "{info}");
    assert_eq!(info["cnf"]["jkt"], key.jkt().as_str());
    app.finish().await;
}

async fn public_client_refresh_tokens_are_bound(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("pia@example.com", PASSWORD).await;
    let (c, _) = app
        .register_client(ClientSpec {
            name: "Spa",
            public: true,
            ..Default::default()
        })
        .await;
    let key = DpopKey::new();
    let tokens = code_flow_for(&app, &b, &c, None, Some(&key)).await;
    assert_eq!(tokens["token_type"], "DPoP");
    let r1 = tokens["refresh_token"].as_str().expect("a refresh token").to_owned();
    let grant_id = jwt_claims(tokens["access_token"].as_str().unwrap())["gid"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = app.store().grant(&grant_id).await.unwrap().unwrap();
    assert_eq!(stored.dpop_jkt, Some(key.jkt()));

    let id = c.id.as_str();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", r1.as_str()),
        ("client_id", id),
    ];
    // Without a proof, or with another key's: invalid_grant, nothing issued.
    let (status, body) = post_form(&app, "/token", None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{body}"
    );
    let thief = DpopKey::new();
    let nonce = get_nonce(&app, &thief, None, &form).await;
    let (status, body) = token_with_key(&app, &thief, &nonce, None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());

    // Those attempts revoked nothing: the key's holder refreshes.
    let (status, body) = token_with_key(&app, &key, &nonce, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        jwt_claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt().as_str()
    );
    let r2 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);

    // The rotated token is bound too.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", r2.as_str()),
        ("client_id", id),
    ];
    let (status, body) = token_with_key(&app, &thief, &nonce, None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = token_with_key(&app, &key, &nonce, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.finish().await;
}

async fn narrowed_token_bound_to_the_receiving_service(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("nell@example.com", PASSWORD).await;
    let (pay, pay_secret) = app
        .register_client(ClientSpec {
            name: "Pay",
            grants: &["client_credentials"],
            scopes: Some("payments:admin"),
            ..Default::default()
        })
        .await;
    let pay_secret = pay_secret.unwrap();
    let (mut shop, shop_secret) = app
        .register_client(ClientSpec {
            name: "Shop",
            grants: &["authorization_code", "token-exchange"],
            scopes: Some("openid payments email"),
            ..Default::default()
        })
        .await;
    shop.audiences = vec![pay.id.to_string()];
    app.store()
        .update_client(
            &shop,
            &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &shop),
        )
        .await
        .unwrap();
    let shop_secret = shop_secret.unwrap();
    let shop_auth = Some((shop.id.as_str(), shop_secret.as_str()));

    let (url, verifier) = auth_url(&app, shop.id.as_str(), &shop.redirect_uris[0], &[]);
    let url = url.replace("scope=openid+email", "scope=openid+payments");
    let back = authorize(&b, &url).await;
    let (status, _, tokens) = token_with_proofs(
        &app,
        shop_auth,
        &[
            ("grant_type", "authorization_code"),
            ("code", &back["code"]),
            ("redirect_uri", &shop.redirect_uris[0]),
            ("code_verifier", &verifier),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let broad = tokens["access_token"].as_str().unwrap().to_owned();

    // The payments service's key makes the proof that goes with the
    // exchange; the narrowed token is bound to it.
    let pay_key = DpopKey::new();
    let form = [
        ("grant_type", TE),
        ("subject_token", broad.as_str()),
        ("subject_token_type", AT),
        ("scope", "payments"),
        ("audience", pay.id.as_str()),
    ];
    let nonce = get_nonce(&app, &pay_key, shop_auth, &form).await;
    let (status, body) = token_with_key(&app, &pay_key, &nonce, shop_auth, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["issued_token_type"], AT);
    let narrowed = body["access_token"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&narrowed);
    assert_eq!(claims["cnf"]["jkt"], pay_key.jkt().as_str());
    assert_eq!(claims["aud"], pay.id.as_str());

    // The payments service sees the binding when it introspects.
    let info = introspect(&app, (pay.id.as_str(), &pay_secret), &narrowed).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["token_type"], "DPoP");
    assert_eq!(info["cnf"]["jkt"], pay_key.jkt().as_str());

    // Stolen, it is useless: not as a bearer token, not with another key
    // (the relier's own included). The payments key passes the binding
    // (and then lacks the scope for UserInfo).
    let userinfo_url = format!("{}/userinfo", app.base);
    use reqwest::Method;
    let got = userinfo(&app, Method::GET, Some(format!("Bearer {narrowed}")), None).await;
    assert_dpop_refusal(&got, "invalid_token", "narrowed token as bearer");
    let shop_key = DpopKey::new();
    let got = userinfo(
        &app,
        Method::GET,
        Some(format!("DPoP {narrowed}")),
        Some(&shop_key.proof("GET", &userinfo_url, Some(&narrowed), None)),
    )
    .await;
    assert_dpop_refusal(&got, "invalid_token", "narrowed token with another key");
    let (status, challenges, _, _) = userinfo(
        &app,
        Method::GET,
        Some(format!("DPoP {narrowed}")),
        Some(&pay_key.proof("GET", &userinfo_url, Some(&narrowed), None)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{challenges:?}");
    assert!(challenges[0].starts_with("DPoP ") && challenges[0].contains("insufficient_scope"));
    app.finish().await;
}

/// RFC 9864's `Ed25519`, as oauth4webapi (openid-client) names its proofs,
/// and RFC 8037's `EdDSA`: either binds a code-flow token to the Ed25519
/// key, and UserInfo takes it with a proof by that key under either name.
async fn ed25519_keys_sign_as_ed25519_or_eddsa(backend: Backend) {
    use reqwest::Method;
    let app = spawn_app(backend).await;
    let url = format!("{}/userinfo", app.base);
    for (i, alg) in ["Ed25519", "EdDSA"].into_iter().enumerate() {
        let key = DpopKey::ed25519(alg);
        let (_, _, tokens) = code_flow_tokens(&app, &format!("ed{i}@example.com"), Some(&key)).await;
        assert_eq!(tokens["token_type"], "DPoP", "{alg}: {tokens}");
        let token = tokens["access_token"].as_str().unwrap().to_owned();
        assert_eq!(jwt_claims(&token)["cnf"]["jkt"], key.jkt().as_str(), "{alg}");
        for other in ["Ed25519", "EdDSA"] {
            let same_key = DpopKey {
                alg: other,
                ..key.clone()
            };
            let proof = same_key.proof("GET", &url, Some(&token), None);
            let (status, _, _, body) = userinfo(&app, Method::GET, Some(format!("DPoP {token}")), Some(&proof)).await;
            assert_eq!(status, StatusCode::OK, "{alg} then {other}: {body}");
            assert_eq!(body["email"], format!("ed{i}@example.com"));
        }
    }
    app.finish().await;
}

/// RFC 9449 with RFC 8693: a public client's DPoP-bound token is narrowed
/// only with a proof by its key, and the narrowed token stays bound to that
/// key; without the key, a stolen token yields nothing (not a bearer token,
/// not one bound to the thief's key).
async fn a_bound_token_is_exchanged_only_with_its_key(backend: Backend) {
    use reqwest::Method;
    let app = spawn_app(backend).await;
    let b = app.ready_account("ines@example.com", PASSWORD).await;
    let (pay, _) = app
        .register_client(ClientSpec {
            name: "Pay",
            grants: &["client_credentials"],
            scopes: Some("payments:admin"),
            ..Default::default()
        })
        .await;
    let (mut spa, _) = app
        .register_client(ClientSpec {
            name: "Spa",
            public: true,
            grants: &["authorization_code", "refresh_token", "token-exchange"],
            scopes: Some("openid email payments offline_access"),
            ..Default::default()
        })
        .await;
    spa.audiences = vec![pay.id.to_string()];
    app.store()
        .update_client(
            &spa,
            &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &spa),
        )
        .await
        .unwrap();
    let key = DpopKey::new();
    let tokens = code_flow_for(&app, &b, &spa, None, Some(&key)).await;
    assert_eq!(tokens["token_type"], "DPoP");
    let bound = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_claims(&bound)["cnf"]["jkt"], key.jkt().as_str());

    let form = [
        ("grant_type", TE),
        ("client_id", spa.id.as_str()),
        ("subject_token", bound.as_str()),
        ("subject_token_type", AT),
        ("scope", "email"),
        ("audience", pay.id.as_str()),
    ];
    // No proof: refused (it used to come back as a bearer token that
    // UserInfo took).
    let (status, _, body) = token_with_proofs(&app, None, &form, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "without a proof: {body}"
    );
    assert!(body.get("access_token").is_none());
    // A thief's proof: refused (it used to re-bind the token to the thief's key).
    let thief = DpopKey::new();
    let nonce = get_nonce(&app, &thief, None, &form).await;
    let (status, body) = token_with_key(&app, &thief, &nonce, None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "another key's proof: {body}"
    );
    assert!(body.get("access_token").is_none());

    // The key's holder narrows it; the narrowed token is bound to the same key.
    let (status, body) = token_with_key(&app, &key, &nonce, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let narrowed = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_claims(&narrowed)["cnf"]["jkt"], key.jkt().as_str());
    let got = userinfo(&app, Method::GET, Some(format!("Bearer {narrowed}")), None).await;
    assert_dpop_refusal(&got, "invalid_token", "the narrowed token as a bearer token");

    // So is what a bound refresh token brings (RFC 9449 §5), and narrowing
    // that again keeps the key.
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token");
    let refresh_form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", spa.id.as_str()),
    ];
    let (status, body) = token_with_key(&app, &key, &nonce, None, &refresh_form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refreshed = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_claims(&refreshed)["cnf"]["jkt"], key.jkt().as_str());
    let again = [
        ("grant_type", TE),
        ("client_id", spa.id.as_str()),
        ("subject_token", narrowed.as_str()),
        ("subject_token_type", AT),
        ("audience", pay.id.as_str()),
    ];
    let (status, _, body) = token_with_proofs(&app, None, &again, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "a narrowed bound token without a proof: {body}"
    );
    let (status, body) = token_with_key(&app, &key, &nonce, None, &again).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        jwt_claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt().as_str()
    );
    app.finish().await;
}

/// RFC 9449 §10: a code asked for with `dpop_jkt` is redeemed only with a
/// proof by that key (none, or another key's, is `invalid_grant` and uses
/// nothing up), and the tokens are bound to it; `dpop_jkt` survives a login
/// in between; a malformed one is `invalid_request` back at the client.
async fn a_code_asked_with_dpop_jkt_needs_that_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("jo@example.com", PASSWORD).await;
    let (spa, _) = app
        .register_client(ClientSpec {
            name: "Spa",
            public: true,
            ..Default::default()
        })
        .await;
    let redirect = spa.redirect_uris[0].as_str();
    let id = spa.id.as_str();
    let (key, thief) = (DpopKey::new(), DpopKey::new());
    let jkt = key.jkt();

    // Signed in: the code comes back at once.
    let (url, verifier) = auth_url(&app, id, redirect, &[("dpop_jkt", &jkt)]);
    let back = authorize(&b, &url).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", back["code"].as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.as_str()),
        ("client_id", id),
    ];
    let (status, _, body) = token_with_proofs(&app, None, &form, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "no proof: {body}"
    );
    assert!(body.get("access_token").is_none());
    let nonce = get_nonce(&app, &thief, None, &form).await;
    let (status, body) = token_with_key(&app, &thief, &nonce, None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "another key: {body}"
    );
    assert!(body.get("access_token").is_none());
    // The key's holder redeems it (the refusals used nothing up): bound tokens.
    let (status, body) = token_with_key(&app, &key, &nonce, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["jkt"], jkt.as_str());
    let grant = app
        .store()
        .grant(claims["gid"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.dpop_jkt.as_deref(), Some(jkt.as_str()), "the refresh tokens too");

    // Not signed in yet: dpop_jkt waits through the login.
    let other = app.browser();
    let (url, verifier) = auth_url(&app, id, redirect, &[("dpop_jkt", &jkt)]);
    let page = other.follow(&url).await.expect_err("a login page");
    let next = page.input_value("next").unwrap();
    let r = other
        .post(
            "/login",
            &[("email", "jo@example.com"), ("password", PASSWORD), ("next", &next)],
        )
        .await;
    r.expect_redirect("/authorize/resume");
    let back = authorize(&other, r.location().unwrap()).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", back["code"].as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.as_str()),
        ("client_id", id),
    ];
    let (status, body) = token_with_key(&app, &thief, &nonce, None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "another key, after a login: {body}"
    );
    let (status, body) = token_with_key(&app, &key, &nonce, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        jwt_claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        jkt.as_str()
    );

    // A malformed dpop_jkt: invalid_request, at the client, and no code.
    for bad in ["not-a-thumbprint", &format!("{jkt}="), &jkt[..42]] {
        let (url, _) = auth_url(&app, id, redirect, &[("dpop_jkt", bad)]);
        let back = authorize(&b, &url).await;
        assert_eq!(back.get("error").map(String::as_str), Some("invalid_request"), "{bad}");
        assert!(!back.contains_key("code"), "{bad}");
    }
    app.finish().await;
}
