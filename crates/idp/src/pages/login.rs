//! Log in (and re-authenticate a session that must enter the password
//! again), and log out.
//!
//! The steps of a login (throttled per account and per address, each
//! attempt reserved before the password is checked; a wrong password and an
//! unknown email get the same answer in the same time; bans; the session)
//! are `flows::sign_in`; this page maps its outcome to an answer.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use gatehouse_core::session::SessionState;
use gatehouse_core::throttle;
use gatehouse_core::{Secret, Timestamp};

use super::current;
use super::render::{LoginPage, notice, render};
use crate::AppState;
use crate::error::AppError;
use crate::flows;
use crate::flows::sessions::LogoutReason;
use crate::flows::sign_in::{Refused, SignIn, SignedIn};
use crate::web::auth::session_digest;
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
    let attempt = SignIn {
        email: &form.email,
        password: Secret::new(form.password.clone()),
        browser_session: session_digest(&jar),
        actor: &actor,
    };
    match flows::sign_in::sign_in(&state.flows, attempt, now).await? {
        Ok(SignedIn::Resumed) => Ok(Redirect::to(&next).into_response()),
        Ok(SignedIn::Started { token, ready }) => {
            let jar = jar.add(cookies::session(&state.settings, token.expose()));
            let to = if ready {
                next
            } else {
                format!("/verify?next={}", q(&next))
            };
            Ok((jar, Redirect::to(&to)).into_response())
        }
        Err(Refused::BadEmail(message)) => Ok(fail(StatusCode::BAD_REQUEST, message)),
        Err(Refused::NoPassword) => Ok(fail(StatusCode::BAD_REQUEST, "Enter your password.".to_owned())),
        Err(Refused::Throttled { retry_after_secs }) => {
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
            Ok(response)
        }
        Err(Refused::WrongCredentials) => Ok(fail(
            StatusCode::BAD_REQUEST,
            "The email or password is not right.".to_owned(),
        )),
        Err(Refused::Banned { message }) => Ok(fail(StatusCode::FORBIDDEN, message)),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    Client(actor): Client,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    if let Some(c) = current(&state, &jar, now).await? {
        flows::sessions::log_out(
            &state.flows,
            &c.account.id,
            &c.session,
            LogoutReason::SignedOut,
            &actor,
            now,
        )
        .await?;
    }
    let jar = jar.add(cookies::removal(&state.settings, cookies::SESSION));
    Ok((jar, Redirect::to(&format!("/login?notice={}", q("signed_out")))).into_response())
}
