//! The account settings page and what it does: the profile, password
//! change, email change (confirmed from the new address), the list of
//! sessions with sign-out, and account deletion. Every action here needs a ready session;
//! the destructive ones also ask for the password.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use gatehouse_core::code::CodePurpose;
use gatehouse_core::{ProfileInput, Secret, Timestamp};

use super::format_time;
use super::render::{
    ConfirmLinkPage, ProfileFields, SessionRow, SettingsPage, SiteRow, error_page, message_page, notice, render,
};
use super::signup::{TokenQuery, lookup_link};
use crate::AppState;
use crate::error::AppError;
use crate::flows;
use crate::flows::consent::NotRevoked;
use crate::flows::sessions::EndOtherError;
use crate::web::auth::{Current, Ready};
use crate::web::client::Client;
use crate::web::cookies;
use crate::web::csrf::{CsrfForm, CsrfToken, NoFields};

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
    if let Err(e) = flows::account::change_profile(&state.flows, &current, &form, &actor, now).await? {
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
    let changed = flows::account::change_password(
        &state.flows,
        &state.mailer,
        &current,
        Secret::new(form.current_password),
        Secret::new(form.new_password),
        &actor,
        now,
    )
    .await?;
    if let Err(e) = changed {
        return refuse(&state, &current, &csrf, e.to_string()).await;
    }
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
    let asked = flows::account::request_email_change(
        &state.flows,
        &state.mailer,
        &current,
        &form.email,
        Secret::new(form.password),
        &actor,
        now,
    )
    .await?;
    if let Err(e) = asked {
        return refuse(&state, &current, &csrf, e.to_string()).await;
    }
    let sent = Redirect::to("/settings?notice=email_change_sent").into_response();
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
    match flows::account::confirm_email_code(&state.flows, &state.mailer, &current, &form.code, &actor, now).await? {
        Ok(()) => Ok(Redirect::to("/settings?notice=email_changed").into_response()),
        Err(e) => refuse(&state, &current, &csrf, e.to_string()).await,
    }
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
    match flows::account::confirm_email_change(&state.flows, &state.mailer, &code, &account.email, &actor, now).await? {
        Ok(()) => Ok(message_page(
            "Email changed",
            &format!("Your account's email address is now {}.", code.email),
            Some(("/settings", "Go to your account")),
        )),
        Err(e) => Ok(error_page(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            &e.to_string(),
        )),
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
    match flows::sessions::end_other(&state.flows, &current, &form.handle, &actor, now).await? {
        Ok(()) => {}
        Err(EndOtherError::NotOther) => {
            return refuse(
                &state,
                &current,
                &csrf,
                "Choose one of your other sessions, or use Sign out.".to_owned(),
            )
            .await;
        }
        Err(EndOtherError::AlreadyEnded) => {
            return refuse(&state, &current, &csrf, "That session has already ended.".to_owned()).await;
        }
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
    flows::sessions::end_all_others(&state.flows, &current, &actor, now).await?;
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
    match flows::consent::revoke(&state.flows, &current.account.id, &form.client_id, &actor, now).await? {
        Ok(()) => {}
        Err(NotRevoked::NotChosen) => {
            return refuse(
                &state,
                &current,
                &csrf,
                "Choose one of your connected sites.".to_owned(),
            )
            .await;
        }
        Err(NotRevoked::NotConnected) => {
            return refuse(&state, &current, &csrf, "That site is not connected.".to_owned()).await;
        }
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
    if let Err(e) =
        flows::account::delete_account(&state.flows, &current, Secret::new(form.password), &actor, now).await?
    {
        return refuse(&state, &current, &csrf, e.to_string()).await;
    }
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
