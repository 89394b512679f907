//! Operations endpoints, the same on both services: `/health/live` (the
//! process answers), `/health/ready` (its database answers, else 503) and
//! `/metrics` (Prometheus text from a registry the service owns), and the
//! middleware that counts requests by route template and status.

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;

/// What the operations endpoints ask of a service's state.
#[async_trait]
pub trait Ops: Clone + Send + Sync + 'static {
    /// Whether the service can serve: its database answers. The error is
    /// logged, never sent.
    async fn ready(&self) -> Result<(), String>;
    /// The Prometheus text exposition of the service's registry.
    async fn metrics(&self) -> String;
}

/// `/health/live`, `/health/ready` and `/metrics` for a service's state.
pub fn routes<S: Ops>() -> Router<S> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready::<S>))
        .route("/metrics", get(metrics::<S>))
}

async fn live() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn ready<S: Ops>(State(state): State<S>) -> impl IntoResponse {
    match state.ready().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "store": "unreachable" })),
            )
        }
    }
}

async fn metrics<S: Ops>(State(state): State<S>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().await,
    )
}

/// The text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// One label, `outcome` (or the reason of a refusal).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// Requests by route template, method and status (`http_requests`).
pub type Requests = Family<RequestLabels, Counter>;

/// A counter family by outcome, as `count(&family, "outcome")`.
pub fn count(family: &Family<OutcomeLabels, Counter>, outcome: &str) {
    family
        .get_or_create(&OutcomeLabels {
            outcome: outcome.to_owned(),
        })
        .inc();
}

/// Registers the request counter in `registry`.
pub fn register_requests(registry: &mut Registry) -> Requests {
    let requests = Requests::default();
    registry.register(
        "http_requests",
        "HTTP requests by route, method and status",
        requests.clone(),
    );
    requests
}

/// Middleware (`from_fn_with_state(requests, track)`): counts every
/// request by its route template (not its raw path, so a scanner cannot
/// blow up the label set).
pub async fn track(State(requests): State<Requests>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
