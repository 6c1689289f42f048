//! The command line every service binary shares:
//! `<service> [--config FILE] [serve | migrate up | migrate down [--all] | migrate status]`.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::migrations;

#[derive(Debug, Parser)]
#[command(version, about)]
pub struct ServiceCli {
    /// Configuration file (TOML, or YAML by extension); `SEQ_CONFIG` when omitted.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the most recent migration, or all with --all.
    Down {
        #[arg(long)]
        all: bool,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// The whole `main` of a service: parse arguments, load config, start telemetry, then serve
/// until a signal or run a migration command. Exit code 2 for configuration errors.
pub fn run<F, Fut>(service: &'static str, serve: F) -> ExitCode
where
    F: FnOnce(Config, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cli = ServiceCli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{service}: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{service}: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let _telemetry = crate::telemetry::init(service, &config.telemetry)?;
                tracing::info!(
                    service,
                    version = env!("CARGO_PKG_VERSION"),
                    database = %config.database.redacted_url(),
                    kafka.brokers = %config.kafka.brokers,
                    "starting"
                );
                for warning in &config.deprecations {
                    tracing::warn!(service, "{warning}");
                }
                let shutdown = super::shutdown::on_signals();
                serve(config, shutdown).await
            }
            Command::Migrate { action } => migrate(&config, action).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{service} failed");
            eprintln!("{service}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `migrate up|down|status`, printing what it did to stdout.
pub async fn migrate(config: &Config, action: MigrateAction) -> anyhow::Result<()> {
    let url = &config.database.url;
    match action {
        MigrateAction::Up => {
            let applied = migrations::run_pending(url).await?;
            if applied.is_empty() {
                println!("database is up to date");
            }
            for version in applied {
                println!("applied {version}");
            }
        }
        MigrateAction::Down { all } => {
            let reverted = migrations::revert(url, all).await?;
            for version in reverted {
                println!("reverted {version}");
            }
        }
        MigrateAction::Status => {
            for state in migrations::status(url).await? {
                let mark = if state.applied { "applied" } else { "pending" };
                println!("{mark:8} {}", state.name);
            }
        }
    }
    Ok(())
}
