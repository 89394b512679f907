//! The relier library's relying-party side (`RelyingParty`) against the
//! real server: log in with the code flow, log in again with `max_age=0`,
//! narrow the token, ask for client credentials, and the refusals a site
//! must see (a replayed callback, `prompt=none` without a session); and
//! the demo sites on it: they return only to their own paths, and answer a
//! callback that does not complete its login with a 400 page.

use gatehouse_relier::{Issuer, LoginError, LoginFault, LoginRequest, RelyingParty, Verifier};
use reqwest::StatusCode;
use url::Url;

use crate::both_backends;
use crate::support::{Backend, Browser, ClientSpec, TestApp, spawn_app};

const PASSWORD: &str = "a perfectly fine passphrase";
const REDIRECT: &str = "http://127.0.0.1:9/shop/cb";
const PAY: &str = "http://127.0.0.1:9/pay";

both_backends!(
    a_site_logs_people_in_and_narrows_their_token,
    fresh_login_and_refusals,
    the_demo_sites_return_only_to_their_own_paths,
    the_demo_sites_answer_a_foreign_callback_with_400,
);

async fn shop(app: &TestApp) -> (RelyingParty, Verifier) {
    let (mut client, secret) = app
        .register_client(ClientSpec {
            name: "Shop",
            redirect_uris: &[REDIRECT],
            grants: &[
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "token-exchange",
            ],
            scopes: Some("openid email offline_access payments"),
            ..Default::default()
        })
        .await;
    client.audiences = vec![PAY.to_owned()];
    app.store()
        .update_client(
            &client,
            &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &client),
        )
        .await
        .unwrap();
    let issuer = Issuer::discover(&app.base, reqwest::Client::new()).await.unwrap();
    let verifier = Verifier::new(issuer, PAY);
    let rp = RelyingParty::new(&verifier, client.id.as_str(), secret, REDIRECT.parse().unwrap());
    (rp, verifier)
}

/// Sends the browser to `url` and returns the callback's query.
async fn come_back(b: &Browser, url: &Url) -> String {
    let back = b.follow(url.as_str()).await.unwrap_or_else(|page| {
        panic!("stopped at {} {}", page.status, page.body);
    });
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    back.query().unwrap_or_default().to_owned()
}

