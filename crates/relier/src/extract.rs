//! The HTTP side: reading the credentials of a request (`Authorization:
//! Bearer` or `Authorization: DPoP` with a `DPoP` proof), the axum
//! extractor [`Authenticated`], and [`AuthError`], which answers a refused
//! request the way RFC 6750 §3 and RFC 9449 §7.1 say: 401 with a
//! `WWW-Authenticate` challenge, 400 for a malformed request, 403
//! `insufficient_scope`, or 503 when the issuer's keys cannot be had.

use std::fmt;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts, OriginalUri};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::Scopes;

use crate::dpop::{self, ALGS, ProofFailure};
use crate::{RejectReason, VerifiedToken, Verifier, VerifyError};

/// The scheme the client presented its token with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    DPoP,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::DPoP => "DPoP",
        }
    }
}

/// A request whose access token verified (and, for a DPoP-bound token,
/// whose proof did): who is calling. Take it as a handler argument; the
/// [`Verifier`] comes from the router's state (`Verifier: FromRef<S>`).
/// `Option<Authenticated>` is `None` when the request has no credentials at
/// all, and still refuses bad ones.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// `sub`: the user; for client credentials, the relier itself.
    pub user: String,
    /// `client_id`: the relier (client) the token was issued to.
    pub relier: String,
    pub scopes: Scopes,
    /// How the token came.
    pub scheme: Scheme,
    /// Everything about the token.
    pub token: VerifiedToken,
    challenge: Challenge,
}

impl Authenticated {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// `Ok` if the token carries `scope`; else the 403 `insufficient_scope`
    /// answer naming it (RFC 6750 §3.1), ready to return with `?`.
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(AuthError {
                kind: AuthErrorKind::InsufficientScope(scope.to_owned()),
                scheme: Some(self.scheme),
                challenge: self.challenge.clone(),
            })
        }
    }
}

impl<S> FromRequestParts<S> for Authenticated
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Verifier::from_ref(state).authenticate(parts).await
    }
}

