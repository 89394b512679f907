//! The shop as a merchant of the payments service: its merchant token
//! (client credentials for the payments audience, cached until shortly
//! before it expires), creating contracts (`POST {pay}/api/contracts`), and
//! checking what the payments service signs (proofs of payment and
//! merchant notifications) with its JWKS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gatehouse_core::pay::MerchantTerms;
use gatehouse_relier::{LoginError, RelyingParty};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

/// How long one request to the payments service may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from the payments service.
const MAX_BODY: usize = 256 * 1024;
/// A merchant token is renewed when it has less than this left (seconds).
const RENEW_BEFORE: i64 = 60;
/// The JWKS is fetched again for an unknown kid at most this often.
const JWKS_REFETCH: Duration = Duration::from_secs(5);
/// Tolerance for clocks on `exp`, `iat` (seconds).
const LEEWAY: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The IdP refused a token request (narrowing, client credentials).
    #[error("token request: {0}")]
    Token(#[from] LoginError),
    /// The payments service answered with an error.
    #[error("the payments service answered {status}: {error}")]
    Refused { status: u16, error: String },
    #[error("the payments service cannot be reached: {0}")]
    Http(String),
    #[error("the payments service answered something unreadable: {0}")]
    BadResponse(String),
}

/// A signed token from the payments service that did not pass.
#[derive(Debug, thiserror::Error)]
pub enum SignedError {
    #[error("the token is refused: {0}")]
    Invalid(String),
    #[error("the payments service's keys cannot be had: {0}")]
    Unavailable(String),
}

/// What `POST {pay}/api/contracts` answers.
#[derive(Clone, Debug, Deserialize)]
pub struct Contract {
    pub contract: Value,
    pub contract_hash: String,
    pub purchase_url: String,
    #[serde(default)]
    pub purchase_url_expires_at: Option<i64>,
    pub pay_url: String,
}

/// A verified proof of payment.
#[derive(Clone, Debug, Deserialize)]
pub struct Proof {
    pub sub: String,
    pub contract_hash: String,
    #[serde(default)]
    pub purchase_id: Option<Value>,
}

/// A verified merchant notification.
#[derive(Clone, Debug, Deserialize)]
pub struct Notification {
    /// Redeliveries carry the same `jti`.
    #[serde(default)]
    pub jti: String,
    pub event: String,
    pub sub: String,
    pub contract_hash: String,
    #[serde(default)]
    pub purchase_id: Option<Value>,
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub iat: i64,
}

