//! What the authorization server remembers between requests: codes, grants
//! (token families), refresh tokens, remembered consents, pending
//! interactions and signing keys. Bearer values (codes, refresh tokens,
//! interaction ids) are stored only as digests.

use super::client::{ClientId, SigningAlg};
use super::error::OAuthError;
use super::scope::Scopes;
use crate::session::AuthMethod;
use crate::time::{DAY, HOUR, MINUTE};
use crate::{AccountId, Timestamp, TokenDigest};

/// A code lives a minute (RFC 6749 §4.1.2 recommends at most ten).
pub const CODE_LIFETIME: i64 = MINUTE;
/// How long a code is kept after it expired: a replay within this time
/// still finds it used and revokes what its first use issued (RFC 6749
/// §4.1.2); after it, a replay is only refused. The access tokens the
/// first use issued have expired by then.
pub const CODE_KEPT_AFTER_EXPIRY: i64 = HOUR;
/// How long a refresh token is kept after it expired: a rotated one
/// presented again within this time still revokes its family; after it,
/// it is only refused.
pub const REFRESH_TOKEN_KEPT_AFTER_EXPIRY: i64 = HOUR;
/// Access tokens are short-lived JWTs.
pub const ACCESS_TOKEN_LIFETIME: i64 = 5 * MINUTE;
pub const ID_TOKEN_LIFETIME: i64 = 5 * MINUTE;
pub const REFRESH_TOKEN_LIFETIME: i64 = 30 * DAY;
/// A login or consent started from an authorization request must finish
/// within this time.
pub const INTERACTION_LIFETIME: i64 = 30 * MINUTE;

/// The authentication context class we achieve: a password.
pub const ACR_PASSWORD: &str = "urn:gatehouse:acr:password";

/// A grant id: names one token family. Time-ordered (a UUIDv7 of `now`),
/// so new grants (one per sign-on) are appended to the grants' index and
/// their refresh tokens' index by grant, rather than written into random
/// pages of them.
pub fn new_grant_id(now: std::time::SystemTime) -> String {
    let since = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let time = uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos());
    format!("g_{}", uuid::Uuid::new_v7(time).simple())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthCode {
    pub digest: TokenDigest,
    pub client_id: ClientId,
    pub account_id: AccountId,
    /// The IdP session (cookie digest) that authorized it.
    pub session_digest: TokenDigest,
    /// The session's public handle: the `sid` claim.
    pub sid: String,
    pub redirect_uri: String,
    pub scopes: Scopes,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: Timestamp,
    pub amr: Vec<AuthMethod>,
    /// What the client asked for in `acr_values`, recorded.
    pub acr_values: Option<String>,
    /// Resource indicators (RFC 8707) asked for at the authorization endpoint.
    pub resources: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    /// The grant the code becomes: fixed when the code is issued, so that a
    /// replay can revoke what the first use issued.
    pub grant_id: String,
    /// RFC 9449 §10: the thumbprint of the DPoP key the client named with
    /// `dpop_jkt`. Redeeming the code then needs a proof by that key.
    pub dpop_jkt: Option<String>,
}

/// A token family: everything issued from one authorization (or one
/// client-credentials request). Revoking it makes every token in it inactive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub client_id: ClientId,
    pub account_id: Option<AccountId>,
    pub scopes: Scopes,
    pub sid: Option<String>,
    pub session_digest: Option<TokenDigest>,
    pub auth_time: Option<Timestamp>,
    pub amr: Vec<AuthMethod>,
    pub resources: Vec<String>,
    /// For narrowed tokens (token exchange): the family it came from.
    pub parent_id: Option<String>,
    /// The thumbprint of the DPoP key (RFC 9449 §5) its refresh tokens are
    /// bound to: set for a public client that asked with a DPoP proof. Using
    /// a refresh token of the family then needs a proof with that key.
    pub dpop_jkt: Option<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl Grant {
    pub fn from_code(code: &AuthCode, now: Timestamp) -> Grant {
        Grant {
            id: code.grant_id.clone(),
            client_id: code.client_id.clone(),
            account_id: Some(code.account_id.clone()),
            scopes: code.scopes.clone(),
            sid: Some(code.sid.clone()),
            session_digest: Some(code.session_digest.clone()),
            auth_time: Some(code.auth_time),
            amr: code.amr.clone(),
            resources: code.resources.clone(),
            parent_id: None,
            dpop_jkt: None,
            created_at: now,
            revoked_at: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshToken {
    pub digest: TokenDigest,
    pub grant_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Set when it was exchanged for a new one; a second use is a replay.
    pub used_at: Option<Timestamp>,
}

/// A remembered "yes" to a third-party client, per user and client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    pub account_id: AccountId,
    pub client_id: ClientId,
    pub scopes: Scopes,
    pub granted_at: Timestamp,
}

impl Consent {
    pub fn covers(&self, scopes: &Scopes) -> bool {
        scopes.is_subset(&self.scopes)
    }
}

/// An authorization request waiting for the person (login or consent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interaction {
    pub digest: TokenDigest,
    /// The original query string of the authorization request.
    pub query: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// `prompt=select_account`: the account the person chose to continue
    /// with ("Continue as ..."), once chosen.
    pub chosen_account: Option<crate::AccountId>,
}

/// A signing key as stored: the public JWK in the clear, the private key
/// (PKCS#8 DER) encrypted with the instance secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// The public JWK, JSON.
    pub public_jwk: String,
    /// base64(nonce || AES-256-GCM ciphertext of the PKCS#8 DER).
    pub private_encrypted: String,
    /// Published (in the JWKS) from `created_at`; signs from `signs_from`,
    /// later when a rotation pre-publishes it.
    pub created_at: Timestamp,
    pub signs_from: Timestamp,
    /// When it stops signing (a newer key of its algorithm takes over).
    pub retired_at: Option<Timestamp>,
}

/// The outcome of redeeming a code or a refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redemption {
    /// First use: the new records were written.
    Issued,
    /// Used before: the family it issued is now revoked.
    Replayed,
    /// No such code or token.
    Unknown,
}

/// Why a code or a refresh token is not redeemed: the error to answer and
/// whether the family it belongs to must be revoked first (a replayed code,
/// a rotated refresh token presented again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub error: OAuthError,
    pub revokes_family: bool,
}

impl Refusal {
    /// A refusal that revokes the whole family first.
    pub fn revoking_family(error: OAuthError) -> Self {
        Refusal {
            error,
            revokes_family: true,
        }
    }
}

impl From<OAuthError> for Refusal {
    fn from(error: OAuthError) -> Self {
        Refusal {
            error,
            revokes_family: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn grant_ids_sort_by_their_time_and_differ_within_it() {
        let at = UNIX_EPOCH + Duration::from_millis(1_796_000_000_123);
        let (a, b) = (new_grant_id(at), new_grant_id(at));
        let later = new_grant_id(at + Duration::from_millis(1));
        assert_ne!(a, b);
        assert!(a < later && b < later, "{a} {b} {later}");
        assert!(a.starts_with("g_01a229f1287b7"), "{a}: the time, then version 7");
    }
}
