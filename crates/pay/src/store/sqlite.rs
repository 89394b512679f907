//! The SQLite backend of the payments store: one file in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::PayStoreError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite has one writer at a time; a few connections serve concurrent
/// readers (WAL) while writers queue on the busy timeout.
const MAX_CONNECTIONS: u32 = 4;

#[derive(Clone, Debug)]
pub struct SqlitePayStore {
    pool: SqlitePool,
}

impl SqlitePayStore {
    /// Opens `sqlite://path` (or `sqlite:path`), creating the file if it is
    /// missing. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, PayStoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // No ping before each use (sqlx's default): the connection is in
        // this process, and the ping was one more round trip to its worker
        // thread before every query (6-9% of the server's CPU in profiles
        // under load, see BENCHMARKS.md).
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The pool, for callers that need something the trait does not offer.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl_pay_store! {
    store: SqlitePayStore,
    db: sqlx::Sqlite,
    backend: crate::store::Backend::Sqlite,
    migrator: MIGRATOR,
}
