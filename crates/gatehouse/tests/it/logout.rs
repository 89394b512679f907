//! Logout: OpenID Connect Back-Channel Logout through the durable outbox,
//! against a real receiving HTTP server (a tiny axum app on loopback).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::oauth::{auth_url, authorize, exchange, http};
use crate::support::{Backend, Browser, ClientSpec, TestApp, spawn_app, spawn_app_with};

const PASSWORD: &str = "a perfectly fine passphrase";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

both_backends!(
    logout_tells_every_client_the_session_served,
    a_flaky_receiver_gets_the_logout_signed_again,
    a_relier_down_longer_than_a_token_lives_accepts_the_retry,
    a_receiver_that_never_accepts_ends_dead,
    rp_initiated_logout_redirects_only_to_registered_uris,
    rp_initiated_logout_by_post,
    every_way_a_session_ends_tells_the_clients,
    a_ban_from_the_command_line_tells_the_clients,
);

/// What the receiver was sent, per path; and how many times each path
/// refuses before it accepts (`u32::MAX`: always).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<HashMap<String, Vec<String>>>>,
    refuse: Arc<HashMap<String, u32>>,
}

impl Receiver {
    fn bodies(&self, path: &str) -> Vec<String> {
        self.got.lock().unwrap().get(path).cloned().unwrap_or_default()
    }
}

