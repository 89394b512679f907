//! Redeeming an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6,
//! RFC 9449 §10, OpenID Connect Core §3.1.3.2) and its checks, in the order
//! they run. A code works once, for the client it was issued to, with the
//! same redirect URI and the PKCE verifier; a second use revokes everything
//! the first use issued. A code asked for with `dpop_jkt` is redeemed only
//! with a proof by that key.
//!
//! The token endpoint reads the code (with its account and the account's
//! bans), asks [`redeem`], and then writes what it answers: the grant to
//! issue, or a [`Refusal`] (which may revoke the code's family first).
//! [`CHECKS`] is the list; a test can run any one of them alone.

use super::client::Client;
use super::error::OAuthError;
use super::grant::{AuthCode, Grant, Refusal};
use super::pkce;
use crate::ban::Ban;
use crate::{Account, Timestamp};

/// What the token request brings to a code, with what was read for it.
pub struct Redeem<'a> {
    /// The authenticated client.
    pub client: &'a Client,
    /// The code as stored.
    pub code: &'a AuthCode,
    /// The request's `redirect_uri`.
    pub redirect_uri: &'a str,
    /// The request's `code_verifier`, if any.
    pub code_verifier: Option<&'a str>,
    /// The thumbprint of the key of the request's DPoP proof (verified), if
    /// it came with one.
    pub proof_jkt: Option<&'a str>,
    /// The code's account and its bans (all of them), if the account is
    /// still there.
    pub holder: Option<(&'a Account, &'a [Ban])>,
    pub now: Timestamp,
}

type CheckFn = fn(&Redeem<'_>) -> Result<(), Refusal>;

/// One named check.
pub struct Check {
    pub name: &'static str,
    pub run: CheckFn,
}

/// The checks, in order; the first refusal wins.
pub const CHECKS: &[Check] = &[
    Check {
        name: "the code was issued to this client",
        run: check_client,
    },
    // Before the replay check: without the key, a stolen code can do
    // nothing, not even revoke what its first use issued.
    Check {
        name: "a code bound by dpop_jkt comes with a proof by that key",
        run: check_dpop_binding,
    },
    Check {
        name: "the code is used once; a replay revokes what it issued",
        run: check_not_used,
    },
    Check {
        name: "the code has not expired",
        run: check_not_expired,
    },
    Check {
        name: "the redirect_uri is the authorization request's",
        run: check_redirect_uri,
    },
    Check {
        name: "PKCE: the verifier matches the challenge, and comes only with one",
        run: check_pkce,
    },
    Check {
        name: "the account is still there and ready",
        run: check_account,
    },
    Check {
        name: "the account is not banned from this client",
        run: check_not_banned,
    },
];

/// The refusal of a code that is not (or no longer) good, whatever the
/// reason: the reason is the private cause.
pub fn invalid(why: &str) -> OAuthError {
    OAuthError::invalid_grant("the code is invalid, expired or already used").with_cause(why)
}

fn check_client(r: &Redeem<'_>) -> Result<(), Refusal> {
    if r.code.client_id != r.client.id {
        return Err(invalid("code of another client").into());
    }
    Ok(())
}

fn check_dpop_binding(r: &Redeem<'_>) -> Result<(), Refusal> {
    if let Some(bound) = &r.code.dpop_jkt
        && r.proof_jkt != Some(bound.as_str())
    {
        return Err(OAuthError::invalid_grant(
            "the code is bound to a DPoP key (dpop_jkt): send a DPoP proof made with it",
        )
        .into());
    }
    Ok(())
}

fn check_not_used(r: &Redeem<'_>) -> Result<(), Refusal> {
    if r.code.used_at.is_some() {
        // A replay: revoke what the first use issued (RFC 6749 §4.1.2).
        return Err(Refusal::revoking_family(invalid("code replayed")));
    }
    Ok(())
}

fn check_not_expired(r: &Redeem<'_>) -> Result<(), Refusal> {
    if r.code.expires_at <= r.now {
        return Err(invalid("code expired").into());
    }
    Ok(())
}

fn check_redirect_uri(r: &Redeem<'_>) -> Result<(), Refusal> {
    if r.code.redirect_uri != r.redirect_uri {
        return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request").into());
    }
    Ok(())
}

fn check_pkce(r: &Redeem<'_>) -> Result<(), Refusal> {
    let refuse = |text: &str| Err(OAuthError::invalid_grant(text).into());
    match (&r.code.code_challenge, r.code_verifier) {
        (Some(challenge), Some(verifier)) if pkce::verify(verifier, challenge) => Ok(()),
        (Some(_), Some(_)) => refuse("code_verifier does not match the code_challenge"),
        (Some(_), None) => refuse("code_verifier is required"),
        // RFC 9700 §4.8.2: a verifier without a challenge is a downgrade attempt.
        (None, Some(_)) => refuse("code_verifier sent but no code_challenge was"),
        (None, None) => Ok(()),
    }
}

fn check_account(r: &Redeem<'_>) -> Result<(), Refusal> {
    ready_account(r).map(|_| ())
}

/// The code's account, if it is still there and ready.
fn ready_account<'a>(r: &Redeem<'a>) -> Result<&'a Account, Refusal> {
    match r.holder {
        Some((account, _)) if account.is_ready() => Ok(account),
        _ => Err(invalid("account gone").into()),
    }
}

fn check_not_banned(r: &Redeem<'_>) -> Result<(), Refusal> {
    let bans = r.holder.map_or(&[][..], |(_, bans)| bans);
    refuse_banned(bans, r.client, r.now).map_err(Refusal::from)
}

/// Refuses a user whose `bans` (all of them) block `client` now: an
/// administrator banned them from it, or everywhere.
pub fn refuse_banned(bans: &[Ban], client: &Client, now: Timestamp) -> Result<(), OAuthError> {
    match crate::ban::blocking(bans, Some(&client.id), now) {
        Some(_) => Err(OAuthError::invalid_grant("the user may not use this client").with_cause("banned")),
        None => Ok(()),
    }
}

/// What a code that passed every check becomes.
#[derive(Debug, PartialEq)]
pub struct Redeemed<'a> {
    /// The grant (token family) to write.
    pub grant: Grant,
    /// Whose it is.
    pub account: &'a Account,
}

/// Runs every check; on success, the grant (token family) the code
/// becomes, and its account. With a DPoP proof the grant is bound to its key: RFC 9449 §5
/// lets a confidential client's refresh token go unbound (client
/// authentication constrains it); we bind it too, so that a token redeemed
/// with a proof is never refreshed into a bearer token (DESIGN.md: a
/// sender-constrained token never becomes less constrained).
pub fn redeem<'a>(r: &Redeem<'a>) -> Result<Redeemed<'a>, Refusal> {
    for check in CHECKS {
        (check.run)(r)?;
    }
    let mut grant = Grant::from_code(r.code, r.now);
    grant.dpop_jkt = r.proof_jkt.map(str::to_owned);
    Ok(Redeemed {
        grant,
        account: ready_account(r)?,
    })
}

#[cfg(test)]
mod tests;
