//! The PostgreSQL backend of the payments store.

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPool;

use super::PayStoreError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Debug)]
pub struct PgPayStore {
    pool: PgPool,
}

impl PgPayStore {
    /// Connects to `postgres://...` (one connection is opened now, so a bad
    /// URL or an unreachable server fails here). Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, PayStoreError> {
        Ok(Self {
            pool: gatehouse_kit::pools::postgres(url).await?,
        })
    }

    /// The pool, for callers that need something the trait does not offer.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl_pay_store! {
    store: PgPayStore,
    db: sqlx::Postgres,
    backend: crate::store::Backend::Postgres,
    migrator: MIGRATOR,
}

impl_standing_store! {
    store: PgPayStore,
    db: sqlx::Postgres,
}
