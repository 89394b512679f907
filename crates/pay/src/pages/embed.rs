//! Checkout in the merchant's page: the purchase pages shown in a frame on
//! the merchant's site or in a popup it opened (`?display=frame`,
//! `?display=popup`, after OpenID Connect's `display`; a full page without
//! it). Such a page ends on [`paid_page`] instead of a redirect: its
//! script (`static/checkout.js`, served as `/static/checkout.js`) hands
//! the fulfillment URL with the proof to the merchant's page by
//! `postMessage` to that URL's exact origin, and its link does the same by
//! hand. A frame without a payments session (the browser kept the cookie
//! from a third-party frame) gets [`frame_fallback_page`]: the same
//! purchase in a popup, or as a full page.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::render::render;
use crate::store::Contract;

/// The first-party script of the framed and popup pages.
pub const CHECKOUT_JS: &str = include_str!("../../static/checkout.js");

/// Where the purchase page is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// A page of its own (the default).
    Page,
    /// In a frame on the merchant's page.
    Frame,
    /// In a popup the merchant's page (or its frame) opened.
    Popup,
}

impl Display {
    /// From a request's query: `display=frame` or `display=popup`; anything
    /// else is a page of its own.
    pub fn from_query(query: Option<&str>) -> Display {
        let value = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "display")
            .map(|(_, v)| v.into_owned());
        match value.as_deref() {
            Some("frame") => Display::Frame,
            Some("popup") => Display::Popup,
            _ => Display::Page,
        }
    }

    /// The query that keeps this display on the next URL (`""` for a page).
    pub fn query(self) -> &'static str {
        match self {
            Display::Page => "",
            Display::Frame => "?display=frame",
            Display::Popup => "?display=popup",
        }
    }
}

/// Marks a response whose page loads `/static/checkout.js`: its policy
/// allows scripts from this origin (`script-src 'self'`), no others.
#[derive(Clone, Copy, Debug)]
pub struct UsesCheckoutScript;

#[derive(Template)]
#[template(path = "paid.html")]
struct PaidPage<'a> {
    merchant: &'a str,
    /// The fulfillment URL with the proof.
    url: &'a str,
    /// Its origin: the only one the result is posted to.
    origin: &'a str,
    hash: &'a str,
}

/// The end of a framed or popup purchase: the result for the merchant's
/// page (`fulfillment` is the fulfillment URL with the proof).
pub fn paid_page(contract: &Contract, merchant: &str, fulfillment: &url::Url) -> Response {
    let origin = fulfillment.origin().ascii_serialization();
    with_script(render(
        StatusCode::OK,
        &PaidPage {
            merchant,
            url: fulfillment.as_str(),
            origin: &origin,
            hash: &contract.hash,
        },
    ))
}

#[derive(Template)]
#[template(path = "frame_fallback.html")]
struct FrameFallbackPage<'a> {
    merchant: &'a str,
    hash: &'a str,
}

/// A frame without a payments session: continue in a popup or as a full
/// page, where the payments service's cookie is first-party.
pub fn frame_fallback_page(contract: &Contract, merchant: &str) -> Response {
    with_script(render(
        StatusCode::OK,
        &FrameFallbackPage {
            merchant,
            hash: &contract.hash,
        },
    ))
}

fn with_script(mut response: Response) -> Response {
    response.extensions_mut().insert(UsesCheckoutScript);
    response
}

/// `GET /static/checkout.js`.
pub async fn script() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CHECKOUT_JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_comes_from_the_query() {
        assert_eq!(Display::from_query(None), Display::Page);
        assert_eq!(Display::from_query(Some("display=frame")), Display::Frame);
        assert_eq!(Display::from_query(Some("a=1&display=popup")), Display::Popup);
        assert_eq!(Display::from_query(Some("display=touch")), Display::Page);
        assert_eq!(Display::from_query(Some("display")), Display::Page);
        for d in [Display::Page, Display::Frame, Display::Popup] {
            assert_eq!(Display::from_query(Some(d.query().trim_start_matches('?'))), d);
        }
    }
}
