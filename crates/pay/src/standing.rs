//! The payments service hears the IdP (issue 15): back-channel logouts end
//! the matching payments sessions; security events record the buyer's
//! standing (account disabled or purged: every payments session ends and
//! money stops; account enabled: it may move again; session revoked or a
//! credential change: the sessions end) and [`gate`] reads it before money moves: refused, fresh,
//! or stale (then the IdP is asked again).
//!
//! Both endpoints take what the relier library's `Receiver` verified
//! (signature by the IdP's keys, `iss`, `aud` = our client id, `iat`, a
//! `jti` not seen before); a refused token never reaches these handlers.

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use gatehouse_core::Timestamp;
use gatehouse_relier::{EventKind, LogoutToken, Receiver, SecurityEvent, SetToken};
use serde_json::json;

use crate::pages::login::require_login;
use crate::store::{PayAuditKind, PayStoreError, SessionsOf, Standing};
use crate::web::{PageError, PayState};

impl FromRef<PayState> for Receiver {
    fn from_ref(state: &PayState) -> Receiver {
        state.receiver.clone()
    }
}

/// What a security event does here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Money may not move for the buyer until the IdP says otherwise; their
    /// sessions end. The text is the reason recorded.
    Refuse(&'static str),
    /// Money may move again.
    Restore,
    /// Their sessions end; their standing is unchanged.
    EndSessions,
    /// Nothing here.
    Ignore,
}

/// The rule: which events stop money, which restore it.
pub fn effect(event: &EventKind) -> Effect {
    match event {
        EventKind::AccountDisabled { .. } => Effect::Refuse("account_disabled"),
        EventKind::AccountPurged => Effect::Refuse("account_purged"),
        EventKind::AccountEnabled => Effect::Restore,
        // A password reset or change at the IdP: the buyer's IdP sessions
        // need the password again, so a payments session (where money
        // moves) does not outlive it; its next login is one hop.
        EventKind::SessionRevoked | EventKind::CredentialChange => Effect::EndSessions,
        _ => Effect::Ignore,
    }
}

