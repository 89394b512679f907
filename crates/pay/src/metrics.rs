//! The payments service's Prometheus metrics, kept in its state (no global
//! registry), served by the kit's `/metrics` ([`gatehouse_kit::ops`]):
//! requests by route and status, purchases and the amounts paid by
//! currency, refusals to pay by reason, and the merchant notifications by
//! delivery state (read from the store at each scrape, so every instance
//! on one database reports the same queue).

use gatehouse_kit::ops::Requests;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::PayStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CurrencyLabels {
    currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Why a payment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    WrongPin,
    TooManyPins,
    InsufficientFunds,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::WrongPin => "wrong_pin",
            Refusal::TooManyPins => "too_many_pins",
            Refusal::InsufficientFunds => "insufficient_funds",
        }
    }
}

pub struct PayMetrics {
    registry: Registry,
    /// Requests by route and status (the kit's `track` middleware).
    pub requests: Requests,
    purchases: Family<CurrencyLabels, Counter>,
    paid: Family<CurrencyLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    notifications: Family<StateLabels, Gauge>,
}

impl Default for PayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PayMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse_pay");
        let requests = gatehouse_kit::ops::register_requests(&mut registry);
        let purchases = Family::<CurrencyLabels, Counter>::default();
        registry.register("purchases", "Purchases paid, by currency", purchases.clone());
        let paid = Family::<CurrencyLabels, Counter>::default();
        registry.register(
            "paid_minor_units",
            "Amounts paid, in minor units (cents), by currency",
            paid.clone(),
        );
        let refusals = Family::<ReasonLabels, Counter>::default();
        registry.register("refusals", "Payments refused, by reason", refusals.clone());
        let notifications = Family::<StateLabels, Gauge>::default();
        registry.register(
            "notifications",
            "Merchant notifications by delivery state (pending, failed, delivered, dead)",
            notifications.clone(),
        );
        Self {
            registry,
            requests,
            purchases,
            paid,
            refusals,
            notifications,
        }
    }

    /// A new purchase of `amount` minor units of `currency` was paid.
    pub fn purchase(&self, currency: &str, amount: i64) {
        let labels = CurrencyLabels {
            currency: currency.to_owned(),
        };
        self.purchases.get_or_create(&labels).inc();
        self.paid
            .get_or_create(&labels)
            .inc_by(u64::try_from(amount).unwrap_or(0));
    }

    pub fn refusal(&self, refusal: Refusal) {
        self.refusals
            .get_or_create(&ReasonLabels {
                reason: refusal.as_str(),
            })
            .inc();
    }

    /// The text exposition, with the notification queue read from `store`
    /// now (left as last seen, and logged, if the store does not answer).
    pub async fn encode(&self, store: &dyn PayStore) -> String {
        match store.outbox_summary().await {
            Ok(s) => {
                for (state, n) in [
                    ("pending", s.pending),
                    ("failed", s.failed),
                    ("delivered", s.delivered),
                    ("dead", s.dead),
                ] {
                    self.notifications.get_or_create(&StateLabels { state }).set(n);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the notification queue"),
        }
        gatehouse_kit::ops::encode(&self.registry)
    }
}

#[async_trait::async_trait]
impl gatehouse_kit::ops::Ops for crate::web::PayState {
    async fn ready(&self) -> Result<(), String> {
        self.store.ping().await.map_err(|e| e.to_string())
    }

    async fn metrics(&self) -> String {
        self.metrics.encode(self.store.as_ref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purchases_and_refusals_are_counted() {
        let m = PayMetrics::new();
        m.purchase("EUR", 499);
        m.purchase("EUR", 100);
        m.refusal(Refusal::WrongPin);
        let text = gatehouse_kit::ops::encode(&m.registry);
        assert!(
            text.contains("gatehouse_pay_purchases_total{currency=\"EUR\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gatehouse_pay_paid_minor_units_total{currency=\"EUR\"} 599"),
            "{text}"
        );
        assert!(
            text.contains("gatehouse_pay_refusals_total{reason=\"wrong_pin\"} 1"),
            "{text}"
        );
    }
}
