//! Accounts end to end over HTTP: sign-up, verification, login, logout,
//! throttling, password reset and change, email change, sessions, deletion,
//! and bad input that must change nothing.

use reqwest::StatusCode;

use gatehouse_core::audit::AuditKind;
use gatehouse_core::code::{CodePurpose, OneTimeCode};
use gatehouse_core::{Email, Timestamp};
use gatehouse_store::AuditQuery;

use crate::both_backends;
use crate::support::{Backend, Browser, Page, TestApp, spawn_app};

const PASSWORD: &str = "a perfectly fine passphrase";
const NEW_PASSWORD: &str = "another quite fine passphrase";

both_backends!(
    sign_up_verify_by_code_and_log_in,
    verification_link_works_once,
    unverified_account_is_signed_in_but_not_ready,
    sign_up_with_a_taken_email_reveals_nothing,
    wrong_passwords_are_throttled,
    concurrent_wrong_passwords_are_checked_at_most_the_limit,
    the_right_password_among_concurrent_wrong_ones_works,
    concurrent_logins_from_one_address_are_checked_at_most_its_limit,
    logout_ends_the_session,
    password_reset_asks_other_sessions_to_reauthenticate,
    reset_request_for_unknown_email_looks_the_same,
    verify_and_reset_answer_the_same_for_every_address,
    reset_mail_is_throttled_per_target_and_per_client,
    sign_up_and_resend_mail_is_throttled,
    password_change_needs_the_current_password,
    email_change_keeps_the_user_id,
    email_change_mail_is_throttled,
    email_change_by_link_and_to_a_taken_address,
    sessions_can_be_listed_and_ended,
    account_deletion_needs_the_password,
    bad_input_changes_nothing,
    expired_and_used_codes_are_refused,
    concurrent_wrong_codes_are_checked_at_most_five_times,
);

async fn kinds_for(app: &TestApp, email: &str) -> Vec<AuditKind> {
    let store = app.store();
    let account = store
        .account_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap();
    let q = AuditQuery {
        account_id: Some(account.id),
        ..Default::default()
    };
    store
        .audit_events(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.kind)
        .collect()
}

async fn sign_up_verify_by_code_and_log_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.browser();
    let page = b.get("/signup").await;
    page.expect(StatusCode::OK, "Create an account");

    let r = b
        .post("/signup", &[("email", "Alice@Example.com"), ("password", PASSWORD)])
        .await;
    r.expect_redirect("/verify?email=alice%40example.com");
    let page = b.get(r.location().unwrap()).await;
    page.expect(StatusCode::OK, "alice@example.com");

    let mail = app
        .mail
        .wait_for("alice@example.com", |m| m.subject.contains("verification code"))
        .await;
    let code = mail.code();
    b.post("/verify", &[("email", "alice@example.com"), ("code", &code)])
        .await
        .expect_redirect("/login?notice=verified");
    // The code worked once; it does not work again (and the answer is the
    // one any address gets: nobody is signed in).
    b.post("/verify", &[("email", "alice@example.com"), ("code", &code)])
        .await
        .expect(StatusCode::BAD_REQUEST, "not right or no longer works");

    let r = b.login("alice@example.com", PASSWORD).await;
    r.expect_redirect("/settings");
    assert!(r.headers.get_all("set-cookie").iter().any(|c| {
        let c = c.to_str().unwrap();
        c.starts_with("gh_session=") && c.contains("HttpOnly") && c.contains("SameSite=Lax")
    }));
    b.get("/settings").await.expect(StatusCode::OK, "alice@example.com");
    assert_eq!(
        kinds_for(&app, "alice@example.com").await,
        [AuditKind::SignUp, AuditKind::EmailVerified, AuditKind::LoginSucceeded]
    );
    app.finish().await;
}

async fn verification_link_works_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.browser();
    b.post("/signup", &[("email", "bob@example.com"), ("password", PASSWORD)])
        .await;
    let mail = app
        .mail
        .wait_for("bob@example.com", |m| m.subject.contains("verification code"))
        .await;
    let link = mail.link("/verify/link?token=");
    let token = link.split("token=").nth(1).unwrap().to_owned();

    // Opening the link shows a button; it changes nothing yet.
    let page = b.get(&link).await;
    page.expect(StatusCode::OK, "Verify my email");
    let store = app.store();
    let email = Email::parse("bob@example.com").unwrap();
    assert!(!store.account_by_email(&email).await.unwrap().unwrap().email_verified);

    b.post("/verify/link", &[("token", &token)])
        .await
        .expect(StatusCode::OK, "Your email address is verified");
    assert!(store.account_by_email(&email).await.unwrap().unwrap().email_verified);
    b.post("/verify/link", &[("token", &token)])
        .await
        .expect(StatusCode::BAD_REQUEST, "already been used");
    b.post("/verify/link", &[("token", "not-a-token-we-issued")])
        .await
        .expect(StatusCode::BAD_REQUEST, "never issued");
    b.login("bob@example.com", PASSWORD).await.expect_redirect("/settings");
    app.finish().await;
}

