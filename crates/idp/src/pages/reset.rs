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

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::code::{CodeEffect, CodeError, CodePurpose, OneTimeCode};
use gatehouse_core::{Email, Secret, Timestamp, password};
use gatehouse_store::Redeemed;

use super::render::{ResetFormPage, ResetRequestPage, error_page, message_page, notice, render};
use super::signup::{TokenQuery, lookup_link};
use super::{current, hash_password};
use crate::AppState;
use crate::error::AppError;
use crate::mail::{render as render_mail, templates};
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
    let email = match Email::parse(&form.email) {
        Ok(e) => e,
        Err(e) => {
            return Ok(render(
                StatusCode::BAD_REQUEST,
                &ResetRequestPage {
                    csrf: csrf.value(),
                    email: form.email.trim(),
                    notice: None,
                    error: Some(e.to_string()),
                },
            ));
        }
    };
    // The same work for every address, known or not: the mail counters
    // (per client address and per target, whether or not it has an account)
    // are reserved here, and everything that depends on the account (the
    // lookup, the code, its audit event, the mail) happens in a task after
    // the answer. A throttled request answers the same; no mail is sent, and
    // no task is started (so a flood queues no work behind its answers).
    let redirect = Redirect::to(&format!("/reset/sent?email={}", q(email.as_str()))).into_response();
    if crate::throttle::may_mail(state.store.as_ref(), &email, &actor.ip, now).await? {
        tokio::spawn(async move {
            if let Err(e) = request_reset(&state, &email, &actor, now).await {
                tracing::error!(error = %e, "password reset request failed");
            }
        });
    } else {
        let audit = AuditEvent::new(AuditKind::PasswordResetRequested, None, &actor, now)
            .failed("throttled")
            .with_detail(serde_json::json!({ "reason": "throttled", "email": email }));
        state.store.append_audit(&audit).await?;
    }
    Ok(redirect)
}

/// What a reset request does behind its answer.
async fn request_reset(state: &AppState, email: &Email, actor: &Actor, now: Timestamp) -> Result<(), AppError> {
    match state.store.account_by_email(email).await? {
        Some(account) => {
            let issued = OneTimeCode::issue(CodePurpose::ResetPassword, account.id.clone(), email.clone(), now);
            let audit = AuditEvent::new(AuditKind::PasswordResetRequested, Some(&account.id), actor, now)
                .with_detail(serde_json::json!({ "email": email }));
            state.store.insert_code(&issued.record, Some(&audit)).await?;
            let link = state
                .settings
                .url(&format!("/reset/link?token={}", issued.link_token.expose()));
            state.mailer.send(email, render_mail(&templates::Reset { link: &link }));
        }
        None => {
            let audit = AuditEvent::new(AuditKind::PasswordResetRequested, None, actor, now)
                .failed("unknown_account")
                .with_detail(serde_json::json!({ "reason": "unknown_account", "email": email }));
            state.store.append_audit(&audit).await?;
        }
    }
    Ok(())
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
    if let Err(e) = password::check_policy(&form.password, Some(&code.email)) {
        return Ok(render(
            StatusCode::BAD_REQUEST,
            &ResetFormPage {
                csrf: csrf.value(),
                token: &form.token,
                email: code.email.as_str(),
                notice: None,
                error: Some(e.to_string()),
            },
        ));
    }
    let new_hash = hash_password(Secret::new(form.password)).await?;
    // The browser that resets keeps its own session, if it has one for this account.
    let keep = current(&state, &jar, now)
        .await?
        .filter(|c| c.account.id == code.account_id)
        .map(|c| c.session.id_digest);
    let audit = AuditEvent::new(AuditKind::PasswordResetCompleted, Some(&code.account_id), &actor, now)
        .with_detail(serde_json::json!({ "email": code.email }));
    let effect = CodeEffect::ResetPassword { new_hash, keep };
    let outbox = crate::events::security_events(
        &state,
        &code.account_id,
        None,
        &[
            crate::events::SecurityEvent::CredentialChange,
            crate::events::SecurityEvent::SessionRevoked,
        ],
        now,
    )
    .await?;
    let redeemed = state.store.redeem_code(&code, &effect, now, &audit, &outbox).await?;
    if redeemed == Redeemed::Done {
        crate::outbox::wake(&state, &outbox);
    }
    match redeemed {
        Redeemed::Done => Ok(Redirect::to(&format!(
            "/login?notice=password_reset&email={}",
            q(code.email.as_str())
        ))
        .into_response()),
        Redeemed::AlreadyUsed | Redeemed::EmailTaken => Ok(error_page(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            &CodeError::AlreadyUsed.to_string(),
        )),
    }
}
