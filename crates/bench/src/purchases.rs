//! The purchases scenario: the payments service (`gatehouse --json pay
//! serve`, a second process on its own fresh database) and one purchase end
//! to end per iteration, as docs/payments.md describes it:
//!
//! 1. `POST {pay}/api/contracts` with the merchant's client-credentials
//!    token and the buyer's narrowed token (201, a purchase link);
//! 2. `GET` the purchase link (303 to the pay URL, the pay session cookie);
//! 3. `GET /contracts/{hash}` (the purchase page: its CSRF token);
//! 4. `POST /contracts/{hash}/pay` with the PIN (Argon2id) → 303 to the
//!    fulfillment URL with `payment=<proof>`.
//!
//! The merchant notification the payments service's outbox worker then
//! POSTs is counted at a receiver in the bench (answering 200), with its
//! latency from the payment's 303 to its arrival.
//!
//! Untimed setup: the payments service and the shop registered at the IdP
//! (through the store, as the other clients), the shop as a merchant and
//! the bench user's wallet funded (with the real CLI), the merchant's token
//! (`resource={pay}`), one narrowed user token per connection (code flow at
//! the shop with that connection's IdP session, then token exchange), and
//! the buyer's first-purchase form (agreement and PIN) once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use axum::Router;
use axum::routing::post;
use base64::Engine;
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde::Serialize;

use gatehouse_core::audit::{AuditEvent, AuditKind, BY_CLI};
use gatehouse_core::oauth::GrantType;

use crate::http::{self, Conn, Reply};
use crate::load::{Fail, LoopWorker, Outcome, Pace, drive, histogram, micros};
use crate::server::{self, Backend, Database, Server};
use crate::setup::{self, Fixture};

