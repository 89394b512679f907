//! The outbox's two ends: building back-channel logout messages (OpenID
//! Connect Back-Channel Logout 1.0) for the flows (`crate::flows`) to write
//! with the store call that ends the sessions, and the delivery worker that POSTs due messages
//! (the kit's loop, [`gatehouse_kit::outbox`], over the store's outbox),
//! retrying with exponential backoff and jitter until they are accepted or
//! too old. A logout token lives two minutes (`exp`), so every retry sends
//! the same logout signed again as of that attempt ([`Signer::resign`]: a
//! new `jti`, `iat` then, `exp` as long after); a Security Event Token is
//! retransmitted as it was written (RFC 8935 §2: the same SET, whose `jti`
//! lets the recipient recognise it again and whose `iat` says when it was
//! issued). An admin may send a message that was given up again: it is
//! signed again then, whatever its kind.

use std::sync::Arc;
use std::time::Duration;

pub use gatehouse_core::backoff::backoff_secs;
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::{AccountId, Timestamp, TokenDigest};
use gatehouse_kit::outbox;
use gatehouse_store::{OutboxKind, OutboxMessage, Store, StoreError};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::AppState;
use crate::error::AppError;
use crate::keys::KeyRing;

/// How long a message may wait for delivery before it is dead-lettered.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// How often the worker looks for due messages when nothing wakes it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long one delivery may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// A claimed message is leased for this long (seconds): a worker that dies
/// mid-delivery leaves it to another after the lease.
pub const LEASE_SECS: i64 = 30;
/// While idle, the queue depth gauge is refreshed every this many rounds.
const GAUGE_EVERY_IDLE_ROUNDS: u32 = 20;
/// Messages taken per round.
const BATCH: i64 = 32;
/// A logout token's lifetime (`exp` after `iat`) by default
/// (`GATEHOUSE_LOGOUT_TOKEN_LIFETIME`).
pub const DEFAULT_LOGOUT_TOKEN_LIFETIME: Duration = Duration::from_secs(120);

/// The logout token's `typ` and event: one definition, shared with the
/// relier library that checks them.
pub use gatehouse_core::protocol::{BACKCHANNEL_LOGOUT_EVENT, LOGOUT_TOKEN_TYP};
// The form a logout token is POSTed as.
use gatehouse_core::protocol::FORM_CONTENT_TYPE as FORM;

#[derive(Serialize)]
struct LogoutTokenClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    sub: &'a str,
    sid: &'a str,
    events: serde_json::Value,
}

/// The body of a back-channel logout request: the token as a form field
/// (OpenID Connect Back-Channel Logout 1.0 §2.5).
fn logout_body(token: &str) -> Result<String, AppError> {
    serde_urlencoded::to_string([("logout_token", token)]).map_err(|e| AppError::Internal(e.to_string()))
}

/// A new random id (for messages and `jti`s).
fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What building logout tokens and security events needs, without a whole
/// [`AppState`]: the flows get one from [`crate::flows::Deps::signer`]
/// (the command line's too, with no server).
pub struct Signer<'a> {
    pub store: &'a dyn Store,
    pub keys: &'a KeyRing,
    /// The issuer identifier, as in `iss`.
    pub issuer: &'a str,
    /// How long a new logout token is valid (`exp` after `iat`).
    pub logout_token_lifetime: Duration,
}

impl<'a> Signer<'a> {
    /// The server's store, keys, issuer and settings.
    pub fn of(state: &'a AppState) -> Self {
        Signer {
            store: state.store.as_ref(),
            keys: &state.keys,
            issuer: state.settings.issuer_str(),
            logout_token_lifetime: state.settings.logout_token_lifetime,
        }
    }
}

