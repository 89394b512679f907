//! The command line: `serve`, `demo`, `migrate`, `user create/ban/unban`, `client ...`, `keys
//! rotate`. Every command takes `--json` and then prints exactly one JSON
//! object on stdout (logs go to stderr).

pub mod client;
pub mod pay;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use std::io::Read;
use std::path::PathBuf;

use gatehouse_core::oauth::client::SigningAlg;
use gatehouse_core::{AccountId, Timestamp};
use gatehouse_idp::Settings;
use gatehouse_idp::flows::{self, ban::BanRequest, sign_up::CreateError};
use gatehouse_idp::keys::{self, RETIRED_KEY_GRACE};
use gatehouse_store::Store;

use crate::config::Config;
use crate::server;

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Single sign-on identity provider with a payments service"
)]
pub struct Cli {
    /// A TOML configuration file; GATEHOUSE_* environment variables win over it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr: human or json (overrides GATEHOUSE_LOG_FORMAT).
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["human", "json"])]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the identity provider.
    Serve,
    /// Run everything with no configuration, with a demo user.
    Demo {
        /// Where the demo keeps its database and mail.
        #[arg(long, default_value = "gatehouse-demo")]
        dir: PathBuf,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage clients (reliers).
    Client {
        #[command(subcommand)]
        command: client::ClientCommand,
    },
    /// The payments service: run it alone, register merchants, add test money.
    Pay {
        #[command(subcommand)]
        command: pay::PayCommand,
    },
    /// Manage the keys that sign tokens.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key. It is published at once and signs once every
    /// cached JWKS has it (the JWKS max-age and a few seconds later); the
    /// previous key of the algorithm signs until then and stays published
    /// until everything it signed has expired.
    Rotate {
        #[arg(long, default_value = "ES256", value_parser = ["ES256", "EdDSA", "RS256"])]
        alg: String,
        /// For a compromised key: the new key signs at once (running servers
        /// switch within seconds) and the older keys of the algorithm leave
        /// the JWKS at once, so nothing they signed verifies any more.
        #[arg(long)]
        now: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one line). Without it the
        /// account has no usable password until it is reset by email.
        #[arg(long)]
        password_stdin: bool,
        /// Mark the email as already verified.
        #[arg(long)]
        verified: bool,
    },
    /// Ban an account everywhere, or at one client (`--client`), for good or
    /// until a time (`--until`, RFC 3339). Its sessions and tokens are
    /// revoked at once.
    Ban {
        uid: String,
        #[arg(long = "client", value_name = "CLIENT_ID")]
        client: Option<String>,
        #[arg(long, value_name = "RFC3339")]
        until: Option<String>,
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
    /// Lift a ban (everywhere, or the one at `--client`).
    Unban {
        uid: String,
        #[arg(long = "client", value_name = "CLIENT_ID")]
        client: Option<String>,
    },
}

pub use crate::demo::{DEMO_EMAIL, DEMO_PASSWORD};

