//! Logging in through the IdP (the OpenID Connect code flow, with the
//! relier library's `RelyingParty`): a browser without a payments session
//! is sent to the IdP and comes back to `/login/callback`; resetting the PIN
//! goes the same way with `max_age=0`, and the callback lets the PIN be
//! changed only if the same person came back, freshly authenticated.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::{OpaqueToken, Timestamp};
use gatehouse_relier::{LoginFault, LoginRequest, PendingLogin};

use crate::store::{PayAuditKind, PendingRow};
use crate::web::{LOGIN_COOKIE, LOGIN_LIFETIME, PageError, PayState, cookie_value, see_other};

/// Why the browser went to the IdP.
pub const PURPOSE_LOGIN: &str = "login";
pub const PURPOSE_PIN_RESET: &str = "pin_reset";
/// How long after a fresh login the PIN may be changed.
pub const PIN_RESET_WINDOW: i64 = 10 * 60;
/// Clock tolerance on `auth_time`, in seconds.
const AUTH_TIME_LEEWAY: i64 = 5;

/// Only our own paths are places to come back to (the core's rule, as
/// for the IdP's `next`); anything else comes back to the payments page.
pub fn local_path(path: &str) -> &str {
    gatehouse_core::return_path::local_return_path(path).unwrap_or("/")
}

/// Sends the browser to the IdP; `return_to` is where it goes afterwards.
pub async fn start(
    state: &PayState,
    purpose: &str,
    return_to: &str,
    request: LoginRequest,
) -> Result<Response, PageError> {
    let (url, pending) = state
        .rp
        .start(&request)
        .map_err(|e| PageError::Internal(format!("cannot start a login: {e}")))?;
    let pending_json = serde_json::to_string(&pending).map_err(|e| PageError::Internal(e.to_string()))?;
    let token = OpaqueToken::generate();
    state
        .store
        .put_pending_login(
            token.digest().as_str(),
            &PendingRow {
                pending: pending_json,
                purpose: purpose.to_owned(),
                return_to: local_path(return_to).to_owned(),
                created_at: Timestamp::now(),
            },
        )
        .await?;
    let mut response = see_other(url.as_str());
    let cookie = state.cookie(LOGIN_COOKIE, token.expose(), LOGIN_LIFETIME);
    if let Ok(v) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// Sends a browser without a session to log in, coming back to `return_to`.
pub async fn require_login(state: &PayState, return_to: &str) -> Result<Response, PageError> {
    start(
        state,
        PURPOSE_LOGIN,
        return_to,
        LoginRequest {
            scope: "openid email".into(),
            ..Default::default()
        },
    )
    .await
}

pub async fn callback(State(state): State<PayState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    match handle(&state, &headers, query.as_deref().unwrap_or_default()).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn expired() -> PageError {
    PageError::page(
        StatusCode::BAD_REQUEST,
        "Sign-in expired",
        "This sign-in is unknown or took too long. Go back to the shop and try again.",
    )
}

async fn handle(state: &PayState, headers: &HeaderMap, query: &str) -> Result<Response, PageError> {
    let token = cookie_value(headers, LOGIN_COOKIE)
        .and_then(|v| OpaqueToken::parse(&v))
        .ok_or_else(expired)?;
    let row = state
        .store
        .take_pending_login(token.digest().as_str())
        .await?
        .ok_or_else(expired)?;
    let now = Timestamp::now();
    if now.0 > row.created_at.0 + LOGIN_LIFETIME {
        return Err(expired());
    }
    let pending: PendingLogin = serde_json::from_str(&row.pending).map_err(|e| PageError::Internal(e.to_string()))?;
    let clear = state.cookie(LOGIN_COOKIE, "", 0);
    let login = match state.rp.finish(&pending, query).await {
        Ok(login) => login,
        Err(e) => {
            tracing::info!(error = %e, purpose = %row.purpose, "payments: a login at the IdP failed");
            if row.purpose == PURPOSE_PIN_RESET
                && let Some((_, session)) = state.session(headers).await?
            {
                let detail = serde_json::json!({ "reason": e.to_string() });
                state
                    .store
                    .audit(PayAuditKind::PinResetRefused, Some(&session.sub), detail, now)
                    .await?;
            }
            // Whose doing it was: a callback that does not complete this
            // login (400), a refusal by the IdP (403), the IdP failing (502).
            let fault = e.fault();
            let text = match fault {
                LoginFault::Upstream => "The identity provider could not complete the sign-in. Try again later.",
                _ => "The identity provider did not sign you in. Try again.",
            };
            return Err(PageError::page(fault.status(), "Sign-in failed", text));
        }
    };
    let mut response = match row.purpose.as_str() {
        PURPOSE_PIN_RESET => pin_reset_returned(state, headers, &pending, &login, &row.return_to, now).await?,
        _ => {
            // The IdP let them sign in here just now: it vouches for them.
            crate::standing::vouched(state, &login.subject, now).await?;
            let (_, cookie) = state.start_session(&login.subject, login.sid.as_deref(), now).await?;
            let mut r = see_other(&row.return_to);
            if let Ok(v) = cookie.parse() {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
    };
    if let Ok(v) = clear.parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// The fresh login for a PIN reset came back: the same person, just now?
async fn pin_reset_returned(
    state: &PayState,
    headers: &HeaderMap,
    pending: &PendingLogin,
    login: &gatehouse_relier::Login,
    return_to: &str,
    now: Timestamp,
) -> Result<Response, PageError> {
    let Some((digest, session)) = state.session(headers).await? else {
        return Err(PageError::page(
            StatusCode::FORBIDDEN,
            "Session ended",
            "Your payments session ended while you signed in. Open the payments page and try again.",
        ));
    };
    let fresh = login
        .auth_time
        .is_some_and(|t| t >= pending.started_at - AUTH_TIME_LEEWAY);
    if login.subject != session.sub || !fresh {
        let reason = if login.subject != session.sub {
            "another user signed in"
        } else {
            "the sign-in was not fresh"
        };
        tracing::warn!(sub = %session.sub, reason, "payments: PIN reset refused");
        let detail = serde_json::json!({ "reason": reason, "returned_sub": login.subject });
        state
            .store
            .audit(PayAuditKind::PinResetRefused, Some(&session.sub), detail, now)
            .await?;
        return Err(PageError::page(
            StatusCode::FORBIDDEN,
            "PIN reset refused",
            "You signed in as someone else than the owner of this wallet, so the PIN was not changed.",
        ));
    }
    state
        .store
        .allow_pin_reset(digest.as_str(), &session.sub, now.plus(PIN_RESET_WINDOW), now)
        .await?;
    Ok(see_other(&super::pin::new_pin_url(return_to)))
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_local_paths() {
        assert_eq!(local_path("/contracts/x"), "/contracts/x");
        assert_eq!(local_path("//evil.example/"), "/");
        assert_eq!(local_path("https://evil.example/"), "/");
        assert_eq!(local_path("/\\evil"), "/");
        assert_eq!(local_path("/%2F/evil.example"), "/");
        assert_eq!(local_path(""), "/");
    }
}
