//! The load: N keep-alive connections, for a warm-up and then a timed
//! window. By default each connection is a closed loop (send, read the whole
//! answer, check it, send the next): it measures how many iterations the
//! server can do. With a [`Pace::Open`] rate, iterations are due at fixed
//! times spread over the connections, whether or not the server kept up:
//! it measures the latency a given rate of arrivals sees. Every iteration
//! that is due (closed loop: starts) and ends inside the window has its
//! latency recorded in an HDR histogram (microseconds), counted from when it
//! was due, so time spent waiting behind a slow answer is counted too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use hyper::StatusCode;

use crate::http::{self, Conn};
use crate::setup::{Fixture, RELIER_REDIRECT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `POST /token`, grant_type=client_credentials, client_secret_basic.
    ClientCredentials,
    /// `POST /introspect` of an active access token, by a resource server.
    Introspection,
    /// The single sign-on hop at a second relier: `GET /authorize` with the
    /// session cookie (303 with a code), then `POST /token` for the code
    /// (PKCE S256, client_secret_basic).
    Sso,
    /// A purchase end to end at the payments service (purchases.rs):
    /// `POST /api/contracts` (merchant), `GET /purchase/{link}`,
    /// `GET /contracts/{hash}`, `POST /contracts/{hash}/pay` with the PIN;
    /// the merchant notification counted at the bench's receiver.
    Purchases,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::ClientCredentials => "client-credentials",
            Scenario::Introspection => "introspection",
            Scenario::Sso => "sso",
            Scenario::Purchases => "purchases",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::ClientCredentials => "client credentials: POST /token",
            Scenario::Introspection => "introspection: POST /introspect",
            Scenario::Sso => "SSO hop: GET /authorize + POST /token",
            Scenario::Purchases => "purchases: contract, purchase link, page, pay with PIN; notification",
        }
    }
}

/// What one scenario run measured.
pub struct Outcome {
    /// Latency of each iteration (one request; a whole hop for SSO).
    pub latency: Histogram<u64>,
    /// SSO: the two requests of the hop separately.
    pub steps: Vec<(&'static str, Histogram<u64>)>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.latency.len() as f64 / self.window.as_secs_f64()
    }
}

pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 60 s, three significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000)
}

/// Why an iteration failed: the connection broke (open a new one), or the
/// answer was not the expected one (the connection is fine).
pub enum Fail {
    Transport(anyhow::Error),
    Answer(String),
}

impl From<anyhow::Error> for Fail {
    fn from(e: anyhow::Error) -> Self {
        Fail::Transport(e)
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Transport(e) => write!(f, "{e:#}"),
            Fail::Answer(m) => f.write_str(m),
        }
    }
}

/// One connection of the load: an iteration of `N` timed steps.
pub trait LoopWorker<const N: usize>: Send + 'static {
    /// One iteration; the time of each step (`None`: the step did not
    /// happen in this scenario).
    fn iterate(&mut self) -> impl std::future::Future<Output = Result<[Option<Duration>; N], Fail>> + Send;
    /// After a transport failure: the next iteration opens a new connection.
    fn disconnect(&mut self);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn expect(reply: &http::Reply, status: StatusCode, needle: &[u8], what: &str) -> Result<(), Fail> {
    if reply.status == status && contains(&reply.body, needle) {
        Ok(())
    } else {
        Err(Fail::Answer(format!("{what}: {} {}", reply.status, reply.text())))
    }
}

/// What one connection keeps between iterations.
struct Worker {
    fixture: Arc<Fixture>,
    conn: Option<Conn>,
    /// Introspection: the next token in the pool.
    next_token: usize,
    stride: usize,
    /// SSO: this connection's session, authorization URL and PKCE verifier.
    cookie: hyper::header::HeaderValue,
    authorize_uri: String,
    verifier: String,
}

