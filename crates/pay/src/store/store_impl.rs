//! The one implementation of [`super::PayStore`], written once as a macro
//! and expanded for each backend (`sqlite.rs`, `postgres.rs`).
//!
//! Transactions that write start with a write, so on SQLite (whose
//! transactions begin DEFERRED) they take the write lock at once and wait
//! on the busy timeout instead of failing on a lock upgrade.

/// Implements [`super::PayStore`] for `$store`, a struct with a
/// `pool: sqlx::Pool<$db>` field.
macro_rules! impl_pay_store {
    (store: $store:ty, db: $db:ty, backend: $backend:expr, migrator: $migrator:path $(,)?) => {
        const _: () = {
            use async_trait::async_trait;
            use gatehouse_core::Timestamp;
            use gatehouse_core::pay::ledger::{Movement, MovementKind};
            use gatehouse_core::pay::notification::{NotificationClaims, PurchaseEvent};
            use gatehouse_core::throttle::{Policy, Window};

            use $crate::store::sql;
            use $crate::store::{
                Backend, Buyer, Contract, ContractCreated, Merchant, OutboxRow, Paid, PayAuditKind, PayAuditRecord,
                PaySession, PayStore, PayStoreError, PendingRow, Purchase, PurchaseLink, StoredPayKey,
            };

            type Conn = <$db as sqlx::Database>::Connection;

            // The payments audit log's write (`ledger_impl.rs`).
            pay_audit_write!();

            // The ledger's writes (`ledger_impl.rs`).
            pay_ledger_writes!();

            /// Writes the merchant's notification, if it has a notify URI.
            async fn notify(
                conn: &mut Conn,
                purchase: &Purchase,
                event: PurchaseEvent,
                now: Timestamp,
            ) -> Result<(), PayStoreError> {
                let merchant = sqlx::query_as::<_, sql::MerchantRow>(sql::MERCHANT)
                    .bind(purchase.merchant.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(uri) = merchant.and_then(|m| m.notify_uri) else {
                    return Ok(());
                };
                let claims = NotificationClaims {
                    aud: purchase.merchant.clone(),
                    iat: now.0,
                    jti: new_id(),
                    event,
                    purchase_id: purchase.id.clone(),
                    contract_hash: purchase.contract_hash.clone(),
                    sub: purchase.sub.clone(),
                    amount: purchase.amount,
                    currency: purchase.currency.clone(),
                };
                let payload =
                    serde_json::to_string(&claims).map_err(|e| PayStoreError::Corrupt(format!("notification: {e}")))?;
                sqlx::query(sql::INSERT_OUTBOX)
                    .bind(new_id())
                    .bind(purchase.merchant.as_str())
                    .bind(uri)
                    .bind(payload)
                    .bind(now.0)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            fn new_id() -> String {
                uuid::Uuid::new_v4().simple().to_string()
            }

            #[async_trait]
            impl PayStore for $store {
                fn backend(&self) -> Backend {
                    $backend
                }

                async fn migrate(&self) -> Result<(), PayStoreError> {
                    $migrator.run(&self.pool).await?;
                    Ok(())
                }

                async fn signing_key(&self) -> Result<Option<StoredPayKey>, PayStoreError> {
                    let row = sqlx::query_as::<_, sql::KeyRow>(sql::SIGNING_KEY)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(|r| StoredPayKey {
                        kid: r.kid,
                        private_encrypted: r.private_encrypted,
                        public_jwk: r.public_jwk,
                        created_at: Timestamp(r.created_at),
                    }))
                }

                async fn insert_signing_key(&self, key: &StoredPayKey) -> Result<(), PayStoreError> {
                    sqlx::query(sql::INSERT_SIGNING_KEY)
                        .bind(key.kid.as_str())
                        .bind(key.private_encrypted.as_str())
                        .bind(key.public_jwk.as_str())
                        .bind(key.created_at.0)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn add_merchant(&self, merchant: Merchant) -> Result<(), PayStoreError> {
                    let origins =
                        serde_json::to_string(&merchant.origins).map_err(|e| PayStoreError::Corrupt(e.to_string()))?;
                    sqlx::query(sql::UPSERT_MERCHANT)
                        .bind(merchant.client_id.as_str())
                        .bind(merchant.name.as_str())
                        .bind(origins)
                        .bind(merchant.notify_uri.as_deref())
                        .bind(Timestamp::now().0)
                        .bind(merchant.fee.fixed)
                        .bind(merchant.fee.basis_points)
                        .bind(merchant.fee.payer.as_str())
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn merchant(&self, client_id: &str) -> Result<Option<Merchant>, PayStoreError> {
                    sqlx::query_as::<_, sql::MerchantRow>(sql::MERCHANT)
                        .bind(client_id)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Merchant::try_from)
                        .transpose()
                }

                async fn merchants(&self) -> Result<Vec<Merchant>, PayStoreError> {
                    sqlx::query_as::<_, sql::MerchantRow>(sql::MERCHANTS)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(Merchant::try_from)
                        .collect()
                }

                async fn buyer(&self, sub: &str) -> Result<Option<Buyer>, PayStoreError> {
                    let row = sqlx::query_as::<_, sql::BuyerRow>(sql::BUYER)
                        .bind(sub)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(|r| Buyer {
                        sub: r.sub,
                        terms_version: r.terms_version,
                        privacy_version: r.privacy_version,
                        agreed_at: r.agreed_at.map(Timestamp),
                        pin_hash: r.pin_hash,
                    }))
                }

                async fn agree(
                    &self,
                    sub: &str,
                    terms: &str,
                    privacy: &str,
                    now: Timestamp,
                ) -> Result<(), PayStoreError> {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(sql::AGREE)
                        .bind(sub)
                        .bind(terms)
                        .bind(privacy)
                        .bind(now.0)
                        .execute(&mut *tx)
                        .await?;
                    let detail = serde_json::json!({ "terms_version": terms, "privacy_version": privacy });
                    insert_audit(&mut tx, PayAuditKind::TermsAgreed, Some(sub), &detail, now).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn set_pin(
                    &self,
                    sub: &str,
                    pin_hash: &str,
                    reset: bool,
                    now: Timestamp,
                ) -> Result<(), PayStoreError> {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(sql::SET_PIN)
                        .bind(sub)
                        .bind(pin_hash)
                        .bind(now.0)
                        .execute(&mut *tx)
                        .await?;
                    // A reset is used up by setting the PIN.
                    sqlx::query(sql::END_PIN_RESET)
                        .bind(sub)
                        .execute(&mut *tx)
                        .await?;
                    let detail = serde_json::json!({ "reset": reset });
                    insert_audit(&mut tx, PayAuditKind::PinSet, Some(sub), &detail, now).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn throttle_window(&self, key: &str) -> Result<Option<Window>, PayStoreError> {
                    let row = sqlx::query_as::<_, sql::WindowRow>(sql::THROTTLE_WINDOW)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(|r| Window {
                        started_at: Timestamp(r.window_started_at),
                        failures: u32::try_from(r.failures).unwrap_or(u32::MAX),
                    }))
                }

                async fn reserve_attempt(
                    &self,
                    key: &str,
                    now: Timestamp,
                    policy: Policy,
                ) -> Result<Option<Window>, PayStoreError> {
                    let row = sqlx::query_as::<_, sql::WindowRow>(sql::RESERVE_ATTEMPT)
                        .bind(key)
                        .bind(now.0)
                        .bind(now.minus(policy.window_secs).0)
                        .bind(i64::from(policy.max_failures))
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(|r| Window {
                        started_at: Timestamp(r.window_started_at),
                        failures: u32::try_from(r.failures).unwrap_or(u32::MAX),
                    }))
                }

                async fn clear_throttle(&self, key: &str) -> Result<(), PayStoreError> {
                    sqlx::query(sql::CLEAR_THROTTLE)
                        .bind(key)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn create_contract(
                    &self,
                    contract: &Contract,
                    link: &PurchaseLink,
                ) -> Result<ContractCreated, PayStoreError> {
                    let canonical = contract
                        .terms
                        .canonical()
                        .map_err(|e| PayStoreError::Corrupt(e.to_string()))?;
                    let mut tx = self.pool.begin().await?;
                    let inserted = sqlx::query(sql::INSERT_CONTRACT)
                        .bind(contract.hash.as_str())
                        .bind(contract.terms.merchant.as_str())
                        .bind(contract.sub.as_str())
                        .bind(canonical)
                        .bind(contract.terms.amount)
                        .bind(contract.terms.currency.as_str())
                        .bind(contract.created_at.0)
                        .execute(&mut *tx)
                        .await?;
                    let outcome = if inserted.rows_affected() == 1 {
                        ContractCreated::New
                    } else {
                        let existing = sqlx::query_as::<_, sql::ContractRow>(sql::CONTRACT)
                            .bind(contract.hash.as_str())
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or(PayStoreError::NotFound)?;
                        // Same hash means same terms, so the same merchant.
                        if existing.sub == contract.sub {
                            ContractCreated::Existing
                        } else {
                            return Ok(ContractCreated::Taken);
                        }
                    };
                    sqlx::query(sql::INSERT_LINK)
                        .bind(link.digest.as_str())
                        .bind(link.contract_hash.as_str())
                        .bind(link.sub.as_str())
                        .bind(link.expires_at.0)
                        .execute(&mut *tx)
                        .await?;
                    if outcome == ContractCreated::New {
                        let detail = serde_json::json!({
                            "contract_hash": contract.hash,
                            "merchant": contract.terms.merchant,
                            "amount": contract.terms.amount,
                            "currency": contract.terms.currency,
                        });
                        insert_audit(
                            &mut tx,
                            PayAuditKind::ContractCreated,
                            Some(&contract.sub),
                            &detail,
                            contract.created_at,
                        )
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(outcome)
                }

                async fn contract(&self, hash: &str) -> Result<Option<Contract>, PayStoreError> {
                    sqlx::query_as::<_, sql::ContractRow>(sql::CONTRACT)
                        .bind(hash)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Contract::try_from)
                        .transpose()
                }

                async fn use_link(
                    &self,
                    digest: &str,
                    now: Timestamp,
                ) -> Result<Option<(String, String)>, PayStoreError> {
                    let row: Option<(String, String)> = sqlx::query_as(sql::USE_LINK)
                        .bind(digest)
                        .bind(now.0)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row)
                }

                async fn pay(
                    &self,
                    contract: &Contract,
                    purchase_id: &str,
                    now: Timestamp,
                ) -> Result<Paid, PayStoreError> {
                    let terms = &contract.terms;
                    let movement = Movement::purchase(&contract.sub, &terms.merchant, terms.amount, &terms.currency)?;
                    let fee_movement = terms
                        .fee
                        .map(|fee| Movement::fee(fee, &contract.sub, &terms.merchant, &terms.currency))
                        .transpose()?;
                    let mut tx = self.pool.begin().await?;
                    // The unique contract hash: the second payment of one
                    // contract inserts nothing and charges nothing.
                    let inserted = sqlx::query(sql::INSERT_PURCHASE)
                        .bind(purchase_id)
                        .bind(contract.hash.as_str())
                        .bind(contract.sub.as_str())
                        .bind(terms.merchant.as_str())
                        .bind(terms.amount)
                        .bind(terms.currency.as_str())
                        .bind(now.0)
                        .bind(terms.fee.map_or(0, |f| f.amount))
                        .bind(terms.fee.map(|f| f.payer.as_str()))
                        .execute(&mut *tx)
                        .await?;
                    if inserted.rows_affected() != 1 {
                        let existing = sqlx::query_as::<_, sql::PurchaseRow>(sql::PURCHASE_BY_CONTRACT)
                            .bind(contract.hash.as_str())
                            .fetch_one(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        return Ok(Paid::Already(Purchase::try_from(existing)?));
                    }
                    // Dropping `tx` on an error rolls the purchase back.
                    // The price and the fee: two balanced movements in
                    // the one transaction.
                    if let Some(fee_movement) = &fee_movement {
                        lock_accounts(&mut tx, &[&movement, fee_movement]).await?;
                    }
                    apply_movement(&mut tx, &movement, &new_id(), Some(purchase_id), now).await?;
                    if let Some(fee_movement) = &fee_movement {
                        apply_movement(&mut tx, fee_movement, &new_id(), Some(purchase_id), now).await?;
                    }
                    let purchase = Purchase {
                        id: purchase_id.to_owned(),
                        contract_hash: contract.hash.clone(),
                        sub: contract.sub.clone(),
                        merchant: terms.merchant.clone(),
                        amount: terms.amount,
                        currency: terms.currency.clone(),
                        state: gatehouse_core::pay::PurchaseState::Created.pay()?,
                        paid_at: now.0,
                        refunded_at: None,
                        fee: terms.fee,
                    };
                    notify(&mut tx, &purchase, PurchaseEvent::Completed, now).await?;
                    let detail = serde_json::json!({
                        "purchase_id": purchase.id,
                        "contract_hash": purchase.contract_hash,
                        "merchant": purchase.merchant,
                        "amount": purchase.amount,
                        "fee": purchase.fee,
                        "currency": purchase.currency,
                    });
                    insert_audit(
                        &mut tx,
                        PayAuditKind::PurchasePaid,
                        Some(&purchase.sub),
                        &detail,
                        now,
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(Paid::New(purchase))
                }

                async fn refund_as(
                    &self,
                    purchase_id: &str,
                    by: &str,
                    now: Timestamp,
                ) -> Result<Purchase, PayStoreError> {
                    let mut tx = self.pool.begin().await?;
                    let marked = sqlx::query_as::<_, sql::PurchaseRow>(sql::MARK_REFUNDED)
                        .bind(purchase_id)
                        .bind(now.0)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(row) = marked else {
                        let existing = sqlx::query_as::<_, sql::PurchaseRow>(sql::PURCHASE_BY_ID)
                            .bind(purchase_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        return match existing {
                            None => Err(PayStoreError::NotFound),
                            Some(p) => {
                                let state = Purchase::try_from(p)?.state;
                                Err(state
                                    .refund()
                                    .err()
                                    .map_or(PayStoreError::NotFound, PayStoreError::State))
                            }
                        };
                    };
                    let purchase = Purchase::try_from(row)?;
                    let movement = Movement::refund(
                        &purchase.merchant,
                        &purchase.sub,
                        purchase.amount,
                        &purchase.currency,
                    )?;
                    debug_assert_eq!(movement.kind, MovementKind::Refund);
                    // The fee goes back first: a merchant who paid it then
                    // holds the whole price again to give back.
                    if let Some(fee) = purchase.fee {
                        let back = Movement::fee_refund(fee, &purchase.sub, &purchase.merchant, &purchase.currency)?;
                        lock_accounts(&mut tx, &[&back, &movement]).await?;
                        apply_movement(&mut tx, &back, &new_id(), Some(purchase_id), now).await?;
                    }
                    apply_movement(&mut tx, &movement, &new_id(), Some(purchase_id), now).await?;
                    notify(&mut tx, &purchase, PurchaseEvent::Refunded, now).await?;
                    let detail = serde_json::json!({
                        "purchase_id": purchase.id,
                        "contract_hash": purchase.contract_hash,
                        "merchant": purchase.merchant,
                        "amount": purchase.amount,
                        "fee": purchase.fee,
                        "currency": purchase.currency,
                        "by": by,
                    });
                    insert_audit(&mut tx, PayAuditKind::Refund, Some(&purchase.sub), &detail, now).await?;
                    tx.commit().await?;
                    Ok(purchase)
                }

                async fn purchase(&self, id: &str) -> Result<Option<Purchase>, PayStoreError> {
                    sqlx::query_as::<_, sql::PurchaseRow>(sql::PURCHASE_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Purchase::try_from)
                        .transpose()
                }

                async fn purchase_by_contract(&self, hash: &str) -> Result<Option<Purchase>, PayStoreError> {
                    sqlx::query_as::<_, sql::PurchaseRow>(sql::PURCHASE_BY_CONTRACT)
                        .bind(hash)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Purchase::try_from)
                        .transpose()
                }

                async fn purchases(&self, sub: Option<&str>, limit: i64) -> Result<Vec<Purchase>, PayStoreError> {
                    sqlx::query_as::<_, sql::PurchaseRow>(sql::PURCHASES)
                        .bind(sub)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(Purchase::try_from)
                        .collect()
                }

                async fn credit_wallet(
                    &self,
                    source: &str,
                    sub: &str,
                    amount: i64,
                    currency: &str,
                    now: Timestamp,
                ) -> Result<i64, PayStoreError> {
                    let movement = Movement::fund(source, sub, amount, currency)?;
                    let mut tx = self.pool.begin().await?;
                    let balance = apply_movement(&mut tx, &movement, &new_id(), None, now).await?;
                    let detail = serde_json::json!({ "source": source, "amount": amount, "currency": currency });
                    insert_audit(&mut tx, PayAuditKind::WalletFunded, Some(sub), &detail, now).await?;
                    tx.commit().await?;
                    Ok(balance)
                }

                async fn balance(&self, sub: &str, currency: &str) -> Result<i64, PayStoreError> {
                    let id = gatehouse_core::pay::LedgerAccount::user(sub, currency).id();
                    let b: Option<i64> = sqlx::query_scalar(sql::BALANCE)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(b.unwrap_or(0))
                }

                async fn balances(&self, sub: &str) -> Result<Vec<(String, i64)>, PayStoreError> {
                    Ok(sqlx::query_as(sql::BALANCES)
                        .bind(sub)
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn ledger_sum(&self) -> Result<i64, PayStoreError> {
                    Ok(sqlx::query_scalar(sql::LEDGER_SUM).fetch_one(&self.pool).await?)
                }

                async fn purge_expired(&self, now: Timestamp) -> Result<(), PayStoreError> {
                    for statement in [sql::PURGE_SESSIONS, sql::PURGE_PENDING, sql::PURGE_LINKS] {
                        sqlx::query(statement).bind(now.0).execute(&self.pool).await?;
                    }
                    Ok(())
                }

                async fn balances_sum(&self) -> Result<i64, PayStoreError> {
                    Ok(sqlx::query_scalar(sql::BALANCES_SUM)
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn create_session(
                    &self,
                    digest: &str,
                    sub: &str,
                    sid: Option<&str>,
                    vouched_at: Timestamp,
                    now: Timestamp,
                    expires_at: Timestamp,
                ) -> Result<(), PayStoreError> {
                    sqlx::query(sql::INSERT_SESSION)
                        .bind(digest)
                        .bind(sub)
                        .bind(now.0)
                        .bind(expires_at.0)
                        .bind(sid)
                        .bind(vouched_at.0)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn session(&self, digest: &str, now: Timestamp) -> Result<Option<PaySession>, PayStoreError> {
                    let row = sqlx::query_as::<_, sql::SessionRow>(sql::SESSION)
                        .bind(digest)
                        .bind(now.0)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(|r| PaySession {
                        sub: r.sub,
                        expires_at: Timestamp(r.expires_at),
                        pin_reset_until: r.pin_reset_until.map(Timestamp),
                        vouched_at: Timestamp(r.vouched_at),
                    }))
                }

                async fn delete_session(&self, digest: &str) -> Result<(), PayStoreError> {
                    sqlx::query(sql::DELETE_SESSION)
                        .bind(digest)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn allow_pin_reset(
                    &self,
                    digest: &str,
                    sub: &str,
                    until: Timestamp,
                    now: Timestamp,
                ) -> Result<(), PayStoreError> {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(sql::ALLOW_PIN_RESET)
                        .bind(digest)
                        .bind(sub)
                        .bind(until.0)
                        .execute(&mut *tx)
                        .await?;
                    let detail = serde_json::json!({ "until": until.0 });
                    insert_audit(&mut tx, PayAuditKind::PinResetOk, Some(sub), &detail, now).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn put_pending_login(&self, digest: &str, row: &PendingRow) -> Result<(), PayStoreError> {
                    sqlx::query(sql::INSERT_PENDING)
                        .bind(digest)
                        .bind(row.pending.as_str())
                        .bind(row.purpose.as_str())
                        .bind(row.return_to.as_str())
                        .bind(row.created_at.0)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn take_pending_login(&self, digest: &str) -> Result<Option<PendingRow>, PayStoreError> {
                    let row = sqlx::query_as::<_, sql::PendingDbRow>(sql::TAKE_PENDING)
                        .bind(digest)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(|r| PendingRow {
                        pending: r.pending,
                        purpose: r.purpose,
                        return_to: r.return_to,
                        created_at: Timestamp(r.created_at),
                    }))
                }

                async fn audit(
                    &self,
                    kind: PayAuditKind,
                    sub: Option<&str>,
                    detail: serde_json::Value,
                    now: Timestamp,
                ) -> Result<(), PayStoreError> {
                    let mut conn = self.pool.acquire().await?;
                    insert_audit(&mut conn, kind, sub, &detail, now).await
                }

                async fn audit_events(
                    &self,
                    sub: Option<&str>,
                    limit: i64,
                ) -> Result<Vec<PayAuditRecord>, PayStoreError> {
                    let rows = sqlx::query_as::<_, sql::AuditRow>(sql::AUDIT_EVENTS)
                        .bind(sub)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(PayAuditRecord::from).collect())
                }

                async fn claim_outbox(
                    &self,
                    now: Timestamp,
                    limit: i64,
                    lease_secs: i64,
                ) -> Result<Vec<OutboxRow>, PayStoreError> {
                    let statement = match $backend {
                        Backend::Sqlite => sql::CLAIM_OUTBOX_SQLITE,
                        Backend::Postgres => sql::CLAIM_OUTBOX_POSTGRES,
                    };
                    let lease_until = now.plus(lease_secs).0;
                    let rows: Vec<sql::OutboxDbRow> =
                        gatehouse_kit::outbox_sql::claim(&self.pool, statement, now.0, limit, lease_until).await?;
                    Ok(rows.into_iter().map(OutboxRow::from).collect())
                }

                async fn outbox_delivered(&self, id: &str, now: Timestamp) -> Result<(), PayStoreError> {
                    Ok(gatehouse_kit::outbox_sql::delivered(&self.pool, id, now.0).await?)
                }

                async fn outbox_failed(
                    &self,
                    id: &str,
                    now: Timestamp,
                    next_attempt_at: Timestamp,
                    error: &str,
                    dead: bool,
                ) -> Result<(), PayStoreError> {
                    let pool = &self.pool;
                    Ok(gatehouse_kit::outbox_sql::failed(pool, id, now.0, next_attempt_at.0, error, dead).await?)
                }

                async fn outbox_summary(&self) -> Result<gatehouse_kit::outbox_sql::SummaryRow, PayStoreError> {
                    Ok(sqlx::query_as(sql::OUTBOX_SUMMARY).fetch_one(&self.pool).await?)
                }

                async fn ping(&self) -> Result<(), PayStoreError> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }

                async fn outbox(&self, merchant: Option<&str>, limit: i64) -> Result<Vec<OutboxRow>, PayStoreError> {
                    let rows = sqlx::query_as::<_, sql::OutboxDbRow>(sql::OUTBOX_LIST)
                        .bind(merchant)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(OutboxRow::from).collect())
                }
            }
        };
    };
}
