//! The reputation guard: hard bounces and complaints arriving on `email-events` pause their
//! mailbox once over its threshold (and not before), with the reason, the metric and a
//! `mailbox-events` record; the mailbox's messages wait, and resuming it sends them.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::sql_types::{Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use domain::clock::{Clock, ManualClock};
use domain::events::{EmailEvent, EmailRetry, MessageRef, RetryRequest};
use domain::kafka::{Envelope, Handler, Producer, TopicNames, ensure_topics};
use domain::testing::{get_text, poll_until, read_topic, test_config_for};
use scheduler::Application;
use scheduler::dispatch::Dispatcher;
use scheduler::outcomes::EventHandler;
use scheduler::reputation;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::world::{World, at};

#[derive(Debug, diesel::QueryableByName)]
struct MailboxRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    status_reason: Option<String>,
}

async fn mailbox(world: &World) -> anyhow::Result<MailboxRow> {
    Ok(
        diesel::sql_query("SELECT status, status_reason FROM mailboxes WHERE id = $1")
            .bind::<SqlUuid, _>(world.mailboxes[0])
            .get_result(&mut world.conn().await?)
            .await?,
    )
}

fn bounced(message_id: Uuid, enrollment_id: Uuid, hard: bool) -> EmailEvent {
    EmailEvent::Bounced {
        message: MessageRef {
            message_id,
            enrollment_id,
        },
        hard,
        diagnostic: Some("550 5.1.1 no such user".to_owned()),
    }
}

fn event(world: &World, at: DateTime<Utc>, body: EmailEvent) -> Envelope<EmailEvent> {
    let mut envelope = Envelope::new(world.workspace_id, body);
    envelope.occurred_at = at;
    envelope
}

/// Dispatches `n` first steps from the world's one mailbox: (enrollment, message) pairs.
async fn dispatched(
    world: &World,
    n: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    let enrollments = world.enroll(n, now - TimeDelta::minutes(1)).await?;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
    let dispatcher = Dispatcher::new(world.pool.clone(), clock, 100, "jobs".to_owned());
    assert_eq!(dispatcher.run_once().await?.dispatched, enrollments.len());
    let mut pairs = Vec::new();
    for enrollment in enrollments {
        pairs.push((
            enrollment,
            world.messages_of(enrollment).await?.remove(0).id,
        ));
    }
    Ok(pairs)
}

