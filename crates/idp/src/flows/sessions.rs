//! IdP sessions: the browser's session looked up, started, resumed after a
//! new password entry, and ended (a logout, a session replaced by another
//! account's, a relier's RP-initiated logout, one or every other session
//! signed out from the settings page). Ending a session tells the clients it
//! served (back-channel logout), in the store call that ends it.

use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::ban::Ban;
use gatehouse_core::session::{AuthMethod, Session, SessionSelector, SessionState};
use gatehouse_core::{Account, AccountId, OpaqueToken, Timestamp, TokenDigest};
use gatehouse_store::AccountBans;

use super::{Deps, Error};

/// A session from the cookie, whatever its state, with its account.
#[derive(Clone, Debug)]
pub struct Current {
    pub session: Session,
    pub account: Account,
    /// Every ban on the account, lifted by time or not.
    pub bans: Vec<Ban>,
    pub state: SessionState,
}

impl Current {
    pub fn digest(&self) -> &TokenDigest {
        &self.session.id_digest
    }
}

/// The session whose id has `digest`, if it exists and has not expired; an
/// active one is marked seen (now and then, `Session::should_touch`).
pub async fn current(deps: &Deps, digest: &TokenDigest, now: Timestamp) -> Result<Option<Current>, Error> {
    // One read: the session, its account and the account's bans.
    let Some((session, AccountBans { account, bans })) = deps.store.session_with_account(digest).await? else {
        return Ok(None);
    };
    let session_state = session.state(now);
    if session_state == SessionState::Expired {
        return Ok(None);
    }
    if session_state == SessionState::Active && session.should_touch(now) {
        deps.store.touch_session(&session.id_digest, now).await?;
    }
    Ok(Some(Current {
        session,
        account,
        bans,
        state: session_state,
    }))
}

/// Starts a new session for the account (a password login); returns the
/// session id for the browser's cookie.
pub async fn start(deps: &Deps, account: &Account, actor: &Actor, now: Timestamp) -> Result<OpaqueToken, Error> {
    let token = OpaqueToken::generate();
    let session = Session {
        id_digest: token.digest(),
        handle: OpaqueToken::generate().expose().chars().take(22).collect(),
        account_id: account.id.clone(),
        created_at: now,
        auth_time: now,
        amr: vec![AuthMethod::Pwd],
        last_seen_at: now,
        user_agent: actor.user_agent.clone(),
        ip: actor.ip.clone(),
        needs_reauth: false,
    };
    let audit = AuditEvent::new(AuditKind::LoginSucceeded, Some(&account.id), actor, now)
        .with_detail(serde_json::json!({ "session": session.handle }));
    deps.store.create_session(&session, &audit).await?;
    Ok(token)
}

/// The same person entered the password again (a reset elsewhere, or a site
/// asking for a fresh login): the same session resumes, with a new
/// authentication time.
pub async fn reauthenticate(deps: &Deps, current: &Current, actor: &Actor, now: Timestamp) -> Result<(), Error> {
    let audit = AuditEvent::new(AuditKind::Reauthenticated, Some(&current.account.id), actor, now)
        .with_detail(serde_json::json!({ "session": current.session.handle }));
    deps.store
        .reauthenticate_session(current.digest(), now, &[AuthMethod::Pwd], &audit)
        .await?;
    Ok(())
}

/// Why a session ends, as its `Logout` audit event says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogoutReason {
    /// The person signed out (`POST /logout`).
    SignedOut,
    /// Another account signed in in the same browser.
    Replaced,
    /// A relier's RP-initiated logout (`/end_session`).
    RpInitiated,
}

impl LogoutReason {
    fn as_str(self) -> Option<&'static str> {
        match self {
            LogoutReason::SignedOut => None,
            LogoutReason::Replaced => Some("replaced"),
            LogoutReason::RpInitiated => Some("rp_initiated"),
        }
    }
}

/// Ends one session, telling the clients it served (back-channel logout).
pub async fn log_out(
    deps: &Deps,
    account: &AccountId,
    session: &Session,
    reason: LogoutReason,
    actor: &Actor,
    now: Timestamp,
) -> Result<(), Error> {
    let detail = match reason.as_str() {
        Some(reason) => serde_json::json!({ "session": session.handle, "reason": reason }),
        None => serde_json::json!({ "session": session.handle }),
    };
    let audit = AuditEvent::new(AuditKind::Logout, Some(account), actor, now).with_detail(detail);
    let outbox = deps
        .signer()
        .session(account, &session.id_digest, &session.handle, now)
        .await?;
    deps.store
        .end_sessions(
            account,
            &SessionSelector::ById(session.id_digest.clone()),
            &audit,
            &outbox,
        )
        .await?;
    deps.wake(&outbox);
    Ok(())
}

/// Why one of the account's other sessions could not be signed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndOtherError {
    /// No handle, one too long to be a handle, or the current session's own.
    #[error("not one of the other sessions")]
    NotOther,
    /// No live session of the account has that handle (any more).
    #[error("the session has already ended")]
    AlreadyEnded,
}

/// The longest handle a form may name.
const MAX_HANDLE_LEN: usize = 64;

/// Signs out one of the account's other sessions, named by its handle (the
/// settings page's list), telling the clients it served.
pub async fn end_other(
    deps: &Deps,
    current: &Current,
    handle: &str,
    actor: &Actor,
    now: Timestamp,
) -> Result<Result<(), EndOtherError>, Error> {
    if handle.is_empty() || handle.len() > MAX_HANDLE_LEN || handle == current.session.handle {
        return Ok(Err(EndOtherError::NotOther));
    }
    let account = &current.account.id;
    let audit = AuditEvent::new(AuditKind::SessionRevoked, Some(account), actor, now)
        .with_detail(serde_json::json!({ "session": handle }));
    let mut outbox = Vec::new();
    for session in deps.store.sessions_of(account).await? {
        if session.handle == handle {
            outbox = deps
                .signer()
                .session(account, &session.id_digest, &session.handle, now)
                .await?;
        }
    }
    let ended = deps
        .store
        .end_sessions(account, &SessionSelector::ByHandle(handle.to_owned()), &audit, &outbox)
        .await?;
    deps.wake(&outbox);
    Ok(if ended == 0 {
        Err(EndOtherError::AlreadyEnded)
    } else {
        Ok(())
    })
}

/// "Sign out everywhere else": ends every session of the account but the
/// current one, telling the clients each served.
pub async fn end_all_others(deps: &Deps, current: &Current, actor: &Actor, now: Timestamp) -> Result<(), Error> {
    let account = &current.account.id;
    let audit = AuditEvent::new(AuditKind::SessionRevoked, Some(account), actor, now)
        .with_detail(serde_json::json!({ "sessions": "all_others" }));
    let outbox = deps.signer().account(account, Some(current.digest()), now).await?;
    deps.store
        .end_sessions(
            account,
            &SessionSelector::AllExcept(current.digest().clone()),
            &audit,
            &outbox,
        )
        .await?;
    deps.wake(&outbox);
    Ok(())
}
