//! The shop as a merchant (docs/payments.md, "The merchant side"):
//! `/offer/{product}` makes a contract for the signed-in user and answers
//! 402 Payment Required; `/fulfill` rebuilds the contract from its URL and
//! shows the goods to a session that proved it paid; `/notify` receives
//! the payments service's notifications; `/orders` lists them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_relier::LoginError;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::catalog;
use crate::checkout;
use crate::fulfill::{FulfillError, Order};
use crate::html::esc;
use crate::pay::{PayClient, PayError};
use crate::session::User;
use crate::web::{AppState, Inner, now, see_other, start_login};

const PAY_CONTRACT_HASH: HeaderName = HeaderName::from_static("pay-contract-hash");
const PAY_URL: HeaderName = HeaderName::from_static("pay-url");
const PAY_OFFER_URL: HeaderName = HeaderName::from_static("pay-offer-url");
/// A user token is refreshed when it has less than this left (seconds).
const REFRESH_BEFORE: i64 = 30;
/// A login younger than this is not started again when narrowing fails
/// (seconds): the fault is elsewhere, and a new login would loop.
const FRESH_LOGIN: i64 = 120;

/// Compares two tokens in constant time.
pub fn same_token(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn pay_headers(response: &mut Response, hash: &str, pay_url: &str, offer_url: &str) {
    let headers = response.headers_mut();
    for (name, value) in [
        (PAY_CONTRACT_HASH, hash),
        (PAY_URL, pay_url),
        (PAY_OFFER_URL, offer_url),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
}

/// The shop routes exist only on a shop, which has a payments client.
fn not_a_shop(state: &Inner) -> Response {
    state.error_page(StatusCode::NOT_FOUND, None, "Not found", "This site sells nothing.")
}

/// `GET /offer/{product}[?checkout=frame]`: a fresh order, its contract
/// made for the signed-in user, and 402 Payment Required; with
/// `checkout=frame` the purchase page is framed on it (`checkout.rs`).
pub async fn offer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(product): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(pay) = state.pay.as_ref() else {
        return not_a_shop(&state);
    };
    let embedded = checkout::wanted(query.as_deref());
    let here = format!(
        "/offer/{}{}",
        url::form_urlencoded::byte_serialize(product.as_bytes()).collect::<String>(),
        if embedded { "?checkout=frame" } else { "" }
    );
    let current = state.current(&headers);
    let Some(product) = catalog::product(&product) else {
        let session = current.as_ref().map(|(_, s)| s);
        return state.error_page(StatusCode::NOT_FOUND, session, "Not found", "There is no such product.");
    };
    let Some((id, session, user)) = current.and_then(|(id, s)| s.user.clone().map(|u| (id, s, u))) else {
        if wants_json(&headers) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": "login_required", "error_description": "log in at the shop first" })),
            )
                .into_response();
        }
        return start_login(&state, &headers, &here, false);
    };

    let order = Order::new(product, now());
    let terms = order.merchant_terms(&state.base, &state.fulfillment_key);
    let expected_hash = match order.contract_hash(&state.base, &state.fulfillment_key, state.rp.client_id()) {
        Ok(hash) => hash,
        Err(e) => {
            tracing::error!(site = %state.name, error = %e, "the shop's own terms are invalid");
            return state.error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&session),
                "Cannot buy now",
                "This product cannot be sold now.",
            );
        }
    };
    let user_token = match narrowed_token(&state, pay, &id, &user).await {
        Ok(token) => token,
        Err(e) if now().saturating_sub(user.signed_in_at) > FRESH_LOGIN => {
            tracing::warn!(site = %state.name, error = %e, "narrowing the user's token failed; logging in again");
            // The tokens are gone (revoked, expired): a new login gets new ones.
            state.sessions.update(&id, |s| s.user = None);
            return start_login(&state, &headers, &here, false);
        }
        Err(e) => {
            tracing::error!(site = %state.name, error = %e, "narrowing a fresh login's token failed");
            return state.error_page(
                StatusCode::BAD_GATEWAY,
                Some(&session),
                "Cannot buy now",
                "The identity provider does not let the shop ask for payments on your behalf.",
            );
        }
    };
    let contract = match pay.create_contract(&user_token, &terms, now()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(site = %state.name, error = %e, "creating a contract failed");
            let text = match e {
                PayError::Refused { .. } => "The payments service refused this purchase.",
                _ => "The payments service cannot be reached now. Try again later.",
            };
            return state.error_page(StatusCode::BAD_GATEWAY, Some(&session), "Cannot buy now", text);
        }
    };
    if contract.contract_hash != expected_hash {
        tracing::error!(
            site = %state.name,
            ours = %expected_hash,
            theirs = %contract.contract_hash,
            "the payments service hashed the terms differently"
        );
        return state.error_page(
            StatusCode::BAD_GATEWAY,
            Some(&session),
            "Cannot buy now",
            "The payments service and the shop disagree on the terms.",
        );
    }
    let offer_url = order.offer_url(&state.base);
    let mut response = if wants_json(&headers) {
        (
            StatusCode::PAYMENT_REQUIRED,
            Json(json!({
                "contract": contract.contract,
                "contract_hash": contract.contract_hash,
                "pay_url": contract.purchase_url,
                "offer_url": offer_url,
                "fulfillment_url": order.fulfillment_url(&state.base, &state.fulfillment_key),
            })),
        )
            .into_response()
    } else if embedded
        && let (Some(pay_origin), Some(frame_src)) = (
            checkout::origin_of(pay.audience()),
            checkout::frame_src(&contract.purchase_url),
        )
    {
        let price = catalog::price(order.amount, &order.currency);
        let body = checkout::body(
            product.summary,
            &price,
            &pay_origin,
            &frame_src,
            &order.order_id,
            &contract.contract_hash,
        );
        let mut page = state.page(
            StatusCode::PAYMENT_REQUIRED,
            Some(&session),
            &here,
            &format!("Buy {}", product.summary),
            &body,
        );
        checkout::set_policy(&mut page, &pay_origin);
        page
    } else {
        let price = catalog::price(order.amount, &order.currency);
        let body = format!(
            r#"<h1>Buy {summary}</h1>
<p>Price: <span class="price" id="price">{price}</span>. You pay with Gatehouse Pay: you are already signed in there
through your Gatehouse account.</p>
<p><a class="button" id="pay" href="{purchase}">Pay {price}</a></p>
<p><a id="pay-here" href="{here}?checkout=frame">Or pay on this page</a> (Gatehouse Pay in a frame).</p>
<p><small>Order <code>{order}</code>, contract <code id="contract-hash">{hash}</code>.</small></p>"#,
            summary = esc(product.summary),
            purchase = esc(&contract.purchase_url),
            here = esc(&here),
            order = esc(&order.order_id),
            hash = esc(&contract.contract_hash),
        );
        state.page(
            StatusCode::PAYMENT_REQUIRED,
            Some(&session),
            &here,
            &format!("Buy {}", product.summary),
            &body,
        )
    };
    pay_headers(
        &mut response,
        &contract.contract_hash,
        &contract.purchase_url,
        &offer_url,
    );
    response
}

