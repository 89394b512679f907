//! The outbox table's delivery bookkeeping, shared by both services' stores:
//! each keeps its messages in a table `outbox` with the same delivery
//! columns (`attempts`, `last_error`, `next_attempt_at`, `locked_until`,
//! `delivered_at`, `dead_at`), so marking a message delivered or failed is
//! one statement, written once, on SQLite and PostgreSQL alike.

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

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
