//! What the grant rules' table tests (`redeem/tests.rs`, `refresh/tests.rs`)
//! build alike: the user-1 account and a ban on it.

use crate::account::Account;
use crate::ban::Ban;
use crate::oauth::client::ClientId;
use crate::{AccountId, Email, Secret, Timestamp};

/// The account `user-1`, `a@example.com`, verified or not.
pub(crate) fn account(verified: bool) -> Account {
    Account {
        id: AccountId("user-1".into()),
        email: Email::parse("a@example.com").expect("email"),
        email_verified: verified,
        password_hash: Secret::new(String::new()),
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
        profile: Default::default(),
    }
}

/// A ban of `user-1` everywhere (`None`) or at `client`, until `until`
/// (`None`: for good).
pub(crate) fn ban(client: Option<&ClientId>, until: Option<i64>) -> Ban {
    Ban {
        account_id: AccountId("user-1".into()),
        client_id: client.cloned(),
        until: until.map(Timestamp),
        reason: "spam".into(),
        by: "cli".into(),
        created_at: Timestamp(0),
    }
}
