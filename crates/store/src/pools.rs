//! The connection pools both Gatehouse databases use (the IdP's store and
//! the payments service's): the same settings, written once.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// SQLite has one writer at a time; a few connections serve concurrent
/// readers (WAL) while writers queue on the busy timeout.
const SQLITE_CONNECTIONS: u32 = 4;
const POSTGRES_CONNECTIONS: u32 = 10;

fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5)))
}

fn sqlite_pool(connections: u32) -> SqlitePoolOptions {
    // No ping before each use (sqlx's default): the connection is in this
    // process, and the ping was one more round trip to its worker thread
    // before every query (6-9% of the server's CPU in profiles under load,
    // see BENCHMARKS.md).
    SqlitePoolOptions::new()
        .max_connections(connections)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
}

/// Opens `sqlite://path` (or `sqlite:path`) in WAL mode, creating the file
/// if it is missing: one pool for everything.
pub async fn sqlite(url: &str) -> Result<SqlitePool, sqlx::Error> {
    sqlite_pool(SQLITE_CONNECTIONS).connect_with(sqlite_options(url)?).await
}

/// The same database as two pools: readers, and one writer connection, so
/// that this process's writers wait their turn in the pool rather than in
/// SQLite's busy handler (which sleeps). Returns `(readers, writer)`.
pub async fn sqlite_pair(url: &str) -> Result<(SqlitePool, SqlitePool), sqlx::Error> {
    let options = sqlite_options(url)?;
    // The writer first: it creates the file and switches it to WAL.
    let writer = sqlite_pool(1).connect_with(options.clone()).await?;
    let readers = sqlite_pool(SQLITE_CONNECTIONS).connect_with(options).await?;
    Ok((readers, writer))
}

/// Connects to `postgres://...` (one connection is opened now, so a bad URL
/// or an unreachable server fails here).
pub async fn postgres(url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(POSTGRES_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}
