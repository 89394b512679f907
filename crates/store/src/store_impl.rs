//! The one implementation of [`crate::Store`], written once as a macro and
//! expanded for each backend (`sqlite.rs`, `postgres.rs`). The SQL it runs is
//! in `sql.rs`; what differs between the databases (connecting, migrations)
//! stays in the backend files.
//!
//! Reads go to `pool`, everything that writes to `writer`. On SQLite the
//! writer is a pool of one connection, so writers of this process queue in
//! the pool (in memory, in order) instead of in SQLite's busy handler, which
//! waits by sleeping (up to 100 ms a turn) and put hundreds of milliseconds
//! into the slowest requests under load; on PostgreSQL both are the same
//! pool. Transactions start with a write wherever they write, so on SQLite
//! they take the write lock at once and wait (`busy_timeout`, for other
//! processes such as the command line) instead of failing on a lock upgrade.

/// Implements [`crate::Store`] for `$store`, a struct with `pool` and
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

            use $crate::batch::HotWrite;
            use $crate::cache::{CHECK_EVERY, GenerationCache, Lookup};
            use $crate::sql::{
                self, AccountRow, AuditRow, AuthCodeRow, ChainRow, ClientColumns, ClientRow, CodeRow, ConsentRow,
                GrantRow, InteractionRow, KeyRow, RefreshRow, SessionRow, WindowRow,
            };
            use $crate::{AuditQuery, Backend, OutboxMessage, OutboxSummary, Redeemed, Store, StoreError};

            type Conn = <$db as sqlx::Database>::Connection;
            type Query = sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments>;

            /// Appends an audit event on `conn` (a transaction, so it
            /// commits or rolls back with the change it describes).
            async fn insert_audit(conn: &mut Conn, event: &AuditEvent) -> Result<(), StoreError> {
                sqlx::query(sql::INSERT_AUDIT)
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
                    sqlx::query(sql::INSERT_OUTBOX)
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

            /// Deletes the account-enabled messages, not yet due, that
            /// announce the end of the account's ban in `client`'s scope.
            async fn withdraw_suspension_end(
                conn: &mut Conn,
                account: &AccountId,
                client: Option<&ClientId>,
                now: Timestamp,
            ) -> Result<(), StoreError> {
                sqlx::query(sql::WITHDRAW_OUTBOX)
                    .bind($crate::suspension_end_key(account, client))
                    .bind(now.0)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// New password hash, and every session but `keep` must enter it.
            async fn set_password(
                conn: &mut Conn,
                account: &AccountId,
                new_hash: &str,
                keep: Option<&TokenDigest>,
                now: Timestamp,
            ) -> Result<(), StoreError> {
                sqlx::query(sql::SET_PASSWORD)
                    .bind(account.as_str())
                    .bind(new_hash)
                    .bind(now.0)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(sql::MARK_SESSIONS_REAUTH)
                    .bind(account.as_str())
                    .bind(keep.map(TokenDigest::as_str))
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// `statement` ([`sql::INSERT_CLIENT`] or [`sql::UPDATE_CLIENT`])
            /// with every column but `created_at` bound, `$1` to `$13`.
            fn client_query(statement: &'static str, client: &Client) -> Query {
                let columns = ClientColumns::of(client);
                sqlx::query(statement)
                    .bind(client.id.as_str())
                    .bind(client.name.as_str())
                    .bind(client.secret_digest.as_ref().map(TokenDigest::as_str))
                    .bind(columns.redirect_uris)
                    .bind(columns.post_logout_redirect_uris)
                    .bind(columns.audiences)
                    .bind(columns.grant_types)
                    .bind(columns.scopes)
                    .bind(client.first_party)
                    .bind(client.backchannel_logout_uri.as_deref())
                    .bind(client.events_uri.as_deref())
                    .bind(client.id_token_alg.as_str())
                    .bind(columns.resource_uris)
            }

            /// `statement` ([`sql::INSERT_GRANT`] or
            /// [`sql::REDEEM_AUTH_CODE_SQLITE`]) with the grant's columns
            /// bound, `$1` to `$13`.
            fn grant_query(statement: &'static str, grant: &Grant) -> Query {
                let amr = grant.amr.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" ");
                sqlx::query(statement)
                    .bind(grant.id.as_str())
                    .bind(grant.client_id.as_str())
                    .bind(grant.account_id.as_ref().map(AccountId::as_str))
                    .bind(grant.scopes.to_string())
                    .bind(grant.sid.as_deref())
                    .bind(grant.session_digest.as_ref().map(TokenDigest::as_str))
                    .bind(grant.auth_time.map(|t| t.0))
                    .bind(amr)
                    .bind(sql::json_list(&grant.resources))
                    .bind(grant.parent_id.as_deref())
                    .bind(grant.created_at.0)
                    .bind(grant.revoked_at.map(|t| t.0))
                    .bind(grant.dpop_jkt.as_deref())
            }

            /// Writes a grant and its first refresh token (if any) on `conn`.
            async fn write_grant(
                conn: &mut Conn,
                grant: &Grant,
                refresh: Option<&RefreshToken>,
            ) -> Result<(), StoreError> {
                let inserted = grant_query(sql::INSERT_GRANT, grant).execute(&mut *conn).await;
                match inserted {
                    Err(e) if sql::is_unique_violation(&e) => {
                        return Err(StoreError::Conflict("grant"));
                    }
                    other => other?,
                };
                if let Some(refresh) = refresh {
                    write_refresh_token(conn, refresh).await?;
                }
                Ok(())
            }

            async fn write_refresh_token(conn: &mut Conn, token: &RefreshToken) -> Result<(), StoreError> {
                let inserted = sqlx::query(sql::INSERT_REFRESH_TOKEN)
                    .bind(token.digest.as_str())
                    .bind(token.grant_id.as_str())
                    .bind(token.created_at.0)
                    .bind(token.expires_at.0)
                    .bind(token.used_at.map(|t| t.0))
                    .execute(conn)
                    .await;
                match inserted {
                    Err(e) if sql::is_unique_violation(&e) => Err(StoreError::Conflict("refresh token")),
                    other => other.map(|_| ()).map_err(StoreError::from),
                }
            }

            /// Revokes the grant `id` and its descendants at `now` (a grant
            /// revoked before keeps its time).
            async fn revoke_family(conn: &mut Conn, id: &str, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query(sql::REVOKE_GRANT_FAMILY)
                    .bind(id)
                    .bind(now.0)
                    .execute(conn)
                    .await?;
                Ok(())
            }

            /// After a use that changed no row (`used_at` was set): the grant
            /// the first use issued, looked up by `lookup` ([`sql::AUTH_CODE_GRANT`]
            /// or [`sql::REFRESH_TOKEN_GRANT`]), is revoked with its family and
            /// the transaction committed: `Replayed`; no such row: `Unknown`.
            async fn replayed(
                mut tx: sqlx::Transaction<'static, $db>,
                lookup: &'static str,
                digest: &TokenDigest,
                now: Timestamp,
            ) -> Result<Redemption, StoreError> {
                let outcome = revoke_replayed(&mut tx, lookup, digest, now).await?;
                match outcome {
                    Redemption::Replayed => tx.commit().await?,
                    _ => tx.rollback().await?,
                }
                Ok(outcome)
            }

            /// A code or refresh token used before: revokes the family its
            /// first use issued (`lookup` finds the grant by `digest`) on
            /// `conn`; `Unknown` if there is no such code or token.
            async fn revoke_replayed(
                conn: &mut Conn,
                lookup: &'static str,
                digest: &TokenDigest,
                now: Timestamp,
            ) -> Result<Redemption, StoreError> {
                let grant_id = sqlx::query_scalar::<_, String>(lookup)
                    .bind(digest.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                match grant_id {
                    Some(grant_id) => {
                        // The grant may not exist yet (the first use has not
                        // committed): then there is nothing to revoke.
                        revoke_family(conn, &grant_id, now).await?;
                        Ok(Redemption::Replayed)
                    }
                    None => Ok(Redemption::Unknown),
                }
            }

            /// Gathers the rows of a joined read (one per ban) into the
            /// account and its bans.
            fn account_bans(
                id: &AccountId,
                first: sql::AccountPart,
                bans: impl Iterator<Item = sql::BanPart>,
                first_ban: sql::BanPart,
            ) -> Result<Option<$crate::AccountBans>, StoreError> {
                let Some(account) = first.into_account(id)? else {
                    return Ok(None);
                };
                let bans = std::iter::once(first_ban)
                    .chain(bans)
                    .filter_map(|b| b.into_ban(id))
                    .collect();
                Ok(Some($crate::AccountBans { account, bans }))
            }

            /// `statement` ([`sql::INSERT_AUTH_CODE_SQLITE`] or
            /// [`sql::INSERT_AUTH_CODE_POSTGRES`]) with the code's columns
            /// bound, `$1` to `$18`.
            fn code_query(statement: &'static str, code: &AuthCode) -> Query {
                let amr = code.amr.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" ");
                sqlx::query(statement)
                    .bind(code.digest.as_str())
                    .bind(code.client_id.as_str())
                    .bind(code.account_id.as_str())
                    .bind(code.session_digest.as_str())
                    .bind(code.sid.as_str())
                    .bind(code.redirect_uri.as_str())
                    .bind(code.scopes.to_string())
                    .bind(code.nonce.as_deref())
                    .bind(code.code_challenge.as_deref())
                    .bind(code.auth_time.0)
                    .bind(amr)
                    .bind(code.acr_values.as_deref())
                    .bind(sql::json_list(&code.resources))
                    .bind(code.created_at.0)
                    .bind(code.expires_at.0)
                    .bind(code.used_at.map(|t| t.0))
                    .bind(code.grant_id.as_str())
                    .bind(code.dpop_jkt.as_deref())
            }

            /// Hands `job` to the batch task (started on first use) and
            /// waits for its answer, which comes after the commit.
            async fn hot_write<T>(
                queue: &$crate::batch::Queue,
                writer: &sqlx::Pool<$db>,
                job: HotWrite,
                answer: tokio::sync::oneshot::Receiver<Result<T, StoreError>>,
            ) -> Result<T, StoreError> {
                let sender = queue.get_or_init(|| {
                    let (sender, jobs) = tokio::sync::mpsc::unbounded_channel();
                    tokio::spawn(batch_writer(writer.clone(), jobs));
                    sender
                });
                sender
                    .send(job)
                    .map_err(|_| $crate::batch::failed("the batch writer has stopped"))?;
                answer
                    .await
                    .map_err(|_| $crate::batch::failed("the batch writer has stopped"))?
            }

            /// Stores `code` with `statement` ([`sql::INSERT_AUTH_CODE_SQLITE`]
            /// or [`sql::INSERT_AUTH_CODE_POSTGRES`]) on `conn`.
            async fn insert_code(conn: &mut Conn, statement: &'static str, code: &AuthCode) -> Result<(), StoreError> {
                match code_query(statement, code).execute(&mut *conn).await {
                    Err(e) if sql::is_unique_violation(&e) => Err(StoreError::Conflict("auth code")),
                    other => other.map(|_| ()).map_err(StoreError::from),
                }
            }

            /// Redeems the code `digest` for `grant` (and `refresh`) with
            /// `statement` ([`sql::REDEEM_AUTH_CODE_SQLITE`] or
            /// [`sql::REDEEM_AUTH_CODE_POSTGRES`]) on `conn`: whether it
            /// did (false: used before, never issued, or its account has
            /// gone since the code was read: codes have no foreign keys).
            async fn redeem_code(
                conn: &mut Conn,
                statement: &'static str,
                digest: &TokenDigest,
                grant: &Grant,
                refresh: Option<&RefreshToken>,
                now: Timestamp,
            ) -> Result<bool, StoreError> {
                let issued = grant_query(statement, grant)
                    .bind(now.0)
                    .bind(digest.as_str())
                    .bind(refresh.map(|r| r.digest.as_str()))
                    .bind(refresh.map(|r| r.created_at.0))
                    .bind(refresh.map(|r| r.expires_at.0))
                    .bind(refresh.and_then(|r| r.used_at.map(|t| t.0)))
                    .fetch_all(&mut *conn)
                    .await;
                match issued {
                    Err(e) if sql::is_unique_violation(&e) => Err(StoreError::Conflict("grant")),
                    Err(e) if sql::is_foreign_key_violation(&e) => Ok(false),
                    other => Ok(!other?.is_empty()),
                }
            }

            /// One hot write inside the batch's transaction.
            async fn run_hot(conn: &mut Conn, job: &HotWrite) -> Result<Option<Redemption>, StoreError> {
                match job {
                    HotWrite::InsertCode { code, .. } => insert_code(conn, sql::INSERT_AUTH_CODE_SQLITE, code)
                        .await
                        .map(|()| None),
                    HotWrite::Redeem {
                        digest,
                        grant,
                        refresh,
                        now,
                        ..
                    } => {
                        if redeem_code(
                            conn,
                            sql::REDEEM_AUTH_CODE_SQLITE,
                            digest,
                            grant,
                            refresh.as_ref(),
                            *now,
                        )
                        .await?
                        {
                            return Ok(Some(Redemption::Issued));
                        }
                        // Used before: revoke what the first use issued.
                        revoke_replayed(conn, sql::AUTH_CODE_GRANT, digest, *now)
                            .await
                            .map(Some)
                    }
                }
            }

            /// Answers `job` with `outcome` (what [`run_hot`] returned).
            fn answer(job: HotWrite, outcome: Result<Option<Redemption>, StoreError>) {
                match job {
                    HotWrite::InsertCode { reply, .. } => {
                        let _ = reply.send(outcome.map(|_| ()));
                    }
                    HotWrite::Redeem { reply, .. } => {
                        let _ = reply.send(outcome.map(|r| r.unwrap_or(Redemption::Unknown)));
                    }
                }
            }

            /// The batch task (see `batch.rs`): every hot write queued
            /// while the last batch ran goes into the next transaction.
            async fn batch_writer(writer: sqlx::Pool<$db>, mut jobs: tokio::sync::mpsc::UnboundedReceiver<HotWrite>) {
                // Writes to run again: they shared a transaction with one
                // that failed, and were rolled back with it.
                let mut again = std::collections::VecDeque::new();
                loop {
                    let mut batch: Vec<HotWrite> = again.drain(..).collect();
                    if batch.is_empty() {
                        match jobs.recv().await {
                            Some(job) => batch.push(job),
                            None => return,
                        }
                    }
                    while batch.len() < $crate::batch::MAX_BATCH {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let mut tx = match writer.begin().await {
                        Ok(tx) => tx,
                        Err(e) => {
                            for job in batch {
                                answer(job, Err($crate::batch::failed(&e.to_string())));
                            }
                            continue;
                        }
                    };
                    let mut done = Vec::with_capacity(batch.len());
                    let mut rest = batch.into_iter();
                    let mut failed = false;
                    while let Some(job) = rest.next() {
                        match run_hot(&mut tx, &job).await {
                            Ok(outcome) => done.push((job, outcome)),
                            Err(e) => {
                                // This write fails alone: the transaction is
                                // rolled back (dropped) and the others run
                                // again in the next one.
                                answer(job, Err(e));
                                again.extend(done.drain(..).map(|(job, _)| job));
                                again.extend(rest.by_ref());
                                failed = true;
                            }
                        }
                    }
                    if failed {
                        drop(tx);
                        continue;
                    }
                    let committed = tx.commit().await.map_err(|e| e.to_string());
                    for (job, outcome) in done {
                        match &committed {
                            Ok(()) => answer(job, Ok(outcome)),
                            Err(why) => answer(job, Err($crate::batch::failed(why))),
                        }
                    }
                }
            }

            /// Bumps `cache`'s counter, commits, and drops what this store
            /// remembers of the table (and, with `also`, of another cache that
            /// follows the same counter); then waits out [`CHECK_EVERY`], so
            /// that when the write returns every server sharing the
            /// database (this one, others, the one the command line is
            /// talking to) answers with it (see `cache.rs`).
            async fn changed<K: Eq + std::hash::Hash, V: Clone>(
                mut tx: sqlx::Transaction<'static, $db>,
                cache: &GenerationCache<K, V>,
                also: impl FnOnce(),
            ) -> Result<(), StoreError> {
                sqlx::query(sql::BUMP_GENERATION)
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
                tx: sqlx::Transaction<'static, $db>,
                caches: &$crate::cache::Caches,
            ) -> Result<(), StoreError> {
                changed(tx, &caches.clients, || caches.public_origins.invalidate()).await
            }

            /// What `cache` remembers of `key`, or `load`'s answer, remembered
            /// when it is `Some` (see `cache.rs`).
            async fn cached<K, V, F>(
                pool: &sqlx::Pool<$db>,
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
                        let generation = sqlx::query_scalar::<_, i64>(sql::GENERATION)
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
            impl Store for $store {
                fn backend(&self) -> Backend {
                    $backend
                }

                async fn migrate(&self) -> Result<(), StoreError> {
                    $migrator.run(&self.writer).await?;
                    Ok(())
                }

                async fn ping(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }

                // --- accounts -----------------------------------------------

                async fn create_account(&self, account: &Account, audit: &AuditEvent) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    let inserted = sqlx::query(sql::INSERT_ACCOUNT)
                        .bind(account.id.as_str())
                        .bind(account.email.as_str())
                        .bind(account.email_verified)
                        .bind(account.password_hash.expose().as_str())
                        .bind(account.created_at.0)
                        .bind(account.updated_at.0)
                        .bind(account.profile.name.as_deref())
                        .bind(account.profile.given_name.as_deref())
                        .bind(account.profile.family_name.as_deref())
                        .bind(account.profile.preferred_username.as_deref())
                        .bind(account.profile.locale.as_deref())
                        .bind(account.profile.zoneinfo.as_deref())
                        .bind(account.profile.updated_at.map(|t| t.0))
                        .execute(&mut *tx)
                        .await;
                    match inserted {
                        Err(e) if sql::is_unique_violation(&e) => {
                            return Err(StoreError::Conflict("email"));
                        }
                        other => other?,
                    };
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn account_by_id(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
                    sqlx::query_as::<_, AccountRow>(sql::ACCOUNT_BY_ID)
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Account::try_from)
                        .transpose()
                }

                async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError> {
                    sqlx::query_as::<_, AccountRow>(sql::ACCOUNT_BY_EMAIL)
                        .bind(email.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Account::try_from)
                        .transpose()
                }

                async fn set_profile(
                    &self,
                    id: &AccountId,
                    profile: &Profile,
                    now: Timestamp,
                    audit: &AuditEvent,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.writer.begin().await?;
                    let updated = sqlx::query(sql::SET_PROFILE)
                        .bind(id.as_str())
                        .bind(profile.name.as_deref())
                        .bind(profile.given_name.as_deref())
                        .bind(profile.family_name.as_deref())
                        .bind(profile.preferred_username.as_deref())
                        .bind(profile.locale.as_deref())
                        .bind(profile.zoneinfo.as_deref())
                        .bind(now.0)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if updated == 0 {
                        return Ok(false);
                    }
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn change_password(
                    &self,
                    id: &AccountId,
                    new_hash: &str,
                    keep: Option<&TokenDigest>,
                    now: Timestamp,
                    audit: &AuditEvent,
                    outbox: &[OutboxMessage],
                ) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    set_password(&mut tx, id, new_hash, keep, now).await?;
                    insert_outbox(&mut tx, outbox).await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn delete_account(
                    &self,
                    id: &AccountId,
                    audit: &AuditEvent,
                    outbox: &[OutboxMessage],
                ) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    // Sessions, one-time codes and authorization codes (which
                    // have no foreign keys) are deleted explicitly. The other
                    // OAuth records (consents, grants and their refresh
                    // tokens, the sessions' client links) go by the foreign
                    // keys' `ON DELETE CASCADE`, as for `delete_client`.
                    for statement in [
                        sql::DELETE_SESSIONS_OF,
                        sql::DELETE_CODES_OF,
                        sql::DELETE_AUTH_CODES_OF_ACCOUNT,
                        sql::DELETE_ACCOUNT,
                    ] {
                        sqlx::query(statement).bind(id.as_str()).execute(&mut *tx).await?;
                    }
                    insert_outbox(&mut tx, outbox).await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                // --- one-time codes -----------------------------------------

                async fn insert_code(&self, code: &OneTimeCode, audit: Option<&AuditEvent>) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    sqlx::query(sql::RETIRE_CODES)
                        .bind(code.account_id.as_str())
                        .bind(code.purpose.as_str())
                        .bind(code.created_at.0)
                        .execute(&mut *tx)
                        .await?;
                    let attempts = i32::try_from(code.attempts).unwrap_or(i32::MAX);
                    sqlx::query(sql::INSERT_CODE)
                        .bind(code.id.as_str())
                        .bind(code.purpose.as_str())
                        .bind(code.account_id.as_str())
                        .bind(code.email.as_str())
                        .bind(code.code_digest.as_str())
                        .bind(code.link_digest.as_str())
                        .bind(code.created_at.0)
                        .bind(code.expires_at.0)
                        .bind(code.used_at.map(|t| t.0))
                        .bind(attempts)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(audit) = audit {
                        insert_audit(&mut tx, audit).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn code_by_link(
                    &self,
                    purpose: CodePurpose,
                    link: &TokenDigest,
                ) -> Result<Option<OneTimeCode>, StoreError> {
                    sqlx::query_as::<_, CodeRow>(sql::CODE_BY_LINK)
                        .bind(link.as_str())
                        .bind(purpose.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(OneTimeCode::try_from)
                        .transpose()
                }

                async fn latest_code(
                    &self,
                    account: &AccountId,
                    purpose: CodePurpose,
                ) -> Result<Option<OneTimeCode>, StoreError> {
                    sqlx::query_as::<_, CodeRow>(sql::LATEST_CODE)
                        .bind(account.as_str())
                        .bind(purpose.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(OneTimeCode::try_from)
                        .transpose()
                }

                async fn reserve_code_attempt(&self, code_id: &str) -> Result<bool, StoreError> {
                    let counted = sqlx::query(sql::RESERVE_CODE_ATTEMPT)
                        .bind(code_id)
                        .bind(i64::from(gatehouse_core::code::MAX_ATTEMPTS))
                        .execute(&self.writer)
                        .await?
                        .rows_affected();
                    Ok(counted == 1)
                }

                async fn redeem_code(
                    &self,
                    code: &OneTimeCode,
                    effect: &CodeEffect,
                    now: Timestamp,
                    audit: &AuditEvent,
                    outbox: &[OutboxMessage],
                ) -> Result<Redeemed, StoreError> {
                    let mut tx = self.writer.begin().await?;
                    let used = sqlx::query(sql::USE_CODE)
                        .bind(code.id.as_str())
                        .bind(now.0)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if used == 0 {
                        tx.rollback().await?;
                        return Ok(Redeemed::AlreadyUsed);
                    }
                    let account = &code.account_id;
                    match effect {
                        CodeEffect::VerifyEmail => {
                            // Does nothing if the address changed since the
                            // code was sent; the code is used all the same.
                            sqlx::query(sql::VERIFY_EMAIL)
                                .bind(account.as_str())
                                .bind(code.email.as_str())
                                .bind(now.0)
                                .execute(&mut *tx)
                                .await?;
                        }
                        CodeEffect::ResetPassword { new_hash, keep } => {
                            set_password(&mut tx, account, new_hash.expose(), keep.as_ref(), now).await?;
                        }
                        CodeEffect::ChangeEmail => {
                            let changed = sqlx::query(sql::CHANGE_EMAIL)
                                .bind(account.as_str())
                                .bind(code.email.as_str())
                                .bind(now.0)
                                .execute(&mut *tx)
                                .await;
                            match changed {
                                Err(e) if sql::is_unique_violation(&e) => {
                                    // The code stays unused.
                                    tx.rollback().await?;
                                    return Ok(Redeemed::EmailTaken);
                                }
                                other => other?,
                            };
                        }
                    }
                    insert_outbox(&mut tx, outbox).await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(Redeemed::Done)
                }

                // --- sessions -----------------------------------------------

                async fn create_session(&self, session: &Session, audit: &AuditEvent) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    sqlx::query(sql::INSERT_SESSION)
                        .bind(session.id_digest.as_str())
                        .bind(session.handle.as_str())
                        .bind(session.account_id.as_str())
                        .bind(session.created_at.0)
                        .bind(session.auth_time.0)
                        .bind(session.amr_string())
                        .bind(session.last_seen_at.0)
                        .bind(session.user_agent.as_str())
                        .bind(session.ip.as_str())
                        .bind(session.needs_reauth)
                        .execute(&mut *tx)
                        .await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn session(&self, id: &TokenDigest) -> Result<Option<Session>, StoreError> {
                    let row = sqlx::query_as::<_, SessionRow>(sql::SESSION_BY_ID)
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(Session::from))
                }

                async fn session_with_account(
                    &self,
                    id: &TokenDigest,
                ) -> Result<Option<(Session, $crate::AccountBans)>, StoreError> {
                    let mut rows = sqlx::query_as::<_, sql::SessionAccountRow>(sql::SESSION_WITH_ACCOUNT)
                        .bind(id.as_str())
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter();
                    let Some(first) = rows.next() else {
                        return Ok(None);
                    };
                    let session = Session::from(first.session);
                    let holder = account_bans(&session.account_id, first.account, rows.map(|r| r.ban), first.ban)?;
                    Ok(holder.map(|h| (session, h)))
                }

                async fn sessions_of(&self, account: &AccountId) -> Result<Vec<Session>, StoreError> {
                    let rows = sqlx::query_as::<_, SessionRow>(sql::SESSIONS_OF)
                        .bind(account.as_str())
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(Session::from).collect())
                }

                async fn touch_session(&self, id: &TokenDigest, now: Timestamp) -> Result<(), StoreError> {
                    sqlx::query(sql::TOUCH_SESSION)
                        .bind(id.as_str())
                        .bind(now.0)
                        .execute(&self.writer)
                        .await?;
                    Ok(())
                }

                async fn reauthenticate_session(
                    &self,
                    id: &TokenDigest,
                    now: Timestamp,
                    amr: &[AuthMethod],
                    audit: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let amr = amr.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" ");
                    let mut tx = self.writer.begin().await?;
                    sqlx::query(sql::REAUTHENTICATE_SESSION)
                        .bind(id.as_str())
                        .bind(now.0)
                        .bind(amr)
                        .execute(&mut *tx)
                        .await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn end_sessions(
                    &self,
                    account: &AccountId,
                    which: &SessionSelector,
                    audit: &AuditEvent,
                    outbox: &[OutboxMessage],
                ) -> Result<u64, StoreError> {
                    let (statement, selected) = sql::end_sessions(which);
                    let mut query = sqlx::query(statement).bind(account.as_str());
                    if let Some(selected) = selected {
                        query = query.bind(selected);
                    }
                    let mut tx = self.writer.begin().await?;
                    let ended = query.execute(&mut *tx).await?.rows_affected();
                    insert_outbox(&mut tx, outbox).await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(ended)
                }

                // --- throttling ---------------------------------------------

                async fn throttle_window(&self, key: &str) -> Result<Option<Window>, StoreError> {
                    sqlx::query_as::<_, WindowRow>(sql::THROTTLE_WINDOW)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Window::try_from)
                        .transpose()
                }

                async fn throttle_reserve(
                    &self,
                    key: &str,
                    now: Timestamp,
                    policy: Policy,
                ) -> Result<Option<Window>, StoreError> {
                    sqlx::query_as::<_, WindowRow>(sql::THROTTLE_RESERVE)
                        .bind(key)
                        .bind(now.0)
                        .bind(now.minus(policy.window_secs).0)
                        .bind(i64::from(policy.max_failures))
                        .fetch_optional(&self.writer)
                        .await?
                        .map(Window::try_from)
                        .transpose()
                }

                async fn throttle_release(&self, key: &str, started_at: Timestamp) -> Result<(), StoreError> {
                    sqlx::query(sql::THROTTLE_RELEASE)
                        .bind(key)
                        .bind(started_at.0)
                        .execute(&self.writer)
                        .await?;
                    Ok(())
                }

                async fn throttle_clear(&self, key: &str) -> Result<(), StoreError> {
                    sqlx::query(sql::THROTTLE_CLEAR)
                        .bind(key)
                        .execute(&self.writer)
                        .await?;
                    Ok(())
                }

                // --- audit log ----------------------------------------------

                async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
                    let mut conn = self.writer.acquire().await?;
                    insert_audit(&mut conn, event).await
                }

                async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
                    let select = sql::audit_select(query);
                    let mut q = sqlx::query_as::<_, AuditRow>(select.sql);
                    if let Some(account_id) = select.account_id {
                        q = q.bind(account_id);
                    }
                    if let Some(kind) = select.kind {
                        q = q.bind(kind);
                    }
                    let rows = q
                        .bind(select.after_seq)
                        .bind(select.limit)
                        .fetch_all(&self.pool)
                        .await?;
                    rows.into_iter().map(AuditRecord::try_from).collect()
                }

                // --- OAuth clients ------------------------------------------

                async fn create_client(&self, client: &Client, audit: &AuditEvent) -> Result<(), StoreError> {
                    // A new id is in no cache (unknown ids are not remembered,
                    // see `client`), but a public client's redirect URIs add
                    // to the cached origins: then the counter moves.
                    let mut tx = self.writer.begin().await?;
                    let inserted = client_query(sql::INSERT_CLIENT, client)
                        .bind(client.created_at.0)
                        .execute(&mut *tx)
                        .await;
                    match inserted {
                        Err(e) if sql::is_unique_violation(&e) => return Err(StoreError::Conflict("client")),
                        other => other.map_err(StoreError::from)?,
                    };
                    insert_audit(&mut tx, audit).await?;
                    if client.is_public() {
                        clients_changed(tx, &self.caches).await
                    } else {
                        tx.commit().await.map_err(StoreError::from)
                    }
                }

                async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
                    let load = async {
                        sqlx::query_as::<_, ClientRow>(sql::CLIENT_BY_ID)
                            .bind(id.as_str())
                            .fetch_optional(&self.pool)
                            .await?
                            .map(Client::try_from)
                            .transpose()
                    };
                    // Unknown ids are not remembered: they cannot fill the memory.
                    cached(&self.pool, &self.caches.clients, id, load).await
                }

                async fn is_public_client_origin(&self, origin: &str) -> Result<bool, StoreError> {
                    let load = async {
                        let mut origins = std::collections::HashSet::new();
                        for row in sqlx::query_as::<_, ClientRow>(sql::PUBLIC_CLIENTS)
                            .fetch_all(&self.pool)
                            .await?
                        {
                            origins.extend(Client::try_from(row)?.cors_origins());
                        }
                        Ok(Some(std::sync::Arc::new(origins)))
                    };
                    let origins = cached(&self.pool, &self.caches.public_origins, &(), load).await?;
                    Ok(origins.is_some_and(|o| o.contains(origin)))
                }

                async fn clients(&self) -> Result<Vec<Client>, StoreError> {
                    sqlx::query_as::<_, ClientRow>(sql::CLIENTS)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(Client::try_from)
                        .collect()
                }

                async fn update_client(&self, client: &Client, audit: &AuditEvent) -> Result<bool, StoreError> {
                    let mut tx = self.writer.begin().await?;
                    let updated = client_query(sql::UPDATE_CLIENT, client)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if updated == 0 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    insert_audit(&mut tx, audit).await?;
                    clients_changed(tx, &self.caches).await?;
                    Ok(true)
                }

                async fn delete_client(&self, id: &ClientId, audit: &AuditEvent) -> Result<bool, StoreError> {
                    let mut tx = self.writer.begin().await?;
                    sqlx::query(sql::DELETE_AUTH_CODES_OF_CLIENT)
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                    let deleted = sqlx::query(sql::DELETE_CLIENT)
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if deleted == 0 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    insert_audit(&mut tx, audit).await?;
                    clients_changed(tx, &self.caches).await?;
                    Ok(true)
                }

                // --- signing keys -------------------------------------------

                async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
                    sqlx::query_as::<_, KeyRow>(sql::SIGNING_KEYS)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(StoredKey::try_from)
                        .collect()
                }

                async fn add_signing_key(&self, key: &StoredKey, audit: &AuditEvent) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    sqlx::query(sql::RETIRE_SIGNING_KEYS)
                        .bind(key.alg.as_str())
                        .bind(key.signs_from.0)
                        .execute(&mut *tx)
                        .await?;
                    let inserted = sqlx::query(sql::INSERT_SIGNING_KEY)
                        .bind(key.kid.as_str())
                        .bind(key.alg.as_str())
                        .bind(key.public_jwk.as_str())
                        .bind(key.private_encrypted.as_str())
                        .bind(key.created_at.0)
                        .bind(key.signs_from.0)
                        .bind(key.retired_at.map(|t| t.0))
                        .execute(&mut *tx)
                        .await;
                    match inserted {
                        Err(e) if sql::is_unique_violation(&e) => {
                            // Nothing retired either.
                            return Err(StoreError::Conflict("signing key"));
                        }
                        other => other?,
                    };
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn withdraw_signing_keys(
                    &self,
                    alg: SigningAlg,
                    keep: &str,
                    audit: &AuditEvent,
                ) -> Result<u64, StoreError> {
                    let mut tx = self.writer.begin().await?;
                    let withdrawn = sqlx::query(sql::WITHDRAW_SIGNING_KEYS)
                        .bind(alg.as_str())
                        .bind(keep)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(withdrawn)
                }

                async fn purge_signing_keys(&self, before: Timestamp) -> Result<u64, StoreError> {
                    let purged = sqlx::query(sql::PURGE_SIGNING_KEYS)
                        .bind(before.0)
                        .execute(&self.writer)
                        .await?
                        .rows_affected();
                    Ok(purged)
                }

                // --- interactions -------------------------------------------

                async fn put_interaction(&self, interaction: &Interaction) -> Result<(), StoreError> {
                    sqlx::query(sql::PUT_INTERACTION)
                        .bind(interaction.digest.as_str())
                        .bind(interaction.query.as_str())
                        .bind(interaction.created_at.0)
                        .bind(interaction.expires_at.0)
                        .bind(interaction.chosen_account.as_ref().map(AccountId::as_str))
                        .execute(&self.writer)
                        .await?;
                    Ok(())
                }

                async fn interaction(&self, digest: &TokenDigest) -> Result<Option<Interaction>, StoreError> {
                    let row = sqlx::query_as::<_, InteractionRow>(sql::INTERACTION)
                        .bind(digest.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(Interaction::from))
                }

                async fn delete_interaction(&self, digest: &TokenDigest) -> Result<(), StoreError> {
                    sqlx::query(sql::DELETE_INTERACTION)
                        .bind(digest.as_str())
                        .execute(&self.writer)
                        .await?;
                    Ok(())
                }

                async fn purge_expired(&self, before: &$crate::PurgeBefore) -> Result<u64, StoreError> {
                    let mut purged = 0;
                    for (statement, before) in [
                        (sql::PURGE_INTERACTIONS, before.interactions),
                        (sql::PURGE_AUTH_CODES, before.auth_codes),
                        (sql::PURGE_REFRESH_TOKENS, before.refresh_tokens),
                        (sql::PURGE_THROTTLE, before.throttle_windows),
                    ] {
                        loop {
                            let deleted = sqlx::query(statement)
                                .bind(before.0)
                                .bind(sql::PURGE_CHUNK)
                                .execute(&self.writer)
                                .await?
                                .rows_affected();
                            purged += deleted;
                            if deleted < sql::PURGE_CHUNK.unsigned_abs() {
                                break;
                            }
                        }
                    }
                    Ok(purged)
                }

                // --- authorization codes ------------------------------------

                async fn insert_auth_code(&self, code: &AuthCode) -> Result<(), StoreError> {
                    if $backend == Backend::Sqlite {
                        let (reply, answer) = tokio::sync::oneshot::channel();
                        let job = HotWrite::InsertCode {
                            code: code.clone(),
                            reply,
                        };
                        return hot_write(&self.batch, &self.writer, job, answer).await;
                    }
                    let mut conn = self.writer.acquire().await?;
                    insert_code(&mut conn, sql::INSERT_AUTH_CODE_POSTGRES, code).await
                }

                async fn auth_code(&self, digest: &TokenDigest) -> Result<Option<AuthCode>, StoreError> {
                    sqlx::query_as::<_, AuthCodeRow>(sql::AUTH_CODE)
                        .bind(digest.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(AuthCode::try_from)
                        .transpose()
                }

                async fn auth_code_with_account(
                    &self,
                    digest: &TokenDigest,
                ) -> Result<Option<(AuthCode, Option<$crate::AccountBans>)>, StoreError> {
                    let mut rows = sqlx::query_as::<_, sql::AuthCodeAccountRow>(sql::AUTH_CODE_WITH_ACCOUNT)
                        .bind(digest.as_str())
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter();
                    let Some(first) = rows.next() else {
                        return Ok(None);
                    };
                    let code = AuthCode::try_from(first.code)?;
                    let holder = account_bans(&code.account_id, first.account, rows.map(|r| r.ban), first.ban)?;
                    Ok(Some((code, holder)))
                }

                async fn redeem_auth_code(
                    &self,
                    digest: &TokenDigest,
                    grant: &Grant,
                    refresh: Option<&RefreshToken>,
                    now: Timestamp,
                ) -> Result<Redemption, StoreError> {
                    if $backend == Backend::Sqlite {
                        let (reply, answer) = tokio::sync::oneshot::channel();
                        let job = HotWrite::Redeem {
                            digest: digest.clone(),
                            grant: grant.clone(),
                            refresh: refresh.cloned(),
                            now,
                            reply,
                        };
                        return hot_write(&self.batch, &self.writer, job, answer).await;
                    }
                    let mut conn = self.writer.acquire().await?;
                    if redeem_code(
                        &mut conn,
                        sql::REDEEM_AUTH_CODE_POSTGRES,
                        digest,
                        grant,
                        refresh,
                        now,
                    )
                    .await?
                    {
                        return Ok(Redemption::Issued);
                    }
                    drop(conn);
                    // Used before: revoke what the first use issued.
                    replayed(self.writer.begin().await?, sql::AUTH_CODE_GRANT, digest, now).await
                }

                async fn clients_used_by(&self, account: &AccountId) -> Result<Vec<ClientId>, StoreError> {
                    let mut clients = sqlx::query_scalar::<_, String>(sql::CLIENTS_USED_BY)
                        .bind(account.as_str())
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(ClientId)
                        .collect::<Vec<_>>();
                    clients.sort_unstable();
                    clients.dedup();
                    Ok(clients)
                }

                async fn session_clients(&self, session: &TokenDigest) -> Result<Vec<ClientId>, StoreError> {
                    let mut clients = sqlx::query_scalar::<_, String>(sql::SESSION_CLIENTS)
                        .bind(session.as_str())
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(ClientId)
                        .collect::<Vec<_>>();
                    // Byte order on both databases, whatever their collation.
                    clients.sort_unstable();
                    Ok(clients)
                }

                // --- consents -----------------------------------------------

                async fn consent(&self, account: &AccountId, client: &ClientId) -> Result<Option<Consent>, StoreError> {
                    sqlx::query_as::<_, ConsentRow>(sql::CONSENT)
                        .bind(account.as_str())
                        .bind(client.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Consent::try_from)
                        .transpose()
                }

                async fn put_consent(&self, consent: &Consent, audit: &AuditEvent) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    sqlx::query(sql::PUT_CONSENT)
                        .bind(consent.account_id.as_str())
                        .bind(consent.client_id.as_str())
                        .bind(consent.scopes.to_string())
                        .bind(consent.granted_at.0)
                        .execute(&mut *tx)
                        .await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn consents_of(&self, account: &AccountId) -> Result<Vec<Consent>, StoreError> {
                    sqlx::query_as::<_, ConsentRow>(sql::CONSENTS_OF)
                        .bind(account.as_str())
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(Consent::try_from)
                        .collect()
                }

                async fn revoke_consent(
                    &self,
                    account: &AccountId,
                    client: &ClientId,
                    now: Timestamp,
                    audit: &AuditEvent,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.writer.begin().await?;
                    let deleted = sqlx::query(sql::DELETE_CONSENT)
                        .bind(account.as_str())
                        .bind(client.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    // With or without a consent (first-party clients have
                    // none), every grant of the pair goes.
                    sqlx::query(sql::REVOKE_GRANTS_OF)
                        .bind(account.as_str())
                        .bind(client.as_str())
                        .bind(now.0)
                        .execute(&mut *tx)
                        .await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(deleted > 0)
                }

                // --- bans -----------------------------------------------------

                async fn ban(
                    &self,
                    ban: &Ban,
                    now: Timestamp,
                    audit: &AuditEvent,
                    outbox: &[OutboxMessage],
                ) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    let client = ban.client_id.as_ref().map_or("", ClientId::as_str);
                    sqlx::query(sql::UPSERT_BAN)
                        .bind(ban.account_id.as_str())
                        .bind(client)
                        .bind(ban.until.map(|t| t.0))
                        .bind(ban.reason.as_str())
                        .bind(ban.by.as_str())
                        .bind(ban.created_at.0)
                        .execute(&mut *tx)
                        .await?;
                    match &ban.client_id {
                        None => {
                            sqlx::query(sql::DELETE_SESSIONS_OF)
                                .bind(ban.account_id.as_str())
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query(sql::REVOKE_GRANTS_OF_ACCOUNT)
                                .bind(ban.account_id.as_str())
                                .bind(now.0)
                                .execute(&mut *tx)
                                .await?;
                        }
                        Some(client) => {
                            sqlx::query(sql::REVOKE_GRANTS_OF)
                                .bind(ban.account_id.as_str())
                                .bind(client.as_str())
                                .bind(now.0)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    withdraw_suspension_end(&mut tx, &ban.account_id, ban.client_id.as_ref(), now).await?;
                    insert_outbox(&mut tx, outbox).await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn unban(
                    &self,
                    account: &AccountId,
                    client: Option<&ClientId>,
                    audit: &AuditEvent,
                    outbox: &[OutboxMessage],
                ) -> Result<bool, StoreError> {
                    let mut tx = self.writer.begin().await?;
                    let deleted = sqlx::query(sql::DELETE_BAN)
                        .bind(account.as_str())
                        .bind(client.map_or("", ClientId::as_str))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if deleted > 0 {
                        // The unban happens at its audit event's time.
                        withdraw_suspension_end(&mut tx, account, client, audit.at).await?;
                        insert_outbox(&mut tx, outbox).await?;
                    }
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(deleted > 0)
                }

                async fn bans_of(&self, account: &AccountId) -> Result<Vec<Ban>, StoreError> {
                    let rows = sqlx::query_as::<_, sql::BanRow>(sql::BANS_OF)
                        .bind(account.as_str())
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(Ban::from).collect())
                }

                // --- grants and tokens --------------------------------------

                async fn insert_grant(&self, grant: &Grant, refresh: Option<&RefreshToken>) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    write_grant(&mut tx, grant, refresh).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
                    sqlx::query_as::<_, GrantRow>(sql::GRANT)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Grant::try_from)
                        .transpose()
                }

                async fn grant_revoked(&self, id: &str) -> Result<bool, StoreError> {
                    let chain = sqlx::query_as::<_, ChainRow>(sql::GRANT_CHAIN)
                        .bind(id)
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(sql::chain_revoked(&chain))
                }

                async fn revoke_grant(&self, id: &str, now: Timestamp, audit: &AuditEvent) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    revoke_family(&mut tx, id, now).await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn refresh_token(&self, digest: &TokenDigest) -> Result<Option<RefreshToken>, StoreError> {
                    let row = sqlx::query_as::<_, RefreshRow>(sql::REFRESH_TOKEN)
                        .bind(digest.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(RefreshToken::from))
                }

                async fn rotate_refresh_token(
                    &self,
                    old: &TokenDigest,
                    new: &RefreshToken,
                    now: Timestamp,
                ) -> Result<Redemption, StoreError> {
                    let mut tx = self.writer.begin().await?;
                    let used = sqlx::query(sql::USE_REFRESH_TOKEN)
                        .bind(old.as_str())
                        .bind(now.0)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if used == 0 {
                        return replayed(tx, sql::REFRESH_TOKEN_GRANT, old, now).await;
                    }
                    write_refresh_token(&mut tx, new).await?;
                    tx.commit().await?;
                    Ok(Redemption::Issued)
                }

                async fn revoke_jti(
                    &self,
                    jti: &str,
                    expires_at: Timestamp,
                    audit: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let mut tx = self.writer.begin().await?;
                    sqlx::query(sql::REVOKE_JTI)
                        .bind(jti)
                        .bind(expires_at.0)
                        .execute(&mut *tx)
                        .await?;
                    insert_audit(&mut tx, audit).await?;
                    changed(tx, &self.caches.revoked_jtis, || ()).await
                }

                async fn jti_revoked(&self, jti: &str) -> Result<bool, StoreError> {
                    let load = async {
                        let found = sqlx::query_scalar::<_, String>(sql::JTI_REVOKED)
                            .bind(jti)
                            .fetch_optional(&self.pool)
                            .await?;
                        Ok(Some(found.is_some()))
                    };
                    let revoked = cached(&self.pool, &self.caches.revoked_jtis, &jti.to_owned(), load).await?;
                    Ok(revoked.unwrap_or(false))
                }

                async fn dpop_jti_seen(&self, jkt: &str, jti: &str, expires_at: Timestamp) -> Result<bool, StoreError> {
                    // Per process and backend: the purge is housekeeping, any
                    // instance doing it now and then is enough.
                    static INSERTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                    let now = Timestamp::now();
                    if INSERTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % sql::DPOP_PURGE_EVERY == 0 {
                        sqlx::query(sql::PURGE_DPOP_JTIS)
                            .bind(now.0)
                            .execute(&self.writer)
                            .await?;
                    }
                    let inserted = sqlx::query(sql::DPOP_JTI_SEEN)
                        .bind(jkt)
                        .bind(jti)
                        .bind(expires_at.0)
                        .bind(now.0)
                        .execute(&self.writer)
                        .await?
                        .rows_affected();
                    Ok(inserted == 0)
                }

                // --- the outbox ---------------------------------------------

                async fn claim_outbox(
                    &self,
                    now: Timestamp,
                    limit: i64,
                    lease_secs: i64,
                ) -> Result<Vec<OutboxMessage>, StoreError> {
                    let statement = match $backend {
                        Backend::Sqlite => sql::CLAIM_OUTBOX_SQLITE,
                        Backend::Postgres => sql::CLAIM_OUTBOX_POSTGRES,
                    };
                    let mut tx = self.writer.begin().await?;
                    let rows = sqlx::query_as::<_, sql::OutboxRow>(statement)
                        .bind(now.0)
                        .bind(limit)
                        .bind(now.plus(lease_secs).0)
                        .fetch_all(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    rows.into_iter().map(OutboxMessage::try_from).collect()
                }

                async fn outbox_delivered(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
                    sqlx::query(sql::OUTBOX_DELIVERED)
                        .bind(id)
                        .bind(now.0)
                        .execute(&self.writer)
                        .await?;
                    Ok(())
                }

                async fn outbox_failed(
                    &self,
                    id: &str,
                    now: Timestamp,
                    next_attempt_at: Timestamp,
                    error: &str,
                    dead: bool,
                ) -> Result<(), StoreError> {
                    sqlx::query(sql::OUTBOX_FAILED)
                        .bind(id)
                        .bind(now.0)
                        .bind(next_attempt_at.0)
                        .bind(error)
                        .bind(dead)
                        .execute(&self.writer)
                        .await?;
                    Ok(())
                }

                async fn outbox_summary(&self, client: Option<&ClientId>) -> Result<OutboxSummary, StoreError> {
                    let row = sqlx::query_as::<_, sql::OutboxSummaryRow>(sql::OUTBOX_SUMMARY)
                        .bind(client.map(ClientId::as_str))
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(OutboxSummary {
                        pending: row.pending,
                        failed: row.failed,
                        delivered: row.delivered,
                        dead: row.dead,
                    })
                }

                async fn outbox_oldest_waiting(&self) -> Result<Option<Timestamp>, StoreError> {
                    let oldest: Option<i64> = sqlx::query_scalar(sql::OUTBOX_OLDEST_WAITING)
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(oldest.map(Timestamp))
                }

                async fn outbox_messages(
                    &self,
                    client: Option<&ClientId>,
                    limit: i64,
                ) -> Result<Vec<OutboxMessage>, StoreError> {
                    let rows = sqlx::query_as::<_, sql::OutboxRow>(sql::OUTBOX_MESSAGES)
                        .bind(client.map(ClientId::as_str))
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?;
                    rows.into_iter().map(OutboxMessage::try_from).collect()
                }

                async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
                    sqlx::query_as::<_, sql::OutboxRow>(sql::OUTBOX_MESSAGE)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(OutboxMessage::try_from)
                        .transpose()
                }

                async fn outbox_redeliver(
                    &self,
                    id: &str,
                    now: Timestamp,
                    payload: &str,
                    audit: &AuditEvent,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.writer.begin().await?;
                    let changed = sqlx::query(sql::OUTBOX_REDELIVER)
                        .bind(id)
                        .bind(now.0)
                        .bind(payload)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if changed == 0 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(true)
                }
            }
        };
    };
}
