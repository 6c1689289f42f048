//! The command line every service binary shares:
//! `<service> [--config FILE] [serve | health | migrate up | migrate down [--all] | migrate status]`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::migrations;
use crate::service::health;

#[derive(Debug, Parser)]
#[command(version, about)]
pub struct ServiceCli {
    /// Configuration file (TOML, or YAML by extension); `SEQ_CONFIG` when omitted.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl ServiceCli {
    /// The command line of `service`: clap's derive would name the crate this type lives in
    /// (`api --version` printed `domain 0.1.0`).
    pub fn command_for(service: &'static str) -> clap::Command {
        Self::command().name(service).bin_name(service)
    }

    /// Parses the process's arguments as `service`'s; exits with clap's message on bad ones.
    pub fn parse_for(service: &'static str) -> Self {
        let matches = Self::command_for(service).get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Exit 0 if the running service's /readyz answers 200, else 1: a container healthcheck
    /// for images that have no HTTP client of their own.
    Health,
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
///
/// `readiness_bind` names the address whose `/readyz` tells whether the service is ready
/// (its public listener, or its admin one), for the `health` command.
pub fn run<F, Fut>(
    service: &'static str,
    readiness_bind: fn(&Config) -> SocketAddr,
    serve: F,
) -> ExitCode
where
    F: FnOnce(Config, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cli = ServiceCli::parse_for(service);
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
            Command::Health => health::check(readiness_bind(&config)).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_help_name_the_service_not_the_crate() {
        let mut command = ServiceCli::command_for("sender-worker");
        let version = command.render_version();
        assert!(version.starts_with("sender-worker "), "{version}");
        let help = command.render_help().to_string();
        assert!(help.contains("sender-worker [OPTIONS]"), "{help}");
    }

    #[test]
    fn arguments_parse_as_before() -> anyhow::Result<()> {
        let matches = ServiceCli::command_for("api")
            .try_get_matches_from(["api", "--config", "seq.toml", "migrate", "down", "--all"])?;
        let cli = ServiceCli::from_arg_matches(&matches)?;
        assert_eq!(cli.config, Some(PathBuf::from("seq.toml")));
        assert!(matches!(
            cli.command,
            Some(Command::Migrate {
                action: MigrateAction::Down { all: true }
            })
        ));
        Ok(())
    }
}
