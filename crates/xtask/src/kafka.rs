//! Local Apache Kafka (single-node KRaft) run straight from Maven Central jars.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::{java, maven, probe, process};

pub const ADDR: &str = "127.0.0.1:59092";
const CONTROLLER_ADDR: &str = "127.0.0.1:59093";
/// Keep in sync with assets/kafka/pom.xml.
const KAFKA_VERSION: &str = "4.1.1";
const NAME: &str = "kafka";
const MAIN_CLASS: &str = "kafka.Kafka";
const STARTED_LINE: &str = "Kafka Server started";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// A clean shutdown hands leadership over and flushes logs; give it time before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);

const LOG4J2_PROPERTIES: &str = "\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
";

/// Starts the broker unless something already answers on its port.
/// Returns whether this call started it.
pub fn ensure(paths: &Paths) -> Result<bool> {
    if probe::tcp_open(ADDR) {
        eprintln!("kafka: reusing {ADDR}");
        return Ok(false);
    }
    let pid_file = paths.pid_file(NAME);
    let log = paths.log(NAME);
    if let Some(pid) = process::running_from_pid_file(&pid_file, MAIN_CLASS) {
        eprintln!("kafka: waiting for the running instance (pid {pid})");
        wait_ready(pid, &log, 0)?;
        return Ok(false);
    }

    let java = java::require()?;
    let libs = fetch_libs(paths)?;
    let classpath = format!("{}/*", libs.display());
    let dir = paths.local.join(NAME);
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let config = dir.join("server.properties");
    std::fs::write(&config, server_properties(&data))?;
    let log4j = dir.join("log4j2.properties");
    std::fs::write(&log4j, LOG4J2_PROPERTIES)?;

    if !data.join("meta.properties").exists() {
        format_storage(&java, &classpath, &config)?;
    }

    let offset = process::log_len(&log);
    let mut cmd = Command::new(&java);
    cmd.args(["-Xms256m", "-Xmx768m"])
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(&classpath)
        .arg(MAIN_CLASS)
        .arg(&config)
        .current_dir(&dir);
    let pid = process::spawn_background(&mut cmd, &log, &pid_file)?;
    if let Err(e) = wait_ready(pid, &log, offset) {
        // Never leave a broker that failed its start behind for the next run to "reuse".
        let _ = process::stop_from_pid_file(&pid_file, MAIN_CLASS, STOP_GRACE);
        return Err(e);
    }
    eprintln!("kafka: started on {ADDR} (pid {pid})");
    Ok(true)
}

/// The Java runtime and the directory of Kafka jars, for tests that run a private broker
/// they can stop and start (`domain::testing::PrivateKafka`). Cheap once the jars are cached.
pub fn private_broker_kit(paths: &Paths) -> Result<(PathBuf, PathBuf)> {
    Ok((java::require()?, fetch_libs(paths)?))
}

pub fn stop(paths: &Paths) -> Result<()> {
    process::stop_and_report(NAME, &paths.pid_file(NAME), MAIN_CLASS, STOP_GRACE)
}

fn fetch_libs(paths: &Paths) -> Result<PathBuf> {
    let pom = paths.xtask_asset("kafka/pom.xml");
    let libs = paths
        .cache
        .join(format!("kafka-{KAFKA_VERSION}"))
        .join("libs");
    std::fs::create_dir_all(paths.cache.join(format!("kafka-{KAFKA_VERSION}")))?;
    maven::fetch_once(NAME, "Kafka", &libs, &paths.log("maven-kafka"), |out| {
        vec![
            "-f".to_owned(),
            pom.display().to_string(),
            "dependency:copy-dependencies".to_owned(),
            format!("-DoutputDirectory={}", out.display()),
        ]
    })
}

fn format_storage(java: &Path, classpath: &str, config: &Path) -> Result<()> {
    let storage_tool = |args: &[&str]| {
        let mut cmd = Command::new(java);
        cmd.arg("-cp")
            .arg(classpath)
            .arg("kafka.tools.StorageTool")
            .args(args);
        cmd
    };
    let cluster_id = process::output(&mut storage_tool(&["random-uuid"]))?;
    let cluster_id = cluster_id
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .context("kafka StorageTool random-uuid printed nothing")?
        .to_owned();
    let config = config.to_string_lossy();
    process::output(&mut storage_tool(&[
        "format",
        "-t",
        &cluster_id,
        "-c",
        &config,
    ]))?;
    eprintln!("kafka: formatted storage (cluster id {cluster_id})");
    Ok(())
}

/// Ready once the broker logs that it started and its listener accepts connections; the
/// log line matters because the port opens before the KRaft controller has a leader.
fn wait_ready(pid: u32, log: &Path, log_offset: u64) -> Result<()> {
    let mut seen_started = false;
    let result = probe::wait_until("kafka", STARTUP_TIMEOUT, || {
        if !process::is_running(pid) {
            bail!("kafka exited during startup");
        }
        seen_started = seen_started || process::log_contains_since(log, log_offset, STARTED_LINE);
        Ok(seen_started && probe::tcp_open(ADDR))
    });
    process::with_log_tail(result, log)
}

fn server_properties(data_dir: &Path) -> String {
    format!(
        "\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{CONTROLLER_ADDR}
listeners=PLAINTEXT://{ADDR},CONTROLLER://{CONTROLLER_ADDR}
advertised.listeners=PLAINTEXT://{ADDR}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
# The services create their topics through the admin client; a typo must fail loudly.
auto.create.topics.enable=false
# Fewer partitions make startup and the many consumer groups of the tests cheaper.
offsets.topic.num.partitions=4
",
        data = data_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::server_properties;

    #[test]
    fn server_properties_point_at_local_ports_and_data_dir() {
        let props = server_properties(Path::new("/w/target/local/kafka/data"));
        for line in [
            "process.roles=broker,controller",
            "controller.quorum.voters=1@127.0.0.1:59093",
            "listeners=PLAINTEXT://127.0.0.1:59092,CONTROLLER://127.0.0.1:59093",
            "advertised.listeners=PLAINTEXT://127.0.0.1:59092",
            "log.dirs=/w/target/local/kafka/data",
            "auto.create.topics.enable=false",
            "offsets.topic.num.partitions=4",
        ] {
            assert!(props.lines().any(|l| l == line), "missing {line}");
        }
        // Every non-comment line must be key=value for Kafka's Properties parser.
        assert!(
            props
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .all(|l| l
                    .split_once('=')
                    .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty()))
        );
    }
}
