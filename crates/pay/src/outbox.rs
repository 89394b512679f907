//! Delivering merchant notifications: the worker claims due rows of the
//! pay database's outbox (written in the transaction of the payment or
//! refund), signs their claims (`payment-notification+jwt`, adding `iss`),
//! POSTs them to the merchant's notify URI as `application/jwt`, and on
//! failure retries with exponential backoff and jitter
//! ([`gatehouse_core::backoff`]) until a 2xx, or until the message is too
//! old (dead).

use std::time::Duration;

use gatehouse_core::Timestamp;
use gatehouse_core::backoff::backoff_secs;
use gatehouse_core::pay::notification::NOTIFICATION_TYP;
use rand::Rng;
use serde::Serialize;
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

pub fn spawn_worker(state: PayState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let http = match reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "pay outbox: cannot build the HTTP client; no deliveries");
                return;
            }
        };
        let mut rounds: u64 = 0;
        loop {
            // Now and then, expired sessions, logins and links go.
            if rounds.is_multiple_of(PURGE_EVERY_ROUNDS)
                && let Err(e) = state.store.purge_expired(Timestamp::now()).await
            {
                tracing::warn!(error = %e, "pay: cannot purge expired rows");
            }
            rounds = rounds.wrapping_add(1);
            match run_once(&state, &http).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pay outbox: cannot claim messages"),
            }
            let wake = state.outbox_wake.notified();
            tokio::select! {
                () = wake => {},
                () = tokio::time::sleep(POLL_INTERVAL) => {},
            }
        }
    })
}

/// Claims due messages and tries each once; returns how many.
pub async fn run_once(state: &PayState, http: &reqwest::Client) -> Result<usize, PayStoreError> {
    let claimed = state.store.claim_outbox(Timestamp::now(), BATCH, LEASE_SECS).await?;
    let n = claimed.len();
    let mut tasks = tokio::task::JoinSet::new();
    for row in claimed {
        let state = state.clone();
        let http = http.clone();
        tasks.spawn(async move { deliver(&state, &http, row).await });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::warn!(error = %e, "pay outbox: delivery task failed");
        }
    }
    Ok(n)
}

async fn deliver(state: &PayState, http: &reqwest::Client, row: OutboxRow) {
    let error = match sign(state, &row) {
        Err(e) => Some(e),
        Ok(jwt) => match http
            .post(&row.target_uri)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(jwt)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
            Err(e) => Some(format!("request failed: {e}")),
        },
    };
    let now = Timestamp::now();
    let outcome = match error {
        None => state.store.outbox_delivered(&row.id, now).await,
        Some(error) => {
            let next = now.plus(backoff_secs(row.attempts, rand::thread_rng().gen_range(0.0..0.5)));
            let dead = next.0 > row.created_at.saturating_add(MAX_AGE_SECS);
            tracing::info!(id = %row.id, merchant = %row.merchant, %error, dead, "pay outbox: delivery failed");
            state.store.outbox_failed(&row.id, now, next, &error, dead).await
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(id = %row.id, error = %e, "pay outbox: cannot record the attempt");
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