async fn unverified_account_is_signed_in_but_not_ready(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.browser();
    b.post("/signup", &[("email", "carol@example.com"), ("password", PASSWORD)])
        .await;
    let first = app
        .mail
        .wait_for("carol@example.com", |m| m.subject.contains("verification code"))
        .await;

    b.login("carol@example.com", PASSWORD).await.expect_redirect("/verify");
    b.get("/settings").await.expect_redirect("/verify");
    b.get("/verify").await.expect(StatusCode::OK, "Send a new code");

    // A new code replaces the first one.
    b.post("/verify/resend", &[])
        .await
        .expect_redirect("/verify?notice=code_sent");
    let second = app
        .mail
        .wait_for("carol@example.com", |m| {
            m.subject.contains("verification code") && m.body != first.body
        })
        .await;
    if first.code() != second.code() {
        b.post("/verify", &[("code", &first.code())])
            .await
            .expect(StatusCode::BAD_REQUEST, "not right");
    }
    b.post("/verify", &[("code", &second.code())])
        .await
        .expect_redirect("/settings");
    b.get("/settings").await.expect(StatusCode::OK, "carol@example.com");
    app.finish().await;
}

async fn sign_up_with_a_taken_email_reveals_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("dave@example.com", PASSWORD).await;

    let b = app.browser();
    let taken = b
        .post(
            "/signup",
            &[("email", "dave@example.com"), ("password", "some other passphrase")],
        )
        .await;
    let fresh = b
        .post("/signup", &[("email", "erin@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(taken.status, fresh.status);
    assert_eq!(
        taken.location().unwrap().replace("dave", "X"),
        fresh.location().unwrap().replace("erin", "X")
    );
    app.mail
        .wait_for("dave@example.com", |m| m.subject.contains("already have"))
        .await;
    // The existing account is untouched: the old password still works.
    app.browser()
        .login("dave@example.com", PASSWORD)
        .await
        .expect_redirect("/settings");
    app.browser()
        .login("dave@example.com", "some other passphrase")
        .await
        .expect(StatusCode::BAD_REQUEST, "not right");
    app.finish().await;
}

async fn wrong_passwords_are_throttled(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("frank@example.com", PASSWORD).await;
    let b = app.browser();
    let unknown = b.login("nobody@example.com", "whatever passphrase").await;
    let wrong = b.login("frank@example.com", "wrong passphrase").await;
    // The same answer for an unknown email and a wrong password.
    assert_eq!(unknown.status, wrong.status);
    unknown.expect(StatusCode::BAD_REQUEST, "The email or password is not right.");
    wrong.expect(StatusCode::BAD_REQUEST, "The email or password is not right.");

    for _ in 0..4 {
        b.login("frank@example.com", "wrong passphrase")
            .await
            .expect(StatusCode::BAD_REQUEST, "not right");
    }
    // Five failures: even the right password waits now, from any browser.
    let r = app.browser().login("frank@example.com", PASSWORD).await;
    r.expect(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts. Try again in 15 minutes.",
    );
    let retry: i64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry));
    // Another account is not affected by this one's counter.
    app.ready_account("grace@example.com", PASSWORD).await;

    let store = app.store();
    let q = AuditQuery {
        kind: Some(AuditKind::LoginFailed),
        ..Default::default()
    };
    let reasons: Vec<String> = store
        .audit_events(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.detail["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons.first().map(String::as_str), Some("unknown_account"));
    assert_eq!(reasons.iter().filter(|r| *r == "bad_password").count(), 5);
    assert_eq!(reasons.last().map(String::as_str), Some("throttled"));
    app.finish().await;
}

/// Reasons of the failed logins, oldest first.
async fn login_failures(app: &TestApp) -> Vec<String> {
    let q = AuditQuery {
        kind: Some(AuditKind::LoginFailed),
        ..Default::default()
    };
    app.store()
        .audit_events(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.detail["reason"].as_str().unwrap().to_owned())
        .collect()
}

/// Logs in with each password at once, from one address; the pages in order.
async fn logins_at_once(b: &Browser, email: &str, passwords: &[&str]) -> Vec<Page> {
    b.csrf().await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(passwords.len()));
    let mut tasks = Vec::new();
    for password in passwords {
        let (b, email, password, start) = (b.clone(), email.to_owned(), password.to_string(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            b.login(&email, &password).await
        }));
    }
    let mut pages = Vec::new();
    for task in tasks {
        pages.push(task.await.unwrap());
    }
    pages
}

