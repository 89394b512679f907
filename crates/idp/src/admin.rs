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
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on};
use serde_json::json;

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::claims::AccessTokenClaims;
use gatehouse_core::oauth::client::{Client, ClientSettings};
use gatehouse_core::oauth::{ClientId, ErrorCode, OAuthError, Scopes};
use gatehouse_store::StoreError;

use crate::AppState;
use crate::oauth::bearer::{active_access_token, from_header};
use crate::oauth::error::{Scheme, bearer_challenge, challenge, internal, json_error};

/// The scope an admin token must carry.
pub const ADMIN_SCOPE: &str = "gatehouse:admin";

/// One admin route: its method, its path (axum's syntax, as in the OpenAPI
/// document) and its handler.
pub struct AdminRoute {
    pub method: Method,
    pub path: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
}

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

/// The admin routes, every one behind [`guard`], and the public OpenAPI
/// document.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut admin = Router::new();
    for route in ADMIN_ROUTES {
        match MethodFilter::try_from(route.method.clone()) {
            // On each method's handler, not on the router: a method the
            // path does not serve stays 405 (a CORS preflight included).
            Ok(filter) => {
                let guarded = (route.handler)(filter).route_layer(middleware::from_fn_with_state(state.clone(), guard));
                admin = admin.route(route.path, guarded);
            }
            Err(e) => tracing::error!(path = route.path, error = %e, "admin route not mounted"),
        }
    }
    admin.route("/openapi.json", get(openapi))
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

