//! `unknown` messages a person resolved (`domain::db::resolutions`, what the API runs): the
//! `sent` it announces moves the enrollment exactly as the worker's would, and a message
//! resolved `not_sent` is dispatched again as its next attempt without another unit.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::AsyncConnection as _;
use domain::clock::{Clock, ManualClock};
use domain::db::resolutions::{self, Outcome, Resolve, Resolved};
use domain::events::EmailEvent;
use domain::kafka::Envelope;
use scheduler::dispatch::Dispatcher;
use scheduler::outcomes;
use uuid::Uuid;

use crate::world::{World, at};

const EVENTS: &str = "events";

/// A world with `steps` and one enrollment whose first message, dispatched at `now`, became
/// `unknown` at `unknown_at`: the enrollment and the message.
async fn one_unknown(
    steps: &[(i32, i32, i32)],
    now: DateTime<Utc>,
    unknown_at: DateTime<Utc>,
) -> anyhow::Result<(World, Uuid, Uuid)> {
    let world = World::new(1, 100, steps).await?;
    let enrollment = world.enroll(1, now).await?.remove(0);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
    let dispatcher = Dispatcher::new(world.pool.clone(), clock, 10, "jobs".to_owned());
    assert_eq!(dispatcher.run_once().await?.dispatched, 1);
    let message = world.messages_of(enrollment).await?.remove(0).id;
    // As the worker leaves it, at a time of the test's clock (the trigger would stamp the
    // real time).
    world
        .exec("ALTER TABLE messages DISABLE TRIGGER messages_updated_at")
        .await?;
    world
        .exec(&format!(
            "UPDATE messages SET status = 'unknown', worker_id = 'w', updated_at = '{}' \
              WHERE id = '{message}'",
            unknown_at.to_rfc3339()
        ))
        .await?;
    world
        .exec("ALTER TABLE messages ENABLE TRIGGER messages_updated_at")
        .await?;
    Ok((world, enrollment, message))
}

async fn resolve(
    world: &World,
    message: Uuid,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> anyhow::Result<Resolved> {
    Ok(resolutions::resolve(
        &mut world.conn().await?,
        &Resolve {
            workspace_id: world.workspace_id,
            message_id: message,
            outcome,
            resolved_by: "api_key:test",
            now,
            email_events_topic: EVENTS,
        },
    )
    .await?)
}

/// The `email-events` records waiting in the outbox, as the consumer would read them.
async fn announced(world: &World) -> anyhow::Result<Vec<(String, Envelope<EmailEvent>)>> {
    world.outbox_records(EVENTS).await
}

#[tokio::test]
async fn resolved_as_sent_moves_the_enrollment_as_the_worker_s_sent_would() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let unknown_at = now + TimeDelta::minutes(1);
    let (world, enrollment, message) =
        one_unknown(&[(0, 0, 0), (2, 0, 0)], now, unknown_at).await?;

    let resolved_at = now + TimeDelta::hours(3);
    assert_eq!(
        resolve(&world, message, Outcome::Sent, resolved_at).await?,
        Resolved::Applied
    );
    let records = announced(&world).await?;
    assert_eq!(records.len(), 1);
    let (key, envelope) = &records[0];
    assert_eq!(key, &enrollment.to_string(), "keyed by enrollment");
    assert_eq!(envelope.occurred_at, unknown_at, "sent when it went out");
    assert!(
        matches!(&envelope.body, EmailEvent::Sent { message: m, step_order: 1, .. }
            if m.message_id == message && m.enrollment_id == enrollment),
        "{envelope:?}"
    );

    let mut conn = world.conn().await?;
    assert!(
        conn.transaction(
            async |tx| outcomes::apply(tx, envelope, &crate::outcomes::webhooks()).await
        )
        .await?
    );
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.status, "active");
    assert_eq!(row.current_step, 2);
    assert_eq!(row.next_send_at, Some(unknown_at + TimeDelta::days(2)));
    assert_eq!(
        row.mailbox_id,
        Some(world.mailboxes[0]),
        "the thread's mailbox"
    );
    assert_eq!(world.messages_of(enrollment).await?[0].status, "sent");
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM events WHERE enrollment_id = '{enrollment}' \
                   AND event_type IN ('sent', 'resolved')"
            ))
            .await?,
        2
    );
    assert_eq!(
        world
            .count("SELECT sum(sent)::int8 AS n FROM step_stats")
            .await?,
        1,
        "counted as a send"
    );
    // Its mailbox has sent since it went out: the inbox watcher reads replies from then.
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM mailbox_first_sends \
                  WHERE mailbox_id = '{}' AND first_sent_at = '{}'",
                world.mailboxes[0],
                unknown_at.to_rfc3339()
            ))
            .await?,
        1
    );

    // The same answer again announces nothing more; the other one is refused.
    assert_eq!(
        resolve(&world, message, Outcome::Sent, resolved_at).await?,
        Resolved::Repeated
    );
    assert!(matches!(
        resolve(&world, message, Outcome::NotSent, resolved_at).await?,
        Resolved::Refused { status, resolution: Some(r) } if status == "sent" && r == "sent"
    ));
    assert_eq!(announced(&world).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn resolved_as_sent_after_the_last_step_completes() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_unknown(&[(0, 0, 0)], now, now).await?;
    resolve(&world, message, Outcome::Sent, now + TimeDelta::days(1)).await?;
    let (_, envelope) = announced(&world).await?.remove(0);
    let mut conn = world.conn().await?;
    conn.transaction(async |tx| outcomes::apply(tx, &envelope, &crate::outcomes::webhooks()).await)
        .await?;
    let row = world.enrollment(enrollment).await?;
    assert_eq!(row.status, "completed");
    assert_eq!(row.next_send_at, None);
    Ok(())
}

#[tokio::test]
async fn resolved_as_not_sent_goes_out_again_without_another_unit() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_unknown(&[(0, 0, 0), (2, 0, 0)], now, now).await?;
    let day = now.date_naive();
    assert_eq!(world.reserved(world.mailboxes[0], day).await?, 1);
    let first = world.messages_of(enrollment).await?.remove(0);

    let resolved_at = now + TimeDelta::hours(1);
    let clock = Arc::new(ManualClock::new(resolved_at));
    let dispatcher = Dispatcher::new(
        world.pool.clone(),
        clock.clone() as Arc<dyn Clock>,
        10,
        "jobs".to_owned(),
    );
    assert_eq!(dispatcher.run_once().await?.retried, 0, "nothing before");
    assert_eq!(
        resolve(&world, message, Outcome::NotSent, resolved_at).await?,
        Resolved::Applied
    );
    assert!(
        announced(&world).await?.is_empty(),
        "no event: nothing happened yet"
    );
    let round = dispatcher.run_once().await?;
    assert_eq!((round.retried, round.dispatched), (1, 0));

    let again = world.messages_of(enrollment).await?.remove(0);
    assert_eq!(again.status, "queued");
    assert_eq!(again.attempts, 2);
    assert_eq!(again.message_id_header, first.message_id_header);
    assert_eq!(world.reserved(world.mailboxes[0], day).await?, 1);
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM send_jobs \
                  WHERE attempt = 2 AND message_id = '{message}'"
            ))
            .await?,
        1,
        "its second attempt's job"
    );
    let row = world.enrollment(enrollment).await?;
    assert_eq!(
        (row.current_step, row.next_send_at),
        (1, None),
        "waits for the retry's outcome"
    );
    Ok(())
}
