//! The account settings page and what it does: the profile, password
//! change, email change (confirmed from the new address), the list of
//! sessions with sign-out, and account deletion. Every action here needs a ready session;
//! the destructive ones also ask for the password.

use crate::events::SecurityEvent;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use gatehouse_core::audit::{AuditEvent, AuditKind};
use gatehouse_core::code::{CodeEffect, CodeError, CodePurpose, OneTimeCode};
use gatehouse_core::session::SessionSelector;
use gatehouse_core::{Email, ProfileInput, Secret, Timestamp, password};
use gatehouse_store::Redeemed;

use super::render::{
    ConfirmLinkPage, ProfileFields, SessionRow, SettingsPage, SiteRow, error_page, message_page, notice, render,
};
use super::signup::{TokenQuery, lookup_link};
use super::{format_time, hash_password, verify_password};
use crate::AppState;
use crate::error::AppError;
use crate::mail::{render as render_mail, templates};
use crate::web::auth::{Current, Ready};
use crate::web::client::Client;
use crate::web::cookies;
use crate::web::csrf::{CsrfForm, CsrfToken, NoFields};
use crate::web::q;

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    Ready(current): Ready,
    csrf: CsrfToken,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, AppError> {
    settings_page(
        &state,
        &current,
        &csrf,
        StatusCode::OK,
        notice(query.notice.as_deref()),
        None,
    )
    .await
}

async fn settings_page(
    state: &AppState,
    current: &Current,
    csrf: &CsrfToken,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<String>,
) -> Result<Response, AppError> {
    let profile = ProfileFields::from(&current.account.profile);
    settings_page_with(state, current, csrf, status, notice, error, profile).await
}

/// [`settings_page`] with the profile form showing `profile`.
async fn settings_page_with(
    state: &AppState,
    current: &Current,
    csrf: &CsrfToken,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<String>,
    profile: ProfileFields,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let sessions = state
        .store
        .sessions_of(&current.account.id)
        .await?
        .into_iter()
        .filter(|s| s.state(now) != gatehouse_core::session::SessionState::Expired)
        .map(|s| SessionRow {
            current: s.id_digest == current.session.id_digest,
            handle: s.handle,
            user_agent: if s.user_agent.is_empty() {
                "Unknown browser".to_owned()
            } else {
                s.user_agent
            },
            ip: s.ip,
            created: format_time(s.created_at),
            last_seen: format_time(s.last_seen_at),
            needs_reauth: s.needs_reauth,
        })
        .collect();
    let pending_email = state
        .store
        .latest_code(&current.account.id, CodePurpose::ChangeEmail)
        .await?
        .filter(|c| c.check_usable(now).is_ok())
        .map(|c| c.email.to_string());
    let mut sites = Vec::new();
    for consent in state.store.consents_of(&current.account.id).await? {
        if let Some(client) = state.store.client(&consent.client_id).await? {
            sites.push(SiteRow {
                client_id: client.id.to_string(),
                name: client.name,
                scopes: consent.scopes.to_string(),
                since: format_time(consent.granted_at),
            });
        }
    }
    Ok(render(
        status,
        &SettingsPage {
            csrf: csrf.value(),
            email: current.account.email.as_str(),
            uid: current.account.id.as_str(),
            profile,
            sessions,
            sites,
            pending_email,
            notice,
            error,
        },
    ))
}

/// Re-renders the settings page with an error, status 400.
async fn refuse(state: &AppState, current: &Current, csrf: &CsrfToken, message: String) -> Result<Response, AppError> {
    settings_page(state, current, csrf, StatusCode::BAD_REQUEST, None, Some(message)).await
}

async fn password_ok(current: &Current, given: String) -> Result<bool, AppError> {
    verify_password(Secret::new(given), Some(current.account.password_hash.clone())).await
}

const WRONG_PASSWORD: &str = "Your current password is not right.";