/// The user's token narrowed to `payments` for the payments service; the
/// user's tokens are refreshed first when they are (nearly) expired, or
/// when the narrowing is refused and a refresh token is at hand.
async fn narrowed_token(state: &Inner, pay: &PayClient, id: &str, user: &User) -> Result<String, LoginError> {
    let mut access = user.tokens.access_token.clone();
    let mut refreshed = false;
    if user.tokens.expires_at - REFRESH_BEFORE <= now()
        && let Some(rt) = &user.tokens.refresh_token
    {
        access = refresh(state, id, rt).await?;
        refreshed = true;
    }
    match pay.narrow(&access).await {
        Ok(token) => Ok(token),
        Err(LoginError::Token { .. }) if !refreshed && user.tokens.refresh_token.is_some() => {
            let rt = user.tokens.refresh_token.clone().unwrap_or_default();
            let access = refresh(state, id, &rt).await?;
            pay.narrow(&access).await
        }
        Err(e) => Err(e),
    }
}

/// Refreshes the session's tokens (refresh tokens rotate: keep the new one).
async fn refresh(state: &Inner, id: &str, refresh_token: &str) -> Result<String, LoginError> {
    let mut tokens = state.rp.refresh(refresh_token).await?;
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = Some(refresh_token.to_owned());
    }
    let access = tokens.access_token.clone();
    state.sessions.update(id, |s| {
        if let Some(u) = s.user.as_mut() {
            u.tokens = tokens;
        }
    });
    Ok(access)
}

