//! The use cases: one function per thing a person, an administrator or a
//! client does to the IdP's state (sign in, sign up, end sessions, ban, change
//! a credential, revoke a token...).
//!
//! Each flow decides with core's rules, builds its audit event and its outbox
//! messages, writes the change with them in one store call, and wakes the
//! outbox worker. Its inputs are plain values (the acting party as an
//! [`Actor`](gatehouse_core::audit::Actor), the account, a form's values) and
//! its answer is a typed outcome or error that the caller maps to its own
//! response: flows know nothing of HTTP (no axum types, cookies or status
//! codes). The account pages, the OAuth endpoints, the admin API and the
//! command line all call them, and none of those builds an audit event or an
//! outbox message itself (`crates/idp/tests/layering.rs` checks it).
//!
//! | use case | module |
//! |---|---|
//! | sign in (its steps), start or resume a session | [`sign_in`], [`sessions`] |
//! | log out, a replaced session, RP-initiated logout, sign out one or every other session | [`sessions`] |
//! | sign up, create an account (CLI), verify the email, mail a new code | [`sign_up`] |
//! | reset the password (request, complete) | [`reset`] |
//! | change the password, the email (request, confirm), the profile; delete the account | [`account`] |
//! | ban, unban (admin API and CLI) | [`ban`] |
//! | consent (grant, revoke) | [`consent`] |
//! | token revocation (`/revoke`), token exchange's record | [`tokens`] |
//! | clients (create, update, delete), key rotation, outbox redelivery | [`admin`] |

pub mod account;
pub mod admin;
pub mod ban;
pub mod consent;
pub mod reset;
pub mod sessions;
pub mod sign_in;
pub mod sign_up;
pub mod tokens;

use std::sync::Arc;

use gatehouse_store::{OutboxMessage, Store, StoreError};
use tokio::sync::Notify;

use crate::Settings;
use crate::error::AppError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::outbox::Signer;

/// What the flows need: the store, the signing keys (outbox messages are
/// signed tokens), the settings, the metrics and the outbox worker's wake-up.
/// The server's [`AppState`](crate::AppState) holds one; the command line
/// builds one from its configuration ([`Deps::new`]), without a server.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub keys: KeyRing,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    /// Wakes the outbox worker when messages were written. Outside a server
    /// nobody waits on it: a running server's worker finds the messages on
    /// its next poll.
    pub waker: Arc<Notify>,
}

impl Deps {
    /// Flows on their own (the command line): fresh metrics and wake-up.
    pub fn new(store: Arc<dyn Store>, keys: KeyRing, settings: Settings) -> Self {
        Self {
            store,
            keys,
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::new()),
            waker: Arc::new(Notify::new()),
        }
    }

    /// Builds the signed outbox messages (logout tokens, security events).
    pub fn signer(&self) -> Signer<'_> {
        Signer {
            store: self.store.as_ref(),
            keys: &self.keys,
            issuer: self.settings.issuer_str(),
            logout_token_lifetime: self.settings.logout_token_lifetime,
        }
    }

    /// Wakes the worker after messages were written (nothing for none).
    fn wake(&self, written: &[OutboxMessage]) {
        if !written.is_empty() {
            self.waker.notify_one();
        }
    }
}

/// A failure no flow expects: the store or something internal failed. The
/// caller answers with its own "server error" (the page's correlation id,
/// OAuth's `server_error`, the CLI's message).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

/// Message building ([`Signer`]) reports [`AppError`]s; only the store and
/// internal ones reach a flow.
impl From<AppError> for Error {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Store(e) => Error::Store(e),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => AppError::Store(e),
            Error::Internal(e) => AppError::Internal(e),
        }
    }
}

/// Hashes a new password on a blocking thread (Argon2 takes tens of ms).
pub async fn hash_password(password: gatehouse_core::Secret<String>) -> Result<gatehouse_core::Secret<String>, Error> {
    tokio::task::spawn_blocking(move || gatehouse_core::password::hash(&password))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
}

/// Checks a password on a blocking thread; with no account, against a dummy
/// hash, so the answer takes as long either way.
pub async fn verify_password(
    password: gatehouse_core::Secret<String>,
    stored: Option<gatehouse_core::Secret<String>>,
) -> Result<bool, Error> {
    tokio::task::spawn_blocking(move || gatehouse_core::password::verify(&password, stored.as_ref()))
        .await
        .map_err(Error::internal)
}
