//! The scheduler service as deployed, in-process: due steps come out on `email-jobs` through
//! the outbox relay, and a `sent` on `email-events` moves the enrollment on.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use domain::clock::ManualClock;
use domain::events::{EmailEvent, MessageRef};
use domain::kafka::{Envelope, Producer, TopicNames, ensure_topics};
use domain::testing::{count_records, poll_until, read_topic, test_config_for};
use scheduler::Application;
use tokio_util::sync::CancellationToken;

use crate::world::{World, at};

#[tokio::test]
async fn due_steps_reach_email_jobs_and_sent_events_advance_them() -> anyhow::Result<()> {
    let world = World::new(2, 100, &[(0, 0, 0), (2, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let enrollments = world.enroll(4, now - TimeDelta::minutes(1)).await?;
    let config = test_config_for(&world.db)?;
    let topics = TopicNames::from_config(&config.kafka);
    ensure_topics(&config.kafka, &topics.all()).await?;
    let clock = Arc::new(ManualClock::new(now));
    let app = Application::build_with(
        config.clone(),
        TcpListener::bind("127.0.0.1:0")?,
        clock.clone(),
    )?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let jobs = read_topic(
        &config.kafka,
        &topics.email_jobs,
        4,
        Duration::from_secs(60),
    )
    .await?;
    let mut job_enrollments = Vec::new();
    for job in &jobs {
        let envelope = job.payload_json()?;
        assert_eq!(envelope["type"], "send");
        assert_eq!(envelope["payload"]["attempt"], 1);
        assert_eq!(
            job.key.as_deref(),
            envelope["payload"]["mailbox_id"].as_str(),
            "jobs are keyed by mailbox"
        );
        job_enrollments.push(
            envelope["payload"]["enrollment_id"]
                .as_str()
                .map(str::to_owned),
        );
    }
    job_enrollments.sort();
    let mut expected: Vec<Option<String>> =
        enrollments.iter().map(|id| Some(id.to_string())).collect();
    expected.sort();
    assert_eq!(job_enrollments, expected);

    // The worker marks the first one sent and reports it.
    let first = enrollments[0];
    let message = world.messages_of(first).await?.remove(0);
    world
        .sent_by_worker(&[message.id], now + TimeDelta::seconds(30))
        .await?;
    let mut sent = Envelope::new(
        world.workspace_id,
        EmailEvent::Sent {
            message: MessageRef {
                message_id: message.id,
                enrollment_id: first,
            },
            step_order: 1,
            message_id_header: message.message_id_header.clone().unwrap_or_default(),
        },
    );
    sent.occurred_at = now + TimeDelta::seconds(30);
    Producer::new(&config.kafka)?
        .send(&topics.email_events, &first.to_string(), &sent)
        .await?;
    let advanced = poll_until(
        Duration::from_secs(60),
        "the enrollment advanced",
        || async {
            world
                .enrollment(first)
                .await
                .ok()
                .filter(|e| e.current_step == 2)
        },
    )
    .await?;
    assert_eq!(
        advanced.next_send_at,
        Some(now + TimeDelta::seconds(30) + TimeDelta::days(2))
    );

    // Two days later, step 2 goes out from the same mailbox.
    clock.set(now + TimeDelta::days(2) + TimeDelta::minutes(1));
    read_topic(
        &config.kafka,
        &topics.email_jobs,
        5,
        Duration::from_secs(60),
    )
    .await?;
    let messages = world.messages_of(first).await?;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].mailbox_id, message.mailbox_id);
    assert_eq!(count_records(&config.kafka, &topics.email_jobs).await?, 5);

    shutdown.cancel();
    running.await??;
    Ok(())
}
