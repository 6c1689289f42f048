//! Events and retry requests moving enrollments: applied directly against a real database,
//! and once end to end through a real Kafka topic with a duplicate delivery.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::{AsyncConnection as _, RunQueryDsl};
use domain::clock::{Clock, ManualClock};
use domain::events::{Client, EmailEvent, EmailRetry, Inbound, MessageRef, RetryRequest};
use domain::kafka::{ConsumerOptions, Envelope, Producer, TopicNames, ensure_topics, run_consumer};
use domain::testing::{poll_until, test_config_for};
use scheduler::dispatch::Dispatcher;
use scheduler::outcomes::{self, EventHandler};
use scheduler::retries::{self, Outcome};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::world::{World, at};

/// A world with `steps`, one enrollment dispatched at `now`: its id and first message's.
async fn one_sent_step(
    steps: &[(i32, i32, i32)],
    now: DateTime<Utc>,
) -> anyhow::Result<(World, Uuid, Uuid)> {
    let world = World::new(1, 100, steps).await?;
    let enrollment = world.enroll(1, now).await?.remove(0);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
    let dispatcher = Dispatcher::new(world.pool.clone(), clock, 10, "jobs".to_owned());
    assert_eq!(dispatcher.run_once().await?.dispatched, 1);
    let message = world.messages_of(enrollment).await?.remove(0).id;
    Ok((world, enrollment, message))
}

fn envelope(world: &World, at: DateTime<Utc>, event: EmailEvent) -> Envelope<EmailEvent> {
    let mut envelope = Envelope::new(world.workspace_id, event);
    envelope.occurred_at = at;
    envelope
}

fn sent(message_id: Uuid, enrollment_id: Uuid, step_order: i32) -> EmailEvent {
    EmailEvent::Sent {
        message: MessageRef {
            message_id,
            enrollment_id,
        },
        step_order,
        message_id_header: format!("<{message_id}@example.com>"),
    }
}

async fn apply(world: &World, envelope: &Envelope<EmailEvent>) -> anyhow::Result<bool> {
    let mut conn = world.conn().await?;
    Ok(conn
        .transaction(async |tx| outcomes::apply(tx, envelope).await)
        .await?)
}

#[tokio::test]
async fn sent_advances_one_step_to_its_wait_inside_the_window() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) =
        one_sent_step(&[(0, 0, 0), (2, 0, 0), (0, 3, 0)], now).await?;
    let sent_at = now + TimeDelta::minutes(1);

    let first = envelope(&world, sent_at, sent(message, enrollment, 1));
    assert!(apply(&world, &first).await?);
    // The same record again (a redelivery) and a stale `sent` of the same step with another
    // id: neither moves the enrollment a second time.
    assert!(!apply(&world, &first).await?);
    let stale = envelope(&world, sent_at, sent(message, enrollment, 1));
    assert!(apply(&world, &stale).await?);

    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.status, "active");
    assert_eq!(row.current_step, 2);
    assert_eq!(row.next_send_at, Some(sent_at + TimeDelta::days(2)));
    let first_message = world.messages_of(enrollment).await?.remove(0);
    assert_eq!(first_message.status, "sent");
    // The thread's mailbox is fixed by the first send.
    assert_eq!(row.mailbox_id, Some(first_message.mailbox_id));
    assert_eq!(
        world
            .count("SELECT sent AS n FROM step_stats ORDER BY sent DESC LIMIT 1")
            .await?,
        1
    );

    // Step 2 waits 3 hours after step 2's send: 15:30 + 3 h is past the 17:00 close, so the
    // step moves to the next morning's opening.
    let second_sent = at("2026-03-04T15:30:00Z")?;
    world
        .exec(&format!(
            "UPDATE enrollments SET next_send_at = NULL WHERE id = '{enrollment}'"
        ))
        .await?;
    assert!(
        apply(
            &world,
            &envelope(&world, second_sent, sent(Uuid::now_v7(), enrollment, 2))
        )
        .await?
    );
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.current_step, 3);
    assert_eq!(row.next_send_at, Some(at("2026-03-05T09:00:00Z")?));

    // After the last step: completed.
    assert!(
        apply(
            &world,
            &envelope(
                &world,
                at("2026-03-05T09:01:00Z")?,
                sent(Uuid::now_v7(), enrollment, 3)
            )
        )
        .await?
    );
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.status, "completed");
    assert_eq!(row.next_send_at, None);
    Ok(())
}

