//! Resetting the purchase PIN: `GET /pin/reset` sends the person to the IdP
//! with `max_age=0` (a fresh password); the callback (`login.rs`) checks
//! the same person came back and opens a short window in the session;
//! `GET /pin/new` and `POST /pin/new` set the new PIN inside it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::Timestamp;
use gatehouse_core::pay::pin;
use gatehouse_relier::LoginRequest;
use serde::Deserialize;

use super::login::{PURPOSE_PIN_RESET, require_login, start};
use super::render::{PinNewPage, render};
use super::{hash_pin, parse_form};
use crate::web::{PageError, PayState, see_other};

pub async fn reset(State(state): State<PayState>, headers: HeaderMap) -> Response {
    let result = async {
        if state.session(&headers).await?.is_none() {
            return require_login(&state, "/pin/reset").await;
        }
        start(
            &state,
            PURPOSE_PIN_RESET,
            "/pin/new",
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

pub async fn new_form(State(state): State<PayState>, headers: HeaderMap) -> Response {
    let result = async {
        let Some((digest, _)) = in_window(&state, &headers).await? else {
            return Ok(see_other("/pin/reset"));
        };
        let csrf = state.csrf_token(&digest);
        Ok::<_, PageError>(render(
            StatusCode::OK,
            &PinNewPage {
                csrf: &csrf,
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
}

pub async fn set_new(State(state): State<PayState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let form: NewPinForm = parse_form(&body)?;
        let Some((digest, session)) = in_window(&state, &headers).await? else {
            return Ok(see_other("/pin/reset"));
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
                    error: Some(error),
                },
            ));
        }
        let hash = hash_pin(form.pin).await?;
        state.store.set_pin(&session.sub, &hash, true, Timestamp::now()).await?;
        state.store.clear_throttle(&pin::throttle_key(&session.sub)).await?;
        Ok(see_other("/?notice=pin_changed"))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
