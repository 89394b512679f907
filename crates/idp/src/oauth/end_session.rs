//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) at
//! `/end_session`: `id_token_hint` (an ID token we signed; expired ones are
//! accepted, as the spec recommends), `client_id`, `post_logout_redirect_uri`
//! (matched exactly against the client's registered ones, else never
//! followed) and `state`, by GET or form-encoded POST (spec §2). Without a
//! hint naming the current session, the person confirms on a page whose
//! form is CSRF-protected before being signed out.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use gatehouse_core::Timestamp;
use gatehouse_core::audit::{AuditEvent, AuditKind};
use gatehouse_core::oauth::{Client, ClientId};
use gatehouse_core::session::SessionSelector;

use crate::AppState;
use crate::error::AppError;
use crate::keys::KeyError;
use crate::pages::current;
use crate::pages::render::{EndSessionPage, error_page, message_page, render};
use crate::web::client::Client as Actor;
use crate::web::cookies;
use crate::web::csrf::{self, CsrfToken};

#[derive(Deserialize, Default)]
pub struct EndSessionParams {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// What a valid request asks for.
struct Request {
    client: Option<Client>,
    /// The registered URI to return to, if one was asked for.
    redirect: Option<String>,
    state: Option<String>,
    /// `sub` and `sid` of a verified hint.
    hint: Option<(String, String)>,
}

fn bad(text: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, "Cannot sign out from this link", text)
}

/// The claims of an ID token we signed, expired or not.
async fn verify_hint(state: &AppState, token: &str) -> Result<Option<Value>, AppError> {
    // The signature and issuer are checked as of the token's own expiry, so
    // an expired hint still names its session (spec §2).
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|claims| claims.get("exp").and_then(Value::as_i64));
    let Some(exp) = exp else {
        return Ok(None);
    };
    let at = Timestamp(exp.min(Timestamp::now().0));
    match state.keys.verify_at(token, state.settings.issuer_str(), at).await {
        Ok((header, claims)) if header.typ.as_deref().is_none_or(|t| t == "JWT") => Ok(Some(claims)),
        Ok(_) | Err(KeyError::Rejected(_)) => Ok(None),
        Err(e) => Err(AppError::Internal(e.to_string())),
    }
}

fn aud_names(claims: &Value, client: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == client,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(client)),
        _ => false,
    }
}

/// Checks the parameters; `Err` is the page to show (never a redirect).
async fn validate(state: &AppState, params: EndSessionParams) -> Result<Result<Request, Response>, AppError> {
    let none_if_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let hint_token = none_if_empty(params.id_token_hint);
    let mut client_id = none_if_empty(params.client_id);
    let redirect = none_if_empty(params.post_logout_redirect_uri);
    let mut hint = None;
    if let Some(token) = hint_token {
        let Some(claims) = verify_hint(state, &token).await? else {
            return Ok(Err(bad("The id_token_hint is not an ID token we issued.")));
        };
        let azp = claims
            .get("azp")
            .and_then(Value::as_str)
            .or_else(|| claims.get("aud").and_then(Value::as_str))
            .map(str::to_owned);
        match (&client_id, azp) {
            (Some(id), _) if !aud_names(&claims, id) => {
                return Ok(Err(bad("The client_id does not match the id_token_hint.")));
            }
            (None, Some(azp)) => client_id = Some(azp),
            _ => {}
        }
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
        let sid = claims.get("sid").and_then(Value::as_str).unwrap_or_default().to_owned();
        hint = Some((sub, sid));
    }
    let client = match &client_id {
        Some(id) if id.len() <= 128 => state.store.client(&ClientId(id.clone())).await?,
        _ => None,
    };
    if client_id.is_some() && client.is_none() {
        return Ok(Err(bad("The client is not known.")));
    }
    if let Some(uri) = &redirect {
        let registered = client
            .as_ref()
            .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri));
        if !registered {
            return Ok(Err(bad(
                "The post_logout_redirect_uri is not registered for this client.",
            )));
        }
    }
    Ok(Ok(Request {
        client,
        redirect,
        state: none_if_empty(params.state).filter(|s| s.len() <= 2048),
        hint,
    }))
}

