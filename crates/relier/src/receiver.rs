//! Receiving what the issuer pushes to a relier: back-channel logout tokens
//! (OpenID Connect Back-Channel Logout 1.0 §2.6) and Security Event Tokens
//! (RFC 8417, delivered per RFC 8935).
//!
//! A [`Receiver`] checks the signature with the issuer's keys (the same
//! cached JWKS as a [`Verifier`], fetched again for an unknown kid), `iss`,
//! `aud` (this relier's client id), `iat` within a window, and that the
//! `jti` was not seen before (an in-memory, bounded replay cache). The axum
//! extractors [`LogoutToken`] and [`SetToken`] give the site's handler the
//! typed event; a refused request answers 400 with the body the
//! specification asks for.
//!
//! The issuer retries a delivery that failed. A logout token lives for
//! minutes (`exp`), so each retry carries the same logout signed again (a
//! new `jti`, a fresh `iat`): the window for logout tokens is short. A SET
//! is retransmitted as it is (RFC 8935 §2: the same SET, the same `jti`
//! and `iat`) for as long as the issuer retries (a day by default), so the
//! window for SETs covers that, and a SET received already is acknowledged
//! again (202) without reaching the handler a second time: "the SET
//! Recipient MUST respond as it would if the SET had not been previously
//! received".

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use serde_json::{Map, Value};

use gatehouse_core::Timestamp;

use crate::dpop::{ReplayCache, Seen};
use crate::verifier::raw_header;
use crate::{ACCEPTED_ALGS, Error, MAX_TOKEN_LEN, RejectReason, Verifier, VerifyError};

/// The logout event, the SET content type and the event type URIs, as
/// the issuer writes them (one definition in core, re-exported here).
pub use gatehouse_core::protocol::{
    ACCOUNT_DISABLED, ACCOUNT_ENABLED, ACCOUNT_PURGED, BACKCHANNEL_LOGOUT_EVENT, CREDENTIAL_CHANGE, IDENTIFIER_CHANGED,
    SESSION_REVOKED, SET_CONTENT_TYPE,
};
use gatehouse_core::protocol::{FORM_CONTENT_TYPE, LOGOUT_TOKEN_TYP, SET_TYP};

/// Default: how old (by `iat`) a logout token may be and still be
/// accepted. The issuer signs each retry afresh; an older one is refused
/// (`invalid_request`, "too old").
pub const DEFAULT_RECEIVER_MAX_AGE: Duration = Duration::from_secs(3600);
/// Default: how old (by `iat`) a SET may be and still be accepted. The
/// issuer retransmits the same SET for a day (`GATEHOUSE_OUTBOX_MAX_AGE`);
/// this covers it, with an hour to spare. Its `jti` is remembered as long.
pub const DEFAULT_RECEIVER_SET_MAX_AGE: Duration = Duration::from_secs(25 * 3600);
/// Default: how many `jti`s the replay cache remembers at most.
pub const DEFAULT_RECEIVER_REPLAY_CAPACITY: usize = 100_000;

/// Bodies larger than this are refused unread.
const MAX_BODY: usize = 16 * 1024;

/// A verified back-channel logout: end the local sessions of `sid`, or of
/// `sub` when there is no `sid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutEvent {
    pub sub: Option<String>,
    pub sid: Option<String>,
}

/// What happened, by event type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// RISC account-disabled, with the `reason` if given.
    AccountDisabled {
        reason: Option<String>,
    },
    AccountEnabled,
    AccountPurged,
    /// RISC identifier-changed, with the `new-value` if given.
    IdentifierChanged {
        new_value: Option<String>,
    },
    /// CAEP credential-change.
    CredentialChange,
    /// CAEP session-revoked.
    SessionRevoked,
    /// An event type this library does not know, by its URI.
    Other(String),
}

/// A verified Security Event Token.
#[derive(Clone, Debug, PartialEq)]
pub struct SecurityEvent {
    pub event: EventKind,
    /// The account: `sub_id.sub` (RFC 9493 `iss_sub`) or the top-level `sub`.
    pub subject: String,
    pub jti: String,
    pub issued_at: Timestamp,
    /// The event's own fields, as sent.
    pub fields: Value,
}

