//! Operations endpoints: liveness, readiness (the store answers) and
//! metrics, the kit's ([`gatehouse_kit::ops`]) over the IdP's state.

use axum::Router;
use gatehouse_kit::ops::Ops;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    gatehouse_kit::ops::routes()
}

#[async_trait::async_trait]
impl Ops for AppState {
    async fn ready(&self) -> Result<(), String> {
        self.store.ping().await.map_err(|e| e.to_string())
    }

    async fn metrics(&self) -> String {
        self.metrics.encode()
    }
}