/// Prints a command's result: JSON when asked, else the text.
fn report(json_mode: bool, value: &Value, text: &str) {
    if json_mode {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => {
            let stop = server::termination();
            let mut running = server::start(&config).await?;
            // The payments service beside the IdP, where configured.
            let pay = match config.pay.listen {
                Some(listen) => Some(pay::start(&config, listen, Some(&running.issuer)).await?),
                None => None,
            };
            if cli.json {
                println!(
                    "{}",
                    json!({
                        "listening": running.addr.to_string(),
                        "issuer": running.issuer.as_str(),
                        "pay": pay.as_ref().map(|p| p.url().as_str().to_owned()),
                    })
                );
            }
            tokio::select! {
                r = running.wait() => r?,
                () = stop => {
                    tracing::info!("shutting down; finishing requests in flight");
                    if let Some(pay) = pay {
                        pay.shutdown().await;
                    }
                    running.shutdown().await?;
                }
            }
            Ok(())
        }
        Command::Pay {
            command: pay::PayCommand::Serve,
        } => {
            let stop = server::termination();
            let default = std::net::SocketAddr::from(([127, 0, 0, 1], 8081));
            let service = pay::start(&config, default, None).await?;
            report(
                cli.json,
                &json!({ "pay": service.url().as_str() }),
                &format!("The payments service is listening at {}", service.url()),
            );
            stop.await;
            service.shutdown().await;
            Ok(())
        }
        Command::Pay { command } => {
            let (value, text) = pay::run(&config, command).await?;
            report(cli.json, &value, &text);
            Ok(())
        }
        Command::Demo { dir } => demo(cli.json, config, dir).await,
        Command::Migrate => {
            server::open_store(&config).await?;
            report(cli.json, &json!({ "migrated": true }), "Migrations applied.");
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Create {
                    email,
                    password_stdin,
                    verified,
                },
        } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_to_string(&mut line)
                    .context("reading the password from stdin")?;
                Some(line.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let store = server::open_store(&config).await?;
            let uid = create_user(store.as_ref(), &email, password, verified, "cli").await?;
            report(
                cli.json,
                &json!({ "uid": uid.as_str() }),
                &format!("Created account {uid} for {email}."),
            );
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Ban {
                    uid,
                    client,
                    until,
                    reason,
                },
        } => {
            let until = match until {
                Some(text) => Some(
                    time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                        .with_context(|| {
                            format!("--until: {text:?} is not an RFC 3339 time such as 2026-12-31T23:59:00Z")
                        })?
                        .unix_timestamp(),
                ),
                None => None,
            };
            let deps = flows_deps(&config).await?;
            let request = BanRequest {
                client_id: client.clone(),
                until,
                reason,
            };
            // A ban everywhere ends the sessions: their clients get
            // back-channel logout tokens; the account's clients (or the one
            // client) get security events. A running server delivers them.
            let ban = flows::ban::ban(&deps, &uid, &request, "cli", Timestamp::now()).await?;
            let scope = client
                .as_deref()
                .map_or("everywhere".to_owned(), |c| format!("at client {c}"));
            let text = match ban.until {
                Some(t) => format!(
                    "Suspended {uid} {scope} until {} UTC.",
                    gatehouse_core::time::format_utc(t)
                ),
                None => format!("Banned {uid} {scope}."),
            };
            report(
                cli.json,
                &json!({ "uid": uid, "client_id": client, "until": until, "banned": true }),
                &text,
            );
            Ok(())
        }
        Command::User {
            command: UserCommand::Unban { uid, client },
        } => {
            let deps = flows_deps(&config).await?;
            flows::ban::unban(&deps, &uid, client.as_deref(), "cli", Timestamp::now()).await?;
            report(
                cli.json,
                &json!({ "uid": uid, "client_id": client, "banned": false }),
                &format!("Lifted the ban of {uid}."),
            );
            Ok(())
        }
        Command::Client { command } => {
            let store = server::open_store(&config).await?;
            let (value, text) = client::run(store.as_ref(), command).await?;
            report(cli.json, &value, &text);
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate { alg, now },
        } => {
            let alg = SigningAlg::parse(&alg).with_context(|| format!("--alg: unknown algorithm {alg:?}"))?;
            let store = server::open_store(&config).await?;
            let secret = server::instance_secret(&config)?;
            let how = if now {
                keys::Rotation::Now
            } else {
                keys::Rotation::Prepublish {
                    jwks_max_age: config.jwks_max_age,
                }
            };
            let rotated = flows::admin::rotate_keys(store.as_ref(), &secret, alg, how, "cli").await?;
            let text = if now {
                format!(
                    "New {} signing key {}: it signs from now on (running servers switch within seconds). \
                     The previous ones are withdrawn ({}): nothing they signed verifies any more.",
                    alg.as_str(),
                    rotated.kid,
                    rotated.withdrawn
                )
            } else {
                format!(
                    "New {} signing key {}: published now, it signs from {} UTC (running servers switch \
                     within seconds after). The previous one signs until then and stays published for {} \
                     minutes after.",
                    alg.as_str(),
                    rotated.kid,
                    gatehouse_core::time::format_utc(rotated.signs_from),
                    RETIRED_KEY_GRACE / 60
                )
            };
            report(
                cli.json,
                &json!({
                    "kid": rotated.kid,
                    "alg": alg.as_str(),
                    "signs_from": rotated.signs_from.0,
                    "withdrawn": rotated.withdrawn,
                }),
                &text,
            );
            Ok(())
        }
    }
}