/// Why a pushed token was refused. [`ReceiveError::err`] is its RFC 8935
/// §2.4 error code.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// Malformed, the wrong type, too old, replayed, a claim missing.
    #[error("{0}")]
    InvalidRequest(String),
    /// Signed with a key the issuer does not publish, with an algorithm we
    /// do not accept, or the signature does not verify.
    #[error("{0}")]
    InvalidKey(String),
    #[error("issued by another issuer")]
    InvalidIssuer,
    #[error("not meant for this relier")]
    InvalidAudience,
    /// The replay cache is full of `jti`s not yet expired: answer 503.
    #[error("too many tokens to remember now")]
    Busy,
    /// A SET whose `jti` was accepted already: a retransmission (RFC 8935
    /// §2), acknowledged again (202) but not to be handled twice.
    #[error("this SET was received already")]
    AlreadyReceived,
    /// The issuer's keys could not be had: answer 503, the issuer retries.
    #[error("cannot check the token now: {0}")]
    Unavailable(Error),
}

impl ReceiveError {
    /// The RFC 8935 §2.4 `err` code.
    pub fn err(&self) -> &'static str {
        match self {
            ReceiveError::InvalidKey(_) => "invalid_key",
            ReceiveError::InvalidIssuer => "invalid_issuer",
            ReceiveError::InvalidAudience => "invalid_audience",
            _ => "invalid_request",
        }
    }

    fn is_unavailable(&self) -> bool {
        matches!(self, ReceiveError::Busy | ReceiveError::Unavailable(_))
    }

    fn request(text: &str) -> Self {
        ReceiveError::InvalidRequest(text.to_owned())
    }
}

/// Checks pushed tokens from one issuer meant for one client. Cheap to
/// clone; clones share the keys and the replay cache.
#[derive(Clone)]
pub struct Receiver {
    verifier: Verifier,
    client_id: String,
    leeway: i64,
    /// For logout tokens, by `iat`, in seconds.
    max_age: i64,
    /// For SETs, by `iat`, in seconds.
    set_max_age: i64,
    replay: std::sync::Arc<ReplayCache>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("issuer", &self.verifier.issuer().issuer())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// A receiver for `client_id` that shares `verifier`'s cached JWKS (and
    /// so its issuer).
    pub fn new(verifier: &Verifier, client_id: impl Into<String>) -> Self {
        Self::with_settings(
            verifier,
            client_id,
            DEFAULT_RECEIVER_MAX_AGE,
            DEFAULT_RECEIVER_REPLAY_CAPACITY,
        )
    }

    /// As [`Receiver::new`], with how old a logout token may be (by `iat`)
    /// and how many `jti`s to remember at most (when full of unexpired
    /// ones, tokens are refused with 503 rather than risk a replay). The
    /// clock leeway is the verifier's.
    pub fn with_settings(
        verifier: &Verifier,
        client_id: impl Into<String>,
        max_age: Duration,
        replay_capacity: usize,
    ) -> Self {
        Receiver {
            verifier: verifier.clone(),
            client_id: client_id.into(),
            leeway: verifier.inner().leeway,
            max_age: seconds(max_age),
            set_max_age: seconds(DEFAULT_RECEIVER_SET_MAX_AGE),
            replay: std::sync::Arc::new(ReplayCache::new(replay_capacity)),
        }
    }

