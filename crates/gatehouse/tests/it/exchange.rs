//! Token narrowing (RFC 8693) and resource indicators (RFC 8707): a relier
//! turns its broad token into one that carries `payments` for the payments
//! service and nothing else.

use reqwest::StatusCode;
use serde_json::Value;

use gatehouse_core::audit::AuditKind;
use gatehouse_store::AuditQuery;

use crate::both_backends;
use crate::oauth::{auth_url, authorize, exchange, jwt_claims, post_form};
use crate::support::{Backend, ClientSpec, TestApp, spawn_app};

const PASSWORD: &str = "a perfectly fine passphrase";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const SHOP_CB: &str = "http://127.0.0.1:9/shop/cb";

both_backends!(
    narrowing_for_the_payments_service,
    resource_indicators_in_the_code_flow,
    only_the_caller_may_be_the_actor,
);

struct Setup {
    shop: (String, String),
    pay: (String, String),
    other: (String, String),
    broad: String,
}

async fn setup(app: &TestApp) -> Setup {
    let b = app.ready_account("nora@example.com", PASSWORD).await;
    let (pay, pay_secret) = app
        .register_client(ClientSpec {
            name: "Pay",
            grants: &["client_credentials"],
            scopes: Some("payments:admin"),
            ..Default::default()
        })
        .await;
    let (mut shop, shop_secret) = app
        .register_client(ClientSpec {
            name: "Shop",
            grants: &["authorization_code", "token-exchange", "client_credentials"],
            redirect_uris: &[SHOP_CB],
            scopes: Some("openid profile payments secret email"),
            ..Default::default()
        })
        .await;
    shop.audiences = vec![pay.id.to_string(), "https://pay.example/api".to_owned()];
    app.store()
        .update_client(
            &shop,
            &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &shop),
        )
        .await
        .unwrap();
    let (other, other_secret) = app
        .register_client(ClientSpec {
            name: "Other",
            ..Default::default()
        })
        .await;

    let (url, verifier) = auth_url(
        app,
        shop.id.as_str(),
        &shop.redirect_uris[0],
        &[("scope", "openid profile payments secret")],
    );
    let url = url.replace("scope=openid+email&", "");
    let back = authorize(&b, &url).await;
    let (status, tokens) = exchange(
        app,
        shop.id.as_str(),
        shop_secret.as_deref().unwrap(),
        &back["code"],
        &shop.redirect_uris[0],
        &verifier,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "openid payments profile secret");
    Setup {
        shop: (shop.id.to_string(), shop_secret.unwrap()),
        pay: (pay.id.to_string(), pay_secret.unwrap()),
        other: (other.id.to_string(), other_secret.unwrap()),
        broad: tokens["access_token"].as_str().unwrap().to_owned(),
    }
}

async fn narrow(
    app: &TestApp,
    caller: &(String, String),
    subject: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", TE),
        ("subject_token", subject),
        ("subject_token_type", AT),
    ];
    form.extend_from_slice(extra);
    post_form(app, "/token", Some((&caller.0, &caller.1)), &form).await
}

async fn introspect(app: &TestApp, caller: &(String, String), token: &str) -> Value {
    post_form(app, "/introspect", Some((&caller.0, &caller.1)), &[("token", token)])
        .await
        .1
}

/// A refusal: name, caller, subject token, extra parameters, status, error.
type Case<'a> = (
    &'a str,
    &'a (String, String),
    &'a str,
    Vec<(&'a str, &'a str)>,
    StatusCode,
    &'a str,
);

