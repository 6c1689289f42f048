//! The Kafka plumbing against the real broker: typed envelopes through a consumer group,
//! redelivery after a failed handler, and committed offsets surviving a consumer restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::config::Config;
use domain::kafka::{
    ConsumerOptions, Envelope, Handler, Payload, Producer, ensure_topics, run_consumer,
};
use domain::testing::{poll_until, test_config_with_url, unreachable_database_url};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
enum TestEvent {
    Pinged { n: u32 },
}

impl Payload for TestEvent {
    const VERSION: u16 = 1;
}

/// Records what it handled; fails the first attempt of records listed in `fail_once`.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<(Uuid, u32)>>>,
    fail_once: Arc<Mutex<Vec<u32>>>,
}

impl Recorder {
    fn seen(&self) -> Vec<(Uuid, u32)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Handler<TestEvent> for Recorder {
    async fn handle(&self, envelope: Envelope<TestEvent>) -> anyhow::Result<()> {
        let TestEvent::Pinged { n } = envelope.body;
        self.seen
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push((envelope.id, n));
        let mut fail_once = self
            .fail_once
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        if let Some(pos) = fail_once.iter().position(|&f| f == n) {
            fail_once.remove(pos);
            anyhow::bail!("induced failure for {n}");
        }
        Ok(())
    }
}

async fn setup() -> anyhow::Result<(Config, String, Producer)> {
    // Kafka tests need no database; the URL is never used.
    let config = test_config_with_url(&unreachable_database_url()?)?;
    let topic = format!("{}pings", config.kafka.topic_prefix);
    ensure_topics(&config.kafka, &[&topic]).await?;
    let producer = Producer::new(&config.kafka)?;
    Ok((config, topic, producer))
}

fn start(
    config: &Config,
    topic: &str,
    recorder: &Recorder,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), rdkafka::error::KafkaError>>,
) {
    let shutdown = CancellationToken::new();
    let mut options = ConsumerOptions::new("group-a", vec![topic.to_owned()]);
    options.retry_initial = Duration::from_millis(20);
    let task = tokio::spawn({
        let kafka = config.kafka.clone();
        let recorder = recorder.clone();
        let shutdown = shutdown.clone();
        async move { run_consumer(&kafka, options, recorder, shutdown).await }
    });
    (shutdown, task)
}

async fn send(producer: &Producer, topic: &str, n: u32) -> anyhow::Result<Envelope<TestEvent>> {
    let envelope = Envelope::new(Uuid::nil(), TestEvent::Pinged { n });
    producer.send(topic, "key", &envelope).await?;
    Ok(envelope)
}

#[tokio::test]
async fn typed_event_goes_through_a_consumer_group() -> anyhow::Result<()> {
    let (config, topic, producer) = setup().await?;
    let sent = send(&producer, &topic, 1).await?;
    let recorder = Recorder::default();
    let (shutdown, task) = start(&config, &topic, &recorder);

    let seen = poll_until(
        Duration::from_secs(30),
        "the event to be consumed",
        || async { Some(recorder.seen()).filter(|s| !s.is_empty()) },
    )
    .await?;
    assert_eq!(seen, vec![(sent.id, 1)]);

    shutdown.cancel();
    task.await??;
    Ok(())
}

#[tokio::test]
async fn failed_handler_sees_the_record_again_before_the_next() -> anyhow::Result<()> {
    let (config, topic, producer) = setup().await?;
    let first = send(&producer, &topic, 1).await?;
    let second = send(&producer, &topic, 2).await?;
    let recorder = Recorder::default();
    recorder
        .fail_once
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push(1);
    let (shutdown, task) = start(&config, &topic, &recorder);

    let seen = poll_until(
        Duration::from_secs(30),
        "both events to be handled",
        || async { Some(recorder.seen()).filter(|s| s.len() >= 3) },
    )
    .await?;
    assert_eq!(seen, vec![(first.id, 1), (first.id, 1), (second.id, 2)]);

    shutdown.cancel();
    task.await??;
    Ok(())
}

#[tokio::test]
async fn committed_record_is_not_seen_again_after_restart() -> anyhow::Result<()> {
    let (config, topic, producer) = setup().await?;
    let first = send(&producer, &topic, 1).await?;
    let recorder = Recorder::default();
    let (shutdown, task) = start(&config, &topic, &recorder);
    poll_until(Duration::from_secs(30), "the first event", || async {
        Some(()).filter(|()| !recorder.seen().is_empty())
    })
    .await?;
    shutdown.cancel();
    task.await??;
    assert_eq!(recorder.seen(), vec![(first.id, 1)]);

    // Same group, new consumer: it resumes after the committed offset.
    let second = send(&producer, &topic, 2).await?;
    let restarted = Recorder::default();
    let (shutdown, task) = start(&config, &topic, &restarted);
    let seen = poll_until(Duration::from_secs(30), "the second event", || async {
        Some(restarted.seen()).filter(|s| !s.is_empty())
    })
    .await?;
    assert_eq!(
        seen,
        vec![(second.id, 2)],
        "the committed first record came back"
    );

    shutdown.cancel();
    task.await??;
    Ok(())
}

#[tokio::test]
async fn unreadable_record_is_skipped_not_retried_forever() -> anyhow::Result<()> {
    let (config, topic, producer) = setup().await?;
    producer.send_bytes(&topic, "key", b"not json").await?;
    let after = send(&producer, &topic, 7).await?;
    let recorder = Recorder::default();
    let (shutdown, task) = start(&config, &topic, &recorder);

    let seen = poll_until(Duration::from_secs(30), "the readable event", || async {
        Some(recorder.seen()).filter(|s| !s.is_empty())
    })
    .await?;
    assert_eq!(seen, vec![(after.id, 7)]);

    shutdown.cancel();
    task.await??;
    Ok(())
}
