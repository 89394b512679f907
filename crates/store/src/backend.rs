//! The one implementation of the role traits ([`crate::Store`]), written
//! once as macros and expanded for each backend (`sqlite.rs`,
//! `postgres.rs`): `impl_store!` below brings the imports and the helpers
//! every area shares, implements [`crate::MaintenanceStore`], and expands
//! each area's macro (`accounts/`, `bans.rs`, `sessions.rs`, ...), whose
//! module also holds its SQL and rows. What differs between the databases
//! (connecting, migrations) stays in the backend files.
//!
//! Reads go to `pool`, everything that writes to `writer`. On SQLite the
//! writer is a pool of one connection, so writers of this process queue in
//! the pool (in memory, in order) instead of in SQLite's busy handler, which
//! waits by sleeping (up to 100 ms a turn) and put hundreds of milliseconds
//! into the slowest requests under load; on PostgreSQL both are the same
//! pool. Transactions start with a write wherever they write, so on SQLite
//! they take the write lock at once and wait (`busy_timeout`, for other
//! processes such as the command line) instead of failing on a lock upgrade.

/// Implements every role trait for `$store`, a struct with `pool` and
/// `writer` fields (`sqlx::Pool<$db>`), `caches` (`Arc<cache::Caches>`) and
/// `batch` (`Arc<batch::Queue>`), using `$migrator` for `migrate`.
macro_rules! impl_store {
    (store: $store:ty, db: $db:ty, backend: $backend:expr, migrator: $migrator:path $(,)?) => {
        const _: () = {
            use async_trait::async_trait;
            use gatehouse_core::audit::{AuditEvent, AuditRecord};
            use gatehouse_core::ban::Ban;
            use gatehouse_core::code::{CodeEffect, CodePurpose, OneTimeCode};
            use gatehouse_core::oauth::client::SigningAlg;
            use gatehouse_core::oauth::grant::{
                AuthCode, Consent, Grant, Interaction, Redemption, RefreshToken, StoredKey,
            };
            use gatehouse_core::oauth::{Client, ClientId};
            use gatehouse_core::session::{AuthMethod, Session, SessionSelector};
            use gatehouse_core::throttle::{Policy, Window};
            use gatehouse_core::{Account, AccountId, Email, Profile, Timestamp, TokenDigest};

            use $crate::accounts::sql::{AccountRow, CodeRow};
            use $crate::audit::AuditRow;
            use $crate::batch::HotWrite;
            use $crate::cache::{CHECK_EVERY, GenerationCache, Lookup};
            use $crate::keys::KeyRow;
            use $crate::oauth::sql::{
                ChainRow, ClientColumns, ClientRow, ConsentRow, GrantRow, InteractionRow, RefreshRow,
            };
            use $crate::sessions::SessionRow;
            use $crate::throttle::WindowRow;
            use $crate::{AuditQuery, Backend, OutboxMessage, OutboxSummary, Redeemed, StoreError};

            type Db = $db;
            type Conn = <$db as sqlx::Database>::Connection;
            type Query = sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments>;
            const BACKEND: Backend = $backend;

            /// Appends an audit event on `conn` (a transaction, so it
            /// commits or rolls back with the change it describes).
            async fn insert_audit(conn: &mut Conn, event: &AuditEvent) -> Result<(), StoreError> {
                sqlx::query($crate::audit::INSERT_AUDIT)
                    .bind(event.at.0)
                    .bind(event.kind.as_str())
                    .bind(event.account_id.as_ref().map(AccountId::as_str))
                    .bind(event.ip.as_str())
                    .bind(event.user_agent.as_str())
                    .bind(event.outcome.as_str())
                    .bind(event.detail.to_string())
                    .bind(event.by.as_deref())
                    .bind(event.client_id.as_ref().map(ClientId::as_str))
                    .execute(conn)
                    .await?;
                Ok(())
            }

            /// Writes outbox messages on `conn` (a transaction, so they
            /// commit or roll back with the change that caused them).
            async fn insert_outbox(conn: &mut Conn, outbox: &[OutboxMessage]) -> Result<(), StoreError> {
                for m in outbox {
                    sqlx::query($crate::outbox::INSERT_OUTBOX)
                        .bind(m.id.as_str())
                        .bind(m.client_id.as_str())
                        .bind(m.kind.as_str())
                        .bind(m.target_uri.as_str())
                        .bind(m.payload.as_str())
                        .bind(m.content_type.as_str())
                        .bind(m.created_at.0)
                        .bind(m.next_attempt_at.0)
                        .bind(m.attempts)
                        .bind(m.last_error.as_deref())
                        .bind(m.delivered_at.map(|t| t.0))
                        .bind(m.dead_at.map(|t| t.0))
                        .bind(m.locked_until.map(|t| t.0))
                        .bind(m.withdraw_key.as_deref())
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }

            /// Bumps `cache`'s counter, commits, and drops what this store
            /// remembers of the table (and, with `also`, of another cache that
            /// follows the same counter); then waits out [`CHECK_EVERY`], so
            /// that when the write returns every server sharing the
            /// database (this one, others, the one the command line is
            /// talking to) answers with it (see `cache.rs`).
            async fn changed<K: Eq + std::hash::Hash, V: Clone>(
                mut tx: sqlx::Transaction<'static, Db>,
                cache: &GenerationCache<K, V>,
                also: impl FnOnce(),
            ) -> Result<(), StoreError> {
                sqlx::query($crate::sql::BUMP_GENERATION)
                    .bind(cache.name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                cache.invalidate();
                also();
                tokio::time::sleep(CHECK_EVERY).await;
                Ok(())
            }

            /// [`changed`] for the clients' counter, which two caches follow:
            /// the client records and the public clients' origins.
            async fn clients_changed(
                tx: sqlx::Transaction<'static, Db>,
                caches: &$crate::cache::Caches,
            ) -> Result<(), StoreError> {
                changed(tx, &caches.clients, || caches.public_origins.invalidate()).await
            }

            /// What `cache` remembers of `key`, or `load`'s answer, remembered
            /// when it is `Some` (see `cache.rs`).
            async fn cached<K, V, F>(
                pool: &sqlx::Pool<Db>,
                cache: &GenerationCache<K, V>,
                key: &K,
                load: F,
            ) -> Result<Option<V>, StoreError>
            where
                K: Eq + std::hash::Hash + Clone,
                V: Clone,
                F: std::future::Future<Output = Result<Option<V>, StoreError>>,
            {
                let now = std::time::Instant::now();
                let epoch = match cache.lookup(key, now) {
                    Lookup::Hit(value) => return Ok(Some(value)),
                    Lookup::Miss { epoch, check: false } => epoch,
                    Lookup::Miss { check: true, .. } => {
                        let generation = sqlx::query_scalar::<_, i64>($crate::sql::GENERATION)
                            .bind(cache.name)
                            .fetch_one(pool)
                            .await?;
                        cache.checked(generation, now)
                    }
                };
                let value = load.await?;
                if let Some(value) = &value {
                    cache.remember(epoch, key.clone(), value.clone());
                }
                Ok(value)
            }

            #[async_trait]
            impl $crate::MaintenanceStore for $store {
                async fn migrate(&self) -> Result<(), StoreError> {
                    $migrator.run(&self.writer).await?;
                    Ok(())
                }

                async fn ping(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }

                async fn purge_expired(&self, before: &$crate::PurgeBefore) -> Result<u64, StoreError> {
                    let mut purged = 0;
                    for (statement, before) in [
                        ($crate::oauth::sql::PURGE_INTERACTIONS, before.interactions),
                        ($crate::oauth::sql::PURGE_AUTH_CODES, before.auth_codes),
                        ($crate::oauth::sql::PURGE_REFRESH_TOKENS, before.refresh_tokens),
                        ($crate::throttle::PURGE_THROTTLE, before.throttle_windows),
                    ] {
                        loop {
                            let deleted = sqlx::query(statement)
                                .bind(before.0)
                                .bind($crate::sql::PURGE_CHUNK)
                                .execute(&self.writer)
                                .await?
                                .rows_affected();
                            purged += deleted;
                            if deleted < $crate::sql::PURGE_CHUNK.unsigned_abs() {
                                break;
                            }
                        }
                    }
                    Ok(purged)
                }
            }

            impl_account_store!($store);
            impl_ban_store!($store);
            impl_session_store!($store);
            impl_throttle_store!($store);
            impl_audit_store!($store);
            impl_oauth_store!($store);
            impl_key_store!($store);
            impl_outbox_store!($store);
        };
    };
}
