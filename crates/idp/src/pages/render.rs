//! The page templates (askama, checked at compile time) and turning them
//! into responses.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

/// Renders a template with a status (the kit's: a template that fails to
/// render is a 500, logged).
pub use gatehouse_kit::page::render;

pub fn error_page(status: StatusCode, heading: &str, text: &str) -> Response {
    render(status, &ErrorPage { heading, text })
}

pub fn message_page(heading: &str, text: &str, link: Option<(&str, &str)>) -> Response {
    render(StatusCode::OK, &MessagePage { heading, text, link })
}

/// Fixed notices a redirect may ask a page to show (`?notice=`). Only these
/// texts can appear: a query string never puts its own words on our pages.
pub fn notice(key: Option<&str>) -> Option<&'static str> {
    Some(match key? {
        "signed_out" => "You are signed out.",
        "verified" => "Your email address is verified. Sign in to continue.",
        "verified_in" => "Your email address is verified.",
        "password_reset" => "Your password is changed. Sign in with the new one.",
        "password_changed" => "Your password is changed. Your other sessions will ask for it.",
        "email_change_sent" => "We sent a confirmation to the new address. Enter its code below or open its link.",
        "email_changed" => "Your email address is changed.",
        "session_ended" => "That session is signed out.",
        "others_ended" => "All your other sessions are signed out.",
        "code_sent" => "We sent you a new code.",
        "deleted" => "Your account is deleted.",
        "site_disconnected" => "The site is disconnected. It will ask for your permission again.",
        "profile_saved" => "Your profile is saved. Sites see it the next time they ask.",
        _ => return None,
    })
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub heading: &'a str,
    pub text: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub heading: &'a str,
    pub text: &'a str,
    pub link: Option<(&'a str, &'a str)>,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub csrf: &'a str,
    pub email: &'a str,
    pub next: &'a str,
    pub reauth: bool,
    pub notice: Option<&'a str>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "signup.html")]
pub struct SignupPage<'a> {
    pub csrf: &'a str,
    pub email: &'a str,
    /// The optional display name, as typed.
    pub name: &'a str,
    pub next: &'a str,
    pub notice: Option<&'a str>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "verify.html")]
pub struct VerifyPage<'a> {
    pub csrf: &'a str,
    pub email: &'a str,
    pub next: &'a str,
    pub signed_in: bool,
    pub notice: Option<&'a str>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "confirm_link.html")]
pub struct ConfirmLinkPage<'a> {
    pub csrf: &'a str,
    pub heading: &'a str,
    pub text: &'a str,
    pub action: &'a str,
    pub token: &'a str,
    pub button: &'a str,
}

#[derive(Template)]
#[template(path = "reset_request.html")]
pub struct ResetRequestPage<'a> {
    pub csrf: &'a str,
    pub email: &'a str,
    pub notice: Option<&'a str>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "reset_form.html")]
pub struct ResetFormPage<'a> {
    pub csrf: &'a str,
    pub token: &'a str,
    pub email: &'a str,
    pub notice: Option<&'a str>,
    pub error: Option<String>,
}

/// One row of the sessions list.
pub struct SessionRow {
    pub handle: String,
    pub user_agent: String,
    pub ip: String,
    pub created: String,
    pub last_seen: String,
    pub current: bool,
    pub needs_reauth: bool,
}

/// One connected (consented) site.
pub struct SiteRow {
    pub client_id: String,
    pub name: String,
    pub scopes: String,
    pub since: String,
}

/// The profile form's values: the stored profile, or what was typed when
/// it was refused.
pub struct ProfileFields {
    pub name: String,
    pub given_name: String,
    pub family_name: String,
    pub preferred_username: String,
    pub locale: String,
    pub zoneinfo: String,
}

impl From<&gatehouse_core::Profile> for ProfileFields {
    fn from(p: &gatehouse_core::Profile) -> Self {
        let v = |f: &Option<String>| f.clone().unwrap_or_default();
        ProfileFields {
            name: v(&p.name),
            given_name: v(&p.given_name),
            family_name: v(&p.family_name),
            preferred_username: v(&p.preferred_username),
            locale: v(&p.locale),
            zoneinfo: v(&p.zoneinfo),
        }
    }
}

impl From<&gatehouse_core::ProfileInput> for ProfileFields {
    fn from(i: &gatehouse_core::ProfileInput) -> Self {
        ProfileFields {
            name: i.name.clone(),
            given_name: i.given_name.clone(),
            family_name: i.family_name.clone(),
            preferred_username: i.preferred_username.clone(),
            locale: i.locale.clone(),
            zoneinfo: i.zoneinfo.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage<'a> {
    pub csrf: &'a str,
    pub email: &'a str,
    pub uid: &'a str,
    pub profile: ProfileFields,
    pub sessions: Vec<SessionRow>,
    pub sites: Vec<SiteRow>,
    pub pending_email: Option<String>,
    pub notice: Option<&'a str>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub csrf: &'a str,
    pub client_name: &'a str,
    pub origin: &'a str,
    pub scopes: Vec<String>,
    pub interaction: &'a str,
}

/// `prompt=select_account`: continue as the browser's account, or sign in
/// as another.
#[derive(Template)]
#[template(path = "select_account.html")]
pub struct SelectAccountPage<'a> {
    pub csrf: &'a str,
    pub client_name: &'a str,
    /// The profile's display name, if any.
    pub name: Option<&'a str>,
    pub email: &'a str,
    pub interaction: &'a str,
    /// The login form, returning to the request.
    pub other_account: &'a str,
}

#[derive(Template)]
#[template(path = "end_session.html")]
pub struct EndSessionPage<'a> {
    pub csrf: &'a str,
    pub client_name: Option<&'a str>,
    pub client_id: &'a str,
    pub post_logout_redirect_uri: &'a str,
    pub state: &'a str,
}
