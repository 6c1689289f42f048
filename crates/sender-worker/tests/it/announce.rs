//! The `sent` announcements, published by the worker itself once recorded (not through the
//! outbox): once per email under an id derived from the message, again with the same id and
//! time by a job delivered after its message was recorded `sent`, and never lost when Kafka
//! refuses one: the job's offset stays unstored until it is acknowledged, so the job comes
//! back to the next worker, which announces it then.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use domain::events::EmailEvent;
use domain::kafka::producer::Delivered;
use domain::kafka::{Envelope, Producer};
use domain::testing::{ConsumedRecord, count_records, get_text, poll_until, read_topic};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

use crate::world::{Step, WAIT, World, greenmail_smtp, received, wait_received};

const STEP: Step = Step {
    subject: "Hello {{first_name|there}}",
    content: "Hi, a short note.",
    thread_with_previous: false,
};

/// A world with one message queued, and its recipient.
async fn one_queued_message() -> anyhow::Result<(World, String, Uuid)> {
    let world = World::new(greenmail_smtp()?, &[STEP]).await?;
    let to = format!("ann-{}@example.org", Uuid::now_v7().simple());
    let message = world.queue(world.enroll(&to, None).await?, 1).await?;
    Ok((world, to, message))
}

/// The `sent` events on `email-events`, once at least `n` are there.
async fn sent_events(world: &World, n: usize) -> anyhow::Result<Vec<ConsumedRecord>> {
    let records = read_topic(&world.config.kafka, &world.topics.email_events, n, WAIT).await?;
    Ok(records
        .into_iter()
        .filter(|r| r.payload_json().is_ok_and(|json| json["type"] == "sent"))
        .collect())
}

/// Every `sent` event `email-events` holds.
async fn all_sent_events(world: &World) -> anyhow::Result<Vec<ConsumedRecord>> {
    let total = count_records(&world.config.kafka, &world.topics.email_events).await?;
    sent_events(world, usize::try_from(total)?).await
}

async fn sent_at(world: &World, message: Uuid) -> anyhow::Result<DateTime<Utc>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Timestamptz)]
        sent_at: DateTime<Utc>,
    }
    let row: Row = diesel::sql_query("SELECT sent_at FROM messages WHERE id = $1")
        .bind::<SqlUuid, _>(message)
        .get_result(&mut world.conn().await?)
        .await?;
    Ok(row.sent_at)
}

/// Checks `record` is the `sent` of `message`, sent at `at`.
fn assert_sent_of(
    record: &ConsumedRecord,
    world: &World,
    message: Uuid,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let envelope = Envelope::<EmailEvent>::from_json(&record.payload)?;
    assert_eq!(envelope.id, EmailEvent::sent_id(message));
    assert_eq!(envelope.occurred_at, at);
    assert_eq!(envelope.workspace_id, world.workspace_id);
    let EmailEvent::Sent {
        message: about,
        step_order,
        ..
    } = envelope.body
    else {
        anyhow::bail!("not a sent event: {:?}", envelope.body);
    };
    assert_eq!(about.message_id, message);
    assert_eq!(step_order, 1);
    assert_eq!(record.key, Some(about.enrollment_id.to_string()));
    Ok(())
}

#[tokio::test]
async fn a_sent_email_is_announced_once_under_its_message_s_id() -> anyhow::Result<()> {
    let (world, to, message) = one_queued_message().await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;
    world.wait_for(message, &["sent"]).await?;

    let events = sent_events(&world, 1).await?;
    assert_eq!(events.len(), 1);
    assert_sent_of(&events[0], &world, message, sent_at(&world, message).await?)?;
    // Stopped, the worker has published all it will: nothing else came, and nothing of it
    // went through the outbox.
    worker.stop().await?;
    assert_eq!(
        count_records(&world.config.kafka, &world.topics.email_events).await?,
        1
    );
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM outbox WHERE topic LIKE '%email-events'")
            .await?,
        0
    );
    assert_eq!(wait_received(&to, 1).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_job_delivered_again_after_its_email_was_sent_announces_the_same_event()
-> anyhow::Result<()> {
    let (world, to, message) = one_queued_message().await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;
    world.wait_for(message, &["sent"]).await?;
    let first = sent_events(&world, 1).await?;

    // Kafka hands the job over again (as after a crash before its offset was stored).
    world.publish_job(message).await?;
    let events = sent_events(&world, 2).await?;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].payload, first[0].payload,
        "the same record: id, time and content"
    );
    assert_sent_of(&events[1], &world, message, sent_at(&world, message).await?)?;
    worker.stop().await?;
    assert_eq!(received(&to).await?.len(), 1, "one email for two jobs");
    assert_eq!(world.message(message).await?.attempts, 1);
    Ok(())
}

