//! Bans and suspensions: a banned person is refused, their sessions and
//! tokens (narrowed ones too) stop working at once; a suspension lifts by
//! itself; a ban at one client leaves the others alone.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Command;

use gatehouse_core::Email;
use gatehouse_core::audit::AuditKind;
use gatehouse_store::AuditQuery;

use crate::both_backends;
use crate::oauth::{auth_url, authorize, exchange, post_form};
use crate::support::{Backend, Browser, ClientSpec, TestApp, eventually, spawn_app};

const PASSWORD: &str = "a perfectly fine passphrase";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

both_backends!(
    a_global_ban_reaches_everything,
    a_suspension_lifts_by_itself,
    a_client_ban_leaves_other_clients_alone,
    admin_api_bans
);

fn gatehouse(app: &TestApp, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .env("GATEHOUSE_DATABASE_URL", &app.db.url)
        .env("GATEHOUSE_DATA_DIR", &app.config.data_dir)
        .env("GATEHOUSE_LOG", "warn")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// A signed-in browser and a token set from a first-party client: access
/// token, refresh token.
async fn tokens_at(app: &TestApp, b: &Browser, client: &gatehouse_core::oauth::Client, secret: &str) -> Value {
    let (url, verifier) = auth_url(app, client.id.as_str(), &client.redirect_uris[0], &[]);
    let back = authorize(b, &url).await;
    let (status, tokens) = exchange(
        app,
        client.id.as_str(),
        secret,
        &back["code"],
        &client.redirect_uris[0],
        &verifier,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

async fn active(app: &TestApp, caller: (&str, &str), token: &str) -> bool {
    post_form(app, "/introspect", Some(caller), &[("token", token)]).await.1["active"] == true
}

async fn a_global_ban_reaches_everything(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("mallory@example.com", PASSWORD).await;
    let (mut shop, secret) = app
        .register_client(ClientSpec {
            grants: &["authorization_code", "refresh_token", "token-exchange"],
            ..Default::default()
        })
        .await;
    shop.audiences = vec!["https://pay.example/api".into()];
    app.store()
        .update_client(
            &shop,
            &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &shop),
        )
        .await
        .unwrap();
    let secret = secret.unwrap();
    let caller = (shop.id.as_str(), secret.as_str());
    let tokens = tokens_at(&app, &b, &shop, &secret).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("first-party clients get a refresh token");
    let (_, narrowed) = post_form(
        &app,
        "/token",
        Some(caller),
        &[
            ("grant_type", TE),
            ("subject_token", access),
            ("subject_token_type", AT),
            ("resource", "https://pay.example/api"),
        ],
    )
    .await;
    let narrowed = narrowed["access_token"].as_str().unwrap().to_owned();
    assert!(active(&app, caller, access).await && active(&app, caller, &narrowed).await);

    let id = uid(&app, "mallory@example.com").await;
    let (ok, out, err) = gatehouse(&app, &["user", "ban", &id, "--reason", "card fraud"]);
    assert!(ok, "{err}");
    assert_eq!(out["banned"], true);

    // Sessions, tokens, narrowed tokens and refresh tokens: all gone at once.
    b.get("/settings").await.expect_redirect("/login");
    assert!(!active(&app, caller, access).await);
    assert!(!active(&app, caller, &narrowed).await);
    let (_, body) = post_form(
        &app,
        "/token",
        Some(caller),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
    // Login is refused with a clear message; a wrong password still says only that.
    app.browser()
        .login("mallory@example.com", PASSWORD)
        .await
        .expect(StatusCode::FORBIDDEN, "closed by an administrator");
    app.browser()
        .login("mallory@example.com", "wrong passphrase")
        .await
        .expect(StatusCode::BAD_REQUEST, "not right");

    let q = AuditQuery {
        kind: Some(AuditKind::AccountBanned),
        ..Default::default()
    };
    let events = app.store().audit_events(&q).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.detail["reason"], "card fraud");
    assert_eq!(events[0].event.detail["by"], "cli");

    let (ok, out, _) = gatehouse(&app, &["user", "unban", &id]);
    assert!(ok && out["banned"] == false);
    app.browser()
        .login("mallory@example.com", PASSWORD)
        .await
        .expect_redirect("/settings");
    // Bad input changes nothing.
    let (ok, _, err) = gatehouse(&app, &["user", "ban", "no-such-user"]);
    assert!(!ok && err.contains("no account"));
    let (ok, _, err) = gatehouse(&app, &["user", "ban", &id, "--until", "yesterday"]);
    assert!(!ok && err.contains("--until"), "{err}");
    app.browser()
        .login("mallory@example.com", PASSWORD)
        .await
        .expect_redirect("/settings");
    app.finish().await;
}

async fn a_suspension_lifts_by_itself(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("sid@example.com", PASSWORD).await;
    let id = uid(&app, "sid@example.com").await;
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let until = until.format(&time::format_description::well_known::Rfc3339).unwrap();
    let (ok, _, err) = gatehouse(&app, &["user", "ban", &id, "--until", &until, "--reason", "cool down"]);
    assert!(ok, "{err}");
    app.browser()
        .login("sid@example.com", PASSWORD)
        .await
        .expect(StatusCode::FORBIDDEN, "suspended until");
    eventually("the suspension to lift", || async {
        let r = app.browser().login("sid@example.com", PASSWORD).await;
        r.status.is_redirection().then_some(())
    })
    .await;
    app.finish().await;
}

async fn a_client_ban_leaves_other_clients_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("vic@example.com", PASSWORD).await;
    let (shop, shop_secret) = app
        .register_client(ClientSpec {
            name: "Shop",
            ..Default::default()
        })
        .await;
    let (forum, forum_secret) = app
        .register_client(ClientSpec {
            name: "Forum",
            ..Default::default()
        })
        .await;
    let (shop_secret, forum_secret) = (shop_secret.unwrap(), forum_secret.unwrap());
    let at_shop = tokens_at(&app, &b, &shop, &shop_secret).await;
    let at_forum = tokens_at(&app, &b, &forum, &forum_secret).await;

    let id = uid(&app, "vic@example.com").await;
    let (ok, _, err) = gatehouse(&app, &["user", "ban", &id, "--client", shop.id.as_str()]);
    assert!(ok, "{err}");

    let shop_caller = (shop.id.as_str(), shop_secret.as_str());
    let forum_caller = (forum.id.as_str(), forum_secret.as_str());
    assert!(!active(&app, shop_caller, at_shop["access_token"].as_str().unwrap()).await);
    assert!(active(&app, forum_caller, at_forum["access_token"].as_str().unwrap()).await);
    let (url, _) = auth_url(&app, shop.id.as_str(), &shop.redirect_uris[0], &[]);
    assert_eq!(
        authorize(&b, &url).await.get("error").map(String::as_str),
        Some("access_denied")
    );
    tokens_at(&app, &b, &forum, &forum_secret).await;
    b.get("/settings").await.expect(StatusCode::OK, "vic@example.com");
    app.finish().await;
}

async fn admin_api_bans(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("wendy@example.com", PASSWORD).await;
    let (token, ops_id) = app.admin_token().await;
    let id = uid(&app, "wendy@example.com").await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", app.base);

    let r = http
        .post(url(&format!("/admin/users/{id}/bans")))
        .bearer_auth(&token)
        .json(&json!({ "reason": "spam" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    app.browser()
        .login("wendy@example.com", PASSWORD)
        .await
        .expect(StatusCode::FORBIDDEN, "closed");
    let user: Value = http
        .get(url(&format!("/admin/users/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["bans"][0]["reason"], "spam");
    assert_eq!(user["bans"][0]["by"], format!("admin:{ops_id}"));

    for (body, status) in [
        (json!({ "until": 1 }), StatusCode::BAD_REQUEST),
        (json!({ "client_id": "c_nobody" }), StatusCode::BAD_REQUEST),
        (json!({ "bogus": true }), StatusCode::BAD_REQUEST),
    ] {
        let r = http
            .post(url(&format!("/admin/users/{id}/bans")))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
    }
    let r = http
        .post(url("/admin/users/nobody/bans"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .delete(url(&format!("/admin/users/{id}/bans")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    app.browser()
        .login("wendy@example.com", PASSWORD)
        .await
        .expect_redirect("/settings");
    let r = http
        .delete(url(&format!("/admin/users/{id}/bans")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.finish().await;
}
