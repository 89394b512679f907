//! Who is asking: the client's address and user agent, for sessions, the
//! audit log and throttling.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::SocketAddr;

use gatehouse_core::audit::Actor;
use gatehouse_core::session::clip_user_agent;

/// The request's address and user agent. Never fails: a request without
/// connection info (an in-process test) is "unknown".
pub struct Client(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(clip_user_agent)
            .unwrap_or_default();
        Ok(Client(Actor { ip, user_agent }))
    }
}
