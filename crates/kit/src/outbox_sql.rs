//! The outbox table's delivery bookkeeping, shared by both services' stores:
//! each keeps its messages in a table `outbox` with the same delivery
//! columns (`attempts`, `last_error`, `next_attempt_at`, `locked_until`,
//! `delivered_at`, `dead_at`), so marking a message delivered or failed is
//! one statement, written once, on SQLite and PostgreSQL alike; claiming
//! due messages is one statement too, which differs only in the columns
//! each service reads back ([`claim_statement!`]).

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

/// The claim of due messages, leasing them until `$3`: `$1` now, `$2` at
/// most how many; the rows come back with `$columns` (a string literal, or
/// a macro giving one). `claim_statement!(sqlite, ...)` is one
/// UPDATE ... RETURNING (SQLite has one writer at a time, so the statement
/// is atomic); `claim_statement!(postgres, ...)` locks the due rows with
/// `FOR UPDATE SKIP LOCKED`, so concurrent workers take disjoint sets.
#[macro_export]
macro_rules! claim_statement {
    (sqlite, $($columns:tt)+) => {
        $crate::claim_statement!(@lock "", $($columns)+)
    };
    (postgres, $($columns:tt)+) => {
        $crate::claim_statement!(@lock " FOR UPDATE SKIP LOCKED", $($columns)+)
    };
    (@lock $lock:literal, $($columns:tt)+) => {
        concat!(
            "UPDATE outbox SET locked_until = $3 \
             WHERE id IN (SELECT id FROM outbox \
                          WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $1 \
                            AND (locked_until IS NULL OR locked_until <= $1) \
                          ORDER BY next_attempt_at, created_at LIMIT $2",
            $lock,
            ") RETURNING ",
            $($columns)+
        )
    };
}

/// How many messages are pending (never tried), failed (tried, will be
/// retried), delivered and dead: one row ([`SummaryRow`]) over the outbox
/// table, with the `WHERE` clause `$filter` (a string literal, may be empty).
#[macro_export]
macro_rules! summary_statement {
    ($filter:literal) => {
        concat!(
            "SELECT \
               COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL AND attempts = 0 THEN 1 ELSE 0 END), 0) AS pending, \
               COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL AND attempts > 0 THEN 1 ELSE 0 END), 0) AS failed, \
               COALESCE(SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS delivered, \
               COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS dead \
             FROM outbox",
            $filter
        )
    };
}

/// The row of a [`summary_statement!`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct SummaryRow {
    pub pending: i64,
    pub failed: i64,
    pub delivered: i64,
    pub dead: i64,
}

/// Claims at most `limit` due messages at `now` (seconds) with
/// `statement` (a [`claim_statement!`]), leased until `lease_until`.
pub async fn claim<DB, R>(
    pool: &sqlx::Pool<DB>,
    statement: &'static str,
    now: i64,
    limit: i64,
    lease_until: i64,
) -> Result<Vec<R>, sqlx::Error>
where
    DB: Database,
    R: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let mut tx = pool.begin().await?;
    let rows = sqlx::query_as::<DB, R>(statement)
        .bind(now)
        .bind(limit)
        .bind(lease_until)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// `$1` id, `$2` now.
pub const DELIVERED: &str = "\
    UPDATE outbox SET delivered_at = $2, attempts = attempts + 1, locked_until = NULL, last_error = NULL \
    WHERE id = $1";

/// `$1` id, `$2` now, `$3` next attempt, `$4` error, `$5` dead.
pub const FAILED: &str = "\
    UPDATE outbox SET attempts = attempts + 1, last_error = $4, next_attempt_at = $3, locked_until = NULL, \
                      dead_at = CASE WHEN $5 THEN $2 ELSE NULL END \
    WHERE id = $1 AND delivered_at IS NULL";

/// Marks message `id` delivered at `now` (seconds) and releases its lease.
pub async fn delivered<'e, DB, E>(executor: E, id: &str, now: i64) -> Result<(), sqlx::Error>
where
    DB: Database,
    E: Executor<'e, Database = DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
{
    sqlx::query::<DB>(DELIVERED)
        .bind(id.to_owned())
        .bind(now)
        .execute(executor)
        .await?;
    Ok(())
}

/// Counts a failed attempt at message `id`: records `error`, and either
/// schedules the next attempt at `next_attempt_at` or (`dead`) gives up at
/// `now`. The lease is released; a message delivered meanwhile is left as
/// it is.
pub async fn failed<'e, DB, E>(
    executor: E,
    id: &str,
    now: i64,
    next_attempt_at: i64,
    error: &str,
    dead: bool,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    E: Executor<'e, Database = DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    bool: for<'q> Encode<'q, DB> + Type<DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
{
    sqlx::query::<DB>(FAILED)
        .bind(id.to_owned())
        .bind(now)
        .bind(next_attempt_at)
        .bind(error.to_owned())
        .bind(dead)
        .execute(executor)
        .await?;
    Ok(())
}
