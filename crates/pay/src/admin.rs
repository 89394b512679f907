//! The admin JSON API: purchase history (`GET /admin/purchases[?user=sub]`),
//! refunds (`POST /admin/purchases/{id}/refund`) and the merchant
//! notifications' delivery state (`GET /admin/notifications[?merchant=id]`). The caller presents
//! an IdP access token with the scope `gatehouse:admin`, addressed to the
//! payments service (the IdP's introspection answers the payments client
//! only about tokens issued to it or addressed to it), as a bearer token.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::Timestamp;
use serde::Deserialize;

use crate::store::PayStoreError;
use crate::web::{ApiError, PayState, bearer};

pub const ADMIN_SCOPE: &str = "gatehouse:admin";

/// The admin behind the request (their `sub`, or the client's id).
async fn admin(state: &PayState, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::invalid_token("a bearer token is required"))?;
    let answer = match state.introspector.introspect(token).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(ApiError::invalid_token("the access token is not active")),
        Err(e) => {
            tracing::warn!(error = %e, "payments admin: cannot introspect");
            return Err(ApiError::unavailable());
        }
    };
    // A bearer access token: not a refresh token (which has no token type),
    // not a DPoP-bound token sent without its proof (RFC 9449 §7.2).
    if answer.token_type.as_deref() != Some("Bearer") {
        return Err(ApiError::invalid_token("not a bearer access token"));
    }
    if !answer.scopes.contains(ADMIN_SCOPE) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the access token lacks the scope gatehouse:admin",
        ));
    }
    Ok(answer.subject.or(answer.client_id).unwrap_or_default())
}

#[derive(Deserialize)]
pub struct ListQuery {
    user: Option<String>,
}

pub async fn purchases(State(state): State<PayState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let result = async {
        admin(&state, &headers).await?;
        let list = state.store.purchases(q.user.as_deref(), 1000).await?;
        Ok::<_, ApiError>(Json(serde_json::json!({ "purchases": list })).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn refund(State(state): State<PayState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = async {
        let by = admin(&state, &headers).await?;
        match state.store.refund_as(&id, &by, Timestamp::now()).await {
            Ok(purchase) => {
                state.outbox_wake.notify_one();
                Ok(Json(serde_json::json!({ "purchase": purchase })).into_response())
            }
            Err(PayStoreError::NotFound) => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such purchase")),
            Err(PayStoreError::State(e)) => Err(ApiError::new(StatusCode::CONFLICT, "invalid_state", e.to_string())),
            Err(PayStoreError::InsufficientFunds) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "insufficient_funds",
                "the merchant's account does not hold the amount",
            )),
            Err(e) => Err(e.into()),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub struct OutboxQuery {
    merchant: Option<String>,
}

/// The newest notifications with their delivery state (attempts, last
/// error, delivered or dead).
pub async fn notifications(
    State(state): State<PayState>,
    headers: HeaderMap,
    Query(q): Query<OutboxQuery>,
) -> Response {
    let result = async {
        admin(&state, &headers).await?;
        let rows = state.store.outbox(q.merchant.as_deref(), 1000).await?;
        Ok::<_, ApiError>(Json(serde_json::json!({ "notifications": rows })).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
