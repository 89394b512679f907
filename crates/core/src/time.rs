//! Time as whole seconds since the Unix epoch: the only clock the rules see.
//! Rules take `now` as an argument; only the edges read the system clock.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Reads the system clock. Call it at the edge and pass the value in.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    pub fn plus(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds))
    }

    pub fn minus(self, seconds: i64) -> Self {
        Self(self.0.saturating_sub(seconds))
    }

    /// Seconds from `self` until `later` (zero if `later` is not later).
    pub fn until(self, later: Timestamp) -> i64 {
        (later.0 - self.0).max(0)
    }
}

/// Common durations, in seconds.
pub const MINUTE: i64 = 60;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// `YYYY-MM-DD HH:MM` in UTC, for messages (no date library in core).
pub fn format_utc(t: Timestamp) -> String {
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let days = t.0.div_euclid(DAY);
    let secs = t.0.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        secs / HOUR,
        (secs % HOUR) / MINUTE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(Timestamp(0)), "1970-01-01 00:00");
        assert_eq!(format_utc(Timestamp(951_782_400)), "2000-02-29 00:00");
        assert_eq!(format_utc(Timestamp(1_795_436_094)), "2026-11-23 12:14");
    }
}
