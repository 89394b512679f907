//! Passwords: the policy (NIST SP 800-63B §3.1.1.2: length, not composition,
//! and no commonly used values) and Argon2id hashing with OWASP parameters.
//!
//! Hashing is CPU-bound and slow on purpose (tens of milliseconds): callers
//! on an async runtime run these functions on a blocking thread.

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::collections::HashSet;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use crate::{Email, Secret};

/// SP 800-63B: at least 8 characters.
pub const MIN_LEN: usize = 8;
/// SP 800-63B asks to allow at least 64; we allow far more, and stop there so
/// a request cannot make us hash megabytes.
pub const MAX_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    #[error("Use at least {MIN_LEN} characters.")]
    TooShort,
    #[error("Use at most {MAX_LEN} characters.")]
    TooLong,
    #[error("That password is one of the most commonly used ones. Choose another.")]
    Common,
    #[error("Do not use your email address as your password.")]
    SameAsEmail,
}

/// The 10,000 most common passwords of eight characters or more, from the
/// zxcvbn frequency lists (MIT licence).
fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| include_str!("../data/common-passwords.txt").lines().collect())
}

/// Checks a new password against the policy. Length counts characters
/// (Unicode scalar values), not bytes, as SP 800-63B asks.
pub fn check_policy(password: &str, email: Option<&Email>) -> Result<(), PasswordRejected> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(PasswordRejected::TooShort);
    }
    if len > MAX_LEN {
        return Err(PasswordRejected::TooLong);
    }
    let lowered = password.to_lowercase();
    if common_passwords().contains(lowered.as_str()) {
        return Err(PasswordRejected::Common);
    }
    if let Some(email) = email {
        let local = email.as_str().split('@').next().unwrap_or_default();
        if lowered == email.as_str() || lowered == local {
            return Err(PasswordRejected::SameAsEmail);
        }
    }
    Ok(())
}

/// Argon2id, m = 19 MiB, t = 2, p = 1: the OWASP Password Storage Cheat
/// Sheet's first recommendation.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password into a PHC string with a fresh random salt.
pub fn hash(password: &Secret<String>) -> Result<Secret<String>, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let argon = argon2();
    let output = compute(&argon, password.expose().as_bytes(), salt.as_salt()).map_err(|e| HashError(e.to_string()))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|e| HashError(e.to_string()))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(Secret::new(phc.to_string()))
}

/// Verifies a password against a stored PHC string. When there is no
/// account, pass `None`: a dummy hash is checked instead so that the time
/// taken does not tell whether the account exists.
pub fn verify(password: &Secret<String>, stored: Option<&Secret<String>>) -> bool {
    let dummy = dummy_hash();
    let (phc, real) = match stored {
        Some(s) => (s.expose().as_str(), true),
        None => (dummy, false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ok = verify_parsed(password.expose().as_bytes(), &parsed);
    ok && real
}

/// What `PasswordVerifier::verify_password` does, with pooled memory: the
/// stored hash's own algorithm, version and parameters, then a
/// constant-time comparison of the outputs.
fn verify_parsed(password: &[u8], stored: &PasswordHash<'_>) -> bool {
    let (Some(expected), Some(salt)) = (&stored.hash, stored.salt) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm) else {
        return false;
    };
    let version = match stored.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    // Includes the output length: the stored hash's.
    let Ok(params) = Params::try_from(stored) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    compute(&argon, password, salt).is_ok_and(|out| out == *expected)
}

/// The Argon2 computation itself, in working memory from [`MEMORY`].
fn compute(argon: &Argon2<'_>, password: &[u8], salt: Salt<'_>) -> argon2::password_hash::Result<Output> {
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let len = argon.params().output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut memory = MEMORY.take(argon.params().block_count());
    Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password, salt, out, memory.blocks())
            .map_err(Into::into)
    })
}

/// Argon2's working memory (19 MiB per hash), kept and reused, and at most
/// one per core in use at once: more hashes at a time would not finish
/// sooner on the same cores, and each freshly allocated 19 MiB block tends
/// to stay in the allocator's heap after it is freed, so the process would
/// grow with every burst of logins. A hash that finds every block in use
/// waits (callers run on blocking threads).
static MEMORY: MemoryPool = MemoryPool {
    state: Mutex::new(PoolState {
        free: Vec::new(),
        made: 0,
    }),
    returned: Condvar::new(),
};

struct MemoryPool {
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    free: Vec<Vec<Block>>,
    made: usize,
}

struct Lease {
    pool: &'static MemoryPool,
    blocks: Vec<Block>,
    needed: usize,
}

