//! The payments store on both backends: the ledger balances, a wallet
//! never goes below zero even under concurrent payments, paying a contract
//! twice charges once, refunds, links are single-use, the audit table is
//! append-only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gatehouse_core::Timestamp;
use gatehouse_core::pay::{FeePayer, FeeRule, MerchantTerms, PurchaseState};
use gatehouse_pay::store::{self, Contract, ContractCreated, Merchant, Paid, PayStore, PayStoreError, PurchaseLink};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

struct Db {
    url: String,
    store: Arc<dyn PayStore>,
    pg_name: Option<String>,
    _dir: tempfile::TempDir,
}

fn admin_url() -> String {
    std::env::var("GATEHOUSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin_conn() -> sqlx::postgres::PgConnection {
    use sqlx::Connection;
    sqlx::postgres::PgConnection::connect(&admin_url())
        .await
        .expect("PostgreSQL is reachable")
}

impl Db {
    async fn new(backend: Backend) -> Db {
        let dir = tempfile::tempdir().expect("dir");
        let (url, pg_name) = match backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.path().join("pay.db").display()), None),
            Backend::Postgres => {
                let name = format!("gh_pay_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin_conn().await)
                    .await
                    .expect("create database");
                let mut url = url::Url::parse(&admin_url()).expect("url");
                url.set_path(&format!("/{name}"));
                (url.to_string(), Some(name))
            }
        };
        let store = gatehouse_pay::open_store(&url).await.expect("open store");
        store
            .add_merchant(Merchant {
                client_id: "shop".into(),
                name: "The Shop".into(),
                origins: vec!["http://127.0.0.1:8082".into()],
                notify_uri: Some("http://127.0.0.1:9/notify".into()),
                fee: Default::default(),
            })
            .await
            .expect("merchant");
        Db {
            url,
            store,
            pg_name,
            _dir: dir,
        }
    }

    /// Checks the ledger adds up, then drops the database.
    async fn finish(self) {
        assert_eq!(self.store.ledger_sum().await.expect("sum"), 0, "entries sum to zero");
        assert_eq!(self.store.balances_sum().await.expect("sum"), 0, "balances sum to zero");
        drop(self.store);
        if let Some(name) = self.pg_name {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin_conn().await)
            .await;
        }
    }
}

fn contract(sub: &str, order: &str, amount: i64) -> Contract {
    let terms = MerchantTerms {
        order_id: order.into(),
        product: "ebook".into(),
        summary: "An ebook".into(),
        amount,
        currency: "EUR".into(),
        fulfillment_url: format!("http://127.0.0.1:8082/fulfill?order={order}"),
        offer_url: "http://127.0.0.1:8082/offer/ebook".into(),
    }
    .into_contract("shop")
    .expect("terms");
    Contract {
        hash: terms.hash().expect("hash"),
        sub: sub.into(),
        terms,
        created_at: Timestamp::now(),
    }
}

async fn create(store: &dyn PayStore, c: &Contract) -> ContractCreated {
    let link = PurchaseLink {
        digest: uuid::Uuid::new_v4().to_string(),
        contract_hash: c.hash.clone(),
        sub: c.sub.clone(),
        expires_at: Timestamp::now().plus(300),
    };
    store.create_contract(c, &link).await.expect("create contract")
}

async fn concurrent_payments_never_overdraw(backend: Backend) {
    let db = Db::new(backend).await;
    let store = db.store.clone();
    assert_eq!(store.fund("alice", 1000, "EUR").await.expect("fund"), 1000);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let c = contract("alice", &format!("o{i}"), 300);
        assert_eq!(create(store.as_ref(), &c).await, ContractCreated::New);
        let store = store.clone();
        tasks.spawn(async move { store.pay(&c, &format!("p{i}"), Timestamp::now()).await });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(Paid::New(_)) => ok += 1,
            Err(PayStoreError::InsufficientFunds) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, refused), (3, 7));
    assert_eq!(store.balance("alice", "EUR").await.expect("balance"), 100);
    assert_eq!(store.purchases(Some("alice"), 100).await.expect("list").len(), 3);
    db.finish().await;
}