async fn narrowing_for_the_payments_service(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let pay_id = s.pay.0.as_str();

    let (status, body) = narrow(&app, &s.shop, &s.broad, &[("scope", "payments"), ("audience", pay_id)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issued_token_type"], AT);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "payments");
    assert!(body.get("refresh_token").is_none());
    let narrowed = body["access_token"].as_str().unwrap().to_owned();
    let broad_claims = jwt_claims(&s.broad);
    let claims = jwt_claims(&narrowed);
    assert_eq!(claims["aud"], pay_id);
    assert_eq!(claims["sub"], broad_claims["sub"]);
    assert_eq!(claims["client_id"], s.shop.0.as_str());
    assert!(claims["exp"].as_i64() <= broad_claims["exp"].as_i64());

    // The payments service learns the user, the relier, payments only, and itself as the audience.
    let info = introspect(&app, &s.pay, &narrowed).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["sub"], broad_claims["sub"]);
    assert_eq!(info["client_id"], s.shop.0.as_str());
    assert_eq!(info["scope"], "payments");
    assert_eq!(info["aud"], pay_id);

    // Every refusal, with its RFC error code.
    let other_token = app.client_credentials(&s.pay.0, &s.pay.1, "payments:admin").await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: [Case; 8] = [
        (
            "widening",
            &s.shop,
            &s.broad,
            vec![("scope", "payments admin"), ("audience", pay_id)],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "widening a narrowed token",
            &s.shop,
            &narrowed,
            vec![("scope", "payments profile"), ("audience", pay_id)],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "unknown audience",
            &s.shop,
            &s.broad,
            vec![("scope", "payments"), ("audience", "nobody")],
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
        (
            "audience not allowed",
            &s.shop,
            &s.broad,
            vec![("scope", "payments"), ("audience", &s.other.0)],
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
        (
            "no target",
            &s.shop,
            &s.broad,
            vec![("scope", "payments")],
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
        (
            "another client's token",
            &s.shop,
            &other_token,
            vec![("audience", pay_id)],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "a client without the grant",
            &s.other,
            &s.broad,
            vec![("audience", pay_id)],
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
        ),
        (
            "a junk subject token",
            &s.shop,
            "a.b.c",
            vec![("audience", pay_id)],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (name, caller, subject, extra, status, error) in &cases {
        let (got, body) = narrow(&app, caller, subject, extra).await;
        assert_eq!((got, body["error"].as_str()), (*status, Some(*error)), "{name}: {body}");
        assert!(body.get("access_token").is_none(), "{name}");
    }
    let (status, body) = post_form(
        &app,
        "/token",
        Some((&s.shop.0, &s.shop.1)),
        &[("grant_type", TE), ("subject_token", &s.broad), ("audience", pay_id)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "no subject_token_type"
    );

    // A narrowed token can be narrowed again to the same scope, via a resource URI too.
    let (status, body) = narrow(
        &app,
        &s.shop,
        &narrowed,
        &[("scope", "payments"), ("resource", "https://pay.example/api")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let twice = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_claims(&twice)["aud"], "https://pay.example/api");

    // Each exchange is audited: who, for which audience, which scopes.
    let q = AuditQuery {
        kind: Some(AuditKind::TokenExchanged),
        ..Default::default()
    };
    let events = app.store().audit_events(&q).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event.detail["client_id"], s.shop.0.as_str());
    assert_eq!(events[0].event.detail["audience"][0], pay_id);
    assert_eq!(events[0].event.detail["scope"], "payments");

    // Revoking the broad token ends every token narrowed from it.
    let (status, _) = post_form(&app, "/revoke", Some((&s.shop.0, &s.shop.1)), &[("token", &s.broad)]).await;
    assert_eq!(status, StatusCode::OK);
    for token in [&narrowed, &twice] {
        assert_eq!(introspect(&app, &s.pay, token).await["active"], false);
    }
    let (status, body) = narrow(&app, &s.shop, &narrowed, &[("audience", pay_id)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    app.finish().await;
}

async fn resource_indicators_in_the_code_flow(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let b = app.browser();
    b.login("nora@example.com", PASSWORD).await;
    let shop = app
        .store()
        .client(&gatehouse_core::oauth::ClientId(s.shop.0.clone()))
        .await
        .unwrap()
        .unwrap();
    let redirect = &shop.redirect_uris[0];

    // Not among the client's targets: invalid_target, back at the client.
    let (url, _) = auth_url(
        &app,
        &s.shop.0,
        redirect,
        &[("resource", "https://elsewhere.example/api")],
    );
    assert_eq!(
        authorize(&b, &url).await.get("error").map(String::as_str),
        Some("invalid_target")
    );

    let (url, verifier) = auth_url(&app, &s.shop.0, redirect, &[("resource", "https://pay.example/api")]);
    let back = authorize(&b, &url).await;
    let (status, tokens) = exchange(&app, &s.shop.0, &s.shop.1, &back["code"], redirect, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(
        jwt_claims(tokens["access_token"].as_str().unwrap())["aud"],
        "https://pay.example/api"
    );

    // At the token endpoint, only what was granted.
    let (url, verifier) = auth_url(&app, &s.shop.0, redirect, &[("resource", "https://pay.example/api")]);
    let back = authorize(&b, &url).await;
    let (status, body) = post_form(
        &app,
        "/token",
        Some((&s.shop.0, &s.shop.1)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &back["code"]),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
            ("resource", "https://other.example/api"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_target"))
    );
    app.finish().await;
}

/// RFC 8693 §2.1, §4.1, §4.4: `actor_token` names who acts for the
/// subject. Only the authenticated client's own token is taken (the subject
/// here names no one else in `may_act`); any other token, however active, is
/// `invalid_request` and no one is written into `act`.
async fn only_the_caller_may_be_the_actor(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let pay_id = s.pay.0.as_str();
    let (status, own) = post_form(
        &app,
        "/token",
        Some((&s.shop.0, &s.shop.1)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{own}");
    let own = own["access_token"].as_str().unwrap().to_owned();
    let pay_token = app.client_credentials(&s.pay.0, &s.pay.1, "payments:admin").await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app.ready_account("otto@example.com", PASSWORD).await;
    let (url, verifier) = auth_url(&app, &s.shop.0, SHOP_CB, &[]);
    let back = authorize(&b, &url).await;
    let (status, otto) = exchange(&app, &s.shop.0, &s.shop.1, &back["code"], SHOP_CB, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{otto}");
    let otto = otto["access_token"].as_str().unwrap().to_owned();

    fn with_actor<'a>(audience: &'a str, actor: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("scope", "payments"),
            ("audience", audience),
            ("actor_token", actor),
            ("actor_token_type", AT),
        ]
    }
    for (name, actor) in [
        ("another client's token", pay_token.as_str()),
        ("another user's token, issued to the caller", otto.as_str()),
        ("the subject's own token", s.broad.as_str()),
        ("a junk token", "a.b.c"),
    ] {
        let (status, body) = narrow(&app, &s.shop, &s.broad, &with_actor(pay_id, actor)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{name}: {body}"
        );
        assert!(body.get("access_token").is_none(), "{name}");
    }

    // The caller's own token: it is the actor.
    let (status, body) = narrow(&app, &s.shop, &s.broad, &with_actor(pay_id, &own)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["act"],
        serde_json::json!({ "sub": s.shop.0, "client_id": s.shop.0 })
    );
    assert_eq!(claims["sub"], jwt_claims(&s.broad)["sub"]);
    app.finish().await;
}
