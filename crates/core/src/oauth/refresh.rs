//! Refreshing (RFC 6749 §6, RFC 9700 §4.14.2) and its checks, in the order
//! they run: every use rotates the token; using a rotated token again
//! revokes the whole family. The scope may be narrowed, never widened. A
//! family bound to a DPoP key (a client that redeemed its code with a
//! proof, RFC 9449 §5) needs a proof by that key.
//!
//! The token endpoint reads the refresh token, its grant, whether the grant
//! is revoked, and the grant's account with its bans, asks [`refresh`], and
//! then writes what it answers: the scopes to issue, or a [`Refusal`]
//! (which may revoke the family first). [`CHECKS`] is the list; a test can
//! run any one of them alone.

use super::client::Client;
use super::error::{ErrorCode, OAuthError};
use super::grant::{Grant, RefreshToken, Refusal};
use super::redeem::refuse_banned;
use super::scope::Scopes;
use crate::ban::Ban;
use crate::{Account, Timestamp};

/// What the token request brings to a refresh token, with what was read
/// for it.
pub struct Refresh<'a> {
    /// The authenticated client.
    pub client: &'a Client,
    /// The refresh token as stored.
    pub token: &'a RefreshToken,
    /// Its grant (token family).
    pub grant: &'a Grant,
    /// Whether the family is revoked.
    pub grant_revoked: bool,
    /// The request's `scope`, if any.
    pub scope: Option<&'a str>,
    /// The thumbprint of the key of the request's DPoP proof (verified), if
    /// it came with one.
    pub proof_jkt: Option<&'a str>,
    /// The grant's account and its bans (all of them), if the grant has an
    /// account and it is still there.
    pub holder: Option<(&'a Account, &'a [Ban])>,
    pub now: Timestamp,
}

type CheckFn = fn(&Refresh<'_>) -> Result<(), Refusal>;

/// One named check.
pub struct Check {
    pub name: &'static str,
    pub run: CheckFn,
}

/// The checks, in order; the first refusal wins.
pub const CHECKS: &[Check] = &[
    Check {
        name: "the token was issued to this client",
        run: check_client,
    },
    // Before the replay check: without the key, a stolen token can do
    // nothing, not even revoke the family.
    Check {
        name: "a family bound to a DPoP key is refreshed with a proof by that key",
        run: check_dpop_binding,
    },
    Check {
        name: "the token is used once; a reuse revokes the family",
        run: check_not_used,
    },
    Check {
        name: "the token has not expired and its family is not revoked",
        run: check_live,
    },
    Check {
        name: "the scope is well-formed and no wider than the grant's",
        run: check_scope,
    },
    Check {
        name: "the grant is a user's, and the account is still there and ready",
        run: check_account,
    },
    Check {
        name: "the account is not banned from this client",
        run: check_not_banned,
    },
];

/// The refusal of a refresh token that is not (or no longer) good,
/// whatever the reason: the reason is the private cause.
pub fn invalid(why: &str) -> OAuthError {
    OAuthError::invalid_grant("the refresh token is invalid, expired or revoked").with_cause(why)
}

fn check_client(r: &Refresh<'_>) -> Result<(), Refusal> {
    if r.grant.client_id != r.client.id {
        return Err(invalid("token of another client").into());
    }
    Ok(())
}

fn check_dpop_binding(r: &Refresh<'_>) -> Result<(), Refusal> {
    if let Some(bound) = &r.grant.dpop_jkt
        && r.proof_jkt != Some(bound.as_str())
    {
        return Err(OAuthError::invalid_grant(
            "the refresh token is bound to a DPoP key: send a DPoP proof made with it",
        )
        .into());
    }
    Ok(())
}

fn check_not_used(r: &Refresh<'_>) -> Result<(), Refusal> {
    if r.token.used_at.is_some() {
        return Err(Refusal::revoking_family(invalid(
            "rotated token reused: family revoked",
        )));
    }
    Ok(())
}

fn check_live(r: &Refresh<'_>) -> Result<(), Refusal> {
    if r.token.expires_at <= r.now || r.grant_revoked {
        return Err(invalid("expired or revoked").into());
    }
    Ok(())
}

fn check_scope(r: &Refresh<'_>) -> Result<(), Refusal> {
    scopes(r).map(|_| ()).map_err(Refusal::from)
}

/// The scopes to issue: the ones asked for, which must be among the
/// grant's, else the grant's.
fn scopes(r: &Refresh<'_>) -> Result<Scopes, OAuthError> {
    let Some(s) = r.scope else {
        return Ok(r.grant.scopes.clone());
    };
    let asked = Scopes::parse(s).map_err(|_| OAuthError::new(ErrorCode::InvalidScope, "malformed scope"))?;
    if !asked.is_subset(&r.grant.scopes) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "the scope exceeds what was granted",
        ));
    }
    Ok(asked)
}

fn check_account(r: &Refresh<'_>) -> Result<(), Refusal> {
    // Refresh tokens are only issued for a user's grant.
    if r.grant.account_id.is_none() {
        return Err(invalid("grant without a user").into());
    }
    ready_account(r).map(|_| ())
}

/// The grant's account, if it is still there and ready.
fn ready_account<'a>(r: &Refresh<'a>) -> Result<&'a Account, Refusal> {
    match r.holder {
        Some((account, _)) if account.is_ready() => Ok(account),
        _ => Err(invalid("account gone").into()),
    }
}

fn check_not_banned(r: &Refresh<'_>) -> Result<(), Refusal> {
    let bans = r.holder.map_or(&[][..], |(_, bans)| bans);
    refuse_banned(bans, r.client, r.now).map_err(Refusal::from)
}

/// What a refresh that passed every check issues.
#[derive(Debug, PartialEq)]
pub struct Refreshed<'a> {
    /// The grant's scopes, or fewer.
    pub scopes: Scopes,
    /// Whose the grant is.
    pub account: &'a Account,
}

/// Runs every check; on success, the scopes to issue and the account.
pub fn refresh<'a>(r: &Refresh<'a>) -> Result<Refreshed<'a>, Refusal> {
    for check in CHECKS {
        (check.run)(r)?;
    }
    Ok(Refreshed {
        scopes: scopes(r)?,
        account: ready_account(r)?,
    })
}

#[cfg(test)]
mod tests;