#[tokio::test]
async fn a_reply_stops_the_enrollment_only_when_the_sequence_says_so() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    let reply = || {
        envelope(
            &world,
            now,
            EmailEvent::Replied {
                message: MessageRef {
                    message_id: message,
                    enrollment_id: enrollment,
                },
                inbound: Inbound::default(),
            },
        )
    };
    world
        .exec("UPDATE sequences SET stop_on_reply = false")
        .await?;
    assert!(apply(&world, &reply()).await?);
    assert_eq!(world.enrollment(enrollment).await?.status, "active");

    world
        .exec("UPDATE sequences SET stop_on_reply = true")
        .await?;
    assert!(apply(&world, &reply()).await?);
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.status, "replied");
    assert_eq!(row.next_send_at, None);
    Ok(())
}

#[tokio::test]
async fn an_unsubscribe_suppresses_the_address_and_stops_all_its_enrollments() -> anyhow::Result<()>
{
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    // The same contact in a second sequence of the workspace.
    let other = Uuid::now_v7();
    world
        .exec(&format!(
            "INSERT INTO sequences (id, workspace_id, name, status) \
             SELECT '{other}', workspace_id, 'other', 'active' FROM sequences"
        ))
        .await?;
    let other_enrollment = Uuid::now_v7();
    world
        .exec(&format!(
            "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, next_send_at) \
             SELECT '{other_enrollment}', workspace_id, '{other}', contact_id, now() \
               FROM enrollments WHERE id = '{enrollment}'"
        ))
        .await?;

    let unsubscribed = envelope(
        &world,
        now,
        EmailEvent::Unsubscribed {
            message: MessageRef {
                message_id: message,
                enrollment_id: enrollment,
            },
            client: Client {
                user_agent: Some("Mozilla/5.0".to_owned()),
                client_ip: Some("203.0.113.0".to_owned()),
            },
        },
    );
    assert!(apply(&world, &unsubscribed).await?);
    assert_eq!(
        world
            .count(
                "SELECT count(*) AS n FROM events WHERE event_type = 'unsubscribed' \
                    AND user_agent = 'Mozilla/5.0' AND client_ip = '203.0.113.0'"
            )
            .await?,
        1,
        "the event keeps who made the request"
    );

    assert_eq!(world.enrollment(enrollment).await?.status, "unsubscribed");
    assert_eq!(
        world.enrollment(other_enrollment).await?.status,
        "unsubscribed"
    );
    assert_eq!(
        world
            .count(
                "SELECT count(*) AS n FROM suppressions s JOIN contacts c \
                   ON c.email = s.email AND c.workspace_id = s.workspace_id \
                 WHERE s.reason = 'unsubscribed' AND c.status = 'unsubscribed'"
            )
            .await?,
        1
    );
    assert_eq!(
        world
            .count("SELECT unsubscribed AS n FROM step_stats WHERE unsubscribed > 0")
            .await?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_hard_bounce_stops_and_marks_the_contact_a_soft_one_does_not() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    let bounce = |hard| {
        envelope(
            &world,
            now,
            EmailEvent::Bounced {
                message: MessageRef {
                    message_id: message,
                    enrollment_id: enrollment,
                },
                hard,
                diagnostic: Some("550 5.1.1 no such user".to_owned()),
            },
        )
    };
    assert!(apply(&world, &bounce(false)).await?);
    assert_eq!(world.enrollment(enrollment).await?.status, "active");

    assert!(apply(&world, &bounce(true)).await?);
    assert_eq!(world.enrollment(enrollment).await?.status, "bounced");
    assert_eq!(world.messages_of(enrollment).await?[0].status, "bounced");
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM contacts WHERE status = 'bounced'")
            .await?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_terminal_failure_fails_the_message_and_the_enrollment() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    let failed = envelope(
        &world,
        now,
        EmailEvent::Failed {
            message: MessageRef {
                message_id: message,
                enrollment_id: enrollment,
            },
            reason: "550 relay denied".to_owned(),
        },
    );
    assert!(apply(&world, &failed).await?);
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.status, "failed");
    assert_eq!(row.stop_reason.as_deref(), Some("send_failed"));
    assert_eq!(world.messages_of(enrollment).await?[0].status, "failed");
    Ok(())
}

