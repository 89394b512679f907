//! Money obeys the IdP (issue 15): the payments service hears back-channel
//! logouts and security events, and checks the buyer's standing before
//! money moves. Driven as a buyer and an operator would: a logout at the
//! IdP, `gatehouse user ban` (everywhere, at the payments client, until a
//! time), and a payments service that hears nothing (its URIs unreachable),
//! which the standing check still stops once the IdP's word is stale.
//! A password change ends the payments session too (a credential change).

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::pay::{PIN, World, first_purchase_setup, get, pay_with, post, walk};
use crate::support::{Backend, Browser, TestApp, eventually};

const PASSWORD: &str = "a perfectly fine passphrase";

both_backends!(
    a_logout_at_the_idp_ends_the_payments_session,
    a_global_ban_stops_paying_links_and_funding,
    a_ban_at_the_payments_client_stops_money_there,
    a_suspension_that_lifts_restores_paying,
    a_lost_event_is_caught_by_the_standing_check,
    a_password_change_ends_the_payments_session,
    a_stale_standing_in_a_frame_continues_in_a_window,
);

fn gatehouse(app: &TestApp, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .env("GATEHOUSE_ISSUER", &app.base)
        .env("GATEHOUSE_DATABASE_URL", &app.db.url)
        .env("GATEHOUSE_DATA_DIR", &app.config.data_dir)
        .env("GATEHOUSE_LOG", "warn")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A buyer who bought nothing yet but is set up (agreed, PIN) on a first
/// contract, with 1000 EUR: (browser, broad token, sub, the contract).
async fn buyer(w: &World, email: &str) -> (Browser, String, String, Value) {
    let (b, broad, sub) = w.user(email, &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, &format!("{email}-1"), 100).await;
    first_purchase_setup(w, &b, &contract).await;
    (b, broad, sub, contract)
}

fn hash(contract: &Value) -> &str {
    contract["contract_hash"].as_str().unwrap()
}

/// The payments session of `b` is gone: its pages send it to log in.
async fn session_ended(w: &World, b: &Browser, contract: &Value) -> bool {
    let page = get(b, &w.pay(&format!("/contracts/{}", hash(contract)))).await;
    page.status == StatusCode::SEE_OTHER && page.location().is_some_and(|l| l.starts_with(&w.app.base))
}

/// Paying is refused with nothing charged.
async fn pay_is_stopped(w: &World, b: &Browser, contract: &Value, sub: &str) {
    let before = w.store.balance(sub, "EUR").await.unwrap();
    let r = pay_with(w, b, hash(contract), PIN).await;
    let fulfillment = contract["contract"]["fulfillment_url"].as_str().unwrap();
    assert!(
        !r.location().is_some_and(|l| l.starts_with(fulfillment)),
        "not paid: {:?}",
        r.location()
    );
    assert_eq!(w.store.balance(sub, "EUR").await.unwrap(), before, "nothing charged");
    assert!(w.store.purchase_by_contract(hash(contract)).await.unwrap().is_none());
}

/// The kinds of the buyer's payments audit events.
async fn audit_kinds(w: &World, sub: &str) -> Vec<String> {
    w.store
        .audit_events(Some(sub), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Logging out at the IdP ends the payments session it served (the
/// back-channel logout names its `sid`): the next pay is sent to log in,
/// nothing is charged.
async fn a_logout_at_the_idp_ends_the_payments_session(backend: Backend) {
    let w = World::new(backend).await;
    let (b, _, sub, contract) = buyer(&w, "lou@example.com").await;
    assert!(
        !session_ended(&w, &b, &contract).await,
        "signed in at the payments service"
    );

    let r = b.post("/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    eventually("the payments session to end", || async {
        session_ended(&w, &b, &contract).await.then_some(())
    })
    .await;
    pay_is_stopped(&w, &b, &contract, &sub).await;
    assert!(audit_kinds(&w, &sub).await.contains(&"sessions_ended".to_owned()));
    w.finish().await;
}

/// A password change at the IdP (a credential change; the IdP's other
/// sessions are only marked) ends the payments session all the same: money
/// does not move from a session that outlived the old password.
async fn a_password_change_ends_the_payments_session(backend: Backend) {
    let w = World::new(backend).await;
    let (b, _, sub, contract) = buyer(&w, "kit@example.com").await;
    assert!(
        !session_ended(&w, &b, &contract).await,
        "signed in at the payments service"
    );

    b.post(
        "/settings/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", "another perfectly fine one"),
        ],
    )
    .await
    .expect_redirect("/settings?notice=password_changed");
    eventually("the payments session to end", || async {
        session_ended(&w, &b, &contract).await.then_some(())
    })
    .await;
    pay_is_stopped(&w, &b, &contract, &sub).await;
    w.finish().await;
}

/// A global ban: the payments session ends, paying stops, a purchase link
/// minted before the ban opens nothing (403, audited), and the wallet
/// cannot be funded.
async fn a_global_ban_stops_paying_links_and_funding(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub, contract) = buyer(&w, "mal@example.com").await;
    let minted = w.contract(&broad, "mal-2", 200).await;
    let home = get(&b, &w.pay("/")).await;
    let csrf = home.input_value("csrf").unwrap();

    gatehouse(&w.app, &["user", "ban", &sub, "--reason", "card fraud"]);
    eventually("the payments service to hear the ban", || async {
        let s = w.store.standing(&sub).await.unwrap()?;
        (s.refused.as_deref() == Some("account_disabled")).then_some(())
    })
    .await;

    assert!(session_ended(&w, &b, &contract).await, "the payments session ended");
    pay_is_stopped(&w, &b, &contract, &sub).await;
    // The link minted before the ban: refused, no session.
    let opened = get(&b, minted["purchase_url"].as_str().unwrap()).await;
    opened.expect(StatusCode::FORBIDDEN, "may not make payments");
    assert!(session_ended(&w, &b, &contract).await, "the link opened no session");
    // Funding: no session to fund from, nothing credited.
    let funded = post(
        &b,
        &w.pay("/fund"),
        &[("csrf", &csrf), ("amount", "500"), ("currency", "EUR")],
    )
    .await;
    assert_ne!(funded.location(), Some("/?notice=funded"));
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 1000);
    let kinds = audit_kinds(&w, &sub).await;
    assert!(kinds.contains(&"standing_changed".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"money_refused".to_owned()), "{kinds:?}");
    w.finish().await;
}

