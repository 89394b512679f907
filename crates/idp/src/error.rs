//! Errors a handler can end with, and the response each one becomes.
//!
//! Expected problems (a wrong password, a taken email) are not errors here:
//! the page that handles them shows a message. What reaches this type is
//! either bad input (400/403/413/429 with a clear page) or an internal
//! failure, which the person sees as a short page with a correlation id while
//! the cause goes to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::pages::render::error_page;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request cannot be understood; the text is shown to the person.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request body is larger than any form we serve.
    #[error("request body too large")]
    TooLarge,
    /// The form's CSRF token is missing or does not match the cookie.
    #[error("CSRF check failed")]
    Csrf,
    #[error("store: {0}")]
    Store(#[from] gatehouse_store::StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl AppError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::BadRequest(msg) => error_page(StatusCode::BAD_REQUEST, "That request was not right", msg),
            AppError::TooLarge => {
                let mut response = error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "That was too much",
                    "The form sent more than any form here takes. Shorten what you typed and try again.",
                );
                // The rest of the body is not read, so the connection cannot
                // carry another request: say so, or the client may send its
                // next one on a connection about to close (RFC 9110 §15.5.14).
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                response
            }
            AppError::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form was sent without its security token, or from another site. Go back, reload the page and try again.",
            ),
            AppError::Store(_) | AppError::Internal(_) => {
                let id = uuid::Uuid::new_v4();
                tracing::error!(correlation_id = %id, error = %self, "request failed");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    &format!("Please try again in a moment. If it keeps happening, quote this reference: {id}"),
                )
            }
        }
    }
}
