//! Fuzzes `OpaqueToken::parse` with arbitrary UTF-8: it must never panic,
//! must accept exactly the non-empty base64url strings of at most 128 bytes,
//! and must keep what it accepts unchanged.
#![no_main]

use gatehouse_core::{OpaqueToken, TokenDigest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let expected = !input.is_empty()
        && input.len() <= 128
        && input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let parsed = OpaqueToken::parse(input);
    assert_eq!(parsed.is_some(), expected, "{input:?}");
    if let Some(token) = parsed {
        assert_eq!(token.expose(), input);
        assert!(token.ct_eq(input));
        assert_eq!(token.digest(), TokenDigest::of(input));
    }
});
