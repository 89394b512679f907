//! Delivering merchant notifications: the worker (the kit's loop,
//! [`gatehouse_kit::outbox`]) claims due rows of the pay database's outbox (written in the transaction of the payment or
//! refund), signs their claims (`payment-notification+jwt`, adding `iss`),
//! POSTs them to the merchant's notify URI as `application/jwt`, and on
//! failure retries with exponential backoff and jitter
//! ([`gatehouse_core::backoff`]) until a 2xx, or until the message is too
//! old (dead).

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::Timestamp;
use gatehouse_core::pay::notification::NOTIFICATION_TYP;
use gatehouse_kit::outbox;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::store::{OutboxRow, PayStoreError};
use crate::web::PayState;

/// How long a notification may wait for delivery before it is dead.
pub const MAX_AGE_SECS: i64 = 24 * 60 * 60;
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
pub const LEASE_SECS: i64 = 30;
const BATCH: i64 = 32;
/// Expired rows are purged every this many rounds (about 5 minutes idle).
const PURGE_EVERY_ROUNDS: u64 = 1200;
/// The content type of a notification.
pub const CONTENT_TYPE: &str = "application/jwt";

#[derive(Serialize)]
struct Signed<'a> {
    iss: &'a str,
    #[serde(flatten)]
    claims: gatehouse_core::pay::notification::NotificationClaims,
}

/// Starts the delivery worker (the kit's, over [`Notifications`]); it runs
/// until the handle is aborted.
pub fn spawn_worker(state: PayState) -> JoinHandle<()> {
    let http = match outbox::http_client(DELIVERY_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "pay outbox: cannot build the HTTP client; no deliveries");
            return tokio::spawn(async {});
        }
    };
    let settings = outbox::Settings {
        name: "pay outbox",
        poll_interval: POLL_INTERVAL,
        delivery_timeout: DELIVERY_TIMEOUT,
        lease_secs: LEASE_SECS,
        batch: BATCH,
        max_age_secs: MAX_AGE_SECS,
    };
    let queue = Arc::new(Notifications { state, http });
    outbox::spawn(queue.clone(), queue, settings)
}

/// The pay database's outbox as the kit's queue, and how a notification is
/// sent.
struct Notifications {
    state: PayState,
    http: reqwest::Client,
}

#[async_trait::async_trait]
impl outbox::Queue for Notifications {
    type Message = OutboxRow;
    type Error = PayStoreError;

    async fn claim(&self, now: Timestamp, batch: i64, lease_secs: i64) -> Result<Vec<OutboxRow>, PayStoreError> {
        self.state.store.claim_outbox(now, batch, lease_secs).await
    }

    async fn delivered(&self, row: &OutboxRow, now: Timestamp) -> Result<(), PayStoreError> {
        self.state.store.outbox_delivered(&row.id, now).await
    }

    async fn failed(
        &self,
        row: &OutboxRow,
        now: Timestamp,
        next: Timestamp,
        error: &str,
        dead: bool,
    ) -> Result<(), PayStoreError> {
        self.state.store.outbox_failed(&row.id, now, next, error, dead).await
    }

    fn about<'a>(&self, row: &'a OutboxRow) -> outbox::About<'a> {
        outbox::About {
            id: &row.id,
            recipient: &row.merchant,
            attempts: row.attempts,
            created_at: Timestamp(row.created_at),
        }
    }

    fn notify(&self) -> &Notify {
        &self.state.outbox_wake
    }

    /// Now and then, expired sessions, logins and links go.
    async fn round_started(&self, round: u64) {
        if round.is_multiple_of(PURGE_EVERY_ROUNDS)
            && let Err(e) = self.state.store.purge_expired(Timestamp::now()).await
        {
            tracing::warn!(error = %e, "pay: cannot purge expired rows");
        }
    }
}

#[async_trait::async_trait]
impl outbox::Deliver<OutboxRow> for Notifications {
    async fn deliver(&self, row: &OutboxRow) -> Result<(), String> {
        let jwt = sign(&self.state, row)?;
        outbox::post(&self.http, &row.target_uri, CONTENT_TYPE, jwt).await
    }
}

fn sign(state: &PayState, row: &OutboxRow) -> Result<String, String> {
    let claims = row.claims().map_err(|e| e.to_string())?;
    state
        .keys
        .sign(
            NOTIFICATION_TYP,
            &Signed {
                iss: &state.audience,
                claims,
            },
        )
        .map_err(|e| e.to_string())
}
