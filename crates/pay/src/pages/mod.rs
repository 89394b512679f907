//! The browser pages: the purchase link and page, paying (also framed on a
//! merchant's page or in a popup: `embed.rs`), the payments
//! page (wallet and history), the PIN reset, the login callback.

pub mod embed;
pub mod home;
pub mod login;
pub mod pin;
pub mod purchase;
pub mod render;

use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::web::PageError;

/// A form body, or a 400 page.
pub fn parse_form<T: DeserializeOwned>(body: &[u8]) -> Result<T, PageError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|_| PageError::page(StatusCode::BAD_REQUEST, "Bad request", "The form could not be read."))
}

/// Hashes a PIN with Argon2id off the async threads.
pub async fn hash_pin(pin: String) -> Result<String, PageError> {
    tokio::task::spawn_blocking(move || gatehouse_core::password::hash(&gatehouse_core::Secret::new(pin)))
        .await
        .map_err(|e| PageError::Internal(e.to_string()))?
        .map(|h| h.expose().clone())
        .map_err(|e| PageError::Internal(e.to_string()))
}

/// Checks a PIN against its Argon2id hash off the async threads.
pub async fn verify_pin(pin: String, hash: String) -> Result<bool, PageError> {
    tokio::task::spawn_blocking(move || {
        gatehouse_core::password::verify(
            &gatehouse_core::Secret::new(pin),
            Some(&gatehouse_core::Secret::new(hash)),
        )
    })
    .await
    .map_err(|e| PageError::Internal(e.to_string()))
}
