//! The payments service (docs/payments.md) against the real IdP, driven the
//! way a merchant and a browser would: contracts from narrowed tokens only,
//! single-use purchase links, the first-purchase agreement and PIN, paying
//! once per contract, proofs, the pay URL for the buyer and for others, the
//! PIN reset with a fresh login of the same person, signed notifications
//! with retries, admin history and refunds. After every test the ledger
//! sums to zero.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::claims::{ACCESS_TOKEN_TYP, AccessTokenClaims};
use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_idp::keys::KeyRing;
use gatehouse_pay::{Merchant, PayConfig, PayService, PayStore};

use crate::both_backends;
use crate::oauth::{auth_url, authorize, exchange, jwt_claims, post_form};
use crate::support::{Backend, Browser, ClientSpec, Page, TestApp, TestDb, eventually, serve_local, spawn_app};

mod fees;

const PASSWORD: &str = "a perfectly fine passphrase";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
pub(crate) const PIN: &str = "385172";
/// Another resource the merchants may narrow tokens to.
const OTHER_AUDIENCE: &str = "http://127.0.0.1:9/api";

both_backends!(
    a_foreign_callback_is_the_browsers_fault,
    contracts_need_a_narrowed_token_of_the_caller,
    buying_once_with_a_pin,
    the_pay_url_proves_again_or_sends_away,
    concurrent_payments_from_one_wallet,
    pin_reset_needs_a_fresh_login_of_the_same_person,
    wrong_pins_are_throttled,
    concurrent_wrong_pins_are_checked_at_most_the_limit,
    notifications_are_signed_and_retried,
    admins_see_history_and_refund,
    every_admin_route_is_guarded,
    a_purchase_page_is_framed_only_by_its_own_merchant,
    a_framed_purchase_hands_its_result_to_the_merchants_page,
);

/// What the merchant's notify URI received; it fails the first
/// `fail_first` deliveries with a 503.
#[derive(Default)]
struct Receiver {
    bodies: Mutex<Vec<(String, String)>>,
    fail_first: AtomicUsize,
    attempts: AtomicUsize,
}

pub(crate) struct World {
    pub(crate) app: TestApp,
    pay: Option<PayService>,
    pub(crate) pay_base: String,
    pub(crate) pay_db: TestDb,
    pub(crate) store: Arc<dyn PayStore>,
    pub(crate) shop: (String, String),
    /// The payments service's client id at the IdP.
    pub(crate) pay_client: String,
    rival: (String, String),
    receiver: Arc<Receiver>,
    _dir: tempfile::TempDir,
}

fn terms(order: &str, amount: i64) -> Value {
    json!({
        "order_id": order,
        "product": "ebook-rust",
        "summary": "The Rust book (EPUB)",
        "amount": amount,
        "currency": "EUR",
        "fulfillment_url": format!("http://127.0.0.1:9/fulfill?product=ebook-rust&order={order}"),
        "offer_url": "http://127.0.0.1:9/offer/ebook-rust",
    })
}

impl World {
    pub(crate) async fn new(backend: Backend) -> World {
        Self::with_receiver(backend, 0).await
    }

    async fn with_receiver(backend: Backend, fail_first: usize) -> World {
        Self::build(backend, fail_first, true).await
    }

    /// The payments service registered with a back-channel logout URI and
    /// an events URI where nothing listens: every message from the IdP is
    /// lost.
    pub(crate) async fn deaf(backend: Backend) -> World {
        Self::build(backend, 0, false).await
    }

    async fn build(backend: Backend, fail_first: usize, hears: bool) -> World {
        let app = spawn_app(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pay_base = format!("http://{}", listener.local_addr().unwrap());

        let (mut pay_client, pay_secret) = app
            .register_client(ClientSpec {
                name: "Payments",
                first_party: true,
                redirect_uris: &[&format!("{pay_base}/login/callback")],
                grants: &["authorization_code"],
                scopes: Some("openid email"),
                ..Default::default()
            })
            .await;
        // Tokens for the payments service name it by its URL; it
        // introspects them (`--resource-uri`).
        pay_client.resource_uris = vec![pay_base.clone()];
        // It hears logouts and security events (issue 15), or, deaf, loses
        // them all (nothing listens on port 9).
        let heard_at = if hears { pay_base.as_str() } else { "http://127.0.0.1:9" };
        pay_client.backchannel_logout_uri = Some(format!("{heard_at}/backchannel-logout"));
        pay_client.events_uri = Some(format!("{heard_at}/events"));
        assert!(
            app.store()
                .update_client(
                    &pay_client,
                    &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &pay_client)
                )
                .await
                .unwrap()
        );
        let shop = merchant_client(&app, "Shop", &pay_base).await;
        let rival = merchant_client(&app, "Rival", &pay_base).await;

        let receiver = Arc::new(Receiver {
            fail_first: AtomicUsize::new(fail_first),
            ..Default::default()
        });
        let r = receiver.clone();
        let addr = serve_local(axum::Router::new().route(
            "/notify",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let r = r.clone();
                async move {
                    r.attempts.fetch_add(1, Ordering::SeqCst);
                    let failing = r
                        .fail_first
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if failing {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let ct = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    r.bodies.lock().unwrap().push((ct, body));
                    StatusCode::OK
                }
            }),
        ))
        .await;

