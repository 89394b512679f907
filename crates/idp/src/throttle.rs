//! Reserving attempts on the store's shared counters before the work they
//! guard: a password checked, a mail sent. Several counters are reserved
//! together, all or none; rules and limits are in `gatehouse_core::throttle`.

use gatehouse_core::throttle::{self, Policy, Window};
use gatehouse_core::{Email, Timestamp};
use gatehouse_store::{Store, StoreError};

/// Attempts reserved, one per counter, to give back on success.
#[derive(Debug)]
pub struct Reserved {
    held: Vec<(String, Window)>,
}

#[derive(Debug)]
pub enum Reservation {
    Reserved(Reserved),
    /// A counter was full; nothing stays reserved.
    Refused {
        retry_after_secs: i64,
    },
}

/// Reserves one attempt on each counter, in order. If one is full, those
/// reserved before it get their attempt back (it was not made) and the
/// answer says how long that counter's window still runs. Put the client
/// address first: once it is full, the counters keyed by what the client
/// typed (an email) are not touched, so a flood adds no rows.
pub async fn reserve(
    store: &dyn Store,
    counters: &[(String, Policy)],
    now: Timestamp,
) -> Result<Reservation, StoreError> {
    let mut reserved = Reserved { held: Vec::new() };
    for (key, policy) in counters {
        match store.throttle_reserve(key, now, *policy).await? {
            Some(window) => reserved.held.push((key.clone(), window)),
            None => {
                release(store, reserved).await?;
                let window = store.throttle_window(key).await?;
                return Ok(Reservation::Refused {
                    retry_after_secs: policy.retry_after(window, now),
                });
            }
        }
    }
    Ok(Reservation::Reserved(reserved))
}

/// Gives every attempt back (a success, or an attempt not made after all).
pub async fn release(store: &dyn Store, reserved: Reserved) -> Result<(), StoreError> {
    for (key, window) in reserved.held {
        store.throttle_release(&key, window.started_at).await?;
    }
    Ok(())
}

/// Whether a mail may go to `to` at the request of someone not signed in
/// (or not verified) from `ip`: counted per target and per client address
/// whether or not the target has an account, so that the answer, which is
/// the same either way, and the time it takes reveal nothing.
pub async fn may_mail(store: &dyn Store, to: &Email, ip: &str, now: Timestamp) -> Result<bool, StoreError> {
    let counters = [
        (throttle::mail_address_key(ip), throttle::MAIL_PER_ADDRESS),
        (throttle::mail_target_key(to), throttle::MAIL_PER_TARGET),
    ];
    Ok(matches!(
        reserve(store, &counters, now).await?,
        Reservation::Reserved(_)
    ))
}
