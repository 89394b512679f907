//! Password reset by email. The answer to a reset request is the same
//! whether or not the address has an account, and so is the work before it:
//! what depends on the account happens after the answer. Reset mail is
//! throttled per address and per client, with the same answer. Completing a
//! reset does not end the account's other sessions: it marks them as
//! needing the password again, and each resumes once it is entered.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use gatehouse_core::code::{CodeError, CodePurpose};
use gatehouse_core::{Secret, Timestamp};

use super::render::{ResetFormPage, ResetRequestPage, error_page, message_page, notice, render};
use super::signup::{TokenQuery, lookup_link};
use crate::AppState;
use crate::error::AppError;
use crate::flows;
use crate::flows::reset::NotReset;
use crate::web::auth::session_digest;
use crate::web::client::Client;
use crate::web::csrf::{CsrfForm, CsrfToken};
use crate::web::q;

#[derive(Deserialize)]
pub struct EmailQuery {
    email: Option<String>,
    notice: Option<String>,
}

pub async fn page(csrf: CsrfToken, Query(query): Query<EmailQuery>) -> Response {
    render(
        StatusCode::OK,
        &ResetRequestPage {
            csrf: csrf.value(),
            email: query.email.as_deref().unwrap_or_default(),
            notice: notice(query.notice.as_deref()),
            error: None,
        },
    )
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    email: String,
}

pub async fn submit(
    State(state): State<AppState>,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<ResetForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    match flows::reset::request(&state.flows, &state.mailer, &form.email, &actor, now).await? {
        Ok(email) => Ok(Redirect::to(&format!("/reset/sent?email={}", q(email.as_str()))).into_response()),
        Err(message) => Ok(render(
            StatusCode::BAD_REQUEST,
            &ResetRequestPage {
                csrf: csrf.value(),
                email: form.email.trim(),
                notice: None,
                error: Some(message),
            },
        )),
    }
}

pub async fn sent(Query(query): Query<EmailQuery>) -> Response {
    let email = query.email.unwrap_or_default();
    let text = format!(
        "If {} has a Gatehouse account, we sent it a link to choose a new password. The link expires in one hour.",
        if email.is_empty() {
            "that address"
        } else {
            email.as_str()
        }
    );
    message_page("Check your email", &text, Some(("/login", "Back to sign in")))
}

pub async fn link_page(
    State(state): State<AppState>,
    csrf: CsrfToken,
    Query(query): Query<TokenQuery>,
) -> Result<Response, AppError> {
    let code = match lookup_link(&state, CodePurpose::ResetPassword, &query.token, Timestamp::now()).await? {
        Ok(code) => code,
        Err(response) => return Ok(response),
    };
    Ok(render(
        StatusCode::OK,
        &ResetFormPage {
            csrf: csrf.value(),
            token: &query.token,
            email: code.email.as_str(),
            notice: None,
            error: None,
        },
    ))
}

#[derive(Deserialize)]
pub struct NewPasswordForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

pub async fn complete(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<NewPasswordForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let code = match lookup_link(&state, CodePurpose::ResetPassword, &form.token, now).await? {
        Ok(code) => code,
        Err(response) => return Ok(response),
    };
    let password = Secret::new(form.password.clone());
    let browser_session = session_digest(&jar);
    match flows::reset::complete(&state.flows, &code, password, browser_session.as_ref(), &actor, now).await? {
        Ok(()) => Ok(Redirect::to(&format!(
            "/login?notice=password_reset&email={}",
            q(code.email.as_str())
        ))
        .into_response()),
        Err(NotReset::Password(message)) => Ok(render(
            StatusCode::BAD_REQUEST,
            &ResetFormPage {
                csrf: csrf.value(),
                token: &form.token,
                email: code.email.as_str(),
                notice: None,
                error: Some(message),
            },
        )),
        Err(NotReset::AlreadyUsed) => Ok(error_page(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            &CodeError::AlreadyUsed.to_string(),
        )),
    }
}
