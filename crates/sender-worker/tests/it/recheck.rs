//! Automatic re-checks of mailboxes in `error`: against GreenMail (a server that accepts),
//! and against the scripted server (one that refuses, then accepts; one that never answers
//! while a person changes the mailbox). Time is a `ManualClock` moved past each
//! `next_check_at`; rounds are run by hand (`Rechecker::run_once`), as the worker's loop
//! runs them every `reaper_interval_ms`. Last, a message that found its mailbox paused waits
//! for it, and goes out once it is resumed.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::sql_types::{Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use domain::clock::ManualClock;
use domain::db::{dispatch, mailbox_health, progress};
use domain::testing::{poll_until, read_topic};
use sender_worker::Application;
use sender_worker::recheck::{Rechecker, Round};

use crate::fake_smtp::{Act, FakeSmtp};
use crate::world::{Step, WAIT, World, greenmail_smtp, received, wait_received};

const STEP: Step = Step {
    subject: "Hello",
    content: "Hi there",
    thread_with_previous: false,
};

#[derive(Debug, diesel::QueryableByName)]
struct Health {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    status_reason: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    next_check_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Int4)]
    check_failures: i32,
}

async fn health(world: &World) -> anyhow::Result<Health> {
    Ok(diesel::sql_query(
        "SELECT status, status_reason, next_check_at, check_failures \
           FROM mailboxes WHERE id = $1",
    )
    .bind::<SqlUuid, _>(world.mailbox_id)
    .get_result(&mut world.conn().await?)
    .await?)
}

/// A world whose mailbox (sending through `smtp`) a server refused: `error`, with the
/// worker's re-checker on a manual clock at `now`.
async fn failing_mailbox(
    smtp: SocketAddr,
    now: DateTime<Utc>,
    initial_seconds: u64,
    max_seconds: u64,
) -> anyhow::Result<(World, Rechecker, Arc<ManualClock>)> {
    let mut world = World::new(smtp, &[STEP]).await?;
    world.config.sender_worker.mailbox_recheck_initial_seconds = initial_seconds;
    world.config.sender_worker.mailbox_recheck_max_seconds = max_seconds;
    world
        .exec(&format!(
            "UPDATE mailboxes SET status = 'error', \
                    status_reason = 'SMTP AUTH rejected: 535 5.7.8 authentication failed' \
              WHERE id = '{}'",
            world.mailbox_id
        ))
        .await?;
    let clock = Arc::new(ManualClock::new(now));
    let app = Application::build_with(
        world.config.clone(),
        TcpListener::bind("127.0.0.1:0")?,
        clock.clone(),
    )?;
    let rechecker = app.rechecker().clone();
    Ok((world, rechecker, clock))
}

fn at(rfc3339: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(rfc3339.parse()?)
}

#[tokio::test]
async fn a_mailbox_in_error_whose_server_accepts_is_active_after_its_recheck() -> anyhow::Result<()>
{
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, rechecker, clock) = failing_mailbox(greenmail_smtp()?, now, 900, 21_600).await?;
    // A message that found the mailbox in error waits for it (as the scheduler parks it).
    let enrollment = world.enroll("waiting@customer.test", None).await?;
    let message = world.queue(enrollment, 1).await?;
    world
        .exec(&format!(
            "UPDATE messages SET status = 'retrying', retry_at = NULL WHERE id = '{message}'"
        ))
        .await?;

    // The first round gives it its first re-check, 15 minutes on; nothing is due yet.
    assert_eq!(rechecker.run_once().await?, Round::default());
    let scheduled = health(&world).await?;
    assert_eq!(scheduled.status, "error");
    assert_eq!(scheduled.next_check_at, Some(now + TimeDelta::minutes(15)));
    clock.set(now + TimeDelta::minutes(14));
    assert_eq!(rechecker.run_once().await?, Round::default());

    clock.set(now + TimeDelta::minutes(15));
    let round = rechecker.run_once().await?;
    assert_eq!(round.recovered, 1, "{round:?}");
    let recovered = health(&world).await?;
    assert_eq!(recovered.status, "active");
    assert_eq!(recovered.status_reason, None);
    assert_eq!(recovered.next_check_at, None);
    assert_eq!(recovered.check_failures, 0);

    // Announced on mailbox-events (through the outbox), and its waiting message is due.
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM outbox WHERE topic = '{}' \
                   AND message_key = '{}' AND payload->>'type' = 'recovered' \
                   AND payload->'payload'->>'mailbox_id' = '{}'",
                world.topics.mailbox_events, world.mailbox_id, world.mailbox_id
            ))
            .await?,
        1
    );
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM messages \
                  WHERE id = '{message}' AND status = 'retrying' AND retry_at IS NOT NULL"
            ))
            .await?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_server_that_still_refuses_doubles_the_wait_up_to_the_maximum() -> anyhow::Result<()> {
    let accepting = Arc::new(AtomicBool::new(false));
    let open = accepting.clone();
    let smtp = FakeSmtp::start(move |_, event, _| {
        (event == "GREETING" && !AtomicBool::load(&open, Ordering::SeqCst))
            .then(|| Act::ReplyAndClose("554 5.3.2 not accepting connections".into()))
    })
    .await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, rechecker, clock) = failing_mailbox(smtp.addr(), now, 900, 3600).await?;
    rechecker.run_once().await?;

    let mut waits = Vec::new();
    for _ in 0..4 {
        let due = health(&world)
            .await?
            .next_check_at
            .ok_or_else(|| anyhow::anyhow!("no re-check scheduled"))?;
        clock.set(due);
        let round = rechecker.run_once().await?;
        assert_eq!(round.still_failing, 1, "{round:?}");
        let after = health(&world).await?;
        assert_eq!(after.status, "error");
        let reason = after.status_reason.unwrap_or_default();
        assert!(reason.contains("554"), "{reason}");
        let next = after
            .next_check_at
            .ok_or_else(|| anyhow::anyhow!("no next re-check"))?;
        waits.push((next - due).num_seconds());
    }
    // 15 minutes, then 30, then capped at the hour.
    assert_eq!(waits, [1800, 3600, 3600, 3600]);
    assert_eq!(health(&world).await?.check_failures, 4);

    // Fixed on the server's side: the next re-check brings it back.
    accepting.store(true, Ordering::SeqCst);
    let due = health(&world)
        .await?
        .next_check_at
        .ok_or_else(|| anyhow::anyhow!("no re-check scheduled"))?;
    clock.set(due - TimeDelta::seconds(1));
    assert_eq!(rechecker.run_once().await?, Round::default());
    clock.set(due);
    assert_eq!(rechecker.run_once().await?.recovered, 1);
    assert_eq!(health(&world).await?.status, "active");
    Ok(())
}

