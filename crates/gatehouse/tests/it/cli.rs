//! The binary as an operator runs it: `user create`, `migrate`, bad
//! configuration, and `serve` stopping cleanly on SIGTERM.

use reqwest::StatusCode;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};

use crate::both_backends;
use crate::support::{Backend, ClientSpec, TestApp, eventually, spawn_app};

both_backends!(user_create_takes_effect_on_a_running_server, migrate_reports_json);

fn gatehouse(app: &TestApp) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.env("GATEHOUSE_DATABASE_URL", &app.db.url)
        .env("GATEHOUSE_DATA_DIR", &app.config.data_dir)
        .env("GATEHOUSE_LOG", "warn");
    cmd
}

fn run_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The first line a `--json` server command prints: where it listens.
fn first_json(child: &mut Child) -> serde_json::Value {
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    serde_json::from_str(&first).unwrap_or_else(|e| panic!("not one JSON object ({e}): {first:?}"))
}

/// SIGTERM, as an init system stops a server: it must exit successfully.
fn stop(child: Child) -> Output {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(output: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {text}"))
}

async fn user_create_takes_effect_on_a_running_server(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut cmd = gatehouse(&app);
    cmd.args([
        "user",
        "create",
        "--email",
        "Sam@Example.com",
        "--password-stdin",
        "--verified",
        "--json",
    ]);
    let out = run_with_stdin(cmd, "a perfectly fine passphrase\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let uid = json(&out)["uid"].as_str().unwrap().to_owned();
    assert_eq!(uid.len(), 36);

    // The running server sees the account at once, verified.
    let b = app.browser();
    b.login("sam@example.com", "a perfectly fine passphrase")
        .await
        .expect_redirect("/settings");
    b.get("/settings").await.expect(StatusCode::OK, &uid);

    // The same email again: an error, as JSON, and nothing changes.
    let mut cmd = gatehouse(&app);
    cmd.args([
        "user",
        "create",
        "--email",
        "sam@example.com",
        "--password-stdin",
        "--json",
    ]);
    let out = run_with_stdin(cmd, "another fine passphrase\n");
    assert!(!out.status.success());
    assert!(json(&out)["error"].as_str().unwrap().contains("already exists"));
    app.browser()
        .login("sam@example.com", "a perfectly fine passphrase")
        .await
        .expect_redirect("/settings");

    // A weak password is refused with the policy's reason.
    let mut cmd = gatehouse(&app);
    cmd.args(["user", "create", "--email", "tim@example.com", "--password-stdin"]);
    let out = run_with_stdin(cmd, "password\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("most commonly used"));
    app.finish().await;
}

async fn migrate_reports_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let out = gatehouse(&app).args(["migrate", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out), serde_json::json!({ "migrated": true }));
    app.finish().await;
}

#[test]
fn bad_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.env("GATEHOUSE_DATA_DIR", dir.path()).args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&[("GATEHOUSE_LISTEN", "not-an-address")], &["migrate"]).contains("GATEHOUSE_LISTEN"));
    assert!(run(&[("GATEHOUSE_LISTN", "127.0.0.1:1")], &["migrate"]).contains("GATEHOUSE_LISTN"));
    assert!(run(&[("GATEHOUSE_ISSUER", "http://id.example.com")], &["serve"]).contains("https"));
    let file = dir.path().join("gatehouse.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\ndatabse_url = \"sqlite://x\"\n").unwrap();
    assert!(run(&[], &["--config", file.to_str().unwrap(), "migrate"]).contains("databse_url"));
}

