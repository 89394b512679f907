//! A password reset marks, it does not destroy: a site session whose
//! user's credentials changed at the IdP (CAEP credential-change, heard at
//! `/events`) stays, with its place (the page, what it proved paid), but
//! before its next page the browser is sent to the IdP again. First with
//! `prompt=none`: the browser that reset the password is still signed in
//! there and comes straight back; another device's IdP session needs the
//! password again, the IdP answers `login_required`, and the site goes on
//! to a login the person sees (`web::callback`), which resumes that IdP
//! session and returns here to the same page, signed in again.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::web::{AppState, start};

/// The paths a marked session still reaches as it is: the login itself
/// and its return, logging out, what the IdP and the payments service
/// post, and static files.
const PASS: [&str; 8] = [
    "/login",
    "/callback",
    "/logout",
    "/backchannel-logout",
    "/events",
    "/notify",
    "/style.css",
    "/checkout.js",
];

/// Sends a marked session to the IdP before anything else; the rest pass.
pub async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if PASS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let marked = state
        .current(request.headers())
        .is_some_and(|(_, s)| s.recheck && s.user.is_some());
    if !marked {
        return next.run(request).await;
    }
    let here = return_to(request.method(), request.uri().path_and_query().map(|p| p.as_str()));
    start(&state, request.headers(), &here, true, true)
}

/// Where the check returns: the page asked for (a GET's local path), else
/// the home page (a form's answer cannot be replayed).
fn return_to(method: &Method, path_and_query: Option<&str>) -> String {
    let page = matches!(*method, Method::GET | Method::HEAD);
    path_and_query
        .filter(|_| page)
        .and_then(gatehouse_relier::local_return_path)
        .unwrap_or("/")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_returns_to_the_page_or_home() {
        assert_eq!(return_to(&Method::GET, Some("/offer/x?y=1")), "/offer/x?y=1");
        assert_eq!(return_to(&Method::POST, Some("/offer/x")), "/");
        assert_eq!(return_to(&Method::GET, Some("//evil.example/")), "/");
        assert_eq!(return_to(&Method::GET, None), "/");
    }
}
