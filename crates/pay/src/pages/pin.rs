//! Resetting the purchase PIN: `GET /pin/reset` sends the person to the IdP
//! with `max_age=0` (a fresh password); the callback (`login.rs`) checks
//! the same person came back and opens a short window in the session;
//! `GET /pin/new` and `POST /pin/new` set the new PIN inside it. A reset
//! begun on a purchase page (`/pin/reset?next=/contracts/{hash}`) carries
//! that page along (a local path only: [`super::login::local_path`]) and
//! ends on it, ready to pay with the new PIN.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::Timestamp;
use gatehouse_core::pay::pin;
use gatehouse_relier::LoginRequest;
use serde::Deserialize;

use super::login::{PURPOSE_PIN_RESET, local_path, require_login, start};
use super::render::{PinNewPage, render};
use super::{hash_pin, parse_form};
use crate::web::{PageError, PayState, see_other};

/// Where to go after the reset: the query's `next` if it is one of our own
/// paths, else the payments page (`/`).
fn next_of(query: Option<&str>) -> String {
    #[derive(Deserialize)]
    struct Next {
        next: Option<String>,
    }
    let next = query
        .and_then(|q| serde_urlencoded::from_str::<Next>(q).ok())
        .and_then(|n| n.next)
        .unwrap_or_default();
    local_path(&next).to_owned()
}

/// `path`, carrying `next` along unless it is the payments page.
fn with_next(path: &str, next: &str) -> String {
    if next == "/" {
        return path.to_owned();
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    format!("{path}?{query}")
}

/// The new-PIN form, coming back to `next` afterwards.
pub fn new_pin_url(next: &str) -> String {
    with_next("/pin/new", local_path(next))
}

pub async fn reset(State(state): State<PayState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let next = next_of(query.as_deref());
    let result = async {
        if state.session(&headers).await?.is_none() {
            return require_login(&state, &with_next("/pin/reset", &next)).await;
        }
        start(
            &state,
            PURPOSE_PIN_RESET,
            &next,
            LoginRequest {
                scope: "openid email".into(),
                max_age: Some(0),
                ..Default::default()
            },
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The session, if it may change the PIN now.
async fn in_window(
    state: &PayState,
    headers: &HeaderMap,
) -> Result<Option<(gatehouse_core::TokenDigest, crate::store::PaySession)>, PageError> {
    let now = Timestamp::now();
    Ok(state
        .session(headers)
        .await?
        .filter(|(_, s)| s.pin_reset_until.is_some_and(|u| u.0 > now.0)))
}

pub async fn new_form(State(state): State<PayState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let next = next_of(query.as_deref());
    let result = async {
        let Some((digest, _)) = in_window(&state, &headers).await? else {
            return Ok(see_other(&with_next("/pin/reset", &next)));
        };
        let csrf = state.csrf_token(&digest);
        Ok::<_, PageError>(render(
            StatusCode::OK,
            &PinNewPage {
                csrf: &csrf,
                next: &next,
                error: None,
            },
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct NewPinForm {
    csrf: String,
    pin: String,
    pin_again: String,
    next: Option<String>,
}

pub async fn set_new(State(state): State<PayState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let form: NewPinForm = parse_form(&body)?;
        let next = local_path(form.next.as_deref().unwrap_or_default()).to_owned();
        let Some((digest, session)) = in_window(&state, &headers).await? else {
            return Ok(see_other(&with_next("/pin/reset", &next)));
        };
        let csrf = state.csrf_token(&digest);
        if !state.csrf_ok(&digest, &form.csrf) {
            return Err(PageError::csrf());
        }
        let error = match pin::check_policy(&form.pin) {
            Err(pin::PinRejected::Shape) => Some("The PIN must be exactly six digits."),
            Err(pin::PinRejected::Guessable) => Some("That PIN is too easy to guess. Choose another."),
            Ok(()) if form.pin != form.pin_again => Some("The two PINs differ."),
            Ok(()) => None,
        };
        if let Some(error) = error {
            return Ok(render(
                StatusCode::BAD_REQUEST,
                &PinNewPage {
                    csrf: &csrf,
                    next: &next,
                    error: Some(error),
                },
            ));
        }
        let hash = hash_pin(form.pin).await?;
        state.store.set_pin(&session.sub, &hash, true, Timestamp::now()).await?;
        state.store.clear_throttle(&pin::throttle_key(&session.sub)).await?;
        // Back to the purchase the reset began on, or to the payments page.
        Ok(see_other(if next == "/" { "/?notice=pin_changed" } else { &next }))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::{new_pin_url, next_of, with_next};

    #[test]
    fn next_is_a_local_path_or_the_payments_page() {
        assert_eq!(next_of(Some("next=%2Fcontracts%2Fab")), "/contracts/ab");
        assert_eq!(next_of(Some("next=/contracts/ab")), "/contracts/ab");
        assert_eq!(next_of(Some("next=https%3A%2F%2Fevil.example%2F")), "/");
        assert_eq!(next_of(Some("next=%2F%2Fevil.example")), "/");
        assert_eq!(next_of(Some("next=/%5Cevil.example")), "/");
        assert_eq!(next_of(Some("next=a&next=b")), "/");
        assert_eq!(next_of(None), "/");
    }

    #[test]
    fn next_travels_in_the_query() {
        assert_eq!(with_next("/pin/reset", "/"), "/pin/reset");
        assert_eq!(
            with_next("/pin/reset", "/contracts/ab"),
            "/pin/reset?next=%2Fcontracts%2Fab"
        );
        assert_eq!(new_pin_url("//evil.example"), "/pin/new");
    }
}
