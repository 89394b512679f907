//! Our cookies and their flags: `HttpOnly`, `SameSite=Lax`, `Path=/`, and
//! `Secure` unless the issuer is plain http on loopback.

use axum_extra::extract::cookie::{Cookie, SameSite};
use time::Duration;

use crate::Settings;

pub const SESSION: &str = "gh_session";
pub const CSRF: &str = "gh_csrf";

fn build(settings: &Settings, name: &'static str, value: String, max_age: Duration) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(settings.secure_cookies)
        .max_age(max_age)
        .build()
}

pub fn session(settings: &Settings, value: &str) -> Cookie<'static> {
    build(
        settings,
        SESSION,
        value.to_owned(),
        Duration::seconds(gatehouse_core::session::ABSOLUTE_TIMEOUT),
    )
}

pub fn csrf(settings: &Settings, value: &str) -> Cookie<'static> {
    build(settings, CSRF, value.to_owned(), Duration::days(365))
}

/// A cookie that makes the browser forget `name`.
pub fn removal(settings: &Settings, name: &'static str) -> Cookie<'static> {
    build(settings, name, String::new(), Duration::ZERO)
}
