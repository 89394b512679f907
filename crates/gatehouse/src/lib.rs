//! The `gatehouse` binary's library half: configuration, starting the
//! server, and the command-line commands. `main.rs` only parses the command
//! line and calls in here, so tests can start exactly what the binary runs.

pub mod cli;
pub mod config;
pub mod demo;
pub mod server;

pub use config::Config;
