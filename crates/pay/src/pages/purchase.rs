//! The purchase pages: `GET /purchase/{link}` (the single-use link from the
//! merchant), `GET /contracts/{hash}` (the pay URL), and the forms
//! `POST /contracts/{hash}/setup` (first purchase: agreement and PIN) and
//! `POST /contracts/{hash}/pay`. A purchase page may be framed only by the
//! origins of the contract's own merchant (`frame-ancestors`); any other
//! page here, or a page whose contract is unknown, by nobody.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::pay::contract::is_hash;
use gatehouse_core::pay::notification::{PROOF_LIFETIME, PROOF_TYP};
use gatehouse_core::pay::{PurchaseState, pin, terms};
use gatehouse_core::{OpaqueToken, Timestamp, TokenDigest};
use serde::{Deserialize, Serialize};

use super::embed::{Display, UsesCheckoutScript, frame_fallback_page, paid_page};
use super::login::require_login;
use super::render::{PayPage, SetupPage, fee_line, money, price_with_fee, render};
use super::{hash_pin, parse_form, verify_pin};
use crate::metrics::Refusal;
use crate::store::{Buyer, Contract, Paid, PayAuditKind, PaySession, PayStoreError, Purchase};
use crate::web::{PageError, PayState, csp_for_merchants, see_other};

#[derive(Serialize)]
struct ProofClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    contract_hash: &'a str,
    purchase_id: &'a str,
    paid_at: i64,
    iat: i64,
    exp: i64,
}

fn gone() -> PageError {
    PageError::page(
        StatusCode::GONE,
        "Link expired",
        "This purchase link was already used or has expired. Go back to the shop and start again.",
    )
}

/// `GET /purchase/{link}`: burns the link, signs the link's buyer in, and
/// sends the browser to the pay URL.
pub async fn link(State(state): State<PayState>, Path(link): Path<String>, RawQuery(query): RawQuery) -> Response {
    let display = Display::from_query(query.as_deref());
    let mut hash = None;
    let result = async {
        let token = OpaqueToken::parse(&link).ok_or_else(gone)?;
        let (h, sub) = state
            .store
            .use_link(token.digest().as_str(), Timestamp::now())
            .await?
            .ok_or_else(gone)?;
        // The IdP vouched for the buyer when the merchant's narrowed token
        // was introspected, as the contract was made.
        let contract = state.store.contract(&h).await?.ok_or_else(gone)?;
        let back = format!("/contracts/{h}{}", display.query());
        if let Some(r) = gate(&state, &sub, contract.created_at, "open_link", &contract, display).await? {
            hash = Some(h);
            return Ok(r);
        }
        let (_, cookie) = state.start_session(&sub, None, contract.created_at).await?;
        let mut response = see_other(&back);
        if let Ok(v) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        hash = Some(h);
        Ok::<_, PageError>(response)
    }
    .await;
    framed(
        &state,
        hash.as_deref(),
        result.unwrap_or_else(IntoResponse::into_response),
    )
    .await
}

/// Lets the origins of the merchant of the contract `hash` (and only
/// those) frame the response; without a known contract, nobody.
async fn framed(state: &PayState, hash: Option<&str>, mut response: Response) -> Response {
    let origins = match merchant_origins(state, hash).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "payments: cannot read the merchant's origins");
            Vec::new()
        }
    };
    let mut csp = csp_for_merchants(&origins);
    if response.extensions().get::<UsesCheckoutScript>().is_some() {
        csp.push_str("; script-src 'self'");
    }
    if let Ok(v) = HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// The registered origins of the merchant of the contract `hash`.
async fn merchant_origins(state: &PayState, hash: Option<&str>) -> Result<Vec<String>, PayStoreError> {
    let Some(hash) = hash.filter(|h| is_hash(h)) else {
        return Ok(Vec::new());
    };
    let Some(contract) = state.store.contract(hash).await? else {
        return Ok(Vec::new());
    };
    Ok(state
        .store
        .merchant(&contract.terms.merchant)
        .await?
        .map(|m| m.origins)
        .unwrap_or_default())
}

