//! The authorization endpoint (`/authorize`), the return from a login or
//! consent (`/authorize/resume`), the consent form (`/authorize/consent`)
//! and the account chooser of `prompt=select_account`
//! (`/authorize/select`).
//!
//! The request is checked by `gatehouse_core::oauth::authorize` (the ordered
//! list of checks), then `decide` says what happens: issue a code, ask the
//! person to sign in (again) or to consent, or answer the client with an
//! error. A request that has to wait for the person is stored as an
//! *interaction*; the login or consent page returns to
//! `/authorize/resume?interaction=...`, which checks the request again.

use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use gatehouse_core::oauth::authorize::{
    self, AuthorizationRequest, AuthorizeParams, ConsentView, Next, Rejection, SessionView,
};
use gatehouse_core::oauth::grant::{self, AuthCode, Interaction};
use gatehouse_core::oauth::{ClientId, OAuthError};
use gatehouse_core::session::SessionState;
use gatehouse_core::{OpaqueToken, Timestamp};

use super::error::{page_error, redirect_error, redirect_with};
use crate::AppState;
use crate::error::AppError;
use crate::pages::render::{ConsentPage, SelectAccountPage, error_page, render};
use crate::web::auth::{self, Current};
use crate::web::client::Client;
use crate::web::csrf::{CsrfForm, CsrfToken};
use crate::web::q;

