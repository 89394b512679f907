//! `gatehouse`: parses the command line, loads the configuration, sets up
//! logging, and runs the command.

use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

use gatehouse::cli::{self, Cli};
use gatehouse::config::{Config, LogFormat};

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("GATEHOUSE_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Each connection is a descriptor: as many as the system allows.
    let open_files = gatehouse_serve::raise_open_files_limit();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    let format = match cli.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Human,
        None => config.log_format,
    };
    init_logging(format);
    tracing::debug!(?open_files, "open-files limit");
    let json = cli.json;
    match cli::run(cli, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            }
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}