/// `GET /fulfill?product&order&amount&currency&t&sig[&payment]`.
pub async fn fulfill(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let Some(pay) = state.pay.as_ref() else {
        return not_a_shop(&state);
    };
    let query = query.unwrap_or_default();
    let current = state.current(&headers);
    let session = current.as_ref().map(|(_, s)| s);
    let order = match Order::from_query(&query, &state.fulfillment_key) {
        Ok(order) => order,
        Err(e @ (FulfillError::Malformed | FulfillError::UnknownProduct | FulfillError::BadSignature)) => {
            tracing::info!(site = %state.name, error = %e, "a fulfillment URL was refused");
            return state.error_page(
                StatusCode::NOT_FOUND,
                session,
                "Not found",
                "There is no such purchase.",
            );
        }
    };
    let clean_url = order.fulfillment_url(&state.base, &state.fulfillment_key);
    let Ok(hash) = order.contract_hash(&state.base, &state.fulfillment_key, state.rp.client_id()) else {
        return state.error_page(
            StatusCode::NOT_FOUND,
            session,
            "Not found",
            "There is no such purchase.",
        );
    };
    let here = clean_url.strip_prefix(&state.base).unwrap_or("/").to_owned();

    let proof = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "payment")
        .map(|(_, v)| v.into_owned());
    if let Some(proof) = proof {
        let proof = match pay.verify_proof(&proof).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(site = %state.name, error = %e, "a proof of payment was refused");
                return state.error_page(
                    StatusCode::BAD_REQUEST,
                    session,
                    "Payment not proven",
                    "The proof of payment is not valid (or has expired). Open your purchase again.",
                );
            }
        };
        if proof.contract_hash != hash {
            return state.error_page(
                StatusCode::BAD_REQUEST,
                session,
                "Payment not proven",
                "This proof of payment is for another purchase.",
            );
        }
        if let Some(user) = session.and_then(|s| s.user.as_ref())
            && user.subject != proof.sub
        {
            return state.error_page(
                StatusCode::FORBIDDEN,
                session,
                "Another account's purchase",
                "This purchase was paid by another account than the one signed in here.",
            );
        }
        let (id, _, new) = state.current_or_new(&headers);
        state
            .sessions
            .update(&id, |s| s.paid.insert(hash.clone(), proof.sub.clone()));
        let cookies = if new {
            vec![state.set_cookie(state.cookie_name(), &id, None)]
        } else {
            vec![]
        };
        return see_other(&clean_url, cookies);
    }

    let summary = esc(order.product.summary);
    if session.is_some_and(|s| s.paid.contains_key(&hash)) {
        let body = format!(
            r#"<h1>Your copy of {summary}</h1>
<p class="notice">Paid: {price}. Thank you! This page is yours: bookmark it to come back to your purchase.</p>
<div class="goods" id="goods"><p><strong>{summary}</strong></p><p>{content}</p></div>"#,
            price = catalog::price(order.amount, &order.currency),
            content = esc(order.product.content),
        );
        return state.page(
            StatusCode::OK,
            session,
            &here,
            &format!("Your copy of {}", order.product.summary),
            &body,
        );
    }
    let pay_url = pay.pay_url(&hash);
    let offer_url = order.offer_url(&state.base);
    let body = format!(
        r#"<h1>Payment required</h1>
<p>This page holds <strong>{summary}</strong> ({price}) once it is paid. If you paid already, Gatehouse Pay
recognises you and brings you back here, without charging you again.</p>
<p><a class="button" id="continue" href="{pay}">Continue to payment</a></p>"#,
        price = catalog::price(order.amount, &order.currency),
        pay = esc(&pay_url),
    );
    let mut response = state.page(StatusCode::PAYMENT_REQUIRED, session, &here, "Payment required", &body);
    pay_headers(&mut response, &hash, &pay_url, &offer_url);
    response
}

