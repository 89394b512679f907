//! In a real browser: headless Chromium, driven over WebDriver (chromedriver
//! and fantoccini), signs up, verifies from the mail and signs in through the
//! pages a person uses, and signs in at two reliers (tiny web sites of their
//! own, on ports of their own) with one login. JavaScript is switched off in
//! the browser: every page must work as plain HTML forms (the CSP forbids
//! scripts anyway).
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (or
//! `GATEHOUSE_TEST_CHROMIUM` and `GATEHOUSE_TEST_CHROMEDRIVER` pointing at the
//! binaries). `GATEHOUSE_TEST_SCREENSHOTS=DIR` saves a picture of the settings
//! page there.

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{Html, Redirect};
use axum::routing::get;
use base64::Engine;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, TokenResponse,
};
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, ClientSpec, TestApp, spawn_app};

pub(crate) const PASSWORD: &str = "a perfectly fine passphrase";
/// How long a page may take to appear after a click.
pub(crate) const PAGE_DEADLINE: Duration = Duration::from_secs(15);
/// A phone-sized window: the pages must work there.
const WINDOW: (u32, u32) = (400, 900);

both_backends!(
    sign_up_verify_and_log_in_in_a_browser,
    verify_by_the_mailed_link_in_a_browser,
    single_sign_on_across_reliers_in_a_browser,
);

async fn sign_up_verify_and_log_in_in_a_browser(backend: Backend) {
    let app = spawn_app(backend).await;
    in_chromium(move |c| async move {
        let email = "alice@example.com";

        // Sign up.
        c.goto(&format!("{}/signup", app.base)).await.unwrap();
        wait_for_heading(&c, "Create an account").await;
        assert_eq!(c.title().await.unwrap(), "Create an account · Gatehouse");
        assert_no_scripts(&c).await;
        fill(&c, "input[name=email]", email).await;
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Create account").await.click().await.unwrap();

        // The verify page, with the code from the mail.
        wait_for_heading(&c, "Check your email").await;
        assert!(
            text(&c, "main").await.contains(email),
            "the verify page names the address"
        );
        assert_eq!(value(&c, "input[name=email]").await, email, "the address is filled in");
        let mail = app
            .mail
            .wait_for(email, |m| m.subject.contains("verification code"))
            .await;
        fill(&c, "input[name=code]", &mail.code()).await;
        button(&c, "Verify").await.click().await.unwrap();

        // The login page says so and knows the address.
        wait_for_heading(&c, "Sign in").await;
        assert!(
            text(&c, ".notice").await.contains("Your email address is verified"),
            "notice: {}",
            text(&c, ".notice").await
        );
        assert_eq!(value(&c, "input[name=email]").await, email);
        let forgot = link(&c, "Forgot your password?").await;
        assert!(forgot.attr("href").await.unwrap().unwrap().starts_with("/reset"));
        assert_eq!(
            link(&c, "Create an account")
                .await
                .attr("href")
                .await
                .unwrap()
                .as_deref(),
            Some("/signup")
        );
        assert_no_scripts(&c).await;

        // Sign in: the settings page.
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Sign in").await.click().await.unwrap();
        wait_for_heading(&c, "Your account").await;
        assert_eq!(text(&c, "#account-email").await, email);
        assert!(text(&c, ".sessions").await.contains("This device"));
        assert_no_scripts(&c).await;
        if let Ok(dir) = std::env::var("GATEHOUSE_TEST_SCREENSHOTS") {
            let png = c.screenshot().await.unwrap();
            std::fs::write(
                std::path::Path::new(&dir).join(format!("settings-{backend:?}.png")),
                png,
            )
            .unwrap();
        }

        // Sign out: back to the login page, and the settings are closed.
        button(&c, "Sign out").await.click().await.unwrap();
        wait_for_heading(&c, "Sign in").await;
        assert_eq!(text(&c, ".notice").await, "You are signed out.");
        c.goto(&format!("{}/settings", app.base)).await.unwrap();
        wait_for_heading(&c, "Sign in").await;

        assert_console_clean(&c).await;
        app.finish().await;
    })
    .await;
}

