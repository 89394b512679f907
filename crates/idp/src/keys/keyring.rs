//! The key ring: the keys as last loaded from the store, signing and
//! verifying, reloaded in the background.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Header, Validation};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::grant::StoredKey;
use gatehouse_core::{Secret, Timestamp};
use gatehouse_store::Store;

use super::*;

/// The keys as last loaded.
#[derive(Default)]
pub(super) struct Snapshot {
    /// The newest key of each algorithm whose time to sign has come and
    /// not passed.
    pub(super) signing: HashMap<SigningAlg, Arc<SigningKey>>,
    /// Newest first: unretired keys (those still waiting to sign too), and
    /// keys retired less than [`RETIRED_KEY_GRACE`] ago.
    pub(super) published: Vec<Arc<PublishedKey>>,
    /// When the newest published key of each algorithm that does not sign
    /// yet will.
    pub(super) waiting: HashMap<SigningAlg, Timestamp>,
}

impl Snapshot {
    /// From the store's rows (newest first) at `now`. Only the signing keys
    /// are decrypted; those already open in `previous` are reused.
    pub(super) fn build(
        rows: &[StoredKey],
        now: Timestamp,
        secret: &InstanceSecret,
        previous: &Snapshot,
    ) -> Result<Self, KeyError> {
        let mut next = Snapshot::default();
        for row in rows {
            let published = row
                .retired_at
                .is_none_or(|retired| now.0 - retired.0 < RETIRED_KEY_GRACE);
            if !published {
                continue;
            }
            next.published.push(Arc::new(parse_public(row)?));
            if row.signs_from > now {
                next.waiting.entry(row.alg).or_insert(row.signs_from);
                continue;
            }
            let signs_now = row.retired_at.is_none_or(|retired| retired > now);
            if signs_now && !next.signing.contains_key(&row.alg) {
                let key = match previous.signing.get(&row.alg) {
                    Some(key) if key.kid == row.kid => key.clone(),
                    _ => Arc::new(open_key(row, secret)?),
                };
                next.signing.insert(row.alg, key);
            }
        }
        Ok(next)
    }

    pub(super) fn published(&self, kid: &str) -> Option<Arc<PublishedKey>> {
        self.published.iter().find(|k| k.kid == kid).cloned()
    }
}

pub(super) struct Inner {
    pub(super) store: Arc<dyn Store>,
    pub(super) secret: InstanceSecret,
    /// [`publication_delay`] of the JWKS's max-age.
    publication_delay: i64,
    pub(super) snapshot: RwLock<Arc<Snapshot>>,
    /// One reload at a time, so an older read never replaces a newer one.
    pub(super) reload: tokio::sync::Mutex<()>,
    /// One key generation at a time in this process.
    pub(super) generate: tokio::sync::Mutex<()>,
    /// When an unknown kid last made us reload.
    pub(super) kid_refresh: Mutex<Option<Instant>>,
    pub(super) verified: VerifiedTokens,
}

/// Tokens whose signature [`KeyRing::verify`] checked, by the SHA-256 of the
/// whole token, with what they decoded to. A resource server introspects the
/// same access token on every call it serves, and an ES256 verification is
/// most of an introspection's CPU time (see BENCHMARKS.md); a signature over
/// the same bytes under the same kid does not stop being valid, so only that
/// step is skipped: the kid must still be published with the same algorithm,
/// and `exp` and `iss` are checked on every call, as are (by the callers)
/// revocation and the account. Only tokens that passed every check are
/// kept, until they expire; when full, expired entries go, then all.
#[derive(Default)]
pub(super) struct VerifiedTokens(Mutex<HashMap<[u8; 32], Arc<Verified>>>);

/// A verified token's header and claims.
pub(super) type Verified = (Header, Value);

impl VerifiedTokens {
    fn get(&self, digest: &[u8; 32]) -> Option<Arc<Verified>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .cloned()
    }

    fn insert(&self, digest: [u8; 32], header: &Header, claims: &Value, exp: i64, now: Timestamp) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= VERIFIED_CAPACITY {
            let live = |v: &Verified| {
                v.1.get("exp")
                    .and_then(Value::as_i64)
                    .is_some_and(|exp| now.0 <= exp.saturating_add(VERIFY_LEEWAY))
            };
            map.retain(|_, v| live(v));
            if map.len() >= VERIFIED_CAPACITY {
                map.clear();
            }
        }
        if now.0 <= exp.saturating_add(VERIFY_LEEWAY) {
            map.insert(digest, Arc::new((header.clone(), claims.clone())));
        }
    }
}

