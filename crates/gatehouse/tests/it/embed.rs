//! Checkout in the merchant's page, in headless Chromium with JavaScript
//! on: the shop is served as `localhost` and the payments service as
//! `127.0.0.1`, two sites, and the shop's offer page frames the purchase
//! page (`/offer/{product}?checkout=frame`). With third-party cookies
//! allowed (Chromium's default) the buyer pays inside the frame; with them
//! blocked the frame falls back to a popup, where the payments service is
//! first-party. Either way the paid page posts the fulfillment URL to the
//! shop's exact origin, and the shop's page goes there and shows the goods.
//!
//! Needs what `browser.rs` needs (Chromium and chromedriver).

use fantoccini::Client;

use crate::both_backends;
use crate::browser::{ChromeDriver, PASSWORD, Session, button, fill, find, link, text, wait_for_heading};
use crate::story::{Stack, assert_console_clean_but_402, sign_in, uid, who};
use crate::support::Backend;

const PIN: &str = "384951";
const EBOOK: &str = "Ownership in Practice (EPUB)";

both_backends!(
    checkout_framed_on_the_shops_page_across_two_sites,
    checkout_falls_back_to_a_popup_without_third_party_cookies,
);

/// A browser with JavaScript on, third-party cookies allowed or blocked.
async fn browser(block_third_party_cookies: bool) -> (ChromeDriver, Session) {
    let driver = ChromeDriver::start().await;
    let client = if block_third_party_cookies {
        driver.session_without_third_party_cookies().await
    } else {
        driver.session_with_javascript().await
    };
    let session = Session {
        client,
        driver_url: driver.url.clone(),
    };
    (driver, session)
}

/// The stack with the shop on `localhost`; a funded account signed in at
/// the shop; the embedded checkout's offer page open. Answers the shop's
/// and the payments service's base URLs and the account's id.
async fn at_the_embedded_offer(stack: &Stack, c: &Client, email: &str) -> (String, String, String) {
    let shop = stack.shop.url().as_str().trim_end_matches('/').to_owned();
    let pay = stack.pay.url().as_str().trim_end_matches('/').to_owned();
    assert!(shop.starts_with("http://localhost:"), "{shop}");
    assert!(pay.starts_with("http://127.0.0.1:"), "{pay}");
    stack.app.ready_account(email, PASSWORD).await;
    let id = uid(&stack.app, email).await;
    stack.pay_store.fund(&id, 1000, "EUR").await.unwrap();

    c.goto(&format!("{shop}/")).await.unwrap();
    wait_for_heading(c, "Gatehouse Shop").await;
    link(c, "Log in").await.click().await.unwrap();
    sign_in(c, email).await;
    wait_for_heading(c, "Gatehouse Shop").await;
    assert_eq!(who(c).await, format!("Signed in as {email}"));

    c.goto(&format!("{shop}/offer/ebook-rust")).await.unwrap();
    wait_for_heading(c, &format!("Buy {EBOOK}")).await;
    link(c, "Or pay on this page").await.click().await.unwrap();
    wait_for_heading(c, &format!("Buy {EBOOK}")).await;
    let frame = find(c, "#checkout-frame").await;
    let src = frame.attr("src").await.unwrap().unwrap();
    assert!(src.starts_with(&format!("{pay}/purchase/")), "{src}");
    assert!(src.ends_with("?display=frame"), "{src}");
    (shop, pay, id)
}

/// On the purchase page (in the frame or the popup): the first purchase's
/// agreement and PIN, then the PIN; paid.
async fn agree_and_pay(c: &Client) {
    wait_for_heading(c, "Before your first purchase").await;
    find(c, "input[name=agree]").await.click().await.unwrap();
    fill(c, "input[name=pin]", PIN).await;
    fill(c, "input[name=pin_again]", PIN).await;
    button(c, "Continue").await.click().await.unwrap();
    wait_for_heading(c, "Pay Gatehouse Shop").await;
    fill(c, "input[name=pin]", PIN).await;
    button(c, "Pay 4.99 EUR").await.click().await.unwrap();
}

/// Back on the shop's own page, at the goods: the fulfillment URL with
/// the proof taken off.
async fn the_shop_shows_the_goods(c: &Client, shop: &str) {
    wait_for_heading(c, &format!("Your copy of {EBOOK}")).await;
    assert!(text(c, "#goods").await.contains("Every value has one owner"));
    let url = c.current_url().await.unwrap().to_string();
    assert!(url.starts_with(&format!("{shop}/fulfill?product=ebook-rust&")), "{url}");
    assert!(!url.contains("payment="), "{url}");
}

async fn checkout_framed_on_the_shops_page_across_two_sites(backend: Backend) {
    let stack = Stack::start_with_shop_host(backend, Some("localhost")).await;
    let (_driver, c) = browser(false).await;
    let email = "fay@example.com";
    let (shop, _pay, id) = at_the_embedded_offer(&stack, &c, email).await;
    let main = c.window().await.unwrap();

    // Inside the frame: the payments service's pages, with its session
    // (the purchase link's cookie, `SameSite=None; Secure`, kept in the
    // frame on another site).
    c.enter_frame(0).await.unwrap();
    agree_and_pay(&c).await;
    // The frame's last page hands the result to the shop's page...
    c.switch_to_window(main).await.unwrap();
    the_shop_shows_the_goods(&c, &shop).await;
    assert_eq!(stack.pay_store.balance(&id, "EUR").await.unwrap(), 1000 - 499);
    assert_eq!(c.windows().await.unwrap().len(), 1, "no popup was needed");

    assert_console_clean_but_402(&c).await;
    drop(c);
    stack.finish().await;
}

async fn checkout_falls_back_to_a_popup_without_third_party_cookies(backend: Backend) {
    let stack = Stack::start_with_shop_host(backend, Some("localhost")).await;
    let (_driver, c) = browser(true).await;
    let email = "gus@example.com";
    let (shop, _pay, id) = at_the_embedded_offer(&stack, &c, email).await;
    let main = c.window().await.unwrap();

    // The frame kept no cookie: it offers a popup (or the full page).
    c.enter_frame(0).await.unwrap();
    wait_for_heading(&c, "Continue to pay").await;
    link(&c, "Or continue on the payments site").await;
    link(&c, "Pay in a new window").await.click().await.unwrap();

    // The popup: the payments service first-party, signed in through the
    // IdP without a password (the IdP's session), then the purchase.
    let deadline = tokio::time::Instant::now() + crate::browser::PAGE_DEADLINE;
    let popup = loop {
        let windows = c.windows().await.unwrap();
        if let Some(w) = windows.into_iter().find(|w| *w != main) {
            break w;
        }
        assert!(tokio::time::Instant::now() < deadline, "no popup opened");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    c.switch_to_window(popup).await.unwrap();
    agree_and_pay(&c).await;

    // The popup posts the result to the shop's page and closes.
    let deadline = tokio::time::Instant::now() + crate::browser::PAGE_DEADLINE;
    while c.windows().await.unwrap().len() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "the popup stays open");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    c.switch_to_window(main).await.unwrap();
    the_shop_shows_the_goods(&c, &shop).await;
    assert_eq!(stack.pay_store.balance(&id, "EUR").await.unwrap(), 1000 - 499);

    assert_console_clean_but_402(&c).await;
    drop(c);
    stack.finish().await;
}