/// A fresh proof that `purchase` is paid, on the fulfillment URL: a
/// redirect there, or in a frame or popup the page that hands it to the
/// merchant's page.
async fn prove(
    state: &PayState,
    contract: &Contract,
    purchase: &Purchase,
    display: Display,
) -> Result<Response, PageError> {
    let now = Timestamp::now();
    let proof = state.keys.sign(
        PROOF_TYP,
        &ProofClaims {
            iss: &state.audience,
            aud: &purchase.merchant,
            sub: &purchase.sub,
            contract_hash: &purchase.contract_hash,
            purchase_id: &purchase.id,
            paid_at: purchase.paid_at,
            iat: now.0,
            exp: now.0 + PROOF_LIFETIME,
        },
    )?;
    let mut url = url::Url::parse(&contract.terms.fulfillment_url)
        .map_err(|e| PageError::Internal(format!("stored fulfillment URL: {e}")))?;
    url.query_pairs_mut().append_pair("payment", &proof);
    if display == Display::Page {
        return Ok(see_other(url.as_str()));
    }
    let name = merchant_name(state, contract).await?;
    Ok(paid_page(contract, &name, &url))
}

/// The name the pages show for the contract's merchant.
/// The buyer's standing before money moves ([`crate::standing::gate`]),
/// coming back to this purchase page. In a frame, where the IdP's pages
/// cannot show, a trip to the IdP becomes the popup or the full page.
async fn gate(
    state: &PayState,
    sub: &str,
    vouched_at: Timestamp,
    action: &str,
    contract: &Contract,
    display: Display,
) -> Result<Option<Response>, PageError> {
    let back = format!("/contracts/{}{}", contract.hash, display.query());
    match crate::standing::gate(state, sub, vouched_at, action, &back).await? {
        Some(_) if display == Display::Frame => {
            let name = merchant_name(state, contract).await?;
            Ok(Some(frame_fallback_page(contract, &name)))
        }
        other => Ok(other),
    }
}

async fn merchant_name(state: &PayState, contract: &Contract) -> Result<String, PageError> {
    let merchant = state.store.merchant(&contract.terms.merchant).await?;
    Ok(merchant.map_or_else(|| contract.terms.merchant.clone(), |m| m.name))
}

/// Where a contract leaves this browser's user.
enum Standing {
    /// Show the purchase page (or act on its form).
    Buyer(Box<Contract>, TokenDigest, PaySession),
    /// Already answered (login, proof, offer, refunded page).
    Done(Response),
}

async fn standing(state: &PayState, headers: &HeaderMap, hash: &str, display: Display) -> Result<Standing, PageError> {
    if !is_hash(hash) {
        return Err(PageError::not_found());
    }
    let contract = state.store.contract(hash).await?.ok_or_else(PageError::not_found)?;
    let Some((digest, session)) = state.session(headers).await? else {
        // In a frame the IdP's pages cannot show, and no session means the
        // browser kept no cookie here: the popup or the full page.
        if display == Display::Frame {
            let name = merchant_name(state, &contract).await?;
            return Ok(Standing::Done(frame_fallback_page(&contract, &name)));
        }
        return Ok(Standing::Done(
            require_login(state, &format!("/contracts/{hash}{}", display.query())).await?,
        ));
    };
    match state.store.purchase_by_contract(hash).await? {
        Some(p) if p.sub != session.sub => Ok(Standing::Done(see_other(&contract.terms.offer_url))),
        Some(p) if p.state == PurchaseState::Refunded => Ok(Standing::Done(refunded_page(&contract))),
        Some(p) => Ok(Standing::Done(prove(state, &contract, &p, display).await?)),
        None if contract.sub != session.sub => Ok(Standing::Done(see_other(&contract.terms.offer_url))),
        None => Ok(Standing::Buyer(Box::new(contract), digest, session)),
    }
}

fn refunded_page(contract: &Contract) -> Response {
    super::render::message_page(
        "Refunded",
        "This purchase was refunded. To buy it again, go back to the shop.",
        Some((contract.terms.offer_url.as_str(), "Back to the offer")),
    )
}

fn ready(buyer: Option<&Buyer>) -> (bool, bool) {
    let agreed = buyer.is_some_and(|b| terms::is_current(b.terms_version.as_deref(), b.privacy_version.as_deref()));
    let has_pin = buyer.is_some_and(|b| b.pin_hash.is_some());
    (agreed, has_pin)
}