#[tokio::test]
async fn hard_bounces_pause_the_mailbox_over_its_rate_and_its_messages_wait_for_a_resume()
-> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let sends = dispatched(&world, 6, now).await?;
    let config = test_config_for(&world.db)?;
    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;
    let clock = Arc::new(ManualClock::new(now + TimeDelta::minutes(1)));
    let app = Application::build_with(
        config.clone(),
        TcpListener::bind("127.0.0.1:0")?,
        clock.clone(),
    )?;
    let metrics_url = format!("http://127.0.0.1:{}/metrics", app.admin_port());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let producer = Producer::new(&config.kafka)?;

    // The first three went out and bounced at the recipients' servers (the worker reports
    // them as hard bounces): 2/50 is within 5 %, 3/50 is over it.
    let applied = |n: i64| {
        let world = &world;
        async move {
            poll_until(Duration::from_secs(60), "bounces applied", || async {
                let stored = world
                    .count("SELECT count(*) AS n FROM events WHERE event_type = 'bounced'")
                    .await
                    .ok()?;
                (stored == n).then_some(())
            })
            .await
        }
    };
    for (enrollment, message) in &sends[..2] {
        let record = event(&world, now, bounced(*message, *enrollment, true));
        producer
            .send(&topics.email_events, &enrollment.to_string(), &record)
            .await?;
    }
    // A soft bounce is no bounce for the guard.
    let (enrollment, message) = sends[2];
    let soft = event(&world, now, bounced(message, enrollment, false));
    producer
        .send(&topics.email_events, &enrollment.to_string(), &soft)
        .await?;
    applied(2).await?;
    poll_until(
        Duration::from_secs(60),
        "the soft bounce applied",
        || async {
            let n = world
                .count("SELECT count(*) AS n FROM events WHERE event_type = 'soft_bounced'")
                .await
                .ok()?;
            (n == 1).then_some(())
        },
    )
    .await?;
    assert_eq!(mailbox(&world).await?.status, "active", "2/50 is 4 %");

    let hard = event(&world, now, bounced(message, enrollment, true));
    producer
        .send(&topics.email_events, &enrollment.to_string(), &hard)
        .await?;
    let paused = poll_until(Duration::from_secs(60), "the mailbox paused", || async {
        mailbox(&world).await.ok().filter(|m| m.status == "paused")
    })
    .await?;
    assert_eq!(
        paused.status_reason.as_deref(),
        Some("bounce rate 3/50 over 5%")
    );

    let records = read_topic(
        &config.kafka,
        &topics.mailbox_events,
        1,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(records.len(), 1);
    let mailbox_id = world.mailboxes[0].to_string();
    assert_eq!(records[0].key.as_deref(), Some(mailbox_id.as_str()));
    let announced = records[0].payload_json()?;
    assert_eq!(announced["type"], "paused");
    assert_eq!(announced["payload"]["mailbox_id"], mailbox_id.as_str());
    assert_eq!(announced["payload"]["reason"], "bounce rate 3/50 over 5%");
    assert_eq!(announced["payload"]["cause"], "bounce_rate");
    let (status, metrics) = get_text(&metrics_url).await?;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("mailboxes_auto_paused_total{reason=\"bounce_rate\"} 1"),
        "{metrics}"
    );

    // The other three were queued; the worker finds the mailbox paused and asks for a retry.
    for (enrollment, message) in &sends[3..] {
        let mut request = Envelope::new(
            world.workspace_id,
            EmailRetry::Retry(RetryRequest {
                message_id: *message,
                enrollment_id: *enrollment,
                mailbox_id: world.mailboxes[0],
                attempt: 1,
                not_before: None,
                error: "the mailbox is paused".to_owned(),
            }),
        );
        request.occurred_at = now + TimeDelta::minutes(1);
        producer
            .send(&topics.email_retries, &mailbox_id, &request)
            .await?;
    }
    let waiting_query = format!(
        "SELECT count(*) AS n FROM messages WHERE mailbox_id = '{mailbox_id}' \
            AND status = 'retrying' AND retry_at IS NULL AND attempts = 0"
    );
    poll_until(Duration::from_secs(60), "the messages waiting", || async {
        (world.count(&waiting_query).await.ok()? == 3).then_some(())
    })
    .await?;
    // However long the pause lasts, they wait: no retry is used up, nothing fails.
    clock.set(now + TimeDelta::days(3));
    let dispatcher = Dispatcher::new(
        world.pool.clone(),
        clock.clone(),
        100,
        topics.email_jobs.clone(),
    );
    assert_eq!(dispatcher.run_once().await?.retried, 0);
    assert_eq!(world.count(&waiting_query).await?, 3);
    for (enrollment, _) in &sends[3..] {
        assert_eq!(world.enrollment(*enrollment).await?.status, "active");
    }

    // Resumed (what the API's PUT {"status": "active"} writes): they go out again as the
    // same attempt. The topic holds the six jobs of the first dispatch too (the service's
    // relay published them when it started), in an order the claim chose, so the jobs are
    // told apart by message, not by position: the three waiting ones twice, the others once.
    world
        .exec(&format!(
            "UPDATE mailboxes SET status = 'active', status_reason = NULL WHERE id = '{mailbox_id}'"
        ))
        .await?;
    let jobs = read_topic(
        &config.kafka,
        &topics.email_jobs,
        9,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(jobs.len(), 9);
    let mut published: Vec<String> = Vec::new();
    for job in &jobs {
        let job = job.payload_json()?;
        assert_eq!(job["payload"]["attempt"], 1);
        published.push(
            job["payload"]["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    published.sort();
    let mut expected: Vec<String> = sends
        .iter()
        .chain(&sends[3..])
        .map(|(_, m)| m.to_string())
        .collect();
    expected.sort();
    assert_eq!(published, expected);

    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test]
async fn complaints_pause_at_the_mailboxs_own_threshold_not_below() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let sends = dispatched(&world, 4, now).await?;
    world
        .exec(&format!(
            "UPDATE messages SET status = 'sent', sent_at = '{now}'"
        ))
        .await?;
    world
        .exec(&format!(
            "UPDATE mailboxes SET max_complaint_rate = 0.01 WHERE id = '{}'",
            world.mailboxes[0]
        ))
        .await?;
    let handler = EventHandler::new(
        world.pool.clone(),
        reputation::Guard {
            topic: "test-mailbox-events".to_owned(),
        },
        crate::outcomes::webhooks(),
    );
    let complained = |(enrollment_id, message_id): (Uuid, Uuid)| {
        event(
            &world,
            now,
            EmailEvent::Complained {
                message: MessageRef {
                    message_id,
                    enrollment_id,
                },
            },
        )
    };

    // 2/200 is 1 %, the mailbox's line: not over it. A redelivered complaint counts once.
    let first = complained(sends[0]);
    handler.handle(first.clone()).await?;
    handler.handle(first).await?;
    handler.handle(complained(sends[1])).await?;
    let row = mailbox(&world).await?;
    assert_eq!((row.status.as_str(), row.status_reason), ("active", None));

    handler.handle(complained(sends[2])).await?;
    let row = mailbox(&world).await?;
    assert_eq!(row.status, "paused");
    assert_eq!(
        row.status_reason.as_deref(),
        Some("complaint rate 3/200 over 1%")
    );
    assert_eq!(
        world
            .count(
                "SELECT count(*) AS n FROM outbox WHERE topic = 'test-mailbox-events' \
                   AND payload->>'type' = 'paused' \
                   AND payload->'payload'->>'cause' = 'complaint_rate'"
            )
            .await?,
        1
    );

    // Paused already: a further complaint records the event and pauses nothing again.
    handler.handle(complained(sends[3])).await?;
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM outbox WHERE topic = 'test-mailbox-events'")
            .await?,
        1
    );
    Ok(())
}
