//! `cargo xtask fuzz-api`: Schemathesis against a live api, driven by docs/openapi.json.
//!
//! Like `bench`, it uses the infrastructure `infra`/`test` provision (reusing running
//! PostgreSQL and Kafka). It builds the api, gives it a database of its own (dropped at the
//! end) and a Kafka topic prefix of its own, starts it on a free port with fresh secrets and
//! an unlimited rate limit, creates a workspace through the admin token and runs
//! `schemathesis run docs/openapi.json --checks all` (examples, coverage, fuzzing and the
//! stateful phase over the document's links) for the given time, with the API key for
//! operations secured by `apiKey` and the admin token for `admin_token`. Schemathesis
//! 4.32.5 is installed once into a virtualenv under the user cache.
//!
//! The exit code is Schemathesis's: non-zero when any check failed.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;

use crate::infra::{Component, Infra};
use crate::paths::Paths;
use crate::{cargo, interrupt, postgres, probe, process};

const SCHEMATHESIS: &str = "4.32.5";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Options {
    pub duration: u64,
    pub release: bool,
    /// Passed to `schemathesis run` after ours (e.g. `--seed 1`, `--phases fuzzing`).
    pub extra: Vec<String>,
}

pub fn run(paths: &Paths, options: &Options) -> Result<ExitCode> {
    let schemathesis = ensure_schemathesis(paths)?;
    let api = build_api(paths, options.release)?;
    interrupt::check()?;
    let infra = Infra::provision(paths, &[Component::Postgres, Component::Kafka])?;
    let admin_url = infra
        .database_url
        .clone()
        .context("no database was provisioned")?;
    let brokers = infra
        .kafka_brokers
        .clone()
        .context("no Kafka was provisioned")?;

    let run_id = format!("{}_{}", std::process::id(), unix_time());
    let database = format!("fuzz_api_{run_id}");
    postgres::create_database_if_missing(&admin_url, &database)?;
    let outcome = with_database(
        paths,
        options,
        &schemathesis,
        &api,
        &database_url(&admin_url, &database)?,
        &brokers,
        &run_id,
    );
    if let Err(e) = postgres::drop_database(&admin_url, &database) {
        eprintln!("warning: could not drop database {database}: {e:#}");
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
fn with_database(
    paths: &Paths,
    options: &Options,
    schemathesis: &Path,
    api: &Path,
    database_url: &str,
    brokers: &str,
    run_id: &str,
) -> Result<ExitCode> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let admin_token = random_secret()?;
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("KAFKA_BROKERS", brokers.to_owned()),
        ("SEQ_KAFKA__TOPIC_PREFIX", format!("fuzz-api-{run_id}-")),
        ("SEQ_API__BIND", addr.clone()),
        ("SEQ_API__ADMIN_TOKEN", admin_token.clone()),
        (
            "SEQ_SECURITY__ENCRYPTION_KEYS",
            format!("1:{}", random_secret()?),
        ),
        ("SEQ_SECURITY__TRACKING_KEYS", random_secret()?),
        // The fuzzer is one client sending as fast as it can; 429s would only slow it.
        ("SEQ_API__RATE_LIMIT_PER_SECOND", "1000000".to_owned()),
        ("SEQ_API__RATE_LIMIT_BURST", "1000000".to_owned()),
        // The hooks point every mailbox at 127.0.0.1:9, where nothing listens; without this
        // the outbound guard would refuse those hosts (a 422 the document cannot predict,
        // as it depends on this setting).
        (
            "SEQ_SECURITY__ALLOWED_PRIVATE_NETWORKS",
            "[\"127.0.0.0/8\"]".to_owned(),
        ),
        ("SEQ_TELEMETRY__LOG_FORMAT", "pretty".to_owned()),
        ("NO_COLOR", "1".to_owned()),
    ];
    process::run(
        Command::new(api)
            .args(["migrate", "up"])
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .current_dir(&paths.root),
    )?;

    let log = paths.log("fuzz-api");
    std::fs::write(&log, "")?;
    let out = std::fs::OpenOptions::new().append(true).open(&log)?;
    let mut server = Server(
        Command::new(api)
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .current_dir(&paths.root)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group: a Ctrl-C reaches xtask, which stops it in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", api.display()))?,
    );
    eprintln!("fuzz-api: api on http://{addr} (log: {})", log.display());
    let ready = probe::wait_until("the api", READY_TIMEOUT, || {
        if let Some(status) = server.0.try_wait()? {
            bail!("the api exited during startup ({status})");
        }
        Ok(probe::http_status(&addr, "/readyz") == Some(200))
    });
    process::with_log_tail(ready, &log)?;

    let body = serde_json::json!({"name": "fuzz-api"});
    let (status, created) = probe::http_json(
        &addr,
        "POST",
        "/api/v1/workspaces",
        &admin_token,
        Some(&body),
    )
    .context("the api did not answer the workspace creation")?;
    let api_key = created["api_key"]["key"]
        .as_str()
        .filter(|_| status == 201)
        .with_context(|| format!("creating the workspace answered {status}: {created}"))?
        .to_owned();
    let api_key_id = created["api_key"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let work = paths.local.join("fuzz-api");
    std::fs::create_dir_all(&work)?;
    let config = work.join("schemathesis.toml");
    std::fs::write(
        &config,
        config_toml(&paths.xtask_asset("fuzz-api/hooks.py")),
    )?;
    let report = work.join("report");
    if report.exists() {
        std::fs::remove_dir_all(&report)?;
    }
    let started = Instant::now();
    let mut cmd = Command::new(schemathesis);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(paths.root.join("docs/openapi.json"))
        .args(["--url", &format!("http://{addr}")])
        .args(["--checks", "all"])
        // Every distinct failure, not just the first of each operation.
        .arg("--continue-on-failure")
        .args(["--max-time", &options.duration.to_string()])
        .args(["--report", "junit,ndjson"])
        .arg("--report-dir")
        .arg(&report)
        .args(&options.extra)
        .env("SEQ_FUZZ_API_KEY", &api_key)
        .env("SEQ_FUZZ_API_KEY_ID", &api_key_id)
        .env("SEQ_FUZZ_ADMIN_TOKEN", &admin_token)
        // Schemathesis keeps its example database in its working directory.
        .current_dir(&work);
    eprintln!("fuzz-api: {}", process::describe(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not run {}", process::describe(&cmd)))?;
    let elapsed = started.elapsed();
    let requests = requests_sent(&report);
    server.stop();
    let server_errors = count_in_log(&log, "request failed");
    println!(
        "fuzz-api: schemathesis ran {:.0} s against the api ({} requests, {} internal errors \
         logged by the api); exit {}; reports in {}, api log {}",
        elapsed.as_secs_f64(),
        requests.map_or("?".to_owned(), |n| n.to_string()),
        server_errors,
        status
            .code()
            .map_or("by signal".to_owned(), |c| c.to_string()),
        report.display(),
        log.display(),
    );
    Ok(process::exit_code(status))
}

/// Stops the api when dropped (also on an early return).
struct Server(Child);

impl Server {
    fn stop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = process::terminate(self.0.id(), STOP_GRACE);
        }
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The configuration Schemathesis reads: the credentials of each security scheme of the
/// document (from the environment, so they are not written to disk), strings without NUL
/// (the document's global rule: text never contains U+0000), and the hooks for the rules
/// JSON Schema cannot express.
fn config_toml(hooks: &Path) -> String {
    format!(
        r#"# Written by `cargo xtask fuzz-api` for each run.
hooks = {hooks:?}

[auth.openapi.apiKey]
bearer = "${{SEQ_FUZZ_API_KEY}}"

[auth.openapi.admin_token]
bearer = "${{SEQ_FUZZ_ADMIN_TOKEN}}"

[generation]
allow-x00 = false
"#,
        hooks = hooks.display().to_string(),
    )
}

/// `schemathesis` from a virtualenv in the user cache, created once.
fn ensure_schemathesis(paths: &Paths) -> Result<PathBuf> {
    let venv = paths.cache.join(format!("schemathesis-{SCHEMATHESIS}"));
    let binary = venv.join("bin/schemathesis");
    if binary.is_file() {
        return Ok(binary);
    }
    let python = process::require_program("python3", "install Python 3 with venv and pip")?;
    eprintln!(
        "fuzz-api: installing Schemathesis {SCHEMATHESIS} from PyPI into {}",
        venv.display()
    );
    process::run(Command::new(python).arg("-m").arg("venv").arg(&venv))?;
    process::run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("schemathesis=={SCHEMATHESIS}"),
    ]))?;
    if !binary.is_file() {
        bail!("{} is missing after pip", binary.display());
    }
    Ok(binary)
}

