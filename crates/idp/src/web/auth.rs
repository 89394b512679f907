//! The signed-in person: the session cookie, looked up in the store, checked
//! against the session rules, with its account.
//!
//! Two extractors guard pages: [`SignedIn`] (any live session, even of an
//! unverified account: enough to finish verification) and [`Ready`] (a
//! verified account with a session that needs nothing more). Whatever does
//! not qualify is redirected to the page that fixes it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;

use gatehouse_core::session::SessionState;
use gatehouse_core::{OpaqueToken, Timestamp, TokenDigest};

use crate::AppState;
use crate::error::AppError;
use crate::web::{cookies, q};

pub use crate::flows::sessions::Current;

/// The digest of the session the cookie names, if it names one.
pub fn session_digest(jar: &CookieJar) -> Option<TokenDigest> {
    jar.get(cookies::SESSION)
        .and_then(|c| OpaqueToken::parse(c.value()))
        .map(|t| t.digest())
}

/// Loads the session named by the cookie, if it exists and has not expired.
pub async fn current(state: &AppState, jar: &CookieJar, now: Timestamp) -> Result<Option<Current>, AppError> {
    let Some(digest) = session_digest(jar) else {
        return Ok(None);
    };
    Ok(crate::flows::sessions::current(&state.flows, &digest, now).await?)
}

/// Why a guarded page was not shown.
pub enum Refused {
    Redirect(String),
    Error(AppError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Redirect(to) => Redirect::to(&to).into_response(),
            Refused::Error(e) => e.into_response(),
        }
    }
}

fn login_url(parts: &Parts) -> String {
    let here = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/settings");
    // After a form post, come back to the page, not to the post URL.
    let next = if parts.method == axum::http::Method::GET {
        here
    } else {
        "/settings"
    };
    format!("/login?next={}", q(next))
}

async fn load(parts: &mut Parts, state: &AppState) -> Result<Current, Refused> {
    let jar = CookieJar::from_headers(&parts.headers);
    match current(state, &jar, Timestamp::now()).await {
        Err(e) => Err(Refused::Error(e)),
        Ok(None) => Err(Refused::Redirect(login_url(parts))),
        // The password was reset elsewhere: ask for it again, then resume.
        Ok(Some(c)) if c.state == SessionState::NeedsReauth => Err(Refused::Redirect(login_url(parts))),
        Ok(Some(c)) => Ok(c),
    }
}

/// A live session; the account may still be unverified.
pub struct SignedIn(pub Current);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        load(parts, state).await.map(SignedIn)
    }
}

/// A live session of a verified account.
pub struct Ready(pub Current);

impl FromRequestParts<AppState> for Ready {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let current = load(parts, state).await?;
        if current.account.is_ready() {
            Ok(Ready(current))
        } else {
            Err(Refused::Redirect("/verify".to_owned()))
        }
    }
}
