//! `POST /api/contracts`: a merchant offers a buyer a contract. The merchant
//! authenticates with its own client-credentials token (`Authorization:
//! Bearer`, audience the payments service); the buyer is named by a token
//! narrowed for the payments service (`user_token`). The answer is the
//! contract, its hash, its signature and a single-use link to the purchase
//! page (docs/payments.md).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::pay::notification::CONTRACT_TYP;
use gatehouse_core::pay::{ContractTerms, MerchantTerms};
use gatehouse_core::{OpaqueToken, Timestamp};
use gatehouse_relier::{VerifiedToken, VerifyError};
use serde::{Deserialize, Serialize};

use crate::store::{Contract, ContractCreated, Merchant, PurchaseLink};
use crate::web::{ApiError, PayState, bearer};

/// The scope a narrowed user token carries, and nothing else.
pub const PAYMENTS_SCOPE: &str = "payments";
/// How long a purchase link works.
pub const LINK_LIFETIME: i64 = 5 * 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateContract {
    user_token: String,
    terms: MerchantTerms,
}

#[derive(Serialize)]
struct ContractSignature<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    contract_hash: &'a str,
    terms: &'a ContractTerms,
}

/// The merchant behind the request's bearer token.
async fn merchant(state: &PayState, headers: &HeaderMap) -> Result<(VerifiedToken, Merchant), ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::invalid_token("a bearer token is required"))?;
    let verified = match state.verifier.verify(token).await {
        Ok(v) => v,
        Err(VerifyError::Rejected(reason)) => return Err(ApiError::invalid_token(reason.description())),
        Err(VerifyError::Unavailable(e)) => {
            tracing::warn!(error = %e, "payments: cannot check a merchant token");
            return Err(ApiError::unavailable());
        }
    };
    // RFC 9449 §7.2: a DPoP-bound token is not a bearer token, and this
    // API takes bearer tokens only.
    if verified.jkt.is_some() {
        return Err(ApiError::invalid_token(
            "a DPoP-bound token cannot be used as a bearer token here",
        ));
    }
    // A client-credentials token names the client itself as `sub`.
    if verified.subject != verified.client_id || !verified.claims.parent_jtis.is_empty() {
        return Err(ApiError::invalid_token(
            "use the merchant's own client-credentials token",
        ));
    }
    let merchant = state.store.merchant(&verified.client_id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_merchant",
            "this client is not a merchant",
        )
    })?;
    Ok((verified, merchant))
}

fn refuse_user_token(description: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "invalid_user_token", description)
}

/// Checks the narrowed user token: active, for the payments service, scope
/// exactly `payments`, issued to this merchant by token exchange.
async fn buyer(state: &PayState, token: &str, merchant: &str) -> Result<VerifiedToken, ApiError> {
    let verified = match state.verifier.verify(token).await {
        Ok(v) => v,
        Err(VerifyError::Rejected(reason)) => return Err(refuse_user_token(reason.description())),
        Err(VerifyError::Unavailable(e)) => {
            tracing::warn!(error = %e, "payments: cannot check a user token");
            return Err(ApiError::unavailable());
        }
    };
    // Handed over in a body, a DPoP-bound token would lose its binding.
    if verified.jkt.is_some() {
        return Err(refuse_user_token("a DPoP-bound user token cannot be handed over"));
    }
    let scopes: Vec<&str> = verified.scopes.iter().collect();
    if scopes != [PAYMENTS_SCOPE] {
        return Err(refuse_user_token(
            "the user token must carry exactly the payments scope (narrow it)",
        ));
    }
    if verified.claims.parent_jtis.is_empty() {
        return Err(refuse_user_token("the user token must be narrowed by token exchange"));
    }
    if verified.client_id != merchant {
        return Err(refuse_user_token("the user token was issued to another relier"));
    }
    if verified.subject == verified.client_id {
        return Err(refuse_user_token("the user token names no user"));
    }
    Ok(verified)
}

pub async fn create_contract(State(state): State<PayState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &PayState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let (_, merchant) = merchant(state, headers).await?;
    let request: CreateContract =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid_request(format!("malformed request: {e}")))?;
    let user = buyer(state, &request.user_token, &merchant.client_id).await?;
    let terms = request
        .terms
        .into_contract(&merchant.client_id)
        .map_err(|e| ApiError::invalid_request(e.to_string()))?
        .with_fee(&merchant.fee);
    let hash = terms.hash().map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let now = Timestamp::now();
    let contract = Contract {
        hash: hash.clone(),
        sub: user.subject.clone(),
        terms,
        created_at: now,
    };
    let link = OpaqueToken::generate();
    let expires_at = now.plus(LINK_LIFETIME);
    let row = PurchaseLink {
        digest: link.digest().as_str().to_owned(),
        contract_hash: hash.clone(),
        sub: user.subject.clone(),
        expires_at,
    };
    let status = match state.store.create_contract(&contract, &row).await? {
        ContractCreated::New => StatusCode::CREATED,
        ContractCreated::Existing => StatusCode::OK,
        ContractCreated::Taken => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "contract_taken",
                "a contract with these terms belongs to another user",
            ));
        }
    };
    let signature = state
        .keys
        .sign(
            CONTRACT_TYP,
            &ContractSignature {
                iss: &state.audience,
                aud: &merchant.client_id,
                iat: now.0,
                contract_hash: &hash,
                terms: &contract.terms,
            },
        )
        .map_err(ApiError::internal)?;
    if status == StatusCode::OK {
        // New links to an existing contract are worth a line in the log,
        // not an audit event of their own.
        tracing::debug!(contract_hash = %hash, "payments: contract posted again");
    }
    let body = serde_json::json!({
        "contract": contract.terms,
        "contract_hash": hash,
        "signature": signature,
        "purchase_url": state.url(&format!("/purchase/{}", link.expose())),
        "purchase_url_expires_at": expires_at.0,
        "pay_url": state.url(&format!("/contracts/{hash}")),
    });
    Ok((status, Json(body)).into_response())
}