/// A ban at the payments client only: the buyer stays signed in at the IdP
/// (and the shop), but the payments session ends and money stops; the
/// direct login at the payments service is refused by the IdP.
async fn a_ban_at_the_payments_client_stops_money_there(backend: Backend) {
    let w = World::new(backend).await;
    let (b, broad, sub, contract) = buyer(&w, "pat@example.com").await;
    let minted = w.contract(&broad, "pat-2", 200).await;

    let pay_client = w.pay_client.clone();
    gatehouse(&w.app, &["user", "ban", &sub, "--client", &pay_client]);
    eventually("the payments service to hear the ban", || async {
        let s = w.store.standing(&sub).await.unwrap()?;
        s.refused.is_some().then_some(())
    })
    .await;
    assert!(session_ended(&w, &b, &contract).await, "the payments session ended");
    pay_is_stopped(&w, &b, &contract, &sub).await;
    get(&b, minted["purchase_url"].as_str().unwrap())
        .await
        .expect(StatusCode::FORBIDDEN, "may not make payments");
    // Still signed in at the IdP; the shop can still narrow a token, and
    // a new contract's link is refused as well.
    b.get("/settings").await.expect(StatusCode::OK, "pat@example.com");
    let broad = w.broad_token(&b, &w.shop).await;
    let fresh = w.contract(&broad, "pat-3", 300).await;
    get(&b, fresh["purchase_url"].as_str().unwrap())
        .await
        .expect(StatusCode::FORBIDDEN, "may not make payments");
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 1000);
    w.finish().await;
}

/// A suspension stops money; when it lifts, the IdP sends account-enabled
/// and the buyer pays again.
async fn a_suspension_that_lifts_restores_paying(backend: Backend) {
    let w = World::new(backend).await;
    let (b, _, sub, contract) = buyer(&w, "sue@example.com").await;
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let until = until.format(&time::format_description::well_known::Rfc3339).unwrap();
    gatehouse(
        &w.app,
        &["user", "ban", &sub, "--until", &until, "--reason", "cool down"],
    );
    eventually("the suspension to reach the payments service", || async {
        let s = w.store.standing(&sub).await.unwrap()?;
        s.refused.is_some().then_some(())
    })
    .await;
    pay_is_stopped(&w, &b, &contract, &sub).await;

    eventually("the suspension to lift at the payments service", || async {
        let s = w.store.standing(&sub).await.unwrap()?;
        s.refused.is_none().then_some(())
    })
    .await;
    // Signed in again at the IdP, a new purchase goes through.
    b.login("sue@example.com", PASSWORD).await.expect_redirect("/settings");
    let broad = w.broad_token(&b, &w.shop).await;
    let again = w.contract(&broad, "sue-2", 250).await;
    get(&b, again["purchase_url"].as_str().unwrap())
        .await
        .expect_redirect(&format!("/contracts/{}", hash(&again)));
    pay_with(&w, &b, hash(&again), PIN)
        .await
        .expect_redirect(again["contract"]["fulfillment_url"].as_str().unwrap());
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 750);
    w.finish().await;
}

