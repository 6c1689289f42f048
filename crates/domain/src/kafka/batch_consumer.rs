//! At-least-once consumption by batches: the records read within a short wait (up to a
//! maximum) are handed over together, and their offsets are stored only after the handler
//! succeeded with the whole batch, so a failing handler sees the same records again and a
//! crash redelivers them. Handlers must be idempotent by envelope id, as with
//! [`super::run_consumer`]; a batch holds each partition's records in partition order. With
//! more than one lane ([`Batching::lanes`]), batches of different partitions are handled at
//! once; a partition's batches still one after the other.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::consumer::{ConsumerOptions, stored_offsets_consumer};
use super::envelope::{Envelope, Payload};
use super::trace_headers;
use crate::config::KafkaConfig;

/// Processes a batch of records. An error means "none done": the whole batch is handed again.
pub trait BatchHandler<P: Payload>: Send + Sync {
    fn handle(&self, batch: &[Envelope<P>]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// How a batch is gathered.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Records per batch at most.
    pub max_records: usize,
    /// How long to wait for more records after the first.
    pub wait: Duration,
    /// Batches handled at once (at least one). A partition's records all go to one lane
    /// (`partition % lanes`), which handles its batches one after the other, so each
    /// partition's records are still handled in their order, and two batches handled at once
    /// never share a partition.
    pub lanes: usize,
}

/// Where a record came from, for its offset.
struct Position {
    topic: String,
    partition: i32,
    offset: i64,
}

/// A record as read: its position, its envelope when it could be read, and the trace
/// context it carries.
struct Record<P> {
    position: Position,
    envelope: Option<Envelope<P>>,
    parent: Option<opentelemetry::Context>,
}

/// Consumes by batches until `shutdown` is cancelled, then commits what was handled.
pub async fn run_batch_consumer<P, H>(
    config: &KafkaConfig,
    options: ConsumerOptions,
    batching: Batching,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), KafkaError>
where
    P: Payload,
    H: BatchHandler<P>,
{
    let group = format!("{}{}", config.topic_prefix, options.group);
    let consumer = stored_offsets_consumer(config, &group)?;
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(kafka.group = %group, kafka.topics = ?topics, "batch consumer started");
    let max = batching.max_records.max(1);
    let lanes = batching.lanes.max(1);

    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..lanes).map(|_| mpsc::channel::<Record<P>>(max)).unzip();
    let reader = async {
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                received = consumer.recv() => received,
            };
            let Some(record) = read(received, &group) else {
                continue;
            };
            let lane = usize::try_from(record.position.partition).unwrap_or(0) % lanes;
            // A lane gone means shutdown: it stopped taking records.
            if senders[lane].send(record).await.is_err() {
                break;
            }
        }
        drop(senders);
    };
    let lanes = receivers.into_iter().map(|records| {
        run_lane(
            &consumer, &options, &batching, max, &handler, &group, &shutdown, records,
        )
    });
    tokio::join!(reader, futures::future::join_all(lanes));

    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, kafka.group = %group, "final offset commit failed"),
    }
    tracing::info!(kafka.group = %group, "batch consumer stopped");
    Ok(())
}

/// One lane: gathers the records of its partitions into batches, hands each to `handler`
/// until it succeeds, then stores their offsets; until shutdown or the reader stops.
#[allow(clippy::too_many_arguments)]
async fn run_lane<P, H>(
    consumer: &StreamConsumer,
    options: &ConsumerOptions,
    batching: &Batching,
    max: usize,
    handler: &H,
    group: &str,
    shutdown: &CancellationToken,
    mut records: mpsc::Receiver<Record<P>>,
) where
    P: Payload,
    H: BatchHandler<P>,
{
    'consume: loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            first = records.recv() => first,
        };
        let Some(first) = first else {
            break;
        };
        let span = tracing::info_span!(
            "kafka.handle_batch",
            kafka.group = %group,
            records = tracing::field::Empty,
        );
        // The batch continues the trace of its first record.
        if let Some(parent) = first.parent.clone() {
            let _ = span.set_parent(parent);
        }
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + batching.wait;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, records.recv()).await {
                Ok(Some(record)) => batch.push(record),
                Ok(None) | Err(_) => break,
            }
        }
        let (positions, envelopes): (Vec<Position>, Vec<Envelope<P>>) =
            batch.into_iter().map(|r| (r.position, r.envelope)).fold(
                (Vec::new(), Vec::new()),
                |(mut p, mut e), (position, envelope)| {
                    p.push(position);
                    e.extend(envelope);
                    (p, e)
                },
            );
        span.record("records", envelopes.len());
        let topic = positions[0].topic.clone();
        let mut backoff = options.retry_initial;
        let mut attempt: u32 = 1;
        while !envelopes.is_empty() {
            match handler.handle(&envelopes).instrument(span.clone()).await {
                Ok(()) => {
                    metrics::counter!("kafka_handled_total", "topic" => topic.clone())
                        .increment(envelopes.len() as u64);
                    break;
                }
                Err(error) => {
                    metrics::counter!("kafka_handler_failures_total", "topic" => topic.clone())
                        .increment(1);
                    tracing::warn!(
                        error = format!("{error:#}"),
                        kafka.group = %group,
                        records = envelopes.len(),
                        attempt,
                        retry_in_ms = backoff.as_millis() as u64,
                        "batch handler failed; the records will be handled again",
                    );
                }
            }
            tokio::select! {
                // Shutting down mid-retry: leave the offsets unstored so the records come back.
                () = shutdown.cancelled() => break 'consume,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(options.retry_max);
            attempt = attempt.saturating_add(1);
        }
        store_offsets_after(
            consumer,
            positions
                .iter()
                .map(|p| (p.topic.as_str(), p.partition, p.offset)),
        );
    }
}

/// Takes in one received record: its position, its envelope when it can be read, and its
/// trace context.
fn read<P: Payload>(
    received: Result<BorrowedMessage<'_>, KafkaError>,
    group: &str,
) -> Option<Record<P>> {
    let message = match received {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(%error, kafka.group = %group, "kafka receive failed");
            metrics::counter!("kafka_consume_errors_total", "group" => group.to_owned())
                .increment(1);
            return None;
        }
    };
    let position = Position {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
    };
    let parent = trace_headers::context_from_headers(message.headers());
    let envelope = match Envelope::<P>::from_json(message.payload().unwrap_or_default()) {
        Ok(envelope) => Some(envelope),
        Err(error) => {
            // Retrying cannot fix a record we cannot read; skip it loudly.
            metrics::counter!("kafka_unreadable_records_total", "topic" => message.topic().to_owned())
                .increment(1);
            tracing::error!(
                %error,
                kafka.topic = message.topic(),
                kafka.partition = message.partition(),
                kafka.offset = message.offset(),
                "skipping unreadable record",
            );
            None
        }
    };
    Some(Record {
        position,
        envelope,
        parent,
    })
}

/// Stores the offsets after the records at `positions` (topic, partition, offset), whose work
/// is done. Failing for a partition lost in a rebalance is fine: its new owner reads the
/// records again, and handlers are idempotent.
pub fn store_offsets_after<'a>(
    consumer: &StreamConsumer,
    positions: impl IntoIterator<Item = (&'a str, i32, i64)>,
) {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for (topic, partition, offset) in positions {
        let entry = next.entry((topic, partition)).or_insert(offset + 1);
        *entry = (*entry).max(offset + 1);
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::warn!(%error, "offset not stored");
        }
    }
    if let Err(error) = consumer.store_offsets(&list) {
        tracing::debug!(%error, "offsets not stored");
    }
}
