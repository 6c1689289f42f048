//! `cargo xtask`: local infrastructure (PostgreSQL, Kafka, GreenMail) and the developer
//! workflows built on it. State lives in target/local, downloads in the user cache.

mod apt;
mod cargo;
mod commands;
mod containers;
mod deploy_tools;
mod fuzz;
mod infra;
mod interrupt;
mod java;
mod kafka;
mod mail;
mod mail_checkers;
mod maven;
mod oauth_servers;
mod paths;
mod postgres;
mod probe;
mod process;
mod services;
mod up;
mod webhook_verifier;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use crate::paths::Paths;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Local infrastructure and developer workflows for Sequence Service"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start PostgreSQL, Kafka, the mail server and the six services.
    Up {
        /// Leave everything running in the background and return.
        #[arg(long)]
        detach: bool,
    },
    /// Stop everything `up`, `infra` and `test` started.
    Down,
    /// Start only the infrastructure and print `export` lines for running tests by hand.
    Infra,
    /// Run `cargo test --workspace ARGS...` against the local infrastructure; tests of the
    /// sender-worker also get Postfix's smtp-sink in SEQ_TEST_SMTP_SINK and a Python with
    /// dkimpy in SEQ_TEST_PYTHON_DKIM, those of e2e SpamAssassin in SEQ_TEST_SPAMASSASSIN
    /// (Debian packages, installed if missing), those of domain the Standard Webhooks library
    /// in SEQ_TEST_PYTHON_STANDARDWEBHOOKS (from PyPI, into a virtualenv).
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run `api migrate <ACTION>` against the `sequence` database.
    Migrate {
        action: MigrateAction,
        /// With `down`: revert every migration, not just the latest.
        #[arg(long)]
        all: bool,
    },
    /// Run `cargo bench --workspace ARGS...` against the local infrastructure; a bench of the
    /// sender-worker or of e2e (the whole pipeline) also gets Postfix's smtp-sink, installed if
    /// missing, in SEQ_BENCH_SMTP_SINK; one of the tracker gets wrk, installed if missing, in
    /// SEQ_BENCH_WRK.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Formatting check and clippy with warnings as errors, as CI runs them.
    Lint,
    /// Fuzz a live api with Schemathesis from docs/openapi.json (every check, every phase)
    /// for a while; exits non-zero when a check failed. ARGS go to `schemathesis run`.
    FuzzApi {
        /// How long Schemathesis runs, in seconds.
        #[arg(long, default_value_t = 600)]
        duration: u64,
        /// Fuzz a release build of the api.
        #[arg(long)]
        release: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build every image of deploy/docker/Dockerfile with a Docker engine of our own (Debian's
    /// docker.io, installed if missing; root only), on local stand-ins for the base images, and
    /// check each image (unprivileged user, its binary, CA certificates, no repository files,
    /// under 150 MB).
    Containers,
    /// Print the OpenAPI document (delegates to `api openapi`).
    Openapi {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum MigrateAction {
    Up,
    Down,
    Status,
}

impl MigrateAction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Status => "status",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(keep_separator(std::env::args().collect()));
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Cmd) -> Result<ExitCode> {
    let paths = Paths::discover()?;
    paths.create_dirs()?;
    interrupt::install()?;
    if !matches!(command, Cmd::Down | Cmd::Infra | Cmd::Containers) {
        // Everything else compiles the workspace, whose rdkafka builds librdkafka from source.
        apt::ensure_build_packages()?;
    }
    match command {
        Cmd::Up { detach } => up::run(&paths, detach),
        Cmd::Down => commands::down(&paths),
        Cmd::Infra => commands::infra(&paths),
        Cmd::Test { args } => commands::test(&paths, &args),
        Cmd::Migrate { action, all } => {
            if all && !matches!(action, MigrateAction::Down) {
                anyhow::bail!("--all only applies to `cargo xtask migrate down`");
            }
            commands::migrate(&paths, action.as_str(), all)
        }
        Cmd::Bench { args } => commands::bench(&paths, &args),
        Cmd::Lint => commands::lint(&paths),
        Cmd::FuzzApi {
            duration,
            release,
            args,
        } => fuzz::run(
            &paths,
            &fuzz::Options {
                duration,
                release,
                extra: args,
            },
        ),
        Cmd::Openapi { args } => commands::openapi(&paths, &args),
        Cmd::Containers => containers::run(&paths).map(|()| ExitCode::SUCCESS),
    }
}

/// clap swallows a `--` right after the subcommand, but for pass-through commands it
/// belongs to cargo: `cargo xtask test -- --nocapture` must reach cargo as
/// `cargo test --workspace -- --nocapture`. Doubling it keeps one for cargo.
fn keep_separator(mut args: Vec<String>) -> Vec<String> {
    let passes_through = matches!(
        args.get(1).map(String::as_str),
        Some("test" | "bench" | "openapi")
    );
    if passes_through && args.get(2).map(String::as_str) == Some("--") {
        args.insert(2, "--".to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Cmd, keep_separator};

    fn test_args(argv: &[&str]) -> Vec<String> {
        let argv = keep_separator(argv.iter().map(|s| s.to_string()).collect());
        match Cli::try_parse_from(&argv).map(|cli| cli.command) {
            Ok(Cmd::Test { args }) => args,
            _ => panic!("not parsed as test: {argv:?}"),
        }
    }

    #[test]
    fn fuzz_api_takes_a_duration_and_passes_the_rest_to_schemathesis() {
        let parse = |argv: &[&str]| {
            let argv = keep_separator(argv.iter().map(|s| s.to_string()).collect());
            match Cli::try_parse_from(&argv).map(|cli| cli.command) {
                Ok(Cmd::FuzzApi {
                    duration,
                    release,
                    args,
                }) => (duration, release, args),
                _ => panic!("not parsed as fuzz-api: {argv:?}"),
            }
        };
        assert_eq!(parse(&["xtask", "fuzz-api"]), (600, false, vec![]));
        assert_eq!(
            parse(&[
                "xtask",
                "fuzz-api",
                "--duration",
                "60",
                "--release",
                "--",
                "--seed",
                "1"
            ]),
            (60, true, vec!["--seed".to_owned(), "1".to_owned()])
        );
        assert_eq!(
            parse(&["xtask", "fuzz-api", "--", "--phases", "fuzzing"]),
            (
                600,
                false,
                vec!["--phases".to_owned(), "fuzzing".to_owned()]
            )
        );
    }

    #[test]
    fn test_arguments_reach_cargo_verbatim() {
        assert_eq!(test_args(&["xtask", "test"]), Vec::<String>::new());
        assert_eq!(
            test_args(&["xtask", "test", "--", "--nocapture"]),
            ["--", "--nocapture"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "-p", "api", "--", "--nocapture"]),
            ["-p", "api", "--", "--nocapture"]
        );
        assert_eq!(test_args(&["xtask", "test", "schema"]), ["schema"]);
    }
}
