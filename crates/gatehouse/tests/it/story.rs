//! The demo's story in a real browser (headless Chromium, no JavaScript):
//! the IdP, the payments service and the two demo sites (the shop and the
//! forum, `gatehouse_demo_site`). A person signs up at the shop through the
//! IdP, arrives at the forum already signed in, and logging out at the shop
//! logs them out of both (back-channel logout); a ban logs a person out of
//! both (back-channel logout and a RISC account-disabled event).
//!
//! Needs what `browser.rs` needs (Chromium and chromedriver).

use std::time::Duration;

use gatehouse_core::Timestamp;
use gatehouse_core::oauth::{Client as OAuthClient, GrantType, Scopes};
use gatehouse_demo_site::{Kind, Site, SiteConfig};
use serde_json::json;

use crate::both_backends;
use crate::browser::{PASSWORD, assert_console_clean, button, fill, in_chromium, link, text, wait_for_heading};
use crate::support::{Backend, TestApp, eventually, spawn_app};

const SHOP: &str = "Gatehouse Shop";
const FORUM: &str = "Gatehouse Forum";

both_backends!(single_sign_on_logout_and_ban_across_the_demo_sites);

/// The IdP and the two demo sites, registered as `gatehouse demo` registers
/// them (docs/payments.md, "Parties and ports").
struct Stack {
    app: TestApp,
    shop: Site,
    forum: Site,
}

impl Stack {
    async fn start(backend: Backend) -> Stack {
        let app = spawn_app(backend).await;
        let shop_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let forum_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // The payments service's address (not served in this test).
        let pay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = |l: &tokio::net::TcpListener| format!("http://{}", l.local_addr().unwrap());
        let (shop_url, forum_url, pay_url) = (url(&shop_listener), url(&forum_listener), url(&pay_listener));

        let (shop_id, shop_secret) = register_site(&app, "Shop", &shop_url, Some(&pay_url)).await;
        let (forum_id, forum_secret) = register_site(&app, "Forum", &forum_url, None).await;
        let shop = Site::start(
            SiteConfig {
                kind: Kind::Shop,
                name: SHOP.into(),
                public_url: shop_url.parse().unwrap(),
                issuer: app.base.clone(),
                client_id: shop_id,
                client_secret: shop_secret,
                pay_url: Some(pay_url.parse().unwrap()),
            },
            shop_listener,
        )
        .await
        .expect("the shop starts");
        let forum = Site::start(
            SiteConfig {
                kind: Kind::Forum,
                name: FORUM.into(),
                public_url: forum_url.parse().unwrap(),
                issuer: app.base.clone(),
                client_id: forum_id,
                client_secret: forum_secret,
                pay_url: None,
            },
            forum_listener,
        )
        .await
        .expect("the forum starts");
        drop(pay_listener);
        Stack { app, shop, forum }
    }

    async fn finish(self) {
        self.shop.shutdown().await;
        self.forum.shutdown().await;
        self.app.finish().await;
    }
}

/// Registers a demo site at the IdP: confidential, first-party, with its
/// callback, back-channel logout, events and post-logout URIs; the shop
/// also with `payments`, the payments audience, client credentials and
/// token exchange.
async fn register_site(app: &TestApp, name: &str, base: &str, pay: Option<&str>) -> (String, String) {
    let mut grants = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
    if pay.is_some() {
        grants.extend([
            GrantType::ClientCredentials,
            GrantType::parse("urn:ietf:params:oauth:grant-type:token-exchange").unwrap(),
        ]);
    }
    let (mut client, secret) =
        OAuthClient::new(name, false, vec![format!("{base}/callback")], grants, Timestamp::now()).unwrap();
    client.first_party = true;
    client.scopes = Scopes::parse(if pay.is_some() {
        "openid email profile offline_access payments"
    } else {
        "openid email profile offline_access"
    })
    .unwrap();
    client.audiences = pay.map(|p| vec![p.to_owned()]).unwrap_or_default();
    client.backchannel_logout_uri = Some(format!("{base}/backchannel-logout"));
    client.events_uri = Some(format!("{base}/events"));
    client.post_logout_redirect_uris = vec![format!("{base}/")];
    app.store().create_client(&client).await.unwrap();
    (client.id.as_str().to_owned(), secret.unwrap().expose().to_owned())
}

/// What the site's header says: "Signed in as ..." or "Not signed in".
async fn who(c: &fantoccini::Client) -> String {
    text(c, "#who").await
}

