//! The demo's story in a real browser (headless Chromium, no JavaScript):
//! the IdP, the payments service and the two demo sites (the shop and the
//! forum, `gatehouse_demo_site`). A person signs up at the shop through the
//! IdP, buys an e-book through the payments service without logging in
//! again, and gets it; arrives at the forum already signed in; opens the
//! purchase in a fresh browser and gets it again without paying twice,
//! while another person opening it gets an offer of their own; logging out
//! at the shop logs them out of both sites (back-channel logout). A ban
//! logs a person out of both (back-channel logout and a RISC
//! account-disabled event).
//!
//! Needs what `browser.rs` needs (Chromium and chromedriver).
//! `GATEHOUSE_TEST_SCREENSHOTS=DIR` saves pictures of the sites' pages there.

use std::time::Duration;

use gatehouse::demo::{ServiceOptions, Services};
use serde_json::json;

use crate::both_backends;
use crate::browser::{
    ChromeDriver, PASSWORD, Session, assert_console_clean, button, console_problems, fill, find, in_chromium, link,
    text, wait_for_heading,
};
use crate::support::{Backend, TestApp, eventually, spawn_app};

const SHOP: &str = "Gatehouse Shop";
const FORUM: &str = "Gatehouse Forum";

/// A purchase PIN that passes the policy.
const PIN: &str = "384951";

both_backends!(the_demo_story_in_a_browser, a_ban_logs_out_of_both_demo_sites);

/// The IdP, and around it the payments service and the two demo sites as
/// `gatehouse demo` wires them (`gatehouse::demo::Services`), all on port 0.
pub(crate) struct Stack {
    pub(crate) app: TestApp,
    services: Services,
    _dir: tempfile::TempDir,
}

impl Stack {
    pub(crate) async fn start(backend: Backend) -> Stack {
        Self::start_with_shop_host(backend, None).await
    }

