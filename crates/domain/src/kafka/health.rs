//! Kafka part of readiness: the cluster answers a metadata request in time.

use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::KafkaConfig;

/// A long-lived client kept for probing, so `/readyz` does not build one per request.
#[derive(Clone)]
pub struct KafkaProbe {
    client: Arc<BaseConsumer>,
    timeout: std::time::Duration,
}

impl KafkaProbe {
    pub fn new(config: &KafkaConfig) -> Result<Self, rdkafka::error::KafkaError> {
        let client: BaseConsumer = super::base_client_config(config).create()?;
        Ok(Self {
            client: Arc::new(client),
            timeout: super::request_timeout(config).min(std::time::Duration::from_secs(3)),
        })
    }

    pub async fn check(&self) -> Result<(), String> {
        let client = Arc::clone(&self.client);
        let timeout = self.timeout;
        // librdkafka's metadata call blocks; keep it off the async workers.
        let result = tokio::task::spawn_blocking(move || {
            client
                .fetch_metadata(None, timeout)
                .map(|metadata| metadata.brokers().len())
        })
        .await
        .map_err(|e| format!("kafka probe task failed: {e}"))?;
        match result {
            Ok(0) => Err("kafka reachable but reports no brokers".to_owned()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("kafka unreachable: {e}")),
        }
    }
}
