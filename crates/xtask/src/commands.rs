//! The subcommands other than `up`: thin sequences of provisioning and cargo calls.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::infra::{self, Component, Infra};
use crate::paths::Paths;
use crate::{apt, cargo, deploy_tools, mail_checkers, postgres, process, webhook_verifier};

const LEFT_RUNNING: &str = "infrastructure left running; `cargo xtask down` stops it";

pub fn down(paths: &Paths) -> Result<ExitCode> {
    infra::stop_everything(paths)?;
    Ok(ExitCode::SUCCESS)
}

/// Exports go to stdout and progress to stderr, so `eval "$(cargo xtask infra)"` works.
pub fn infra(paths: &Paths) -> Result<ExitCode> {
    let infra = provision_for_tests(paths)?;
    let sink = smtp_sink()?;
    for (name, value) in infra.test_env() {
        println!("export {name}={}", shell_quote(&value));
    }
    println!("export SEQ_TEST_SMTP_SINK={}", shell_quote(&sink));
    let python_dkim = mail_checkers::python_dkim()?;
    println!("export SEQ_TEST_PYTHON_DKIM={}", shell_quote(&python_dkim));
    let spamassassin = mail_checkers::spamassassin()?;
    println!(
        "export SEQ_TEST_SPAMASSASSIN={}",
        shell_quote(&spamassassin)
    );
    let standardwebhooks = webhook_verifier::python(paths)?;
    println!(
        "export SEQ_TEST_PYTHON_STANDARDWEBHOOKS={}",
        shell_quote(&standardwebhooks.display().to_string())
    );
    eprintln!("{LEFT_RUNNING}");
    Ok(ExitCode::SUCCESS)
}

pub fn test(paths: &Paths, args: &[String]) -> Result<ExitCode> {
    let mut extra = Vec::new();
    if runs_package(args, "sender-worker") {
        extra.push(("SEQ_TEST_SMTP_SINK", smtp_sink()?));
        extra.push(("SEQ_TEST_PYTHON_DKIM", mail_checkers::python_dkim()?));
    }
    if runs_package(args, "xtask") {
        extra.extend(deploy_tools::test_env(paths)?);
    }
    if ["domain", "webhooks", "e2e"]
        .iter()
        .any(|package| runs_package(args, package))
    {
        extra.push((
            "SEQ_TEST_PYTHON_STANDARDWEBHOOKS",
            webhook_verifier::python(paths)?.display().to_string(),
        ));
    }
    if runs_package(args, "e2e") {
        apt::ensure(
            &["curl", "jq"],
            "the README's examples, which an e2e test runs",
        )?;
        extra.push(("SEQ_TEST_SPAMASSASSIN", mail_checkers::spamassassin()?));
    }
    let infra = provision_for_tests(paths)?;
    // Only on our own cluster: on a shared server another run's databases may be live.
    if infra.postgres_is_local
        && let Some(url) = &infra.database_url
    {
        postgres::drop_test_databases(url)?;
    }
    let code = cargo_with_env(paths, &infra, "test", args, &extra)?;
    eprintln!("{LEFT_RUNNING}");
    Ok(code)
}

/// Where Debian's `postfix` package puts Postfix's SMTP test server.
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

pub fn bench(paths: &Paths, args: &[String]) -> Result<ExitCode> {
    let mut extra = Vec::new();
    if runs_package(args, "sender-worker") || runs_package(args, "e2e") {
        extra.push(("SEQ_BENCH_SMTP_SINK", smtp_sink()?));
    }
    if runs_package(args, "tracker") {
        extra.push(("SEQ_BENCH_WRK", wrk()?));
    }
    let infra = provision_for_tests(paths)?;
    let code = cargo_with_env(paths, &infra, "bench", args, &extra)?;
    eprintln!("{LEFT_RUNNING}");
    Ok(code)
}

/// Postfix's `smtp-sink`, which the sender-worker's tests and benchmark and the pipeline
/// benchmark send to (they start sinks themselves, with the failures they need), installed
/// with the `postfix` package when missing. Installing postfix needs no running mail system;
/// apt::install answers debconf non-interactively.
fn smtp_sink() -> Result<String> {
    apt::ensure(
        &["postfix"],
        "the sender-worker benchmark's SMTP sink (smtp-sink)",
    )?;
    if std::path::Path::new(SMTP_SINK).is_file() {
        return Ok(SMTP_SINK.to_owned());
    }
    // Not Debian-like (no dpkg): wherever the system's Postfix put it.
    process::require_program("smtp-sink", "install Postfix, which ships smtp-sink")
        .map(|path| path.display().to_string())
}

/// Where Debian's `wrk` package puts the HTTP load generator.
const WRK: &str = "/usr/bin/wrk";

/// `wrk`, which the tracker's benchmark loads the redirect and pixel endpoints with,
/// installed with the `wrk` package when missing.
fn wrk() -> Result<String> {
    apt::ensure(
        &["wrk"],
        "the tracker benchmark's HTTP load generator (wrk)",
    )?;
    if std::path::Path::new(WRK).is_file() {
        return Ok(WRK.to_owned());
    }
    // Not Debian-like (no dpkg): wherever the system's package manager put it.
    process::require_program("wrk", "install wrk, the HTTP benchmarking tool")
        .map(|path| path.display().to_string())
}

