//! The admin JSON API: purchase history (`GET /admin/purchases[?user=sub]`),
//! refunds (`POST /admin/purchases/{id}/refund`) and the merchant
//! notifications' delivery state (`GET /admin/notifications[?merchant=id]`). The caller presents
//! an IdP access token with the scope `gatehouse:admin`, addressed to the
//! payments service (the IdP's introspection answers the payments client
//! only about tokens issued to it or addressed to it), as a bearer token.
//!
//! Guarded by construction: every route of [`ADMIN_ROUTES`] is mounted
//! behind the guard, a `route_layer` on each of them that checks the token
//! before the handler (or its extractors) runs and hands the handler the acting [`Admin`]; the
//! test that walks every admin route reads the same table.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use axum::{Json, Router};
use gatehouse_core::Timestamp;
use serde::Deserialize;

use crate::store::PayStoreError;
use crate::web::{ApiError, PayState, bearer};

pub const ADMIN_SCOPE: &str = "gatehouse:admin";

/// One admin route: its method, its path (axum's syntax) and its handler.
pub type AdminRoute = gatehouse_kit::admin::AdminRoute<PayState>;

/// Every admin route. Only these are mounted, all behind the guard.
pub const ADMIN_ROUTES: &[AdminRoute] = &[
    AdminRoute {
        method: Method::GET,
        path: "/admin/purchases",
        handler: |m| on(m, purchases),
    },
    AdminRoute {
        method: Method::POST,
        path: "/admin/purchases/{id}/refund",
        handler: |m| on(m, refund),
    },
    AdminRoute {
        method: Method::GET,
        path: "/admin/notifications",
        handler: |m| on(m, notifications),
    },
];

/// The admin routes, every one behind the guard (the kit's [`gatehouse_kit::admin::guarded`]).
pub fn routes(state: &PayState) -> Router<PayState> {
    gatehouse_kit::admin::guarded::<_, Admin>(ADMIN_ROUTES, state)
}

/// The acting admin: their `sub`, or the client's id. A handler takes it
/// by type; under the admin router's guard it is the one the guard
/// checked, and elsewhere it runs the check itself.
#[derive(Clone, Debug)]
pub struct Admin(pub String);

impl FromRequestParts<PayState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &PayState) -> Result<Self, ApiError> {
        if let Some(admin) = parts.extensions.get::<Admin>() {
            return Ok(admin.clone());
        }
        admin(state, &parts.headers).await.map(Admin)
    }
}

/// The admin check; the admin behind the request (their `sub`, or the
/// client's id).
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

pub async fn purchases(State(state): State<PayState>, Query(q): Query<ListQuery>) -> Response {
    let result = async {
        let list = state.store.purchases(q.user.as_deref(), 1000).await?;
        Ok::<_, ApiError>(Json(serde_json::json!({ "purchases": list })).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn refund(State(state): State<PayState>, Admin(by): Admin, Path(id): Path<String>) -> Response {
    let result = async {
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
pub async fn notifications(State(state): State<PayState>, Query(q): Query<OutboxQuery>) -> Response {
    let result = async {
        let rows = state.store.outbox(q.merchant.as_deref(), 1000).await?;
        Ok::<_, ApiError>(Json(serde_json::json!({ "notifications": rows })).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
