//! The sites' own sessions: in memory, keyed by a random cookie value. A
//! session exists from a visitor's first login attempt (it holds the
//! pending logins) or first proof of payment; it is signed in once a login
//! finished. Back-channel logout and security events end sessions by the
//! issuer's session id (`sid`) or by user (`sub`). A credential change
//! (a password reset or change at the IdP) ends nothing: it marks the
//! user's sessions to be checked with the IdP again ([`Session::recheck`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use gatehouse_relier::{PendingLogin, Tokens};

/// At most this many sessions are kept; past it, the idlest go first.
const MAX_SESSIONS: usize = 10_000;
/// A session unused this long is forgotten (seconds).
const IDLE_TIMEOUT: i64 = 12 * 3600;
/// Logins under way in one session (tabs), at most.
const MAX_PENDING: usize = 8;
/// A login attempt older than this is forgotten (seconds).
const PENDING_TIMEOUT: i64 = 600;

/// Who is signed in.
#[derive(Clone, Debug)]
pub struct User {
    pub subject: String,
    pub sid: Option<String>,
    pub email: Option<String>,
    pub id_token: String,
    pub tokens: Tokens,
    /// When this login finished here (Unix seconds).
    pub signed_in_at: i64,
}

/// A login under way: what to check on return, and where to go then.
#[derive(Clone, Debug)]
pub struct Pending {
    pub login: PendingLogin,
    /// A local path.
    pub next: String,
    /// `prompt=none`: a refusal is quiet.
    pub silent: bool,
    /// A check of a marked session: a silent refusal goes on to an
    /// interactive login instead of back to `next`.
    pub recheck: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Session {
    pub user: Option<User>,
    /// By `state`.
    pub pending: HashMap<String, Pending>,
    /// Contract hashes proven paid in this session, with the buyer (`sub`).
    pub paid: HashMap<String, String>,
    /// The token the site's forms carry.
    pub csrf: String,
    pub last_seen: i64,
    /// The user's credentials changed at the IdP: before the next page,
    /// the IdP is asked again (`prompt=none`, then a login if it must).
    pub recheck: bool,
}

impl Session {
    pub fn add_pending(&mut self, pending: Pending, now: i64) {
        self.pending
            .retain(|_, p| now.saturating_sub(p.login.started_at) < PENDING_TIMEOUT);
        if self.pending.len() >= MAX_PENDING
            && let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.login.started_at)
                .map(|(k, _)| k.clone())
        {
            self.pending.remove(&oldest);
        }
        self.pending.insert(pending.login.state.clone(), pending);
    }
}

