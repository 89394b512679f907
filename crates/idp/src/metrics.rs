//! Prometheus metrics, kept in the `AppState` (no global registry): requests
//! by route and status, and the account events operators watch.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// Logins by outcome: `success`, or the failure reason.
    pub logins: Family<OutcomeLabels, Counter>,
    pub signups: Counter,
    /// Outbox deliveries by outcome: `delivered`, `failed` (will retry) or
    /// `dead` (given up).
    pub outbox_deliveries: Family<OutcomeLabels, Counter>,
    /// Outbox messages due or waiting for a retry, as last seen by the worker.
    pub outbox_queue: Gauge,
    /// Seconds since the oldest waiting outbox message was written.
    pub outbox_oldest_age: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        let logins = Family::<OutcomeLabels, Counter>::default();
        let signups = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register("logins", "Login attempts by outcome", logins.clone());
        registry.register("signups", "Accounts created", signups.clone());
        let outbox_deliveries = Family::<OutcomeLabels, Counter>::default();
        let outbox_queue = Gauge::default();
        registry.register(
            "outbox_deliveries",
            "Outbox delivery attempts by outcome",
            outbox_deliveries.clone(),
        );
        registry.register(
            "outbox_queue",
            "Outbox messages not yet delivered nor dead",
            outbox_queue.clone(),
        );
        let outbox_oldest_age = Gauge::default();
        registry.register(
            "outbox_oldest_waiting_age_seconds",
            "Age of the oldest outbox message not yet delivered nor dead",
            outbox_oldest_age.clone(),
        );
        Self {
            registry,
            requests,
            logins,
            signups,
            outbox_deliveries,
            outbox_queue,
            outbox_oldest_age,
        }
    }

    pub fn login(&self, outcome: &str) {
        self.logins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn outbox_delivery(&self, outcome: &str) {
        self.outbox_deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// Middleware: counts every request by its route template (not its raw path,
/// so a scanner cannot blow up the label set).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
