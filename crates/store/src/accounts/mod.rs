//! Accounts: the record, its profile and password, the mailed one-time
//! codes and what redeeming one does, and deletion.

use crate::{OutboxMessage, Redeemed, StoreError};
use async_trait::async_trait;
use gatehouse_core::audit::AuditEvent;
use gatehouse_core::code::{CodeEffect, CodePurpose, OneTimeCode};
use gatehouse_core::{Account, AccountId, Email, Profile, Timestamp, TokenDigest};

pub(crate) mod sql;

/// Accounts: sign-up, profile, password, mailed codes, deletion.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Inserts the account. `Conflict` if the email is taken (nothing written).
    async fn create_account(&self, account: &Account, audit: &AuditEvent) -> Result<(), StoreError>;

    async fn account_by_id(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;

    async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError>;

    /// Replaces the profile (its `updated_at` becomes `now`, as does the
    /// account's), with its audit event; false if there is no such account
    /// (nothing written).
    async fn set_profile(
        &self,
        id: &AccountId,
        profile: &Profile,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Replaces the password hash; every session of the account except `keep`
    /// is marked as needing re-authentication. Writes `outbox` (security
    /// events to the account's clients) in the same transaction.
    async fn change_password(
        &self,
        id: &AccountId,
        new_hash: &str,
        keep: Option<&TokenDigest>,
        now: Timestamp,
        audit: &AuditEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError>;

    /// Deletes the account, its sessions and its codes, and writes `outbox`
    /// in the same transaction. Audit events stay.
    async fn delete_account(
        &self,
        id: &AccountId,
        audit: &AuditEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError>;

    /// Stores a new code; earlier unused codes of the same account and purpose
    /// stop working (they are marked used).
    async fn insert_code(&self, code: &OneTimeCode, audit: Option<&AuditEvent>) -> Result<(), StoreError>;

    async fn code_by_link(&self, purpose: CodePurpose, link: &TokenDigest) -> Result<Option<OneTimeCode>, StoreError>;

    /// The newest unused code of this purpose for this account.
    async fn latest_code(&self, account: &AccountId, purpose: CodePurpose) -> Result<Option<OneTimeCode>, StoreError>;

    /// Reserves one guess of the short code before it is checked, in one
    /// atomic statement: counted only while the code is unused and fewer
    /// than `code::MAX_ATTEMPTS` are counted, so however many guesses arrive
    /// at once, at most that many are checked. Whether it was counted
    /// (`false` for an unknown id too: the same statement runs either way).
    async fn reserve_code_attempt(&self, code_id: &str) -> Result<bool, StoreError>;

    /// Marks the code used (only if still unused) and applies `effect` to
    /// the code's account, in one transaction with `audit` and, only if the
    /// effect was applied ([`Redeemed::Done`]), `outbox`.
    async fn redeem_code(
        &self,
        code: &OneTimeCode,
        effect: &CodeEffect,
        now: Timestamp,
        audit: &AuditEvent,
        outbox: &[OutboxMessage],
    ) -> Result<Redeemed, StoreError>;
}

/// Implements [`AccountStore`] for `$store`, inside `impl_store!` (`backend.rs`),
/// whose helpers and imports it uses.
macro_rules! impl_account_store {
    ($store:ty) => {
        /// New password hash, and every session but `keep` must enter it.
        async fn set_password(
            conn: &mut Conn,
            account: &AccountId,
            new_hash: &str,
            keep: Option<&TokenDigest>,
            now: Timestamp,
        ) -> Result<(), StoreError> {
            sqlx::query($crate::accounts::sql::SET_PASSWORD)
                .bind(account.as_str())
                .bind(new_hash)
                .bind(now.0)
                .execute(&mut *conn)
                .await?;
            sqlx::query($crate::sessions::MARK_SESSIONS_REAUTH)
                .bind(account.as_str())
                .bind(keep.map(TokenDigest::as_str))
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        #[async_trait]
        impl $crate::AccountStore for $store {
            async fn create_account(&self, account: &Account, audit: &AuditEvent) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                let inserted = sqlx::query($crate::accounts::sql::INSERT_ACCOUNT)
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
                    Err(e) if $crate::sql::is_unique_violation(&e) => {
                        return Err(StoreError::Conflict("email"));
                    }
                    other => other?,
                };
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn account_by_id(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
                sqlx::query_as::<_, AccountRow>($crate::accounts::sql::ACCOUNT_BY_ID)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(Account::try_from)
                    .transpose()
            }

            async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError> {
                sqlx::query_as::<_, AccountRow>($crate::accounts::sql::ACCOUNT_BY_EMAIL)
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
                let updated = sqlx::query($crate::accounts::sql::SET_PROFILE)
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
                    $crate::sessions::DELETE_SESSIONS_OF,
                    $crate::accounts::sql::DELETE_CODES_OF,
                    $crate::oauth::sql::DELETE_AUTH_CODES_OF_ACCOUNT,
                    $crate::accounts::sql::DELETE_ACCOUNT,
                ] {
                    sqlx::query(statement).bind(id.as_str()).execute(&mut *tx).await?;
                }
                insert_outbox(&mut tx, outbox).await?;
                insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn insert_code(&self, code: &OneTimeCode, audit: Option<&AuditEvent>) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query($crate::accounts::sql::RETIRE_CODES)
                    .bind(code.account_id.as_str())
                    .bind(code.purpose.as_str())
                    .bind(code.created_at.0)
                    .execute(&mut *tx)
                    .await?;
                let attempts = i32::try_from(code.attempts).unwrap_or(i32::MAX);
                sqlx::query($crate::accounts::sql::INSERT_CODE)
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
                sqlx::query_as::<_, CodeRow>($crate::accounts::sql::CODE_BY_LINK)
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
                sqlx::query_as::<_, CodeRow>($crate::accounts::sql::LATEST_CODE)
                    .bind(account.as_str())
                    .bind(purpose.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(OneTimeCode::try_from)
                    .transpose()
            }

            async fn reserve_code_attempt(&self, code_id: &str) -> Result<bool, StoreError> {
                let counted = sqlx::query($crate::accounts::sql::RESERVE_CODE_ATTEMPT)
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
                let used = sqlx::query($crate::accounts::sql::USE_CODE)
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
                        sqlx::query($crate::accounts::sql::VERIFY_EMAIL)
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
                        let changed = sqlx::query($crate::accounts::sql::CHANGE_EMAIL)
                            .bind(account.as_str())
                            .bind(code.email.as_str())
                            .bind(now.0)
                            .execute(&mut *tx)
                            .await;
                        match changed {
                            Err(e) if $crate::sql::is_unique_violation(&e) => {
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
        }
    };
}
