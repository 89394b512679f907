//! `gatehouse pay ...`: run the payments service on its own, and administer
//! its database (merchants, test money). Refunds go through its admin API,
//! which notifies the merchant. It uses the payments
//! database of the configuration (`GATEHOUSE_PAY_DATABASE_URL`).

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use url::Url;

use gatehouse_core::pay::{FeePayer, FeeRule};
use gatehouse_pay::{Merchant, PayConfig, PayService};

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum PayCommand {
    /// Run the payments service alone (it reaches the IdP over HTTP).
    Serve,
    /// Register a merchant: a client of the IdP that may sell.
    Merchant {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// Credit a wallet with test money (the `test` funding source).
    Fund {
        /// The user's id (`sub`).
        #[arg(long)]
        user: String,
        /// In minor units (cents).
        #[arg(long)]
        amount: i64,
        #[arg(long, default_value = "EUR")]
        currency: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// Add a merchant, or update it.
    Add {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        name: String,
        /// An origin allowed to frame the purchase pages (repeatable).
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// Where purchase notifications go.
        #[arg(long)]
        notify_uri: Option<String>,
        /// The fixed part of the fee on each purchase, in minor units.
        #[arg(long, default_value_t = 0)]
        fee_fixed: i64,
        /// The percentage part of the fee, in basis points (250 = 2.5 %;
        /// rounded half up to a minor unit, per purchase).
        #[arg(long, default_value_t = 0)]
        fee_basis_points: i64,
        /// Who pays the fee: `buyer` (on top of the price) or `merchant`
        /// (out of the price).
        #[arg(long, default_value = "buyer", value_parser = ["buyer", "merchant"])]
        fee_payer: String,
    },
}

/// The payments service's settings from the configuration, listening on
/// `addr`. The IdP it trusts: `GATEHOUSE_PAY_ISSUER`, else `GATEHOUSE_ISSUER`,
/// else `idp` (the issuer of the IdP running beside it), else
/// `http://<GATEHOUSE_LISTEN>`.
pub fn pay_config(config: &Config, addr: std::net::SocketAddr, idp: Option<&Url>) -> anyhow::Result<PayConfig> {
    let public_url = match &config.pay.public_url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("http://{addr}/")).context("a URL from the bound address")?,
    };
    let issuer = match config.pay.issuer.as_ref().or(config.issuer.as_ref()).or(idp) {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => format!("http://{}", config.listen),
    };
    let client_id = config
        .pay
        .client_id
        .clone()
        .context("GATEHOUSE_PAY_CLIENT_ID: the payments service's client id at the IdP is not set")?;
    let client_secret = config
        .pay
        .client_secret
        .as_ref()
        .map(|s| s.expose().clone())
        .context("GATEHOUSE_PAY_CLIENT_SECRET is not set")?;
    Ok(PayConfig {
        public_url,
        database_url: config.pay.database_url.clone(),
        issuer,
        client_id,
        client_secret,
        data_dir: config.data_dir.clone(),
        secret_key: config.pay.secret_key.as_ref().map(|s| s.expose().clone()),
        limits: config.pay.limits,
        standing_max_age: config
            .pay
            .standing_max_age
            .unwrap_or(gatehouse_pay::DEFAULT_STANDING_MAX_AGE),
    })
}

/// Starts the payments service where the configuration says; `idp` is the
/// issuer of an IdP started beside it, if any.
pub async fn start(
    config: &Config,
    default_listen: std::net::SocketAddr,
    idp: Option<&Url>,
) -> anyhow::Result<PayService> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let listen = config.pay.listen.unwrap_or(default_listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let settings = pay_config(config, listener.local_addr()?, idp)?;
    PayService::start(settings, listener).await
}

pub async fn run(config: &Config, command: PayCommand) -> anyhow::Result<(Value, String)> {
    match command {
        PayCommand::Serve => unreachable_serve(),
        PayCommand::Merchant {
            command:
                MerchantCommand::Add {
                    client_id,
                    name,
                    origins,
                    notify_uri,
                    fee_fixed,
                    fee_basis_points,
                    fee_payer,
                },
        } => {
            let payer = FeePayer::parse(&fee_payer).context("--fee-payer is buyer or merchant")?;
            let fee = FeeRule::new(fee_fixed, fee_basis_points, payer)?;
            let store = open(config).await?;
            store
                .add_merchant(Merchant {
                    client_id: client_id.clone(),
                    name: name.clone(),
                    origins: origins.clone(),
                    notify_uri: notify_uri.clone(),
                    fee,
                })
                .await?;
            Ok((
                json!({ "client_id": client_id, "name": name, "origins": origins, "notify_uri": notify_uri, "fee": fee }),
                format!("Merchant {name} ({client_id}) registered."),
            ))
        }
        PayCommand::Fund { user, amount, currency } => {
            let store = open(config).await?;
            let balance = store.fund(&user, amount, &currency).await?;
            Ok((
                json!({ "user": user, "currency": currency, "balance": balance }),
                format!("Credited {amount} to {user}; balance {balance} {currency} (minor units)."),
            ))
        }
    }
}

fn unreachable_serve() -> anyhow::Result<(Value, String)> {
    anyhow::bail!("`gatehouse pay serve` runs a server, not a command")
}

async fn open(config: &Config) -> anyhow::Result<std::sync::Arc<dyn gatehouse_pay::PayStore>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    gatehouse_pay::open_store(&config.pay.database_url).await
}