#[tokio::test]
async fn a_message_recorded_sent_whose_announcement_was_lost_is_announced_by_its_redelivered_job()
-> anyhow::Result<()> {
    let (world, to, message) = one_queued_message().await?;
    // What an earlier worker committed before it died, its announcement unpublished.
    let at: DateTime<Utc> = "2026-12-07T09:30:00.123456Z".parse()?;
    diesel::sql_query(
        "UPDATE messages SET status = 'sent', sent_at = $2, smtp_response = '250 OK', \
                subject = 'Hello there', worker_id = $3, lease_expires_at = NULL \
          WHERE id = $1",
    )
    .bind::<SqlUuid, _>(message)
    .bind::<Timestamptz, _>(at)
    .bind::<Text, _>("sender-worker-that-died")
    .execute(&mut world.conn().await?)
    .await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;

    let events = sent_events(&world, 1).await?;
    assert_eq!(events.len(), 1);
    assert_sent_of(&events[0], &world, message, at)?;
    worker.stop().await?;
    assert!(received(&to).await?.is_empty(), "no email sent again");
    let row = world.message(message).await?;
    assert_eq!(row.worker_id.as_deref(), Some("sender-worker-that-died"));
    assert_eq!(row.attempts, 1);
    Ok(())
}

/// Makes the broker refuse every record of `topic` (`max.message.bytes` below a record
/// batch's own header), or accept them again.
async fn refuse_records(world: &World, topic: &str, refuse: bool) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &world.config.kafka.brokers)
        .create()?;
    let limit = if refuse { "1" } else { "1048588" };
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", limit);
    for result in admin.alter_configs(&[change], &AdminOptions::new()).await? {
        result.map_err(|(resource, code)| anyhow::anyhow!("{resource:?}: {code}"))?;
    }
    if refuse {
        // Applied by the broker a little after the answer: wait until a record is refused
        // (a probe that still got through is no `sent` event, and the tests count only those).
        let producer = Producer::new(&world.config.kafka)?;
        poll_until(WAIT, &format!("{topic} to refuse records"), || async {
            match producer.send_bytes(topic, "probe", b"probe").await {
                Err(domain::kafka::producer::ProduceError::Kafka(
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                )) => Some(()),
                _ => None,
            }
        })
        .await?;
    }
    Ok(())
}

/// The offset the worker's group committed for the partition of `job`, if any.
async fn committed(world: &World, job: Delivered) -> anyhow::Result<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &world.config.kafka.brokers)
        .set(
            "group.id",
            format!(
                "{}{}",
                world.config.kafka.topic_prefix,
                sender_worker::worker::CONSUMER_GROUP
            ),
        )
        .create()?;
    let mut list = TopicPartitionList::new();
    list.add_partition(&world.topics.email_jobs, job.partition);
    let list = tokio::task::spawn_blocking(move || {
        consumer.committed_offsets(list, Duration::from_secs(10))
    })
    .await??;
    Ok(
        match list.find_partition(&world.topics.email_jobs, job.partition) {
            Some(element) => match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            },
            None => None,
        },
    )
}

/// How many records the worker at `admin_port` failed to publish to `topic`.
async fn produce_errors(admin_port: u16, topic: &str) -> anyhow::Result<f64> {
    let (_, metrics) = get_text(&format!("http://127.0.0.1:{admin_port}/metrics")).await?;
    let series = format!("kafka_produce_errors_total{{topic=\"{topic}\"}} ");
    Ok(metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0))
}

#[tokio::test]
async fn a_sent_announcement_kafka_refuses_keeps_its_job_until_one_is_acknowledged()
-> anyhow::Result<()> {
    let (world, to, message) = one_queued_message().await?;
    let topic = world.topics.email_events.clone();
    refuse_records(&world, &topic, true).await?;
    let job = world.publish_job(message).await?;

    // Sent and recorded, but Kafka refuses its announcement: the worker keeps trying, and
    // the job's offset is not stored.
    let worker = world.start_worker()?;
    world.wait_for(message, &["sent"]).await?;
    let port = worker.admin_port;
    poll_until(WAIT, "the announcement to be refused", || async {
        produce_errors(port, &topic)
            .await
            .ok()
            .filter(|n| *n >= 1.0)
    })
    .await?;
    // Stopped while it is still refused: the offset stays behind the job.
    worker.stop().await?;
    assert!(
        committed(&world, job)
            .await?
            .is_none_or(|o| o <= job.offset),
        "the job's offset was committed before its announcement was acknowledged"
    );

    // The next worker is handed the job again and announces the recorded `sent`, failing
    // too while Kafka refuses it, then succeeding once Kafka accepts it.
    let worker = world.start_worker()?;
    let port = worker.admin_port;
    let before = produce_errors(port, &topic).await?;
    poll_until(WAIT, "the repeat to be refused", || async {
        produce_errors(port, &topic)
            .await
            .ok()
            .filter(|n| *n > before)
    })
    .await?;
    refuse_records(&world, &topic, false).await?;
    let events = sent_events(&world, 1).await?;
    assert_eq!(events.len(), 1);
    assert_sent_of(&events[0], &world, message, sent_at(&world, message).await?)?;
    poll_until(WAIT, "the job's offset to be committed", || async {
        committed(&world, job)
            .await
            .ok()
            .flatten()
            .filter(|o| *o > job.offset)
    })
    .await?;
    worker.stop().await?;
    assert_eq!(
        all_sent_events(&world).await?.len(),
        1,
        "acknowledged once, published once"
    );
    assert_eq!(received(&to).await?.len(), 1, "one email");
    assert_eq!(world.message(message).await?.attempts, 1);
    Ok(())
}
