//! An idempotent producer: the broker drops duplicates of retried sends, and records of one
//! key keep their order.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use super::envelope::{Envelope, Payload};
use super::trace_headers;
use crate::config::KafkaConfig;

#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("could not serialise the record: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("kafka did not accept the record: {0}")]
    Kafka(#[from] KafkaError),
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let timeout = super::request_timeout(config);
        let inner: FutureProducer = super::base_client_config(config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", (timeout.as_millis() * 3).to_string())
            .create()?;
        Ok(Self { inner, timeout })
    }

    /// Sends one envelope and waits for the broker's acknowledgement.
    pub async fn send<P: Payload>(
        &self,
        topic: &str,
        key: &str,
        envelope: &Envelope<P>,
    ) -> Result<Delivered, ProduceError> {
        self.send_bytes(topic, key, &envelope.to_json()?).await
    }

    /// Sends an already serialised envelope (the outbox relay stores them as JSON).
    pub async fn send_bytes(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Result<Delivered, ProduceError> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(trace_headers::current_context_headers());
        match self.inner.send(record, self.timeout).await {
            Ok(delivery) => {
                metrics::counter!("kafka_produced_total", "topic" => topic.to_owned()).increment(1);
                Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Err((error, _)) => {
                metrics::counter!("kafka_produce_errors_total", "topic" => topic.to_owned())
                    .increment(1);
                Err(error.into())
            }
        }
    }

    /// Waits until every buffered record is acknowledged; called on shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(timeout)
    }
}