/// Where the person goes once signed out.
fn finish(req: &Request, jar: CookieJar, state: &AppState) -> Response {
    let jar = jar.add(cookies::removal(&state.settings, cookies::SESSION));
    match &req.redirect {
        Some(uri) => {
            let mut url = match url::Url::parse(uri) {
                Ok(u) => u,
                Err(_) => return (jar, bad("The post_logout_redirect_uri is not a URL.")).into_response(),
            };
            if let Some(s) = &req.state {
                url.query_pairs_mut().append_pair("state", s);
            }
            (jar, Redirect::to(url.as_str())).into_response()
        }
        None => (
            jar,
            message_page(
                "Signed out",
                "You are signed out of Gatehouse.",
                Some(("/login", "Sign in")),
            ),
        )
            .into_response(),
    }
}

/// Ends the current session (if any), telling its clients.
async fn logout_current(
    state: &AppState,
    jar: &CookieJar,
    actor: &gatehouse_core::audit::Actor,
) -> Result<(), AppError> {
    let now = Timestamp::now();
    if let Some(c) = current(state, jar, now).await? {
        let audit = AuditEvent::new(AuditKind::Logout, Some(&c.account.id), actor, now)
            .with_detail(serde_json::json!({ "session": c.session.handle, "reason": "rp_initiated" }));
        let outbox = crate::outbox::logout_messages(state, &c.account.id, c.digest(), &c.session.handle, now).await?;
        state
            .store
            .end_sessions(
                &c.account.id,
                &SessionSelector::ById(c.digest().clone()),
                &audit,
                &outbox,
            )
            .await?;
        crate::outbox::wake(state, &outbox);
    }
    Ok(())
}

/// `GET /end_session`.
pub async fn end_session(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: CsrfToken,
    Actor(actor): Actor,
    Query(params): Query<EndSessionParams>,
) -> Result<Response, AppError> {
    request(&state, jar, &csrf, &actor, params).await
}

/// A relier's logout request, by GET or POST (spec §2): signs out at once
/// when the hint names the current session, else asks for confirmation.
async fn request(
    state: &AppState,
    jar: CookieJar,
    csrf: &CsrfToken,
    actor: &gatehouse_core::audit::Actor,
    params: EndSessionParams,
) -> Result<Response, AppError> {
    let req = match validate(state, params).await? {
        Ok(r) => r,
        Err(page) => return Ok(page),
    };
    let Some(c) = current(state, &jar, Timestamp::now()).await? else {
        // Nobody to sign out.
        return Ok(finish(&req, jar, state));
    };
    let hint_is_this_session = req
        .hint
        .as_ref()
        .is_some_and(|(sub, sid)| sub == c.account.id.as_str() && *sid == c.session.handle);
    if hint_is_this_session {
        logout_current(state, &jar, actor).await?;
        return Ok(finish(&req, jar, state));
    }
    Ok(render(
        StatusCode::OK,
        &EndSessionPage {
            csrf: csrf.value(),
            client_name: req.client.as_ref().map(|c| c.name.as_str()),
            client_id: req.client.as_ref().map_or("", |c| c.id.as_str()),
            post_logout_redirect_uri: req.redirect.as_deref().unwrap_or_default(),
            state: req.state.as_deref().unwrap_or_default(),
        },
    ))
}

/// The confirmation page's own form: it carries `csrf` and `decision`.
#[derive(Deserialize)]
struct Confirmation {
    csrf: Option<String>,
    decision: Option<String>,
}

/// `POST /end_session`: a relier posting its request form-encoded (spec §2
/// requires POST as well as GET; it is then handled exactly like a GET,
/// whose protection is the `id_token_hint` and the confirmation page), or
/// the confirmation page's form, which must carry the CSRF token.
pub async fn end_session_post(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: CsrfToken,
    Actor(actor): Actor,
    request: axum::extract::Request,
) -> Result<Response, AppError> {
    let bytes = csrf::form_bytes(request, &state).await?;
    let confirmation: Confirmation = csrf::parse_form(&bytes)?;
    let params: EndSessionParams = csrf::parse_form(&bytes)?;
    if confirmation.csrf.is_none() && confirmation.decision.is_none() {
        return self::request(&state, jar, &csrf, &actor, params).await;
    }
    if !csrf::matches(&csrf, &jar, confirmation.csrf.as_deref()) {
        return Err(AppError::Csrf);
    }
    let req = match validate(&state, params).await? {
        Ok(r) => r,
        Err(page) => return Ok(page),
    };
    logout_current(&state, &jar, &actor).await?;
    Ok(finish(&req, jar, &state))
}