fn retry(message_id: Uuid, enrollment_id: Uuid, mailbox_id: Uuid, attempt: u32) -> EmailRetry {
    EmailRetry::Retry(RetryRequest {
        message_id,
        enrollment_id,
        mailbox_id,
        attempt,
        not_before: None,
        error: "421 try again later".to_owned(),
    })
}

#[tokio::test]
async fn retries_follow_the_backoff_then_fail_the_message() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0)], now).await?;
    let backoff = [Duration::from_secs(300)];
    let mailbox = world.mailboxes[0];
    let apply_retry = async |attempt: u32| -> anyhow::Result<Outcome> {
        let mut record = Envelope::new(
            world.workspace_id,
            retry(message, enrollment, mailbox, attempt),
        );
        record.occurred_at = now;
        let EmailRetry::Retry(request) = record.body.clone();
        let mut conn = world.conn().await?;
        Ok(conn
            .transaction(async |tx| retries::apply(tx, &record, &request, &backoff).await)
            .await?)
    };

    assert_eq!(apply_retry(1).await?, Outcome::Scheduled);
    assert_eq!(apply_retry(1).await?, Outcome::Ignored);
    #[derive(diesel::QueryableByName)]
    struct RetryAt {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
        retry_at: Option<DateTime<Utc>>,
    }
    let row: RetryAt = diesel::sql_query("SELECT retry_at FROM messages")
        .get_result(&mut world.conn().await?)
        .await?;
    assert_eq!(row.retry_at, Some(now + TimeDelta::minutes(5)));

    // The dispatcher sends attempt 2; it fails too, and the schedule has no third try.
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now + TimeDelta::minutes(5)));
    let dispatcher = Dispatcher::new(world.pool.clone(), clock, 10, "jobs".to_owned());
    assert_eq!(dispatcher.run_once().await?.retried, 1);
    assert_eq!(apply_retry(2).await?, Outcome::Failed);
    assert_eq!(apply_retry(2).await?, Outcome::Ignored);

    assert_eq!(world.messages_of(enrollment).await?[0].status, "failed");
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.status, "failed");
    assert_eq!(row.stop_reason.as_deref(), Some("retries_exhausted"));
    assert_eq!(
        world
            .count("SELECT failed AS n FROM step_stats WHERE failed > 0")
            .await?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_duplicate_delivery_through_kafka_changes_nothing() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) =
        one_sent_step(&[(0, 0, 0), (1, 0, 0), (1, 0, 0)], now).await?;
    let config = test_config_for(&world.db)?;
    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;
    let producer = Producer::new(&config.kafka)?;
    let key = enrollment.to_string();

    let record = envelope(&world, now, sent(message, enrollment, 1));
    producer.send(&topics.email_events, &key, &record).await?;
    producer.send(&topics.email_events, &key, &record).await?;
    // Same key, so same partition and after both copies: once it is stored, both were handled.
    let marker = envelope(
        &world,
        now,
        EmailEvent::Opened {
            message: MessageRef {
                message_id: message,
                enrollment_id: enrollment,
            },
            is_bot: false,
            bot_reason: None,
            client: Client::default(),
        },
    );
    producer.send(&topics.email_events, &key, &marker).await?;

    let shutdown = CancellationToken::new();
    let kafka = config.kafka.clone();
    let options = ConsumerOptions::new("scheduler-test", vec![topics.email_events.clone()]);
    let handler = EventHandler::new(world.pool.clone());
    let stop = shutdown.clone();
    let consumer = tokio::spawn(async move { run_consumer(&kafka, options, handler, stop).await });
    let marker_query = format!(
        "SELECT count(*) AS n FROM events WHERE id = '{}'",
        marker.id
    );
    poll_until(
        Duration::from_secs(60),
        "the marker event stored",
        || async { matches!(world.count(&marker_query).await, Ok(1)).then_some(()) },
    )
    .await?;
    shutdown.cancel();
    consumer.await??;

    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM events WHERE event_type = 'sent'")
            .await?,
        1
    );
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.current_step, 2);
    assert_eq!(row.next_send_at, Some(now + TimeDelta::days(1)));
    Ok(())
}
