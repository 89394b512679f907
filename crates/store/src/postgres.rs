//! The PostgreSQL backend: several Gatehouse instances can share one database.

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPool;

use crate::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The same pool: PostgreSQL's writers do not sleep on a lock.
    writer: PgPool,
    /// What is kept in memory (see `cache.rs`).
    caches: std::sync::Arc<crate::cache::Caches>,
    /// SQLite's batch writer (see `batch.rs`); unused on PostgreSQL.
    batch: std::sync::Arc<crate::batch::Queue>,
}

impl PgStore {
    /// Connects to `postgres://...` (one connection is opened now, so a bad
    /// URL or an unreachable server fails here). Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = crate::pools::postgres(url).await?;
        Ok(Self {
            writer: pool.clone(),
            pool,
            caches: Default::default(),
            batch: Default::default(),
        })
    }

    /// The pool, for callers that need something the trait does not offer.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl_store! {
    store: PgStore,
    db: sqlx::Postgres,
    backend: crate::Backend::Postgres,
    migrator: MIGRATOR,
}
