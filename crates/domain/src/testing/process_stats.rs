//! What the benchmarks read about the processes they measure (from `/proc`), and their
//! numeric settings from the environment.

use std::collections::HashMap;
use std::str::FromStr;

use diesel::sql_types::Integer;
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};

/// Rows the outbox was given so far, for benchmarks' progress checks: its identity's last
/// value, since the relay deletes the rows it published.
pub const OUTBOX_ROWS_WRITTEN: &str =
    "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('outbox', 'id')), 0) AS n";

/// utime + stime of a process, in clock ticks (see [`clock_ticks`]).
pub fn process_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat: {stat}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `after` starts at field 3.
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i - 3)
            .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat has no field {i}"))?
            .parse()?)
    };
    Ok(field(14)? + field(15)?)
}

/// utime + stime of each thread of a process, in clock ticks, summed by thread name (`comm`,
/// at most 15 bytes: `actix-server wo` for actix's workers, `tokio-runtime-w` for tokio's).
pub fn thread_cpu_ticks(pid: u32) -> anyhow::Result<HashMap<String, u64>> {
    let mut by_name = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path();
        // A thread that ended in between is simply not counted.
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            *by_name.entry(name).or_insert(0) += utime + stime;
        }
    }
    Ok(by_name)
}

/// CPU ticks of the PostgreSQL processes that work for a service under test: the backends
/// connected to `conn`'s database (but `conn`'s own) and the server's own processes (WAL
/// writer, checkpointer, autovacuum...), by pid. Other databases' backends are left out.
pub async fn postgres_cpu_ticks(conn: &mut AsyncPgConnection) -> anyhow::Result<HashMap<i32, u64>> {
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    let pids: Vec<Pid> = diesel::sql_query(
        "SELECT pid FROM pg_stat_activity \
          WHERE (datname = current_database() OR backend_type <> 'client backend') \
            AND pid <> pg_backend_pid()",
    )
    .load(conn)
    .await?;
    let mut ticks = HashMap::new();
    for Pid { pid } in pids {
        // A process that ended in between is simply not counted.
        if let Ok(t) = process_cpu_ticks(u32::try_from(pid)?) {
            ticks.insert(pid, t);
        }
    }
    Ok(ticks)
}

/// The ticks spent between two readings of [`postgres_cpu_ticks`] (a process that started in
/// between counts from zero).
pub fn ticks_between(before: &HashMap<i32, u64>, after: &HashMap<i32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

/// Peak resident memory (VmHWM) of a process, in KiB.
pub fn peak_memory_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("unexpected {line}"))?
        .parse()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if it cannot be read, as on every Linux
/// this runs on). Read through the command since the workspace forbids `unsafe` (sysconf).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The number in environment variable `name`, or `default` when it is unset.
pub fn env_number<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={value:?} is not a number: {e}")),
        Err(_) => Ok(default),
    }
}

/// The environment that points a service binary started as a child process at `config`'s
/// database, Kafka (brokers, topic prefix, partitions), keys and allowed private networks
/// (`security.allowed_private_networks`), starting from a clean
/// environment plus `PATH`. Callers add their service's own settings.
pub fn service_env(config: &crate::config::Config) -> Vec<(&'static str, String)> {
    use secrecy::ExposeSecret as _;
    vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        (
            "SEQ_DATABASE__URL",
            config.database.url.expose_secret().to_owned(),
        ),
        ("SEQ_KAFKA__BROKERS", config.kafka.brokers.clone()),
        ("SEQ_KAFKA__TOPIC_PREFIX", config.kafka.topic_prefix.clone()),
        ("SEQ_KAFKA__PARTITIONS", config.kafka.partitions.to_string()),
        (
            "SEQ_SECURITY__TRACKING_KEYS",
            config.security.tracking_keys.expose_secret().to_owned(),
        ),
        (
            "SEQ_SECURITY__ENCRYPTION_KEYS",
            config.security.encryption_keys.expose_secret().to_owned(),
        ),
        (
            "SEQ_SECURITY__ALLOWED_PRIVATE_NETWORKS",
            allowed_networks_env(&config.security.allowed_private_networks),
        ),
    ]
}

/// A list of CIDR ranges as figment reads a list from an environment variable:
/// `["127.0.0.0/8", "::1/128"]`.
pub fn allowed_networks_env(networks: &[String]) -> String {
    let quoted: Vec<String> = networks.iter().map(|n| format!("{n:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A service binary run by a test as a child process (`serve`, killed when dropped), pointed
/// at `config` by [`service_env`], with quick outbox rounds and warnings-only logs to the
/// test's stderr. Callers add their service's own settings, then spawn.
pub fn service_command(program: &str, config: &crate::config::Config) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .arg("serve")
        .env_clear()
        .envs(service_env(config))
        .env("SEQ_OUTBOX__POLL_INTERVAL_MS", "50")
        .env("SEQ_TELEMETRY__LOG_FILTER", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    command
}
