//! The admin JSON API (`/admin/...`), described by `/openapi.json`.
//!
//! Callers authenticate with an access token that carries the
//! `gatehouse:admin` scope and is meant for the IdP (no resource indicator,
//! or the issuer as its audience): a confidential client allowed the client
//! credentials grant and that scope gets one from `/token`. Every admin
//! action is audited with the calling client.
//!
//! Guarded by construction: every route of [`ADMIN_ROUTES`] is mounted
//! behind the guard, a `route_layer` on each of them that checks the token
//! before the handler (or its extractors) runs, and hands the handler the acting admin as an
//! [`Admin`]. The same table drives the router, the OpenAPI tidy check and
//! the test that walks every admin route with and without rights.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on};
use serde_json::json;

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::claims::AccessTokenClaims;
use gatehouse_core::oauth::client::{Client, ClientSettings};
use gatehouse_core::oauth::{ClientId, ErrorCode, OAuthError, Scopes};
use gatehouse_store::StoreError;

use crate::AppState;
use crate::flows;
use crate::flows::admin::{ClientChangeError, NoSuchMessage};
use crate::flows::ban::{BanError, BanRequest};
use crate::oauth::bearer::{active_access_token, from_header};
use crate::oauth::error::{Scheme, bearer_challenge, challenge, internal, json_error};

/// The scope an admin token must carry.
pub const ADMIN_SCOPE: &str = "gatehouse:admin";

/// One admin route: its method, its path (axum's syntax) and its handler.
pub type AdminRoute = gatehouse_kit::admin::AdminRoute<AppState>;

/// Every admin route. Only these are mounted, all behind the guard.
pub const ADMIN_ROUTES: &[AdminRoute] = &[
    AdminRoute {
        method: Method::GET,
        path: "/admin/users/{uid}",
        handler: |m| on(m, show_user),
    },
    AdminRoute {
        method: Method::POST,
        path: "/admin/users/{uid}/bans",
        handler: |m| on(m, ban_user),
    },
    AdminRoute {
        method: Method::DELETE,
        path: "/admin/users/{uid}/bans",
        handler: |m| on(m, unban_user),
    },
    AdminRoute {
        method: Method::GET,
        path: "/admin/clients",
        handler: |m| on(m, list_clients),
    },
    AdminRoute {
        method: Method::POST,
        path: "/admin/clients",
        handler: |m| on(m, create_client),
    },
    AdminRoute {
        method: Method::GET,
        path: "/admin/clients/{id}",
        handler: |m| on(m, show_client),
    },
    AdminRoute {
        method: Method::PATCH,
        path: "/admin/clients/{id}",
        handler: |m| on(m, update_client),
    },
    AdminRoute {
        method: Method::DELETE,
        path: "/admin/clients/{id}",
        handler: |m| on(m, delete_client),
    },
    AdminRoute {
        method: Method::GET,
        path: "/admin/outbox",
        handler: |m| on(m, list_outbox),
    },
    AdminRoute {
        method: Method::POST,
        path: "/admin/outbox/{id}/redeliver",
        handler: |m| on(m, redeliver_outbox),
    },
];

/// The admin routes, every one behind the guard (the kit's [`gatehouse_kit::admin::guarded`]), and the public OpenAPI
/// document.
pub fn routes(state: &AppState) -> Router<AppState> {
    gatehouse_kit::admin::guarded::<_, Admin>(ADMIN_ROUTES, state).route("/openapi.json", get(openapi))
}

/// The acting admin: the claims of the active admin token the request
/// carried. A handler takes it by type; under the admin router's guard it
/// is the one the guard checked, and elsewhere it runs the check itself.
#[derive(Clone, Debug)]
pub struct Admin(pub AccessTokenClaims);

impl Admin {
    /// The client the admin token was issued to: who acts.
    pub fn client_id(&self) -> &str {
        &self.0.client_id
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(admin) = parts.extensions.get::<Admin>() {
            return Ok(admin.clone());
        }
        admin(state, &parts.headers).await.map(Admin)
    }
}

/// The admin API's errors: a JSON body with a code and a message.
fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "error_description": message }))).into_response()
}

fn store_error(e: StoreError) -> Response {
    json_error(&internal(e))
}

