//! What the worker does when the SMTP server says no, or says nothing: Postfix's smtp-sink
//! with injected failures, then GreenMail once the server "recovers".

use std::sync::Arc;

use chrono::Utc;
use domain::clock::SystemClock;
use domain::db::{dispatch, progress};
use domain::testing::{count_records, read_topic, the_only_failing_event};
use sender_worker::outcome::{MessageFacts, Outcome};
use sender_worker::record::{Recorded, Recorder};
use uuid::Uuid;

use crate::fake_smtp::{Act, FakeSmtp};
use crate::world::{SmtpSink, Step, WAIT, World, greenmail_smtp, wait_received};

const STEP: Step = Step {
    subject: "Hello",
    content: "Hi {{first_name|there}}",
    thread_with_previous: false,
};

fn contact_address() -> String {
    format!("failing-{}@example.org", Uuid::now_v7().simple())
}

#[tokio::test]
async fn a_4xx_asks_for_a_retry_and_the_retry_is_received_once() -> anyhow::Result<()> {
    let sink = SmtpSink::start(&["-r", "rcpt"]).await?;
    let world = World::new(sink.addr, &[STEP]).await?;
    let to = contact_address();
    let enrollment = world.enroll(&to, None).await?;
    let message = world.queue(enrollment, 1).await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;

    // The scheduler is asked to retry attempt 1; the row waits for it, held by nobody.
    let requests = read_topic(&world.config.kafka, &world.topics.email_retries, 1, WAIT).await?;
    let request = requests[0].payload_json()?;
    assert_eq!(request["type"], "retry");
    assert_eq!(request["payload"]["message_id"], message.to_string());
    assert_eq!(request["payload"]["attempt"], 1);
    assert_eq!(
        requests[0].key.as_deref(),
        Some(world.mailbox_id.to_string().as_str())
    );
    let row = world.message(message).await?;
    assert_eq!(row.status, "sending");
    assert_eq!(row.worker_id, None);
    assert!(
        row.last_error
            .as_deref()
            .is_some_and(|e| e.contains("rcpt_to: 4")),
        "{row:?}"
    );
    assert!(sink.received()?.is_empty(), "nothing was handed over");

    // What the scheduler does with it: retry time, then a new attempt of the same row.
    let mut conn = world.conn().await?;
    assert!(progress::schedule_retry(&mut conn, message, 1, Utc::now(), "4xx").await?);
    let due = dispatch::requeue_due_retries(&mut conn, Utc::now(), 10).await?;
    assert_eq!(due.len(), 1);
    // The server works again (the mailbox now points at GreenMail).
    let greenmail = greenmail_smtp()?;
    world
        .exec(&format!(
            "UPDATE mailboxes SET smtp_host = '{}', smtp_port = {} WHERE id = '{}'",
            greenmail.ip(),
            greenmail.port(),
            world.mailbox_id
        ))
        .await?;
    world.publish_job(message).await?;

    let sent = world.wait_for(message, &["sent"]).await?;
    assert_eq!(sent.attempts, 2, "the attempt is recorded");
    assert_eq!(wait_received(&to, 1).await?.len(), 1);
    worker.stop().await?;
    sink.stop().await
}

#[tokio::test]
async fn a_5xx_is_a_hard_bounce_and_never_retried() -> anyhow::Result<()> {
    let sink = SmtpSink::start(&["-f", "rcpt"]).await?;
    let world = World::new(sink.addr, &[STEP]).await?;
    let enrollment = world.enroll(&contact_address(), None).await?;
    let message = world.queue(enrollment, 1).await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;

    let bounced = world.wait_for(message, &["bounced"]).await?;
    assert!(
        bounced
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("rcpt_to: 5")),
        "{bounced:?}"
    );
    let events = read_topic(&world.config.kafka, &world.topics.email_events, 1, WAIT).await?;
    let event = events[0].payload_json()?;
    assert_eq!(event["type"], "bounced");
    assert_eq!(event["payload"]["hard"], true);
    assert_eq!(event["payload"]["enrollment_id"], enrollment.to_string());
    assert_eq!(
        count_records(&world.config.kafka, &world.topics.email_retries).await?,
        0,
        "no retry requested"
    );
    assert!(sink.received()?.is_empty());
    worker.stop().await?;
    sink.stop().await
}