/// The admin routes' `route_layer`: refuses a request without an admin
/// token (401, or 403 for a token lacking the scope) before any handler or
/// extractor runs, and hands the rest the [`Admin`].
async fn guard(admin: Admin, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(admin);
    next.run(request).await
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

async fn redeliver_outbox(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let now = Timestamp::now();
    let not_found = || problem(StatusCode::NOT_FOUND, "not_found", "no such undelivered message");
    let message = match state.store.outbox_message(&id).await {
        Ok(Some(m)) if m.delivered_at.is_none() => m,
        Ok(_) => return not_found(),
        Err(e) => return store_error(e),
    };
    let payload = match crate::outbox::Signer::of(&state).resign(&message, now).await {
        Ok(payload) => payload,
        Err(e) => return e.into_response(),
    };
    match state.store.outbox_redeliver(&id, now, &payload).await {
        Ok(true) => {
            state.outbox_wake.notify_one();
            StatusCode::ACCEPTED.into_response()
        }
        Ok(false) => not_found(),
        Err(e) => store_error(e),
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

async fn create_client(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
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
    let redirects = input.settings.redirect_uris.clone().unwrap_or_default();
    let made = Client::new(&input.name, input.public, redirects, grants, Timestamp::now());
    let (mut client, secret) = match made {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "invalid_client_metadata", &e.to_string()),
    };
    if let Err(e) = client.apply(&input.settings) {
        return problem(StatusCode::BAD_REQUEST, "invalid_client_metadata", &e.to_string());
    }
    if let Err(e) = state.store.create_client(&client).await {
        return store_error(e);
    }
    let mut body = client.to_json();
    body["client_secret"] = json!(secret.as_ref().map(|s| s.expose()));
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/clients/{}", client.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

async fn update_client(State(state): State<AppState>, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let settings: ClientSettings = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return malformed(e),
    };
    let mut client = match state.store.client(&ClientId(id)).await {
        Ok(Some(c)) => c,
        Ok(None) => return problem(StatusCode::NOT_FOUND, "not_found", "no such client"),
        Err(e) => return store_error(e),
    };
    if let Err(e) = client.apply(&settings) {
        return problem(StatusCode::BAD_REQUEST, "invalid_client_metadata", &e.to_string());
    }
    match state.store.update_client(&client).await {
        Ok(true) => Json(client.to_json()).into_response(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "not_found", "no such client"),
        Err(e) => store_error(e),
    }
}

async fn delete_client(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.store.delete_client(&ClientId(id)).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "not_found", "no such client"),
        Err(e) => store_error(e),
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

/// A ban as an administrator asks for it, from the CLI or the API.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// Only at this client; absent for everywhere.
    pub client_id: Option<String>,
    /// A suspension: Unix seconds when it lifts by itself.
    pub until: Option<i64>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BanError {
    #[error("no account with the id {0}")]
    NoAccount(String),
    #[error("no client with the id {0}")]
    NoClient(String),
    #[error("the suspension must end in the future")]
    PastUntil,
    #[error("the reason is too long (at most 500 characters)")]
    LongReason,
    #[error("no such ban")]
    NoBan,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Bans (or suspends) an account: sessions and tokens are revoked in the
/// same transaction as the ban and its audit event. `by` says who did it.
pub async fn ban_account(
    store: &dyn gatehouse_store::Store,
    uid: &str,
    req: &BanRequest,
    by: &str,
    now: Timestamp,
    outbox: &[gatehouse_store::OutboxMessage],
) -> Result<gatehouse_core::ban::Ban, BanError> {
    let account_id = gatehouse_core::AccountId(uid.to_owned());
    if store.account_by_id(&account_id).await?.is_none() {
        return Err(BanError::NoAccount(uid.to_owned()));
    }
    let client_id = match &req.client_id {
        Some(id) => {
            let id = ClientId(id.clone());
            if store.client(&id).await?.is_none() {
                return Err(BanError::NoClient(id.to_string()));
            }
            Some(id)
        }
        None => None,
    };
    if req.until.is_some_and(|u| u <= now.0) {
        return Err(BanError::PastUntil);
    }
    if req.reason.chars().count() > gatehouse_core::ban::MAX_REASON_LEN {
        return Err(BanError::LongReason);
    }
    let ban = gatehouse_core::ban::Ban {
        account_id: account_id.clone(),
        client_id,
        until: req.until.map(Timestamp),
        reason: req.reason.clone(),
        by: by.to_owned(),
        created_at: now,
    };
    let actor = gatehouse_core::audit::Actor {
        ip: String::new(),
        user_agent: by.to_owned(),
    };
    let audit = gatehouse_core::audit::AuditEvent::new(
        gatehouse_core::audit::AuditKind::AccountBanned,
        Some(&account_id),
        &actor,
        now,
    )
    .with_detail(json!({ "client_id": ban.client_id, "until": req.until, "reason": ban.reason, "by": by }));
    // Back-channel logout tokens only go with a ban everywhere (the one
    // that ends sessions); security events go with every ban.
    let outbox: Vec<_> = outbox
        .iter()
        .filter(|m| ban.client_id.is_none() || m.kind == gatehouse_store::OutboxKind::SecurityEvent)
        .cloned()
        .collect();
    store.ban_notify(&ban, now, &audit, &outbox).await?;
    Ok(ban)
}

/// The security events a ban sends: account-disabled to the account's
/// clients (only to the one client for a ban there), and for a suspension
/// also account-enabled, due when it lifts. Lifted early (the unban sends
/// its own account-enabled at once) or replaced by another ban, the store
/// deletes that scheduled message: it carries the ban's
/// [`gatehouse_store::suspension_end_key`].
pub async fn ban_events(
    signer: &crate::outbox::Signer<'_>,
    uid: &str,
    req: &BanRequest,
    now: Timestamp,
) -> Result<Vec<gatehouse_store::OutboxMessage>, crate::error::AppError> {
    use crate::events::SecurityEvent;
    let account = gatehouse_core::AccountId(uid.to_owned());
    let client = req.client_id.clone().map(ClientId);
    let disabled = [SecurityEvent::AccountDisabled {
        reason: req.reason.clone(),
    }];
    let mut out = signer
        .security_events(&account, client.as_ref(), &disabled, now, now)
        .await?;
    if let Some(until) = req.until.filter(|u| *u > now.0) {
        let key = gatehouse_store::suspension_end_key(&account, client.as_ref());
        let enabled = signer
            .security_events(
                &account,
                client.as_ref(),
                &[SecurityEvent::AccountEnabled],
                now,
                Timestamp(until),
            )
            .await?;
        out.extend(enabled.into_iter().map(|m| gatehouse_store::OutboxMessage {
            withdraw_key: Some(key.clone()),
            ..m
        }));
    }
    Ok(out)
}

/// The security events lifting a ban sends: account-enabled to the
/// account's clients (only to the one client for a ban there).
pub async fn unban_events(
    signer: &crate::outbox::Signer<'_>,
    uid: &str,
    client_id: Option<&str>,
    now: Timestamp,
) -> Result<Vec<gatehouse_store::OutboxMessage>, crate::error::AppError> {
    let account = gatehouse_core::AccountId(uid.to_owned());
    let client = client_id.map(|c| ClientId(c.to_owned()));
    signer
        .security_events(
            &account,
            client.as_ref(),
            &[crate::events::SecurityEvent::AccountEnabled],
            now,
            now,
        )
        .await
}

/// Lifts a ban everywhere (`client_id` None) or at one client.
pub async fn unban_account(
    store: &dyn gatehouse_store::Store,
    uid: &str,
    client_id: Option<&str>,
    by: &str,
    now: Timestamp,
    outbox: &[gatehouse_store::OutboxMessage],
) -> Result<(), BanError> {
    let account_id = gatehouse_core::AccountId(uid.to_owned());
    let client = client_id.map(|c| ClientId(c.to_owned()));
    let actor = gatehouse_core::audit::Actor {
        ip: String::new(),
        user_agent: by.to_owned(),
    };
    let audit = gatehouse_core::audit::AuditEvent::new(
        gatehouse_core::audit::AuditKind::AccountUnbanned,
        Some(&account_id),
        &actor,
        now,
    )
    .with_detail(json!({ "client_id": client, "by": by }));
    if store.unban_notify(&account_id, client.as_ref(), &audit, outbox).await? {
        Ok(())
    } else {
        Err(BanError::NoBan)
    }
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
    let now = Timestamp::now();
    let mut outbox = if req.client_id.is_none() {
        let account = gatehouse_core::AccountId(uid.clone());
        match crate::outbox::logout_messages_for_account(&state, &account, None, now).await {
            Ok(m) => m,
            Err(e) => return e.into_response(),
        }
    } else {
        Vec::new()
    };
    match ban_events(&crate::outbox::Signer::of(&state), &uid, &req, now).await {
        Ok(m) => outbox.extend(m),
        Err(e) => return e.into_response(),
    }
    match ban_account(
        state.store.as_ref(),
        &uid,
        &req,
        &format!("admin:{}", admin.client_id()),
        now,
        &outbox,
    )
    .await
    {
        Ok(ban) => {
            crate::outbox::wake(&state, &outbox);
            (StatusCode::CREATED, Json(ban_json(&ban))).into_response()
        }
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
    let now = Timestamp::now();
    let outbox = match unban_events(&crate::outbox::Signer::of(&state), &uid, q.client_id.as_deref(), now).await {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    match unban_account(
        state.store.as_ref(),
        &uid,
        q.client_id.as_deref(),
        &format!("admin:{}", admin.client_id()),
        now,
        &outbox,
    )
    .await
    {
        Ok(()) => {
            crate::outbox::wake(&state, &outbox);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => ban_error(e),
    }
}
