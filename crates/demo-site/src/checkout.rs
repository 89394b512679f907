//! The shop's embedded checkout: with `?checkout=frame` the offer page
//! frames Gatehouse Pay's purchase page (`display=frame`) instead of
//! linking to it, and its one script (`static/checkout.js`, served as
//! `/checkout.js`) takes the paid purchase's fulfillment URL that the
//! framed page, or the popup it falls back to, posts from the payments
//! service's origin, and goes there. The page's policy allows exactly that:
//! scripts from the shop, frames from the payments service.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_FRAME_OPTIONS};
use axum::http::{HeaderValue, Response};
use axum::response::IntoResponse;

use crate::html::esc;

/// The script of the embedded checkout.
pub const CHECKOUT_JS: &str = include_str!("../static/checkout.js");

/// Whether the offer's query asks for the embedded checkout.
pub fn wanted(query: Option<&str>) -> bool {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).any(|(k, v)| k == "checkout" && v == "frame")
}

/// The origin of the payments service's URL (`scheme://host[:port]`).
pub fn origin_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// The framed purchase page: the single-use link with `display=frame`.
pub fn frame_src(purchase_url: &str) -> Option<String> {
    let mut url = url::Url::parse(purchase_url).ok()?;
    url.query_pairs_mut().append_pair("display", "frame");
    Some(url.into())
}

/// The offer page's body with the purchase page framed.
pub fn body(summary: &str, price: &str, pay_origin: &str, frame_src: &str, order: &str, hash: &str) -> String {
    format!(
        r#"<h1>Buy {summary}</h1>
<p>Price: <span class="price" id="price">{price}</span>. Pay here with Gatehouse Pay, without leaving the shop.</p>
<div id="checkout" class="checkout" data-pay-origin="{pay_origin}"><iframe id="checkout-frame" src="{frame_src}" title="Gatehouse Pay"></iframe></div>
<p><small>Order <code>{order}</code>, contract <code id="contract-hash">{hash}</code>.</small></p>
<script src="/checkout.js"></script>"#,
        summary = esc(summary),
        price = esc(price),
        pay_origin = esc(pay_origin),
        frame_src = esc(frame_src),
        order = esc(order),
        hash = esc(hash),
    )
}

/// The offer page's policy: the shop's own, plus its script and frames of
/// the payments service; still framed by nobody.
pub fn csp(pay_origin: &str) -> String {
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; frame-src {pay_origin}; \
         base-uri 'none'; frame-ancestors 'none'"
    )
}

/// Sets [`csp`] (and `X-Frame-Options: DENY`, which the kit leaves out
/// when a handler sets its own policy) on the offer page.
pub fn set_policy<B>(response: &mut Response<B>, pay_origin: &str) {
    if let Ok(v) = HeaderValue::from_str(&csp(pay_origin)) {
        response.headers_mut().insert(CONTENT_SECURITY_POLICY, v);
        response
            .headers_mut()
            .insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
}

/// `GET /checkout.js`.
pub async fn script() -> axum::response::Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        CHECKOUT_JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_checkout_frames_the_payments_service_only() {
        assert!(wanted(Some("checkout=frame")));
        assert!(!wanted(Some("checkout=popup")) && !wanted(None));
        assert_eq!(
            origin_of("http://127.0.0.1:8081").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(
            origin_of("https://pay.example/").as_deref(),
            Some("https://pay.example")
        );
        assert_eq!(origin_of("data:text/plain,x"), None);
        assert_eq!(
            frame_src("http://127.0.0.1:8081/purchase/abc").as_deref(),
            Some("http://127.0.0.1:8081/purchase/abc?display=frame")
        );
        assert_eq!(
            csp("http://127.0.0.1:8081"),
            "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; \
             frame-src http://127.0.0.1:8081; base-uri 'none'; frame-ancestors 'none'"
        );
        let page = body(
            "A & B",
            "4.99 EUR",
            "http://p",
            "http://p/purchase/x?display=frame&a=1",
            "o",
            "h",
        );
        assert!(
            page.contains(r#"src="http://p/purchase/x?display=frame&amp;a=1""#),
            "{page}"
        );
        assert!(page.contains("Buy A &amp; B"));
    }
}