async fn verify_by_the_mailed_link_in_a_browser(backend: Backend) {
    let app = spawn_app(backend).await;
    in_chromium(move |c| async move {
        let email = "bob@example.com";
        c.goto(&format!("{}/signup", app.base)).await.unwrap();
        wait_for_heading(&c, "Create an account").await;
        fill(&c, "input[name=email]", email).await;
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Create account").await.click().await.unwrap();
        wait_for_heading(&c, "Check your email").await;

        // Opening the link shows a button; the button verifies.
        let mail = app
            .mail
            .wait_for(email, |m| m.subject.contains("verification code"))
            .await;
        c.goto(&mail.link("/verify/link?token=")).await.unwrap();
        wait_for_heading(&c, "Verify your email").await;
        button(&c, "Verify my email").await.click().await.unwrap();
        wait_for_heading(&c, "Email verified").await;
        assert!(text(&c, "main").await.contains("Your email address is verified."));

        // Its "Sign in" link leads to the login page with the address filled in.
        link(&c, "Sign in").await.click().await.unwrap();
        wait_for_heading(&c, "Sign in").await;
        assert_eq!(value(&c, "input[name=email]").await, email);
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Sign in").await.click().await.unwrap();
        wait_for_heading(&c, "Your account").await;
        assert_eq!(text(&c, "#account-email").await, email);

        assert_console_clean(&c).await;
        app.finish().await;
    })
    .await;
}

/// Log in at relier A, then open relier B: no password asked. `prompt=login`
/// at B asks for it again, and moves `auth_time`.
async fn single_sign_on_across_reliers_in_a_browser(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "erin@example.com";
    // The account comes ready from plain HTTP; the browser has no session yet.
    app.ready_account(email, PASSWORD).await;
    let account = app
        .store()
        .account_by_email(&gatehouse_core::Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap();
    let relier_a = Relier::start(&app, "Relier A").await;
    let relier_b = Relier::start(&app, "Relier B").await;
    in_chromium(move |c| async move {
        // At A: Gatehouse's login page, then back at A, signed in.
        c.goto(&relier_a.url).await.unwrap();
        wait_for_heading(&c, "Sign in").await;
        let url = c.current_url().await.unwrap();
        assert!(url.as_str().starts_with(&format!("{}/login?", app.base)), "{url}");
        assert_no_scripts(&c).await;
        fill(&c, "input[name=email]", email).await;
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Sign in").await.click().await.unwrap();
        wait_for_heading(&c, "Relier A").await;
        let at_a = signed_in(&c, "Relier A").await;
        assert_eq!(at_a.sub, account.id.as_str());

        // At B: no password asked. `goto` returns once the last page of the
        // navigation has loaded; had Gatehouse shown any page (login,
        // consent), it would have stopped there. So: no waiting, no form, and
        // B's own page right away.
        c.goto(&relier_b.url).await.unwrap();
        let url = c.current_url().await.unwrap();
        assert!(
            url.as_str().starts_with(&format!("{}/cb?", relier_b.url)),
            "straight back at B, not at {url}:\n{}",
            text(&c, "body").await
        );
        assert_eq!(text(&c, "h1").await, "Relier B");
        let at_b = signed_in(&c, "Relier B").await;
        assert_eq!(at_b.sub, at_a.sub, "the same person");
        assert_eq!(at_b.sid, at_a.sid, "the same Gatehouse session");
        assert_eq!(at_b.auth_time, at_a.auth_time, "no new authentication");
        assert_eq!(relier_b.sign_ins(), 1);

        // prompt=login at B: the password again, for the same address.
        c.goto(&format!("{}/?fresh=1", relier_b.url)).await.unwrap();
        wait_for_heading(&c, "Confirm it is you").await;
        assert!(
            text(&c, "main").await.contains("enter your password again"),
            "{}",
            text(&c, "main").await
        );
        assert_eq!(value(&c, "input[name=email]").await, email);
        assert!(
            find(&c, "input[name=email]")
                .await
                .attr("readonly")
                .await
                .unwrap()
                .is_some(),
            "the address cannot be changed"
        );
        // auth_time counts whole seconds: a new one shows only in a later second.
        until_the_second_after(at_b.auth_time).await;
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Continue").await.click().await.unwrap();
        wait_for_heading(&c, "Relier B").await;
        let again = signed_in(&c, "Relier B").await;
        assert_eq!(again.sub, at_a.sub);
        assert_eq!(again.sid, at_a.sid, "the same session, authenticated again");
        assert!(
            again.auth_time > at_b.auth_time,
            "auth_time moves forward: {} then {}",
            at_b.auth_time,
            again.auth_time
        );
        assert_eq!((relier_a.sign_ins(), relier_b.sign_ins()), (1, 2));

        assert_console_clean(&c).await;
        drop((relier_a, relier_b));
        app.finish().await;
    })
    .await;
}

// ---- Reliers: the sites a person signs in at. ----

type Oidc = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// A relying party: a tiny web site on a port of its own, registered with
/// Gatehouse as a confidential first-party client. `GET /` sends the browser
/// to Gatehouse's `/authorize` (PKCE S256, state, nonce; `prompt=login` with
/// `?fresh=1`); `GET /cb` exchanges the code (client_secret_basic), checks
/// the ID token (signature, issuer, audience, nonce) and says who signed in.
/// Stopped when dropped.
struct Relier {
    /// `http://127.0.0.1:PORT`
    url: String,
    site: Arc<RelierSite>,
    task: tokio::task::JoinHandle<()>,
}

struct RelierSite {
    name: &'static str,
    issuer: String,
    oidc: Oidc,
    /// Sign-ins under way, by `state`: the PKCE verifier and the nonce.
    pending: Mutex<HashMap<String, (PkceCodeVerifier, Nonce)>>,
    /// Sign-ins completed.
    completed: Mutex<usize>,
}

/// What a relier's page says about who signed in.
struct SignedIn {
    sub: String,
    auth_time: i64,
    sid: String,
}

impl Relier {
    async fn start(app: &TestApp, name: &'static str) -> Relier {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let redirect = format!("{url}/cb");
        let (client, secret) = app
            .register_client(ClientSpec {
                name,
                redirect_uris: &[&redirect],
                ..Default::default()
            })
            .await;
        let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &oidc_http())
            .await
            .expect("discovery");
        let oidc = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client.id.as_str().to_owned()),
            Some(ClientSecret::new(secret.expect("a confidential client"))),
        )
        .set_redirect_uri(RedirectUrl::new(redirect).unwrap());
        let site = Arc::new(RelierSite {
            name,
            issuer: app.base.clone(),
            oidc,
            pending: Mutex::new(HashMap::new()),
            completed: Mutex::new(0),
        });
        let router = Router::new()
            .route("/", get(relier_start))
            .route("/cb", get(relier_callback))
            .with_state(site.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Relier { url, site, task }
    }

    /// How many sign-ins completed here.
    fn sign_ins(&self) -> usize {
        *self.site.completed.lock().unwrap()
    }
}