#[tokio::test]
async fn a_persons_change_during_a_recheck_wins() -> anyhow::Result<()> {
    // A server that never answers: the check runs until its timeout, long enough for a
    // person to fix the mailbox meanwhile.
    let smtp = FakeSmtp::start(|_, event, _| (event == "GREETING").then_some(Act::Stall)).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, mut rechecker, clock) = failing_mailbox(smtp.addr(), now, 900, 21_600).await?;
    rechecker.timeout = Duration::from_secs(3);
    rechecker.run_once().await?;
    clock.set(now + TimeDelta::minutes(15));

    let round = tokio::spawn({
        let rechecker = rechecker.clone();
        async move { rechecker.run_once().await }
    });
    poll_until(
        Duration::from_secs(30),
        "the re-check to connect",
        || async { (smtp.accepted() > 0).then_some(()) },
    )
    .await?;
    // What the API's PUT writes when a person sets the status by hand.
    world
        .exec(&format!(
            "UPDATE mailboxes SET status = 'active', status_reason = NULL WHERE id = '{}'",
            world.mailbox_id
        ))
        .await?;
    let round = round.await??;
    assert_eq!(round.superseded, 1, "{round:?}");

    let after = health(&world).await?;
    assert_eq!(after.status, "active");
    assert_eq!(after.status_reason, None);
    assert_eq!(after.next_check_at, None);
    assert_eq!(after.check_failures, 0);
    Ok(())
}

#[tokio::test]
async fn a_paused_mailboxs_message_waits_and_goes_out_once_it_is_resumed() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[STEP]).await?;
    world
        .exec(&format!(
            "UPDATE mailboxes SET status = 'paused', status_reason = 'bounce rate 3/50 over 5%' \
              WHERE id = '{}'",
            world.mailbox_id
        ))
        .await?;
    let to = format!("waiting-{}@example.org", uuid::Uuid::now_v7().simple());
    let enrollment = world.enroll(&to, None).await?;
    let message = world.queue(enrollment, 1).await?;
    world.publish_job(message).await?;
    let worker = world.start_worker()?;

    // Not sent: the scheduler is asked to decide.
    let requests = read_topic(&world.config.kafka, &world.topics.email_retries, 1, WAIT).await?;
    let request = requests[0].payload_json()?;
    assert_eq!(request["payload"]["message_id"], message.to_string());
    assert_eq!(request["payload"]["error"], "the mailbox is paused");
    assert!(received(&to).await?.is_empty());

    // What the scheduler does with a request whose mailbox cannot send: the message waits,
    // its attempt not counted, and no later time makes it due.
    let mut conn = world.conn().await?;
    assert!(!mailbox_health::is_active_locked(&mut conn, world.mailbox_id).await?);
    assert!(progress::wait_for_mailbox(&mut conn, message, 1, "the mailbox is paused").await?);
    let far = Utc::now() + TimeDelta::days(30);
    assert!(
        dispatch::requeue_due_retries(&mut conn, far, 10)
            .await?
            .is_empty()
    );
    let waiting = world.message(message).await?;
    assert_eq!((waiting.status.as_str(), waiting.attempts), ("retrying", 0));

    // Resumed (the API's PUT {"status": "active"}): due at once, sent as attempt 1.
    world
        .exec(&format!(
            "UPDATE mailboxes SET status = 'active', status_reason = NULL WHERE id = '{}'",
            world.mailbox_id
        ))
        .await?;
    let due = dispatch::requeue_due_retries(&mut conn, Utc::now(), 10).await?;
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].id, due[0].attempts), (message, 1));
    world.publish_job(message).await?;
    let sent = world.wait_for(message, &["sent"]).await?;
    assert_eq!(sent.attempts, 1);
    assert_eq!(wait_received(&to, 1).await?.len(), 1);
    worker.stop().await
}
