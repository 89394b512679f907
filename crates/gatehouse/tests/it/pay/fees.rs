//! Fees (issue 15 item 3): the merchant's fee rule reaches the contract's
//! signed terms, the purchase page shows the fee and the total before the
//! PIN, paying moves the fee to the fee account with the price, and a
//! refund gives it back. Balances are read from the payments database's
//! ledger, as an auditor would.

use std::collections::BTreeMap;

use gatehouse_core::pay::notification::CONTRACT_TYP;
use gatehouse_core::pay::{FeePayer, FeeRule};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

use super::{PIN, World, first_purchase_setup, get, pay_with};
use crate::both_backends;
use crate::support::Backend;

both_backends!(
    buyer_paid_fee_is_shown_moved_and_refunded,
    merchant_paid_fee_comes_out_of_the_price
);

/// Sets the shop's fee rule, as `gatehouse pay merchant add --fee-...` does.
async fn set_fee(w: &World, rule: FeeRule) {
    let mut shop = w.store.merchant(&w.shop.0).await.unwrap().unwrap();
    shop.fee = rule;
    w.store.add_merchant(shop).await.unwrap();
}

/// Every ledger account's balance, by id (`kind:currency:owner`).
async fn balances(backend: Backend, url: &str) -> BTreeMap<String, i64> {
    const Q: &str = "SELECT id, balance FROM ledger_accounts";
    let rows: Vec<(String, i64)> = match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_as(Q).fetch_all(&mut c).await.unwrap()
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as(Q).fetch_all(&mut c).await.unwrap()
        }
    };
    rows.into_iter().collect()
}

async fn admin_refund(w: &World, purchase_id: &str) -> Value {
    let admin = w.admin_token().await;
    let r = reqwest::Client::new()
        .post(w.pay(&format!("/admin/purchases/{purchase_id}/refund")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn expected(entries: &[(&str, i64)]) -> BTreeMap<String, i64> {
    entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

async fn buyer_paid_fee_is_shown_moved_and_refunded(backend: Backend) {
    let w = World::new(backend).await;
    // 0.30 EUR plus 2.5 %, paid by the buyer: on 4.00 EUR, 0.30 + 0.10.
    set_fee(&w, FeeRule::new(30, 250, FeePayer::Buyer).unwrap()).await;
    let (b, broad, sub) = w.user("fee@example.com", &w.shop).await;
    w.store.fund(&sub, 1000, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 400).await;
    let hash = contract["contract_hash"].as_str().unwrap();

    // The contract's terms, and the payments service's signature over
    // them, state the fee.
    let fee = json!({ "amount": 40, "payer": "buyer" });
    assert_eq!(contract["contract"]["fee"], fee);
    assert_eq!(contract["contract"]["amount"], 400);
    let signed = w
        .verify(contract["signature"].as_str().unwrap(), CONTRACT_TYP, &w.shop.0)
        .await;
    assert_eq!(signed["terms"]["fee"], fee);
    assert_eq!(signed["contract_hash"], hash);

    // Before the PIN: the price, the fee and the total.
    let page = first_purchase_setup(&w, &b, &contract).await;
    page.expect(StatusCode::OK, "<dd>4.00 EUR</dd>")
        .expect(StatusCode::OK, "0.40 EUR (paid by you, on top of the price)")
        .expect(StatusCode::OK, "<strong>4.40 EUR</strong>")
        .expect(StatusCode::OK, "Pay 4.40 EUR");

    pay_with(&w, &b, hash, PIN).await.expect_redirect("http://127.0.0.1:9/");
    let shop = format!("merchant:EUR:{}", w.shop.0);
    let wallet = format!("user:EUR:{sub}");
    assert_eq!(
        balances(backend, &w.pay_db.url).await,
        expected(&[
            ("funding:EUR:test", -1000),
            (&wallet, 560),
            (&shop, 400),
            ("fee:EUR:fees", 40)
        ])
    );
    // The buyer's wallet page says so too: the balance, and the purchase
    // at what it cost.
    get(&b, &w.pay("/"))
        .await
        .expect(StatusCode::OK, "5.60 EUR")
        .expect(StatusCode::OK, "<td>4.40 EUR</td>");

    let purchase = w.store.purchase_by_contract(hash).await.unwrap().unwrap();
    let body = admin_refund(&w, &purchase.id).await;
    assert_eq!(body["purchase"]["state"], "refunded");
    assert_eq!(body["purchase"]["fee"], fee);
    // The refund gives back the price and the fee.
    assert_eq!(
        balances(backend, &w.pay_db.url).await,
        expected(&[
            ("funding:EUR:test", -1000),
            (&wallet, 1000),
            (&shop, 0),
            ("fee:EUR:fees", 0)
        ])
    );
    w.finish().await;
}

async fn merchant_paid_fee_comes_out_of_the_price(backend: Backend) {
    let w = World::new(backend).await;
    // 10 % paid by the merchant: on 5.05 EUR, 0.505 rounds half up to 0.51.
    set_fee(&w, FeeRule::new(0, 1000, FeePayer::Merchant).unwrap()).await;
    let (b, broad, sub) = w.user("mfee@example.com", &w.shop).await;
    // Exactly the price: the buyer pays no fee.
    w.store.fund(&sub, 505, "EUR").await.unwrap();
    let contract = w.contract(&broad, "o1", 505).await;
    let hash = contract["contract_hash"].as_str().unwrap();
    assert_eq!(
        contract["contract"]["fee"],
        json!({ "amount": 51, "payer": "merchant" })
    );

    let page = first_purchase_setup(&w, &b, &contract).await;
    page.expect(StatusCode::OK, "0.51 EUR (paid by the merchant, out of the price)")
        .expect(StatusCode::OK, "Pay 5.05 EUR");
    pay_with(&w, &b, hash, PIN).await.expect_redirect("http://127.0.0.1:9/");
    let shop = format!("merchant:EUR:{}", w.shop.0);
    let wallet = format!("user:EUR:{sub}");
    assert_eq!(
        balances(backend, &w.pay_db.url).await,
        expected(&[
            ("funding:EUR:test", -505),
            (&wallet, 0),
            (&shop, 454),
            ("fee:EUR:fees", 51)
        ])
    );

    let purchase = w.store.purchase_by_contract(hash).await.unwrap().unwrap();
    admin_refund(&w, &purchase.id).await;
    assert_eq!(
        balances(backend, &w.pay_db.url).await,
        expected(&[
            ("funding:EUR:test", -505),
            (&wallet, 505),
            (&shop, 0),
            ("fee:EUR:fees", 0)
        ])
    );
    w.finish().await;
}
