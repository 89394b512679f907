//! The integration tests: one binary (link time matters on two cores), a
//! module per area. Each test starts the real server on a random port with a
//! fresh database, and runs once on SQLite and once on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod accounts;
mod admin;
mod bans;
mod browser;
mod cli;
mod cors;
mod dpop;
mod embed;
mod events;
mod exchange;
mod login;
mod logout;
mod marks;
mod oauth;
mod openid_client;
mod ops;
mod pay;
mod pay_standing;
mod profile;
mod reach;
mod relier;
mod slow;
mod spa;
mod story;
mod tidy;