        let pay_db = TestDb::create(backend, dir.path()).await;
        let store = gatehouse_pay::open_store(&pay_db.url).await.unwrap();
        store
            .add_merchant(Merchant {
                client_id: shop.0.clone(),
                name: "The Shop".into(),
                origins: vec!["http://127.0.0.1:9".into()],
                notify_uri: Some(format!("http://{addr}/notify")),
                fee: Default::default(),
            })
            .await
            .unwrap();
        store
            .add_merchant(Merchant {
                client_id: rival.0.clone(),
                name: "The Rival".into(),
                origins: vec!["http://127.0.0.1:10".into()],
                notify_uri: None,
                fee: Default::default(),
            })
            .await
            .unwrap();
        let pay = PayService::start(
            PayConfig {
                public_url: pay_base.parse().unwrap(),
                database_url: pay_db.url.clone(),
                issuer: app.base.clone(),
                client_id: pay_client.id.to_string(),
                client_secret: pay_secret.unwrap(),
                data_dir: dir.path().to_owned(),
                secret_key: None,
                limits: Default::default(),
                standing_max_age: gatehouse_pay::DEFAULT_STANDING_MAX_AGE,
            },
            listener,
        )
        .await
        .unwrap();
        World {
            pay_client: pay_client.id.to_string(),
            app,
            pay: Some(pay),
            pay_base,
            pay_db,
            store,
            shop,
            rival,
            receiver,
            _dir: dir,
        }
    }

    /// The ledger adds up; then everything stops.
    pub(crate) async fn finish(mut self) {
        assert_eq!(
            self.store.ledger_sum().await.unwrap(),
            0,
            "the ledger's entries sum to zero"
        );
        assert_eq!(self.store.balances_sum().await.unwrap(), 0, "the balances sum to zero");
        if let Some(pay) = self.pay.take() {
            pay.shutdown().await;
        }
        drop(self.store);
        self.pay_db.drop_db().await;
        self.app.finish().await;
    }

    pub(crate) fn pay(&self, path: &str) -> String {
        format!("{}{path}", self.pay_base)
    }

    /// A signed-in user and the shop's broad token for them: (browser,
    /// broad token, sub).
    pub(crate) async fn user(&self, email: &str, merchant: &(String, String)) -> (Browser, String, String) {
        let b = self.app.ready_account(email, PASSWORD).await;
        let broad = self.broad_token(&b, merchant).await;
        let sub = jwt_claims(&broad)["sub"].as_str().unwrap().to_owned();
        (b, broad, sub)
    }

    pub(crate) async fn broad_token(&self, b: &Browser, merchant: &(String, String)) -> String {
        let name = if merchant == &self.rival { "rival" } else { "shop" };
        let redirect = format!("http://127.0.0.1:9/{name}/cb");
        let (url, verifier) = auth_url(
            &self.app,
            &merchant.0,
            &redirect,
            &[("scope", "openid profile payments")],
        );
        let url = url.replace("scope=openid+email&", "");
        let back = authorize(b, &url).await;
        let (status, tokens) = exchange(&self.app, &merchant.0, &merchant.1, &back["code"], &redirect, &verifier).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        tokens["access_token"].as_str().unwrap().to_owned()
    }

    /// Narrows `broad` (the caller's) to `payments` for `audience`.
    async fn narrow(&self, caller: &(String, String), broad: &str, audience: &str) -> String {
        let (status, body) = post_form(
            &self.app,
            "/token",
            Some((&caller.0, &caller.1)),
            &[
                ("grant_type", TE),
                ("subject_token", broad),
                ("subject_token_type", AT),
                ("scope", "payments"),
                ("audience", audience),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// An operator's `gatehouse:admin` token addressed to the payments
    /// service (RFC 8707 `resource`).
    async fn admin_token(&self) -> String {
        let (mut ops, secret) = self
            .app
            .register_client(ClientSpec {
                name: "Pay ops",
                grants: &["client_credentials"],
                scopes: Some("gatehouse:admin"),
                ..Default::default()
            })
            .await;
        ops.audiences = vec![self.pay_base.clone()];
        assert!(
            self.app
                .store()
                .update_client(
                    &ops,
                    &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &ops)
                )
                .await
                .unwrap()
        );
        let (status, body) = post_form(
            &self.app,
            "/token",
            Some((ops.id.as_str(), &secret.unwrap())),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "gatehouse:admin"),
                ("resource", &self.pay_base),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// The merchant's own client-credentials token for the payments service.
    async fn merchant_token(&self, merchant: &(String, String)) -> String {
        let (status, body) = post_form(
            &self.app,
            "/token",
            Some((&merchant.0, &merchant.1)),
            &[("grant_type", "client_credentials"), ("resource", &self.pay_base)],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn create(&self, merchant_token: &str, user_token: &str, terms: Value) -> (StatusCode, HeaderMap, Value) {
        let r = reqwest::Client::new()
            .post(self.pay("/api/contracts"))
            .bearer_auth(merchant_token)
            .json(&json!({ "user_token": user_token, "terms": terms }))
            .send()
            .await
            .unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    /// A contract for the user of `broad`, created by the shop: the answer.
    pub(crate) async fn contract(&self, broad: &str, order: &str, amount: i64) -> Value {
        let user_token = self.narrow(&self.shop, broad, &self.pay_base).await;
        let merchant_token = self.merchant_token(&self.shop).await;
        let (status, _, body) = self.create(&merchant_token, &user_token, terms(order, amount)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn jwks(&self) -> Value {
        reqwest::get(self.pay("/.well-known/jwks.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Verifies a JWS by the payments service: its claims.
    async fn verify(&self, jws: &str, typ: &str, aud: &str) -> Value {
        let header = jsonwebtoken::decode_header(jws).unwrap();
        assert_eq!(header.typ.as_deref(), Some(typ));
        let jwks = self.jwks().await;
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"].as_str() == header.kid.as_deref())
            .expect("signed with a published key");
        assert!(key.get("d").is_none(), "no private part in the JWKS");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&[aud]);
        validation.set_issuer(&[&self.pay_base]);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<Value>(jws, &decoding, &validation)
            .unwrap()
            .claims
    }
}

async fn merchant_client(app: &TestApp, name: &str, pay_base: &str) -> (String, String) {
    let redirect = format!("http://127.0.0.1:9/{}/cb", name.to_lowercase());
    let (mut client, secret) = app
        .register_client(ClientSpec {
            name,
            first_party: true,
            redirect_uris: &[&redirect],
            grants: &["authorization_code", "client_credentials", "token-exchange"],
            scopes: Some("openid profile email payments"),
            ..Default::default()
        })
        .await;
    client.audiences = vec![pay_base.to_owned(), OTHER_AUDIENCE.to_owned()];
    app.store()
        .update_client(
            &client,
            &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &client),
        )
        .await
        .unwrap();
    (client.id.to_string(), secret.unwrap())
}

/// A callback at the payments service that does not complete the login
/// this browser began (another `state`) is answered 400, the browser's
/// fault, not 403 as if the IdP had refused, and signs nobody in.
async fn a_foreign_callback_is_the_browsers_fault(backend: Backend) {
    let w = World::new(backend).await;
    let b = w.app.browser();
    let started = get(&b, &w.pay("/")).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let to_idp = started.headers["location"].to_str().unwrap().to_owned();
    assert!(to_idp.starts_with(&w.app.base), "{to_idp}");
    let iss = urlencoding(&w.app.base);
    let back = get(
        &b,
        &w.pay(&format!("/login/callback?code=nope&state=another&iss={iss}")),
    )
    .await;
    assert_eq!(back.status, StatusCode::BAD_REQUEST, "{}", back.body);
    assert!(back.body.contains("Sign-in failed"), "{}", back.body);
    let home = get(&b, &w.pay("/")).await;
    assert_eq!(home.status, StatusCode::SEE_OTHER, "nobody signed in");
    w.finish().await;
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// GET an absolute URL in this browser, no redirects followed.
pub(crate) async fn get(b: &Browser, url: &str) -> Page {
    let r = b.client.get(url).send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    Page {
        status,
        headers,
        body: r.text().await.unwrap(),
    }
}

pub(crate) async fn post(b: &Browser, url: &str, fields: &[(&str, &str)]) -> Page {
    let r = b.client.post(url).form(fields).send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    Page {
        status,
        headers,
        body: r.text().await.unwrap(),
    }
}

/// Follows redirects through the IdP and the payments service until a page
/// answers or the browser leaves for another origin: (last URL, page).
pub(crate) async fn walk(b: &Browser, url: &str) -> (String, Page) {
    let mut next = reqwest::Url::parse(url).unwrap();
    for _ in 0..12 {
        if next.port() == Some(9) {
            return (next.to_string(), get_nothing());
        }
        let page = get(b, next.as_str()).await;
        match page.location() {
            Some(l) if page.status.is_redirection() => next = next.join(l).unwrap(),
            _ => return (next.to_string(), page),
        }
    }
    panic!("redirect loop at {next}");
}

/// Stands for the merchant's page (nothing listens on port 9).
fn get_nothing() -> Page {
    Page {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: String::new(),
    }
}

/// Opens the purchase link, agrees, sets the PIN: the pay page.
pub(crate) async fn first_purchase_setup(w: &World, b: &Browser, contract: &Value) -> Page {
    let hash = contract["contract_hash"].as_str().unwrap();
    let link = contract["purchase_url"].as_str().unwrap();
    let r = get(b, link).await;
    r.expect_redirect(&format!("/contracts/{hash}"));
    let page = get(b, &w.pay(&format!("/contracts/{hash}"))).await;
    page.expect(StatusCode::OK, "Terms of service");
    page.expect(StatusCode::OK, "Choose a purchase PIN");
    let csrf = page.input_value("csrf").unwrap();
    let setup = w.pay(&format!("/contracts/{hash}/setup"));
    // Without agreement, a trivial PIN, mismatched PINs: the form again.
    post(b, &setup, &[("csrf", &csrf), ("pin", PIN), ("pin_again", PIN)])
        .await
        .expect(StatusCode::BAD_REQUEST, "Please agree");
    post(
        b,
        &setup,
        &[
            ("csrf", &csrf),
            ("agree", "yes"),
            ("pin", "123456"),
            ("pin_again", "123456"),
        ],
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "too easy to guess");
    post(
        b,
        &setup,
        &[("csrf", &csrf), ("agree", "yes"), ("pin", PIN), ("pin_again", "385173")],
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "differ");
    // A forged form (no CSRF token of this session) changes nothing.
    post(
        b,
        &setup,
        &[("csrf", "forged"), ("agree", "yes"), ("pin", PIN), ("pin_again", PIN)],
    )
    .await
    .expect(StatusCode::FORBIDDEN, "out of date");
    post(
        b,
        &setup,
        &[("csrf", &csrf), ("agree", "yes"), ("pin", PIN), ("pin_again", PIN)],
    )
    .await
    .expect_redirect(&format!("/contracts/{hash}"));
    let page = get(b, &w.pay(&format!("/contracts/{hash}"))).await;
    page.expect(StatusCode::OK, "Purchase PIN");
    page
}

/// Posts the PIN on the pay page of `hash`.
pub(crate) async fn pay_with(w: &World, b: &Browser, hash: &str, pin: &str) -> Page {
    let page = get(b, &w.pay(&format!("/contracts/{hash}"))).await;
    let csrf = page.input_value("csrf").unwrap_or_default();
    post(
        b,
        &w.pay(&format!("/contracts/{hash}/pay")),
        &[("csrf", &csrf), ("pin", pin)],
    )
    .await
}

/// The proof on a fulfillment URL.
fn proof_of(location: &str) -> String {
    let url = reqwest::Url::parse(location).unwrap();
    let pairs: HashMap<String, String> = url.query_pairs().into_owned().collect();
    pairs["payment"].clone()
}

async fn contracts_need_a_narrowed_token_of_the_caller(backend: Backend) {
    let w = World::new(backend).await;
    let (_, broad, _) = w.user("ada@example.com", &w.shop).await;
    let merchant = w.merchant_token(&w.shop).await;
    let narrowed = w.narrow(&w.shop, &broad, &w.pay_base).await;

    // The merchant's own token is required, and must be its own.
    for (token, why) in [("", "none"), ("junk", "malformed"), (narrowed.as_str(), "a user token")] {
        let (status, headers, body) = w.create(token, &narrowed, terms("o1", 499)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
        assert_eq!(body["error"], "invalid_token", "{why}");
        assert!(
            headers
                .get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    // The merchant's own token, but bound to a DPoP key: this API takes
    // bearer tokens only (RFC 9449 §7.2).
    let key = crate::relier::ClientKey::new();
    let bound = crate::relier::dpop_token(&w.app, &w.shop, &key, &[("resource", &w.pay_base)]).await;
    let (status, _, body) = w.create(&bound, &narrowed, terms("o1", 499)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(
        body["error_description"],
        "a DPoP-bound token cannot be used as a bearer token here"
    );
    // A client that is not a registered merchant.
    let (stranger, stranger_secret) = merchant_client(&w.app, "Stranger", &w.pay_base).await;
    let stranger_token = w.merchant_token(&(stranger, stranger_secret.clone())).await;
    let (status, _, body) = w.create(&stranger_token, &narrowed, terms("o1", 499)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("unknown_merchant"))
    );

    // User tokens the payments service refuses, each 403 invalid_user_token.
    let other_audience = w.narrow(&w.shop, &broad, OTHER_AUDIENCE).await;
    let rival_broad = {
        let b = w.app.browser();
        b.login("ada@example.com", PASSWORD).await;
        w.broad_token(&b, &w.rival).await
    };
    let rivals = w.narrow(&w.rival, &rival_broad, &w.pay_base).await;
    // An expired token, signed by the IdP's own key.
    let secret = gatehouse::server::instance_secret(&w.app.config).unwrap();
    let ring = KeyRing::load(w.app.store(), &secret).await.unwrap();
    let mut claims: AccessTokenClaims = serde_json::from_value(jwt_claims(&narrowed)).unwrap();
    let now = Timestamp::now().0;
    claims.exp = now - 600;
    claims.iat = now - 900;
    claims.jti = "expired-narrowed-token-01".into();
    let expired = ring.sign(SigningAlg::ES256, ACCESS_TOKEN_TYP, &claims).await.unwrap();
    let cases = [
        ("broad, not narrowed", broad.as_str()),
        ("narrowed for another audience", other_audience.as_str()),
        ("narrowed by another relier", rivals.as_str()),
        ("expired", expired.as_str()),
        ("malformed", "a.b.c"),
    ];
    for (why, user_token) in cases {
        let (status, _, body) = w.create(&merchant, user_token, terms("o1", 499)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{why}: {body}");
        assert_eq!(body["error"], "invalid_user_token", "{why}");
    }

    // Bad terms: 400 invalid_request, nothing written.
    for (field, value) in [
        ("amount", json!(0)),
        ("amount", json!(1_000_000_000)),
        ("currency", json!("eur")),
        ("fulfillment_url", json!("javascript:alert(1)")),
        ("summary", json!("x".repeat(1000))),
    ] {
        let mut t = terms("o1", 499);
        t[field] = value;
        let (status, _, body) = w.create(&merchant, &narrowed, t).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(body["error"], "invalid_request");
    }

    // The good one: 201, the contract is the terms plus merchant and v,
    // hashed canonically and signed.
    let (status, _, body) = w.create(&merchant, &narrowed, terms("o1", 499)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut expected = terms("o1", 499);
    expected["merchant"] = json!(w.shop.0);
    expected["v"] = json!(1);
    assert_eq!(body["contract"], expected);
    let canonical = gatehouse_core::pay::canonical_json(&expected).unwrap();
    let hash = body["contract_hash"].as_str().unwrap();
    assert_eq!(hash, gatehouse_core::pay::contract_hash(&canonical));
    assert_eq!(body["pay_url"], w.pay(&format!("/contracts/{hash}")));
    assert!(body["purchase_url"].as_str().unwrap().starts_with(&w.pay("/purchase/")));
    let signed = w
        .verify(body["signature"].as_str().unwrap(), "contract+jwt", &w.shop.0)
        .await;
    assert_eq!(signed["contract_hash"], hash);
    assert_eq!(signed["terms"], expected);
    // The same terms again from the same user: 200, the same hash.
    let (status, _, again) = w.create(&merchant, &narrowed, terms("o1", 499)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["contract_hash"], hash);
    // Another user posting the same terms: 409.
    let (_, bob_broad, _) = w.user("bob@example.com", &w.shop).await;
    let bobs = w.narrow(&w.shop, &bob_broad, &w.pay_base).await;
    let (status, _, body) = w.create(&merchant, &bobs, terms("o1", 499)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("contract_taken"))
    );

    // A body over the limit is refused unread.
    let big = reqwest::Client::new()
        .post(w.pay("/api/contracts"))
        .bearer_auth(&merchant)
        .header("content-type", "application/json")
        .body(format!("{{\"user_token\": \"{}\"}}", "x".repeat(20_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Revoked at the IdP: refused at once (introspection).
    let (status, _) = post_form(&w.app, "/revoke", Some((&w.shop.0, &w.shop.1)), &[("token", &narrowed)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = w.create(&merchant, &narrowed, terms("o2", 499)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("invalid_user_token"))
    );
    w.finish().await;
}

async fn buying_once_with_a_pin(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub) = w.user("cleo@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 499).await;
    let hash = contract["contract_hash"].as_str().unwrap();
    let link = contract["purchase_url"].as_str().unwrap();

    let page = first_purchase_setup(&w, &b, &contract).await;
    assert!(page.body.contains("The Shop"), "merchant name");
    assert!(page.body.contains("The Rust book (EPUB)"), "summary");
    assert!(page.body.contains("4.99 EUR"), "price");
    // The purchase page may be framed by its merchant's origin only.
    let csp = page.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.ends_with("frame-ancestors http://127.0.0.1:9"), "{csp}");
    assert!(page.headers.get("x-frame-options").is_none());
    let home = get(&b, &w.pay("/")).await;
    let csp = home.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // The link works once: a replay (another browser) is refused.
    let replay = w.app.browser();
    get(&replay, link).await.expect(StatusCode::GONE, "already used");

    // A wrong PIN charges nothing.
    pay_with(&w, &b, hash, "999990")
        .await
        .expect(StatusCode::BAD_REQUEST, "Wrong PIN");
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 1000);

    // The right PIN: charged, then to the fulfillment URL with a proof.
    let r = pay_with(&w, &b, hash, PIN).await;
    r.expect_redirect(contract["contract"]["fulfillment_url"].as_str().unwrap());
    let proof = w
        .verify(&proof_of(r.location().unwrap()), "payment-proof+jwt", &w.shop.0)
        .await;
    assert_eq!(proof["contract_hash"], hash);
    assert_eq!(proof["sub"], sub.as_str());
    assert_eq!(proof["exp"].as_i64().unwrap() - proof["iat"].as_i64().unwrap(), 300);
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 501);

    // Paying the same contract again charges nothing and proves again.
    let csrf = home.input_value("csrf").unwrap();
    let again = post(
        &b,
        &w.pay(&format!("/contracts/{hash}/pay")),
        &[("csrf", &csrf), ("pin", PIN)],
    )
    .await;
    again.expect_redirect(contract["contract"]["fulfillment_url"].as_str().unwrap());
    let proof2 = w
        .verify(&proof_of(again.location().unwrap()), "payment-proof+jwt", &w.shop.0)
        .await;
    assert_eq!(proof2["purchase_id"], proof["purchase_id"]);
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 501);
    assert_eq!(w.store.purchases(Some(&sub), 10).await.unwrap().len(), 1);

    // A second purchase: no agreement or PIN to set again.
    let second = w.contract(&broad, "o2", 600).await;
    let hash2 = second["contract_hash"].as_str().unwrap();
    get(&b, second["purchase_url"].as_str().unwrap())
        .await
        .expect_redirect("/contracts/");
    // Not enough money: 402, nothing charged.
    pay_with(&w, &b, hash2, PIN)
        .await
        .expect(StatusCode::PAYMENT_REQUIRED, "Not enough money");
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 501);
    // Test money from the payments page, then it works.
    let home = get(&b, &w.pay("/")).await;
    home.expect(StatusCode::OK, "5.01 EUR");
    let csrf = home.input_value("csrf").unwrap();
    post(
        &b,
        &w.pay("/fund"),
        &[("csrf", &csrf), ("amount", "500"), ("currency", "EUR")],
    )
    .await
    .expect_redirect("/?notice=funded");
    pay_with(&w, &b, hash2, PIN)
        .await
        .expect_redirect(second["contract"]["fulfillment_url"].as_str().unwrap());
    let home = get(&b, &w.pay("/")).await;
    home.expect(StatusCode::OK, "4.01 EUR");
    assert_eq!(home.body.matches("<td>paid</td>").count(), 2, "{}", home.body);
    // The history names the merchant as the purchase page does.
    assert_eq!(home.body.matches("<td>The Shop</td>").count(), 2, "{}", home.body);

    // The audit table has the story.
    let kinds: Vec<String> = w
        .store
        .audit_events(Some(&sub), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for kind in [
        "terms_agreed",
        "pin_set",
        "pin_failed",
        "contract_created",
        "purchase_paid",
        "wallet_funded",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    w.finish().await;
}

async fn the_pay_url_proves_again_or_sends_away(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub) = w.user("dora@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 300).await;
    let hash = contract["contract_hash"].as_str().unwrap();
    let pay_url = contract["pay_url"].as_str().unwrap();
    let fulfillment = contract["contract"]["fulfillment_url"].as_str().unwrap();
    let offer = contract["contract"]["offer_url"].as_str().unwrap();
    first_purchase_setup(&w, &b, &contract).await;
    pay_with(&w, &b, hash, PIN).await.expect_redirect(fulfillment);

    // Unknown contract: 404.
    get(&b, &w.pay(&format!("/contracts/{}", "A".repeat(43))))
        .await
        .expect(StatusCode::NOT_FOUND, "no such purchase");

    // The buyer in a fresh browser (cookies lost): logs in through the IdP
    // (SSO: the IdP session is there) and is proved again, not charged.
    let fresh = w.app.browser();
    fresh.login("dora@example.com", PASSWORD).await;
    let (landed, _) = walk(&fresh, pay_url).await;
    assert!(landed.starts_with(fulfillment), "{landed}");
    let proof = w.verify(&proof_of(&landed), "payment-proof+jwt", &w.shop.0).await;
    assert_eq!(proof["contract_hash"], hash);
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 700);

    // Another user: sent to the offer.
    let (eve, eve_broad, _) = w.user("eve@example.com", &w.shop).await;
    let (landed, _) = walk(&eve, pay_url).await;
    assert_eq!(landed, offer);
    // An unpaid contract of someone else: the offer too.
    let unpaid = w.contract(&broad, "o2", 100).await;
    let (landed, _) = walk(&eve, unpaid["pay_url"].as_str().unwrap()).await;
    assert_eq!(landed, offer);
    // Eve's own unpaid contract: her purchase page.
    let eves = w.contract(&eve_broad, "o3", 100).await;
    let (_, page) = walk(&eve, eves["pay_url"].as_str().unwrap()).await;
    page.expect(StatusCode::OK, "Before your first purchase");
    w.finish().await;
}

async fn concurrent_payments_from_one_wallet(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub) = w.user("fay@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let mut contracts = Vec::new();
    for i in 0..10 {
        contracts.push(w.contract(&broad, &format!("o{i}"), 300).await);
    }
    first_purchase_setup(&w, &b, &contracts[0]).await;
    let page = get(&b, &w.pay("/")).await;
    let csrf = page.input_value("csrf").unwrap();
    // Five at a time: the PIN throttle reserves an attempt for each PIN
    // being checked, so more than its limit at once meet 429 (tested in
    // concurrent_wrong_pins_are_checked_at_most_the_limit).
    let mut statuses = Vec::new();
    for wave in contracts.chunks(5) {
        let mut tasks = tokio::task::JoinSet::new();
        for c in wave {
            let (b, csrf) = (b.clone(), csrf.clone());
            let url = w.pay(&format!("/contracts/{}/pay", c["contract_hash"].as_str().unwrap()));
            tasks.spawn(async move { post(&b, &url, &[("csrf", &csrf), ("pin", PIN)]).await.status });
        }
        while let Some(s) = tasks.join_next().await {
            statuses.push(s.unwrap());
        }
    }
    let paid = statuses.iter().filter(|s| **s == StatusCode::SEE_OTHER).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::PAYMENT_REQUIRED).count();
    assert_eq!((paid, refused), (3, 7), "{statuses:?}");
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 100);
    w.finish().await;
}

async fn pin_reset_needs_a_fresh_login_of_the_same_person(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub) = w.user("gus@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 100).await;
    let hash = contract["contract_hash"].as_str().unwrap();
    first_purchase_setup(&w, &b, &contract).await;

    // Without a fresh login, no PIN form.
    get(&b, &w.pay("/pin/new")).await.expect_redirect("/pin/reset");
    // The reset asks the IdP for the password again (max_age=0).
    let r = get(&b, &w.pay("/pin/reset")).await;
    let to_idp = r.location().unwrap().to_owned();
    assert!(to_idp.starts_with(&format!("{}/authorize?", w.app.base)), "{to_idp}");
    assert!(to_idp.contains("max_age=0"), "{to_idp}");
    let (_, page) = walk(&b, &to_idp).await;
    page.expect(StatusCode::OK, "enter your password again");
    let next = page.input_value("next").unwrap();
    let r = b
        .post(
            "/login",
            &[("email", "gus@example.com"), ("password", PASSWORD), ("next", &next)],
        )
        .await;
    let (landed, _) = walk(&b, b.url(r.location().unwrap()).as_str()).await;
    assert_eq!(landed, w.pay("/pin/new"));
    let page = get(&b, &landed).await;
    page.expect(StatusCode::OK, "New purchase PIN");
    let csrf = page.input_value("csrf").unwrap();
    post(
        &b,
        &landed,
        &[("csrf", &csrf), ("pin", "000000"), ("pin_again", "000000")],
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "too easy");
    post(
        &b,
        &landed,
        &[("csrf", &csrf), ("pin", "604918"), ("pin_again", "604918")],
    )
    .await
    .expect_redirect("/?notice=pin_changed");
    // Used up: a second change needs another fresh login.
    get(&b, &w.pay("/pin/new")).await.expect_redirect("/pin/reset");
    pay_with(&w, &b, hash, PIN)
        .await
        .expect(StatusCode::BAD_REQUEST, "Wrong PIN");
    pay_with(&w, &b, hash, "604918")
        .await
        .expect_redirect(contract["contract"]["fulfillment_url"].as_str().unwrap());

    // Gus's purchase link opened where Hal is signed in at the IdP: the
    // payments session is Gus's, but the fresh login comes back as Hal.
    let (hal, _, _) = w.user("hal@example.com", &w.shop).await;
    let second = w.contract(&broad, "o2", 100).await;
    get(&hal, second["purchase_url"].as_str().unwrap())
        .await
        .expect_redirect("/contracts/");
    let r = get(&hal, &w.pay("/pin/reset")).await;
    let (_, page) = walk(&hal, r.location().unwrap()).await;
    page.expect(StatusCode::OK, "enter your password again");
    let next = page.input_value("next").unwrap();
    let r = hal
        .post(
            "/login",
            &[("email", "hal@example.com"), ("password", PASSWORD), ("next", &next)],
        )
        .await;
    let (_, page) = walk(&hal, hal.url(r.location().unwrap()).as_str()).await;
    page.expect(StatusCode::FORBIDDEN, "PIN was not changed");
    get(&hal, &w.pay("/pin/new")).await.expect_redirect("/pin/reset");
    let events = w.store.audit_events(Some(&sub), 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"pin_reset_ok"), "{kinds:?}");
    let refused = events
        .iter()
        .find(|e| e.kind == "pin_reset_refused")
        .expect("the refusal is logged");
    assert_eq!(refused.detail["reason"], "another user signed in");
    w.finish().await;
}

both_backends!(pin_reset_from_a_purchase_ends_on_it_ready_to_pay);

/// The fresh login of a PIN reset begun at `reset` (the IdP asks for the
/// password again): where the browser lands.
async fn fresh_login(b: &Browser, reset: &str, email: &str) -> String {
    let r = get(b, reset).await;
    let (_, page) = walk(b, r.location().unwrap()).await;
    page.expect(StatusCode::OK, "enter your password again");
    let next = page.input_value("next").unwrap();
    let r = b
        .post("/login", &[("email", email), ("password", PASSWORD), ("next", &next)])
        .await;
    walk(b, b.url(r.location().unwrap()).as_str()).await.0
}

/// A buyer who forgot the PIN on the pay page resets it and is back on
/// that pay page, ready to pay with the new PIN; a `next` that is not one
/// of the service's own paths ends on the payments page instead.
async fn pin_reset_from_a_purchase_ends_on_it_ready_to_pay(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub) = w.user("uma@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 100).await;
    let hash = contract["contract_hash"].as_str().unwrap();
    let pay_page = first_purchase_setup(&w, &b, &contract).await;
    pay_with(&w, &b, hash, "604918")
        .await
        .expect(StatusCode::BAD_REQUEST, "Wrong PIN");

    // Somewhere else than our own paths: back to the payments page.
    for hostile in ["https://evil.example/", "//evil.example/", "/%2F/evil.example"] {
        let reset = w.pay(&format!("/pin/reset?next={}", urlencoding(hostile)));
        let landed = fresh_login(&b, &reset, "uma@example.com").await;
        assert_eq!(landed, w.pay("/pin/new"), "{hostile}");
        let page = get(&b, &landed).await;
        let csrf = page.input_value("csrf").unwrap();
        assert_eq!(page.input_value("next"), None, "{hostile}");
        post(
            &b,
            &landed,
            &[
                ("csrf", &csrf),
                ("pin", "604918"),
                ("pin_again", "604918"),
                ("next", hostile),
            ],
        )
        .await
        .expect_redirect("/?notice=pin_changed");
    }

    // "Forgot your PIN?" on the pay page carries the purchase along.
    let reset_path = format!("/pin/reset?next=/contracts/{hash}");
    assert!(pay_page.body.contains(&reset_path), "{}", pay_page.body);
    let landed = fresh_login(&b, &w.pay(&reset_path), "uma@example.com").await;
    assert_eq!(landed, w.pay(&format!("/pin/new?next=%2Fcontracts%2F{hash}")));
    let page = get(&b, &landed).await;
    page.expect(StatusCode::OK, "New purchase PIN");
    let csrf = page.input_value("csrf").unwrap();
    let next = page.input_value("next").unwrap();
    assert_eq!(next, format!("/contracts/{hash}"));
    post(
        &b,
        &w.pay("/pin/new"),
        &[
            ("csrf", &csrf),
            ("pin", "720461"),
            ("pin_again", "720461"),
            ("next", &next),
        ],
    )
    .await
    .expect_redirect(&format!("/contracts/{hash}"));
    // The same purchase page, ready to pay with the new PIN.
    let page = get(&b, &w.pay(&format!("/contracts/{hash}"))).await;
    page.expect(StatusCode::OK, "Purchase PIN");
    page.expect(StatusCode::OK, "Pay 1.00 EUR");
    pay_with(&w, &b, hash, "720461")
        .await
        .expect_redirect(contract["contract"]["fulfillment_url"].as_str().unwrap());
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 900);
    w.finish().await;
}

both_backends!(health_and_metrics_show_purchases_and_refusals);

/// The payments service's `/health/*` and `/metrics`, as the IdP's: a
/// purchase, its amount, the refusals by reason, requests by route and the
/// notification queue are counted; readiness is 503 once its database is
/// gone (dropped on PostgreSQL; an SQLite file already open cannot go away
/// under its connections, so there only the 200 is checked).
async fn health_and_metrics_show_purchases_and_refusals(backend: Backend) {
    let mut w = World::new(backend).await;
    let (b, broad, sub) = w.user("vic@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 250).await;
    let hash = contract["contract_hash"].as_str().unwrap();
    first_purchase_setup(&w, &b, &contract).await;
    pay_with(&w, &b, hash, "604918")
        .await
        .expect(StatusCode::BAD_REQUEST, "Wrong PIN");
    pay_with(&w, &b, hash, PIN)
        .await
        .expect_redirect("http://127.0.0.1:9/fulfill");
    let dear = w.contract(&broad, "o2", 5000).await;
    pay_with(&w, &b, dear["contract_hash"].as_str().unwrap(), PIN)
        .await
        .expect(StatusCode::PAYMENT_REQUIRED, "Not enough money");

    let ops = w.app.browser();
    get(&ops, &w.pay("/health/live")).await.expect(StatusCode::OK, "\"ok\"");
    get(&ops, &w.pay("/health/ready"))
        .await
        .expect(StatusCode::OK, "\"ok\"");
    // The notification is delivered by the worker; the queue shows it.
    let page = eventually("the notification delivered", || async {
        let page = get(&ops, &w.pay("/metrics")).await;
        page.body
            .contains("gatehouse_pay_notifications{state=\"delivered\"} 1")
            .then_some(page)
    })
    .await;
    page.expect(StatusCode::OK, "# TYPE gatehouse_pay_purchases counter");
    for line in [
        "gatehouse_pay_purchases_total{currency=\"EUR\"} 1",
        "gatehouse_pay_paid_minor_units_total{currency=\"EUR\"} 250",
        "gatehouse_pay_refusals_total{reason=\"wrong_pin\"} 1",
        "gatehouse_pay_refusals_total{reason=\"insufficient_funds\"} 1",
        "gatehouse_pay_notifications{state=\"pending\"} 0",
        "gatehouse_pay_notifications{state=\"failed\"} 0",
        "gatehouse_pay_notifications{state=\"dead\"} 0",
        "gatehouse_pay_http_requests_total{method=\"POST\",route=\"/contracts/{hash}/pay\",status=\"303\"} 1",
        "gatehouse_pay_http_requests_total{method=\"POST\",route=\"/contracts/{hash}/pay\",status=\"400\"} 1",
    ] {
        assert!(page.body.contains(line), "{line} missing from:\n{}", page.body);
    }

    if matches!(backend, Backend::Postgres) {
        assert_eq!(w.store.ledger_sum().await.unwrap(), 0);
        w.pay_db.drop_db().await;
        eventually("readiness fails without the database", || async {
            let page = get(&ops, &w.pay("/health/ready")).await;
            (page.status == StatusCode::SERVICE_UNAVAILABLE).then_some(page)
        })
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        get(&ops, &w.pay("/health/live")).await.expect(StatusCode::OK, "\"ok\"");
        // The ledger is gone with the database: stop without the final sums.
        if let Some(pay) = w.pay.take() {
            pay.shutdown().await;
        }
        w.app.finish().await;
        return;
    }
    w.finish().await;
}

async fn wrong_pins_are_throttled(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub) = w.user("ivy@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 100).await;
    let hash = contract["contract_hash"].as_str().unwrap();
    first_purchase_setup(&w, &b, &contract).await;
    for _ in 0..5 {
        pay_with(&w, &b, hash, "111112")
            .await
            .expect(StatusCode::BAD_REQUEST, "Wrong PIN");
    }
    // Even the right PIN waits now.
    pay_with(&w, &b, hash, PIN)
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS, "Too many wrong PINs");
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 1000);
    w.finish().await;
}

/// 40 wrong PINs at once: the PIN is checked five times (five "Wrong
/// PIN"), the other 35 are refused before any check.
async fn concurrent_wrong_pins_are_checked_at_most_the_limit(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub) = w.user("ian@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 100).await;
    let hash = contract["contract_hash"].as_str().unwrap().to_owned();
    first_purchase_setup(&w, &b, &contract).await;
    let page = get(&b, &w.pay(&format!("/contracts/{hash}"))).await;
    let csrf = page.input_value("csrf").unwrap();
    let url = w.pay(&format!("/contracts/{hash}/pay"));
    let start = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (b, url, csrf, start) = (b.clone(), url.clone(), csrf.clone(), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            post(&b, &url, &[("csrf", &csrf), ("pin", "111112")]).await
        }));
    }
    let mut statuses = HashMap::new();
    for task in tasks {
        let page = task.await.unwrap();
        if page.status == StatusCode::BAD_REQUEST {
            page.expect(StatusCode::BAD_REQUEST, "Wrong PIN");
        } else {
            page.expect(StatusCode::TOO_MANY_REQUESTS, "Too many wrong PINs");
        }
        *statuses.entry(page.status.as_u16()).or_insert(0) += 1;
    }
    assert_eq!(statuses, HashMap::from([(400, 5), (429, 35)]), "checked five times");
    // The limit is used up: even the right PIN waits, and nothing was paid.
    pay_with(&w, &b, &hash, PIN)
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS, "Too many wrong PINs");
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 1000);
    w.finish().await;
}

async fn notifications_are_signed_and_retried(backend: Backend) {
    let w = World::with_receiver(backend, 2).await;
    let (b, broad, sub) = w.user("jon@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 250).await;
    let hash = contract["contract_hash"].as_str().unwrap();
    first_purchase_setup(&w, &b, &contract).await;
    pay_with(&w, &b, hash, PIN).await.expect_redirect("http://127.0.0.1:9/");
    // Two failures, then delivered (backoff 1 s, then 2 s, with jitter).
    let (ct, body) = eventually("the notification", || async {
        w.receiver.bodies.lock().unwrap().first().cloned()
    })
    .await;
    assert!(w.receiver.attempts.load(Ordering::SeqCst) >= 3);
    assert_eq!(ct, "application/jwt");
    let claims = w.verify(&body, "payment-notification+jwt", &w.shop.0).await;
    assert_eq!(claims["event"], "purchase.completed");
    assert_eq!(claims["contract_hash"], hash);
    assert_eq!(claims["sub"], sub.as_str());
    assert_eq!(claims["amount"], 250);
    assert_eq!(claims["currency"], "EUR");
    // Admins see the delivery: three attempts, delivered.
    let admin = w.admin_token().await;
    let rows: Value = reqwest::Client::new()
        .get(w.pay(&format!("/admin/notifications?merchant={}", w.shop.0)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = rows["notifications"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["attempts"], 3);
    assert_eq!(rows[0]["last_error"], Value::Null);
    assert!(rows[0]["delivered_at"].is_i64());
    w.finish().await;
}

async fn admins_see_history_and_refund(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub) = w.user("kim@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 400).await;
    let hash = contract["contract_hash"].as_str().unwrap();
    first_purchase_setup(&w, &b, &contract).await;
    pay_with(&w, &b, hash, PIN).await.expect_redirect("http://127.0.0.1:9/");

    let http = reqwest::Client::new();
    // Without a token, or with one lacking the admin scope.
    let r = http.get(w.pay("/admin/purchases")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let merchant = w.merchant_token(&w.shop).await;
    let r = http
        .get(w.pay("/admin/purchases"))
        .bearer_auth(&merchant)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The IdP's admin token is not addressed to the payments service: its
    // introspection tells the payments service nothing about it.
    let (idp_admin, _) = w.app.admin_token().await;
    let r = http
        .get(w.pay("/admin/purchases"))
        .bearer_auth(&idp_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let admin = w.admin_token().await;
    let list: Value = http
        .get(w.pay(&format!("/admin/purchases?user={sub}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let purchases = list["purchases"].as_array().unwrap();
    assert_eq!(purchases.len(), 1);
    assert_eq!(purchases[0]["contract_hash"], hash);
    assert_eq!(purchases[0]["state"], "paid");
    let id = purchases[0]["id"].as_str().unwrap();

    let refund = |id: String| {
        let (http, admin, url) = (
            http.clone(),
            admin.clone(),
            w.pay(&format!("/admin/purchases/{id}/refund")),
        );
        async move {
            let r = http.post(url).bearer_auth(admin).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = refund(id.to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["purchase"]["state"], "refunded");
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 1000);
    let (status, body) = refund(id.to_owned()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );
    let (status, body) = refund("nope".into()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // The merchant hears of the purchase and of the refund.
    let events = eventually("both notifications", || async {
        let bodies = w.receiver.bodies.lock().unwrap().clone();
        (bodies.len() == 2).then_some(bodies)
    })
    .await;
    let mut kinds = Vec::new();
    for (_, jws) in events {
        kinds.push(w.verify(&jws, "payment-notification+jwt", &w.shop.0).await["event"].clone());
    }
    kinds.sort_by_key(|k| k.to_string());
    assert_eq!(kinds, [json!("purchase.completed"), json!("purchase.refunded")]);
    // The buyer's history says refunded; the pay URL no longer proves it.
    get(&b, &w.pay("/")).await.expect(StatusCode::OK, "<td>refunded</td>");
    get(&b, &w.pay(&format!("/contracts/{hash}")))
        .await
        .expect(StatusCode::OK, "refunded");
    w.finish().await;
}

/// Every route of the payments service's admin table, walked without a
/// token, with a merchant's token (no admin scope) and with an admin's.
async fn every_admin_route_is_guarded(backend: Backend) {
    let w = World::new(backend).await;
    let merchant = w.merchant_token(&w.shop).await;
    let admin = w.admin_token().await;
    let routes: Vec<(&str, &str)> = gatehouse_pay::admin::ADMIN_ROUTES
        .iter()
        .map(|r| (r.method.as_str(), r.path))
        .collect();
    assert_eq!(routes.len(), 3, "{routes:?}");
    crate::admin::walk_admin_routes(&w.pay_base, &routes, &merchant, &admin).await;
    w.finish().await;
}

/// The purchase page of a contract of merchant X may be framed by X's
/// origin and by no other merchant's: the rival's page cannot frame the
/// shop's checkout (nor the shop the rival's). Pages of no known contract
/// may be framed by nobody.
async fn a_purchase_page_is_framed_only_by_its_own_merchant(backend: Backend) {
    let w = World::new(backend).await;
    let frame_ancestors = |page: &Page| {
        let csp = page.headers["content-security-policy"].to_str().unwrap().to_owned();
        assert!(page.headers.get("x-frame-options").is_none() || csp.ends_with("'none'"));
        csp.rsplit_once("frame-ancestors ").unwrap().1.to_owned()
    };
    for (merchant, origin, other) in [
        (&w.shop, "http://127.0.0.1:9", "http://127.0.0.1:10"),
        (&w.rival, "http://127.0.0.1:10", "http://127.0.0.1:9"),
    ] {
        let (b, broad, _) = w.user(&format!("frame-{}@example.com", &merchant.0), merchant).await;
        let user_token = w.narrow(merchant, &broad, &w.pay_base).await;
        let merchant_token = w.merchant_token(merchant).await;
        let (status, _, contract) = w.create(&merchant_token, &user_token, terms("f1", 100)).await;
        assert_eq!(status, StatusCode::CREATED, "{contract}");
        let hash = contract["contract_hash"].as_str().unwrap();

        // The link's redirect, the purchase page, and a refused form alike.
        let link = get(&b, contract["purchase_url"].as_str().unwrap()).await;
        link.expect_redirect(&format!("/contracts/{hash}"));
        let page = get(&b, &w.pay(&format!("/contracts/{hash}"))).await;
        page.expect(StatusCode::OK, "Before your first purchase");
        let forged = post(
            &b,
            &w.pay(&format!("/contracts/{hash}/pay")),
            &[("csrf", "x"), ("pin", PIN)],
        )
        .await;
        for p in [&link, &page, &forged] {
            let ancestors = frame_ancestors(p);
            assert_eq!(ancestors, origin, "only its own merchant may frame it");
            assert!(!ancestors.contains(other), "{ancestors}");
        }
    }
    // No contract: nobody.
    let b = w.app.browser();
    let unknown = get(&b, &w.pay(&format!("/contracts/{}", "A".repeat(43)))).await;
    assert_eq!(frame_ancestors(&unknown), "'none'");
    let gone = get(&b, &w.pay("/purchase/nolinkatall")).await;
    assert_eq!(frame_ancestors(&gone), "'none'");
    w.finish().await;
}

/// The purchase in a frame (`display=frame`), over HTTP: the session
/// cookie is one a third-party frame may keep; the pages keep the display;
/// a frame without a session offers the popup or the full page instead of
/// the IdP's login (which may not be framed); paying ends on a page whose
/// first-party script (the only script the policy allows) posts the
/// fulfillment URL with the proof to that URL's origin, the merchant's.
async fn a_framed_purchase_hands_its_result_to_the_merchants_page(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub) = w.user("hal@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "e1", 499).await;
    let hash = contract["contract_hash"].as_str().unwrap();
    let fulfillment = contract["contract"]["fulfillment_url"].as_str().unwrap();
    let framed = format!("/contracts/{hash}?display=frame");
    let csp = |p: &Page| p.headers["content-security-policy"].to_str().unwrap().to_owned();

    let link = get(
        &b,
        &format!("{}?display=frame", contract["purchase_url"].as_str().unwrap()),
    )
    .await;
    link.expect_redirect(&framed);
    let cookie = link.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("gatehouse_pay_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=None", "Secure"] {
        assert!(cookie.split("; ").any(|f| f == flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Partitioned"), "not on plain-http loopback: {cookie}");

    // Without the cookie (a browser that blocks it in a frame): the
    // fallback, in the frame, not a redirect to the IdP.
    let stranger = w.app.browser();
    let fallback = get(&stranger, &w.pay(&framed)).await;
    fallback.expect(StatusCode::OK, "Continue to pay");
    assert!(
        fallback
            .body
            .contains(&format!(r#"href="/contracts/{hash}?display=popup""#))
    );
    assert!(fallback.body.contains(r#"target="_top""#), "the full page");
    assert!(csp(&fallback).contains("script-src 'self'"), "{}", csp(&fallback));
    // A popup without a session signs in through the IdP, back to the popup.
    let popup = get(&stranger, &w.pay(&format!("/contracts/{hash}?display=popup"))).await;
    assert!(popup.location().unwrap().starts_with(&w.app.base), "to the IdP");

    // The pages and their forms keep the display.
    let page = get(&b, &w.pay(&framed)).await;
    page.expect(StatusCode::OK, "Before your first purchase");
    assert!(
        page.body
            .contains(&format!(r#"action="/contracts/{hash}/setup?display=frame""#))
    );
    assert!(
        !csp(&page).contains("script-src"),
        "no script on the forms: {}",
        csp(&page)
    );
    let csrf = page.input_value("csrf").unwrap();
    post(
        &b,
        &w.pay(&format!("/contracts/{hash}/setup?display=frame")),
        &[("csrf", &csrf), ("agree", "yes"), ("pin", PIN), ("pin_again", PIN)],
    )
    .await
    .expect_redirect(&framed);
    let page = get(&b, &w.pay(&framed)).await;
    assert!(
        page.body
            .contains(&format!(r#"action="/contracts/{hash}/pay?display=frame""#))
    );

    // Paid: a page for the merchant's page, not a redirect inside the frame.
    let paid = post(
        &b,
        &w.pay(&format!("/contracts/{hash}/pay?display=frame")),
        &[("csrf", &csrf), ("pin", PIN)],
    )
    .await;
    paid.expect(StatusCode::OK, "Paid");
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 501);
    assert!(
        paid.body.contains(r#"data-origin="http://127.0.0.1:9""#),
        "{}",
        paid.body
    );
    assert!(
        paid.body
            .contains(r#"<script src="/static/checkout.js" defer></script>"#)
    );
    let escaped = fulfillment.replace('&', "&#38;");
    assert!(
        paid.body.contains(&format!(r#"data-url="{escaped}&#38;payment="#)),
        "{}",
        paid.body
    );
    assert!(paid.body.contains(&format!(r#"href="{escaped}&#38;payment="#)));
    let policy = csp(&paid);
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors http://127.0.0.1:9"));
    assert!(!policy.contains("http://127.0.0.1:10"), "{policy}");
    // The same contract again: proved again, on the same kind of page.
    let again = get(&b, &w.pay(&framed)).await;
    again.expect(StatusCode::OK, "Paid");
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 501);

    // The script: first-party, and it never posts to any origin.
    let js = reqwest::get(w.pay("/static/checkout.js")).await.unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    let js = js.text().await.unwrap();
    assert!(js.contains("postMessage(message, origin)"));
    assert!(!js.contains(r#""*""#) && !js.contains("'*'"));
    w.finish().await;
}
