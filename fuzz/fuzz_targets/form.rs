//! Fuzzes URL-encoded form bodies the way the IdP reads them
//! (`CsrfForm`): the `csrf` field first, then the login form itself. Any
//! bytes must give a value or an error, never a panic.
#![no_main]

use gatehouse_core::OpaqueToken;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// The CSRF field, read before the form (as `CsrfForm` does).
#[derive(Debug, Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// The login form, plus the CSRF field every form carries.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
    csrf: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(field) = serde_urlencoded::from_bytes::<CsrfField>(data) {
        if let Some(given) = field.csrf.as_deref() {
            // The double-submit check compares against the cookie's token.
            let expected = OpaqueToken::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").expect("valid token");
            let _ = expected.ct_eq(given);
            let _ = OpaqueToken::parse(given);
        }
    }
    if let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(data) {
        let _ = gatehouse_core::Email::parse(&form.email);
    }
    let _ = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data);
});
