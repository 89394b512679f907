//! How far a token or a request reaches: UserInfo takes only tokens meant
//! for it, introspection answers only the token's client and its audience
//! (RFC 7662 §4), unknown scopes are left out rather than refused (OpenID
//! Connect Core §3.1.2.1), a client acting for itself gets no user scope,
//! and `invalid_client` challenges only a client that used the header.

use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;
use serde_json::{Value, json};

use crate::both_backends;
use crate::oauth::{auth_url, authorize, exchange, http, jwt_claims, post_form};
use crate::support::{Backend, ClientSpec, TestApp, spawn_app};

const PASSWORD: &str = "a perfectly fine passphrase";
const API: &str = "https://api.example";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

both_backends!(
    userinfo_and_introspection_answer_only_the_audience,
    unknown_scopes_are_left_out,
    client_credentials_get_no_user_scopes,
    invalid_client_challenges_only_the_header,
    the_admin_api_takes_only_tokens_for_the_idp,
);

async fn introspect(app: &TestApp, caller: (&str, &str), token: &str) -> Value {
    let (status, body) = post_form(app, "/introspect", Some(caller), &[("token", token)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// UserInfo with a bearer token: the status and the challenge, if any.
async fn userinfo(app: &TestApp, token: &str) -> (StatusCode, String, Value) {
    let r = http()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let challenge = r
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status(), challenge, r.json().await.unwrap_or(Value::Null))
}

async fn userinfo_and_introspection_answer_only_the_audience(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("ivy@example.com", PASSWORD).await;
    let (mut shop, shop_secret) = app
        .register_client(ClientSpec {
            name: "Shop",
            first_party: true,
            grants: &["authorization_code", "refresh_token", "token-exchange"],
            ..Default::default()
        })
        .await;
    shop.audiences = vec![API.to_owned()];
    assert!(
        app.store()
            .update_client(
                &shop,
                &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &shop)
            )
            .await
            .unwrap()
    );
    let shop_secret = shop_secret.unwrap();
    let shop_auth = (shop.id.as_str(), shop_secret.as_str());
    // The API is a resource server known by its resource URI.
    let (mut api, api_secret) = app
        .register_client(ClientSpec {
            name: "Api",
            grants: &["client_credentials"],
            scopes: Some("reports"),
            ..Default::default()
        })
        .await;
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
    let api_secret = api_secret.unwrap();
    let api_auth = (api.id.as_str(), api_secret.as_str());
    // Any other confidential client.
    let (nosy, nosy_secret) = app
        .register_client(ClientSpec {
            name: "Nosy",
            grants: &["client_credentials"],
            scopes: Some("reports"),
            ..Default::default()
        })
        .await;
    let nosy_secret = nosy_secret.unwrap();
    let nosy_auth = (nosy.id.as_str(), nosy_secret.as_str());

    let redirect = shop.redirect_uris[0].as_str();
    let (url, verifier) = auth_url(&app, shop.id.as_str(), redirect, &[]);
    let back = authorize(&b, &url).await;
    let (status, tokens) = exchange(&app, shop.id.as_str(), &shop_secret, &back["code"], redirect, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // The code flow's token names its client and UserInfo, and works there.
    let userinfo_url = format!("{}/userinfo", app.base);
    assert_eq!(jwt_claims(&access)["aud"], json!([shop.id.as_str(), userinfo_url]));
    let (status, _, body) = userinfo(&app, &access).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["email"], "ivy@example.com");

    // Narrowed to the API, `openid` kept: not a token for UserInfo.
    let (status, body) = post_form(
        &app,
        "/token",
        Some(shop_auth),
        &[
            ("grant_type", TE),
            ("subject_token", &access),
            ("subject_token_type", AT),
            ("audience", API),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let narrowed = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_claims(&narrowed)["scope"], "email openid");
    assert_eq!(jwt_claims(&narrowed)["aud"], API);
    let (status, challenge, body) = userinfo(&app, &narrowed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );

    // Introspection: the client the token was issued to and the clients
    // its audience names learn about it; anyone else learns nothing.
    let info = introspect(&app, shop_auth, &narrowed).await;
    assert_eq!(info["active"], true, "{info}");
    let info = introspect(&app, api_auth, &narrowed).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["aud"], API);
    assert_eq!(info["client_id"], shop.id.as_str());
    assert_eq!(introspect(&app, nosy_auth, &narrowed).await, json!({ "active": false }));
    assert_eq!(introspect(&app, shop_auth, &access).await["active"], true);
    for caller in [api_auth, nosy_auth] {
        assert_eq!(introspect(&app, caller, &access).await, json!({ "active": false }));
    }

    // A refresh token: its client only, and no token_type (those of
    // RFC 6749 name access tokens).
    let info = introspect(&app, shop_auth, &refresh).await;
    assert_eq!(info["active"], true, "{info}");
    assert!(info.get("token_type").is_none(), "{info}");
    assert_eq!(info["client_id"], shop.id.as_str());
    for caller in [api_auth, nosy_auth] {
        assert_eq!(introspect(&app, caller, &refresh).await, json!({ "active": false }));
    }
    app.finish().await;
}

async fn unknown_scopes_are_left_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("jo@example.com", PASSWORD).await;
    let (shop, secret) = app
        .register_client(ClientSpec {
            name: "Shop",
            first_party: true,
            scopes: Some("openid email profile"),
            ..Default::default()
        })
        .await;
    let secret = secret.unwrap();
    let redirect = shop.redirect_uris[0].as_str();
    let ask = |scope: &str| {
        let (url, verifier) = auth_url(&app, shop.id.as_str(), redirect, &[]);
        let scope = url::form_urlencoded::byte_serialize(scope.as_bytes()).collect::<String>();
        (url.replace("scope=openid+email", &format!("scope={scope}")), verifier)
    };

    // Scopes we do not know (`address`, `phone`) and one the client may not
    // ask for (`offline_access`) are left out; the response says what was
    // granted.
    let (url, verifier) = ask("openid address phone email offline_access");
    let back = authorize(&b, &url).await;
    let (status, tokens) = exchange(&app, shop.id.as_str(), &secret, &back["code"], redirect, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "email openid");
    assert!(tokens["id_token"].is_string());
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(access)["scope"], "email openid");
    assert_eq!(userinfo(&app, access).await.0, StatusCode::OK);

    // Nothing grantable at all: invalid_scope, back at the client.
    let (url, _) = ask("address phone");
    assert_eq!(
        authorize(&b, &url).await.get("error").map(String::as_str),
        Some("invalid_scope")
    );
    app.finish().await;
}