/// 40 wrong passwords at once for one account: the password is checked five
/// times; the other 35 are refused before any check, and so is the right
/// password afterwards.
async fn concurrent_wrong_passwords_are_checked_at_most_the_limit(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("fred@example.com", PASSWORD).await;
    let pages = logins_at_once(&app.browser(), "fred@example.com", &["wrong passphrase"; 40]).await;
    let checked = pages.iter().filter(|p| p.status == StatusCode::BAD_REQUEST).count();
    let refused = pages
        .iter()
        .filter(|p| p.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (5, 35), "checked five times, refused the rest");
    let reasons = login_failures(&app).await;
    assert_eq!(reasons.iter().filter(|r| *r == "bad_password").count(), 5);
    assert_eq!(reasons.iter().filter(|r| *r == "throttled").count(), 35);
    app.browser()
        .login("fred@example.com", PASSWORD)
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS, "Too many attempts");
    app.finish().await;
}

/// 60 wrong logins at once from one address, each for another email: the
/// address's limit (50) are checked, 10 refused; a refused attempt does not
/// touch its email's counter (the address is reserved first).
async fn concurrent_logins_from_one_address_are_checked_at_most_its_limit(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.browser();
    b.csrf().await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(60));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (b, start) = (b.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            let email = format!("guess{i}@example.com");
            start.wait().await;
            let page = b.login(&email, "wrong passphrase").await;
            (email, page)
        }));
    }
    let (mut checked, mut refused) = (0, Vec::new());
    for task in tasks {
        let (email, page) = task.await.unwrap();
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            refused.push(email);
        } else {
            page.expect(StatusCode::BAD_REQUEST, "not right");
            checked += 1;
        }
    }
    assert_eq!((checked, refused.len()), (50, 10));
    let store = app.store();
    for email in refused {
        let key = gatehouse_core::throttle::account_key(&Email::parse(&email).unwrap());
        let window = store.throttle_window(&key).await.unwrap();
        assert_eq!(window, None, "{email}: not touched");
    }
    app.finish().await;
}

/// Four wrong passwords and the right one at once: within the limit, so the
/// right one signs in, and its attempt is given back (the account's counter
/// cleared), so five more wrong ones are checked afterwards.
async fn the_right_password_among_concurrent_wrong_ones_works(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("gina@example.com", PASSWORD).await;
    let b = app.browser();
    let mut passwords = vec!["wrong passphrase"; 4];
    passwords.insert(2, PASSWORD);
    let pages = logins_at_once(&b, "gina@example.com", &passwords).await;
    pages[2].expect_redirect("/settings");
    for (i, page) in pages.iter().enumerate() {
        if i != 2 {
            page.expect(StatusCode::BAD_REQUEST, "not right");
        }
    }
    let pages = logins_at_once(&app.browser(), "gina@example.com", &["wrong passphrase"; 6]).await;
    let checked = pages.iter().filter(|p| p.status == StatusCode::BAD_REQUEST).count();
    assert_eq!(checked, 5);
    app.finish().await;
}

async fn logout_ends_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("heidi@example.com", PASSWORD).await;
    let old_cookie = b.cookie("gh_session").unwrap();
    b.post("/logout", &[]).await.expect_redirect("/login?notice=signed_out");
    b.get("/settings").await.expect_redirect("/login?next=%2Fsettings");
    // The old cookie no longer names a session, even if replayed.
    let replay = app.browser();
    let r = replay
        .client
        .get(replay.url("/settings"))
        .header("cookie", format!("gh_session={old_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(kinds_for(&app, "heidi@example.com").await.contains(&AuditKind::Logout));
    app.finish().await;
}

async fn password_reset_asks_other_sessions_to_reauthenticate(backend: Backend) {
    let app = spawn_app(backend).await;
    let laptop = app.ready_account("ivan@example.com", PASSWORD).await;
    let laptop_cookie = laptop.cookie("gh_session").unwrap();

    let phone = app.browser_with_agent("GatehouseTest/1.0 (phone)");
    phone
        .get("/login")
        .await
        .expect(StatusCode::OK, "Forgot your password?");
    phone
        .post("/reset", &[("email", "ivan@example.com")])
        .await
        .expect_redirect("/reset/sent");
    let mail = app
        .mail
        .wait_for("ivan@example.com", |m| m.subject.contains("Reset"))
        .await;
    let link = mail.link("/reset/link?token=");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    phone.get(&link).await.expect(StatusCode::OK, "Choose a new password");
    // The policy applies to the new password too.
    phone
        .post("/reset/link", &[("token", &token), ("password", "password")])
        .await
        .expect(StatusCode::BAD_REQUEST, "most commonly used");
    phone
        .post("/reset/link", &[("token", &token), ("password", NEW_PASSWORD)])
        .await
        .expect_redirect("/login?notice=password_reset");
    phone
        .post("/reset/link", &[("token", &token), ("password", NEW_PASSWORD)])
        .await
        .expect(StatusCode::BAD_REQUEST, "already been used");

    // The new password logs in; the old one does not.
    app.browser()
        .login("ivan@example.com", PASSWORD)
        .await
        .expect(StatusCode::BAD_REQUEST, "not right");
    phone
        .login("ivan@example.com", NEW_PASSWORD)
        .await
        .expect_redirect("/settings");

    // The laptop's session still exists but asks for the password, with the email filled in.
    laptop.get("/settings").await.expect_redirect("/login?next=%2Fsettings");
    let page = laptop.get("/login?next=%2Fsettings").await;
    page.expect(StatusCode::OK, "enter your password again");
    assert_eq!(page.input_value("email").as_deref(), Some("ivan@example.com"));
    assert!(page.body.contains("readonly"));
    laptop
        .login("ivan@example.com", PASSWORD)
        .await
        .expect(StatusCode::BAD_REQUEST, "not right");
    laptop
        .post(
            "/login",
            &[
                ("email", "ivan@example.com"),
                ("password", NEW_PASSWORD),
                ("next", "/settings"),
            ],
        )
        .await
        .expect_redirect("/settings");
    // The same session resumed: same cookie, and it is now usable.
    assert_eq!(laptop.cookie("gh_session").unwrap(), laptop_cookie);
    laptop.get("/settings").await.expect(StatusCode::OK, "ivan@example.com");
    let kinds = kinds_for(&app, "ivan@example.com").await;
    assert!(kinds.contains(&AuditKind::PasswordResetRequested));
    assert!(kinds.contains(&AuditKind::PasswordResetCompleted));
    assert!(kinds.contains(&AuditKind::Reauthenticated));
    app.finish().await;
}

async fn reset_request_for_unknown_email_looks_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("judy@example.com", PASSWORD).await;
    let b = app.browser();
    let unknown = b.post("/reset", &[("email", "nobody@example.com")]).await;
    let known = b.post("/reset", &[("email", "judy@example.com")]).await;
    assert_eq!(unknown.status, known.status);
    assert_eq!(
        unknown.location().unwrap().replace("nobody", "X"),
        known.location().unwrap().replace("judy", "X")
    );
    let sent_unknown = b.get(unknown.location().unwrap()).await;
    let sent_known = b.get(known.location().unwrap()).await;
    assert_eq!(
        sent_unknown.body.replace("nobody", "X"),
        sent_known.body.replace("judy", "X")
    );
    app.mail
        .wait_for("judy@example.com", |m| m.subject.contains("Reset"))
        .await;
    assert!(app.mail.to("nobody@example.com").is_empty());
    b.post("/reset", &[("email", "not an email")])
        .await
        .expect(StatusCode::BAD_REQUEST, "does not look like an email");
    app.finish().await;
}

