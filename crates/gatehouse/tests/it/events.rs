//! Security events to reliers: SETs (RFC 8417) pushed per RFC 8935 to the
//! `events_uri` of every client the user has used, through the durable
//! outbox, against a real receiving HTTP server on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use gatehouse_core::{Email, Timestamp};

use crate::both_backends;
use crate::oauth::{auth_url, authorize, exchange, http};
use crate::support::{Backend, Browser, ClientSpec, TestApp, TestDb, eventually, spawn_app, spawn_app_with};

const PASSWORD: &str = "a perfectly fine passphrase";
const NEW_PASSWORD: &str = "another perfectly fine passphrase";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";

both_backends!(
    bans_tell_the_clients_the_user_used,
    a_suspension_tells_the_clients_when_it_lifts,
    a_suspension_lifted_early_or_replaced_is_not_announced_later,
    a_suspension_end_refused_once_is_retried,
    a_dead_event_sent_again_is_signed_again,
    a_retried_event_is_the_same_set,
    password_change_and_deletion_tell_the_clients,
    email_change_and_password_reset_tell_the_clients,
    no_event_is_lost_when_the_server_is_killed,
);

/// One SET as received: its body and when it came.
#[derive(Clone)]
struct Got {
    body: String,
    at: i64,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<HashMap<String, Vec<Got>>>>,
    /// Paths that answer 500 for now.
    refusing: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Receiver {
    fn bodies(&self, path: &str) -> Vec<Got> {
        self.got.lock().unwrap().get(path).cloned().unwrap_or_default()
    }

    fn refuse(&self, path: &str, refuse: bool) {
        let mut refusing = self.refusing.lock().unwrap();
        if refuse {
            refusing.insert(path.to_owned());
        } else {
            refusing.remove(path);
        }
    }
}

async fn receive(State(r): State<Receiver>, Path(path): Path<String>, headers: HeaderMap, body: String) -> StatusCode {
    // RFC 8935 §2: the SET is the body, as application/secevent+jwt.
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/secevent+jwt") {
        return StatusCode::BAD_REQUEST;
    }
    if r.refusing.lock().unwrap().contains(&path) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let at = Timestamp::now().0;
    r.got.lock().unwrap().entry(path).or_default().push(Got { body, at });
    StatusCode::ACCEPTED
}

async fn start_receiver() -> (String, Receiver) {
    let receiver = Receiver::default();
    let app = axum::Router::new()
        .route("/events/{path}", axum::routing::post(receive))
        .with_state(receiver.clone());
    let addr = crate::support::serve_local(app).await;
    (format!("http://{addr}/events"), receiver)
}

