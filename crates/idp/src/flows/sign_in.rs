//! Signing in with an email and a password, as a sequence of named steps:
//!
//! 1. [`check_input`]: an email of the right form and a password at all;
//! 2. [`reserve_attempts`]: one attempt on the client address's and the
//!    account email's failure counters, reserved before any password is
//!    checked, so at most the limit is ever checked however many arrive at
//!    once (a refusal is audited, `throttled`);
//! 3. [`verify_password`]: the password against the account's hash, or a
//!    dummy hash when there is no account, so a wrong password and an
//!    unknown email take as long and answer the same (the reservations
//!    stay counted as the failure);
//! 4. [`forgive_attempts`]: the right password gives its reservations back
//!    and clears the account's failures;
//! 5. [`check_standing`]: the bans in force (everywhere) refuse the account;
//! 6. [`start_or_resume_session`]: the same person's session resumes with a
//!    new authentication time; another account's session in the browser
//!    ends (its clients told), and a new one starts.
//!
//! The sequence is [`run`]; a new step (a risk check, a second factor,
//! linking a legacy account) is one line there and one small function. Each
//! refusal records its metric (`gatehouse_logins` by outcome) and its
//! `LoginFailed` audit event where it is decided.

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::throttle;
use gatehouse_core::{Account, Email, OpaqueToken, Secret, Timestamp, TokenDigest};

use super::sessions::{self, LogoutReason};
use super::{Deps, Error};
use crate::throttle::{Reservation, Reserved};

/// A sign-in attempt: the form's values and the browser's session.
pub struct SignIn<'a> {
    /// The email as typed.
    pub email: &'a str,
    pub password: Secret<String>,
    /// The digest of the browser's session id, if it sent one: the same
    /// account's session resumes, another's ends.
    pub browser_session: Option<TokenDigest>,
    pub actor: &'a Actor,
}

/// A successful sign-in.
#[derive(Debug)]
pub enum SignedIn {
    /// The browser's session was this account's: it resumes, with a new
    /// authentication time.
    Resumed,
    /// A new session; `token` is its id for the browser's cookie. `ready`
    /// is false while the account's email is not verified yet.
    Started { token: OpaqueToken, ready: bool },
}

/// Why a sign-in was refused: what the person is told.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The email is not an email address (the reason, to show).
    BadEmail(String),
    /// No password was given.
    NoPassword,
    /// Too many attempts for the client address or the account: try again
    /// after this many seconds.
    Throttled { retry_after_secs: i64 },
    /// A wrong password or an unknown email: the same answer for both.
    WrongCredentials,
    /// The right password, but the account is banned or suspended (the
    /// ban's message, to show).
    Banned { message: String },
}

