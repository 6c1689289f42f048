//! A Kafka broker of one test, for tests that stop and start Kafka: the shared broker other
//! tests (and engineers) use must never go down. Single-node KRaft from the same jars
//! `cargo xtask` runs, in a temporary directory, on ports of its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rand::Rng as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use tokio::process::{Child, Command};

/// Directory of the Kafka jars (`cargo xtask test` and `cargo xtask infra` export it).
pub const LIBS_ENV: &str = "SEQ_TEST_KAFKA_LIBS";
/// Java runtime to start them with; `java` on PATH when unset.
pub const JAVA_ENV: &str = "SEQ_TEST_JAVA";

/// A broker start takes 10 to 30 s on a loaded two-core machine; this is a bound, not a wait.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
const STARTED_LINE: &str = "Kafka Server started";
/// Small heap and a quick-starting JIT: a test broker handles a few thousand records, and
/// the machines tests run on have few cores.
const JVM_OPTIONS: &[&str] = &[
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
];
const LOG4J2_PROPERTIES: &str = "\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
";

/// The broker process, stopped and started at will. Data (topics, records, committed
/// offsets) lives in a temporary directory for as long as the value, so it survives a
/// restart; the process is killed when the value is dropped.
pub struct PrivateKafka {
    dir: tempfile::TempDir,
    java: PathBuf,
    classpath: String,
    broker_port: u16,
    child: Option<Child>,
}

impl PrivateKafka {
    /// Formats the storage of a new broker and starts it; returns once it answers.
    pub async fn launch() -> anyhow::Result<Self> {
        let libs = std::env::var_os(LIBS_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .with_context(|| {
                format!(
                    "{LIBS_ENV} is not set: run the tests through `cargo xtask test` (or export \
                     the variables printed by `cargo xtask infra`), which point it at the Kafka jars"
                )
            })?;
        let java = std::env::var_os(JAVA_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("java"), PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("seq-private-kafka-")
            .tempdir()?;
        let broker_port = free_port()?;
        let controller_port = loop {
            let port = free_port()?;
            if port != broker_port {
                break port;
            }
        };
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        std::fs::write(
            dir.path().join("server.properties"),
            server_properties(broker_port, controller_port, &data),
        )?;
        std::fs::write(dir.path().join("log4j2.properties"), LOG4J2_PROPERTIES)?;
        let mut kafka = Self {
            classpath: format!("{}/*", libs.display()),
            java,
            dir,
            broker_port,
            child: None,
        };
        kafka.format_storage().await?;
        kafka.start().await?;
        Ok(kafka)
    }

    /// Bootstrap servers, for `config.kafka.brokers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// Kills the broker (an abrupt outage, as a crashed or partitioned broker looks to its
    /// clients) and waits until the process is gone. Does nothing when it is not running.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("killing the private kafka")?;
        }
        Ok(())
    }

    /// Starts the broker on its ports and data directory, and returns once it logged that
    /// it started and answers a metadata request. Does nothing when it is running.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log_path = self.log_path();
        let log_offset = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let child = Command::new(&self.java)
            .args(JVM_OPTIONS)
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.path().join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(&self.classpath)
            .arg("kafka.Kafka")
            .arg(self.dir.path().join("server.properties"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting kafka with {}", self.java.display()))?;
        self.child = Some(child);
        if let Err(error) = self.wait_ready(log_offset).await {
            let _ = self.stop().await;
            return Err(error.context(format!("log tail:\n{}", self.log_tail())));
        }
        Ok(())
    }

    /// The broker's output so far (for a failing test's message).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("kafka.log")
    }

    /// `kafka-storage format` with a cluster id of our own: it must happen once, before the
    /// first start, and never again (it would refuse a formatted directory anyway).
    async fn format_storage(&self) -> anyhow::Result<()> {
        // Kafka's Uuid text form: 16 bytes, URL-safe base64 without padding.
        let cluster_id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        let config = self.dir.path().join("server.properties");
        let output = Command::new(&self.java)
            .args(JVM_OPTIONS)
            .arg("-cp")
            .arg(&self.classpath)
            .arg("kafka.tools.StorageTool")
            // `--cluster-id=ID` in one argument: an id starting with `-` (one in 64) would
            // otherwise be read as an option and the format refused.
            .arg("format")
            .arg(format!("--cluster-id={cluster_id}"))
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running kafka's StorageTool with {}", self.java.display()))?;
        if !output.status.success() {
            bail!(
                "formatting the private kafka's storage failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout)
            );
        }
        Ok(())
    }

    /// Ready once the log says the server started since `log_offset` (the port opens before
    /// the KRaft controller has elected itself) and a metadata request lists the broker.
    async fn wait_ready(&mut self, log_offset: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("log_level", "0")
            .create()?;
        let probe = std::sync::Arc::new(probe);
        let mut started = false;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("the private kafka exited during startup ({status})");
            }
            started = started || log_contains_since(&self.log_path(), log_offset, STARTED_LINE);
            if started {
                let probe = std::sync::Arc::clone(&probe);
                let brokers = tokio::task::spawn_blocking(move || {
                    probe
                        .fetch_metadata(None, Duration::from_secs(2))
                        .map(|m| m.brokers().len())
                })
                .await?;
                if matches!(brokers, Ok(n) if n > 0) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!("the private kafka did not become ready within {STARTUP_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn log_contains_since(path: &Path, offset: u64, needle: &str) -> bool {
    std::fs::read(path).is_ok_and(|bytes| {
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).contains(needle)
    })
}

/// A free port below the ephemeral range. An ephemeral one (what binding port 0 gives)
/// could be taken by some client's outgoing connection while the broker is stopped, and the
/// restart on the same port would then fail.
fn free_port() -> anyhow::Result<u16> {
    let (low, high) = (10_000, ephemeral_start().max(10_001));
    let mut rng = rand::rng();
    for _ in 0..200 {
        let port = rng.random_range(low..high);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("found no free port between {low} and {high}")
}

fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

fn server_properties(broker_port: u16, controller_port: u16, data: &Path) -> String {
    format!(
        "\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=false
",
        data = data.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_outside_the_ephemeral_range() -> anyhow::Result<()> {
        let port = free_port()?;
        assert!((10_000..ephemeral_start()).contains(&port), "{port}");
        std::net::TcpListener::bind(("127.0.0.1", port))?;
        Ok(())
    }

    #[test]
    fn properties_name_both_ports_and_the_data_directory() {
        let props = server_properties(20001, 20002, Path::new("/tmp/k/data"));
        for line in [
            "controller.quorum.voters=1@127.0.0.1:20002",
            "listeners=PLAINTEXT://127.0.0.1:20001,CONTROLLER://127.0.0.1:20002",
            "advertised.listeners=PLAINTEXT://127.0.0.1:20001",
            "log.dirs=/tmp/k/data",
        ] {
            assert!(props.lines().any(|l| l == line), "missing {line}");
        }
    }
}