/// Saves the profile. A refused field re-shows the form as typed with the
/// error, and changes nothing. Reliers are not told (see ARCHITECTURE.md):
/// they read the profile from UserInfo or the next ID token, `updated_at`
/// saying whether it changed.
pub async fn change_profile(
    State(state): State<AppState>,
    Ready(current): Ready,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<ProfileInput>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let old = &current.account.profile;
    let profile = match old.edited(&form, now) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(Redirect::to("/settings?notice=profile_saved").into_response()),
        Err(e) => {
            let typed = ProfileFields::from(&form);
            return settings_page_with(
                &state,
                &current,
                &csrf,
                StatusCode::BAD_REQUEST,
                None,
                Some(e.to_string()),
                typed,
            )
            .await;
        }
    };
    let audit = AuditEvent::new(AuditKind::ProfileChanged, Some(&current.account.id), &actor, now)
        .with_detail(serde_json::json!({ "fields": profile.changed_fields(old) }));
    if !state
        .store
        .set_profile(&current.account.id, &profile, now, &audit)
        .await?
    {
        return Err(AppError::internal("the signed-in account is gone"));
    }
    Ok(Redirect::to("/settings?notice=profile_saved").into_response())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    Ready(current): Ready,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    if !password_ok(&current, form.current_password).await? {
        let audit =
            AuditEvent::new(AuditKind::PasswordChanged, Some(&current.account.id), &actor, now).failed("bad_password");
        state.store.append_audit(&audit).await?;
        return refuse(&state, &current, &csrf, WRONG_PASSWORD.to_owned()).await;
    }
    if let Err(e) = password::check_policy(&form.new_password, Some(&current.account.email)) {
        return refuse(&state, &current, &csrf, e.to_string()).await;
    }
    let hash = hash_password(Secret::new(form.new_password)).await?;
    let audit = AuditEvent::new(AuditKind::PasswordChanged, Some(&current.account.id), &actor, now);
    let outbox = crate::events::security_events(
        &state,
        &current.account.id,
        None,
        &[SecurityEvent::CredentialChange, SecurityEvent::SessionRevoked],
        now,
    )
    .await?;
    state
        .store
        .change_password(
            &current.account.id,
            hash.expose(),
            Some(current.digest()),
            now,
            &audit,
            &outbox,
        )
        .await?;
    crate::outbox::wake(&state, &outbox);
    let reset_link = state
        .settings
        .url(&format!("/reset?email={}", q(current.account.email.as_str())));
    state.mailer.send(
        &current.account.email,
        render_mail(&templates::PasswordChanged {
            reset_link: &reset_link,
        }),
    );
    Ok(Redirect::to("/settings?notice=password_changed").into_response())
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn change_email(
    State(state): State<AppState>,
    Ready(current): Ready,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let new_email = match Email::parse(&form.email) {
        Ok(e) => e,
        Err(e) => return refuse(&state, &current, &csrf, e.to_string()).await,
    };
    if !password_ok(&current, form.password).await? {
        return refuse(&state, &current, &csrf, WRONG_PASSWORD.to_owned()).await;
    }
    if new_email == current.account.email {
        return refuse(
            &state,
            &current,
            &csrf,
            "That is already your email address.".to_owned(),
        )
        .await;
    }
    let audit = AuditEvent::new(AuditKind::EmailChangeRequested, Some(&current.account.id), &actor, now)
        .with_detail(serde_json::json!({ "from": current.account.email, "to": new_email }));
    let sent = Redirect::to("/settings?notice=email_change_sent").into_response();
    // Mail to an address of the person's choosing: counted as every mail on
    // request is (per target and per client address), and a throttled
    // request answers the same (the count says nothing of the address).
    if !crate::throttle::may_mail(state.store.as_ref(), &new_email, &actor.ip, now).await? {
        state.store.append_audit(&audit.failed("throttled")).await?;
        return Ok(sent);
    }
    if state.store.account_by_email(&new_email).await?.is_some() {
        // Say nothing here about the other account; tell the address's owner.
        state.store.append_audit(&audit.failed("email_taken")).await?;
        let login_link = state.settings.url(&format!("/login?email={}", q(new_email.as_str())));
        let reset_link = state.settings.url(&format!("/reset?email={}", q(new_email.as_str())));
        state.mailer.send(
            &new_email,
            render_mail(&templates::AlreadyRegistered {
                login_link: &login_link,
                reset_link: &reset_link,
            }),
        );
    } else {
        let issued = OneTimeCode::issue(
            CodePurpose::ChangeEmail,
            current.account.id.clone(),
            new_email.clone(),
            now,
        );
        state.store.insert_code(&issued.record, Some(&audit)).await?;
        let link = state
            .settings
            .url(&format!("/email/confirm?token={}", issued.link_token.expose()));
        state.mailer.send(
            &new_email,
            render_mail(&templates::ChangeEmail {
                code: issued.code.expose(),
                link: &link,
            }),
        );
    }
    Ok(sent)
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

pub async fn confirm_email_code(
    State(state): State<AppState>,
    Ready(current): Ready,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let Some(code) = state
        .store
        .latest_code(&current.account.id, CodePurpose::ChangeEmail)
        .await?
    else {
        return refuse(&state, &current, &csrf, CodeError::Wrong.to_string()).await;
    };
    if let Err(e) = super::guess_code(&state, &code, &form.code, now).await? {
        return refuse(&state, &current, &csrf, e.to_string()).await;
    }
    match redeem_email_change(&state, &code, &current.account.email, &actor, now).await? {
        Ok(()) => Ok(Redirect::to("/settings?notice=email_changed").into_response()),
        Err(message) => refuse(&state, &current, &csrf, message.to_owned()).await,
    }
}

/// Applies an email change and tells the old address. `Err` carries what to
/// tell the person when it could not be applied.
async fn redeem_email_change(
    state: &AppState,
    code: &OneTimeCode,
    old_email: &Email,
    actor: &gatehouse_core::audit::Actor,
    now: Timestamp,
) -> Result<Result<(), &'static str>, AppError> {
    let audit = AuditEvent::new(AuditKind::EmailChanged, Some(&code.account_id), actor, now)
        .with_detail(serde_json::json!({ "from": old_email, "to": code.email }));
    let outbox = crate::events::security_events(
        state,
        &code.account_id,
        None,
        &[SecurityEvent::IdentifierChanged {
            new_email: code.email.as_str().to_owned(),
        }],
        now,
    )
    .await?;
    Ok(
        match state
            .store
            .redeem_code(code, &CodeEffect::ChangeEmail, now, &audit, &outbox)
            .await?
        {
            Redeemed::Done => {
                crate::outbox::wake(state, &outbox);
                let reset_link = state.settings.url(&format!("/reset?email={}", q(old_email.as_str())));
                state.mailer.send(
                    old_email,
                    render_mail(&templates::EmailChanged {
                        new_email: code.email.as_str(),
                        reset_link: &reset_link,
                    }),
                );
                Ok(())
            }
            Redeemed::AlreadyUsed => Err("That code has already been used."),
            Redeemed::EmailTaken => Err("That address cannot be used. Choose another."),
        },
    )
}

