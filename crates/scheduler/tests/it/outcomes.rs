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
use scheduler::reputation;
use scheduler::retries::{self, Outcome};
use scheduler::webhook_events::Webhooks;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::world::{World, at};

/// Where the direct applications below announce what they recorded.
pub const WEBHOOK_EVENTS: &str = "test-webhook-events";

pub fn webhooks() -> Webhooks {
    Webhooks {
        topic: WEBHOOK_EVENTS.to_owned(),
    }
}

/// A world with `steps`, one enrollment dispatched at `now` (its first message handed to a
/// worker): its id and the message's.
pub async fn one_dispatched_step(
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

/// [`one_dispatched_step`] with the message sent at `now`, as the sender worker marks it
/// before announcing its `sent`.
pub async fn one_sent_step(
    steps: &[(i32, i32, i32)],
    now: DateTime<Utc>,
) -> anyhow::Result<(World, Uuid, Uuid)> {
    let (world, enrollment, message) = one_dispatched_step(steps, now).await?;
    world.sent_by_worker(&[message], now).await?;
    Ok((world, enrollment, message))
}

pub fn envelope(world: &World, at: DateTime<Utc>, event: EmailEvent) -> Envelope<EmailEvent> {
    let mut envelope = Envelope::new(world.workspace_id, event);
    envelope.occurred_at = at;
    envelope
}

pub fn sent(message_id: Uuid, enrollment_id: Uuid, step_order: i32) -> EmailEvent {
    EmailEvent::Sent {
        message: MessageRef {
            message_id,
            enrollment_id,
        },
        step_order,
        message_id_header: format!("<{message_id}@example.com>"),
    }
}

pub async fn apply(world: &World, envelope: &Envelope<EmailEvent>) -> anyhow::Result<bool> {
    let mut conn = world.conn().await?;
    Ok(conn
        .transaction(async |tx| outcomes::apply(tx, envelope, &webhooks()).await)
        .await?)
}

#[tokio::test]
async fn sent_advances_one_step_to_its_wait_inside_the_window() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) =
        one_sent_step(&[(0, 0, 0), (2, 0, 0), (0, 3, 0)], now).await?;
    let sent_at = now + TimeDelta::minutes(1);
    let version = format!("SELECT xmin::text::int8 AS n FROM messages WHERE id = '{message}'");
    let written_by_worker = world.count(&version).await?;

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
    assert_eq!(
        world.count(&version).await?,
        written_by_worker,
        "the message is left as the worker wrote it"
    );
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
    crate::webhook_events::subscribe(&world, &[]).await?;
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
    // Announced: the unsubscribe, then each enrollment it stopped, keyed by its own id.
    let announced = crate::webhook_events::announced_on(&world, WEBHOOK_EVENTS).await?;
    let described: Vec<[String; 3]> = announced
        .iter()
        .map(|(key, e)| {
            let sequence = e.body.data["sequence_id"].as_str().unwrap_or_default();
            [key.clone(), e.body.event_type.clone(), sequence.to_owned()]
        })
        .collect();
    let [unsubscribed, stops @ ..] = described.as_slice() else {
        anyhow::bail!("nothing announced");
    };
    let row = |id: Uuid, event_type: &str, sequence: Uuid| {
        [id.to_string(), event_type.to_owned(), sequence.to_string()]
    };
    assert_eq!(
        unsubscribed,
        &row(enrollment, "contact.unsubscribed", world.sequence_id)
    );
    let mut stops = stops.to_vec();
    stops.sort();
    let mut expected = vec![
        row(enrollment, "enrollment.stopped", world.sequence_id),
        row(other_enrollment, "enrollment.stopped", other),
    ];
    expected.sort();
    assert_eq!(stops, expected);
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
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM suppressions")
            .await?,
        0,
        "a soft bounce suppresses nothing"
    );
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM events WHERE event_type = 'soft_bounced'")
            .await?,
        1
    );

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
async fn a_bounce_read_before_the_sent_event_stays_a_bounce() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    // The inbox watcher's bounce and the sender worker's `sent` come through different
    // producers; the bounce can be applied first, and the `sent` after it (which writes
    // nothing to the message) leaves it a bounce.
    let bounce = envelope(
        &world,
        now,
        EmailEvent::Bounced {
            message: MessageRef {
                message_id: message,
                enrollment_id: enrollment,
            },
            hard: true,
            diagnostic: Some("5.1.1 user unknown".to_owned()),
        },
    );
    assert!(apply(&world, &bounce).await?);
    assert!(apply(&world, &envelope(&world, now, sent(message, enrollment, 1))).await?);
    assert_eq!(world.messages_of(enrollment).await?[0].status, "bounced");
    let state = world.enrollment(enrollment).await?;
    assert_eq!(state.status, "bounced");
    assert_eq!(
        state.current_step, 1,
        "a stopped enrollment does not advance"
    );
    Ok(())
}