/// Signs in: [`run`]'s steps, in order.
pub async fn sign_in(deps: &Deps, input: SignIn<'_>, now: Timestamp) -> Result<Result<SignedIn, Refused>, Error> {
    match run(deps, &input, now).await {
        Ok(done) => Ok(Ok(done)),
        Err(Stop::Refused(refused)) => Ok(Err(refused)),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// How a step stops the sequence.
#[derive(Debug)]
pub enum Stop {
    Refused(Refused),
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

impl From<gatehouse_store::StoreError> for Stop {
    fn from(e: gatehouse_store::StoreError) -> Self {
        Stop::Failed(e.into())
    }
}

/// The sequence of steps.
async fn run(deps: &Deps, input: &SignIn<'_>, now: Timestamp) -> Result<SignedIn, Stop> {
    let email = check_input(input)?;
    let reserved = reserve_attempts(deps, &email, input.actor, now).await?;
    let account = verify_password(deps, &email, &input.password, input.actor, now).await?;
    forgive_attempts(deps, reserved, &email).await?;
    check_standing(deps, &account, &email, input.actor, now).await?;
    deps.metrics.login("success");
    start_or_resume_session(deps, &account, input, now).await
}

/// The form's values: an email address and a password at all.
pub fn check_input(input: &SignIn<'_>) -> Result<Email, Stop> {
    let email = Email::parse(input.email).map_err(|e| Stop::Refused(Refused::BadEmail(e.to_string())))?;
    if input.password.expose().is_empty() {
        return Err(Stop::Refused(Refused::NoPassword));
    }
    Ok(email)
}

/// An attempt refused: its metric and its `LoginFailed` audit event.
async fn refuse(
    deps: &Deps,
    reason: &str,
    account: Option<&Account>,
    email: &Email,
    actor: &Actor,
    now: Timestamp,
    refused: Refused,
) -> Stop {
    deps.metrics.login(reason);
    let audit = AuditEvent::new(AuditKind::LoginFailed, account.map(|a| &a.id), actor, now)
        .failed(reason)
        .with_detail(serde_json::json!({ "reason": reason, "email": email }));
    match deps.store.append_audit(&audit).await {
        Ok(()) => Stop::Refused(refused),
        Err(e) => Stop::Failed(e.into()),
    }
}

/// Reserves the attempt before doing any work for it: at most the limit is
/// ever checked, however many arrive at once. The address first: a refused
/// address touches no account's counter, so a flood of made-up emails adds
/// no rows.
pub async fn reserve_attempts(deps: &Deps, email: &Email, actor: &Actor, now: Timestamp) -> Result<Reserved, Stop> {
    let counters = [
        (throttle::address_key(&actor.ip), throttle::PER_ADDRESS),
        (throttle::account_key(email), throttle::PER_ACCOUNT),
    ];
    match crate::throttle::reserve(deps.store.as_ref(), &counters, now).await? {
        Reservation::Reserved(r) => Ok(r),
        Reservation::Refused { retry_after_secs } => Err(refuse(
            deps,
            "throttled",
            None,
            email,
            actor,
            now,
            Refused::Throttled { retry_after_secs },
        )
        .await),
    }
}

/// The account whose password this is. Without an account the password is
/// checked against a dummy hash, so the answer takes as long; the reserved
/// attempts stay counted: they are the failures.
pub async fn verify_password(
    deps: &Deps,
    email: &Email,
    password: &Secret<String>,
    actor: &Actor,
    now: Timestamp,
) -> Result<Account, Stop> {
    let account = deps.store.account_by_email(email).await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let ok = super::verify_password(password.clone(), stored).await?;
    match account {
        Some(a) if ok => Ok(a),
        other => {
            let reason = if other.is_some() {
                "bad_password"
            } else {
                "unknown_account"
            };
            Err(refuse(
                deps,
                reason,
                other.as_ref(),
                email,
                actor,
                now,
                Refused::WrongCredentials,
            )
            .await)
        }
    }
}

/// The right password: its reservations are given back, and the account's
/// earlier failures are forgiven (its counter is cleared).
pub async fn forgive_attempts(deps: &Deps, reserved: Reserved, email: &Email) -> Result<(), Stop> {
    crate::throttle::release(deps.store.as_ref(), reserved).await?;
    deps.store.throttle_clear(&throttle::account_key(email)).await?;
    Ok(())
}

/// The right password, but an administrator banned or suspended the
/// account (everywhere: a ban at one client is checked when that client
/// asks).
pub async fn check_standing(
    deps: &Deps,
    account: &Account,
    email: &Email,
    actor: &Actor,
    now: Timestamp,
) -> Result<(), Stop> {
    let bans = deps.store.bans_of(&account.id).await?;
    match gatehouse_core::ban::blocking(&bans, None, now) {
        Some(ban) => {
            let refused = Refused::Banned { message: ban.message() };
            Err(refuse(deps, "banned", Some(account), email, actor, now, refused).await)
        }
        None => Ok(()),
    }
}

/// The same person entering the password again (a reset elsewhere, or a
/// site asking for a fresh login): the same session resumes, with a new
/// authentication time. Someone else's session, or a stale one, ends; a new
/// one begins.
pub async fn start_or_resume_session(
    deps: &Deps,
    account: &Account,
    input: &SignIn<'_>,
    now: Timestamp,
) -> Result<SignedIn, Stop> {
    let current = match &input.browser_session {
        Some(digest) => sessions::current(deps, digest, now).await?,
        None => None,
    };
    if let Some(c) = current {
        if c.account.id == account.id {
            sessions::reauthenticate(deps, &c, input.actor, now).await?;
            return Ok(SignedIn::Resumed);
        }
        sessions::log_out(
            deps,
            &c.account.id,
            &c.session,
            LogoutReason::Replaced,
            input.actor,
            now,
        )
        .await?;
    }
    let token = sessions::start(deps, account, input.actor, now).await?;
    Ok(SignedIn::Started {
        token,
        ready: account.is_ready(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(email: &'a str, password: &str, actor: &'a Actor) -> SignIn<'a> {
        SignIn {
            email,
            password: Secret::new(password.to_owned()),
            browser_session: None,
            actor,
        }
    }

    fn refused(r: Result<Email, Stop>) -> Option<Refused> {
        match r {
            Err(Stop::Refused(r)) => Some(r),
            _ => None,
        }
    }

    #[test]
    fn input_needs_an_email_and_a_password() {
        let actor = Actor::default();
        assert!(check_input(&input("a@example.com", "pw", &actor)).is_ok());
        assert_eq!(
            refused(check_input(&input("a@example.com", "", &actor))),
            Some(Refused::NoPassword)
        );
        assert!(matches!(
            refused(check_input(&input("not an email", "pw", &actor))),
            Some(Refused::BadEmail(_))
        ));
    }
}