/// A client whose events URI is `uri`.
async fn client_with_events_uri(app: &TestApp, name: &str, uri: &str) -> (String, String, String) {
    let (mut client, secret) = app
        .register_client(ClientSpec {
            name,
            ..ClientSpec::default()
        })
        .await;
    client.events_uri = Some(uri.to_owned());
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

async fn sign_in_at(app: &TestApp, b: &Browser, client: &(String, String, String)) {
    let (id, secret, redirect) = client;
    let (url, verifier) = auth_url(app, id, redirect, &[]);
    let back = authorize(b, &url).await;
    let code = back.get("code").expect("a code");
    let (status, body) = exchange(app, id, secret, code, redirect, &verifier).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
}

/// Verifies a SET the way a relier does: signature by the JWKS, `typ`,
/// `iss`, `aud`, `jti`, `iat`, one event, the subject. Returns the event
/// type and its fields.
async fn verify_set(app: &TestApp, token: &str, client_id: &str, sub: &str) -> (String, Value) {
    let jwks: jsonwebtoken::jwk::JwkSet = http()
        .get(format!("{}/jwks.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the kid is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[client_id]);
    validation.set_issuer(&[app.base.as_str()]);
    validation.set_required_spec_claims(&["iss", "aud"]);
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap().claims;
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()), "{claims}");
    assert!(claims["iat"].is_i64(), "{claims}");
    assert!(claims.get("exp").is_none(), "{claims}");
    assert_eq!(
        claims["sub_id"],
        json!({ "format": "iss_sub", "iss": app.base, "sub": sub }),
        "{claims}"
    );
    let events = claims["events"].as_object().unwrap();
    assert_eq!(events.len(), 1, "{claims}");
    let (kind, fields) = events.iter().next().unwrap();
    (kind.clone(), fields.clone())
}

/// The event types `path` has received so far, verified, in order.
async fn kinds(app: &TestApp, r: &Receiver, path: &str, client_id: &str, sub: &str) -> Vec<String> {
    let mut out = Vec::new();
    for got in r.bodies(path) {
        out.push(verify_set(app, &got.body, client_id, sub).await.0);
    }
    out
}

async fn wait_for_count(r: &Receiver, path: &str, n: usize) {
    eventually(&format!("{n} SETs at {path}"), || {
        let len = r.bodies(path).len();
        async move { (len >= n).then_some(()) }
    })
    .await;
}

async fn uid(app: &TestApp, email: &str) -> String {
    app.store()
        .account_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string()
}

async fn ban(app: &TestApp, token: &str, uid: &str, body: &Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/admin/users/{uid}/bans", app.base))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
}

async fn unban(app: &TestApp, token: &str, uid: &str, client: Option<&str>) {
    let query = client.map_or(String::new(), |c| format!("?client_id={c}"));
    let r = reqwest::Client::new()
        .delete(format!("{}/admin/users/{uid}/bans{query}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
}

async fn bans_tell_the_clients_the_user_used(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, r) = start_receiver().await;
    let a = client_with_events_uri(&app, "Shop", &format!("{base}/a")).await;
    let b_client = client_with_events_uri(&app, "Forum", &format!("{base}/b")).await;
    // A client the user never used hears nothing.
    let _c = client_with_events_uri(&app, "Unused", &format!("{base}/c")).await;
    let b = app.ready_account("sam@example.com", PASSWORD).await;
    sign_in_at(&app, &b, &a).await;
    sign_in_at(&app, &b, &b_client).await;
    let (token, _) = app.admin_token().await;
    let sub = uid(&app, "sam@example.com").await;

    // A ban at one client: only that client is told.
    ban(
        &app,
        &token,
        &sub,
        &json!({ "client_id": a.0, "reason": "chargebacks" }),
    )
    .await;
    wait_for_count(&r, "a", 1).await;
    let got = r.bodies("a");
    let (kind, fields) = verify_set(&app, &got[0].body, &a.0, &sub).await;
    assert_eq!(kind, format!("{RISC}account-disabled"));
    assert_eq!(fields["reason"], "chargebacks");
    unban(&app, &token, &sub, Some(&a.0)).await;
    wait_for_count(&r, "a", 2).await;
    assert_eq!(
        kinds(&app, &r, "a", &a.0, &sub).await,
        [format!("{RISC}account-disabled"), format!("{RISC}account-enabled")]
    );
    assert!(r.bodies("b").is_empty(), "the other site hears nothing");

    // A ban everywhere: both are told, and both hear when it is lifted.
    ban(&app, &token, &sub, &json!({ "reason": "fraud" })).await;
    wait_for_count(&r, "a", 3).await;
    wait_for_count(&r, "b", 1).await;
    unban(&app, &token, &sub, None).await;
    wait_for_count(&r, "a", 4).await;
    wait_for_count(&r, "b", 2).await;
    assert_eq!(
        kinds(&app, &r, "b", &b_client.0, &sub).await,
        [format!("{RISC}account-disabled"), format!("{RISC}account-enabled")]
    );
    assert_eq!(
        kinds(&app, &r, "a", &a.0, &sub).await[2..],
        [format!("{RISC}account-disabled"), format!("{RISC}account-enabled")]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(r.bodies("c").is_empty(), "an unused client hears nothing");
    assert_eq!(r.bodies("a").len(), 4);
    assert_eq!(r.bodies("b").len(), 2);
    app.finish().await;
}

/// A relier "Shop" whose events go to the receiver's path `a`, the user
/// `email` signed in there, and an admin's token: (the receiver, the
/// shop, the token, the user's `sub`).
async fn shop_and_user(app: &TestApp, email: &str) -> (Receiver, (String, String, String), String, String) {
    let (base, r) = start_receiver().await;
    let a = client_with_events_uri(app, "Shop", &format!("{base}/a")).await;
    let b = app.ready_account(email, PASSWORD).await;
    sign_in_at(app, &b, &a).await;
    let (token, _) = app.admin_token().await;
    let sub = uid(app, email).await;
    (r, a, token, sub)
}

async fn a_suspension_tells_the_clients_when_it_lifts(backend: Backend) {
    let app = spawn_app(backend).await;
    let (r, a, token, sub) = shop_and_user(&app, "sue@example.com").await;

    let until = Timestamp::now().0 + 3;
    ban(&app, &token, &sub, &json!({ "until": until, "reason": "cooling off" })).await;
    wait_for_count(&r, "a", 1).await;
    assert_eq!(
        kinds(&app, &r, "a", &a.0, &sub).await,
        [format!("{RISC}account-disabled")]
    );
    wait_for_count(&r, "a", 2).await;
    let got = r.bodies("a");
    assert!(
        got[1].at >= until,
        "account-enabled came at {} before {until}",
        got[1].at
    );
    let (kind, _) = verify_set(&app, &got[1].body, &a.0, &sub).await;
    assert_eq!(kind, format!("{RISC}account-enabled"));
    app.finish().await;
}

/// A suspension lifted early sends account-enabled once, at the unban; one
/// replaced by a ban for good sends none: at the time either would have
/// lifted, the relier hears nothing (it would have re-enabled a banned
/// account).
async fn a_suspension_lifted_early_or_replaced_is_not_announced_later(backend: Backend) {
    let app = spawn_app(backend).await;
    let (r, a, token, sub) = shop_and_user(&app, "ted@example.com").await;

    let until = Timestamp::now().0 + 4;
    // One step at a time, so the messages arrive in order.
    ban(&app, &token, &sub, &json!({ "until": until, "reason": "cooling off" })).await;
    wait_for_count(&r, "a", 1).await;
    unban(&app, &token, &sub, None).await;
    wait_for_count(&r, "a", 2).await;
    ban(&app, &token, &sub, &json!({ "until": until, "reason": "again" })).await;
    wait_for_count(&r, "a", 3).await;
    ban(&app, &token, &sub, &json!({ "reason": "for good" })).await;
    wait_for_count(&r, "a", 4).await;
    // Nothing is left to send, and past `until` nothing more came.
    let client = gatehouse_core::oauth::ClientId(a.0.clone());
    let waiting = app.store().outbox_messages(Some(&client), 100).await.unwrap();
    assert!(
        waiting.iter().all(|m| m.delivered_at.is_some()),
        "{:?}",
        waiting
            .iter()
            .map(|m| (m.status(), m.next_attempt_at.0))
            .collect::<Vec<_>>()
    );
    while Timestamp::now().0 <= until + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        kinds(&app, &r, "a", &a.0, &sub).await,
        [
            format!("{RISC}account-disabled"),
            format!("{RISC}account-enabled"),
            format!("{RISC}account-disabled"),
            format!("{RISC}account-disabled"),
        ]
    );
    app.finish().await;
}

/// A suspension's account-enabled is retried from when it became due, not
/// from when the ban was written: with a suspension longer than the
/// outbox's retry period, a relier down at the moment it lifts still hears
/// of it (it used to be given up at its first failure).
async fn a_suspension_end_refused_once_is_retried(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.outbox_max_age = Duration::from_secs(3)).await;
    let (r, a, token, sub) = shop_and_user(&app, "ute@example.com").await;
    let until = Timestamp::now().0 + 4;
    ban(&app, &token, &sub, &json!({ "until": until, "reason": "cooling off" })).await;
    wait_for_count(&r, "a", 1).await;
    r.refuse("a", true);
    let client = gatehouse_core::oauth::ClientId(a.0.clone());
    let refused = eventually("the suspension's end refused once", || {
        let (store, client) = (app.store(), client.clone());
        async move {
            let messages = store.outbox_messages(Some(&client), 10).await.unwrap();
            messages
                .into_iter()
                .find(|m| m.attempts >= 1 && m.delivered_at.is_none())
        }
    })
    .await;
    assert_ne!(refused.status(), "dead", "given up at its first failure");
    r.refuse("a", false);
    wait_for_count(&r, "a", 2).await;
    let (kind, _) = verify_set(&app, &r.bodies("a")[1].body, &a.0, &sub).await;
    assert_eq!(kind, format!("{RISC}account-enabled"));
    app.finish().await;
}

/// An event given up (dead) and sent again by an admin arrives signed
/// again: the same event about the same user, a new `jti`, `iat` at the
/// redelivery (receivers refuse SETs issued long ago).
async fn a_dead_event_sent_again_is_signed_again(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.outbox_max_age = Duration::from_secs(2)).await;
    let (r, a, token, sub) = shop_and_user(&app, "dee@example.com").await;
    r.refuse("a", true);
    ban(&app, &token, &sub, &json!({ "reason": "fraud" })).await;
    let client = gatehouse_core::oauth::ClientId(a.0.clone());
    let dead = eventually("the event given up", || {
        let (store, client) = (app.store(), client.clone());
        async move {
            let messages = store.outbox_messages(Some(&client), 10).await.unwrap();
            messages.into_iter().find(|m| m.status() == "dead")
        }
    })
    .await;

    r.refuse("a", false);
    let asked_at = Timestamp::now().0;
    let sent = reqwest::Client::new()
        .post(format!("{}/admin/outbox/{}/redeliver", app.base, dead.id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), reqwest::StatusCode::ACCEPTED);
    wait_for_count(&r, "a", 1).await;
    let got = r.bodies("a");
    let (kind, _) = verify_set(&app, &got[0].body, &a.0, &sub).await;
    assert_eq!(kind, format!("{RISC}account-disabled"));
    let (old, new) = (
        crate::oauth::jwt_claims(&dead.payload),
        crate::oauth::jwt_claims(&got[0].body),
    );
    assert_ne!(new["jti"], old["jti"]);
    assert!(new["iat"].as_i64().unwrap() >= asked_at, "{new}");
    for claim in ["iss", "aud", "sub_id", "events"] {
        assert_eq!(new[claim], old[claim], "{claim}");
    }
    app.finish().await;
}

