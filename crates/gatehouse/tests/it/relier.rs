//! The relier library (`crates/relier`) against the real server: tokens
//! from `/token` verified locally against `/jwks.json`, introspection and
//! revocation, a key rotation with the real CLI while tokens are in flight,
//! the axum extractor on a resource server of our own, and the receivers
//! (back-channel logout, security events) on a site of our own.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::claims::{ACCESS_TOKEN_TYP, AccessTokenClaims, Audience};
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::ACCESS_TOKEN_LIFETIME;
use gatehouse_idp::keys::KeyRing;
use gatehouse_relier::{
    AuthError, Authenticated, Introspector, Issuer, RejectReason, VerifiedToken, Verifier, VerifyError,
};

use crate::both_backends;
use crate::support::{Backend, ClientSpec, TestApp, eventually, spawn_app, spawn_app_with};

both_backends!(
    a_client_credentials_token_verifies_locally,
    tokens_arriving_together_share_one_fetch,
    tampered_expired_and_foreign_tokens_are_refused,
    introspection_sees_a_revoked_token,
    key_rotation_while_tokens_are_in_flight,
    keys_rotate_now_signs_at_once_and_withdraws_the_old_key,
    every_algorithm_is_published_before_its_first_signature,
    the_extractor_protects_an_axum_route,
    dpop_bound_tokens_need_a_proof_by_their_key,
    receivers_hand_the_site_typed_events,
);

/// The resource server's identifier: what its tokens name in `aud`
/// (asked for with `resource`, RFC 8707).
const API: &str = "https://api.example.com/reports";

/// A relier allowed client credentials: its id and secret.
async fn relier(app: &TestApp) -> (String, String) {
    let (mut client, secret) = app
        .register_client(ClientSpec {
            name: "Reporting",
            grants: &["client_credentials"],
            scopes: Some("reports:read payments"),
            ..Default::default()
        })
        .await;
    // The targets it may ask tokens for (`client create --audience`).
    client.audiences = vec![API.to_owned(), "https://other.example.com".to_owned()];
    app.store()
        .update_client(
            &client,
            &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &client),
        )
        .await
        .unwrap();
    (client.id.to_string(), secret.unwrap())
}