#[tokio::test]
async fn no_reply_after_the_data_is_unknown_and_never_resent() -> anyhow::Result<()> {
    let sink = SmtpSink::start(&["-q", "."]).await?;
    let world = World::new(sink.addr, &[STEP]).await?;
    let message = world
        .queue(world.enroll(&contact_address(), None).await?, 1)
        .await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;

    let unknown = world.wait_for(message, &["unknown"]).await?;
    assert!(
        unknown.last_error.as_deref().is_some_and(|e| !e.is_empty()),
        "{unknown:?}"
    );
    assert_eq!(sink.received()?.len(), 1, "the server got the data once");

    // Replayed, then a sentinel behind it on the same partition: once the sentinel is
    // settled, the replay was claimed and skipped.
    world.publish_job(message).await?;
    let sentinel = world
        .queue(world.enroll(&contact_address(), None).await?, 1)
        .await?;
    world.publish_job(sentinel).await?;
    world.wait_for(sentinel, &["unknown"]).await?;
    assert_eq!(
        sink.received()?.len(),
        2,
        "the unknown message was not sent again"
    );
    assert_eq!(world.message(message).await?.status, "unknown");
    assert_eq!(
        count_records(&world.config.kafka, &world.topics.email_retries).await?,
        0
    );
    worker.stop().await?;
    sink.stop().await
}

/// A mailbox whose SMTP host resolves to loopback, on a worker that allows no private
/// network: the worker connects nowhere, puts the mailbox in `error` with the reason and asks
/// for a retry (the message is kept, not failed). Once the operator allows the network, the
/// retry is delivered once.
#[tokio::test]
async fn a_host_resolving_to_a_private_address_fails_the_mailbox_and_connects_nowhere()
-> anyhow::Result<()> {
    // Whatever the worker would reach on that port: nothing may arrive there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let mut world = World::new(listener.local_addr()?, &[STEP]).await?;
    world.config.security.allowed_private_networks.clear();
    world
        .exec(&format!(
            "UPDATE mailboxes SET smtp_host = 'localhost' WHERE id = '{}'",
            world.mailbox_id
        ))
        .await?;
    let to = contact_address();
    let message = world.queue(world.enroll(&to, None).await?, 1).await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;

    let requests = read_topic(&world.config.kafka, &world.topics.email_retries, 1, WAIT).await?;
    let request = requests[0].payload_json()?;
    assert_eq!(request["payload"]["message_id"], message.to_string());
    let error = request["payload"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("refused: resolves to a private address"),
        "{request}"
    );
    let row = world.message(message).await?;
    assert_eq!(row.status, "sending", "kept for the retry: {row:?}");
    assert_eq!(row.worker_id, None);
    let (status, reason) = world.mailbox_status().await?;
    assert_eq!(status, "error");
    assert_eq!(reason.as_deref(), Some(error), "the mailbox shows why");
    assert!(listener.accept().is_err(), "no connection reached the port");
    worker.stop().await?;

    // The operator allows loopback and the tenant re-activates the mailbox, now pointed at
    // GreenMail by name: the retry goes out once.
    let greenmail = greenmail_smtp()?;
    world
        .exec(&format!(
            "UPDATE mailboxes SET status = 'active', status_reason = NULL, smtp_port = {} \
             WHERE id = '{}'",
            greenmail.port(),
            world.mailbox_id
        ))
        .await?;
    world.config.security.allowed_private_networks = domain::testing::TEST_ALLOWED_PRIVATE_NETWORKS
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut conn = world.conn().await?;
    assert!(progress::schedule_retry(&mut conn, message, 1, Utc::now(), "refused").await?);
    assert_eq!(
        dispatch::requeue_due_retries(&mut conn, Utc::now(), 10)
            .await?
            .len(),
        1
    );
    world.publish_job(message).await?;
    let worker = world.start_worker()?;
    world.wait_for(message, &["sent"]).await?;
    assert_eq!(wait_received(&to, 1).await?.len(), 1);
    worker.stop().await
}