async fn a_site_logs_people_in_and_narrows_their_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("lena@example.com", PASSWORD).await;
    let (rp, verifier) = shop(&app).await;

    let (url, pending) = rp
        .start(&LoginRequest {
            scope: "email offline_access payments".into(),
            ..Default::default()
        })
        .unwrap();
    let query = come_back(&b, &url).await;
    let login = rp.finish(&pending, &query).await.unwrap();
    let account = app
        .store()
        .account_by_email(&gatehouse_core::email::Email::parse("lena@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(login.subject, account.id.to_string());
    assert_eq!(login.email.as_deref(), Some("lena@example.com"));
    assert!(login.sid.is_some());
    assert!(login.tokens.refresh_token.is_some());

    // Narrowed for the payments service: only `payments`, addressed to it.
    let narrowed = rp.narrow(&login.tokens.access_token, "payments", PAY).await.unwrap();
    let token = verifier.verify(&narrowed.access_token).await.unwrap();
    assert_eq!(token.subject, login.subject);
    assert_eq!(token.client_id, rp.client_id());
    assert_eq!(token.scopes.to_string(), "payments");
    assert!(!token.claims.parent_jtis.is_empty());
    // Widening is refused with the token endpoint's error.
    match rp.narrow(&narrowed.access_token, "payments email", PAY).await {
        Err(LoginError::Token { error, .. }) => assert_eq!(error, "invalid_scope"),
        other => panic!("widening: {other:?}"),
    }

    // Refresh rotates; client credentials name the client itself.
    let refreshed = rp
        .refresh(login.tokens.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    assert_ne!(refreshed.refresh_token, login.tokens.refresh_token);
    let own = rp.client_credentials(Some("payments"), Some(PAY)).await.unwrap();
    let own = verifier.verify(&own.access_token).await.unwrap();
    assert_eq!(own.subject, rp.client_id());

    // The same callback twice: the code works once, and its replay
    // revokes what the first use issued (RFC 6749 §4.1.2).
    match rp.finish(&pending, &query).await {
        Err(e @ LoginError::Token { .. }) => {
            assert!(matches!(&e, LoginError::Token { error, .. } if error == "invalid_grant"));
            // The callback's fault (a 4xx for the site), not the issuer's.
            assert_eq!(e.fault(), LoginFault::Callback);
        }
        other => panic!("a replayed code: {other:?}"),
    }
    match rp.narrow(&login.tokens.access_token, "payments", PAY).await {
        // RFC 8693 §2.2.2: an unacceptable subject token is invalid_request.
        Err(LoginError::Token { error, .. }) => assert_eq!(error, "invalid_request"),
        other => panic!("narrowing a revoked token: {other:?}"),
    }

    let logout = rp
        .end_session_url(&login.id_token, Some("http://127.0.0.1:9/shop/"), Some("s"))
        .unwrap();
    assert!(logout.as_str().starts_with(&format!("{}/end_session?", app.base)));
    app.finish().await;
}

async fn fresh_login_and_refusals(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("omar@example.com", PASSWORD).await;
    let (rp, _) = shop(&app).await;

    // prompt=none in a browser without a session: login_required.
    let (url, pending) = rp
        .start(&LoginRequest {
            prompt: Some("none".into()),
            ..Default::default()
        })
        .unwrap();
    let query = come_back(&app.browser(), &url).await;
    match rp.finish(&pending, &query).await {
        Err(LoginError::Denied { error, .. }) => assert_eq!(error, "login_required"),
        other => panic!("prompt=none without a session: {other:?}"),
    }

    // max_age=0 within a session: the password is asked again, and the
    // ID token says it was typed after the request.
    let (url, pending) = rp
        .start(&LoginRequest {
            max_age: Some(0),
            login_hint: Some("omar@example.com".into()),
            ..Default::default()
        })
        .unwrap();
    let page = b.follow(url.as_str()).await.expect_err("the password is asked again");
    page.expect(StatusCode::OK, "enter your password again");
    let next = page.input_value("next").unwrap();
    let r = b
        .post(
            "/login",
            &[("email", "omar@example.com"), ("password", PASSWORD), ("next", &next)],
        )
        .await;
    let resume = r.location().expect("back to the authorization").to_owned();
    let query = come_back(&b, &b.url(&resume)).await;
    let login = rp.finish(&pending, &query).await.unwrap();
    assert!(login.auth_time.unwrap() >= pending.started_at - 1);

    // A callback for another login attempt (another state) is refused.
    let (_, other) = rp.start(&LoginRequest::default()).unwrap();
    assert!(matches!(rp.finish(&other, &query).await, Err(LoginError::State)));
    app.finish().await;
}

/// The first hop of a login at a demo site (`path`, e.g. `/login?next=...`)
/// followed through the IdP (the browser has a session there) back to the
/// site's `/callback`: that callback's URL, not yet requested.
async fn demo_callback(b: &Browser, site: &str, path: &str) -> Url {
    let mut url = Url::parse(&format!("{site}{path}")).unwrap();
    for _ in 0..10 {
        if url.path() == "/callback" && url.as_str().starts_with(site) {
            return url;
        }
        let r = b.client.get(url.clone()).send().await.unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_else(|| panic!("{url} answered {} without a redirect", r.status()));
        url = url.join(&location).unwrap();
    }
    panic!("no callback after ten hops: {url}");
}

/// Where the browser is sent after the login at a demo site: the
/// `Location` of its callback, resolved as a browser does (a tab dropped,
/// a backslash read as a slash: the `url` crate is a WHATWG URL parser).
async fn where_the_login_ends(b: &Browser, site: &str, path: &str) -> Url {
    let callback = demo_callback(b, site, path).await;
    let r = b.client.get(callback.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{callback}");
    let location = r.headers().get("location").expect("a redirect");
    callback.join(&String::from_utf8_lossy(location.as_bytes())).unwrap()
}

async fn the_demo_sites_return_only_to_their_own_paths(backend: Backend) {
    let stack = crate::story::Stack::start(backend).await;
    let b = stack.app.ready_account("nina@example.com", PASSWORD).await;
    for site in [stack.shop.url(), stack.forum.url()] {
        let site = site.as_str().trim_end_matches('/');
        // Known bypasses, as a query parameter (so decoded once by the
        // site): a tab or newline (dropped by browsers), backslashes,
        // slashes, encoded once or twice, another scheme.
        for next in [
            "/%09/evil.example",
            "/%0A/evil.example",
            "/%0D%0A/evil.example",
            "%09//evil.example",
            "/%5C/evil.example",
            "/%5Cevil.example",
            "%5C%5Cevil.example",
            "//evil.example",
            "/%2F/evil.example",
            "/%252F/evil.example",
            "https%3A%2F%2Fevil.example",
            "%2F%2Fevil.example",
        ] {
            let end = where_the_login_ends(&b, site, &format!("/login?next={next}")).await;
            assert_eq!(end.as_str(), format!("{site}/"), "next={next}");
        }
        // A path of the site's own is where the login returns.
        let end = where_the_login_ends(&b, site, "/login?next=%2Forders%3Fpage%3D2").await;
        assert_eq!(end.as_str(), format!("{site}/orders?page=2"));
    }
    stack.finish().await;
}

async fn the_demo_sites_answer_a_foreign_callback_with_400(backend: Backend) {
    let stack = crate::story::Stack::start(backend).await;
    let b = stack.app.ready_account("noor@example.com", PASSWORD).await;
    let replace = |url: &Url, name: &str, value: &str| {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == name { value.to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        let mut out = url.clone();
        out.query_pairs_mut().clear().extend_pairs(pairs);
        out
    };
    for site in [stack.shop.url(), stack.forum.url()] {
        let site = site.as_str().trim_end_matches('/');
        // RFC 9207: an `iss` that is not the IdP's (a mix-up).
        let callback = demo_callback(&b, site, "/login").await;
        let r = b
            .client
            .get(replace(&callback, "iss", "https://evil.example"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.unwrap().contains("Please log in again"));

        // Two logins under way in this browser: the first one's code with
        // the second one's state is redeemed with the second one's PKCE
        // verifier, which the IdP refuses (invalid_grant).
        let first = demo_callback(&b, site, "/login").await;
        let second = demo_callback(&b, site, "/login").await;
        let state = second.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
        let r = b.client.get(replace(&first, "state", &state)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.unwrap().contains("Please log in again"));
        // Nobody was signed in by either.
        assert!(stack.shop.signed_in_users().is_empty() && stack.forum.signed_in_users().is_empty());
    }
    stack.finish().await;
}
