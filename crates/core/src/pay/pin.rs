//! The purchase PIN: exactly six digits, not trivially guessable (one digit
//! repeated, a run up or down, a pair or a triple repeated). Hashed with
//! Argon2id like a password ([`crate::password`]), and throttled like one:
//! [`PER_USER`] failures per window, counted in the store.

use crate::throttle::Policy;
use crate::time::MINUTE;

/// Digits in a PIN.
pub const PIN_LEN: usize = 6;

/// Five wrong PINs for one buyer in fifteen minutes.
pub const PER_USER: Policy = Policy {
    max_failures: 5,
    window_secs: 15 * MINUTE,
};

/// The throttle key of a buyer's PIN.
pub fn throttle_key(sub: &str) -> String {
    format!("pin:{sub}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinRejected {
    #[error("the PIN must be exactly six digits")]
    Shape,
    #[error("the PIN is too easy to guess (a repeated digit, a run, or a repeated pattern)")]
    Guessable,
}

/// Checks a new PIN against the policy.
pub fn check_policy(pin: &str) -> Result<(), PinRejected> {
    if pin.len() != PIN_LEN || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PinRejected::Shape);
    }
    let d: Vec<i16> = pin.bytes().map(|b| i16::from(b - b'0')).collect();
    let steps: Vec<i16> = d.windows(2).map(|w| (w[1] - w[0]).rem_euclid(10)).collect();
    let constant_step = steps.windows(2).all(|w| w[0] == w[1]);
    // 000000, 123456, 987654, 246802 ... (wrapping runs too: 890123).
    if constant_step && matches!(steps.first(), Some(0 | 1 | 9 | 2 | 8)) {
        return Err(PinRejected::Guessable);
    }
    // 121212, 123123.
    if pin[..2].repeat(3) == pin || pin[..3].repeat(2) == pin {
        return Err(PinRejected::Guessable);
    }
    Ok(())
}

/// Whether a submitted value has the shape of a PIN (before the hash is
/// checked: junk never costs an Argon2 run).
pub fn well_formed(pin: &str) -> bool {
    pin.len() == PIN_LEN && pin.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_digits_only() {
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６", " 38517"] {
            assert_eq!(check_policy(bad), Err(PinRejected::Shape), "{bad:?}");
        }
        assert!(check_policy("385172").is_ok());
        assert!(check_policy("904718").is_ok());
    }

    #[test]
    fn trivial_pins_are_refused() {
        for bad in [
            "000000", "111111", "999999", "123456", "234567", "654321", "987654", "890123", "246802", "121212",
            "123123", "909090",
        ] {
            assert_eq!(check_policy(bad), Err(PinRejected::Guessable), "{bad}");
        }
    }

    #[test]
    fn shape_before_hash() {
        assert!(well_formed("000000"));
        assert!(!well_formed("00000"));
        assert!(!well_formed("00000x"));
    }
}