impl Drop for Relier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `GET /`: off to Gatehouse.
async fn relier_start(State(site): State<Arc<RelierSite>>, Query(q): Query<HashMap<String, String>>) -> Redirect {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = site
        .oidc
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    if q.contains_key("fresh") {
        request = request.add_prompt(CoreAuthPrompt::Login);
    }
    let (url, state, nonce) = request.url();
    site.pending
        .lock()
        .unwrap()
        .insert(state.secret().clone(), (verifier, nonce));
    Redirect::to(url.as_str())
}

/// `GET /cb`: back from Gatehouse. A failure is a page too, so that the test
/// waiting for the heading shows what went wrong.
async fn relier_callback(
    State(site): State<Arc<RelierSite>>,
    Query(q): Query<HashMap<String, String>>,
) -> Html<String> {
    let name = site.name;
    match site.complete(&q).await {
        Ok(s) => {
            *site.completed.lock().unwrap() += 1;
            Html(format!(
                "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{name}</title><main>\
                 <h1>{name}</h1><p id=\"signed-in\">Signed in at {name} as <span id=\"sub\">{}</span> \
                 (auth_time <span id=\"auth-time\">{}</span>)</p><p>Session <span id=\"sid\">{}</span></p></main>",
                escape(&s.sub),
                s.auth_time,
                escape(&s.sid)
            ))
        }
        Err(e) => Html(format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{name}</title><main>\
             <h1>{name}: the sign-in failed</h1><pre>{}</pre></main>",
            escape(&e)
        )),
    }
}

