//! Slow and idle clients (issue 13, item 3): thousands of connections that
//! send half a request head, half a body, or nothing after their first
//! request, held against the IdP's port while `/health/live` and a real
//! token request go on answering; then the server closes each of them once
//! its timeout has passed. Connections past the cap are refused at once.
//! The payments service runs the same loop.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use gatehouse_pay::{PayConfig, PayService};
use gatehouse_serve::Limits;

use crate::both_backends;
use crate::support::{Backend, ClientSpec, TestApp, TestDb, eventually, spawn_app_with};

both_backends!(
    thousands_of_slow_clients_do_not_stop_real_requests,
    connections_over_the_cap_are_refused_at_once,
    a_head_or_body_trickled_byte_by_byte_is_cut_off_in_time,
    the_payments_service_cuts_off_slow_clients_too,
);

/// How each slow connection misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slow {
    /// Half a request head, then nothing.
    Head,
    /// A whole head announcing 100 bytes of body, 10 of them, then nothing.
    Body,
    /// One request answered, then nothing (HTTP/1.1 keeps it alive).
    Idle,
}

fn limits(header: u64, body: u64, idle: u64, max: Option<usize>) -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(header),
        body_timeout: Duration::from_secs(body),
        keep_alive_timeout: Duration::from_secs(idle),
        max_connections: max,
    }
}

/// Opens one slow connection of `kind` to `addr`, `post` the path a body
/// goes to.
async fn open(addr: SocketAddr, kind: Slow, post: &'static str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    match kind {
        Slow::Head => s
            .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\nuser-agent: slow")
            .await
            .expect("write"),
        Slow::Body => s
            .write_all(
                format!(
                    "POST {post} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n\
                     content-length: 100\r\n\r\ngrant_type"
                )
                .as_bytes(),
            )
            .await
            .expect("write"),
        Slow::Idle => {
            s.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .expect("write");
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            // The body, `ok` (the IdP's is JSON: `"ok"`), follows the head.
            let answered = |seen: &[u8]| {
                let text = String::from_utf8_lossy(seen);
                text.split_once("\r\n\r\n").is_some_and(|(_, body)| body.contains("ok"))
            };
            while !answered(&seen) {
                let n = s.read(&mut buf).await.expect("read the first answer");
                assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
        }
    }
    s
}

/// A slow connection, and when it was opened (its first answer read, for
/// an idle one).
type Held = (Slow, Instant, TcpStream);

/// Opens `per_kind` connections of each kind, a few hundred at a time.
async fn open_many(addr: SocketAddr, per_kind: usize, post: &'static str) -> Vec<Held> {
    let mut all = Vec::with_capacity(per_kind * 3);
    for kind in [Slow::Head, Slow::Body, Slow::Idle] {
        let mut left = per_kind;
        while left > 0 {
            let batch = left.min(200);
            let mut set = JoinSet::new();
            for _ in 0..batch {
                set.spawn(async move {
                    let s = open(addr, kind, post).await;
                    (kind, Instant::now(), s)
                });
            }
            all.extend(set.join_all().await);
            left -= batch;
        }
    }
    all
}

/// Waits (at most `within`) for the server to close `s`; returns what it
/// sent meanwhile and when it closed. A reset counts as closed.
async fn closed_by_server(mut s: TcpStream, within: Duration) -> (String, Instant) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(within, read_all).await.is_err() {
        panic!("the server left the connection open for {within:?}");
    }
    (String::from_utf8_lossy(&seen).into_owned(), Instant::now())
}

/// Whether the server has neither closed `s` nor sent anything on it.
fn still_open(s: &TcpStream) -> bool {
    matches!(s.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Clocks differ a little between the client's and the server's view of
/// when a connection started waiting.
const SLACK: Duration = Duration::from_millis(500);

/// Every connection of `held` is closed by the server once its timeout
/// has passed (not before), all within `within`: a head or a body that
/// does not come in `limits`' time, an idle connection in its keep-alive
/// time (shorter than the header read timeout here, so it is the
/// keep-alive timer that closes it).
async fn all_closed(held: Vec<Held>, limits: Limits, within: Duration) {
    assert!(limits.keep_alive_timeout + 2 * SLACK < limits.header_read_timeout);
    let mut set = JoinSet::new();
    for (kind, opened, s) in held {
        set.spawn(async move { (kind, opened, closed_by_server(s, within).await) });
    }
    while let Some(joined) = set.join_next().await {
        let (kind, opened, (sent, closed)) = joined.expect("join");
        let after = closed.duration_since(opened);
        let timeout = match kind {
            Slow::Head => limits.header_read_timeout,
            Slow::Body => limits.body_timeout,
            Slow::Idle => limits.keep_alive_timeout,
        };
        assert!(
            after + SLACK >= timeout,
            "{kind:?} closed after {after:?}, before its timeout"
        );
        if kind == Slow::Idle {
            assert!(
                after < limits.header_read_timeout - SLACK,
                "idle closed after {after:?}"
            );
        }
        if kind == Slow::Body {
            // The body never came: a 4xx answer (or none), never a 2xx.
            assert!(!sent.starts_with("HTTP/1.1 2"), "{kind:?}: {sent}");
        }
    }
}

async fn health_answers_within_a_second(base: &str) {
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{base}/health/live"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .expect("/health/live answers within a second");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(1));
}

async fn thousands_of_slow_clients_do_not_stop_real_requests(backend: Backend) {
    gatehouse_serve::raise_open_files_limit();
    // Long enough for 2,400 connections to open on a busy machine.
    let limits = limits(15, 15, 10, None);
    let app = spawn_app_with(backend, |c| c.limits = limits).await;
    let (client, secret) = app
        .register_client(ClientSpec {
            name: "Reporting",
            grants: &["client_credentials"],
            scopes: Some("reports:read"),
            ..Default::default()
        })
        .await;
    let addr = app.base.trim_start_matches("http://").parse().expect("addr");

    let held = open_many(addr, 800, "/token").await;
    assert_eq!(held.len(), 2400);

    // While they are all held: health answers at once, a real request works.
    health_answers_within_a_second(&app.base).await;
    let (status, body) = app
        .client_credentials(client.id.as_str(), &secret.expect("secret"), "reports:read")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].is_string());
    let open = held.iter().filter(|(_, _, s)| still_open(s)).count();
    assert_eq!(open, held.len(), "some slow connections were gone before the checks");

    // Then the server closes every one of them after its timeout.
    all_closed(held, limits, Duration::from_secs(30)).await;
    health_answers_within_a_second(&app.base).await;
    app.finish().await;
}

