//! IdP sessions: the server-side record behind the session cookie, and the
//! rules for when a session may be used.
//!
//! States: `Active` -> `NeedsReauth` (the account's password was reset or
//! changed elsewhere) -> `Active` again after the password is entered;
//! `Expired` once idle or too old; ended sessions are deleted.

use serde::{Deserialize, Serialize};

use crate::time::DAY;
use crate::{AccountId, Timestamp, TokenDigest};

/// A session ends after this long without use.
pub const IDLE_TIMEOUT: i64 = 14 * DAY;
/// A session ends this long after the password was last entered, used or not.
pub const ABSOLUTE_TIMEOUT: i64 = 30 * DAY;
/// Last-seen is written at most this often, to keep reads cheap.
pub const TOUCH_INTERVAL: i64 = 60;

/// How the person proved who they are (RFC 8176 `amr` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// Password.
    Pwd,
    /// A one-time code or link sent by email.
    Otp,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pwd => "pwd",
            Self::Otp => "otp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie value; the cookie value itself is never stored.
    pub id_digest: TokenDigest,
    /// A random public handle, safe to show on the sessions page and to post
    /// back in a "sign out this session" form.
    pub handle: String,
    pub account_id: AccountId,
    pub created_at: Timestamp,
    /// When the password was last entered in this session (`auth_time`).
    pub auth_time: Timestamp,
    pub amr: Vec<AuthMethod>,
    pub last_seen_at: Timestamp,
    pub user_agent: String,
    pub ip: String,
    pub needs_reauth: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    Active,
    /// Usable only to re-enter the password, which resumes it.
    NeedsReauth,
    Expired,
}

impl Session {
    pub fn state(&self, now: Timestamp) -> SessionState {
        if now.0 - self.last_seen_at.0 > IDLE_TIMEOUT || now.0 - self.auth_time.0 > ABSOLUTE_TIMEOUT {
            SessionState::Expired
        } else if self.needs_reauth {
            SessionState::NeedsReauth
        } else {
            SessionState::Active
        }
    }

    pub fn should_touch(&self, now: Timestamp) -> bool {
        now.0 - self.last_seen_at.0 >= TOUCH_INTERVAL
    }

    /// `amr` as stored: space-separated values.
    pub fn amr_string(&self) -> String {
        self.amr.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" ")
    }

    pub fn parse_amr(stored: &str) -> Vec<AuthMethod> {
        stored
            .split_whitespace()
            .filter_map(|m| match m {
                "pwd" => Some(AuthMethod::Pwd),
                "otp" => Some(AuthMethod::Otp),
                _ => None,
            })
            .collect()
    }
}

/// Which sessions of an account to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionSelector {
    /// The session with this cookie digest (sign out here).
    ById(TokenDigest),
    /// The session with this public handle (sign out from the sessions page).
    ByHandle(String),
    /// Every session but this one ("sign out all other sessions").
    AllExcept(TokenDigest),
    /// Every session (account deletion).
    All,
}

/// Trims what a browser sends as its user agent to something fit to store.
pub fn clip_user_agent(ua: &str) -> String {
    ua.chars().filter(|c| !c.is_control()).take(256).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: Timestamp) -> Session {
        Session {
            id_digest: TokenDigest::of("x"),
            handle: "h".into(),
            account_id: AccountId("a".into()),
            created_at: now,
            auth_time: now,
            amr: vec![AuthMethod::Pwd],
            last_seen_at: now,
            user_agent: String::new(),
            ip: String::new(),
            needs_reauth: false,
        }
    }

    #[test]
    fn state_changes() {
        let t0 = Timestamp(1_000_000);
        let mut s = session(t0);
        assert_eq!(s.state(t0), SessionState::Active);
        s.needs_reauth = true;
        assert_eq!(s.state(t0.plus(10)), SessionState::NeedsReauth);
        // Idle too long: expired, whatever else.
        assert_eq!(s.state(t0.plus(IDLE_TIMEOUT + 1)), SessionState::Expired);
        // Used every day but never re-authenticated: expired after the absolute limit.
        s.needs_reauth = false;
        s.last_seen_at = t0.plus(ABSOLUTE_TIMEOUT);
        assert_eq!(s.state(t0.plus(ABSOLUTE_TIMEOUT)), SessionState::Active);
        assert_eq!(s.state(t0.plus(ABSOLUTE_TIMEOUT + 1)), SessionState::Expired);
    }

    #[test]
    fn touch_is_rate_limited() {
        let t0 = Timestamp(5000);
        let s = session(t0);
        assert!(!s.should_touch(t0.plus(59)));
        assert!(s.should_touch(t0.plus(60)));
    }

    #[test]
    fn amr_round_trips() {
        let mut s = session(Timestamp(0));
        s.amr = vec![AuthMethod::Pwd, AuthMethod::Otp];
        assert_eq!(Session::parse_amr(&s.amr_string()), s.amr);
        assert_eq!(clip_user_agent("a\nb"), "ab");
    }
}