/// The shop's redirect URI (never contacted: the code is read from the
/// `Location` header).
const SHOP_REDIRECT: &str = "http://127.0.0.1:9/shop/callback";
/// The buyer's purchase PIN (six digits, not guessable by the policy).
const PIN: &str = "274951";
/// The price of one purchase, in cents.
const AMOUNT: i64 = 100;
/// A generous bound on purchases per second, for funding the wallet.
const MAX_RATE: f64 = 250.0;
/// Narrowed tokens live 5 minutes; longer runs would need refreshing them.
pub const MAX_RUN: Duration = Duration::from_secs(240);
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// What arrived at the merchant's notify URI.
#[derive(Default)]
struct Notifications {
    /// Contract hash → when its `purchase.completed` first arrived.
    arrived: HashMap<String, Instant>,
    /// Every POST, duplicates (redeliveries) included.
    posts: u64,
    /// POSTs that were not a readable notification.
    unreadable: u64,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `contract_hash` and `event` of a notification (a compact JWS; the
/// bench does not verify the signature, the demo shop's tests do).
fn read_notification(body: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let payload = text.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((
        claims["contract_hash"].as_str()?.to_owned(),
        claims["event"].as_str()?.to_owned(),
    ))
}

/// Starts the receiver; returns its notify URI.
async fn receiver(seen: Shared<Notifications>) -> anyhow::Result<String> {
    let app = Router::new().route(
        "/notify",
        post(move |body: Bytes| {
            let seen = seen.clone();
            async move {
                let now = Instant::now();
                let mut n = lock(&seen);
                n.posts += 1;
                match read_notification(&body) {
                    Some((hash, event)) if event == "purchase.completed" => {
                        n.arrived.entry(hash).or_insert(now);
                    }
                    Some(_) => {}
                    None => n.unreadable += 1,
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/notify"))
}

/// A free loopback port (bound, read, released): the payments service's
/// redirect URI and audience must be registered before it starts.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `gatehouse [--json] pay ...` against the payments database.
async fn pay_cli(gatehouse: &Path, db: &Database, pay_db: &Database, args: Vec<String>) -> anyhow::Result<()> {
    let mut cmd = server::command(gatehouse, db);
    cmd.env("GATEHOUSE_PAY_DATABASE_URL", &pay_db.url);
    cmd.args(&args);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    if !out.status.success() {
        bail!(
            "gatehouse {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The payments service, running, and what the workers need.
pub struct PayFixture {
    pub addr: SocketAddr,
    audience: String,
    /// `Bearer <merchant token>`.
    merchant_auth: HeaderValue,
    /// One narrowed user token per connection.
    user_tokens: Vec<String>,
    notifications: Shared<Notifications>,
    /// Contract hash → when its payment's 303 was read.
    paid: Shared<HashMap<String, Instant>>,
    /// Makes order ids unique across iterations.
    next_order: AtomicU64,
    run_id: String,
}

/// The payments service's process and database, to stop and drop.
pub struct PayProcess {
    pub server: Server,
    pub database: Database,
}

impl PayProcess {
    pub async fn stop(self) -> anyhow::Result<()> {
        let stopped = self.server.stop();
        let destroyed = self.database.destroy().await;
        stopped.and(destroyed)
    }
}

/// The JSON of the token endpoint's answer, or why not.
fn token_json(reply: &Reply, what: &str) -> anyhow::Result<serde_json::Value> {
    ensure!(
        reply.status == StatusCode::OK,
        "{what}: {} {}",
        reply.status,
        reply.text()
    );
    Ok(serde_json::from_slice(&reply.body)?)
}

/// Registers and starts the payments service, the shop and its merchant
/// record; funds the buyer; gets the tokens for `connections` workers;
/// and makes the buyer's first purchase setup (agreement and PIN).
#[allow(clippy::too_many_arguments)]
pub async fn prepare(
    gatehouse: &Path,
    db: &Database,
    backend: Backend,
    postgres_admin: &str,
    fixture: &Fixture,
    connections: usize,
    expected_seconds: f64,
) -> anyhow::Result<(PayFixture, PayProcess)> {
    let port = free_port()?;
    let audience = format!("http://127.0.0.1:{port}");

    let store = gatehouse_store::connect(&db.url).await.context("opening the store")?;
    let (mut pay_client, pay_secret) = setup::register(
        "Bench Payments",
        vec![format!("{audience}/login/callback")],
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        Some("openid email"),
    )?;
    pay_client.first_party = true;
    pay_client.resource_uris = vec![audience.clone()];
    let (mut shop, shop_secret) = setup::register(
        "Bench Shop",
        vec![SHOP_REDIRECT.to_owned()],
        vec![
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
            GrantType::TokenExchange,
        ],
        Some("openid email payments"),
    )?;
    shop.audiences = vec![audience.clone()];
    for client in [&pay_client, &shop] {
        let audit = AuditEvent::client_changed(AuditKind::ClientCreated, &client.id, BY_CLI, client.created_at);
        store
            .create_client(client, &audit)
            .await
            .context("registering a client")?;
    }
    let account = store
        .account_by_email(&gatehouse_core::Email::parse(setup::EMAIL).map_err(|e| anyhow::anyhow!("{e}"))?)
        .await?
        .context("the bench user")?;
    drop(store);
    let sub = account.id.to_string();

    let notifications: Shared<Notifications> = Arc::default();
    let notify_uri = receiver(notifications.clone()).await?;

    // The payments database (its own: a SQLite file, or a second
    // PostgreSQL database), the merchant and the money, with the real CLI.
    let database = Database::create(backend, postgres_admin).await?;
    let result = async {
        let shop_id = shop.id.to_string();
        pay_cli(
            gatehouse,
            db,
            &database,
            [
                "pay",
                "merchant",
                "add",
                "--client-id",
                &shop_id,
                "--name",
                "Bench Shop",
                "--origin",
                "http://127.0.0.1:9",
                "--notify-uri",
                &notify_uri,
            ]
            .map(str::to_owned)
            .to_vec(),
        )
        .await?;
        // Twice what the fastest plausible run would spend.
        let funds = (AMOUNT as f64 * MAX_RATE * expected_seconds * 2.0).ceil() as i64;
        pay_cli(
            gatehouse,
            db,
            &database,
            [
                "pay",
                "fund",
                "--user",
                &sub,
                "--amount",
                &funds.to_string(),
                "--currency",
                "EUR",
            ]
            .map(str::to_owned)
            .to_vec(),
        )
        .await?;

        let mut cmd = server::command(gatehouse, db);
        cmd.env("GATEHOUSE_PAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("GATEHOUSE_PAY_DATABASE_URL", &database.url)
            .env("GATEHOUSE_PAY_ISSUER", format!("http://{}", fixture.addr))
            .env("GATEHOUSE_PAY_CLIENT_ID", pay_client.id.as_str())
            .env("GATEHOUSE_PAY_CLIENT_SECRET", &pay_secret)
            .env_remove("GATEHOUSE_PAY_PUBLIC_URL")
            .args(["--json", "pay", "serve"]);
        let server = Server::launch(cmd, |first| {
            let url = url::Url::parse(first["pay"].as_str().context("no \"pay\" in the first line")?)?;
            let host = url.host_str().context("pay URL without host")?;
            let port = url.port().context("pay URL without port")?;
            Ok(format!("{host}:{port}").parse()?)
        })
        .await?;
        let addr = server.addr;

        // The merchant's own token for the payments API.
        let mut idp = Conn::open(fixture.addr).await?;
        let shop_auth = http::basic(shop.id.as_str(), &shop_secret)?;
        let reply = idp
            .post_form(
                "/token",
                Some(&shop_auth),
                None,
                http::form(&[("grant_type", "client_credentials"), ("resource", &audience)]),
            )
            .await?;
        let json = token_json(&reply, "merchant client credentials")?;
        let merchant_token = json["access_token"].as_str().context("no access_token")?;
        let merchant_auth = HeaderValue::from_str(&format!("Bearer {merchant_token}"))?;

        // One narrowed user token per connection, from that connection's
        // IdP session: code flow at the shop, then token exchange.
        let mut user_tokens = Vec::with_capacity(connections);
        for i in 0..connections {
            let cookie = fixture
                .sessions
                .get(i % fixture.sessions.len().max(1))
                .context("no signed-in session")?;
            let verifier = format!("bench-shop-verifier-{i:04}-{}", uuid::Uuid::new_v4().simple());
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", shop.id.as_str())
                .append_pair("redirect_uri", SHOP_REDIRECT)
                .append_pair("scope", "openid email payments")
                .append_pair("state", &format!("state-{i}"))
                .append_pair("nonce", &format!("nonce-{i}"))
                .append_pair("code_challenge", &gatehouse_core::oauth::pkce::s256(&verifier))
                .append_pair("code_challenge_method", "S256");
            let reply = idp.get(&format!("/authorize?{}", query.finish()), Some(cookie)).await?;
            let code = reply
                .location()
                .and_then(|l| l.split_once('?'))
                .and_then(|(_, q)| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "code")
                        .map(|(_, v)| v.into_owned())
                })
                .with_context(|| {
                    format!(
                        "shop authorize: {} to {:?} {}",
                        reply.status,
                        reply.location(),
                        reply.text()
                    )
                })?;
            let reply = idp
                .post_form(
                    "/token",
                    Some(&shop_auth),
                    None,
                    http::form(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", SHOP_REDIRECT),
                        ("code_verifier", &verifier),
                    ]),
                )
                .await?;
            let json = token_json(&reply, "shop code")?;
            let broad = json["access_token"].as_str().context("no access_token")?;
            let reply = idp
                .post_form(
                    "/token",
                    Some(&shop_auth),
                    None,
                    http::form(&[
                        ("grant_type", TOKEN_EXCHANGE),
                        ("subject_token", broad),
                        ("subject_token_type", ACCESS_TOKEN_TYPE),
                        ("scope", "payments"),
                        ("audience", &audience),
                    ]),
                )
                .await?;
            let json = token_json(&reply, "token exchange")?;
            user_tokens.push(json["access_token"].as_str().context("no access_token")?.to_owned());
        }

        Ok::<_, anyhow::Error>((server, addr, merchant_auth, user_tokens))
    }
    .await;
    let (server, addr, merchant_auth, user_tokens) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = database.destroy().await;
            return Err(e);
        }
    };
    let process = PayProcess { server, database };
    let pay = PayFixture {
        addr,
        audience,
        merchant_auth,
        user_tokens,
        notifications,
        paid: Arc::default(),
        next_order: AtomicU64::new(0),
        run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
    };
    if let Err(e) = first_purchase_setup(&pay).await {
        let _ = process.stop().await;
        return Err(e);
    }
    Ok((pay, process))
}

/// The buyer's first purchase page: agree to the terms and set the PIN.
async fn first_purchase_setup(pay: &PayFixture) -> anyhow::Result<()> {
    let mut conn = Conn::open(pay.addr).await?;
    let token = pay.user_tokens.first().context("no user token")?;
    let (hash, link) = create_contract(&mut conn, pay, token)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cookie = open_link(&mut conn, &hash, &link)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let page = conn.get(&format!("/contracts/{hash}"), Some(&cookie)).await?;
    ensure!(
        page.status == StatusCode::OK && contains(&page.body, b"/setup"),
        "first purchase page: {} {}",
        page.status,
        page.text()
    );
    let csrf = csrf_of(&page).context("no CSRF field on the setup page")?;
    let reply = conn
        .post_form(
            &format!("/contracts/{hash}/setup"),
            None,
            Some(&cookie),
            http::form(&[("csrf", &csrf), ("agree", "yes"), ("pin", PIN), ("pin_again", PIN)]),
        )
        .await?;
    ensure!(
        reply.status == StatusCode::SEE_OTHER,
        "POST setup: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    let page = conn.get(&format!("/contracts/{hash}"), Some(&cookie)).await?;
    ensure!(
        page.status == StatusCode::OK && csrf_of(&page).is_some() && contains(&page.body, b"name=\"pin\""),
        "purchase page after setup: {} {}",
        page.status,
        page.text()
    );
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The value of the page's hidden `csrf` field.
fn csrf_of(page: &Reply) -> Option<String> {
    let text = std::str::from_utf8(&page.body).ok()?;
    let (_, rest) = text.split_once("name=\"csrf\" value=\"")?;
    let (value, _) = rest.split_once('"')?;
    Some(value.to_owned())
}

fn answer(what: &str, reply: &Reply) -> Fail {
    Fail::Answer(format!(
        "{what}: {} {:?} {}",
        reply.status,
        reply.location(),
        reply.text()
    ))
}

/// `POST /api/contracts`: the contract hash and the purchase link's path.
async fn create_contract(conn: &mut Conn, pay: &PayFixture, user_token: &str) -> Result<(String, String), Fail> {
    let n = pay.next_order.fetch_add(1, Ordering::Relaxed);
    let order = format!("o-{}-{n}", pay.run_id);
    let body = serde_json::json!({
        "user_token": user_token,
        "terms": {
            "order_id": order,
            "product": "bench-item",
            "summary": "A benchmark purchase",
            "amount": AMOUNT,
            "currency": "EUR",
            "fulfillment_url": format!("http://127.0.0.1:9/fulfill?order={order}"),
            "offer_url": "http://127.0.0.1:9/offer/bench-item",
        }
    });
    let body = Bytes::from(serde_json::to_vec(&body).map_err(anyhow::Error::from)?);
    let reply = conn.post_json("/api/contracts", &pay.merchant_auth, body).await?;
    if reply.status != StatusCode::CREATED {
        return Err(answer("POST /api/contracts", &reply));
    }
    let json: serde_json::Value = serde_json::from_slice(&reply.body).map_err(anyhow::Error::from)?;
    let hash = json["contract_hash"].as_str();
    let link = json["purchase_url"]
        .as_str()
        .and_then(|u| url::Url::parse(u).ok())
        .filter(|u| u.as_str().starts_with(&pay.audience))
        .map(|u| u.path().to_owned());
    match (hash, link) {
        (Some(hash), Some(link)) => Ok((hash.to_owned(), link)),
        _ => Err(answer("POST /api/contracts (no hash or link)", &reply)),
    }
}

/// `GET` the purchase link: the pay session cookie, 303 to the pay URL.
async fn open_link(conn: &mut Conn, hash: &str, link: &str) -> Result<HeaderValue, Fail> {
    let reply = conn.get(link, None).await?;
    let to_pay_url = reply.location() == Some(format!("/contracts/{hash}").as_str());
    match reply.set_cookie("gatehouse_pay_session") {
        Some(c) if reply.status == StatusCode::SEE_OTHER && to_pay_url => {
            Ok(HeaderValue::from_str(&c).map_err(anyhow::Error::from)?)
        }
        _ => Err(answer("GET /purchase/{link}", &reply)),
    }
}

/// One connection's loop.
struct Worker {
    pay: Arc<PayFixture>,
    conn: Option<Conn>,
    user_token: String,
}

impl Worker {
    async fn conn(&mut self) -> Result<&mut Conn, Fail> {
        if self.conn.is_none() {
            self.conn = Some(Conn::open(self.pay.addr).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Fail::Transport(anyhow::anyhow!("no connection")))
    }

    /// One purchase; the time of each of its four requests.
    async fn iterate(&mut self) -> Result<[Duration; 4], Fail> {
        let pay = self.pay.clone();
        let token = self.user_token.clone();
        let t0 = Instant::now();
        let (hash, link) = create_contract(self.conn().await?, &pay, &token).await?;
        let t1 = Instant::now();
        let cookie = open_link(self.conn().await?, &hash, &link).await?;
        let t2 = Instant::now();
        let pay_url = format!("/contracts/{hash}");
        let page = self.conn().await?.get(&pay_url, Some(&cookie)).await?;
        let csrf = csrf_of(&page)
            .filter(|_| page.status == StatusCode::OK)
            .ok_or_else(|| answer("GET /contracts/{hash}", &page))?;
        let t3 = Instant::now();
        let reply = self
            .conn()
            .await?
            .post_form(
                &format!("{pay_url}/pay"),
                None,
                Some(&cookie),
                http::form(&[("csrf", &csrf), ("pin", PIN)]),
            )
            .await?;
        let t4 = Instant::now();
        let proved = reply
            .location()
            .is_some_and(|l| l.starts_with("http://127.0.0.1:9/fulfill?") && l.contains("payment="));
        if reply.status != StatusCode::SEE_OTHER || !proved {
            return Err(answer("POST /contracts/{hash}/pay", &reply));
        }
        lock(&pay.paid).insert(hash, t4);
        Ok([t1 - t0, t2 - t1, t3 - t2, t4 - t3])
    }
}

impl LoopWorker<4> for Worker {
    async fn iterate(&mut self) -> Result<[Option<Duration>; 4], Fail> {
        Ok(Worker::iterate(self).await?.map(Some))
    }

    fn disconnect(&mut self) {
        self.conn = None;
    }
}

/// The notifications, measured after the load.
#[derive(Debug, Serialize)]
pub struct NotifyStats {
    /// Purchases paid during the whole run (warm-up included).
    pub paid: usize,
    /// Of those, notifications received (`purchase.completed`, once each).
    pub notified: usize,
    /// POSTs at the receiver, redeliveries included.
    pub posts: u64,
    pub unreadable: u64,
    /// From the payment's 303 to the notification's arrival.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// How long after the end of the load the last one arrived (0 if all
    /// were in by then).
    pub drained_after_s: f64,
}

/// Runs the purchases on `connections` connections: `warmup`, then
/// `duration` timed; then waits (up to `deadline`) for every notification.
pub async fn run(
    pay: Arc<PayFixture>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    deadline: Duration,
) -> anyhow::Result<(Outcome, NotifyStats)> {
    ensure!(
        warmup + duration <= MAX_RUN,
        "purchases: warm-up plus duration must be at most {} s (the narrowed tokens live 5 minutes)",
        MAX_RUN.as_secs()
    );
    // A second purchases run on the same service counts only its own.
    lock(&pay.paid).clear();
    let mut workers = Vec::with_capacity(connections);
    for i in 0..connections {
        let user_token = pay
            .user_tokens
            .get(i % pay.user_tokens.len().max(1))
            .cloned()
            .context("no user token")?;
        workers.push(Worker {
            pay: pay.clone(),
            conn: Some(Conn::open(pay.addr).await?),
            user_token,
        });
    }
    let start = Instant::now() + warmup;
    let outcome = drive(
        workers,
        Pace::Closed,
        start,
        duration,
        [
            "POST /api/contracts",
            "GET /purchase/{link}",
            "GET /contracts/{hash}",
            "POST /contracts/{hash}/pay",
        ],
    )
    .await?;

    // Every paid purchase must be notified.
    let load_ended = Instant::now();
    let paid: HashMap<String, Instant> = lock(&pay.paid).clone();
    let limit = load_ended + deadline;
    loop {
        let arrived = {
            let n = lock(&pay.notifications);
            paid.keys().filter(|h| n.arrived.contains_key(*h)).count()
        };
        if arrived == paid.len() || Instant::now() >= limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let n = lock(&pay.notifications);
    let mut latency = histogram()?;
    let mut last = None::<Instant>;
    let mut notified = 0;
    for (hash, paid_at) in &paid {
        if let Some(&at) = n.arrived.get(hash) {
            notified += 1;
            latency.record(micros(at.saturating_duration_since(*paid_at)))?;
            last = Some(last.map_or(at, |l| l.max(at)));
        }
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let stats = NotifyStats {
        paid: paid.len(),
        notified,
        posts: n.posts,
        unreadable: n.unreadable,
        latency_p50_ms: ms(latency.value_at_quantile(0.50)),
        latency_p99_ms: ms(latency.value_at_quantile(0.99)),
        latency_max_ms: ms(latency.max()),
        drained_after_s: last.map_or(0.0, |l| l.saturating_duration_since(load_ended).as_secs_f64()),
    };
    drop(n);
    Ok((outcome, stats))
}
