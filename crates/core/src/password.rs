//! Passwords: the policy (NIST SP 800-63B §3.1.1.2: length, not composition,
//! and no commonly used values) and Argon2id hashing with OWASP parameters.
//!
//! Hashing is CPU-bound and slow on purpose (tens of milliseconds): callers
//! on an async runtime run these functions on a blocking thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashSet;
use std::sync::OnceLock;

use crate::{Email, Secret};

/// SP 800-63B: at least 8 characters.
pub const MIN_LEN: usize = 8;
/// SP 800-63B asks to allow at least 64; we allow far more, and stop there so
/// a request cannot make us hash megabytes.
pub const MAX_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    #[error("Use at least {MIN_LEN} characters.")]
    TooShort,
    #[error("Use at most {MAX_LEN} characters.")]
    TooLong,
    #[error("That password is one of the most commonly used ones. Choose another.")]
    Common,
    #[error("Do not use your email address as your password.")]
    SameAsEmail,
}

/// The 10,000 most common passwords of eight characters or more, from the
/// zxcvbn frequency lists (MIT licence).
fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| include_str!("../data/common-passwords.txt").lines().collect())
}

/// Checks a new password against the policy. Length counts characters
/// (Unicode scalar values), not bytes, as SP 800-63B asks.
pub fn check_policy(password: &str, email: Option<&Email>) -> Result<(), PasswordRejected> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(PasswordRejected::TooShort);
    }
    if len > MAX_LEN {
        return Err(PasswordRejected::TooLong);
    }
    let lowered = password.to_lowercase();
    if common_passwords().contains(lowered.as_str()) {
        return Err(PasswordRejected::Common);
    }
    if let Some(email) = email {
        let local = email.as_str().split('@').next().unwrap_or_default();
        if lowered == email.as_str() || lowered == local {
            return Err(PasswordRejected::SameAsEmail);
        }
    }
    Ok(())
}

/// Argon2id, m = 19 MiB, t = 2, p = 1: the OWASP Password Storage Cheat
/// Sheet's first recommendation.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password into a PHC string with a fresh random salt.
pub fn hash(password: &Secret<String>) -> Result<Secret<String>, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| Secret::new(h.to_string()))
        .map_err(|e| HashError(e.to_string()))
}

/// Verifies a password against a stored PHC string. When there is no
/// account, pass `None`: a dummy hash is checked instead so that the time
/// taken does not tell whether the account exists.
pub fn verify(password: &Secret<String>, stored: Option<&Secret<String>>) -> bool {
    let dummy = dummy_hash();
    let (phc, real) = match stored {
        Some(s) => (s.expose().as_str(), true),
        None => (dummy, false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ok = argon2().verify_password(password.expose().as_bytes(), &parsed).is_ok();
    ok && real
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash(&Secret::new("gatehouse-dummy-password".to_string()))
            .map(|s| s.expose().clone())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_not_composition() {
        assert_eq!(check_policy("short", None), Err(PasswordRejected::TooShort));
        // Seven characters, even with every class of character, is too short.
        assert_eq!(check_policy("Ab1!Ab1", None), Err(PasswordRejected::TooShort));
        // Lowercase letters only is fine when long enough and not common.
        assert_eq!(check_policy("correct horse battery staple", None), Ok(()));
        assert_eq!(
            check_policy(&"x".repeat(MAX_LEN + 1), None),
            Err(PasswordRejected::TooLong)
        );
        // Characters, not bytes: eight accented letters are 16 bytes but pass.
        assert_eq!(check_policy("éééééééé", None), Ok(()));
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        for common in ["password", "12345678", "PASSWORD", "trustno1", "Baseball"] {
            assert_eq!(check_policy(common, None), Err(PasswordRejected::Common), "{common}");
        }
    }

    #[test]
    fn email_is_not_a_password() {
        let email = Email::parse("wonderful.person@example.com").expect("valid");
        assert_eq!(
            check_policy("wonderful.person@example.com", Some(&email)),
            Err(PasswordRejected::SameAsEmail)
        );
        assert_eq!(
            check_policy("Wonderful.Person", Some(&email)),
            Err(PasswordRejected::SameAsEmail)
        );
    }

    #[test]
    fn hash_and_verify() {
        let pw = Secret::new("a long enough secret".to_string());
        let h = hash(&pw).expect("hashes");
        assert!(h.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&pw, Some(&h)));
        assert!(!verify(&Secret::new("another secret".into()), Some(&h)));
        // No account: never true, even for the dummy's own password.
        assert!(!verify(&Secret::new("gatehouse-dummy-password".into()), None));
        assert!(!verify(&pw, Some(&Secret::new("not a phc string".into()))));
    }
}
