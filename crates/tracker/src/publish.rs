//! Publishing events without holding up responses: records go into librdkafka's buffer (a
//! `ThreadedProducer` polls delivery reports on its own thread) and a handler never waits for
//! the broker. When the buffer is full, records wait in a backlog that a background task
//! retries, so a burst is slowed into Kafka rather than dropped (later records queue behind
//! it, keeping each enrollment's order). [`Publisher::close`] drains the backlog and flushes
//! within the shutdown grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use domain::config::KafkaConfig;
use domain::events::EmailEvent;
use domain::kafka::Envelope;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Counts delivery reports.
struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => metrics::counter!("tracker_events_published_total").increment(1),
            Err((error, _)) => {
                metrics::counter!("tracker_events_failed_total").increment(1);
                tracing::error!(%error, "kafka did not accept a tracking event");
            }
        }
    }
}

/// One serialised record waiting for room in the producer's buffer.
struct Pending {
    key: String,
    payload: Vec<u8>,
}

#[derive(Clone)]
pub struct Publisher {
    producer: Arc<ThreadedProducer<Reports>>,
    topic: Arc<str>,
    backlog: mpsc::UnboundedSender<Pending>,
    /// Records in the backlog not yet handed to librdkafka. While any are, new records queue
    /// behind them, so records of one enrollment keep their order.
    backlogged: Arc<AtomicUsize>,
}

/// Owns the backlog task; [`Publisher::close`] consumes it.
pub struct Backlog {
    task: tokio::task::JoinHandle<()>,
    closing: tokio_util::sync::CancellationToken,
}

impl Publisher {
    /// With librdkafka's default buffer of 100 000 records.
    pub fn new(config: &KafkaConfig, topic: String) -> Result<(Self, Backlog), KafkaError> {
        Self::with_buffer_limit(config, topic, 100_000)
    }

    /// With room for at most `max_buffered` records in librdkafka's buffer (tests use a small
    /// one to exercise the backlog).
    pub fn with_buffer_limit(
        config: &KafkaConfig,
        topic: String,
        max_buffered: u32,
    ) -> Result<(Self, Backlog), KafkaError> {
        let producer: ThreadedProducer<Reports> =
            domain::kafka::producer::idempotent_client_config(config)
                // librdkafka's default, explicit: a broker outage shorter than this loses
                // nothing, the producer retries on its own.
                .set("message.timeout.ms", "300000")
                .set("queue.buffering.max.messages", max_buffered.to_string())
                .create_with_context(Reports)?;
        let producer = Arc::new(producer);
        let topic: Arc<str> = topic.into();
        let (backlog, mut pending) = mpsc::unbounded_channel::<Pending>();
        let closing = tokio_util::sync::CancellationToken::new();
        let backlogged = Arc::new(AtomicUsize::new(0));
        let task = {
            let backlogged = backlogged.clone();
            let producer = producer.clone();
            let topic = topic.clone();
            let closing = closing.clone();
            tokio::spawn(async move {
                loop {
                    let record = tokio::select! {
                        record = pending.recv() => record,
                        () = closing.cancelled() => pending.try_recv().ok(),
                    };
                    let Some(record) = record else { return };
                    // Wait for room rather than drop: librdkafka frees it as acks arrive.
                    while matches!(enqueue(&producer, &topic, &record), Err(Full)) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    backlogged.fetch_sub(1, Ordering::AcqRel);
                }
            })
        };
        Ok((
            Self {
                producer,
                topic,
                backlog,
                backlogged,
            },
            Backlog { task, closing },
        ))
    }

    /// Enqueues `event` keyed by its enrollment; returns at once.
    pub fn publish(&self, workspace_id: Uuid, enrollment_id: Uuid, event: EmailEvent) {
        let payload = match Envelope::new(workspace_id, event).to_json() {
            Ok(payload) => payload,
            Err(error) => {
                metrics::counter!("tracker_events_failed_total").increment(1);
                tracing::error!(%error, "cannot serialise a tracking event");
                return;
            }
        };
        let record = Pending {
            key: enrollment_id.to_string(),
            payload,
        };
        let behind_backlog = self.backlogged.load(Ordering::Acquire) > 0;
        if behind_backlog || enqueue(&self.producer, &self.topic, &record).is_err() {
            metrics::counter!("tracker_events_backlogged_total").increment(1);
            self.backlogged.fetch_add(1, Ordering::AcqRel);
            if self.backlog.send(record).is_err() {
                // Only after close(): nothing is served any more.
                self.backlogged.fetch_sub(1, Ordering::AcqRel);
                metrics::counter!("tracker_events_failed_total").increment(1);
            }
        }
    }

    /// Drains the backlog, then waits for every buffered record's acknowledgement, within
    /// `grace` in all.
    pub async fn close(self, backlog: Backlog, grace: Duration) {
        let deadline = Instant::now() + grace;
        let producer = self.producer.clone();
        drop(self);
        backlog.closing.cancel();
        if tokio::time::timeout(grace, backlog.task).await.is_err() {
            tracing::warn!("tracking events still waiting for the kafka buffer at shutdown");
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let flushed = tokio::task::spawn_blocking(move || producer.flush(remaining)).await;
        match flushed {
            Ok(Ok(())) => tracing::info!("tracking events flushed"),
            Ok(Err(error)) => tracing::error!(%error, "tracking events not all flushed"),
            Err(error) => tracing::error!(%error, "flush task failed"),
        }
    }
}

/// The producer's buffer is full.
struct Full;

/// Hands `record` to librdkafka. Errors other than a full buffer are counted as failures.
fn enqueue(
    producer: &ThreadedProducer<Reports>,
    topic: &str,
    record: &Pending,
) -> Result<(), Full> {
    let base = BaseRecord::to(topic)
        .key(record.key.as_str())
        .payload(record.payload.as_slice());
    match producer.send(base) {
        Ok(()) => Ok(()),
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Err(Full),
        Err((error, _)) => {
            metrics::counter!("tracker_events_failed_total").increment(1);
            tracing::error!(%error, "cannot enqueue a tracking event");
            Ok(())
        }
    }
}