/// A second enrollment of the world's sequence, dispatched and sent at `now`: its id and
/// message's.
async fn another_sent_step(world: &World, now: DateTime<Utc>) -> anyhow::Result<(Uuid, Uuid)> {
    let enrollment = world.enroll(1, now).await?.remove(0);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
    let dispatcher = Dispatcher::new(world.pool.clone(), clock, 10, "jobs".to_owned());
    assert_eq!(dispatcher.run_once().await?.dispatched, 1);
    let message = world.messages_of(enrollment).await?.remove(0).id;
    world.sent_by_worker(&[message], now).await?;
    Ok((enrollment, message))
}

fn auto_replied(message_id: Uuid, enrollment_id: Uuid) -> EmailEvent {
    EmailEvent::AutoReplied {
        message: MessageRef {
            message_id,
            enrollment_id,
        },
        inbound: Inbound {
            inbound_message_id: Some(format!("<ooo-{message_id}@example.org>")),
            from: Some("prospect@example.org".to_owned()),
            subject: Some("Automatic reply: Subject".to_owned()),
        },
        reason: "Auto-Submitted: auto-replied".to_owned(),
    }
}

#[tokio::test]
async fn an_auto_reply_is_recorded_and_stops_only_when_the_sequence_says_so() -> anyhow::Result<()>
{
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    assert!(apply(&world, &envelope(&world, now, sent(message, enrollment, 1))).await?);
    let before = world.enrollment(enrollment).await?;
    assert_eq!(before.current_step, 2);
    assert_eq!(before.next_send_at, Some(now + TimeDelta::days(1)));

    // stop_on_auto_reply is off by default: recorded, and the enrollment goes on.
    let later = now + TimeDelta::minutes(5);
    assert!(
        apply(
            &world,
            &envelope(&world, later, auto_replied(message, enrollment))
        )
        .await?
    );
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.status, "active");
    assert_eq!(row.current_step, 2);
    assert_eq!(row.next_send_at, before.next_send_at);
    assert_eq!(row.stop_reason, None);
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM events WHERE event_type = 'auto_replied' \
                    AND enrollment_id = '{enrollment}' AND message_id = '{message}' \
                    AND payload->>'reason' = 'Auto-Submitted: auto-replied' \
                    AND payload->'inbound'->>'subject' = 'Automatic reply: Subject'"
            ))
            .await?,
        1
    );
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM events WHERE event_type = 'replied'")
            .await?,
        0,
        "an automatic answer is not a reply"
    );

    // Once the sequence says so, an automatic answer stops the next enrollment.
    world
        .exec("UPDATE sequences SET stop_on_auto_reply = true")
        .await?;
    let (second, second_message) = another_sent_step(&world, now).await?;
    assert!(
        apply(
            &world,
            &envelope(&world, later, auto_replied(second_message, second))
        )
        .await?
    );
    let row = world.enrollment(second).await?;
    assert_eq!(row.status, "replied");
    assert_eq!(row.stop_reason.as_deref(), Some("auto_replied"));
    assert_eq!(row.next_send_at, None);
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM events WHERE event_type = 'auto_replied'")
            .await?,
        2
    );
    // The first enrollment is untouched by the second one's answer.
    assert_eq!(world.enrollment(enrollment).await?.status, "active");
    Ok(())
}

