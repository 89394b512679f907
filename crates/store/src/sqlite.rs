//! The SQLite backend: one file in WAL mode, the embedded default.

use sqlx::migrate::Migrator;
use sqlx::sqlite::SqlitePool;

use crate::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Readers (WAL: they never wait for the writer).
    pool: SqlitePool,
    /// The one connection that writes (see `backend.rs`).
    writer: SqlitePool,
    /// What is kept in memory (see `cache.rs`).
    caches: std::sync::Arc<crate::cache::Caches>,
    /// SQLite's batch writer (see `batch.rs`); unused on PostgreSQL.
    batch: std::sync::Arc<crate::batch::Queue>,
    /// Copies the WAL into the database file, off the writer's path; ends
    /// with the last clone of the store.
    _checkpointer: std::sync::Arc<crate::pools::Checkpointer>,
}

impl SqliteStore {
    /// Opens `sqlite://path` (or `sqlite:path`), creating the file if it is
    /// missing. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pair = crate::pools::sqlite_pair(url).await?;
        Ok(Self {
            pool: pair.readers,
            writer: pair.writer,
            caches: Default::default(),
            batch: Default::default(),
            _checkpointer: std::sync::Arc::new(pair.checkpointer),
        })
    }

    /// The pool, for callers that need something the trait does not offer.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl_store! {
    store: SqliteStore,
    db: sqlx::Sqlite,
    backend: crate::Backend::Sqlite,
    migrator: MIGRATOR,
}
