//! Test helpers: stand-ins for the IdP and the payments service (a JWKS on
//! a local port, tokens signed with its key) and a site's state wired to
//! them, for driving the router with `oneshot`.

use axum::Json;
use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_relier::{Issuer, Receiver, RelyingParty, Verifier};
use jsonwebtoken::{EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::fulfill::FulfillmentKey;
use crate::pay::PayClient;
use crate::session::Sessions;
use crate::web::{AppState, Inner, router};

pub const SHOP: &str = "http://127.0.0.1:8082";

/// A signer with an ES256 key, its JWKS served at `/jwks.json` and
/// `/.well-known/jwks.json` on a local port.
pub struct Signer {
    pub base: String,
    key: EncodingKey,
}

impl Signer {
    pub async fn start() -> Signer {
        let signing = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let point = signing.verifying_key().to_encoded_point(false);
        let jwks = json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        }]});
        let serve = move || {
            let jwks = jwks.clone();
            async move { Json(jwks) }
        };
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(serve.clone()))
            .route("/jwks.json", axum::routing::get(serve));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Signer {
            base,
            key: EncodingKey::from_ec_der(signing.to_pkcs8_der().unwrap().as_bytes()),
        }
    }

    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some(typ.into());
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// A site (`shop`, client id "shop") whose IdP is `idp` and whose payments
/// service is `pay`.
pub fn state(kind: crate::Kind, idp: &Signer, pay: &Signer) -> AppState {
    let http = reqwest::Client::new();
    let issuer = Issuer::new(&idp.base, &format!("{}/jwks.json", idp.base), None, http.clone()).unwrap();
    let verifier = Verifier::new(issuer, "shop");
    let rp = RelyingParty::new(
        &verifier,
        "shop",
        Some("secret".into()),
        format!("{SHOP}/callback").parse().unwrap(),
    );
    AppState::new(Inner {
        kind,
        name: "Shop".into(),
        base: SHOP.into(),
        secure_cookies: false,
        receiver: Receiver::new(&verifier, "shop"),
        pay: (kind == crate::Kind::Shop).then(|| PayClient::new(&pay.base, rp.clone(), http)),
        rp,
        fulfillment_key: FulfillmentKey::derive("secret").unwrap(),
        sessions: Sessions::default(),
        notifications: std::sync::Mutex::new(Default::default()),
    })
}

pub async fn send(state: &AppState, request: Request<Body>) -> Response {
    router(state.clone()).oneshot(request).await.unwrap()
}

pub async fn get(state: &AppState, uri: &str, cookie: Option<&str>) -> Response {
    let mut request = Request::get(uri);
    if let Some(c) = cookie {
        request = request.header("cookie", c);
    }
    send(state, request.body(Body::empty()).unwrap()).await
}

pub fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

pub async fn body(r: Response) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}
