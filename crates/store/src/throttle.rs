//! The shared throttle counters (fixed windows, table `throttle`).

use crate::StoreError;
use async_trait::async_trait;
use gatehouse_core::Timestamp;
use gatehouse_core::throttle::{Policy, Window};

/// The throttle counters, shared by every instance on the database.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    async fn throttle_window(&self, key: &str) -> Result<Option<Window>, StoreError>;

    /// Reserves one attempt, in one atomic statement: starts a new window at
    /// `now` if the stored one began `policy.window_secs` or more ago, else
    /// counts one more if fewer than `policy.max_failures` are counted.
    /// Returns the window with the attempt counted, or `None` (nothing
    /// changed) if the window is full.
    async fn throttle_reserve(&self, key: &str, now: Timestamp, policy: Policy) -> Result<Option<Window>, StoreError>;

    /// Gives back an attempt reserved in the window that began at
    /// `started_at`; nothing if that window has ended or been cleared since.
    async fn throttle_release(&self, key: &str, started_at: Timestamp) -> Result<(), StoreError>;

    async fn throttle_clear(&self, key: &str) -> Result<(), StoreError>;
}

/// Implements [`ThrottleStore`] for `$store`, inside `impl_store!` (`backend.rs`),
/// whose helpers and imports it uses.
macro_rules! impl_throttle_store {
    ($store:ty) => {
        #[async_trait]
        impl $crate::ThrottleStore for $store {
            async fn throttle_window(&self, key: &str) -> Result<Option<Window>, StoreError> {
                sqlx::query_as::<_, WindowRow>($crate::throttle::THROTTLE_WINDOW)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(Window::try_from)
                    .transpose()
            }

            async fn throttle_reserve(
                &self,
                key: &str,
                now: Timestamp,
                policy: Policy,
            ) -> Result<Option<Window>, StoreError> {
                sqlx::query_as::<_, WindowRow>($crate::throttle::THROTTLE_RESERVE)
                    .bind(key)
                    .bind(now.0)
                    .bind(now.minus(policy.window_secs).0)
                    .bind(i64::from(policy.max_failures))
                    .fetch_optional(&self.writer)
                    .await?
                    .map(Window::try_from)
                    .transpose()
            }

            async fn throttle_release(&self, key: &str, started_at: Timestamp) -> Result<(), StoreError> {
                sqlx::query($crate::throttle::THROTTLE_RELEASE)
                    .bind(key)
                    .bind(started_at.0)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn throttle_clear(&self, key: &str) -> Result<(), StoreError> {
                sqlx::query($crate::throttle::THROTTLE_CLEAR)
                    .bind(key)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }
        }
    };
}

// --- SQL and rows ----------------------------------------------------------

pub const THROTTLE_WINDOW: &str = "\
    SELECT window_started_at, failures FROM throttle WHERE key = $1";

/// Reserves an attempt in one atomic statement. `$1` key, `$2` now, `$3`
/// now - window length, `$4` the attempts a window allows: a window that
/// began at or before `$3` is over and a new one starts at `$2`; otherwise
/// one more is counted only while fewer than `$4` are. A full window is not
/// updated, so `RETURNING` gives no row: refused. The right-hand sides of
/// `SET` and the `WHERE` see the row as it was, on both databases, and the
/// row is locked from the conflict to the commit, so concurrent
/// reservations queue and each sees the count the one before left.
pub const THROTTLE_RESERVE: &str = "\
    INSERT INTO throttle (key, window_started_at, failures) VALUES ($1, $2, 1) \
    ON CONFLICT (key) DO UPDATE SET \
        failures = CASE WHEN throttle.window_started_at <= $3 \
                        THEN 1 ELSE throttle.failures + 1 END, \
        window_started_at = CASE WHEN throttle.window_started_at <= $3 \
                                 THEN $2 ELSE throttle.window_started_at END \
    WHERE throttle.window_started_at <= $3 OR throttle.failures < $4 \
    RETURNING window_started_at, failures";

/// Gives a reservation back (a success). `$1` key, `$2` the start of the
/// window it was reserved in.
pub const THROTTLE_RELEASE: &str = "\
    UPDATE throttle SET failures = failures - 1 \
    WHERE key = $1 AND window_started_at = $2 AND failures > 0";

pub const THROTTLE_CLEAR: &str = "DELETE FROM throttle WHERE key = $1";

/// Throttle windows that began before `$1`, at most `$2` (uses
/// `throttle_by_window`, migration 0016).
pub const PURGE_THROTTLE: &str = "\
    DELETE FROM throttle WHERE key IN \
        (SELECT key FROM throttle WHERE window_started_at < $1 LIMIT $2)";

#[derive(sqlx::FromRow)]
pub struct WindowRow {
    window_started_at: i64,
    failures: i32,
}

impl TryFrom<WindowRow> for Window {
    type Error = StoreError;

    fn try_from(row: WindowRow) -> Result<Self, StoreError> {
        let failures = u32::try_from(row.failures)
            .map_err(|_| StoreError::Corrupt(format!("throttle: negative failures {}", row.failures)))?;
        Ok(Window {
            started_at: Timestamp(row.window_started_at),
            failures,
        })
    }
}
