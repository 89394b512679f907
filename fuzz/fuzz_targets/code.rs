//! Fuzzes one-time codes with arbitrary UTF-8: `normalise_code` accepts only
//! six ASCII digits (whitespace ignored), and `check_code` against an issued
//! code accepts exactly that code, whatever whitespace surrounds it, and
//! nothing once the attempts are used up.
#![no_main]

use std::sync::OnceLock;

use gatehouse_core::code::{CodeError, CodePurpose, MAX_ATTEMPTS, OneTimeCode, normalise_code};
use gatehouse_core::{AccountId, Email, Timestamp};
use libfuzzer_sys::fuzz_target;

const NOW: Timestamp = Timestamp(1_700_000_000);

fn issued() -> &'static (OneTimeCode, String) {
    static ISSUED: OnceLock<(OneTimeCode, String)> = OnceLock::new();
    ISSUED.get_or_init(|| {
        let email = Email::parse("fuzz@example.com").expect("valid address");
        let issued = OneTimeCode::issue(CodePurpose::VerifyEmail, AccountId("fuzz".into()), email, NOW);
        (issued.record, issued.code.expose().clone())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let stripped: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    let six_digits = stripped.len() == 6 && stripped.bytes().all(|b| b.is_ascii_digit());
    let normalised = normalise_code(input);
    assert_eq!(normalised.is_some(), six_digits, "{input:?}");
    if let Some(code) = &normalised {
        assert_eq!(code, &stripped);
    }

    let (record, code) = issued();
    let expected = if normalised.as_deref() == Some(code.as_str()) {
        Ok(())
    } else {
        Err(CodeError::Wrong)
    };
    assert_eq!(record.check_code(input, NOW), expected, "{input:?}");

    // The input's non-whitespace characters replaced by the issued code's
    // digits, keeping its whitespace: must be accepted.
    if stripped.chars().count() == 6 {
        let mut digits = code.chars();
        let with_code: String = input
            .chars()
            .map(|c| {
                if c.is_whitespace() {
                    c
                } else {
                    digits.next().unwrap_or(c)
                }
            })
            .collect();
        assert_eq!(record.check_code(&with_code, NOW), Ok(()), "{with_code:?}");
    }

    // Attempts used up: nothing passes, not even the issued code.
    let mut spent = record.clone();
    spent.attempts = MAX_ATTEMPTS;
    assert_eq!(spent.check_code(input, NOW), Err(CodeError::TooManyAttempts));
    assert_eq!(spent.check_code(code, NOW), Err(CodeError::TooManyAttempts));
});
