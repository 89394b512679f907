//! Sign-up and email verification (by the mailed code or the mailed link).
//!
//! Sign-up answers the same whether or not the email already has an account:
//! a taken address gets a mail saying so instead of a new account, and the
//! page always says "check your email". Verification does not sign anyone
//! in: a person who verifies without a session signs in next. Without a
//! session, `POST /verify` answers every failure the same way, for any
//! address, and does the same work. Mail is throttled per address and per
//! client (`crate::throttle::may_mail`).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use gatehouse_core::code::{CodeError, CodePurpose, OneTimeCode};
use gatehouse_core::{Email, ProfileInput, Secret, Timestamp};

use super::current;
use super::render::{ConfirmLinkPage, SignupPage, VerifyPage, error_page, message_page, notice, render};
use crate::AppState;
use crate::error::AppError;
use crate::flows;
use crate::flows::sign_up::{SignUp, Verified};
use crate::web::client::Client;
use crate::web::csrf::{CsrfForm, CsrfToken, NoFields};
use crate::web::{q, safe_next};

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
    email: Option<String>,
    /// Where to go once signed in (an authorization request waiting).
    next: Option<String>,
}

pub async fn page(csrf: CsrfToken, Query(query): Query<NoticeQuery>) -> Response {
    render(
        StatusCode::OK,
        &SignupPage {
            csrf: csrf.value(),
            email: query.email.as_deref().unwrap_or_default(),
            name: "",
            next: &safe_next(query.next.as_deref()).unwrap_or_default(),
            notice: notice(query.notice.as_deref()),
            error: None,
        },
    )
}

/// `&next=...` to carry a local path along, or nothing.
fn next_param(next: Option<&str>) -> String {
    safe_next(next).map(|n| format!("&next={}", q(&n))).unwrap_or_default()
}

#[derive(Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
    /// Optional: the form asks for the name; any profile field is taken.
    #[serde(flatten)]
    profile: ProfileInput,
}

pub async fn submit(
    State(state): State<AppState>,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<SignupForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let fail = |message: String| {
        render(
            StatusCode::BAD_REQUEST,
            &SignupPage {
                csrf: csrf.value(),
                email: form.email.trim(),
                name: &form.profile.name,
                next: &safe_next(form.next.as_deref()).unwrap_or_default(),
                notice: None,
                error: Some(message),
            },
        )
    };
    let input = SignUp {
        email: &form.email,
        password: Secret::new(form.password.clone()),
        profile: &form.profile,
        actor: &actor,
    };
    let email = match flows::sign_up::sign_up(&state.flows, &state.mailer, input, now).await? {
        Ok(email) => email,
        Err(message) => return Ok(fail(message)),
    };
    Ok(Redirect::to(&format!(
        "/verify?email={}{}",
        q(email.as_str()),
        next_param(form.next.as_deref())
    ))
    .into_response())
}