impl RelierSite {
    async fn complete(&self, q: &HashMap<String, String>) -> Result<SignedIn, String> {
        let state = q.get("state").ok_or("no state")?;
        let (verifier, nonce) = self
            .pending
            .lock()
            .unwrap()
            .remove(state)
            .ok_or_else(|| format!("unknown state {state:?}"))?;
        if let Some(error) = q.get("error") {
            return Err(format!(
                "{error}: {}",
                q.get("error_description").map_or("", String::as_str)
            ));
        }
        if q.get("iss") != Some(&self.issuer) {
            return Err(format!("iss {:?}, expected {:?}", q.get("iss"), self.issuer));
        }
        let code = q.get("code").ok_or("no code")?;
        let tokens = self
            .oidc
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|e| format!("{e:?}"))?
            .set_pkce_verifier(verifier)
            .request_async(&oidc_http())
            .await
            .map_err(|e| format!("token request: {e:?}"))?;
        let id_token = tokens.id_token().ok_or("no ID token")?;
        let claims = id_token
            .claims(&self.oidc.id_token_verifier(), &nonce)
            .map_err(|e| format!("ID token: {e:?}"))?;
        let auth_time = claims.auth_time().ok_or("no auth_time")?.timestamp();
        // `sid` is not among the library's standard claims: read it from the
        // (verified) payload.
        let payload = id_token.to_string();
        let payload = payload.split('.').nth(1).ok_or("not a JWT")?;
        let raw: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("undecodable payload")?;
        Ok(SignedIn {
            sub: claims.subject().as_str().to_owned(),
            auth_time,
            sid: raw["sid"].as_str().ok_or("no sid")?.to_owned(),
        })
    }
}