#[tokio::test]
async fn a_hard_bounce_suppresses_the_address_and_stops_all_its_enrollments() -> anyhow::Result<()>
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
    // A contact of the workspace that did not bounce.
    let (bystander, _) = another_sent_step(&world, now).await?;

    let bounce = || {
        envelope(
            &world,
            now,
            EmailEvent::Bounced {
                message: MessageRef {
                    message_id: message,
                    enrollment_id: enrollment,
                },
                hard: true,
                diagnostic: Some("550 5.1.1 user unknown".to_owned()),
            },
        )
    };
    assert!(apply(&world, &bounce()).await?);
    // A second report of the same bounce (another envelope) adds no second suppression.
    assert!(apply(&world, &bounce()).await?);

    let suppressed = format!(
        "SELECT count(*) AS n FROM suppressions s JOIN contacts c \
           ON c.email = s.email AND c.workspace_id = s.workspace_id \
           JOIN enrollments e ON e.contact_id = c.id \
         WHERE e.id = '{enrollment}' AND s.reason = 'bounced' AND c.status = 'bounced'"
    );
    assert_eq!(world.count(&suppressed).await?, 1);
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM suppressions")
            .await?,
        1
    );

    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.status, "bounced");
    assert_eq!(row.next_send_at, None);
    let other_row = world.enrollment(other_enrollment).await?;
    assert_eq!(other_row.status, "bounced");
    assert_eq!(other_row.stop_reason.as_deref(), Some("hard_bounce"));
    assert_eq!(other_row.next_send_at, None);
    assert_eq!(world.messages_of(enrollment).await?[0].status, "bounced");

    assert_eq!(world.enrollment(bystander).await?.status, "active");
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
    let (world, enrollment, message) = one_dispatched_step(&[(0, 0, 0)], now).await?;
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
            .transaction(async |tx| {
                retries::apply(tx, &record, &request, &backoff, &webhooks()).await
            })
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
    crate::webhook_events::subscribe(&world, &[]).await?;
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
    let handler = EventHandler::new(
        world.pool.clone(),
        reputation::Guard {
            topic: topics.mailbox_events.clone(),
        },
        Webhooks {
            topic: topics.webhook_events.clone(),
        },
    );
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
    // Announced once each, on the configured topic, in the order they were applied.
    let announced = crate::webhook_events::announced_on(&world, &topics.webhook_events).await?;
    let types: Vec<&str> = announced
        .iter()
        .map(|(_, e)| e.body.event_type.as_str())
        .collect();
    assert_eq!(types, ["message.sent", "message.opened"]);
    assert_eq!(announced[0].1.id, record.id);
    Ok(())
}