/// A server that refuses the mailbox's login, quoting the AUTH line (credentials included)
/// as careless servers do. Two messages fail on it; the mailbox goes to `error` with the
/// redacted answer, announced once on `mailbox-events` (through the outbox, with the retry
/// requests). A replayed failure outcome then changes and announces nothing.
#[tokio::test]
async fn a_refused_login_fails_the_mailbox_and_announces_it_once() -> anyhow::Result<()> {
    let smtp = FakeSmtp::start(|_, event, line| {
        (event == "AUTH").then(|| Act::Reply(format!("535 5.7.8 bad credentials: {line}")))
    })
    .await?;
    let mut world = World::new(smtp.addr(), &[STEP]).await?;
    // The relay keeps what it published: the outbox is counted below.
    world.config.outbox.retention_seconds = 3600;
    world
        .set_smtp_login("ana@acme.test", "correct horse battery")
        .await?;
    let first = world
        .queue(world.enroll(&contact_address(), None).await?, 1)
        .await?;
    let second = world
        .queue(world.enroll(&contact_address(), None).await?, 1)
        .await?;
    world.publish_job(first).await?;
    world.publish_job(second).await?;
    let worker = world.start_worker()?;

    // Both wait for a retry (the second refused too, or held back by the mailbox's `error`);
    // their outcomes, and the mailbox's, are committed.
    read_topic(&world.config.kafka, &world.topics.email_retries, 2, WAIT).await?;
    let (status, reason) = world.mailbox_status().await?;
    assert_eq!(status, "error");
    let reason = reason.unwrap_or_default();
    assert!(
        reason.starts_with("auth: 535") && reason.contains("5.7.8 bad credentials"),
        "{reason}"
    );
    assert!(reason.contains("[redacted]"), "{reason}");
    // The password, plain and as AUTH PLAIN's base64 of "\0ana@acme.test\0correct horse battery".
    assert!(!reason.contains("correct horse"), "{reason}");
    assert!(!reason.contains("Y29ycmVjdCBob3JzZSBiYXR0ZXJ5"), "{reason}");

    let only_failing = async || {
        the_only_failing_event(
            &world.db,
            &world.config,
            world.mailbox_id,
            world.workspace_id,
            WAIT,
        )
        .await
    };
    let event = only_failing().await?;
    assert_eq!(
        event,
        serde_json::json!({
            "mailbox_id": world.mailbox_id,
            "reason": reason,
            "found_by": "sending",
        })
    );
    worker.stop().await?;

    // The same failure recorded again (a replay after a crash, or another worker's): the
    // mailbox is already in `error`, so nothing more is announced.
    let row = world.message(first).await?;
    let recorder = Recorder::new(
        world.db.pool()?,
        "replaying-worker".to_owned(),
        world.topics.clone(),
        Arc::new(SystemClock),
    );
    let facts = MessageFacts {
        id: first,
        workspace_id: world.workspace_id,
        enrollment_id: row.enrollment_id,
        mailbox_id: world.mailbox_id,
        step_order: 1,
        attempts: row.attempts,
        message_id_header: row.message_id_header.unwrap_or_default(),
    };
    let replayed = recorder
        .record(&[(facts, Outcome::MailboxFailing { error: reason })])
        .await?;
    assert_eq!(
        replayed,
        Recorded {
            lost_lease: 1,
            ..Recorded::default()
        }
    );
    only_failing().await?;
    Ok(())
}