/// A client-credentials token for `scope`, for the audience `resource`.
async fn token(app: &TestApp, (id, secret): &(String, String), scope: &str, resource: Option<&str>) -> String {
    let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    let r = reqwest::Client::new()
        .post(format!("{}/token", app.base))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn issuer(app: &TestApp) -> Issuer {
    Issuer::discover(&app.base, reqwest::Client::new()).await.unwrap()
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn rejected(result: Result<VerifiedToken, VerifyError>) -> RejectReason {
    match result {
        Err(VerifyError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn a_client_credentials_token_verifies_locally(backend: Backend) {
    let app = spawn_app(backend).await;
    let relier = relier(&app).await;
    let issuer = issuer(&app).await;
    assert_eq!(issuer.issuer(), app.base);
    assert!(issuer.introspection_endpoint().is_some());
    let verifier = Verifier::new(issuer, API);

    let before = Timestamp::now();
    let t = verifier
        .verify(&token(&app, &relier, "reports:read payments", Some(API)).await)
        .await
        .unwrap();
    assert_eq!(t.subject, relier.0, "client credentials: the relier is the subject");
    assert_eq!(t.client_id, relier.0);
    assert!(t.has_scope("reports:read") && t.has_scope("payments"));
    assert_eq!(t.audience, [API]);
    assert!(t.jkt.is_none());
    assert!(
        t.expires_at.0 >= before.0 + ACCESS_TOKEN_LIFETIME
            && t.expires_at.0 <= Timestamp::now().0 + ACCESS_TOKEN_LIFETIME
    );
    assert_eq!(t.claims.iss, app.base);
    assert!(gatehouse_relier::require_scope(&t, "payments").is_ok());
    assert!(gatehouse_relier::require_scope(&t, "admin").is_err());

    // A narrower token: only what was asked for.
    let t = verifier
        .verify(&token(&app, &relier, "payments", Some(API)).await)
        .await
        .unwrap();
    assert!(t.has_scope("payments") && !t.has_scope("reports:read"));
    // Without `resource` the token's audience is the relier itself: a
    // resource server that is that relier accepts it.
    let own = Verifier::new(verifier.issuer().clone(), relier.0.clone());
    own.verify(&token(&app, &relier, "payments", None).await).await.unwrap();
    app.finish().await;
}

/// Tokens by a key the verifier has not fetched yet, arriving together:
/// the first one's fetch serves the others, which do not wait out the
/// refetch interval (here an hour) for a fetch of their own. (Two logout
/// tokens reaching one site at once waited 5 s this way, as long as the
/// IdP's delivery timeout.)
async fn tokens_arriving_together_share_one_fetch(backend: Backend) {
    let app = spawn_app(backend).await;
    let relier = relier(&app).await;
    let verifier = Verifier::builder(issuer(&app).await, API)
        .jwks_refetch_interval(Duration::from_secs(3600))
        .build();
    let token = token(&app, &relier, "payments", Some(API)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (verifier, token) = (verifier.clone(), token.clone());
        tasks.spawn(async move { verifier.verify(&token).await.map(|t| t.subject) });
    }
    let all = tokio::time::timeout(Duration::from_secs(60), tasks.join_all())
        .await
        .expect("a token waited for a fetch of its own");
    assert_eq!(all.len(), 8);
    for subject in all {
        assert_eq!(subject.unwrap(), relier.0);
    }
    app.finish().await;
}

async fn tampered_expired_and_foreign_tokens_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let relier = relier(&app).await;
    let verifier = Verifier::new(issuer(&app).await, API);

    // For another audience: another resource, or the relier itself.
    let other = token(&app, &relier, "payments", Some("https://other.example.com")).await;
    assert_eq!(rejected(verifier.verify(&other).await), RejectReason::WrongAudience);
    let own = token(&app, &relier, "payments", None).await;
    assert_eq!(rejected(verifier.verify(&own).await), RejectReason::WrongAudience);

    // Tampered: more scope under the same signature, or a changed signature.
    let good = token(&app, &relier, "payments", Some(API)).await;
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = json!("payments reports:read gatehouse:admin");
    let more = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(rejected(verifier.verify(&more).await), RejectReason::BadSignature);
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[7] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(signature));
    assert_eq!(rejected(verifier.verify(&flipped).await), RejectReason::BadSignature);
    verifier.verify(&good).await.unwrap();

    // Expired: the same token once its lifetime and the leeway have passed...
    let later = Timestamp::now().plus(ACCESS_TOKEN_LIFETIME + 60);
    assert_eq!(rejected(verifier.verify_at(&good, later).await), RejectReason::Expired);
    // ...and a token the server's own key signed with an `exp` long past.
    let secret = gatehouse::server::instance_secret(&app.config).unwrap();
    let ring = KeyRing::load(app.store(), &secret).await.unwrap();
    let now = Timestamp::now().0;
    let expired = AccessTokenClaims {
        iss: app.base.clone(),
        sub: relier.0.clone(),
        aud: Audience::One(API.into()),
        exp: now - 600,
        iat: now - 900,
        jti: "expired-token-jti-0001".into(),
        client_id: relier.0.clone(),
        scope: "payments".into(),
        auth_time: None,
        acr: None,
        amr: None,
        sid: None,
        gid: None,
        cnf: None,
        act: None,
        may_act: None,
        parent_jtis: Vec::new(),
    };
    let signed = ring.sign(SigningAlg::ES256, ACCESS_TOKEN_TYP, &expired).await.unwrap();
    assert_eq!(rejected(verifier.verify(&signed).await), RejectReason::Expired);
    // The same claims, fresh, but typed as an ID token: not an access token.
    let fresh = AccessTokenClaims {
        exp: now + 300,
        iat: now,
        ..expired.clone()
    };
    let id_typed = ring.sign(SigningAlg::ES256, "JWT", &fresh).await.unwrap();
    assert_eq!(
        rejected(verifier.verify(&id_typed).await),
        RejectReason::NotAnAccessToken
    );
    // And fresh with the right type and another key of the server (EdDSA,
    // made on first use and published): accepted.
    let ed = ring.sign(SigningAlg::EdDSA, ACCESS_TOKEN_TYP, &fresh).await.unwrap();
    let verifier = Verifier::builder(verifier.issuer().clone(), API)
        .jwks_refetch_interval(Duration::from_millis(200))
        .build();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        // The server publishes the new key once its ring reloads (5 s).
        match verifier.verify(&ed).await {
            Ok(t) => {
                assert_eq!(t.claims.jti, "expired-token-jti-0001");
                break;
            }
            Err(VerifyError::Rejected(RejectReason::UnknownKey)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    app.finish().await;
}

async fn introspection_sees_a_revoked_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let relier = relier(&app).await;
    // The resource server is a confidential client of its own.
    let (mut api, api_secret) = app
        .register_client(ClientSpec {
            name: "Reports API",
            grants: &["client_credentials"],
            scopes: Some("payments"),
            ..Default::default()
        })
        .await;
    // Tokens name it by its resource URI: introspection answers it about them.
    api.resource_uris = vec![API.to_owned()];
    assert!(
        app.store()
            .update_client(
                &api,
                &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &api)
            )
            .await
            .unwrap()
    );
    let issuer = issuer(&app).await;
    let introspector = Introspector::new(&issuer, api.id.as_str(), api_secret.unwrap()).unwrap();
    let plain = Verifier::new(issuer.clone(), API);
    let strict = Verifier::builder(issuer.clone(), API)
        .introspection(introspector.clone())
        .build();

    let t = token(&app, &relier, "reports:read", Some(API)).await;
    let active = introspector.introspect(&t).await.unwrap().expect("active");
    assert_eq!(active.subject.as_deref(), Some(relier.0.as_str()));
    assert_eq!(active.client_id.as_deref(), Some(relier.0.as_str()));
    assert!(active.scopes.contains("reports:read"));
    assert_eq!(active.audience, [API]);
    assert_eq!(active.token_type.as_deref(), Some("Bearer"));
    strict.verify(&t).await.unwrap();

    // The relier revokes its token (RFC 7009).
    let r = reqwest::Client::new()
        .post(format!("{}/revoke", app.base))
        .basic_auth(&relier.0, Some(&relier.1))
        .form(&[("token", t.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        introspector.introspect(&t).await.unwrap().is_none(),
        "inactive once revoked"
    );
    // Local verification cannot see a revocation; with introspection it can.
    plain.verify(&t).await.unwrap();
    assert_eq!(rejected(strict.verify(&t).await), RejectReason::Inactive);
    // Junk is inactive, not an error.
    assert!(introspector.introspect("not-a-token").await.unwrap().is_none());
    app.finish().await;
}

/// `gatehouse` with the test app's database and data directory.
fn gatehouse_cli(app: &TestApp) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.env("GATEHOUSE_DATABASE_URL", &app.db.url)
        .env("GATEHOUSE_DATA_DIR", &app.config.data_dir)
        .env("GATEHOUSE_JWKS_MAX_AGE", app.config.jwks_max_age.as_secs().to_string())
        .env("GATEHOUSE_LOG", "warn");
    cmd
}

/// A relier that caches the JWKS exactly as long as its `Cache-Control`
/// says, and never fetches it for any other reason (not for an unknown kid).
struct HttpCachingRelier {
    jwks_uri: String,
    cached: Mutex<Option<(Vec<String>, std::time::Instant)>>,
}

impl HttpCachingRelier {
    fn new(app: &TestApp) -> Self {
        HttpCachingRelier {
            jwks_uri: format!("{}/jwks.json", app.base),
            cached: Mutex::new(None),
        }
    }

    async fn fetch(&self) -> (Vec<String>, std::time::Instant) {
        let r = reqwest::get(&self.jwks_uri).await.unwrap();
        let cache_control = r.headers()["cache-control"].to_str().unwrap().to_owned();
        let max_age: u64 = cache_control
            .split(',')
            .find_map(|d| d.trim().strip_prefix("max-age="))
            .unwrap_or_else(|| panic!("no max-age in {cache_control:?}"))
            .parse()
            .unwrap();
        let jwks: Value = r.json().await.unwrap();
        let kids = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        (kids, std::time::Instant::now() + Duration::from_secs(max_age))
    }

    /// Whether `token`'s kid is in the JWKS as this relier has it cached.
    async fn knows(&self, token: &str) -> bool {
        let fresh = self
            .cached
            .lock()
            .unwrap()
            .clone()
            .filter(|(_, until)| *until > std::time::Instant::now());
        let (kids, _) = match fresh {
            Some(cached) => cached,
            None => {
                let fetched = self.fetch().await;
                *self.cached.lock().unwrap() = Some(fetched.clone());
                fetched
            }
        };
        kids.contains(&kid_of(token))
    }
}

/// Polls `check` until it returns `Some`, for at most `limit`.
async fn within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The JWKS cached for 1 s: a rotated key signs some 8 s after `keys
/// rotate` (1 s, the 5 s reload and a margin), and at most 5 s later every
/// server has noticed.
async fn key_rotation_while_tokens_are_in_flight(backend: Backend) {
    let app = Arc::new(spawn_app_with(backend, |c| c.jwks_max_age = Duration::from_secs(1)).await);
    let relier = relier(&app).await;
    let verifier = Verifier::new(issuer(&app).await, API);
    let caching = Arc::new(HttpCachingRelier::new(&app));

    // Token A, signed by the key in use; verifying it caches the JWKS.
    let a = token(&app, &relier, "payments", Some(API)).await;
    let old_kid = kid_of(&a);
    verifier.verify(&a).await.unwrap();
    assert!(verifier.cached_kids().contains(&old_kid));

    // Traffic while the key turns over: tokens minted and verified without
    // a pause, by the same verifier; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let traffic = tokio::spawn({
        let (app, relier, verifier, caching) = (app.clone(), relier.clone(), verifier.clone(), caching.clone());
        let (stop, seen) = (stop.clone(), seen.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                let t = token(&app, &relier, "payments", Some(API)).await;
                if let Err(e) = verifier.verify(&t).await {
                    panic!("a token of kid {} failed in flight: {e}", kid_of(&t));
                }
                // A relier honouring HTTP caching never meets an unknown kid.
                assert!(caching.knows(&t).await, "kid {} is not in the cached JWKS", kid_of(&t));
                {
                    let kid = kid_of(&t);
                    let mut seen = seen.lock().unwrap();
                    if !seen.contains(&kid) {
                        seen.push(kid);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let out = gatehouse_cli(&app).args(["keys", "rotate", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    // Published within a reload, while the old key still signs.
    eventually("the new key in the JWKS", || async {
        let (kids, _) = caching.fetch().await;
        kids.contains(&new_kid).then_some(())
    })
    .await;
    let t = token(&app, &relier, "payments", Some(API)).await;
    assert_eq!(kid_of(&t), old_kid, "the new key signs before every cache has it");

    // Then the running server signs with the new key.
    let b = within(
        Duration::from_secs(20),
        "the server to sign with the new key",
        || async {
            let t = token(&app, &relier, "payments", Some(API)).await;
            (kid_of(&t) == new_kid).then_some(t)
        },
    )
    .await;

    // The same verifier, its JWKS cached before the rotation: token A
    // still verifies, token B names a kid it has not seen and makes it
    // fetch the JWKS again, and A still verifies after that.
    verifier.verify(&a).await.unwrap();
    let verified_b = verifier.verify(&b).await.unwrap();
    assert_eq!(verified_b.subject, relier.0);
    let cached = verifier.cached_kids();
    assert!(
        cached.contains(&old_kid) && cached.contains(&new_kid),
        "the retired key stays published"
    );
    verifier.verify(&a).await.unwrap();

    // The traffic goes on until it has met the new key too (or failed).
    eventually("the traffic to meet the new key", || async {
        (traffic.is_finished() || seen.lock().unwrap().contains(&new_kid)).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.expect("no token failed in flight");
    assert!(seen.lock().unwrap().contains(&old_kid));

    match Arc::try_unwrap(app) {
        Ok(app) => app.finish().await,
        Err(_) => panic!("the app is still shared"),
    }
}

/// `keys rotate --now`, for a compromised key: the new key signs within a
/// reload, and the old one is gone from the JWKS at once.
async fn keys_rotate_now_signs_at_once_and_withdraws_the_old_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let relier = relier(&app).await;
    let old_kid = kid_of(&token(&app, &relier, "payments", Some(API)).await);
    let out = gatehouse_cli(&app)
        .args(["keys", "rotate", "--now", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_eq!(rotated["withdrawn"], 1);
    eventually("the server to sign with the new key", || async {
        let t = token(&app, &relier, "payments", Some(API)).await;
        (kid_of(&t) == new_kid).then_some(())
    })
    .await;
    let jwks: Value = reqwest::get(format!("{}/jwks.json", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&new_kid.as_str()) && !kids.contains(&old_kid.as_str()),
        "{kids:?}"
    );
    app.finish().await;
}

/// A fresh server publishes a key of every algorithm before anything is
/// signed: the EdDSA and RS256 keys (ID tokens, logout tokens and security
/// events for clients that chose them) are in the very first JWKS.
async fn every_algorithm_is_published_before_its_first_signature(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = HttpCachingRelier::new(&app);
    let r = reqwest::get(&first.jwks_uri).await.unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = r.json().await.unwrap();
    let mut algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
    let secret = gatehouse::server::instance_secret(&app.config).unwrap();
    let ring = KeyRing::load(app.store(), &secret).await.unwrap();
    let claims = json!({ "iss": app.base, "sub": "s", "exp": Timestamp::now().0 + 60 });
    for alg in SigningAlg::ALL {
        let t = ring.sign(alg, "JWT", &claims).await.unwrap();
        assert!(
            first.knows(&t).await,
            "{alg:?}: kid {} was not in the first JWKS",
            kid_of(&t)
        );
    }
    app.finish().await;
}

/// The resource server: `/reports` needs `reports:read`.
async fn reports(auth: Authenticated) -> Result<axum::Json<Value>, AuthError> {
    auth.require_scope("reports:read")?;
    Ok(axum::Json(json!({
        "user": auth.user,
        "relier": auth.relier,
        "scopes": auth.scopes.iter().collect::<Vec<_>>(),
    })))
}

async fn the_extractor_protects_an_axum_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let relier = relier(&app).await;
    let verifier = Verifier::builder(issuer(&app).await, API).realm("reports").build();
    let router = axum::Router::new()
        .route("/reports", axum::routing::get(reports))
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/reports", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let challenge = |r: &reqwest::Response| {
        r.headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    // No token: 401 and a bare challenge, no error code (RFC 6750 §3.1).
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r), [r#"Bearer realm="reports""#]);

    // A bad token: 401 invalid_token.
    let mut bad = token(&app, &relier, "reports:read", Some(API)).await;
    bad.push('x');
    let r = http.get(&url).bearer_auth(&bad).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&r);
    assert!(
        c.len() == 1 && c[0].starts_with(r#"Bearer realm="reports", error="invalid_token", error_description=""#),
        "{c:?}"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_token");
    // A token for another resource: the same.
    let foreign = token(&app, &relier, "reports:read", None).await;
    let r = http.get(&url).bearer_auth(&foreign).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&r)[0].contains("not meant for this resource"),
        "{:?}",
        challenge(&r)
    );

    // The scope missing: 403 insufficient_scope, naming it.
    let narrow = token(&app, &relier, "payments", Some(API)).await;
    let r = http.get(&url).bearer_auth(&narrow).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let c = challenge(&r);
    assert!(
        c[0].starts_with(r#"Bearer realm="reports", error="insufficient_scope""#)
            && c[0].ends_with(r#"scope="reports:read""#),
        "{c:?}"
    );

    // A good token: the user, the relier and the scopes.
    let good = token(&app, &relier, "reports:read payments", Some(API)).await;
    let r = http.get(&url).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "user": relier.0, "relier": relier.0, "scopes": ["payments", "reports:read"] })
    );
    server.abort();
    app.finish().await;
}

/// A client's DPoP key (ES256), signing proofs.
pub(crate) struct ClientKey {
    encoding: jsonwebtoken::EncodingKey,
    jwk: Value,
}

impl ClientKey {
    pub(crate) fn new() -> Self {
        use p256::pkcs8::EncodePrivateKey;
        let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        ClientKey {
            encoding: jsonwebtoken::EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
            jwk: json!({
                "kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
            }),
        }
    }

    /// A fresh proof for `method` on `url`, with `ath` for `token`.
    pub(crate) fn proof(&self, method: &str, url: &str, token: Option<&str>, nonce: Option<&str>) -> String {
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(), "htm": method, "htu": url, "iat": Timestamp::now().0,
        });
        if let Some(token) = token {
            claims["ath"] = json!(gatehouse_core::oauth::dpop::access_token_hash(token));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk });
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, jsonwebtoken::Algorithm::ES256).unwrap();
        format!("{message}.{signature}")
    }
}

/// A client-credentials token bound to `key`, with the nonce the token
/// endpoint may ask for (RFC 9449 §8).
/// A client-credentials token bound to `key` (`params`: its scope,
/// resource...), answering the server's nonce challenge if it makes one.
pub(crate) async fn dpop_token(
    app: &TestApp,
    (id, secret): &(String, String),
    key: &ClientKey,
    params: &[(&str, &str)],
) -> String {
    let token_url = format!("{}/token", app.base);
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(params);
    let mut nonce: Option<String> = None;
    for _ in 0..2 {
        let r = reqwest::Client::new()
            .post(&token_url)
            .basic_auth(id, Some(secret))
            .header("DPoP", key.proof("POST", &token_url, None, nonce.as_deref()))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let offered = r.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_owned());
        let body: Value = r.json().await.unwrap();
        if status == StatusCode::BAD_REQUEST && body["error"] == "use_dpop_nonce" && nonce.is_none() {
            nonce = offered;
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "DPoP");
        return body["access_token"].as_str().unwrap().to_owned();
    }
    panic!("no DPoP-bound token");
}

async fn dpop_bound_tokens_need_a_proof_by_their_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let relier = relier(&app).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/reports", listener.local_addr().unwrap());
    // The URL clients use: here the server itself, behind a proxy the proxy's.
    let public = format!("http://{}", listener.local_addr().unwrap());
    let verifier = Verifier::builder(issuer(&app).await, API)
        .realm("reports")
        .public_url(public.parse().unwrap())
        .build();
    let router = axum::Router::new()
        .route("/reports", axum::routing::get(reports))
        .with_state(verifier.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let challenge = |r: &reqwest::Response| {
        r.headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    let key = ClientKey::new();
    let bound = dpop_token(&app, &relier, &key, &[("scope", "reports:read"), ("resource", API)]).await;
    let verified = verifier.verify(&bound).await.unwrap();
    assert_eq!(
        verified.jkt.as_deref(),
        Some(gatehouse_core::oauth::dpop::thumbprint(&key.jwk).unwrap().as_str())
    );

    // No token: DPoP is offered beside Bearer.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(
        challenge(&r),
        [
            r#"Bearer realm="reports""#,
            r#"DPoP realm="reports", algs="ES256 EdDSA Ed25519 RS256""#
        ]
    );

    // With a fresh proof by the bound key: in.
    let proof = key.proof("GET", &url, Some(&bound), None);
    let call = |proof: &str| {
        http.get(&url)
            .header("authorization", format!("DPoP {bound}"))
            .header("dpop", proof.to_owned())
            .send()
    };
    let r = call(&proof).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", challenge(&r));
    assert_eq!(r.json::<Value>().await.unwrap()["relier"], relier.0.as_str());

    // The same proof again: a replay.
    let r = call(&proof).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&r);
    assert!(
        c[0].starts_with(r#"DPoP realm="reports", error="invalid_dpop_proof""#),
        "{c:?}"
    );
    // A proof by another key: the token is not the caller's.
    let r = call(&ClientKey::new().proof("GET", &url, Some(&bound), None))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&r)[0].starts_with(r#"DPoP realm="reports", error="invalid_token""#),
        "{:?}",
        challenge(&r)
    );
    // A proof for another URL.
    let r = call(&key.proof("GET", &format!("{public}/other"), Some(&bound), None))
        .await
        .unwrap();
    assert!(
        challenge(&r)[0].contains(r#"error="invalid_dpop_proof""#),
        "{:?}",
        challenge(&r)
    );
    // The bound token as a bearer token: refused, pointed at DPoP.
    let r = http.get(&url).bearer_auth(&bound).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&r)[0].starts_with(r#"DPoP realm="reports", error="invalid_token""#),
        "{:?}",
        challenge(&r)
    );
    // Bearer tokens still work beside DPoP.
    let plain = token(&app, &relier, "reports:read", Some(API)).await;
    let r = http.get(&url).bearer_auth(&plain).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    server.abort();
    app.finish().await;
}

// --- receivers: back-channel logout and security events at a real site ---------

/// What the site's handlers were handed, in order.
#[derive(Clone, Default)]
struct Heard {
    logouts: Arc<Mutex<Vec<gatehouse_relier::LogoutEvent>>>,
    events: Arc<Mutex<Vec<gatehouse_relier::SecurityEvent>>>,
}

#[derive(Clone)]
struct Site {
    receiver: gatehouse_relier::Receiver,
    heard: Heard,
}

impl axum::extract::FromRef<Site> for gatehouse_relier::Receiver {
    fn from_ref(site: &Site) -> Self {
        site.receiver.clone()
    }
}

async fn site_logout(
    axum::extract::State(site): axum::extract::State<Site>,
    gatehouse_relier::LogoutToken(event): gatehouse_relier::LogoutToken,
) -> axum::http::StatusCode {
    site.heard.logouts.lock().unwrap().push(event);
    axum::http::StatusCode::OK
}

async fn site_events(
    axum::extract::State(site): axum::extract::State<Site>,
    gatehouse_relier::SetToken(event): gatehouse_relier::SetToken,
) -> axum::http::StatusCode {
    site.heard.events.lock().unwrap().push(event);
    axum::http::StatusCode::ACCEPTED
}

/// A code-flow client whose logout and events URIs are `site`'s.
async fn site_client(app: &TestApp, name: &str, site: &str) -> (String, String, String) {
    let (mut client, secret) = app
        .register_client(ClientSpec {
            name,
            ..ClientSpec::default()
        })
        .await;
    client.backchannel_logout_uri = Some(format!("{site}/logout"));
    client.events_uri = Some(format!("{site}/events"));
    assert!(
        app.store()
            .update_client(
                &client,
                &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &client)
            )
            .await
            .unwrap()
    );
    let redirect = client.redirect_uris[0].clone();
    (client.id.to_string(), secret.unwrap(), redirect)
}

/// Runs the code flow for the signed-in browser; returns the ID token's claims.
async fn site_sign_in(app: &TestApp, b: &crate::support::Browser, client: &(String, String, String)) -> Value {
    let (id, secret, redirect) = client;
    let (url, verifier) = crate::oauth::auth_url(app, id, redirect, &[]);
    let back = crate::oauth::authorize(b, &url).await;
    let code = back.get("code").expect("a code");
    let (status, body) = crate::oauth::exchange(app, id, secret, code, redirect, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    crate::oauth::jwt_claims(body["id_token"].as_str().unwrap())
}

async fn receivers_hand_the_site_typed_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site_base = format!("http://{}", listener.local_addr().unwrap());
    let shop = site_client(&app, "Shop", &site_base).await;
    // Another client whose pushes land at the same site: not its audience.
    let forum = site_client(&app, "Forum", &site_base).await;

    let verifier = Verifier::new(issuer(&app).await, "https://shop.example.com");
    let heard = Heard::default();
    let site = Site {
        receiver: gatehouse_relier::Receiver::new(&verifier, shop.0.clone()),
        heard: heard.clone(),
    };
    let router = axum::Router::new()
        .route("/logout", axum::routing::post(site_logout))
        .route("/events", axum::routing::post(site_events))
        .with_state(site);
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // Logout at the IdP: the site hears the session's sid and the user.
    let b = app
        .ready_account("site@example.com", "a perfectly fine passphrase")
        .await;
    let id_claims = site_sign_in(&app, &b, &shop).await;
    site_sign_in(&app, &b, &forum).await;
    let r = b.post("/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let logout = eventually("the site hears the logout", || {
        let got = heard.logouts.lock().unwrap().first().cloned();
        async move { got }
    })
    .await;
    assert_eq!(logout.sid.as_deref(), id_claims["sid"].as_str());
    assert_eq!(logout.sub.as_deref(), id_claims["sub"].as_str());
    let sub = id_claims["sub"].as_str().unwrap().to_owned();

    let http = reqwest::Client::new();
    let shop_id = gatehouse_core::oauth::ClientId(shop.0.clone());
    let forum_id = gatehouse_core::oauth::ClientId(forum.0.clone());
    // The same logout token again: refused.
    let delivered = eventually("the shop's logout delivered", || {
        let store = app.store();
        let id = shop_id.clone();
        async move {
            store
                .outbox_messages(Some(&id), 100)
                .await
                .unwrap()
                .into_iter()
                .find(|m| m.delivered_at.is_some())
        }
    })
    .await;
    let r = http
        .post(&delivered.target_uri)
        .header("content-type", delivered.content_type.as_str())
        .body(delivered.payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // The forum's logout token, for another audience: refused.
    let foreign = app.store().outbox_messages(Some(&forum_id), 100).await.unwrap();
    let foreign = foreign.first().expect("a logout token for the forum");
    let r = http
        .post(&foreign.target_uri)
        .header("content-type", foreign.content_type.as_str())
        .body(foreign.payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    assert_eq!(heard.logouts.lock().unwrap().len(), 1);

    // A ban everywhere: the site hears account-disabled for the user.
    let (admin, _) = app.admin_token().await;
    let r = http
        .post(format!("{}/admin/users/{sub}/bans", app.base))
        .bearer_auth(&admin)
        .json(&json!({ "reason": "spam" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let event = eventually("the site hears the ban", || {
        let got = heard.events.lock().unwrap().first().cloned();
        async move { got }
    })
    .await;
    assert_eq!(event.subject, sub);
    assert_eq!(
        event.event,
        gatehouse_relier::EventKind::AccountDisabled {
            reason: Some("spam".into())
        }
    );
    // The same SET again (a retransmission): acknowledged as the first
    // time (RFC 8935 §2), but the site's handler does not hear it twice.
    let set = eventually("the shop's SET delivered", || {
        let store = app.store();
        let id = shop_id.clone();
        async move {
            store
                .outbox_messages(Some(&id), 100)
                .await
                .unwrap()
                .into_iter()
                .find(|m| m.delivered_at.is_some() && m.content_type == "application/secevent+jwt")
        }
    })
    .await;
    let r = http
        .post(&set.target_uri)
        .header("content-type", set.content_type.as_str())
        .body(set.payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(heard.events.lock().unwrap().len(), 1);
    // The forum's SET: another audience.
    let forum_set = eventually("the forum's SET", || {
        let store = app.store();
        let id = forum_id.clone();
        async move {
            store
                .outbox_messages(Some(&id), 100)
                .await
                .unwrap()
                .into_iter()
                .find(|m| m.content_type == "application/secevent+jwt")
        }
    })
    .await;
    let r = http
        .post(&forum_set.target_uri)
        .header("content-type", forum_set.content_type.as_str())
        .body(forum_set.payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["err"], "invalid_audience");
    server.abort();
    app.finish().await;
}