async fn purchase_page(
    state: &PayState,
    contract: &Contract,
    digest: &TokenDigest,
    session: &PaySession,
    display: Display,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, PageError> {
    let buyer = state.store.buyer(&session.sub).await?;
    let merchant_name = merchant_name(state, contract).await?;
    let merchant_name = merchant_name.as_str();
    let csrf = state.csrf_token(digest);
    let t = &contract.terms;
    let price = money(t.amount, &t.currency);
    let (agreed, has_pin) = ready(buyer.as_ref());
    if !agreed || !has_pin {
        return Ok(render(
            status,
            &SetupPage {
                hash: &contract.hash,
                display: display.query(),
                csrf: &csrf,
                merchant: merchant_name,
                summary: &t.summary,
                price: price_with_fee(t),
                need_agreement: !agreed,
                need_pin: !has_pin,
                terms_version: terms::TERMS_OF_SERVICE_VERSION,
                privacy_version: terms::PRIVACY_NOTICE_VERSION,
                error,
            },
        ));
    }
    let balance = state.store.balance(&session.sub, &t.currency).await?;
    Ok(render(
        status,
        &PayPage {
            hash: &contract.hash,
            display: display.query(),
            csrf: &csrf,
            merchant: merchant_name,
            summary: &t.summary,
            order_id: &t.order_id,
            price,
            fee: fee_line(t.fee, &t.currency),
            total: money(t.split().buyer_pays, &t.currency),
            balance: money(balance, &t.currency),
            error,
        },
    ))
}

/// `GET /contracts/{hash}`: the pay URL.
pub async fn contract(
    State(state): State<PayState>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let display = Display::from_query(query.as_deref());
    let result = async {
        match standing(&state, &headers, &hash, display).await? {
            Standing::Done(r) => Ok(r),
            Standing::Buyer(contract, digest, session) => {
                purchase_page(&state, &contract, &digest, &session, display, StatusCode::OK, None).await
            }
        }
    }
    .await;
    framed(&state, Some(&hash), result.unwrap_or_else(IntoResponse::into_response)).await
}

#[derive(Deserialize)]
struct SetupForm {
    csrf: String,
    agree: Option<String>,
    pin: Option<String>,
    pin_again: Option<String>,
}

/// `POST /contracts/{hash}/setup`: agreement to the current documents and
/// the first PIN.
pub async fn setup(
    State(state): State<PayState>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let display = Display::from_query(query.as_deref());
    let result = async {
        let form: SetupForm = parse_form(&body)?;
        let (contract, digest, session) = match standing(&state, &headers, &hash, display).await? {
            Standing::Done(r) => return Ok(r),
            Standing::Buyer(c, d, s) => (*c, d, s),
        };
        if !state.csrf_ok(&digest, &form.csrf) {
            return Err(PageError::csrf());
        }
        let buyer = state.store.buyer(&session.sub).await?;
        let (agreed, has_pin) = ready(buyer.as_ref());
        let again = |error: &'static str| {
            let (state, contract, digest, session) = (&state, &contract, &digest, &session);
            async move {
                purchase_page(
                    state,
                    contract,
                    digest,
                    session,
                    display,
                    StatusCode::BAD_REQUEST,
                    Some(error),
                )
                .await
            }
        };
        if !agreed && form.agree.as_deref() != Some("yes") {
            return again("Please agree to the terms of service and the privacy notice.").await;
        }
        let new_pin = if has_pin {
            None
        } else {
            let pin = form.pin.unwrap_or_default();
            if let Err(e) = pin::check_policy(&pin) {
                return again(match e {
                    pin::PinRejected::Shape => "The PIN must be exactly six digits.",
                    pin::PinRejected::Guessable => "That PIN is too easy to guess. Choose another.",
                })
                .await;
            }
            if form.pin_again.as_deref() != Some(pin.as_str()) {
                return again("The two PINs differ.").await;
            }
            Some(hash_pin(pin).await?)
        };
        let now = Timestamp::now();
        if !agreed {
            state
                .store
                .agree(
                    &session.sub,
                    terms::TERMS_OF_SERVICE_VERSION,
                    terms::PRIVACY_NOTICE_VERSION,
                    now,
                )
                .await?;
        }
        if let Some(h) = new_pin {
            state.store.set_pin(&session.sub, &h, false, now).await?;
        }
        Ok(see_other(&format!("/contracts/{hash}{}", display.query())))
    }
    .await;
    framed(&state, Some(&hash), result.unwrap_or_else(IntoResponse::into_response)).await
}