fn build_api(paths: &Paths, release: bool) -> Result<PathBuf> {
    eprintln!("fuzz-api: building the api");
    let mut cmd = cargo::command(paths);
    cmd.args(["build", "-p", "api", "--bin", "api"]);
    if release {
        cmd.arg("--release");
    }
    process::run(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    Ok(cargo::target_directory(paths)?.join(profile).join("api"))
}

/// `admin_url` with its database replaced by `database`.
fn database_url(admin_url: &str, database: &str) -> Result<String> {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").context("DATABASE_URL is not a URL")? + 3;
    let host_and_path = &base[scheme_end..];
    let host = host_and_path.split('/').next().unwrap_or(host_and_path);
    let mut url = format!("{}{host}/{database}", &base[..scheme_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn random_secret() -> Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Requests Schemathesis sent, from its NDJSON report: the interactions recorded in each
/// finished scenario.
fn requests_sent(report: &Path) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(report).ok()?.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("ndjson") {
            continue;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(interactions) =
                event["ScenarioFinished"]["recorder"]["interactions"].as_object()
            {
                total += interactions.len() as u64;
            }
        }
    }
    Some(total)
}

fn count_in_log(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .map(|text| text.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_swapped_in_the_url() -> Result<()> {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:55432/postgres", "fuzz")?,
            "postgres://postgres@127.0.0.1:55432/fuzz"
        );
        assert_eq!(
            database_url("postgresql://u:p@db:6432?sslmode=require", "fuzz")?,
            "postgresql://u:p@db:6432/fuzz?sslmode=require"
        );
        Ok(())
    }

    #[test]
    fn the_config_names_both_schemes_and_the_hooks() {
        let config = config_toml(Path::new("/x/hooks.py"));
        assert!(config.contains("hooks = \"/x/hooks.py\""), "{config}");
        assert!(config.contains("[auth.openapi.apiKey]"), "{config}");
        assert!(
            config.contains("bearer = \"${SEQ_FUZZ_ADMIN_TOKEN}\""),
            "{config}"
        );
    }
}
