//! The batch consumer with several lanes against the real broker: batches of different
//! partitions handled at once, each key's records still handled once each and in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::kafka::{
    BatchHandler, Batching, ConsumerOptions, Envelope, Payload, Producer, ensure_topics,
    run_batch_consumer,
};
use domain::testing::{poll_until, test_config_with_url, unreachable_database_url};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
enum Numbered {
    Next { key: u32, n: u32 },
}

impl Payload for Numbered {
    const VERSION: u16 = 1;
}

const KEYS: u32 = 12;
const PER_KEY: u32 = 40;

/// Records what it handled, by key, and how many batches it was handling at most at once.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<HashMap<u32, Vec<u32>>>>,
    in_flight: Arc<Mutex<(usize, usize)>>,
}

impl Recorder {
    fn total(&self) -> usize {
        self.seen
            .lock()
            .map(|s| s.values().map(Vec::len).sum())
            .unwrap_or_default()
    }
}

impl BatchHandler<Numbered> for Recorder {
    async fn handle(&self, batch: &[Envelope<Numbered>]) -> anyhow::Result<()> {
        {
            let mut in_flight = self
                .in_flight
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            in_flight.0 += 1;
            in_flight.1 = in_flight.1.max(in_flight.0);
        }
        // Work that takes a while, as a database transaction does: other lanes go on.
        tokio::time::sleep(Duration::from_millis(20)).await;
        {
            let mut seen = self.seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            for envelope in batch {
                let Numbered::Next { key, n } = envelope.body;
                seen.entry(key).or_default().push(n);
            }
        }
        self.in_flight
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .0 -= 1;
        Ok(())
    }
}

#[tokio::test]
async fn lanes_handle_batches_at_once_each_key_in_order() -> anyhow::Result<()> {
    let mut config = test_config_with_url(&unreachable_database_url()?)?;
    config.kafka.partitions = 6;
    let topic = format!("{}numbered", config.kafka.topic_prefix);
    ensure_topics(&config.kafka, &[&topic]).await?;
    let producer = Producer::new(&config.kafka)?;
    for n in 0..PER_KEY {
        for key in 0..KEYS {
            let envelope = Envelope::new(Uuid::nil(), Numbered::Next { key, n });
            producer
                .send(&topic, &format!("key-{key}"), &envelope)
                .await?;
        }
    }

    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let options = ConsumerOptions::new("lanes", vec![topic.clone()]);
    let batching = Batching {
        max_records: 7,
        wait: Duration::from_millis(5),
        lanes: 3,
    };
    let task = tokio::spawn({
        let kafka = config.kafka.clone();
        let recorder = recorder.clone();
        let shutdown = shutdown.clone();
        async move { run_batch_consumer(&kafka, options, batching, recorder, shutdown).await }
    });
    let all = (KEYS * PER_KEY) as usize;
    poll_until(
        Duration::from_secs(60),
        "every record to be handled",
        || async { Some(recorder.total()).filter(|n| *n >= all) },
    )
    .await?;
    shutdown.cancel();
    task.await??;

    let seen = recorder
        .seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let in_order: Vec<u32> = (0..PER_KEY).collect();
    for key in 0..KEYS {
        assert_eq!(seen.get(&key), Some(&in_order), "key {key}");
    }
    let (_, most) = *recorder
        .in_flight
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    assert!(most > 1, "batches of different lanes were handled at once");
    assert!(most <= 3, "never more batches at once than lanes");
    Ok(())
}
