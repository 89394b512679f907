//! The HTTP side both sites share: the router, the state, cookies, the
//! home pages, and signing in and out: `/login` (off to the IdP),
//! `/callback` (back), `/logout` (RP-initiated logout at the IdP),
//! `/backchannel-logout` and `/events` (the IdP ending sessions).

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{FromRef, Query, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_relier::{
    EventKind, LoginError, LoginFault, LoginRequest, LogoutToken, Receiver, RelyingParty, SetToken,
};
use serde::Deserialize;

use crate::Kind;
use crate::catalog;
use crate::fulfill::FulfillmentKey;
use crate::html::{self, Header, esc};
use crate::pay::{Notification, PayClient};
use crate::session::{Pending, Session, Sessions, User};

/// The errors a silent login (`prompt=none`) may quietly end with.
const SILENT_ERRORS: [&str; 4] = [
    "login_required",
    "interaction_required",
    "consent_required",
    "account_selection_required",
];
/// How many merchant notifications the shop keeps to show.
pub const MAX_NOTIFICATIONS: usize = 200;

/// Everything a site's handlers share.
pub struct Inner {
    pub kind: Kind,
    pub name: String,
    /// The public URL without a trailing slash.
    pub base: String,
    pub secure_cookies: bool,
    pub rp: RelyingParty,
    pub receiver: Receiver,
    pub pay: Option<PayClient>,
    pub fulfillment_key: FulfillmentKey,
    pub sessions: Sessions,
    /// The latest merchant notifications, newest last.
    pub notifications: Mutex<VecDeque<Notification>>,
}

/// The router's state. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl FromRef<AppState> for Receiver {
    fn from_ref(state: &AppState) -> Receiver {
        state.receiver.clone()
    }
}

/// The site's routes: both sites' pages, and the shop's when it is one.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", post(logout))
        .route("/backchannel-logout", post(backchannel_logout))
        .route("/events", post(events))
        .route("/style.css", get(style));
    let gate = axum::middleware::from_fn_with_state(state.clone(), crate::recheck::gate);
    if state.kind == Kind::Shop {
        router = router
            .route("/offer/{product}", get(crate::shop::offer))
            .route("/fulfill", get(crate::shop::fulfill))
            .route("/notify", post(crate::shop::notify))
            .route("/orders", get(crate::shop::orders))
            .route("/checkout.js", get(crate::checkout::script));
    }
    router
        .layer(gate)
        .layer(axum::middleware::map_response(gatehouse_kit::headers::security_headers))
        .with_state(state)
}

async fn style() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        html::STYLE,
    )
        .into_response()
}

pub fn now() -> i64 {
    gatehouse_relier::Timestamp::now().0
}

// ---- Cookies and the current session. ----

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl Inner {
    pub fn cookie_name(&self) -> &'static str {
        self.kind.cookie_name()
    }

    /// Marks that this browser was sent for a silent login already.
    fn silent_cookie_name(&self) -> String {
        format!("{}_tried", self.cookie_name())
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, for the whole site;
    /// `max_age` `Some(0)` deletes it.
    pub fn set_cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure_cookies {
            c.push_str("; Secure");
        }
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The request's session: its cookie value and a copy of it.
    pub fn current(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, self.cookie_name())?;
        let session = self.sessions.get(&id, now())?;
        Some((id, session))
    }

    /// The request's session, or a new one (then `new` is true: set its
    /// cookie).
    pub fn current_or_new(&self, headers: &HeaderMap) -> (String, Session, bool) {
        match self.current(headers) {
            Some((id, session)) => (id, session, false),
            None => {
                let id = self.sessions.create(now());
                let session = self.sessions.get(&id, now()).unwrap_or_default();
                (id, session, true)
            }
        }
    }

    /// The page layout's header for this session.
    pub fn header<'a>(&'a self, session: Option<&'a Session>, here: &'a str) -> Header<'a> {
        let user = session.and_then(|s| {
            s.user
                .as_ref()
                .map(|u| (u.email.as_deref().unwrap_or(u.subject.as_str()), s.csrf.as_str()))
        });
        Header {
            site: &self.name,
            shop: self.kind == Kind::Shop,
            user,
            here,
        }
    }

    /// A whole page with `status`.
    pub fn page(&self, status: StatusCode, session: Option<&Session>, here: &str, title: &str, body: &str) -> Response {
        let html = html::page(&self.header(session, here), title, body);
        (status, Html(html)).into_response()
    }

    /// An error page.
    pub fn error_page(&self, status: StatusCode, session: Option<&Session>, title: &str, text: &str) -> Response {
        let body = format!(
            r#"<h1>{}</h1><p class="error">{}</p><p><a href="/">Back to {}</a></p>"#,
            esc(title),
            esc(text),
            esc(&self.name)
        );
        self.page(status, session, "/", title, &body)
    }
}

