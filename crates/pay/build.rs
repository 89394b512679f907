//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the
//! files but cannot tell Cargo to watch the folders.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
