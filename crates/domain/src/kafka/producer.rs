//! An idempotent producer: the broker drops duplicates of retried sends, and records of one
//! key keep their order.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
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

/// The settings of this producer, for services that need another kind of rdkafka producer
/// (the tracker enqueues without awaiting acknowledgements): idempotent, all replicas
/// acknowledge, `kafka.compression`, 5 ms linger.
pub fn idempotent_client_config(config: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut client = super::base_client_config(config);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", config.compression.as_str())
        .set("linger.ms", "5");
    client
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let timeout = super::request_timeout(config);
        let inner: FutureProducer = idempotent_client_config(config)
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

    /// Sends an already serialised envelope with the current trace context in its headers.
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
        self.deliver(topic, record).await
    }

    /// Sends an already serialised envelope with the given headers instead of the current
    /// trace context: the outbox relay forwards the context captured when the row was
    /// written, so the trace continues from the transaction that wrote it.
    pub async fn send_bytes_with_headers(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<Delivered, ProduceError> {
        let mut record = FutureRecord::to(topic)
            .payload(payload)
            .headers(trace_headers::to_headers(headers.iter().copied()));
        if let Some(key) = key {
            record = record.key(key);
        }
        self.deliver(topic, record).await
    }

    async fn deliver<K: ToBytes + ?Sized>(
        &self,
        topic: &str,
        record: FutureRecord<'_, K, [u8]>,
    ) -> Result<Delivered, ProduceError> {
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