pub async fn verify_page(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: CsrfToken,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, AppError> {
    let signed_in = current(&state, &jar, Timestamp::now()).await?;
    if signed_in.as_ref().is_some_and(|c| c.account.is_ready()) {
        return Ok(Redirect::to("/settings").into_response());
    }
    let email = match &signed_in {
        Some(c) => c.account.email.to_string(),
        None => query.email.unwrap_or_default(),
    };
    Ok(render(
        StatusCode::OK,
        &VerifyPage {
            csrf: csrf.value(),
            email: &email,
            next: &safe_next(query.next.as_deref()).unwrap_or_default(),
            signed_in: signed_in.is_some(),
            notice: notice(query.notice.as_deref()),
            error: None,
        },
    ))
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
    next: Option<String>,
}

/// The same words for every failure when nobody is signed in, so the page
/// does not tell whether the email has an account.
const ANONYMOUS_CODE_ERROR: &str =
    "That code is not right or no longer works. Check the email, or sign in to get a new code.";

pub async fn verify_code(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let signed_in = current(&state, &jar, now).await?;
    let fail = |error: CodeError, shown_email: &str| {
        let message = if signed_in.is_some() {
            error.to_string()
        } else {
            ANONYMOUS_CODE_ERROR.to_owned()
        };
        render(
            StatusCode::BAD_REQUEST,
            &VerifyPage {
                csrf: csrf.value(),
                email: shown_email,
                next: &safe_next(form.next.as_deref()).unwrap_or_default(),
                signed_in: signed_in.is_some(),
                notice: None,
                error: Some(message),
            },
        )
    };
    let shown_email = match &signed_in {
        Some(c) => c.account.email.to_string(),
        // Nobody signed in: every failure is the same page, showing the
        // address as typed, and the work is the same whether the address
        // has an account, a verified one or none.
        None => form.email.trim().to_owned(),
    };
    let account = signed_in.as_ref().map(|c| &c.account);
    Ok(
        match flows::sign_up::verify_code(&state.flows, account, &form.email, &form.code, &actor, now).await? {
            Verified::Already => Redirect::to("/settings").into_response(),
            Verified::Now { email } => after_verification(signed_in.is_some(), &email, form.next.as_deref()),
            Verified::Refused(e) => fail(e, &shown_email),
        },
    )
}

fn after_verification(signed_in: bool, email: &Email, next: Option<&str>) -> Response {
    match (signed_in, safe_next(next)) {
        (true, Some(next)) => Redirect::to(&next).into_response(),
        (true, None) => Redirect::to("/settings?notice=verified_in").into_response(),
        (false, _) => Redirect::to(&format!(
            "/login?notice=verified&email={}{}",
            q(email.as_str()),
            next_param(next)
        ))
        .into_response(),
    }
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    pub token: String,
}

/// The link in the mail opens a page with a button; only the button (a
/// POST) uses the link, so a mail scanner that fetches links uses nothing.
pub async fn verify_link_page(csrf: CsrfToken, Query(query): Query<TokenQuery>) -> Response {
    render(
        StatusCode::OK,
        &ConfirmLinkPage {
            csrf: csrf.value(),
            heading: "Verify your email",
            text: "Confirm that this email address is yours.",
            action: "/verify/link",
            token: &query.token,
            button: "Verify my email",
        },
    )
}

pub async fn verify_link(
    State(state): State<AppState>,
    jar: CookieJar,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<TokenQuery>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let code = match lookup_link(&state, CodePurpose::VerifyEmail, &form.token, now).await? {
        Ok(code) => code,
        Err(response) => return Ok(response),
    };
    match flows::sign_up::verify_link(&state.flows, &code, &actor, now).await? {
        Ok(()) => {
            let signed_in = current(&state, &jar, now)
                .await?
                .is_some_and(|c| c.account.id == code.account_id);
            let login = format!("/login?email={}", q(code.email.as_str()));
            let link = if signed_in {
                ("/settings", "Continue")
            } else {
                (login.as_str(), "Sign in")
            };
            Ok(message_page(
                "Email verified",
                "Your email address is verified.",
                Some(link),
            ))
        }
        Err(e) => Ok(link_error(e)),
    }
}

/// Finds the usable code a mailed link names, or the error page to show.
pub async fn lookup_link(
    state: &AppState,
    purpose: CodePurpose,
    token: &str,
    now: Timestamp,
) -> Result<Result<OneTimeCode, Response>, AppError> {
    let Some(token) = gatehouse_core::OpaqueToken::parse(token) else {
        return Ok(Err(invalid_link()));
    };
    let Some(code) = state.store.code_by_link(purpose, &token.digest()).await? else {
        return Ok(Err(invalid_link()));
    };
    Ok(match code.check_usable(now) {
        Ok(()) => Ok(code),
        Err(e) => Err(link_error(e)),
    })
}

fn invalid_link() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "This link does not work",
        "The link is incomplete or was never issued. Open it again from the email, or ask for a new one.",
    )
}

fn link_error(e: CodeError) -> Response {
    let text = match e {
        CodeError::AlreadyUsed => "This link has already been used. Each link works once.",
        CodeError::Expired => "This link has expired. Ask for a new one.",
        CodeError::Wrong | CodeError::TooManyAttempts => "This link no longer works. Ask for a new one.",
    };
    error_page(StatusCode::BAD_REQUEST, "This link does not work", text)
}

/// A new code for the signed-in, unverified account. Throttled like every
/// mail asked for by someone not yet proven (anyone can sign up with
/// someone else's address and sign in): a throttled request answers the
/// same, and no new code is issued, so the last one mailed still works.
pub async fn resend(
    State(state): State<AppState>,
    jar: CookieJar,
    Client(actor): Client,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let Some(c) = current(&state, &jar, now).await? else {
        return Ok(Redirect::to("/login?next=%2Fverify").into_response());
    };
    if c.account.is_ready() {
        return Ok(Redirect::to("/settings").into_response());
    }
    flows::sign_up::resend_code(&state.flows, &state.mailer, &c.account, &actor, now).await?;
    Ok(Redirect::to("/verify?notice=code_sent").into_response())
}
