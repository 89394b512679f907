//! What a signed-in person changes about their own account: the profile,
//! the password, the email (confirmed from the new address, by the mailed
//! code or link), and deleting it. The destructive ones ask for the current
//! password. A password change tells the account's clients (credential
//! change) and marks the other sessions as needing the
//! password; an email change tells them the new identifier; a deletion ends
//! every session and tells them the account is purged; each in the store
//! call that makes the change. A profile change tells no one (see
//! ARCHITECTURE.md: reliers read it from UserInfo or the next ID token).

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::code::{CodeEffect, CodeError, CodePurpose, OneTimeCode};
use gatehouse_core::{Email, ProfileInput, Secret, Timestamp, password};
use gatehouse_store::Redeemed;

use super::sessions::Current;
use super::sign_up::{guess_code, mail_already_registered};
use super::{Deps, Error, hash_password, verify_password};
use crate::events::SecurityEvent;
use crate::mail::{Mailer, render as render_mail, templates};
use crate::web::q;

/// Why a change to the account was refused: what the person is told.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("Your current password is not right.")]
    WrongPassword,
    /// A value breaks its rule (the profile's, the password policy, the
    /// email's form): the reason.
    #[error("{0}")]
    Invalid(String),
    #[error("That is already your email address.")]
    SameEmail,
    /// A typed or mailed code that does not work.
    #[error("{0}")]
    Code(CodeError),
    #[error("That code has already been used.")]
    CodeUsed,
    #[error("That address cannot be used. Choose another.")]
    EmailTaken,
}

async fn password_ok(current: &Current, given: Secret<String>) -> Result<bool, Error> {
    verify_password(given, Some(current.account.password_hash.clone())).await
}

/// Saves the profile (nothing to save is a success too). A refused field
/// changes nothing.
pub async fn change_profile(
    deps: &Deps,
    current: &Current,
    form: &ProfileInput,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<(), Refused>, Error> {
    let old = &current.account.profile;
    let profile = match old.edited(form, now) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(Ok(())),
        Err(e) => return Ok(Err(Refused::Invalid(e.to_string()))),
    };
    let audit = AuditEvent::new(AuditKind::ProfileChanged, Some(&current.account.id), actor, now)
        .with_detail(serde_json::json!({ "fields": profile.changed_fields(old) }));
    if !deps
        .store
        .set_profile(&current.account.id, &profile, now, &audit)
        .await?
    {
        return Err(Error::internal("the signed-in account is gone"));
    }
    Ok(Ok(()))
}

