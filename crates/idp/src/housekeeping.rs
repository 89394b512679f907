//! Housekeeping: every [`EVERY`], deletes what has expired and is no longer
//! needed (authorization codes and refresh tokens an hour after they
//! expired, interactions as they expire), so that those tables hold only
//! what is live. Any instance
//! doing it is enough; several doing it at once delete nothing twice.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::grant::{CODE_KEPT_AFTER_EXPIRY, REFRESH_TOKEN_KEPT_AFTER_EXPIRY};
use gatehouse_store::{PurgeBefore, Store};
use tokio::task::JoinHandle;

/// How often expired rows are purged.
pub const EVERY: Duration = Duration::from_secs(60);

/// One round: returns how many rows went.
pub async fn purge_once(store: &dyn Store, now: Timestamp) -> Result<u64, gatehouse_store::StoreError> {
    let before = PurgeBefore {
        interactions: now,
        auth_codes: now.plus(-CODE_KEPT_AFTER_EXPIRY),
        refresh_tokens: now.plus(-REFRESH_TOKEN_KEPT_AFTER_EXPIRY),
        throttle_windows: now.plus(-gatehouse_core::throttle::LONGEST_WINDOW_SECS),
    };
    store.purge_expired(&before).await
}

/// Runs [`purge_once`] every [`EVERY`] until the runtime stops.
pub fn spawn(store: Arc<dyn Store>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match purge_once(store.as_ref(), Timestamp::now()).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "housekeeping: expired rows deleted"),
                Err(error) => tracing::warn!(%error, "housekeeping: cannot purge expired rows"),
            }
            tokio::time::sleep(EVERY).await;
        }
    })
}
