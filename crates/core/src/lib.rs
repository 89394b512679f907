//! Gatehouse's domain and protocol rules. No I/O lives here: no sockets, no
//! database, no clock reads inside a rule (callers pass `now`). Everything in
//! this crate can be tested without a server.

pub mod account;
pub mod audit;
pub mod backoff;
pub mod ban;
pub mod code;
pub mod email;
pub mod oauth;
pub mod password;
pub mod pay;
pub mod protocol;
pub mod return_path;
pub mod secret;
pub mod session;
pub mod throttle;
pub mod time;
pub mod token;

pub use account::{Account, AccountId, Profile, ProfileInput};
pub use audit::{AuditEvent, AuditKind, Outcome};
pub use email::Email;
pub use secret::Secret;
pub use time::Timestamp;
pub use token::{OpaqueToken, TokenDigest};
