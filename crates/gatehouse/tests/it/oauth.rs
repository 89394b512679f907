//! The OAuth 2.0 / OpenID Connect provider, driven the way reliers drive it:
//! a real relying-party library (`openidconnect`) for the main flow, raw
//! HTTP for the exact error codes of the negative cases.

use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use std::collections::HashMap;

use crate::both_backends;
use crate::support::{Backend, Browser, ClientSpec, TestApp, spawn_app};

const PASSWORD: &str = "a perfectly fine passphrase";

type Oidc = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

both_backends!(
    code_flow_with_a_real_relying_party,
    single_sign_on_across_clients,
    fresh_authentication_moves_auth_time,
    consent_for_third_party_clients,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    client_credentials_introspection_and_revocation,
    negative_cases_issue_nothing,
    discovery_lists_what_is_supported,
);

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn relier(app: &TestApp, client_id: &str, secret: Option<&str>, redirect: &str) -> Oidc {
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http())
        .await
        .expect("discovery");
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.to_owned()),
        secret.map(|s| ClientSecret::new(s.to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).unwrap())
}

fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// The query of the redirect back to the client.
pub async fn authorize(b: &Browser, url: &str) -> HashMap<String, String> {
    match b.follow(url).await {
        Ok(back) => query(&back),
        Err(page) => panic!(
            "stopped on a page instead of returning to the client: {} {}",
            page.status, page.body
        ),
    }
}

/// A plain authorization URL with PKCE; returns (url, verifier).
pub fn auth_url(app: &TestApp, client_id: &str, redirect: &str, extra: &[(&str, &str)]) -> (String, String) {
    let verifier = "v".repeat(43) + &uuid::Uuid::new_v4().simple().to_string();
    let challenge = gatehouse_core::oauth::pkce::s256(&verifier);
    let mut url = Url::parse(&format!("{}/authorize", app.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid email")
        .append_pair("state", "st-123")
        .append_pair("nonce", "n-456")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    (url.to_string(), verifier)
}

/// Exchanges a code at the token endpoint with client_secret_basic.
pub async fn exchange(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    let r = http()
        .post(format!("{}/token", app.base))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

pub async fn post_form(
    app: &TestApp,
    path: &str,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = http().post(format!("{}{path}", app.base)).form(form);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn code_flow_with_a_real_relying_party(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("alice@example.com", PASSWORD).await;
    let uid = app
        .store()
        .account_by_email(&gatehouse_core::Email::parse("alice@example.com").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let redirect = "http://127.0.0.1:9/shop/cb";
    let (client, secret) = app
        .register_client(ClientSpec {
            redirect_uris: &[redirect],
            ..Default::default()
        })
        .await;
    let secret = secret.unwrap();
    let rp = relier(&app, client.id.as_str(), Some(&secret), redirect).await;

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let back = authorize(&b, url.as_str()).await;
    assert_eq!(back.get("state"), Some(csrf.secret()));
    assert_eq!(back.get("iss").map(String::as_str), Some(app.base.as_str()));
    let code = back.get("code").unwrap().clone();

    let tokens = rp
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("token response");
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&rp.id_token_verifier(), &nonce)
        .expect("a valid ID token");
    assert_eq!(claims.subject().as_str(), uid.as_str());
    assert_eq!(claims.email().map(|e| e.as_str()), Some("alice@example.com"));
    assert!(claims.auth_time().is_some());
    let hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&rp.id_token_verifier()).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&hash));
    let raw = jwt_claims(&id_token.to_string());
    assert!(raw["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(raw["acr"].as_str().is_some());
    assert_eq!(raw["amr"], json!(["pwd"]));

    // RFC 9068 access token.
    let at = tokens.access_token().secret();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(at.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    let at_claims = jwt_claims(at);
    for field in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"] {
        assert!(!at_claims[field].is_null(), "access token lacks {field}: {at_claims}");
    }
    assert_eq!(at_claims["client_id"], client.id.as_str());

    // UserInfo through the library.
    let info: openidconnect::core::CoreUserInfoClaims = rp
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http())
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), uid.as_str());
    assert_eq!(info.email().map(|e| e.as_str()), Some("alice@example.com"));

    // The code works once; the second use also revokes what the first issued.
    let replay = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .request_async(&http())
        .await;
    assert!(replay.is_err());
    let (_, introspected) = post_form(
        &app,
        "/introspect",
        Some((client.id.as_str(), &secret)),
        &[("token", at)],
    )
    .await;
    assert_eq!(introspected["active"], false);
    app.finish().await;
}

