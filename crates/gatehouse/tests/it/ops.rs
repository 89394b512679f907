//! Operations over HTTP: health, metrics, the headers every page carries.

use reqwest::StatusCode;

use crate::both_backends;
use crate::support::{Backend, spawn_app};

both_backends!(
    health_and_readiness,
    metrics_count_requests_and_logins,
    pages_carry_security_headers
);

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.browser();
    b.get("/health/live").await.expect(StatusCode::OK, "\"ok\"");
    b.get("/health/ready").await.expect(StatusCode::OK, "\"ok\"");
    app.finish().await;
}

async fn metrics_count_requests_and_logins(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app
        .ready_account("mona@example.com", "a perfectly fine passphrase")
        .await;
    b.login("mona@example.com", "wrong passphrase").await;
    let page = b.get("/metrics").await;
    page.expect(StatusCode::OK, "# TYPE gatehouse_http_requests counter");
    for line in [
        "gatehouse_http_requests_total{method=\"POST\",route=\"/login\",status=\"303\"} 1",
        "gatehouse_http_requests_total{method=\"POST\",route=\"/signup\",status=\"303\"} 1",
        "gatehouse_logins_total{outcome=\"success\"} 1",
        "gatehouse_logins_total{outcome=\"bad_password\"} 1",
        "gatehouse_signups_total 1",
    ] {
        assert!(page.body.contains(line), "{line} missing from:\n{}", page.body);
    }
    app.finish().await;
}

async fn pages_carry_security_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.browser();
    let page = b.get("/login").await;
    let h = |name: &str| {
        page.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(h("content-security-policy").contains("frame-ancestors 'none'"));
    assert!(h("content-security-policy").contains("default-src 'none'"));
    assert!(!h("content-security-policy").contains("unsafe-inline"));
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("cache-control"), "no-store");
    let cookie = h("set-cookie");
    assert!(cookie.starts_with("gh_csrf="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    // Plain http on loopback: no Secure flag, or the browser would drop it.
    assert!(!cookie.contains("Secure"));
    let css = b.get("/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    b.get("/no/such/page").await;
    app.finish().await;
}
