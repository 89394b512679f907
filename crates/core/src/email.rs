//! Email addresses as account identifiers: validated and normalised once, at
//! the edge, so the store compares like with like.

use serde::{Deserialize, Serialize};
use std::fmt;

/// RFC 5321 limits a forward path to 256 octets, including the angle brackets.
pub const MAX_EMAIL_LEN: usize = 254;

/// A syntactically plausible, lowercased email address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("Enter an email address.")]
    Empty,
    #[error("That email address is too long.")]
    TooLong,
    #[error("That does not look like an email address.")]
    Malformed,
}

impl Email {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        // Lowercase first: lowercasing can change the length in bytes
        // (`İ` becomes two characters), and the limits apply to what we store.
        let lowered = input.trim().to_lowercase();
        let trimmed = lowered.as_str();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.len() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or(EmailError::Malformed)?;
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';' | '\\');
        if local.is_empty()
            || local.len() > 64
            || domain.is_empty()
            || local.contains('@')
            || trimmed.chars().any(bad_char)
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(EmailError::Malformed);
        }
        Ok(Self(lowered))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_space() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").map(|e| e.0),
            Ok("alice@example.com".into())
        );
    }

    #[test]
    fn rejects_what_cannot_be_an_address() {
        for bad in [
            "",
            "   ",
            "alice",
            "@example.com",
            "alice@",
            "a b@example.com",
            "a@b@c",
            "a@.com",
            "a@b..c",
            "<a@b.c>",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            Email::parse(&format!("{}@example.com", "a".repeat(250))),
            Err(EmailError::TooLong)
        );
    }
}