impl Signer<'_> {
    /// The payload of `message` signed again as of `now`: the same claims
    /// with a new `jti`, `iat` now and, if it had one, `exp` as long after.
    /// For each retry of a logout token (it expires two minutes after it
    /// was issued), and for an admin's redelivery of any message that was
    /// given up (a day old by then: receivers refuse tokens issued that
    /// long ago, the relier library after an hour). Only what our own key
    /// signed is signed again.
    pub async fn resign(&self, message: &OutboxMessage, now: Timestamp) -> Result<String, AppError> {
        let bad = |why: &str| AppError::Internal(format!("outbox message {}: {why}", message.id));
        let token = match message.kind {
            OutboxKind::BackchannelLogout => serde_urlencoded::from_str::<Vec<(String, String)>>(&message.payload)
                .ok()
                .and_then(|form| form.into_iter().find(|(k, _)| k == "logout_token"))
                .map(|(_, token)| token)
                .ok_or_else(|| bad("no logout_token in the payload"))?,
            OutboxKind::SecurityEvent => message.payload.clone(),
        };
        let (header, mut claims) = self
            .keys
            .verify_signed_by_us(&token, self.issuer)
            .await
            .map_err(|e| bad(&e.to_string()))?;
        let alg = crate::keys::signing_alg(header.alg).ok_or_else(|| bad("an algorithm we do not sign with"))?;
        let typ = header.typ.ok_or_else(|| bad("no typ"))?;
        let claims = claims.as_object_mut().ok_or_else(|| bad("claims are not an object"))?;
        let iat = claims.get("iat").and_then(serde_json::Value::as_i64);
        let exp = claims.get("exp").and_then(serde_json::Value::as_i64);
        if let (Some(iat), Some(exp)) = (iat, exp) {
            claims.insert("exp".into(), now.0.saturating_add(exp.saturating_sub(iat)).into());
        }
        claims.insert("iat".into(), now.0.into());
        claims.insert("jti".into(), random_id().into());
        let signed = self
            .keys
            .sign(alg, &typ, &claims)
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?;
        match message.kind {
            OutboxKind::BackchannelLogout => logout_body(&signed),
            OutboxKind::SecurityEvent => Ok(signed),
        }
    }

    /// The back-channel logout messages for ending one IdP session: one per
    /// client the session served that registered a `backchannel_logout_uri`.
    /// Call before the store call that ends the session (its client links go
    /// with it), and pass the result to that call.
    pub async fn session(
        &self,
        account: &AccountId,
        session_digest: &TokenDigest,
        sid: &str,
        now: Timestamp,
    ) -> Result<Vec<OutboxMessage>, AppError> {
        let mut out = Vec::new();
        for client_id in self.store.session_clients(session_digest).await? {
            let Some(client) = self.store.client(&client_id).await? else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.as_deref() else {
                continue;
            };
            let claims = LogoutTokenClaims {
                iss: self.issuer,
                aud: client.id.as_str(),
                iat: now.0,
                exp: now.0.saturating_add(secs(self.logout_token_lifetime)),
                jti: random_id(),
                sub: account.as_str(),
                sid,
                events: serde_json::json!({ BACKCHANNEL_LOGOUT_EVENT: {} }),
            };
            let alg: SigningAlg = client.id_token_alg;
            let token = self
                .keys
                .sign(alg, LOGOUT_TOKEN_TYP, &claims)
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?;
            let body = logout_body(&token)?;
            out.push(OutboxMessage::new(
                random_id(),
                client.id.clone(),
                OutboxKind::BackchannelLogout,
                uri.to_owned(),
                body,
                FORM.to_owned(),
                now,
            ));
        }
        Ok(out)
    }

    /// The messages for ending every session of the account (a ban
    /// everywhere, the account deleted, "sign out everywhere else" minus
    /// `except`).
    pub async fn account(
        &self,
        account: &AccountId,
        except: Option<&TokenDigest>,
        now: Timestamp,
    ) -> Result<Vec<OutboxMessage>, AppError> {
        let mut out = Vec::new();
        for session in self.store.sessions_of(account).await? {
            if Some(&session.id_digest) == except {
                continue;
            }
            out.extend(self.session(account, &session.id_digest, &session.handle, now).await?);
        }
        Ok(out)
    }
}

/// The worker's settings: the kit's loop with the IdP's numbers.
fn worker_settings(state: &AppState) -> outbox::Settings {
    outbox::Settings {
        name: "outbox",
        poll_interval: POLL_INTERVAL,
        delivery_timeout: DELIVERY_TIMEOUT,
        lease_secs: LEASE_SECS,
        batch: BATCH,
        max_age_secs: secs(state.settings.outbox_max_age),
    }
}

/// Starts the delivery worker (the kit's, over [`Outbox`]); it runs until
/// the handle is aborted.
pub fn spawn_worker(state: AppState) -> JoinHandle<()> {
    let http = match outbox::http_client(DELIVERY_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "outbox: cannot build the HTTP client; no deliveries");
            return tokio::spawn(async {});
        }
    };
    let settings = worker_settings(&state);
    let queue = Arc::new(Outbox { state, http });
    outbox::spawn(queue.clone(), queue, settings)
}

/// The store's outbox as the kit's queue, and how the IdP sends a message.
struct Outbox {
    state: AppState,
    http: reqwest::Client,
}

#[async_trait::async_trait]
impl outbox::Queue for Outbox {
    type Message = OutboxMessage;
    type Error = StoreError;

    async fn claim(&self, now: Timestamp, batch: i64, lease_secs: i64) -> Result<Vec<OutboxMessage>, StoreError> {
        self.state.store.claim_outbox(now, batch, lease_secs).await
    }

    async fn delivered(&self, message: &OutboxMessage, now: Timestamp) -> Result<(), StoreError> {
        self.state.store.outbox_delivered(&message.id, now).await
    }

