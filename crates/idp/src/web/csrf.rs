//! CSRF protection for every form: a random token in an `HttpOnly` cookie,
//! repeated in a hidden field of each form (double submit). The middleware
//! makes sure every page has a token; [`CsrfForm`] checks it before the
//! handler runs, so a forged post changes nothing.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use gatehouse_core::OpaqueToken;

use crate::AppState;
use crate::error::AppError;
use crate::web::cookies;

/// The CSRF token of this request, to put in forms.
#[derive(Clone, Debug)]
pub struct CsrfToken(pub OpaqueToken);

impl CsrfToken {
    pub fn value(&self) -> &str {
        self.0.expose()
    }
}

/// Middleware: reads the token cookie, or makes a new token and sets the
/// cookie on the response.
pub async fn ensure_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let jar = CookieJar::from_headers(req.headers());
    let existing = jar.get(cookies::CSRF).and_then(|c| OpaqueToken::parse(c.value()));
    let (token, fresh) = match existing {
        Some(t) => (t, false),
        None => (OpaqueToken::generate(), true),
    };
    req.extensions_mut().insert(CsrfToken(token.clone()));
    let response = next.run(req).await;
    if fresh {
        let jar = CookieJar::new().add(cookies::csrf(&state.settings, token.expose()));
        (jar, response).into_response()
    } else {
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CsrfToken>()
            .cloned()
            .ok_or_else(|| AppError::internal("CSRF middleware not installed"))
    }
}

#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// A form that carries nothing but its CSRF token (sign out, resend...).
#[derive(Deserialize)]
pub struct NoFields {}

/// Whether `given` (a form's `csrf` field) is this request's token, and the
/// token came from the cookie: the check [`CsrfForm`] makes, for a handler
/// that reads its form itself.
pub fn matches(expected: &CsrfToken, jar: &CookieJar, given: Option<&str>) -> bool {
    jar.get(cookies::CSRF).is_some() && given.is_some_and(|given| expected.0.ct_eq(given))
}

/// A URL-encoded form whose `csrf` field matched the cookie.
pub struct CsrfForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CsrfForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let expected = CsrfToken::from_request_parts(&mut parts, state).await?;
        let jar = CookieJar::from_headers(&parts.headers);
        let bytes = form_bytes(Request::from_parts(parts, body), state).await?;
        let field: CsrfField = parse_form(&bytes)?;
        if !matches(&expected, &jar, field.csrf.as_deref()) {
            return Err(AppError::Csrf);
        }
        Ok(CsrfForm(parse_form(&bytes)?))
    }
}

/// A form's body, within the body limit (413 past it).
pub async fn form_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, AppError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            AppError::TooLarge
        } else {
            AppError::BadRequest("The form could not be read.")
        }
    })
}

/// A URL-encoded form's fields as `T`.
pub fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    serde_urlencoded::from_bytes(bytes).map_err(|_| AppError::BadRequest("The form could not be read."))
}