async fn paying_twice_charges_once(backend: Backend) {
    let db = Db::new(backend).await;
    let store = db.store.clone();
    store.fund("bob", 1000, "EUR").await.expect("fund");
    let c = contract("bob", "o1", 400);
    create(store.as_ref(), &c).await;
    let first = store.pay(&c, "p1", Timestamp::now()).await.expect("pay");
    assert!(matches!(first, Paid::New(_)));
    let second = store.pay(&c, "p2", Timestamp::now()).await.expect("pay again");
    match second {
        Paid::Already(p) => assert_eq!(p.id, "p1"),
        other => panic!("charged twice: {other:?}"),
    }
    // Concurrently too.
    let c2 = contract("bob", "o2", 100);
    create(store.as_ref(), &c2).await;
    let (a, b) = tokio::join!(
        store.pay(&c2, "p3", Timestamp::now()),
        store.pay(&c2, "p4", Timestamp::now())
    );
    let news = [a.expect("a"), b.expect("b")]
        .iter()
        .filter(|p| matches!(p, Paid::New(_)))
        .count();
    assert_eq!(news, 1);
    assert_eq!(store.balance("bob", "EUR").await.expect("balance"), 500);
    // One notification per completed purchase.
    assert_eq!(store.outbox(Some("shop"), 10).await.expect("outbox").len(), 2);
    db.finish().await;
}

async fn refunds_move_money_back_once(backend: Backend) {
    let db = Db::new(backend).await;
    let store = db.store.clone();
    store.fund("carol", 500, "EUR").await.expect("fund");
    let c = contract("carol", "o1", 500);
    create(store.as_ref(), &c).await;
    store.pay(&c, "p1", Timestamp::now()).await.expect("pay");
    assert_eq!(store.balance("carol", "EUR").await.expect("b"), 0);
    // An empty wallet cannot pay.
    let c2 = contract("carol", "o2", 1);
    create(store.as_ref(), &c2).await;
    assert!(matches!(
        store.pay(&c2, "p2", Timestamp::now()).await,
        Err(PayStoreError::InsufficientFunds)
    ));
    assert!(store.purchase_by_contract(&c2.hash).await.expect("read").is_none());
    let refunded = store.refund_as("p1", "admin", Timestamp::now()).await.expect("refund");
    assert_eq!(refunded.state, PurchaseState::Refunded);
    assert_eq!(store.balance("carol", "EUR").await.expect("b"), 500);
    assert!(matches!(
        store.refund_as("p1", "admin", Timestamp::now()).await,
        Err(PayStoreError::State(_))
    ));
    assert!(matches!(store.refund("nope").await, Err(PayStoreError::NotFound)));
    let kinds: Vec<String> = store
        .audit_events(Some("carol"), 20)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for kind in ["wallet_funded", "contract_created", "purchase_paid", "refund"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    db.finish().await;
}

async fn contracts_and_links(backend: Backend) {
    let db = Db::new(backend).await;
    let store = db.store.clone();
    let c = contract("dave", "o1", 10);
    assert_eq!(create(store.as_ref(), &c).await, ContractCreated::New);
    assert_eq!(create(store.as_ref(), &c).await, ContractCreated::Existing);
    let mut other = c.clone();
    other.sub = "erin".into();
    assert_eq!(create(store.as_ref(), &other).await, ContractCreated::Taken);
    assert_eq!(store.contract(&c.hash).await.expect("read").expect("there"), c);
    let link = PurchaseLink {
        digest: "d1".into(),
        contract_hash: c.hash.clone(),
        sub: "dave".into(),
        expires_at: Timestamp::now().plus(300),
    };
    store.create_contract(&c, &link).await.expect("again");
    let now = Timestamp::now();
    assert_eq!(
        store.use_link("d1", now).await.expect("use"),
        Some((c.hash.clone(), "dave".to_owned()))
    );
    assert_eq!(store.use_link("d1", now).await.expect("use"), None, "single use");
    let expired = PurchaseLink {
        digest: "d2".into(),
        expires_at: now.minus(1),
        ..link
    };
    store.create_contract(&c, &expired).await.expect("again");
    assert_eq!(store.use_link("d2", now).await.expect("use"), None, "expired");
    // Expired rows go; contracts stay.
    store.purge_expired(now.plus(2 * 86400)).await.expect("purge");
    assert!(store.contract(&c.hash).await.expect("read").is_some());
    db.finish().await;
}

async fn the_store_refuses_a_negative_wallet(backend: Backend) {
    let db = Db::new(backend).await;
    db.store.fund("frank", 10, "EUR").await.expect("fund");
    db.store
        .audit(
            gatehouse_pay::store::PayAuditKind::PinFailed,
            Some("frank"),
            serde_json::json!({}),
            Timestamp::now(),
        )
        .await
        .expect("audit");
    // SQL that bypasses the store's methods still cannot overdraw a wallet,
    // nor rewrite the audit table.
    let overdraw = "UPDATE ledger_accounts SET balance = balance - 11 WHERE id = 'user:EUR:frank'";
    let rewrite = "UPDATE audit_events SET kind = 'nothing'";
    let erase = "DELETE FROM audit_events";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.expect("pool");
            for statement in [overdraw, rewrite, erase] {
                assert!(sqlx::query(statement).execute(&pool).await.is_err(), "{statement}");
            }
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
            for statement in [overdraw, rewrite, erase] {
                assert!(sqlx::query(statement).execute(&pool).await.is_err(), "{statement}");
            }
        }
    }
    assert_eq!(db.store.balance("frank", "EUR").await.expect("b"), 10);
    db.finish().await;
}

