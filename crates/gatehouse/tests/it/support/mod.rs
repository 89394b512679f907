//! Test support: `spawn_app` starts the real server (the same code as
//! `gatehouse serve`) on port 0 with a fresh database and a real SMTP sink;
//! `Browser` is an HTTP client with its own cookie jar that fills in the CSRF
//! token the way a page's form would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod smtp;

use reqwest::cookie::CookieStore;
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{StatusCode, Url};
use std::sync::Arc;
use std::time::Duration;

use gatehouse::Config;
use gatehouse::config::LogFormat;
use gatehouse::server::{self, Running};
use gatehouse_core::audit::{AuditEvent, AuditKind};
use gatehouse_store::Store;

pub use smtp::SmtpSink;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an `async fn(Backend)` test once per backend, as `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    )*};
}

/// The PostgreSQL server the suite creates its databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("GATEHOUSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database made for one test.
pub struct TestDb {
    pub url: String,
    name: Option<String>,
}

impl TestDb {
    pub async fn create(backend: Backend, dir: &std::path::Path) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.join("test.db").display()),
                name: None,
            },
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("gh_it_{}", uuid::Uuid::new_v4().simple());
                let mut conn = admin_connection().await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("cannot create a test database on {admin}: {e}"));
                let mut url = Url::parse(&admin).expect("admin url");
                url.set_path(&format!("/{name}"));
                TestDb {
                    url: url.to_string(),
                    name: Some(name),
                }
            }
        }
    }

    pub async fn drop_db(&self) {
        if let Some(name) = &self.name {
            let mut conn = admin_connection().await;
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

async fn admin_connection() -> sqlx::postgres::PgConnection {
    use sqlx::Connection;
    let url = postgres_admin_url();
    sqlx::postgres::PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {url}: {e}. Start it (scripts/test does) or set GATEHOUSE_TEST_POSTGRES_URL.")
    })
}

pub struct TestApp {
    pub base: String,
    pub mail: SmtpSink,
    pub config: Config,
    pub db: TestDb,
    running: Option<Running>,
    _dir: tempfile::TempDir,
}

/// Starts a server with a fresh database on `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// [`spawn_app`] with the configuration adjusted by `adjust` first.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb::create(backend, dir.path()).await;
    let mail = SmtpSink::start().await;
    let config = Config {
        issuer: None,
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: db.url.clone(),
        smtp_url: Some(mail.url()),
        data_dir: dir.path().to_path_buf(),
        log_format: LogFormat::Human,
        secret_key: None,
        outbox_max_age: gatehouse_idp::outbox::DEFAULT_MAX_AGE,
        logout_token_lifetime: gatehouse_idp::outbox::DEFAULT_LOGOUT_TOKEN_LIFETIME,
        limits: Default::default(),
        jwks_max_age: gatehouse_idp::keys::DEFAULT_JWKS_MAX_AGE,
        pay: Default::default(),
    };
    let mut config = config;
    adjust(&mut config);
    let running = server::start(&config).await.expect("server starts");
    let base = format!("http://{}", running.addr);
    TestApp {
        base,
        mail,
        config,
        db,
        running: Some(running),
        _dir: dir,
    }
}

impl TestApp {
    pub fn store(&self) -> Arc<dyn Store> {
        self.running.as_ref().expect("running").store.clone()
    }

    /// A new browser, with its own cookies.
    pub fn browser(&self) -> Browser {
        self.browser_with_agent("GatehouseTest/1.0 (first)")
    }

    pub fn browser_with_agent(&self, agent: &str) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(agent)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Browser {
            client,
            jar,
            base: Url::parse(&self.base).expect("base"),
        }
    }

    /// Signs up, verifies with the mailed code and signs in: a ready account.
    pub async fn ready_account(&self, email: &str, password: &str) -> Browser {
        let b = self.browser();
        let r = b.post("/signup", &[("email", email), ("password", password)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "sign-up: {}", r.body);
        let mail = self
            .mail
            .wait_for(email, |m| m.subject.contains("verification code"))
            .await;
        let r = b.post("/verify", &[("email", email), ("code", &mail.code())]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "verify: {}", r.body);
        b.login(email, password).await.expect_redirect("/settings");
        b
    }

    /// Registers a client directly in the store; returns it with its secret.
    pub async fn register_client(&self, spec: ClientSpec<'_>) -> (gatehouse_core::oauth::Client, Option<String>) {
        use gatehouse_core::oauth::{Client, GrantType, Scopes};
        let grants: Vec<GrantType> = spec
            .grants
            .iter()
            .map(|g| GrantType::parse(g).expect("grant"))
            .collect();
        let redirects = if spec.redirect_uris.is_empty() && grants.contains(&GrantType::ClientCredentials) {
            vec![]
        } else if spec.redirect_uris.is_empty() {
            vec![format!("http://127.0.0.1:9/{}/cb", spec.name.to_lowercase())]
        } else {
            spec.redirect_uris.iter().map(|s| s.to_string()).collect()
        };
        let (mut client, secret) = Client::new(
            spec.name,
            spec.public,
            redirects,
            grants,
            gatehouse_core::Timestamp::now(),
        )
        .expect("client");
        client.first_party = spec.first_party;
        if let Some(scopes) = spec.scopes {
            client.scopes = Scopes::parse(scopes).expect("scopes");
        }
        self.store()
            .create_client(&client, &client_audit(AuditKind::ClientCreated, &client))
            .await
            .expect("store client");
        (client, secret.map(|s| s.expose().to_owned()))
    }

    /// Asks `/token` for a client-credentials token: the status and body.
    pub async fn client_credentials(&self, id: &str, secret: &str, scope: &str) -> (StatusCode, serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/token", self.base))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
            .await
            .expect("POST /token");
        (r.status(), r.json().await.unwrap_or_default())
    }

    /// Registers an operator client and gets an admin API token: the token
    /// and the client's id.
    pub async fn admin_token(&self) -> (String, String) {
        let (ops, secret) = self
            .register_client(ClientSpec {
                name: "Ops",
                grants: &["client_credentials"],
                scopes: Some("gatehouse:admin"),
                ..Default::default()
            })
            .await;
        let (_, body) = self
            .client_credentials(ops.id.as_str(), &secret.expect("a secret"), "gatehouse:admin")
            .await;
        let token = body["access_token"].as_str().expect("an admin token").to_owned();
        (token, ops.id.to_string())
    }

    /// Stops the server (finishing requests in flight) and drops the database.
    pub async fn finish(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
        self.db.drop_db().await;
    }
}