    /// How old (by `iat`) a SET may be and still be accepted (default
    /// [`DEFAULT_RECEIVER_SET_MAX_AGE`]): at least as long as the issuer
    /// retries a delivery.
    pub fn with_set_max_age(mut self, max_age: Duration) -> Self {
        self.set_max_age = seconds(max_age);
        self
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Verifies a logout token now. See [`Receiver::verify_logout_token_at`].
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutEvent, ReceiveError> {
        self.verify_logout_token_at(token, Timestamp::now()).await
    }

    /// Verifies a logout token per Back-Channel Logout 1.0 §2.6: `typ`
    /// `logout+jwt` if present, the signature, `iss`, `aud`, `iat` within
    /// the window, `exp` if present, `events` holding the back-channel
    /// logout member, `sid` and/or `sub`, no `nonce`, and a `jti` not seen
    /// before.
    pub async fn verify_logout_token_at(&self, token: &str, now: Timestamp) -> Result<LogoutEvent, ReceiveError> {
        let claims = self
            .verify_jwt(token, &[LOGOUT_TOKEN_TYP], false, self.max_age, now)
            .await?;
        let events = claims
            .get("events")
            .and_then(Value::as_object)
            .ok_or_else(|| ReceiveError::request("no events claim"))?;
        if !events.get(BACKCHANNEL_LOGOUT_EVENT).is_some_and(Value::is_object) {
            return Err(ReceiveError::request("not a back-channel logout event"));
        }
        if claims.get("nonce").is_some() {
            return Err(ReceiveError::request("a logout token has no nonce"));
        }
        let sub = optional_string(&claims, "sub")?;
        let sid = optional_string(&claims, "sid")?;
        if sub.is_none() && sid.is_none() {
            return Err(ReceiveError::request("neither sub nor sid"));
        }
        match self.remember(&claims, self.max_age, now)? {
            Seen::New => Ok(LogoutEvent { sub, sid }),
            _ => Err(ReceiveError::request("jti seen before")),
        }
    }

    /// Verifies a Security Event Token now. See [`Receiver::verify_set_at`].
    pub async fn verify_set(&self, token: &str) -> Result<SecurityEvent, ReceiveError> {
        self.verify_set_at(token, Timestamp::now()).await
    }

    /// Verifies a SET per RFC 8417 and RFC 8935: `typ` `secevent+jwt`, the
    /// signature, `iss`, `aud`, `iat` within the window, exactly one event,
    /// a subject, and a `jti` not seen before: a SET accepted already is
    /// [`ReceiveError::AlreadyReceived`] (a retransmission, to acknowledge
    /// again without handling it twice).
    pub async fn verify_set_at(&self, token: &str, now: Timestamp) -> Result<SecurityEvent, ReceiveError> {
        let claims = self.verify_jwt(token, &[SET_TYP], true, self.set_max_age, now).await?;
        let events = claims
            .get("events")
            .and_then(Value::as_object)
            .ok_or_else(|| ReceiveError::request("no events claim"))?;
        let mut members = events.iter();
        let (Some((uri, fields)), None) = (members.next(), members.next()) else {
            return Err(ReceiveError::request("expected exactly one event"));
        };
        if !fields.is_object() {
            return Err(ReceiveError::request("the event is not an object"));
        }
        let subject = claims
            .get("sub_id")
            .and_then(|s| s.get("sub"))
            .or_else(|| claims.get("sub"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ReceiveError::request("no subject"))?
            .to_owned();
        let event = event_kind(uri, fields);
        if self.remember(&claims, self.set_max_age, now)? != Seen::New {
            return Err(ReceiveError::AlreadyReceived);
        }
        let jti = claims.get("jti").and_then(Value::as_str).unwrap_or_default().to_owned();
        let issued_at = Timestamp(claims.get("iat").and_then(Value::as_i64).unwrap_or_default());
        Ok(SecurityEvent {
            event,
            subject,
            jti,
            issued_at,
            fields: fields.clone(),
        })
    }

    /// Checks the header, signature, `iss`, `aud`, `iat`, `exp` and that a
    /// `jti` is there; returns the claims.
    async fn verify_jwt(
        &self,
        token: &str,
        typs: &[&str],
        typ_required: bool,
        max_age: i64,
        now: Timestamp,
    ) -> Result<Map<String, Value>, ReceiveError> {
        let claims = issuer_signed(&self.verifier, token, typs, typ_required).await?;
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.client_id,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&self.client_id)),
            _ => false,
        };
        if !audience_ok {
            return Err(ReceiveError::InvalidAudience);
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or_else(|| ReceiveError::request("no iat"))?;
        if iat > now.0.saturating_add(self.leeway) {
            return Err(ReceiveError::request("issued in the future"));
        }
        if iat < now.0.saturating_sub(max_age) {
            return Err(ReceiveError::request("too old"));
        }
        if let Some(exp) = claims.get("exp") {
            let exp = exp.as_i64().ok_or_else(|| ReceiveError::request("unreadable exp"))?;
            if now.0 > exp.saturating_add(self.leeway) {
                return Err(ReceiveError::request("expired"));
            }
        }
        if claims.get("jti").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(ReceiveError::request("no jti"));
        }
        Ok(claims)
    }

    /// Remembers the `jti` until the token could no longer be accepted
    /// (`max_age` after its `iat`); says whether it was seen before. Call
    /// last, once every other check passed.
    fn remember(&self, claims: &Map<String, Value>, max_age: i64, now: Timestamp) -> Result<Seen, ReceiveError> {
        let jti = claims.get("jti").and_then(Value::as_str).unwrap_or_default();
        let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or_default();
        let until = Timestamp(iat.saturating_add(max_age).saturating_add(self.leeway));
        match self.replay.check(self.verifier.issuer().issuer(), jti, until, now) {
            Seen::Full => Err(ReceiveError::Busy),
            seen => Ok(seen),
        }
    }
}

