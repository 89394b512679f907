//! Prometheus metrics, kept in the `AppState` (no global registry): requests
//! by route and status, and the account events operators watch.

use gatehouse_kit::ops::{OutcomeLabels, Requests, count};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    /// Requests by route and status (the kit's `track` middleware).
    pub requests: Requests,
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
        let requests = gatehouse_kit::ops::register_requests(&mut registry);
        let logins = Family::<OutcomeLabels, Counter>::default();
        let signups = Counter::default();
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
        count(&self.logins, outcome);
    }

    pub fn outbox_delivery(&self, outcome: &str) {
        count(&self.outbox_deliveries, outcome);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        gatehouse_kit::ops::encode(&self.registry)
    }
}