async fn client_credentials_get_no_user_scopes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (c, secret) = app
        .register_client(ClientSpec {
            name: "Robot",
            grants: &["client_credentials"],
            scopes: Some("openid profile email offline_access legacy reports"),
            ..Default::default()
        })
        .await;
    let secret = secret.unwrap();
    let auth = Some((c.id.as_str(), secret.as_str()));
    let at = &app;
    let ask = |scope: Option<&'static str>| {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        async move { post_form(at, "/token", auth, &form).await }
    };

    // No scope asked: everything it may have that is not about a user.
    let (status, body) = ask(None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "reports");
    assert_eq!(jwt_claims(body["access_token"].as_str().unwrap())["scope"], "reports");
    // User scopes asked: left out, and the response says so.
    let (status, body) = ask(Some("email reports profile")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "reports");
    // Only user scopes: nothing to grant.
    for scope in ["email profile", "openid", "offline_access"] {
        let (status, body) = ask(Some(scope)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_scope")),
            "{scope}"
        );
    }
    app.finish().await;
}

async fn invalid_client_challenges_only_the_header(backend: Backend) {
    let app = spawn_app(backend).await;
    let (c, _) = app
        .register_client(ClientSpec {
            name: "Robot",
            grants: &["client_credentials"],
            scopes: Some("reports"),
            ..Default::default()
        })
        .await;
    let id = c.id.as_str();
    let send = |path: &'static str, basic: Option<(&'static str, &'static str)>, form: Vec<(&'static str, String)>| {
        let mut req = http().post(format!("{}{path}", app.base)).form(&form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        async move {
            let r = req.send().await.unwrap();
            let challenge = r.headers().get(WWW_AUTHENTICATE).cloned();
            (r.status(), challenge, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for path in ["/token", "/introspect", "/revoke"] {
        let form = |extra: Vec<(&'static str, String)>| {
            let mut f = vec![
                ("grant_type", "client_credentials".to_owned()),
                ("token", "t".to_owned()),
            ];
            f.extend(extra);
            f
        };
        // client_secret_post with a wrong secret: 400, no Basic challenge.
        let (status, challenge, body) = send(
            path,
            None,
            form(vec![
                ("client_id", id.to_owned()),
                ("client_secret", "wrong".to_owned()),
            ]),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str(), challenge),
            (StatusCode::BAD_REQUEST, Some("invalid_client"), None),
            "{path}"
        );
        // An unknown client, in the body: the same.
        let (status, challenge, _) = send(
            path,
            None,
            form(vec![
                ("client_id", "c_nobody".to_owned()),
                ("client_secret", "x".to_owned()),
            ]),
        )
        .await;
        assert_eq!((status, challenge), (StatusCode::BAD_REQUEST, None), "{path}");
        // The Authorization header tried: 401 with its scheme's challenge.
        let (status, challenge, body) = send(path, Some(("c_nobody", "wrong")), form(vec![])).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "{path}"
        );
        assert_eq!(challenge.unwrap(), "Basic realm=\"gatehouse\"", "{path}");
        // No credentials at all: 401, the challenge says how to send them.
        let (status, challenge, _) = send(path, None, form(vec![])).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(challenge.unwrap(), "Basic realm=\"gatehouse\"", "{path}");
    }
    app.finish().await;
}

async fn the_admin_api_takes_only_tokens_for_the_idp(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mut ops, secret) = app
        .register_client(ClientSpec {
            name: "Ops",
            grants: &["client_credentials"],
            scopes: Some("gatehouse:admin"),
            ..Default::default()
        })
        .await;
    ops.audiences = vec![API.to_owned()];
    assert!(
        app.store()
            .update_client(
                &ops,
                &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &ops)
            )
            .await
            .unwrap()
    );
    let secret = secret.unwrap();
    let token = |resource: Option<&'static str>| {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", "gatehouse:admin")];
        form.extend(resource.map(|r| ("resource", r)));
        let (at, auth) = (&app, (ops.id.as_str(), secret.as_str()));
        async move {
            let (status, body) = post_form(at, "/token", Some(auth), &form).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let list = |token: String| {
        let url = format!("{}/admin/clients", app.base);
        async move {
            let r = http().get(url).bearer_auth(token).send().await.unwrap();
            let challenge = r
                .headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status(), challenge.unwrap_or_default())
        }
    };
    // For the IdP (no resource asked): the admin API answers.
    assert_eq!(list(token(None).await).await.0, StatusCode::OK);
    // Addressed to another service: refused as invalid_token.
    let (status, challenge) = list(token(Some(API)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    app.finish().await;
}