/// The signing keys, decrypted, shared by every request (cheap to clone).
///
/// [`KeyRing::verify`] checks the signature with the published key the
/// header's `kid` names, that the header's `alg` is that key's, `exp` (with
/// [`VERIFY_LEEWAY`]), and that `iss` equals the issuer the caller passes.
/// The issuer is an argument of `verify` rather than of the constructor: a
/// server learns it only once bound, and the caller then signs and checks
/// with the very same string. It checks neither `aud` nor `typ`: the caller
/// checks those for the token it expects (`at+jwt` for an access token, so
/// an ID token is never taken for one).
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        let kids: Vec<&str> = snapshot.published.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("KeyRing")
            .field("published", &kids)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// [`KeyRing::load_for`] with the default JWKS max-age.
    pub async fn load(store: Arc<dyn Store>, secret: &InstanceSecret) -> Result<Self, KeyError> {
        Self::load_for(store, secret, DEFAULT_JWKS_MAX_AGE).await
    }

    /// Loads the keys from the store. On a store without keys (its first
    /// start), makes a key of every algorithm, signing at once; on one that
    /// lacks an algorithm, pre-publishes a key of it (it signs after
    /// [`publication_delay`] of `jwks_max_age`). Two instances starting at
    /// once on one new database may both make keys: the newest sign, the
    /// others stay published until they expire. A key that does not decrypt
    /// with `secret` is an error ([`KeyError::Decrypt`]).
    pub async fn load_for(
        store: Arc<dyn Store>,
        secret: &InstanceSecret,
        jwks_max_age: Duration,
    ) -> Result<Self, KeyError> {
        Self::load_from(store, secret, publication_delay(jwks_max_age)).await
    }

    pub(super) async fn load_from(
        store: Arc<dyn Store>,
        secret: &InstanceSecret,
        publication_delay: i64,
    ) -> Result<Self, KeyError> {
        let ring = KeyRing {
            inner: Arc::new(Inner {
                store,
                secret: secret.clone(),
                publication_delay,
                snapshot: RwLock::new(Arc::new(Snapshot::default())),
                reload: tokio::sync::Mutex::new(()),
                generate: tokio::sync::Mutex::new(()),
                kid_refresh: Mutex::new(None),
                verified: VerifiedTokens::default(),
            }),
        };
        ring.refresh().await?;
        ring.make_missing_keys().await?;
        Ok(ring)
    }

    /// Makes a key of each algorithm the store has none of: signing at once
    /// if the store has no key at all (no JWKS was ever served from it),
    /// else pre-published.
    pub(super) async fn make_missing_keys(&self) -> Result<(), KeyError> {
        let _one_at_a_time = self.inner.generate.lock().await;
        let rows = self.inner.store.signing_keys().await?;
        let missing: Vec<SigningAlg> = SigningAlg::ALL
            .into_iter()
            .filter(|alg| rows.iter().all(|row| row.alg != *alg))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now();
        let signs_from = if rows.is_empty() {
            now
        } else {
            now.plus(self.inner.publication_delay)
        };
        let secret = self.inner.secret.clone();
        let algs = missing.clone();
        // RSA takes a while: off the async threads, all in one go.
        let keys = tokio::task::spawn_blocking(move || {
            algs.into_iter()
                .map(|alg| new_key(alg, &secret, now, signs_from))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| KeyError::Generate {
            alg: "all",
            reason: e.to_string(),
        })??;
        for key in &keys {
            self.inner.store.add_signing_key(key, &key_added(key)).await?;
            tracing::info!(
                kid = %key.kid,
                alg = key.alg.as_str(),
                signs_from = key.signs_from.0,
                "generated a signing key"
            );
        }
        self.refresh().await
    }

    /// A key for one purpose derived from the instance secret (see
    /// [`InstanceSecret::derive_key`]): the same on every instance that
    /// shares the secret, e.g. to make and check stateless DPoP nonces.
    pub fn derive_key(&self, purpose: &str) -> Secret<[u8; 32]> {
        self.inner.secret.derive_key(purpose)
    }

    /// Reloads the keys from the store.
    pub async fn refresh(&self) -> Result<(), KeyError> {
        let _one_at_a_time = self.inner.reload.lock().await;
        let rows = self.inner.store.signing_keys().await?;
        let next = Snapshot::build(&rows, Timestamp::now(), &self.inner.secret, &self.snapshot())?;
        *self.inner.snapshot.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// Reloads the keys every `every` in a background task (see
    /// [`REFRESH_INTERVAL`]): a key `gatehouse keys rotate` added signs
    /// within that time, and a key retired long ago leaves the JWKS. A
    /// failed reload is logged and the keys already loaded stay. The task
    /// ends once every clone of the ring is dropped.
    pub fn spawn_refresher(&self, every: Duration) -> JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                if let Err(e) = (KeyRing { inner }).refresh().await {
                    tracing::warn!(error = %e, "cannot reload the signing keys; keeping those loaded");
                }
            }
        })
    }

    /// Signs `claims` as a JWT with the current key of `alg`; the header has
    /// `alg`, `kid` and `typ` (e.g. `at+jwt`, or `JWT` for an ID token).
    /// [`KeyError::NotSigningYet`] while the algorithm's only key waits to
    /// sign.
    pub async fn sign(&self, alg: SigningAlg, typ: &str, claims: &impl Serialize) -> Result<String, KeyError> {
        let key = self.signing_key(alg).await?;
        let mut header = Header::new(jwt_alg(alg));
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_owned());
        key.signer.sign(&header, claims).map_err(KeyError::Sign)
    }

    /// Verifies a token we signed, now; returns its header and claims. See
    /// [`KeyRing`] for what it checks. A token refused is
    /// [`KeyError::Rejected`]; any other error is ours.
    pub async fn verify(&self, token: &str, issuer: &str) -> Result<(Header, Value), KeyError> {
        self.verify_at(token, issuer, Timestamp::now()).await
    }

    /// [`KeyRing::verify`] at `now` (for `exp`).
    pub async fn verify_at(&self, token: &str, issuer: &str, now: Timestamp) -> Result<(Header, Value), KeyError> {
        self.verify_when(token, issuer, Some(now)).await
    }

    /// The signature and `iss` of a token we signed, at any time and with
    /// or without `exp` (a stored message to sign again: its claims are
    /// ours only if our key signed them).
    pub async fn verify_signed_by_us(&self, token: &str, issuer: &str) -> Result<(Header, Value), KeyError> {
        self.verify_when(token, issuer, None).await
    }

    async fn verify_when(
        &self,
        token: &str,
        issuer: &str,
        now: Option<Timestamp>,
    ) -> Result<(Header, Value), KeyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
        let kid = header.kid.as_deref().ok_or(Rejection::Malformed)?;
        let key = match self.snapshot().published(kid) {
            Some(key) => key,
            None => {
                if self.may_refresh_for_unknown_kid()
                    && let Err(e) = self.refresh().await
                {
                    tracing::warn!(error = %e, "cannot reload the signing keys");
                }
                self.snapshot().published(kid).ok_or(Rejection::UnknownKid)?
            }
        };
        if header.alg != jwt_alg(key.alg) {
            return Err(Rejection::WrongAlg.into());
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let (header, claims, seen) = match (self.inner.verified.get(&digest), &key.es256) {
            (Some(known), _) => (known.0.clone(), known.1.clone(), true),
            (None, Some(es256)) => (header, verify_es256(es256, token)?, false),
            (None, None) => {
                let mut validation = Validation::new(jwt_alg(key.alg));
                validation.required_spec_claims.clear();
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation.validate_aud = false;
                let data =
                    jsonwebtoken::decode::<Value>(token, &key.decoding, &validation).map_err(|e| match e.kind() {
                        JwtErrorKind::InvalidSignature => Rejection::BadSignature,
                        JwtErrorKind::InvalidAlgorithm => Rejection::WrongAlg,
                        _ => Rejection::Malformed,
                    })?;
                (data.header, data.claims, false)
            }
        };
        let timed = match now {
            Some(now) => {
                let exp = claims.get("exp").and_then(Value::as_i64).ok_or(Rejection::Malformed)?;
                if now.0 > exp.saturating_add(VERIFY_LEEWAY) {
                    return Err(Rejection::Expired.into());
                }
                Some((exp, now))
            }
            None => None,
        };
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(Rejection::WrongIssuer.into());
        }
        if let Some((exp, now)) = timed
            && !seen
        {
            self.inner.verified.insert(digest, &header, &claims, exp, now);
        }
        Ok((header, claims))
    }

    /// The published keys as a JWK Set (RFC 7517 §5), newest first: `kty`,
    /// `crv`/`x`/`y` or `n`/`e`, `kid`, `alg`, `use: "sig"`. Never a private
    /// member.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.snapshot().published.iter().map(|k| k.jwk.to_json()).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The kid that signs for `alg` now, if there is a key of it yet.
    pub fn current_kid(&self, alg: SigningAlg) -> Option<String> {
        self.snapshot().signing.get(&alg).map(|k| k.kid.clone())
    }

    pub(super) fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn may_refresh_for_unknown_kid(&self) -> bool {
        let mut last = self.inner.kid_refresh.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < UNKNOWN_KID_REFRESH) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The current key of `alg`. If there is none, reload (its time may have
    /// come, or a key may have been added); if there still is none, make
    /// one (pre-published: it signs later), and refuse meanwhile.
    async fn signing_key(&self, alg: SigningAlg) -> Result<Arc<SigningKey>, KeyError> {
        if let Some(key) = self.snapshot().signing.get(&alg) {
            return Ok(key.clone());
        }
        self.refresh().await?;
        let snapshot = self.snapshot();
        if !snapshot.waiting.contains_key(&alg) && !snapshot.signing.contains_key(&alg) {
            // Its keys were deleted by hand.
            self.make_missing_keys().await?;
        }
        let snapshot = self.snapshot();
        if let Some(key) = snapshot.signing.get(&alg) {
            return Ok(key.clone());
        }
        Err(match snapshot.waiting.get(&alg) {
            Some(signs_from) => KeyError::NotSigningYet {
                alg: alg.as_str(),
                signs_from: *signs_from,
            },
            None => KeyError::Generate {
                alg: alg.as_str(),
                reason: "no key of it in the store".to_owned(),
            },
        })
    }
}
