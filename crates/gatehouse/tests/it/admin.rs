//! The admin JSON API: clients managed with an admin token, refused
//! without one, and described by the OpenAPI document; every admin route
//! (the IdP's and, in `pay.rs`, the payments service's) walked without a
//! token, with a token lacking the admin scope, and with an admin token.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, ClientSpec, TestApp, spawn_app};

both_backends!(admin_api_manages_clients, every_admin_route_is_guarded);

async fn token(app: &TestApp, id: &str, secret: &str, scope: &str) -> String {
    let (_, body) = app.client_credentials(id, secret, scope).await;
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn admin_api_manages_clients(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ops, secret) = app
        .register_client(ClientSpec {
            name: "Ops",
            grants: &["client_credentials"],
            scopes: Some("gatehouse:admin reports"),
            ..Default::default()
        })
        .await;
    let secret = secret.unwrap();
    let admin = token(&app, ops.id.as_str(), &secret, "gatehouse:admin").await;
    let not_admin = token(&app, ops.id.as_str(), &secret, "reports").await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", app.base);

    // Refused without a token, and with a token lacking the scope.
    let r = http.get(url("/admin/clients")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(url("/admin/clients"))
        .bearer_auth(&not_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );

    let r = http
        .post(url("/admin/clients"))
        .bearer_auth(&admin)
        .json(
            &json!({ "name": "Shop", "redirect_uris": ["https://shop.example/cb"], "scopes": ["openid", "payments"] }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let id = created["client_id"].as_str().unwrap().to_owned();
    assert!(created["client_secret"].as_str().is_some_and(|s| s.len() >= 32));

    // Bad input: a clear error, nothing created or changed.
    for bad in [
        json!({ "name": "X", "redirect_uris": ["http://evil.example/cb"] }),
        json!({ "name": "X", "bogus": 1 }),
    ] {
        let r = http
            .post(url("/admin/clients"))
            .bearer_auth(&admin)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = http
        .post(url("/admin/clients"))
        .bearer_auth(&admin)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let list: Value = http
        .get(url("/admin/clients"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["clients"].as_array().unwrap().len(), 2);

    let r = http
        .patch(url(&format!("/admin/clients/{id}")))
        .bearer_auth(&admin)
        .json(&json!({ "first_party": true, "grant_types": ["authorization_code", "token-exchange"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let shown: Value = http
        .get(url(&format!("/admin/clients/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["first_party"], true);
    assert_eq!(
        shown["grant_types"][1],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert!(shown.get("client_secret").is_none());

    let r = http
        .delete(url(&format!("/admin/clients/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .get(url(&format!("/admin/clients/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let doc: Value = http
        .get(url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/admin/clients/{id}"]["patch"].is_object());
    assert_eq!(doc["servers"][0]["url"], app.base.as_str());
    app.finish().await;
}

/// Walks `routes` (method, path) on `base`: without a token each answers
/// 401 with a `Bearer` challenge, with `not_admin` 403 naming
/// `insufficient_scope`, and with `admin` neither (whatever the handler
/// then says of `nobody`); `PUT`, which no admin route takes, is 405. Path parameters become
/// `nobody`.
pub async fn walk_admin_routes(base: &str, routes: &[(&str, &str)], not_admin: &str, admin: &str) {
    let http = reqwest::Client::new();
    for (method, path) in routes {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "nobody" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let send = |token: Option<&str>| {
            let mut request = http.request(method.clone(), format!("{base}{concrete}"));
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            request.send()
        };
        let what = format!("{method} {path}");
        let r = send(None).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what} without a token");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
        let r = send(Some(not_admin)).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what} without the admin scope");
        // In the challenge (the IdP) or the JSON body (the payments service).
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let said = format!("{challenge} {}", r.text().await.unwrap());
        assert!(said.contains("insufficient_scope"), "{what}: {said}");
        let r = send(Some(admin)).await.unwrap();
        assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&r.status()),
            "{what} with an admin token: {}",
            r.status()
        );
        // A method the path does not serve is 405, token or not: the guard
        // sits on the routes, not in front of the path.
        let r = http.put(format!("{base}{concrete}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "PUT {path}");
    }
}

async fn every_admin_route_is_guarded(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ops, secret) = app
        .register_client(ClientSpec {
            name: "Ops",
            grants: &["client_credentials"],
            scopes: Some("gatehouse:admin reports"),
            ..Default::default()
        })
        .await;
    let secret = secret.unwrap();
    let admin = token(&app, ops.id.as_str(), &secret, "gatehouse:admin").await;
    let not_admin = token(&app, ops.id.as_str(), &secret, "reports").await;
    let routes: Vec<(&str, &str)> = gatehouse_idp::admin::ADMIN_ROUTES
        .iter()
        .map(|r| (r.method.as_str(), r.path))
        .collect();
    assert!(routes.len() >= 10, "{routes:?}");
    walk_admin_routes(&app.base, &routes, &not_admin, &admin).await;
    app.finish().await;
}