/// Back-Channel Logout 1.0: the IdP session `sid` (or every session of
/// `sub`) has ended. Answers 200 once the payments sessions are gone.
pub async fn backchannel_logout(State(state): State<PayState>, LogoutToken(event): LogoutToken) -> Response {
    let which = match (event.sid.as_deref(), event.sub.as_deref()) {
        (Some(sid), sub) => SessionsOf::IdpSession { sid, sub },
        (None, Some(sub)) => SessionsOf::Buyer(sub),
        (None, None) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let detail = json!({ "cause": "backchannel_logout", "sid": event.sid });
    match state.store.end_sessions(which, &detail, Timestamp::now()).await {
        Ok(ended) => {
            tracing::info!(ended, "payments: back-channel logout");
            (StatusCode::OK, [(CACHE_CONTROL, "no-store")]).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// RFC 8935 push delivery: records the standing the event implies. Answers
/// 202 once it is written (503 if it could not be, so the IdP retries).
pub async fn events(State(state): State<PayState>, SetToken(set): SetToken) -> Response {
    match handle_event(&state, &set).await {
        Ok(()) => (StatusCode::ACCEPTED, [(CACHE_CONTROL, "no-store")]).into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn handle_event(state: &PayState, set: &SecurityEvent) -> Result<(), PayStoreError> {
    let now = Timestamp::now();
    let detail = json!({ "event": format!("{:?}", set.event), "jti": set.jti, "iat": set.issued_at.0 });
    let store = &state.store;
    match effect(&set.event) {
        Effect::Refuse(reason) => {
            let recorded = store
                .record_standing(&set.subject, Some(reason), set.issued_at, &detail, now)
                .await?;
            tracing::info!(recorded, reason, "payments: the IdP stopped a buyer's money");
        }
        Effect::Restore => {
            let recorded = store
                .record_standing(&set.subject, None, set.issued_at, &detail, now)
                .await?;
            tracing::info!(recorded, "payments: the IdP restored a buyer's standing");
        }
        Effect::EndSessions => {
            store
                .end_sessions(SessionsOf::Buyer(&set.subject), &detail, now)
                .await?;
        }
        Effect::Ignore => {}
    }
    Ok(())
}

fn unavailable(e: &PayStoreError) -> Response {
    tracing::error!(error = %e, "payments: cannot record what the IdP sent");
    (StatusCode::SERVICE_UNAVAILABLE, [(CACHE_CONTROL, "no-store")]).into_response()
}

/// What the standing check answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The IdP vouched for the buyer recently enough.
    Allow,
    /// The IdP said no (the recorded reason): nothing moves.
    Refuse(String),
    /// Not heard for longer than the staleness allows: ask the IdP (a login
    /// there, which refuses a banned or suspended person) before money
    /// moves, so a lost event cannot let them pay.
    AskIdp,
}

/// The rule. `vouched_at`: when the IdP last vouched for the buyer in this
/// session (its login, or the narrowed token its purchase link was made
/// from, introspected); an account-enabled event vouches too.
pub fn decide(standing: Option<&Standing>, vouched_at: Timestamp, now: Timestamp, max_age: i64) -> Verdict {
    if let Some(reason) = standing.and_then(|s| s.refused.clone()) {
        return Verdict::Refuse(reason);
    }
    let heard = standing.map_or(vouched_at.0, |s| s.heard_at.0.max(vouched_at.0));
    if now.0.saturating_sub(heard) <= max_age {
        Verdict::Allow
    } else {
        Verdict::AskIdp
    }
}

fn refused_page() -> PageError {
    PageError::page(
        StatusCode::FORBIDDEN,
        "Payments refused",
        "Your account may not make payments now. Nothing was charged. \
         Contact support if you think this is a mistake.",
    )
}

/// Before money moves (`action`: pay, fund, open a purchase link): the
/// buyer's standing. `Ok(None)`: go on. `Ok(Some(r))`: answer `r` instead,
/// a trip to the IdP that comes back to `return_to`. A refusal is a 403
/// page and a `money_refused` event in the payments audit log.
pub async fn gate(
    state: &PayState,
    sub: &str,
    vouched_at: Timestamp,
    action: &str,
    return_to: &str,
) -> Result<Option<Response>, PageError> {
    let now = Timestamp::now();
    let standing = state.store.standing(sub).await?;
    match decide(standing.as_ref(), vouched_at, now, state.standing_max_age) {
        Verdict::Allow => Ok(None),
        Verdict::Refuse(reason) => {
            let detail = json!({ "action": action, "reason": reason });
            state
                .store
                .audit(PayAuditKind::MoneyRefused, Some(sub), detail, now)
                .await?;
            tracing::info!(action, %reason, "payments: refused by the buyer's standing");
            Err(refused_page())
        }
        Verdict::AskIdp => {
            tracing::info!(action, "payments: the IdP's word is stale; asking it again");
            Ok(Some(require_login(state, return_to).await?))
        }
    }
}

/// A login at the IdP just vouched for the buyer: a refusal recorded
/// before (whose account-enabled was lost) no longer holds.
pub async fn vouched(state: &PayState, sub: &str, now: Timestamp) -> Result<(), PayStoreError> {
    let refused = state.store.standing(sub).await?.is_some_and(|s| s.refused.is_some());
    if refused {
        let detail = json!({ "event": "login at the IdP" });
        state.store.record_standing(sub, None, now, &detail, now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_stop_money_and_enabling_restores_it() {
        assert_eq!(
            effect(&EventKind::AccountDisabled { reason: None }),
            Effect::Refuse("account_disabled")
        );
        assert_eq!(effect(&EventKind::AccountPurged), Effect::Refuse("account_purged"));
        assert_eq!(effect(&EventKind::AccountEnabled), Effect::Restore);
        assert_eq!(effect(&EventKind::SessionRevoked), Effect::EndSessions);
        assert_eq!(effect(&EventKind::CredentialChange), Effect::EndSessions);
        assert_eq!(effect(&EventKind::Other("urn:x".into())), Effect::Ignore);
    }

    fn standing(refused: Option<&str>, heard_at: i64) -> Standing {
        Standing {
            refused: refused.map(str::to_owned),
            event_at: Timestamp(heard_at),
            heard_at: Timestamp(heard_at),
        }
    }

    #[test]
    fn money_moves_only_on_a_fresh_word_of_the_idp() {
        let t = Timestamp;
        // Vouched for within the staleness: allowed, up to its edge.
        assert_eq!(decide(None, t(1000), t(1060), 60), Verdict::Allow);
        // Heard nothing since: ask the IdP.
        assert_eq!(decide(None, t(1000), t(1061), 60), Verdict::AskIdp);
        // An account-enabled event heard recently vouches too.
        assert_eq!(decide(Some(&standing(None, 1050)), t(900), t(1100), 60), Verdict::Allow);
        // A refusal holds however fresh the session.
        assert_eq!(
            decide(Some(&standing(Some("account_disabled"), 10)), t(1000), t(1000), 60),
            Verdict::Refuse("account_disabled".into())
        );
    }
}
