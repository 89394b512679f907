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

use gatehouse_core::audit::{AuditEvent, AuditKind};
use gatehouse_core::code::{CodeEffect, CodeError, CodePurpose, OneTimeCode};
use gatehouse_core::{Account, AccountId, Email, Profile, ProfileInput, Secret, Timestamp, password};
use gatehouse_store::{Redeemed, StoreError};

use super::render::{ConfirmLinkPage, SignupPage, VerifyPage, error_page, message_page, notice, render};
use super::{current, hash_password};
use crate::AppState;
use crate::error::AppError;
use crate::mail::{render as render_mail, templates};
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
    let email = match Email::parse(&form.email) {
        Ok(e) => e,
        Err(e) => return Ok(fail(e.to_string())),
    };
    if let Err(e) = password::check_policy(&form.password, Some(&email)) {
        return Ok(fail(e.to_string()));
    }
    let profile = match Profile::default().edited(&form.profile, now) {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => return Ok(fail(e.to_string())),
    };
    // Hash first, whatever happens next, so both branches take as long.
    let hash = hash_password(Secret::new(form.password)).await?;
    let account = Account {
        id: AccountId::generate(),
        email: email.clone(),
        email_verified: false,
        password_hash: hash,
        created_at: now,
        updated_at: now,
        profile,
    };
    let audit = AuditEvent::new(AuditKind::SignUp, Some(&account.id), &actor, now)
        .with_detail(serde_json::json!({ "email": email }));
    // Mail is throttled per address and per client, counted the same way for
    // a new and a taken address; a throttled sign-up answers the same, and
    // only the mail is not sent (a new account can ask for its code again).
    let may_mail = crate::throttle::may_mail(state.store.as_ref(), &email, &actor.ip, now).await?;
    match state.store.create_account(&account, &audit).await {
        Ok(()) => {
            state.metrics.signups.inc();
            if may_mail {
                send_verification(&state, &account.id, &email, now).await?;
            }
        }
        Err(StoreError::Conflict(_)) => {
            let existing = state.store.account_by_email(&email).await?.map(|a| a.id);
            let audit = AuditEvent::new(AuditKind::SignUp, existing.as_ref(), &actor, now)
                .failed("email_taken")
                .with_detail(serde_json::json!({ "reason": "email_taken", "email": email }));
            state.store.append_audit(&audit).await?;
            if may_mail {
                let login_link = state.settings.url(&format!("/login?email={}", q(email.as_str())));
                let reset_link = state.settings.url(&format!("/reset?email={}", q(email.as_str())));
                state.mailer.send(
                    &email,
                    render_mail(&templates::AlreadyRegistered {
                        login_link: &login_link,
                        reset_link: &reset_link,
                    }),
                );
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to(&format!(
        "/verify?email={}{}",
        q(email.as_str()),
        next_param(form.next.as_deref())
    ))
    .into_response())
}

/// Issues a verification code (ending earlier ones) and mails it.
pub async fn send_verification(
    state: &AppState,
    account: &AccountId,
    email: &Email,
    now: Timestamp,
) -> Result<(), AppError> {
    let issued = OneTimeCode::issue(CodePurpose::VerifyEmail, account.clone(), email.clone(), now);
    state.store.insert_code(&issued.record, None).await?;
    let link = state
        .settings
        .url(&format!("/verify/link?token={}", issued.link_token.expose()));
    state.mailer.send(
        email,
        render_mail(&templates::Verify {
            code: issued.code.expose(),
            link: &link,
        }),
    );
    Ok(())
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
    let account = match &signed_in {
        Some(c) if c.account.is_ready() => return Ok(Redirect::to("/settings").into_response()),
        Some(c) => c.account.clone(),
        None => {
            // Nobody signed in: every failure is the same page, showing the
            // address as typed, and the work is the same whether the address
            // has an account, a verified one or none (see `anonymous_code`).
            let shown_email = form.email.trim();
            return Ok(match anonymous_code(&state, &form, now).await? {
                Some((account, code)) => match redeem(&state, &actor, &account, &code, now).await? {
                    Ok(()) => after_verification(false, &account.email, form.next.as_deref()),
                    Err(e) => fail(e, shown_email),
                },
                None => fail(CodeError::Wrong, shown_email),
            });
        }
    };
    let shown_email = account.email.to_string();
    let Some(code) = state.store.latest_code(&account.id, CodePurpose::VerifyEmail).await? else {
        return Ok(fail(CodeError::Wrong, &shown_email));
    };
    if let Err(e) = super::guess_code(&state, &code, &form.code, now).await? {
        return Ok(fail(e, &shown_email));
    }
    Ok(match redeem(&state, &actor, &account, &code, now).await? {
        Ok(()) => after_verification(true, &account.email, form.next.as_deref()),
        Err(e) => fail(e, &shown_email),
    })
}

/// The unverified account and its code that the anonymous form's address
/// and code name, if the code is right. The store and the hashing do the
/// same work for every address: one account lookup, one code lookup (for a
/// verified or unknown address, of an id that names nothing), one guess
/// reserved (the same statement, changing no row), one code checked (a
/// throwaway one). Only a code of the right shape gets this far, for any
/// address.
async fn anonymous_code(
    state: &AppState,
    form: &CodeForm,
    now: Timestamp,
) -> Result<Option<(Account, OneTimeCode)>, AppError> {
    if gatehouse_core::code::normalise_code(&form.code).is_none() {
        return Ok(None);
    }
    let account = match Email::parse(&form.email) {
        Ok(email) => state.store.account_by_email(&email).await?,
        Err(_) => None,
    };
    let account = account.filter(|a| !a.is_ready());
    let nobody = AccountId::generate();
    let code = state
        .store
        .latest_code(account.as_ref().map_or(&nobody, |a| &a.id), CodePurpose::VerifyEmail)
        .await?;
    let throwaway = OneTimeCode::issue(
        CodePurpose::VerifyEmail,
        nobody.clone(),
        Email::parse("nobody@example.com").map_err(|e| AppError::Internal(e.to_string()))?,
        now,
    )
    .record;
    let usable = code.as_ref().is_some_and(|c| c.check_usable(now).is_ok());
    let reserved = state
        .store
        .reserve_code_attempt(code.as_ref().filter(|_| usable).map_or(&throwaway.id, |c| &c.id))
        .await?;
    let right = code.as_ref().unwrap_or(&throwaway).check_code(&form.code, now).is_ok();
    Ok(match (account, code) {
        (Some(account), Some(code)) if usable && reserved && right => Some((account, code)),
        _ => None,
    })
}

/// Redeems a checked verification code.
async fn redeem(
    state: &AppState,
    actor: &gatehouse_core::audit::Actor,
    account: &Account,
    code: &OneTimeCode,
    now: Timestamp,
) -> Result<Result<(), CodeError>, AppError> {
    let audit = AuditEvent::new(AuditKind::EmailVerified, Some(&account.id), actor, now)
        .with_detail(serde_json::json!({ "email": code.email, "by": "code" }));
    Ok(
        match state
            .store
            .redeem_code(code, &CodeEffect::VerifyEmail, now, &audit, &[])
            .await?
        {
            Redeemed::Done => Ok(()),
            Redeemed::AlreadyUsed | Redeemed::EmailTaken => Err(CodeError::AlreadyUsed),
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
    let audit = AuditEvent::new(AuditKind::EmailVerified, Some(&code.account_id), &actor, now)
        .with_detail(serde_json::json!({ "email": code.email, "by": "link" }));
    match state
        .store
        .redeem_code(&code, &CodeEffect::VerifyEmail, now, &audit, &[])
        .await?
    {
        Redeemed::Done => {
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
        Redeemed::AlreadyUsed | Redeemed::EmailTaken => Ok(link_error(CodeError::AlreadyUsed)),
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
    if crate::throttle::may_mail(state.store.as_ref(), &c.account.email, &actor.ip, now).await? {
        send_verification(&state, &c.account.id, &c.account.email, now).await?;
    }
    Ok(Redirect::to("/verify?notice=code_sent").into_response())
}
