//! What every service binary shares: the command line, readiness and health endpoints,
//! Prometheus metrics, the admin server of the non-HTTP services, and shutdown on signals.

pub mod admin;
pub mod cli;
pub mod health;
pub mod metrics;
pub mod readiness;
pub mod shutdown;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{self, PgPool};
use crate::kafka::health::KafkaProbe;
use crate::kafka::{self, TopicNames};
use metrics::Metrics;
use readiness::Readiness;

/// What every service builds first: its pool, readiness probe and metrics.
#[derive(Clone)]
pub struct ServiceBase {
    pub config: Config,
    pub pool: PgPool,
    pub readiness: Readiness,
    pub metrics: Metrics,
    pub topics: TopicNames,
}

impl ServiceBase {
    /// Builds the clients without waiting for the dependencies: a service starts (and
    /// answers `/readyz` with 503) while its database or Kafka is still coming up.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let pool = db::pool(&config.database)?;
        let kafka_probe = KafkaProbe::new(&config.kafka)?;
        Ok(Self {
            topics: TopicNames::from_config(&config.kafka),
            readiness: Readiness::new(pool.clone(), kafka_probe),
            metrics: Metrics::install(),
            pool,
            config,
        })
    }

    /// Creates the system's topics in the background, retrying until Kafka accepts or the
    /// service shuts down.
    pub fn spawn_topic_creation(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let config = self.config.kafka.clone();
        let topics = self.topics.clone();
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(500);
            loop {
                match kafka::ensure_topics(&config, &topics.all()).await {
                    Ok(()) => {
                        tracing::info!(topics = ?topics.all(), "kafka topics ready");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot create kafka topics yet; retrying")
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        })
    }
}

/// Names this process where it claims work (messages, mailbox leases): the pod (HOSTNAME,
/// else `service`) and a random suffix, since a restarted pod keeps its name but not its
/// claims.
pub fn instance_id(service: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| service.to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}
