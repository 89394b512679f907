//! Fuzzes `Email::parse` with arbitrary UTF-8: it must never panic, and an
//! accepted address must be lowercase, trimmed, at most 254 bytes, and
//! parse again to itself.
#![no_main]

use gatehouse_core::Email;
use gatehouse_core::email::MAX_EMAIL_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(email) = Email::parse(input) else {
        return;
    };
    let s = email.as_str();
    assert_eq!(s, s.to_lowercase(), "not lowercase");
    assert_eq!(s, s.trim(), "not trimmed");
    assert!(s.contains('@'), "no '@'");
    assert!(
        s.len() <= MAX_EMAIL_LEN,
        "{} bytes, longer than {MAX_EMAIL_LEN}: {s:?}",
        s.len()
    );
    assert_eq!(Email::parse(s), Ok(email.clone()), "not idempotent");
});
