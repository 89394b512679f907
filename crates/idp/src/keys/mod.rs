//! Signing keys and JWTs: the keys that sign ID tokens and access tokens,
//! kept in the store so that every instance signs with the same ones, their
//! private parts encrypted at rest with the [`InstanceSecret`].
//!
//! A key is published before it signs, so that a relier that honours the
//! JWKS's `Cache-Control` never meets a kid it has not seen:
//!
//! - On a store's first start [`KeyRing::load`] makes a key of every
//!   algorithm (ES256, the default; EdDSA; RS256), all signing at once: no
//!   JWKS has ever been served from that store. An algorithm missing later
//!   (a store from before this rule) gets its key pre-published, like a
//!   rotation; until it signs, asking for that algorithm is
//!   [`KeyError::NotSigningYet`].
//! - [`rotate`] (`gatehouse keys rotate`) adds a new key of an algorithm that
//!   is published at once and signs only after [`publication_delay`] (the
//!   JWKS's max-age, plus the reload interval and a margin): every cached
//!   JWKS has been fetched again by then. The older key signs until then,
//!   and stays published for [`RETIRED_KEY_GRACE`] after, until everything
//!   it signed has expired; after that it is left out, and the next rotation
//!   deletes it. [`Rotation::Now`] (`keys rotate --now`, for a compromised
//!   key) signs at once and withdraws the older keys of the algorithm from
//!   the JWKS at once.
//! - [`KeyRing::spawn_refresher`] reloads the keys every few seconds, so a key
//!   added by the command line is published, and signs when its time comes,
//!   on every running server within seconds.
//!
//! At rest a private key is its PKCS#8 DER, encrypted with AES-256-GCM under
//! a key derived from the instance secret, with a random 96-bit nonce and the
//! kid as associated data: `private_encrypted` is base64(nonce || ciphertext).
//! The kid is the key's RFC 7638 JWK thumbprint (SHA-256).

use std::fmt;
use std::time::Duration;

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::grant::{ACCESS_TOKEN_LIFETIME, ID_TOKEN_LIFETIME};
use gatehouse_core::time::MINUTE;
use gatehouse_store::StoreError;

mod keyring;
mod material;
mod rotate;
#[cfg(test)]
mod tests;

pub use keyring::KeyRing;
pub(crate) use material::signing_alg;
use material::*;
pub use rotate::{Rotated, Rotation, rotate};

/// The 32-byte secret that encrypts the private keys at rest. From the
/// configuration (`GATEHOUSE_SECRET_KEY`, base64 of 32 bytes, or hex), else
/// from the file `<data_dir>/secret.key` ([`SECRET_FILE`]),
/// created on first start.
///
/// Every instance that shares a database must have the same secret: with
/// several instances on one PostgreSQL database, give them all the same
/// `GATEHOUSE_SECRET_KEY` (e.g. `openssl rand -base64 32`), or copy one
/// instance's `secret.key`, which holds the same base64 text.
pub use gatehouse_kit::InstanceSecret;
pub use gatehouse_kit::secret::SecretError;

/// The file in the data directory that holds the instance secret when the
/// configuration does not.
pub const SECRET_FILE: &str = "secret.key";

/// How long a retired key stays published: the longest token lifetime, plus
/// a margin for the seconds a running instance may still sign with it before
/// it notices the rotation, and for clock skew.
pub const RETIRED_KEY_GRACE: i64 = max(ACCESS_TOKEN_LIFETIME, ID_TOKEN_LIFETIME) + 5 * MINUTE;

/// How often a running server reloads the keys (see [`KeyRing::spawn_refresher`]).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Tolerance for `exp`, in seconds, for clocks that differ between instances.
pub const VERIFY_LEEWAY: i64 = 30;

/// How long reliers may cache the JWKS (its `Cache-Control: max-age`) unless
/// configured (`GATEHOUSE_JWKS_MAX_AGE`).
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// Seconds, beyond the JWKS's max-age and the reload interval, before a new
/// key signs: whole-second timestamps, and clocks a little apart.
const PUBLICATION_MARGIN: i64 = 2;

/// How long after it is stored a new key may sign, in seconds: every
/// instance serves it in the JWKS within [`REFRESH_INTERVAL`], and a JWKS
/// fetched just before that is cached for at most `jwks_max_age`.
pub fn publication_delay(jwks_max_age: Duration) -> i64 {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
    secs(jwks_max_age)
        .saturating_add(secs(REFRESH_INTERVAL))
        .saturating_add(PUBLICATION_MARGIN)
}

/// A token naming an unknown kid reloads the keys at most this often (it may
/// be signed by a key another instance generated a moment ago).
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(1);

/// How many verified tokens [`KeyRing::verify`] remembers (see
/// [`VerifiedTokens`]): a few MiB at most.
const VERIFIED_CAPACITY: usize = 4096;

/// RSA keys we generate.
const RSA_BITS: usize = 2048;

/// What the AES key is derived for, so the instance secret can serve other
/// purposes later without reusing a key.
const SIGNING_KEYS_PURPOSE: &str = "gatehouse signing keys v1";

const fn max(a: i64, b: i64) -> i64 {
    if a > b { a } else { b }
}

// --- errors ---------------------------------------------------------------

/// Why a token was refused. The caller answers these with 401 (or the OAuth
/// error its endpoint defines); every other [`KeyError`] is our fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed token")]
    Malformed,
    #[error("signed by a key we do not publish")]
    UnknownKid,
    #[error("the algorithm does not match the key")]
    WrongAlg,
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("wrong issuer")]
    WrongIssuer,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The token is not one we accept.
    #[error("token rejected: {0}")]
    Rejected(#[from] Rejection),
    #[error("signing keys: {0}")]
    Store(#[from] StoreError),
    /// The stored private key does not open with our secret: the instance
    /// secret is not the one the key was encrypted with, or the row is
    /// damaged.
    #[error(
        "cannot decrypt signing key {kid}: this instance's secret key (GATEHOUSE_SECRET_KEY, \
         else <data_dir>/secret.key) is not the one it was encrypted with; every instance on \
         one database needs the same GATEHOUSE_SECRET_KEY"
    )]
    Decrypt { kid: String },
    #[error("signing key {kid} is corrupt: {reason}")]
    Corrupt { kid: String, reason: String },
    /// The instance secret is malformed or its file unreadable. The message
    /// never shows the value.
    #[error("secret key: {0}")]
    Secret(#[from] SecretError),
    #[error("cannot generate a {alg} key: {reason}")]
    Generate { alg: &'static str, reason: String },
    #[error("cannot sign: {0}")]
    Sign(jsonwebtoken::errors::Error),
    /// The algorithm's key is published but may not sign yet (reliers'
    /// cached JWKS may not have it).
    #[error("the {alg} signing key is published but signs only from {}", gatehouse_core::time::format_utc(*signs_from))]
    NotSigningYet { alg: &'static str, signs_from: Timestamp },
}

fn corrupt(kid: &str, reason: impl fmt::Display) -> KeyError {
    KeyError::Corrupt {
        kid: kid.to_owned(),
        reason: reason.to_string(),
    }
}

/// The audit event of `key`'s addition: by the IdP itself (its first
/// start), unless the caller adds who (`AuditEvent::by`).
pub(crate) fn key_added(key: &gatehouse_core::oauth::grant::StoredKey) -> gatehouse_core::audit::AuditEvent {
    use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
    AuditEvent::new(AuditKind::SigningKeyAdded, None, &Actor::default(), key.created_at)
        .with_detail(serde_json::json!({ "kid": key.kid, "alg": key.alg.as_str(), "signs_from": key.signs_from.0 }))
}
