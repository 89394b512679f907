//! The service kit: the plumbing the identity provider and the payments
//! service share, written once.
//!
//! - [`secret`]: the instance secret at rest (a configured value or a file
//!   in the data directory) and the keys derived from it per purpose.
//! - [`seal`]: private keys sealed at rest with AES-256-GCM, the kid as
//!   associated data.
//! - [`outbox`]: the delivery worker over a [`outbox::Queue`] and a
//!   [`outbox::Deliver`]: claim, deliver, back off, give up.
//! - [`pools`]: the SQLite and PostgreSQL connection pools' settings and the
//!   SQLite checkpointer (feature `pools`).
//! - [`outbox_sql`]: the outbox table's delivery bookkeeping, for both
//!   services' stores (feature `pools`).
//! - [`admin`]: admin routes mounted from one table, each behind the guard.
//! - [`headers`]: the security headers of every response.
//! - [`page`]: rendering a page template into a response.
//! - [`ops`]: `/health/live`, `/health/ready`, `/metrics` and the request
//!   counter, over a service's [`ops::Ops`] (feature `ops`).

pub mod admin;
pub mod headers;
#[cfg(feature = "ops")]
pub mod ops;
pub mod outbox;
#[cfg(feature = "pools")]
pub mod outbox_sql;
pub mod page;
#[cfg(feature = "pools")]
pub mod pools;
pub mod seal;
pub mod secret;

pub use secret::InstanceSecret;