both_backends!(
    concurrent_payments_never_overdraw,
    paying_twice_charges_once,
    refunds_move_money_back_once,
    contracts_and_links,
    the_store_refuses_a_negative_wallet,
    pin_reservations_are_atomic,
    the_newest_word_of_the_idp_stands,
    fees_are_covered_and_come_back,
    concurrent_payments_and_refunds_with_fees,
);

/// The standing keeps the newest event (by `iat`): an older one arriving
/// late changes nothing; a refusal ends every session of the buyer; a
/// logout ends its IdP session's sessions and the buyer's sessions of
/// unknown IdP session, no one else's.
async fn the_newest_word_of_the_idp_stands(backend: Backend) {
    use gatehouse_pay::store::SessionsOf;
    let db = Db::new(backend).await;
    let s = &db.store;
    let now = Timestamp(1_000_000);
    let detail = serde_json::json!({});
    let later = now.plus(3600);
    s.create_session("d1", "gil", Some("sid-a"), now, now, later)
        .await
        .expect("session");
    s.create_session("d2", "gil", Some("sid-b"), now, now, later)
        .await
        .expect("session");
    s.create_session("d3", "gil", None, now, now, later)
        .await
        .expect("session");
    s.create_session("d4", "hal", None, now, now, later)
        .await
        .expect("session");

    let ended = s
        .end_sessions(
            SessionsOf::IdpSession {
                sid: "sid-a",
                sub: Some("gil"),
            },
            &detail,
            now,
        )
        .await
        .expect("logout");
    assert_eq!(ended, 2, "sid-a's session and gil's link session");
    assert!(s.session("d2", now).await.expect("read").is_some());
    assert!(s.session("d4", now).await.expect("read").is_some());

    assert!(
        s.record_standing("gil", Some("account_disabled"), Timestamp(20), &detail, now)
            .await
            .expect("w")
    );
    assert!(
        s.session("d2", now).await.expect("read").is_none(),
        "a refusal ends every session"
    );
    assert!(
        s.session("d4", now).await.expect("read").is_some(),
        "of that buyer only"
    );
    // An older account-enabled, late: nothing changes.
    assert!(
        !s.record_standing("gil", None, Timestamp(10), &detail, now)
            .await
            .expect("w")
    );
    let standing = s.standing("gil").await.expect("read").expect("recorded");
    assert_eq!(standing.refused.as_deref(), Some("account_disabled"));
    // A newer one restores.
    assert!(
        s.record_standing("gil", None, Timestamp(30), &detail, now)
            .await
            .expect("w")
    );
    assert_eq!(s.standing("gil").await.expect("read").expect("recorded").refused, None);
    assert!(s.standing("hal").await.expect("read").is_none());
    db.finish().await;
}