/// A 303 to `to`, with cookies to set.
pub fn see_other(to: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, location);
    }
    for c in cookies {
        response.headers_mut().append(SET_COOKIE, c);
    }
    response
}

/// `next` if it is a path on this site, else `/` (the relier library's
/// rule: no open redirect).
fn local_path(next: Option<&str>) -> String {
    next.and_then(gatehouse_relier::local_return_path)
        .unwrap_or("/")
        .to_owned()
}

// ---- Home. ----

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let current = state.current(&headers);
    let signed_in = current.as_ref().is_some_and(|(_, s)| s.user.is_some());
    // First visit: try a silent login, so that a person signed in at the
    // IdP arrives signed in here. Once per browser (a cookie says so), so
    // that a refusal, or a logout, does not bring them straight back.
    if !signed_in && cookie(&headers, &state.silent_cookie_name()).is_none() {
        return start_login(&state, &headers, "/", true);
    }
    let session = current.as_ref().map(|(_, s)| s);
    let body = match state.kind {
        Kind::Shop => shop_home(&state, session),
        Kind::Forum => forum_home(&state, session),
    };
    state.page(StatusCode::OK, session, "/", &state.name, &body)
}

fn shop_home(state: &Inner, session: Option<&Session>) -> String {
    let mut items = String::new();
    for p in &catalog::PRODUCTS {
        items.push_str(&format!(
            r#"<li id="product-{id}"><strong>{summary}</strong> <span class="price">{price}</span>
<a class="button" href="/offer/{id}">Buy</a></li>
"#,
            id = p.id,
            summary = esc(p.summary),
            price = catalog::price(p.price, catalog::CURRENCY),
        ));
    }
    let signed_in = session.is_some_and(|s| s.user.is_some());
    let hint = if signed_in {
        "Press <strong>Buy</strong>: you pay with Gatehouse Pay, without logging in again."
    } else {
        "Log in with your Gatehouse account, then press <strong>Buy</strong>: you pay with Gatehouse Pay, \
         without logging in again."
    };
    format!(
        r#"<h1>{}</h1>
<p>Digital goods, paid with Gatehouse Pay. {hint}</p>
<ul class="items">
{items}</ul>"#,
        esc(&state.name)
    )
}

fn forum_home(state: &Inner, session: Option<&Session>) -> String {
    let mut threads = String::new();
    for t in &catalog::THREADS {
        threads.push_str(&format!(
            "<li><strong>{}</strong> <span>by {}, {} replies</span></li>\n",
            esc(t.title),
            esc(t.author),
            t.replies
        ));
    }
    let intro = match session.and_then(|s| s.user.as_ref()) {
        Some(_) => "You are signed in through Gatehouse: no password asked here.",
        None => "Log in with your Gatehouse account to join the discussion.",
    };
    format!(
        r#"<h1>{}</h1>
<p>{intro}</p>
<ul class="items threads">
{threads}</ul>"#,
        esc(&state.name)
    )
}

// ---- Signing in. ----

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    let next = local_path(q.next.as_deref());
    start_login(&state, &headers, &next, false)
}

/// Sends the browser to the IdP, keeping the pending login in the session
/// (a new one if needed).
pub fn start_login(state: &Inner, headers: &HeaderMap, next: &str, silent: bool) -> Response {
    start(state, headers, next, silent, false)
}