/// The payments service as the shop sees it. Cheap to clone.
#[derive(Clone)]
pub struct PayClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// The payments service's URL without a trailing slash: its audience
    /// and the `iss` of what it signs.
    base: String,
    merchant: String,
    rp: RelyingParty,
    http: reqwest::Client,
    token: Mutex<Option<(String, i64)>>,
    /// One fetch of the merchant token at a time.
    token_fetch: tokio::sync::Mutex<()>,
    keys: Mutex<HashMap<String, DecodingKey>>,
    keys_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl PayClient {
    pub fn new(base: &str, rp: RelyingParty, http: reqwest::Client) -> Self {
        PayClient {
            inner: Arc::new(Inner {
                base: base.trim_end_matches('/').to_owned(),
                merchant: rp.client_id().to_owned(),
                rp,
                http,
                token: Mutex::new(None),
                token_fetch: tokio::sync::Mutex::new(()),
                keys: Mutex::new(HashMap::new()),
                keys_fetch: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The payments audience (its URL, no trailing slash).
    pub fn audience(&self) -> &str {
        &self.inner.base
    }

    /// `{pay}/contracts/{hash}`: the pay URL of a contract.
    pub fn pay_url(&self, hash: &str) -> String {
        format!("{}/contracts/{hash}", self.inner.base)
    }

    /// The shop's own access token for the payments service.
    async fn merchant_token(&self, now: i64) -> Result<String, PayError> {
        let cached = |inner: &Inner| {
            inner
                .token
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .filter(|(_, exp)| *exp - RENEW_BEFORE > now)
                .map(|(t, _)| t.clone())
        };
        if let Some(token) = cached(&self.inner) {
            return Ok(token);
        }
        let _one = self.inner.token_fetch.lock().await;
        if let Some(token) = cached(&self.inner) {
            return Ok(token);
        }
        let tokens = self.inner.rp.client_credentials(None, Some(&self.inner.base)).await?;
        *self.inner.token.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((tokens.access_token.clone(), tokens.expires_at));
        Ok(tokens.access_token)
    }

    /// Narrows the user's token to `payments` for the payments service
    /// (RFC 8693).
    pub async fn narrow(&self, user_access_token: &str) -> Result<String, LoginError> {
        let tokens = self
            .inner
            .rp
            .narrow(user_access_token, "payments", &self.inner.base)
            .await?;
        Ok(tokens.access_token)
    }

    /// Creates the contract for `terms` (the merchant's part) on behalf of
    /// the user whose narrowed token is `user_token`.
    pub async fn create_contract(
        &self,
        user_token: &str,
        terms: &MerchantTerms,
        now: i64,
    ) -> Result<Contract, PayError> {
        let merchant = self.merchant_token(now).await?;
        let url = format!("{}/api/contracts", self.inner.base);
        let body = json!({ "user_token": user_token, "terms": terms });
        let response = self
            .inner
            .http
            .post(&url)
            .bearer_auth(&merchant)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.to_string())
            .timeout(HTTP_TIMEOUT)
            .send()
            .await
            .map_err(|e| PayError::Http(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // The merchant token may have been revoked: ask for a new one next time.
            *self.inner.token.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        let body = read(response).await?;
        if !status.is_success() {
            let error: Value = serde_json::from_slice(&body).unwrap_or_default();
            let code = error["error"].as_str().unwrap_or("unknown");
            let text = error["error_description"].as_str().unwrap_or_default();
            return Err(PayError::Refused {
                status: status.as_u16(),
                error: format!("{code} {text}").trim().to_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| PayError::BadResponse(e.to_string()))
    }

    /// Checks a proof of payment: ES256 by the payments service's key,
    /// `typ` `payment-proof+jwt`, `iss` the payments service, `aud` this
    /// shop, `exp` not passed. The caller compares the contract hash.
    pub async fn verify_proof(&self, token: &str) -> Result<Proof, SignedError> {
        let claims = self
            .verify(token, gatehouse_core::pay::notification::PROOF_TYP, true)
            .await?;
        serde_json::from_value(claims).map_err(|e| SignedError::Invalid(e.to_string()))
    }

    /// Checks a merchant notification (`typ` `payment-notification+jwt`).
    pub async fn verify_notification(&self, token: &str) -> Result<Notification, SignedError> {
        let claims = self
            .verify(token, gatehouse_core::pay::notification::NOTIFICATION_TYP, false)
            .await?;
        serde_json::from_value(claims).map_err(|e| SignedError::Invalid(e.to_string()))
    }

    async fn verify(&self, token: &str, typ: &str, exp_required: bool) -> Result<Value, SignedError> {
        let invalid = |text: &str| SignedError::Invalid(text.to_owned());
        if token.len() > 8192 {
            return Err(invalid("too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("unreadable header"))?;
        if header.alg != Algorithm::ES256 {
            return Err(invalid("not ES256"));
        }
        let found = header
            .typ
            .as_deref()
            .map(|t| t.strip_prefix("application/").unwrap_or(t));
        if !found.is_some_and(|t| t.eq_ignore_ascii_case(typ)) {
            return Err(invalid("wrong typ"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no kid"))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY;
        validation.set_audience(&[&self.inner.merchant]);
        validation.set_issuer(&[&self.inner.base]);
        validation.set_required_spec_claims(if exp_required {
            &["exp", "iss", "aud"][..]
        } else {
            &["iss", "aud"][..]
        });
        validation.validate_exp = exp_required;
        let data =
            jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| SignedError::Invalid(e.to_string()))?;
        Ok(data.claims)
    }

    /// The key `kid` names, fetching the JWKS again if it is unknown (at
    /// most once per [`JWKS_REFETCH`]).
    async fn key(&self, kid: &str) -> Result<DecodingKey, SignedError> {
        let known = |inner: &Inner| {
            inner
                .keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(kid)
                .cloned()
        };
        if let Some(key) = known(&self.inner) {
            return Ok(key);
        }
        let mut last = self.inner.keys_fetch.lock().await;
        if let Some(key) = known(&self.inner) {
            return Ok(key);
        }
        if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH) {
            return Err(SignedError::Invalid("unknown kid".into()));
        }
        *last = Some(Instant::now());
        let url = format!("{}/.well-known/jwks.json", self.inner.base);
        let unavailable = |e: String| SignedError::Unavailable(e);
        let response = self
            .inner
            .http
            .get(&url)
            .timeout(HTTP_TIMEOUT)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("{url} answered {}", response.status())));
        }
        let body = read(response).await.map_err(|e| unavailable(e.to_string()))?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| unavailable(e.to_string()))?;
        let keys: HashMap<String, DecodingKey> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, key))
            })
            .collect();
        let key = keys.get(kid).cloned();
        *self.inner.keys.lock().unwrap_or_else(PoisonError::into_inner) = keys;
        key.ok_or_else(|| SignedError::Invalid("unknown kid".into()))
    }
}

/// A body of at most [`MAX_BODY`] bytes.
async fn read(mut response: reqwest::Response) -> Result<Vec<u8>, PayError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| PayError::Http(e.to_string()))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(PayError::BadResponse("the answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