async fn single_sign_on_across_clients(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("bob@example.com", PASSWORD).await;
    let (a, a_secret) = app
        .register_client(ClientSpec {
            name: "A",
            ..Default::default()
        })
        .await;
    let (bc, b_secret) = app
        .register_client(ClientSpec {
            name: "B",
            ..Default::default()
        })
        .await;
    let b = app.browser();

    // prompt=none with no session: login_required, back at the client.
    let (url, _) = auth_url(&app, a.id.as_str(), &a.redirect_uris[0], &[("prompt", "none")]);
    let back = authorize(&b, &url).await;
    assert_eq!(back.get("error").map(String::as_str), Some("login_required"));
    assert_eq!(back.get("state").map(String::as_str), Some("st-123"));

    // At A: not signed in, so the login page, then back to A with a code.
    let (url, verifier) = auth_url(&app, a.id.as_str(), &a.redirect_uris[0], &[]);
    let page = b.follow(&url).await.expect_err("a login page");
    page.expect(StatusCode::OK, "Sign in");
    let next = page.input_value("next").unwrap();
    assert!(next.starts_with("/authorize/resume?interaction="), "{next}");
    let r = b
        .post(
            "/login",
            &[("email", "bob@example.com"), ("password", PASSWORD), ("next", &next)],
        )
        .await;
    r.expect_redirect("/authorize/resume");
    let back = authorize(&b, r.location().unwrap()).await;
    let (status, tokens_a) = exchange(
        &app,
        a.id.as_str(),
        a_secret.as_deref().unwrap(),
        &back["code"],
        &a.redirect_uris[0],
        &verifier,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens_a}");

    // At B: no password asked, straight back with a code; prompt=none works too.
    let (url, verifier) = auth_url(&app, bc.id.as_str(), &bc.redirect_uris[0], &[("prompt", "none")]);
    let back = authorize(&b, &url).await;
    let (status, tokens_b) = exchange(
        &app,
        bc.id.as_str(),
        b_secret.as_deref().unwrap(),
        &back["code"],
        &bc.redirect_uris[0],
        &verifier,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens_b}");
    let id_a = jwt_claims(tokens_a["id_token"].as_str().unwrap());
    let id_b = jwt_claims(tokens_b["id_token"].as_str().unwrap());
    assert_eq!(id_a["sub"], id_b["sub"]);
    assert_eq!(id_a["sid"], id_b["sid"]);
    assert_eq!(id_a["auth_time"], id_b["auth_time"]);
    assert_eq!(id_b["aud"], bc.id.as_str());

    // The session records both clients.
    let store = app.store();
    let cookie = b.cookie("gh_session").unwrap();
    let served = store
        .session_clients(&gatehouse_core::TokenDigest::of(&cookie))
        .await
        .unwrap();
    assert_eq!(served.len(), 2);

    // A session that must re-enter its password answers prompt=none with login_required.
    let other = app.browser();
    other.post("/reset", &[("email", "bob@example.com")]).await;
    let mail = app
        .mail
        .wait_for("bob@example.com", |m| m.subject.contains("Reset"))
        .await;
    let token = mail
        .link("/reset/link?token=")
        .split("token=")
        .nth(1)
        .unwrap()
        .to_owned();
    other
        .post(
            "/reset/link",
            &[("token", &token), ("password", "a brand new passphrase")],
        )
        .await;
    let (url, _) = auth_url(&app, bc.id.as_str(), &bc.redirect_uris[0], &[("prompt", "none")]);
    let back = authorize(&b, &url).await;
    assert_eq!(back.get("error").map(String::as_str), Some("login_required"));
    app.finish().await;
}

