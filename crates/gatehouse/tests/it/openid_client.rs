//! A real client library against the real server: openid-client v6 (npm),
//! unmodified, in `tests/node/openid_client.mjs`, through discovery, the
//! code flow with PKCE, the ID token (ES256 and EdDSA, signatures checked
//! against the JWKS), UserInfo, refresh, introspection, revocation and DPoP
//! with ES256 and Ed25519 keys, at the IdP and at a resource server on the
//! relier library. The person's login in the middle
//! is this test's `Browser`: the script prints each authorization URL, the
//! browser (signed in) follows it, and the callback URL goes back to the
//! script on its stdin. The script prints what the library returned as one
//! JSON line, which this test asserts on.
//!
//! Node.js 20 or later and the script's packages are needed:
//! `scripts/test` runs `npm ci` in `crates/gatehouse/tests/node`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::oauth::dpop::thumbprint;
use gatehouse_relier::{AuthError, Authenticated, Issuer, Verifier};

use crate::both_backends;
use crate::oauth::jwt_claims;
use crate::support::{Backend, Browser, ClientSpec, TestApp, spawn_app};

both_backends!(openid_client_drives_every_flow);

const EMAIL: &str = "node@example.com";
const PASSWORD: &str = "a perfectly fine passphrase";
/// The resource server's identifier (RFC 8707), what its tokens name in `aud`.
const API: &str = "https://api.example.com/reports";
/// How long the whole script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Fails at once, saying what to do, when the script's packages are missing.
fn require_packages() {
    let dir = node_dir();
    assert!(
        dir.join("node_modules/openid-client/package.json").is_file(),
        "openid-client is not installed in {}: run `npm ci` there (scripts/test does), with Node.js 20 or later",
        dir.display()
    );
}

/// The resource server: the relier library's extractor, DPoP included.
async fn reports(auth: Authenticated) -> Result<axum::Json<Value>, AuthError> {
    auth.require_scope("reports:read")?;
    Ok(axum::Json(json!({
        "user": auth.user,
        "relier": auth.relier,
        "scheme": format!("{:?}", auth.scheme),
        "jkt": auth.token.jkt,
    })))
}

/// The script running, and everything it said so far.
struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    transcript: Vec<String>,
}

/// What the script returned, and all it wrote (for failure messages).
struct Outcome {
    result: Value,
    output: String,
}