/// What a page shows with `name` (a local part) written as `X`, and its
/// headers but the per-request `date`.
fn seen(page: &Page, name: &str) -> (StatusCode, Vec<(String, String)>, String) {
    let headers = page
        .headers
        .iter()
        .filter(|(k, _)| k.as_str() != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().replace(name, "X")))
        .collect();
    (page.status, headers, page.body.replace(name, "X"))
}

/// A verified account, an unverified one and no account: every path of
/// `POST /verify` (nobody signed in) and `POST /reset` answers the same
/// (same status, headers and body, the address aside).
async fn verify_and_reset_answer_the_same_for_every_address(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("zqa@example.com", PASSWORD).await;
    app.browser()
        .post("/signup", &[("email", "zqb@example.com"), ("password", PASSWORD)])
        .await;
    let mail = app
        .mail
        .wait_for("zqb@example.com", |m| m.subject.contains("verification code"))
        .await;
    let wrong = if mail.code() == "000000" { "111111" } else { "000000" };
    let names = ["zqa", "zqb", "zqc"];
    let b = app.browser();
    b.csrf().await;
    let codes = ["", "12", "not a code", wrong, "123 45x", "1234567"];
    for code in codes {
        for email in ["{}@example.com", "  {}@Example.COM ", "{}"] {
            let answers: Vec<_> = {
                let mut answers = Vec::new();
                for name in names {
                    let email = email.replace("{}", name);
                    let page = b.post("/verify", &[("email", &email), ("code", code)]).await;
                    answers.push(seen(&page, name));
                }
                answers
            };
            assert_eq!(answers[0].0, StatusCode::BAD_REQUEST, "code {code:?}, email {email:?}");
            assert_eq!(
                answers[0], answers[1],
                "verified and unverified, code {code:?}, email {email:?}"
            );
            assert_eq!(
                answers[0], answers[2],
                "verified and unknown, code {code:?}, email {email:?}"
            );
        }
    }
    for email in ["{}@example.com", " {}@EXAMPLE.com", "{}@"] {
        let mut answers = Vec::new();
        for name in names {
            let page = b.post("/reset", &[("email", &email.replace("{}", name))]).await;
            let sent = match page.location() {
                Some(to) => Some(seen(&b.get(to).await, name)),
                None => None,
            };
            answers.push((seen(&page, name), sent));
        }
        assert_eq!(answers[0], answers[1], "reset, verified and unverified, {email:?}");
        assert_eq!(answers[0], answers[2], "reset, verified and unknown, {email:?}");
    }
    // The right code still verifies, without a session.
    b.post("/verify", &[("email", "zqb@example.com"), ("code", &mail.code())])
        .await
        .expect_redirect("/login?notice=verified");
    app.finish().await;
}

