//! CORS as a browser sees it: discovery and the JWKS for any origin; the
//! token endpoint, UserInfo and revocation for the origins of public
//! clients' redirect URIs only, preflights included; nothing for
//! introspection, the admin API or the pages; never credentials. The
//! allowed origins follow `gatehouse client create/update/delete` at once.
//! The browser itself is in `spa.rs`.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::both_backends;
use crate::support::{Backend, ClientSpec, TestApp, spawn_app};

both_backends!(
    discovery_and_jwks_for_any_origin,
    endpoints_answer_public_clients_origins_only,
    preflights_name_methods_and_headers,
    origins_follow_the_command_line_at_once,
);

/// A method and path, the form it sends, and the status it answers.
type Endpoint<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], StatusCode);

/// The single-page app's origin and its redirect URI.
const SPA: &str = "http://127.0.0.1:5173";
const SPA_CALLBACK: &str = "http://127.0.0.1:5173/callback";
/// A confidential client's origin: its secret is not in a browser.
const WEB: &str = "https://web.example.com";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The comma-separated values of `name`, lowercased.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    origin: Option<&str>,
    form: &[(&str, &str)],
) -> (StatusCode, HeaderMap) {
    let mut request = reqwest::Client::new().request(method.clone(), format!("{}{path}", app.base));
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    if method == Method::POST {
        request = request.form(form);
    }
    let response = request.send().await.expect("request");
    (response.status(), response.headers().clone())
}

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> (StatusCode, HeaderMap) {
    let response = reqwest::Client::new()
        .request(Method::OPTIONS, format!("{}{path}", app.base))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", "authorization,content-type,dpop")
        .send()
        .await
        .expect("preflight");
    (response.status(), response.headers().clone())
}

/// Registers the single-page app (public) and a confidential web client.
async fn clients(app: &TestApp) {
    app.register_client(ClientSpec {
        name: "SPA",
        public: true,
        redirect_uris: &[SPA_CALLBACK, "com.example.app://callback"],
        ..Default::default()
    })
    .await;
    app.register_client(ClientSpec {
        name: "Web",
        redirect_uris: &["https://web.example.com/cb"],
        ..Default::default()
    })
    .await;
}

#[track_caller]
fn assert_allowed(what: &str, headers: &HeaderMap, origin: &str) {
    assert_eq!(
        header(headers, "access-control-allow-origin"),
        Some(origin),
        "{what}: {headers:?}"
    );
    assert!(
        list(headers, "vary").contains(&"origin".to_owned()),
        "{what}: Vary: Origin: {headers:?}"
    );
    assert_eq!(
        header(headers, "access-control-allow-credentials"),
        None,
        "{what}: no credentials"
    );
}

#[track_caller]
fn assert_refused(what: &str, headers: &HeaderMap) {
    assert_eq!(
        header(headers, "access-control-allow-origin"),
        None,
        "{what}: {headers:?}"
    );
    assert_eq!(
        header(headers, "access-control-allow-credentials"),
        None,
        "{what}: no credentials"
    );
}

async fn discovery_and_jwks_for_any_origin(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/jwks.json",
    ] {
        for origin in ["https://anywhere.example", SPA, "null"] {
            let (status, headers) = send(&app, Method::GET, path, Some(origin), &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(
                header(&headers, "access-control-allow-origin"),
                Some("*"),
                "{path} from {origin}"
            );
            assert_eq!(header(&headers, "access-control-allow-credentials"), None, "{path}");
            // The same answer for every origin: cacheable as one copy.
            assert!(
                !list(&headers, "vary").contains(&"origin".to_owned()),
                "{path}: {headers:?}"
            );
            assert_eq!(header(&headers, "cache-control"), Some("public, max-age=300"), "{path}");
        }
        // A preflight (a library adding a header of its own) is answered, not 405.
        let (status, headers) = preflight(&app, path, "https://anywhere.example", "GET").await;
        assert!(status.is_success(), "{path}: preflight {status}");
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"), "{path}");
        assert!(
            list(&headers, "access-control-allow-methods").contains(&"get".to_owned()),
            "{path}"
        );
    }
    app.finish().await;
}

