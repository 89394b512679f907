//! The authorization request and its ordered checks.
