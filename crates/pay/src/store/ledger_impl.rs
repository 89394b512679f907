//! The writes the payments store's implementations share: the audit
//! event (in [`super::PayStore`]'s and the standing's), and the ledger's
//! writes inside [`super::PayStore`]'s implementation
//! (`store_impl.rs` expands them in each backend's implementation, where
//! `Conn`, `sql` and the ledger types are in scope): a movement written
//! with both its entries, and the accounts a change touches locked in one
//! order.

/// The ledger's write helpers, for `impl_pay_store!`.
macro_rules! pay_ledger_writes {
    () => {
        /// Writes a movement: both accounts exist, the debit (covered
        /// unless the account may go negative), the credit, the movement
        /// and its two entries. Returns the credited account's balance.
        async fn apply_movement(
            conn: &mut Conn,
            movement: &Movement,
            movement_id: &str,
            purchase_id: Option<&str>,
            now: Timestamp,
        ) -> Result<i64, PayStoreError> {
            for account in [&movement.from, &movement.to] {
                sqlx::query(sql::ENSURE_ACCOUNT)
                    .bind(account.id())
                    .bind(account.kind.as_str())
                    .bind(account.owner.as_str())
                    .bind(account.currency.as_str())
                    .execute(&mut *conn)
                    .await?;
            }
            let debit = if movement.from.kind.may_go_negative() {
                sql::DEBIT_ANY
            } else {
                sql::DEBIT_COVERED
            };
            let (from, to) = (movement.from.id(), movement.to.id());
            // Rows are locked in the order of their ids, whatever the
            // direction, so a purchase and a refund between the same two
            // accounts cannot deadlock on PostgreSQL.
            let mut balance = 0;
            for debit_now in [from < to, from >= to] {
                if debit_now {
                    let debited = sqlx::query(debit)
                        .bind(movement.amount)
                        .bind(from.as_str())
                        .execute(&mut *conn)
                        .await?;
                    if debited.rows_affected() != 1 {
                        return Err(PayStoreError::InsufficientFunds);
                    }
                } else {
                    balance = sqlx::query_scalar(sql::CREDIT)
                        .bind(movement.amount)
                        .bind(to.as_str())
                        .fetch_one(&mut *conn)
                        .await?;
                }
            }
            sqlx::query(sql::INSERT_MOVEMENT)
                .bind(movement_id)
                .bind(movement.kind.as_str())
                .bind(purchase_id)
                .bind(now.0)
                .execute(&mut *conn)
                .await?;
            for (account, amount) in movement.entries() {
                sqlx::query(sql::INSERT_ENTRY)
                    .bind(movement_id)
                    .bind(account.id())
                    .bind(amount)
                    .bind(now.0)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(balance)
        }

        /// Makes and locks every account of `movements`, in the order
        /// of their ids, before any of them moves: a purchase or refund
        /// with a fee touches three accounts in two movements, and
        /// each movement's own ordering alone could then deadlock
        /// against another on PostgreSQL.
        async fn lock_accounts(conn: &mut Conn, movements: &[&Movement]) -> Result<(), PayStoreError> {
            for account in gatehouse_core::pay::ledger::lock_order(movements) {
                sqlx::query(sql::ENSURE_ACCOUNT)
                    .bind(account.id())
                    .bind(account.kind.as_str())
                    .bind(account.owner.as_str())
                    .bind(account.currency.as_str())
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(sql::LOCK_ACCOUNT)
                    .bind(account.id())
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }
    };
}

/// The payments audit log's write, in a transaction's connection: for
/// `impl_pay_store!` and `impl_standing_store!` (`Conn`, `PayAuditKind`,
/// `PayStoreError` and `Timestamp` in scope).
macro_rules! pay_audit_write {
    () => {
        async fn insert_audit(
            conn: &mut Conn,
            kind: PayAuditKind,
            sub: Option<&str>,
            detail: &serde_json::Value,
            now: Timestamp,
        ) -> Result<(), PayStoreError> {
            sqlx::query($crate::store::sql::INSERT_AUDIT)
                .bind(now.0)
                .bind(kind.as_str())
                .bind(sub)
                .bind(detail.to_string())
                .execute(conn)
                .await?;
            Ok(())
        }
    };
}