impl Worker {
    fn new(fixture: Arc<Fixture>, index: usize, connections: usize, conn: Conn) -> anyhow::Result<Self> {
        let cookie = fixture
            .sessions
            .get(index % fixture.sessions.len().max(1))
            .cloned()
            .context("no signed-in session")?;
        // A fresh-looking verifier per connection (43 to 128 characters).
        let verifier = format!("bench-verifier-{index:04}-{}", uuid::Uuid::new_v4().simple());
        let challenge = gatehouse_core::oauth::pkce::s256(&verifier);
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &fixture.relier_id)
            .append_pair("redirect_uri", RELIER_REDIRECT)
            .append_pair("scope", "openid email")
            .append_pair("state", &format!("state-{index}"))
            .append_pair("nonce", &format!("nonce-{index}"))
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(Self {
            fixture,
            conn: Some(conn),
            next_token: index,
            stride: connections,
            cookie,
            authorize_uri: format!("/authorize?{}", query.finish()),
            verifier,
        })
    }

    async fn conn(&mut self) -> Result<&mut Conn, Fail> {
        if self.conn.is_none() {
            self.conn = Some(Conn::open(self.fixture.addr).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Fail::Transport(anyhow::anyhow!("no connection")))
    }

    /// One iteration; returns the time of each step.
    async fn iterate(&mut self, scenario: Scenario) -> Result<[Option<Duration>; 2], Fail> {
        let fx = self.fixture.clone();
        match scenario {
            Scenario::ClientCredentials => {
                let reply = self
                    .conn()
                    .await?
                    .post_form("/token", Some(&fx.service_auth), None, fx.service_body.clone())
                    .await?;
                expect(&reply, StatusCode::OK, b"\"access_token\"", "POST /token")?;
                Ok([None, None])
            }
            Scenario::Introspection => {
                let body = fx.introspect_bodies[self.next_token % fx.introspect_bodies.len()].clone();
                self.next_token = self.next_token.wrapping_add(self.stride);
                let reply = self
                    .conn()
                    .await?
                    .post_form("/introspect", Some(&fx.resource_auth), None, body)
                    .await?;
                expect(&reply, StatusCode::OK, b"\"active\":true", "POST /introspect")?;
                Ok([None, None])
            }
            Scenario::Sso => {
                let (uri, cookie) = (self.authorize_uri.clone(), self.cookie.clone());
                let t0 = Instant::now();
                let reply = self.conn().await?.get(&uri, Some(&cookie)).await?;
                let t1 = Instant::now();
                let code = reply
                    .location()
                    .filter(|_| reply.status == StatusCode::SEE_OTHER)
                    .and_then(|l| l.split_once('?'))
                    .and_then(|(_, q)| {
                        url::form_urlencoded::parse(q.as_bytes())
                            .find(|(k, _)| k == "code")
                            .map(|(_, v)| v.into_owned())
                    })
                    .ok_or_else(|| {
                        Fail::Answer(format!(
                            "GET /authorize: {} to {:?} {}",
                            reply.status,
                            reply.location(),
                            reply.text()
                        ))
                    })?;
                let body = http::form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", RELIER_REDIRECT),
                    ("code_verifier", &self.verifier),
                ]);
                let reply = self
                    .conn()
                    .await?
                    .post_form("/token", Some(&fx.relier_auth), None, body)
                    .await?;
                let t2 = Instant::now();
                expect(&reply, StatusCode::OK, b"\"id_token\"", "POST /token (code)")?;
                Ok([Some(t1 - t0), Some(t2 - t1)])
            }
            Scenario::Purchases => Err(Fail::Answer("purchases are driven by purchases.rs".to_owned())),
        }
    }
}

/// How a connection starts its iterations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// The next iteration as soon as the last one ended.
    Closed,
    /// `rate` iterations per second over all the connections: connection
    /// `i` of `n` is due at `i / rate`, then every `n / rate` seconds. A
    /// connection that is late starts at once, and its latency includes
    /// the lateness (no coordinated omission).
    Open { rate: f64 },
}

impl Pace {
    /// When connection `index` of `connections` is first due, and then how
    /// often; `None` for a closed loop.
    fn schedule(self, begin: Instant, index: usize, connections: usize) -> Option<(Instant, Duration)> {
        match self {
            Pace::Closed => None,
            Pace::Open { rate } => {
                let rate = rate.max(f64::MIN_POSITIVE);
                Some((
                    begin + Duration::from_secs_f64(index as f64 / rate),
                    Duration::from_secs_f64(connections as f64 / rate),
                ))
            }
        }
    }
}

/// What one connection measured.
struct WorkerResult<const N: usize> {
    latency: Histogram<u64>,
    steps: [Histogram<u64>; N],
    errors: u64,
    first_error: Option<String>,
}

