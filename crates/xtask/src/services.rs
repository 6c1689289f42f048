//! The service binaries (the six services): build, migrate, spawn, readiness, stop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;

use crate::paths::Paths;
use crate::{cargo, interrupt, probe, process};

/// Database the services use on the local cluster.
pub const DATABASE: &str = "sequence";
pub const API_ADDR: &str = "127.0.0.1:8080";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Service {
    /// The binary's name.
    pub name: &'static str,
    /// The package that builds it.
    package: &'static str,
    /// Address answering `/readyz` (the public port, or the admin port for workers).
    pub addr: &'static str,
    bind_var: &'static str,
}

pub const ALL: [Service; 6] = [
    Service {
        name: "api",
        package: "api",
        addr: API_ADDR,
        bind_var: "SEQ_API__BIND",
    },
    Service {
        name: "tracker",
        package: "tracker",
        addr: "127.0.0.1:8081",
        bind_var: "SEQ_TRACKER__BIND",
    },
    Service {
        name: "scheduler",
        package: "scheduler",
        addr: "127.0.0.1:9101",
        bind_var: "SEQ_SCHEDULER__ADMIN_BIND",
    },
    Service {
        name: "sender-worker",
        package: "sender-worker",
        addr: "127.0.0.1:9102",
        bind_var: "SEQ_SENDER_WORKER__ADMIN_BIND",
    },
    Service {
        name: "inbox-watcher",
        package: "inbox-watcher",
        addr: "127.0.0.1:9104",
        bind_var: "SEQ_INBOX_WATCHER__ADMIN_BIND",
    },
    Service {
        name: "webhooks",
        package: "webhooks",
        addr: "127.0.0.1:9105",
        bind_var: "SEQ_WEBHOOKS__ADMIN_BIND",
    },
];

impl Service {
    /// Matched against /proc/<pid>/cmdline before signalling a pid from a pid file.
    fn cmdline_marker(&self) -> String {
        format!("/{}", self.name)
    }
}

/// `security.allowed_private_networks` of the local services: loopback, where the local mail
/// server (GreenMail, or Mailpit from docker compose) listens, so development mailboxes can
/// use it; everything else that is not public stays refused, as in production.
pub const DEV_ALLOWED_PRIVATE_NETWORKS: &str = r#"["127.0.0.0/8", "::1/128"]"#;

/// Environment shared by `api migrate` and every service.
pub fn env(
    paths: &Paths,
    database_url: &str,
    kafka_brokers: &str,
) -> Result<Vec<(&'static str, String)>> {
    let mut env = vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("KAFKA_BROKERS", kafka_brokers.to_owned()),
        (
            "SEQ_SECURITY__ENCRYPTION_KEYS",
            format!("1:{}", dev_secret(paths, "dev-encryption-key")?),
        ),
        (
            "SEQ_SECURITY__TRACKING_KEYS",
            dev_secret(paths, "dev-tracking-key")?,
        ),
        (
            "SEQ_API__ADMIN_TOKEN",
            dev_secret(paths, "dev-admin-token")?,
        ),
        (
            "SEQ_SECURITY__ALLOWED_PRIVATE_NETWORKS",
            DEV_ALLOWED_PRIVATE_NETWORKS.to_owned(),
        ),
        ("SEQ_TELEMETRY__LOG_FORMAT", "pretty".to_owned()),
        // Output goes to files under target/local/logs, where colour codes are noise.
        ("NO_COLOR", "1".to_owned()),
    ];
    env.extend(ALL.iter().map(|s| (s.bind_var, s.addr.to_owned())));
    Ok(env)
}

/// 32 random bytes (base64) made once per checkout and kept under target/local (mode 600):
/// the development encryption key, so mailboxes stored by one `up` still decrypt in the next,
/// the development tracking key, so links in emails sent by one `up` still work in the next,
/// and the development admin token.
pub fn dev_secret(paths: &Paths, name: &str) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let file = paths.local.join(name);
    if let Ok(existing) = std::fs::read_to_string(&file) {
        return Ok(existing.trim().to_owned());
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .with_context(|| format!("reading /dev/urandom for the development secret {name}"))?;
    let key = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("writing {}", file.display()))?;
    std::io::Write::write_all(&mut out, key.as_bytes())?;
    Ok(key)
}

pub fn build(paths: &Paths) -> Result<()> {
    eprintln!("services: building");
    let mut cmd = cargo::command(paths);
    cmd.args(["build", "--bins"]);
    let mut packages: Vec<&str> = ALL.iter().map(|s| s.package).collect();
    packages.sort_unstable();
    packages.dedup();
    for package in packages {
        cmd.args(["-p", package]);
    }
    process::run(&mut cmd)
}

/// `<target>/debug`, where `cargo build` put the binaries.
pub fn binary_dir(paths: &Paths) -> Result<PathBuf> {
    Ok(cargo::target_directory(paths)?.join("debug"))
}

pub fn migrate(paths: &Paths, bin_dir: &Path, env: &[(&str, String)]) -> Result<()> {
    eprintln!("services: api migrate up");
    let mut cmd = Command::new(bin_dir.join("api"));
    cmd.args(["migrate", "up"])
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .current_dir(&paths.root);
    process::run(&mut cmd)
}