#[tokio::test]
async fn a_held_message_pauses_the_enrollment_until_it_is_resumed() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_dispatched_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    // What the sender worker writes when a variable has no value.
    world
        .exec(&format!(
            "UPDATE messages SET status = 'cancelled', \
                    last_error = 'missing_variable: first_name' WHERE id = '{message}'"
        ))
        .await?;
    let held = envelope(
        &world,
        now,
        EmailEvent::Held {
            message: MessageRef {
                message_id: message,
                enrollment_id: enrollment,
            },
            step_order: 1,
            reason: "missing_variable: first_name".to_owned(),
        },
    );
    assert!(apply(&world, &held).await?);
    assert!(!apply(&world, &held).await?, "a redelivery changes nothing");
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.status, "paused");
    assert_eq!(
        row.stop_reason.as_deref(),
        Some("missing_variable: first_name")
    );
    assert_eq!(row.next_send_at, None);
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM events WHERE event_type = 'held'")
            .await?,
        1
    );

    // Resuming (what the API does) makes it due; the next dispatch queues the same message
    // again as its second attempt, and nothing else.
    let mut conn = world.conn().await?;
    let resumed = domain::db::enrollments::transition(
        &mut conn,
        world.workspace_id,
        enrollment,
        &["paused"],
        "active",
        None,
    )
    .await?;
    assert!(resumed);
    let row = world.enrollment(enrollment).await?;
    assert_eq!((row.status.as_str(), row.stop_reason), ("active", None));
    assert!(row.next_send_at.is_some());
    let later: Arc<dyn Clock> = Arc::new(ManualClock::new(at("2030-03-04T10:00:00Z")?));
    let dispatcher = Dispatcher::new(world.pool.clone(), later, 10, "jobs".to_owned());
    assert_eq!(dispatcher.run_once().await?.dispatched, 1);
    let messages = world.messages_of(enrollment).await?;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, message);
    assert_eq!(
        (messages[0].status.as_str(), messages[0].attempts),
        ("queued", 2)
    );
    let header = messages[0].message_id_header.clone().unwrap_or_default();
    assert!(header.starts_with(&format!("<{message}@")), "{header}");
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM send_jobs WHERE attempt = 2")
            .await?,
        1,
        "a job for the second attempt"
    );
    Ok(())
}

fn opened(message_id: Uuid, enrollment_id: Uuid, is_bot: bool) -> EmailEvent {
    EmailEvent::Opened {
        message: MessageRef {
            message_id,
            enrollment_id,
        },
        is_bot,
        bot_reason: None,
        client: Client::default(),
    }
}

#[tokio::test]
async fn a_batch_applies_in_order_once_each_and_counts_each_outcome_once() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) =
        one_sent_step(&[(0, 0, 0), (1, 0, 0), (1, 0, 0)], now).await?;
    crate::webhook_events::subscribe(&world, &[]).await?;
    let first_sent = envelope(&world, now, sent(message, enrollment, 1));
    let first_open = envelope(&world, now, opened(message, enrollment, false));
    let batch = vec![
        first_sent,
        first_open.clone(),
        // A copy within the batch, a second human open and a bot's: one row each but the
        // copy, one human and one bot open counted.
        first_open.clone(),
        envelope(&world, now, opened(message, enrollment, false)),
        envelope(&world, now, opened(message, enrollment, true)),
        // The same step sent again (stale): recorded, the enrollment stays at step 2.
        envelope(&world, now, sent(message, enrollment, 1)),
    ];
    let mut conn = world.conn().await?;
    let outcomes = conn
        .transaction(async |tx| outcomes::apply_batch(tx, &batch, &webhooks(), None).await)
        .await?;
    let applied: Vec<bool> = outcomes.iter().map(|o| o.applied).collect();
    assert_eq!(applied, [true, true, false, true, true, true]);
    assert_eq!(world.count("SELECT count(*) AS n FROM events").await?, 5);
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.current_step, 2);
    assert_eq!(row.next_send_at, Some(now + TimeDelta::days(1)));
    for (column, want) in [("sent", 1), ("opened_human", 1), ("opened_bot", 1)] {
        let sql = format!("SELECT coalesce(sum({column}), 0)::bigint AS n FROM step_stats");
        assert_eq!(world.count(&sql).await?, want, "{column}");
    }
    let announced = world
        .count("SELECT count(*) AS n FROM outbox WHERE topic = 'test-webhook-events'")
        .await?;
    assert_eq!(announced, 5);

    // The whole batch delivered again changes nothing.
    let again = conn
        .transaction(async |tx| outcomes::apply_batch(tx, &batch, &webhooks(), None).await)
        .await?;
    assert!(again.iter().all(|o| !o.applied));
    assert_eq!(world.count("SELECT count(*) AS n FROM events").await?, 5);
    assert_eq!(world.enrollment(enrollment).await?.current_step, 2);
    let announced_again = world
        .count("SELECT count(*) AS n FROM outbox WHERE topic = 'test-webhook-events'")
        .await?;
    assert_eq!(announced_again, 5);
    Ok(())
}
