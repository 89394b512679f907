//! The HTTP/1.1 server loop that the IdP and the payments service both run
//! (instead of `axum::serve`, which sets no timeout and takes every
//! connection): slow or idle clients are cut off, and connections past a cap
//! are refused at once, so that thousands of them cannot starve real
//! requests or exhaust the process's file descriptors.
//!
//! - the request head must arrive within [`Limits::header_read_timeout`] of
//!   the moment the server starts waiting for it (the connection opened, or
//!   the previous response went out): hyper's own header read timeout;
//! - a request body must arrive whole within [`Limits::body_timeout`] of its
//!   head ([`DeadlineBody`]; tower-http's `TimeoutBody` restarts its clock at
//!   every frame, so a client trickling a byte at a time would never meet
//!   it);
//! - a connection with no request in flight on which nothing arrives for
//!   [`Limits::keep_alive_timeout`] is closed (a timer per connection; see
//!   [`Activity`]);
//! - at most [`Limits::max_connections`] connections are served at once;
//!   one more is answered `503` and closed at once, never left waiting;
//! - [`raise_open_files_limit`] lifts the process's soft `RLIMIT_NOFILE` to
//!   its hard limit, and the default cap stays below it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// How long a client may take, and how many may be served at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From the moment the server waits for a request (a new connection, or
    /// the previous response sent) until its head has arrived whole.
    pub header_read_timeout: Duration,
    /// From the request's head until its body has arrived whole.
    pub body_timeout: Duration,
    /// A connection with no request in flight on which nothing arrives for
    /// this long is closed. (The header read timeout also runs while a
    /// connection waits for its next request: the shorter one wins.)
    pub keep_alive_timeout: Duration,
    /// Connections served at once; `None`: [`default_max_connections`].
    pub max_connections: Option<usize>,
}

/// The defaults: 10 s for the head, 30 s for the body, 5 s idle.
pub const DEFAULT_LIMITS: Limits = Limits {
    header_read_timeout: Duration::from_secs(10),
    body_timeout: Duration::from_secs(30),
    keep_alive_timeout: Duration::from_secs(5),
    max_connections: None,
};

impl Default for Limits {
    fn default() -> Self {
        DEFAULT_LIMITS
    }
}

/// Descriptors kept out of the connection cap's reach: database
/// connections, SQLite files, outgoing HTTP, logs.
const RESERVED_FILES: u64 = 256;

/// The process's open-files soft limit (`RLIMIT_NOFILE`), if it can be read.
pub fn open_files_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
}

/// Raises the open-files soft limit to the hard limit; returns the soft
/// limit in force afterwards. Called once at start by the binary.
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            open_files_limit()
        }
    }
}

/// The default connection cap: half of what the open-files limit leaves
/// after a reserve, so that the IdP and the payments service beside it in
/// one process stay below the limit together (each connection is one
/// descriptor). 1,024 if the limit cannot be read.
pub fn default_max_connections() -> usize {
    match open_files_limit() {
        Some(limit) => usize::try_from(limit.saturating_sub(RESERVED_FILES) / 2)
            .unwrap_or(usize::MAX)
            .max(16),
        None => 1024,
    }
}

/// What a refused connection reads before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain\r\n\
      retry-after: 1\r\ncontent-length: 21\r\n\r\ntoo many connections\n";

/// Serves `router` on `listener` within `limits` until `shutdown` resolves;
/// then stops accepting, lets requests in flight finish (idle connections
/// close at once) and returns once every connection has ended. Handlers
/// can read the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let cap = limits.max_connections.unwrap_or_else(default_max_connections).max(1);
    let permits = Arc::new(Semaphore::new(cap));
    // `stop` tells the connections to finish; every connection holds a
    // clone of `open`, and `all_closed` resolves when the last one drops.
    let (stop, stopping) = watch::channel(false);
    let (all_closed, open) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut refused = Refusals::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Non-blocking: a client that does not read gets nothing more.
            let _ = stream.try_write(REFUSED);
            refused.count(cap);
            continue;
        };
        let connection = Connection {
            router: router.clone(),
            limits,
            peer,
            stopping: stopping.clone(),
            open: open.clone(),
        };
        tokio::spawn(async move {
            connection.run(stream).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    all_closed.closed().await;
    Ok(())
}

/// Logs refused connections, at most once every ten seconds.
#[derive(Default)]
struct Refusals {
    since_log: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    fn count(&mut self, cap: usize) {
        self.since_log += 1;
        let now = Instant::now();
        if self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10))
        {
            tracing::warn!(
                max_connections = cap,
                refused = self.since_log,
                "connection cap reached: refusing connections"
            );
            self.since_log = 0;
            self.logged_at = Some(now);
        }
    }
}

/// An accept that failed: a connection reset before we took it is nothing;
/// anything else (out of descriptors) is logged and the loop pauses a
/// moment, as connections close meanwhile.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// One accepted connection and what it needs.
struct Connection {
    router: Router,
    limits: Limits,
    peer: SocketAddr,
    stopping: watch::Receiver<bool>,
    /// Held until the connection ends (see [`serve`]).
    open: watch::Receiver<()>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            stream,
            activity: activity.clone(),
        });
        let (router, peer, body_timeout) = (self.router.clone(), self.peer, self.limits.body_timeout);
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = requests.busy();
            let deadline = Instant::now() + body_timeout;
            let mut request: Request = request.map(|body| axum::body::Body::new(DeadlineBody::new(body, deadline)));
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(busy);
                response
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        let mut connection = pin!(builder.serve_connection(io, service));
        let keep_alive = self.limits.keep_alive_timeout;
        let mut closing = false;
        loop {
            let idle_until = activity.idle_deadline(keep_alive);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, peer = %self.peer, "connection ended");
                    }
                    break;
                }
                _ = self.stopping.wait_for(|stop| *stop), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = tokio::time::sleep_until(idle_until), if !closing => {
                    if activity.idle_for(keep_alive) {
                        // Closes an idle connection at once; one in the
                        // middle of a head is left to the header timeout.
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
        drop(self.open);
    }
}

/// What happens on a connection, for the keep-alive timer: the requests in
/// flight, and when a byte last arrived or a response was last produced
/// (milliseconds since the connection opened).
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// When the connection will have been idle for `keep_alive`, if nothing
    /// happens meanwhile.
    fn idle_deadline(&self, keep_alive: Duration) -> Instant {
        self.last() + keep_alive
    }

    fn idle_for(&self, keep_alive: Duration) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && self.last().elapsed() >= keep_alive
    }
}

/// A request in flight; its end counts as activity.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, noting every read that brought bytes.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that has not arrived whole by its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

pin_project_lite::pin_project! {
    /// A body that fails with [`BodyTimedOut`] once `deadline` has passed
    /// while it is still waited for. The timer is only set if the body is
    /// ever waited for (a bodiless request costs none).
    pub struct DeadlineBody<B> {
        deadline: Instant,
        #[pin]
        sleep: Option<Sleep>,
        #[pin]
        body: B,
    }
}

impl<B> DeadlineBody<B> {
    pub fn new(body: B, deadline: Instant) -> Self {
        DeadlineBody {
            deadline,
            sleep: None,
            body,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(*this.deadline)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