/// The admin check: an active bearer token for the IdP with
/// `gatehouse:admin`; else the challenge to answer.
async fn admin(state: &AppState, headers: &HeaderMap) -> Result<AccessTokenClaims, Response> {
    let token = match from_header(headers) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(bearer_challenge(None)),
        Err(e) => return Err(bearer_challenge(Some(&e))),
    };
    let claims = active_access_token(state, &token)
        .await
        .map_err(|e| bearer_challenge(Some(&e)))?;
    // For the IdP: issued without a resource indicator (its audience is
    // then its own client) or addressed to the issuer. A token for another
    // service (a resource indicator, or narrowed) does not reach this API.
    if !claims.addressed_to(&claims.client_id) && !claims.addressed_to(state.settings.issuer_str()) {
        return Err(bearer_challenge(Some(&OAuthError::new(
            ErrorCode::InvalidToken,
            "the access token is not meant for the admin API",
        ))));
    }
    if crate::oauth::dpop::bound_jkt(claims.cnf.as_ref()).is_some() {
        // RFC 9449 §7.2: a DPoP-bound token is never taken as a bearer
        // token, and this API takes bearer tokens only.
        return Err(challenge(
            Scheme::Dpop,
            Some(&OAuthError::new(
                ErrorCode::InvalidToken,
                "the admin API takes bearer tokens only; this one is DPoP-bound",
            )),
        ));
    }
    if !Scopes::parse(&claims.scope).unwrap_or_default().contains(ADMIN_SCOPE) {
        return Err(bearer_challenge(Some(&OAuthError::new(
            ErrorCode::InsufficientScope,
            "the token lacks gatehouse:admin",
        ))));
    }
    Ok(claims)
}

async fn list_clients(State(state): State<AppState>) -> Response {
    match state.store.clients().await {
        Ok(clients) => {
            Json(json!({ "clients": clients.iter().map(Client::to_json).collect::<Vec<_>>() })).into_response()
        }
        Err(e) => store_error(e),
    }
}

#[derive(serde::Deserialize)]
struct OutboxQuery {
    client_id: Option<String>,
}

/// How many messages `GET /admin/outbox` lists, newest first.
const OUTBOX_LIST_LIMIT: i64 = 100;

/// An outbox message as admins see it: everything but the payload (a
/// signed token meant for the relier only).
fn outbox_json(m: &gatehouse_store::OutboxMessage) -> serde_json::Value {
    json!({
        "id": m.id,
        "client_id": m.client_id,
        "kind": m.kind.as_str(),
        "target_uri": m.target_uri,
        "status": m.status(),
        "attempts": m.attempts,
        "created_at": m.created_at.0,
        "next_attempt_at": m.next_attempt_at.0,
        "last_error": m.last_error,
        "delivered_at": m.delivered_at.map(|t| t.0),
        "dead_at": m.dead_at.map(|t| t.0),
    })
}