impl<S> OptionalFromRequestParts<S> for Authenticated
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        match Verifier::from_ref(state).authenticate(parts).await {
            Ok(auth) => Ok(Some(auth)),
            Err(AuthError {
                kind: AuthErrorKind::Missing,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What the challenges say besides the error: the realm, and whether DPoP
/// is accepted here.
#[derive(Clone, Debug, Default)]
struct Challenge {
    realm: Option<String>,
    dpop: bool,
}

/// Why a request was refused, as its answer: [`IntoResponse`] makes the
/// status, the `WWW-Authenticate` challenges and a small JSON body
/// (`error`, `error_description`).
#[derive(Clone, Debug)]
pub struct AuthError {
    kind: AuthErrorKind,
    /// The scheme the client used, if any.
    scheme: Option<Scheme>,
    challenge: Challenge,
}

/// What [`AuthError`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No credentials, or a scheme we do not take: 401 with bare
    /// challenges (RFC 6750 §3.1: no error code).
    Missing,
    /// 400 `invalid_request`: e.g. two `Authorization` headers, or an empty
    /// token.
    InvalidRequest(&'static str),
    /// 401 `invalid_token`.
    InvalidToken(RejectReason),
    /// 403 `insufficient_scope`, naming the scope needed.
    InsufficientScope(String),
    /// 401 `invalid_dpop_proof` (RFC 9449 §7.1), with the reason.
    InvalidDpopProof(String),
    /// 503: the issuer's keys or introspection cannot be had now, or the
    /// DPoP replay cache is full. Not the client's fault.
    Unavailable,
}

impl AuthError {
    pub fn kind(&self) -> &AuthErrorKind {
        &self.kind
    }

    pub fn status(&self) -> StatusCode {
        match self.kind {
            AuthErrorKind::Missing | AuthErrorKind::InvalidToken(_) | AuthErrorKind::InvalidDpopProof(_) => {
                StatusCode::UNAUTHORIZED
            }
            AuthErrorKind::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthErrorKind::InsufficientScope(_) => StatusCode::FORBIDDEN,
            AuthErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The OAuth error code, if the answer has one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind {
            AuthErrorKind::Missing | AuthErrorKind::Unavailable => None,
            AuthErrorKind::InvalidRequest(_) => Some("invalid_request"),
            AuthErrorKind::InvalidToken(_) => Some("invalid_token"),
            AuthErrorKind::InsufficientScope(_) => Some("insufficient_scope"),
            AuthErrorKind::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
        }
    }

    fn description(&self) -> Option<String> {
        match &self.kind {
            AuthErrorKind::Missing => None,
            AuthErrorKind::InvalidRequest(why) => Some((*why).to_owned()),
            AuthErrorKind::InvalidToken(reason) => Some(reason.description()),
            AuthErrorKind::InsufficientScope(scope) => Some(format!("the access token lacks the scope {scope}")),
            AuthErrorKind::InvalidDpopProof(why) => Some(why.clone()),
            AuthErrorKind::Unavailable => Some("the access token cannot be checked now; try again".to_owned()),
        }
    }

    /// The `WWW-Authenticate` values, one challenge each.
    fn challenges(&self) -> Vec<String> {
        let realm = self
            .challenge
            .realm
            .as_deref()
            .map(|r| format!("realm=\"{}\"", quoted(r)));
        let algs = format!("algs=\"{}\"", ALGS.join(" "));
        let bare = |scheme: Scheme| {
            let mut params: Vec<String> = realm.iter().cloned().collect();
            if scheme == Scheme::DPoP {
                params.push(algs.clone());
            }
            challenge(scheme, &params)
        };
        let error_scheme = match self.kind {
            AuthErrorKind::Unavailable => return Vec::new(),
            AuthErrorKind::Missing => None,
            AuthErrorKind::InvalidDpopProof(_) => Some(Scheme::DPoP),
            // The client's scheme; a DPoP-bound token sent as a bearer token
            // is answered in DPoP, the scheme it needs.
            AuthErrorKind::InvalidToken(RejectReason::DpopBound) if self.challenge.dpop => Some(Scheme::DPoP),
            _ => Some(self.scheme.unwrap_or(Scheme::Bearer)),
        };
        let Some(scheme) = error_scheme else {
            let mut all = vec![bare(Scheme::Bearer)];
            if self.challenge.dpop {
                all.push(bare(Scheme::DPoP));
            }
            return all;
        };
        let mut params: Vec<String> = realm.iter().cloned().collect();
        if let Some(code) = self.error_code() {
            params.push(format!("error=\"{code}\""));
        }
        if let Some(description) = self.description() {
            params.push(format!("error_description=\"{}\"", description_text(&description)));
        }
        if let AuthErrorKind::InsufficientScope(scope) = &self.kind {
            params.push(format!("scope=\"{}\"", quoted(scope)));
        }
        if scheme == Scheme::DPoP {
            params.push(algs.clone());
        }
        let mut all = vec![challenge(scheme, &params)];
        // The other scheme, bare, so the client knows it is there too.
        match scheme {
            Scheme::Bearer if self.challenge.dpop => all.push(bare(Scheme::DPoP)),
            Scheme::DPoP => all.push(bare(Scheme::Bearer)),
            Scheme::Bearer => {}
        }
        all
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.error_code(), self.description()) {
            (Some(code), Some(description)) => write!(f, "{code}: {description}"),
            (_, Some(description)) => f.write_str(&description),
            _ => f.write_str("no access token"),
        }
    }
}

impl std::error::Error for AuthError {}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        for value in self.challenges() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(WWW_AUTHENTICATE, value);
            }
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.kind == AuthErrorKind::Unavailable {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        let body = match (self.error_code(), self.description()) {
            (Some(code), description) => {
                serde_json::json!({ "error": code, "error_description": description }).to_string()
            }
            (None, Some(description)) => serde_json::json!({ "error_description": description }).to_string(),
            (None, None) => String::new(),
        };
        if body.is_empty() {
            return (self.status(), headers).into_response();
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        (self.status(), headers, body).into_response()
    }
}

fn challenge(scheme: Scheme, params: &[String]) -> String {
    if params.is_empty() {
        scheme.as_str().to_owned()
    } else {
        format!("{} {}", scheme.as_str(), params.join(", "))
    }
}

/// A quoted-string's content (RFC 9110 §5.6.4): visible ASCII and spaces,
/// `"` and `\` escaped; anything else dropped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out
}

/// `error_description` (RFC 6750 §3): only %x20-21 / %x23-5B / %x5D-7E, so
/// `"` and `\` become `'` and `/`, anything else is dropped.
fn description_text(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '"' => Some('\''),
            '\\' => Some('/'),
            ' '..='~' => Some(c),
            _ => None,
        })
        .collect()
}

/// The credentials of a request.
struct Credentials<'a> {
    scheme: Scheme,
    token: &'a str,
}

/// Reads `Authorization`. `Ok(None)`: no credentials we take.
fn credentials(headers: &HeaderMap, dpop: bool) -> Result<Option<Credentials<'_>>, AuthErrorKind> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthErrorKind::InvalidRequest("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthErrorKind::InvalidRequest("malformed Authorization header"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case("dpop") {
        Scheme::DPoP
    } else {
        return Ok(None);
    };
    let token = rest.trim();
    // token68 (RFC 9110 §11.2).
    let token68 = !token.is_empty()
        && token
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'));
    if !token68 {
        return Err(AuthErrorKind::InvalidRequest("malformed access token"));
    }
    Ok(Some(Credentials { scheme, token }))
}

