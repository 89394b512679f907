//! Security events at scale: a ban fanned out to many reliers, and a large
//! queue of events delivered, both through the real outbox worker of the
//! running server to a local receiver that accepts every event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::post;
use serde::Serialize;

use gatehouse_core::Timestamp;
use gatehouse_core::audit::{Actor, AuditEvent, AuditKind, BY_CLI};
use gatehouse_core::oauth::grant::Consent;
use gatehouse_core::oauth::{Client, Scopes};

use crate::server::{self, Database};

#[derive(Debug, Serialize)]
pub struct FanoutRow {
    pub backend: &'static str,
    pub what: String,
    pub events: usize,
    /// From the first command to the moment the receiver had every event.
    pub seconds: f64,
    pub per_second: f64,
}

/// Starts the receiver; returns its URL and the count of events received.
async fn receiver() -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = Router::new().route(
        "/events",
        post(move || {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/events"), count))
}

/// `gatehouse user ban|unban UID`, as an operator runs it.
async fn cli(gatehouse: &std::path::Path, db: &Database, args: Vec<String>) -> anyhow::Result<()> {
    let mut cmd = server::command(gatehouse, db);
    cmd.args(&args);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    if !out.status.success() {
        bail!("gatehouse {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

async fn wait_for(count: &AtomicUsize, target: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while count.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            bail!(
                "only {} of {target} events arrived in {limit:?}",
                count.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Registers `reliers` clients with an events URI, all used by the bench
/// user; times one ban reaching all of them, then `rounds` ban/unban pairs
/// (a queue of `2 * rounds * reliers` events) being delivered.
pub async fn run(
    gatehouse: &std::path::Path,
    db: &Database,
    backend: &'static str,
    email: &str,
    reliers: usize,
    rounds: usize,
) -> anyhow::Result<Vec<FanoutRow>> {
    let (url, count) = receiver().await?;
    let store = gatehouse_store::connect(&db.url).await.context("opening the store")?;
    let account = store
        .account_by_email(&gatehouse_core::Email::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?)
        .await?
        .context("the bench user")?;
    let now = Timestamp::now();
    let actor = Actor {
        ip: "bench".into(),
        user_agent: "gatehouse-bench".into(),
    };
    for i in 0..reliers {
        let (mut client, _) = Client::new(
            &format!("Relier {i}"),
            false,
            vec![],
            vec![gatehouse_core::oauth::GrantType::ClientCredentials],
            now,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        client.events_uri = Some(url.clone());
        let audit = AuditEvent::client_changed(AuditKind::ClientCreated, &client.id, BY_CLI, client.created_at);
        store.create_client(&client, &audit).await?;
        let consent = Consent {
            account_id: account.id.clone(),
            client_id: client.id.clone(),
            scopes: Scopes::parse("openid").unwrap_or_default(),
            granted_at: now,
        };
        let audit = AuditEvent::new(AuditKind::ConsentGranted, Some(&account.id), &actor, now);
        store.put_consent(&consent, &audit).await?;
    }
    drop(store);
    let uid = account.id.to_string();
    let mut rows = Vec::new();

    let start = Instant::now();
    cli(
        gatehouse,
        db,
        vec![
            "user".into(),
            "ban".into(),
            uid.clone(),
            "--reason".into(),
            "bench".into(),
        ],
    )
    .await?;
    wait_for(&count, reliers, Duration::from_secs(120)).await?;
    let seconds = start.elapsed().as_secs_f64();
    rows.push(FanoutRow {
        backend,
        what: format!("one ban to {reliers} reliers"),
        events: reliers,
        seconds,
        per_second: reliers as f64 / seconds,
    });
    cli(gatehouse, db, vec!["user".into(), "unban".into(), uid.clone()]).await?;
    wait_for(&count, 2 * reliers, Duration::from_secs(120)).await?;

    let before = count.load(Ordering::Relaxed);
    let events = 2 * rounds * reliers;
    let start = Instant::now();
    for _ in 0..rounds {
        cli(gatehouse, db, vec!["user".into(), "ban".into(), uid.clone()]).await?;
        cli(gatehouse, db, vec!["user".into(), "unban".into(), uid.clone()]).await?;
    }
    let queued = start.elapsed().as_secs_f64();
    wait_for(&count, before + events, Duration::from_secs(600)).await?;
    let seconds = start.elapsed().as_secs_f64();
    rows.push(FanoutRow {
        backend,
        what: format!(
            "{events} queued events ({rounds} ban/unban pairs to {reliers} reliers; queued in {queued:.1} s)"
        ),
        events,
        seconds,
        per_second: events as f64 / seconds,
    });
    Ok(rows)
}
