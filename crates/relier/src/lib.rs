//! What a site or service needs to accept Gatehouse access tokens.
//!
//! - [`Issuer::discover`] reads the issuer's metadata (its JWKS and its
//!   introspection endpoint).
//! - [`Verifier`] checks a JWT access token (RFC 9068) locally: signature
//!   with the issuer's key the `kid` names (the JWKS is cached, and fetched
//!   again, at a bounded rate, when a token names a key it does not know:
//!   the issuer rotated its keys), `typ`, `iss`, `aud`, `exp`, `iat`.
//! - [`Introspector`] asks the issuer instead (RFC 7662): a revocation takes
//!   effect at once, at the price of a request per call; a verifier built
//!   with [`VerifierBuilder::introspection`] does both.
//! - DPoP (RFC 9449): a token bound to a key (`cnf.jkt`) is only accepted
//!   with the `DPoP` scheme and a fresh proof by that key for this very
//!   request; proofs are remembered so none is accepted twice.
//! - [`Authenticated`], an axum extractor: the verified user, relier and
//!   scopes, or an [`AuthError`] that answers the way RFC 6750 §3 and
//!   RFC 9449 §7.1 say (`WWW-Authenticate`, 401/403).
//! - [`RelyingParty`]: the other direction, a site logging people in: the
//!   code flow with PKCE (`start`, then `finish` on the callback, which
//!   verifies the ID token; a failure's [`LoginError::fault`] says whose it
//!   is: the callback's, 400; a refusal, 403; the issuer side, 502), and
//!   the token requests a site makes for itself: narrowing a token for
//!   another service (RFC 8693), client credentials, refresh, and the
//!   RP-initiated logout URL.
//! - [`Receiver`] checks what the issuer pushes to a relier: back-channel
//!   logout tokens ([`LogoutToken`], a [`LogoutEvent`]) and Security Event
//!   Tokens ([`SetToken`], a [`SecurityEvent`] of an [`EventKind`]):
//!   signature (the [`Verifier`]'s cached keys), `iss`, `aud` (the client
//!   id), `iat` within a window, and a `jti` not seen before (a SET seen
//!   before is a retransmission: acknowledged again, not handled twice).
//! - [`local_return_path`]: whether a `next` a request names is a path on
//!   this site, safe to redirect to after a login (no open redirect: no
//!   `//`, backslash, control character, encoded form of these, or
//!   anything else a browser would resolve to another origin). The IdP
//!   uses the same rule.
//!
//! # Protecting an axum route
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use gatehouse_relier::{AuthError, Authenticated, Issuer, Verifier};
//!
//! async fn reports(auth: Authenticated) -> Result<Json<serde_json::Value>, AuthError> {
//!     auth.require_scope("reports:read")?; // else 403 insufficient_scope
//!     Ok(Json(serde_json::json!({ "user": auth.user, "relier": auth.relier })))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = Issuer::discover("https://id.example.com", reqwest::Client::new()).await?;
//! // The audience: what this service's tokens name in `aud`.
//! let verifier = Verifier::builder(issuer, "https://api.example.com")
//!     .realm("example-api")
//!     // Where clients reach this service; turns DPoP on.
//!     .public_url("https://api.example.com".parse()?)
//!     .build();
//! let app: Router = Router::new().route("/reports", get(reports)).with_state(verifier);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! With a state of your own, implement `FromRef<YourState> for Verifier`
//! (or derive it with axum's `FromRef` macro). `examples/protected_api.rs`
//! is a complete service.
//!
//! # Receiving logouts and security events
//!
//! ```no_run
//! use axum::{Router, http::StatusCode, routing::post};
//! use gatehouse_relier::{EventKind, Issuer, LogoutToken, Receiver, SetToken, Verifier};
//!
//! // Back-Channel Logout 1.0: a form with `logout_token`; answer 200.
//! // A refused token never reaches the handler: 400 {"error":"invalid_request"}.
//! async fn logout(LogoutToken(event): LogoutToken) -> StatusCode {
//!     // End the local sessions of event.sid (or of event.sub).
//!     StatusCode::OK
//! }
//!
//! // RFC 8935 push delivery: an application/secevent+jwt body; answer 202.
//! // A refused SET answers 400 {"err": "invalid_audience", "description": ...}.
//! async fn events(SetToken(set): SetToken) -> StatusCode {
//!     if let EventKind::AccountDisabled { .. } = set.event {
//!         // Sign set.subject out everywhere.
//!     }
//!     StatusCode::ACCEPTED
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = Issuer::discover("https://id.example.com", reqwest::Client::new()).await?;
//! let verifier = Verifier::new(issuer, "https://shop.example.com");
//! // The same keys as the verifier; tokens must name this client id in `aud`.
//! let receiver = Receiver::new(&verifier, "shop");
//! let app: Router = Router::new()
//!     .route("/backchannel-logout", post(logout))
//!     .route("/events", post(events))
//!     .with_state(receiver);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! With a state of your own, implement `FromRef<YourState> for Receiver`.
//!
//! # HTTPS
//!
//! The issuer must be https (plain http only on loopback, for tests). This
//! crate turns on no TLS feature of reqwest (the workspace keeps one crypto
//! stack, RustCrypto); the [`Issuer`] uses the `reqwest::Client` you give
//! it, so give reqwest a TLS feature in your own `Cargo.toml`, e.g.
//! `reqwest = { version = "0.12", default-features = false, features =
//! ["rustls-tls"] }`. Cargo unifies features: this crate's reqwest then
//! has it too.

mod error;
mod extract;
mod introspect;
mod issuer;
mod jwks;
mod receiver;

pub mod login;
mod verifier;

pub mod dpop;

pub use error::Error;
pub use extract::{AuthError, AuthErrorKind, Authenticated, Scheme};
pub use introspect::{Introspected, Introspector};
pub use issuer::Issuer;
pub use login::{Login, LoginError, LoginFault, LoginRequest, PendingLogin, RelyingParty, Tokens};
pub use receiver::{
    BACKCHANNEL_LOGOUT_EVENT, DEFAULT_RECEIVER_MAX_AGE, DEFAULT_RECEIVER_REPLAY_CAPACITY, DEFAULT_RECEIVER_SET_MAX_AGE,
    EventKind, LogoutEvent, LogoutRejection, LogoutToken, ReceiveError, Receiver, SET_CONTENT_TYPE, SecurityEvent,
    SetRejection, SetToken,
};
pub use verifier::{
    ACCEPTED_ALGS, DEFAULT_JWKS_MAX_AGE, DEFAULT_JWKS_REFETCH_INTERVAL, DEFAULT_LEEWAY, MAX_TOKEN_LEN, MissingScope,
    RejectReason, VerifiedToken, Verifier, VerifierBuilder, VerifyError, require_scope,
};

pub use gatehouse_core::Timestamp;
pub use gatehouse_core::oauth::Scopes;
pub use gatehouse_core::oauth::claims::{AccessTokenClaims, Audience};
pub use gatehouse_core::return_path::{MAX_RETURN_PATH_LEN, local_return_path};
pub use url::Url;
