//! Retry timing for outbound deliveries (the IdP's outbox, the payments
//! service's merchant notifications): exponential backoff with jitter.

/// The longest wait between two attempts, in seconds.
pub const MAX_BACKOFF_SECS: i64 = 600;

/// Seconds to wait after the failure of attempt number `attempts + 1`:
/// 1, 2, 4, ... up to [`MAX_BACKOFF_SECS`], stretched by `jitter` (a
/// fraction, 0 to 0.5) so that many failures do not retry in step.
pub fn backoff_secs(attempts: i64, jitter: f64) -> i64 {
    let exp = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    let base = 2_i64.saturating_pow(exp).min(MAX_BACKOFF_SECS);
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let extra = (base as f64 * jitter.clamp(0.0, 0.5)).round() as i64;
    base + extra
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_secs(0, 0.0), 1);
        assert_eq!(backoff_secs(1, 0.0), 2);
        assert_eq!(backoff_secs(3, 0.0), 8);
        assert_eq!(backoff_secs(50, 0.0), MAX_BACKOFF_SECS);
        assert_eq!(backoff_secs(2, 0.5), 6);
    }
}