async fn receive(State(r): State<Receiver>, Path(path): Path<String>, body: String) -> StatusCode {
    let attempts = {
        let mut got = r.got.lock().unwrap();
        let list = got.entry(path.clone()).or_default();
        list.push(body);
        list.len()
    };
    let refuse = r.refuse.get(&path).copied().unwrap_or(0);
    if u32::try_from(attempts).unwrap() > refuse {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// Starts the receiver; returns its base URL.
async fn start_receiver(refuse: &[(&str, u32)]) -> (String, Receiver) {
    let receiver = Receiver {
        got: Arc::default(),
        refuse: Arc::new(refuse.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()),
    };
    let app = axum::Router::new()
        .route("/bcl/{path}", axum::routing::post(receive))
        .with_state(receiver.clone());
    let addr = crate::support::serve_local(app).await;
    (format!("http://{addr}/bcl"), receiver)
}

/// A client whose back-channel logout URI is `uri`.
async fn client_with_logout_uri(app: &TestApp, name: &str, uri: &str) -> (String, String, String) {
    let (mut client, secret) = app
        .register_client(ClientSpec {
            name,
            ..ClientSpec::default()
        })
        .await;
    client.backchannel_logout_uri = Some(uri.to_owned());
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

/// Runs the code flow for the signed-in browser; returns the ID token.
async fn sign_in_at(app: &TestApp, b: &Browser, client: &(String, String, String)) -> String {
    let (id, secret, redirect) = client;
    let (url, verifier) = auth_url(app, id, redirect, &[]);
    let back = authorize(b, &url).await;
    let code = back.get("code").expect("a code");
    let (status, body) = exchange(app, id, secret, code, redirect, &verifier).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    body["id_token"].as_str().unwrap().to_owned()
}

/// Verifies a logout token the way a relier does: signature by the JWKS,
/// `typ`, `iss`, `aud`, `events`, `sid`, `sub`, no `nonce`. Returns the claims.
async fn verify_logout_token(app: &TestApp, body: &str, client_id: &str) -> Value {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let token = form.get("logout_token").expect("logout_token in the body");
    let jwks: jsonwebtoken::jwk::JwkSet = http()
        .get(format!("{}/jwks.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the kid is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[client_id]);
    validation.set_issuer(&[app.base.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap().claims;
    assert!(claims["events"][EVENT].is_object(), "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(claims["iat"].is_i64());
    assert!(claims.get("nonce").is_none(), "a logout token never has a nonce");
    claims
}

async fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(tokio::time::Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn logout_tells_every_client_the_session_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, receiver) = start_receiver(&[]).await;
    let a = client_with_logout_uri(&app, "Shop", &format!("{base}/a")).await;
    let b_client = client_with_logout_uri(&app, "Forum", &format!("{base}/b")).await;
    // A third client the session never used: it hears nothing.
    let _c = client_with_logout_uri(&app, "Unused", &format!("{base}/c")).await;

    let b = app.ready_account("bcl@example.com", PASSWORD).await;
    let id_token_a = sign_in_at(&app, &b, &a).await;
    let id_token_b = sign_in_at(&app, &b, &b_client).await;
    let id_claims = crate::oauth::jwt_claims(&id_token_a);
    assert_eq!(crate::oauth::jwt_claims(&id_token_b)["sid"], id_claims["sid"]);

    let r = b.post("/logout", &[]).await;
    assert_eq!(r.status, reqwest::StatusCode::SEE_OTHER, "{}", r.body);

    for (path, client) in [("a", &a), ("b", &b_client)] {
        let bodies = wait_for(&format!("a logout token at {path}"), Duration::from_secs(5), || {
            Some(receiver.bodies(path)).filter(|v| !v.is_empty())
        })
        .await;
        assert_eq!(bodies.len(), 1);
        let claims = verify_logout_token(&app, &bodies[0], &client.0).await;
        assert_eq!(claims["sid"], id_claims["sid"]);
        assert_eq!(claims["sub"], id_claims["sub"]);
    }
    assert!(receiver.bodies("c").is_empty());
    let summary = app.store().outbox_summary(None).await.unwrap();
    assert_eq!(summary.delivered, 2, "{summary:?}");

    let discovery: Value = http()
        .get(format!("{}/.well-known/openid-configuration", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["backchannel_logout_session_supported"], true);

    let metrics = http()
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gatehouse_outbox_deliveries_total{outcome=\"delivered\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("gatehouse_outbox_queue"), "{metrics}");
    assert!(
        metrics.contains("gatehouse_outbox_oldest_waiting_age_seconds"),
        "{metrics}"
    );
    app.finish().await;
}

async fn a_flaky_receiver_gets_the_logout_signed_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, receiver) = start_receiver(&[("flaky", 3)]).await;
    let client = client_with_logout_uri(&app, "Shop", &format!("{base}/flaky")).await;
    let b = app.ready_account("flaky@example.com", PASSWORD).await;
    sign_in_at(&app, &b, &client).await;
    b.post("/logout", &[]).await;

    // Backoff of 1, 2 and 4 seconds (plus jitter) before the fourth try.
    let bodies = wait_for("the fourth attempt", Duration::from_secs(30), || {
        Some(receiver.bodies("flaky")).filter(|v| v.len() >= 4)
    })
    .await;
    assert_eq!(bodies.len(), 4);
    // Every retry is the same logout, signed again for it: a new jti, iat
    // at the attempt, exp as long after (a logout token lives two minutes).
    let first = verify_logout_token(&app, &bodies[0], &client.0).await;
    let mut jtis = std::collections::HashSet::new();
    let mut last_iat = 0;
    for body in &bodies {
        let claims = verify_logout_token(&app, body, &client.0).await;
        assert!(
            jtis.insert(claims["jti"].as_str().unwrap().to_owned()),
            "a new jti each time"
        );
        let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
        assert!(iat >= last_iat);
        last_iat = iat;
        assert_eq!(exp - iat, 120);
        for claim in ["iss", "aud", "sub", "sid", "events"] {
            assert_eq!(claims[claim], first[claim], "{claim}");
        }
    }
    let store = app.store();
    let summary = wait_for_summary(&store, |s| s.delivered == 1).await;
    assert_eq!((summary.failed, summary.dead), (0, 0));
    let messages = store.outbox_messages(None, 10).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].attempts, 4);
    app.finish().await;
}

async fn a_receiver_that_never_accepts_ends_dead(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.outbox_max_age = Duration::from_secs(2)).await;
    let (base, receiver) = start_receiver(&[("never", u32::MAX)]).await;
    let client = client_with_logout_uri(&app, "Shop", &format!("{base}/never")).await;
    let b = app.ready_account("never@example.com", PASSWORD).await;
    sign_in_at(&app, &b, &client).await;
    b.post("/logout", &[]).await;

    let store = app.store();
    let summary = wait_for_summary(&store, |s| s.dead == 1).await;
    assert_eq!((summary.pending, summary.failed, summary.delivered), (0, 0, 0));
    assert!(!receiver.bodies("never").is_empty());
    let messages = store
        .outbox_messages(Some(&gatehouse_core::oauth::ClientId(client.0.clone())), 10)
        .await
        .unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].status(), "dead");
    assert_eq!(messages[0].last_error.as_deref(), Some("HTTP 500"));

    // Admins see it, and can send it again.
    let (admin, _) = app.admin_token().await;
    let r = http()
        .get(format!("{}/admin/outbox?client_id={}", app.base, client.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    let listed: Value = http()
        .get(format!("{}/admin/outbox?client_id={}", app.base, client.0))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["counts"]["dead"], 1, "{listed}");
    assert_eq!(listed["messages"][0]["status"], "dead");
    assert_eq!(listed["messages"][0]["id"], messages[0].id.as_str());
    assert!(listed["messages"][0].get("payload").is_none());

    let tried = receiver.bodies("never").len();
    let asked_at = gatehouse_core::Timestamp::now().0;
    let r = http()
        .post(format!("{}/admin/outbox/{}/redeliver", app.base, messages[0].id))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let again = wait_for("another attempt", Duration::from_secs(5), || {
        Some(receiver.bodies("never")).filter(|v| v.len() > tried)
    })
    .await;
    // Each retry, and the redelivery, is the same logout signed again, as
    // of then (a receiver refuses a token issued long ago).
    let (retries, redelivered) = again.split_at(tried);
    let old = verify_logout_token(&app, &retries[0], &client.0).await;
    let new = verify_logout_token(&app, &redelivered[0], &client.0).await;
    assert_ne!(new["jti"], old["jti"]);
    let (iat, exp) = (new["iat"].as_i64().unwrap(), new["exp"].as_i64().unwrap());
    assert!(iat >= asked_at, "iat {iat} before the redelivery at {asked_at}");
    assert_eq!(exp - iat, old["exp"].as_i64().unwrap() - old["iat"].as_i64().unwrap());
    for claim in ["iss", "aud", "sub", "sid", "events"] {
        assert_eq!(new[claim], old[claim], "{claim}");
    }
    let r = http()
        .post(format!("{}/admin/outbox/nope/redeliver", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    app.finish().await;
}

/// A site on the relier library that is down (503) for its first
/// `down_for` deliveries, then checks each with its `Receiver`.
#[derive(Clone)]
struct DownSite {
    receiver: gatehouse_relier::Receiver,
    down_for: usize,
    tokens: Arc<Mutex<Vec<String>>>,
    heard: Arc<Mutex<Vec<Result<gatehouse_relier::LogoutEvent, String>>>>,
}

async fn down_then_up(State(site): State<DownSite>, body: String) -> StatusCode {
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let attempt = {
        let mut tokens = site.tokens.lock().unwrap();
        tokens.push(token.clone());
        tokens.len()
    };
    if attempt <= site.down_for {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let result = site.receiver.verify_logout_token(&token).await;
    let status = if result.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    site.heard.lock().unwrap().push(result.map_err(|e| e.to_string()));
    status
}

/// Issue 13 item 10: a relier down for longer than a logout token lives
/// (here one second, and no clock leeway at the relier) used to refuse
/// every retry, which resent the expired token. Each retry now carries the
/// same logout signed again, and the relier library's `Receiver` takes it.
async fn a_relier_down_longer_than_a_token_lives_accepts_the_retry(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.logout_token_lifetime = Duration::from_secs(1)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site_base = format!("http://{}", listener.local_addr().unwrap());
    let client = client_with_logout_uri(&app, "Shop", &format!("{site_base}/logout")).await;
    let issuer = gatehouse_relier::Issuer::discover(&app.base, reqwest::Client::new())
        .await
        .unwrap();
    let verifier = gatehouse_relier::Verifier::builder(issuer, "https://shop.example")
        .leeway(0)
        .build();
    let site = DownSite {
        receiver: gatehouse_relier::Receiver::new(&verifier, client.0.clone()),
        // Attempts at about 0 s and 1 s; the third comes 2 to 3 s later.
        down_for: 2,
        tokens: Arc::default(),
        heard: Arc::default(),
    };
    let router = axum::Router::new()
        .route("/logout", axum::routing::post(down_then_up))
        .with_state(site.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let b = app.ready_account("down@example.com", PASSWORD).await;
    let id_claims = crate::oauth::jwt_claims(&sign_in_at(&app, &b, &client).await);
    b.post("/logout", &[]).await;

    let heard = wait_for("the relier's verdict on a retry", Duration::from_secs(30), || {
        let heard = site.heard.lock().unwrap().clone();
        (!heard.is_empty()).then_some(heard)
    })
    .await;
    let event = heard[0].clone().expect("the retried logout token is accepted");
    assert_eq!(event.sid.as_deref(), id_claims["sid"].as_str());
    assert_eq!(event.sub.as_deref(), id_claims["sub"].as_str());

    // Three attempts, each with a token of its own, valid when sent: the
    // accepted one was issued after the first had expired.
    let tokens = site.tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 3);
    let claims: Vec<Value> = tokens.iter().map(|t| crate::oauth::jwt_claims(t)).collect();
    assert!(claims[2]["iat"].as_i64().unwrap() >= claims[0]["exp"].as_i64().unwrap());
    for c in &claims {
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 1);
        for claim in ["iss", "aud", "sub", "sid", "events"] {
            assert_eq!(c[claim], claims[0][claim], "{claim}");
        }
    }
    let jtis: std::collections::HashSet<&str> = claims.iter().map(|c| c["jti"].as_str().unwrap()).collect();
    assert_eq!(jtis.len(), 3);
    let summary = wait_for_summary(&app.store(), |s| s.delivered == 1).await;
    assert_eq!((summary.failed, summary.dead), (0, 0));
    app.finish().await;
}

async fn wait_for_summary(
    store: &Arc<dyn gatehouse_store::Store>,
    done: impl Fn(&gatehouse_store::OutboxSummary) -> bool,
) -> gatehouse_store::OutboxSummary {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let summary = store.outbox_summary(None).await.unwrap();
        if done(&summary) {
            return summary;
        }
        assert!(tokio::time::Instant::now() < until, "timed out: {summary:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`client_with_logout_uri`] ("Shop") that may also be sent back to
/// `back_to` after an RP-initiated logout.
async fn client_with_post_logout_uri(app: &TestApp, logout_uri: &str, back_to: &str) -> (String, String, String) {
    let client = client_with_logout_uri(app, "Shop", logout_uri).await;
    let store = app.store();
    let mut registered = store
        .client(&gatehouse_core::oauth::ClientId(client.0.clone()))
        .await
        .unwrap()
        .unwrap();
    registered.post_logout_redirect_uris = vec![back_to.to_owned()];
    assert!(
        store
            .update_client(
                &registered,
                &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &registered)
            )
            .await
            .unwrap()
    );
    client
}

async fn rp_initiated_logout_redirects_only_to_registered_uris(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, receiver) = start_receiver(&[]).await;
    let back_to = "http://127.0.0.1:9/shop/signed-out";
    let client = client_with_post_logout_uri(&app, &format!("{base}/rp"), back_to).await;

    let b = app.ready_account("rp@example.com", PASSWORD).await;
    let id_token = sign_in_at(&app, &b, &client).await;
    let end_session = |hint: &str, redirect: &str, client_id: &str| {
        let mut url = reqwest::Url::parse("http://x/end_session").unwrap();
        {
            let mut q = url.query_pairs_mut();
            if !hint.is_empty() {
                q.append_pair("id_token_hint", hint);
            }
            if !client_id.is_empty() {
                q.append_pair("client_id", client_id);
            }
            q.append_pair("post_logout_redirect_uri", redirect);
            q.append_pair("state", "st-789");
        }
        format!("/end_session?{}", url.query().unwrap())
    };

    // An unregistered URI: an error page, never a redirect, still signed in.
    let r = b.get(&end_session(&id_token, "http://evil.example/cb", "")).await;
    assert_eq!(r.status, reqwest::StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.location().is_none());
    assert_eq!(b.get("/settings").await.status, reqwest::StatusCode::OK);
    // A forged hint: refused the same way.
    let r = b.get(&end_session(&format!("{id_token}x"), back_to, "")).await;
    assert_eq!(r.status, reqwest::StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.location().is_none());

    // The hint names this session: signed out at once, back with the state.
    let r = b.get(&end_session(&id_token, back_to, "")).await;
    assert_eq!(
        r.location(),
        Some(format!("{back_to}?state=st-789").as_str()),
        "{}",
        r.body
    );
    assert!(
        b.get("/settings")
            .await
            .location()
            .is_some_and(|l| l.starts_with("/login"))
    );
    let bodies = wait_for("a logout token", Duration::from_secs(5), || {
        Some(receiver.bodies("rp")).filter(|v| !v.is_empty())
    })
    .await;
    verify_logout_token(&app, &bodies[0], &client.0).await;

    // No hint: the person confirms first (a CSRF-protected form).
    b.login("rp@example.com", PASSWORD).await;
    let r = b.get(&end_session("", back_to, &client.0)).await;
    assert_eq!(r.status, reqwest::StatusCode::OK);
    assert!(r.body.contains("Sign out?"), "{}", r.body);
    assert_eq!(b.get("/settings").await.status, reqwest::StatusCode::OK);
    let forged = b
        .post_raw(
            "/end_session",
            &[("client_id", &client.0), ("post_logout_redirect_uri", back_to)],
        )
        .await;
    assert!(forged.location().is_none());
    assert_eq!(b.get("/settings").await.status, reqwest::StatusCode::OK);
    let r = b
        .post(
            "/end_session",
            &[
                ("client_id", &client.0),
                ("post_logout_redirect_uri", back_to),
                ("state", "st-789"),
            ],
        )
        .await;
    assert_eq!(
        r.location(),
        Some(format!("{back_to}?state=st-789").as_str()),
        "{}",
        r.body
    );
    assert!(
        b.get("/settings")
            .await
            .location()
            .is_some_and(|l| l.starts_with("/login"))
    );

    let discovery: Value = http()
        .get(format!("{}/.well-known/openid-configuration", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["end_session_endpoint"], format!("{}/end_session", app.base));
    app.finish().await;
}

/// RP-Initiated Logout 1.0 §2: the relier may send its request as a
/// form-encoded POST (no CSRF token: the `id_token_hint` and the
/// confirmation page protect it); the confirmation page's own form still
/// needs its CSRF token.
async fn rp_initiated_logout_by_post(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, receiver) = start_receiver(&[]).await;
    let back_to = "http://127.0.0.1:9/shop/signed-out";
    let client = client_with_post_logout_uri(&app, &format!("{base}/rp"), back_to).await;
    let b = app.ready_account("rp-post@example.com", PASSWORD).await;
    let signed_in = |b: &Browser| {
        let b = b.clone();
        async move { b.get("/settings").await.status == reqwest::StatusCode::OK }
    };

    // The hint names this session: signed out at once, back with the state.
    let id_token = sign_in_at(&app, &b, &client).await;
    let r = b
        .post_raw(
            "/end_session",
            &[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", back_to),
                ("state", "st-post"),
            ],
        )
        .await;
    assert_eq!(
        r.location(),
        Some(format!("{back_to}?state=st-post").as_str()),
        "{} {}",
        r.status,
        r.body
    );
    assert!(!signed_in(&b).await);
    let bodies = wait_for("a logout token", Duration::from_secs(5), || {
        Some(receiver.bodies("rp")).filter(|v| !v.is_empty())
    })
    .await;
    verify_logout_token(&app, &bodies[0], &client.0).await;

    // An unregistered URI: an error page, never a redirect.
    b.login("rp-post@example.com", PASSWORD).await;
    let id_token = sign_in_at(&app, &b, &client).await;
    let r = b
        .post_raw(
            "/end_session",
            &[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", "http://evil.example/cb"),
            ],
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.location().is_none());
    assert!(signed_in(&b).await);

    // No hint: the confirmation page, still signed in.
    let r = b
        .post_raw(
            "/end_session",
            &[("client_id", &client.0), ("post_logout_redirect_uri", back_to)],
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Sign out?"), "{}", r.body);
    assert!(signed_in(&b).await);
    // Its form, forged without the CSRF token: refused, still signed in.
    let r = b
        .post_raw(
            "/end_session",
            &[
                ("client_id", &client.0),
                ("post_logout_redirect_uri", back_to),
                ("decision", "logout"),
            ],
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::FORBIDDEN, "{}", r.body);
    assert!(signed_in(&b).await);
    let r = b
        .post_raw(
            "/end_session",
            &[("csrf", "forged"), ("client_id", &client.0), ("decision", "logout")],
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::FORBIDDEN, "{}", r.body);
    assert!(signed_in(&b).await);
    // With it: signed out.
    let r = b
        .post(
            "/end_session",
            &[
                ("client_id", &client.0),
                ("post_logout_redirect_uri", back_to),
                ("decision", "logout"),
            ],
        )
        .await;
    assert_eq!(r.location(), Some(back_to), "{}", r.body);
    assert!(!signed_in(&b).await);
    app.finish().await;
}

/// The `sid`s of the logout tokens received at `path` so far.
async fn sids_at(app: &TestApp, receiver: &Receiver, path: &str, client_id: &str, count: usize) -> Vec<String> {
    let bodies = wait_for(
        &format!("{count} logout tokens at {path}"),
        Duration::from_secs(5),
        || Some(receiver.bodies(path)).filter(|v| v.len() >= count),
    )
    .await;
    let mut sids = Vec::new();
    for body in &bodies {
        let claims = verify_logout_token(app, body, client_id).await;
        sids.push(claims["sid"].as_str().unwrap().to_owned());
    }
    sids
}

async fn every_way_a_session_ends_tells_the_clients(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, receiver) = start_receiver(&[]).await;
    let client = client_with_logout_uri(&app, "Shop", &format!("{base}/x")).await;
    let email = "ends@example.com";
    let first = app.ready_account(email, PASSWORD).await;
    let sid1 = crate::oauth::jwt_claims(&sign_in_at(&app, &first, &client).await)["sid"].clone();
    let second = app.browser();
    second.login(email, PASSWORD).await;
    let sid2 = crate::oauth::jwt_claims(&sign_in_at(&app, &second, &client).await)["sid"].clone();
    assert_ne!(sid1, sid2);

    // "Sign out all other sessions" from the first: the second's token.
    let r = first.post("/settings/sessions/end-others", &[]).await;
    assert_eq!(r.status, reqwest::StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        sids_at(&app, &receiver, "x", &client.0, 1).await,
        vec![sid2.as_str().unwrap()]
    );

    // A ban everywhere (the admin API): the first session's token.
    let (admin, _) = app.admin_token().await;
    let account = app
        .store()
        .account_by_email(&gatehouse_core::Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap();
    let r = http()
        .post(format!("{}/admin/users/{}/bans", app.base, account.id.as_str()))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "reason": "spam" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let sids = sids_at(&app, &receiver, "x", &client.0, 2).await;
    assert_eq!(sids[1], sid1.as_str().unwrap());

    // Deleting an account: its session's token.
    let other = app.ready_account("deleted@example.com", PASSWORD).await;
    let sid3 = crate::oauth::jwt_claims(&sign_in_at(&app, &other, &client).await)["sid"].clone();
    let r = other.post("/settings/delete", &[("password", PASSWORD)]).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    let sids = sids_at(&app, &receiver, "x", &client.0, 3).await;
    assert_eq!(sids[2], sid3.as_str().unwrap());
    app.finish().await;
}

async fn a_ban_from_the_command_line_tells_the_clients(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, receiver) = start_receiver(&[]).await;
    let client = client_with_logout_uri(&app, "Shop", &format!("{base}/cli")).await;
    let email = "cli-ban@example.com";
    let b = app.ready_account(email, PASSWORD).await;
    let sid = crate::oauth::jwt_claims(&sign_in_at(&app, &b, &client).await)["sid"].clone();
    let account = app
        .store()
        .account_by_email(&gatehouse_core::Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .env("GATEHOUSE_DATABASE_URL", &app.db.url)
        .env("GATEHOUSE_DATA_DIR", &app.config.data_dir)
        .env("GATEHOUSE_ISSUER", &app.base)
        .env("GATEHOUSE_LOG", "warn")
        .args(["user", "ban", account.id.as_str(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Written by the command, delivered by the running server.
    assert_eq!(
        sids_at(&app, &receiver, "cli", &client.0, 1).await,
        vec![sid.as_str().unwrap()]
    );
    app.finish().await;
}
