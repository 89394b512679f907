//! Log in (and re-authenticate a session that must enter the password
//! again), and log out.
//!
//! Login is throttled per account and per address with counters in the
//! store, each attempt reserved before the password is checked; a wrong
//! password and an unknown email get the same answer in the same time.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use gatehouse_core::audit::{AuditEvent, AuditKind};
use gatehouse_core::session::{AuthMethod, SessionSelector, SessionState};
use gatehouse_core::throttle;
use gatehouse_core::{Email, Secret, Timestamp};

use super::render::{LoginPage, notice, render};
use super::{current, start_session, verify_password};
use crate::AppState;
use crate::error::AppError;
use crate::throttle::Reservation;
use crate::web::client::Client;
use crate::web::cookies;
use crate::web::csrf::{CsrfForm, CsrfToken, NoFields};
use crate::web::{q, safe_next};

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    /// Ask for the password even within a live session (`prompt=login`,
    /// `max_age`).
    force: Option<String>,
    /// Sign in as another account than the browser's (the account chooser
    /// of `prompt=select_account`): the plain form, even with a session.
    switch: Option<String>,
    email: Option<String>,
    notice: Option<String>,
}

const DEFAULT_NEXT: &str = "/settings";

pub async fn page(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: CsrfToken,
    Query(query): Query<LoginQuery>,
) -> Result<Response, AppError> {
    let next = safe_next(query.next.as_deref()).unwrap_or_else(|| DEFAULT_NEXT.to_owned());
    let session = current(&state, &jar, Timestamp::now()).await?;
    let force = query.force.is_some();
    let switch = query.switch.is_some();
    let (reauth, email) = match &session {
        Some(_) if switch => (false, query.email.unwrap_or_default()),
        Some(c) if c.state == SessionState::Active && !force => return Ok(Redirect::to(&next).into_response()),
        Some(c) => (true, c.account.email.to_string()),
        None => (false, query.email.unwrap_or_default()),
    };
    Ok(render(
        StatusCode::OK,
        &LoginPage {
            csrf: csrf.value(),
            email: &email,
            next: &next,
            reauth,
            notice: notice(query.notice.as_deref()),
            error: None,
        },
    ))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let next = safe_next(form.next.as_deref()).unwrap_or_else(|| DEFAULT_NEXT.to_owned());
    let fail = |status: StatusCode, message: String| {
        render(
            status,
            &LoginPage {
                csrf: csrf.value(),
                email: form.email.trim(),
                next: &next,
                reauth: false,
                notice: None,
                error: Some(message),
            },
        )
    };
    let email = match Email::parse(&form.email) {
        Ok(e) => e,
        Err(e) => return Ok(fail(StatusCode::BAD_REQUEST, e.to_string())),
    };
    if form.password.is_empty() {
        return Ok(fail(StatusCode::BAD_REQUEST, "Enter your password.".to_owned()));
    }

    // Reserve the attempt before doing any work for it: at most the limit
    // is ever checked, however many arrive at once.
    // The address first: a refused address touches no account's counter, so
    // a flood of made-up emails adds no rows.
    let account_key = throttle::account_key(&email);
    let counters = [
        (throttle::address_key(&actor.ip), throttle::PER_ADDRESS),
        (account_key.clone(), throttle::PER_ACCOUNT),
    ];
    let reserved = match crate::throttle::reserve(state.store.as_ref(), &counters, now).await? {
        Reservation::Reserved(r) => r,
        Reservation::Refused { retry_after_secs } => {
            state.metrics.login("throttled");
            let audit = AuditEvent::new(AuditKind::LoginFailed, None, &actor, now)
                .failed("throttled")
                .with_detail(serde_json::json!({ "reason": "throttled", "email": email }));
            state.store.append_audit(&audit).await?;
            let minutes = throttle::minutes(retry_after_secs);
            let mut response = fail(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many attempts. Try again in {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                ),
            );
            if let Ok(v) = retry_after_secs.to_string().parse() {
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            return Ok(response);
        }
    };

    let account = state.store.account_by_email(&email).await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let ok = verify_password(Secret::new(form.password.clone()), stored).await?;
    let account = match account {
        Some(a) if ok => a,
        other => {
            let reason = if other.is_some() {
                "bad_password"
            } else {
                "unknown_account"
            };
            // The reserved attempts stay counted: they are the failures.
            state.metrics.login(reason);
            let audit = AuditEvent::new(AuditKind::LoginFailed, other.as_ref().map(|a| &a.id), &actor, now)
                .failed(reason)
                .with_detail(serde_json::json!({ "reason": reason, "email": email }));
            state.store.append_audit(&audit).await?;
            return Ok(fail(
                StatusCode::BAD_REQUEST,
                "The email or password is not right.".to_owned(),
            ));
        }
    };
    // The right password: its reservations are given back, and the account's
    // earlier failures are forgiven (its counter is cleared).
    crate::throttle::release(state.store.as_ref(), reserved).await?;
    state.store.throttle_clear(&account_key).await?;
    // The right password, but an administrator banned or suspended the account.
    let bans = state.store.bans_of(&account.id).await?;
    if let Some(ban) = gatehouse_core::ban::blocking(&bans, None, now) {
        state.metrics.login("banned");
        let audit = AuditEvent::new(AuditKind::LoginFailed, Some(&account.id), &actor, now)
            .failed("banned")
            .with_detail(serde_json::json!({ "reason": "banned", "email": email }));
        state.store.append_audit(&audit).await?;
        return Ok(fail(StatusCode::FORBIDDEN, ban.message()));
    }
    state.metrics.login("success");

    // The same person entering the password again (a reset elsewhere, or a
    // site asking for a fresh login): the same session resumes, with a new
    // authentication time.
    if let Some(c) = current(&state, &jar, now).await? {
        if c.account.id == account.id {
            let audit = AuditEvent::new(AuditKind::Reauthenticated, Some(&account.id), &actor, now)
                .with_detail(serde_json::json!({ "session": c.session.handle }));
            state
                .store
                .reauthenticate_session(c.digest(), now, &[AuthMethod::Pwd], &audit)
                .await?;
            return Ok(Redirect::to(&next).into_response());
        }
        // Someone else, or a stale session: it ends, a new one begins.
        let audit = AuditEvent::new(AuditKind::Logout, Some(&c.account.id), &actor, now)
            .with_detail(serde_json::json!({ "session": c.session.handle, "reason": "replaced" }));
        let outbox = crate::outbox::logout_messages(&state, &c.account.id, c.digest(), &c.session.handle, now).await?;
        state
            .store
            .end_sessions(
                &c.account.id,
                &SessionSelector::ById(c.digest().clone()),
                &audit,
                &outbox,
            )
            .await?;
        crate::outbox::wake(&state, &outbox);
    }
    let jar = start_session(&state, jar, &account, &actor, now).await?;
    let to = if account.is_ready() {
        next
    } else {
        format!("/verify?next={}", q(&next))
    };
    Ok((jar, Redirect::to(&to)).into_response())
}

pub async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    Client(actor): Client,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    if let Some(c) = current(&state, &jar, now).await? {
        let audit = AuditEvent::new(AuditKind::Logout, Some(&c.account.id), &actor, now)
            .with_detail(serde_json::json!({ "session": c.session.handle }));
        let outbox = crate::outbox::logout_messages(&state, &c.account.id, c.digest(), &c.session.handle, now).await?;
        state
            .store
            .end_sessions(
                &c.account.id,
                &SessionSelector::ById(c.digest().clone()),
                &audit,
                &outbox,
            )
            .await?;
        crate::outbox::wake(&state, &outbox);
    }
    let jar = jar.add(cookies::removal(&state.settings, cookies::SESSION));
    Ok((jar, Redirect::to(&format!("/login?notice={}", q("signed_out")))).into_response())
}
