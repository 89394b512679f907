//! The accounts' and mailed codes' SQL and rows, and the account
//! columns of joined reads (`account_*`).

use crate::bans::BanPart;
use crate::sql::{corrupt, parse_email};
use crate::{AccountBans, StoreError};
use gatehouse_core::code::{CodePurpose, OneTimeCode};
use gatehouse_core::{Account, AccountId, Profile, Secret, Timestamp, TokenDigest};

pub const INSERT_ACCOUNT: &str = "\
    INSERT INTO accounts (id, email, email_verified, password_hash, created_at, updated_at, \
                          name, given_name, family_name, preferred_username, locale, zoneinfo, \
                          profile_updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// The columns of [`AccountRow`] (one literal, so that `concat!` can use it).
macro_rules! account_columns {
    () => {
        "id, email, email_verified, password_hash, created_at, updated_at, \
         name, given_name, family_name, preferred_username, locale, zoneinfo, profile_updated_at "
    };
}

pub const ACCOUNT_BY_ID: &str = concat!("SELECT ", account_columns!(), "FROM accounts WHERE id = $1");

pub const ACCOUNT_BY_EMAIL: &str = concat!("SELECT ", account_columns!(), "FROM accounts WHERE email = $1");

/// Replaces the profile. `$1` account, `$2`..`$7` name, given_name,
/// family_name, preferred_username, locale, zoneinfo, `$8` now (also its
/// `updated_at`).
pub const SET_PROFILE: &str = "\
    UPDATE accounts SET name = $2, given_name = $3, family_name = $4, preferred_username = $5, \
        locale = $6, zoneinfo = $7, profile_updated_at = $8, updated_at = $8 WHERE id = $1";

/// `$1` account, `$2` hash, `$3` now.
pub const SET_PASSWORD: &str = "\
    UPDATE accounts SET password_hash = $2, updated_at = $3 WHERE id = $1";

/// Verifies the address only if it is still the account's address (the code
/// may have been sent to an address changed since). `$1` account, `$2` the
/// code's address, `$3` now.
pub const VERIFY_EMAIL: &str = "\
    UPDATE accounts SET email_verified = TRUE, updated_at = $3 WHERE id = $1 AND email = $2";

/// `$1` account, `$2` new address, `$3` now. May break `accounts.email`'s
/// uniqueness: the caller maps that to "taken".
pub const CHANGE_EMAIL: &str = "\
    UPDATE accounts SET email = $2, email_verified = TRUE, updated_at = $3 WHERE id = $1";

pub const DELETE_ACCOUNT: &str = "DELETE FROM accounts WHERE id = $1";

pub const INSERT_CODE: &str = "\
    INSERT INTO one_time_codes (id, purpose, account_id, email, code_digest, link_digest, \
                                created_at, expires_at, used_at, attempts) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Earlier codes stop working when a new one is sent. `$1` account,
/// `$2` purpose, `$3` the new code's creation time.
pub const RETIRE_CODES: &str = "\
    UPDATE one_time_codes SET used_at = $3 \
    WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL";

/// Used or not: the caller applies the core rules.
pub const CODE_BY_LINK: &str = "\
    SELECT id, purpose, account_id, email, code_digest, link_digest, \
           created_at, expires_at, used_at, attempts \
    FROM one_time_codes WHERE link_digest = $1 AND purpose = $2";

/// Newest unused; the id breaks ties so the answer is stable.
pub const LATEST_CODE: &str = "\
    SELECT id, purpose, account_id, email, code_digest, link_digest, \
           created_at, expires_at, used_at, attempts \
    FROM one_time_codes WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL \
    ORDER BY created_at DESC, id DESC LIMIT 1";

/// `$1` code, `$2` the guesses a code allows.
pub const RESERVE_CODE_ATTEMPT: &str = "\
    UPDATE one_time_codes SET attempts = attempts + 1 \
    WHERE id = $1 AND used_at IS NULL AND attempts < $2";

/// Affects no row if someone used the code first. `$1` code, `$2` now.
pub const USE_CODE: &str = "\
    UPDATE one_time_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL";

pub const DELETE_CODES_OF: &str = "DELETE FROM one_time_codes WHERE account_id = $1";

/// The columns of [`AccountPart`] and [`BanPart`] for a read that joins
/// `accounts a` and `bans b` (one literal, so that `concat!` can use it).
macro_rules! account_and_ban_columns {
    () => {
        "a.email AS account_email, a.email_verified AS account_email_verified, \
         a.password_hash AS account_password_hash, a.created_at AS account_created_at, \
         a.updated_at AS account_updated_at, \
         a.name AS account_name, a.given_name AS account_given_name, \
         a.family_name AS account_family_name, a.preferred_username AS account_preferred_username, \
         a.locale AS account_locale, a.zoneinfo AS account_zoneinfo, \
         a.profile_updated_at AS account_profile_updated_at, \
         b.client_id AS ban_client_id, b.until AS ban_until, b.reason AS ban_reason, \
         b.by_whom AS ban_by_whom, b.created_at AS ban_created_at "
    };
}
pub(crate) use account_and_ban_columns;