pub async fn confirm_email_link_page(csrf: CsrfToken, Query(query): Query<TokenQuery>) -> Response {
    render(
        StatusCode::OK,
        &ConfirmLinkPage {
            csrf: csrf.value(),
            heading: "Confirm your new email",
            text: "Confirm that this address should become the email of your Gatehouse account.",
            action: "/email/confirm",
            token: &query.token,
            button: "Use this address",
        },
    )
}

pub async fn confirm_email_link(
    State(state): State<AppState>,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<TokenQuery>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let code = match lookup_link(&state, CodePurpose::ChangeEmail, &form.token, now).await? {
        Ok(code) => code,
        Err(response) => return Ok(response),
    };
    let Some(account) = state.store.account_by_id(&code.account_id).await? else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            "The account no longer exists.",
        ));
    };
    match redeem_email_change(&state, &code, &account.email, &actor, now).await? {
        Ok(()) => Ok(message_page(
            "Email changed",
            &format!("Your account's email address is now {}.", code.email),
            Some(("/settings", "Go to your account")),
        )),
        Err(message) => Ok(error_page(StatusCode::BAD_REQUEST, "This link does not work", message)),
    }
}

#[derive(Deserialize)]
pub struct HandleForm {
    #[serde(default)]
    handle: String,
}