/// Whether cargo run with `args` covers `package`: named with `-p`/`--package`, or the whole
/// workspace when no package is named.
fn runs_package(args: &[String], package: &str) -> bool {
    let cargo_args = args.iter().take_while(|a| *a != "--");
    let mut named = Vec::new();
    let mut next_is_package = false;
    for arg in cargo_args {
        if next_is_package {
            named.push(arg.as_str());
            next_is_package = false;
        } else if arg == "-p" || arg == "--package" {
            next_is_package = true;
        } else if let Some(name) = arg
            .strip_prefix("--package=")
            .or_else(|| arg.strip_prefix("-p").filter(|rest| !rest.is_empty()))
        {
            named.push(name);
        }
    }
    named.is_empty() || named.contains(&package)
}

/// Everything tests and benchmarks use, including what a private Kafka broker needs.
fn provision_for_tests(paths: &Paths) -> Result<Infra> {
    let mut infra = Infra::provision(paths, infra::FOR_TESTS)?;
    infra.locate_private_kafka_kit(paths);
    Ok(infra)
}

pub fn migrate(paths: &Paths, action: &str, all: bool) -> Result<ExitCode> {
    let infra = Infra::provision(paths, &[Component::Postgres])?;
    let database_url = infra
        .service_database_url()?
        .context("no database was provisioned")?;
    let mut cmd = cargo::command(paths);
    cmd.args(["run", "-q", "-p", "api", "--", "migrate", action]);
    if all {
        cmd.arg("--all");
    }
    cmd.env("DATABASE_URL", database_url);
    status_of(&mut cmd)
}

pub fn lint(paths: &Paths) -> Result<ExitCode> {
    let fmt = status_of(cargo::command(paths).args(["fmt", "--all", "--", "--check"]))?;
    if fmt != ExitCode::SUCCESS {
        eprintln!("lint: formatting differs; run `cargo fmt --all`");
        return Ok(fmt);
    }
    status_of(cargo::command(paths).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// Regenerates docs/openapi.json from the api's handlers (a test fails while it is stale).
pub fn openapi(paths: &Paths, args: &[String]) -> Result<ExitCode> {
    let mut cmd = cargo::command(paths);
    cmd.args(["run", "-q", "-p", "api", "--", "openapi"])
        .args(args);
    let document = process::output(&mut cmd)?;
    let target = paths.root.join("docs/openapi.json");
    std::fs::write(&target, document).with_context(|| format!("writing {}", target.display()))?;
    eprintln!("openapi: wrote {}", target.display());
    Ok(ExitCode::SUCCESS)
}

fn cargo_with_env(
    paths: &Paths,
    infra: &Infra,
    verb: &str,
    args: &[String],
    extra_env: &[(&str, String)],
) -> Result<ExitCode> {
    let mut cmd = cargo::command(paths);
    cmd.arg(verb);
    // `-p NAME` narrows the run; otherwise the whole workspace.
    if !args.iter().any(|a| a == "-p" || a.starts_with("--package")) {
        cmd.arg("--workspace");
    }
    cmd.args(args).envs(infra.test_env());
    cmd.envs(extra_env.iter().map(|(name, value)| (*name, value)));
    status_of(&mut cmd)
}

/// Runs `cmd` and hands its exit code back to the shell unchanged.
fn status_of(cmd: &mut std::process::Command) -> Result<ExitCode> {
    let status = cmd
        .status()
        .with_context(|| format!("could not run {}", process::describe(cmd)))?;
    Ok(process::exit_code(status))
}

/// Quotes for POSIX shells only when needed, keeping the usual URLs readable.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::{runs_package, shell_quote};

    fn runs_sender_worker(args: &[&str]) -> bool {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        runs_package(&args, "sender-worker")
    }

    #[test]
    fn a_bench_runs_the_named_packages_or_the_whole_workspace() {
        assert!(runs_sender_worker(&[]));
        assert!(runs_sender_worker(&["--", "--quick"]));
        assert!(runs_sender_worker(&["-p", "sender-worker"]));
        assert!(runs_sender_worker(&[
            "-p",
            "api",
            "--package",
            "sender-worker"
        ]));
        assert!(runs_sender_worker(&["--package=sender-worker"]));
        assert!(runs_sender_worker(&["-psender-worker", "--bench", "send"]));
        assert!(!runs_sender_worker(&["-p", "api"]));
        assert!(!runs_sender_worker(&["--package=scheduler"]));
        // After `--` the arguments belong to the bench binary, not to cargo.
        assert!(!runs_sender_worker(&[
            "-p",
            "api",
            "--",
            "-p",
            "sender-worker"
        ]));
    }

    #[test]
    fn the_tracker_bench_is_run_by_name_or_with_the_workspace() {
        let runs_tracker = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            runs_package(&args, "tracker")
        };
        assert!(runs_tracker(&[]));
        assert!(runs_tracker(&["-p", "tracker", "--bench", "redirects"]));
        assert!(runs_tracker(&["--package=tracker"]));
        assert!(!runs_tracker(&["-p", "sender-worker"]));
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(
            shell_quote("postgres://postgres@127.0.0.1:55432/postgres"),
            "postgres://postgres@127.0.0.1:55432/postgres"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(
            shell_quote("x?sslmode=require&y=1"),
            "'x?sslmode=require&y=1'"
        );
        assert_eq!(shell_quote(""), "''");
    }
}
