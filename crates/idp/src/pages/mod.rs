//! The account pages. One module per group of pages; each handler parses
//! the form, calls its use case in `crate::flows`, and maps the outcome to
//! a page or a redirect.
//!
//! | path | module |
//! |---|---|
//! | `/login`, `/logout` | [`login`] |
//! | `/signup`, `/verify`, `/verify/link`, `/verify/resend` | [`signup`] |
//! | `/reset`, `/reset/sent`, `/reset/link` | [`reset`] |
//! | `/settings/...`, `/email/confirm` | [`settings`] |

pub mod login;
pub mod render;
pub mod reset;
pub mod settings;
pub mod signup;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use gatehouse_core::Timestamp;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/static/style.css", get(stylesheet))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/signup", get(signup::page).post(signup::submit))
        .route("/verify", get(signup::verify_page).post(signup::verify_code))
        .route("/verify/link", get(signup::verify_link_page).post(signup::verify_link))
        .route("/verify/resend", post(signup::resend))
        .route("/reset", get(reset::page).post(reset::submit))
        .route("/reset/sent", get(reset::sent))
        .route("/reset/link", get(reset::link_page).post(reset::complete))
        .route("/settings", get(settings::page))
        .route("/settings/profile", post(settings::change_profile))
        .route("/settings/password", post(settings::change_password))
        .route("/settings/email", post(settings::change_email))
        .route("/settings/email/confirm", post(settings::confirm_email_code))
        .route(
            "/email/confirm",
            get(settings::confirm_email_link_page).post(settings::confirm_email_link),
        )
        .route("/settings/sessions/end", post(settings::end_session))
        .route("/settings/sessions/end-others", post(settings::end_other_sessions))
        .route("/settings/sites/revoke", post(settings::revoke_site))
        .route("/settings/delete", post(settings::delete_account))
}

async fn home() -> Redirect {
    Redirect::to("/settings")
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/style.css"),
    )
}

pub use crate::web::auth::current;

/// Human-readable UTC time for pages.
pub fn format_time(t: Timestamp) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t.0) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute()
        ),
        Err(_) => "unknown".to_owned(),
    }
}
