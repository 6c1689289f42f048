//! `cargo xtask up`: infrastructure plus the six services, in the foreground or detached.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};

use crate::infra::{self, Infra};
use crate::paths::Paths;
use crate::{interrupt, probe, process, services};

pub fn run(paths: &Paths, detach: bool) -> Result<ExitCode> {
    // Before any server starts: a compile error then leaves nothing behind to clean up.
    services::build(paths)?;
    let bin_dir = services::binary_dir(paths)?;
    interrupt::check()?;

    let infra = Infra::provision(paths, infra::ALL)?;
    let mut spawned = HashMap::new();
    let started = start_services(paths, &infra, &bin_dir, &mut spawned)
        .and_then(|url| Ok((url, dev_workspace(paths)?)));
    let (database_url, api_key) = match started {
        Ok(started) => started,
        Err(e) => {
            shut_down(paths, &infra);
            return Err(e);
        }
    };
    print_summary(paths, &infra, &database_url, &api_key);

    if detach {
        eprintln!("running in the background; `cargo xtask down` stops everything");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("press Ctrl-C to stop");
    let outcome = interrupt::wait(|| match services::first_exited(&spawned) {
        Some(name) => {
            let exited: Result<()> = Err(anyhow!("{name} exited unexpectedly"));
            process::with_log_tail(exited, &paths.log(name))
        }
        None => Ok(()),
    });
    eprintln!("stopping");
    shut_down(paths, &infra);
    outcome.map(|()| ExitCode::SUCCESS)
}

fn start_services(
    paths: &Paths,
    infra: &Infra,
    bin_dir: &std::path::Path,
    spawned: &mut HashMap<&'static str, u32>,
) -> Result<String> {
    let database_url = infra
        .service_database_url()?
        .context("no database was provisioned")?;
    let brokers = infra
        .kafka_brokers
        .as_deref()
        .context("no Kafka was provisioned")?;
    let env = services::env(paths, &database_url, brokers)?;
    services::check_ports_free(paths)?;
    services::migrate(paths, bin_dir, &env)?;
    interrupt::check()?;
    services::spawn_all(paths, bin_dir, &env, spawned)?;
    services::wait_ready(paths, spawned)?;
    Ok(database_url)
}

/// Stops the services and only the infrastructure this invocation started; servers
/// reused from an earlier `infra`/`test` keep running for those workflows.
fn shut_down(paths: &Paths, infra: &Infra) {
    services::stop_all(paths, false);
    infra.stop_started(paths);
    if !infra.reused.is_empty() {
        let names: Vec<&str> = infra.reused.iter().map(|c| c.name()).collect();
        eprintln!(
            "left running as found: {}; `cargo xtask down` stops them",
            names.join(", ")
        );
    }
}

/// The development workspace's API key: the one saved by an earlier `up` while it still
/// works, otherwise a new workspace created through the API with the development admin token.
fn dev_workspace(paths: &Paths) -> Result<String> {
    let api = services::API_ADDR;
    let saved = paths.local.join("dev-api-key");
    if let Ok(key) = std::fs::read_to_string(&saved) {
        let key = key.trim().to_owned();
        if let Some((200, _)) = probe::http_json(api, "GET", "/api/v1/api-keys", &key, None) {
            return Ok(key);
        }
    }
    let admin = services::dev_secret(paths, "dev-admin-token")?;
    let body = serde_json::json!({ "name": "development" });
    let (status, created) =
        probe::http_json(api, "POST", "/api/v1/workspaces", &admin, Some(&body))
            .context("the api did not answer the workspace creation")?;
    let key = created["api_key"]["key"]
        .as_str()
        .filter(|_| status == 201)
        .with_context(|| {
            format!("creating the development workspace answered {status}: {created}")
        })?
        .to_owned();
    std::fs::write(&saved, &key).with_context(|| format!("writing {}", saved.display()))?;
    Ok(key)
}

fn print_summary(paths: &Paths, infra: &Infra, database_url: &str, api_key: &str) {
    let row = |name: &str, value: String| println!("  {name:<14} {value}");
    println!("Sequence Service is up:");
    for service in &services::ALL {
        let url = format!("http://{}", service.addr);
        let value = match service.name {
            "api" => format!("{url}  (health: {url}/api/v1/health)"),
            "scheduler" | "sender-worker" | "inbox-watcher" | "webhooks" => {
                format!("{url}  (admin)")
            }
            _ => url,
        };
        row(service.name, value);
    }
    if let Some(mail) = &infra.mail {
        let mut value = format!("SMTP {}", mail.smtp);
        if let Some(imap) = &mail.imap {
            value.push_str(&format!(", IMAP {imap}"));
        }
        if let Some(api) = &mail.api {
            value.push_str(&format!(", API {api}"));
        }
        row("mail server", value);
    }
    if let Some(brokers) = &infra.kafka_brokers {
        row("kafka", brokers.clone());
    }
    row("postgres", database_url.to_owned());
    row("logs", paths.logs.display().to_string());
    row("dev API key", api_key.to_owned());
    println!(
        "try: curl -H 'Authorization: Bearer {api_key}' http://{}/api/v1/sequences",
        services::API_ADDR
    );
    println!("     API docs: http://{}/swagger", services::API_ADDR);
}