/// A JWT signed by the issuer: the header (`typ` one of `typs`, no `crit`,
/// an accepted `alg` equal to the key's), the signature by the key its
/// `kid` names, and `iss`. Returns the claims; the caller checks the rest.
pub(crate) async fn issuer_signed(
    verifier: &Verifier,
    token: &str,
    typs: &[&str],
    typ_required: bool,
) -> Result<Map<String, Value>, ReceiveError> {
    if token.len() > MAX_TOKEN_LEN || token.split('.').count() != 3 {
        return Err(ReceiveError::request("not a JWT"));
    }
    let raw_alg = raw_header(token)
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| ReceiveError::request("unreadable header"))?;
    if !ACCEPTED_ALGS.contains(&raw_alg.as_str()) {
        return Err(ReceiveError::InvalidKey(
            "the signature algorithm is not accepted".into(),
        ));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| ReceiveError::request("unreadable header"))?;
    if header.crit.is_some() {
        return Err(ReceiveError::request("unknown critical header"));
    }
    match header.typ.as_deref() {
        Some(typ) => {
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if !typs.iter().any(|t| typ.eq_ignore_ascii_case(t)) {
                return Err(ReceiveError::request("wrong token type"));
            }
        }
        None if typ_required => return Err(ReceiveError::request("no token type")),
        None => {}
    }
    let kid = header
        .kid
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ReceiveError::InvalidKey("no kid".into()))?;
    let key = verifier.key(kid).await.map_err(|e| match e {
        VerifyError::Unavailable(e) => ReceiveError::Unavailable(e),
        VerifyError::Rejected(r) => ReceiveError::InvalidKey(r.description()),
    })?;
    if header.alg != key.alg {
        return Err(ReceiveError::InvalidKey(
            RejectReason::UnsupportedAlgorithm.description(),
        ));
    }
    let mut validation = Validation::new(key.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation).map_err(|e| match e.kind() {
        JwtErrorKind::InvalidSignature => ReceiveError::InvalidKey(RejectReason::BadSignature.description()),
        JwtErrorKind::InvalidAlgorithm => ReceiveError::InvalidKey(RejectReason::UnsupportedAlgorithm.description()),
        _ => ReceiveError::request("unreadable claims"),
    })?;
    let Value::Object(claims) = data.claims else {
        return Err(ReceiveError::request("unreadable claims"));
    };
    if claims.get("iss").and_then(Value::as_str) != Some(verifier.issuer().issuer()) {
        return Err(ReceiveError::InvalidIssuer);
    }
    Ok(claims)
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, ReceiveError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(ReceiveError::InvalidRequest(format!("{name} is not a string"))),
    }
}

fn event_kind(uri: &str, fields: &Value) -> EventKind {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    match uri {
        ACCOUNT_DISABLED => EventKind::AccountDisabled { reason: text("reason") },
        ACCOUNT_ENABLED => EventKind::AccountEnabled,
        ACCOUNT_PURGED => EventKind::AccountPurged,
        IDENTIFIER_CHANGED => EventKind::IdentifierChanged {
            new_value: text("new-value"),
        },
        CREDENTIAL_CHANGE => EventKind::CredentialChange,
        SESSION_REVOKED => EventKind::SessionRevoked,
        other => EventKind::Other(other.to_owned()),
    }
}

/// The axum extractor for a back-channel logout endpoint: reads the form
/// body `logout_token=...` and verifies it with the [`Receiver`] in the
/// state. Answer 200 once the sessions are ended; a refused token answers
/// 400 `{"error":"invalid_request"}` (Back-Channel Logout 1.0 §2.8).
#[derive(Clone, Debug)]
pub struct LogoutToken(pub LogoutEvent);

/// A refused logout request.
#[derive(Debug)]
pub struct LogoutRejection(pub ReceiveError);

impl IntoResponse for LogoutRejection {
    fn into_response(self) -> Response {
        let status = if self.0.is_unavailable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_REQUEST
        };
        let body = serde_json::json!({ "error": "invalid_request", "error_description": self.0.to_string() });
        (status, [(CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
    }
}

impl<S> FromRequest<S> for LogoutToken
where
    S: Send + Sync,
    Receiver: FromRef<S>,
{
    type Rejection = LogoutRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let receiver = Receiver::from_ref(state);
        let form = content_type(&req).eq_ignore_ascii_case(FORM_CONTENT_TYPE);
        let body = read_body(req).await.map_err(LogoutRejection)?;
        if !form {
            return Err(LogoutRejection(ReceiveError::request("expected a form")));
        }
        let token = url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| LogoutRejection(ReceiveError::request("no logout_token")))?;
        receiver
            .verify_logout_token(&token)
            .await
            .map(LogoutToken)
            .map_err(LogoutRejection)
    }
}