/// `POST /notify`: a merchant notification (`application/jwt`).
pub async fn notify(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(pay) = state.pay.as_ref() else {
        return not_a_shop(&state);
    };
    let token = std::str::from_utf8(&body).unwrap_or_default().trim();
    match pay.verify_notification(token).await {
        Ok(n) => {
            tracing::info!(site = %state.name, event = %n.event, contract = %n.contract_hash, "payment notification");
            if n.event == "purchase.refunded" {
                // Refunded: the goods are no longer shown for it.
                state.sessions.forget_paid(&n.contract_hash);
            }
            let mut list = state
                .notifications
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !n.jti.is_empty() && list.iter().any(|m| m.jti == n.jti) {
                // A redelivery of one we have.
                return StatusCode::OK.into_response();
            }
            if list.len() >= crate::web::MAX_NOTIFICATIONS {
                list.pop_front();
            }
            list.push_back(n);
            StatusCode::OK.into_response()
        }
        Err(crate::pay::SignedError::Unavailable(e)) => {
            tracing::warn!(site = %state.name, error = %e, "cannot check a notification now");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Err(e) => {
            tracing::warn!(site = %state.name, error = %e, "a notification was refused");
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "invalid_request", "error_description": e.to_string() })),
            )
                .into_response()
        }
    }
}

/// `GET /orders`: the signed-in user's purchases, as the payments
/// service notified them.
pub async fn orders(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let current = state.current(&headers);
    let Some((_, session, user)) = current.and_then(|(id, s)| s.user.clone().map(|u| (id, s, u))) else {
        return start_login(&state, &headers, "/orders", false);
    };
    let rows: Vec<String> = state
        .notifications
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .rev()
        .filter(|n| n.sub == user.subject)
        .map(|n| {
            format!(
                "<li><strong>{}</strong> {} <small>contract <code>{}</code></small></li>",
                esc(match n.event.as_str() {
                    "purchase.completed" => "Paid",
                    "purchase.refunded" => "Refunded",
                    other => other,
                }),
                catalog::price(n.amount, &n.currency),
                esc(&n.contract_hash)
            )
        })
        .collect();
    let list = if rows.is_empty() {
        "<p>No purchases yet.</p>".to_owned()
    } else {
        format!("<ul class=\"items\" id=\"orders\">{}</ul>", rows.join("\n"))
    };
    let body =
        format!("<h1>Your purchases</h1>\n<p>As Gatehouse Pay told the shop (signed notifications).</p>\n{list}");
    state.page(StatusCode::OK, Some(&session), "/orders", "Your purchases", &body)
}

#[cfg(test)]
mod tests {
    //! The merchant side against a stand-in for the payments service: a
    //! JWKS on a local port and proofs signed with its key.

    use super::*;
    use crate::testkit::{SHOP, Signer, body, get, header, send};
    use axum::body::Body;
    use axum::http::Request;

    struct FakePay(Signer);

    impl std::ops::Deref for FakePay {
        type Target = Signer;
        fn deref(&self) -> &Signer {
            &self.0
        }
    }

    impl FakePay {
        async fn start() -> FakePay {
            FakePay(Signer::start().await)
        }

        fn proof(&self, hash: &str, sub: &str, exp_in: i64) -> String {
            let now = now();
            self.sign(
                "payment-proof+jwt",
                &json!({ "iss": self.base, "aud": "shop", "sub": sub, "contract_hash": hash,
                         "purchase_id": "p_1", "paid_at": now, "iat": now, "exp": now + exp_in }),
            )
        }
    }

    fn state(pay: &FakePay) -> AppState {
        // The IdP is not asked anything here: the payments stand-in will do.
        crate::testkit::state(crate::Kind::Shop, pay, pay)
    }

    /// A fresh order's fulfillment path and contract hash.
    fn order(state: &AppState) -> (String, String) {
        let order = Order::new(catalog::product("ebook-rust").unwrap(), now());
        let url = order.fulfillment_url(SHOP, &state.fulfillment_key);
        let hash = order.contract_hash(SHOP, &state.fulfillment_key, "shop").unwrap();
        (url.strip_prefix(SHOP).unwrap().to_owned(), hash)
    }