async fn fresh_authentication_moves_auth_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("carol@example.com", PASSWORD).await;
    let (c, secret) = app.register_client(ClientSpec::default()).await;
    let secret = secret.unwrap();
    let (url, verifier) = auth_url(&app, c.id.as_str(), &c.redirect_uris[0], &[]);
    let back = authorize(&b, &url).await;
    let (_, first) = exchange(
        &app,
        c.id.as_str(),
        &secret,
        &back["code"],
        &c.redirect_uris[0],
        &verifier,
    )
    .await;
    let first = jwt_claims(first["id_token"].as_str().unwrap());

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for extra in [[("prompt", "login")], [("max_age", "0")]] {
        let (url, verifier) = auth_url(&app, c.id.as_str(), &c.redirect_uris[0], &extra);
        // prompt=none cannot be combined with a fresh login.
        let page = b.follow(&url).await.expect_err("the password is asked again");
        page.expect(StatusCode::OK, "enter your password again");
        assert_eq!(page.input_value("email").as_deref(), Some("carol@example.com"));
        let next = page.input_value("next").unwrap();
        let r = b
            .post(
                "/login",
                &[("email", "carol@example.com"), ("password", PASSWORD), ("next", &next)],
            )
            .await;
        let back = authorize(&b, r.location().unwrap()).await;
        let (status, tokens) = exchange(
            &app,
            c.id.as_str(),
            &secret,
            &back["code"],
            &c.redirect_uris[0],
            &verifier,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let again = jwt_claims(tokens["id_token"].as_str().unwrap());
        assert_eq!(again["sub"], first["sub"], "the same user");
        assert!(
            again["auth_time"].as_i64() > first["auth_time"].as_i64(),
            "auth_time moves forward"
        );
    }
    // max_age=0 with prompt=none: login_required.
    let (url, _) = auth_url(
        &app,
        c.id.as_str(),
        &c.redirect_uris[0],
        &[("max_age", "0"), ("prompt", "none")],
    );
    assert_eq!(
        authorize(&b, &url).await.get("error").map(String::as_str),
        Some("login_required")
    );
    app.finish().await;
}

