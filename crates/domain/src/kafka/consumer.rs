//! At-least-once consumption: a record's offset is stored only after its handler succeeded,
//! so a failing handler sees the record again and a crash redelivers it. Handlers must
//! therefore be idempotent (the envelope id is there to deduplicate on).

use std::future::Future;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::envelope::{Envelope, EnvelopeError, Payload};
use super::trace_headers;
use crate::config::KafkaConfig;

/// Processes one record. An error means "not done": the same record is handed again.
pub trait Handler<P: Payload>: Send + Sync {
    fn handle(&self, envelope: Envelope<P>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Consumer group, without the environment's topic prefix (added here).
    pub group: String,
    pub topics: Vec<String>,
    /// Backoff between attempts of a failing handler, doubling up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl ConsumerOptions {
    pub fn new(group: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group: group.into(),
            topics,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// A consumer in `group` (prefix included) whose offsets are committed only once stored by
/// hand (`store_offset*`), after the record's work is done; reading starts at the earliest
/// record when the group has no committed offset.
pub fn stored_offsets_consumer(
    config: &KafkaConfig,
    group: &str,
) -> Result<StreamConsumer, KafkaError> {
    super::base_client_config(config)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // Offsets are stored by hand after success; auto-commit then commits only those.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
}

/// Consumes until `shutdown` is cancelled, then commits what was handled and returns.
pub async fn run_consumer<P, H>(
    config: &KafkaConfig,
    options: ConsumerOptions,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), KafkaError>
where
    P: Payload,
    H: Handler<P>,
{
    let group = format!("{}{}", config.topic_prefix, options.group);
    let consumer = stored_offsets_consumer(config, &group)?;
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(kafka.group = %group, kafka.topics = ?topics, "consumer started");

    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            received = consumer.recv() => received,
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, kafka.group = %group, "kafka receive failed");
                metrics::counter!("kafka_consume_errors_total", "group" => group.clone())
                    .increment(1);
                continue;
            }
        };
        if !process(&message, &handler, &options, &group, &shutdown).await {
            // Shutting down mid-retry: leave the offset unstored so the record comes back.
            break;
        }
        consumer.store_offset_from_message(&message)?;
    }

    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, kafka.group = %group, "final offset commit failed"),
    }
    tracing::info!(kafka.group = %group, "consumer stopped");
    Ok(())
}

/// Runs the handler until it succeeds. Returns false when shutdown interrupted the retries.
async fn process<P, H>(
    message: &BorrowedMessage<'_>,
    handler: &H,
    options: &ConsumerOptions,
    group: &str,
    shutdown: &CancellationToken,
) -> bool
where
    P: Payload,
    H: Handler<P>,
{
    let topic = message.topic().to_owned();
    let envelope = match Envelope::<P>::from_json(message.payload().unwrap_or_default()) {
        Ok(envelope) => envelope,
        Err(error) => {
            // Retrying cannot fix a record we cannot read; skip it loudly.
            skip_unreadable(&error, &topic, message);
            return true;
        }
    };
    let mut backoff = options.retry_initial;
    let mut attempt: u32 = 1;
    loop {
        let span = tracing::info_span!(
            "kafka.handle",
            kafka.topic = %topic,
            kafka.partition = message.partition(),
            kafka.offset = message.offset(),
            event.id = %envelope.id,
            attempt,
        );
        trace_headers::set_parent_from_headers(&span, message.headers());
        match handler.handle(envelope.clone()).instrument(span).await {
            Ok(()) => {
                metrics::counter!("kafka_handled_total", "topic" => topic.clone()).increment(1);
                return true;
            }
            Err(error) => {
                metrics::counter!("kafka_handler_failures_total", "topic" => topic.clone())
                    .increment(1);
                tracing::warn!(
                    error = format!("{error:#}"),
                    kafka.topic = %topic,
                    kafka.group = %group,
                    event.id = %envelope.id,
                    attempt,
                    retry_in_ms = backoff.as_millis() as u64,
                    "handler failed; the record will be handled again",
                );
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(options.retry_max);
        attempt = attempt.saturating_add(1);
    }
}

fn skip_unreadable(error: &EnvelopeError, topic: &str, message: &BorrowedMessage<'_>) {
    metrics::counter!("kafka_unreadable_records_total", "topic" => topic.to_owned()).increment(1);
    tracing::error!(
        %error,
        kafka.topic = %topic,
        kafka.partition = message.partition(),
        kafka.offset = message.offset(),
        "skipping unreadable record",
    );
}