#[tokio::test]
async fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--json"])
        .env("GATEHOUSE_DATA_DIR", dir.path())
        .env("GATEHOUSE_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = first_json(&mut child);
    let base = format!("http://{}", started["listening"].as_str().unwrap());
    let client = reqwest::Client::new();
    let ready = eventually("readiness", || {
        let url = format!("{base}/health/ready");
        let client = client.clone();
        async move { client.get(url).send().await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    assert_eq!(ready.status(), StatusCode::OK);
    // With no configuration, the SQLite file is in the data directory.
    assert!(dir.path().join("gatehouse.db").exists());

    let out = stop(child);
    assert!(String::from_utf8_lossy(&out.stderr).contains("shutting down"));
}

/// The payments service run on its own (`gatehouse pay serve`) against a
/// running IdP, as a registered client, and administered with `pay
/// merchant add` and `pay fund` on its own database. (Several threads: the
/// IdP runs in this process and must answer while the test waits for the
/// child's first line.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_serve_runs_the_payments_service_alone() {
    let app = spawn_app(Backend::Sqlite).await;
    let (client, secret) = app
        .register_client(ClientSpec {
            name: "Payments",
            redirect_uris: &["http://127.0.0.1:9/login/callback"],
            scopes: Some("openid email"),
            ..Default::default()
        })
        .await;
    let pay_dir = tempfile::tempdir().unwrap();
    let pay_db = format!("sqlite://{}", pay_dir.path().join("pay.db").display());
    let pay_cmd = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.env("GATEHOUSE_DATA_DIR", pay_dir.path())
            .env("GATEHOUSE_PAY_DATABASE_URL", &pay_db)
            .env("GATEHOUSE_PAY_ISSUER", &app.base)
            .env("GATEHOUSE_PAY_LISTEN", "127.0.0.1:0")
            .env("GATEHOUSE_PAY_CLIENT_ID", client.id.as_str())
            .env("GATEHOUSE_PAY_CLIENT_SECRET", secret.as_deref().unwrap())
            .env("GATEHOUSE_PAY_SECRET_KEY", "0f".repeat(32))
            .env("GATEHOUSE_LOG", "warn");
        cmd
    };
    let out = pay_cmd()
        .args([
            "--json",
            "pay",
            "merchant",
            "add",
            "--client-id",
            "shop-1",
            "--name",
            "Shop",
        ])
        .args(["--origin", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["client_id"], "shop-1");
    assert_eq!(
        json(&out)["fee"],
        serde_json::json!({ "fixed": 0, "basis_points": 0, "payer": "buyer" }),
        "no fee unless asked"
    );
    // The fee rule: set by adding the merchant again; a bad one is refused.
    let merchant_add = |extra: &[&str]| {
        let mut cmd = pay_cmd();
        cmd.args([
            "--json",
            "pay",
            "merchant",
            "add",
            "--client-id",
            "shop-1",
            "--name",
            "Shop",
        ])
        .args(["--origin", "http://127.0.0.1:9"])
        .args(extra);
        cmd.output().unwrap()
    };
    let out = merchant_add(&[
        "--fee-fixed",
        "30",
        "--fee-basis-points",
        "250",
        "--fee-payer",
        "merchant",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        json(&out)["fee"],
        serde_json::json!({ "fixed": 30, "basis_points": 250, "payer": "merchant" })
    );
    for bad in [
        &["--fee-basis-points", "10001"][..],
        &["--fee-fixed", "-1"],
        &["--fee-payer", "nobody"],
    ] {
        let out = merchant_add(bad);
        assert!(!out.status.success(), "{bad:?} is refused");
    }
    let out = pay_cmd()
        .args(["--json", "pay", "fund", "--user", "u-1", "--amount", "250"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["balance"], 250);
    let out = pay_cmd()
        .args(["--json", "pay", "fund", "--user", "u-1", "--amount", "-5"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a negative funding is refused");

    let mut child = pay_cmd()
        .args(["--json", "pay", "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = first_json(&mut child);
    let pay = started["pay"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .trim_end_matches('/')
        .to_owned();
    let jwks: serde_json::Value = reqwest::get(format!("{pay}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    // The merchant API answers as the contract says: a token is needed.
    let r = reqwest::Client::new()
        .post(format!("{pay}/api/contracts"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    stop(child);
    app.finish().await;
}

/// `gatehouse serve` with `GATEHOUSE_PAY_LISTEN` runs the payments service
/// beside the IdP, trusting that IdP (no issuer configured: the bound
/// address).
#[tokio::test]
async fn serve_runs_the_payments_service_beside_the_idp() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.env("GATEHOUSE_DATA_DIR", dir.path()).env("GATEHOUSE_LOG", "warn");
        cmd
    };
    let out = cmd()
        .args(["--json", "client", "create", "--name", "Payments", "--first-party"])
        .args([
            "--redirect-uri",
            "http://127.0.0.1:9/login/callback",
            "--scope",
            "openid",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created = json(&out);
    let mut child = cmd()
        .args(["--json", "serve"])
        .env("GATEHOUSE_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_PAY_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_PAY_CLIENT_ID", created["client_id"].as_str().unwrap())
        .env(
            "GATEHOUSE_PAY_CLIENT_SECRET",
            created["client_secret"].as_str().unwrap(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = first_json(&mut child);
    let pay = started["pay"].as_str().unwrap_or_else(|| panic!("{started}"));
    let r = reqwest::get(format!("{}/.well-known/jwks.json", pay.trim_end_matches('/')))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    stop(child);
}

/// `gatehouse demo` as the README runs it (on ports the system picks):
/// every service answers, the sites are registered at the IdP, the demo
/// wallet holds test money; a second run on the same folder reuses all of
/// it (no second funding) and stops cleanly.
#[tokio::test]
async fn demo_runs_every_service_and_restarts_on_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut shop_ids = Vec::new();
    for _ in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["--json", "demo"])
            .env("GATEHOUSE_DATA_DIR", dir.path())
            .env("GATEHOUSE_LISTEN", "127.0.0.1:0")
            .env("GATEHOUSE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let demo = first_json(&mut child);
        let url = |k: &str| {
            demo[k]
                .as_str()
                .unwrap_or_else(|| panic!("no {k} in {demo}"))
                .to_owned()
        };
        let (idp, pay, shop, forum) = (url("idp"), url("pay"), url("shop"), url("forum"));
        assert_eq!(demo["email"], "demo@example.com");

        let get = |u: String| {
            let client = client.clone();
            async move { client.get(u).send().await.unwrap() }
        };
        assert_eq!(
            get(format!("{idp}/.well-known/openid-configuration")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            get(format!("{pay}/.well-known/jwks.json")).await.status(),
            StatusCode::OK
        );
        // Buying at the shop starts with a login at the IdP, as the shop's client.
        let offer = get(format!("{shop}/offer/ebook-rust")).await;
        assert_eq!(offer.status(), StatusCode::SEE_OTHER);
        let to = offer.headers()["location"].to_str().unwrap().to_owned();
        assert!(to.starts_with(&format!("{idp}/authorize?")), "{to}");
        let shop_id = url::Url::parse(&to)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        shop_ids.push(shop_id);
        let home = get(format!("{forum}/")).await.status();
        assert!(home == StatusCode::OK || home == StatusCode::SEE_OTHER, "forum: {home}");

        stop(child);
    }
    assert_eq!(shop_ids[0], shop_ids[1], "a restarted demo keeps its clients");
    let pay = gatehouse_pay::open_store(&format!("sqlite://{}", dir.path().join("pay.db").display()))
        .await
        .unwrap();
    let idp = gatehouse_store::connect(&format!("sqlite://{}", dir.path().join("gatehouse.db").display()))
        .await
        .unwrap();
    let demo = idp
        .account_by_email(&gatehouse_core::Email::parse("demo@example.com").unwrap())
        .await
        .unwrap()
        .expect("the demo account");
    assert_eq!(
        pay.balance(demo.id.as_str(), gatehouse::demo::DEMO_CURRENCY)
            .await
            .unwrap(),
        gatehouse::demo::DEMO_FUNDS,
        "funded once"
    );
}

both_backends!(
    client_commands_manage_reliers,
    keys_rotate_takes_effect_on_a_running_server
);

async fn client_commands_manage_reliers(backend: Backend) {
    let app = spawn_app(backend).await;
    let run = |args: &[&str]| {
        let out = gatehouse(&app).args(args).arg("--json").output().unwrap();
        (
            out.status.success(),
            json(&out),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, created, err) = run(&[
        "client",
        "create",
        "--name",
        "Shop",
        "--redirect-uri",
        "https://shop.example/cb",
        "--redirect-uri",
        "https://shop.example/cb2",
        "--first-party",
        "--scope",
        "openid",
        "--scope",
        "payments",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "client_credentials",
        "--audience",
        "payments-service",
    ]);
    assert!(ok, "{err}");
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();

    // The running server accepts the new client at once.
    let (status, body) = app.client_credentials(&id, &secret, "payments").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, shown, _) = run(&["client", "show", &id]);
    assert_eq!(shown["name"], "Shop");
    assert_eq!(shown["first_party"], true);
    assert_eq!(
        shown["redirect_uris"],
        serde_json::json!(["https://shop.example/cb", "https://shop.example/cb2"])
    );
    assert_eq!(shown["audiences"], serde_json::json!(["payments-service"]));
    assert!(shown.get("client_secret").is_none() && shown.get("secret_digest").is_none());

    let (ok, updated, err) = run(&["client", "update", &id, "--name", "Better shop", "--scope", "reports"]);
    assert!(ok, "{err}");
    assert_eq!(updated["name"], "Better shop");
    assert_eq!(updated["scopes"], serde_json::json!(["reports"]));
    // A change of scope takes effect at once too.
    let (_, body) = app.client_credentials(&id, &secret, "payments").await;
    assert_eq!(body["error"], "invalid_scope");

    // Bad input changes nothing.
    let (ok, error, _) = run(&["client", "update", &id, "--redirect-uri", "http://insecure.example/cb"]);
    assert!(!ok);
    assert!(error["error"].as_str().unwrap().contains("redirect URI"));
    let (_, shown, _) = run(&["client", "show", &id]);
    assert_eq!(shown["redirect_uris"][0], "https://shop.example/cb");
    let (ok, _, _) = run(&[
        "client",
        "create",
        "--name",
        "X",
        "--redirect-uri",
        "https://x.example/cb",
        "--grant-type",
        "implicit",
    ]);
    assert!(!ok);

    let (ok, public, _) = run(&[
        "client",
        "create",
        "--name",
        "App",
        "--public",
        "--redirect-uri",
        "http://127.0.0.1:7/cb",
    ]);
    assert!(ok);
    assert!(public["client_secret"].is_null());
    let (_, list, _) = run(&["client", "list"]);
    assert_eq!(list["clients"].as_array().unwrap().len(), 2);

    let (ok, _, _) = run(&["client", "delete", &id]);
    assert!(ok);
    let (status, body) = app.client_credentials(&id, &secret, "reports").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (ok, error, _) = run(&["client", "delete", &id]);
    assert!(!ok && error["error"].as_str().unwrap().contains("no client"));
    app.finish().await;
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn keys_rotate_takes_effect_on_a_running_server(backend: Backend) {
    let app = spawn_app(backend).await;
    let (c, secret) = app
        .register_client(ClientSpec {
            grants: &["client_credentials"],
            scopes: Some("reports"),
            ..Default::default()
        })
        .await;
    let (id, secret) = (c.id.as_str(), secret.unwrap());
    let (_, body) = app.client_credentials(id, &secret, "reports").await;
    let old_token = body["access_token"].as_str().unwrap().to_owned();
    let old_kid = kid_of(&old_token);

    let out = gatehouse(&app).args(["keys", "rotate", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new_kid = json(&out)["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    // The new key is published within a reload (the server reloads every
    // 5 s), while the old one goes on signing: reliers' cached JWKS do not
    // have the new key yet (relier::key_rotation_while_tokens_are_in_flight
    // waits for the switch).
    assert!(json(&out)["signs_from"].as_i64().unwrap() >= gatehouse_core::Timestamp::now().0 + 300);
    let kids = eventually("the new key to be published", || async {
        let jwks: serde_json::Value = reqwest::get(format!("{}/jwks.json", app.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kids: Vec<String> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        kids.contains(&new_kid).then_some(kids)
    })
    .await;
    assert!(kids.contains(&old_kid), "{kids:?}");
    let (_, body) = app.client_credentials(id, &secret, "reports").await;
    assert_eq!(kid_of(body["access_token"].as_str().unwrap()), old_kid);
    let r = reqwest::Client::new()
        .post(format!("{}/introspect", app.base))
        .basic_auth(id, Some(&secret))
        .form(&[("token", old_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["active"], true);
    app.finish().await;
}