/// Reloads `url` until its header reads `expected` (back-channel messages
/// travel through the outbox, a moment after the cause).
async fn until_header(c: &fantoccini::Client, url: &str, heading: &str, expected: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        c.goto(url).await.unwrap();
        wait_for_heading(c, heading).await;
        let now = who(c).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} still says {now:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn single_sign_on_logout_and_ban_across_the_demo_sites(backend: Backend) {
    let stack = Stack::start(backend).await;
    let shop = stack.shop.url().as_str().trim_end_matches('/').to_owned();
    let forum = stack.forum.url().as_str().trim_end_matches('/').to_owned();
    let alice = "alice@example.com";
    let bob = "bob@example.com";
    // Bob's account comes ready from plain HTTP.
    stack.app.ready_account(bob, PASSWORD).await;
    let stack = std::sync::Arc::new(stack);
    let s = stack.clone();
    in_chromium(move |c| async move {
        // The shop's first visit tries a silent login; with no IdP session
        // it comes back quietly, offering to log in.
        c.goto(&format!("{shop}/")).await.unwrap();
        wait_for_heading(&c, SHOP).await;
        assert_eq!(who(&c).await, "Not signed in");

        // Log in, which at the IdP means signing up and verifying.
        link(&c, "Log in").await.click().await.unwrap();
        wait_for_heading(&c, "Sign in").await;
        link(&c, "Create an account").await.click().await.unwrap();
        wait_for_heading(&c, "Create an account").await;
        fill(&c, "input[name=email]", alice).await;
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Create account").await.click().await.unwrap();
        wait_for_heading(&c, "Check your email").await;
        let mail = s
            .app
            .mail
            .wait_for(alice, |m| m.subject.contains("verification code"))
            .await;
        fill(&c, "input[name=code]", &mail.code()).await;
        button(&c, "Verify").await.click().await.unwrap();
        wait_for_heading(&c, "Sign in").await;
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Sign in").await.click().await.unwrap();
        // Back at the shop, signed in.
        wait_for_heading(&c, SHOP).await;
        assert_eq!(who(&c).await, format!("Signed in as {alice}"));

        // The forum: signed in on arrival, no password asked.
        c.goto(&format!("{forum}/")).await.unwrap();
        wait_for_heading(&c, FORUM).await;
        assert_eq!(who(&c).await, format!("Signed in as {alice}"));
        assert_eq!(s.forum.signed_in_users().len(), 1);

        // Log out at the shop: out of the IdP, the shop and the forum.
        c.goto(&format!("{shop}/")).await.unwrap();
        wait_for_heading(&c, SHOP).await;
        button(&c, "Log out").await.click().await.unwrap();
        wait_for_heading(&c, SHOP).await;
        assert_eq!(who(&c).await, "Not signed in");
        eventually("the forum hears of the logout", || async {
            s.forum.signed_in_users().is_empty().then_some(())
        })
        .await;
        until_header(&c, &format!("{forum}/"), FORUM, "Not signed in").await;
        assert!(s.shop.signed_in_users().is_empty());

        // Bob logs in at the forum (his password), then at the shop (no
        // password: single sign-on).
        link(&c, "Log in").await.click().await.unwrap();
        wait_for_heading(&c, "Sign in").await;
        fill(&c, "input[name=email]", bob).await;
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Sign in").await.click().await.unwrap();
        wait_for_heading(&c, FORUM).await;
        assert_eq!(who(&c).await, format!("Signed in as {bob}"));
        c.goto(&format!("{shop}/")).await.unwrap();
        wait_for_heading(&c, SHOP).await;
        link(&c, "Log in").await.click().await.unwrap();
        wait_for_heading(&c, SHOP).await;
        assert_eq!(who(&c).await, format!("Signed in as {bob}"));

        // An admin bans Bob: both sites end his sessions.
        let (token, _) = s.app.admin_token().await;
        let uid = s
            .app
            .store()
            .account_by_email(&gatehouse_core::Email::parse(bob).unwrap())
            .await
            .unwrap()
            .unwrap()
            .id
            .to_string();
        let r = reqwest::Client::new()
            .post(format!("{}/admin/users/{uid}/bans", s.app.base))
            .bearer_auth(&token)
            .json(&json!({ "reason": "spam" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
        eventually("both sites hear of the ban", || async {
            (s.shop.signed_in_users().is_empty() && s.forum.signed_in_users().is_empty()).then_some(())
        })
        .await;
        until_header(&c, &format!("{shop}/"), SHOP, "Not signed in").await;
        until_header(&c, &format!("{forum}/"), FORUM, "Not signed in").await;
        assert_console_clean(&c).await;
    })
    .await;
    let Ok(stack) = std::sync::Arc::try_unwrap(stack) else {
        panic!("the stack is still shared")
    };
    stack.finish().await;
}