/// `GET /authorize` (and `POST`, whose form the router turns into a query).
pub async fn authorize(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: CsrfToken,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    run(&state, &jar, &csrf, &query, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /authorize`: the same request as a form body (OpenID Connect Core
/// §3.1.2.1). It comes from the client's site, so it carries no CSRF token.
pub async fn authorize_post(State(state): State<AppState>, jar: CookieJar, csrf: CsrfToken, body: String) -> Response {
    run(&state, &jar, &csrf, &body, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub struct ResumeQuery {
    #[serde(default)]
    interaction: String,
}

/// `GET /authorize/resume?interaction=...`: back from login or consent.
pub async fn resume(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: CsrfToken,
    Query(q): Query<ResumeQuery>,
) -> Response {
    let now = Timestamp::now();
    match load_interaction(&state, &q.interaction, now).await {
        Ok(Some((token, interaction))) => run(
            &state,
            &jar,
            &csrf,
            &interaction.query.clone(),
            Some((token, interaction)),
        )
        .await
        .unwrap_or_else(IntoResponse::into_response),
        Ok(None) => expired_interaction(),
        Err(e) => e.into_response(),
    }
}

fn expired_interaction() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-in request has expired",
        "Go back to the site you came from and start again.",
    )
}

async fn load_interaction(
    state: &AppState,
    token: &str,
    now: Timestamp,
) -> Result<Option<(OpaqueToken, Interaction)>, AppError> {
    let Some(token) = OpaqueToken::parse(token) else {
        return Ok(None);
    };
    let found = state.store.interaction(&token.digest()).await?;
    Ok(found.filter(|i| i.expires_at > now).map(|i| (token, i)))
}

/// Parses a query string into the authorization parameters.
pub fn params_of(query: &str) -> AuthorizeParams {
    AuthorizeParams::from_pairs(url::form_urlencoded::parse(query.as_bytes()).into_owned())
}

/// Loads the client and runs the checks: the request, or the response that
/// refuses it (an error page, or a redirect with the error to the client).
async fn checked(state: &AppState, query: &str) -> Result<Result<AuthorizationRequest, Response>, AppError> {
    let params = params_of(query);
    let client = match params.client_id.as_deref().filter(|id| id.len() <= 128) {
        Some(id) => state.store.client(&ClientId(id.to_owned())).await?,
        None => None,
    };
    Ok(
        authorize::validate(&params, client).map_err(|rejection| match rejection {
            Rejection::Page(e) => page_error(&e),
            Rejection::Redirect {
                redirect_uri,
                state: st,
                error,
            } => redirect_error(&redirect_uri, st.as_deref(), state.settings.issuer_str(), &error),
        }),
    )
}

/// Checks the request and acts on the decision. `resumed` is the
/// interaction this request waited in (when it began, the account chosen).
async fn run(
    state: &AppState,
    jar: &CookieJar,
    csrf: &CsrfToken,
    query: &str,
    resumed: Option<(OpaqueToken, Interaction)>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let issuer = state.settings.issuer_str();
    let req = match checked(state, query).await? {
        Ok(req) => req,
        Err(response) => return Ok(response),
    };
    let current = auth::current(state, jar, now).await?;
    let view = current.as_ref().map(|c| SessionView {
        active: c.state == SessionState::Active,
        auth_time: c.session.auth_time,
        ready: c.account.is_ready(),
        chosen: resumed
            .as_ref()
            .is_some_and(|(_, i)| i.chosen_account.as_ref() == Some(&c.account.id)),
    });
    // A first-party client's consent is only read when it is asked for.
    let consent = match current
        .as_ref()
        .filter(|c| c.state == SessionState::Active && authorize::consent_matters(&req))
    {
        Some(c) => state
            .store
            .consent(&c.account.id, &req.client.id)
            .await?
            .map(|consent| ConsentView {
                covers: consent.covers(&req.scopes),
                granted_at: consent.granted_at,
            }),
        None => None,
    };
    let fresh_since = resumed.as_ref().map(|(_, i)| i.created_at);
    match authorize::decide(&req, view, consent, fresh_since, now) {
        Next::Issue => {
            // `decide` only issues for an active session.
            let Some(current) = current else {
                return Err(AppError::internal("issue without a session"));
            };
            if let Some((token, _)) = &resumed {
                state.store.delete_interaction(&token.digest()).await?;
            }
            if gatehouse_core::ban::blocking(&current.bans, Some(&req.client.id), now).is_some() {
                let e = OAuthError::new(
                    gatehouse_core::oauth::ErrorCode::AccessDenied,
                    "the account may not use this site",
                );
                return Ok(redirect_error(&req.redirect_uri, req.state.as_deref(), issuer, &e));
            }
            issue_code(state, &req, &current, now).await
        }
        Next::Fail(e) => Ok(redirect_error(&req.redirect_uri, req.state.as_deref(), issuer, &e)),
        Next::Login { create } => {
            let token = interaction_for(state, query, resumed, now).await?;
            let next = format!("/authorize/resume?interaction={}", token.expose());
            let mut to = if create {
                format!("/signup?next={}", q(&next))
            } else {
                format!("/login?force=1&next={}", q(&next))
            };
            if let Some(hint) = req.login_hint.as_deref().filter(|h| h.len() <= 254) {
                to.push_str(&format!("&email={}", q(hint)));
            }
            Ok(Redirect::to(&to).into_response())
        }
        Next::SelectAccount => {
            // `decide` only asks with a session.
            let Some(current) = current else {
                return Err(AppError::internal("select_account without a session"));
            };
            let token = interaction_for(state, query, resumed, now).await?;
            Ok(select_account_page(&req, &current, csrf, token.expose()))
        }
        Next::Verify => {
            let token = interaction_for(state, query, resumed, now).await?;
            let next = format!("/authorize/resume?interaction={}", token.expose());
            Ok(Redirect::to(&format!("/verify?next={}", q(&next))).into_response())
        }
        Next::Consent => {
            let token = interaction_for(state, query, resumed, now).await?;
            Ok(consent_page(&req, csrf, token.expose()))
        }
    }
}

/// The interaction this request waits in: the one it resumed, or a new one.
async fn interaction_for(
    state: &AppState,
    query: &str,
    resumed: Option<(OpaqueToken, Interaction)>,
    now: Timestamp,
) -> Result<OpaqueToken, AppError> {
    if let Some((token, _)) = resumed {
        return Ok(token);
    }
    let token = OpaqueToken::generate();
    let interaction = Interaction {
        digest: token.digest(),
        query: query.to_owned(),
        created_at: now,
        expires_at: now.plus(grant::INTERACTION_LIFETIME),
        chosen_account: None,
    };
    state.store.put_interaction(&interaction).await?;
    Ok(token)
}

async fn issue_code(
    state: &AppState,
    req: &AuthorizationRequest,
    current: &Current,
    now: Timestamp,
) -> Result<Response, AppError> {
    let issued = std::time::SystemTime::now();
    let code = OpaqueToken::generate_ordered(issued);
    let record = AuthCode {
        digest: code.digest(),
        client_id: req.client.id.clone(),
        account_id: current.account.id.clone(),
        session_digest: current.session.id_digest.clone(),
        sid: current.session.handle.clone(),
        redirect_uri: req.redirect_uri.clone(),
        scopes: req.scopes.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        auth_time: current.session.auth_time,
        amr: current.session.amr.clone(),
        acr_values: req.acr_values.clone(),
        resources: req.resources.clone(),
        created_at: now,
        expires_at: now.plus(grant::CODE_LIFETIME),
        used_at: None,
        grant_id: grant::new_grant_id(issued),
        dpop_jkt: req.dpop_jkt.clone(),
    };
    state.store.insert_auth_code(&record).await?;
    let mut params = vec![("code", code.expose())];
    if let Some(s) = req.state.as_deref() {
        params.push(("state", s));
    }
    params.push(("iss", state.settings.issuer_str()));
    Ok(redirect_with(&req.redirect_uri, &params))
}

fn describe(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (your Gatehouse user id)".to_owned(),
        "profile" => "See your profile: name, username, language and time zone".to_owned(),
        "email" => "See your email address".to_owned(),
        "offline_access" => "Stay connected when you are not using it".to_owned(),
        "payments" => "Ask you to pay with Gatehouse Pay".to_owned(),
        other => format!("Use the permission \u{201c}{other}\u{201d}"),
    }
}

fn consent_page(req: &AuthorizationRequest, csrf: &CsrfToken, interaction: &str) -> Response {
    let scopes: Vec<String> = req.scopes.iter().map(describe).collect();
    let origin = url::Url::parse(&req.redirect_uri)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    render(
        StatusCode::OK,
        &ConsentPage {
            csrf: csrf.value(),
            client_name: &req.client.name,
            origin: &origin,
            scopes,
            interaction,
        },
    )
}

fn select_account_page(req: &AuthorizationRequest, current: &Current, csrf: &CsrfToken, interaction: &str) -> Response {
    let resume = format!("/authorize/resume?interaction={interaction}");
    // The login form even for a signed-in browser; whoever signs in there
    // replaces this browser's session, and is the choice.
    let other_account = format!("/login?switch=1&next={}", q(&resume));
    render(
        StatusCode::OK,
        &SelectAccountPage {
            csrf: csrf.value(),
            client_name: &req.client.name,
            name: current.account.profile.display_name(),
            email: current.account.email.as_str(),
            interaction,
            other_account: &other_account,
        },
    )
}

#[derive(Deserialize)]
pub struct SelectForm {
    #[serde(default)]
    interaction: String,
}

/// `POST /authorize/select`: "Continue as" the browser's signed-in account.
/// Records the choice in the interaction, for this account only, and
/// resumes the request (which may still ask for the password or consent).
pub async fn select_account(
    State(state): State<AppState>,
    jar: CookieJar,
    CsrfForm(form): CsrfForm<SelectForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let Some((token, interaction)) = load_interaction(&state, &form.interaction, now).await? else {
        return Ok(expired_interaction());
    };
    let resume = format!("/authorize/resume?interaction={}", token.expose());
    // Signed out meanwhile: resuming asks for a login, which is the choice.
    if let Some(current) = auth::current(&state, &jar, now).await? {
        let chosen = Interaction {
            chosen_account: Some(current.account.id.clone()),
            ..interaction
        };
        state.store.put_interaction(&chosen).await?;
    }
    Ok(Redirect::to(&resume).into_response())
}

#[derive(Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    interaction: String,
    #[serde(default)]
    decision: String,
}

/// `POST /authorize/consent`: allow (remember and continue) or deny
/// (`access_denied` to the client).
pub async fn consent(
    State(state): State<AppState>,
    jar: CookieJar,
    Client(actor): Client,
    CsrfForm(form): CsrfForm<ConsentForm>,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let Some((token, interaction)) = load_interaction(&state, &form.interaction, now).await? else {
        return Ok(expired_interaction());
    };
    let req = match checked(&state, &interaction.query).await? {
        Ok(req) => req,
        Err(response) => return Ok(response),
    };
    let Some(current) = auth::current(&state, &jar, now)
        .await?
        .filter(|c| c.state == SessionState::Active)
    else {
        return Ok(Redirect::to(&format!("/authorize/resume?interaction={}", token.expose())).into_response());
    };
    if form.decision != "allow" {
        state.store.delete_interaction(&token.digest()).await?;
        let e = OAuthError::new(
            gatehouse_core::oauth::ErrorCode::AccessDenied,
            "the user denied the request",
        );
        return Ok(redirect_error(
            &req.redirect_uri,
            req.state.as_deref(),
            state.settings.issuer_str(),
            &e,
        ));
    }
    crate::flows::consent::grant(
        &state.flows,
        &current.account.id,
        &req.client.id,
        &req.scopes,
        &actor,
        now,
    )
    .await?;
    Ok(Redirect::to(&format!("/authorize/resume?interaction={}", token.expose())).into_response())
}