/// Unlike a logout token, a SET is retried as it was written (RFC 8935 §2:
/// the same SET, its `jti` for the recipient to recognise it, its `iat`
/// when it was issued): a relier that was down sees the very SET.
async fn a_retried_event_is_the_same_set(backend: Backend) {
    let app = spawn_app(backend).await;
    let (r, a, token, sub) = shop_and_user(&app, "rey@example.com").await;
    r.refuse("a", true);
    ban(&app, &token, &sub, &json!({ "reason": "fraud" })).await;
    let client = gatehouse_core::oauth::ClientId(a.0.clone());
    let tried = eventually("two attempts refused", || {
        let (store, client) = (app.store(), client.clone());
        async move {
            let messages = store.outbox_messages(Some(&client), 10).await.unwrap();
            messages.into_iter().find(|m| m.attempts >= 2)
        }
    })
    .await;
    r.refuse("a", false);
    eventually("the very SET, delivered", || {
        let same = r.bodies("a").iter().any(|got| got.body == tried.payload);
        async move { same.then_some(()) }
    })
    .await;
    app.finish().await;
}

async fn password_change_and_deletion_tell_the_clients(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, r) = start_receiver().await;
    let a = client_with_events_uri(&app, "Shop", &format!("{base}/a")).await;
    let _c = client_with_events_uri(&app, "Unused", &format!("{base}/c")).await;
    let b = app.ready_account("pat@example.com", PASSWORD).await;
    sign_in_at(&app, &b, &a).await;
    let sub = uid(&app, "pat@example.com").await;

    b.post(
        "/settings/password",
        &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD)],
    )
    .await
    .expect_redirect("/settings?notice=password_changed");
    wait_for_count(&r, "a", 1).await;
    // The other sessions are marked, not revoked: a credential change only.
    let got = kinds(&app, &r, "a", &a.0, &sub).await;
    assert_eq!(got, [format!("{CAEP}credential-change")]);

    b.post("/settings/delete", &[("password", NEW_PASSWORD)]).await;
    wait_for_count(&r, "a", 2).await;
    let got = r.bodies("a");
    let (kind, _) = verify_set(&app, &got[1].body, &a.0, &sub).await;
    assert_eq!(kind, format!("{RISC}account-purged"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(r.bodies("c").is_empty(), "an unused client hears nothing");
    app.finish().await;
}

async fn email_change_and_password_reset_tell_the_clients(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, r) = start_receiver().await;
    let a = client_with_events_uri(&app, "Shop", &format!("{base}/a")).await;
    let b = app.ready_account("lou@example.com", PASSWORD).await;
    sign_in_at(&app, &b, &a).await;
    let sub = uid(&app, "lou@example.com").await;

    b.post(
        "/settings/email",
        &[("email", "lou@example.org"), ("password", PASSWORD)],
    )
    .await
    .expect_redirect("/settings?notice=email_change_sent");
    let mail = app
        .mail
        .wait_for("lou@example.org", |m| m.subject.contains("Confirm your new"))
        .await;
    b.post("/settings/email/confirm", &[("code", &mail.code())])
        .await
        .expect_redirect("/settings?notice=email_changed");
    wait_for_count(&r, "a", 1).await;
    let got = r.bodies("a");
    let (kind, fields) = verify_set(&app, &got[0].body, &a.0, &sub).await;
    assert_eq!(kind, format!("{RISC}identifier-changed"));
    assert_eq!(fields["new-value"], "lou@example.org");

    let phone = app.browser();
    phone
        .post("/reset", &[("email", "lou@example.org")])
        .await
        .expect_redirect("/reset/sent");
    let mail = app
        .mail
        .wait_for("lou@example.org", |m| m.subject.contains("Reset"))
        .await;
    let link = mail.link("/reset/link?token=");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    phone
        .post("/reset/link", &[("token", &token), ("password", NEW_PASSWORD)])
        .await
        .expect_redirect("/login?notice=password_reset");
    wait_for_count(&r, "a", 2).await;
    let got = kinds(&app, &r, "a", &a.0, &sub).await.split_off(1);
    assert_eq!(got, [format!("{CAEP}credential-change")], "marked, not revoked");
    app.finish().await;
}