    #[tokio::test]
    async fn a_fulfillment_url_asks_for_payment_then_shows_the_goods() {
        let pay = FakePay::start().await;
        let state = state(&pay);
        let (path, hash) = order(&state);

        // Not paid in this session: 402, and where to pay.
        let r = get(&state, &path, None).await;
        assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(header(&r, "pay-contract-hash"), hash);
        assert_eq!(header(&r, "pay-url"), format!("{}/contracts/{hash}", pay.base));
        assert_eq!(header(&r, "pay-offer-url"), format!("{SHOP}/offer/ebook-rust"));
        assert!(body(r).await.contains("Continue to payment"));

        // With a proof: remembered, and back to the clean URL.
        let proof = pay.proof(&hash, "alice", 300);
        let r = get(&state, &format!("{path}&payment={proof}"), None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(header(&r, "location"), format!("{SHOP}{path}"));
        let set_cookie = header(&r, "set-cookie").to_owned();
        assert!(set_cookie.starts_with("shop_session="), "{set_cookie}");
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let r = get(&state, &path, Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(body(r).await.contains("Your copy of Ownership in Practice (EPUB)"));
        // Another browser has not proven it.
        assert_eq!(get(&state, &path, None).await.status(), StatusCode::PAYMENT_REQUIRED);
    }

    #[tokio::test]
    async fn bad_proofs_and_tampered_urls_are_refused() {
        let pay = FakePay::start().await;
        let state = state(&pay);
        let (path, hash) = order(&state);
        let (_, other_hash) = order(&state);

        let tampered = path.replace("amount=499", "amount=1");
        assert_eq!(get(&state, &tampered, None).await.status(), StatusCode::NOT_FOUND);
        let proof = pay.proof(&hash, "alice", 300);
        let r = get(&state, &format!("{tampered}&payment={proof}"), None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        for (why, proof) in [
            ("another contract", pay.proof(&other_hash, "alice", 300)),
            ("expired", pay.proof(&hash, "alice", -120)),
            (
                "another audience",
                pay.sign(
                    "payment-proof+jwt",
                    &json!({ "iss": pay.base, "aud": "forum", "sub": "alice", "contract_hash": hash,
                             "iat": now(), "exp": now() + 300 }),
                ),
            ),
            (
                "another issuer",
                pay.sign(
                    "payment-proof+jwt",
                    &json!({ "iss": "http://127.0.0.1:1", "aud": "shop", "sub": "alice", "contract_hash": hash,
                             "iat": now(), "exp": now() + 300 }),
                ),
            ),
            (
                "not a proof",
                pay.sign(
                    "payment-notification+jwt",
                    &json!({ "iss": pay.base, "aud": "shop", "sub": "alice", "contract_hash": hash,
                             "iat": now(), "exp": now() + 300 }),
                ),
            ),
            ("garbage", "a.b.c".to_owned()),
        ] {
            let r = get(&state, &format!("{path}&payment={proof}"), None).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{why}");
            assert!(header(&r, "set-cookie").is_empty(), "{why}: nothing remembered");
        }
    }

    #[tokio::test]
    async fn notifications_are_verified() {
        let pay = FakePay::start().await;
        let state = state(&pay);
        let claims = json!({ "iss": pay.base, "aud": "shop", "iat": now(), "jti": "n1",
            "event": "purchase.completed", "purchase_id": "p_1", "contract_hash": "h",
            "sub": "alice", "amount": 499, "currency": "EUR" });
        let post = |body: String| {
            let state = state.clone();
            async move {
                send(
                    &state,
                    Request::post("/notify")
                        .header("content-type", "application/jwt")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
            }
        };
        let r = post(pay.sign("payment-notification+jwt", &claims)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = post(pay.sign("payment-proof+jwt", &claims)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        // A redelivery is accepted and kept once.
        let r = post(pay.sign("payment-notification+jwt", &claims)).await;
        assert_eq!(r.status(), StatusCode::OK);
        {
            let list = state.notifications.lock().unwrap();
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].amount, 499);
        }

        // A refund: the goods are no longer shown for that contract.
        let (path, hash) = order(&state);
        let proof = pay.proof(&hash, "alice", 300);
        let r = get(&state, &format!("{path}&payment={proof}"), None).await;
        let cookie = header(&r, "set-cookie").split(';').next().unwrap().to_owned();
        assert_eq!(get(&state, &path, Some(&cookie)).await.status(), StatusCode::OK);
        let mut refunded = claims.clone();
        refunded["event"] = json!("purchase.refunded");
        refunded["contract_hash"] = json!(hash);
        refunded["jti"] = json!("n2");
        let r = post(pay.sign("payment-notification+jwt", &refunded)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            get(&state, &path, Some(&cookie)).await.status(),
            StatusCode::PAYMENT_REQUIRED
        );
    }

    #[tokio::test]
    async fn an_offer_needs_a_signed_in_user() {
        let pay = FakePay::start().await;
        let state = state(&pay);
        let r = send(
            &state,
            Request::get("/offer/ebook-rust")
                .header("accept", "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            get(&state, "/offer/nothing", None).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
