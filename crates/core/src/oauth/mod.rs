//! OAuth 2.0 and OpenID Connect rules: clients, scopes, PKCE, the
//! authorization request's checks, codes, grants and refresh tokens (and
//! the checks that redeem a code or refresh a token), token
//! claims, DPoP proofs and the error codes the specifications define. No I/O.

pub mod authorize;
pub mod claims;
pub mod client;
pub mod dpop;
pub mod error;
pub mod exchange;
#[cfg(test)]
mod fixtures;
pub mod grant;
pub mod pkce;
pub mod redeem;
pub mod refresh;
pub mod scope;

pub use client::{Client, ClientId, GrantType};
pub use error::{ErrorCode, OAuthError};
pub use scope::Scopes;