/// `gatehouse serve` as a child process on `db`, with its data (and so its
/// instance secret) in `dir`; returns it once ready, with its base URL.
async fn serve(db: &TestDb, dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--json"])
        .env("GATEHOUSE_DATABASE_URL", &db.url)
        .env("GATEHOUSE_DATA_DIR", dir)
        .env("GATEHOUSE_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let started: Value = serde_json::from_str(&first).unwrap();
    let base = format!("http://{}", started["listening"].as_str().unwrap());
    let client = reqwest::Client::new();
    eventually("readiness", || {
        let url = format!("{base}/health/ready");
        let client = client.clone();
        async move { client.get(url).send().await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    (child, base)
}

fn cli(db: &TestDb, dir: &std::path::Path, args: &[&str], stdin: &str) -> Value {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .env("GATEHOUSE_DATABASE_URL", &db.url)
        .env("GATEHOUSE_DATA_DIR", dir)
        .env("GATEHOUSE_LOG", "warn")
        .args(args)
        .arg("--json")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kill(child: &mut std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

/// Events made while the receiver is down, a server killed with SIGKILL
/// mid-retry and started again on the same database: once the receiver is
/// up, every event arrives, the very SETs that were written.
async fn no_event_is_lost_when_the_server_is_killed(backend: Backend) {
    use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
    use gatehouse_core::oauth::grant::Consent;
    use gatehouse_core::oauth::{Client, GrantType, Scopes};

    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(backend, dir.path()).await;
    // The receiver's address, not listening yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (mut server, _) = serve(&db, dir.path()).await;
    let store = gatehouse_store::connect(&db.url).await.unwrap();

    let created = cli(
        &db,
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "kim@example.com",
            "--password-stdin",
            "--verified",
        ],
        &format!("{PASSWORD}\n"),
    );
    let sub = created["uid"].as_str().unwrap().to_owned();
    let account = gatehouse_core::AccountId(sub.clone());
    let mut clients = Vec::new();
    for name in ["a", "b"] {
        let (mut client, _) = Client::new(
            name,
            false,
            vec![format!("http://127.0.0.1:9/{name}/cb")],
            vec![GrantType::parse("authorization_code").unwrap()],
            Timestamp::now(),
        )
        .unwrap();
        client.events_uri = Some(format!("http://{addr}/events/{name}"));
        store
            .create_client(
                &client,
                &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientCreated, &client),
            )
            .await
            .unwrap();
        let consent = Consent {
            account_id: account.clone(),
            client_id: client.id.clone(),
            scopes: Scopes::parse("openid").unwrap(),
            granted_at: Timestamp::now(),
        };
        let actor = Actor {
            ip: "127.0.0.1".into(),
            user_agent: "test".into(),
        };
        let audit = AuditEvent::new(AuditKind::ConsentGranted, Some(&account), &actor, Timestamp::now());
        store.put_consent(&consent, &audit).await.unwrap();
        clients.push(client.id.to_string());
    }

    cli(&db, dir.path(), &["user", "ban", &sub, "--reason", "fraud"], "");
    cli(&db, dir.path(), &["user", "unban", &sub], "");
    let written = store.outbox_messages(None, 100).await.unwrap();
    assert_eq!(written.len(), 4, "disabled and enabled, to each client");
    // The running server tries each and fails: the receiver is down.
    eventually("every message tried and failed", || {
        let store = store.clone();
        async move {
            let messages = store.outbox_messages(None, 100).await.unwrap();
            messages
                .iter()
                .all(|m| m.attempts > 0 && m.delivered_at.is_none())
                .then_some(())
        }
    })
    .await;
    kill(&mut server);

    let (mut server, _) = serve(&db, dir.path()).await;
    let receiver = Receiver::default();
    let app = axum::Router::new()
        .route("/events/{path}", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let summary = store.outbox_summary(None).await.unwrap();
        if summary.delivered == 4 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not all delivered: {summary:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sent: Vec<String> = written.iter().map(|m| m.payload.clone()).collect();
    let mut got: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|p| receiver.bodies(p))
        .map(|g| g.body)
        .collect();
    sent.sort();
    got.sort();
    got.dedup();
    assert_eq!(got, sent, "every SET written arrived, as written");
    kill(&mut server);
    db.drop_db().await;
}