impl Verifier {
    /// Authenticates a request: its `Authorization` header, the token, and
    /// for a DPoP-bound token the `DPoP` proof (method, the public URL
    /// configured with [`public_url`](crate::VerifierBuilder::public_url)
    /// plus the request's path, `ath`, key, replay). What
    /// [`Authenticated`] runs; usable from other frameworks built on the
    /// `http` crate.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Authenticated, AuthError> {
        self.authenticate_at(parts, Timestamp::now()).await
    }

    /// [`Verifier::authenticate`] as of `now`.
    pub async fn authenticate_at(&self, parts: &Parts, now: Timestamp) -> Result<Authenticated, AuthError> {
        let inner = self.inner();
        let challenge = Challenge {
            realm: inner.realm.clone(),
            dpop: inner.public_url.is_some(),
        };
        let fail = |kind: AuthErrorKind, scheme: Option<Scheme>| AuthError {
            kind,
            scheme,
            challenge: challenge.clone(),
        };
        let credentials = credentials(&parts.headers, challenge.dpop).map_err(|kind| fail(kind, None))?;
        let Some(Credentials { scheme, token }) = credentials else {
            return Err(fail(AuthErrorKind::Missing, None));
        };
        let verified = match self.verify_at(token, now).await {
            Ok(v) => v,
            Err(VerifyError::Rejected(reason)) => return Err(fail(AuthErrorKind::InvalidToken(reason), Some(scheme))),
            Err(VerifyError::Unavailable(e)) => {
                tracing::warn!(error = %e, "cannot check an access token");
                return Err(fail(AuthErrorKind::Unavailable, Some(scheme)));
            }
        };
        match (scheme, &verified.jkt) {
            (Scheme::Bearer, None) => {}
            (Scheme::Bearer, Some(_)) => {
                return Err(fail(AuthErrorKind::InvalidToken(RejectReason::DpopBound), Some(scheme)));
            }
            (Scheme::DPoP, None) => {
                return Err(fail(
                    AuthErrorKind::InvalidToken(RejectReason::NotDpopBound),
                    Some(scheme),
                ));
            }
            (Scheme::DPoP, Some(jkt)) => {
                let url = self.request_url(parts).ok_or_else(|| {
                    fail(
                        AuthErrorKind::InvalidRequest("the request path cannot be read"),
                        Some(scheme),
                    )
                })?;
                let mut proofs = parts.headers.get_all("dpop").iter();
                let proof = match (proofs.next(), proofs.next()) {
                    (Some(proof), None) => proof.to_str().map_err(|_| {
                        fail(
                            AuthErrorKind::InvalidDpopProof("the DPoP proof is malformed".into()),
                            Some(scheme),
                        )
                    })?,
                    (None, _) => {
                        return Err(fail(
                            AuthErrorKind::InvalidDpopProof("a DPoP proof is required".into()),
                            Some(scheme),
                        ));
                    }
                    (Some(_), Some(_)) => {
                        return Err(fail(
                            AuthErrorKind::InvalidDpopProof("send one DPoP proof, not several".into()),
                            Some(scheme),
                        ));
                    }
                };
                let method = parts.method.as_str();
                dpop::check_request(&inner.replay, proof, method, &url, token, jkt, now).map_err(|f| match f {
                    ProofFailure::Invalid(why) => fail(AuthErrorKind::InvalidDpopProof(why), Some(scheme)),
                    ProofFailure::KeyMismatch => {
                        fail(AuthErrorKind::InvalidToken(RejectReason::DpopKeyMismatch), Some(scheme))
                    }
                    ProofFailure::Full => {
                        tracing::warn!("the DPoP replay cache is full; refusing DPoP requests until proofs expire");
                        fail(AuthErrorKind::Unavailable, Some(scheme))
                    }
                })?;
            }
        }
        Ok(Authenticated {
            user: verified.subject.clone(),
            relier: verified.client_id.clone(),
            scopes: verified.scopes.clone(),
            scheme,
            token: verified,
            challenge,
        })
    }

    /// The URL the client called, for `htu`: the configured public URL with
    /// the request's path (as the router first saw it) appended.
    fn request_url(&self, parts: &Parts) -> Option<String> {
        let base = self.inner().public_url.as_ref()?;
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.path(), |o| o.0.path());
        let mut url = base.clone();
        let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        Some(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: AuthErrorKind, scheme: Option<Scheme>, dpop: bool) -> AuthError {
        AuthError {
            kind,
            scheme,
            challenge: Challenge {
                realm: Some("api \"one\"".into()),
                dpop,
            },
        }
    }

    #[test]
    fn no_token_gets_bare_challenges() {
        let e = error(AuthErrorKind::Missing, None, false);
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(e.challenges(), [r#"Bearer realm="api \"one\"""#]);
        let e = error(AuthErrorKind::Missing, None, true);
        assert_eq!(
            e.challenges(),
            [
                r#"Bearer realm="api \"one\"""#,
                r#"DPoP realm="api \"one\"", algs="ES256 EdDSA Ed25519 RS256""#
            ]
        );
        let mut e = error(AuthErrorKind::Missing, None, false);
        e.challenge.realm = None;
        assert_eq!(e.challenges(), ["Bearer"]);
    }

    #[test]
    fn an_invalid_token_is_answered_in_the_scheme_used() {
        let e = error(
            AuthErrorKind::InvalidToken(RejectReason::Expired),
            Some(Scheme::Bearer),
            false,
        );
        assert_eq!(
            e.challenges(),
            [r#"Bearer realm="api \"one\"", error="invalid_token", error_description="the access token has expired""#]
        );
        let e = error(
            AuthErrorKind::InvalidToken(RejectReason::Expired),
            Some(Scheme::DPoP),
            true,
        );
        let all = e.challenges();
        assert!(all[0].starts_with("DPoP ") && all[0].contains(r#"error="invalid_token""#));
        assert!(all[0].ends_with(r#"algs="ES256 EdDSA Ed25519 RS256""#));
        assert_eq!(all[1], r#"Bearer realm="api \"one\"""#);
        // A DPoP-bound token sent as a bearer token: told to use DPoP.
        let e = error(
            AuthErrorKind::InvalidToken(RejectReason::DpopBound),
            Some(Scheme::Bearer),
            true,
        );
        assert!(e.challenges()[0].starts_with("DPoP "));
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let e = error(
            AuthErrorKind::InsufficientScope("reports:read".into()),
            Some(Scheme::Bearer),
            false,
        );
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let c = &e.challenges()[0];
        assert!(
            c.contains(r#"error="insufficient_scope""#) && c.contains(r#"scope="reports:read""#),
            "{c}"
        );
    }

    #[test]
    fn a_bad_proof_is_a_dpop_challenge() {
        let e = error(
            AuthErrorKind::InvalidDpopProof("the DPoP proof's htu does not \"match\"".into()),
            Some(Scheme::DPoP),
            true,
        );
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        let c = &e.challenges()[0];
        assert!(
            c.starts_with("DPoP ") && c.contains(r#"error="invalid_dpop_proof""#),
            "{c}"
        );
        assert!(c.contains("does not 'match'"), "{c}");
    }

    #[test]
    fn unavailable_has_no_challenge() {
        let e = error(AuthErrorKind::Unavailable, Some(Scheme::Bearer), true);
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.challenges().is_empty());
        let r = e.into_response();
        assert_eq!(r.headers().get(RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"5"[..]));
    }

    #[test]
    fn reading_the_authorization_header() {
        let read = |values: &[&str], dpop: bool| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(AUTHORIZATION, HeaderValue::from_str(v).expect("value"));
            }
            credentials(&h, dpop).map(|c| c.map(|c| (c.scheme, c.token.to_owned())))
        };
        assert_eq!(read(&[], true), Ok(None));
        assert_eq!(
            read(&["Bearer abc.def-g_h"], true),
            Ok(Some((Scheme::Bearer, "abc.def-g_h".into())))
        );
        assert_eq!(
            read(&["bearer  abc=="], true),
            Ok(Some((Scheme::Bearer, "abc==".into())))
        );
        assert_eq!(read(&["DPoP abc"], true), Ok(Some((Scheme::DPoP, "abc".into()))));
        // DPoP off: a scheme we do not take, like Basic.
        assert_eq!(read(&["DPoP abc"], false), Ok(None));
        assert_eq!(read(&["Basic dXNlcjpwdw=="], true), Ok(None));
        assert!(matches!(read(&["Bearer"], true), Err(AuthErrorKind::InvalidRequest(_))));
        assert!(matches!(
            read(&["Bearer a b"], true),
            Err(AuthErrorKind::InvalidRequest(_))
        ));
        assert!(matches!(
            read(&["Bearer a\"b"], true),
            Err(AuthErrorKind::InvalidRequest(_))
        ));
        assert!(matches!(
            read(&["Bearer a", "Bearer b"], true),
            Err(AuthErrorKind::InvalidRequest(_))
        ));
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted("a\"b\\c\u{e9}\n"), "a\\\"b\\\\c");
        assert_eq!(description_text("a\"b\\c\u{e9}"), "a'b/c");
    }
}