    async fn failed(
        &self,
        message: &OutboxMessage,
        now: Timestamp,
        next: Timestamp,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError> {
        self.state
            .store
            .outbox_failed(&message.id, now, next, error, dead)
            .await
    }

    fn about<'a>(&self, message: &'a OutboxMessage) -> outbox::About<'a> {
        outbox::About {
            id: &message.id,
            recipient: message.client_id.as_str(),
            attempts: message.attempts,
            created_at: message.created_at,
        }
    }

    fn notify(&self) -> &Notify {
        &self.state.outbox_wake
    }

    async fn batch_done(&self, _claimed: usize) {
        update_gauge(&self.state).await;
    }

    /// The queue depth gauge, now and then while idle (messages waiting
    /// for a retry are not due, so not claimed).
    async fn idle(&self, idle_rounds: u32) {
        if idle_rounds % GAUGE_EVERY_IDLE_ROUNDS == 1 {
            update_gauge(&self.state).await;
        }
    }

    fn recorded(&self, outcome: outbox::Outcome) {
        self.state.metrics.outbox_delivery(outcome.as_str());
    }
}

#[async_trait::async_trait]
impl outbox::Deliver<OutboxMessage> for Outbox {
    async fn deliver(&self, message: &OutboxMessage) -> Result<(), String> {
        let payload = attempt_payload(&self.state, message, Timestamp::now()).await;
        outbox::post(&self.http, &message.target_uri, &message.content_type, payload).await
    }
}

async fn update_gauge(state: &AppState) {
    if let Ok(summary) = state.store.outbox_summary(None).await {
        state.metrics.outbox_queue.set(summary.pending + summary.failed);
    }
    if let Ok(oldest) = state.store.outbox_oldest_waiting().await {
        let age = oldest.map_or(0, |t| Timestamp::now().0 - t.0);
        state.metrics.outbox_oldest_age.set(age.max(0));
    }
}

/// Whether this attempt at `message` sends a token signed for it rather
/// than the one written with the message: a back-channel logout token on a
/// retry, or on a first attempt made after half its lifetime (the worker
/// was down, or the message waited behind others), so that it is valid
/// when it arrives (Back-Channel Logout 1.0 §2.4: `exp` is checked; the
/// receiver also refuses a `jti` it saw, and the new one is new). A SET is
/// always sent as written: RFC 8935 §2 retransmits the same SET, and its
/// `iat` is when it was issued (reliers order events by it).
pub fn signs_again(message: &OutboxMessage, logout_token_lifetime: Duration, now: Timestamp) -> bool {
    let late = now.0.saturating_sub(message.created_at.0).saturating_mul(2) >= secs(logout_token_lifetime);
    matches!(message.kind, OutboxKind::BackchannelLogout) && (message.attempts > 0 || late)
}

/// What this attempt sends: the payload as written, or signed again (see
/// [`signs_again`]). A message that cannot be signed again (its key is no
/// longer published) is sent as written.
async fn attempt_payload(state: &AppState, message: &OutboxMessage, now: Timestamp) -> String {
    if !signs_again(message, state.settings.logout_token_lifetime, now) {
        return message.payload.clone();
    }
    match Signer::of(state).resign(message, now).await {
        Ok(payload) => payload,
        Err(e) => {
            tracing::warn!(id = %message.id, error = %e, "outbox: cannot sign the message again; sending it as written");
            message.payload.clone()
        }
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::oauth::ClientId;

    fn message(kind: OutboxKind, attempts: i64, created_at: i64) -> OutboxMessage {
        let mut m = OutboxMessage::new(
            "m".into(),
            ClientId("c".into()),
            kind,
            "http://127.0.0.1:9/x".into(),
            "payload".into(),
            FORM.into(),
            Timestamp(created_at),
        );
        m.attempts = attempts;
        m
    }

    #[test]
    fn logout_retries_are_signed_again_and_sets_never() {
        let life = DEFAULT_LOGOUT_TOKEN_LIFETIME;
        let now = Timestamp(1_000_000);
        let logout = OutboxKind::BackchannelLogout;
        let set = OutboxKind::SecurityEvent;
        // A first attempt at once: as written.
        assert!(!signs_again(&message(logout, 0, now.0), life, now));
        assert!(!signs_again(&message(logout, 0, now.0 - 59), life, now));
        // A first attempt after half the lifetime, and every retry: again.
        assert!(signs_again(&message(logout, 0, now.0 - 60), life, now));
        assert!(signs_again(&message(logout, 1, now.0), life, now));
        assert!(signs_again(&message(logout, 7, now.0 - 3600), life, now));
        // A SET: the same SET every time (RFC 8935 §2).
        assert!(!signs_again(&message(set, 0, now.0 - 3600), life, now));
        assert!(!signs_again(&message(set, 5, now.0 - 3600), life, now));
    }
}
