//! The one implementation of [`crate::Store`], written once as a macro and
//! expanded for each backend (`sqlite.rs`, `postgres.rs`). The SQL it runs is
//! in `sql.rs`; what differs between the databases (connecting, migrations)
//! stays in the backend files.
//!
//! Transactions start with a write wherever they write, so on SQLite they
//! take the write lock at once and wait (`busy_timeout`) instead of failing
//! on a lock upgrade.

/// Implements [`crate::Store`] for `$store`, a struct with a
/// `pool: sqlx::Pool<$db>` field, using `$migrator` for `migrate`.
macro_rules! impl_store {
    (store: $store:ty, db: $db:ty, backend: $backend:expr, migrator: $migrator:path $(,)?) => {
        const _: () = {
            use async_trait::async_trait;
            use gatehouse_core::audit::{AuditEvent, AuditRecord};
            use gatehouse_core::code::{CodeEffect, CodePurpose, OneTimeCode};
            use gatehouse_core::session::{AuthMethod, Session, SessionSelector};
            use gatehouse_core::throttle::Window;
            use gatehouse_core::{Account, AccountId, Email, Timestamp, TokenDigest};

            use $crate::sql::{self, AccountRow, AuditRow, CodeRow, SessionRow, WindowRow};
            use $crate::{AuditQuery, Backend, Redeemed, Store, StoreError};

            type Conn = <$db as sqlx::Database>::Connection;

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
                    .execute(conn)
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

            #[async_trait]
            impl Store for $store {
                fn backend(&self) -> Backend {
                    $backend
                }

                async fn migrate(&self) -> Result<(), StoreError> {
                    $migrator.run(&self.pool).await?;
                    Ok(())
                }

                async fn ping(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }

                // --- accounts -----------------------------------------------

                async fn create_account(
                    &self,
                    account: &Account,
                    audit: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    let inserted = sqlx::query(sql::INSERT_ACCOUNT)
                        .bind(account.id.as_str())
                        .bind(account.email.as_str())
                        .bind(account.email_verified)
                        .bind(account.password_hash.expose().as_str())
                        .bind(account.created_at.0)
                        .bind(account.updated_at.0)
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

                async fn account_by_id(
                    &self,
                    id: &AccountId,
                ) -> Result<Option<Account>, StoreError> {
                    sqlx::query_as::<_, AccountRow>(sql::ACCOUNT_BY_ID)
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Account::try_from)
                        .transpose()
                }

                async fn account_by_email(
                    &self,
                    email: &Email,
                ) -> Result<Option<Account>, StoreError> {
                    sqlx::query_as::<_, AccountRow>(sql::ACCOUNT_BY_EMAIL)
                        .bind(email.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Account::try_from)
                        .transpose()
                }

                async fn change_password(
                    &self,
                    id: &AccountId,
                    new_hash: &str,
                    keep: Option<&TokenDigest>,
                    now: Timestamp,
                    audit: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    set_password(&mut tx, id, new_hash, keep, now).await?;
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn delete_account(
                    &self,
                    id: &AccountId,
                    audit: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    // The foreign keys cascade; deleting explicitly does not
                    // depend on them being enforced.
                    for statement in [
                        sql::DELETE_SESSIONS_OF,
                        sql::DELETE_CODES_OF,
                        sql::DELETE_ACCOUNT,
                    ] {
                        sqlx::query(statement)
                            .bind(id.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                // --- one-time codes -----------------------------------------

                async fn insert_code(
                    &self,
                    code: &OneTimeCode,
                    audit: Option<&AuditEvent>,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
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

                async fn count_code_attempt(&self, code_id: &str) -> Result<(), StoreError> {
                    sqlx::query(sql::COUNT_CODE_ATTEMPT)
                        .bind(code_id)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn redeem_code(
                    &self,
                    code: &OneTimeCode,
                    effect: &CodeEffect,
                    now: Timestamp,
                    audit: &AuditEvent,
                ) -> Result<Redeemed, StoreError> {
                    let mut tx = self.pool.begin().await?;
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
                            set_password(&mut tx, account, new_hash.expose(), keep.as_ref(), now)
                                .await?;
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
                    insert_audit(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(Redeemed::Done)
                }

                // --- sessions -----------------------------------------------

                async fn create_session(
                    &self,
                    session: &Session,
                    audit: &AuditEvent,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
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

                async fn sessions_of(
                    &self,
                    account: &AccountId,
                ) -> Result<Vec<Session>, StoreError> {
                    let rows = sqlx::query_as::<_, SessionRow>(sql::SESSIONS_OF)
                        .bind(account.as_str())
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(Session::from).collect())
                }

                async fn touch_session(
                    &self,
                    id: &TokenDigest,
                    now: Timestamp,
                ) -> Result<(), StoreError> {
                    sqlx::query(sql::TOUCH_SESSION)
                        .bind(id.as_str())
                        .bind(now.0)
                        .execute(&self.pool)
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
                    let mut tx = self.pool.begin().await?;
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
                ) -> Result<u64, StoreError> {
                    let (statement, selected) = sql::end_sessions(which);
                    let mut query = sqlx::query(statement).bind(account.as_str());
                    if let Some(selected) = selected {
                        query = query.bind(selected);
                    }
                    let mut tx = self.pool.begin().await?;
                    let ended = query.execute(&mut *tx).await?.rows_affected();
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

                async fn throttle_fail(
                    &self,
                    key: &str,
                    now: Timestamp,
                    window_secs: i64,
                ) -> Result<Window, StoreError> {
                    sqlx::query_as::<_, WindowRow>(sql::THROTTLE_FAIL)
                        .bind(key)
                        .bind(now.0)
                        .bind(now.minus(window_secs).0)
                        .fetch_one(&self.pool)
                        .await?
                        .try_into()
                }

                async fn throttle_clear(&self, key: &str) -> Result<(), StoreError> {
                    sqlx::query(sql::THROTTLE_CLEAR)
                        .bind(key)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                // --- audit log ----------------------------------------------

                async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
                    let mut conn = self.pool.acquire().await?;
                    insert_audit(&mut conn, event).await
                }

                async fn audit_events(
                    &self,
                    query: &AuditQuery,
                ) -> Result<Vec<AuditRecord>, StoreError> {
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
            }
        };
    };
}
