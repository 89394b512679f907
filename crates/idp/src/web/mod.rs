//! The web plumbing the pages share: CSRF tokens, cookies, the signed-in
//! person, the client's address, and safe redirects.

pub mod auth;
pub mod client;
pub mod cookies;
pub mod csrf;

/// Where to send someone after a form, if the request named a place: only a
/// path on this site (starting with one `/`), never another origin.
pub fn safe_next(next: Option<&str>) -> Option<String> {
    let next = next?.trim();
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2048
        && !next.chars().any(|c| c.is_control() || c == '\\');
    ok.then(|| next.to_owned())
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
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(safe_next(None), None);
    }
}