/// Creates an account the way an administrator does
/// (`flows::sign_up::create_account`: the password policy applies, the
/// event is audited), its refusals worded for the command line.
pub async fn create_user(
    store: &dyn Store,
    email: &str,
    password: Option<String>,
    verified: bool,
    by: &str,
) -> anyhow::Result<AccountId> {
    match flows::sign_up::create_account(store, email, password, verified, by).await {
        Ok(uid) => Ok(uid),
        Err(CreateError::BadEmail(e)) => bail!("--email: {e}"),
        Err(CreateError::Password(e)) => bail!("password: {e}"),
        Err(e) => Err(e.into()),
    }
}

async fn demo(json_mode: bool, mut config: Config, dir: PathBuf) -> anyhow::Result<()> {
    // The demo keeps to its own folder unless told otherwise.
    if std::env::var_os("GATEHOUSE_DATA_DIR").is_none() && cli_default_data_dir(&config) {
        config.database_url = format!("sqlite://{}", dir.join("gatehouse.db").display());
        config.data_dir = dir;
    }
    let stop = server::termination();
    let stack = crate::demo::Stack::start(crate::demo::default_options(config.clone())).await?;
    let base = stack.idp.issuer.as_str().trim_end_matches('/').to_owned();
    let url = |u: &url::Url| u.as_str().trim_end_matches('/').to_owned();
    let services = &stack.services;
    let (pay, shop, forum) = (
        url(services.pay.url()),
        url(services.shop.url()),
        url(services.forum.url()),
    );
    let mail_dir = config.mail_dir();
    let funds = format!(
        "{}.{:02} {}",
        crate::demo::DEMO_FUNDS / 100,
        crate::demo::DEMO_FUNDS % 100,
        crate::demo::DEMO_CURRENCY
    );
    report(
        json_mode,
        &json!({
            "idp": base,
            "login": format!("{base}/login"),
            "pay": pay,
            "shop": shop,
            "forum": forum,
            "email": DEMO_EMAIL,
            "password": DEMO_PASSWORD,
            "mail_dir": mail_dir.display().to_string(),
            "openid_configuration": format!("{base}/.well-known/openid-configuration"),
        }),
        &format!(
            "Gatehouse demo is running.\n\n  Identity provider: {base}/\n  Sign in:           {base}/login\n  Payments service:  {pay}/\n  Shop:              {shop}/\n  Forum:             {forum}/\n  Demo login:        {DEMO_EMAIL} / {DEMO_PASSWORD} (wallet: {funds} of test money)\n  Sign-up mail:      {} (one .eml file per message)\n  OpenID provider:   {base}/.well-known/openid-configuration\n\nTry it: log in at the shop, open the forum (no password asked), buy something at the shop,\nthen log out at either site: both are logged out.\n\nPress Ctrl-C to stop.",
            mail_dir.display()
        ),
    );
    stop.await;
    stack.shutdown().await
}

fn cli_default_data_dir(config: &Config) -> bool {
    config.data_dir == std::path::Path::new("gatehouse-data")
}

/// What the use cases need, without a server: the store, the signing keys
/// (messages to reliers are signed tokens) and the settings they are signed
/// with (the issuer as the server states it).
async fn flows_deps(config: &Config) -> anyhow::Result<flows::Deps> {
    let store = server::open_store(config).await?;
    let keys = keys::KeyRing::load_for(store.clone(), &server::instance_secret(config)?, config.jwks_max_age)
        .await
        .context("cannot load the signing keys")?;
    let issuer = match &config.issuer {
        Some(issuer) => issuer.clone(),
        None => url::Url::parse(&format!("http://{}", config.listen)).context("issuer from the listen address")?,
    };
    let mut settings = Settings::new(issuer);
    settings.logout_token_lifetime = config.logout_token_lifetime;
    settings.outbox_max_age = config.outbox_max_age;
    settings.jwks_max_age = config.jwks_max_age;
    Ok(flows::Deps::new(store, keys, settings))
}
