//! Local return paths: where a site may send someone back to after a login
//! or a form when the request named the place (`?next=/orders`). Only a
//! path on the same site is followed, never anything a browser would
//! resolve to another origin (an open redirect). The IdP and the relier
//! library (so the demo sites) use this one rule.

use url::Url;

/// The longest return path followed.
pub const MAX_RETURN_PATH_LEN: usize = 2048;

/// How many times a path is percent-decoded to look for a hidden `//`,
/// backslash or control character (`%252F` is `%2F` once decoded, `/`
/// twice).
const DECODE_ROUNDS: usize = 3;

/// `next` if it is a local return path, else `None`. Accepted: a path on
/// this site, as it would appear in a URL (query and fragment allowed):
///
/// - it starts with exactly one `/` (not `//`, which is another host, nor
///   a scheme such as `https:` or `javascript:`);
/// - it is visible ASCII only: no control character (browsers drop tabs
///   and newlines, so `/\t/evil.example` is `//evil.example`), no space,
///   nothing a `Location` header cannot carry;
/// - no backslash (browsers read `\` as `/` in http URLs);
/// - none of this hidden by percent-encoding (`/%2F/evil`, `/%5Cevil`,
///   `/%09/evil`, and the same encoded twice), should anything decode it
///   again on the way;
/// - resolved the way a browser resolves it (the WHATWG URL parser, as the
///   `url` crate implements it) against this site, it stays on this site;
/// - at most [`MAX_RETURN_PATH_LEN`] bytes.
pub fn local_return_path(next: &str) -> Option<&str> {
    let syntax_ok = next.len() <= MAX_RETURN_PATH_LEN
        && next.starts_with('/')
        && !next.starts_with("//")
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    (syntax_ok && decoded_forms_ok(next) && stays_on_site(next)).then_some(next)
}

/// The path percent-decoded once, twice, ...: none of its forms may start
/// with `//` or hold a backslash or a control character.
fn decoded_forms_ok(next: &str) -> bool {
    let mut current = next.to_owned();
    for _ in 0..DECODE_ROUNDS {
        let decoded = percent_encoding::percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == current {
            return true;
        }
        if !decoded.starts_with('/')
            || decoded.starts_with("//")
            || decoded.chars().any(|c| c.is_control() || c == '\\')
        {
            return false;
        }
        current = decoded;
    }
    // Still changing after that many rounds: not a path anyone needs.
    false
}

/// Resolved against a site the way a browser would, the path stays there.
fn stays_on_site(next: &str) -> bool {
    let Ok(base) = Url::parse("https://this-site.invalid/") else {
        return false;
    };
    base.join(next)
        .is_ok_and(|url| url.origin() == base.origin() && url.username().is_empty() && url.password().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_followed() {
        for good in [
            "/",
            "/settings",
            "/a?b=c",
            "/offer/x?y=1#top",
            "/search?q=caf%C3%A9",
            "/a/b/../c",
            "/a%20b",
            "/@evil.example",
            "/.well-known/x",
        ] {
            assert_eq!(local_return_path(good), Some(good), "{good:?}");
        }
    }

    /// Known open-redirect bypasses, each refused.
    #[test]
    fn known_bypasses_are_refused() {
        let long = format!("/{}", "a".repeat(MAX_RETURN_PATH_LEN));
        for bad in [
            // Another origin, plainly.
            "https://evil.example",
            "http://evil.example/",
            "//evil.example",
            "///evil.example",
            "////evil.example",
            "evil.example",
            "javascript:alert(1)",
            "data:text/html,x",
            "",
            " /settings",
            "/settings ",
            // Backslashes, which browsers read as slashes.
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "/\\/evil.example",
            "/a\\b",
            // Tabs, newlines and other controls, which browsers drop.
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\r\n/evil.example",
            "\t//evil.example",
            "/\u{0}/evil.example",
            "/\u{7f}/evil.example",
            "/\u{b}/evil.example",
            "/a\nb",
            // Non-ASCII: not a URL as written, and no header can carry it.
            "/\u{3002}evil.example",
            "/\u{ff0f}evil.example",
            "/\u{2215}evil.example",
            "/caf\u{e9}",
            // The same, percent-encoded once or twice.
            "/%2Fevil.example",
            "/%2fevil.example",
            "/%252Fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/%255Cevil.example",
            "/%09/evil.example",
            "/%2509/evil.example",
            "/%0A/evil.example",
            "/%0d%0aSet-Cookie:x=1",
            "/%00",
            "%2F%2Fevil.example",
            "/%25252F%25252Fevil.example",
            // Too long.
            long.as_str(),
        ] {
            assert_eq!(local_return_path(bad), None, "{bad:?}");
        }
    }
}