/// The axum extractor for a push delivery endpoint (RFC 8935): reads an
/// `application/secevent+jwt` body and verifies it with the [`Receiver`]
/// in the state. Answer 202 once the event is handled; a refused SET
/// answers 400 `{"err": ..., "description": ...}` (RFC 8935 §2.3); a SET
/// received already answers 202 again without reaching the handler
/// (RFC 8935 §2: a retransmission is answered as the first delivery was).
#[derive(Clone, Debug)]
pub struct SetToken(pub SecurityEvent);

/// A refused SET delivery.
#[derive(Debug)]
pub struct SetRejection(pub ReceiveError);

impl IntoResponse for SetRejection {
    fn into_response(self) -> Response {
        if matches!(self.0, ReceiveError::AlreadyReceived) {
            return (StatusCode::ACCEPTED, [(CACHE_CONTROL, "no-store")]).into_response();
        }
        let status = if self.0.is_unavailable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_REQUEST
        };
        let body = serde_json::json!({ "err": self.0.err(), "description": self.0.to_string() });
        (status, [(CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
    }
}

impl<S> FromRequest<S> for SetToken
where
    S: Send + Sync,
    Receiver: FromRef<S>,
{
    type Rejection = SetRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let receiver = Receiver::from_ref(state);
        let set = content_type(&req).eq_ignore_ascii_case(SET_CONTENT_TYPE);
        let body = read_body(req).await.map_err(SetRejection)?;
        if !set {
            return Err(SetRejection(ReceiveError::request("expected application/secevent+jwt")));
        }
        let token = std::str::from_utf8(&body).map_err(|_| SetRejection(ReceiveError::request("not text")))?;
        receiver
            .verify_set(token.trim())
            .await
            .map(SetToken)
            .map_err(SetRejection)
    }
}

/// The media type, without parameters.
fn content_type(req: &Request) -> String {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

async fn read_body(req: Request) -> Result<Bytes, ReceiveError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ReceiveError::request("body too large or unreadable"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_types_are_typed_with_their_fields() {
        assert_eq!(
            event_kind(ACCOUNT_DISABLED, &json!({ "reason": "spam" })),
            EventKind::AccountDisabled {
                reason: Some("spam".into())
            }
        );
        assert_eq!(
            event_kind(ACCOUNT_DISABLED, &json!({})),
            EventKind::AccountDisabled { reason: None }
        );
        assert_eq!(event_kind(ACCOUNT_ENABLED, &json!({})), EventKind::AccountEnabled);
        assert_eq!(event_kind(ACCOUNT_PURGED, &json!({})), EventKind::AccountPurged);
        assert_eq!(
            event_kind(IDENTIFIER_CHANGED, &json!({ "new-value": "b@example.com" })),
            EventKind::IdentifierChanged {
                new_value: Some("b@example.com".into())
            }
        );
        assert_eq!(event_kind(CREDENTIAL_CHANGE, &json!({})), EventKind::CredentialChange);
        assert_eq!(event_kind(SESSION_REVOKED, &json!({})), EventKind::SessionRevoked);
        assert_eq!(event_kind("urn:x", &json!({})), EventKind::Other("urn:x".into()));
    }

    #[test]
    fn errors_have_their_rfc_8935_codes() {
        assert_eq!(ReceiveError::request("x").err(), "invalid_request");
        assert_eq!(ReceiveError::InvalidKey("x".into()).err(), "invalid_key");
        assert_eq!(ReceiveError::InvalidIssuer.err(), "invalid_issuer");
        assert_eq!(ReceiveError::InvalidAudience.err(), "invalid_audience");
        assert!(ReceiveError::Busy.is_unavailable());
        assert!(!ReceiveError::InvalidAudience.is_unavailable());
    }

    #[test]
    fn sub_and_sid_must_be_strings() {
        let claims = json!({ "sub": "u", "sid": 3 });
        let claims = claims.as_object().cloned().unwrap_or_default();
        assert_eq!(optional_string(&claims, "sub").ok().flatten().as_deref(), Some("u"));
        assert!(optional_string(&claims, "sid").is_err());
        assert!(matches!(optional_string(&claims, "nothing"), Ok(None)));
    }
}