/// Reset mails sent to `to` so far.
fn reset_mails(app: &TestApp, to: &str) -> usize {
    app.mail.to(to).iter().filter(|m| m.subject.contains("Reset")).count()
}

/// Audit reasons of the reset requests for `email` (empty: a mail went).
async fn reset_requests(app: &TestApp, email: &str) -> Vec<String> {
    let q = AuditQuery {
        kind: Some(AuditKind::PasswordResetRequested),
        ..Default::default()
    };
    app.store()
        .audit_events(&q)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.detail["email"] == email)
        .map(|r| r.event.detail["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until `n` reset requests for `email` are recorded.
async fn wait_for_reset_requests(app: &TestApp, email: &str, n: usize) -> Vec<String> {
    crate::support::eventually("the reset requests", || async {
        let reasons = reset_requests(app, email).await;
        (reasons.len() >= n).then_some(reasons)
    })
    .await
}

/// Three mails an hour to an address (its verification mail was one), twenty
/// from a client address (whether or not the target has an account); a
/// throttled request answers exactly like one that mailed.
async fn reset_mail_is_throttled_per_target_and_per_client(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("tess@example.com", PASSWORD).await;
    app.ready_account("uma@example.com", PASSWORD).await;
    let b = app.browser();
    let mut answers = Vec::new();
    for _ in 0..10 {
        let page = b.post("/reset", &[("email", "tess@example.com")]).await;
        answers.push(seen(&page, "tess"));
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "every answer the same");
    let reasons = wait_for_reset_requests(&app, "tess@example.com", 10).await;
    assert_eq!(reasons.iter().filter(|r| r.is_empty()).count(), 2);
    assert_eq!(reasons.iter().filter(|r| *r == "throttled").count(), 8);
    crate::support::eventually("two reset mails", || async {
        (reset_mails(&app, "tess@example.com") == 2).then_some(())
    })
    .await;

    // Client address: 2 sign-ups and 2 resets so far; 16 more to addresses
    // without an account fill its twenty.
    for i in 0..16 {
        b.post("/reset", &[("email", &format!("nobody{i}@example.com"))])
            .await
            .expect_redirect("/reset/sent");
    }
    let page = b.post("/reset", &[("email", "uma@example.com")]).await;
    assert_eq!(seen(&page, "uma"), answers[0], "the same answer when throttled");
    let reasons = wait_for_reset_requests(&app, "uma@example.com", 1).await;
    assert_eq!(reasons, vec!["throttled"]);
    assert_eq!(reset_mails(&app, "uma@example.com"), 0);
    assert_eq!(reset_mails(&app, "tess@example.com"), 2);
    app.finish().await;
}

/// Sign-up of a taken address mails its owner, and `/verify/resend` mails a
/// new code: both count towards the three mails an hour to an address, and
/// answer the same when throttled. The last code mailed still works.
async fn sign_up_and_resend_mail_is_throttled(backend: Backend) {
    let app = spawn_app(backend).await;
    app.ready_account("vic@example.com", PASSWORD).await;
    let b = app.browser();
    for _ in 0..5 {
        b.post("/signup", &[("email", "vic@example.com"), ("password", PASSWORD)])
            .await
            .expect_redirect("/verify?email=vic%40example.com");
    }
    let taken = |app: &TestApp| {
        app.mail
            .to("vic@example.com")
            .iter()
            .filter(|m| m.subject.contains("already have"))
            .count()
    };
    crate::support::eventually("two mails to the owner", || async { (taken(&app) == 2).then_some(()) }).await;

    b.post("/signup", &[("email", "wen@example.com"), ("password", PASSWORD)])
        .await;
    b.login("wen@example.com", PASSWORD).await.expect_redirect("/verify");
    for _ in 0..4 {
        b.post("/verify/resend", &[])
            .await
            .expect_redirect("/verify?notice=code_sent");
    }
    let codes = |app: &TestApp| {
        app.mail
            .to("wen@example.com")
            .into_iter()
            .filter(|m| m.subject.contains("verification code"))
            .collect::<Vec<_>>()
    };
    crate::support::eventually("three codes", || async { (codes(&app).len() == 3).then_some(()) }).await;
    // A mail that arrives after the throttled ones would have: still three
    // codes, two mails to the owner.
    app.browser()
        .post("/signup", &[("email", "xia@example.com"), ("password", PASSWORD)])
        .await;
    app.mail
        .wait_for("xia@example.com", |m| m.subject.contains("verification code"))
        .await;
    assert_eq!(codes(&app).len(), 3);
    assert_eq!(taken(&app), 2);
    // The last code mailed still works (the throttled resends issued none).
    let mut verified = false;
    for mail in codes(&app) {
        let page = b.post("/verify", &[("code", &mail.code())]).await;
        if page.status == StatusCode::SEE_OTHER {
            page.expect_redirect("/settings");
            verified = true;
            break;
        }
        page.expect(StatusCode::BAD_REQUEST, "not right");
    }
    assert!(verified, "a mailed code verifies");
    app.finish().await;
}

async fn password_change_needs_the_current_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("ken@example.com", PASSWORD).await;
    let other = app.browser();
    other
        .login("ken@example.com", PASSWORD)
        .await
        .expect_redirect("/settings");

    b.post(
        "/settings/password",
        &[("current_password", "wrong passphrase"), ("new_password", NEW_PASSWORD)],
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "current password is not right");
    b.post(
        "/settings/password",
        &[("current_password", PASSWORD), ("new_password", "short")],
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "at least 8 characters");
    app.browser()
        .login("ken@example.com", PASSWORD)
        .await
        .expect_redirect("/settings");

    b.post(
        "/settings/password",
        &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD)],
    )
    .await
    .expect_redirect("/settings?notice=password_changed");
    b.get("/settings?notice=password_changed")
        .await
        .expect(StatusCode::OK, "Your password is changed");
    other.get("/settings").await.expect_redirect("/login");
    app.browser()
        .login("ken@example.com", NEW_PASSWORD)
        .await
        .expect_redirect("/settings");
    app.mail
        .wait_for("ken@example.com", |m| m.subject.contains("password was changed"))
        .await;
    app.finish().await;
}

