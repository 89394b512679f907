//! Sign-up, accounts an administrator creates, and email verification (by
//! the mailed code or the mailed link).
//!
//! Sign-up answers the same whether or not the email already has an
//! account: a taken address gets a mail saying so instead of a new account.
//! It hashes the password before it looks, so both take as long. Mail asked
//! for without a proven address is throttled per address and per client
//! (`crate::throttle::may_mail`); a throttled request answers the same and
//! only the mail is not sent. Verification does not sign anyone in. Without
//! a session, a code is checked with the same work for any address
//! ([`anonymous_code`]).

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::code::{CodeEffect, CodeError, CodePurpose, OneTimeCode};
use gatehouse_core::{Account, AccountId, Email, OpaqueToken, Profile, ProfileInput, Secret, Timestamp, password};
use gatehouse_store::{Redeemed, Store, StoreError};

use super::{Deps, Error, hash_password};
use crate::mail::{Mailer, render as render_mail, templates};
use crate::web::q;

/// A sign-up form's values.
pub struct SignUp<'a> {
    pub email: &'a str,
    pub password: Secret<String>,
    pub profile: &'a ProfileInput,
    pub actor: &'a Actor,
}

/// Signs up: on success (a new account, or a taken address told so by
/// mail) the address to verify; otherwise what is wrong with the form.
pub async fn sign_up(
    deps: &Deps,
    mailer: &Mailer,
    form: SignUp<'_>,
    now: Timestamp,
) -> Result<Result<Email, String>, Error> {
    let actor = form.actor;
    let email = match Email::parse(form.email) {
        Ok(e) => e,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if let Err(e) = password::check_policy(form.password.expose(), Some(&email)) {
        return Ok(Err(e.to_string()));
    }
    let profile = match Profile::default().edited(form.profile, now) {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => return Ok(Err(e.to_string())),
    };
    // Hash first, whatever happens next, so both branches take as long.
    let hash = hash_password(form.password).await?;
    let account = Account {
        id: AccountId::generate(),
        email: email.clone(),
        email_verified: false,
        password_hash: hash,
        created_at: now,
        updated_at: now,
        profile,
    };
    let audit = AuditEvent::new(AuditKind::SignUp, Some(&account.id), actor, now)
        .with_detail(serde_json::json!({ "email": email }));
    // Mail is throttled per address and per client, counted the same way for
    // a new and a taken address; a throttled sign-up answers the same, and
    // only the mail is not sent (a new account can ask for its code again).
    let may_mail = crate::throttle::may_mail(deps.store.as_ref(), &email, &actor.ip, now).await?;
    match deps.store.create_account(&account, &audit).await {
        Ok(()) => {
            deps.metrics.signups.inc();
            if may_mail {
                send_verification(deps, mailer, &account.id, &email, now).await?;
            }
        }
        Err(StoreError::Conflict(_)) => {
            let existing = deps.store.account_by_email(&email).await?.map(|a| a.id);
            let audit = AuditEvent::new(AuditKind::SignUp, existing.as_ref(), actor, now)
                .failed("email_taken")
                .with_detail(serde_json::json!({ "reason": "email_taken", "email": email }));
            deps.store.append_audit(&audit).await?;
            if may_mail {
                mail_already_registered(deps, mailer, &email);
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Ok(email))
}

/// Tells the owner of an address that someone tried to register it (or to
/// move another account to it): sign in or reset instead.
pub(crate) fn mail_already_registered(deps: &Deps, mailer: &Mailer, email: &Email) {
    let login_link = deps.settings.url(&format!("/login?email={}", q(email.as_str())));
    let reset_link = deps.settings.url(&format!("/reset?email={}", q(email.as_str())));
    mailer.send(
        email,
        render_mail(&templates::AlreadyRegistered {
            login_link: &login_link,
            reset_link: &reset_link,
        }),
    );
}

/// Why an administrator's account was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    BadEmail(String),
    #[error("{0}")]
    Password(String),
    #[error("an account with the email {0} already exists")]
    Taken(Email),
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Creates an account the way an administrator does (the command line, the
/// demo): the password policy applies, the event is audited (`by` says
/// who). Without a password the account has a random one nobody knows,
/// and signs in after a reset.
pub async fn create_account(
    store: &dyn Store,
    email: &str,
    password: Option<String>,
    verified: bool,
    by: &str,
) -> Result<AccountId, CreateError> {
    let email = Email::parse(email).map_err(|e| CreateError::BadEmail(e.to_string()))?;
    let secret = match password {
        Some(p) => {
            password::check_policy(&p, Some(&email)).map_err(|e| CreateError::Password(e.to_string()))?;
            Secret::new(p)
        }
        None => Secret::new(OpaqueToken::generate().expose().to_owned()),
    };
    let hash = hash_password(secret).await?;
    let now = Timestamp::now();
    let account = Account {
        id: AccountId::generate(),
        email: email.clone(),
        email_verified: verified,
        password_hash: hash,
        created_at: now,
        updated_at: now,
        profile: Default::default(),
    };
    let actor = Actor {
        ip: "local".to_owned(),
        user_agent: format!("gatehouse {by}"),
    };
    let audit = AuditEvent::new(AuditKind::SignUp, Some(&account.id), &actor, now)
        .with_detail(serde_json::json!({ "email": email, "by": by, "verified": verified }))
        .by(by);
    match store.create_account(&account, &audit).await {
        Ok(()) => Ok(account.id),
        Err(StoreError::Conflict(_)) => Err(CreateError::Taken(email)),
        Err(e) => Err(CreateError::Failed(e.into())),
    }
}

/// Issues a verification code (ending earlier ones) and mails it.
pub async fn send_verification(
    deps: &Deps,
    mailer: &Mailer,
    account: &AccountId,
    email: &Email,
    now: Timestamp,
) -> Result<(), Error> {
    let issued = OneTimeCode::issue(CodePurpose::VerifyEmail, account.clone(), email.clone(), now);
    deps.store.insert_code(&issued.record, None).await?;
    let link = deps
        .settings
        .url(&format!("/verify/link?token={}", issued.link_token.expose()));
    mailer.send(
        email,
        render_mail(&templates::Verify {
            code: issued.code.expose(),
            link: &link,
        }),
    );
    Ok(())
}

/// A new code for a signed-in, unverified account. Throttled like every
/// mail asked for by someone not yet proven (anyone can sign up with
/// someone else's address and sign in): a throttled request answers the
/// same, and no new code is issued, so the last one mailed still works.
pub async fn resend_code(
    deps: &Deps,
    mailer: &Mailer,
    account: &Account,
    actor: &Actor,
    now: Timestamp,
) -> Result<(), Error> {
    if crate::throttle::may_mail(deps.store.as_ref(), &account.email, &actor.ip, now).await? {
        send_verification(deps, mailer, &account.id, &account.email, now).await?;
    }
    Ok(())
}

/// What checking a typed verification code came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    /// The signed-in account was verified already: nothing to do.
    Already,
    /// The account's email is verified now.
    Now { email: Email },
    /// The code was refused.
    Refused(CodeError),
}

/// Checks a verification code a person typed: the signed-in account's
/// latest one, or (nobody signed in) the one of the typed address's
/// unverified account, with the same work for any address.
pub async fn verify_code(
    deps: &Deps,
    signed_in: Option<&Account>,
    typed_email: &str,
    typed_code: &str,
    actor: &Actor,
    now: Timestamp,
) -> Result<Verified, Error> {
    let (account, code) = match signed_in {
        Some(account) if account.is_ready() => return Ok(Verified::Already),
        Some(account) => {
            let Some(code) = deps.store.latest_code(&account.id, CodePurpose::VerifyEmail).await? else {
                return Ok(Verified::Refused(CodeError::Wrong));
            };
            if let Err(e) = guess_code(deps, &code, typed_code, now).await? {
                return Ok(Verified::Refused(e));
            }
            (account.clone(), code)
        }
        None => match anonymous_code(deps, typed_email, typed_code, now).await? {
            Some(found) => found,
            None => return Ok(Verified::Refused(CodeError::Wrong)),
        },
    };
    Ok(match redeem(deps, actor, &code, "code", now).await? {
        Ok(()) => Verified::Now { email: account.email },
        Err(e) => Verified::Refused(e),
    })
}

/// Redeems the code a mailed verification link named (looked up and found
/// usable by the caller).
pub async fn verify_link(
    deps: &Deps,
    code: &OneTimeCode,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<(), CodeError>, Error> {
    redeem(deps, actor, code, "link", now).await
}

/// Checks a code a signed-in person typed against their latest mailed
/// code, reserving the guess first (`Store::reserve_code_attempt`): at most
/// `MAX_ATTEMPTS` guesses are ever checked, however many arrive at once.
pub async fn guess_code(
    deps: &Deps,
    code: &OneTimeCode,
    typed: &str,
    now: Timestamp,
) -> Result<Result<(), CodeError>, Error> {
    if let Err(e) = code.check_usable(now) {
        return Ok(Err(e));
    }
    if !deps.store.reserve_code_attempt(&code.id).await? {
        return Ok(Err(CodeError::TooManyAttempts));
    }
    Ok(code.check_code(typed, now))
}

/// The unverified account and its code that the anonymous form's address
/// and code name, if the code is right. The store and the hashing do the
/// same work for every address: one account lookup, one code lookup (for a
/// verified or unknown address, of an id that names nothing), one guess
/// reserved (the same statement, changing no row), one code checked (a
/// throwaway one). Only a code of the right shape gets this far, for any
/// address.
async fn anonymous_code(
    deps: &Deps,
    typed_email: &str,
    typed_code: &str,
    now: Timestamp,
) -> Result<Option<(Account, OneTimeCode)>, Error> {
    if gatehouse_core::code::normalise_code(typed_code).is_none() {
        return Ok(None);
    }
    let account = match Email::parse(typed_email) {
        Ok(email) => deps.store.account_by_email(&email).await?,
        Err(_) => None,
    };
    let account = account.filter(|a| !a.is_ready());
    let nobody = AccountId::generate();
    let code = deps
        .store
        .latest_code(account.as_ref().map_or(&nobody, |a| &a.id), CodePurpose::VerifyEmail)
        .await?;
    let throwaway = OneTimeCode::issue(
        CodePurpose::VerifyEmail,
        nobody.clone(),
        Email::parse("nobody@example.com").map_err(Error::internal)?,
        now,
    )
    .record;
    let usable = code.as_ref().is_some_and(|c| c.check_usable(now).is_ok());
    let reserved = deps
        .store
        .reserve_code_attempt(code.as_ref().filter(|_| usable).map_or(&throwaway.id, |c| &c.id))
        .await?;
    let right = code.as_ref().unwrap_or(&throwaway).check_code(typed_code, now).is_ok();
    Ok(match (account, code) {
        (Some(account), Some(code)) if usable && reserved && right => Some((account, code)),
        _ => None,
    })
}

/// Redeems a checked verification code; `by` is `code` or `link`.
async fn redeem(
    deps: &Deps,
    actor: &Actor,
    code: &OneTimeCode,
    by: &str,
    now: Timestamp,
) -> Result<Result<(), CodeError>, Error> {
    let audit = AuditEvent::new(AuditKind::EmailVerified, Some(&code.account_id), actor, now)
        .with_detail(serde_json::json!({ "email": code.email, "by": by }));
    Ok(
        match deps
            .store
            .redeem_code(code, &CodeEffect::VerifyEmail, now, &audit, &[])
            .await?
        {
            Redeemed::Done => Ok(()),
            Redeemed::AlreadyUsed | Redeemed::EmailTaken => Err(CodeError::AlreadyUsed),
        },
    )
}