async fn consent_for_third_party_clients(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("dave@example.com", PASSWORD).await;
    let (c, secret) = app
        .register_client(ClientSpec {
            name: "Partner",
            first_party: false,
            ..Default::default()
        })
        .await;
    let secret = secret.unwrap();

    let (url, _) = auth_url(&app, c.id.as_str(), &c.redirect_uris[0], &[("prompt", "none")]);
    assert_eq!(
        authorize(&b, &url).await.get("error").map(String::as_str),
        Some("consent_required")
    );

    let (url, _) = auth_url(&app, c.id.as_str(), &c.redirect_uris[0], &[]);
    let page = b.follow(&url).await.expect_err("a consent page");
    page.expect(StatusCode::OK, "Allow Partner?");
    assert!(page.body.contains("See your email address"));
    let interaction = page.input_value("interaction").unwrap();
    let r = b
        .post(
            "/authorize/consent",
            &[("interaction", &interaction), ("decision", "deny")],
        )
        .await;
    let back = query(&Url::parse(r.location().unwrap()).unwrap());
    assert_eq!(back.get("error").map(String::as_str), Some("access_denied"));

    let (url, verifier) = auth_url(&app, c.id.as_str(), &c.redirect_uris[0], &[]);
    let page = b.follow(&url).await.expect_err("a consent page");
    let interaction = page.input_value("interaction").unwrap();
    let r = b
        .post(
            "/authorize/consent",
            &[("interaction", &interaction), ("decision", "allow")],
        )
        .await;
    let back = authorize(&b, r.location().unwrap()).await;
    let (status, tokens) = exchange(
        &app,
        c.id.as_str(),
        &secret,
        &back["code"],
        &c.redirect_uris[0],
        &verifier,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Remembered: the next request goes straight through, even with prompt=none.
    let (url, _) = auth_url(&app, c.id.as_str(), &c.redirect_uris[0], &[("prompt", "none")]);
    assert!(authorize(&b, &url).await.contains_key("code"));
    // prompt=consent asks again.
    let (url, _) = auth_url(&app, c.id.as_str(), &c.redirect_uris[0], &[("prompt", "consent")]);
    b.follow(&url)
        .await
        .expect_err("consent asked again")
        .expect(StatusCode::OK, "Allow Partner?");

    // Revoked from the settings page: tokens stop working, consent is asked again.
    let page = b.get("/settings").await;
    page.expect(StatusCode::OK, "Partner");
    b.post("/settings/sites/revoke", &[("client_id", c.id.as_str())])
        .await
        .expect_redirect("/settings");
    let (_, introspected) = post_form(
        &app,
        "/introspect",
        Some((c.id.as_str(), &secret)),
        &[("token", tokens["access_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(introspected["active"], false);
    let (url, _) = auth_url(&app, c.id.as_str(), &c.redirect_uris[0], &[("prompt", "none")]);
    assert_eq!(
        authorize(&b, &url).await.get("error").map(String::as_str),
        Some("consent_required")
    );
    app.finish().await;
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("erin@example.com", PASSWORD).await;
    let (c, secret) = app
        .register_client(ClientSpec {
            first_party: false,
            ..Default::default()
        })
        .await;
    let secret = secret.unwrap();
    let id = c.id.as_str();
    // Consent first, then a flow with offline_access.
    let (url, verifier) = auth_url(&app, id, &c.redirect_uris[0], &[("scope", "openid offline_access")]);
    let page = b
        .follow(&url.replace("scope=openid+email&", ""))
        .await
        .expect_err("consent");
    let interaction = page.input_value("interaction").unwrap();
    let r = b
        .post(
            "/authorize/consent",
            &[("interaction", &interaction), ("decision", "allow")],
        )
        .await;
    let back = authorize(&b, r.location().unwrap()).await;
    let (status, tokens) = exchange(&app, id, &secret, &back["code"], &c.redirect_uris[0], &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let r1 = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token with offline_access")
        .to_owned();

    let (status, second) = post_form(
        &app,
        "/token",
        Some((id, &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    // Narrowing is allowed, widening is not.
    let (status, body) = post_form(
        &app,
        "/token",
        Some((id, &secret)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r2),
            ("scope", "openid email profile"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );

    // Reusing r1 revokes the family: r2 and the access tokens die with it.
    let (status, body) = post_form(
        &app,
        "/token",
        Some((id, &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (_, body) = post_form(
        &app,
        "/token",
        Some((id, &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
    let (_, introspected) = post_form(
        &app,
        "/introspect",
        Some((id, &secret)),
        &[("token", second["access_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(introspected["active"], false);

    // Without offline_access a third-party client gets no refresh token.
    let (url, verifier) = auth_url(&app, id, &c.redirect_uris[0], &[]);
    let page = b.follow(&url).await.expect_err("consent for email");
    let interaction = page.input_value("interaction").unwrap();
    let r = b
        .post(
            "/authorize/consent",
            &[("interaction", &interaction), ("decision", "allow")],
        )
        .await;
    let back = authorize(&b, r.location().unwrap()).await;
    let (_, tokens) = exchange(&app, id, &secret, &back["code"], &c.redirect_uris[0], &verifier).await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    app.finish().await;
}

async fn client_credentials_introspection_and_revocation(backend: Backend) {
    let app = spawn_app(backend).await;
    let (svc, secret) = app
        .register_client(ClientSpec {
            name: "Service",
            grants: &["client_credentials"],
            scopes: Some("reports payments"),
            ..Default::default()
        })
        .await;
    let secret = secret.unwrap();
    let id = svc.id.as_str();
    let (status, body) = post_form(
        &app,
        "/token",
        Some((id, &secret)),
        &[("grant_type", "client_credentials"), ("scope", "reports")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_claims(&token)["sub"], id);

    // client_secret_post works too.
    let (status, _) = post_form(
        &app,
        "/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A scope it was not given.
    let (status, body) = post_form(
        &app,
        "/token",
        Some((id, &secret)),
        &[("grant_type", "client_credentials"), ("scope", "admin")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    // A resource it was not registered for.
    let (status, body) = post_form(
        &app,
        "/token",
        Some((id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://elsewhere.example/api"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_target"))
    );

    let (_, info) = post_form(&app, "/introspect", Some((id, &secret)), &[("token", &token)]).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], id);
    assert_eq!(info["scope"], "reports");
    assert_eq!(info["sub"], id);
    assert_eq!(info["token_type"], "Bearer");
    for field in ["aud", "exp", "iat"] {
        assert!(!info[field].is_null(), "{field}");
    }
    // Introspection needs an authenticated client.
    let (status, body) = post_form(&app, "/introspect", None, &[("token", &token)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (_, info) = post_form(&app, "/introspect", Some((id, &secret)), &[("token", "junk")]).await;
    assert_eq!(info, json!({ "active": false }));

    // Revocation: 200, then inactive. An unknown token is 200 as well.
    let (status, _) = post_form(&app, "/revoke", Some((id, &secret)), &[("token", &token)]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, info) = post_form(&app, "/introspect", Some((id, &secret)), &[("token", &token)]).await;
    assert_eq!(info["active"], false);
    let (status, _) = post_form(&app, "/revoke", Some((id, &secret)), &[("token", "unknown")]).await;
    assert_eq!(status, StatusCode::OK);

    // A client without the grant.
    let (web, web_secret) = app.register_client(ClientSpec::default()).await;
    let (status, body) = post_form(
        &app,
        "/token",
        Some((web.id.as_str(), web_secret.as_deref().unwrap())),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client"))
    );
    app.finish().await;
}

/// A token endpoint case: name, client credentials, form, status, error.
type TokenCase<'a> = (
    &'a str,
    Option<(&'a str, &'a str)>,
    Vec<(&'a str, &'a str)>,
    StatusCode,
    &'a str,
);

/// One row of the negative table: what to change, and the exact error.
struct Case<'a> {
    name: &'static str,
    params: &'a [(&'a str, &'a str)],
    /// `None`: an error page, no redirect at all.
    error: Option<&'static str>,
}

async fn negative_cases_issue_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("frank@example.com", PASSWORD).await;
    let (c, secret) = app.register_client(ClientSpec::default()).await;
    let secret = secret.unwrap();
    let (public, _) = app
        .register_client(ClientSpec {
            name: "App",
            public: true,
            ..Default::default()
        })
        .await;
    let id = c.id.as_str();
    let redirect = c.redirect_uris[0].as_str();
    let long = "x".repeat(3000);
    let oversized = [("login_hint", long.as_str())];
    let wrong_verifier = "w".repeat(43);

    // The authorization endpoint.
    let cases = [
        Case {
            name: "wrong redirect URI",
            params: &[("redirect_uri", "http://127.0.0.1:9/evil/cb")],
            error: None,
        },
        Case {
            name: "redirect URI with extra path",
            params: &[("redirect_uri", "http://127.0.0.1:9/shop/cb/x")],
            error: None,
        },
        Case {
            name: "unknown client",
            params: &[("client_id", "c_nobody")],
            error: None,
        },
        Case {
            name: "repeated client_id",
            params: &[("client_id", "c_other")],
            error: None,
        },
        Case {
            name: "unsupported response type",
            params: &[("response_type", "token")],
            error: Some("unsupported_response_type"),
        },
        Case {
            name: "no scope allowed",
            params: &[("scope", "admin")],
            error: Some("invalid_scope"),
        },
        Case {
            name: "malformed scope",
            params: &[("scope", "openid \"x\"")],
            error: Some("invalid_scope"),
        },
        Case {
            name: "plain PKCE",
            params: &[("code_challenge_method", "plain")],
            error: Some("invalid_request"),
        },
        Case {
            name: "malformed PKCE challenge",
            params: &[("code_challenge", "short")],
            error: Some("invalid_request"),
        },
        Case {
            name: "unknown prompt",
            params: &[("prompt", "sometimes")],
            error: Some("invalid_request"),
        },
        Case {
            name: "prompt none with login",
            params: &[("prompt", "none login")],
            error: Some("invalid_request"),
        },
        Case {
            name: "negative max_age",
            params: &[("max_age", "-1")],
            error: Some("invalid_request"),
        },
        Case {
            name: "oversized parameter",
            params: &oversized,
            error: Some("invalid_request"),
        },
        Case {
            name: "repeated state",
            params: &[("state", "again")],
            error: Some("invalid_request"),
        },
        Case {
            name: "request object",
            params: &[("request", "eyJ.eyJ.sig")],
            error: Some("request_not_supported"),
        },
        Case {
            name: "response_mode fragment",
            params: &[("response_mode", "fragment")],
            error: Some("invalid_request"),
        },
    ];
    for case in &cases {
        let (base_url, _) = auth_url(&app, id, redirect, &[]);
        let mut url = Url::parse(&base_url).unwrap();
        let overridden: Vec<&str> = case.params.iter().map(|(k, _)| *k).collect();
        let keep: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| {
                !overridden.contains(&k.as_str())
                    || ["client_id", "state"].contains(&k.as_str()) && case.name.starts_with("repeated")
            })
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(keep)
            .extend_pairs(case.params.iter().copied());
        let r = b.client.get(url.clone()).send().await.unwrap();
        match case.error {
            None => {
                assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{}", case.name);
                assert!(
                    r.headers().get("location").is_none(),
                    "{}: never redirect to an untrusted URI",
                    case.name
                );
                assert!(r.text().await.unwrap().contains("cannot be completed"), "{}", case.name);
            }
            Some(code) => {
                let location = r
                    .headers()
                    .get("location")
                    .unwrap_or_else(|| panic!("{}: no redirect", case.name));
                let back = query(&Url::parse(location.to_str().unwrap()).unwrap());
                assert_eq!(back.get("error").map(String::as_str), Some(code), "{}", case.name);
                assert!(!back.contains_key("code"), "{}: nothing issued", case.name);
                assert_eq!(
                    back.get("iss").map(String::as_str),
                    Some(app.base.as_str()),
                    "{}",
                    case.name
                );
            }
        }
    }
    // A public client must use PKCE.
    let mut url = Url::parse(&format!("{}/authorize", app.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", public.id.as_str())
        .append_pair("redirect_uri", &public.redirect_uris[0])
        .append_pair("scope", "openid");
    let back = authorize(&b, url.as_str()).await;
    assert_eq!(back.get("error").map(String::as_str), Some("invalid_request"));

    // The token endpoint.
    let (url, verifier) = auth_url(&app, id, redirect, &[]);
    let code = authorize(&b, &url).await["code"].clone();
    let token_cases: Vec<TokenCase> = vec![
        (
            "wrong secret",
            Some((id, "wrong")),
            vec![
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", &verifier),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "unknown client",
            Some(("c_nobody", "x")),
            vec![("grant_type", "authorization_code"), ("code", &code)],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "no client authentication",
            None,
            vec![("grant_type", "authorization_code"), ("code", &code)],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "missing PKCE verifier",
            Some((id, &secret)),
            vec![
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "wrong PKCE verifier",
            Some((id, &secret)),
            vec![
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", &wrong_verifier),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "wrong redirect URI",
            Some((id, &secret)),
            vec![
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:9/other/cb"),
                ("code_verifier", &verifier),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "unknown code",
            Some((id, &secret)),
            vec![
                ("grant_type", "authorization_code"),
                ("code", "nope"),
                ("redirect_uri", redirect),
                ("code_verifier", &verifier),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "unknown grant type",
            Some((id, &secret)),
            vec![("grant_type", "password")],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            "missing grant type",
            Some((id, &secret)),
            vec![("code", &code)],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown refresh token",
            Some((id, &secret)),
            vec![("grant_type", "refresh_token"), ("refresh_token", "nope")],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "two auth methods",
            Some((id, &secret)),
            vec![("grant_type", "authorization_code"), ("client_secret", &secret)],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (name, auth, form, status, error) in &token_cases {
        let (got, body) = post_form(&app, "/token", *auth, form).await;
        assert_eq!((got, body["error"].as_str()), (*status, Some(*error)), "{name}: {body}");
        assert!(body.get("access_token").is_none(), "{name}");
    }
    // The code survived every failed attempt above (none of them consumed it)...
    let (status, tokens) = exchange(&app, id, &secret, &code, redirect, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    // ...and works only once.
    let (status, body) = exchange(&app, id, &secret, &code, redirect, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // A repeated parameter and an oversized body.
    let r = http()
        .post(format!("{}/token", app.base))
        .basic_auth(id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=authorization_code")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = http()
        .post(format!("{}/token", app.base))
        .basic_auth(id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=authorization_code&code={}", "x".repeat(40_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // UserInfo without a token, with junk.
    let r = http().get(format!("{}/userinfo", app.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"gatehouse\"");
    let r = http()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth("a.b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    app.finish().await;
}

async fn discovery_lists_what_is_supported(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let r = http().get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["cache-control"].to_str().unwrap().contains("max-age"));
        let meta: Value = r.json().await.unwrap();
        assert_eq!(meta["issuer"], app.base.as_str());
        for endpoint in [
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
            "jwks_uri",
            "introspection_endpoint",
            "revocation_endpoint",
        ] {
            let url = meta[endpoint].as_str().unwrap_or_else(|| panic!("{endpoint} missing"));
            assert!(url.starts_with(&app.base), "{endpoint}");
        }
        assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    }
    let jwks: Value = http()
        .get(format!("{}/jwks.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        assert!(k.get("d").is_none(), "no private parts in the JWKS");
        assert!(k["kid"].is_string() && k["alg"].is_string());
    }
    app.finish().await;
}