impl Lease {
    fn blocks(&mut self) -> &mut [Block] {
        &mut self.blocks[..self.needed]
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let blocks = std::mem::take(&mut self.blocks);
        let mut state = self.pool.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.free.push(blocks);
        self.pool.returned.notify_one();
    }
}

impl MemoryPool {
    fn capacity() -> usize {
        static CAPACITY: OnceLock<usize> = OnceLock::new();
        *CAPACITY.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8))
    }

    /// Memory for `needed` blocks: a kept buffer (grown if too small), a new
    /// one while fewer than [`MemoryPool::capacity`] exist, or the next one
    /// returned.
    fn take(&'static self, needed: usize) -> Lease {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut blocks = loop {
            if let Some(blocks) = state.free.pop() {
                break blocks;
            }
            if state.made < Self::capacity() {
                state.made += 1;
                break Vec::new();
            }
            state = self.returned.wait(state).unwrap_or_else(PoisonError::into_inner);
        };
        drop(state);
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        Lease {
            pool: self,
            blocks,
            needed,
        }
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash(&Secret::new("gatehouse-dummy-password".to_string()))
            .map(|s| s.expose().clone())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_not_composition() {
        assert_eq!(check_policy("short", None), Err(PasswordRejected::TooShort));
        // Seven characters, even with every class of character, is too short.
        assert_eq!(check_policy("Ab1!Ab1", None), Err(PasswordRejected::TooShort));
        // Lowercase letters only is fine when long enough and not common.
        assert_eq!(check_policy("correct horse battery staple", None), Ok(()));
        assert_eq!(
            check_policy(&"x".repeat(MAX_LEN + 1), None),
            Err(PasswordRejected::TooLong)
        );
        // Characters, not bytes: eight accented letters are 16 bytes but pass.
        assert_eq!(check_policy("éééééééé", None), Ok(()));
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        for common in ["password", "12345678", "PASSWORD", "trustno1", "Baseball"] {
            assert_eq!(check_policy(common, None), Err(PasswordRejected::Common), "{common}");
        }
    }

    #[test]
    fn email_is_not_a_password() {
        let email = Email::parse("wonderful.person@example.com").expect("valid");
        assert_eq!(
            check_policy("wonderful.person@example.com", Some(&email)),
            Err(PasswordRejected::SameAsEmail)
        );
        assert_eq!(
            check_policy("Wonderful.Person", Some(&email)),
            Err(PasswordRejected::SameAsEmail)
        );
    }

    #[test]
    fn hash_and_verify() {
        let pw = Secret::new("a long enough secret".to_string());
        let h = hash(&pw).expect("hashes");
        assert!(h.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&pw, Some(&h)));
        assert!(!verify(&Secret::new("another secret".into()), Some(&h)));
        // No account: never true, even for the dummy's own password.
        assert!(!verify(&Secret::new("gatehouse-dummy-password".into()), None));
        assert!(!verify(&pw, Some(&Secret::new("not a phc string".into()))));
    }

    #[test]
    fn pooled_hashes_are_the_standard_ones() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let pw = Secret::new("a long enough secret".to_string());
        // Ours verifies with the argon2 crate's own verifier...
        let ours = hash(&pw).expect("hashes");
        let parsed = PasswordHash::new(ours.expose()).expect("phc");
        assert!(argon2().verify_password(pw.expose().as_bytes(), &parsed).is_ok());
        // ...and the crate's own hashes (other parameters too) verify with ours.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        for params in [
            Params::new(19 * 1024, 2, 1, None),
            Params::new(8 * 1024, 3, 2, Some(24)),
        ] {
            let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.expect("params"));
            let theirs = argon
                .hash_password(pw.expose().as_bytes(), &salt)
                .expect("hash")
                .to_string();
            assert!(verify(&pw, Some(&Secret::new(theirs.clone()))), "{theirs}");
            assert!(!verify(&Secret::new("wrong".into()), Some(&Secret::new(theirs))));
        }
    }

    #[test]
    fn many_hashes_at_once_share_the_pool() {
        let pw = Secret::new("a long enough secret".to_string());
        let h = hash(&pw).expect("hashes");
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (pw, h) = (pw.clone(), h.clone());
                std::thread::spawn(move || verify(&pw, Some(&h)))
            })
            .collect();
        assert!(threads.into_iter().all(|t| t.join().expect("thread")));
        let state = MEMORY.state.lock().expect("pool");
        assert!(state.made <= MemoryPool::capacity());
    }
}
