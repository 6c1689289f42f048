//! Reading what a test's code published: every record of a topic from the beginning, and the
//! exact number of records a topic holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::Headers as _;
use uuid::Uuid;

use crate::config::KafkaConfig;

/// One record as a consumer saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    /// Headers with UTF-8 values, in the order they were sent.
    pub headers: Vec<(String, String)>,
    /// The record's timestamp (when the producer made it), when it has one.
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
}

impl ConsumedRecord {
    pub fn payload_json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_slice(&self.payload)?)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Reads `topic` from its beginning, in a consumer group of its own, until at least
/// `at_least` records arrived; an error naming how many did when `timeout` passes first.
/// Use [`count_records`] to know there are no more than expected.
pub async fn read_topic(
    kafka: &KafkaConfig,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<ConsumedRecord>> {
    let group = format!("{}reader-{}", kafka.topic_prefix, Uuid::new_v4().simple());
    let consumer: StreamConsumer = crate::kafka::base_client_config(kafka)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < at_least {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let received = match tokio::time::timeout(remaining, consumer.recv()).await {
            Ok(received) => received,
            Err(_) => bail!(
                "read {} of at least {at_least} records of {topic} within {timeout:?}",
                records.len()
            ),
        };
        // Transient errors (a broker still starting, a rebalance) are the client's to retry.
        let Ok(message) = received else { continue };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .filter_map(|h| {
                        let value = std::str::from_utf8(h.value?).ok()?;
                        Some((h.key.to_owned(), value.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(ConsumedRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
            timestamp: message
                .timestamp()
                .to_millis()
                .and_then(chrono::DateTime::from_timestamp_millis),
        });
    }
    Ok(records)
}

/// How many records `topic` holds across its partitions (the sum of its watermark spans):
/// exact, unlike reading, which cannot tell that nothing more will come.
pub async fn count_records(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<i64> {
    let client: BaseConsumer = crate::kafka::base_client_config(kafka).create()?;
    let client = Arc::new(client);
    let topic = topic.to_owned();
    let timeout = Duration::from_millis(kafka.request_timeout_ms);
    // librdkafka's metadata and watermark calls block.
    tokio::task::spawn_blocking(move || {
        let metadata = client.fetch_metadata(Some(&topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .first()
            .context("metadata names no topic")?
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        if partitions.is_empty() {
            bail!("topic {topic} has no partitions (does it exist?)");
        }
        let mut total = 0;
        for partition in partitions {
            let (low, high) = client.fetch_watermarks(&topic, partition, timeout)?;
            total += high - low;
        }
        Ok(total)
    })
    .await?
}
