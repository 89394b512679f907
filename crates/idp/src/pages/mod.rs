//! The account pages. One module per flow; each handler parses the form,
//! asks `gatehouse_core` for the rule, and calls the store.
//!
//! | path | module |
//! |---|---|
//! | `/login`, `/logout` | [`login`] |
//! | `/signup`, `/verify`, `/verify/link`, `/verify/resend` | [`signup`] |
//! | `/reset`, `/reset/sent`, `/reset/link` | [`reset`] |
//! | `/settings/...`, `/email/confirm` | [`settings`] |

pub mod login;
pub mod render;
pub mod reset;
pub mod settings;
pub mod signup;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::code::{CodeError, OneTimeCode};
use gatehouse_core::session::{AuthMethod, Session};
use gatehouse_core::{Account, OpaqueToken, Secret, Timestamp, password};

use crate::AppState;
use crate::error::AppError;
use crate::web::cookies;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/static/style.css", get(stylesheet))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/signup", get(signup::page).post(signup::submit))
        .route("/verify", get(signup::verify_page).post(signup::verify_code))
        .route("/verify/link", get(signup::verify_link_page).post(signup::verify_link))
        .route("/verify/resend", post(signup::resend))
        .route("/reset", get(reset::page).post(reset::submit))
        .route("/reset/sent", get(reset::sent))
        .route("/reset/link", get(reset::link_page).post(reset::complete))
        .route("/settings", get(settings::page))
        .route("/settings/profile", post(settings::change_profile))
        .route("/settings/password", post(settings::change_password))
        .route("/settings/email", post(settings::change_email))
        .route("/settings/email/confirm", post(settings::confirm_email_code))
        .route(
            "/email/confirm",
            get(settings::confirm_email_link_page).post(settings::confirm_email_link),
        )
        .route("/settings/sessions/end", post(settings::end_session))
        .route("/settings/sessions/end-others", post(settings::end_other_sessions))
        .route("/settings/sites/revoke", post(settings::revoke_site))
        .route("/settings/delete", post(settings::delete_account))
}

async fn home() -> Redirect {
    Redirect::to("/settings")
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/style.css"),
    )
}

/// Hashes a new password on a blocking thread (Argon2 takes tens of ms).
pub async fn hash_password(password: Secret<String>) -> Result<Secret<String>, AppError> {
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
}

/// Checks a password on a blocking thread; with no account, against a dummy
/// hash, so the answer takes as long either way.
pub async fn verify_password(password: Secret<String>, stored: Option<Secret<String>>) -> Result<bool, AppError> {
    tokio::task::spawn_blocking(move || password::verify(&password, stored.as_ref()))
        .await
        .map_err(AppError::internal)
}

/// Starts a new session for the account and returns the cookie jar that
/// carries it (dropping any session cookie the browser had).
pub async fn start_session(
    state: &AppState,
    jar: CookieJar,
    account: &Account,
    actor: &Actor,
    now: Timestamp,
) -> Result<CookieJar, AppError> {
    let token = OpaqueToken::generate();
    let session = Session {
        id_digest: token.digest(),
        handle: OpaqueToken::generate().expose().chars().take(22).collect(),
        account_id: account.id.clone(),
        created_at: now,
        auth_time: now,
        amr: vec![AuthMethod::Pwd],
        last_seen_at: now,
        user_agent: actor.user_agent.clone(),
        ip: actor.ip.clone(),
        needs_reauth: false,
    };
    let audit = AuditEvent::new(AuditKind::LoginSucceeded, Some(&account.id), actor, now)
        .with_detail(serde_json::json!({ "session": session.handle }));
    state.store.create_session(&session, &audit).await?;
    Ok(jar.add(cookies::session(&state.settings, token.expose())))
}

pub use crate::web::auth::current;

/// Checks a code a signed-in person typed against their latest mailed
/// code, reserving the guess first (`Store::reserve_code_attempt`): at most
/// `MAX_ATTEMPTS` guesses are ever checked, however many arrive at once.
pub async fn guess_code(
    state: &AppState,
    code: &OneTimeCode,
    typed: &str,
    now: Timestamp,
) -> Result<Result<(), CodeError>, AppError> {
    if let Err(e) = code.check_usable(now) {
        return Ok(Err(e));
    }
    if !state.store.reserve_code_attempt(&code.id).await? {
        return Ok(Err(CodeError::TooManyAttempts));
    }
    Ok(code.check_code(typed, now))
}

/// Human-readable UTC time for pages.
pub fn format_time(t: Timestamp) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t.0) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute()
        ),
        Err(_) => "unknown".to_owned(),
    }
}
