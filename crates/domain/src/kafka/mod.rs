//! Kafka plumbing shared by the services: typed envelopes, an idempotent producer, an
//! at-least-once consumer loop (one record or a batch at a time), topic creation and a reachability probe.

pub mod batch_consumer;
pub mod consumer;
pub mod envelope;
pub mod health;
pub mod producer;
pub mod topics;
pub(crate) mod trace_headers;

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

pub use batch_consumer::{BatchHandler, Batching, run_batch_consumer, store_offsets_after};
pub use consumer::{ConsumerOptions, Handler, run_consumer};
pub use envelope::{Envelope, EnvelopeError, Payload};
pub use producer::Producer;
pub use topics::{TopicNames, ensure_topics};

/// Settings every client shares.
pub(crate) fn base_client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        // Fail requests instead of retrying forever when the cluster is down.
        .set("socket.timeout.ms", config.request_timeout_ms.to_string())
        .set("log_level", "4");
    client
}

pub(crate) fn request_timeout(config: &KafkaConfig) -> Duration {
    Duration::from_millis(config.request_timeout_ms)
}
