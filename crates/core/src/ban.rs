//! Bans and suspensions: an administrator refuses a person everywhere (a
//! global ban), until a time (a suspension, which lifts by itself), or at one
//! client only. The rules here say whether a ban is in force for a request.

use crate::oauth::ClientId;
use crate::{AccountId, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub account_id: AccountId,
    /// `None`: everywhere. `Some`: only at this client.
    pub client_id: Option<ClientId>,
    /// `None`: until lifted. `Some`: a suspension that lifts by itself then.
    pub until: Option<Timestamp>,
    pub reason: String,
    /// Who did it (`cli`, or `admin:<client id>`).
    pub by: String,
    pub created_at: Timestamp,
}

/// The longest reason kept.
pub const MAX_REASON_LEN: usize = 500;

impl Ban {
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|until| now < until)
    }

    pub fn is_global(&self) -> bool {
        self.client_id.is_none()
    }

    /// What the person is told when refused.
    pub fn message(&self) -> String {
        match self.until {
            Some(until) => format!(
                "This account is suspended until {} UTC.",
                crate::time::format_utc(until)
            ),
            None => "This account has been closed by an administrator.".to_owned(),
        }
    }
}

/// The ban that refuses the person at `client` (or anywhere, for `None`:
/// signing in to Gatehouse itself), if any.
pub fn blocking<'a>(bans: &'a [Ban], client: Option<&ClientId>, now: Timestamp) -> Option<&'a Ban> {
    bans.iter()
        .filter(|b| b.in_force(now))
        .find(|b| b.is_global() || (client.is_some() && b.client_id.as_ref() == client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(client: Option<&str>, until: Option<i64>) -> Ban {
        Ban {
            account_id: AccountId("a".into()),
            client_id: client.map(|c| ClientId(c.into())),
            until: until.map(Timestamp),
            reason: "fraud".into(),
            by: "cli".into(),
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn a_global_ban_blocks_everything() {
        let bans = [ban(None, None)];
        assert!(blocking(&bans, None, Timestamp(10)).is_some());
        assert!(blocking(&bans, Some(&ClientId("shop".into())), Timestamp(10)).is_some());
    }

    #[test]
    fn a_client_ban_blocks_only_that_client() {
        let bans = [ban(Some("shop"), None)];
        assert!(
            blocking(&bans, None, Timestamp(10)).is_none(),
            "signing in to Gatehouse still works"
        );
        assert!(blocking(&bans, Some(&ClientId("shop".into())), Timestamp(10)).is_some());
        assert!(blocking(&bans, Some(&ClientId("forum".into())), Timestamp(10)).is_none());
    }

    #[test]
    fn a_suspension_lifts_by_itself() {
        let bans = [ban(None, Some(100))];
        assert!(blocking(&bans, None, Timestamp(99)).is_some());
        assert!(blocking(&bans, None, Timestamp(100)).is_none());
        assert!(bans[0].message().contains("suspended until 1970-01-01 00:01"));
        assert!(ban(None, None).message().contains("closed"));
    }
}
