//! A single-page app, the browser-only public client that CORS is for, in
//! headless Chromium with JavaScript on: a static page served by this test
//! on an origin of its own (another port on loopback), on a real OAuth
//! library for the browser (oauth4webapi, from `tests/spa/node_modules`,
//! which `scripts/test` installs with `npm ci`). The page runs discovery,
//! reads the JWKS, sends the browser to the IdP (where the test logs in
//! through the login page), and back home redeems the code with PKCE and
//! DPoP, calls UserInfo, refreshes, and revokes, every call cross-origin;
//! it shows the outcome in `#result`, which the test reads.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use fantoccini::Locator;
use serde_json::{Value, json};

use crate::both_backends;
use crate::browser::{
    ChromeDriver, PAGE_DEADLINE, PASSWORD, Session, button, console_problems, fill, wait_for_heading,
};
use crate::support::{Backend, ClientSpec, TestApp, serve_local, spawn_app};

both_backends!(a_single_page_app_signs_in_and_calls_the_idp_cross_origin);

async fn a_single_page_app_signs_in_and_calls_the_idp_cross_origin(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "spa@example.com";
    app.ready_account(email, PASSWORD).await;
    let account = app
        .store()
        .account_by_email(&gatehouse_core::Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap();
    let spa = start_spa(&app).await;
    in_chromium_with_javascript(move |c| async move {
        // The page sends the browser to the IdP, which asks who it is.
        c.goto(&spa).await.unwrap();
        wait_for_heading(&c, "Sign in").await;
        let url = c.current_url().await.unwrap();
        assert!(url.as_str().starts_with(&format!("{}/login?", app.base)), "{url}");
        fill(&c, "input[name=email]", email).await;
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Sign in").await.click().await.unwrap();

        // Back at the page, which does the rest by itself.
        let result = outcome(&c).await;
        assert_eq!(result["issuer"], app.base.as_str());
        assert_eq!(result["sub"], account.id.as_str());
        assert_eq!(result["id_token_kid_published"], true, "{result}");
        assert!(
            result["token_type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("dpop")),
            "a DPoP-bound token (the nonce was read from DPoP-Nonce): {result}"
        );
        assert_eq!(result["userinfo"]["sub"], account.id.as_str());
        assert_eq!(result["userinfo"]["email"], email);
        assert!(
            result["refreshed_token_type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("dpop")),
            "{result}"
        );
        assert_eq!(result["refreshed_access_token_differs"], true);
        assert_eq!(result["userinfo_after_refresh"]["email"], email);
        assert!(
            result["access_after_revocation"]
                .as_str()
                .is_some_and(|c| c.contains("invalid_token")),
            "a revoked access token is refused, and the page reads why (WWW-Authenticate): {result}"
        );
        assert_eq!(result["refresh_after_revocation"], "invalid_grant", "{result}");

        // Nothing was blocked on the way.
        let blocked: Vec<Value> = console_problems(&c)
            .await
            .into_iter()
            .filter(|e| e["message"].as_str().is_some_and(|m| m.contains("CORS")))
            .collect();
        assert!(blocked.is_empty(), "CORS errors in the console: {blocked:#?}");

        // The same requests by hand: from the app's origin the browser
        // hands the page every answer (errors too); from an origin that no
        // public client registered, only the public documents.
        assert_eq!(
            probe(&c, &app.base).await,
            ["read 200", "read 200", "read 400", "read 401", "read 401"],
            "from the app's origin"
        );
        let elsewhere = serve_local(Router::new().route(
            "/",
            get(|| async { Html("<!doctype html><title>Elsewhere</title><h1>Elsewhere</h1>") }),
        ))
        .await;
        c.goto(&format!("http://{elsewhere}/")).await.unwrap();
        wait_for_heading(&c, "Elsewhere").await;
        assert_eq!(
            probe(&c, &app.base).await,
            [
                "read 200",
                "read 200",
                "blocked TypeError",
                "blocked TypeError",
                "blocked TypeError"
            ],
            "from an origin no client registered"
        );
        app.finish().await;
    })
    .await;
}

/// Fetches, from the page it runs in, discovery, the JWKS, the token
/// endpoint and revocation (an unknown client) and UserInfo (a bad token),
/// the last three with a header that needs a preflight (DPoP, Authorization):
/// for each, `read STATUS` if the browser let the page read the answer, or
/// `blocked` and the error's name.
async fn probe(c: &Session, issuer: &str) -> Vec<String> {
    const PROBE: &str = r#"
const [issuer, done] = arguments;
const read = (request) => request.then((r) => `read ${r.status}`, (e) => `blocked ${e.name}`);
const form = (headers, fields) => ({ method: 'POST', headers, body: new URLSearchParams(fields) });
Promise.all([
  read(fetch(`${issuer}/.well-known/openid-configuration`)),
  read(fetch(`${issuer}/jwks.json`)),
  read(fetch(`${issuer}/token`, form({ DPoP: 'not-a-proof' }, { grant_type: 'authorization_code', code: 'x', client_id: 'nobody' }))),
  read(fetch(`${issuer}/userinfo`, { headers: { Authorization: 'Bearer not-a-token' } })),
  read(fetch(`${issuer}/revoke`, form({ Authorization: `Basic ${btoa('nobody:nothing')}` }, { token: 'x' }))),
]).then(done);
"#;
    let seen = c
        .execute_async(PROBE, vec![json!(issuer)])
        .await
        .unwrap_or_else(|e| panic!("the probe script: {e}"));
    serde_json::from_value(seen).unwrap()
}

/// Where the page's files are.
fn spa_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/spa")
}

/// Serves the page on a loopback port of its own, registered at the IdP as
/// a public client whose redirect URI is the page's `/callback`; returns the
/// page's URL.
async fn start_spa(app: &TestApp) -> String {
    let library = spa_dir().join("node_modules/oauth4webapi/build/index.js");
    let library = std::fs::read_to_string(&library).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}. Install the page's packages: npm ci --prefix crates/gatehouse/tests/spa (scripts/test does)",
            library.display()
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let redirect_uri = format!("{base}/callback");
    let (client, _) = app
        .register_client(ClientSpec {
            name: "Single-page app",
            public: true,
            redirect_uris: &[&redirect_uri],
            ..Default::default()
        })
        .await;
    let config = json!({
        "issuer": app.base,
        "client_id": client.id.as_str(),
        "redirect_uri": redirect_uri,
    });
    // JSON inside a <script> element: no "</script>" can end it early.
    let index = include_str!("../spa/index.html").replace("{{CONFIG}}", &config.to_string().replace('<', "\\u003c"));
    let script =
        |body: String| move || async move { ([(header::CONTENT_TYPE, "text/javascript")], body).into_response() };
    let page = move || async move { Html(index) };
    let router = Router::new()
        .route("/", get(page.clone()))
        .route("/callback", get(page))
        .route("/app.js", get(script(include_str!("../spa/app.js").to_owned())))
        .route("/oauth4webapi.js", get(script(library)));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("{base}/")
}

/// What the page shows in `#result` once it is done; its `#error` fails
/// the test.
async fn outcome(c: &Session) -> Value {
    let deadline = tokio::time::Instant::now() + PAGE_DEADLINE;
    loop {
        // While the browser is on the IdP's pages or loading, there is no #status.
        if let Ok(status) = c.find(Locator::Css("#status")).await
            && let Ok(status) = status.text().await
        {
            match status.as_str() {
                "done" => {
                    let result = c.find(Locator::Css("#result")).await.unwrap().text().await.unwrap();
                    return serde_json::from_str(&result).unwrap_or_else(|e| panic!("#result ({e}): {result}"));
                }
                "failed" => {
                    let error = c.find(Locator::Css("#error")).await.unwrap().text().await.unwrap();
                    let console = console_problems(c).await;
                    panic!("the page failed: {error}\nconsole: {console:#?}");
                }
                _ => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let console = console_problems(c).await;
            panic!("the page did not finish; at {url}; console: {console:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`crate::browser::in_chromium`] with JavaScript on.
async fn in_chromium_with_javascript<F, Fut>(test: F)
where
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let driver = ChromeDriver::start().await;
    let client = driver.session_with_javascript().await;
    let outcome = tokio::spawn(test(Session {
        client: client.clone(),
        driver_url: driver.url.clone(),
    }))
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
    drop(driver);
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the browser test did not finish: {e}"),
        }
    }
}
