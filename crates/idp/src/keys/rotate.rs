//! Rotating a key: `gatehouse keys rotate`.

use std::time::Duration;

use gatehouse_core::Timestamp;
use gatehouse_core::audit::{Actor, AuditEvent, AuditKind};
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_store::Store;

use super::*;

/// How a new key takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Published at once, signing after [`publication_delay`] of the JWKS's
    /// max-age; the older key signs until then and stays published for
    /// [`RETIRED_KEY_GRACE`] after.
    Prepublish { jwks_max_age: Duration },
    /// Signing at once, the older keys of the algorithm withdrawn from the
    /// JWKS at once: for a compromised key. Tokens they signed stop
    /// verifying, and a relier may meet the new kid before its cached JWKS
    /// has it (ours fetches the JWKS again for an unknown kid).
    Now,
}

/// What [`rotate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    /// The new key, published from now on.
    pub kid: String,
    pub alg: SigningAlg,
    /// When it starts signing (running servers pick it up at their next
    /// reload after that).
    pub signs_from: Timestamp,
    /// How many keys retired longer than [`RETIRED_KEY_GRACE`] ago were
    /// deleted.
    pub purged: u64,
    /// How many older keys of the algorithm were withdrawn ([`Rotation::Now`]).
    pub withdrawn: u64,
}

/// Adds a new key of `alg`, created at `now`, taking over as `how` says;
/// the store retires the older keys of `alg` when it starts signing. Keys
/// retired longer than [`RETIRED_KEY_GRACE`] ago are deleted. Refuses to
/// add a key if `secret` does not open the keys already stored, since no
/// server could then use the new key. `by` names who rotates, for the audit
/// events the changes commit with.
pub async fn rotate(
    store: &dyn Store,
    secret: &InstanceSecret,
    alg: SigningAlg,
    now: Timestamp,
    how: Rotation,
    by: &str,
) -> Result<Rotated, KeyError> {
    let rows = store.signing_keys().await?;
    for row in rows.iter().filter(|k| k.retired_at.is_none()) {
        open_key(row, secret)?;
    }
    let signs_from = match how {
        // A store that holds no key has never served a JWKS (as on a first
        // start, `make_missing_keys`): nothing to wait for. Else a server
        // started meanwhile would have no key of `alg` that signs.
        Rotation::Prepublish { .. } if rows.is_empty() => now,
        Rotation::Prepublish { jwks_max_age } => now.plus(publication_delay(jwks_max_age)),
        Rotation::Now => now,
    };
    let stored = new_key_blocking(alg, secret, now, signs_from).await?;
    store.add_signing_key(&stored, &key_added(&stored).by(by)).await?;
    let withdrawn = match how {
        Rotation::Now => {
            let audit = AuditEvent::new(AuditKind::SigningKeysWithdrawn, None, &Actor::default(), now)
                .with_detail(serde_json::json!({ "alg": alg.as_str(), "kept": stored.kid }))
                .by(by);
            store.withdraw_signing_keys(alg, &stored.kid, &audit).await?
        }
        Rotation::Prepublish { .. } => 0,
    };
    let purged = store.purge_signing_keys(now.minus(RETIRED_KEY_GRACE)).await?;
    tracing::info!(
        kid = %stored.kid,
        alg = alg.as_str(),
        signs_from = signs_from.0,
        purged,
        withdrawn,
        "rotated the signing key"
    );
    Ok(Rotated {
        kid: stored.kid,
        alg,
        signs_from,
        purged,
        withdrawn,
    })
}
