//! SQLite's hot writes, run by one task in shared transactions (group
//! commit). The single sign-on hop writes twice (the code, then its
//! redemption); with one SQLite writer, each write cost the writer about
//! five hand-offs to its connection's thread (pool hand-off, `BEGIN`, the
//! query, `COMMIT`, sqlx's ping on release). The batch task takes every hot
//! write queued meanwhile and runs them in one transaction, and answers
//! them only after the commit: a write costs the writer about one round
//! trip. A write that fails is answered with its error and the transaction
//! rolled back; the others of its batch run again in the next one (so an
//! answer is never given for a write that did not commit).
//! The task is not a request: a client that hangs up cannot cut a write in
//! half. See `store_impl.rs` for the runner and BENCHMARKS.md for figures.

use gatehouse_core::Timestamp;
use gatehouse_core::TokenDigest;
use gatehouse_core::oauth::grant::{AuthCode, Grant, Redemption, RefreshToken};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

/// At most this many writes per transaction.
pub const MAX_BATCH: usize = 128;

pub enum HotWrite {
    InsertCode {
        code: AuthCode,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Redeem {
        digest: TokenDigest,
        grant: Grant,
        refresh: Option<RefreshToken>,
        now: Timestamp,
        reply: oneshot::Sender<Result<Redemption, StoreError>>,
    },
}

/// The queue to the batch task, started on first use.
pub type Queue = std::sync::OnceLock<mpsc::UnboundedSender<HotWrite>>;

/// The answer a write gets when its batch could not commit.
pub fn failed(why: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(format!("batched write not committed: {why}")))
}