/// [`start_login`]; `recheck`: it checks a marked session (a silent
/// refusal goes on to an interactive login, and a silent login that cannot
/// start is an error page, not a quiet return to a page that would check
/// again).
pub fn start(state: &Inner, headers: &HeaderMap, next: &str, silent: bool, recheck: bool) -> Response {
    let request = LoginRequest {
        scope: state.kind.scope().to_owned(),
        prompt: silent.then(|| "none".to_owned()),
        ..LoginRequest::default()
    };
    let (url, pending) = match state.rp.start(&request) {
        Ok(started) => started,
        Err(e) if silent && !recheck => {
            // A silent attempt that cannot even start is given up quietly.
            tracing::warn!(error = %e, "cannot start a silent login");
            return see_other(next, vec![state.set_cookie(&state.silent_cookie_name(), "1", None)]);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start a login");
            return state.error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Cannot log in now",
                "The identity provider cannot be used now. Try again later.",
            );
        }
    };
    let (id, _, new) = state.current_or_new(headers);
    state.sessions.update(&id, |s| {
        s.add_pending(
            Pending {
                login: pending,
                next: next.to_owned(),
                silent,
                recheck,
            },
            now(),
        )
    });
    let mut cookies = Vec::new();
    if new {
        cookies.push(state.set_cookie(state.cookie_name(), &id, None));
    }
    if silent {
        cookies.push(state.set_cookie(&state.silent_cookie_name(), "1", None));
    }
    see_other(url.as_str(), cookies)
}

async fn callback(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let returned_state = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned());
    let current = state.current(&headers);
    let pending = match (&current, returned_state) {
        (Some((id, _)), Some(s)) => state
            .sessions
            .update(id, |session| session.pending.remove(&s))
            .flatten(),
        _ => None,
    };
    let (Some((id, session)), Some(pending)) = (current, pending) else {
        return state.error_page(
            StatusCode::BAD_REQUEST,
            None,
            "Login failed",
            "This login was not started in this browser, or it took too long. Please log in again.",
        );
    };
    match state.rp.finish(&pending.login, &query).await {
        Ok(login) => {
            let user = User {
                subject: login.subject,
                sid: login.sid,
                email: login.email,
                id_token: login.id_token,
                tokens: login.tokens,
                signed_in_at: now(),
            };
            tracing::info!(site = %state.name, sub = %user.subject, "signed in");
            let new_id = state.sessions.sign_in(&id, user, now());
            see_other(
                &pending.next,
                vec![state.set_cookie(state.cookie_name(), &new_id, None)],
            )
        }
        Err(e) if pending.recheck => {
            // The IdP wants the password again (or something else went
            // wrong): ask it with a login the person sees, back to the same
            // place.
            tracing::info!(site = %state.name, error = %e, "a marked session needs a login");
            start(&state, &headers, &pending.next, false, false)
        }
        Err(LoginError::Denied { error, .. }) if pending.silent && SILENT_ERRORS.contains(&error.as_str()) => {
            see_other(&pending.next, vec![])
        }
        Err(e) if pending.silent => {
            // Whatever went wrong, a silent attempt stays silent.
            tracing::warn!(site = %state.name, error = %e, "a silent login failed");
            see_other(&pending.next, vec![])
        }
        Err(e) => {
            let fault = e.fault();
            let text = match (&e, fault) {
                (LoginError::Denied { error, description }, LoginFault::Denied) => match description {
                    Some(d) => format!("The identity provider answered {error}: {d}"),
                    None => format!("The identity provider answered {error}."),
                },
                (_, LoginFault::Callback) => {
                    tracing::info!(site = %state.name, error = %e, "a callback that does not complete its login");
                    "This answer does not complete the login started in this browser (it was used already, \
                     or it was altered). Please log in again."
                        .to_owned()
                }
                _ => {
                    tracing::warn!(site = %state.name, error = %e, "a login failed");
                    "The login could not be completed. Please try again.".to_owned()
                }
            };
            state.error_page(fault.status(), Some(&session), "Login failed", &text)
        }
    }
}

