//! The SQLite backend of the payments store: one file in WAL mode.

use sqlx::migrate::Migrator;
use sqlx::sqlite::SqlitePool;

use super::PayStoreError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqlitePayStore {
    pool: SqlitePool,
}

impl SqlitePayStore {
    /// Opens `sqlite://path` (or `sqlite:path`), creating the file if it is
    /// missing. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, PayStoreError> {
        Ok(Self {
            pool: gatehouse_kit::pools::sqlite(url).await?,
        })
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

impl_standing_store! {
    store: SqlitePayStore,
    db: sqlx::Sqlite,
}