async fn endpoints_answer_public_clients_origins_only(backend: Backend) {
    let app = spawn_app(backend).await;
    clients(&app).await;
    let bad_grant = [
        ("grant_type", "authorization_code"),
        ("code", "nope"),
        ("client_id", "nobody"),
    ];
    let endpoints: [Endpoint; 4] = [
        (Method::POST, "/token", &bad_grant, StatusCode::BAD_REQUEST),
        (Method::GET, "/userinfo", &[], StatusCode::UNAUTHORIZED),
        (Method::POST, "/userinfo", &[], StatusCode::UNAUTHORIZED),
        (
            Method::POST,
            "/revoke",
            &[("token", "whatever"), ("client_id", "nobody")],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, form, status) in endpoints {
        let what = format!("{method} {path}");
        // The app's origin: allowed, on errors too, and the client can read
        // the challenge and a nonce.
        let (got, headers) = send(&app, method.clone(), path, Some(SPA), form).await;
        assert_eq!(got, status, "{what}");
        assert_allowed(&what, &headers, SPA);
        let exposed = list(&headers, "access-control-expose-headers");
        for name in ["www-authenticate", "dpop-nonce"] {
            assert!(
                exposed.contains(&name.to_owned()),
                "{what}: exposes {name}: {headers:?}"
            );
        }
        // Other origins: the same answer, which the browser will not hand
        // to the page.
        for origin in [
            WEB,
            "https://evil.example",
            "null",
            "http://127.0.0.1:5174",
            "https://127.0.0.1:5173",
        ] {
            let (got, headers) = send(&app, method.clone(), path, Some(origin), form).await;
            assert_eq!(got, status, "{what} from {origin}");
            assert_refused(&format!("{what} from {origin}"), &headers);
        }
        // No Origin (not a browser): nothing changes.
        let (got, headers) = send(&app, method.clone(), path, None, form).await;
        assert_eq!(got, status, "{what}");
        assert_refused(&what, &headers);
    }
    // A successful answer too: a revocation of an unknown token is 200.
    let (spa, _) = app
        .register_client(ClientSpec {
            name: "Second SPA",
            public: true,
            redirect_uris: &["http://localhost:8081/"],
            ..Default::default()
        })
        .await;
    let (status, headers) = send(
        &app,
        Method::POST,
        "/revoke",
        Some("http://localhost:8081"),
        &[("token", "unknown"), ("client_id", spa.id.as_str())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_allowed("revoke", &headers, "http://localhost:8081");

    // Introspection is for confidential clients; the admin API and the pages
    // are no browser client's business.
    for (method, path) in [
        (Method::POST, "/introspect"),
        (Method::GET, "/admin/clients"),
        (Method::GET, "/login"),
        (Method::GET, "/authorize"),
    ] {
        let (_, headers) = send(&app, method.clone(), path, Some(SPA), &[("token", "x")]).await;
        assert_refused(&format!("{method} {path}"), &headers);
        let (status, headers) = preflight(&app, path, SPA, method.as_str()).await;
        assert_refused(&format!("preflight {path}"), &headers);
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "preflight {path}");
    }
    app.finish().await;
}

async fn preflights_name_methods_and_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    clients(&app).await;
    for (path, method, methods) in [
        ("/token", "POST", &["post"][..]),
        ("/userinfo", "GET", &["get", "post"][..]),
        ("/userinfo", "POST", &["get", "post"][..]),
        ("/revoke", "POST", &["post"][..]),
    ] {
        let what = format!("preflight {method} {path}");
        let (status, headers) = preflight(&app, path, SPA, method).await;
        assert!(status.is_success(), "{what}: {status}");
        assert_allowed(&what, &headers, SPA);
        let mut allowed = list(&headers, "access-control-allow-methods");
        allowed.sort();
        assert_eq!(allowed, methods, "{what}");
        let allowed = list(&headers, "access-control-allow-headers");
        for name in ["authorization", "content-type", "dpop"] {
            assert!(allowed.contains(&name.to_owned()), "{what}: allows {name}: {headers:?}");
        }
        assert_eq!(header(&headers, "access-control-max-age"), Some("600"), "{what}");
        for name in ["access-control-request-method", "access-control-request-headers"] {
            assert!(list(&headers, "vary").contains(&name.to_owned()), "{what}: Vary {name}");
        }

        for origin in [WEB, "https://evil.example", "null"] {
            let (_, headers) = preflight(&app, path, origin, method).await;
            assert_refused(&format!("{what} from {origin}"), &headers);
        }
    }
    app.finish().await;
}

/// `gatehouse client ...` is another process on the same database: once it
/// has answered, the running server answers with the change.
async fn origins_follow_the_command_line_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let run = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .env("GATEHOUSE_DATABASE_URL", &app.db.url)
            .env("GATEHOUSE_DATA_DIR", &app.config.data_dir)
            .env("GATEHOUSE_LOG", "warn")
            .args(args)
            .arg("--json")
            .output()
            .expect("gatehouse runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let allowed = |origin: &'static str| {
        let app = &app;
        async move {
            let (_, headers) = send(app, Method::POST, "/token", Some(origin), &[("grant_type", "x")]).await;
            header(&headers, "access-control-allow-origin") == Some(origin)
        }
    };
    // Asked before: the server has cached the empty set.
    assert!(!allowed(SPA).await);

    let created = run(&[
        "client",
        "create",
        "--name",
        "SPA",
        "--public",
        "--redirect-uri",
        SPA_CALLBACK,
    ]);
    let id = created["client_id"].as_str().expect("a client id").to_owned();
    assert!(allowed(SPA).await, "created");

    run(&[
        "client",
        "update",
        &id,
        "--redirect-uri",
        "http://localhost:5173/callback",
    ]);
    assert!(!allowed(SPA).await, "moved away");
    assert!(allowed("http://localhost:5173").await, "moved here");

    run(&["client", "delete", &id]);
    assert!(!allowed("http://localhost:5173").await, "deleted");

    // A confidential client adds no origin.
    run(&[
        "client",
        "create",
        "--name",
        "Web",
        "--redirect-uri",
        "https://web.example.com/cb",
    ]);
    assert!(!allowed(WEB).await);
    app.finish().await;
}
