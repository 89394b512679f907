//! The writes several OAuth methods share: binding a client's, grant's
//! or code's columns, writing a refresh token, revoking a family,
//! a replay. Expanded by `impl_oauth_store!`.

/// The helpers, for the backend `impl_store!` expands.
macro_rules! oauth_writes {
    () => {
        /// `statement` ([`crate::oauth::sql::INSERT_CLIENT`] or [`crate::oauth::sql::UPDATE_CLIENT`])
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

        /// `statement` ([`crate::oauth::sql::REDEEM_AUTH_CODE_SQLITE`] or
        /// [`crate::oauth::sql::REDEEM_AUTH_CODE_POSTGRES`]) with the grant's
        /// columns bound, `$1` to `$13`.
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
                .bind($crate::sql::json_list(&grant.resources))
                .bind(grant.parent_id.as_deref())
                .bind(grant.created_at.0)
                .bind(grant.revoked_at.map(|t| t.0))
                .bind(grant.dpop_jkt.as_deref())
        }

        async fn write_refresh_token(conn: &mut Conn, token: &RefreshToken) -> Result<(), StoreError> {
            let inserted = sqlx::query($crate::oauth::sql::INSERT_REFRESH_TOKEN)
                .bind(token.digest.as_str())
                .bind(token.grant_id.as_str())
                .bind(token.created_at.0)
                .bind(token.expires_at.0)
                .bind(token.used_at.map(|t| t.0))
                .execute(conn)
                .await;
            match inserted {
                Err(e) if $crate::sql::is_unique_violation(&e) => Err(StoreError::Conflict("refresh token")),
                other => other.map(|_| ()).map_err(StoreError::from),
            }
        }

        /// Revokes the grant `id` and its descendants at `now` (a grant
        /// revoked before keeps its time).
        async fn revoke_family(conn: &mut Conn, id: &str, now: Timestamp) -> Result<(), StoreError> {
            sqlx::query($crate::oauth::sql::REVOKE_GRANT_FAMILY)
                .bind(id)
                .bind(now.0)
                .execute(conn)
                .await?;
            Ok(())
        }

        /// After a use that changed no row (`used_at` was set): the grant
        /// the first use issued, looked up by `lookup` ([`crate::oauth::sql::AUTH_CODE_GRANT`]
        /// or [`crate::oauth::sql::REFRESH_TOKEN_GRANT`]), is revoked with its family and
        /// the transaction committed: `Replayed`; no such row: `Unknown`.
        async fn replayed(
            mut tx: sqlx::Transaction<'static, Db>,
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

        /// `statement` ([`crate::oauth::sql::INSERT_AUTH_CODE_SQLITE`] or
        /// [`crate::oauth::sql::INSERT_AUTH_CODE_POSTGRES`]) with the code's columns
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
                .bind($crate::sql::json_list(&code.resources))
                .bind(code.created_at.0)
                .bind(code.expires_at.0)
                .bind(code.used_at.map(|t| t.0))
                .bind(code.grant_id.as_str())
                .bind(code.dpop_jkt.as_deref())
        }

        /// Stores `code` with `statement` ([`crate::oauth::sql::INSERT_AUTH_CODE_SQLITE`]
        /// or [`crate::oauth::sql::INSERT_AUTH_CODE_POSTGRES`]) on `conn`.
        async fn insert_code(conn: &mut Conn, statement: &'static str, code: &AuthCode) -> Result<(), StoreError> {
            match code_query(statement, code).execute(&mut *conn).await {
                Err(e) if $crate::sql::is_unique_violation(&e) => Err(StoreError::Conflict("auth code")),
                other => other.map(|_| ()).map_err(StoreError::from),
            }
        }

        /// Redeems the code `digest` for `grant` (and `refresh`) with
        /// `statement` ([`crate::oauth::sql::REDEEM_AUTH_CODE_SQLITE`] or
        /// [`crate::oauth::sql::REDEEM_AUTH_CODE_POSTGRES`]) on `conn`: whether it
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
                Err(e) if $crate::sql::is_unique_violation(&e) => Err(StoreError::Conflict("grant")),
                Err(e) if $crate::sql::is_foreign_key_violation(&e) => Ok(false),
                other => Ok(!other?.is_empty()),
            }
        }
    };
}
