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
//! half. The runner is `batch_runner!` below; BENCHMARKS.md has figures.

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

/// The batch task and the hand-off to it, for the backend `impl_store!`
/// expands (used on SQLite only).
macro_rules! batch_runner {
    () => {
        /// Hands `job` to the batch task (started on first use) and
        /// waits for its answer, which comes after the commit.
        async fn hot_write<T>(
            queue: &$crate::batch::Queue,
            writer: &sqlx::Pool<Db>,
            job: HotWrite,
            answer: tokio::sync::oneshot::Receiver<Result<T, StoreError>>,
        ) -> Result<T, StoreError> {
            let sender = queue.get_or_init(|| {
                let (sender, jobs) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(batch_writer(writer.clone(), jobs));
                sender
            });
            sender
                .send(job)
                .map_err(|_| $crate::batch::failed("the batch writer has stopped"))?;
            answer
                .await
                .map_err(|_| $crate::batch::failed("the batch writer has stopped"))?
        }

        /// One hot write inside the batch's transaction.
        async fn run_hot(conn: &mut Conn, job: &HotWrite) -> Result<Option<Redemption>, StoreError> {
            match job {
                HotWrite::InsertCode { code, .. } => {
                    insert_code(conn, $crate::oauth::sql::INSERT_AUTH_CODE_SQLITE, code)
                        .await
                        .map(|()| None)
                }
                HotWrite::Redeem {
                    digest,
                    grant,
                    refresh,
                    now,
                    ..
                } => {
                    if redeem_code(
                        conn,
                        $crate::oauth::sql::REDEEM_AUTH_CODE_SQLITE,
                        digest,
                        grant,
                        refresh.as_ref(),
                        *now,
                    )
                    .await?
                    {
                        return Ok(Some(Redemption::Issued));
                    }
                    // Used before: revoke what the first use issued.
                    revoke_replayed(conn, $crate::oauth::sql::AUTH_CODE_GRANT, digest, *now)
                        .await
                        .map(Some)
                }
            }
        }

        /// Answers `job` with `outcome` (what [`run_hot`] returned).
        fn answer(job: HotWrite, outcome: Result<Option<Redemption>, StoreError>) {
            match job {
                HotWrite::InsertCode { reply, .. } => {
                    let _ = reply.send(outcome.map(|_| ()));
                }
                HotWrite::Redeem { reply, .. } => {
                    let _ = reply.send(outcome.map(|r| r.unwrap_or(Redemption::Unknown)));
                }
            }
        }

        /// The batch task (see the top of this file): every hot write queued
        /// while the last batch ran goes into the next transaction.
        async fn batch_writer(writer: sqlx::Pool<Db>, mut jobs: tokio::sync::mpsc::UnboundedReceiver<HotWrite>) {
            // Writes to run again: they shared a transaction with one
            // that failed, and were rolled back with it.
            let mut again = std::collections::VecDeque::new();
            loop {
                let mut batch: Vec<HotWrite> = again.drain(..).collect();
                if batch.is_empty() {
                    match jobs.recv().await {
                        Some(job) => batch.push(job),
                        None => return,
                    }
                }
                while batch.len() < $crate::batch::MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let mut tx = match writer.begin().await {
                    Ok(tx) => tx,
                    Err(e) => {
                        for job in batch {
                            answer(job, Err($crate::batch::failed(&e.to_string())));
                        }
                        continue;
                    }
                };
                let mut done = Vec::with_capacity(batch.len());
                let mut rest = batch.into_iter();
                let mut failed = false;
                while let Some(job) = rest.next() {
                    match run_hot(&mut tx, &job).await {
                        Ok(outcome) => done.push((job, outcome)),
                        Err(e) => {
                            // This write fails alone: the transaction is
                            // rolled back (dropped) and the others run
                            // again in the next one.
                            answer(job, Err(e));
                            again.extend(done.drain(..).map(|(job, _)| job));
                            again.extend(rest.by_ref());
                            failed = true;
                        }
                    }
                }
                if failed {
                    drop(tx);
                    continue;
                }
                let committed = tx.commit().await.map_err(|e| e.to_string());
                for (job, outcome) in done {
                    match &committed {
                        Ok(()) => answer(job, Ok(outcome)),
                        Err(why) => answer(job, Err($crate::batch::failed(why))),
                    }
                }
            }
        }
    };
}