/// The email change mails an address of the signed-in person's choosing:
/// three mails an hour to one address at most, like every mail on request,
/// and the same answer when throttled.
async fn email_change_mail_is_throttled(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("max@example.com", PASSWORD).await;
    for _ in 0..5 {
        b.post(
            "/settings/email",
            &[("email", "target@example.org"), ("password", PASSWORD)],
        )
        .await
        .expect_redirect("/settings?notice=email_change_sent");
    }
    crate::support::eventually("three mails", || async {
        (app.mail.to("target@example.org").len() >= 3).then_some(())
    })
    .await;
    let q = AuditQuery {
        kind: Some(AuditKind::EmailChangeRequested),
        ..Default::default()
    };
    let throttled = app
        .store()
        .audit_events(&q)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.event.detail["reason"] == "throttled")
        .count();
    assert_eq!(throttled, 2);
    assert_eq!(app.mail.to("target@example.org").len(), 3);
    app.finish().await;
}

async fn email_change_keeps_the_user_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("leo@example.com", PASSWORD).await;
    let store = app.store();
    let before = store
        .account_by_email(&Email::parse("leo@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();

    b.post(
        "/settings/email",
        &[("email", "leo@example.org"), ("password", "wrong passphrase")],
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "current password is not right");
    b.post(
        "/settings/email",
        &[("email", "leo@example.org"), ("password", PASSWORD)],
    )
    .await
    .expect_redirect("/settings?notice=email_change_sent");
    let mail = app
        .mail
        .wait_for("leo@example.org", |m| m.subject.contains("Confirm your new"))
        .await;
    b.get("/settings")
        .await
        .expect(StatusCode::OK, "We sent a code to <strong>leo@example.org</strong>");
    b.post("/settings/email/confirm", &[("code", "000000")]).await;
    b.post("/settings/email/confirm", &[("code", &mail.code())])
        .await
        .expect_redirect("/settings?notice=email_changed");

    let after = store
        .account_by_email(&Email::parse("leo@example.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.id, before.id);
    assert!(after.email_verified);
    assert!(
        store
            .account_by_email(&Email::parse("leo@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    b.get("/settings").await.expect(StatusCode::OK, "leo@example.org");
    app.browser()
        .login("leo@example.org", PASSWORD)
        .await
        .expect_redirect("/settings");
    app.browser()
        .login("leo@example.com", PASSWORD)
        .await
        .expect(StatusCode::BAD_REQUEST, "not right");
    app.mail
        .wait_for("leo@example.com", |m| m.subject.contains("email address was changed"))
        .await;
    let kinds = kinds_for(&app, "leo@example.org").await;
    assert!(kinds.contains(&AuditKind::EmailChangeRequested));
    assert!(kinds.contains(&AuditKind::EmailChanged));
    app.finish().await;
}

async fn email_change_by_link_and_to_a_taken_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("mia@example.com", PASSWORD).await;
    app.ready_account("taken@example.com", PASSWORD).await;

    // A taken address: the same answer; its owner is told; nothing changes.
    b.post(
        "/settings/email",
        &[("email", "taken@example.com"), ("password", PASSWORD)],
    )
    .await
    .expect_redirect("/settings?notice=email_change_sent");
    app.mail
        .wait_for("taken@example.com", |m| m.subject.contains("already have"))
        .await;
    b.get("/settings").await.expect(StatusCode::OK, "mia@example.com");

    b.post(
        "/settings/email",
        &[("email", "mia@example.net"), ("password", PASSWORD)],
    )
    .await;
    let mail = app
        .mail
        .wait_for("mia@example.net", |m| m.subject.contains("Confirm your new"))
        .await;
    let link = mail.link("/email/confirm?token=");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    // The link works from any browser (whoever holds the new mailbox).
    let elsewhere = app.browser();
    elsewhere.get(&link).await.expect(StatusCode::OK, "Use this address");
    elsewhere
        .post("/email/confirm", &[("token", &token)])
        .await
        .expect(StatusCode::OK, "mia@example.net");
    elsewhere
        .post("/email/confirm", &[("token", &token)])
        .await
        .expect(StatusCode::BAD_REQUEST, "already been used");
    b.get("/settings").await.expect(StatusCode::OK, "mia@example.net");
    app.finish().await;
}

async fn sessions_can_be_listed_and_ended(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.ready_account("nina@example.com", PASSWORD).await;
    let phone = app.browser_with_agent("PhoneBrowser/2.0");
    phone.login("nina@example.com", PASSWORD).await;
    let tablet = app.browser_with_agent("TabletBrowser/3.0");
    tablet.login("nina@example.com", PASSWORD).await;

    let page = me.get("/settings").await;
    page.expect(StatusCode::OK, "PhoneBrowser/2.0");
    assert!(page.body.contains("TabletBrowser/3.0"));
    assert!(page.body.contains("This device"));
    assert!(page.body.contains("127.0.0.1"));

    // End the phone's session by its handle.
    let phone_page = phone.get("/settings").await;
    let stranger = app.ready_account("oscar@example.com", PASSWORD).await;
    let handles: Vec<String> = page
        .body
        .match_indices("name=\"handle\" value=\"")
        .map(|(i, m)| page.body[i + m.len()..].split('"').next().unwrap().to_owned())
        .collect();
    assert_eq!(handles.len(), 2);
    // Another account cannot end these sessions.
    for h in &handles {
        stranger
            .post("/settings/sessions/end", &[("handle", h)])
            .await
            .expect(StatusCode::BAD_REQUEST, "already ended");
    }
    phone.get("/settings").await.expect(StatusCode::OK, "nina@example.com");
    let phone_handle = handles
        .iter()
        .find(|h| !phone_page.body.contains(&format!("name=\"handle\" value=\"{h}\"")))
        .unwrap();
    me.post("/settings/sessions/end", &[("handle", phone_handle)])
        .await
        .expect_redirect("/settings?notice=session_ended");
    phone.get("/settings").await.expect_redirect("/login");
    tablet.get("/settings").await.expect(StatusCode::OK, "nina@example.com");

    me.post("/settings/sessions/end-others", &[])
        .await
        .expect_redirect("/settings?notice=others_ended");
    tablet.get("/settings").await.expect_redirect("/login");
    me.get("/settings").await.expect(StatusCode::OK, "nina@example.com");
    app.finish().await;
}

async fn account_deletion_needs_the_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("pat@example.com", PASSWORD).await;
    let other = app.browser();
    other.login("pat@example.com", PASSWORD).await;
    let store = app.store();
    let email = Email::parse("pat@example.com").unwrap();
    let id = store.account_by_email(&email).await.unwrap().unwrap().id;

    b.post("/settings/delete", &[("password", "wrong passphrase")])
        .await
        .expect(StatusCode::BAD_REQUEST, "not right");
    assert!(store.account_by_email(&email).await.unwrap().is_some());
    b.post("/settings/delete", &[("password", PASSWORD)])
        .await
        .expect(StatusCode::OK, "Your account is deleted");
    assert!(store.account_by_email(&email).await.unwrap().is_none());
    other.get("/settings").await.expect_redirect("/login");
    app.browser()
        .login("pat@example.com", PASSWORD)
        .await
        .expect(StatusCode::BAD_REQUEST, "not right");
    // The audit log keeps the account's history.
    let q = AuditQuery {
        account_id: Some(id),
        ..Default::default()
    };
    let kinds: Vec<AuditKind> = store
        .audit_events(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.kind)
        .collect();
    assert_eq!(kinds.last(), Some(&AuditKind::AccountDeleted));
    app.finish().await;
}

async fn bad_input_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("quinn@example.com", PASSWORD).await;
    let store = app.store();
    let email = Email::parse("quinn@example.com").unwrap();

    // A wrong or missing CSRF token: 403, and the account is still there.
    b.post_raw("/settings/delete", &[("csrf", "forged"), ("password", PASSWORD)])
        .await
        .expect(StatusCode::FORBIDDEN, "This form has expired");
    b.post_raw("/settings/delete", &[("password", PASSWORD)])
        .await
        .expect(StatusCode::FORBIDDEN, "security token");
    // A token without its cookie (another site's browser) is refused too.
    let token = b.csrf().await;
    app.browser()
        .post_raw(
            "/signup",
            &[("csrf", &token), ("email", "x@example.com"), ("password", PASSWORD)],
        )
        .await
        .expect(StatusCode::FORBIDDEN, "expired");
    assert!(store.account_by_email(&email).await.unwrap().is_some());
    assert!(
        store
            .account_by_email(&Email::parse("x@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    // Oversized fields and bodies.
    let long_email = format!("{}@example.com", "a".repeat(300));
    b.post("/signup", &[("email", &long_email), ("password", PASSWORD)])
        .await
        .expect(StatusCode::BAD_REQUEST, "too long");
    let long_password = "x".repeat(300);
    b.post("/signup", &[("email", "r@example.com"), ("password", &long_password)])
        .await
        .expect(StatusCode::BAD_REQUEST, "at most 256");
    let huge = "y".repeat(64 * 1024);
    b.post("/login", &[("email", "quinn@example.com"), ("password", &huge)])
        .await
        .expect(StatusCode::PAYLOAD_TOO_LARGE, "too much");
    // The unread rest of such a body ends its connection, and the answer
    // says so (a client reusing it would lose its next request).
    let r = b
        .client
        .post(b.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("email=quinn%40example.com&password={huge}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()["connection"], "close");
    assert!(
        store
            .account_by_email(&Email::parse("r@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    // Malformed forms and values.
    let r = b
        .client
        .post(b.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=%ZZ&email=%E0%A4%A")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    b.post("/signup", &[("email", "not-an-email"), ("password", PASSWORD)])
        .await
        .expect(StatusCode::BAD_REQUEST, "does not look like an email");
    b.post("/signup", &[("password", PASSWORD)])
        .await
        .expect(StatusCode::BAD_REQUEST, "Enter an email address");
    b.post(
        "/verify",
        &[("email", "quinn@example.com"), ("code", "'; drop table accounts; --")],
    )
    .await
    .expect_redirect("/settings");
    b.get("/reset/link?token=%00%01")
        .await
        .expect(StatusCode::BAD_REQUEST, "This link does not work");
    b.get("/login?next=https://evil.example/")
        .await
        .expect_redirect("/settings");
    let r = app.browser().login("quinn@example.com", PASSWORD).await;
    r.expect_redirect("/settings");
    let r = app
        .browser()
        .post(
            "/login",
            &[
                ("email", "quinn@example.com"),
                ("password", PASSWORD),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    r.expect_redirect("/settings");
    b.get("/settings").await.expect(StatusCode::OK, "quinn@example.com");
    app.finish().await;
}

async fn expired_and_used_codes_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.browser();
    b.post("/signup", &[("email", "rita@example.com"), ("password", PASSWORD)])
        .await;
    app.mail
        .wait_for("rita@example.com", |m| m.subject.contains("verification code"))
        .await;
    let store = app.store();
    let email = Email::parse("rita@example.com").unwrap();
    let account = store.account_by_email(&email).await.unwrap().unwrap();

    // A code issued two days ago has expired, by code and by link.
    let old = OneTimeCode::issue(
        CodePurpose::VerifyEmail,
        account.id.clone(),
        email.clone(),
        Timestamp::now().minus(2 * 86_400),
    );
    store.insert_code(&old.record, None).await.unwrap();
    b.post("/verify/link", &[("token", old.link_token.expose())])
        .await
        .expect(StatusCode::BAD_REQUEST, "expired");
    b.login("rita@example.com", PASSWORD).await.expect_redirect("/verify");
    b.post("/verify", &[("code", old.code.expose())])
        .await
        .expect(StatusCode::BAD_REQUEST, "expired");

    // Five wrong guesses end a code, even for the right code afterwards.
    let fresh = OneTimeCode::issue(
        CodePurpose::VerifyEmail,
        account.id.clone(),
        email.clone(),
        Timestamp::now(),
    );
    store.insert_code(&fresh.record, None).await.unwrap();
    let right = fresh.code.expose().clone();
    let wrong = if right == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        b.post("/verify", &[("code", wrong)])
            .await
            .expect(StatusCode::BAD_REQUEST, "not right");
    }
    b.post("/verify", &[("code", &right)])
        .await
        .expect(StatusCode::BAD_REQUEST, "Too many wrong codes");
    assert!(!store.account_by_email(&email).await.unwrap().unwrap().email_verified);
    app.finish().await;
}

/// 40 wrong guesses of a mailed code at once: five are checked ("not
/// right"), the rest refused, and the code is used up for the right one too.
async fn concurrent_wrong_codes_are_checked_at_most_five_times(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.browser();
    b.post("/signup", &[("email", "sam@example.com"), ("password", PASSWORD)])
        .await;
    let mail = app
        .mail
        .wait_for("sam@example.com", |m| m.subject.contains("verification code"))
        .await;
    b.login("sam@example.com", PASSWORD).await.expect_redirect("/verify");
    let right = mail.code();
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (b, start) = (b.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            b.post("/verify", &[("code", wrong)]).await
        }));
    }
    let (mut checked, mut refused) = (0, 0);
    for task in tasks {
        let page = task.await.unwrap();
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        if page.body.contains("not right") {
            checked += 1;
        } else {
            page.expect(StatusCode::BAD_REQUEST, "Too many wrong codes");
            refused += 1;
        }
    }
    assert_eq!((checked, refused), (5, 35));
    b.post("/verify", &[("code", &right)])
        .await
        .expect(StatusCode::BAD_REQUEST, "Too many wrong codes");
    app.finish().await;
}