#[derive(sqlx::FromRow)]
pub struct AccountRow {
    id: String,
    email: String,
    email_verified: bool,
    password_hash: String,
    created_at: i64,
    updated_at: i64,
    #[sqlx(flatten)]
    profile: ProfileColumns,
}

/// The profile columns of `accounts`.
#[derive(sqlx::FromRow)]
pub struct ProfileColumns {
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    preferred_username: Option<String>,
    locale: Option<String>,
    zoneinfo: Option<String>,
    profile_updated_at: Option<i64>,
}

impl From<ProfileColumns> for Profile {
    fn from(c: ProfileColumns) -> Self {
        Profile {
            name: c.name,
            given_name: c.given_name,
            family_name: c.family_name,
            preferred_username: c.preferred_username,
            locale: c.locale,
            zoneinfo: c.zoneinfo,
            updated_at: c.profile_updated_at.map(Timestamp),
        }
    }
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRow) -> Result<Self, StoreError> {
        Ok(Account {
            email: parse_email(&row.email, "account", &row.id)?,
            id: AccountId(row.id),
            email_verified: row.email_verified,
            password_hash: Secret::new(row.password_hash),
            created_at: Timestamp(row.created_at),
            updated_at: Timestamp(row.updated_at),
            profile: row.profile.into(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct CodeRow {
    id: String,
    purpose: String,
    account_id: String,
    email: String,
    code_digest: String,
    link_digest: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    attempts: i32,
}

impl TryFrom<CodeRow> for OneTimeCode {
    type Error = StoreError;

    fn try_from(row: CodeRow) -> Result<Self, StoreError> {
        let purpose = CodePurpose::parse(&row.purpose)
            .ok_or_else(|| corrupt("one_time_codes", &row.id, format!("unknown purpose {:?}", row.purpose)))?;
        let attempts = u32::try_from(row.attempts)
            .map_err(|_| corrupt("one_time_codes", &row.id, format!("negative attempts {}", row.attempts)))?;
        Ok(OneTimeCode {
            email: parse_email(&row.email, "one_time_codes", &row.id)?,
            id: row.id,
            purpose,
            account_id: AccountId(row.account_id),
            code_digest: TokenDigest(row.code_digest),
            link_digest: TokenDigest(row.link_digest),
            created_at: Timestamp(row.created_at),
            expires_at: Timestamp(row.expires_at),
            used_at: row.used_at.map(Timestamp),
            attempts,
        })
    }
}

/// The account columns of a joined read (`account_*`), NULL when a LEFT
/// JOIN found no account.
#[derive(sqlx::FromRow)]
pub struct AccountPart {
    account_email: Option<String>,
    account_email_verified: Option<bool>,
    account_password_hash: Option<String>,
    account_created_at: Option<i64>,
    account_updated_at: Option<i64>,
    account_name: Option<String>,
    account_given_name: Option<String>,
    account_family_name: Option<String>,
    account_preferred_username: Option<String>,
    account_locale: Option<String>,
    account_zoneinfo: Option<String>,
    account_profile_updated_at: Option<i64>,
}

impl AccountPart {
    pub fn into_account(self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let (Some(email), Some(email_verified), Some(hash), Some(created_at), Some(updated_at)) = (
            self.account_email,
            self.account_email_verified,
            self.account_password_hash,
            self.account_created_at,
            self.account_updated_at,
        ) else {
            return Ok(None);
        };
        AccountRow {
            id: id.as_str().to_owned(),
            email,
            email_verified,
            password_hash: hash,
            created_at,
            updated_at,
            profile: ProfileColumns {
                name: self.account_name,
                given_name: self.account_given_name,
                family_name: self.account_family_name,
                preferred_username: self.account_preferred_username,
                locale: self.account_locale,
                zoneinfo: self.account_zoneinfo,
                profile_updated_at: self.account_profile_updated_at,
            },
        }
        .try_into()
        .map(Some)
    }
}

/// Gathers the rows of a joined read (one per ban) into the
/// account and its bans.
pub fn account_bans(
    id: &AccountId,
    first: AccountPart,
    bans: impl Iterator<Item = BanPart>,
    first_ban: BanPart,
) -> Result<Option<AccountBans>, StoreError> {
    let Some(account) = first.into_account(id)? else {
        return Ok(None);
    };
    let bans = std::iter::once(first_ban)
        .chain(bans)
        .filter_map(|b| b.into_ban(id))
        .collect();
    Ok(Some(AccountBans { account, bans }))
}