async fn list_outbox(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<OutboxQuery>,
) -> Response {
    let client = query.client_id.filter(|c| !c.is_empty()).map(ClientId);
    let summary = match state.store.outbox_summary(client.as_ref()).await {
        Ok(s) => s,
        Err(e) => return store_error(e),
    };
    match state.store.outbox_messages(client.as_ref(), OUTBOX_LIST_LIMIT).await {
        Ok(messages) => Json(json!({
            "counts": {
                "pending": summary.pending,
                "failed": summary.failed,
                "delivered": summary.delivered,
                "dead": summary.dead,
            },
            "messages": messages.iter().map(outbox_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

async fn redeliver_outbox(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> Response {
    let not_found = || problem(StatusCode::NOT_FOUND, "not_found", "no such undelivered message");
    match flows::admin::redeliver(
        &state.flows,
        &id,
        &gatehouse_core::audit::by_admin(admin.client_id()),
        Timestamp::now(),
    )
    .await
    {
        Ok(Ok(())) => StatusCode::ACCEPTED.into_response(),
        Ok(Err(NoSuchMessage)) => not_found(),
        Err(flows::Error::Store(e)) => store_error(e),
        Err(e) => crate::error::AppError::from(e).into_response(),
    }
}

async fn show_client(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.store.client(&ClientId(id)).await {
        Ok(Some(c)) => Json(c.to_json()).into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, "not_found", "no such client"),
        Err(e) => store_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateClient {
    name: String,
    #[serde(default)]
    public: bool,
    #[serde(flatten)]
    settings: ClientSettings,
}

fn malformed(e: serde_json::Error) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("malformed JSON body: {e}"),
    )
}

async fn create_client(State(state): State<AppState>, admin: Admin, body: axum::body::Bytes) -> Response {
    let input: CreateClient = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return malformed(e),
    };
    let mut grants = Vec::new();
    for g in input.settings.grant_types.iter().flatten() {
        match gatehouse_core::oauth::GrantType::parse(g) {
            Some(g) => grants.push(g),
            None => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_client_metadata",
                    &format!("unknown grant type: {g}"),
                );
            }
        }
    }
    let by = gatehouse_core::audit::by_admin(admin.client_id());
    let made = flows::admin::create_client(
        state.store.as_ref(),
        &input.name,
        input.public,
        grants,
        &input.settings,
        &by,
    )
    .await;
    let (client, secret) = match made {
        Ok(v) => v,
        Err(e) => return client_change_error(e),
    };
    let mut body = client.to_json();
    body["client_secret"] = json!(secret.as_ref().map(|s| s.expose()));
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/clients/{}", client.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

async fn update_client(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let settings: ClientSettings = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return malformed(e),
    };
    let by = gatehouse_core::audit::by_admin(admin.client_id());
    match flows::admin::update_client(state.store.as_ref(), &id, &settings, &by).await {
        Ok(client) => Json(client.to_json()).into_response(),
        Err(e) => client_change_error(e),
    }
}

async fn delete_client(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> Response {
    let by = gatehouse_core::audit::by_admin(admin.client_id());
    match flows::admin::delete_client(state.store.as_ref(), &id, &by).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => client_change_error(e),
    }
}

/// A refused or failed client change as the admin API answers it.
fn client_change_error(e: ClientChangeError) -> Response {
    match e {
        ClientChangeError::NotFound(_) => problem(StatusCode::NOT_FOUND, "not_found", "no such client"),
        ClientChangeError::Invalid(e) => problem(StatusCode::BAD_REQUEST, "invalid_client_metadata", &e.to_string()),
        ClientChangeError::Taken { cause, .. } | ClientChangeError::Store(cause) => store_error(cause),
    }
}

async fn openapi(State(state): State<AppState>) -> Response {
    let mut doc: serde_json::Value = match serde_json::from_str(include_str!("../openapi.json")) {
        Ok(v) => v,
        Err(e) => return json_error(&internal(e)),
    };
    doc["servers"] = json!([{ "url": state.settings.issuer_str() }]);
    Json(doc).into_response()
}

fn ban_json(b: &gatehouse_core::ban::Ban) -> serde_json::Value {
    json!({
        "client_id": b.client_id,
        "until": b.until.map(|t| t.0),
        "reason": b.reason,
        "by": b.by,
        "created_at": b.created_at.0,
        "in_force": b.in_force(Timestamp::now()),
    })
}

fn ban_error(e: BanError) -> Response {
    match e {
        BanError::NoAccount(_) | BanError::NoBan => problem(StatusCode::NOT_FOUND, "not_found", &e.to_string()),
        BanError::Store(e) => store_error(e),
        BanError::Failed(e) => crate::error::AppError::from(e).into_response(),
        other => problem(StatusCode::BAD_REQUEST, "invalid_request", &other.to_string()),
    }
}

async fn show_user(State(state): State<AppState>, Path(uid): Path<String>) -> Response {
    let id = gatehouse_core::AccountId(uid);
    let account = match state.store.account_by_id(&id).await {
        Ok(Some(a)) => a,
        Ok(None) => return problem(StatusCode::NOT_FOUND, "not_found", "no such account"),
        Err(e) => return store_error(e),
    };
    let bans = match state.store.bans_of(&id).await {
        Ok(b) => b,
        Err(e) => return store_error(e),
    };
    Json(json!({
        "uid": account.id,
        "email": account.email,
        "email_verified": account.email_verified,
        "created_at": account.created_at.0,
        "profile": gatehouse_core::oauth::claims::ProfileClaims::from(&account.profile),
        "bans": bans.iter().map(ban_json).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn ban_user(
    State(state): State<AppState>,
    admin: Admin,
    Path(uid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: BanRequest = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return malformed(e),
    };
    let by = gatehouse_core::audit::by_admin(admin.client_id());
    match flows::ban::ban(&state.flows, &uid, &req, &by, Timestamp::now()).await {
        Ok(ban) => (StatusCode::CREATED, Json(ban_json(&ban))).into_response(),
        Err(e) => ban_error(e),
    }
}

#[derive(serde::Deserialize)]
struct UnbanQuery {
    client_id: Option<String>,
}

async fn unban_user(
    State(state): State<AppState>,
    admin: Admin,
    Path(uid): Path<String>,
    axum::extract::Query(q): axum::extract::Query<UnbanQuery>,
) -> Response {
    let by = gatehouse_core::audit::by_admin(admin.client_id());
    match flows::ban::unban(&state.flows, &uid, q.client_id.as_deref(), &by, Timestamp::now()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ban_error(e),
    }
}
