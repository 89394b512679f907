//! The PostgreSQL backend: several Gatehouse instances can share one database.

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPool;

use crate::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `postgres://...` (one connection is opened now, so a bad
    /// URL or an unreachable server fails here). Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            pool: crate::pools::postgres(url).await?,
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