/// One connection's loop: iterate until `end`, counting the iterations that
/// are due and end inside `start..end`. `schedule`: when the first iteration
/// is due and the period after it (open loop); `None`: a closed loop.
async fn work<const N: usize, W: LoopWorker<N>>(
    mut worker: W,
    start: Instant,
    end: Instant,
    schedule: Option<(Instant, Duration)>,
) -> anyhow::Result<WorkerResult<N>> {
    let mut steps = Vec::with_capacity(N);
    for _ in 0..N {
        steps.push(histogram()?);
    }
    let mut result = WorkerResult {
        latency: histogram()?,
        steps: steps.try_into().map_err(|_| anyhow::anyhow!("step histograms"))?,
        errors: 0,
        first_error: None,
    };
    let mut next_due = schedule.map(|(first, _)| first);
    loop {
        let t0 = match (next_due, schedule) {
            (Some(due), Some((_, period))) => {
                next_due = Some(due + period);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
            _ => Instant::now(),
        };
        if t0 >= end {
            break;
        }
        let outcome = worker.iterate().await;
        let t1 = Instant::now();
        let counted = t0 >= start && t1 <= end;
        match outcome {
            Ok(steps) => {
                if counted {
                    result.latency.record(micros(t1 - t0))?;
                    for (h, d) in result.steps.iter_mut().zip(steps) {
                        if let Some(d) = d {
                            h.record(micros(d))?;
                        }
                    }
                }
            }
            Err(fail) => {
                if matches!(fail, Fail::Transport(_)) {
                    worker.disconnect();
                }
                if t0 >= start {
                    result.errors += 1;
                }
                result.first_error.get_or_insert(fail.to_string());
                // Do not spin on a broken server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(result)
}

/// Runs `workers`, one loop each at `pace`: `start` is the end of the
/// warm-up, `window` the timed part. The steps are named by `step_names`.
pub async fn drive<const N: usize, W: LoopWorker<N>>(
    workers: Vec<W>,
    pace: Pace,
    start: Instant,
    window: Duration,
    step_names: [&'static str; N],
) -> anyhow::Result<Outcome> {
    let end = start + window;
    let (begin, connections) = (Instant::now(), workers.len());
    let tasks: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(i, w)| tokio::spawn(work(w, start, end, pace.schedule(begin, i, connections))))
        .collect();
    let mut outcome = Outcome {
        latency: histogram()?,
        steps: Vec::new(),
        errors: 0,
        first_error: None,
        window,
    };
    let mut steps = Vec::with_capacity(N);
    for name in step_names {
        steps.push((name, histogram()?));
    }
    for task in tasks {
        let r = task.await??;
        outcome.latency.add(&r.latency)?;
        for ((_, total), h) in steps.iter_mut().zip(&r.steps) {
            total.add(h)?;
        }
        outcome.errors += r.errors;
        if outcome.first_error.is_none() {
            outcome.first_error = r.first_error;
        }
    }
    outcome.steps = steps;
    Ok(outcome)
}

/// A [`Worker`] running one scenario.
struct ScenarioWorker {
    worker: Worker,
    scenario: Scenario,
}

impl LoopWorker<2> for ScenarioWorker {
    fn iterate(&mut self) -> impl std::future::Future<Output = Result<[Option<Duration>; 2], Fail>> + Send {
        self.worker.iterate(self.scenario)
    }

    fn disconnect(&mut self) {
        self.worker.conn = None;
    }
}

/// Runs `scenario` on `connections` connections at `pace`: `warmup`, then
/// `duration` timed.
pub async fn run(
    scenario: Scenario,
    fixture: Arc<Fixture>,
    connections: usize,
    pace: Pace,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let mut workers = Vec::with_capacity(connections);
    for i in 0..connections {
        let conn = Conn::open(fixture.addr).await?;
        workers.push(Worker::new(fixture.clone(), i, connections, conn)?);
    }
    let workers = workers
        .into_iter()
        .map(|worker| ScenarioWorker { worker, scenario })
        .collect();
    let start = Instant::now() + warmup;
    let mut outcome = drive(workers, pace, start, duration, ["GET /authorize", "POST /token (code)"]).await?;
    // Only the SSO hop has steps.
    if scenario != Scenario::Sso {
        outcome.steps.clear();
    }
    Ok(outcome)
}
