//! The token endpoint (`POST /token`, RFC 6749 §3.2): parses the form,
//! authenticates the client, checks the DPoP proof if there is one (RFC 9449
//! §5: it must carry our nonce; the tokens issued are then bound to its
//! key), and hands the request to the module of its grant type. Each grant
//! module is the whole story of its grant.

mod authorization_code;
mod client_credentials;
mod refresh_token;
mod token_exchange;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::dpop::VerifiedProof;
use gatehouse_core::oauth::{ErrorCode, GrantType, OAuthError};

use super::client_auth;
use super::dpop::{self, NoncePolicy};
use super::error::json_error_to;
use crate::AppState;

/// Parameters that may appear more than once: RFC 8707 `resource`, RFC 8693
/// `audience`.
const REPEATABLE: [&str; 2] = ["resource", "audience"];

/// A form body. Any other parameter appearing twice is `invalid_request`
/// (RFC 6749 §3.2).
#[derive(Debug, Default)]
pub struct Form {
    single: BTreeMap<String, String>,
    repeated: BTreeMap<String, Vec<String>>,
}

impl Form {
    pub fn get(&self, key: &str) -> Option<&String> {
        self.single.get(key)
    }

    /// Every value of a repeatable parameter.
    pub fn all(&self, key: &str) -> &[String] {
        self.repeated.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.single.remove(key)
    }
}

pub fn parse_form(body: &[u8]) -> Result<Form, OAuthError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| OAuthError::invalid_request("malformed form body"))?;
    let mut form = Form::default();
    for (k, v) in pairs {
        if REPEATABLE.contains(&k.as_str()) {
            form.repeated.entry(k).or_default().push(v);
        } else if form.single.insert(k.clone(), v).is_some() {
            return Err(OAuthError::invalid_request(format!("parameter {k} is repeated")));
        }
    }
    Ok(form)
}

pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let response = match handle(&state, &headers, &body).await {
        Ok(response) => response,
        Err(e) => json_error_to(&headers, &body, &e),
    };
    if headers.contains_key(dpop::DPOP) {
        // RFC 9449 §8: the nonce for the next request, with every answer
        // (and `use_dpop_nonce` needs it).
        dpop::with_nonce(response, &state, Timestamp::now())
    } else {
        response
    }
}

/// The request's DPoP proof, checked for `POST` on our token endpoint with
/// a nonce required, and its `jti` recorded.
async fn proof(state: &AppState, headers: &HeaderMap) -> Result<Option<VerifiedProof>, OAuthError> {
    let Some(proof) = dpop::proof_header(headers)? else {
        return Ok(None);
    };
    let url = state.settings.url("/token");
    let request = dpop::Request {
        method: "POST",
        url: &url,
        access_token: None,
        nonce: NoncePolicy::Required,
    };
    dpop::verify(state, proof, &request, Timestamp::now()).await.map(Some)
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, OAuthError> {
    let params = parse_form(body)?;
    let client = client_auth::authenticate(state, headers, &params).await?;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let grant = GrantType::parse(grant_type)
        // The short names are for the command line, not the wire.
        .filter(|g| g.as_str() == grant_type)
        .ok_or_else(|| OAuthError::new(ErrorCode::UnsupportedGrantType, "unsupported grant_type"))?;
    if !client.allows(grant) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client may not use this grant type",
        ));
    }
    // Before the grant: a request refused for its proof (e.g. to get a
    // nonce) uses up nothing, and can be sent again.
    let proof = proof(state, headers).await?;
    let proof = proof.as_ref();
    let response = match grant {
        GrantType::AuthorizationCode => authorization_code::exchange(state, &client, &params, proof).await?,
        GrantType::RefreshToken => refresh_token::exchange(state, &client, &params, proof).await?,
        GrantType::ClientCredentials => client_credentials::exchange(state, &client, &params, proof).await?,
        GrantType::TokenExchange => token_exchange::exchange(state, &client, &params, proof).await?,
    };
    Ok(response.into_response())
}