// ---- Signing out. ----

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// Ends the local session, then the IdP's (RP-initiated logout), which
/// logs the person out of the other sites by back-channel logout.
async fn logout(State(state): State<AppState>, headers: HeaderMap, form: axum::Form<CsrfForm>) -> Response {
    let tried = state.set_cookie(&state.silent_cookie_name(), "1", None);
    let Some((id, session)) = state.current(&headers) else {
        return see_other("/", vec![tried]);
    };
    if !crate::shop::same_token(&form.csrf, &session.csrf) {
        return state.error_page(
            StatusCode::FORBIDDEN,
            Some(&session),
            "Not logged out",
            "The form has expired. Please try again.",
        );
    }
    state.sessions.remove(&id);
    let clear = state.set_cookie(state.cookie_name(), "", Some(0));
    let home = format!("{}/", state.base);
    let to = session
        .user
        .and_then(|u| state.rp.end_session_url(&u.id_token, Some(&home), None))
        .map_or_else(|| "/".to_owned(), |u| u.to_string());
    see_other(&to, vec![clear, tried])
}

/// Back-Channel Logout 1.0: the IdP session `sid` (or every session of
/// `sub`) has ended.
async fn backchannel_logout(State(state): State<AppState>, LogoutToken(event): LogoutToken) -> Response {
    let ended = state.sessions.end(event.sub.as_deref(), event.sid.as_deref());
    tracing::info!(site = %state.name, ended, "back-channel logout");
    (StatusCode::OK, [(CACHE_CONTROL, "no-store")]).into_response()
}

