//! Starting the IdP: open and migrate the store, set up mail, bind, serve
//! until told to stop, then finish the requests in flight.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use gatehouse_idp::keys::InstanceSecret;
use gatehouse_idp::keys::KeyRing;
use gatehouse_idp::mail::Mailer;
use gatehouse_idp::{AppState, Settings};
use gatehouse_store::Store;

use crate::config::Config;

/// A server that is up: where it listens, and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub issuer: Url,
    pub store: Arc<dyn Store>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    /// The outbox delivery worker; stopped with the server.
    outbox: JoinHandle<()>,
}

impl Running {
    /// Stops accepting connections, lets requests in flight finish, and
    /// waits for the server to end.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = (&mut self.task).await.context("server task")?.context("server");
        self.outbox.abort();
        served
    }

    /// Waits until the server ends by itself (it does not, unless it fails).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("server task")?.context("server")
    }
}

/// Opens the store named by the configuration, creating the data directory
/// for a SQLite file, and applies the migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let store = gatehouse_store::connect(&config.database_url)
        .await
        .context("cannot open the database")?;
    store.migrate().await.context("cannot migrate the database")?;
    Ok(store)
}

/// The secret that encrypts the signing keys at rest: `secret_key`
/// (`GATEHOUSE_SECRET_KEY`) if configured, else `<data_dir>/secret.key`,
/// created on first start. Several instances on one PostgreSQL database must
/// all be given the same `GATEHOUSE_SECRET_KEY`, or none can open the keys
/// another one made.
pub fn instance_secret(config: &Config) -> anyhow::Result<InstanceSecret> {
    if let Some(secret) = &config.secret_key {
        return Ok(secret.clone());
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join(gatehouse_idp::keys::SECRET_FILE);
    Ok(InstanceSecret::load_or_create(&path)?)
}

pub fn mailer(config: &Config, issuer: &Url) -> anyhow::Result<Mailer> {
    let host = issuer.host_str().unwrap_or("localhost");
    let domain = if host.contains('.') {
        host.to_owned()
    } else {
        "localhost.localdomain".to_owned()
    };
    let from = format!("Gatehouse <no-reply@{domain}>")
        .parse()
        .context("sender address")?;
    Ok(match &config.smtp_url {
        Some(url) => Mailer::smtp(url, from)?,
        None => Mailer::folder(config.mail_dir(), from)?,
    })
}

/// Starts serving. Returns once the socket is bound.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let store = open_store(config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let issuer = match &config.issuer {
        Some(issuer) => issuer.clone(),
        None => Url::parse(&format!("http://{addr}")).context("issuer from address")?,
    };
    let keys = KeyRing::load_for(store.clone(), &instance_secret(config)?, config.jwks_max_age)
        .await
        .context("cannot load the signing keys")?;
    keys.spawn_refresher(gatehouse_idp::keys::REFRESH_INTERVAL);
    let mut settings = Settings::new(issuer.clone());
    settings.outbox_max_age = config.outbox_max_age;
    settings.logout_token_lifetime = config.logout_token_lifetime;
    settings.jwks_max_age = config.jwks_max_age;
    let state = AppState::new(store.clone(), mailer(config, &issuer)?, settings, keys);
    let outbox = gatehouse_idp::outbox::spawn_worker(state.clone());
    gatehouse_idp::housekeeping::spawn(state.store.clone());
    let app = gatehouse_idp::router(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = config.limits;
    let task = tokio::spawn(async move {
        gatehouse_serve::serve(listener, app, limits, async {
            let _ = stopped.await;
        })
        .await
    });
    tracing::info!(%addr, %issuer, "gatehouse is listening");
    Ok(Running {
        addr,
        issuer,
        store,
        stop: Some(stop),
        task,
        outbox,
    })
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C). The
/// SIGTERM handler is installed when this is called, not when it is first
/// polled, so call it before starting anything that a signal may interrupt.
pub fn termination() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
    }
}
