//! Accounts: the stable user id (`sub`), the email that may change, and the
//! password hash.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{Email, Secret, Timestamp};

/// The user id. Random (UUID v4), never reused, never changes: it is the
/// `sub` every relier keys its users on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub String);

impl AccountId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub email: Email,
    pub email_verified: bool,
    /// PHC string (Argon2id).
    pub password_hash: Secret<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Account {
    /// "Logged in but not ready": an unverified account may finish
    /// verification but gets no tokens for sites.
    pub fn is_ready(&self) -> bool {
        self.email_verified
    }
}