/// Runs `statement` on the payments database (makes the IdP's word on the
/// buyer old: "a while later").
async fn on_pay_db(w: &World, statement: &'static str) {
    let url = &w.pay_db.url;
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(statement).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(statement).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

/// The payments service hears nothing (its URIs unreachable): once the
/// IdP's word on the buyer is older than the staleness, paying, funding
/// and a purchase link go through the IdP again, which lets a buyer in
/// good standing straight back and stops a banned one.
async fn a_lost_event_is_caught_by_the_standing_check(backend: Backend) {
    let w = World::deaf(backend).await;
    let (b, broad, sub, contract) = buyer(&w, "dee@example.com").await;
    let fulfillment = contract["contract"]["fulfillment_url"].as_str().unwrap();
    let ago = "UPDATE sessions SET vouched_at = vouched_at - 3600";

    // In good standing, a while later: paying goes by the IdP and back.
    on_pay_db(&w, ago).await;
    let r = pay_with(&w, &b, hash(&contract), PIN).await;
    assert!(
        r.location().is_some_and(|l| l.starts_with(&w.app.base)),
        "{:?}",
        r.location()
    );
    let (at, _) = walk(&b, r.location().unwrap()).await;
    assert!(at.ends_with(&format!("/contracts/{}", hash(&contract))), "{at}");
    pay_with(&w, &b, hash(&contract), PIN)
        .await
        .expect_redirect(fulfillment);
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 900);

    // Banned; the event is lost.
    let minted = w.contract(&broad, "dee-2", 200).await;
    let home = get(&b, &w.pay("/")).await;
    let csrf = home.input_value("csrf").unwrap();
    gatehouse(&w.app, &["user", "ban", &sub, "--reason", "card fraud"]);
    assert!(w.store.standing(&sub).await.unwrap().is_none(), "nothing heard");
    on_pay_db(&w, ago).await;
    on_pay_db(&w, "UPDATE contracts SET created_at = created_at - 3600").await;

    // Paying the second contract: sent to the IdP, which refuses them.
    let second = minted["contract_hash"].as_str().unwrap();
    let paid = pay_with(&w, &b, second, PIN).await;
    assert!(
        paid.location().is_some_and(|l| l.starts_with(&w.app.base)),
        "{:?}",
        paid.location()
    );
    let (at, page) = walk(&b, paid.location().unwrap()).await;
    assert!(!at.starts_with(&w.pay_base), "no way back to paying: {at}");
    assert!(
        page.status.is_success() || page.status.is_client_error(),
        "{}",
        page.status
    );
    // Funding: the same.
    let funded = post(
        &b,
        &w.pay("/fund"),
        &[("csrf", &csrf), ("amount", "500"), ("currency", "EUR")],
    )
    .await;
    assert!(
        funded.location().is_some_and(|l| l.starts_with(&w.app.base)),
        "{:?}",
        funded.location()
    );
    // The link minted before the ban: no session, sent to the IdP.
    let fresh = w.app.browser();
    let opened = get(&fresh, minted["purchase_url"].as_str().unwrap()).await;
    assert!(
        opened.location().is_some_and(|l| l.starts_with(&w.app.base)),
        "{:?}",
        opened.location()
    );
    let (at, _) = walk(&fresh, opened.location().unwrap()).await;
    assert!(!at.starts_with(&w.pay_base), "{at}");

    assert_eq!(
        w.store.balance(&sub, "EUR").await.unwrap(),
        900,
        "nothing more charged or funded"
    );
    assert!(w.store.purchase_by_contract(second).await.unwrap().is_none());
    w.finish().await;
}

/// In a frame, where the IdP's pages cannot show, a stale standing does not
/// send the frame to the IdP: the purchase continues in a popup or as a
/// full page (which go by the IdP), and nothing is charged meanwhile.
async fn a_stale_standing_in_a_frame_continues_in_a_window(backend: Backend) {
    let w = World::deaf(backend).await;
    let (b, _, sub, contract) = buyer(&w, "fay@example.com").await;
    on_pay_db(&w, "UPDATE sessions SET vouched_at = vouched_at - 3600").await;
    let page = get(&b, &w.pay(&format!("/contracts/{}?display=frame", hash(&contract)))).await;
    let csrf = page.input_value("csrf").unwrap_or_default();
    let r = post(
        &b,
        &w.pay(&format!("/contracts/{}/pay?display=frame", hash(&contract))),
        &[("csrf", &csrf), ("pin", PIN)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.location());
    assert!(r.body.contains("Continue to pay"), "{}", r.body);
    assert!(
        r.body
            .contains(&format!("/contracts/{}?display=popup", hash(&contract))),
        "{}",
        r.body
    );
    assert_eq!(w.store.balance(&sub, "EUR").await.unwrap(), 1000, "nothing charged");

    // The same outside a frame: by the IdP.
    let r = pay_with(&w, &b, hash(&contract), PIN).await;
    assert!(
        r.location().is_some_and(|l| l.starts_with(&w.app.base)),
        "{:?}",
        r.location()
    );
}