#[derive(Deserialize)]
struct PayForm {
    csrf: String,
    pin: String,
}

/// `POST /contracts/{hash}/pay`: checks the PIN (throttled), pays once,
/// and sends the browser to the fulfillment URL with a proof.
pub async fn pay(
    State(state): State<PayState>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let display = Display::from_query(query.as_deref());
    let result = async {
        let form: PayForm = parse_form(&body)?;
        let (contract, digest, session) = match standing(&state, &headers, &hash, display).await? {
            // Paid already: proved again, nothing charged.
            Standing::Done(r) => return Ok(r),
            Standing::Buyer(c, d, s) => (*c, d, s),
        };
        if !state.csrf_ok(&digest, &form.csrf) {
            return Err(PageError::csrf());
        }
        let buyer = state.store.buyer(&session.sub).await?;
        let (agreed, has_pin) = ready(buyer.as_ref());
        let (true, true, Some(pin_hash)) = (agreed, has_pin, buyer.and_then(|b| b.pin_hash)) else {
            return Ok(see_other(&format!("/contracts/{hash}{}", display.query())));
        };
        if let Some(r) = gate(&state, &session.sub, session.vouched_at, "pay", &contract, display).await? {
            return Ok(r);
        }
        // Reserve the attempt before the PIN is checked: at most the limit
        // is ever checked, however many arrive at once.
        let key = pin::throttle_key(&session.sub);
        let now = Timestamp::now();
        let Some(reserved) = state.store.reserve_attempt(&key, now, pin::PER_USER).await? else {
            state.metrics.refusal(Refusal::TooManyPins);
            let window = state.store.throttle_window(&key).await?;
            return Err(PageError::page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many wrong PINs",
                format!(
                    "Too many wrong PINs. Try again in {} minutes, or reset your PIN.",
                    gatehouse_core::throttle::minutes(pin::PER_USER.retry_after(window, now))
                ),
            ));
        };
        let ok = pin::well_formed(&form.pin) && verify_pin(form.pin, pin_hash).await?;
        if !ok {
            // The reserved attempt stays counted: it is the failure.
            state.metrics.refusal(Refusal::WrongPin);
            let detail = serde_json::json!({ "contract_hash": hash, "failures": reserved.failures });
            state
                .store
                .audit(PayAuditKind::PinFailed, Some(&session.sub), detail, now)
                .await?;
            return purchase_page(
                &state,
                &contract,
                &digest,
                &session,
                display,
                StatusCode::BAD_REQUEST,
                Some("Wrong PIN."),
            )
            .await;
        }
        // The right PIN clears the counter: its own reservation and earlier
        // failures alike.
        state.store.clear_throttle(&key).await?;
        let purchase_id = uuid::Uuid::new_v4().simple().to_string();
        match state.store.pay(&contract, &purchase_id, now).await {
            Ok(paid) => {
                if matches!(paid, Paid::New(_)) {
                    state.outbox_wake.notify_one();
                    state.metrics.purchase(&contract.terms.currency, contract.terms.amount);
                }
                if paid.purchase().state == PurchaseState::Refunded {
                    // Refunded between the page and the payment.
                    return Ok(refunded_page(&contract));
                }
                prove(&state, &contract, paid.purchase(), display).await
            }
            Err(PayStoreError::InsufficientFunds) => {
                state.metrics.refusal(Refusal::InsufficientFunds);
                purchase_page(
                    &state,
                    &contract,
                    &digest,
                    &session,
                    display,
                    StatusCode::PAYMENT_REQUIRED,
                    Some("Not enough money in your wallet. Add test money on the payments page."),
                )
                .await
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    framed(&state, Some(&hash), result.unwrap_or_else(IntoResponse::into_response)).await
}