fn oidc_http() -> reqwest::Client {
    // No redirects followed: what openidconnect asks of its HTTP client.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// What the relier's page in the browser says: signed in at `name`, as whom.
async fn signed_in(c: &Client, name: &str) -> SignedIn {
    let s = SignedIn {
        sub: text(c, "#sub").await,
        auth_time: text(c, "#auth-time").await.parse().unwrap(),
        sid: text(c, "#sid").await,
    };
    assert_eq!(
        text(c, "#signed-in").await,
        format!("Signed in at {name} as {} (auth_time {})", s.sub, s.auth_time)
    );
    assert!(!s.sub.is_empty() && !s.sid.is_empty());
    s
}

/// Polls the clock until the Unix time, in whole seconds, is past `t`.
async fn until_the_second_after(t: i64) {
    let now = || i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while now() <= t {
        assert!(tokio::time::Instant::now() < deadline, "the clock is not past {t}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- Page helpers: what a person sees and does. ----

/// Waits until the page's `<h1>` reads `heading`: the way to wait for a
/// navigation to finish.
pub(crate) async fn wait_for_heading(c: &Client, heading: &str) {
    let deadline = tokio::time::Instant::now() + PAGE_DEADLINE;
    let mut seen = String::new();
    loop {
        // While the page changes, the lookup may fail or find the old one.
        if let Ok(h1) = c.find(Locator::Css("h1")).await
            && let Ok(t) = h1.text().await
        {
            if t.trim() == heading {
                return;
            }
            seen = t;
        }
        if tokio::time::Instant::now() >= deadline {
            let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let body = text(c, "body").await;
            panic!("waited for the page {heading:?}; still on {seen:?} at {url}:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn find(c: &Client, css: &str) -> Element {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

/// Types `value` into the (cleared) field.
pub(crate) async fn fill(c: &Client, css: &str, value: &str) {
    let field = find(c, css).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// The text of `css`. The page may change between finding the element
/// and reading it (a redirect lands, a form posts): a stale element is
/// found again on the new page.
pub(crate) async fn text(c: &Client, css: &str) -> String {
    for _ in 0..20 {
        match find(c, css).await.text().await {
            Ok(text) => return text,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot read {css}: {e}"),
        }
    }
    panic!("{css} went stale twenty times in a row")
}

/// What the field holds now (not the `value` attribute it was served with).
pub(crate) async fn value(c: &Client, css: &str) -> String {
    find(c, css).await.prop("value").await.unwrap().unwrap_or_default()
}

/// The button labelled `label`; there must be exactly one.
pub(crate) async fn button(c: &Client, label: &str) -> Element {
    one(c, &format!("//button[normalize-space(.)='{label}']"), label).await
}

/// The link reading `label`; there must be exactly one.
pub(crate) async fn link(c: &Client, label: &str) -> Element {
    one(c, &format!("//a[normalize-space(.)='{label}']"), label).await
}

pub(crate) async fn one(c: &Client, xpath: &str, label: &str) -> Element {
    let mut found = c.find_all(Locator::XPath(xpath)).await.unwrap();
    assert_eq!(
        found.len(),
        1,
        "expected one {label:?} on the page, found {}:\n{}",
        found.len(),
        text(c, "body").await
    );
    let element = found.remove(0);
    assert!(element.is_displayed().await.unwrap(), "{label:?} is hidden");
    element
}

pub(crate) async fn assert_no_scripts(c: &Client) {
    let scripts = c.find_all(Locator::Css("script")).await.unwrap();
    assert!(scripts.is_empty(), "the page has {} script element(s)", scripts.len());
}

/// Nothing in the browser's console: no CSP violation, no failed load.
pub(crate) async fn assert_console_clean(c: &Session) {
    let bad = console_problems(c).await;
    assert!(bad.is_empty(), "the browser's console has warnings or errors: {bad:#?}");
}

/// The browser console's warnings and errors so far (each read once).
pub(crate) async fn console_problems(c: &Session) -> Vec<Value> {
    let id = c.session_id().await.unwrap().expect("a session");
    let logs: Value = reqwest::Client::new()
        .post(format!("{}/session/{id}/se/log", c.driver_url))
        .json(&json!({ "type": "browser" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = logs["value"].as_array().expect("log entries");
    // The site has no icon; the browser asking for one is not the page's fault.
    entries
        .iter()
        .filter(|e| e["level"] != "INFO" && e["level"] != "DEBUG")
        .filter(|e| !e["message"].as_str().is_some_and(|m| m.contains("/favicon.ico ")))
        .cloned()
        .collect()
}

// ---- Chromium over WebDriver. ----

/// Runs `test` with a fresh browser session. The session is closed and the
/// browser stopped even when `test` fails; then the failure is passed on.
pub(crate) async fn in_chromium<F, Fut>(test: F)
where
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let driver = ChromeDriver::start().await;
    let client = driver.session().await;
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

/// A browser session, and the chromedriver it runs on.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) driver_url: String,
}

impl std::ops::Deref for Session {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// A chromedriver process (and the Chromium it starts) in a process group of
/// its own, killed whole when this is dropped.
pub(crate) struct ChromeDriver {
    child: Child,
    pub(crate) url: String,
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    pub(crate) async fn start() -> ChromeDriver {
        let binary =
            std::env::var("GATEHOUSE_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
        let mut child = Command::new(&binary)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary}: {e}. Install it: apt-get install -y chromium chromium-driver")
            });
        // chromedriver picks a free port and says which; keep draining its
        // output afterwards so that it never blocks on a full pipe.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("ChromeDriver was started successfully on port ") {
                    let _ = tx.send(port.trim_end_matches('.').parse::<u16>().ok());
                }
            }
        });
        let mut driver = ChromeDriver {
            child,
            url: String::new(),
            profile: tempfile::tempdir().expect("profile dir"),
        };
        let port = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .ok()
            .flatten()
            .flatten()
            .expect("chromedriver says which port it listens on");
        driver.url = format!("http://127.0.0.1:{port}");

        // Ready when /status says so.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status: Option<Value> = match http.get(format!("{}/status", driver.url)).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            if status.is_some_and(|s| s["value"]["ready"] == true) {
                break;
            }
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!("chromedriver exited: {exit}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver at {} never became ready",
                driver.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
    }

    /// A new session: headless Chromium with a fresh profile and no JavaScript.
    pub(crate) async fn session(&self) -> Client {
        self.new_session(false).await
    }

    /// A new session with JavaScript on: for a single-page client's own
    /// page (`spa.rs`); Gatehouse's pages still carry no script.
    pub(crate) async fn session_with_javascript(&self) -> Client {
        self.new_session(true).await
    }

    /// A new session with JavaScript on and third-party cookies blocked
    /// (as Safari and Firefox's strict mode do): for the checkout's
    /// fallback out of a frame (`embed.rs`).
    pub(crate) async fn session_without_third_party_cookies(&self) -> Client {
        self.new_session_with(true, true).await
    }

    async fn new_session(&self, javascript: bool) -> Client {
        self.new_session_with(javascript, false).await
    }

    async fn new_session_with(&self, javascript: bool, block_third_party_cookies: bool) -> Client {
        let binary = std::env::var("GATEHOUSE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                    "--disable-sync",
                    "--disable-quic",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
                "prefs": {
                    "profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 },
                    // 1: block third-party cookies; 0: allow them (the default).
                    "profile.cookie_controls_mode": if block_third_party_cookies { 1 } else { 0 },
                    "profile.block_third_party_cookies": block_third_party_cookies,
                },
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
        client.set_window_size(WINDOW.0, WINDOW.1).await.unwrap();
        // JavaScript really is off (or on): a script would have changed the title.
        client
            .goto("data:text/html,<title>off</title><script>document.title='on'</script>")
            .await
            .unwrap();
        assert_eq!(
            client.title().await.unwrap(),
            if javascript { "on" } else { "off" },
            "JavaScript should be {} in the test browser",
            if javascript { "on" } else { "off" }
        );
        client
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser processes it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