/// Payments and refunds with fees at once, from two wallets of one merchant:
/// none fails for anything but money (no deadlock), and every account ends
/// where the successful ones put it.
async fn concurrent_payments_and_refunds_with_fees(backend: Backend) {
    let db = Db::new(backend).await;
    let store = db.store.clone();
    let rule = FeeRule::new(10, 0, FeePayer::Buyer).expect("rule");
    for buyer in ["gus", "hal"] {
        store.fund(buyer, 550, "EUR").await.expect("fund");
        for i in 0..5 {
            let c = contract_with_fee(buyer, &format!("{buyer}-first-{i}"), 100, rule);
            create(store.as_ref(), &c).await;
            store
                .pay(&c, &format!("{buyer}-p{i}"), Timestamp::now())
                .await
                .expect("pay");
        }
    }
    // Each wallet holds nothing now; refunds and new payments race.
    let mut tasks = tokio::task::JoinSet::new();
    for buyer in ["gus", "hal"] {
        for i in 0..5 {
            let store = store.clone();
            let id = format!("{buyer}-p{i}");
            tasks.spawn(async move { store.refund_as(&id, "admin", Timestamp::now()).await.map(|_| true) });
            let store = db.store.clone();
            let c = contract_with_fee(buyer, &format!("{buyer}-second-{i}"), 100, rule);
            create(store.as_ref(), &c).await;
            tasks.spawn(async move {
                match store.pay(&c, &format!("{}-q", c.hash), Timestamp::now()).await {
                    Ok(_) => Ok(false),
                    Err(PayStoreError::InsufficientFunds) => Ok(true),
                    Err(e) => Err(e),
                }
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("only a refusal for money");
    }
    let paid_again = |buyer: &'static str| {
        let store = store.clone();
        async move {
            store
                .purchases(Some(buyer), 100)
                .await
                .expect("list")
                .iter()
                .filter(|p| p.state == PurchaseState::Paid)
                .count() as i64
        }
    };
    for buyer in ["gus", "hal"] {
        let paid = paid_again(buyer).await;
        assert_eq!(store.balance(buyer, "EUR").await.expect("b"), 550 - 110 * paid);
    }
    db.finish().await;
}

/// A contract for `sub` with the fee `rule` makes of `amount`.
fn contract_with_fee(sub: &str, order: &str, amount: i64, rule: FeeRule) -> Contract {
    let mut c = contract(sub, order, amount);
    c.terms = c.terms.with_fee(&rule);
    c.hash = c.terms.hash().expect("hash");
    c
}

/// A buyer-paid fee must be covered by the wallet with the price (or
/// nothing moves); a refund returns price and fee, whoever paid it; a fee
/// the merchant pays may take the whole price.
async fn fees_are_covered_and_come_back(backend: Backend) {
    let db = Db::new(backend).await;
    let store = db.store.clone();
    store.fund("fay", 500, "EUR").await.expect("fund");
    let buyer_pays = FeeRule::new(30, 0, FeePayer::Buyer).expect("rule");
    let c = contract_with_fee("fay", "o1", 500, buyer_pays);
    assert_eq!(c.terms.split().buyer_pays, 530);
    create(store.as_ref(), &c).await;
    assert!(matches!(
        store.pay(&c, "p1", Timestamp::now()).await,
        Err(PayStoreError::InsufficientFunds)
    ));
    assert!(store.purchase_by_contract(&c.hash).await.expect("read").is_none());
    assert_eq!(store.balance("fay", "EUR").await.expect("b"), 500);
    store.fund("fay", 30, "EUR").await.expect("fund");
    store.pay(&c, "p1", Timestamp::now()).await.expect("pay");
    assert_eq!(store.balance("fay", "EUR").await.expect("b"), 0);
    let refunded = store.refund_as("p1", "admin", Timestamp::now()).await.expect("refund");
    assert_eq!(refunded.fee.map(|f| f.amount), Some(30));
    assert_eq!(store.balance("fay", "EUR").await.expect("b"), 530);

    // All of the price as the merchant's fee: the merchant gets nothing,
    // and the refund still gives the buyer everything back.
    let merchant_pays = FeeRule::new(0, 10_000, FeePayer::Merchant).expect("rule");
    let c = contract_with_fee("fay", "o2", 100, merchant_pays);
    create(store.as_ref(), &c).await;
    store.pay(&c, "p2", Timestamp::now()).await.expect("pay");
    assert_eq!(store.balance("fay", "EUR").await.expect("b"), 430);
    store.refund_as("p2", "admin", Timestamp::now()).await.expect("refund");
    assert_eq!(store.balance("fay", "EUR").await.expect("b"), 530);
    db.finish().await;
}

/// 40 PIN attempts at once, from two store processes on the same database
/// (two instances): exactly the limit are reserved, each counted once; a
/// full window refuses and changes nothing; a new window starts afresh.
async fn pin_reservations_are_atomic(backend: Backend) {
    let db = Db::new(backend).await;
    let other = gatehouse_pay::open_store(&db.url).await.expect("second store");
    let key = gatehouse_core::pay::pin::throttle_key("grace");
    let policy = gatehouse_core::pay::pin::PER_USER;
    let now = Timestamp(1_700_000_000);
    let start = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            Arc::clone(&db.store)
        } else {
            Arc::clone(&other)
        };
        let (key, start) = (key.clone(), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            store
                .reserve_attempt(&key, now, policy)
                .await
                .expect("reserve")
                .map(|w| w.failures)
        }));
    }
    let mut granted = Vec::new();
    for task in tasks {
        if let Some(n) = task.await.expect("task") {
            granted.push(n);
        }
    }
    granted.sort_unstable();
    let limit = policy.max_failures;
    assert_eq!(granted, (1..=limit).collect::<Vec<u32>>(), "the limit and no more");
    let full = db.store.throttle_window(&key).await.expect("window").expect("a window");
    assert_eq!((full.started_at, full.failures), (now, limit));
    assert_eq!(
        db.store.reserve_attempt(&key, now.plus(1), policy).await.expect("r"),
        None
    );
    let later = now.plus(policy.window_secs);
    let fresh = db
        .store
        .reserve_attempt(&key, later, policy)
        .await
        .expect("r")
        .expect("a new window");
    assert_eq!((fresh.started_at, fresh.failures), (later, 1));
    db.store.clear_throttle(&key).await.expect("clear");
    assert_eq!(db.store.throttle_window(&key).await.expect("window"), None);
    drop(other);
    db.finish().await;
}