    /// [`Stack::start`] with the shop's URL naming `shop_host` (e.g.
    /// `localhost`, another site than the payments service's `127.0.0.1`).
    pub(crate) async fn start_with_shop_host(backend: Backend, shop_host: Option<&str>) -> Stack {
        let app = spawn_app(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let any = "127.0.0.1:0".parse().unwrap();
        let services = Services::start(
            app.store().as_ref(),
            ServiceOptions {
                issuer: app.base.clone(),
                data_dir: dir.path().to_path_buf(),
                pay_listen: any,
                pay_database_url: None,
                shop_listen: any,
                shop_host: shop_host.map(str::to_owned),
                forum_listen: any,
                demo_account: false,
            },
        )
        .await
        .expect("the payments service and the demo sites start");
        Stack {
            app,
            services,
            _dir: dir,
        }
    }

    pub(crate) async fn finish(self) {
        self.services.shutdown().await;
        self.app.finish().await;
    }
}

impl std::ops::Deref for Stack {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}

/// What the site's header says: "Signed in as ..." or "Not signed in".
pub(crate) async fn who(c: &fantoccini::Client) -> String {
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

/// The user id of `email`.
pub(crate) async fn uid(app: &TestApp, email: &str) -> String {
    app.store()
        .account_by_email(&gatehouse_core::Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string()
}

/// Signs up at the IdP from its login page (where a site sent the browser)
/// and verifies with the mailed code; the browser ends on the login page.
async fn sign_up(c: &fantoccini::Client, app: &TestApp, email: &str) {
    link(c, "Create an account").await.click().await.unwrap();
    wait_for_heading(c, "Create an account").await;
    fill(c, "input[name=email]", email).await;
    fill(c, "input[name=password]", PASSWORD).await;
    button(c, "Create account").await.click().await.unwrap();
    wait_for_heading(c, "Check your email").await;
    let mail = app
        .mail
        .wait_for(email, |m| m.subject.contains("verification code"))
        .await;
    fill(c, "input[name=code]", &mail.code()).await;
    button(c, "Verify").await.click().await.unwrap();
    wait_for_heading(c, "Sign in").await;
}

/// On the IdP's login page: the password, and sign in.
pub(crate) async fn sign_in(c: &fantoccini::Client, email: &str) {
    wait_for_heading(c, "Sign in").await;
    fill(c, "input[name=email]", email).await;
    fill(c, "input[name=password]", PASSWORD).await;
    button(c, "Sign in").await.click().await.unwrap();
}

/// A new browser with nothing in it: its own chromedriver and profile.
async fn fresh_browser() -> (ChromeDriver, Session) {
    let driver = ChromeDriver::start().await;
    let client = driver.session().await;
    let session = Session {
        client,
        driver_url: driver.url.clone(),
    };
    (driver, session)
}

/// Saves a picture of the page as `DIR/story-NAME.png` when
/// `GATEHOUSE_TEST_SCREENSHOTS=DIR`.
async fn screenshot(c: &fantoccini::Client, name: &str) {
    if let Ok(dir) = std::env::var("GATEHOUSE_TEST_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("story-{name}.png")), png).unwrap();
    }
}

/// The console is clean but for the 402 answers of the shop, which are
/// the protocol, not a fault.
pub(crate) async fn assert_console_clean_but_402(c: &Session) {
    let problems: Vec<_> = console_problems(c)
        .await
        .into_iter()
        .filter(|e| !e["message"].as_str().is_some_and(|m| m.contains("status of 402")))
        .collect();
    assert!(
        problems.is_empty(),
        "the browser's console has warnings or errors: {problems:#?}"
    );
}

async fn the_demo_story_in_a_browser(backend: Backend) {
    let stack = std::sync::Arc::new(Stack::start(backend).await);
    let shop = stack.shop.url().as_str().trim_end_matches('/').to_owned();
    let forum = stack.forum.url().as_str().trim_end_matches('/').to_owned();
    let pay = stack.pay.url().as_str().trim_end_matches('/').to_owned();
    let alice = "alice@example.com";
    let bob = "bob@example.com";
    // Bob's account comes ready from plain HTTP.
    stack.app.ready_account(bob, PASSWORD).await;
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
        sign_up(&c, &s.app, alice).await;
        sign_in(&c, alice).await;
        wait_for_heading(&c, SHOP).await;
        assert_eq!(who(&c).await, format!("Signed in as {alice}"));
        screenshot(&c, "shop").await;
        let alice_id = uid(&s.app, alice).await;

        // Test money, at the payments service's page: no password asked.
        c.goto(&format!("{pay}/")).await.unwrap();
        wait_for_heading(&c, "Your payments").await;
        button(&c, "Add test money").await.click().await.unwrap();
        wait_for_heading(&c, "Your payments").await;
        assert_eq!(s.pay_store.balance(&alice_id, "EUR").await.unwrap(), 1000);

        // Buy: the offer (402), then pay without logging in again: the
        // terms and a PIN the first time, then the PIN.
        c.goto(&format!("{shop}/")).await.unwrap();
        wait_for_heading(&c, SHOP).await;
        find(&c, "a[href='/offer/ebook-rust']").await.click().await.unwrap();
        wait_for_heading(&c, "Buy Ownership in Practice (EPUB)").await;
        let hash = text(&c, "#contract-hash").await;
        screenshot(&c, "offer").await;
        link(&c, "Pay 4.99 EUR").await.click().await.unwrap();
        wait_for_heading(&c, "Before your first purchase").await;
        find(&c, "input[name=agree]").await.click().await.unwrap();
        fill(&c, "input[name=pin]", PIN).await;
        fill(&c, "input[name=pin_again]", PIN).await;
        button(&c, "Continue").await.click().await.unwrap();
        wait_for_heading(&c, &format!("Pay {SHOP}")).await;
        fill(&c, "input[name=pin]", PIN).await;
        button(&c, "Pay 4.99 EUR").await.click().await.unwrap();

        // The goods, at the fulfillment URL (the proof already taken off).
        wait_for_heading(&c, "Your copy of Ownership in Practice (EPUB)").await;
        assert!(text(&c, "#goods").await.contains("Every value has one owner"));
        screenshot(&c, "goods").await;
        let fulfillment = c.current_url().await.unwrap().to_string();
        assert!(
            fulfillment.starts_with(&format!("{shop}/fulfill?product=ebook-rust&")),
            "{fulfillment}"
        );
        assert!(!fulfillment.contains("payment="), "{fulfillment}");
        assert_eq!(s.pay_store.balance(&alice_id, "EUR").await.unwrap(), 1000 - 499);
        // The payments service notifies the shop, which lists the purchase.
        c.goto(&format!("{shop}/orders")).await.unwrap();
        wait_for_heading(&c, "Your purchases").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !text(&c, "main").await.contains(&hash) {
            assert!(tokio::time::Instant::now() < deadline, "no notification of {hash}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.refresh().await.unwrap();
            wait_for_heading(&c, "Your purchases").await;
        }

        // The forum: signed in on arrival, no password asked.
        c.goto(&format!("{forum}/")).await.unwrap();
        wait_for_heading(&c, FORUM).await;
        assert_eq!(who(&c).await, format!("Signed in as {alice}"));
        screenshot(&c, "forum").await;

        // A fresh browser, the same person: the purchase URL asks for
        // payment, the payments service (after a login) recognises the
        // paid contract and proves it again; nothing is charged.
        {
            let (_driver, c2) = fresh_browser().await;
            c2.goto(&fulfillment).await.unwrap();
            wait_for_heading(&c2, "Payment required").await;
            screenshot(&c2, "payment-required").await;
            link(&c2, "Continue to payment").await.click().await.unwrap();
            sign_in(&c2, alice).await;
            wait_for_heading(&c2, "Your copy of Ownership in Practice (EPUB)").await;
            assert_eq!(
                s.pay_store.balance(&alice_id, "EUR").await.unwrap(),
                1000 - 499,
                "no second charge"
            );
            assert_console_clean_but_402(&c2).await;
            let _ = c2.client.clone().close().await;
        }

        // Another person opening it: the payments service sends them to
        // the offer, where the shop (single sign-on) makes them their own.
        {
            let (_driver, c3) = fresh_browser().await;
            c3.goto(&fulfillment).await.unwrap();
            wait_for_heading(&c3, "Payment required").await;
            link(&c3, "Continue to payment").await.click().await.unwrap();
            sign_in(&c3, bob).await;
            wait_for_heading(&c3, "Buy Ownership in Practice (EPUB)").await;
            assert_eq!(who(&c3).await, format!("Signed in as {bob}"));
            assert_ne!(text(&c3, "#contract-hash").await, hash, "an offer of Bob's own");
            assert_console_clean_but_402(&c3).await;
            let _ = c3.client.clone().close().await;
        }

        // Log out at the shop: out of the IdP, the shop and the forum.
        c.goto(&format!("{shop}/")).await.unwrap();
        wait_for_heading(&c, SHOP).await;
        button(&c, "Log out").await.click().await.unwrap();
        wait_for_heading(&c, SHOP).await;
        assert_eq!(who(&c).await, "Not signed in");
        eventually("the forum hears of the logout", || async {
            (!s.forum.signed_in_users().contains(&alice_id)).then_some(())
        })
        .await;
        until_header(&c, &format!("{forum}/"), FORUM, "Not signed in").await;
        assert!(!s.shop.signed_in_users().contains(&alice_id));
        // What this browser proved paid ended with its shop session: the
        // purchase URL asks for payment again.
        c.goto(&fulfillment).await.unwrap();
        wait_for_heading(&c, "Payment required").await;
        assert_console_clean_but_402(&c).await;
    })
    .await;
    let Ok(stack) = std::sync::Arc::try_unwrap(stack) else {
        panic!("the stack is still shared")
    };
    stack.finish().await;
}

async fn a_ban_logs_out_of_both_demo_sites(backend: Backend) {
    let stack = std::sync::Arc::new(Stack::start(backend).await);
    let shop = stack.shop.url().as_str().trim_end_matches('/').to_owned();
    let forum = stack.forum.url().as_str().trim_end_matches('/').to_owned();
    let bob = "bob@example.com";
    stack.app.ready_account(bob, PASSWORD).await;
    let s = stack.clone();
    in_chromium(move |c| async move {
        // Bob logs in at the forum (his password), then at the shop (no
        // password: single sign-on).
        c.goto(&format!("{forum}/")).await.unwrap();
        wait_for_heading(&c, FORUM).await;
        link(&c, "Log in").await.click().await.unwrap();
        sign_in(&c, bob).await;
        wait_for_heading(&c, FORUM).await;
        assert_eq!(who(&c).await, format!("Signed in as {bob}"));
        c.goto(&format!("{shop}/")).await.unwrap();
        wait_for_heading(&c, SHOP).await;
        assert_eq!(who(&c).await, format!("Signed in as {bob}"), "signed in on arrival");

        // An admin bans Bob: both sites end his sessions.
        let (token, _) = s.app.admin_token().await;
        let uid = uid(&s.app, bob).await;
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
