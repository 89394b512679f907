//! The security headers every response of the IdP, the payments service and
//! the demo sites carries, set in one place.
//!
//! A response that has no `Content-Security-Policy` gets the strictest one
//! the pages work under (no scripts, styles and images from our origin
//! only, no framing: [`CSP_NO_FRAMING`]) and `X-Frame-Options: DENY`. A
//! handler that set its own policy (a purchase page, framed by its
//! merchants: [`csp_framed_by`]) keeps it, without `X-Frame-Options`, which
//! cannot name the origins that may frame. `X-Content-Type-Options:
//! nosniff`, `Referrer-Policy: no-referrer` and `Cache-Control: no-store`
//! are set unless the handler set its own.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::Response;

/// The policy of pages that nobody may frame.
pub const CSP_NO_FRAMING: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The policy of [`CSP_NO_FRAMING`] with `frame-ancestors` set to
/// `ancestors` (a space-separated list of origins, or `'none'`). The caller
/// checks the origins: a `;` in one would add a directive.
pub fn csp_framed_by(ancestors: &str) -> String {
    format!("default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors {ancestors}")
}

/// Sets the security headers on `headers` (see the module's doc).
pub fn set_security_headers(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        set_if_absent(headers, header::CONTENT_SECURITY_POLICY, CSP_NO_FRAMING);
        set_if_absent(headers, header::X_FRAME_OPTIONS, "DENY");
    }
    set_if_absent(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_if_absent(headers, header::REFERRER_POLICY, "no-referrer");
    set_if_absent(headers, header::CACHE_CONTROL, "no-store");
}

fn set_if_absent(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    if !headers.contains_key(&name) {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// [`set_security_headers`] as a response mapper:
/// `router.layer(axum::middleware::map_response(security_headers))`.
pub async fn security_headers(mut response: Response) -> Response {
    set_security_headers(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(headers: &HeaderMap) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn a_plain_response_gets_every_header() {
        let mut headers = HeaderMap::new();
        set_security_headers(&mut headers);
        let expected: Vec<(String, String)> = [
            ("cache-control", "no-store"),
            ("content-security-policy", CSP_NO_FRAMING),
            ("referrer-policy", "no-referrer"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(headers_of(&headers), expected);
    }

    #[test]
    fn a_framed_page_keeps_its_policy_and_its_cache_control() {
        let mut headers = HeaderMap::new();
        let csp = csp_framed_by("https://shop.example");
        assert_eq!(
            csp,
            "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors https://shop.example"
        );
        assert_eq!(csp_framed_by("'none'"), CSP_NO_FRAMING);
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&csp).expect("value"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
        set_security_headers(&mut headers);
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], csp.as_str());
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
        assert!(!headers.contains_key(header::X_FRAME_OPTIONS));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
