//! Password reset by email. The answer to a reset request is the same
//! whether or not the address has an account, and so is the work before it:
//! the mail counters are reserved (keyed by the address, not the account),
//! and what depends on the account (the lookup, the code, its audit event,
//! the mail) happens in a task after the answer. Completing a reset does not
//! end the account's other sessions: it marks them as needing the password
//! again, and tells the account's clients (a credential change: their
//! sessions are marked too, not ended) in the same store call.

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::code::{CodeEffect, CodePurpose, OneTimeCode};
use gatehouse_core::{Email, Secret, Timestamp, TokenDigest, password};
use gatehouse_store::Redeemed;

use super::{Deps, Error, hash_password, sessions};
use crate::events::SecurityEvent;
use crate::mail::{Mailer, render as render_mail, templates};

/// Asks for a reset link for the typed address: the address it will be
/// mailed to (if it has an account and the counters allow), or why the
/// address is not one. A throttled request answers the same; no mail is
/// sent and no task is started (so a flood queues no work behind its
/// answers).
pub async fn request(
    deps: &Deps,
    mailer: &Mailer,
    typed_email: &str,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<Email, String>, Error> {
    let email = match Email::parse(typed_email) {
        Ok(e) => e,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if crate::throttle::may_mail(deps.store.as_ref(), &email, &actor.ip, now).await? {
        let (deps, mailer, to, actor) = (deps.clone(), mailer.clone(), email.clone(), actor.clone());
        tokio::spawn(async move {
            if let Err(e) = mail_link(&deps, &mailer, &to, &actor, now).await {
                tracing::error!(error = %e, "password reset request failed");
            }
        });
    } else {
        let audit = AuditEvent::new(AuditKind::PasswordResetRequested, None, actor, now)
            .failed("throttled")
            .with_detail(serde_json::json!({ "reason": "throttled", "email": email }));
        deps.store.append_audit(&audit).await?;
    }
    Ok(Ok(email))
}

/// What a reset request does behind its answer.
async fn mail_link(deps: &Deps, mailer: &Mailer, email: &Email, actor: &Actor, now: Timestamp) -> Result<(), Error> {
    match deps.store.account_by_email(email).await? {
        Some(account) => {
            let issued = OneTimeCode::issue(CodePurpose::ResetPassword, account.id.clone(), email.clone(), now);
            let audit = AuditEvent::new(AuditKind::PasswordResetRequested, Some(&account.id), actor, now)
                .with_detail(serde_json::json!({ "email": email }));
            deps.store.insert_code(&issued.record, Some(&audit)).await?;
            let link = deps
                .settings
                .url(&format!("/reset/link?token={}", issued.link_token.expose()));
            mailer.send(email, render_mail(&templates::Reset { link: &link }));
        }
        None => {
            let audit = AuditEvent::new(AuditKind::PasswordResetRequested, None, actor, now)
                .failed("unknown_account")
                .with_detail(serde_json::json!({ "reason": "unknown_account", "email": email }));
            deps.store.append_audit(&audit).await?;
        }
    }
    Ok(())
}

/// Why a reset was not completed.
#[derive(Debug, PartialEq, Eq)]
pub enum NotReset {
    /// The new password breaks the policy (the reason, to show).
    Password(String),
    /// The link was used meanwhile.
    AlreadyUsed,
}

/// Completes a reset with the code a mailed link named (looked up and found
/// usable by the caller): the new password, the other sessions marked as
/// needing it, the account's clients told. The browser's own session
/// (`browser_session`), if it is this account's, stays as it is.
pub async fn complete(
    deps: &Deps,
    code: &OneTimeCode,
    new_password: Secret<String>,
    browser_session: Option<&TokenDigest>,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<(), NotReset>, Error> {
    if let Err(e) = password::check_policy(new_password.expose(), Some(&code.email)) {
        return Ok(Err(NotReset::Password(e.to_string())));
    }
    let new_hash = hash_password(new_password).await?;
    // The browser that resets keeps its own session, if it has one for this account.
    let keep = match browser_session {
        Some(digest) => sessions::current(deps, digest, now).await?,
        None => None,
    }
    .filter(|c| c.account.id == code.account_id)
    .map(|c| c.session.id_digest);
    let audit = AuditEvent::new(AuditKind::PasswordResetCompleted, Some(&code.account_id), actor, now)
        .with_detail(serde_json::json!({ "email": code.email }));
    let effect = CodeEffect::ResetPassword { new_hash, keep };
    // The other sessions are marked, not ended: the clients hear a
    // credential change, not a session revoked (issue 15, item 5).
    let events = [SecurityEvent::CredentialChange];
    let outbox = deps
        .signer()
        .security_events(&code.account_id, None, &events, now, now)
        .await?;
    match deps.store.redeem_code(code, &effect, now, &audit, &outbox).await? {
        Redeemed::Done => {
            deps.wake(&outbox);
            Ok(Ok(()))
        }
        Redeemed::AlreadyUsed | Redeemed::EmailTaken => Ok(Err(NotReset::AlreadyUsed)),
    }
}
