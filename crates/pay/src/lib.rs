//! The payments service (work in progress).

pub mod store;

pub use store::{Merchant, PayStore, PayStoreError};

/// Opens the payments database the URL names and migrates it.
pub async fn open_store(database_url: &str) -> anyhow::Result<std::sync::Arc<dyn PayStore>> {
    let store = store::connect(database_url).await?;
    store.migrate().await?;
    Ok(store)
}