/// The sessions of one site.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// A random token: 32 bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session of this cookie value, if it is alive (and marks it used).
    pub fn get(&self, id: &str, now: i64) -> Option<Session> {
        let mut map = self.lock();
        let session = map.get_mut(id)?;
        if now.saturating_sub(session.last_seen) > IDLE_TIMEOUT {
            map.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Changes the session `id` (if alive) with `f`.
    pub fn update<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        self.lock().get_mut(id).map(f)
    }

    /// A new, empty session; returns its cookie value.
    pub fn create(&self, now: i64) -> String {
        let id = random_token();
        let session = Session {
            csrf: random_token(),
            last_seen: now,
            ..Session::default()
        };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| now.saturating_sub(s.last_seen) <= IDLE_TIMEOUT);
        }
        if map.len() >= MAX_SESSIONS
            && let Some(idlest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone())
        {
            map.remove(&idlest);
        }
        map.insert(id.clone(), session);
        id
    }

    /// Signs the session `id` in as `user`, under a new cookie value (the
    /// old one, which a visitor had before logging in, stops working).
    /// What it proved paid is kept. Returns the new cookie value.
    pub fn sign_in(&self, id: &str, user: User, now: i64) -> String {
        let mut map = self.lock();
        let mut session = map.remove(id).unwrap_or_default();
        // Proofs of another buyer do not carry over to this one.
        session.paid.retain(|_, buyer| *buyer == user.subject);
        session.user = Some(user);
        session.recheck = false;
        session.csrf = random_token();
        session.last_seen = now;
        let new_id = random_token();
        map.insert(new_id.clone(), session);
        new_id
    }

    pub fn remove(&self, id: &str) -> Option<Session> {
        self.lock().remove(id)
    }

    /// Ends the signed-in sessions that match: by the issuer's session id
    /// (and user, when given), else every session of the user. Returns how
    /// many ended.
    pub fn end(&self, sub: Option<&str>, sid: Option<&str>) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| {
            let Some(user) = &s.user else { return true };
            let matches = match (sid, sub) {
                (Some(sid), sub) => user.sid.as_deref() == Some(sid) && sub.is_none_or(|sub| user.subject == sub),
                (None, Some(sub)) => user.subject == sub,
                (None, None) => false,
            };
            !matches
        });
        before - map.len()
    }

    /// Marks every signed-in session of `sub` to be checked with the IdP
    /// again before its next page. Returns how many were marked.
    pub fn mark_for_recheck(&self, sub: &str) -> usize {
        let mut map = self.lock();
        let mut marked = 0;
        for s in map.values_mut() {
            if s.user.as_ref().is_some_and(|u| u.subject == sub) {
                s.recheck = true;
                marked += 1;
            }
        }
        marked
    }

    /// Forgets, in every session, that contract `hash` was paid (it was
    /// refunded). Returns in how many sessions it was remembered.
    pub fn forget_paid(&self, hash: &str) -> usize {
        self.lock().values_mut().filter_map(|s| s.paid.remove(hash)).count()
    }

    /// The distinct users signed in now (for tests and the log).
    pub fn signed_in_users(&self) -> HashSet<String> {
        self.lock()
            .values()
            .filter_map(|s| s.user.as_ref().map(|u| u.subject.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(sub: &str, sid: &str) -> User {
        User {
            subject: sub.into(),
            sid: Some(sid.into()),
            email: None,
            id_token: String::new(),
            tokens: Tokens {
                access_token: String::new(),
                refresh_token: None,
                expires_at: 0,
                scope: None,
            },
            signed_in_at: 0,
        }
    }

    #[test]
    fn sessions_end_by_sid_or_by_user() {
        let sessions = Sessions::default();
        let a1 = sessions.create(0);
        let a1 = sessions.sign_in(&a1, user("alice", "s1"), 0);
        let a2 = sessions.create(0);
        let a2 = sessions.sign_in(&a2, user("alice", "s2"), 0);
        let b = sessions.create(0);
        let b = sessions.sign_in(&b, user("bob", "s3"), 0);
        let anonymous = sessions.create(0);

        assert_eq!(sessions.end(Some("bob"), Some("s1")), 0, "sid and sub must both match");
        assert_eq!(sessions.end(None, Some("s1")), 1);
        assert!(sessions.get(&a1, 0).is_none());
        assert!(sessions.get(&a2, 0).is_some());
        assert_eq!(sessions.end(Some("alice"), None), 1);
        assert!(sessions.get(&a2, 0).is_none());
        assert!(sessions.get(&b, 0).is_some());
        assert!(sessions.get(&anonymous, 0).is_some());
        assert_eq!(sessions.end(None, None), 0);
    }

    #[test]
    fn a_credential_change_marks_the_users_sessions_and_a_login_clears_the_mark() {
        let sessions = Sessions::default();
        let a = sessions.create(0);
        sessions.update(&a, |s| s.paid.insert("h1".into(), "alice".into()));
        let a = sessions.sign_in(&a, user("alice", "s1"), 0);
        let b = sessions.create(0);
        let b = sessions.sign_in(&b, user("bob", "s2"), 0);
        let anonymous = sessions.create(0);

        assert_eq!(sessions.mark_for_recheck("alice"), 1);
        let marked = sessions.get(&a, 0).unwrap();
        assert!(marked.recheck && marked.user.is_some(), "marked, not ended");
        assert!(!sessions.get(&b, 0).unwrap().recheck);
        assert!(!sessions.get(&anonymous, 0).unwrap().recheck);

        let again = sessions.sign_in(&a, user("alice", "s1"), 1);
        let s = sessions.get(&again, 1).unwrap();
        assert!(!s.recheck, "the login that answers the check clears the mark");
        assert_eq!(s.paid.keys().collect::<Vec<_>>(), ["h1"], "the place is kept");
    }

    #[test]
    fn signing_in_changes_the_cookie_and_keeps_only_own_proofs() {
        let sessions = Sessions::default();
        let id = sessions.create(0);
        sessions.update(&id, |s| {
            s.paid.insert("h1".into(), "alice".into());
            s.paid.insert("h2".into(), "bob".into());
        });
        let new_id = sessions.sign_in(&id, user("alice", "s1"), 5);
        assert_ne!(id, new_id);
        assert!(sessions.get(&id, 5).is_none());
        let s = sessions.get(&new_id, 5).unwrap();
        assert_eq!(s.paid.keys().collect::<Vec<_>>(), ["h1"]);
        assert!(
            sessions.get(&new_id, 5 + IDLE_TIMEOUT + 1).is_none(),
            "idle sessions end"
        );
    }
}
