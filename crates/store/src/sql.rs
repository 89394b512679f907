//! What every area's SQL shares: the cache counters, the purge's chunk,
//! error kinds, and decoding stored values. Each area keeps its own SQL
//! and rows (`accounts/sql.rs`, `sessions.rs`, `oauth/sql.rs`, ...), one
//! text for both databases: SQLite accepts PostgreSQL's `$1` parameters,
//! `ON CONFLICT ... DO UPDATE`, `RETURNING` and `WITH RECURSIVE` (also
//! before `UPDATE`), and both schemas (`migrations/*/`) use the same
//! column types.

use crate::StoreError;
use gatehouse_core::Email;
use gatehouse_core::oauth::Scopes;
use gatehouse_core::oauth::client::SigningAlg;

/// `$1` the row (`cache.rs`): in the transaction of every write to its table.
pub const BUMP_GENERATION: &str = "UPDATE generations SET value = value + 1 WHERE name = $1";
pub const GENERATION: &str = "SELECT value FROM generations WHERE name = $1";

/// At most this many rows per purge statement, so that a purge never holds
/// the writer long; the purge repeats until a statement deletes fewer.
pub const PURGE_CHUNK: i64 = 1_000;

/// Whether the statement broke a UNIQUE constraint (or primary key).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

pub fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_foreign_key_violation())
}

pub(crate) fn corrupt(table: &str, key: &str, what: String) -> StoreError {
    StoreError::Corrupt(format!("{table} {key}: {what}"))
}

pub(crate) fn parse_email(stored: &str, table: &str, key: &str) -> Result<Email, StoreError> {
    Email::parse(stored).map_err(|e| corrupt(table, key, format!("bad email {stored:?}: {e}")))
}

/// A list of strings as stored: a JSON array.
pub fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    serde_json::Value::from(
        items
            .iter()
            .map(|s| serde_json::Value::from(s.as_ref()))
            .collect::<Vec<_>>(),
    )
    .to_string()
}

pub(crate) fn parse_list(stored: &str, table: &str, key: &str, column: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(stored)
        .map_err(|e| corrupt(table, key, format!("{column} is not a JSON array of strings: {e}")))
}

pub(crate) fn parse_scopes(stored: &str, table: &str, key: &str) -> Result<Scopes, StoreError> {
    Scopes::parse(stored).map_err(|e| corrupt(table, key, format!("bad scopes {stored:?}: {e}")))
}

pub(crate) fn parse_alg(stored: &str, table: &str, key: &str) -> Result<SigningAlg, StoreError> {
    SigningAlg::parse(stored).ok_or_else(|| corrupt(table, key, format!("unknown algorithm {stored:?}")))
}