async fn connections_over_the_cap_are_refused_at_once(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.limits = limits(30, 30, 2, Some(20))).await;
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().expect("addr");
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(open(addr, Slow::Idle, "/token").await);
    }

    // The 21st is answered 503 and closed at once, not left waiting.
    let extra = TcpStream::connect(addr).await.expect("connect");
    let asked = Instant::now();
    let (sent, closed) = closed_by_server(extra, Duration::from_secs(1)).await;
    assert!(sent.is_empty() || sent.starts_with("HTTP/1.1 503"), "{sent}");
    assert!(closed.duration_since(asked) < Duration::from_secs(1));

    // Once the idle ones time out, there is room again.
    eventually("room for a new connection", || async {
        let r = reqwest::Client::new()
            .get(format!("{}/health/live", app.base))
            .send()
            .await;
        r.is_ok_and(|r| r.status() == StatusCode::OK).then_some(())
    })
    .await;
    for s in held {
        closed_by_server(s, Duration::from_secs(5)).await;
    }
    app.finish().await;
}

/// A client that keeps sending a byte every 200 ms never stalls, yet its
/// head, or its body, must still arrive whole in time: the deadlines are
/// totals, not pauses.
async fn a_head_or_body_trickled_byte_by_byte_is_cut_off_in_time(backend: Backend) {
    let limits = limits(2, 2, 1, None);
    let app = spawn_app_with(backend, |c| c.limits = limits).await;
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().expect("addr");
    let head = "GET /health/live HTTP/1.1\r\nhost: x\r\nuser-agent: ".to_owned() + &"s".repeat(100);
    let body_head = "POST /token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n\
                     content-length: 100\r\n\r\n";
    for (first, trickled) in [
        ("", head.as_str()),
        (body_head, "grant_type=client_credentials&scope=x"),
    ] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        s.write_all(first.as_bytes()).await.expect("write");
        let mut cut_after = None;
        for byte in trickled.bytes() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(&[byte]).await.is_err() {
                cut_after = Some(started.elapsed());
                break;
            }
            let mut buf = [0u8; 1024];
            match s.try_read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => {
                    cut_after = Some(started.elapsed());
                    break;
                }
            }
        }
        let after = cut_after.unwrap_or_else(|| panic!("a trickle of {} bytes was never cut off", trickled.len()));
        assert!(
            after >= Duration::from_secs(2) - SLACK && after < Duration::from_secs(5),
            "cut off after {after:?}"
        );
    }
    health_answers_within_a_second(&app.base).await;
    app.finish().await;
}

/// The payments service, started beside the IdP with short limits.
async fn start_pay(app: &TestApp, backend: Backend, dir: &std::path::Path, limits: Limits) -> (PayService, TestDb) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (client, secret) = app
        .register_client(ClientSpec {
            name: "Payments",
            first_party: true,
            redirect_uris: &[&format!("{base}/login/callback")],
            grants: &["authorization_code"],
            scopes: Some("openid email"),
            ..Default::default()
        })
        .await;
    let db = TestDb::create(backend, dir).await;
    let pay = PayService::start(
        PayConfig {
            public_url: base.parse().expect("url"),
            database_url: db.url.clone(),
            issuer: app.base.clone(),
            client_id: client.id.to_string(),
            client_secret: secret.expect("secret"),
            data_dir: dir.to_owned(),
            secret_key: None,
            limits,
            standing_max_age: gatehouse_pay::DEFAULT_STANDING_MAX_AGE,
        },
        listener,
    )
    .await
    .expect("the payments service starts");
    (pay, db)
}

async fn the_payments_service_cuts_off_slow_clients_too(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let dir = tempfile::tempdir().expect("dir");
    let limits = limits(5, 5, 3, None);
    let (pay, db) = start_pay(&app, backend, dir.path(), limits).await;
    let base = pay.url().as_str().trim_end_matches('/').to_owned();
    let addr: SocketAddr = base.trim_start_matches("http://").parse().expect("addr");

    let held = open_many(addr, 100, "/api/contracts").await;
    health_answers_within_a_second(&base).await;
    assert!(held.iter().all(|(_, _, s)| still_open(s)));
    all_closed(held, limits, Duration::from_secs(15)).await;
    health_answers_within_a_second(&base).await;

    pay.shutdown().await;
    db.drop_db().await;
    app.finish().await;
}