/// RFC 8935 push delivery of Security Event Tokens: an account disabled
/// (a ban) or purged, or its sessions revoked, ends its sessions here; a
/// credential change marks them to be checked again (`crate::recheck`).
async fn events(State(state): State<AppState>, SetToken(set): SetToken) -> StatusCode {
    let ends = matches!(
        set.event,
        EventKind::AccountDisabled { .. } | EventKind::AccountPurged | EventKind::SessionRevoked
    );
    if ends {
        let ended = state.sessions.end(Some(&set.subject), None);
        tracing::info!(site = %state.name, event = ?set.event, ended, "security event");
    } else if set.event == EventKind::CredentialChange {
        // A password reset marks, it does not destroy: the person keeps
        // their place here and passes the IdP again before the next page.
        let marked = state.sessions.mark_for_recheck(&set.subject);
        tracing::info!(site = %state.name, marked, "credential change: sessions to check again");
    } else {
        tracing::debug!(site = %state.name, event = ?set.event, "security event ignored");
    }
    StatusCode::ACCEPTED
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Signer, body, get, send};
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::{Value, json};

    fn user(sub: &str, sid: &str) -> User {
        User {
            subject: sub.into(),
            sid: Some(sid.into()),
            email: Some(format!("{sub}@example.com")),
            id_token: String::new(),
            tokens: gatehouse_relier::Tokens {
                access_token: String::new(),
                refresh_token: None,
                expires_at: 0,
                scope: None,
            },
            signed_in_at: 0,
        }
    }

    fn signed_in(state: &AppState, sub: &str, sid: &str) -> String {
        let id = state.sessions.create(now());
        state.sessions.sign_in(&id, user(sub, sid), now())
    }

    fn alive(state: &AppState, id: &str) -> bool {
        state.sessions.get(id, now()).is_some_and(|s| s.user.is_some())
    }

    async fn post(state: &AppState, path: &str, content_type: &str, body: String) -> StatusCode {
        send(
            state,
            Request::post(path)
                .header("content-type", content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .status()
    }

    fn claims(idp: &Signer, extra: Value) -> Value {
        let mut c = json!({ "iss": idp.base, "aud": "shop", "iat": now(), "jti": random_jti() });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn random_jti() -> String {
        crate::session::random_token()
    }

    #[tokio::test]
    async fn the_home_page_works_when_a_silent_login_cannot_start() {
        // The stand-in IdP publishes no authorization endpoint.
        let idp = Signer::start().await;
        let state = crate::testkit::state(Kind::Forum, &idp, &idp);
        let r = get(&state, "/", None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(crate::testkit::header(&r, "location"), "/");
        let tried = crate::testkit::header(&r, "set-cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(tried, "forum_session_tried=1");
        let r = get(&state, "/", Some(&tried)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(body(r).await.contains("Not signed in"));
    }

    #[tokio::test]
    async fn back_channel_logout_ends_the_sessions_it_names() {
        let idp = Signer::start().await;
        let state = crate::testkit::state(Kind::Forum, &idp, &idp);
        let a1 = signed_in(&state, "alice", "s1");
        let a2 = signed_in(&state, "alice", "s2");
        let b = signed_in(&state, "bob", "s3");
        let logout = |extra: Value| {
            let mut c = claims(&idp, extra);
            c["events"] = json!({ gatehouse_relier::BACKCHANNEL_LOGOUT_EVENT: {} });
            let token = idp.sign("logout+jwt", &c);
            format!("logout_token={token}")
        };
        let form = "application/x-www-form-urlencoded";

        // The page says who is signed in.
        let page = body(get(&state, "/", Some(&format!("forum_session={a1}"))).await).await;
        assert!(
            page.contains("Signed in as <strong id=\"who-email\">alice@example.com</strong>"),
            "{page}"
        );

        assert_eq!(
            post(
                &state,
                "/backchannel-logout",
                form,
                logout(json!({ "sid": "s1", "sub": "alice" }))
            )
            .await,
            StatusCode::OK
        );
        assert!(!alive(&state, &a1) && alive(&state, &a2) && alive(&state, &b));
        assert_eq!(
            post(&state, "/backchannel-logout", form, logout(json!({ "sub": "alice" }))).await,
            StatusCode::OK
        );
        assert!(!alive(&state, &a2) && alive(&state, &b));
        // A forged token changes nothing.
        let forged = Signer::start().await;
        let mut c = claims(&idp, json!({ "sub": "bob" }));
        c["events"] = json!({ gatehouse_relier::BACKCHANNEL_LOGOUT_EVENT: {} });
        let token = forged.sign("logout+jwt", &c);
        assert_eq!(
            post(&state, "/backchannel-logout", form, format!("logout_token={token}")).await,
            StatusCode::BAD_REQUEST
        );
        assert!(alive(&state, &b));
    }

    #[tokio::test]
    async fn an_account_disabled_event_ends_every_session_of_the_account() {
        let idp = Signer::start().await;
        let state = crate::testkit::state(Kind::Shop, &idp, &idp);
        let a1 = signed_in(&state, "alice", "s1");
        let a2 = signed_in(&state, "alice", "s2");
        let b = signed_in(&state, "bob", "s3");
        let set = |sub: &str, event: &str| {
            let c = claims(
                &idp,
                json!({
                    "sub_id": { "format": "iss_sub", "iss": idp.base, "sub": sub },
                    "events": { event: {} },
                }),
            );
            idp.sign("secevent+jwt", &c)
        };
        let set_type = gatehouse_relier::SET_CONTENT_TYPE;
        let credential_change = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
        let disabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";

        // A password change elsewhere does not sign anyone out here.
        assert_eq!(
            post(&state, "/events", set_type, set("alice", credential_change)).await,
            StatusCode::ACCEPTED
        );
        assert!(alive(&state, &a1) && alive(&state, &a2));
        // It marks them to be checked with the IdP again; bob's is not.
        let marked = |id: &str| state.sessions.get(id, now()).is_some_and(|s| s.recheck);
        assert!(marked(&a1) && marked(&a2) && !marked(&b));
        assert_eq!(
            post(&state, "/events", set_type, set("alice", disabled)).await,
            StatusCode::ACCEPTED
        );
        assert!(!alive(&state, &a1) && !alive(&state, &a2) && alive(&state, &b));
        assert_eq!(
            post(&state, "/events", "application/json", set("bob", disabled)).await,
            StatusCode::BAD_REQUEST
        );
        assert!(alive(&state, &b));
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/offer/x?y=1")), "/offer/x?y=1");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/\t/evil.example",
            "/%2F/evil.example",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("shop_session_tried=1; shop_session=abc"),
        );
        assert_eq!(cookie(&headers, "shop_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "shop_session_tried").as_deref(), Some("1"));
        assert_eq!(cookie(&headers, "forum_session"), None);
    }
}