#[tokio::test]
async fn unknown_database_urls_are_refused() {
    assert!(matches!(
        store::connect("mysql://x").await,
        Err(PayStoreError::UnsupportedUrl(_))
    ));
}

/// Migration 0003 builds SQLite's `ledger_accounts` again (to allow the
/// `fee` kind): the accounts, entries and purchases written before it stay,
/// old purchases have no fee, and foreign keys hold afterwards.
#[tokio::test]
async fn the_fee_migration_keeps_the_sqlite_ledger() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use std::str::FromStr;

    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("pay.db").display());
    let options = SqliteConnectOptions::from_str(&url)
        .expect("url")
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("pool");
    let migrator = sqlx::migrate!("./migrations/sqlite");
    migrator.run_to(1, &pool).await.expect("0001");
    for statement in [
        "INSERT INTO merchants (client_id, name, origins, created_at) VALUES ('shop', 'Shop', '[]', 1)",
        "INSERT INTO ledger_accounts (id, kind, owner, currency, balance) VALUES \
         ('funding:EUR:test', 'funding', 'test', 'EUR', -300), ('user:EUR:u', 'user', 'u', 'EUR', 100), \
         ('merchant:EUR:shop', 'merchant', 'shop', 'EUR', 200)",
        "INSERT INTO ledger_movements (id, kind, created_at) VALUES ('m1', 'fund', 1)",
        "INSERT INTO ledger_entries (movement_id, account_id, amount, created_at) VALUES \
         ('m1', 'funding:EUR:test', -300, 1), ('m1', 'user:EUR:u', 300, 1)",
        "INSERT INTO contracts (hash, merchant, sub, terms, amount, currency, created_at) \
         VALUES ('h', 'shop', 'u', '{}', 200, 'EUR', 1)",
        "INSERT INTO purchases (id, contract_hash, sub, merchant, amount, currency, state, paid_at) \
         VALUES ('p1', 'h', 'u', 'shop', 200, 'EUR', 'paid', 1)",
    ] {
        sqlx::query(statement).execute(&pool).await.expect(statement);
    }
    migrator.run(&pool).await.expect("all migrations");

    let accounts: Vec<(String, i64)> = sqlx::query_as("SELECT id, balance FROM ledger_accounts ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("accounts");
    assert_eq!(
        accounts,
        [
            ("funding:EUR:test".to_owned(), -300),
            ("merchant:EUR:shop".to_owned(), 200),
            ("user:EUR:u".to_owned(), 100)
        ]
    );
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries")
        .fetch_one(&pool)
        .await
        .expect("entries");
    assert_eq!(entries, 2);
    let fee: (i64, Option<String>) = sqlx::query_as("SELECT fee, fee_payer FROM purchases WHERE id = 'p1'")
        .fetch_one(&pool)
        .await
        .expect("purchase");
    assert_eq!(fee, (0, None));
    let rule: (i64, i64, String) =
        sqlx::query_as("SELECT fee_fixed, fee_basis_points, fee_payer FROM merchants WHERE client_id = 'shop'")
            .fetch_one(&pool)
            .await
            .expect("merchant");
    assert_eq!(rule, (0, 0, "buyer".to_owned()));
    // The fee kind is allowed, never below zero; foreign keys still hold.
    sqlx::query(
        "INSERT INTO ledger_accounts (id, kind, owner, currency) VALUES ('fee:EUR:fees', 'fee', 'fees', 'EUR')",
    )
    .execute(&pool)
    .await
    .expect("a fee account");
    assert!(
        sqlx::query("UPDATE ledger_accounts SET balance = -1 WHERE id = 'fee:EUR:fees'")
            .execute(&pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query(
            "INSERT INTO ledger_entries (movement_id, account_id, amount, created_at) VALUES ('m1', 'nobody', 1, 1)"
        )
        .execute(&pool)
        .await
        .is_err(),
        "foreign keys are on again"
    );
    let violations: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&pool)
        .await
        .expect("check");
    assert!(violations.is_empty());
}
