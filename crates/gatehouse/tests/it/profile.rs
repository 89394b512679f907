//! The profile (OpenID Connect Core §5.1 claims) from sign-up and settings
//! to the reliers that ask for the `profile` scope, bad profile input that
//! changes nothing, and the account chooser of `prompt=select_account`.

use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use gatehouse_core::audit::AuditKind;
use gatehouse_core::{Email, Profile};
use gatehouse_store::AuditQuery;

use crate::both_backends;
use crate::browser::{button, fill, in_chromium, text, value, wait_for_heading};
use crate::oauth::{exchange, http, jwt_claims};
use crate::support::{Browser, ClientSpec, TestApp, spawn_app};

const PASSWORD: &str = "a perfectly fine passphrase";
const REDIRECT: &str = "http://127.0.0.1:9/shop/cb";

both_backends!(
    profile_claims_reach_reliers_with_the_scope,
    bad_profile_input_changes_nothing,
    select_account_continues_or_switches_the_account,
    profile_at_sign_up_and_in_settings_in_a_browser,
);

/// An authorization URL for the shop with `scope` and `extra`; returns (url,
/// verifier).
fn auth_url(app: &TestApp, client_id: &str, scope: &str, extra: &[(&str, &str)]) -> (String, String) {
    let verifier = "v".repeat(43) + &uuid::Uuid::new_v4().simple().to_string();
    let mut url = Url::parse(&format!("{}/authorize", app.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", "st")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", &gatehouse_core::oauth::pkce::s256(&verifier))
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    (url.to_string(), verifier)
}

async fn shop(app: &TestApp) -> (String, String) {
    let (client, secret) = app
        .register_client(ClientSpec {
            redirect_uris: &[REDIRECT],
            ..Default::default()
        })
        .await;
    (client.id.to_string(), secret.unwrap())
}

/// Signs in at the shop with `scope`: the ID token's claims and UserInfo's.
async fn sign_in_at_shop(app: &TestApp, b: &Browser, shop: &(String, String), scope: &str) -> (Value, Value) {
    let (url, verifier) = auth_url(app, &shop.0, scope, &[]);
    let back = b.follow(&url).await.expect("back at the shop");
    let code = back.query_pairs().find(|(k, _)| k == "code").expect("a code").1;
    let (status, tokens) = exchange(app, &shop.0, &shop.1, &code, REDIRECT, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let id_token = jwt_claims(tokens["id_token"].as_str().unwrap());
    let userinfo: Value = http()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (id_token, userinfo)
}

async fn profile_of(app: &TestApp, email: &str) -> Profile {
    app.store()
        .account_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .profile
}

const PROFILE_CLAIMS: [&str; 7] = [
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "locale",
    "zoneinfo",
    "updated_at",
];

async fn profile_claims_reach_reliers_with_the_scope(backend: crate::support::Backend) {
    let app = spawn_app(backend).await;
    // Discovery names the claims.
    let meta: Value = http()
        .get(format!("{}/.well-known/openid-configuration", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for claim in PROFILE_CLAIMS {
        assert!(
            meta["claims_supported"].as_array().unwrap().contains(&json!(claim)),
            "{claim} not in claims_supported: {meta}"
        );
    }

    // Sign-up takes the optional name.
    let b = app.browser();
    assert!(b.get("/signup").await.body.contains("name=\"name\""));
    let r = b
        .post(
            "/signup",
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("name", " Ada Lovelace "),
            ],
        )
        .await;
    r.expect_redirect("/verify");
    let mail = app
        .mail
        .wait_for("ada@example.com", |m| m.subject.contains("verification code"))
        .await;
    let r = b
        .post("/verify", &[("email", "ada@example.com"), ("code", &mail.code())])
        .await;
    r.expect_redirect("/");
    b.login("ada@example.com", PASSWORD).await.expect_redirect("/settings");
    let settings = b.get("/settings").await;
    settings.expect(StatusCode::OK, "Ada Lovelace");
    let at_signup = profile_of(&app, "ada@example.com").await;
    assert_eq!(at_signup.name.as_deref(), Some("Ada Lovelace"));
    let signed_up_at = at_signup.updated_at.expect("updated_at set with the name");

    let shop = shop(&app).await;
    // Only the name is set: only it and updated_at are present, no nulls.
    let (id, info) = sign_in_at_shop(&app, &b, &shop, "openid profile").await;
    for claims in [&id, &info] {
        assert_eq!(claims["name"], "Ada Lovelace", "{claims}");
        assert_eq!(claims["updated_at"], signed_up_at.0, "{claims}");
        for absent in [
            "given_name",
            "family_name",
            "preferred_username",
            "locale",
            "zoneinfo",
            "email",
        ] {
            assert!(claims.get(absent).is_none(), "{absent} in {claims}");
        }
    }

    // Settings: the whole profile, normalized.
    let r = b
        .post(
            "/settings/profile",
            &[
                ("name", "Augusta Ada King"),
                ("given_name", "Augusta Ada"),
                ("family_name", "King"),
                ("preferred_username", "ada"),
                ("locale", "en_gb"),
                ("zoneinfo", "europe/london"),
            ],
        )
        .await;
    r.expect_redirect("/settings?notice=profile_saved");
    let page = b.get("/settings?notice=profile_saved").await;
    page.expect(StatusCode::OK, "Your profile is saved");
    assert_eq!(page.input_value("zoneinfo").as_deref(), Some("Europe/London"));
    assert_eq!(page.input_value("locale").as_deref(), Some("en-GB"));
    let saved = profile_of(&app, "ada@example.com").await;
    assert!(saved.updated_at.unwrap() >= signed_up_at);

    let (id, info) = sign_in_at_shop(&app, &b, &shop, "openid profile email").await;
    let expected = json!({
        "name": "Augusta Ada King",
        "given_name": "Augusta Ada",
        "family_name": "King",
        "preferred_username": "ada",
        "locale": "en-GB",
        "zoneinfo": "Europe/London",
        "updated_at": saved.updated_at.unwrap().0,
    });
    for claims in [&id, &info] {
        for claim in PROFILE_CLAIMS {
            assert_eq!(claims[claim], expected[claim], "{claim} in {claims}");
        }
        assert_eq!(claims["email"], "ada@example.com");
    }

    // Without the profile scope, none of it.
    let (id, info) = sign_in_at_shop(&app, &b, &shop, "openid email").await;
    for claims in [&id, &info] {
        for claim in PROFILE_CLAIMS {
            assert!(claims.get(claim).is_none(), "{claim} without the scope: {claims}");
        }
    }

    // The audit log says what changed, not the values.
    let store = app.store();
    let account = store
        .account_by_email(&Email::parse("ada@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let events = store
        .audit_events(&AuditQuery {
            account_id: Some(account.id.clone()),
            kind: Some(AuditKind::ProfileChanged),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.detail["fields"].as_array().unwrap().len(), 6);

    // The admin API shows it.
    let (admin, _) = app.admin_token().await;
    let user: Value = http()
        .get(format!("{}/admin/users/{}", app.base, account.id))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["profile"]["name"], "Augusta Ada King");
    assert_eq!(user["profile"]["zoneinfo"], "Europe/London");
    let doc: Value = http()
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = &doc["paths"]["/admin/users/{uid}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(shown["properties"]["profile"]["$ref"], "#/components/schemas/Profile");
    for claim in PROFILE_CLAIMS {
        assert!(
            doc["components"]["schemas"]["Profile"]["properties"][claim].is_object(),
            "{claim} undocumented"
        );
    }

    // Emptying a field removes its claim.
    let r = b
        .post(
            "/settings/profile",
            &[("name", "Augusta Ada King"), ("preferred_username", "ada")],
        )
        .await;
    r.expect_redirect("/settings?notice=profile_saved");
    let (_, info) = sign_in_at_shop(&app, &b, &shop, "openid profile").await;
    assert_eq!(info["preferred_username"], "ada");
    for gone in ["given_name", "family_name", "locale", "zoneinfo"] {
        assert!(info.get(gone).is_none(), "{gone} in {info}");
    }

    // A third-party site asking for it says what it would see.
    let (partner, _) = app
        .register_client(ClientSpec {
            name: "Partner",
            first_party: false,
            redirect_uris: &[REDIRECT],
            ..Default::default()
        })
        .await;
    let (url, _) = auth_url(&app, partner.id.as_str(), "openid profile", &[]);
    let consent = b.follow(&url).await.expect_err("the consent page");
    consent.expect(
        StatusCode::OK,
        "See your profile: name, username, language and time zone",
    );
    app.finish().await;
}

async fn bad_profile_input_changes_nothing(backend: crate::support::Backend) {
    let app = spawn_app(backend).await;
    let b = app.ready_account("grace@example.com", PASSWORD).await;
    let r = b
        .post("/settings/profile", &[("name", "Grace Hopper"), ("locale", "en-US")])
        .await;
    r.expect_redirect("/settings?notice=profile_saved");
    let before = profile_of(&app, "grace@example.com").await;

    let long = "x".repeat(101);
    let cases: &[(&str, &str, &str)] = &[
        ("locale", "klingon", "Language is not a language tag"),
        ("locale", "x-private", "Language is not a language tag"),
        ("zoneinfo", "Moon/Tranquility", "Time zone is not a time zone name"),
        (
            "name",
            "Grace\u{7}Hopper",
            "Name contains a character that cannot be shown",
        ),
        (
            "family_name",
            "\u{202E}reppoH",
            "Family name contains a character that cannot be shown",
        ),
        ("name", &long, "Name is too long (at most 100 characters)"),
        ("preferred_username", "grace hopper", "Username cannot contain spaces"),
    ];
    for (field, value, message) in cases {
        let mut form = vec![("name", "Rear Admiral Hopper"), ("zoneinfo", "America/New_York")];
        form.retain(|(k, _)| k != field);
        form.push((field, value));
        let page = b.post("/settings/profile", &form).await;
        page.expect(StatusCode::BAD_REQUEST, message);
        // The form shows what was typed, to correct it.
        if *field != "name" {
            assert_eq!(page.input_value("name").as_deref(), Some("Rear Admiral Hopper"));
        }
        assert_eq!(profile_of(&app, "grace@example.com").await, before, "{field}={value:?}");
    }
    // A forged form (no CSRF token) changes nothing either.
    let r = b.post_raw("/settings/profile", &[("name", "Forged")]).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert_eq!(profile_of(&app, "grace@example.com").await, before);
    // Signed out: no profile to change.
    let stranger = app.browser();
    stranger
        .post("/settings/profile", &[("name", "Stranger")])
        .await
        .expect_redirect("/login");

    // At sign-up, a bad name is an error on the form and creates no account.
    let c = app.browser();
    let page = c
        .post(
            "/signup",
            &[
                ("email", "new@example.com"),
                ("password", PASSWORD),
                ("name", "New\u{0}One"),
            ],
        )
        .await;
    page.expect(
        StatusCode::BAD_REQUEST,
        "Name contains a character that cannot be shown",
    );
    assert!(
        app.store()
            .account_by_email(&Email::parse("new@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let changes = app
        .store()
        .audit_events(&AuditQuery {
            kind: Some(AuditKind::ProfileChanged),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(changes.len(), 1, "only the first, good change");
    app.finish().await;
}

fn code_of(url: &Url) -> String {
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap_or_else(|| panic!("no code in {url}"))
        .1
        .into_owned()
}

async fn select_account_continues_or_switches_the_account(backend: crate::support::Backend) {
    let app = spawn_app(backend).await;
    let shop = shop(&app).await;
    let b = app.ready_account("ada@example.com", PASSWORD).await;
    b.post("/settings/profile", &[("name", "Ada Lovelace")])
        .await
        .expect_redirect("/settings");
    let _bob = app.ready_account("bob@example.com", PASSWORD).await;
    let sub_of = |tokens: &Value| jwt_claims(tokens["id_token"].as_str().unwrap())["sub"].clone();
    let ada = app
        .store()
        .account_by_email(&Email::parse("ada@example.com").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;

    // prompt=none with select_account: invalid_request, back to the shop.
    let (url, _) = auth_url(&app, &shop.0, "openid", &[("prompt", "none select_account")]);
    let back = b.follow(&url).await.expect("back at the shop");
    assert_eq!(
        back.query_pairs()
            .find(|(k, _)| k == "error")
            .map(|(_, v)| v.into_owned()),
        Some("invalid_request".to_owned())
    );

    // Signed in: the chooser, not a login form and not a code.
    let (url, verifier) = auth_url(&app, &shop.0, "openid", &[("prompt", "select_account")]);
    let page = b.follow(&url).await.expect_err("a page, not the shop");
    page.expect(StatusCode::OK, "Continue as Ada Lovelace (ada@example.com)");
    assert!(page.body.contains("Use another account"));
    let interaction = page.input_value("interaction").unwrap();
    // "Continue as": a code for Ada, without a password.
    let r = b.post("/authorize/select", &[("interaction", &interaction)]).await;
    r.expect_redirect("/authorize/resume");
    let back = b.follow(r.location().unwrap()).await.expect("back at the shop");
    let (status, tokens) = exchange(&app, &shop.0, &shop.1, &code_of(&back), REDIRECT, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(sub_of(&tokens), json!(ada.as_str()));

    // "Use another account": the login form, although the browser is
    // signed in; Bob signs in and replaces Ada's session in this browser.
    let (url, verifier) = auth_url(&app, &shop.0, "openid", &[("prompt", "select_account")]);
    let page = b.follow(&url).await.expect_err("the chooser");
    let body = page
        .body
        .replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=");
    let other = body
        .split("href=\"")
        .find(|s| s.starts_with("/login?switch=1"))
        .and_then(|s| s.split('"').next())
        .expect("a link to another account")
        .to_owned();
    let login = b.get(&other).await;
    login.expect(StatusCode::OK, "Sign in");
    assert!(!login.body.contains("readonly"), "a form for any account");
    let next = login.input_value("next").unwrap();
    assert!(next.starts_with("/authorize/resume"), "{next}");
    let r = b
        .post(
            "/login",
            &[("email", "bob@example.com"), ("password", PASSWORD), ("next", &next)],
        )
        .await;
    r.expect_redirect("/authorize/resume");
    let back = b.follow(r.location().unwrap()).await.expect("back at the shop");
    let (status, tokens) = exchange(&app, &shop.0, &shop.1, &code_of(&back), REDIRECT, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_ne!(sub_of(&tokens), json!(ada.as_str()));
    b.get("/settings").await.expect(StatusCode::OK, "bob@example.com");

    // Nobody signed in: the login form is the choice.
    let (url, _) = auth_url(&app, &shop.0, "openid", &[("prompt", "select_account")]);
    let fresh = app.browser();
    let r = fresh.get(url.strip_prefix(&app.base).unwrap()).await;
    r.expect_redirect("/login");
    // A made-up interaction is refused and chooses nothing.
    b.post("/authorize/select", &[("interaction", "nonsense")])
        .await
        .expect(StatusCode::BAD_REQUEST, "expired");
    app.finish().await;
}

/// The pages a person uses, in Chromium (see `browser.rs`): the name at
/// sign-up, then the profile form in settings, with a refused time zone
/// shown on the form and corrected.
async fn profile_at_sign_up_and_in_settings_in_a_browser(backend: crate::support::Backend) {
    let app = spawn_app(backend).await;
    in_chromium(move |c| async move {
        let email = "ada@example.com";
        c.goto(&format!("{}/signup", app.base)).await.unwrap();
        wait_for_heading(&c, "Create an account").await;
        fill(&c, "input[name=email]", email).await;
        fill(&c, "input[name=password]", PASSWORD).await;
        fill(&c, "input[name=name]", "Ada Lovelace").await;
        button(&c, "Create account").await.click().await.unwrap();
        wait_for_heading(&c, "Check your email").await;
        let mail = app
            .mail
            .wait_for(email, |m| m.subject.contains("verification code"))
            .await;
        fill(&c, "input[name=code]", &mail.code()).await;
        button(&c, "Verify").await.click().await.unwrap();
        wait_for_heading(&c, "Sign in").await;
        fill(&c, "input[name=password]", PASSWORD).await;
        button(&c, "Sign in").await.click().await.unwrap();
        wait_for_heading(&c, "Your account").await;
        assert_eq!(text(&c, "#account-name").await, "Ada Lovelace");
        assert_eq!(value(&c, "#profile-name").await, "Ada Lovelace");

        // A time zone that does not exist: the error, and what was typed.
        fill(&c, "#profile-given-name", "Ada").await;
        fill(&c, "#profile-locale", "en_gb").await;
        fill(&c, "#profile-zoneinfo", "Europe/Atlantis").await;
        button(&c, "Save the profile").await.click().await.unwrap();
        wait_for_heading(&c, "Your account").await;
        assert!(
            text(&c, "#form-error")
                .await
                .contains("Time zone is not a time zone name"),
            "{}",
            text(&c, "main").await
        );
        assert_eq!(value(&c, "#profile-zoneinfo").await, "Europe/Atlantis");
        assert_eq!(value(&c, "#profile-given-name").await, "Ada");
        assert_eq!(profile_of(&app, email).await.given_name, None, "nothing saved");

        fill(&c, "#profile-zoneinfo", "Europe/London").await;
        button(&c, "Save the profile").await.click().await.unwrap();
        wait_for_heading(&c, "Your account").await;
        assert!(text(&c, ".notice").await.contains("Your profile is saved"));
        assert_eq!(value(&c, "#profile-locale").await, "en-GB");
        assert_eq!(value(&c, "#profile-given-name").await, "Ada");
        let saved = profile_of(&app, email).await;
        assert_eq!(saved.zoneinfo.as_deref(), Some("Europe/London"));
        app.finish().await;
    })
    .await;
}
