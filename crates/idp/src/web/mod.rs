//! The web plumbing the pages share: CSRF tokens, cookies, the signed-in
//! person, the client's address, and safe redirects.

pub mod auth;
pub mod client;
pub mod cookies;
pub mod csrf;

/// Where to send someone after a form, if the request named a place: only a
/// path on this site, never anything a browser would take to another
/// origin (the one rule, `gatehouse_core::return_path`, the relier library
/// offers reliers too).
pub fn safe_next(next: Option<&str>) -> Option<String> {
    next.and_then(gatehouse_core::return_path::local_return_path)
        .map(str::to_owned)
}

/// Percent-encodes a query parameter value.
pub fn q(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/settings")), Some("/settings".into()));
        assert_eq!(safe_next(Some("/a?b=c")), Some("/a?b=c".into()));
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "",
            "/a\nb",
            "/a\\b",
            "/\t/evil.example",
            "/%2F/evil.example",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(safe_next(None), None);
    }
}