/// Changes the password: the other sessions must enter it again, the
/// account's clients are told, and the account's address gets a mail
/// saying so (with a reset link, in case it was not them).
pub async fn change_password(
    deps: &Deps,
    mailer: &Mailer,
    current: &Current,
    current_password: Secret<String>,
    new_password: Secret<String>,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<(), Refused>, Error> {
    let account = &current.account;
    if !password_ok(current, current_password).await? {
        let audit = AuditEvent::new(AuditKind::PasswordChanged, Some(&account.id), actor, now).failed("bad_password");
        deps.store.append_audit(&audit).await?;
        return Ok(Err(Refused::WrongPassword));
    }
    if let Err(e) = password::check_policy(new_password.expose(), Some(&account.email)) {
        return Ok(Err(Refused::Invalid(e.to_string())));
    }
    let hash = hash_password(new_password).await?;
    let audit = AuditEvent::new(AuditKind::PasswordChanged, Some(&account.id), actor, now);
    // The other sessions are marked, not ended: the clients hear a
    // credential change, not a session revoked (issue 15, item 5).
    let events = [SecurityEvent::CredentialChange];
    let outbox = deps
        .signer()
        .security_events(&account.id, None, &events, now, now)
        .await?;
    deps.store
        .change_password(&account.id, hash.expose(), Some(current.digest()), now, &audit, &outbox)
        .await?;
    deps.wake(&outbox);
    let reset_link = deps
        .settings
        .url(&format!("/reset?email={}", q(account.email.as_str())));
    mailer.send(
        &account.email,
        render_mail(&templates::PasswordChanged {
            reset_link: &reset_link,
        }),
    );
    Ok(Ok(()))
}

/// Asks to move the account to a new address: a code and a link go to the
/// new address, which confirms it. Mail to an address of the person's
/// choosing is counted as every mail on request is (per target and per
/// client address), and a throttled request answers the same (the count
/// says nothing of the address); a taken address answers the same too, and
/// its owner is told instead.
pub async fn request_email_change(
    deps: &Deps,
    mailer: &Mailer,
    current: &Current,
    typed_email: &str,
    password: Secret<String>,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<(), Refused>, Error> {
    let account = &current.account;
    let new_email = match Email::parse(typed_email) {
        Ok(e) => e,
        Err(e) => return Ok(Err(Refused::Invalid(e.to_string()))),
    };
    if !password_ok(current, password).await? {
        return Ok(Err(Refused::WrongPassword));
    }
    if new_email == account.email {
        return Ok(Err(Refused::SameEmail));
    }
    let audit = AuditEvent::new(AuditKind::EmailChangeRequested, Some(&account.id), actor, now)
        .with_detail(serde_json::json!({ "from": account.email, "to": new_email }));
    if !crate::throttle::may_mail(deps.store.as_ref(), &new_email, &actor.ip, now).await? {
        deps.store.append_audit(&audit.failed("throttled")).await?;
        return Ok(Ok(()));
    }
    if deps.store.account_by_email(&new_email).await?.is_some() {
        // Say nothing here about the other account; tell the address's owner.
        deps.store.append_audit(&audit.failed("email_taken")).await?;
        mail_already_registered(deps, mailer, &new_email);
    } else {
        let issued = OneTimeCode::issue(CodePurpose::ChangeEmail, account.id.clone(), new_email.clone(), now);
        deps.store.insert_code(&issued.record, Some(&audit)).await?;
        let link = deps
            .settings
            .url(&format!("/email/confirm?token={}", issued.link_token.expose()));
        mailer.send(
            &new_email,
            render_mail(&templates::ChangeEmail {
                code: issued.code.expose(),
                link: &link,
            }),
        );
    }
    Ok(Ok(()))
}

/// Confirms an email change with the code the signed-in person typed.
pub async fn confirm_email_code(
    deps: &Deps,
    mailer: &Mailer,
    current: &Current,
    typed_code: &str,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<(), Refused>, Error> {
    let Some(code) = deps
        .store
        .latest_code(&current.account.id, CodePurpose::ChangeEmail)
        .await?
    else {
        return Ok(Err(Refused::Code(CodeError::Wrong)));
    };
    if let Err(e) = guess_code(deps, &code, typed_code, now).await? {
        return Ok(Err(Refused::Code(e)));
    }
    confirm_email_change(deps, mailer, &code, &current.account.email, actor, now).await
}

/// Applies an email change whose code was checked (typed, or named by the
/// mailed link) and tells the old address and the account's clients.
pub async fn confirm_email_change(
    deps: &Deps,
    mailer: &Mailer,
    code: &OneTimeCode,
    old_email: &Email,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<(), Refused>, Error> {
    let audit = AuditEvent::new(AuditKind::EmailChanged, Some(&code.account_id), actor, now)
        .with_detail(serde_json::json!({ "from": old_email, "to": code.email }));
    let events = [SecurityEvent::IdentifierChanged {
        new_email: code.email.as_str().to_owned(),
    }];
    let outbox = deps
        .signer()
        .security_events(&code.account_id, None, &events, now, now)
        .await?;
    Ok(
        match deps
            .store
            .redeem_code(code, &CodeEffect::ChangeEmail, now, &audit, &outbox)
            .await?
        {
            Redeemed::Done => {
                deps.wake(&outbox);
                let reset_link = deps.settings.url(&format!("/reset?email={}", q(old_email.as_str())));
                mailer.send(
                    old_email,
                    render_mail(&templates::EmailChanged {
                        new_email: code.email.as_str(),
                        reset_link: &reset_link,
                    }),
                );
                Ok(())
            }
            Redeemed::AlreadyUsed => Err(Refused::CodeUsed),
            Redeemed::EmailTaken => Err(Refused::EmailTaken),
        },
    )
}

/// Deletes the account: every session ends (their clients get back-channel
/// logout tokens) and the account's clients are told it is purged.
pub async fn delete_account(
    deps: &Deps,
    current: &Current,
    password: Secret<String>,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<(), Refused>, Error> {
    if !password_ok(current, password).await? {
        return Ok(Err(Refused::WrongPassword));
    }
    let account = &current.account.id;
    let audit = AuditEvent::new(AuditKind::AccountDeleted, Some(account), actor, now)
        .with_detail(serde_json::json!({ "email": current.account.email }));
    let signer = deps.signer();
    let mut outbox = signer.account(account, None, now).await?;
    outbox.extend(
        signer
            .security_events(account, None, &[SecurityEvent::AccountPurged], now, now)
            .await?,
    );
    deps.store.delete_account(account, &audit, &outbox).await?;
    deps.wake(&outbox);
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_the_pages_showed_them() {
        assert_eq!(
            Refused::WrongPassword.to_string(),
            "Your current password is not right."
        );
        assert_eq!(Refused::SameEmail.to_string(), "That is already your email address.");
        assert_eq!(Refused::CodeUsed.to_string(), "That code has already been used.");
        assert_eq!(
            Refused::EmailTaken.to_string(),
            "That address cannot be used. Choose another."
        );
        assert_eq!(
            Refused::Code(CodeError::Wrong).to_string(),
            CodeError::Wrong.to_string()
        );
    }
}