impl Drop for Script {
    fn drop(&mut self) {
        // A test that failed halfway leaves no script behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Script {
    fn start(env: &[(&str, String)]) -> Script {
        require_packages();
        let mut child = Command::new("node")
            .arg("openid_client.mjs")
            .current_dir(node_dir())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` (Node.js 20 or later is needed for this test): {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Script {
            child,
            stdin,
            lines,
            stderr: Some(stderr),
            transcript: Vec::new(),
        }
    }

    /// Waits for the script to end (killing it unless `wait`); all it
    /// wrote, with its exit status.
    fn output(&mut self, wait: bool) -> (bool, String) {
        if !wait {
            let _ = self.child.kill();
        }
        let status = self.child.wait();
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let success = status.as_ref().is_ok_and(|s| s.success());
        let status = status.map(|s| s.to_string()).unwrap_or_default();
        let text = format!(
            "--- openid_client.mjs ({status}) stdout:\n{}\n--- stderr:\n{stderr}",
            self.transcript.join("\n")
        );
        (success, text)
    }

    /// Stops the script and fails the test with all it wrote.
    fn fail(mut self, why: &str) -> ! {
        let (_, output) = self.output(false);
        panic!("{why}\n{output}");
    }

    /// Runs the script to its end, logging in with `browser` whenever it
    /// asks; returns its `RESULT`.
    async fn run(mut self, browser: &Browser) -> Outcome {
        let deadline = tokio::time::Instant::now() + SCRIPT_TIMEOUT;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => self.fail("the script ended without a result"),
                Err(_) => self.fail("the script took too long"),
            };
            self.transcript.push(line.clone());
            if let Some(url) = line.strip_prefix("AUTHORIZE ") {
                let callback = match browser.follow(url).await {
                    Ok(callback) => callback,
                    Err(page) => self.fail(&format!(
                        "the authorization stopped at a page: {} {}",
                        page.status, page.body
                    )),
                };
                if writeln!(self.stdin, "CALLBACK {callback}").is_err() {
                    self.fail("the script stopped reading");
                }
            } else if let Some(json) = line.strip_prefix("RESULT ") {
                let result = match serde_json::from_str(json) {
                    Ok(v) => v,
                    Err(e) => self.fail(&format!("the result is not JSON: {e}")),
                };
                let (success, output) = self.output(true);
                assert!(success, "the script failed after its result\n{output}");
                return Outcome { result, output };
            }
        }
    }
}

/// Asserts `cond`, showing the script's output and what the library
/// returned when it fails.
macro_rules! check {
    ($outcome:expr, $cond:expr, $($msg:tt)+) => {
        assert!(
            $cond,
            "{}\n{}\n--- what openid-client returned:\n{:#}",
            format!($($msg)+),
            $outcome.output,
            $outcome.result
        )
    };
}

async fn openid_client_drives_every_flow(backend: Backend) {
    require_packages();
    let app = spawn_app(backend).await;
    let browser = app.ready_account(EMAIL, PASSWORD).await;
    let uid = app
        .store()
        .account_by_email(&gatehouse_core::Email::parse(EMAIL).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
        .as_str()
        .to_owned();
    let (confidential, public, api_url) = clients_and_api(&app).await;
    let (conf, conf_secret) = confidential;

    let script = Script::start(&[
        ("ISSUER", app.base.clone()),
        ("CONFIDENTIAL_ID", conf.id.to_string()),
        ("CONFIDENTIAL_SECRET", conf_secret),
        ("CONFIDENTIAL_REDIRECT", conf.redirect_uris[0].clone()),
        ("PUBLIC_ID", public.id.to_string()),
        ("PUBLIC_REDIRECT", public.redirect_uris[0].clone()),
        ("API_RESOURCE", API.to_owned()),
        ("API_URL", api_url),
    ]);
    let out = script.run(&browser).await;
    let r = &out.result;

    // Discovery.
    let meta = &r["metadata"];
    check!(out, meta["issuer"] == app.base.as_str(), "issuer");
    check!(out, r["oauth2_metadata"] == *meta, "RFC 8414's metadata is the same");
    for alg in ["ES256", "EdDSA", "Ed25519"] {
        check!(
            out,
            meta["dpop_signing_alg_values_supported"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(alg))),
            "DPoP {alg} advertised"
        );
    }

    // The code flow, the ID token (signature checked by the library),
    // UserInfo, introspection.
    let c = &r["confidential"];
    check!(out, c["token_type"] == "bearer", "a bearer token");
    check!(out, c["has_refresh_token"] == true, "a refresh token");
    let id = &c["id_token"];
    check!(out, id["iss"] == app.base.as_str(), "ID token iss");
    check!(out, id["sub"] == uid.as_str(), "ID token sub");
    check!(out, id["aud"] == conf.id.as_str(), "ID token aud");
    check!(out, id["nonce"].is_string(), "ID token nonce");
    check!(out, id["email"] == EMAIL, "ID token email");
    check!(
        out,
        jwt_header(&c["id_token_jwt"])["alg"] == "ES256",
        "ID token signed ES256"
    );
    check!(out, c["userinfo"]["sub"] == uid.as_str(), "UserInfo sub");
    check!(out, c["userinfo"]["email"] == EMAIL, "UserInfo email");
    check!(out, c["userinfo"]["email_verified"] == true, "UserInfo email_verified");
    let i = &c["introspected"];
    check!(out, i["active"] == true, "introspection: active");
    check!(out, i["sub"] == uid.as_str(), "introspection: sub");
    check!(out, i["client_id"] == conf.id.as_str(), "introspection: client_id");
    check!(out, i["token_type"] == "Bearer", "introspection: token_type");
    check!(
        out,
        c["introspected_with_client_secret_post"]["active"] == true,
        "introspection with client_secret_post"
    );

    // Refresh rotates; a rotated token used again is refused and revokes
    // the family.
    let f = &c["refreshed"];
    check!(
        out,
        f["rotated"] == true && f["new_access_token"] == true,
        "refresh rotates"
    );
    check!(
        out,
        f["introspected"]["active"] == true,
        "the refreshed token is active"
    );
    check!(
        out,
        c["reused_refresh_token"]["error"] == "invalid_grant",
        "reuse: invalid_grant"
    );
    check!(
        out,
        c["family_after_reuse"]["active"] == false,
        "reuse revokes the family"
    );

    // Revocation.
    check!(
        out,
        c["revoked_access_token"]["active"] == false,
        "a revoked access token"
    );
    check!(
        out,
        c["refresh_after_revocation"]["error"] == "invalid_grant",
        "a revoked refresh token"
    );

    // DPoP, with each key type.
    for alg in ["ES256", "Ed25519"] {
        let d = &r["dpop"][alg];
        let jkt = thumbprint(&d["jwk"]).unwrap();
        check!(out, d["token_type"] == "dpop", "{alg}: a DPoP token");
        let claims = jwt_claims(d["access_token"].as_str().unwrap());
        check!(out, claims["cnf"]["jkt"] == jkt.as_str(), "{alg}: bound to the key");
        check!(
            out,
            claims["client_id"] == public.id.as_str(),
            "{alg}: the public client's"
        );
        check!(out, d["id_token"]["sub"] == uid.as_str(), "{alg}: ID token sub");
        check!(
            out,
            jwt_header(&d["id_token_jwt"])["alg"] == "EdDSA",
            "{alg}: the public client's ID tokens are EdDSA"
        );
        check!(out, d["userinfo"]["email"] == EMAIL, "{alg}: UserInfo with a proof");
        let refused = &d["userinfo_without_proof"];
        check!(
            out,
            refused["status"] == 401
                && refused["challenges"][0]["scheme"] == "dpop"
                && refused["challenges"][0]["parameters"]["error"] == "invalid_token",
            "{alg}: UserInfo refuses the bound token as a bearer token, pointing at DPoP"
        );
        let f = &d["refreshed"];
        check!(
            out,
            f["token_type"] == "dpop" && f["rotated"] == true,
            "{alg}: refreshed"
        );
        let claims = jwt_claims(f["access_token"].as_str().unwrap());
        check!(
            out,
            claims["cnf"]["jkt"] == jkt.as_str(),
            "{alg}: refreshed, still bound"
        );
        check!(out, f["userinfo"]["sub"] == uid.as_str(), "{alg}: refreshed, UserInfo");
        check!(
            out,
            d["refresh_with_another_key"]["error"] == "invalid_grant",
            "{alg}: the refresh token is bound to the key"
        );
        check!(
            out,
            d["refresh_after_revocation"]["error"] == "invalid_grant",
            "{alg}: the public client revoked its refresh token"
        );
        let cc = &d["client_credentials"];
        check!(out, cc["token_type"] == "dpop", "{alg}: client credentials, DPoP");
        check!(
            out,
            cc["introspected"]["cnf"]["jkt"] == jkt.as_str(),
            "{alg}: introspected cnf"
        );
        check!(
            out,
            cc["introspected"]["token_type"] == "DPoP",
            "{alg}: introspected token_type"
        );
        let res = &d["resource"];
        check!(out, res["status"] == 200, "{alg}: the resource server takes it");
        check!(out, res["body"]["scheme"] == "DPoP", "{alg}: with the DPoP scheme");
        check!(
            out,
            res["body"]["jkt"] == jkt.as_str(),
            "{alg}: the resource saw the key"
        );
        check!(
            out,
            res["body"]["relier"] == conf.id.as_str(),
            "{alg}: the resource saw the client"
        );
    }
    app.finish().await;
}

/// The header of a JWT the script returned (`{}` if it is none).
fn jwt_header(jwt: &Value) -> Value {
    jwt.as_str()
        .and_then(|t| t.split('.').next())
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice(&h).ok())
        .unwrap_or_else(|| json!({}))
}

/// The confidential client (with its secret), the public one, and the
/// resource server's URL.
async fn clients_and_api(
    app: &TestApp,
) -> (
    (gatehouse_core::oauth::Client, String),
    gatehouse_core::oauth::Client,
    String,
) {
    let (mut conf, secret) = app
        .register_client(ClientSpec {
            name: "NodeShop",
            redirect_uris: &["http://127.0.0.1:9/nodeshop/cb"],
            grants: &["authorization_code", "refresh_token", "client_credentials"],
            scopes: Some("openid email profile offline_access reports:read"),
            ..Default::default()
        })
        .await;
    conf.audiences = vec![API.to_owned()];
    app.store()
        .update_client(
            &conf,
            &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &conf),
        )
        .await
        .unwrap();
    let (mut public, _) = app
        .register_client(ClientSpec {
            name: "NodeApp",
            public: true,
            ..Default::default()
        })
        .await;
    public.id_token_alg = SigningAlg::EdDSA;
    app.store()
        .update_client(
            &public,
            &crate::support::client_audit(gatehouse_core::audit::AuditKind::ClientUpdated, &public),
        )
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer = Issuer::discover(&app.base, reqwest::Client::new()).await.unwrap();
    let verifier = Verifier::builder(issuer, API)
        .realm("reports")
        .public_url(format!("http://{addr}").parse().unwrap())
        .build();
    let router = axum::Router::new()
        .route("/reports", axum::routing::get(reports))
        .with_state(verifier);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let api_url = format!("http://{addr}/reports");
    // Up before the script calls it.
    let r = reqwest::get(&api_url).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    ((conf, secret.unwrap()), public, api_url)
}
