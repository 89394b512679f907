//! Throttling: fixed windows counted in the store, so every instance sees
//! the same count. Failed logins are counted per account (the normalised
//! email, whether or not an account exists, so the throttle reveals nothing)
//! and per client address; mail sent at an unauthenticated request per target
//! address and per client address.
//!
//! An attempt is **reserved** before the secret is checked: one atomic
//! statement in the store counts it if the window still has room
//! (`Store::throttle_reserve`), so however many attempts arrive at once, at
//! most `max_failures` per window are ever checked. The count is therefore
//! of attempts checked (or in flight), not only of failures: a success gives
//! its own reservation back (`Store::throttle_release`), so right secrets
//! never use up the limit, and a right secret is refused only when failures
//! and attempts still being checked fill the window.

use crate::time::{HOUR, MINUTE};
use crate::{Email, Timestamp};

/// A counter as the store keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub started_at: Timestamp,
    /// Attempts reserved in this window (failures, and attempts still being
    /// checked; successes are given back).
    pub failures: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Attempts a window allows (at least 1).
    pub max_failures: u32,
    pub window_secs: i64,
}

/// Five wrong passwords for one account in fifteen minutes.
pub const PER_ACCOUNT: Policy = Policy {
    max_failures: 5,
    window_secs: 15 * MINUTE,
};
/// Fifty failures from one address in fifteen minutes (shared offices and
/// NAT stay usable; a guessing script does not).
pub const PER_ADDRESS: Policy = Policy {
    max_failures: 50,
    window_secs: 15 * MINUTE,
};

/// Three mails an hour to one address, at the request of someone not signed
/// in (a password reset, a sign-up, new or of a taken address) or not yet
/// verified (a new verification code).
pub const MAIL_PER_TARGET: Policy = Policy {
    max_failures: 3,
    window_secs: HOUR,
};
/// Twenty such mails an hour from one client address, to any addresses.
pub const MAIL_PER_ADDRESS: Policy = Policy {
    max_failures: 20,
    window_secs: HOUR,
};

/// Every policy the IdP counts in the store's `throttle` table.
pub const ALL: [Policy; 4] = [PER_ACCOUNT, PER_ADDRESS, MAIL_PER_TARGET, MAIL_PER_ADDRESS];

/// The longest window of [`ALL`]: a stored window that began longer ago
/// than this has ended for every policy, and housekeeping deletes it.
pub const LONGEST_WINDOW_SECS: i64 = HOUR;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Throttled { retry_after_secs: i64 },
}

impl Policy {
    /// Whether another attempt may be made now, given the stored window.
    pub fn decide(&self, window: Option<Window>, now: Timestamp) -> Decision {
        match window {
            Some(w) if now.0 < w.started_at.0 + self.window_secs && w.failures >= self.max_failures => {
                Decision::Throttled {
                    retry_after_secs: now.until(w.started_at.plus(self.window_secs)).max(1),
                }
            }
            _ => Decision::Allowed,
        }
    }

    /// Seconds to wait after the store refused a reservation, given the
    /// window read after it (it may have ended or been cleared in between:
    /// then one second).
    pub fn retry_after(&self, window: Option<Window>, now: Timestamp) -> i64 {
        window.map_or(1, |w| now.until(w.started_at.plus(self.window_secs)).max(1))
    }
}

pub fn account_key(email: &Email) -> String {
    format!("login:acct:{email}")
}

pub fn address_key(ip: &str) -> String {
    format!("login:addr:{ip}")
}

/// The counter of mails to one address.
pub fn mail_target_key(email: &Email) -> String {
    format!("mail:to:{email}")
}

/// The counter of mails asked for from one client address.
pub fn mail_address_key(ip: &str) -> String {
    format!("mail:addr:{ip}")
}

/// The stricter of two decisions.
pub fn combine(a: Decision, b: Decision) -> Decision {
    match (a, b) {
        (Decision::Throttled { retry_after_secs: x }, Decision::Throttled { retry_after_secs: y }) => {
            Decision::Throttled {
                retry_after_secs: x.max(y),
            }
        }
        (t @ Decision::Throttled { .. }, _) | (_, t @ Decision::Throttled { .. }) => t,
        _ => Decision::Allowed,
    }
}

/// Whole minutes to tell a person, rounded up.
pub fn minutes(retry_after_secs: i64) -> i64 {
    (retry_after_secs + MINUTE - 1) / MINUTE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_opens_again_after_its_length() {
        let t0 = Timestamp(10_000);
        let full = Some(Window {
            started_at: t0,
            failures: 5,
        });
        assert_eq!(PER_ACCOUNT.decide(None, t0), Decision::Allowed);
        assert_eq!(
            PER_ACCOUNT.decide(
                Some(Window {
                    started_at: t0,
                    failures: 4
                }),
                t0
            ),
            Decision::Allowed
        );
        assert_eq!(
            PER_ACCOUNT.decide(full, t0.plus(60)),
            Decision::Throttled {
                retry_after_secs: 14 * 60
            }
        );
        assert_eq!(
            PER_ACCOUNT.decide(full, t0.plus(15 * 60 - 1)),
            Decision::Throttled { retry_after_secs: 1 }
        );
        assert_eq!(PER_ACCOUNT.decide(full, t0.plus(15 * 60)), Decision::Allowed);
    }

    #[test]
    fn the_stricter_wins_and_minutes_round_up() {
        let a = Decision::Throttled { retry_after_secs: 30 };
        let b = Decision::Throttled { retry_after_secs: 90 };
        assert_eq!(combine(a, b), b);
        assert_eq!(combine(Decision::Allowed, a), a);
        assert_eq!(combine(Decision::Allowed, Decision::Allowed), Decision::Allowed);
        assert_eq!(minutes(1), 1);
        assert_eq!(minutes(60), 1);
        assert_eq!(minutes(61), 2);
    }

    #[test]
    fn a_refusal_waits_for_the_window_to_end() {
        let t0 = Timestamp(10_000);
        let w = Some(Window {
            started_at: t0,
            failures: 5,
        });
        assert_eq!(PER_ACCOUNT.retry_after(w, t0.plus(60)), 14 * 60);
        // Ended (or cleared) between the refusal and the read.
        assert_eq!(PER_ACCOUNT.retry_after(w, t0.plus(15 * 60)), 1);
        assert_eq!(PER_ACCOUNT.retry_after(None, t0), 1);
    }

    #[test]
    fn no_policy_outlives_the_longest_window() {
        for policy in ALL {
            assert!(policy.window_secs <= LONGEST_WINDOW_SECS, "{policy:?}");
        }
    }
}
