//! Scopes (RFC 6749 §3.3): a space-separated set of scope tokens, each made
//! of printable ASCII except space, `"` and `\`.
//!
//! What is granted ([`grant`]): the requested scopes the client is
//! registered for. Any other requested scope, one this server does not know
//! (OpenID Connect Core §3.1.2.1: `address`, `phone`) or one it knows but
//! the client may not ask for, is left out (RFC 6749 §3.3 lets the server
//! ignore part of the request), and the token response's `scope` says what
//! was granted. Only a request of which nothing can be granted is
//! `invalid_scope`. A client acting for itself (client credentials) is
//! never granted a scope about a user ([`USER_SCOPES`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// `openid`: the request is an OpenID Connect request.
pub const OPENID: &str = "openid";
/// `offline_access`: the client may get a refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";
/// Scopes about a user or their session: never granted to a client acting
/// for itself (client credentials). OpenID Connect Core §5.4 and §11, and
/// Gatehouse's `legacy` (the linked legacy id).
pub const USER_SCOPES: [&str; 7] = [OPENID, "profile", "email", "address", "phone", OFFLINE_ACCESS, "legacy"];
/// The most scope tokens one request may carry.
pub const MAX_SCOPES: usize = 64;
/// The longest one scope token may be.
pub const MAX_SCOPE_LEN: usize = 128;

/// A set of scope tokens, kept sorted so the same set always prints the same.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scopes(BTreeSet<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed scope")]
pub struct BadScope;

fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_SCOPE_LEN
        && t.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

impl Scopes {
    /// Parses a `scope` parameter. Empty input is the empty set.
    pub fn parse(input: &str) -> Result<Self, BadScope> {
        let mut set = BTreeSet::new();
        // RFC 6749: scope tokens are separated by single spaces; be lenient
        // about repeated spaces but nothing else.
        for token in input.split(' ').filter(|t| !t.is_empty()) {
            if !valid_token(token) {
                return Err(BadScope);
            }
            set.insert(token.to_owned());
        }
        if set.len() > MAX_SCOPES {
            return Err(BadScope);
        }
        Ok(Self(set))
    }

    pub fn from_tokens<I: IntoIterator<Item = S>, S: Into<String>>(tokens: I) -> Self {
        Self(tokens.into_iter().map(Into::into).collect())
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, of: &Scopes) -> bool {
        self.0.is_subset(&of.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The tokens of `self` that are not in `other`.
    pub fn without(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.difference(&other.0).cloned().collect())
    }

    pub fn union(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.union(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.intersection(&other.0).cloned().collect())
    }

    /// The scopes that are not about a user ([`USER_SCOPES`]).
    pub fn without_user_scopes(&self) -> Scopes {
        self.without(&Scopes::from_tokens(USER_SCOPES))
    }
}

/// No requested scope can be granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("none of the requested scopes can be granted")]
pub struct NothingGrantable;

/// What to grant for `requested` out of `allowed` (see the module
/// documentation): the requested scopes that are allowed; nothing asked,
/// nothing granted; asked but none allowed, [`NothingGrantable`].
pub fn grant(requested: &Scopes, allowed: &Scopes) -> Result<Scopes, NothingGrantable> {
    let granted = requested.intersection(allowed);
    if granted.is_empty() && !requested.is_empty() {
        Err(NothingGrantable)
    } else {
        Ok(granted)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(t)?;
            first = false;
        }
        Ok(())
    }
}

impl TryFrom<String> for Scopes {
    type Error = BadScope;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Scopes> for String {
    fn from(value: Scopes) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sorts_and_dedups() {
        let s = Scopes::parse("profile openid  profile email").expect("valid");
        assert_eq!(s.to_string(), "email openid profile");
        assert!(s.contains(OPENID));
        assert_eq!(Scopes::parse("").expect("empty"), Scopes::default());
    }

    #[test]
    fn refuses_bad_characters() {
        for bad in ["a\"b", "a\\b", "a\tb", "é", "a\nb"] {
            assert_eq!(Scopes::parse(bad), Err(BadScope), "{bad:?}");
        }
        assert_eq!(Scopes::parse(&"x".repeat(MAX_SCOPE_LEN + 1)), Err(BadScope));
        let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("s{i}")).collect();
        assert_eq!(Scopes::parse(&many.join(" ")), Err(BadScope));
    }

    #[test]
    fn subsets() {
        let all = Scopes::parse("openid profile payments").expect("valid");
        let some = Scopes::parse("payments").expect("valid");
        assert!(some.is_subset(&all));
        assert!(!all.is_subset(&some));
        assert_eq!(all.without(&some).to_string(), "openid profile");
    }

    #[test]
    fn unknown_and_unallowed_scopes_are_left_out() {
        let allowed = Scopes::parse("openid email profile payments").expect("valid");
        let grant_of = |asked: &str| grant(&Scopes::parse(asked).expect("valid"), &allowed).map(|s| s.to_string());
        // OpenID Connect Core 3.1.2.1: scopes we do not know are ignored.
        assert_eq!(grant_of("openid address phone"), Ok("openid".into()));
        // Known, but not this client's: left out as well (RFC 6749 3.3).
        assert_eq!(grant_of("openid email offline_access"), Ok("email openid".into()));
        assert_eq!(grant_of(""), Ok(String::new()));
        assert_eq!(grant_of("address gatehouse:admin"), Err(NothingGrantable));
    }

    #[test]
    fn user_scopes_are_told_apart() {
        let all = Scopes::parse("openid profile email address phone offline_access legacy payments reports:read")
            .expect("valid");
        assert_eq!(all.without_user_scopes().to_string(), "payments reports:read");
    }
}
