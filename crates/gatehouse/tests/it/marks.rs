//! A password reset marks, it does not destroy, at the sites too (issue 15,
//! item 5): the demo shop hears a credential change, keeps the person's
//! session and place, and before the next page asks the IdP again
//! (`prompt=none`); the IdP wants the password there (its session was
//! marked), and the person comes back into the same page, signed in. A
//! password change in the browser itself comes back without a prompt.

use reqwest::StatusCode;
use url::Url;

use crate::both_backends;
use crate::story::{Stack, uid};
use crate::support::{Browser, Page, TestApp, eventually};

const PASSWORD: &str = "a perfectly fine passphrase";
const NEW_PASSWORD: &str = "another perfectly fine one";

both_backends!(a_password_reset_sends_the_shop_through_the_idp_and_back_to_the_same_page);

/// Follows redirects from `url` across the sites and the IdP until a page
/// that is not one: its URL and the page.
async fn walk(b: &Browser, url: &str) -> (Url, Page) {
    let mut url = Url::parse(url).unwrap();
    for _ in 0..15 {
        let r = b.client.get(url.clone()).send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        let body = r.text().await.unwrap();
        let page = Page { status, headers, body };
        let Some(location) = page.location() else {
            return (url, page);
        };
        url = url.join(location).unwrap();
    }
    panic!("a redirect loop at {url}");
}

/// Resets the password of `email` from another device (no IdP session).
async fn reset_from_a_phone(app: &TestApp, email: &str) {
    let phone = app.browser();
    phone
        .post("/reset", &[("email", email)])
        .await
        .expect_redirect("/reset/sent");
    let mail = app.mail.wait_for(email, |m| m.subject.contains("Reset")).await;
    let link = mail.link("/reset/link?token=");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    phone
        .post("/reset/link", &[("token", &token), ("password", NEW_PASSWORD)])
        .await
        .expect_redirect("/login?notice=password_reset");
}

async fn a_password_reset_sends_the_shop_through_the_idp_and_back_to_the_same_page(backend: crate::support::Backend) {
    let stack = Stack::start(backend).await;
    let shop = stack.shop.url().as_str().trim_end_matches('/').to_owned();
    let orders = format!("{shop}/orders");
    let email = "mia@example.com";
    let laptop = stack.app.ready_account(email, PASSWORD).await;
    let sub = uid(&stack.app, email).await;

    // Mia is signed in at the shop, on her orders page.
    let (at, page) = walk(&laptop, &format!("{shop}/login?next=%2Forders")).await;
    assert_eq!(at.as_str(), orders);
    page.expect(StatusCode::OK, &signed_in_as(email));

    // She resets her password on her phone. The shop hears of it: her
    // next page there goes to the IdP first, silently; her session there
    // is kept (not ended, as a revoked session would be).
    reset_from_a_phone(&stack.app, email).await;
    let check = eventually("the shop checks with the IdP again", || async {
        let r = laptop.client.get(&orders).send().await.unwrap();
        let to = r.headers().get("location")?.to_str().ok()?.to_owned();
        to.starts_with(&stack.app.base).then_some(to)
    })
    .await;
    assert!(check.contains("prompt=none"), "{check}");
    assert!(stack.shop.signed_in_users().contains(&sub), "marked, not logged out");

    // Her laptop's IdP session needs the password again: the IdP asks for
    // it (the silent check answered login_required, the shop went on to a
    // login she sees). The new password resumes that session and brings
    // her back to the orders page, signed in.
    let (at, page) = walk(&laptop, &check).await;
    assert!(at.as_str().starts_with(&stack.app.base), "at the IdP: {at}");
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let next = page
        .input_value("next")
        .expect("the login form returns to the authorization");
    let r = laptop
        .post(
            "/login",
            &[("email", email), ("password", NEW_PASSWORD), ("next", &next)],
        )
        .await;
    let resume = laptop.url(r.location().expect("back to the authorization"));
    let (at, page) = walk(&laptop, resume.as_str()).await;
    assert_eq!(at.as_str(), orders, "back to the same page");
    page.expect(StatusCode::OK, &signed_in_as(email));
    // And it stays so: no further check.
    let r = laptop.client.get(&orders).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A password change on the laptop itself: its IdP session is the one
    // that typed it and stays, so the shop's check comes straight back,
    // with no password asked.
    laptop
        .post(
            "/settings/password",
            &[("current_password", NEW_PASSWORD), ("new_password", PASSWORD)],
        )
        .await
        .expect_redirect("/settings?notice=password_changed");
    let check = eventually("the shop checks with the IdP again", || async {
        let r = laptop.client.get(&orders).send().await.unwrap();
        let to = r.headers().get("location")?.to_str().ok()?.to_owned();
        to.starts_with(&stack.app.base).then_some(to)
    })
    .await;
    let (at, page) = walk(&laptop, &check).await;
    assert_eq!(at.as_str(), orders, "silently back to the same page");
    page.expect(StatusCode::OK, &signed_in_as(email));
    stack.finish().await;
}

/// What the shop's header shows a signed-in person.
fn signed_in_as(email: &str) -> String {
    format!(r#"Signed in as <strong id="who-email">{email}</strong>"#)
}