pub async fn end_session(
    State(state): State<AppState>,
    Ready(current): Ready,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<HandleForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    if form.handle.is_empty() || form.handle.len() > 64 || form.handle == current.session.handle {
        return refuse(
            &state,
            &current,
            &csrf,
            "Choose one of your other sessions, or use Sign out.".to_owned(),
        )
        .await;
    }
    let audit = AuditEvent::new(AuditKind::SessionRevoked, Some(&current.account.id), &actor, now)
        .with_detail(serde_json::json!({ "session": form.handle }));
    let mut outbox = Vec::new();
    for session in state.store.sessions_of(&current.account.id).await? {
        if session.handle == form.handle {
            outbox =
                crate::outbox::logout_messages(&state, &current.account.id, &session.id_digest, &session.handle, now)
                    .await?;
        }
    }
    let ended = state
        .store
        .end_sessions(
            &current.account.id,
            &SessionSelector::ByHandle(form.handle),
            &audit,
            &outbox,
        )
        .await?;
    crate::outbox::wake(&state, &outbox);
    if ended == 0 {
        return refuse(&state, &current, &csrf, "That session has already ended.".to_owned()).await;
    }
    Ok(Redirect::to("/settings?notice=session_ended").into_response())
}

pub async fn end_other_sessions(
    State(state): State<AppState>,
    Ready(current): Ready,
    Client(actor): Client,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let audit = AuditEvent::new(AuditKind::SessionRevoked, Some(&current.account.id), &actor, now)
        .with_detail(serde_json::json!({ "sessions": "all_others" }));
    let outbox =
        crate::outbox::logout_messages_for_account(&state, &current.account.id, Some(current.digest()), now).await?;
    state
        .store
        .end_sessions(
            &current.account.id,
            &SessionSelector::AllExcept(current.digest().clone()),
            &audit,
            &outbox,
        )
        .await?;
    crate::outbox::wake(&state, &outbox);
    Ok(Redirect::to("/settings?notice=others_ended").into_response())
}

#[derive(Deserialize)]
pub struct SiteForm {
    #[serde(default)]
    client_id: String,
}

/// Disconnects a site: forgets the consent and revokes what it was issued.
pub async fn revoke_site(
    State(state): State<AppState>,
    Ready(current): Ready,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<SiteForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    if form.client_id.is_empty() || form.client_id.len() > 128 {
        return refuse(
            &state,
            &current,
            &csrf,
            "Choose one of your connected sites.".to_owned(),
        )
        .await;
    }
    let client_id = gatehouse_core::oauth::ClientId(form.client_id);
    let audit = AuditEvent::new(AuditKind::ConsentRevoked, Some(&current.account.id), &actor, now)
        .with_detail(serde_json::json!({ "client_id": client_id }));
    if !state
        .store
        .revoke_consent(&current.account.id, &client_id, now, &audit)
        .await?
    {
        return refuse(&state, &current, &csrf, "That site is not connected.".to_owned()).await;
    }
    Ok(Redirect::to("/settings?notice=site_disconnected").into_response())
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    password: String,
}

pub async fn delete_account(
    State(state): State<AppState>,
    Ready(current): Ready,
    jar: CookieJar,
    csrf: CsrfToken,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    if !password_ok(&current, form.password).await? {
        return refuse(&state, &current, &csrf, WRONG_PASSWORD.to_owned()).await;
    }
    let audit = AuditEvent::new(AuditKind::AccountDeleted, Some(&current.account.id), &actor, now)
        .with_detail(serde_json::json!({ "email": current.account.email }));
    let mut outbox = crate::outbox::logout_messages_for_account(&state, &current.account.id, None, now).await?;
    outbox.extend(
        crate::events::security_events(&state, &current.account.id, None, &[SecurityEvent::AccountPurged], now).await?,
    );
    state.store.delete_account(&current.account.id, &audit, &outbox).await?;
    crate::outbox::wake(&state, &outbox);
    let jar = jar.add(cookies::removal(&state.settings, cookies::SESSION));
    Ok((
        jar,
        message_page(
            "Account deleted",
            "Your account is deleted and you are signed out everywhere.",
            Some(("/signup", "Create a new account")),
        ),
    )
        .into_response())
}