/// What a test client looks like.
pub struct ClientSpec<'a> {
    pub name: &'a str,
    pub public: bool,
    pub first_party: bool,
    pub redirect_uris: &'a [&'a str],
    /// Grant type names; empty for the defaults.
    pub grants: &'a [&'a str],
    /// Space-separated; `None` for the defaults.
    pub scopes: Option<&'a str>,
}

impl Default for ClientSpec<'_> {
    fn default() -> Self {
        ClientSpec {
            name: "Shop",
            public: false,
            first_party: true,
            redirect_uris: &[],
            grants: &[],
            scopes: None,
        }
    }
}

/// What came back from a request.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    /// Asserts a 303 redirect to a URL starting with `prefix`.
    #[track_caller]
    pub fn expect_redirect(&self, prefix: &str) -> &Self {
        assert!(
            self.status.is_redirection() && self.location().is_some_and(|l| l.starts_with(prefix)),
            "expected a redirect to {prefix}, got {} to {:?}: {}",
            self.status,
            self.location(),
            self.body
        );
        self
    }

    #[track_caller]
    pub fn expect(&self, status: StatusCode, text: &str) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert!(self.body.contains(text), "expected {text:?} in: {}", self.body);
        self
    }

    /// The value of the first `<input name=NAME value=...>` on the page.
    pub fn input_value(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\""))?;
        let rest = &self.body[at..];
        let v = rest.find("value=\"")?;
        let rest = &rest[v + 7..];
        Some(rest[..rest.find('"')?].replace("&#x2f;", "/").replace("&#x3d;", "="))
    }
}

/// An HTTP client that behaves like one browser: cookies kept, redirects
/// not followed (tests assert on them), forms sent with the CSRF token.
#[derive(Clone)]
pub struct Browser {
    pub client: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    pub base: Url,
}

impl Browser {
    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("path")
    }

    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("body");
        Page { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::page(self.client.get(self.url(path)).send().await.expect("GET")).await
    }

    /// A cookie's value as the browser holds it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let header = self.jar.cookies(&self.base)?;
        let header = header.to_str().ok()?.to_owned();
        header
            .split("; ")
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
    }

    /// The CSRF token, fetching a page first if the browser has none yet.
    pub async fn csrf(&self) -> String {
        if let Some(t) = self.cookie("gh_csrf") {
            return t;
        }
        self.get("/login").await;
        self.cookie("gh_csrf").expect("csrf cookie set by any page")
    }

    /// Posts a form the way the page would: with the CSRF token.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let mut form: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post_raw(path, &form).await
    }

    /// Posts exactly these fields, no CSRF token added.
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        Self::page(
            self.client
                .post(self.url(path))
                .form(fields)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// Follows redirects on our own origin until one leaves it (to a
    /// client's redirect URI): returns that URL, or the page it stopped on.
    pub async fn follow(&self, url: &str) -> Result<Url, Page> {
        let mut next = self.url(url);
        for _ in 0..10 {
            let page = Self::page(self.client.get(next.clone()).send().await.expect("GET")).await;
            let Some(location) = page.location() else {
                return Err(page);
            };
            next = next.join(location).expect("location");
            if next.origin() != self.base.origin() {
                return Ok(next);
            }
        }
        panic!("redirect loop at {next}");
    }

    pub async fn login(&self, email: &str, password: &str) -> Page {
        self.post("/login", &[("email", email), ("password", password)]).await
    }
}

/// Polls `check` until it returns `Some`, for at most ten seconds.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Serves `app` on a random loopback port for the rest of the test; returns
/// its address (a relier, an events receiver...).
pub async fn serve_local(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// The audit event of a test's own change to `client` (as the command
/// line's).
pub fn client_audit(kind: AuditKind, client: &gatehouse_core::oauth::Client) -> AuditEvent {
    AuditEvent::client_changed(
        kind,
        &client.id,
        gatehouse_core::audit::BY_CLI,
        gatehouse_core::Timestamp::now(),
    )
}