/// Stops instances left by an earlier `up --detach`, then refuses ports someone else holds
/// (a bind failure buried in a log is harder to spot than this message).
pub fn check_ports_free(paths: &Paths) -> Result<()> {
    stop_all(paths, false);
    for service in &ALL {
        if probe::tcp_open(service.addr) {
            bail!(
                "{} is already in use, so {} cannot listen there: stop the process holding it",
                service.addr,
                service.name
            );
        }
    }
    Ok(())
}

/// Spawns every service (fresh log each time) and returns name -> pid as they start.
pub fn spawn_all(
    paths: &Paths,
    bin_dir: &Path,
    env: &[(&str, String)],
    spawned: &mut HashMap<&'static str, u32>,
) -> Result<()> {
    for service in &ALL {
        let log = paths.log(service.name);
        std::fs::write(&log, "")?;
        let mut cmd = Command::new(bin_dir.join(service.name));
        cmd.arg("serve")
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .current_dir(&paths.root);
        let pid = process::spawn_background(&mut cmd, &log, &paths.pid_file(service.name))?;
        spawned.insert(service.name, pid);
    }
    Ok(())
}

/// Waits until every service answers 200 on /readyz; on failure the error carries the
/// tail of the failing service's log.
pub fn wait_ready(paths: &Paths, spawned: &HashMap<&'static str, u32>) -> Result<()> {
    let mut pending: Vec<&Service> = ALL.iter().collect();
    let mut exited = false;
    let result = probe::wait_until("services", READY_TIMEOUT, || {
        if let Some(dead) = pending.iter().position(|s| {
            !spawned
                .get(s.name)
                .is_some_and(|&pid| process::is_running(pid))
        }) {
            // Report the dead one first, whatever its place in the list.
            pending.swap(0, dead);
            exited = true;
            bail!("{} exited during startup", pending[0].name);
        }
        pending.retain(|s| probe::http_status(s.addr, "/readyz") != Some(200));
        Ok(pending.is_empty())
    });
    let (Err(e), Some(service)) = (result, pending.first()) else {
        return Ok(());
    };
    let e = if exited || interrupt::requested() {
        e
    } else {
        anyhow::anyhow!(
            "{} did not answer 200 on http://{}/readyz within {} s",
            service.name,
            service.addr,
            READY_TIMEOUT.as_secs()
        )
    };
    process::with_log_tail(Err(e), &paths.log(service.name))
}

/// A service that died after becoming ready, if any.
pub fn first_exited(spawned: &HashMap<&'static str, u32>) -> Option<&'static str> {
    ALL.iter().map(|s| s.name).find(|name| {
        spawned
            .get(name)
            .is_some_and(|&pid| !process::is_running(pid))
    })
}

/// Best effort, in reverse start order. `report_idle` also prints services that were
/// not running (wanted by `down`, noise for `up`).
pub fn stop_all(paths: &Paths, report_idle: bool) {
    for service in ALL.iter().rev() {
        let pid_file = paths.pid_file(service.name);
        let marker = service.cmdline_marker();
        match process::stop_from_pid_file(&pid_file, &marker, STOP_GRACE) {
            Ok(Some(pid)) => eprintln!("{}: stopped (pid {pid})", service.name),
            Ok(None) if report_idle => eprintln!("{}: not running", service.name),
            Ok(None) => {}
            Err(e) => eprintln!("warning: could not stop {}: {e:#}", service.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use base64::Engine as _;

    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            root: dir.to_path_buf(),
            local: dir.join("local"),
            logs: dir.join("logs"),
            run: dir.join("run"),
            cache: dir.join("cache"),
        }
    }

    fn value<'a>(env: &'a [(&str, String)], name: &str) -> &'a str {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("{name} is not set"))
    }

    fn decoded_len(value: &str) -> usize {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap_or_else(|e| panic!("{value:?}: {e}"))
            .len()
    }

    #[test]
    fn services_get_development_keys_kept_across_runs() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let paths = paths(dir.path());
        std::fs::create_dir_all(&paths.local)?;

        let first = env(&paths, "postgres://db", "localhost:9092")?;
        let encryption = value(&first, "SEQ_SECURITY__ENCRYPTION_KEYS");
        let tracking = value(&first, "SEQ_SECURITY__TRACKING_KEYS");
        let encryption_key = encryption.strip_prefix("1:").unwrap_or_default();
        assert_eq!(decoded_len(encryption_key), 32);
        assert_eq!(decoded_len(tracking), 32);
        assert_ne!(encryption_key, tracking);

        let file = paths.local.join("dev-tracking-key");
        assert_eq!(std::fs::read_to_string(&file)?, tracking);
        assert_eq!(
            std::fs::metadata(&file)?.permissions().mode() & 0o777,
            0o600
        );

        let second = env(&paths, "postgres://db", "localhost:9092")?;
        assert_eq!(value(&second, "SEQ_SECURITY__TRACKING_KEYS"), tracking);
        assert_eq!(value(&second, "SEQ_SECURITY__ENCRYPTION_KEYS"), encryption);
        Ok(())
    }

    /// The services reach the local mail server on loopback, and nothing else private.
    #[test]
    fn services_may_connect_to_loopback_only() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let paths = paths(dir.path());
        std::fs::create_dir_all(&paths.local)?;
        let env = env(&paths, "postgres://db", "localhost:9092")?;
        let allowed: Vec<String> =
            serde_json::from_str(value(&env, "SEQ_SECURITY__ALLOWED_PRIVATE_NETWORKS"))?;
        assert_eq!(allowed, ["127.0.0.0/8", "::1/128"]);
        Ok(())
    }
}
