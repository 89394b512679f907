//! One-time codes mailed to a person: email verification, password reset
//! and email change. Each mail carries a short code to type and a link to
//! click; both name the same record, so using either uses both. Codes expire,
//! work once, and allow only a few wrong guesses.

use rand::Rng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::time::{DAY, HOUR};
use crate::{AccountId, Email, OpaqueToken, Secret, Timestamp, TokenDigest};

/// Wrong guesses of the short code before the code stops working.
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodePurpose {
    VerifyEmail,
    ResetPassword,
    ChangeEmail,
}

impl CodePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::ChangeEmail => "change_email",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "verify_email" => Some(Self::VerifyEmail),
            "reset_password" => Some(Self::ResetPassword),
            "change_email" => Some(Self::ChangeEmail),
            _ => None,
        }
    }

    /// How long a code of this purpose lives.
    pub fn lifetime(self) -> i64 {
        match self {
            Self::VerifyEmail => DAY,
            Self::ResetPassword | Self::ChangeEmail => HOUR,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneTimeCode {
    pub id: String,
    pub purpose: CodePurpose,
    pub account_id: AccountId,
    /// The address the code was sent to: the account's, or the new one for an
    /// email change.
    pub email: Email,
    /// SHA-256 of `id` and the short code, so equal codes differ in the store.
    pub code_digest: TokenDigest,
    pub link_digest: TokenDigest,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub attempts: u32,
}

/// What a freshly issued code gives the mailer; never stored.
pub struct Issued {
    pub record: OneTimeCode,
    pub code: Secret<String>,
    pub link_token: OpaqueToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("That code is not right. Check the email and try again.")]
    Wrong,
    #[error("That code has expired. Ask for a new one.")]
    Expired,
    #[error("That code has already been used.")]
    AlreadyUsed,
    #[error("Too many wrong codes. Ask for a new one.")]
    TooManyAttempts,
}

fn code_digest(id: &str, code: &str) -> TokenDigest {
    TokenDigest::of(&format!("{id}:{code}"))
}

/// Accepts only what we could have sent: six ASCII digits, spaces ignored.
pub fn normalise_code(input: &str) -> Option<String> {
    let digits: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

impl OneTimeCode {
    pub fn issue(purpose: CodePurpose, account_id: AccountId, email: Email, now: Timestamp) -> Issued {
        let id = uuid::Uuid::new_v4().to_string();
        let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
        let link_token = OpaqueToken::generate();
        let record = OneTimeCode {
            code_digest: code_digest(&id, &code),
            link_digest: link_token.digest(),
            id,
            purpose,
            account_id,
            email,
            created_at: now,
            expires_at: now.plus(purpose.lifetime()),
            used_at: None,
            attempts: 0,
        };
        Issued {
            record,
            code: Secret::new(code),
            link_token,
        }
    }

    /// Whether the record can still be used at all.
    pub fn check_usable(&self, now: Timestamp) -> Result<(), CodeError> {
        if self.used_at.is_some() {
            Err(CodeError::AlreadyUsed)
        } else if now >= self.expires_at {
            Err(CodeError::Expired)
        } else if self.attempts >= MAX_ATTEMPTS {
            Err(CodeError::TooManyAttempts)
        } else {
            Ok(())
        }
    }

    /// Checks a typed short code. The caller reserves the attempt in the
    /// store first (`reserve_code_attempt`), so that every guess is counted
    /// before it is checked.
    pub fn check_code(&self, input: &str, now: Timestamp) -> Result<(), CodeError> {
        self.check_usable(now)?;
        let Some(code) = normalise_code(input) else {
            return Err(CodeError::Wrong);
        };
        let given = code_digest(&self.id, &code);
        if bool::from(given.as_str().as_bytes().ct_eq(self.code_digest.as_str().as_bytes())) {
            Ok(())
        } else {
            Err(CodeError::Wrong)
        }
    }
}

/// What redeeming a code does, applied by the store in the same transaction
/// that marks the code used.
#[derive(Clone, Debug)]
pub enum CodeEffect {
    /// The account's email is verified.
    VerifyEmail,
    /// The password is replaced; every session except `keep` must enter the
    /// password again.
    ResetPassword {
        new_hash: Secret<String>,
        keep: Option<TokenDigest>,
    },
    /// The account's email becomes the code's address (verified).
    ChangeEmail,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(now: Timestamp) -> Issued {
        OneTimeCode::issue(
            CodePurpose::VerifyEmail,
            AccountId("a".into()),
            Email::parse("a@example.com").expect("valid"),
            now,
        )
    }

    #[test]
    fn right_code_passes_wrong_code_fails() {
        let now = Timestamp(1_000);
        let issued = issue(now);
        let code = issued.code.expose().clone();
        assert_eq!(code.len(), 6);
        assert_eq!(issued.record.check_code(&code, now), Ok(()));
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(issued.record.check_code(&spaced, now), Ok(()));
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap_or(0) + 1) % 1_000_000);
        assert_eq!(issued.record.check_code(&wrong, now), Err(CodeError::Wrong));
        assert_eq!(issued.record.check_code("abcdef", now), Err(CodeError::Wrong));
        assert_eq!(issued.record.check_code("1234567", now), Err(CodeError::Wrong));
    }

    #[test]
    fn codes_expire_and_work_once() {
        let now = Timestamp(1_000);
        let mut rec = issue(now).record;
        assert_eq!(rec.check_usable(now.plus(DAY - 1)), Ok(()));
        assert_eq!(rec.check_usable(now.plus(DAY)), Err(CodeError::Expired));
        rec.used_at = Some(now);
        assert_eq!(rec.check_usable(now), Err(CodeError::AlreadyUsed));
    }

    #[test]
    fn too_many_wrong_guesses_end_the_code() {
        let now = Timestamp(1_000);
        let issued = issue(now);
        let mut rec = issued.record;
        rec.attempts = MAX_ATTEMPTS;
        // Even the right code no longer works.
        assert_eq!(
            rec.check_code(issued.code.expose(), now),
            Err(CodeError::TooManyAttempts)
        );
    }

    #[test]
    fn reset_codes_live_an_hour() {
        assert_eq!(CodePurpose::ResetPassword.lifetime(), HOUR);
        for p in [
            CodePurpose::VerifyEmail,
            CodePurpose::ResetPassword,
            CodePurpose::ChangeEmail,
        ] {
            assert_eq!(CodePurpose::parse(p.as_str()), Some(p));
        }
    }
}
