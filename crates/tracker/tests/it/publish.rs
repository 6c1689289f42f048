//! A burst larger than librdkafka's buffer is slowed into Kafka, not dropped.

use std::time::Duration;

use domain::events::{Client, EmailEvent, MessageRef};
use domain::kafka::{TopicNames, ensure_topics};
use domain::testing::{TestDatabase, count_records, poll_until, test_config_for};
use tracker::publish::Publisher;
use uuid::Uuid;

#[tokio::test]
async fn a_full_buffer_backlogs_instead_of_dropping_and_close_flushes() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let config = test_config_for(&db)?;
    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;
    let (publisher, backlog) =
        Publisher::with_buffer_limit(&config.kafka, topics.email_events.clone(), 5)?;
    let events = 300;
    for _ in 0..events {
        let (enrollment_id, message_id) = (Uuid::now_v7(), Uuid::now_v7());
        publisher.publish(
            Uuid::now_v7(),
            enrollment_id,
            EmailEvent::Opened {
                message: MessageRef {
                    message_id,
                    enrollment_id,
                },
                is_bot: false,
                bot_reason: None,
                client: Client::default(),
            },
        );
    }
    publisher.close(backlog, Duration::from_secs(30)).await;
    let counted = poll_until(Duration::from_secs(10), "all records", || async {
        let n = count_records(&config.kafka, &topics.email_events)
            .await
            .ok()?;
        (n == events).then_some(n)
    })
    .await?;
    assert_eq!(counted, events);
    Ok(())
}
