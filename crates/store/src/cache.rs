//! What the store keeps in memory so that the hottest requests do not read
//! the same rows again and again: client records (token, introspection and
//! authorization endpoints), the origins of public clients (CORS on the
//! token endpoint, UserInfo and revocation) and whether a token id was revoked
//! (introspection, every bearer token).
//!
//! Coherence: each cached table has a counter in the `generations` table,
//! bumped in the transaction of every write that could make a cached answer
//! wrong (not the creation of a confidential client: unknown ids are never
//! cached, and only a public client adds an origin). A lookup trusts
//! the cache for [`CHECK_EVERY`] after the last counter check; a lookup that
//! finds the last check older than that reads the counter first (one small
//! query, a few times a second under load) and drops everything if it
//! moved. A write drops this store's cache at once
//! ([`GenerationCache::invalidate`]) and then waits out [`CHECK_EVERY`]
//! before it returns: by then every other process on the database (a
//! server the command line is talking to, another instance on PostgreSQL)
//! has either checked the counter after the commit or will before its next
//! cached answer. So a change is in force everywhere once the command (or
//! the admin API call, or the revocation request) that made it has
//! answered, as DESIGN.md asks of the command line; writes to these tables
//! are rare, and they pay the 100 ms, not the reads.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How stale a cached answer may be with respect to other processes' writes.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// More entries than this and the cache starts over (it only saves reads).
const MAX_ENTRIES: usize = 10_000;

/// The `generations` row of the client records.
pub const CLIENTS: &str = "clients";
/// The `generations` row of the revoked token ids.
pub const REVOKED_JTIS: &str = "revoked_jtis";

#[derive(Debug)]
pub struct GenerationCache<K, V> {
    /// The `generations` row this cache follows.
    pub name: &'static str,
    inner: Mutex<Inner<K, V>>,
}

#[derive(Debug)]
struct Inner<K, V> {
    /// The counter the entries were read under.
    generation: Option<i64>,
    checked_at: Option<Instant>,
    /// Bumped whenever the entries are dropped: a read that started under
    /// another epoch must not be remembered.
    epoch: u64,
    entries: HashMap<K, V>,
}

/// What a lookup found in memory.
pub enum Lookup<V> {
    Hit(V),
    /// Not cached, or the counter must be checked first (`check`): read the
    /// store, then [`GenerationCache::remember`] under `epoch` (after
    /// [`GenerationCache::checked`], under the epoch it returns).
    Miss {
        epoch: u64,
        check: bool,
    },
}

impl<K: Eq + Hash, V: Clone> GenerationCache<K, V> {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            inner: Mutex::new(Inner {
                generation: None,
                checked_at: None,
                epoch: 0,
                entries: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        // Nothing is left half-written by a panic under the lock that
        // matters: the worst is an entry too few.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn lookup(&self, key: &K, now: Instant) -> Lookup<V> {
        let inner = self.lock();
        let fresh = inner.checked_at.is_some_and(|t| now.duration_since(t) < CHECK_EVERY);
        match inner.entries.get(key) {
            Some(value) if fresh => Lookup::Hit(value.clone()),
            _ => Lookup::Miss {
                epoch: inner.epoch,
                check: !fresh,
            },
        }
    }

    /// Records the counter as read at `now` (taken before the read); drops
    /// every entry if it moved. Returns the epoch to remember reads under.
    pub fn checked(&self, generation: i64, now: Instant) -> u64 {
        let mut inner = self.lock();
        if inner.generation != Some(generation) {
            inner.clear();
            inner.generation = Some(generation);
        }
        inner.checked_at = Some(now);
        inner.epoch
    }

    /// Keeps `value`, read from the store under `epoch`, unless the cache
    /// was dropped since.
    pub fn remember(&self, epoch: u64, key: K, value: V) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(key, value);
    }

    /// After a write through this store (committed).
    pub fn invalidate(&self) {
        let mut inner = self.lock();
        inner.clear();
        // The counter moved too: read it again before trusting new entries.
        inner.generation = None;
        inner.checked_at = None;
    }
}

impl<K, V> Inner<K, V> {
    fn clear(&mut self) {
        self.entries.clear();
        self.epoch += 1;
    }
}

/// The caches of a store.
#[derive(Debug)]
pub struct Caches {
    pub clients: GenerationCache<gatehouse_core::oauth::ClientId, gatehouse_core::oauth::Client>,
    /// The origins of public clients' redirect URIs, one set (under `()`),
    /// following the clients' counter: creating a public client bumps it
    /// too, since it adds to the set.
    pub public_origins: GenerationCache<(), std::sync::Arc<std::collections::HashSet<String>>>,
    pub revoked_jtis: GenerationCache<String, bool>,
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            clients: GenerationCache::new(CLIENTS),
            public_origins: GenerationCache::new(CLIENTS),
            revoked_jtis: GenerationCache::new(REVOKED_JTIS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_until_the_counter_moves() {
        let cache = GenerationCache::<u32, &str>::new("t");
        let t0 = Instant::now();
        // Nothing checked yet: a miss that asks for a check.
        assert!(matches!(cache.lookup(&1, t0), Lookup::Miss { check: true, .. }));
        let epoch = cache.checked(7, t0);
        cache.remember(epoch, 1, "one");
        assert!(matches!(cache.lookup(&1, t0), Lookup::Hit("one")));
        // Stale: check again; the same counter keeps the entry.
        let later = t0 + CHECK_EVERY;
        assert!(matches!(cache.lookup(&1, later), Lookup::Miss { check: true, .. }));
        assert_eq!(cache.checked(7, later), epoch);
        assert!(matches!(cache.lookup(&1, later), Lookup::Hit("one")));
        // The counter moved: everything goes, and reads begun before do not
        // come back.
        let moved = cache.checked(8, later);
        assert_ne!(moved, epoch);
        assert!(matches!(cache.lookup(&1, later), Lookup::Miss { check: false, .. }));
        cache.remember(epoch, 1, "stale");
        assert!(matches!(cache.lookup(&1, later), Lookup::Miss { .. }));
        // A local write drops the entries and asks for a check.
        cache.remember(moved, 2, "two");
        cache.invalidate();
        assert!(matches!(cache.lookup(&2, later), Lookup::Miss { check: true, .. }));
        cache.remember(moved, 2, "late");
        let epoch = cache.checked(8, later);
        assert!(matches!(cache.lookup(&2, later), Lookup::Miss { check: false, .. }));
        cache.remember(epoch, 2, "fresh");
        assert!(matches!(cache.lookup(&2, later), Lookup::Hit("fresh")));
    }
}
